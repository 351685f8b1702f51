//! The `watcher` service: turns EVM chains into `chain.*` events — blocks, decoded logs,
//! contract state — that the rest of Steward trusts: never a gap, never a duplicate, never a
//! retracted block left standing.
//!
//! - [`plan`] compiles a chain's configuration (watches, packs, ABIs, calls, balances) and
//!   reports every problem by field path, so `steward config check` names file:line:column.
//! - [`chain::ChainWatcher`] follows one chain: finality, reorgs, adaptive log ranges,
//!   Multicall3 state polls, checkpoints in the store. See its module docs for invariants.
//! - [`packs`] are the presets shipped in `packs/` (Aave v3, Chainlink, Safe, Lido, EigenLayer,
//!   OpenZeppelin Governor).
//! - [`backfill`] ingests history on demand (`steward watch backfill`).
//! - [`lease`]: one active watcher per chain across replicas.

pub mod backfill;
pub mod bench;
pub mod chain;
pub mod lease;
pub mod packs;
pub mod plan;
mod polls;
pub mod store;

use std::sync::Arc;

use async_trait::async_trait;
use steward_runtime::{Service, ServiceContext, ServiceKind};
use tokio_util::sync::CancellationToken;

pub use chain::{ChainWatcher, Step, WatchError, SOURCE};
pub use plan::{check_config, ChainPlan};

pub const NAME: &str = "watcher";

pub fn service() -> Box<dyn Service> {
    Box::new(Watcher)
}

struct Watcher;

#[async_trait]
impl Service for Watcher {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> ServiceKind {
        ServiceKind::Intake
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let config = ctx.config.clone();
        if config.chains.is_empty() {
            tracing::info!("no chains configured (`chains:` in the configuration): the watcher has nothing to watch");
            ctx.ready.set_ready();
            ctx.shutdown.cancelled().await;
            return Ok(());
        }
        let mut tasks = Vec::new();
        for i in 0..config.chains.len() {
            let plan = ChainPlan::compile(&config, i).map_err(|problems| {
                let text = problems
                    .into_iter()
                    .map(|(p, m)| format!("{p}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                anyhow::anyhow!("chain configuration is invalid: {text}")
            })?;
            let cfg = config.chains[i].clone();
            tasks.push(tokio::spawn(follow(
                Arc::new(plan),
                cfg,
                ctx.clone(),
                ctx.shutdown.clone(),
            )));
        }
        ctx.ready.set_ready();
        ctx.shutdown.cancelled().await;
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    }
}

/// Follows one chain while this replica holds its lease, until shutdown.
async fn follow(
    plan: Arc<ChainPlan>,
    cfg: steward_config::ChainConfig,
    ctx: ServiceContext,
    shutdown: CancellationToken,
) {
    let chain = cfg.name.clone();
    loop {
        let Some(mut lease) = lease::Lease::acquire(
            ctx.store.clone(),
            cfg.chain_id,
            chain.clone(),
            shutdown.clone(),
        )
        .await
        else {
            return;
        };
        let watcher = ChainWatcher::open(
            plan.clone(),
            cfg.clone(),
            ctx.log.clone(),
            ctx.store.clone(),
        )
        .await;
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(chain = %chain, error = %e, "cannot open the chain's watcher; retrying");
                lease.release().await;
                tokio::select! {
                    _ = tokio::time::sleep(lease::RETRY) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        tracing::info!(chain = %chain, chain_id = cfg.chain_id, cursor = ?watcher.cursor().map(|c| c.0), "following the chain");
        watcher.preflight().await;
        let token = shutdown.child_token();
        let run = watcher.run(token.clone());
        tokio::pin!(run);
        loop {
            tokio::select! {
                _ = &mut run => break,
                _ = tokio::time::sleep(lease::RETRY) => {
                    if !lease.held().await {
                        tracing::warn!(chain = %chain, "watcher lease lost (store session ended); stopping until it is taken again");
                        token.cancel();
                    }
                }
            }
        }
        lease.release().await;
        if shutdown.is_cancelled() {
            return;
        }
    }
}
