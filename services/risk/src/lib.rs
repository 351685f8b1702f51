//! The `risk` service: judges what the watcher reports.
//!
//! - Lending positions (Aave v3 `getUserAccountData` polls): liquidatable below a health
//!   factor of 1, with the close factor (50% above 0.95, else 100%), the most debt that can be
//!   covered and the collateral it would bring; near liquidation within the configured band.
//! - Oracles (the `risk.oracles` assets, Chainlink feeds): stale beyond the heartbeat, sources
//!   far from their median, rounds far from the previous one, an aggregator swapped behind a
//!   proxy, an L2 sequencer down or within its grace period.
//! - Operator sets (`operator_sets`): shares against caps, HHI, Nakamoto coefficients,
//!   attribute concentration, underperformers; slashing events.
//! - Safes (`risk.safes`): owners, threshold, modules or guard other than configured.
//!
//! Every finding is a `risk.*` event; see [`engine`] for how transitions, keys and redeliveries
//! work. State lives in memory and in the store (`risk_entities`), written after the findings
//! are in the log and before the events are acked: a crash anywhere repeats work that changes
//! nothing.

pub mod bench;
pub mod concentration;
pub mod engine;
pub mod metadata;

use std::time::Duration;

use async_trait::async_trait;
use steward_config::{Config, Validator};
use steward_log::{HandlerError, Subscription};
use steward_runtime::{Service, ServiceContext};
use steward_store::sqlx::{self, Row};
use steward_store::Store;

pub use engine::Engine;

pub const NAME: &str = "risk";

/// Events per fetch.
const BATCH: usize = 1000;

pub fn service() -> Box<dyn Service> {
    Box::new(Risk)
}

struct Risk;

/// Loads the persisted rule state into `engine`.
pub async fn load_state(store: &Store, engine: &mut Engine) -> anyhow::Result<usize> {
    let rows = sqlx::query("SELECT entity, state FROM risk_entities")
        .fetch_all(store.pool())
        .await?;
    let n = rows.len();
    for r in rows {
        let entity: String = r.try_get(0)?;
        let state: String = r.try_get(1)?;
        let value = serde_json::from_str(&state)?;
        engine.restore(&entity, value).map_err(anyhow::Error::msg)?;
    }
    Ok(n)
}

