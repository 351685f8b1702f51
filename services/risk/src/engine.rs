//! The rules, over state rebuilt from events: positions, oracles, operator sets, Safes.
//!
//! Each rule keeps the last thing it saw per entity (a position, a feed, a set, a Safe) and
//! reports *transitions*: a condition that starts (`active: true`), one that changes in a way
//! that matters (a position crossing the 0.95 close-factor line), one that ends
//! (`active: false`). A persisting condition is reported once. Findings have stable keys
//! built from the entity and the block or round where the condition began, so evaluating the
//! same observation twice (a redelivery, a restart) writes nothing new. Observations older
//! than what an entity has seen are ignored, so redeliveries out of order cannot move state
//! back. Findings continue the story of the observation that caused them (its correlation id;
//! it is their causation).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use alloy::primitives::{I256, U256};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use steward_config::{Config, OperatorSetConfig, OracleConfig, SafeExpectation};
use steward_events::{
    ChainLogObserved, ChainStateObserved, Envelope, OperatorShare, OracleSourceValue, Payload,
    RiskOperatorSetAssessed, RiskOperatorSlashed, RiskOracleAggregatorChanged, RiskOracleDeviation,
    RiskOracleSequencerDown, RiskOracleStale, RiskPositionLiquidatable,
    RiskPositionNearLiquidation, RiskSafeDrift, Severity,
};

use crate::concentration;
use crate::metadata::Metadata;

/// The `source` of every finding.
pub const SOURCE: &str = "risk";

const WAD: u128 = 1_000_000_000_000_000_000;
/// Aave: above this health factor at most half of a debt may be covered at once.
const CLOSE_FACTOR_HF: u128 = 950_000_000_000_000_000;

