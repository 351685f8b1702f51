//! One chain, followed: head tracking, finality, log ingestion (adaptive ranges, several in
//! flight while catching up), state polls, reorg detection and retraction, checkpoints.
//!
//! Invariants:
//! - **No gap, no duplicate.** Events of a range are appended to the log *before* the cursor
//!   moves past it, in one store transaction with everything else the range changed. A crash
//!   in between re-ingests the range, and the log drops the repeats: every key is
//!   deterministic (`log:<chain>:<block hash>:<log index>` and the like).
//! - **Reorgs.** Blocks within `reorg_window` of the head are ingested header by header; each
//!   must be the child of the cursor. When one is not, the watcher walks its window back to
//!   the last block the node still has, announces `chain.reorg.detected` listing every event
//!   emitted from the abandoned blocks (and repeats each retracted log with `removed: true`),
//!   moves the cursor back to the fork and ingests the canonical branch.
//! - **Deep blocks** (more than `reorg_window` below the head) are taken in bulk: logs only,
//!   plus the header of each range's last block for the cursor.
//! - **Bad answers** (missing blocks, logs of another block hash, headers that do not chain)
//!   fail the step with a clear error; nothing is written, and the next step tries again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alloy::dyn_abi::DynSolType;
use alloy::primitives::{Address, B256};
use alloy::rpc::types::Log;
use chrono::{DateTime, Utc};
use serde_json::Value;
use steward_chain::abi::event_args;
use steward_chain::{
    BlockHeader, BlockRef, ChainError, EndpointConfig, EndpointPool, LogFilter, PoolOptions,
};
use steward_config::{ChainConfig, EmitMode, Finality, StartBlock};
use steward_events::{
    ChainBlockObserved, ChainLogObserved, ChainReorgDetected, ChainStateObserved, Envelope,
    Payload, RetractedEvent,
};
use steward_log::{EventLog, LogError};
use steward_store::StoreError;
use tokio_util::sync::CancellationToken;

use crate::plan::{CallInstance, ChainPlan, EventDecoder, Params, Trigger};
use crate::polls;
use crate::store::{Commit, EmittedEvent, WatcherStore, WindowBlock};

/// The `source` of every event the watcher writes.
pub const SOURCE: &str = "watcher";

/// Largest append to the log in one call.
const APPEND_CHUNK: usize = 20_000;

/// How long a step asked to stop may take to finish the bulk range in hand.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long one step keeps starting new ranges while catching up far below the head.
const BULK_STEP: Duration = Duration::from_secs(5);

/// Why a step failed. Every variant is logged and retried by the loop; none stops the
/// service.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The node's answers contradict each other (usually a reorg under way); retried.
    #[error("inconsistent chain data: {0}")]
    Inconsistent(String),
    /// A provider refuses a single block's logs as too large: nothing smaller to ask for.
    #[error("{0}")]
    Stuck(String),
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Ingested blocks up to this one.
    Progress(u64),
    /// Nothing new.
    Idle,
    /// A reorg was handled; the cursor moved back to this block.
    Reorg(u64),
}

/// Counters, for tests, benchmarks and the progress bar.
#[derive(Debug, Default)]
pub struct Stats {
    pub blocks: AtomicU64,
    pub logs: AtomicU64,
    pub events: AtomicU64,
    pub reorgs: AtomicU64,
    pub undecodable: AtomicU64,
    /// Where bulk ingestion spends its time (nanoseconds; the stages overlap): waiting for a
    /// range's fetch, preparing a range's events (decoding), waiting for the previous range's
    /// write, and inside the write tasks, appending and committing the store.
    pub fetch_wait_ns: AtomicU64,
    pub prepare_ns: AtomicU64,
    pub write_wait_ns: AtomicU64,
    pub append_ns: AtomicU64,
    pub commit_ns: AtomicU64,
}

/// The start of the idempotency key of an event about block `number` (`hash`) of a chain:
/// `<kind>:<chain>:<number, 12 digits>:<hash>`. The zero-padded number makes the keys of
/// consecutive blocks sort together, so the log's unique key index grows at its end instead
/// of taking every key at a random place (a block hash alone scatters them; measured: a
/// 200,000-log catch-up's appends took 1.55 s with hash-first keys, 1.0 s with these).
fn block_key(kind: &str, chain_id: u64, number: u64, hash: B256) -> String {
    format!("{kind}:{chain_id}:{number:012}:{hash}")
}

/// A block's hash and its logs' key prefix as text, made once per block rather than per log.
struct BlockText {
    number: u64,
    block: B256,
    hash: String,
    log_key: String,
}

impl BlockText {
    /// `cache`'s text if it is of this block, else this block's (kept in `cache`).
    fn of(cache: &mut Option<BlockText>, chain_id: u64, number: u64, hash: B256) -> &BlockText {
        if !cache
            .as_ref()
            .is_some_and(|b| b.number == number && b.block == hash)
        {
            *cache = None;
        }
        cache.get_or_insert_with(|| BlockText {
            number,
            block: hash,
            hash: hash.to_string(),
            log_key: block_key("log", chain_id, number, hash),
        })
    }
}

/// Adds the time since `since` to `counter`.
fn charge(counter: &AtomicU64, since: std::time::Instant) {
    let ns = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
    counter.fetch_add(ns, Ordering::Relaxed);
}

/// Work for a bulk ingestion's writer, in order.
enum WriteJob {
    /// Events to append.
    Events(Vec<Envelope>),
    /// A range's store changes, after all its events: its last block and its log count.
    Commit { commit: Commit, to: u64, logs: u64 },
}

/// Events per [`WriteJob::Events`] while a bulk range is decoded.
const WRITE_CHUNK: usize = 20_000;

/// Hands `job` to the writer. Fails only if the writer has stopped on an error, which is
/// reported when it is joined.
async fn send(jobs: &tokio::sync::mpsc::Sender<WriteJob>, job: WriteJob) -> Result<(), WatchError> {
    jobs.send(job)
        .await
        .map_err(|_| WatchError::Inconsistent("the range writer stopped".into()))
}