/// Writes the entities the engine changed.
pub async fn save_state(store: &Store, engine: &mut Engine) -> anyhow::Result<()> {
    let dirty = engine.take_dirty();
    if dirty.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut tx = store.begin().await?;
    for (entity, state) in dirty {
        sqlx::query(
            "INSERT INTO risk_entities (entity, state, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (entity) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(entity)
        .bind(state.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl Service for Risk {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let fresh = || -> anyhow::Result<Engine> {
            Engine::new(ctx.config.clone()).map_err(|e| anyhow::anyhow!("risk: {e}"))
        };
        let mut engine = fresh()?;
        let restored = load_state(&ctx.store, &mut engine).await?;
        let spec = steward_runtime::archiver::consumer_spec(&ctx, NAME)
            .filters(["chain.state.observed", "chain.log.observed"]);
        let sub = Subscription::open(ctx.log.clone(), spec, ctx.metrics.clone()).await?;
        tracing::info!(
            restored,
            oracles = ctx.config.risk.oracles.len(),
            safes = ctx.config.risk.safes.len(),
            operator_sets = ctx.config.operator_sets.len(),
            "risk rules running"
        );
        ctx.ready.set_ready();
        let mut tick = tokio::time::interval(ctx.config.risk.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let now = chrono::Utc::now().timestamp().max(0) as u64;
                    let findings = engine.on_tick(now);
                    let written = async {
                        ctx.log.append(&findings).await?;
                        save_state(&ctx.store, &mut engine).await
                    }.await;
                    if let Err(e) = written {
                        tracing::warn!(error = %e, "time-based findings not written; state reloaded, checked again at the next tick");
                        engine = fresh()?;
                        load_state(&ctx.store, &mut engine).await?;
                    }
                }
                batch = sub.fetch(BATCH, Duration::from_secs(1)) => {
                    let batch = match batch {
                        Ok(b) => b,
                        Err(e) if e.is_retryable() => {
                            tracing::warn!(error = %e, "event log unavailable; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    if batch.is_empty() {
                        continue;
                    }
                    let mut findings = Vec::new();
                    for d in &batch {
                        let _span = steward_runtime::event_span(NAME, &d.event).entered();
                        findings.extend(engine.on_event(&d.event));
                    }
                    let written = async {
                        ctx.log.append(&findings).await?;
                        save_state(&ctx.store, &mut engine).await
                    }.await;
                    match written {
                        Ok(()) => {
                            for f in &findings {
                                tracing::info!(event_type = %f.event_type, key = %f.key, correlation_id = %f.correlation_id, "finding");
                            }
                            sub.ack(&batch).await?;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, events = batch.len(), "findings not written; the batch will be retried");
                            engine = fresh()?;
                            load_state(&ctx.store, &mut engine).await?;
                            for d in &batch {
                                sub.fail(d, &HandlerError::Retry(e.to_string())).await?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Checks the `risk:` and `operator_sets:` sections against `chains:` (names, watches and
/// their packs, the operator sets' sources and metadata files), reported at file:line:column.
pub fn check_config(config: &Config, v: &mut Validator<'_>) {
    let chain = |name: &str| config.chains.iter().find(|c| c.name == name);
    let watch_pack = |chain_name: &str, watch: &str| -> Option<Option<String>> {
        chain(chain_name)?
            .watches
            .iter()
            .find(|w| w.name == watch)
            .map(|w| w.pack.clone())
    };
    let chains: Vec<&str> = config.chains.iter().map(|c| c.name.as_str()).collect();
    let check_watch =
        |v: &mut Validator<'_>, path: &str, chain_name: &str, watch: &str, pack: &str| {
            match watch_pack(chain_name, watch) {
                None if chain(chain_name).is_none() => {}
                None => v.invalid(
                    path,
                    format!("chain `{chain_name}` has no watch named `{watch}`"),
                ),
                Some(p) if p.as_deref() == Some(pack) => {}
                Some(_) => v.invalid(path, format!("watch `{watch}` must use the `{pack}` pack")),
            }
        };
    let check_chain = |v: &mut Validator<'_>, path: &str, name: &str| {
        if chain(name).is_none() {
            v.invalid(
                path,
                format!(
                    "no chain named `{name}` in `chains:` (chains: {})",
                    chains.join(", ")
                ),
            );
        }
    };
    for (i, o) in config.risk.oracles.iter().enumerate() {
        let p = format!("risk.oracles[{i}]");
        check_chain(v, &format!("{p}.chain"), &o.chain);
        for (j, f) in o.feeds.iter().enumerate() {
            check_watch(v, &format!("{p}.feeds[{j}]"), &o.chain, f, "chainlink-feed");
        }
        if let Some(s) = &o.sequencer {
            check_watch(v, &format!("{p}.sequencer"), &o.chain, s, "chainlink-feed");
        }
    }
    for (i, s) in config.risk.safes.iter().enumerate() {
        let p = format!("risk.safes[{i}]");
        check_chain(v, &format!("{p}.chain"), &s.chain);
        check_watch(v, &format!("{p}.watch"), &s.chain, &s.watch, "safe");
    }
    for (i, s) in config.operator_sets.iter().enumerate() {
        let p = format!("operator_sets[{i}]");
        check_chain(v, &format!("{p}.chain"), &s.chain);
        if let Some(c) = chain(&s.chain) {
            match c.watches.iter().find(|w| w.name == s.source.watch) {
                None => v.invalid(
                    &format!("{p}.source.watch"),
                    format!(
                        "chain `{}` has no watch named `{}`",
                        s.chain, s.source.watch
                    ),
                ),
                Some(w) => {
                    let has = w.calls.iter().any(|call| {
                        let f = call.function.trim();
                        let f = f.strip_prefix("function ").unwrap_or(f);
                        f.starts_with(s.source.function.trim_end_matches("()"))
                    });
                    if !has && w.pack.is_none() {
                        v.invalid(
                            &format!("{p}.source.function"),
                            format!(
                                "watch `{}` has no call of `{}`",
                                s.source.watch, s.source.function
                            ),
                        );
                    }
                }
            }
        }
        if let Some(m) = &s.metadata {
            let path = if m.is_absolute() {
                m.clone()
            } else {
                config.base_dir.join(m)
            };
            if let Err(e) = metadata::Metadata::load(&path) {
                v.invalid(&format!("{p}.metadata"), e);
            }
        }
    }
}