/// What the engine remembers, by entity. Persisted in the store (one row per entity), and
/// loaded back at start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub positions: HashMap<String, PositionState>,
    pub feeds: HashMap<String, FeedState>,
    pub assets: HashMap<String, AssetState>,
    pub sequencers: HashMap<String, SequencerState>,
    pub sets: HashMap<String, SetState>,
    pub safes: HashMap<String, SafeFieldState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PositionState {
    pub block: u64,
    /// `healthy`, `near` or `liquidatable`.
    pub status: String,
    /// Block where the current status began.
    pub since: u64,
    pub close_factor_bps: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedState {
    pub block: u64,
    pub round_id: Option<String>,
    pub answer: Option<String>,
    pub updated_at: Option<u64>,
    pub decimals: Option<u8>,
    pub aggregator: Option<String>,
    /// `updated_at` of the round reported stale, while it stays stale.
    pub stale: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssetState {
    /// Block where the current deviation began, while it lasts.
    pub deviation_since: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SequencerState {
    pub block: u64,
    pub up: bool,
    pub since: u64,
    /// The (up, since) reported as active, while it is.
    pub reported: Option<(bool, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetState {
    pub block: u64,
    /// What is breached (`operator:<id>:cap`, `group:<attr>=<value>`, `performance:<id>`),
    /// without the numbers, which move every block.
    pub breaches: Vec<String>,
    pub assessed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SafeFieldState {
    pub block: u64,
    /// The drifted value reported, while it differs.
    pub drifted: Option<Value>,
}

/// An oracle source: which asset and configuration a feed watch belongs to.
struct FeedRef {
    asset: usize,
    sequencer: bool,
}

/// The rules with their configuration and state.
pub struct Engine {
    config: Arc<Config>,
    chain_names: HashMap<u64, String>,
    /// (chain, watch) → feed roles.
    feeds: HashMap<(String, String), Vec<FeedRef>>,
    /// (chain, watch) → Safe expectations.
    safes: HashMap<(String, String), usize>,
    /// (chain, watch, function) → operator sets.
    sources: HashMap<(String, String, String), Vec<usize>>,
    metadata: Vec<Metadata>,
    pub state: State,
    /// Entities changed since the last [`Engine::take_dirty`].
    dirty: BTreeSet<String>,
}

fn u256(v: Option<&Value>) -> Option<U256> {
    v?.as_str()?.parse().ok()
}

/// A finding that continues `cause`'s story under a stable key of its own.
fn finding<P: Payload>(cause: Option<&Envelope>, key: String, payload: &P) -> Envelope {
    let mut e = Envelope::new(SOURCE, format!("risk:{key}"), payload);
    if let Some(c) = cause {
        e.correlation_id = c.correlation_id;
        e.causation_id = Some(c.id);
        e.chain_id = c.chain_id;
    }
    e
}

fn bps_of(part: U256, whole: U256) -> u32 {
    if whole.is_zero() {
        return 0;
    }
    let v = part.saturating_mul(U256::from(10_000u32)) / whole;
    v.try_into().unwrap_or(u32::MAX)
}

impl Engine {
    /// The engine for `config`, with empty state. Metadata files of the operator sets are read
    /// here; a file that cannot be read is an error (the configuration check reports it first).
    pub fn new(config: Arc<Config>) -> Result<Self, String> {
        let chain_names = config
            .chains
            .iter()
            .map(|c| (c.chain_id, c.name.clone()))
            .collect();
        let mut feeds: HashMap<(String, String), Vec<FeedRef>> = HashMap::new();
        for (i, o) in config.risk.oracles.iter().enumerate() {
            for f in &o.feeds {
                feeds
                    .entry((o.chain.clone(), f.clone()))
                    .or_default()
                    .push(FeedRef {
                        asset: i,
                        sequencer: false,
                    });
            }
            if let Some(s) = &o.sequencer {
                feeds
                    .entry((o.chain.clone(), s.clone()))
                    .or_default()
                    .push(FeedRef {
                        asset: i,
                        sequencer: true,
                    });
            }
        }
        let safes = config
            .risk
            .safes
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.chain.clone(), s.watch.clone()), i))
            .collect();
        let mut sources: HashMap<(String, String, String), Vec<usize>> = HashMap::new();
        let mut metadata = Vec::new();
        for (i, s) in config.operator_sets.iter().enumerate() {
            sources
                .entry((
                    s.chain.clone(),
                    s.source.watch.clone(),
                    s.source.function.clone(),
                ))
                .or_default()
                .push(i);
            metadata.push(match &s.metadata {
                Some(p) => Metadata::load(&resolve(&config, p))?,
                None => Metadata::default(),
            });
        }
        Ok(Self {
            config,
            chain_names,
            feeds,
            safes,
            sources,
            metadata,
            state: State::default(),
            dirty: BTreeSet::new(),
        })
    }

    /// Entities changed since the last call, with their state as JSON, to persist.
    pub fn take_dirty(&mut self) -> Vec<(String, Value)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|k| {
                let (kind, id) = k.split_once('|')?;
                let v = match kind {
                    "position" => serde_json::to_value(self.state.positions.get(id)?),
                    "feed" => serde_json::to_value(self.state.feeds.get(id)?),
                    "asset" => serde_json::to_value(self.state.assets.get(id)?),
                    "sequencer" => serde_json::to_value(self.state.sequencers.get(id)?),
                    "set" => serde_json::to_value(self.state.sets.get(id)?),
                    "safe" => serde_json::to_value(self.state.safes.get(id)?),
                    _ => return None,
                }
                .ok()?;
                Some((k, v))
            })
            .collect()
    }

    /// Loads one persisted entity (`kind|id` → state).
    pub fn restore(&mut self, entity: &str, value: Value) -> Result<(), String> {
        let (kind, id) = entity
            .split_once('|')
            .ok_or_else(|| format!("malformed entity key {entity:?}"))?;
        let id = id.to_owned();
        let bad = |e: serde_json::Error| format!("stored state of {entity} does not decode: {e}");
        match kind {
            "position" => {
                self.state
                    .positions
                    .insert(id, serde_json::from_value(value).map_err(bad)?);
            }
            "feed" => {
                self.state
                    .feeds
                    .insert(id, serde_json::from_value(value).map_err(bad)?);
            }
            "asset" => {
                self.state
                    .assets
                    .insert(id, serde_json::from_value(value).map_err(bad)?);
            }
            "sequencer" => {
                self.state
                    .sequencers
                    .insert(id, serde_json::from_value(value).map_err(bad)?);
            }
            "set" => {
                self.state
                    .sets
                    .insert(id, serde_json::from_value(value).map_err(bad)?);
            }
            "safe" => {
                self.state
                    .safes
                    .insert(id, serde_json::from_value(value).map_err(bad)?);
            }
            other => return Err(format!("unknown entity kind {other:?} in stored state")),
        }
        Ok(())
    }

    fn touch(&mut self, kind: &str, id: &str) {
        self.dirty.insert(format!("{kind}|{id}"));
    }

    /// Findings caused by one event.
    pub fn on_event(&mut self, event: &Envelope) -> Vec<Envelope> {
        let chain = event
            .chain_id
            .and_then(|id| self.chain_names.get(&id).cloned())
            .unwrap_or_default();
        match event.event_type.as_str() {
            t if t == ChainStateObserved::TYPE => match event.payload::<ChainStateObserved>() {
                Ok(s) => self.on_state(event, &chain, &s),
                Err(e) => {
                    tracing::warn!(key = %event.key, error = %e, "a chain.state.observed that does not decode; ignored");
                    Vec::new()
                }
            },
            t if t == ChainLogObserved::TYPE => match event.payload::<ChainLogObserved>() {
                Ok(l) if !l.removed && l.event == "OperatorSlashed" => self.on_slashed(event, &l),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn on_state(&mut self, cause: &Envelope, chain: &str, s: &ChainStateObserved) -> Vec<Envelope> {
        let mut out = Vec::new();
        if s.function == "getUserAccountData(address)" {
            out.extend(self.position(cause, chain, s));
        }
        let key = (chain.to_owned(), s.watch.clone());
        if let Some(refs) = self.feeds.get(&key) {
            let roles: Vec<(usize, bool)> = refs.iter().map(|r| (r.asset, r.sequencer)).collect();
            for (asset, sequencer) in roles {
                if sequencer {
                    out.extend(self.sequencer(Some(cause), chain, asset, Some(s), None));
                } else {
                    out.extend(self.feed(cause, chain, asset, s));
                }
            }
        }
        if let Some(&i) = self.safes.get(&key) {
            out.extend(self.safe(cause, chain, i, s));
        }
        if let Some(sets) =
            self.sources
                .get(&(chain.to_owned(), s.watch.clone(), s.function.clone()))
        {
            for i in sets.clone() {
                out.extend(self.operator_set(cause, i, s));
            }
        }
        out
    }

    // ------------------------------------------------------------------ positions

    fn position(&mut self, cause: &Envelope, chain: &str, s: &ChainStateObserved) -> Vec<Envelope> {
        let Some(user) = s.args.first().and_then(Value::as_str) else {
            return Vec::new();
        };
        let (Some(hf), Some(collateral), Some(debt)) = (
            u256(s.value.get("healthFactor")),
            u256(s.value.get("totalCollateralBase")),
            u256(s.value.get("totalDebtBase")),
        ) else {
            return Vec::new();
        };
        let id = format!("{chain}/{}/{user}", s.address);
        let prev = self.state.positions.get(&id).cloned().unwrap_or_default();
        if s.block_number < prev.block {
            return Vec::new();
        }
        let near_edge = wad(self.config.risk.positions.near_liquidation);
        let (status, close_factor_bps) = if !debt.is_zero() && hf < U256::from(WAD) {
            let cf = if hf > U256::from(CLOSE_FACTOR_HF) {
                5000
            } else {
                10_000
            };
            ("liquidatable", cf)
        } else if !debt.is_zero() && hf < near_edge {
            ("near", 0)
        } else {
            ("healthy", 0)
        };
        let since = if prev.status == status {
            prev.since
        } else {
            s.block_number
        };
        let mut out = Vec::new();
        let base = format!("position:{id}");
        let severity = if close_factor_bps == 10_000 {
            Severity::Critical
        } else {
            Severity::High
        };
        let bonus = self.config.risk.positions.liquidation_bonus_bps;
        let liquidatable = |active: bool, cf: u32| {
            let max_debt = debt.saturating_mul(U256::from(cf)) / U256::from(10_000u32);
            let expected = (max_debt.saturating_mul(U256::from(bonus)) / U256::from(10_000u32))
                .min(collateral);
            RiskPositionLiquidatable {
                protocol: "aave-v3".into(),
                pool: s.address.clone(),
                user: user.to_owned(),
                health_factor: hf.to_string(),
                total_collateral_base: collateral.to_string(),
                total_debt_base: debt.to_string(),
                close_factor_bps: cf,
                max_debt_to_cover_base: max_debt.to_string(),
                severity: if active { severity } else { Severity::Info },
                block_number: s.block_number,
                active,
                expected_collateral_base: Some(expected.to_string()),
                liquidation_bonus_bps: Some(bonus),
            }
        };
        let near = |active: bool| RiskPositionNearLiquidation {
            protocol: "aave-v3".into(),
            pool: s.address.clone(),
            user: user.to_owned(),
            health_factor: hf.to_string(),
            threshold: near_edge.to_string(),
            total_collateral_base: collateral.to_string(),
            total_debt_base: debt.to_string(),
            severity: if active {
                Severity::Medium
            } else {
                Severity::Info
            },
            block_number: s.block_number,
            active,
        };
        // Ends of what was.
        if prev.status == "liquidatable" && status != "liquidatable" {
            out.push(finding(
                Some(cause),
                format!("{base}:liquidatable:{}:resolved", prev.since),
                &liquidatable(false, prev.close_factor_bps),
            ));
        }
        if prev.status == "near" && status != "near" {
            out.push(finding(
                Some(cause),
                format!("{base}:near:{}:resolved", prev.since),
                &near(false),
            ));
        }
        // Starts, and a liquidatable position crossing the close-factor line.
        if status == "liquidatable"
            && (prev.status != "liquidatable" || prev.close_factor_bps != close_factor_bps)
        {
            out.push(finding(
                Some(cause),
                format!("{base}:liquidatable:{since}:{close_factor_bps}"),
                &liquidatable(true, close_factor_bps),
            ));
        }
        if status == "near" && prev.status != "near" {
            out.push(finding(
                Some(cause),
                format!("{base}:near:{since}"),
                &near(true),
            ));
        }
        let next = PositionState {
            block: s.block_number,
            status: status.to_owned(),
            since,
            close_factor_bps,
        };
        if next != prev {
            self.state.positions.insert(id.clone(), next);
            self.touch("position", &id);
        }
        out
    }

    // ------------------------------------------------------------------ oracles

    fn feed(
        &mut self,
        cause: &Envelope,
        chain: &str,
        asset: usize,
        s: &ChainStateObserved,
    ) -> Vec<Envelope> {
        let oracle = self.config.risk.oracles[asset].clone();
        let id = format!("{chain}/{}/{}", s.watch, s.address);
        let mut st = self.state.feeds.get(&id).cloned().unwrap_or_default();
        if s.block_number < st.block {
            return Vec::new();
        }
        let mut out = Vec::new();
        match s.function.as_str() {
            "decimals()" => {
                st.decimals = s
                    .value
                    .get("0")
                    .and_then(Value::as_str)
                    .and_then(|d| d.parse().ok());
            }
            "aggregator()" => {
                let current = s.value.get("0").and_then(Value::as_str).map(str::to_owned);
                if let (Some(prev), Some(cur)) = (&st.aggregator, &current) {
                    if prev != cur {
                        out.push(finding(
                            Some(cause),
                            format!("oracle:{id}:aggregator:{cur}:{}", s.block_number),
                            &RiskOracleAggregatorChanged {
                                asset: oracle.asset.clone(),
                                feed: s.address.clone(),
                                previous: prev.clone(),
                                current: cur.clone(),
                                block_number: s.block_number,
                                severity: Severity::Medium,
                            },
                        ));
                    }
                }
                st.aggregator = current;
            }
            "latestRoundData()" => {
                let round = s
                    .value
                    .get("roundId")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let answer = s
                    .value
                    .get("answer")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let updated = u256(s.value.get("updatedAt")).and_then(|u| u64::try_from(u).ok());
                if round.is_some() && round == st.round_id {
                    // The same round again (another block): nothing new.
                } else if let (Some(answer), Some(updated)) = (answer, updated) {
                    // A newer round ends a staleness.
                    if let Some(stale_at) = st.stale {
                        if updated > stale_at {
                            out.push(finding(
                                Some(cause),
                                format!("oracle:{id}:stale:{stale_at}:resolved"),
                                &self.stale(&oracle, s.address.clone(), &answer, 0, false),
                            ));
                            st.stale = None;
                        }
                    }
                    // A jump from the previous round.
                    if let (Some(prev), Some(new)) = (
                        st.answer.as_deref().and_then(|a| a.parse::<I256>().ok()),
                        answer.parse::<I256>().ok(),
                    ) {
                        if !prev.is_zero() {
                            let diff = (new - prev).unsigned_abs();
                            let bps = bps_of(diff, prev.unsigned_abs());
                            if bps > oracle.max_round_change_bps {
                                out.push(finding(
                                    Some(cause),
                                    format!(
                                        "oracle:{id}:round:{}",
                                        round.clone().unwrap_or_default()
                                    ),
                                    &RiskOracleDeviation {
                                        asset: oracle.asset.clone(),
                                        sources: vec![OracleSourceValue {
                                            feed: s.address.clone(),
                                            answer: answer.clone(),
                                            updated_at: updated,
                                        }],
                                        median: prev.to_string(),
                                        deviation_bps: bps,
                                        bound_bps: oracle.max_round_change_bps,
                                        severity: Severity::High,
                                        active: true,
                                        kind: Some("round".into()),
                                    },
                                ));
                            }
                        }
                    }
                    st.round_id = round;
                    st.answer = Some(answer);
                    st.updated_at = Some(updated);
                }
            }
            _ => {}
        }
        st.block = s.block_number;
        let changed = self.state.feeds.get(&id) != Some(&st);
        if changed {
            self.state.feeds.insert(id.clone(), st);
            self.touch("feed", &id);
        }
        if s.function == "latestRoundData()" || s.function == "decimals()" {
            out.extend(self.deviation(Some(cause), chain, asset, s.block_number));
        }
        out
    }

    fn stale(
        &self,
        oracle: &OracleConfig,
        feed: String,
        answer: &str,
        age: u64,
        active: bool,
    ) -> RiskOracleStale {
        RiskOracleStale {
            asset: oracle.asset.clone(),
            feed,
            age_secs: age,
            heartbeat_secs: oracle.heartbeat.as_secs(),
            last_answer: answer.to_owned(),
            severity: if active {
                Severity::High
            } else {
                Severity::Info
            },
            active,
        }
    }

    /// Sources far from their median.
    fn deviation(
        &mut self,
        cause: Option<&Envelope>,
        chain: &str,
        asset: usize,
        block: u64,
    ) -> Vec<Envelope> {
        let oracle = self.config.risk.oracles[asset].clone();
        let mut sources: Vec<(OracleSourceValue, I256)> = Vec::new();
        for f in &oracle.feeds {
            let prefix = format!("{chain}/{f}/");
            for (id, st) in self
                .state
                .feeds
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
            {
                let (Some(a), Some(u)) = (&st.answer, st.updated_at) else {
                    continue;
                };
                let Ok(raw) = a.parse::<I256>() else { continue };
                // To 18 decimals.
                let d = st.decimals.unwrap_or(8).min(36);
                let scaled = if d <= 18 {
                    raw.saturating_mul(
                        I256::try_from(10u128.pow(u32::from(18 - d))).unwrap_or(I256::ONE),
                    )
                } else {
                    raw / I256::try_from(10u128.pow(u32::from(d - 18))).unwrap_or(I256::ONE)
                };
                sources.push((
                    OracleSourceValue {
                        feed: id[prefix.len()..].to_owned(),
                        answer: a.clone(),
                        updated_at: u,
                    },
                    scaled,
                ));
            }
        }
        sources.sort_by(|a, b| a.0.feed.cmp(&b.0.feed));
        let mut st = self
            .state
            .assets
            .get(&oracle.asset)
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        if sources.len() < 2 {
            return out;
        }
        let mut values: Vec<I256> = sources.iter().map(|s| s.1).collect();
        values.sort();
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / I256::try_from(2).unwrap_or(I256::ONE)
        };
        let worst = sources
            .iter()
            .map(|(_, v)| bps_of((*v - median).unsigned_abs(), median.unsigned_abs()))
            .max()
            .unwrap_or(0);
        let over = worst > oracle.max_deviation_bps;
        let report = |active: bool| RiskOracleDeviation {
            asset: oracle.asset.clone(),
            sources: sources.iter().map(|s| s.0.clone()).collect(),
            median: median.to_string(),
            deviation_bps: worst,
            bound_bps: oracle.max_deviation_bps,
            severity: if active {
                Severity::High
            } else {
                Severity::Info
            },
            active,
            kind: Some("sources".into()),
        };
        match (over, st.deviation_since) {
            (true, None) => {
                out.push(finding(
                    cause,
                    format!("oracle:{}:deviation:{block}", oracle.asset),
                    &report(true),
                ));
                st.deviation_since = Some(block);
            }
            (false, Some(since)) => {
                out.push(finding(
                    cause,
                    format!("oracle:{}:deviation:{since}:resolved", oracle.asset),
                    &report(false),
                ));
                st.deviation_since = None;
            }
            _ => {}
        }
        if self.state.assets.get(&oracle.asset) != Some(&st) {
            self.state.assets.insert(oracle.asset.clone(), st);
            let a = oracle.asset.clone();
            self.touch("asset", &a);
        }
        out
    }

    fn sequencer(
        &mut self,
        cause: Option<&Envelope>,
        chain: &str,
        asset: usize,
        s: Option<&ChainStateObserved>,
        now: Option<u64>,
    ) -> Vec<Envelope> {
        let oracle = self.config.risk.oracles[asset].clone();
        let Some(watch) = oracle.sequencer.clone() else {
            return Vec::new();
        };
        let id = format!("{chain}/{watch}");
        let mut st = self.state.sequencers.get(&id).cloned().unwrap_or_default();
        let mut feed = String::new();
        if let Some(s) = s {
            if s.function != "latestRoundData()" || s.block_number < st.block {
                return Vec::new();
            }
            let Some(answer) = s.value.get("answer").and_then(Value::as_str) else {
                return Vec::new();
            };
            st.up = answer == "0";
            st.since = u256(s.value.get("startedAt"))
                .and_then(|u| u64::try_from(u).ok())
                .unwrap_or(0);
            st.block = s.block_number;
            feed = s.address.clone();
        }
        if st.block == 0 {
            // Never observed: nothing to say yet.
            return Vec::new();
        }
        let now = now.unwrap_or_else(|| chrono::Utc::now().timestamp().max(0) as u64);
        let grace = oracle.sequencer_grace.as_secs();
        let active = !st.up || now.saturating_sub(st.since) < grace;
        let mut out = Vec::new();
        let report = |up: bool, since: u64, active: bool, feed: String| RiskOracleSequencerDown {
            asset: oracle.asset.clone(),
            feed,
            up,
            since,
            grace_secs: grace,
            severity: match (active, up) {
                (false, _) => Severity::Info,
                (true, false) => Severity::Critical,
                (true, true) => Severity::High,
            },
            active,
        };
        match (active, st.reported) {
            (true, Some(r)) if r == (st.up, st.since) => {}
            (true, prev) => {
                if let Some((up, since)) = prev {
                    out.push(finding(
                        cause,
                        format!("sequencer:{id}:{up}:{since}:resolved"),
                        &report(up, since, false, feed.clone()),
                    ));
                }
                out.push(finding(
                    cause,
                    format!("sequencer:{id}:{}:{}", st.up, st.since),
                    &report(st.up, st.since, true, feed.clone()),
                ));
                st.reported = Some((st.up, st.since));
            }
            (false, Some((up, since))) => {
                out.push(finding(
                    cause,
                    format!("sequencer:{id}:{up}:{since}:resolved"),
                    &report(up, since, false, feed),
                ));
                st.reported = None;
            }
            (false, None) => {}
        }
        if self.state.sequencers.get(&id) != Some(&st) {
            self.state.sequencers.insert(id.clone(), st);
            self.touch("sequencer", &id);
        }
        out
    }

    /// Time-based conditions: stale feeds, sequencer grace periods ending. `now` in seconds
    /// since the epoch.
    pub fn on_tick(&mut self, now: u64) -> Vec<Envelope> {
        let mut out = Vec::new();
        let oracles = self.config.risk.oracles.clone();
        let chain_ids: HashMap<String, u64> = self
            .chain_names
            .iter()
            .map(|(k, v)| (v.clone(), *k))
            .collect();
        for (asset, oracle) in oracles.iter().enumerate() {
            for f in &oracle.feeds {
                let prefix = format!("{}/{f}/", oracle.chain);
                let ids: Vec<String> = self
                    .state
                    .feeds
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .cloned()
                    .collect();
                for id in ids {
                    let st = self.state.feeds[&id].clone();
                    let (Some(updated), Some(answer)) = (st.updated_at, st.answer.clone()) else {
                        continue;
                    };
                    let age = now.saturating_sub(updated);
                    if age > oracle.heartbeat.as_secs() && st.stale != Some(updated) {
                        let mut e = finding(
                            None,
                            format!("oracle:{id}:stale:{updated}"),
                            &self.stale(oracle, id[prefix.len()..].to_owned(), &answer, age, true),
                        );
                        e.chain_id = chain_ids.get(&oracle.chain).copied();
                        out.push(e);
                        let mut next = st.clone();
                        next.stale = Some(updated);
                        self.state.feeds.insert(id.clone(), next);
                        self.touch("feed", &id);
                    }
                }
            }
            if oracle.sequencer.is_some() {
                let mut found = self.sequencer(None, &oracle.chain, asset, None, Some(now));
                for e in &mut found {
                    e.chain_id = chain_ids.get(&oracle.chain).copied();
                }
                out.extend(found);
            }
        }
        out
    }

    // ------------------------------------------------------------------ operator sets

    fn operator_set(
        &mut self,
        cause: &Envelope,
        index: usize,
        s: &ChainStateObserved,
    ) -> Vec<Envelope> {
        let cfg: OperatorSetConfig = self.config.operator_sets[index].clone();
        let mut st = self.state.sets.get(&cfg.name).cloned().unwrap_or_default();
        if s.block_number < st.block {
            return Vec::new();
        }
        let (Some(Value::Array(ops)), Some(Value::Array(stakes))) = (
            s.value.get(&cfg.source.operators),
            s.value.get(&cfg.source.stakes),
        ) else {
            tracing::warn!(set = %cfg.name, function = %s.function, "the operator set's source has no `{}`/`{}` arrays; check operator_sets[].source", cfg.source.operators, cfg.source.stakes);
            return Vec::new();
        };
        let ids: Vec<String> = ops
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect();
        let stakes: Vec<u128> = stakes
            .iter()
            .map(|v| v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0))
            .collect();
        let a = assess(&cfg, &self.metadata[index], &ids, &stakes);
        let mut out = Vec::new();
        if !st.assessed || st.breaches != a.identities {
            let mut payload = a.payload;
            payload.block_number = Some(s.block_number);
            out.push(finding(
                Some(cause),
                format!("operator_set:{}:{}", cfg.name, s.block_number),
                &payload,
            ));
        }
        st.block = s.block_number;
        st.breaches = a.identities;
        st.assessed = true;
        if self.state.sets.get(&cfg.name) != Some(&st) {
            self.state.sets.insert(cfg.name.clone(), st);
            let n = cfg.name.clone();
            self.touch("set", &n);
        }
        out
    }

    fn on_slashed(&mut self, cause: &Envelope, l: &ChainLogObserved) -> Vec<Envelope> {
        let operator = l
            .args
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let set = self
            .config
            .operator_sets
            .iter()
            .zip(&self.metadata)
            .find(|(_, m)| m.get(&operator).is_some())
            .map(|(s, _)| s.name.clone());
        vec![finding(
            Some(cause),
            format!("slashed:{}", cause.key),
            &RiskOperatorSlashed {
                operator_set: set,
                operator,
                details: l.args.clone(),
                transaction_hash: l.transaction_hash.clone(),
                block_number: l.block_number,
                severity: Severity::Critical,
            },
        )]
    }

    // ------------------------------------------------------------------ Safes

    fn safe(
        &mut self,
        cause: &Envelope,
        chain: &str,
        index: usize,
        s: &ChainStateObserved,
    ) -> Vec<Envelope> {
        let exp: SafeExpectation = self.config.risk.safes[index].clone();
        let lower = |v: &str| v.to_ascii_lowercase();
        let (field, expected, actual): (&str, Value, Value) = match s.function.as_str() {
            "getOwners()" => {
                let mut want: Vec<String> = exp.owners.iter().map(|o| lower(o)).collect();
                want.sort();
                let mut got: Vec<String> = s
                    .value
                    .get("0")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(lower)).collect())
                    .unwrap_or_default();
                got.sort();
                ("owners", Value::from(want), Value::from(got))
            }
            "getThreshold()" => {
                let got = s
                    .value
                    .get("0")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                (
                    "threshold",
                    Value::from(exp.threshold.to_string()),
                    Value::from(got),
                )
            }
            "getModulesPaginated(address,uint256)" => {
                let Some(want) = &exp.modules else {
                    return Vec::new();
                };
                let mut want: Vec<String> = want.iter().map(|m| lower(m)).collect();
                want.sort();
                let mut got: Vec<String> = s
                    .value
                    .get("array")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(lower)).collect())
                    .unwrap_or_default();
                got.sort();
                ("modules", Value::from(want), Value::from(got))
            }
            "getStorageAt(uint256,uint256)" => {
                let Some(want) = &exp.guard else {
                    return Vec::new();
                };
                let raw = s.value.get("0").and_then(Value::as_str).unwrap_or_default();
                let got = if raw.len() >= 42 {
                    format!("0x{}", &raw[raw.len() - 40..])
                } else {
                    raw.to_owned()
                };
                ("guard", Value::from(lower(want)), Value::from(lower(&got)))
            }
            _ => return Vec::new(),
        };
        let id = format!("{chain}/{}/{field}", s.address);
        let mut st = self.state.safes.get(&id).cloned().unwrap_or_default();
        if s.block_number < st.block {
            return Vec::new();
        }
        let mut out = Vec::new();
        let report = |active: bool, actual: Value| RiskSafeDrift {
            safe: s.address.clone(),
            field: field.to_owned(),
            expected: expected.clone(),
            actual,
            severity: if active {
                Severity::Critical
            } else {
                Severity::Info
            },
            active,
        };
        let drift = expected != actual;
        match (&st.drifted, drift) {
            (Some(prev), true) if *prev == actual => {}
            (prev, true) => {
                if prev.is_some() {
                    // Drifted to yet another value: the old report ends, a new one starts.
                    out.push(finding(
                        Some(cause),
                        format!(
                            "safe:{id}:{}:resolved",
                            hash(prev.as_ref().unwrap_or(&Value::Null))
                        ),
                        &report(false, prev.clone().unwrap_or(Value::Null)),
                    ));
                }
                out.push(finding(
                    Some(cause),
                    format!("safe:{id}:{}", hash(&actual)),
                    &report(true, actual.clone()),
                ));
                st.drifted = Some(actual.clone());
            }
            (Some(prev), false) => {
                out.push(finding(
                    Some(cause),
                    format!("safe:{id}:{}:resolved", hash(prev)),
                    &report(false, actual.clone()),
                ));
                st.drifted = None;
            }
            (None, false) => {}
        }
        st.block = s.block_number;
        if self.state.safes.get(&id) != Some(&st) {
            self.state.safes.insert(id.clone(), st);
            self.touch("safe", &id);
        }
        out
    }
}