/// A `chain.block.observed` for `h`.
fn block_event(chain_id: u64, h: &BlockHeader) -> Envelope {
    Envelope::new(
        SOURCE,
        block_key("block", chain_id, h.num(), h.hash),
        &ChainBlockObserved {
            number: h.num(),
            hash: h.hash.to_string(),
            parent_hash: h.parent_hash.to_string(),
            timestamp: h.timestamp.to::<u64>(),
        },
    )
    .with_chain(chain_id)
}

/// Called after each range of a bulk ingestion with (last block done, logs in the range).
pub type OnRange = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Where a bulk ingestion records its progress.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// The live cursor.
    Cursor,
    /// A backfill job over `from..=to`.
    Backfill { from: u64, to: u64 },
}

/// The adaptive `eth_getLogs` range: shrinks when a provider refuses a range, grows back
/// after a run of successes.
#[derive(Debug)]
struct RangeSize {
    size: AtomicU64,
    max: u64,
    successes: AtomicU32,
}

impl RangeSize {
    fn get(&self) -> u64 {
        self.size.load(Ordering::Relaxed).max(1)
    }

    fn refused(&self, span: u64) {
        let half = (span / 2).max(1);
        self.size.fetch_min(half, Ordering::Relaxed);
        self.successes.store(0, Ordering::Relaxed);
    }

    fn succeeded(&self) {
        if self.successes.fetch_add(1, Ordering::Relaxed) + 1 >= 8 {
            self.successes.store(0, Ordering::Relaxed);
            let now = self.get();
            self.size
                .store(now.saturating_mul(2).min(self.max), Ordering::Relaxed);
        }
    }
}

/// The filter part of `eth_getLogs` and the decoders behind it.
#[derive(Clone, Default)]
struct Decoding {
    decoders: Arc<HashMap<(Address, B256), Arc<EventDecoder>>>,
    addresses: Vec<Address>,
    topics: Vec<B256>,
}

impl Decoding {
    fn new(decoders: HashMap<(Address, B256), Arc<EventDecoder>>) -> Self {
        let addresses: BTreeSet<Address> = decoders.keys().map(|(a, _)| *a).collect();
        let topics: BTreeSet<B256> = decoders.keys().map(|(_, t)| *t).collect();
        Self {
            decoders: Arc::new(decoders),
            addresses: addresses.into_iter().collect(),
            topics: topics.into_iter().collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.decoders.is_empty()
    }
}

/// Data fetched for one range.
struct Fetched {
    from: u64,
    to: u64,
    /// Every header of the range, or only the last one.
    headers: Vec<BlockHeader>,
    logs: Vec<Log>,
}

/// One chain's watcher.
pub struct ChainWatcher {
    plan: Arc<ChainPlan>,
    cfg: ChainConfig,
    pool: EndpointPool,
    log: Arc<dyn EventLog>,
    store: WatcherStore,
    params: Params,
    decoding: Decoding,
    calls: Vec<CallInstance>,
    values: HashMap<String, (u64, Value)>,
    window: BTreeMap<u64, WindowBlock>,
    cursor: Option<(u64, B256)>,
    /// The first run starts at block 0: the cursor stays empty until block 0 is in.
    from_genesis: bool,
    next_fire: HashMap<String, DateTime<Utc>>,
    failing: HashSet<String>,
    range: Arc<RangeSize>,
    stats: Arc<Stats>,
    /// Events per write while a bulk range is decoded ([`WRITE_CHUNK`]).
    write_chunk: usize,
    /// Cancelled when [`ChainWatcher::run`] is asked to stop: a bulk ingestion then stops
    /// after the range in hand, recorded.
    stop: CancellationToken,
}

impl ChainWatcher {
    /// Opens the watcher of `plan`'s chain: builds its endpoint pool and loads its state
    /// from the store. Contacts no endpoint yet.
    pub async fn open(
        plan: Arc<ChainPlan>,
        cfg: ChainConfig,
        log: Arc<dyn EventLog>,
        store: steward_store::Store,
    ) -> anyhow::Result<Self> {
        let endpoints = cfg
            .rpc
            .iter()
            .map(|r| {
                let mut e = EndpointConfig::new(r.url.expose()).with_weight(r.weight);
                if let Some(rate) = r.rate_limit {
                    e = e.with_rate_limit(rate);
                }
                e
            })
            .collect();
        let options = PoolOptions {
            timeout: cfg.rpc_timeout,
            retries: cfg.rpc_retries,
            cooldown: cfg.rpc_cooldown,
            ..PoolOptions::default()
        };
        let pool = EndpointPool::new(cfg.chain_id, endpoints, options)?;
        let store = WatcherStore::new(store, cfg.chain_id);
        let cursor = store.cursor().await?;
        let window: BTreeMap<u64, WindowBlock> = store
            .window()
            .await?
            .into_iter()
            .map(|b| (b.number, b))
            .collect();
        let values = store.values().await?;
        let mut params = plan.initial_params();
        for (watch, param, value) in store.params().await? {
            params.entry((watch, param)).or_default().insert(value);
        }
        let range = Arc::new(RangeSize {
            size: AtomicU64::new(cfg.max_block_range.max(1)),
            max: cfg.max_block_range.max(1),
            successes: AtomicU32::new(0),
        });
        let mut me = Self {
            plan,
            cfg,
            pool,
            log,
            store,
            params,
            decoding: Decoding::default(),
            calls: Vec::new(),
            values,
            window,
            cursor,
            from_genesis: false,
            next_fire: HashMap::new(),
            failing: HashSet::new(),
            range,
            stats: Arc::new(Stats::default()),
            write_chunk: WRITE_CHUNK,
            stop: CancellationToken::new(),
        };
        me.resolve_params();
        me.rebuild();
        Ok(me)
    }

    /// The chain's endpoint pool (health, request counts).
    pub fn pool(&self) -> &EndpointPool {
        &self.pool
    }

