//! The runner's core, without I/O: playbooks loaded, runs in flight, and what each event or
//! tick of the clock makes them do. The service around it appends what it emits and persists
//! it; `steward playbook test|replay` drive the same engine and only print.
//!
//! **Runs are event-sourced.** Every change to a run is an event it emits
//! (`playbook.run.started`, `playbook.step.completed`, `playbook.step.failed`,
//! `playbook.run.finished`) or receives (`playbook.approval.decided`), and [`Engine::apply`]
//! folds those into the run's state — the same fold whether the event was just emitted or is
//! read back after a crash. A run's position is the first step without a completion (skipped
//! steps are completed with `skipped: true`); a failed step moves on by its `on_error` (jumps go
//! forward only), so a step that completed never runs again.
//!
//! **Keys.** A run's key is derived from its cause (the triggering event's key, the schedule and
//! fire time, or the manual request's key) and the playbook's name, and `playbook.run.started`
//! carries it as its own key; every event a run emits is derived from that event, so its key is
//! `derive_key(run key, "step/<id>")` for an effect, `…/completed`, `…/failed/<attempt>`. The
//! same step resumed after a crash requests the same thing under the same key, and the log and
//! the downstream services keep one.
//!
//! **Versions.** A run holds the version of the playbook it started with; loading a new version
//! changes what new runs use only.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use alloy::dyn_abi::JsonAbiExt;
use alloy::primitives::Address;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};
use steward_events::{
    derive_key, subject_matches, Envelope, LiquidationRequested, NotifyRequested, Payload,
    PlaybookApprovalDecided, PlaybookRunFinished, PlaybookRunRequested, PlaybookRunStarted,
    PlaybookStepCompleted, PlaybookStepFailed, RebalanceRequested, SafeCall, SafeProposalRequested,
    Severity,
};

use crate::playbook::{ContextValue, InputType, OnError, Playbook, Step, StepKind, Trigger};
use crate::template::{self, Text};

/// The source name of everything the runner writes.
pub const SOURCE: &str = "runner";

/// Longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);

/// `t` at the millisecond the wire carries.
pub fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// One run in flight.
#[derive(Debug, Clone)]
pub struct Run {
    pub key: String,
    pub playbook: String,
    pub version: String,
    pub pb: Arc<Playbook>,
    /// The `playbook.run.started` event: every event the run emits is derived from it.
    pub started: Envelope,
    pub trigger: String,
    pub trigger_event: Option<Value>,
    pub inputs: Map<String, Value>,
    pub vars: Map<String, Value>,
    /// Outputs of the steps completed, by id.
    pub outputs: Map<String, Value>,
    /// Index of the step to run next.
    pub position: usize,
    /// Failed attempts of the step at `position`.
    pub attempts: u32,
    pub retry_at: Option<DateTime<Utc>>,
    /// When the last event of the run happened (a waiting step waits from then).
    pub last_time: DateTime<Utc>,
    pub dedup_key: Option<String>,
    /// Answers to the approval step at `position`: approver name → approved.
    pub approvals: BTreeMap<String, bool>,
    /// Whether the approval step at `position` has asked (this attempt), in this process.
    asked: Option<u32>,
    pub outcome: Option<String>,
    /// Every event of the run, in order (what is persisted, and re-folded after a restart).
    pub events: Vec<Envelope>,
}

impl Run {
    /// The JSON every condition and template of the run sees.
    pub fn context(&self, now: DateTime<Utc>) -> Value {
        json!({
            "event": self.trigger_event.clone().unwrap_or(Value::Null),
            "inputs": self.inputs,
            "vars": self.vars,
            "steps": self.outputs,
            "run": {
                "key": self.key,
                "playbook": self.playbook,
                "version": self.version,
                "trigger": self.trigger,
                "correlation_id": self.started.correlation_id.to_string(),
                "started_at": self.started.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "dedup_key": self.dedup_key,
            },
            "now": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }

    pub fn step(&self) -> Option<&Step> {
        self.pb.steps.get(self.position)
    }

    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// When the step at `position` started waiting.
    fn waiting_since(&self) -> DateTime<Utc> {
        match self.retry_at {
            Some(r) if r > self.last_time => r,
            _ => self.last_time,
        }
    }
}

/// Something worth telling that is not an event: a run not started, a version missing…
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub playbook: String,
    pub message: String,
}

/// What has changed since the last [`Engine::take_dirty`], for the store.
#[derive(Debug, Default)]
pub struct Dirty {
    pub runs: BTreeSet<String>,
    pub keys: BTreeSet<(String, String)>,
    pub schedules: BTreeSet<(String, usize)>,
    pub versions: BTreeSet<String>,
}

/// Who may answer approvals: Telegram user id → approver name.
pub type Approvers = HashMap<i64, String>;

#[derive(Default)]
pub struct Engine {
    /// The version of each playbook new runs use, by name.
    current: BTreeMap<String, Arc<Playbook>>,
    /// Every version a run may hold, by version.
    versions: HashMap<String, Arc<Playbook>>,
    runs: BTreeMap<String, Run>,
    /// Runs that finished since the last [`Engine::take_finished_runs`].
    finished_runs: BTreeMap<String, Run>,
    finished: HashSet<String>,
    /// (playbook, dedup key) → the run holding it.
    active_keys: HashMap<(String, String), String>,
    /// (playbook, dedup key) → when its last run started.
    last_started: HashMap<(String, String), DateTime<Utc>>,
    /// (playbook, trigger index) → the last fire time handled.
    schedules: HashMap<(String, usize), DateTime<Utc>>,
    approvers: Approvers,
    out: Vec<Envelope>,
    notes: Vec<Note>,
    dirty: Dirty,
    /// Counters for metrics and reports.
    pub skipped_dedup: u64,
    pub skipped_cooldown: u64,
}

impl Engine {
    pub fn new(approvers: Approvers) -> Self {
        Self {
            approvers,
            ..Self::default()
        }
    }