/// `x` scaled by 1e18, exactly as written (1.1 is 1100000000000000000, not the float's
/// 1100000000000000128).
fn wad(x: f64) -> U256 {
    let text = format!("{x}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac: String = frac
        .chars()
        .chain(std::iter::repeat('0'))
        .take(18)
        .collect();
    let int: U256 = int.parse().unwrap_or_default();
    let frac: U256 = frac.parse().unwrap_or_default();
    int.saturating_mul(U256::from(WAD)).saturating_add(frac)
}

fn hash(v: &Value) -> String {
    steward_events::derive_key(&v.to_string(), "value")[..12].to_owned()
}

fn resolve(config: &Config, p: &PathBuf) -> PathBuf {
    if p.is_absolute() {
        p.clone()
    } else {
        config.base_dir.join(p)
    }
}

/// An operator set's assessment.
pub struct Assessment {
    pub payload: RiskOperatorSetAssessed,
    /// What is breached, without numbers (see [`SetState::breaches`]).
    pub identities: Vec<String>,
}

/// Assesses stakes against the set's caps: shares, HHI, Nakamoto coefficients, attribute
/// concentration, underperformers.
pub fn assess(
    cfg: &OperatorSetConfig,
    meta: &Metadata,
    ids: &[String],
    stakes: &[u128],
) -> Assessment {
    let total: u128 = stakes.iter().sum();
    let shares = concentration::shares_bps(stakes);
    let mut breaches = Vec::new();
    let mut identities = Vec::new();
    let mut operators = Vec::new();
    for ((id, &stake), &share) in ids.iter().zip(stakes).zip(&shares) {
        let info = meta.get(id);
        let own_cap = info
            .and_then(|i| i.cap)
            .map(|c| (u128::from(c) * 10_000).checked_div(total).unwrap_or(0) as u32);
        let cap = own_cap.map_or(cfg.cap_bps, |c| c.min(cfg.cap_bps));
        if share > cap {
            identities.push(format!("operator:{id}:cap"));
            breaches.push(format!(
                "operator {id} holds {:.2}% of the stake, above its cap of {:.2}%",
                f64::from(share) / 100.0,
                f64::from(cap) / 100.0
            ));
        }
        if let (Some(min), Some(p)) = (cfg.min_performance, info.and_then(|i| i.performance)) {
            if p < min && stake > 0 {
                identities.push(format!("performance:{id}"));
                breaches.push(format!("operator {id} performs at {p:.3}, below {min:.3}"));
            }
        }
        operators.push(OperatorShare {
            operator: id.clone(),
            stake: stake.to_string(),
            share_bps: share,
            cap_bps: cap,
        });
    }
    let mut attribute_shares_bps = BTreeMap::new();
    for (attr, cap) in &cfg.attribute_caps_bps {
        let mut groups: BTreeMap<String, u128> = BTreeMap::new();
        for (id, &stake) in ids.iter().zip(stakes) {
            if let Some(v) = meta.get(id).and_then(|i| i.attributes.get(attr)) {
                *groups.entry(v.clone()).or_default() += stake;
            }
        }
        for (value, load) in groups {
            let share = (load * 10_000).checked_div(total).unwrap_or(0) as u32;
            attribute_shares_bps.insert(format!("{attr}={value}"), share);
            if share > *cap {
                identities.push(format!("group:{attr}={value}"));
                breaches.push(format!(
                    "{attr}={value} holds {:.2}% of the stake, above its cap of {:.2}%",
                    f64::from(share) / 100.0,
                    f64::from(*cap) / 100.0
                ));
            }
        }
    }
    let severity = if breaches
        .iter()
        .any(|b| b.starts_with("operator") && b.contains("above its cap"))
    {
        Severity::High
    } else if breaches.is_empty() {
        Severity::Info
    } else {
        Severity::Medium
    };
    Assessment {
        payload: RiskOperatorSetAssessed {
            operator_set: cfg.name.clone(),
            total_stake: total.to_string(),
            operators,
            hhi: concentration::hhi(stakes),
            hhi_normalised: concentration::hhi_normalised(stakes),
            nakamoto: [
                concentration::nakamoto(stakes, 1, 3),
                concentration::nakamoto(stakes, 1, 2),
                concentration::nakamoto(stakes, 2, 3),
            ],
            breaches,
            severity,
            attribute_shares_bps,
            block_number: None,
        },
        identities,
    }
}

/// An object of named values, for tests.
pub fn map(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect()
}
