//! The service: the [`Engine`] between the event log, the clock, the playbook folder and the
//! store.
//!
//! Per batch of deliveries: each event goes through the engine, everything it emitted is
//! appended in one call, the store is written ([`crate::store::save`]), and only then are the
//! deliveries acked. When the append or the store fails, the batch is retried and the engine
//! is rebuilt from the store and the log, so memory never runs ahead of what was recorded.
//!
//! The consumer starts at the log's end the first time (a new runner does not act on history)
//! and reads every event type: trigger patterns change with reloads, a durable consumer's
//! filter does not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_config::{Config, SystemEnv};
use steward_events::Envelope;
use steward_log::{DeliverFrom, Delivery, HandlerError, Subscription};
use steward_runtime::{Service, ServiceContext, ServiceKind};

use crate::engine::{Approvers, Engine};
use crate::playbook::{self, CheckContext, Playbook};
use crate::{store, NAME};

/// Events per fetch.
const BATCH: usize = 500;
/// Longest sleep before the clock is looked at again (wall-clock jumps, new schedules).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Where the runner's "now" comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves with tokio's time, from a chosen start: with a paused runtime
/// (`#[tokio::test(start_paused = true)]`) schedules and timeouts run in virtual time.
pub struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(base: DateTime<Utc>) -> Self {
        Self {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default()
    }
}

pub struct Runner {
    clock: Arc<dyn Clock>,
}

impl Runner {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }
}

/// The playbook folder of `config`, resolved against its directory.
pub fn folder(config: &Config) -> Option<PathBuf> {
    config.playbooks.folder.as_ref().map(|f| {
        if f.is_absolute() {
            f.clone()
        } else {
            config.base_dir.join(f)
        }
    })
}

/// Who may answer approvals, from `playbooks.approvers`.
pub fn approvers(config: &Config) -> Approvers {
    config
        .playbooks
        .approvers
        .iter()
        .filter_map(|(name, a)| a.telegram_user_id.map(|u| (u, name.clone())))
        .collect()
}

/// The playbook files of a folder: `*.yaml` and `*.yml` directly in it, by name.
pub fn files(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    out.sort();
    Ok(out)
}

/// Reads every playbook of `dir`: the ones that load, and every problem of those that do not
/// (two files with one name is a problem of the second).
pub fn load_folder(dir: &std::path::Path, ctx: &CheckContext<'_>) -> (Vec<Playbook>, Vec<String>) {
    let mut ok: Vec<Playbook> = Vec::new();
    let mut problems = Vec::new();
    let list = match files(dir) {
        Ok(l) => l,
        Err(e) => {
            problems.push(format!(
                "{}: cannot read the playbooks folder: {e}",
                dir.display()
            ));
            return (ok, problems);
        }
    };
    for path in list {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{shown}: cannot read: {e}"));
                continue;
            }
        };
        match playbook::parse(&text, &shown, &SystemEnv, ctx) {
            Ok(pb) => {
                if let Some(other) = ok.iter().find(|o| o.name == pb.name) {
                    problems.push(format!(
                        "{shown}: name: `{}` is already the name of {}",
                        pb.name, other.file
                    ));
                } else {
                    ok.push(pb);
                }
            }
            Err(errors) => problems.extend(errors.iter().map(ToString::to_string)),
        }
    }
    (ok, problems)
}

/// What the folder holds now: file → content version, to notice changes.
fn fingerprint(dir: &std::path::Path) -> BTreeMap<PathBuf, String> {
    files(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            std::fs::read_to_string(&p)
                .ok()
                .map(|t| (p, playbook::version_of(&t)))
        })
        .collect()
}

struct State {
    engine: Engine,
    position: u64,
}

async fn rebuild(ctx: &ServiceContext, now: DateTime<Utc>) -> anyhow::Result<State> {
    let config = ctx.config.clone();
    let check = CheckContext {
        config: Some(&config),
        notify_templates: None,
    };
    let recompile = |text: &str, file: &str| -> Result<Playbook, String> {
        playbook::parse(text, file, &SystemEnv, &check).map_err(|e| {
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
    };
    let mut engine = Engine::new(approvers(&config));
    let position = store::load(&ctx.store, &mut engine, &recompile).await?;
    let (position, folded) =
        store::replay_tail(&ctx.log, &ctx.store, &mut engine, position, &recompile).await?;
    if folded > 0 {
        tracing::info!(
            events = folded,
            "folded the runner's events that the store had not recorded (an interrupted batch)"
        );
    }
    if let Some(dir) = folder(&config) {
        let (pbs, problems) = load_folder(&dir, &check);
        for p in problems {
            tracing::error!(problem = %p, "playbook not loaded");
        }
        for pb in pbs {
            engine.load(pb);
        }
    }
    let _ = now;
    Ok(State { engine, position })
}

impl State {
    /// Appends what the engine emitted, records it, and reports what it noted.
    async fn flush(&mut self, ctx: &ServiceContext) -> anyhow::Result<()> {
        for n in self.engine.take_notes() {
            tracing::info!(playbook = %n.playbook, "{}", n.message);
        }
        let out = self.engine.take_out();
        if !out.is_empty() {
            let appended = ctx.log.append(&out).await?;
            for (e, a) in out.iter().zip(&appended) {
                self.position = self.position.max(a.sequence);
                log_event(e, a.duplicate);
            }
        }
        store::save(&ctx.store, &mut self.engine, Some(self.position)).await?;
        self.engine.take_finished_runs();
        Ok(())
    }

    fn reload(&mut self, config: &Config) {
        let Some(dir) = folder(config) else { return };
        let check = CheckContext::for_config(config);
        let (pbs, problems) = load_folder(&dir, &check);
        for p in &problems {
            tracing::error!(problem = %p, "playbook not reloaded: the version loaded before stays in use");
        }
        let mut names: std::collections::BTreeSet<String> =
            pbs.iter().map(|p| p.name.clone()).collect();
        // A file that no longer loads keeps its last good version.
        for pb in self.engine.current() {
            if problems.iter().any(|p| p.starts_with(&pb.file)) {
                names.insert(pb.name.clone());
            }
        }
        for pb in pbs {
            let before = self.engine.playbook(&pb.name).map(|p| p.version.clone());
            if before.as_deref() != Some(pb.version.as_str()) {
                tracing::info!(playbook = %pb.name, version = %pb.version, previous = ?before, file = %pb.file,
                    "playbook loaded: new runs use this version, runs in flight keep theirs");
                self.engine.load(pb);
            }
        }
        self.engine.retain(&names);
    }
}

fn log_event(e: &Envelope, duplicate: bool) {
    tracing::info!(event_type = %e.event_type, key = %e.key, correlation_id = %e.correlation_id, duplicate,
        "runner wrote");
}

#[cfg(unix)]
fn hangups() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; playbooks reload on file changes only");
            None
        }
    }
}

