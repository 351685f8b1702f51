//! The typed payloads of the event catalogue (DESIGN §3).
//!
//! Conventions, so every service reads payloads the same way:
//! - addresses are EIP-55 checksummed hex strings; hashes are `0x` hex;
//! - integers that can exceed 2^53 (token amounts, stake, health factors in 1e18) are
//!   decimal strings, never JSON numbers;
//! - block numbers, counts and chain ids are JSON numbers (u64);
//! - optional fields are omitted when absent; payloads accept unknown fields, so an older
//!   reader keeps working when a newer writer adds one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::EnvelopeError;

/// A payload type of the catalogue, tied to its event type string.
pub trait Payload: Serialize {
    const TYPE: &'static str;
}

/// A payload on a hot path that writes its own JSON, the same as its `Serialize` would
/// (each implementation's test compares the two), only faster: see
/// [`Envelope::new_raw`](crate::Envelope::new_raw).
pub trait RawPayload: Payload {
    fn to_raw(&self) -> Box<serde_json::value::RawValue>;
}

/// Severity of findings and notifications, ordered from least to most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

macro_rules! catalogue {
    ($( $variant:ident => $ty:literal ),+ $(,)?) => {
        $( impl Payload for $variant { const TYPE: &'static str = $ty; } )+

        /// Every event type of the catalogue, decoded.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $( $variant($variant), )+
        }

        /// All event types of the catalogue, in declaration order.
        pub const EVENT_TYPES: &[&str] = &[$($ty),+];

        impl Event {
            pub fn event_type(&self) -> &'static str {
                match self { $( Event::$variant(_) => $ty, )+ }
            }

            pub fn from_type_and_json(event_type: &str, json: &str) -> Result<Self, EnvelopeError> {
                let payload_err = |source| EnvelopeError::Payload { event_type: event_type.to_owned(), source };
                match event_type {
                    $( $ty => serde_json::from_str(json).map(Event::$variant).map_err(payload_err), )+
                    other => Err(EnvelopeError::UnknownType(other.to_owned())),
                }
            }

            pub fn to_json_value(&self) -> Value {
                match self { $( Event::$variant(p) => serde_json::to_value(p).unwrap_or(Value::Null), )+ }
            }
        }
    };
}

catalogue! {
    ChainBlockObserved => "chain.block.observed",
    ChainLogObserved => "chain.log.observed",
    ChainStateObserved => "chain.state.observed",
    ChainReorgDetected => "chain.reorg.detected",
    RiskPositionLiquidatable => "risk.position.liquidatable",
    RiskOracleStale => "risk.oracle.stale",
    RiskOracleDeviation => "risk.oracle.deviation",
    RiskOperatorSetAssessed => "risk.operator_set.assessed",
    RiskSafeDrift => "risk.safe.drift",
    RiskPositionNearLiquidation => "risk.position.near_liquidation",
    RiskOracleAggregatorChanged => "risk.oracle.aggregator_changed",
    RiskOracleSequencerDown => "risk.oracle.sequencer_down",
    RiskOperatorSlashed => "risk.operator.slashed",
    SafeTxSubmitted => "safe.tx.submitted",
    PlaybookRunStarted => "playbook.run.started",
    PlaybookStepCompleted => "playbook.step.completed",
    PlaybookStepFailed => "playbook.step.failed",
    PlaybookRunFinished => "playbook.run.finished",
    LiquidationRequested => "liquidation.requested",
    LiquidationExecuted => "liquidation.executed",
    LiquidationSkipped => "liquidation.skipped",
    LiquidationFailed => "liquidation.failed",
    LiquidationRetracted => "liquidation.retracted",
    RebalanceRequested => "rebalance.requested",
    RebalancePlanned => "rebalance.planned",
    SafeProposalRequested => "safe.proposal.requested",
    SafeTxProposed => "safe.tx.proposed",
    SafeSignatureSubmitted => "safe.signature.submitted",
    SafeSignatureAccepted => "safe.signature.accepted",
    SafeSignatureRejected => "safe.signature.rejected",
    SafeTxReady => "safe.tx.ready",
    SafeTxExecuted => "safe.tx.executed",
    SafeTxFailed => "safe.tx.failed",
    SafeTxSuperseded => "safe.tx.superseded",
    SafeTxReopened => "safe.tx.reopened",
    NotifyRequested => "notify.requested",
    NotifyDelivered => "notify.delivered",
    NotifyFailed => "notify.failed",
    LogEventDeadLettered => "log.event.dead_lettered",
    NotifySubscriptionAdded => "notify.subscription.added",
    NotifySubscriptionRemoved => "notify.subscription.removed",
    PlaybookRunRequested => "playbook.run.requested",
    PlaybookApprovalDecided => "playbook.approval.decided",
}

