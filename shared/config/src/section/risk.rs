//! `risk:` — what the risk service judges, and `operator_sets:` — the operator sets it
//! assesses and the rebalancer plans for.
//!
//! Names here refer to the `chains:` section (a chain's `name`, a watch's `name`); those
//! references are checked by the risk service's own check at load time
//! (`steward_risk::check_config`), with file:line:column like the rest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::chains::is_address_syntax;
use super::{is_token, join, TOKEN_PATTERN};
use crate::duration::{self, HumanDuration};
use crate::validate::Validator;

/// What the risk service watches for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// Lending positions (Aave v3 `getUserAccountData` polls from the `aave-v3-pool` pack).
    pub positions: PositionsConfig,
    /// Price oracles: several feeds per asset.
    pub oracles: Vec<OracleConfig>,
    /// Safes whose owners, threshold, modules and guard must stay as written here.
    pub safes: Vec<SafeExpectation>,
    /// How often time-based conditions (stale feeds, sequencer grace) are checked.
    #[serde(with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub check_interval: Duration,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            positions: PositionsConfig::default(),
            oracles: Vec::new(),
            safes: Vec::new(),
            check_interval: Duration::from_secs(10),
        }
    }
}

/// Lending positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PositionsConfig {
    /// A health factor below this (and at least 1) is reported as near liquidation.
    pub near_liquidation: f64,
    /// Collateral a liquidator receives per unit of debt covered, in basis points (Aave's
    /// liquidation bonus: 10500 is 5%).
    pub liquidation_bonus_bps: u32,
}

impl Default for PositionsConfig {
    fn default() -> Self {
        Self {
            near_liquidation: 1.1,
            liquidation_bonus_bps: 10_500,
        }
    }
}

/// An asset's price sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OracleConfig {
    /// The asset's name in findings (`ETH/USD`).
    pub asset: String,
    /// The chain's `name` in `chains:`.
    pub chain: String,
    /// Watches (with the `chainlink-feed` pack) that are this asset's sources.
    pub feeds: Vec<String>,
    /// Longest a feed may go without a new round.
    #[serde(with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub heartbeat: Duration,
    /// Largest distance of a source from the median of all sources, in basis points.
    #[serde(default = "default_deviation")]
    pub max_deviation_bps: u32,
    /// Largest change from one round to the next, in basis points.
    #[serde(default = "default_round_change")]
    pub max_round_change_bps: u32,
    /// A watch (with the `chainlink-feed` pack) of the L2 sequencer uptime feed, if the
    /// chain is an L2: answer 0 is up, 1 is down.
    #[serde(default)]
    pub sequencer: Option<String>,
    /// After the sequencer comes back up, prices are not trusted for this long.
    #[serde(default = "default_grace", with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub sequencer_grace: Duration,
}

/// What a Safe must look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SafeExpectation {
    /// The chain's `name`.
    pub chain: String,
    /// A watch with the `safe` pack (its polls are compared).
    pub watch: String,
    /// Owners, in any order.
    pub owners: Vec<String>,
    /// Signatures required.
    pub threshold: u32,
    /// Enabled modules; absent: not checked.
    #[serde(default)]
    pub modules: Option<Vec<String>>,
    /// The transaction guard (`0x000…0` for none); absent: not checked.
    #[serde(default)]
    pub guard: Option<String>,
}

