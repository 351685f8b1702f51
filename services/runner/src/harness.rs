//! The runner as the binary runs it, on an embedded log and a SQLite store in a folder: for
//! the integration tests and the benchmark.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use steward_config::{Config, Document, MapEnv};
use steward_log::embedded::EmbeddedLog;
use steward_log::{EventLog, LogMetrics};
use steward_runtime::{Readiness, ServiceContext};
use steward_store::{Store, StoreOptions};
use tokio_util::sync::CancellationToken;

use crate::Clock;

/// A configuration from YAML text, with relative paths resolved against `base`.
pub fn config(yaml: &str, base: &Path) -> anyhow::Result<Config> {
    let doc = Document::parse(yaml, "steward.yaml", &MapEnv::new())?;
    Ok(Config::from_document_checked(
        &doc,
        base.to_path_buf(),
        &crate::check_config,
    )?)
}

/// How long the pools of [`Harness::open`] wait for a connection: far beyond any time a test
/// advances a paused clock.
pub const PAUSED_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// A running runner.
pub struct Harness {
    pub dir: PathBuf,
    pub log: Arc<dyn EventLog>,
    pub store: Store,
    pub config: Arc<Config>,
    store_options: StoreOptions,
    /// The log when the harness opened it (a [`Harness::kill`] reopens it), with its pool's
    /// acquire timeout.
    own_log: Option<(Arc<EmbeddedLog>, Duration)>,
    shutdown: CancellationToken,
    readiness: Readiness,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Harness {
    /// Opens the log and the store in `dir` (kept across restarts) and starts the runner.
    pub async fn start(dir: &Path, config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let mut h = Self::open_inner(dir, config, None, Duration::from_secs(30)).await?;
        h.restart(clock).await?;
        Ok(h)
    }

    /// [`Harness::start`] on a log of the caller's (a wrapper that counts appends).
    pub async fn start_with_log(
        dir: &Path,
        config: Config,
        clock: Arc<dyn Clock>,
        log: Arc<dyn EventLog>,
    ) -> anyhow::Result<Self> {
        let mut h = Self::open_inner(dir, config, Some(log), Duration::from_secs(30)).await?;
        h.restart(clock).await?;
        Ok(h)
    }

    /// The log and the store, without the runner ([`Harness::restart`] starts it), for tests
    /// in paused time. Open them with the clock running: connecting waits on threads, and a
    /// paused clock would jump to the connection timeout meanwhile. Their pools wait for a
    /// connection as long as it takes ([`PAUSED_ACQUIRE_TIMEOUT`]): the wait is measured on
    /// tokio's clock, which the test moves while a connection opens in real time (pools
    /// retire connections after ten idle minutes and after thirty, so hours of virtual time
    /// reopen some).
    pub async fn open(dir: &Path, config: Config) -> anyhow::Result<Self> {
        Self::open_inner(dir, config, None, PAUSED_ACQUIRE_TIMEOUT).await
    }

    async fn open_inner(
        dir: &Path,
        config: Config,
        log: Option<Arc<dyn EventLog>>,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let (log, own_log) = match log {
            Some(l) => (l, None),
            None => {
                let l = Arc::new(open_log(dir, acquire_timeout).await?);
                (l.clone() as Arc<dyn EventLog>, Some((l, acquire_timeout)))
            }
        };
        let store_options = StoreOptions {
            max_connections: 4,
            acquire_timeout,
            ..StoreOptions::default()
        };
        let store = Store::connect_with(&store_url(dir), &store_options).await?;
        Ok(Self {
            dir: dir.to_path_buf(),
            log,
            store,
            config: Arc::new(config),
            store_options,
            own_log,
            shutdown: CancellationToken::new(),
            readiness: Readiness::default(),
            handle: None,
        })
    }

    fn spawn(&mut self, clock: Arc<dyn Clock>) {
        let mut registry = prometheus_client::registry::Registry::default();
        self.shutdown = CancellationToken::new();
        self.readiness = Readiness::default();
        let ctx = ServiceContext {
            name: crate::NAME,
            log: self.log.clone(),
            metrics: LogMetrics::register(&mut registry),
            store: self.store.clone(),
            config: self.config.clone(),
            shutdown: self.shutdown.clone(),
            ready: self.readiness.register(crate::NAME),
        };
        self.handle = Some(tokio::spawn(crate::service_with_clock(clock).run(ctx)));
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        for _ in 0..2000 {
            if self.readiness.is_ready() {
                return Ok(());
            }
            if let Some(why) = self.why_stopped().await {
                anyhow::bail!("the runner stopped before it was ready: {why}");
            }
            real_pause(Duration::from_millis(5)).await;
        }
        anyhow::bail!("the runner did not become ready")
    }

    /// Stops the runner as a shutdown would.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await??;
        }
        Ok(())
    }

    /// Kills the runner without letting it finish anything (a crash), and closes what a dead
    /// process holds: the store's connections and, if the harness opened it, the log's. (An
    /// aborted task can leave a pooled SQLite connection inside a transaction it began, still
    /// holding the write lock; a process that dies closes it, and SQLite rolls it back.) A log
    /// of the caller's is the caller's to reopen.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(h) = self.handle.take() {
            h.abort();
            let _ = h.await;
        }
        self.store.close().await;
        self.store = Store::connect_with(&store_url(&self.dir), &self.store_options).await?;
        if let Some((old, acquire_timeout)) = self.own_log.take() {
            old.close().await;
            let l = Arc::new(open_log(&self.dir, acquire_timeout).await?);
            self.log = l.clone();
            self.own_log = Some((l, acquire_timeout));
        }
        Ok(())
    }

    /// Whether the runner task ended (by itself: an error, or a stop).
    pub fn stopped(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Why the runner ended, when it ended by itself (for a test's failure message).
    pub async fn why_stopped(&mut self) -> Option<String> {
        match self.handle.take_if(|h| h.is_finished()) {
            Some(h) => Some(match h.await {
                Ok(Ok(())) => "it returned without an error".to_owned(),
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => format!("the task failed: {e}"),
            }),
            None => None,
        }
    }

    /// Starts the runner again on the same log and store.
    pub async fn restart(&mut self, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
        self.spawn(clock);
        self.wait_ready().await
    }

    /// Every event in the log, in order.
    pub async fn events(&self) -> anyhow::Result<Vec<steward_events::Envelope>> {
        let mut out = Vec::new();
        let mut next = 1;
        loop {
            let batch = self.log.read(next, &[], 1000).await?;
            if batch.is_empty() {
                return Ok(out);
            }
            for s in batch {
                next = s.sequence + 1;
                out.push(s.event);
            }
        }
    }
}

fn store_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("steward.db").display())
}

async fn open_log(dir: &Path, acquire_timeout: Duration) -> anyhow::Result<EmbeddedLog> {
    Ok(
        EmbeddedLog::open_with_acquire_timeout(&dir.join("events.db"), "steward", acquire_timeout)
            .await?,
    )
}

/// Waits `d` of real time, whatever tokio's clock does (a paused clock does not move for it:
/// a blocking task holds auto-advance off while it runs).
pub async fn real_pause(d: Duration) {
    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(d)).await;
}

/// While it lives, a paused clock moves only by `tokio::time::advance`: no jump to the next
/// timer while the runner waits on SQLite (whose connection pools have timeouts of their own).
pub struct Frozen {
    stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Frozen {
    pub fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // A blocking task inhibits the paused clock's auto-advance for as long as it runs.
        drop(tokio::task::spawn_blocking(move || {
            let _ = rx.recv();
        }));
        Self { stop: Some(tx) }
    }
}

impl Default for Frozen {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
