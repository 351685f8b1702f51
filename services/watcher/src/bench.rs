//! Measurements behind `steward bench watcher` (figures in `docs/benchmarks.md`): the
//! watcher's ingestion against a bare alloy `eth_getLogs` loop over the same blocks at the
//! same request concurrency (the limit), and RPC requests per block for state polls with and
//! without Multicall3.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::Filter;
use futures::stream::{self, StreamExt, TryStreamExt};
use steward_config::Config;
use steward_log::EventLog;
use steward_store::Store;

use crate::chain::{ChainWatcher, Step};
use crate::plan::ChainPlan;

/// Blocks and logs over a time.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub blocks: u64,
    pub logs: u64,
    pub events: u64,
    pub seconds: f64,
    /// Seconds spent per stage, when measured (they overlap): waiting for fetches,
    /// preparing events, waiting for writes, appending, committing the store.
    pub stages: Option<[f64; 5]>,
}

impl Throughput {
    pub fn blocks_per_sec(&self) -> f64 {
        self.blocks as f64 / self.seconds
    }

    pub fn logs_per_sec(&self) -> f64 {
        self.logs as f64 / self.seconds
    }
}

/// The limit: `eth_getLogs` over `from..=to` in ranges of `range` blocks, `concurrency`
/// requests in flight, each answer deserialised into alloy's `Log` and counted. Nothing else.
pub async fn bare_get_logs(
    url: &str,
    address: Address,
    topic0: B256,
    from: u64,
    to: u64,
    range: u64,
    concurrency: usize,
) -> anyhow::Result<Throughput> {
    // The chain crate installs the process's TLS provider on first use; HTTP needs none,
    // but building the client checks for one.
    let _ = steward_chain::EndpointPool::new(
        1,
        vec![steward_chain::EndpointConfig::new(url)],
        steward_chain::PoolOptions::default(),
    )?;
    let provider = RootProvider::<alloy::network::Ethereum>::new_http(url.parse()?);
    let ranges: Vec<(u64, u64)> = (from..=to)
        .step_by(range as usize)
        .map(|a| (a, (a + range - 1).min(to)))
        .collect();
    let start = Instant::now();
    let logs: Vec<usize> = stream::iter(ranges)
        .map(|(a, b)| {
            let provider = provider.clone();
            async move {
                let filter = Filter::new()
                    .from_block(a)
                    .to_block(b)
                    .address(address)
                    .event_signature(topic0);
                provider.get_logs(&filter).await.map(|l| l.len())
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Throughput {
        blocks: to - from + 1,
        logs: logs.iter().sum::<usize>() as u64,
        events: 0,
        seconds,
        stages: None,
    })
}

/// The watcher of chain 0 of `config`, from its start block until its cursor reaches the
/// head: every log an event in `log`.
pub async fn watcher_ingest(
    config: &Config,
    log: Arc<dyn EventLog>,
    store: Store,
) -> anyhow::Result<Throughput> {
    let plan =
        ChainPlan::compile(config, 0).map_err(|p| anyhow::anyhow!("bench configuration: {p:?}"))?;
    let start = Instant::now();
    let mut w = ChainWatcher::open(Arc::new(plan), config.chains[0].clone(), log, store).await?;
    let first = w.cursor().map_or(0, |c| c.0 + 1);
    loop {
        if w.step().await? == Step::Idle {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let stats = w.stats();
    Ok(Throughput {
        blocks: w.cursor().map_or(0, |c| c.0 + 1).saturating_sub(first),
        logs: stats.logs.load(Ordering::Relaxed),
        events: stats.events.load(Ordering::Relaxed),
        seconds,
        stages: Some(
            [
                &stats.fetch_wait_ns,
                &stats.prepare_ns,
                &stats.write_wait_ns,
                &stats.append_ns,
                &stats.commit_ns,
            ]
            .map(|c| c.load(Ordering::Relaxed) as f64 / 1e9),
        ),
    })
}

/// RPC requests (HTTP requests to the node, probes included; a JSON-RPC batch is one) per
/// block while the watcher of chain 0 follows the head block by block for `blocks` blocks,
/// each mined with `anvil_mine`.
pub async fn requests_per_block(
    config: &Config,
    log: Arc<dyn EventLog>,
    store: Store,
    blocks: u64,
) -> anyhow::Result<f64> {
    let plan =
        ChainPlan::compile(config, 0).map_err(|p| anyhow::anyhow!("bench configuration: {p:?}"))?;
    let mut w = ChainWatcher::open(Arc::new(plan), config.chains[0].clone(), log, store).await?;
    while w.step().await? != Step::Idle {}
    let requests =
        |w: &ChainWatcher| -> u64 { w.pool().status().endpoints.iter().map(|e| e.requests).sum() };
    let before = requests(&w);
    for _ in 0..blocks {
        let _: serde_json::Value = w.pool().request("anvil_mine", ("0x1",)).await?;
        while w.step().await? != Step::Idle {}
    }
    // Each block costs the mine request above too; not the watcher's.
    Ok((requests(&w) - before - blocks) as f64 / blocks as f64)
}