    /// Counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Sets the events per write while a bulk range is decoded (tests: many chunks per range).
    #[doc(hidden)]
    pub fn set_write_chunk(&mut self, events: usize) {
        self.write_chunk = events.max(1);
    }

    /// The last block fully ingested.
    pub fn cursor(&self) -> Option<(u64, B256)> {
        self.cursor
    }

    /// The chain's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Warns about configuration that cannot work on this chain: watched addresses without
    /// code, a Multicall3 address without a contract (then calls go one by one).
    pub async fn preflight(&mut self) {
        let mut addresses: BTreeMap<Address, &str> = BTreeMap::new();
        for w in &self.plan.watches {
            for a in &w.addresses {
                addresses.insert(*a, &w.name);
            }
        }
        for (a, watch) in addresses {
            match self.pool.code(a).await {
                Ok(code) if code.is_empty() => {
                    tracing::warn!(chain = %self.cfg.name, watch, address = %a,
                    "no contract at this address on this chain: a wrong address or the wrong chain? Nothing will be decoded or read from it")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(chain = %self.cfg.name, watch, address = %a, error = %e, "cannot check the watched address")
                }
            }
        }
        if let Some(m) = self.plan.multicall {
            if !self.calls.is_empty() {
                match self.pool.code(m).await {
                    Ok(code) if code.is_empty() => {
                        tracing::warn!(chain = %self.cfg.name, multicall = %m,
                            "no Multicall3 contract at the configured address: state calls go one request each (set `multicall:` to its address, or `disabled` to silence this)");
                        self.plan = Arc::new(ChainPlan {
                            multicall: None,
                            ..(*self.plan).clone()
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(chain = %self.cfg.name, error = %e, "cannot check the Multicall3 contract")
                    }
                }
            }
        }
    }

    /// Follows the chain until `shutdown`: a step, then the next at once while there is
    /// work, or after `poll_interval` when caught up. A failed step is logged and retried
    /// after a backoff; it never stops the watcher.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            self.stop = shutdown.clone();
            let outcome = {
                let step = self.step();
                tokio::pin!(step);
                tokio::select! {
                    r = &mut step => r,
                    _ = shutdown.cancelled() => {
                        // A bulk step stops after the range in hand, written and recorded
                        // (a range cut short would stay in the log unrecorded); anything
                        // else is left as it is.
                        let _ = tokio::time::timeout(STOP_GRACE, step).await;
                        return;
                    }
                }
            };
            let pause = match outcome {
                Ok(Step::Progress(_)) | Ok(Step::Reorg(_)) => {
                    failures = 0;
                    Duration::ZERO
                }
                Ok(Step::Idle) => {
                    failures = 0;
                    self.cfg.poll_interval
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = self
                        .cfg
                        .poll_interval
                        .saturating_mul(1 << failures.min(5))
                        .min(Duration::from_secs(60));
                    tracing::error!(chain = %self.cfg.name, error = %e, cursor = ?self.cursor.map(|c| c.0), retry_in = ?pause,
                        "watcher step failed; nothing was written for it, retrying");
                    pause
                }
            };
            if let Err(e) = self.fire_schedules().await {
                tracing::error!(chain = %self.cfg.name, error = %e, "scheduled state calls failed; retrying at the next schedule check");
            }
            if !pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }

    /// The newest block the configuration calls final.
    pub async fn final_block(&self) -> Result<u64, WatchError> {
        Ok(self.heads().await?.1)
    }

    /// The newest block the configuration calls final, and the head.
    async fn heads(&self) -> Result<(u64, u64), WatchError> {
        let latest = self.pool.block_number().await?;
        let target = match self.cfg.finality {
            Finality::Confirmations(n) => latest.saturating_sub(n),
            Finality::Tag(tag) => self.pool.header_by_tag(tag.as_str()).await?.num(),
        };
        Ok((latest, target.min(latest)))
    }

    /// One step: ingest what is final and new, or check the tip for a reorg.
    pub async fn step(&mut self) -> Result<Step, WatchError> {
        let (latest, target) = self.heads().await?;
        if self.cursor.is_none() && !self.from_genesis {
            let start = match self.cfg.start_block {
                StartBlock::Number(n) => n,
                StartBlock::Named(_) => target,
            };
            if start == 0 {
                self.from_genesis = true;
            } else {
                let h = self.pool.header(start - 1).await?;
                let c = (h.num(), h.hash);
                self.store
                    .commit(&Commit {
                        cursor: Some(c),
                        blocks: vec![WindowBlock {
                            number: h.num(),
                            hash: h.hash,
                            parent_hash: h.parent_hash,
                            events: Vec::new(),
                        }],
                        ..Commit::default()
                    })
                    .await?;
                self.window.insert(
                    h.num(),
                    WindowBlock {
                        number: h.num(),
                        hash: h.hash,
                        parent_hash: h.parent_hash,
                        events: Vec::new(),
                    },
                );
                self.cursor = Some(c);
                tracing::info!(chain = %self.cfg.name, start, "first run: starting at block {start}");
            }
        }
        let next = self.cursor.map_or(0, |c| c.0 + 1);
        if next > target {
            // Nothing new; but a reorg may have replaced the tip with as many blocks.
            if let Some((n, h)) = self.cursor {
                if n + self.cfg.reorg_window > latest {
                    let now = self.pool.header(n).await?;
                    if now.hash != h {
                        return self.reorg().await;
                    }
                }
            }
            return Ok(Step::Idle);
        }
        let deep_end = latest.saturating_sub(self.cfg.reorg_window);
        if next <= deep_end {
            // A bounded time per step, so the head and the schedules are looked at again: no
            // new range starts after BULK_STEP (those in flight finish and are written).
            let end = deep_end.min(target);
            self.ingest_bulk(
                next,
                end,
                Progress::Cursor,
                true,
                Arc::new(|_, _| {}),
                Some(BULK_STEP),
            )
            .await?;
            return Ok(Step::Progress(self.cursor.map_or(end, |c| c.0)));
        }
        let end = target.min(next.saturating_add(self.cfg.max_block_range - 1));
        self.ingest_window(next, end).await
    }

    // ------------------------------------------------------------------ ingestion

    /// Blocks near the head: every header, chained to the cursor; a break is a reorg.
    async fn ingest_window(&mut self, from: u64, to: u64) -> Result<Step, WatchError> {
        let headers = self.pool.headers(from, to).await?;
        if let (Some((_, hash)), Some(first)) = (self.cursor, headers.first()) {
            if first.parent_hash != hash {
                return self.reorg().await;
            }
        }
        for pair in headers.windows(2) {
            if pair[1].parent_hash != pair[0].hash {
                return Err(WatchError::Inconsistent(format!(
                    "block {} does not follow block {} in the same answer (a reorg under way?)",
                    pair[1].num(),
                    pair[0].num()
                )));
            }
        }
        let logs = if self.decoding.is_empty() {
            Vec::new()
        } else {
            fetch_logs(&self.pool, &self.decoding, from, to, &self.range).await?
        };
        let fetched = Fetched {
            from,
            to,
            headers,
            logs,
        };
        let (events, mut commit) = self.build(&fetched, true, true, true, None).await?;
        let last = fetched.headers.last().map(|h| (h.num(), h.hash));
        commit.cursor = last;
        commit.prune_below = last.map(|(n, _)| n.saturating_sub(self.cfg.reorg_window));
        self.append(&events).await?;
        self.store.commit(&commit).await?;
        self.apply(commit);
        Ok(Step::Progress(to))
    }

    /// Blocks far below the head (or a backfill): several ranges in flight, each appended and
    /// recorded in order. `polls`: evaluate due state calls at each range's last block.
    /// `budget`: start no new range once it has passed (those in flight are finished and
    /// written), so it may stop before `to`.
    pub async fn ingest_bulk(
        &mut self,
        from: u64,
        to: u64,
        progress: Progress,
        polls: bool,
        on_range: OnRange,
        budget: Option<Duration>,
    ) -> Result<(), WatchError> {
        let started = std::time::Instant::now();
        let mut spawn_to = to;
        let mut next = from;
        let mut inflight: VecDeque<tokio::task::JoinHandle<Result<Fetched, WatchError>>> =
            VecDeque::new();
        let all_headers = self.cfg.blocks && matches!(progress, Progress::Cursor);
        // `concurrency` requests stay in flight while a finished range is recorded: the
        // next ones are spawned before the oldest is processed.
        // One writer task appends the events in order, chunk by chunk as they are decoded
        // (so a range's writing overlaps its own decoding and the next range's), and
        // commits each range's store changes after its last events; it sends the committed
        // ranges back to be taken into memory. The channel is short, and once a range is
        // handed over the one before it must be recorded before the next is decoded: the
        // writer is at most about a range behind, and a stopped job leaves at most the
        // range being written unrecorded (its events are dropped as repeats when it is
        // fetched again).
        let (jobs, mut rx) = tokio::sync::mpsc::channel::<WriteJob>(2);
        let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<(Commit, u64, u64)>();
        let (log, store, stats) = (self.log.clone(), self.store.clone(), self.stats.clone());
        // Aborted if this future is dropped or panics: nothing is written for a stopped job.
        let writer = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                match job {
                    WriteJob::Events(events) => {
                        let appending = std::time::Instant::now();
                        append(log.as_ref(), &stats, &events).await?;
                        charge(&stats.append_ns, appending);
                    }
                    WriteJob::Commit { commit, to, logs } => {
                        let committing = std::time::Instant::now();
                        store.commit(&commit).await?;
                        charge(&stats.commit_ns, committing);
                        // The receiver only goes once ingestion has stopped.
                        let _ = done_tx.send((commit, to, logs));
                    }
                }
            }
            Ok::<(), WatchError>(())
        }));
        let mut unrecorded = 0;
        let result = loop {
            if self.stop.is_cancelled() {
                break Ok(());
            }
            if next > from && budget.is_some_and(|b| started.elapsed() >= b) {
                spawn_to = spawn_to.min(next - 1);
            }
            self.spawn_fetches(&mut next, spawn_to, all_headers, &mut inflight);
            let Some(task) = inflight.pop_front() else {
                break Ok(());
            };
            let waited = std::time::Instant::now();
            let fetched = task.await;
            charge(&self.stats.fetch_wait_ns, waited);
            let fetched = match fetched {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => break Err(e),
                Err(join) => {
                    break Err(WatchError::Inconsistent(format!(
                        "a log fetch task failed: {join}"
                    )))
                }
            };
            self.spawn_fetches(&mut next, spawn_to, all_headers, &mut inflight);
            let preparing = std::time::Instant::now();
            let prepared = self.prepare_bulk(&fetched, progress, polls, &jobs).await;
            charge(&self.stats.prepare_ns, preparing);
            let commit = match prepared {
                Ok(c) => c,
                Err(e) => break Err(e),
            };
            let job = WriteJob::Commit {
                commit,
                to: fetched.to,
                logs: fetched.logs.len() as u64,
            };
            if let Err(e) = send(&jobs, job).await {
                break Err(e);
            }
            // At most this range and the one before with the writer: the previous range is
            // recorded before the next one's decoding starts.
            unrecorded += 1;
            while unrecorded > 1 {
                let Some((commit, to, logs)) = done.recv().await else {
                    break;
                };
                unrecorded -= 1;
                self.apply(commit);
                on_range(to, logs);
            }
            if unrecorded > 1 {
                break Err(WatchError::Inconsistent("the range writer stopped".into()));
            }
        };
        for t in inflight {
            t.abort();
        }
        // The writer finishes what it was given. After an error, a range's events given
        // without its commit are appended but not recorded: the range is fetched again and
        // the log drops the repeats by key.
        drop(jobs);
        let waited = std::time::Instant::now();
        let written = match writer.await {
            Ok(w) => w,
            Err(e) => Err(WatchError::Inconsistent(format!(
                "a range write task failed: {e}"
            ))),
        };
        charge(&self.stats.write_wait_ns, waited);
        while let Ok((commit, to, logs)) = done.try_recv() {
            self.apply(commit);
            on_range(to, logs);
        }
        // The writer's own error is the cause of a failed hand-over: it comes first.
        written.and(result)
    }

    /// Tops `inflight` up to `concurrency` range fetches, from `next` on.
    fn spawn_fetches(
        &self,
        next: &mut u64,
        to: u64,
        all_headers: bool,
        inflight: &mut VecDeque<tokio::task::JoinHandle<Result<Fetched, WatchError>>>,
    ) {
        while inflight.len() < self.cfg.concurrency as usize && *next <= to {
            let end = to.min(next.saturating_add(self.range.get() - 1));
            let pool = self.pool.clone();
            let decoding = self.decoding.clone();
            let range = self.range.clone();
            let start = *next;
            inflight.push_back(tokio::spawn(async move {
                let logs = if decoding.is_empty() {
                    Vec::new()
                } else {
                    fetch_logs(&pool, &decoding, start, end, &range).await?
                };
                let headers = if all_headers {
                    pool.headers(start, end).await?
                } else {
                    vec![pool.header(end).await?]
                };
                Ok(Fetched {
                    from: start,
                    to: end,
                    headers,
                    logs,
                })
            }));
            *next = end + 1;
        }
    }

    /// A bulk range's events and store changes, not yet written.
    async fn prepare_bulk(
        &mut self,
        fetched: &Fetched,
        progress: Progress,
        polls: bool,
        sink: &tokio::sync::mpsc::Sender<WriteJob>,
    ) -> Result<Commit, WatchError> {
        let last = fetched
            .headers
            .last()
            .filter(|h| h.num() == fetched.to)
            .ok_or_else(|| {
                WatchError::Inconsistent(format!(
                    "no header for block {} in the answer",
                    fetched.to
                ))
            })?;
        let (last_number, last_hash, last_parent) = (last.num(), last.hash, last.parent_hash);
        let block_events = matches!(progress, Progress::Cursor) && self.cfg.blocks;
        let (_, mut commit) = self
            .build(fetched, block_events, polls, false, Some(sink))
            .await?;
        match progress {
            Progress::Cursor => {
                // Bulk blocks are far below the head, final by this chain's own measure: the
                // window keeps only the range's last block, for the next block's parent check,
                // and no events (nothing there is expected to be retracted).
                commit.blocks = vec![WindowBlock {
                    number: last_number,
                    hash: last_hash,
                    parent_hash: last_parent,
                    events: Vec::new(),
                }];
                commit.cursor = Some((last_number, last_hash));
                commit.prune_below = Some(last_number.saturating_sub(self.cfg.reorg_window));
            }
            Progress::Backfill { from, to } => {
                commit.blocks.clear();
                commit.values.clear();
                commit.backfill = Some((from, to, fetched.to + 1));
            }
        }
        Ok(commit)
    }

    /// Events and store changes of a fetched range. `headers` may be only the last one (bulk);
    /// block events need them all. `window`: blocks near the head, taken block by block and
    /// remembered with their events (for retraction); else bulk, in one pass.
    ///
    /// `sink` (bulk only): the events are sent there in order, in chunks of `write_chunk` as
    /// they are decoded, so writing a range starts before its decoding ends, and none are
    /// returned.
    async fn build(
        &mut self,
        fetched: &Fetched,
        block_events: bool,
        polls: bool,
        window: bool,
        sink: Option<&tokio::sync::mpsc::Sender<WriteJob>>,
    ) -> Result<(Vec<Envelope>, Commit), WatchError> {
        let chain_id = self.cfg.chain_id;
        let by_number: HashMap<u64, &BlockHeader> =
            fetched.headers.iter().map(|h| (h.num(), h)).collect();
        let complete = fetched.headers.len() as u64 == fetched.to - fetched.from + 1;
        let block_events = block_events && complete;
        let mut per_block: BTreeMap<u64, (B256, B256, Vec<Envelope>)> = BTreeMap::new();
        if window && complete {
            for h in &fetched.headers {
                let mut evs = Vec::new();
                if block_events {
                    evs.push(block_event(chain_id, h));
                }
                per_block.insert(h.num(), (h.hash, h.parent_hash, evs));
            }
        }
        let mut commit = Commit::default();
        let mut learned = false;
        let mut text = None;
        let mut block_hashes: HashMap<u64, B256> = HashMap::new();
        for log in &fetched.logs {
            check_log(log, fetched, &by_number, &mut block_hashes)?;
        }
        if window {
            // Block by block: a state call that changes what is decoded (an aggregator swapped
            // behind a proxy) takes effect from the next block, whose logs are fetched again
            // for the addresses it added.
            let mut pending: BTreeMap<u64, Vec<Log>> = BTreeMap::new();
            for log in &fetched.logs {
                pending
                    .entry(log.block_number.unwrap_or_default())
                    .or_default()
                    .push(log.clone());
            }
            for h in &fetched.headers {
                let (number, hash) = (h.num(), h.hash);
                for log in pending.remove(&number).unwrap_or_default() {
                    if log.removed {
                        continue;
                    }
                    if let Some(env) =
                        self.decode_log(&log, number, hash, &mut text, &mut commit, &mut learned)
                    {
                        per_block
                            .entry(number)
                            .or_insert_with(|| (hash, h.parent_hash, Vec::new()))
                            .2
                            .push(env);
                    }
                }
                if learned {
                    self.rebuild();
                    learned = false;
                }
                if !polls {
                    continue;
                }
                let due = self.due(|n| number.is_multiple_of(n));
                if due.is_empty() {
                    continue;
                }
                let before: BTreeSet<Address> = self.decoding.addresses.iter().copied().collect();
                let evs = self.poll(&due, number, hash, &mut commit).await?;
                per_block
                    .entry(number)
                    .or_insert_with(|| (hash, h.parent_hash, Vec::new()))
                    .2
                    .extend(evs);
                let added: Vec<Address> = self
                    .decoding
                    .addresses
                    .iter()
                    .filter(|a| !before.contains(*a))
                    .copied()
                    .collect();
                if !added.is_empty() && number < fetched.to {
                    let only = Decoding {
                        addresses: added,
                        ..self.decoding.clone()
                    };
                    for log in
                        fetch_logs(&self.pool, &only, number + 1, fetched.to, &self.range).await?
                    {
                        check_log(&log, fetched, &by_number, &mut block_hashes)?;
                        pending
                            .entry(log.block_number.unwrap_or_default())
                            .or_default()
                            .push(log);
                    }
                    for logs in pending.values_mut() {
                        logs.sort_by_key(|l| l.log_index);
                        logs.dedup_by_key(|l| l.log_index);
                    }
                }
            }
        } else {
            // In one pass, in order: the logs come sorted by block and index (`fetch_logs`),
            // each block's event (if any) before its logs, the state calls after the last.
            let mut out: Vec<Envelope> = Vec::new();
            let mut headers = fetched.headers.iter().peekable();
            for log in &fetched.logs {
                let (Some(number), Some(hash)) = (log.block_number, log.block_hash) else {
                    continue;
                };
                if log.removed {
                    continue;
                }
                while let Some(h) = headers.next_if(|h| block_events && h.num() <= number) {
                    out.push(block_event(chain_id, h));
                }
                if let Some(env) =
                    self.decode_log(log, number, hash, &mut text, &mut commit, &mut learned)
                {
                    out.push(env);
                }
                if out.len() >= self.write_chunk {
                    if let Some(sink) = sink {
                        send(sink, WriteJob::Events(std::mem::take(&mut out))).await?;
                    }
                }
            }
            if block_events {
                out.extend(headers.map(|h| block_event(chain_id, h)));
            }
            if learned {
                self.rebuild();
            }
            // In bulk, calls due anywhere in the range are evaluated once, at its end.
            let (from, to) = (fetched.from, fetched.to);
            let due = self.due(|n| to / n > from.saturating_sub(1) / n || from.is_multiple_of(n));
            if let (true, false, Some(last)) = (polls, due.is_empty(), fetched.headers.last()) {
                let (number, hash) = (last.num(), last.hash);
                out.extend(self.poll(&due, number, hash, &mut commit).await?);
            }
            self.stats
                .blocks
                .fetch_add(fetched.to - fetched.from + 1, Ordering::Relaxed);
            if let Some(sink) = sink {
                if !out.is_empty() {
                    send(sink, WriteJob::Events(out)).await?;
                }
                return Ok((Vec::new(), commit));
            }
            return Ok((out, commit));
        }
        let mut events = Vec::new();
        for (number, (hash, parent, evs)) in per_block {
            commit.blocks.push(WindowBlock {
                number,
                hash,
                parent_hash: parent,
                events: evs.iter().map(emitted).collect(),
            });
            events.extend(evs);
        }
        self.stats
            .blocks
            .fetch_add(fetched.to - fetched.from + 1, Ordering::Relaxed);
        Ok((events, commit))
    }

    /// Indexes of the block-triggered calls due by `is_due(every)`.
    fn due(&self, is_due: impl Fn(u64) -> bool) -> Vec<usize> {
        self.calls
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.trigger, Trigger::Every(n) if is_due(n)))
            .map(|(i, _)| i)
            .collect()
    }

    fn decode_log(
        &mut self,
        log: &Log,
        number: u64,
        hash: B256,
        block: &mut Option<BlockText>,
        commit: &mut Commit,
        learned: &mut bool,
    ) -> Option<Envelope> {
        let chain_id = self.cfg.chain_id;
        let address = log.address();
        let topic0 = *log.topics().first()?;
        let decoder = self.decoding.decoders.get(&(address, topic0))?.clone();
        let index = log.log_index.unwrap_or_default();
        let decoded = match decoder
            .resolved
            .decode_log_parts(log.topics().iter().copied(), &log.data().data)
        {
            Ok(d) => d,
            Err(e) => {
                self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(chain = %self.cfg.name, watch = %decoder.watch, address = %address, event = %decoder.signature,
                    block = number, log_index = index, tx = ?log.transaction_hash, error = %e,
                    "a log with this event's topic0 does not decode with the configured ABI (wrong ABI for this contract, or an event of the same name with other indexed parameters); skipped");
                return None;
            }
        };
        let args = event_args(&decoder.event, &decoded.indexed, &decoded.body);
        if let Some(w) = self.plan.watches.iter().find(|w| w.name == decoder.watch) {
            for d in w.discover.iter().filter(|d| d.event == decoder.name) {
                let Some(Value::String(v)) = args.get(&d.arg) else {
                    continue;
                };
                let key = (w.name.clone(), d.param.clone());
                if self.params.entry(key).or_default().insert(v.clone()) {
                    commit
                        .params
                        .push((w.name.clone(), d.param.clone(), v.clone(), number));
                    *learned = true;
                }
            }
        }
        self.stats.logs.fetch_add(1, Ordering::Relaxed);
        let block = BlockText::of(block, chain_id, number, hash);
        let mut key = String::with_capacity(block.log_key.len() + 6);
        key.push_str(&block.log_key);
        key.push(':');
        key.push_str(itoa::Buffer::new().format(index));
        Some(
            Envelope::new_raw(
                SOURCE,
                key,
                &ChainLogObserved {
                    block_number: number,
                    block_hash: block.hash.clone(),
                    transaction_hash: log
                        .transaction_hash
                        .map(|h| h.to_string())
                        .unwrap_or_default(),
                    log_index: index,
                    address: steward_chain::abi::checksummed(&address),
                    event: decoder.name.clone(),
                    signature: decoder.signature.clone(),
                    watch: Some(decoder.watch.clone()),
                    args,
                    removed: false,
                },
            )
            .with_chain(chain_id),
        )
    }

    /// Evaluates the calls at `due` (indexes into `self.calls`) at block `hash` and returns
    /// the observations to report.
    async fn poll(
        &mut self,
        due: &[usize],
        number: u64,
        hash: B256,
        commit: &mut Commit,
    ) -> Result<Vec<Envelope>, WatchError> {
        let chain_id = self.cfg.chain_id;
        let calls: Vec<&CallInstance> = due.iter().map(|&i| &self.calls[i]).collect();
        let outcomes = polls::evaluate(
            &self.pool,
            self.plan.multicall,
            &calls,
            BlockRef::Hash(hash),
        )
        .await?;
        let mut out = Vec::new();
        let mut resolved = false;
        for (c, outcome) in calls.iter().zip(outcomes) {
            let value = match outcome {
                Ok(v) => {
                    if self.failing.remove(&c.id) {
                        tracing::info!(chain = %self.cfg.name, watch = %c.watch, address = %c.address, function = %c.signature, "state call answers again");
                    }
                    Value::Object(v)
                }
                Err(e) => {
                    if self.failing.insert(c.id.clone()) {
                        tracing::warn!(chain = %self.cfg.name, watch = %c.watch, address = %c.address, function = %c.signature, block = number, error = %e,
                            "state call failed; nothing reported for it until it answers again");
                    }
                    continue;
                }
            };
            let previous = self.values.get(&c.id).map(|(_, v)| v.clone());
            if c.emit == EmitMode::OnChange && previous.as_ref() == Some(&value) {
                continue;
            }
            if c.resolves.is_some() {
                resolved = true;
            }
            let Value::Object(map) = &value else { continue };
            out.push(
                Envelope::new(
                    SOURCE,
                    format!("{}:{}", block_key("state", chain_id, number, hash), c.id),
                    &ChainStateObserved {
                        block_number: number,
                        block_hash: hash.to_string(),
                        watch: c.watch.clone(),
                        address: c.address.to_checksum(None),
                        function: c.signature.clone(),
                        args: c.args.clone(),
                        value: map.clone(),
                        previous: previous.and_then(|p| match p {
                            Value::Object(m) => Some(m),
                            _ => None,
                        }),
                    },
                )
                .with_chain(chain_id),
            );
            commit.values.push((c.id.clone(), number, value.clone()));
            self.values.insert(c.id.clone(), (number, value));
        }
        if resolved && self.resolve_params() {
            self.rebuild();
        }
        Ok(out)
    }

    /// Calls on a schedule that are due: evaluated at the cursor block.
    async fn fire_schedules(&mut self) -> Result<(), WatchError> {
        let now = Utc::now();
        let mut due = Vec::new();
        for (i, c) in self.calls.iter().enumerate() {
            let Trigger::Schedule(s) = &c.trigger else {
                continue;
            };
            let next = *self
                .next_fire
                .entry(c.id.clone())
                .or_insert_with(|| s.after(&now).next().unwrap_or(DateTime::<Utc>::MAX_UTC));
            if next <= now {
                due.push(i);
                self.next_fire.insert(
                    c.id.clone(),
                    s.after(&now).next().unwrap_or(DateTime::<Utc>::MAX_UTC),
                );
            }
        }
        let Some((number, hash)) = self.cursor else {
            return Ok(());
        };
        if due.is_empty() {
            return Ok(());
        }
        let mut commit = Commit::default();
        let events = self.poll(&due, number, hash, &mut commit).await?;
        self.append(&events).await?;
        self.store.commit(&commit).await?;
        Ok(())
    }

    // ------------------------------------------------------------------ reorgs

    /// The cursor's block is no longer canonical: find the fork, announce what the abandoned
    /// branch emitted, and move back.
    async fn reorg(&mut self) -> Result<Step, WatchError> {
        let chain_id = self.cfg.chain_id;
        let mut fork: Option<(u64, B256)> = None;
        let numbers: Vec<u64> = self.window.keys().rev().copied().collect();
        for n in numbers {
            let canonical = self.pool.header(n).await?;
            if canonical.hash == self.window[&n].hash {
                fork = Some((n, canonical.hash));
                break;
            }
        }
        let (fork_number, fork_hash) = match fork {
            Some(f) => f,
            None => {
                // Deeper than the window: nothing left to compare with. Retract the whole
                // window and start again below it.
                let lowest = self.window.keys().next().copied().unwrap_or(0);
                let below = lowest.saturating_sub(1);
                let h = self.pool.header(below).await?;
                tracing::error!(chain = %self.cfg.name, window = self.cfg.reorg_window,
                    "reorg deeper than the reorg window: every block the window held is retracted; events from older blocks cannot be checked (raise reorg_window)");
                (h.num(), h.hash)
            }
        };
        let retracted: Vec<&WindowBlock> = self
            .window
            .range(fork_number + 1..)
            .map(|(_, b)| b)
            .collect();
        let depth = self.cursor.map_or(0, |c| c.0.saturating_sub(fork_number));
        let mut retracted_events = Vec::new();
        let mut removed = Vec::new();
        for b in &retracted {
            for e in &b.events {
                retracted_events.push(RetractedEvent {
                    key: e.key.clone(),
                    event_type: e.event_type.clone(),
                    block_number: b.number,
                    block_hash: b.hash.to_string(),
                });
                if let Some(copy) = e.envelope.as_ref().and_then(retraction_of) {
                    removed.push(copy);
                }
            }
        }
        let first = retracted.first().map(|b| b.hash).unwrap_or(B256::ZERO);
        let report = ChainReorgDetected {
            fork_block_number: fork_number,
            fork_block_hash: fork_hash.to_string(),
            retracted_blocks: retracted.iter().map(|b| b.hash.to_string()).collect(),
            retracted_events,
            depth,
        };
        tracing::warn!(chain = %self.cfg.name, fork = fork_number, depth, retracted = report.retracted_events.len(),
            "reorg: the abandoned branch's events are retracted; ingesting the canonical branch");
        let mut events = vec![Envelope::new(
            SOURCE,
            format!("reorg:{chain_id}:{fork_hash}:{first}"),
            &report,
        )
        .with_chain(chain_id)];
        events.extend(removed);
        self.append(&events).await?;
        self.store.rewind(fork_number, fork_hash).await?;
        self.window.retain(|n, _| *n <= fork_number);
        self.window
            .entry(fork_number)
            .or_insert_with(|| WindowBlock {
                number: fork_number,
                hash: fork_hash,
                parent_hash: B256::ZERO,
                events: Vec::new(),
            });
        self.values.retain(|_, (n, _)| *n <= fork_number);
        self.cursor = Some((fork_number, fork_hash));
        self.stats.reorgs.fetch_add(1, Ordering::Relaxed);
        if self.resolve_params() {
            self.rebuild();
        }
        Ok(Step::Reorg(fork_number))
    }

    // ------------------------------------------------------------------ state

    async fn append(&self, events: &[Envelope]) -> Result<(), WatchError> {
        append(self.log.as_ref(), &self.stats, events).await
    }

    /// Takes a committed range into memory.
    fn apply(&mut self, commit: Commit) {
        for b in commit.blocks {
            self.window.insert(b.number, b);
        }
        if let Some(below) = commit.prune_below {
            self.window = self.window.split_off(&below);
        }
        if let Some(c) = commit.cursor {
            self.cursor = Some(c);
            self.from_genesis = false;
        }
    }

    /// Parameters whose values are other calls' results (the aggregator behind a proxy):
    /// recomputed from the last values. Returns whether any changed.
    fn resolve_params(&mut self) -> bool {
        let mut resolved: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for c in self.plan.calls(&self.params) {
            let Some(key) = &c.resolves else { continue };
            let set = resolved.entry(key.clone()).or_default();
            if let Some((_, Value::Object(m))) = self.values.get(&c.id) {
                if let Some(Value::String(a)) = m.values().next() {
                    if DynSolType::Address.coerce_str(a).is_ok() {
                        set.insert(a.clone());
                    }
                }
            }
        }
        let mut changed = false;
        for (key, set) in resolved {
            let entry = self.params.entry(key).or_default();
            if *entry != set {
                *entry = set;
                changed = true;
            }
        }
        changed
    }

    /// Decoders and calls for the current parameters.
    fn rebuild(&mut self) {
        self.decoding = Decoding::new(self.plan.decoders(&self.params));
        self.calls = self.plan.calls(&self.params);
    }
}