/// An operator set the risk service assesses and the rebalancer plans for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorSetConfig {
    /// Name of the set in findings, plans and `rebalance.requested`. Unique.
    #[schemars(regex(pattern = TOKEN_PATTERN))]
    pub name: String,
    /// The chain's `name`.
    pub chain: String,
    /// Where the stakes come from: a state poll of a watch returning operators and stakes.
    pub source: OperatorSource,
    /// Largest share of the set's stake one operator may hold, in basis points (Lido: 100).
    #[serde(default = "default_operator_cap")]
    pub cap_bps: u32,
    /// Largest share one group of an attribute may hold, by attribute, in basis points
    /// (`jurisdiction: 3000`). Attributes come from `metadata`.
    #[serde(default)]
    pub attribute_caps_bps: BTreeMap<String, u32>,
    /// A YAML file (relative to this configuration file) with each operator's attributes,
    /// performance score, own cap and, for Lido, node operator id.
    #[serde(default)]
    pub metadata: Option<PathBuf>,
    /// Operators scoring below this (0..1) are underperformers.
    #[serde(default)]
    pub min_performance: Option<f64>,
    /// An underperformer's cap, in basis points (0: all its stake moves away).
    #[serde(default)]
    pub underperformer_cap_bps: u32,
    /// Most stake one rebalance may move, in the set's unit.
    #[serde(default)]
    pub max_move: Option<u64>,
    /// How a plan becomes a Safe transaction; absent: plans are reported, nothing proposed.
    #[serde(default)]
    pub propose: Option<ProposeConfig>,
}

/// A state poll that lists operators and their stakes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorSource {
    /// The watch's name.
    pub watch: String,
    /// The function's signature as the watch reports it (`getOperators()`).
    pub function: String,
    /// The output holding the operators (addresses or ids).
    pub operators: String,
    /// The output holding their stakes, in the same order.
    pub stakes: String,
}

/// How a plan is encoded for the Safe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeConfig {
    /// The Safe that proposes (and signs) the calls.
    pub safe: String,
    /// `lido` (StakingRouter target validator limits) or `eigenlayer` (AllocationManager
    /// magnitudes).
    pub encoder: Encoder,
    /// Lido: the StakingRouter.
    #[serde(default)]
    pub staking_router: Option<String>,
    /// Lido: the staking module's id.
    #[serde(default)]
    pub module_id: Option<u64>,
    /// Lido: 1 soft (no new deposits above the limit), 2 forced (exits).
    #[serde(default = "default_mode")]
    pub target_limit_mode: u8,
    /// EigenLayer: the AllocationManager.
    #[serde(default)]
    pub allocation_manager: Option<String>,
    /// EigenLayer: the operator whose magnitude is allocated across operator sets (the
    /// set's members are `avs:id` operator sets).
    #[serde(default)]
    pub operator: Option<String>,
    /// EigenLayer: the strategy whose magnitude moves.
    #[serde(default)]
    pub strategy: Option<String>,
    /// EigenLayer: magnitude free to allocate at once (allocations beyond it wait for the
    /// deallocation delay).
    #[serde(default)]
    pub free_magnitude: u64,
    /// EigenLayer: the deallocation delay, in blocks, shown in the plan.
    #[serde(default)]
    pub deallocation_delay_blocks: Option<u64>,
}

/// Plan encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoder {
    Lido,
    Eigenlayer,
}

fn default_deviation() -> u32 {
    100
}
fn default_round_change() -> u32 {
    1000
}
fn default_grace() -> Duration {
    Duration::from_secs(3600)
}
fn default_operator_cap() -> u32 {
    100
}
fn default_mode() -> u8 {
    1
}

fn check_bps(v: &mut Validator<'_>, path: &str, bps: u32) {
    if bps > 10_000 {
        v.invalid_got(path, "must be at most 10000 (100%)", bps);
    }
}