    // ------------------------------------------------------------------ playbooks

    /// Makes `pb` the version new runs of its name use (runs in flight keep theirs).
    pub fn load(&mut self, pb: Playbook) -> Arc<Playbook> {
        let pb = Arc::new(pb);
        if !self.versions.contains_key(&pb.version) {
            self.dirty.versions.insert(pb.version.clone());
        }
        self.versions.insert(pb.version.clone(), pb.clone());
        self.current.insert(pb.name.clone(), pb.clone());
        pb
    }

    /// A version known only so runs can finish with it (after a restart, from the store).
    pub fn add_version(&mut self, pb: Playbook) {
        self.versions
            .entry(pb.version.clone())
            .or_insert_with(|| Arc::new(pb));
    }

    /// Keeps only the named playbooks for new runs (a file was removed).
    pub fn retain(&mut self, names: &BTreeSet<String>) {
        self.current.retain(|n, _| names.contains(n));
    }

    pub fn current(&self) -> impl Iterator<Item = &Arc<Playbook>> {
        self.current.values()
    }

    pub fn playbook(&self, name: &str) -> Option<&Arc<Playbook>> {
        self.current.get(name)
    }

    pub fn version(&self, version: &str) -> Option<&Arc<Playbook>> {
        self.versions.get(version)
    }

    pub fn has_version(&self, version: &str) -> bool {
        self.versions.contains_key(version)
    }

    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.values()
    }

    pub fn run(&self, key: &str) -> Option<&Run> {
        self.runs.get(key)
    }

    /// Runs finished since the last call (the service persists and drops them; a dry run
    /// reports them).
    pub fn take_finished_runs(&mut self) -> BTreeMap<String, Run> {
        std::mem::take(&mut self.finished_runs)
    }

    /// A run in flight or finished since the last [`Engine::take_finished_runs`].
    pub fn any_run(&self, key: &str) -> Option<&Run> {
        self.runs.get(key).or_else(|| self.finished_runs.get(key))
    }

    pub fn is_finished(&self, key: &str) -> bool {
        self.finished.contains(key)
    }

    pub fn mark_finished(&mut self, key: String) {
        self.finished.insert(key);
    }

    pub fn restore_key(
        &mut self,
        playbook: String,
        key: String,
        last: DateTime<Utc>,
        active: Option<String>,
    ) {
        self.last_started
            .insert((playbook.clone(), key.clone()), last);
        if let Some(r) = active {
            self.active_keys.insert((playbook, key), r);
        }
    }

    pub fn restore_schedule(&mut self, playbook: String, index: usize, last: DateTime<Utc>) {
        self.schedules.insert((playbook, index), last);
    }

    pub fn key_state(&self, k: &(String, String)) -> Option<(DateTime<Utc>, Option<&String>)> {
        self.last_started
            .get(k)
            .map(|t| (*t, self.active_keys.get(k)))
    }

    pub fn schedule_state(&self, k: &(String, usize)) -> Option<DateTime<Utc>> {
        self.schedules.get(k).copied()
    }

    /// Events emitted since the last call, in order.
    pub fn take_out(&mut self) -> Vec<Envelope> {
        std::mem::take(&mut self.out)
    }

    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    pub fn take_dirty(&mut self) -> Dirty {
        std::mem::take(&mut self.dirty)
    }

    fn note(&mut self, playbook: &str, message: String) {
        self.notes.push(Note {
            playbook: playbook.to_owned(),
            message,
        });
    }

    // ------------------------------------------------------------------ the fold