async fn next_hangup(#[cfg(unix)] h: &mut Option<tokio::signal::unix::Signal>) {
    #[cfg(unix)]
    if let Some(s) = h {
        s.recv().await;
        return;
    }
    std::future::pending::<()>().await
}

#[async_trait]
impl Service for Runner {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> ServiceKind {
        ServiceKind::Worker
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let clock = self.clock.clone();
        let config = ctx.config.clone();
        let dir = folder(&config);
        let mut state = rebuild(&ctx, clock.now()).await?;
        match &dir {
            None => tracing::info!(
                "no `playbooks.folder` in the configuration: the runner runs no playbooks"
            ),
            Some(d) => {
                tracing::info!(folder = %d.display(), playbooks = state.engine.current().count(),
                runs_in_flight = state.engine.runs().count(), "playbooks loaded")
            }
        }
        let spec =
            steward_runtime::archiver::consumer_spec(&ctx, NAME).deliver_from(DeliverFrom::New);
        let sub = Subscription::open(ctx.log.clone(), spec, ctx.metrics.clone()).await?;
        state.engine.on_tick(clock.now());
        state.engine.resume_all(clock.now());
        state.flush(&ctx).await?;
        ctx.ready.set_ready();

        #[cfg(unix)]
        let mut hup = hangups();
        let reload_every = config.playbooks.reload_interval;
        let mut seen = dir.as_deref().map(fingerprint).unwrap_or_default();
        let period = if reload_every.is_zero() {
            Duration::from_secs(3600)
        } else {
            reload_every
        };
        let mut reload_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        reload_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = clock.now();
            let sleep = state
                .engine
                .next_wakeup(now)
                .map(|t| (t - now).to_std().unwrap_or_default())
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = tokio::time::sleep(sleep) => tick(&mut state, &ctx, clock.as_ref()).await?,
                _ = reload_tick.tick(), if !reload_every.is_zero() => {
                    if let Some(d) = &dir {
                        let now_seen = fingerprint(d);
                        if now_seen != seen {
                            seen = now_seen;
                            state.reload(&config);
                            state.flush(&ctx).await?;
                        }
                    }
                }
                _ = next_hangup(#[cfg(unix)] &mut hup) => {
                    tracing::info!("SIGHUP: reloading playbooks");
                    if let Some(d) = &dir {
                        seen = fingerprint(d);
                    }
                    state.reload(&config);
                    state.flush(&ctx).await?;
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
                        // The wait for events can end together with the sleep and win the
                        // select (a loaded machine; a paused clock moved past both): a due
                        // tick must not wait for the next one.
                        let now = clock.now();
                        if state.engine.next_wakeup(now).is_some_and(|t| t <= now) {
                            tick(&mut state, &ctx, clock.as_ref()).await?;
                        }
                        continue;
                    }
                    let now = clock.now();
                    state.engine.on_tick(now);
                    for d in &batch {
                        let _span = steward_runtime::event_span(NAME, &d.event).entered();
                        state.engine.on_event(&d.event, now);
                    }
                    match state.flush(&ctx).await {
                        Ok(()) => sub.ack(&batch).await?,
                        Err(e) => {
                            tracing::warn!(error = %e, events = batch.len(), "runner output not recorded; the batch will be retried");
                            fail_all(&sub, &batch, &e).await;
                            state = rebuild(&ctx, clock.now()).await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The clock moved: what is due goes on, and is recorded.
async fn tick(state: &mut State, ctx: &ServiceContext, clock: &dyn Clock) -> anyhow::Result<()> {
    state.engine.on_tick(clock.now());
    if let Err(e) = state.flush(ctx).await {
        tracing::warn!(error = %e, "runner could not record a tick; state rebuilt from the store and the log");
        *state = rebuild(ctx, clock.now()).await?;
    }
    Ok(())
}

async fn fail_all(sub: &Subscription, batch: &[Delivery], e: &anyhow::Error) {
    for d in batch {
        if let Err(err) = sub.fail(d, &HandlerError::Retry(e.to_string())).await {
            tracing::warn!(error = %err, "cannot nak a delivery; it comes back after the ack wait");
        }
    }
}
