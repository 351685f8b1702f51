//! The runner as the binary runs it (embedded log, SQLite store): a crash mid-run and a resume
//! that repeats no effect (also when the store lost the last batch and the run is rebuilt from
//! the log alone); dedup and cooldown under a flood of identical events; schedules in paused
//! time; reloads (file change and SIGHUP) while runs are in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use steward_events::{
    Envelope, PlaybookRunFinished, PlaybookRunStarted, RiskSafeDrift, SafeTxExecuted, Severity,
};
use steward_log::embedded::EmbeddedLog;
use steward_log::{Appended, Consumer, ConsumerSpec, EventLog, Stored};
use steward_runner::harness::{config, real_pause, Frozen, Harness};
use steward_runner::{Clock, SystemClock, TokioClock};
use steward_store::sqlx;

/// The embedded log, counting every append of every key (the log itself drops repeats, so it
/// cannot tell whether the runner asked twice; this can).
struct CountingLog {
    dir: std::path::PathBuf,
    inner: Mutex<Arc<EmbeddedLog>>,
    appends: Mutex<HashMap<String, usize>>,
}

impl CountingLog {
    fn count(&self, key: &str) -> usize {
        self.appends.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn inner(&self) -> Arc<EmbeddedLog> {
        self.inner.lock().unwrap().clone()
    }

    /// Closes the log and opens it again, as a crashed process would find it.
    async fn reopen(&self) {
        let old = self.inner();
        old.close().await;
        *self.inner.lock().unwrap() = Arc::new(
            EmbeddedLog::open(&self.dir.join("events.db"), "steward")
                .await
                .unwrap(),
        );
    }
}

#[async_trait]
impl EventLog for CountingLog {
    fn backend(&self) -> &'static str {
        "embedded"
    }
    fn prefix(&self) -> &str {
        "steward"
    }
    async fn append(&self, events: &[Envelope]) -> steward_log::Result<Vec<Appended>> {
        {
            let mut a = self.appends.lock().unwrap();
            for e in events {
                *a.entry(e.key.clone()).or_default() += 1;
            }
        }
        self.inner().append(events).await
    }
    async fn consumer(&self, spec: &ConsumerSpec) -> steward_log::Result<Box<dyn Consumer>> {
        self.inner().consumer(spec).await
    }
    async fn read(
        &self,
        from: u64,
        filters: &[String],
        max: usize,
    ) -> steward_log::Result<Vec<Stored>> {
        self.inner().read(from, filters, max).await
    }
    async fn last_sequence(&self) -> steward_log::Result<u64> {
        self.inner().last_sequence().await
    }
}

async fn counting(dir: &std::path::Path) -> Arc<CountingLog> {
    let inner = Arc::new(
        EmbeddedLog::open(&dir.join("events.db"), "steward")
            .await
            .unwrap(),
    );
    Arc::new(CountingLog {
        dir: dir.to_path_buf(),
        inner: Mutex::new(inner),
        appends: Mutex::new(HashMap::new()),
    })
}

fn setup(playbooks: &[(&str, &str)], reload: &str) -> (tempfile::TempDir, steward_config::Config) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("playbooks")).unwrap();
    for (name, text) in playbooks {
        std::fs::write(dir.path().join("playbooks").join(name), text).unwrap();
    }
    let yaml = format!(
        "playbooks: {{folder: playbooks, reload_interval: {reload}}}\nnotify:\n  telegram: {{bot_token: \"0:test\"}}\n  channels:\n    - {{name: ops, telegram: {{chats: [1]}}}}\n"
    );
    let cfg = config(&yaml, dir.path()).unwrap();
    (dir, cfg)
}

fn drift(safe: u64, n: u64) -> (String, RiskSafeDrift) {
    (
        format!("drift:{safe}:{n}"),
        RiskSafeDrift {
            safe: format!("0x{safe:040x}"),
            field: "threshold".into(),
            expected: serde_json::json!(3),
            actual: serde_json::json!(1),
            severity: Severity::Critical,
            active: true,
        },
    )
}

fn executed(nonce: u64) -> SafeTxExecuted {
    SafeTxExecuted {
        safe: "0x0000000000000000000000000000000000000001".into(),
        safe_tx_hash: format!("0x{nonce:064x}"),
        nonce,
        transaction_hash: format!("0x{:064x}", nonce + 1000),
        block_number: 1,
    }
}

async fn append<P: steward_events::Payload>(log: &dyn EventLog, key: &str, p: &P) -> Envelope {
    let e = Envelope::new("test", key.to_owned(), p);
    log.append(std::slice::from_ref(&e)).await.unwrap();
    e
}

