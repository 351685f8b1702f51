//! The playbook file format, as written: what serde reads (unknown fields refused, positions
//! kept) and what the committed JSON Schema (`playbooks/playbook.schema.json`) describes.
//! [`crate::playbook`] turns it into a checked, compiled [`crate::playbook::Playbook`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use steward_config::Located;

fn yes() -> bool {
    true
}

/// A Steward playbook: what to do, when. One YAML file each.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Steward playbook")]
pub struct PlaybookDoc {
    /// Unique name: letters, digits, `_` and `-`. Runs, keys and events carry it.
    pub name: Located<String>,
    /// What the playbook is for, for people.
    #[serde(default)]
    pub description: String,
    /// A disabled playbook is checked but starts no run.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What starts a run: events, schedules, or a person (`manual`). At least one.
    pub on: Located<Vec<TriggerDoc>>,
    /// Typed inputs of manual runs (`steward playbook start NAME --input k=v`), by name.
    /// Other triggers see their defaults.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputDoc>,
    /// Constant values the steps use as `vars.NAME` (strings, or lists and maps of strings;
    /// `${ENV}` references are filled from the environment when the file is loaded). `set`
    /// steps change them during a run.
    #[serde(default)]
    pub vars: BTreeMap<String, Located<serde_json::Value>>,
    /// A template naming what a run is about (`"{{event.data.pool}}/{{event.data.user}}"`): at
    /// most one run per key at a time; a trigger for a key whose run is still going starts
    /// nothing. Without it every trigger is its own key.
    pub dedup: Option<Located<String>>,
    /// No new run for the same `dedup` key within this long after the last one started
    /// (`10m`, `1h`). Without `dedup`, per playbook.
    pub cooldown: Option<Located<String>>,
    /// The steps, run in order. At least one.
    pub steps: Located<Vec<StepDoc>>,
}

/// One trigger: exactly one of `event`, `schedule` or `manual`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerDoc {
    /// An event type or pattern: `risk.position.liquidatable`, `risk.oracle.*` (one token),
    /// `chain.>` (the rest).
    pub event: Option<Located<String>>,
    /// With `event`: a CEL condition the event must meet (`event.data.active`).
    #[serde(rename = "where")]
    pub where_: Option<Located<String>>,
    /// A cron expression with seconds: `sec min hour day-of-month month day-of-week [year]`
    /// (`0 0 9 * * *` is 09:00 every day).
    pub schedule: Option<Located<String>>,
    /// With `schedule`: the IANA time zone it is read in (`Europe/Berlin`); default `UTC`.
    pub timezone: Option<Located<String>>,
    /// `true`: people may start runs (`steward playbook start`), with `inputs`.
    pub manual: Option<Located<bool>>,
}

/// A typed input of manual runs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputDoc {
    /// `string`, `int`, `bool`, `address` (checksummed when given) or `amount` (a whole
    /// number as a decimal string, any size).
    #[serde(rename = "type")]
    pub kind: Located<String>,
    /// A run cannot start without it (unless it has a default).
    #[serde(default)]
    pub required: bool,
    /// The value when not given.
    pub default: Option<Located<String>>,
    /// What it means, for people.
    #[serde(default)]
    pub description: String,
}

/// One step: an `id`, the common settings, and exactly one kind (`notify`,
/// `queue_liquidation`, `request_rebalance`, `propose_safe_tx`, `wait_for`, `approval`,
/// `set`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDoc {
    /// Unique within the playbook: letters, digits, `_` and `-`. It keys the step's effects
    /// (run key + step id), so a step retried or resumed requests the same thing once.
    pub id: Located<String>,
    /// A CEL condition: the step runs only when it is true (else it is recorded as skipped).
    pub when: Option<Located<String>>,
    /// Try the step again when it fails.
    pub retry: Option<RetryDoc>,
    /// After the last failure: `fail` (the run fails; the default), `continue` (with the next
    /// step) or `goto STEP` (a later step).
    pub on_error: Option<Located<String>>,
    /// The chain the step's request concerns (a chain id, may be a template); default: the
    /// triggering event's.
    pub chain_id: Option<Located<String>>,
    /// Send a notification (the notifier renders and delivers it).
    pub notify: Option<NotifyDoc>,
    /// Ask for a liquidation.
    pub queue_liquidation: Option<LiquidationDoc>,
    /// Ask the rebalancer for a plan (it proposes the Safe transaction).
    pub request_rebalance: Option<RebalanceDoc>,
    /// Propose a Safe transaction (several calls go through MultiSend).
    pub propose_safe_tx: Option<SafeTxDoc>,
    /// Wait for an event.
    pub wait_for: Option<WaitForDoc>,
    /// Ask named people to approve; denied when nobody does in time.
    pub approval: Option<ApprovalDoc>,
    /// Set `vars`: each value is a CEL expression.
    pub set: Option<BTreeMap<String, Located<String>>>,
}