impl RiskConfig {
    pub(crate) fn validate(&self, path: &str, v: &mut Validator<'_>) {
        let near = self.positions.near_liquidation;
        if !(near >= 1.0 && near.is_finite()) {
            v.invalid_got(
                &join(&join(path, "positions"), "near_liquidation"),
                "must be a health factor of at least 1",
                near,
            );
        }
        if self.positions.liquidation_bonus_bps < 10_000 {
            v.invalid_got(
                &join(&join(path, "positions"), "liquidation_bonus_bps"),
                "must be at least 10000 (the debt covered, plus the bonus)",
                self.positions.liquidation_bonus_bps,
            );
        }
        if self.check_interval.is_zero() {
            v.invalid(&join(path, "check_interval"), "must be longer than zero");
        }
        for (i, o) in self.oracles.iter().enumerate() {
            let p = format!("{path}.oracles[{i}]");
            if o.feeds.is_empty() {
                v.invalid(&join(&p, "feeds"), "needs at least one feed watch");
            }
            if o.heartbeat.is_zero() {
                v.invalid(&join(&p, "heartbeat"), "must be longer than zero");
            }
            check_bps(v, &join(&p, "max_deviation_bps"), o.max_deviation_bps);
        }
        for (i, s) in self.safes.iter().enumerate() {
            let p = format!("{path}.safes[{i}]");
            for (j, o) in s.owners.iter().enumerate() {
                if !is_address_syntax(o) {
                    v.invalid_got(&format!("{p}.owners[{j}]"), "must be an address", o);
                }
            }
            if s.threshold == 0 || s.threshold as usize > s.owners.len() {
                v.invalid_got(
                    &join(&p, "threshold"),
                    format!(
                        "must be between 1 and the number of owners ({})",
                        s.owners.len()
                    ),
                    s.threshold,
                );
            }
            for (j, m) in s.modules.iter().flatten().enumerate() {
                if !is_address_syntax(m) {
                    v.invalid_got(&format!("{p}.modules[{j}]"), "must be an address", m);
                }
            }
            if let Some(g) = &s.guard {
                if !is_address_syntax(g) {
                    v.invalid_got(
                        &join(&p, "guard"),
                        "must be an address (0x000…0 for none)",
                        g,
                    );
                }
            }
        }
    }
}

/// Checks the `operator_sets:` list.
pub(crate) fn validate_operator_sets(sets: &[OperatorSetConfig], v: &mut Validator<'_>) {
    let mut names = std::collections::HashSet::new();
    for (i, s) in sets.iter().enumerate() {
        let p = format!("operator_sets[{i}]");
        if !is_token(&s.name) {
            v.invalid_got(
                &join(&p, "name"),
                "must be letters, digits, `_` or `-`",
                &s.name,
            );
        } else if !names.insert(s.name.as_str()) {
            v.conflict(
                &join(&p, "name"),
                format!("another operator set is named `{}`", s.name),
            );
        }
        check_bps(v, &join(&p, "cap_bps"), s.cap_bps);
        if s.cap_bps == 0 {
            v.invalid(&join(&p, "cap_bps"), "must be above zero");
        }
        for (a, bps) in &s.attribute_caps_bps {
            check_bps(v, &format!("{p}.attribute_caps_bps.{a}"), *bps);
        }
        if !s.attribute_caps_bps.is_empty() && s.metadata.is_none() {
            v.conflict(
                &join(&p, "attribute_caps_bps"),
                "attribute caps need the operators' attributes: give `metadata`",
            );
        }
        check_bps(
            v,
            &join(&p, "underperformer_cap_bps"),
            s.underperformer_cap_bps,
        );
        if let Some(pr) = &s.propose {
            let pp = join(&p, "propose");
            if !is_address_syntax(&pr.safe) {
                v.invalid_got(&join(&pp, "safe"), "must be an address", &pr.safe);
            }
            let need = |v: &mut Validator<'_>, field: &str, value: &Option<String>| match value {
                Some(a) if is_address_syntax(a) => {}
                Some(a) => v.invalid_got(&join(&pp, field), "must be an address", a),
                None => v.invalid(&pp, format!("the {:?} encoder needs `{field}`", pr.encoder)),
            };
            match pr.encoder {
                Encoder::Lido => {
                    need(v, "staking_router", &pr.staking_router);
                    if pr.module_id.is_none() {
                        v.invalid(&pp, "the lido encoder needs `module_id`");
                    }
                    if !matches!(pr.target_limit_mode, 1 | 2) {
                        v.invalid_got(
                            &join(&pp, "target_limit_mode"),
                            "must be 1 (soft) or 2 (forced)",
                            pr.target_limit_mode,
                        );
                    }
                }
                Encoder::Eigenlayer => {
                    need(v, "allocation_manager", &pr.allocation_manager);
                    need(v, "operator", &pr.operator);
                    need(v, "strategy", &pr.strategy);
                }
            }
        }
    }
}