/// Waits (in the runtime's time) until `f` holds on the log's events.
async fn until<F: Fn(&[Envelope]) -> bool>(h: &mut Harness, what: &str, f: F) -> Vec<Envelope> {
    for _ in 0..4000 {
        let events = h.events().await.unwrap();
        if f(&events) {
            return events;
        }
        if h.stopped() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gave_up(h, what).await
}

/// A failed wait: what the log holds, and why the runner stopped if it did.
async fn gave_up(h: &mut Harness, what: &str) -> ! {
    let events = h.events().await.unwrap();
    let why = h
        .why_stopped()
        .await
        .map_or_else(String::new, |w| format!(" (the runner stopped: {w})"));
    panic!(
        "timed out waiting for {what}{why}; the log has:\n{}",
        events
            .iter()
            .map(|e| format!("{} {}", e.event_type, e.data.get()))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn of<'a>(events: &'a [Envelope], t: &str) -> Vec<&'a Envelope> {
    events.iter().filter(|e| e.event_type == t).collect()
}

fn finished(events: &[Envelope], n: usize) -> bool {
    of(events, "playbook.run.finished").len() >= n
}

const TWO_EFFECTS: &str = "\
name: two-effects
on:
  - event: risk.safe.drift
    where: event.data.active
steps:
  - id: first
    notify: {channels: [ops], severity: high, context: {n: \"first {{event.data.safe}}\"}}
  - id: wait
    wait_for: {event: safe.tx.executed, where: \"event.data.nonce == 7\", timeout: 1h}
  - id: second
    notify: {channels: [ops], severity: high, context: {n: \"second {{steps.wait.event.data.transaction_hash}}\"}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_run_resumes_at_the_first_step_not_completed_and_repeats_no_effect() {
    let (dir, cfg) = setup(&[("two-effects.yaml", TWO_EFFECTS)], "0s");
    let log = counting(dir.path()).await;
    let mut h = Harness::start_with_log(dir.path(), cfg, Arc::new(SystemClock), log.clone())
        .await
        .unwrap();
    let (key, d) = drift(1, 1);
    append(log.as_ref(), &key, &d).await;
    let events = until(&mut h, "the first effect", |e| {
        !of(e, "playbook.step.completed").is_empty()
    })
    .await;
    let first = of(&events, "notify.requested")[0].clone();
    let started = of(&events, "playbook.run.started")[0].clone();
    // The run waits; the runner dies without finishing anything (maybe in the middle of
    // recording that step: the log has it, the store perhaps not).
    h.kill().await.unwrap();
    log.reopen().await;
    append(log.as_ref(), "executed:6", &executed(6)).await;
    append(log.as_ref(), "executed:7", &executed(7)).await;
    h.restart(Arc::new(SystemClock)).await.unwrap();
    let events = until(&mut h, "the run to finish", |e| finished(e, 1)).await;
    let notes = of(&events, "notify.requested");
    assert_eq!(notes.len(), 2, "one request per step");
    assert!(
        notes[1]
            .data
            .get()
            .contains(&format!("second 0x{:064x}", 1007)),
        "{}",
        notes[1].data.get()
    );
    // Every key the runner wrote was appended once: nothing was asked again after the crash.
    assert_eq!(log.count(&first.key), 1);
    assert_eq!(log.count(&started.key), 1);
    for e in &events {
        if e.source == "runner" {
            assert_eq!(
                log.count(&e.key),
                1,
                "{} {} appended {} times",
                e.event_type,
                e.key,
                log.count(&e.key)
            );
        }
    }
    let run: PlaybookRunStarted = started.payload().unwrap();
    assert_eq!(
        run.run_key, started.key,
        "the run key is the started event's key"
    );
    assert_eq!(
        first.key,
        steward_events::derive_key(&run.run_key, "step/first"),
        "an effect's key is run key + step id"
    );
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_last_batch_never_reached_the_store_is_rebuilt_from_the_log() {
    let (dir, cfg) = setup(&[("two-effects.yaml", TWO_EFFECTS)], "0s");
    let log = counting(dir.path()).await;
    let mut h = Harness::start_with_log(dir.path(), cfg, Arc::new(SystemClock), log.clone())
        .await
        .unwrap();
    let (key, d) = drift(2, 1);
    append(log.as_ref(), &key, &d).await;
    until(&mut h, "the first effect", |e| {
        !of(e, "playbook.step.completed").is_empty()
    })
    .await;
    h.stop().await.unwrap();
    // As if the store transaction of that batch had been lost: the log is all there is.
    for q in [
        "DELETE FROM runner_runs",
        "DELETE FROM runner_keys",
        "UPDATE runner_position SET sequence = 0",
    ] {
        sqlx::query(q).execute(h.store.pool()).await.unwrap();
    }
    h.restart(Arc::new(SystemClock)).await.unwrap();
    append(log.as_ref(), "executed:7", &executed(7)).await;
    let events = until(&mut h, "the run to finish", |e| finished(e, 1)).await;
    assert_eq!(of(&events, "notify.requested").len(), 2);
    for e in events.iter().filter(|e| e.source == "runner") {
        assert_eq!(
            log.count(&e.key),
            1,
            "{} appended {} times",
            e.event_type,
            log.count(&e.key)
        );
    }
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_identical_events_starts_one_run_and_the_cooldown_holds_the_next_flood() {
    let pb = "\
name: flood
on:
  - event: risk.safe.drift
dedup: \"{{event.data.safe}}\"
cooldown: 1h
steps:
  - id: alert
    notify: {channels: [ops], severity: critical, context: {safe: \"{{event.data.safe}}\"}}
  - id: hold
    wait_for: {event: safe.tx.executed, timeout: 1h}
";
    let (dir, cfg) = setup(&[("flood.yaml", pb)], "0s");
    let log = counting(dir.path()).await;
    let mut h = Harness::start_with_log(dir.path(), cfg, Arc::new(SystemClock), log.clone())
        .await
        .unwrap();
    async fn flood(log: &CountingLog, round: u64) {
        for batch in 0..6 {
            let events: Vec<Envelope> = (0..50)
                .map(|i| {
                    let (k, d) = drift(1, round * 1000 + batch * 50 + i);
                    Envelope::new("risk", k, &d)
                })
                .collect();
            log.append(&events).await.unwrap();
        }
    }
    // 300 identical drifts of Safe 1 while its run is still going: one run.
    flood(&log, 1).await;
    let (k, d) = drift(2, 1);
    append(log.as_ref(), &k, &d).await;
    let events = until(&mut h, "the sentinel's run", |e| {
        of(e, "playbook.run.started").len() >= 2
    })
    .await;
    let starts = of(&events, "playbook.run.started");
    assert_eq!(
        starts.len(),
        2,
        "one run for Safe 1 (dedup), one for Safe 2"
    );
    assert_eq!(of(&events, "notify.requested").len(), 2);
    // Both runs end; another 300 for Safe 1 within the hour: none (cooldown).
    append(log.as_ref(), "executed:1", &executed(1)).await;
    until(&mut h, "both runs to finish", |e| finished(e, 2)).await;
    flood(&log, 2).await;
    let (k, d) = drift(3, 1);
    append(log.as_ref(), &k, &d).await;
    let events = until(&mut h, "the second sentinel's run", |e| {
        of(e, "playbook.run.started").len() >= 3
    })
    .await;
    let safes: Vec<String> = of(&events, "playbook.run.started")
        .iter()
        .map(|e| {
            e.payload::<PlaybookRunStarted>()
                .unwrap()
                .dedup_key
                .unwrap()
        })
        .collect();
    assert_eq!(
        safes,
        vec![
            format!("0x{:040x}", 1),
            format!("0x{:040x}", 2),
            format!("0x{:040x}", 3)
        ]
    );
    assert_eq!(of(&events, "notify.requested").len(), 3);
    h.stop().await.unwrap();
}

/// The log and the store opened with the clock running, then the clock paused (see
/// [`Harness::open`]).
async fn paused(dir: &std::path::Path, cfg: steward_config::Config) -> Harness {
    tokio::time::resume();
    let h = Harness::open(dir, cfg).await.unwrap();
    tokio::time::pause();
    h
}

fn clock_at(t: &str) -> Arc<TokioClock> {
    Arc::new(TokioClock::starting_at(
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc),
    ))
}

/// Lets the runner work on what the clock just did (real time; the paused clock stays put).
async fn settle() {
    for _ in 0..3 {
        real_pause(Duration::from_millis(3)).await;
    }
}

/// Like [`until`] for paused time: polls in real time.
async fn until_real<F: Fn(&[Envelope]) -> bool>(
    h: &mut Harness,
    what: &str,
    f: F,
) -> Vec<Envelope> {
    for _ in 0..2000 {
        let events = h.events().await.unwrap();
        if f(&events) {
            return events;
        }
        if h.stopped() {
            break;
        }
        real_pause(Duration::from_millis(5)).await;
    }
    gave_up(h, what).await
}

/// Moves the paused clock to `t` (never past it) by `step`s, letting the runner work after each.
async fn advance_to(clock: &TokioClock, t: &str, step: Duration) {
    let t = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
    while clock.now() < t {
        let left = (t - clock.now()).to_std().unwrap();
        tokio::time::advance(step.min(left)).await;
        settle().await;
    }
}

#[tokio::test(start_paused = true)]
async fn schedules_fire_at_their_time_in_their_zone_once_each() {
    // Half past every hour in India (UTC+05:30) is every full hour in UTC.
    let pb = "\
name: hourly
on:
  - schedule: \"0 30 * * * *\"
    timezone: Asia/Kolkata
steps:
  - id: digest
    notify: {channels: [ops], severity: info, context: {at: \"{{now}}\"}}
";
    let (dir, cfg) = setup(&[("hourly.yaml", pb)], "0s");
    let mut h = paused(dir.path(), cfg).await;
    let _frozen = Frozen::new();
    let clock = clock_at("2026-03-02T07:58:00Z");
    h.restart(clock.clone()).await.unwrap();
    let runs = |e: &[Envelope]| of(e, "playbook.run.started").len();
    // Steps shorter than the SQLite pools' 30 s connection timeout: the runner reopens
    // connections the pools retire after ten idle minutes.
    let step = Duration::from_secs(20);
    advance_to(&clock, "2026-03-02T07:59:50Z", step).await;
    assert_eq!(
        runs(&h.events().await.unwrap()),
        0,
        "nothing before 13:30 in Kolkata"
    );
    advance_to(&clock, "2026-03-02T08:00:10Z", Duration::from_secs(10)).await;
    let events = until_real(&mut h, "the first run", |e| runs(e) >= 1).await;
    let at = of(&events, "notify.requested")[0].data.get().to_owned();
    assert!(at.contains("2026-03-02T08:00:"), "fired at {at}");
    // The rest of the hour: nothing new.
    advance_to(&clock, "2026-03-02T08:59:50Z", step).await;
    assert_eq!(runs(&h.events().await.unwrap()), 1);
    // The next hour: the second run, once.
    advance_to(&clock, "2026-03-02T09:00:10Z", Duration::from_secs(10)).await;
    until_real(&mut h, "the second run", |e| runs(e) >= 2).await;
    advance_to(&clock, "2026-03-02T09:30:00Z", step).await;
    let events = h.events().await.unwrap();
    assert_eq!(runs(&events), 2);
    let at = of(&events, "notify.requested")[1].data.get().to_owned();
    assert!(at.contains("2026-03-02T09:00:"), "fired at {at}");
    h.stop().await.unwrap();
}

/// The playbook `pb` (file `file`) under a runner in paused time from 2026-03-02 10:00, a
/// `risk.safe.drift` appended and the run it starts begun.
async fn started_on_drift(
    file: &str,
    pb: &str,
) -> (tempfile::TempDir, Harness, Arc<TokioClock>, Frozen) {
    let (dir, cfg) = setup(&[(file, pb)], "0s");
    let mut h = paused(dir.path(), cfg).await;
    let frozen = Frozen::new();
    let clock = clock_at("2026-03-02T10:00:00Z");
    h.restart(clock.clone()).await.unwrap();
    let (k, d) = drift(1, 1);
    append(h.log.as_ref(), &k, &d).await;
    until_real(&mut h, "the run to start", |e| {
        of(e, "playbook.run.started").len() == 1
    })
    .await;
    (dir, h, clock, frozen)
}

#[tokio::test(start_paused = true)]
async fn a_wait_times_out_in_paused_time_and_on_error_continues() {
    let pb = "\
name: patience
on:
  - event: risk.safe.drift
steps:
  - id: wait
    wait_for: {event: safe.tx.executed, timeout: 30m}
    on_error: continue
  - id: after
    notify: {channels: [ops], severity: high, context: {waited: \"{{#if steps.wait}}yes{{else}}timed out{{/if}}\"}}
";
    let (_dir, mut h, clock, _frozen) = started_on_drift("patience.yaml", pb).await;
    advance_to(&clock, "2026-03-02T10:29:00Z", Duration::from_secs(20)).await;
    assert!(
        of(&h.events().await.unwrap(), "playbook.step.failed").is_empty(),
        "not before 30 minutes"
    );
    advance_to(&clock, "2026-03-02T10:31:00Z", Duration::from_secs(20)).await;
    let events = until_real(&mut h, "the run to finish", |e| finished(e, 1)).await;
    let failed = of(&events, "playbook.step.failed");
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .data
            .get()
            .contains("no `safe.tx.executed` event matched within 30m"),
        "{}",
        failed[0].data.get()
    );
    assert!(of(&events, "notify.requested")[0]
        .data
        .get()
        .contains("timed out"));
    h.stop().await.unwrap();
}

/// A step that fails with `on_error: fail` (the default) ends the run as failed, naming the
/// step and its error in `playbook.run.finished` (the notifier alerts on it); the steps after
/// it do not run.
#[tokio::test(start_paused = true)]
async fn a_failed_step_fails_the_run_and_names_itself_in_run_finished() {
    let pb = "\
name: impatient
on:
  - event: risk.safe.drift
steps:
  - id: wait
    wait_for: {event: safe.tx.executed, timeout: 30m}
  - id: after
    notify: {channels: [ops], severity: high, context: {x: \"never\"}}
";
    let (_dir, mut h, clock, _frozen) = started_on_drift("impatient.yaml", pb).await;
    advance_to(&clock, "2026-03-02T10:31:00Z", Duration::from_secs(20)).await;
    let events = until_real(&mut h, "the run to finish", |e| finished(e, 1)).await;
    let done: PlaybookRunFinished = of(&events, "playbook.run.finished")[0].payload().unwrap();
    assert_eq!(done.outcome, "failed");
    assert_eq!(done.failed_step.as_deref(), Some("wait"));
    assert!(
        done.error
            .as_deref()
            .is_some_and(|e| e.contains("no `safe.tx.executed` event matched within 30m")),
        "{done:?}"
    );
    assert!(of(&events, "notify.requested").is_empty(), "`after` ran");
    h.stop().await.unwrap();
}

fn versioned(tag: &str) -> String {
    format!(
        "\
name: versioned
on:
  - event: risk.safe.drift
steps:
  - id: before
    notify: {{channels: [ops], severity: high, context: {{v: \"{tag}-before\"}}}}
  - id: wait
    wait_for: {{event: safe.tx.executed, timeout: 1h}}
  - id: after
    notify: {{channels: [ops], severity: high, context: {{v: \"{tag}-after {{{{run.version}}}}\"}}}}
"
    )
}

async fn reload_test(reload: &str, signal: bool) {
    let v1 = versioned("v1");
    let v2 = versioned("v2");
    let (dir, cfg) = setup(&[("versioned.yaml", &v1)], reload);
    let mut h = Harness::start(dir.path(), cfg, Arc::new(SystemClock))
        .await
        .unwrap();
    let (k, d) = drift(1, 1);
    append(h.log.as_ref(), &k, &d).await;
    until(&mut h, "run A to wait", |e| {
        !of(e, "playbook.step.completed").is_empty()
    })
    .await;
    // A new version while run A is in flight.
    std::fs::write(dir.path().join("playbooks/versioned.yaml"), &v2).unwrap();
    if signal {
        let pid = std::process::id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
    // New runs take the new version once it is loaded.
    let v2_version = steward_runner::playbook::version_of(&v2);
    let mut n = 2;
    loop {
        let (k, d) = drift(n, 1);
        append(h.log.as_ref(), &k, &d).await;
        let events = until(&mut h, "a run of each drift", |e| {
            of(e, "playbook.run.started").len() as u64 >= n
        })
        .await;
        let last: PlaybookRunStarted = of(&events, "playbook.run.started")
            .last()
            .unwrap()
            .payload()
            .unwrap();
        if last.version == v2_version {
            break;
        }
        assert!(n < 200, "the new version was never loaded");
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    append(h.log.as_ref(), "executed:1", &executed(1)).await;
    let events = until(&mut h, "every run to finish", |e| finished(e, n as usize)).await;
    let starts = of(&events, "playbook.run.started");
    let a: PlaybookRunStarted = starts[0].payload().unwrap();
    assert_eq!(
        a.version,
        steward_runner::playbook::version_of(&v1),
        "run A recorded the version it started with"
    );
    let afters: Vec<String> = of(&events, "notify.requested")
        .iter()
        .map(|e| e.data.get().to_owned())
        .filter(|d| d.contains("-after"))
        .collect();
    assert_eq!(afters.len() as u64, n);
    // Run A finished with its own version's steps, run B with the new one's.
    let a_after = afters.iter().find(|d| d.contains(&a.version)).unwrap();
    assert!(a_after.contains("v1-after"), "{a_after}");
    let b_after = afters.iter().find(|d| d.contains(&v2_version)).unwrap();
    assert!(b_after.contains("v2-after"), "{b_after}");
    h.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_change_reloads_while_runs_are_in_flight_and_they_keep_their_version() {
    reload_test("100ms", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_while_runs_are_in_flight_and_they_keep_their_version() {
    reload_test("0s", true).await;
}
