//! The runner as the binary runs it, on an embedded log and a SQLite store in a folder: for
//! the integration tests and the benchmark.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use steward_config::{Config, Document, MapEnv};
use steward_log::{EventLog, LogMetrics};
use steward_runtime::{Readiness, ServiceContext};
use steward_store::Store;
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

/// A running runner.
pub struct Harness {
    pub dir: PathBuf,
    pub log: Arc<dyn EventLog>,
    pub store: Store,
    pub config: Arc<Config>,
    shutdown: CancellationToken,
    readiness: Readiness,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Harness {
    /// Opens the log and the store in `dir` (kept across restarts) and starts the runner.
    pub async fn start(dir: &Path, config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let log: Arc<dyn EventLog> = Arc::new(
            steward_log::embedded::EmbeddedLog::open(&dir.join("events.db"), "steward").await?,
        );
        let store =
            Store::connect(&format!("sqlite://{}", dir.join("steward.db").display()), 4).await?;
        let mut h = Self {
            dir: dir.to_path_buf(),
            log,
            store,
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            readiness: Readiness::default(),
            handle: None,
        };
        h.spawn(clock);
        h.wait_ready().await?;
        Ok(h)
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

    async fn wait_ready(&self) -> anyhow::Result<()> {
        for _ in 0..2000 {
            if self.readiness.is_ready() {
                return Ok(());
            }
            if self.handle.as_ref().is_some_and(|h| h.is_finished()) {
                anyhow::bail!("the runner stopped before it was ready");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
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

    /// Kills the runner without letting it finish anything (a crash).
    pub async fn kill(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
            let _ = h.await;
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
