//! `steward watch backfill`: ingests a chain's history over `from..=to` with `eth_getLogs`
//! ranges (split when a provider refuses them), several in flight, without touching the live
//! cursor. Progress is recorded after each range, so a restart resumes where it stopped, with
//! no gap; events carry the same keys as the live watcher's, so an overlap is dropped by the
//! log, never doubled.

use std::sync::Arc;

use steward_config::Config;
use steward_log::EventLog;
use steward_store::Store;

use crate::chain::{ChainWatcher, OnRange, Progress, Stats};
use crate::plan::{chain_index, ChainPlan};

/// What to backfill.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    pub chain: String,
    pub from: u64,
    /// Last block; by default the chain's newest final block.
    pub to: Option<u64>,
}

/// A backfill ready to run.
pub struct Backfill {
    watcher: ChainWatcher,
    pub from: u64,
    pub to: u64,
    /// Where this run starts (after an earlier interrupted run: where that one stopped).
    pub resume: u64,
}

impl Backfill {
    /// Prepares a backfill: compiles the chain's plan, opens its watcher state, settles `to`
    /// and where to resume.
    pub async fn prepare(
        config: &Config,
        request: &BackfillRequest,
        log: Arc<dyn EventLog>,
        store: Store,
    ) -> anyhow::Result<Self> {
        let index = chain_index(config, &request.chain).ok_or_else(|| {
            anyhow::anyhow!(
                "no chain named `{}` in the configuration (chains: {})",
                request.chain,
                config
                    .chains
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let plan = ChainPlan::compile(config, index).map_err(|p| {
            anyhow::anyhow!(
                "chain configuration is invalid: {}",
                p.into_iter()
                    .map(|(a, b)| format!("{a}: {b}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
        let cfg = config.chains[index].clone();
        let watcher = ChainWatcher::open(Arc::new(plan), cfg.clone(), log, store.clone()).await?;
        let final_block = watcher.final_block().await?;
        let to = match request.to {
            Some(to) if to > final_block => anyhow::bail!(
                "--to {to} is beyond the chain's newest final block {final_block}: a backfill only ingests final blocks"
            ),
            Some(to) => to,
            None => final_block,
        };
        if request.from > to {
            anyhow::bail!("--from {} is after --to {to}", request.from);
        }
        let wstore = crate::store::WatcherStore::new(store, cfg.chain_id);
        let resume = wstore
            .backfill_next(request.from, to)
            .await?
            .unwrap_or(request.from);
        Ok(Self {
            watcher,
            from: request.from,
            to,
            resume,
        })
    }

    /// Counters of the run (blocks, logs, events).
    pub fn stats(&self) -> Arc<Stats> {
        self.watcher.stats()
    }

    /// Runs to the end; `on_range(last block done, logs in the range)` after each range.
    pub async fn run(mut self, on_range: OnRange) -> anyhow::Result<()> {
        if self.resume > self.to {
            return Ok(());
        }
        self.watcher.preflight().await;
        self.watcher
            .ingest_bulk(
                self.resume,
                self.to,
                Progress::Backfill {
                    from: self.from,
                    to: self.to,
                },
                false,
                on_range,
                None,
            )
            .await?;
        Ok(())
    }
}