    /// Folds one of the runner's own events into the runs. Idempotent: an event already
    /// folded changes nothing, so the log's tail can be replayed over the stored state.
    pub fn apply(&mut self, e: &Envelope) {
        match e.event_type.as_str() {
            PlaybookRunStarted::TYPE => {
                let Ok(p) = e.payload::<PlaybookRunStarted>() else {
                    return;
                };
                if self.runs.contains_key(&p.run_key) || self.finished.contains(&p.run_key) {
                    return;
                }
                let Some(pb) = self.versions.get(&p.version).cloned() else {
                    self.note(
                        &p.playbook,
                        format!("run {} uses version {} of the playbook, which is not known: it cannot go on", p.run_key, p.version),
                    );
                    return;
                };
                let mut inputs = Map::new();
                for (k, i) in &pb.inputs {
                    if let Some(d) = &i.default {
                        inputs.insert(k.clone(), d.clone());
                    }
                }
                inputs.extend(p.inputs.clone());
                let run = Run {
                    key: p.run_key.clone(),
                    playbook: p.playbook.clone(),
                    version: p.version.clone(),
                    vars: pb.vars.clone(),
                    pb,
                    started: e.clone(),
                    trigger: p.trigger.clone(),
                    trigger_event: p.trigger_event.clone(),
                    inputs,
                    outputs: Map::new(),
                    position: 0,
                    attempts: 0,
                    retry_at: None,
                    last_time: e.time,
                    dedup_key: p.dedup_key.clone(),
                    approvals: BTreeMap::new(),
                    asked: None,
                    outcome: None,
                    events: vec![e.clone()],
                };
                if let Some(k) = &p.dedup_key {
                    let id = (p.playbook.clone(), k.clone());
                    let newer = self.last_started.get(&id).is_none_or(|t| *t < e.time);
                    if newer {
                        self.last_started.insert(id.clone(), e.time);
                    }
                    self.active_keys.insert(id.clone(), p.run_key.clone());
                    self.dirty.keys.insert(id);
                }
                self.dirty.runs.insert(p.run_key.clone());
                self.runs.insert(p.run_key, run);
            }
            PlaybookStepCompleted::TYPE => {
                let Ok(p) = e.payload::<PlaybookStepCompleted>() else {
                    return;
                };
                let Some(run) = self.runs.get_mut(&p.run_key) else {
                    return;
                };
                let Some(index) = run.pb.steps.iter().position(|s| s.id == p.step) else {
                    return;
                };
                if run.outputs.contains_key(&p.step) || index < run.position {
                    return;
                }
                if let Some(Value::Object(set)) = p.output.get("vars") {
                    if matches!(run.pb.steps[index].kind, StepKind::Set(_)) {
                        run.vars.extend(set.clone());
                    }
                }
                run.outputs.insert(p.step.clone(), p.output.clone());
                run.position = index + 1;
                run.attempts = 0;
                run.retry_at = None;
                run.approvals.clear();
                run.asked = None;
                run.last_time = e.time;
                run.events.push(e.clone());
                self.dirty.runs.insert(p.run_key);
            }
            PlaybookStepFailed::TYPE => {
                let Ok(p) = e.payload::<PlaybookStepFailed>() else {
                    return;
                };
                let Some(run) = self.runs.get_mut(&p.run_key) else {
                    return;
                };
                let Some(index) = run.pb.steps.iter().position(|s| s.id == p.step) else {
                    return;
                };
                if index != run.position || p.attempt <= run.attempts {
                    return;
                }
                let step = &run.pb.steps[index];
                run.attempts = p.attempt;
                run.approvals.clear();
                run.asked = None;
                run.last_time = e.time;
                if p.will_retry {
                    let factor = 2u32.saturating_pow(p.attempt.saturating_sub(1).min(20));
                    let wait = step.backoff.saturating_mul(factor).min(MAX_BACKOFF);
                    run.retry_at =
                        Some(e.time + chrono::Duration::from_std(wait).unwrap_or_default());
                } else {
                    run.retry_at = None;
                    match step.on_error {
                        OnError::Continue => {
                            run.position = index + 1;
                            run.attempts = 0;
                        }
                        OnError::Goto(j) => {
                            run.position = j;
                            run.attempts = 0;
                        }
                        // The run finishes as failed: `run.finished` follows.
                        OnError::Fail => {}
                    }
                }
                run.events.push(e.clone());
                self.dirty.runs.insert(p.run_key);
            }
            PlaybookRunFinished::TYPE => {
                let Ok(p) = e.payload::<PlaybookRunFinished>() else {
                    return;
                };
                let Some(mut run) = self.runs.remove(&p.run_key) else {
                    return;
                };
                run.outcome = Some(p.outcome.clone());
                run.events.push(e.clone());
                if let Some(k) = &run.dedup_key {
                    let id = (run.playbook.clone(), k.clone());
                    if self.active_keys.get(&id) == Some(&run.key) {
                        self.active_keys.remove(&id);
                        self.dirty.keys.insert(id);
                    }
                }
                self.finished.insert(p.run_key.clone());
                self.dirty.runs.insert(p.run_key.clone());
                self.finished_runs.insert(p.run_key, run);
            }
            PlaybookApprovalDecided::TYPE => {
                let Ok(p) = e.payload::<PlaybookApprovalDecided>() else {
                    return;
                };
                let Some(run) = self.runs.get_mut(&p.run_key) else {
                    return;
                };
                let Some(step) = run.step() else { return };
                let StepKind::Approval { approvers, .. } = &step.kind else {
                    return;
                };
                if step.id != p.step {
                    return;
                }
                let Some(name) = p.telegram_user_id.and_then(|u| self.approvers.get(&u)) else {
                    self.notes.push(Note {
                        playbook: run.playbook.clone(),
                        message: format!("an answer to step `{}` of run {} came from Telegram user {:?}, who is not an approver: ignored", p.step, p.run_key, p.telegram_user_id),
                    });
                    return;
                };
                if !approvers.contains(name) {
                    let message = format!("{name} answered step `{}` of run {} but is not one of its approvers ({}): ignored", p.step, p.run_key, approvers.join(", "));
                    self.notes.push(Note {
                        playbook: run.playbook.clone(),
                        message,
                    });
                    return;
                }
                run.approvals.insert(name.clone(), p.approved);
                run.events.push(e.clone());
                self.dirty.runs.insert(p.run_key);
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------ emitting

    fn emit(&mut self, mut e: Envelope, now: DateTime<Utc>) {
        e.time = millis(now);
        self.apply(&e);
        self.out.push(e);
    }

    fn derived<P: Payload>(&self, run_key: &str, step: &str, payload: &P) -> Option<Envelope> {
        let run = self.runs.get(run_key)?;
        Some(run.started.derive(SOURCE, step, payload))
    }

    /// Ends a run: `failure` is the failing step and its error, for a failed run.
    fn finish(
        &mut self,
        run_key: &str,
        outcome: &str,
        failure: Option<(String, String)>,
        now: DateTime<Utc>,
    ) {
        let Some(run) = self.runs.get(run_key) else {
            return;
        };
        let (failed_step, error) = failure.unzip();
        let payload = PlaybookRunFinished {
            playbook: run.playbook.clone(),
            run_key: run_key.to_owned(),
            outcome: outcome.to_owned(),
            failed_step,
            error,
        };
        if let Some(e) = self.derived(run_key, "finished", &payload) {
            self.emit(e, now);
        }
    }

    fn complete(&mut self, run_key: &str, step: &str, output: Value, now: DateTime<Utc>) {
        let Some(run) = self.runs.get(run_key) else {
            return;
        };
        let payload = PlaybookStepCompleted {
            playbook: run.playbook.clone(),
            run_key: run_key.to_owned(),
            step: step.to_owned(),
            output,
        };
        if let Some(e) = self.derived(run_key, &format!("step/{step}/completed"), &payload) {
            self.emit(e, now);
        }
    }

    fn fail(&mut self, run_key: &str, error: String, now: DateTime<Utc>) {
        let Some(run) = self.runs.get(run_key) else {
            return;
        };
        let Some(step) = run.step() else { return };
        let attempt = run.attempts + 1;
        let will_retry = attempt <= step.retries;
        let fails_run = !will_retry && step.on_error == OnError::Fail;
        let failure = fails_run.then(|| (step.id.clone(), error.clone()));
        let payload = PlaybookStepFailed {
            playbook: run.playbook.clone(),
            run_key: run_key.to_owned(),
            step: step.id.clone(),
            attempt,
            error,
            will_retry,
        };
        let name = format!("step/{}/failed/{attempt}", step.id);
        if let Some(e) = self.derived(run_key, &name, &payload) {
            self.emit(e, now);
        }
        if fails_run {
            self.finish(run_key, "failed", failure, now);
        }
    }

    // ------------------------------------------------------------------ running

    /// Runs `run_key` as far as it goes now: until it waits (an event, an approval, a retry's
    /// backoff) or finishes.
    pub fn advance(&mut self, run_key: &str, now: DateTime<Utc>) {
        // Each pass completes, fails or skips a step, or returns: bounded by the steps and
        // their attempts.
        loop {
            let Some(run) = self.runs.get(run_key) else {
                return;
            };
            if run.retry_at.is_some_and(|r| r > now) {
                return;
            }
            let Some(step) = run.step() else {
                self.finish(run_key, "succeeded", None, now);
                return;
            };
            let ctx = run.context(now);
            let step_id = step.id.clone();
            if let Some(when) = &step.when {
                match when.test_ctx(&ctx, now) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.complete(
                            run_key,
                            &step_id,
                            json!({"skipped": true, "reason": "`when` was false"}),
                            now,
                        );
                        continue;
                    }
                    Err(e) => {
                        self.fail(run_key, format!("`when` failed: {e}"), now);
                        continue;
                    }
                }
            }
            let run = &self.runs[run_key];
            let step = &run.pb.steps[run.position];
            match &step.kind {
                StepKind::WaitFor {
                    timeout, pattern, ..
                } => {
                    let deadline = run.waiting_since()
                        + chrono::Duration::from_std(*timeout).unwrap_or_default();
                    if now >= deadline {
                        let message = format!(
                            "no `{pattern}` event matched within {}",
                            humantime::format_duration(*timeout)
                        );
                        self.fail(run_key, message, now);
                        continue;
                    }
                    return;
                }
                StepKind::Approval {
                    approvers,
                    required,
                    channels,
                    message,
                    timeout,
                } => {
                    let denied: Vec<&String> = run
                        .approvals
                        .iter()
                        .filter(|(_, ok)| !**ok)
                        .map(|(n, _)| n)
                        .collect();
                    let approved: Vec<String> = run
                        .approvals
                        .iter()
                        .filter(|(_, ok)| **ok)
                        .map(|(n, _)| n.clone())
                        .collect();
                    if !denied.is_empty() {
                        let m = format!(
                            "denied by {}",
                            denied
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        self.fail(run_key, m, now);
                        continue;
                    }
                    if approved.len() >= *required as usize {
                        self.complete(
                            run_key,
                            &step_id,
                            json!({"approved": true, "approvers": approved}),
                            now,
                        );
                        continue;
                    }
                    let deadline = run.waiting_since()
                        + chrono::Duration::from_std(*timeout).unwrap_or_default();
                    if now >= deadline {
                        let m = format!(
                            "denied: {} of {required} approval{} within {}",
                            approved.len(),
                            if *required == 1 { "" } else { "s" },
                            humantime::format_duration(*timeout)
                        );
                        self.fail(run_key, m, now);
                        continue;
                    }
                    let attempt = run.attempts + 1;
                    if run.asked != Some(attempt) {
                        let text = template::render(&run.pb.templates, message, &ctx);
                        let text = match text {
                            Ok(t) => t,
                            Err(e) => {
                                self.fail(run_key, e, now);
                                continue;
                            }
                        };
                        let mut context = Map::new();
                        context.insert("playbook".into(), json!(run.playbook));
                        context.insert("run_key".into(), json!(run.key));
                        context.insert("step".into(), json!(step_id));
                        context.insert("message".into(), json!(text));
                        context.insert("approvers".into(), json!(approvers));
                        context.insert("required".into(), json!(required));
                        context.insert("timeout".into(), json!(timeout.as_secs()));
                        context.insert(
                            "approve_command".into(),
                            json!(format!("/approve {} {}", run.key, step_id)),
                        );
                        context.insert(
                            "deny_command".into(),
                            json!(format!("/deny {} {}", run.key, step_id)),
                        );
                        let ask = NotifyRequested {
                            channels: channels.clone(),
                            template: "approval".into(),
                            severity: Severity::High,
                            context,
                        };
                        let name = format!("step/{step_id}/ask/{attempt}");
                        if let Some(e) = self.derived(run_key, &name, &ask) {
                            self.emit(e, now);
                        }
                        if let Some(r) = self.runs.get_mut(run_key) {
                            r.asked = Some(attempt);
                        }
                    }
                    return;
                }
                _ => {}
            }
            match self.build(run_key, now, &ctx) {
                Ok(Built::Effect(e, output)) => {
                    self.emit(e, now);
                    self.complete(run_key, &step_id, output, now);
                }
                Ok(Built::Output(output)) => self.complete(run_key, &step_id, output, now),
                Err(error) => self.fail(run_key, error, now),
            }
        }
    }

    /// The request a step makes (or the vars it sets), from the run's context.
    fn build(&self, run_key: &str, now: DateTime<Utc>, ctx: &Value) -> Result<Built, String> {
        let run = &self.runs[run_key];
        let step = &run.pb.steps[run.position];
        let r = |t: &Text| template::render(&run.pb.templates, t, ctx);
        let chain_id = match &step.chain_id {
            Some(t) => {
                let v = r(t)?;
                Some(
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| format!("chain_id `{v}` is not a chain id"))?,
                )
            }
            None => None,
        };
        let name = format!("step/{}", step.id);
        let effect = |e: Option<Envelope>| -> Result<Envelope, String> {
            let e = e.ok_or("the run is gone")?;
            Ok(match chain_id {
                Some(c) => e.with_chain(c),
                None => e,
            })
        };
        match &step.kind {
            StepKind::Notify {
                channels,
                template,
                severity,
                context_from,
                context,
            } => {
                let sev = crate::playbook::severity(&r(severity)?)?;
                let mut map = Map::new();
                if let Some(from) = context_from {
                    match from.eval_ctx(ctx, now)? {
                        Value::Object(o) => map.extend(o),
                        Value::Null => {}
                        other => {
                            return Err(format!("`context_from` must give a map, it gave {other}"))
                        }
                    }
                }
                for (k, v) in context {
                    map.insert(k.clone(), render_context(v, &run.pb, ctx)?);
                }
                let payload = NotifyRequested {
                    channels: channels.clone(),
                    template: template.clone(),
                    severity: sev,
                    context: map,
                };
                let e = effect(self.derived(run_key, &name, &payload))?;
                let out = json!({"key": e.key, "type": e.event_type, "request": payload});
                Ok(Built::Effect(e, out))
            }
            StepKind::QueueLiquidation {
                protocol,
                pool,
                user,
                collateral,
                debt,
                amount,
                receive_a_token,
                via,
            } => {
                let amount = r(amount)?.trim().to_owned();
                if amount != "max"
                    && (amount.is_empty() || !amount.chars().all(|c| c.is_ascii_digit()))
                {
                    return Err(format!("amount `{amount}` is not a whole number or `max`"));
                }
                let via = r(via)?.trim().to_owned();
                let via = if via == "relayer" {
                    via
                } else {
                    address(&via, "via")?
                };
                let payload = LiquidationRequested {
                    protocol: r(protocol)?.trim().to_owned(),
                    pool: address(&r(pool)?, "pool")?,
                    user: address(&r(user)?, "user")?,
                    collateral_asset: address(&r(collateral)?, "collateral")?,
                    debt_asset: address(&r(debt)?, "debt")?,
                    debt_to_cover: amount,
                    receive_a_token: *receive_a_token,
                    via,
                };
                let e = effect(self.derived(run_key, &name, &payload))?;
                let out = json!({"key": e.key, "type": e.event_type, "request": payload});
                Ok(Built::Effect(e, out))
            }
            StepKind::RequestRebalance {
                operator_set,
                policy,
                reason,
            } => {
                let payload = RebalanceRequested {
                    operator_set: r(operator_set)?.trim().to_owned(),
                    policy: r(policy)?.trim().to_owned(),
                    reason: reason.as_ref().map(r).transpose()?,
                };
                let e = effect(self.derived(run_key, &name, &payload))?;
                let out = json!({"key": e.key, "type": e.event_type, "request": payload});
                Ok(Built::Effect(e, out))
            }
            StepKind::ProposeSafeTx {
                safe,
                calls,
                reason,
            } => {
                let mut out_calls = Vec::new();
                let mut decoded = Vec::new();
                for (i, c) in calls.iter().enumerate() {
                    let to = address(&r(&c.to)?, &format!("calls[{i}].to"))?;
                    let args: Vec<String> = c.args.iter().map(r).collect::<Result<_, _>>()?;
                    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                    let values = steward_chain::abi::coerce_args(&c.function.inputs, &refs)
                        .map_err(|e| format!("calls[{i}] `{}`: {e}", c.function.name))?;
                    let data = c.function.abi_encode_input(&values).map_err(|e| {
                        format!("calls[{i}] `{}` cannot be encoded: {e}", c.function.name)
                    })?;
                    let value = r(&c.value)?.trim().to_owned();
                    if value.is_empty() || !value.chars().all(|ch| ch.is_ascii_digit()) {
                        return Err(format!(
                            "calls[{i}].value `{value}` is not a whole number of wei"
                        ));
                    }
                    let named: Map<String, Value> = c
                        .function
                        .inputs
                        .iter()
                        .zip(&values)
                        .enumerate()
                        .map(|(j, (p, v))| {
                            let key = if p.name.is_empty() {
                                j.to_string()
                            } else {
                                p.name.clone()
                            };
                            (key, steward_chain::abi::value_to_json(v, &p.components))
                        })
                        .collect();
                    decoded.push(json!({"to": to, "function": c.function.signature(), "args": named, "value": value}));
                    out_calls.push(SafeCall {
                        to,
                        value,
                        data: format!("0x{}", hex::encode(data)),
                        operation: 0,
                    });
                }
                let payload = SafeProposalRequested {
                    safe: address(&r(safe)?, "safe")?,
                    calls: out_calls,
                    reason: r(reason)?,
                    replace_nonce: None,
                };
                let e = effect(self.derived(run_key, &name, &payload))?;
                let out = json!({"key": e.key, "type": e.event_type, "request": payload, "decoded": decoded});
                Ok(Built::Effect(e, out))
            }
            StepKind::Set(exprs) => {
                let mut set = Map::new();
                for (k, x) in exprs {
                    set.insert(
                        k.clone(),
                        x.eval_ctx(ctx, now)
                            .map_err(|e| format!("set `{k}`: {e}"))?,
                    );
                }
                Ok(Built::Output(json!({ "vars": set })))
            }
            StepKind::WaitFor { .. } | StepKind::Approval { .. } => {
                Err("a waiting step is not built".into())
            }
        }
    }

    /// Starts a run of `pb` unless one for this cause exists, or `dedup`/`cooldown` say no.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        pb: &Arc<Playbook>,
        trigger: &str,
        cause: Option<&Envelope>,
        cause_key: &str,
        inputs: Map<String, Value>,
        now: DateTime<Utc>,
    ) {
        let step = format!("playbook/{}", pb.name);
        let run_key = derive_key(cause_key, &step);
        if self.runs.contains_key(&run_key) || self.finished.contains(&run_key) {
            return;
        }
        let trigger_event =
            cause.map(|c| serde_json::from_slice::<Value>(&c.to_json()).unwrap_or(Value::Null));
        let mut all_inputs = Map::new();
        for (k, i) in &pb.inputs {
            if let Some(d) = &i.default {
                all_inputs.insert(k.clone(), d.clone());
            }
        }
        all_inputs.extend(inputs.clone());
        // The dedup key sees what the run will see.
        let dedup_key = match &pb.dedup {
            Some(t) => {
                let ctx = json!({
                    "event": trigger_event.clone().unwrap_or(Value::Null),
                    "inputs": all_inputs,
                    "vars": pb.vars,
                    "steps": {},
                    "run": {"key": run_key, "playbook": pb.name, "version": pb.version, "trigger": trigger},
                    "now": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                });
                match template::render(&pb.templates, t, &ctx) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        self.note(
                            &pb.name,
                            format!("no run: the dedup key cannot be rendered: {e}"),
                        );
                        return;
                    }
                }
            }
            None if pb.cooldown.is_some() => Some(String::new()),
            None => None,
        };
        if let Some(k) = &dedup_key {
            let id = (pb.name.clone(), k.clone());
            if let Some(active) = self.active_keys.get(&id) {
                self.skipped_dedup += 1;
                let m = format!("no run for key `{k}`: run {active} for it is still going");
                self.note(&pb.name, m);
                return;
            }
            if let (Some(cool), Some(last)) = (pb.cooldown, self.last_started.get(&id)) {
                let until = *last + chrono::Duration::from_std(cool).unwrap_or_default();
                if now < until {
                    self.skipped_cooldown += 1;
                    let m = format!(
                        "no run for key `{k}`: cooling down until {}",
                        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                    self.note(&pb.name, m);
                    return;
                }
            }
        }
        let payload = PlaybookRunStarted {
            playbook: pb.name.clone(),
            version: pb.version.clone(),
            run_key: run_key.clone(),
            trigger: trigger.to_owned(),
            inputs,
            trigger_event,
            dedup_key,
        };
        let e = match cause {
            Some(c) => c.derive(SOURCE, &step, &payload),
            None => Envelope::new(SOURCE, run_key.clone(), &payload),
        };
        self.emit(e, now);
        self.advance(&run_key, now);
    }

    // ------------------------------------------------------------------ inputs

    /// An event from the log: triggers runs, feeds waiting steps, answers approvals.
    pub fn on_event(&mut self, e: &Envelope, now: DateTime<Utc>) {
        match e.event_type.as_str() {
            PlaybookApprovalDecided::TYPE => {
                self.apply(e);
                if let Ok(p) = e.payload::<PlaybookApprovalDecided>() {
                    self.advance(&p.run_key, now);
                }
                return;
            }
            PlaybookRunRequested::TYPE => {
                if let Ok(p) = e.payload::<PlaybookRunRequested>() {
                    self.manual(e, &p, now);
                }
                return;
            }
            // Our own record: already folded when it was emitted.
            t if t.starts_with("playbook.") => return,
            _ => {}
        }
        // Waiting steps.
        let waiting: Vec<String> = self
            .runs
            .values()
            .filter(|r| matches!(r.step().map(|s| &s.kind), Some(StepKind::WaitFor { pattern, .. }) if subject_matches(pattern, &e.event_type)))
            .map(|r| r.key.clone())
            .collect();
        if !waiting.is_empty() {
            let candidate = serde_json::from_slice::<Value>(&e.to_json()).unwrap_or(Value::Null);
            for key in waiting {
                let run = &self.runs[&key];
                if run.retry_at.is_some_and(|r| r > now) {
                    continue;
                }
                let Some(step) = run.step() else { continue };
                let StepKind::WaitFor { filter, .. } = &step.kind else {
                    continue;
                };
                let id = step.id.clone();
                let matched = match filter {
                    None => Ok(true),
                    Some(f) => {
                        let mut ctx = run.context(now);
                        ctx["event"] = candidate.clone();
                        f.test_ctx(&ctx, now)
                    }
                };
                match matched {
                    Ok(true) => {
                        self.complete(&key, &id, json!({"event": candidate}), now);
                        self.advance(&key, now);
                    }
                    Ok(false) => {}
                    Err(err) => {
                        self.fail(
                            &key,
                            format!("`where` failed on {}: {err}", e.event_type),
                            now,
                        );
                        self.advance(&key, now);
                    }
                }
            }
        }
        // Triggers. The runner's own requests start nothing: a playbook reacting to another's
        // request could loop for ever.
        if e.source == SOURCE {
            return;
        }
        let matching: Vec<Arc<Playbook>> = self
            .current
            .values()
            .filter(|pb| pb.enabled)
            .filter(|pb| pb.triggers.iter().any(|t| matches!(t, Trigger::Event { pattern, .. } if subject_matches(pattern, &e.event_type))))
            .cloned()
            .collect();
        if matching.is_empty() {
            return;
        }
        let event_json = serde_json::from_slice::<Value>(&e.to_json()).unwrap_or(Value::Null);
        for pb in matching {
            let mut hit = false;
            for t in &pb.triggers {
                let Trigger::Event { pattern, filter } = t else {
                    continue;
                };
                if !subject_matches(pattern, &e.event_type) {
                    continue;
                }
                let ok = match filter {
                    None => Ok(true),
                    Some(f) => {
                        let ctx = json!({"event": event_json, "inputs": defaults(&pb), "vars": pb.vars, "steps": {}, "run": {}});
                        f.test_ctx(&ctx, now)
                    }
                };
                match ok {
                    Ok(true) => {
                        hit = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(err) => self.note(
                        &pb.name,
                        format!(
                            "trigger `where` failed on {} {}: {err}",
                            e.event_type, e.key
                        ),
                    ),
                }
            }
            if hit {
                self.start(&pb, "event", Some(e), &e.key, Map::new(), now);
            }
        }
    }

    fn manual(&mut self, e: &Envelope, p: &PlaybookRunRequested, now: DateTime<Utc>) {
        let Some(pb) = self.current.get(&p.playbook).cloned() else {
            self.note(
                &p.playbook,
                format!(
                    "a run of `{}` was requested by {}, but no playbook has that name",
                    p.playbook, p.requested_by
                ),
            );
            return;
        };
        if !pb.triggers.iter().any(|t| matches!(t, Trigger::Manual)) {
            self.note(
                &pb.name,
                format!(
                    "a run was requested by {}, but the playbook has no `manual` trigger",
                    p.requested_by
                ),
            );
            return;
        }
        if !pb.enabled {
            self.note(
                &pb.name,
                format!(
                    "a run was requested by {}, but the playbook is disabled",
                    p.requested_by
                ),
            );
            return;
        }
        match check_inputs(&pb, &p.inputs) {
            Ok(inputs) => self.start(&pb, "manual", Some(e), &e.key, inputs, now),
            Err(m) => self.note(
                &pb.name,
                format!("a run requested by {} was refused: {m}", p.requested_by),
            ),
        }
    }

    /// The clock moved: due schedules fire (the latest missed time once, after downtime), and
    /// waiting steps past their timeout or retry time go on.
    pub fn on_tick(&mut self, now: DateTime<Utc>) {
        let current: Vec<Arc<Playbook>> = self
            .current
            .values()
            .filter(|p| p.enabled)
            .cloned()
            .collect();
        for pb in current {
            for (i, t) in pb.triggers.iter().enumerate() {
                let Trigger::Schedule {
                    schedule, timezone, ..
                } = t
                else {
                    continue;
                };
                let id = (pb.name.clone(), i);
                let Some(last) = self.schedules.get(&id).copied() else {
                    // First sight of this schedule: it fires from now on, not for the past.
                    self.schedules.insert(id.clone(), now);
                    self.dirty.schedules.insert(id);
                    continue;
                };
                let mut due = None;
                for t in schedule.after(&last.with_timezone(timezone)) {
                    let t = t.with_timezone(&Utc);
                    if t > now {
                        break;
                    }
                    due = Some(t);
                }
                if let Some(fire) = due {
                    self.schedules.insert(id.clone(), fire);
                    self.dirty.schedules.insert(id);
                    let cause = format!(
                        "schedule:{}:{i}:{}",
                        pb.name,
                        fire.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                    self.start(&pb, "schedule", None, &cause, Map::new(), now);
                }
            }
        }
        let keys: Vec<String> = self.runs.keys().cloned().collect();
        for k in keys {
            self.advance(&k, now);
        }
    }

    /// When something will be due next (a schedule, a timeout, a retry), if anything will.
    pub fn next_wakeup(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut next: Option<DateTime<Utc>> = None;
        let mut consider = |t: DateTime<Utc>| {
            if next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        for pb in self.current.values().filter(|p| p.enabled) {
            for (i, t) in pb.triggers.iter().enumerate() {
                let Trigger::Schedule {
                    schedule, timezone, ..
                } = t
                else {
                    continue;
                };
                let last = self
                    .schedules
                    .get(&(pb.name.clone(), i))
                    .copied()
                    .unwrap_or(now);
                if let Some(t) = schedule.after(&last.with_timezone(timezone)).next() {
                    consider(t.with_timezone(&Utc));
                }
            }
        }
        for run in self.runs.values() {
            if let Some(r) = run.retry_at {
                consider(r);
            }
            let timeout = match run.step().map(|s| &s.kind) {
                Some(StepKind::WaitFor { timeout, .. })
                | Some(StepKind::Approval { timeout, .. }) => *timeout,
                _ => continue,
            };
            consider(run.waiting_since() + chrono::Duration::from_std(timeout).unwrap_or_default());
        }
        next
    }

    /// Every run in flight goes as far as it can (after a restart).
    pub fn resume_all(&mut self, now: DateTime<Utc>) {
        let keys: Vec<String> = self.runs.keys().cloned().collect();
        for k in keys {
            self.advance(&k, now);
        }
    }
}

enum Built {
    Effect(Envelope, Value),
    Output(Value),
}

fn defaults(pb: &Playbook) -> Map<String, Value> {
    pb.inputs
        .iter()
        .filter_map(|(k, i)| i.default.clone().map(|d| (k.clone(), d)))
        .collect()
}

/// Inputs given as text or JSON, checked against the playbook's declarations.
pub fn check_inputs(
    pb: &Playbook,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, v) in given {
        let Some(decl) = pb.inputs.get(k) else {
            let known: Vec<&str> = pb.inputs.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown input `{k}` (the inputs are: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let value = decl
            .kind
            .read(&text)
            .map_err(|e| format!("input `{k}`: {e}"))?;
        out.insert(k.clone(), value);
    }
    for (k, decl) in &pb.inputs {
        if decl.required && decl.default.is_none() && !out.contains_key(k) {
            return Err(format!(
                "input `{k}` is required ({})",
                kind_name(decl.kind)
            ));
        }
    }
    Ok(out)
}

fn kind_name(k: InputType) -> &'static str {
    match k {
        InputType::String => "a string",
        InputType::Int => "a whole number",
        InputType::Bool => "true or false",
        InputType::Address => "an address",
        InputType::Amount => "an amount",
    }
}

fn address(text: &str, what: &str) -> Result<String, String> {
    Address::from_str(text.trim())
        .map(|a| a.to_checksum(None))
        .map_err(|_| format!("{what} `{text}` is not an address"))
}

fn render_context(v: &ContextValue, pb: &Playbook, ctx: &Value) -> Result<Value, String> {
    Ok(match v {
        ContextValue::Text(t) => Value::String(template::render(&pb.templates, t, ctx)?),
        ContextValue::List(l) => Value::Array(
            l.iter()
                .map(|x| render_context(x, pb, ctx))
                .collect::<Result<_, _>>()?,
        ),
        ContextValue::Map(m) => Value::Object(
            m.iter()
                .map(|(k, x)| render_context(x, pb, ctx).map(|v| (k.clone(), v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// `now` for a replay: the time an event was written.
pub fn event_time(e: &Envelope) -> DateTime<Utc> {
    e.time
}

/// A UTC time from seconds, for tests and benches.
pub fn utc(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}
