//! The `rebalancer` service: turns an operator set that breaks policy into a concrete,
//! minimal, explained plan, encoded as the contract calls a Safe will sign.
//!
//! It keeps the latest `risk.operator_set.assessed` of each set (`rebalancer_sets`) and, on
//! `rebalance.requested` (from a playbook), plans with [`plan::plan`] under the set's policy
//! in `operator_sets:`, emits `rebalance.planned` (target allocation, moves with reasons,
//! what stays unmet), then, when the set has `propose:`, `safe.proposal.requested` with the
//! calls of [`encode`]. Both are derived from the request (deterministic keys): a redelivered
//! request plans again, identically, and the log keeps one copy.

pub mod encode;
mod flow;
pub mod plan;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::Address;
use async_trait::async_trait;
use steward_config::{Config, Encoder, OperatorSetConfig};
use steward_events::{
    Envelope, OperatorTarget, Payload, RebalanceMove, RebalancePlanned, RebalanceRequested,
    RiskOperatorSetAssessed, SafeProposalRequested,
};
use steward_log::{HandlerError, Subscription};
use steward_risk::metadata::Metadata;
use steward_runtime::{Service, ServiceContext};
use steward_store::sqlx::{self, Row};
use steward_store::Store;
use tracing::Instrument;

pub const NAME: &str = "rebalancer";

const BATCH: usize = 200;

pub fn service() -> Box<dyn Service> {
    Box::new(Rebalancer)
}

struct Rebalancer;

/// The latest assessment of `set`, if any.
pub async fn latest(store: &Store, set: &str) -> anyhow::Result<Option<RiskOperatorSetAssessed>> {
    let row = sqlx::query("SELECT assessment FROM rebalancer_sets WHERE name = $1")
        .bind(set)
        .fetch_optional(store.pool())
        .await?;
    match row {
        Some(r) => Ok(Some(serde_json::from_str(&r.try_get::<String, _>(0)?)?)),
        None => Ok(None),
    }
}