/// The step kinds, for messages.
pub const STEP_KINDS: [&str; 7] = [
    "notify",
    "queue_liquidation",
    "request_rebalance",
    "propose_safe_tx",
    "wait_for",
    "approval",
    "set",
];

/// Retries of a failed step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDoc {
    /// Further attempts after the first (`3`: up to four in all).
    pub count: u32,
    /// Wait before the first retry (`30s`); each further one waits twice as long.
    pub backoff: Option<Located<String>>,
}

/// `notify`: a `notify.requested` for the notifier.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyDoc {
    /// Channel names from the configuration's `notify.channels`.
    pub channels: Located<Vec<Located<String>>>,
    /// The notifier template (`default`, `liquidation`, `safe_tx`, …).
    #[serde(default = "default_template")]
    pub template: Located<String>,
    /// `info`, `low`, `medium`, `high` or `critical` (may be a template).
    pub severity: Located<String>,
    /// A CEL expression giving a map that becomes the template's variables
    /// (`event.data`); `context` entries are added over it.
    pub context_from: Option<Located<String>>,
    /// The template's variables: strings are templates over the run.
    #[serde(default)]
    pub context: BTreeMap<String, Located<serde_json::Value>>,
}

fn default_template() -> Located<String> {
    Located::new("default".to_owned(), None)
}

/// `queue_liquidation`: a `liquidation.requested`. Every field may be a template.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LiquidationDoc {
    /// The lending protocol (`aave-v3`).
    pub protocol: Located<String>,
    /// The pool's address.
    pub pool: Located<String>,
    /// The borrower.
    pub user: Located<String>,
    /// The collateral asset to receive.
    pub collateral: Located<String>,
    /// The debt asset to repay.
    pub debt: Located<String>,
    /// Debt to cover in the debt asset's smallest units, or `max` (the protocol's close factor
    /// then caps it).
    pub amount: Located<String>,
    /// Receive aTokens instead of the underlying collateral.
    #[serde(default)]
    pub receive_a_token: bool,
    /// `relayer`, or the address of the Safe to propose it through.
    pub via: Located<String>,
}

/// `request_rebalance`: a `rebalance.requested`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RebalanceDoc {
    /// The operator set's name in the configuration's `operator_sets`.
    pub operator_set: Located<String>,
    /// The policy to plan with (`caps`).
    #[serde(default = "default_policy")]
    pub policy: Located<String>,
    /// Why, for signers (a template).
    pub reason: Option<Located<String>>,
}

fn default_policy() -> Located<String> {
    Located::new("caps".to_owned(), None)
}

/// `propose_safe_tx`: a `safe.proposal.requested`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SafeTxDoc {
    /// The Safe's address (may be a template, `${ENV}` or `{{vars.safe}}`).
    pub safe: Located<String>,
    /// The calls, in order: one is a plain transaction, several go through MultiSend.
    pub calls: Located<Vec<CallDoc>>,
    /// Why, shown to signers (a template).
    pub reason: Located<String>,
}

/// One call of a Safe transaction.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallDoc {
    /// The contract called (a template).
    pub to: Located<String>,
    /// The function, as a signature: `function transfer(address to, uint256 amount)`.
    pub function: Located<String>,
    /// The arguments as text, one per input (templates): addresses, decimal or `0x` numbers,
    /// `true`, `[1, 2]` arrays, `(a, b)` tuples.
    #[serde(default)]
    pub args: Vec<Located<String>>,
    /// Wei sent with the call (a template); default 0.
    pub value: Option<Located<String>>,
}

/// `wait_for`: the run waits until an event matches, or the timeout passes (then the step
/// fails).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitForDoc {
    /// Event type or pattern.
    pub event: Located<String>,
    /// A CEL condition over `event` (the candidate) and the run
    /// (`event.correlation_id == run.correlation_id`).
    #[serde(rename = "where")]
    pub where_: Option<Located<String>>,
    /// How long to wait (`30m`).
    pub timeout: Located<String>,
}

/// `approval`: named people are asked; `required` of them must approve within `timeout`. A
/// denial by any of them, or the timeout, fails the step.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDoc {
    /// Names from the configuration's `playbooks.approvers`.
    pub approvers: Located<Vec<Located<String>>>,
    /// How many approvals are needed; default 1.
    pub required: Option<Located<u32>>,
    /// Where they are asked (channel names).
    pub channels: Located<Vec<Located<String>>>,
    /// What they are asked (a template).
    pub message: Located<String>,
    /// How long they have (`2h`).
    pub timeout: Located<String>,
}

/// The JSON Schema of a playbook file, generated from the types above (doc comments become
/// descriptions). Committed as `playbooks/playbook.schema.json`.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(PlaybookDoc).to_value()
}