// ---------------------------------------------------------------- chain.*

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainBlockObserved {
    pub number: u64,
    pub hash: String,
    pub parent_hash: String,
    /// Block timestamp, seconds since the epoch.
    pub timestamp: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainLogObserved {
    pub block_number: u64,
    pub block_hash: String,
    pub transaction_hash: String,
    pub log_index: u64,
    pub address: String,
    /// Name of the decoded event, e.g. `LiquidationCall`.
    pub event: String,
    /// Full signature, e.g. `Transfer(address,address,uint256)`.
    pub signature: String,
    /// The watch (config entry or pack) that matched this log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
    /// Decoded arguments by name: addresses checksummed, integers as decimal strings.
    pub args: serde_json::Map<String, Value>,
    /// True when this log was retracted by a reorg (re-announced in `chain.reorg.detected`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// One `chain.log.observed` per decoded log: a catch-up writes hundreds of thousands.
impl RawPayload for ChainLogObserved {
    fn to_raw(&self) -> Box<serde_json::value::RawValue> {
        use crate::json;
        let mut out = Vec::with_capacity(400 + 100 * self.args.len());
        out.push(b'{');
        json::field(&mut out, true, "block_number");
        json::uint(&mut out, self.block_number);
        json::str_field(&mut out, "block_hash", &self.block_hash);
        json::str_field(&mut out, "transaction_hash", &self.transaction_hash);
        json::field(&mut out, false, "log_index");
        json::uint(&mut out, self.log_index);
        json::str_field(&mut out, "address", &self.address);
        json::str_field(&mut out, "event", &self.event);
        json::str_field(&mut out, "signature", &self.signature);
        if let Some(w) = &self.watch {
            json::str_field(&mut out, "watch", w);
        }
        json::field(&mut out, false, "args");
        json::object(&mut out, &self.args);
        if self.removed {
            json::field(&mut out, false, "removed");
            out.extend_from_slice(b"true");
        }
        out.push(b'}');
        // The writer produces valid JSON from valid strings.
        serde_json::value::RawValue::from_string(String::from_utf8(out).unwrap_or_default())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainStateObserved {
    pub block_number: u64,
    pub block_hash: String,
    pub watch: String,
    pub address: String,
    /// Function signature called, e.g. `getUserAccountData(address)`.
    pub function: String,
    pub args: Vec<Value>,
    /// Decoded return values by name (or position when unnamed).
    pub value: serde_json::Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetractedEvent {
    pub key: String,
    pub event_type: String,
    pub block_number: u64,
    pub block_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReorgDetected {
    /// Last block both branches share.
    pub fork_block_number: u64,
    pub fork_block_hash: String,
    /// Blocks of the abandoned branch, lowest first.
    pub retracted_blocks: Vec<String>,
    /// Events previously emitted from the abandoned branch.
    pub retracted_events: Vec<RetractedEvent>,
    pub depth: u64,
}

// ---------------------------------------------------------------- risk.*

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskPositionLiquidatable {
    pub protocol: String,
    pub pool: String,
    pub user: String,
    /// Health factor scaled by 1e18, decimal string.
    pub health_factor: String,
    pub total_collateral_base: String,
    pub total_debt_base: String,
    /// Close factor applied, in basis points (5000 or 10000).
    pub close_factor_bps: u32,
    pub max_debt_to_cover_base: String,
    pub severity: Severity,
    pub block_number: u64,
    /// False when this event reports that the condition has cleared.
    #[serde(default = "yes")]
    pub active: bool,
    /// Collateral (base currency) a liquidator would receive for the maximum debt covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_collateral_base: Option<String>,
    /// The liquidation bonus assumed, in basis points (10500: 5%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liquidation_bonus_bps: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskOracleStale {
    pub asset: String,
    pub feed: String,
    /// Seconds since the feed's last update.
    pub age_secs: u64,
    pub heartbeat_secs: u64,
    pub last_answer: String,
    pub severity: Severity,
    #[serde(default = "yes")]
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OracleSourceValue {
    pub feed: String,
    pub answer: String,
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskOracleDeviation {
    pub asset: String,
    pub sources: Vec<OracleSourceValue>,
    pub median: String,
    /// Largest deviation found, in basis points.
    pub deviation_bps: u32,
    pub bound_bps: u32,
    pub severity: Severity,
    #[serde(default = "yes")]
    pub active: bool,
    /// `sources` (a source far from the median of all) or `round` (one feed's new round far
    /// from its previous one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorShare {
    pub operator: String,
    pub stake: String,
    /// Share of the set's total stake, in basis points.
    pub share_bps: u32,
    pub cap_bps: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskOperatorSetAssessed {
    pub operator_set: String,
    pub total_stake: String,
    pub operators: Vec<OperatorShare>,
    pub hhi: f64,
    pub hhi_normalised: f64,
    /// Nakamoto coefficients at 1/3, 1/2 and 2/3 of stake.
    pub nakamoto: [u32; 3],
    /// Human-readable descriptions of every breach found (empty when healthy).
    pub breaches: Vec<String>,
    pub severity: Severity,
    /// Share of each attribute group (`jurisdiction=DE`), in basis points, when the set has
    /// operator metadata.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attribute_shares_bps: std::collections::BTreeMap<String, u32>,
    /// Block of the stakes assessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_number: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskSafeDrift {
    pub safe: String,
    /// Which property drifted: `owners`, `threshold`, `modules` or `guard`.
    pub field: String,
    pub expected: Value,
    pub actual: Value,
    pub severity: Severity,
    #[serde(default = "yes")]
    pub active: bool,
}

/// A position whose health factor is in the warning band, above 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskPositionNearLiquidation {
    pub protocol: String,
    pub pool: String,
    pub user: String,
    /// Health factor scaled by 1e18, decimal string.
    pub health_factor: String,
    /// The band's upper edge, scaled by 1e18.
    pub threshold: String,
    pub total_collateral_base: String,
    pub total_debt_base: String,
    pub severity: Severity,
    pub block_number: u64,
    #[serde(default = "yes")]
    pub active: bool,
}

/// A feed proxy points at another aggregator than before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskOracleAggregatorChanged {
    pub asset: String,
    /// The proxy (the feed's address).
    pub feed: String,
    pub previous: String,
    pub current: String,
    pub block_number: u64,
    pub severity: Severity,
}

/// An L2's sequencer is down, or back up for less than the grace period: its prices are not
/// to be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskOracleSequencerDown {
    pub asset: String,
    /// The sequencer uptime feed.
    pub feed: String,
    /// Whether the sequencer is up (then still within the grace period).
    pub up: bool,
    /// When it went down, or came back up (seconds since the epoch).
    pub since: u64,
    pub grace_secs: u64,
    pub severity: Severity,
    #[serde(default = "yes")]
    pub active: bool,
}

/// An operator of a watched set was slashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskOperatorSlashed {
    /// The operator set's name in the configuration, when the operator is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_set: Option<String>,
    pub operator: String,
    /// What was slashed, as the protocol's event says it (strategies and amounts, AVS…).
    pub details: serde_json::Map<String, Value>,
    pub transaction_hash: String,
    pub block_number: u64,
    pub severity: Severity,
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------- playbook.*

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookRunStarted {
    pub playbook: String,
    /// Content hash of the playbook version this run uses.
    pub version: String,
    pub run_key: String,
    /// `event`, `schedule` or `manual`.
    pub trigger: String,
    #[serde(default)]
    pub inputs: serde_json::Map<String, Value>,
    /// The event that started the run, whole (its envelope as JSON), so the run can be rebuilt
    /// from the log alone; absent for schedules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_event: Option<Value>,
    /// The run's rendered `dedup` key (one run per key at a time, cooldown per key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookStepCompleted {
    pub playbook: String,
    pub run_key: String,
    pub step: String,
    #[serde(default)]
    pub output: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookStepFailed {
    pub playbook: String,
    pub run_key: String,
    pub step: String,
    pub attempt: u32,
    pub error: String,
    /// Whether the runner will retry this step.
    pub will_retry: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookRunFinished {
    pub playbook: String,
    pub run_key: String,
    /// `succeeded`, `failed` or `cancelled`.
    pub outcome: String,
    /// A failed run: the step that failed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// A failed run: that step's last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---------------------------------------------------------------- liquidation.*

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiquidationRequested {
    pub protocol: String,
    pub pool: String,
    pub user: String,
    pub collateral_asset: String,
    pub debt_asset: String,
    /// Amount of debt to cover in the debt asset's units, decimal string, or `max`.
    pub debt_to_cover: String,
    pub receive_a_token: bool,
    /// `relayer` or the address of the Safe to propose through.
    pub via: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiquidationExecuted {
    pub user: String,
    pub transaction_hash: String,
    pub debt_covered: String,
    pub collateral_received: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiquidationSkipped {
    pub user: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiquidationFailed {
    pub user: String,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_hash: Option<String>,
}

/// A reorg retracted the transaction that concluded a liquidation (its outcome no longer
/// stands): a relayer's transaction is sent again at its nonce (or mined again from the
/// mempool); a Safe's waits in the queue again. The next outcome is a new event (its key
/// carries `reopened`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiquidationRetracted {
    pub user: String,
    /// The outcome that no longer stands: `liquidation.executed` or `liquidation.failed`.
    pub previous: String,
    /// The retracted Ethereum transaction.
    pub transaction_hash: String,
    /// `relayer`, or the Safe the liquidation went through.
    pub via: String,
    /// How many times this liquidation has been reopened (1 the first time).
    pub reopened: u64,
}

// ---------------------------------------------------------------- rebalance.*

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalanceRequested {
    pub operator_set: String,
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalanceMove {
    pub operator: String,
    pub from_stake: String,
    pub to_stake: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalancePlanned {
    pub operator_set: String,
    pub moves: Vec<RebalanceMove>,
    pub total_moved: String,
    /// Constraints the plan could not meet, with how close it got.
    pub unmet: Vec<String>,
    /// The target allocation of every operator of the set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<OperatorTarget>,
    /// `exact` (least movement, proven) or `greedy` (three or more capped attributes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// What else signers should know (e.g. allocations that wait for a deallocation delay).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One operator's stake in a target allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorTarget {
    pub operator: String,
    pub stake: String,
}

// ---------------------------------------------------------------- safe.*

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeCall {
    pub to: String,
    /// Wei, decimal string.
    pub value: String,
    /// Calldata, 0x hex.
    pub data: String,
    /// 0 = CALL, 1 = DELEGATECALL.
    pub operation: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeProposalRequested {
    pub safe: String,
    pub calls: Vec<SafeCall>,
    /// Why this was proposed, shown to signers.
    pub reason: String,
    /// Replace the queued transaction at this nonce instead of taking the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_nonce: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeTxProposed {
    pub safe: String,
    pub safe_tx_hash: String,
    pub nonce: u64,
    pub to: String,
    pub value: String,
    pub data: String,
    pub operation: u8,
    pub safe_tx_gas: String,
    pub base_gas: String,
    pub gas_price: String,
    pub gas_token: String,
    pub refund_receiver: String,
    /// Whether simulation says it would revert.
    pub would_revert: bool,
    pub reason: String,
    /// The calls for people: function names and arguments from the configured ABIs, nested
    /// through MultiSend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoded: Option<Value>,
    /// Who proposed it: `rebalancer`, `runner`, `api:<sender>`, `liquidation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The Safe's threshold when it was proposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    /// Why simulation says it would revert, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulation: Option<String>,
}

/// A Safe transaction built elsewhere (a Safe Transaction Service client, a signer's wallet)
/// and submitted with its proposer's signature: the safe service checks it and queues it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeTxSubmitted {
    pub safe: String,
    pub to: String,
    pub value: String,
    pub data: String,
    pub operation: u8,
    pub safe_tx_gas: String,
    pub base_gas: String,
    pub gas_price: String,
    pub gas_token: String,
    pub refund_receiver: String,
    pub nonce: u64,
    /// The hash the submitter computed (`contractTransactionHash`).
    pub safe_tx_hash: String,
    /// The owner proposing it.
    pub sender: String,
    /// The sender's signature, 0x hex.
    pub signature: String,
    /// Where it came from (`api`, the client's `origin` field…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeSignatureSubmitted {
    pub safe: String,
    pub safe_tx_hash: String,
    /// Claimed signer.
    pub owner: String,
    /// 0x hex signature bytes.
    pub signature: String,
    /// Where it came from: `api`, `cli`, `telegram`.
    pub via: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeSignatureAccepted {
    pub safe: String,
    pub safe_tx_hash: String,
    pub owner: String,
    /// `ecdsa`, `eth_sign`, `approved_hash` or `contract`.
    pub kind: String,
    pub confirmations: u32,
    pub threshold: u32,
    /// The signature as accepted, 0x hex (a contract signature with its data).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeSignatureRejected {
    pub safe: String,
    pub safe_tx_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Machine-readable reason: `not_owner`, `duplicate`, `wrong_hash`, `wrong_chain`, `malformed`, ...
    pub reason: String,
    /// Explanation for a person.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeTxReady {
    pub safe: String,
    pub safe_tx_hash: String,
    pub nonce: u64,
    pub confirmations: u32,
    pub threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeTxExecuted {
    pub safe: String,
    pub safe_tx_hash: String,
    pub nonce: u64,
    pub transaction_hash: String,
    pub block_number: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeTxFailed {
    pub safe: String,
    pub safe_tx_hash: String,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeTxSuperseded {
    pub safe: String,
    pub safe_tx_hash: String,
    pub nonce: u64,
    /// The transaction that executed at this nonce instead.
    pub by_safe_tx_hash: String,
}

/// A transaction the queue had concluded (executed, failed or superseded) is waiting again:
/// the execution that concluded it was retracted by a reorg and the Safe's nonce is unused on
/// the canonical chain (or its execution there is still to be seen). Events about it after
/// this one are new facts (their keys carry `reopened`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeTxReopened {
    pub safe: String,
    pub safe_tx_hash: String,
    pub nonce: u64,
    /// What the queue had concluded: `executed`, `failed` or `superseded`.
    pub previous_status: String,
    /// The retracted Ethereum transaction (the execution at this nonce).
    pub transaction_hash: String,
    /// The retracted block.
    pub block_number: u64,
    /// Its hash; empty when the relayer found its own execution gone from a block the
    /// watcher had not reported (the block is no longer there to ask).
    pub block_hash: String,
    /// How many times this transaction has been reopened (1 the first time).
    pub reopened: u64,
    /// The proposal's reason, for people reading the alert.
    pub reason: String,
}

// ---------------------------------------------------------------- notify.*

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyRequested {
    /// Channel names from the config (e.g. `ops-telegram`, `signers-email`).
    pub channels: Vec<String>,
    pub template: String,
    pub severity: Severity,
    /// Values the template renders.
    #[serde(default)]
    pub context: serde_json::Map<String, Value>,
}

impl NotifyRequested {
    /// A fixed example, used by tests and docs.
    pub fn example() -> Self {
        let mut context = serde_json::Map::new();
        context.insert(
            "user".into(),
            Value::String("0x0000000000000000000000000000000000000001".into()),
        );
        Self {
            channels: vec!["ops".into()],
            template: "liquidation".into(),
            severity: Severity::High,
            context,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyDelivered {
    pub channel: String,
    pub request_key: String,
    /// Transport's id of the message (Telegram message id, SMTP queue id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyFailed {
    pub channel: String,
    pub request_key: String,
    pub attempts: u32,
    pub error: String,
}

// ---------------------------------------------------------------- log.*

/// A consumer gave up on an event after its delivery limit. The original event is kept
/// whole here (parked), so it can be inspected and re-queued; the consumer moved on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEventDeadLettered {
    pub consumer: String,
    /// Sequence of the original event in the log.
    pub sequence: u64,
    pub deliveries: u32,
    pub last_error: String,
    /// The original envelope, as JSON.
    pub event: Value,
    pub severity: Severity,
}

// ---------------------------------------------------------------- notify.* (subscriptions)

/// A Telegram chat subscribed to notifications through the bot (`/subscribe high`,
/// `/subscribe safe`). The notifier's read model of subscribers is built from these events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifySubscriptionAdded {
    /// Telegram chat id (negative for groups).
    pub chat_id: i64,
    /// The Telegram user who asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// What the chat hears: a severity (`high`: that and above) or a topic (a template
    /// name such as `liquidation`, or a channel name).
    pub subscription: String,
}

/// A Telegram chat unsubscribed (`/unsubscribe`, `/unsubscribe high`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifySubscriptionRemoved {
    pub chat_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// The subscription dropped; absent: all of the chat's subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
}

// ---------------------------------------------------------------- playbook.* (runner)

/// Someone asked for a run of a playbook with a `manual` trigger (`steward playbook start`, the
/// API). The runner checks the inputs against the playbook's declared types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookRunRequested {
    pub playbook: String,
    #[serde(default)]
    pub inputs: serde_json::Map<String, Value>,
    /// Who asked: `cli:<user>`, `api:<sender>`.
    pub requested_by: String,
}

/// A person answered a playbook's `approval` step (`/approve <run> <step>` or `/deny` to the
/// Telegram bot). The runner counts it only when the person is one of the step's approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookApprovalDecided {
    pub run_key: String,
    pub step: String,
    pub approved: bool,
    /// Where the answer came from: `telegram`, `api`.
    pub via: String,
    /// The Telegram user who answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telegram_user_id: Option<i64>,
    /// The chat the answer was given in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_id: Option<i64>,
    /// Why, when given (`/deny <run> <step> <reason>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_observation_writes_what_serde_writes() {
        let mut args = serde_json::Map::new();
        args.insert(
            "from".into(),
            Value::String("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into()),
        );
        args.insert("value".into(), Value::String("1000000".into()));
        args.insert("memo".into(), Value::String("a \"quoted\"\nline".into()));
        args.insert("ids".into(), serde_json::json!(["1", "2", {"x": true}]));
        let log = ChainLogObserved {
            block_number: 19_000_000,
            block_hash: format!("0x{}", "ab".repeat(32)),
            transaction_hash: format!("0x{}", "cd".repeat(32)),
            log_index: 7,
            address: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
            event: "Transfer".into(),
            signature: "Transfer(address,address,uint256)".into(),
            watch: Some("token".into()),
            args,
            removed: false,
        };
        let retracted = ChainLogObserved {
            watch: None,
            removed: true,
            args: serde_json::Map::new(),
            ..log.clone()
        };
        for l in [log, retracted] {
            assert_eq!(l.to_raw().get(), serde_json::to_string(&l).unwrap());
        }
    }
}