async fn remember(store: &Store, sequence: u64, a: &RiskOperatorSetAssessed) -> anyhow::Result<()> {
    let seq = i64::try_from(sequence).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO rebalancer_sets (name, sequence, assessment, updated_at_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET sequence = excluded.sequence, assessment = excluded.assessment, \
         updated_at_ms = excluded.updated_at_ms WHERE rebalancer_sets.sequence < excluded.sequence",
    )
    .bind(&a.operator_set)
    .bind(seq)
    .bind(serde_json::to_string(a)?)
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The plan for `request`, against the set's latest assessment: the events to append.
pub fn respond(
    config: &Config,
    request: &Envelope,
    req: &RebalanceRequested,
    assessment: Option<&RiskOperatorSetAssessed>,
) -> Result<Vec<Envelope>, String> {
    let Some(set) = config
        .operator_sets
        .iter()
        .find(|s| s.name == req.operator_set)
    else {
        return Err(format!(
            "no operator set named `{}` in `operator_sets:`",
            req.operator_set
        ));
    };
    let meta = match &set.metadata {
        Some(p) => Metadata::load(&config.base_dir.join(p))?,
        None => Metadata::default(),
    };
    let mut planned = RebalancePlanned {
        operator_set: set.name.clone(),
        moves: Vec::new(),
        total_moved: "0".into(),
        unmet: Vec::new(),
        target: Vec::new(),
        method: None,
        notes: Vec::new(),
    };
    let Some(a) = assessment else {
        planned.unmet.push(format!(
            "no assessment of `{}` yet: the risk service has not seen its stakes (its source watch must have polled)",
            set.name
        ));
        return Ok(vec![request.derive(NAME, "plan", &planned)]);
    };
    let operators: Vec<plan::Operator> = a
        .operators
        .iter()
        .map(|o| {
            let info = meta.get(&o.operator);
            plan::Operator {
                id: o.operator.clone(),
                stake: o.stake.parse().unwrap_or(0),
                cap: info.and_then(|i| i.cap).map(u128::from),
                attributes: info.map(|i| i.attributes.clone()).unwrap_or_default(),
                performance: info.and_then(|i| i.performance),
            }
        })
        .collect();
    let policy = policy_of(set);
    let p = plan::plan(&operators, &policy);
    planned.moves = p
        .moves
        .iter()
        .map(|m| RebalanceMove {
            operator: m.operator.clone(),
            from_stake: m.from.to_string(),
            to_stake: m.to.to_string(),
            reason: m.reason.clone(),
        })
        .collect();
    planned.total_moved = p.moved.to_string();
    planned.unmet = p.unmet.clone();
    planned.target = p
        .target
        .iter()
        .map(|(o, t)| OperatorTarget {
            operator: o.clone(),
            stake: t.to_string(),
        })
        .collect();
    planned.method = Some(if p.exact { "exact" } else { "greedy" }.to_owned());
    let mut calls = Vec::new();
    if let (Some(pr), false) = (&set.propose, p.moves.is_empty()) {
        let addr = |s: &Option<String>| -> Result<Address, String> {
            Address::from_str(s.as_deref().unwrap_or_default())
                .map_err(|_| "an address of `propose:` does not parse".to_owned())
        };
        match pr.encoder {
            Encoder::Lido => {
                calls = encode::lido(
                    &p,
                    &meta,
                    addr(&pr.staking_router)?,
                    pr.module_id.unwrap_or(0),
                    pr.target_limit_mode,
                )?;
            }
            Encoder::Eigenlayer => {
                let (c, notes) = encode::eigenlayer(
                    &p,
                    addr(&pr.allocation_manager)?,
                    addr(&pr.operator)?,
                    addr(&pr.strategy)?,
                    pr.free_magnitude,
                    pr.deallocation_delay_blocks,
                )?;
                calls = c;
                planned.notes.extend(notes);
            }
        }
    }
    let mut out = vec![request.derive(NAME, "plan", &planned)];
    if let (Some(pr), false) = (&set.propose, calls.is_empty()) {
        let mut reason = format!(
            "Rebalance of operator set `{}`: {} moved ({} change{}){}",
            set.name,
            p.moved,
            p.moves.len(),
            if p.moves.len() == 1 { "" } else { "s" },
            req.reason
                .as_ref()
                .map(|r| format!(", because {r}"))
                .unwrap_or_default()
        );
        if !p.unmet.is_empty() {
            reason.push_str(&format!(". Still unmet: {}", p.unmet.join("; ")));
        }
        out.push(request.derive(
            NAME,
            "proposal",
            &SafeProposalRequested {
                safe: pr.safe.clone(),
                calls,
                reason,
                replace_nonce: None,
            },
        ));
    }
    Ok(out)
}

/// The planner's policy for a set.
pub fn policy_of(set: &OperatorSetConfig) -> plan::Policy {
    plan::Policy {
        operator_cap_bps: set.cap_bps,
        attribute_caps_bps: set
            .attribute_caps_bps
            .clone()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        min_performance: set.min_performance,
        underperformer_cap_bps: set.underperformer_cap_bps,
        max_move: set.max_move.map(u128::from),
    }
}

#[async_trait]
impl Service for Rebalancer {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let spec = steward_runtime::archiver::consumer_spec(&ctx, NAME)
            .filters([RebalanceRequested::TYPE, RiskOperatorSetAssessed::TYPE]);
        let sub = Subscription::open(ctx.log.clone(), spec, ctx.metrics.clone()).await?;
        tracing::info!(
            operator_sets = ctx.config.operator_sets.len(),
            "rebalancer running"
        );
        ctx.ready.set_ready();
        loop {
            let batch = tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                b = sub.fetch(BATCH, Duration::from_secs(1)) => b,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "event log unavailable; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for d in &batch {
                let outcome: Result<(), HandlerError> = async {
                    if d.event.event_type == RiskOperatorSetAssessed::TYPE {
                        let a: RiskOperatorSetAssessed = d.event.payload().map_err(|e| HandlerError::Fatal(e.to_string()))?;
                        remember(&ctx.store, d.sequence, &a).await.map_err(|e| HandlerError::Retry(e.to_string()))?;
                        return Ok(());
                    }
                    let req: RebalanceRequested = d.event.payload().map_err(|e| HandlerError::Fatal(e.to_string()))?;
                    let a = latest(&ctx.store, &req.operator_set).await.map_err(|e| HandlerError::Retry(e.to_string()))?;
                    let out = respond(&ctx.config, &d.event, &req, a.as_ref()).map_err(HandlerError::Fatal)?;
                    ctx.log.append(&out).await.map_err(|e| HandlerError::Retry(e.to_string()))?;
                    for e in &out {
                        tracing::info!(event_type = %e.event_type, key = %e.key, "rebalance output");
                    }
                    Ok(())
                }
                .instrument(steward_runtime::event_span(NAME, &d.event))
                .await;
                match outcome {
                    Ok(()) => sub.ack(std::slice::from_ref(d)).await?,
                    Err(e) => {
                        tracing::warn!(error = %e, "rebalance request not handled");
                        sub.fail(d, &e).await?
                    }
                }
            }
        }
        Ok(())
    }
}