/// Appends `events` in chunks, counting them.
async fn append(log: &dyn EventLog, stats: &Stats, events: &[Envelope]) -> Result<(), WatchError> {
    for chunk in events.chunks(APPEND_CHUNK) {
        log.append(chunk).await?;
    }
    stats
        .events
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Checks that a log belongs to the fetched range and to the block hash the headers (or the
/// other logs of its block) say.
fn check_log(
    log: &Log,
    fetched: &Fetched,
    by_number: &HashMap<u64, &BlockHeader>,
    block_hashes: &mut HashMap<u64, B256>,
) -> Result<(), WatchError> {
    let (Some(number), Some(hash)) = (log.block_number, log.block_hash) else {
        return Err(WatchError::Inconsistent(
            "a log without its block number or hash (a pending log?)".to_owned(),
        ));
    };
    if number < fetched.from || number > fetched.to {
        return Err(WatchError::Inconsistent(format!(
            "a log of block {number} in the answer for blocks {}..={}",
            fetched.from, fetched.to
        )));
    }
    if let Some(h) = by_number.get(&number) {
        if h.hash != hash {
            return Err(WatchError::Inconsistent(format!(
                "a log of block {number} carries hash {hash}, the header says {} (a reorg under way?)",
                h.hash
            )));
        }
    }
    if let Some(seen) = block_hashes.insert(number, hash) {
        if seen != hash {
            return Err(WatchError::Inconsistent(format!(
                "logs of block {number} carry two block hashes (a reorg under way?)"
            )));
        }
    }
    Ok(())
}

/// What a window block remembers of an event.
fn emitted(e: &Envelope) -> EmittedEvent {
    EmittedEvent {
        key: e.key.clone(),
        event_type: e.event_type.clone(),
        envelope: (e.event_type == ChainLogObserved::TYPE)
            .then(|| serde_json::from_slice(&e.to_json()).ok())
            .flatten(),
    }
}

/// A retracted log, repeated with `removed: true`: derived from the original (same story,
/// deterministic key).
fn retraction_of(original: &Value) -> Option<Envelope> {
    let env = Envelope::from_json(&serde_json::to_vec(original).ok()?).ok()?;
    let mut payload: ChainLogObserved = env.payload().ok()?;
    payload.removed = true;
    Some(env.derive(SOURCE, "retracted", &payload))
}

/// `eth_getLogs` over `from..=to`, split in halves when the provider refuses a range as too
/// large (and the range size for later requests lowered).
async fn fetch_logs(
    pool: &EndpointPool,
    decoding: &Decoding,
    from: u64,
    to: u64,
    range: &RangeSize,
) -> Result<Vec<Log>, WatchError> {
    let mut out = Vec::new();
    let mut todo = vec![(from, to)];
    while let Some((a, b)) = todo.pop() {
        let filter = LogFilter {
            from_block: a,
            to_block: b,
            address: decoding.addresses.clone(),
            topics: decoding.topics.clone(),
        };
        match pool.logs(&filter).await {
            Ok(mut logs) => {
                range.succeeded();
                out.append(&mut logs);
            }
            Err(ChainError::RangeTooLarge { endpoint, message }) => {
                if a == b {
                    return Err(WatchError::Stuck(format!(
                        "{endpoint} refuses the logs of block {a} alone as too large ({message}); \
                         narrow the watched addresses or events, or use another endpoint"
                    )));
                }
                range.refused(b - a + 1);
                let mid = a + (b - a) / 2;
                tracing::debug!(
                    from = a,
                    to = b,
                    "log range refused as too large; splitting"
                );
                // Popped last-in first-out: the lower half first.
                todo.push((mid + 1, b));
                todo.push((a, mid));
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Sub-ranges were fetched lowest first; order by block and index all the same.
    out.sort_by_key(|l| (l.block_number, l.log_index));
    Ok(out)
}
