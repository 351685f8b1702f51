//! Dry runs: the engine over recorded events (`steward playbook test FILE --events
//! EVENTS.jsonl`) or the log (`steward playbook replay NAME --from SEQ|TIME`), printing what
//! would happen — runs, steps, rendered messages, decoded Safe transactions — with no effect.
//! An expectation file turns a dry run into a test.
//!
//! Time in a dry run is the events' own: each event happens at its `time`, and a line
//! `{"advance_to": "2026-01-02T09:00:00Z"}` in an events file moves the clock (schedules fire,
//! waits time out) without an event.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use steward_config::{ConfigError, Document, MapEnv};
use steward_events::{
    Envelope, NotifyRequested, Payload, PlaybookRunFinished, PlaybookRunStarted,
    PlaybookStepCompleted, PlaybookStepFailed,
};

use crate::engine::{Approvers, Engine, Note};
use crate::playbook::Playbook;

/// One input of a dry run.
#[derive(Debug, Clone)]
pub enum Input {
    Event(Box<Envelope>),
    AdvanceTo(DateTime<Utc>),
}

/// Reads an events file: one envelope per line as on the wire (blank lines and `#` comments
/// allowed), or `{"advance_to": TIME}`.
pub fn read_events(text: &str, file: &str) -> Result<Vec<Input>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let v: Value = serde_json::from_str(l)
            .map_err(|e| format!("{file}:{}:{}: not JSON: {e}", i + 1, e.column()))?;
        if let Some(t) = v.get("advance_to") {
            let t = t.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).ok_or_else(|| {
                format!("{file}:{}:1: advance_to: expected an RFC 3339 time such as 2026-01-02T09:00:00Z", i + 1)
            })?;
            out.push(Input::AdvanceTo(t.with_timezone(&Utc)));
            continue;
        }
        let e = Envelope::from_json(l.as_bytes())
            .map_err(|e| format!("{file}:{}:1: not an event envelope: {e}", i + 1))?;
        if let Err(err) = e.decode() {
            return Err(format!("{file}:{}:1: {err}", i + 1));
        }
        out.push(Input::Event(Box::new(e)));
    }
    Ok(out)
}

/// What a run did, for reports and expectations.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub key: String,
    pub playbook: String,
    pub trigger: String,
    /// `succeeded`, `failed`, or `running` when the events ended first.
    pub outcome: String,
    /// Steps completed (not skipped), in order.
    pub steps: Vec<String>,
    pub skipped: Vec<String>,
    pub failed: Vec<String>,
}

/// Everything a dry run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every event the runner would have written, in order.
    pub emitted: Vec<Envelope>,
    pub runs: Vec<RunSummary>,
    pub notes: Vec<Note>,
    /// The report, as printed.
    pub report: String,
}

impl Outcome {
    /// The effects (requests to other services), in order.
    pub fn effects(&self) -> impl Iterator<Item = &Envelope> {
        self.emitted
            .iter()
            .filter(|e| !e.event_type.starts_with("playbook."))
    }
}

/// Runs `playbooks` over `inputs`. `templates` renders notifications as the notifier would.
pub fn run(
    playbooks: Vec<Playbook>,
    inputs: &[Input],
    approvers: Approvers,
    templates: Option<&steward_notifier::Templates>,
) -> Outcome {
    let mut engine = Engine::new(approvers);
    for pb in playbooks {
        engine.load(pb);
    }
    let mut out = Outcome::default();
    let mut order: Vec<String> = Vec::new();
    let mut finished = std::collections::BTreeMap::new();
    let mut now: Option<DateTime<Utc>> = None;
    for input in inputs {
        let before = out.emitted.len();
        match input {
            Input::Event(e) => {
                let t = e.time.max(now.unwrap_or(e.time));
                if now.is_none() {
                    // Schedules fire from the first moment of the recording on.
                    engine.on_tick(t);
                }
                now = Some(t);
                engine.on_tick(t);
                engine.on_event(e, t);
                let _ = writeln!(out.report, "{}  {} {}", fmt_time(t), e.event_type, e.key);
            }
            Input::AdvanceTo(t) => {
                if now.is_none() {
                    engine.on_tick(*t);
                }
                now = Some(*t);
                engine.on_tick(*t);
                let _ = writeln!(out.report, "{}  (clock)", fmt_time(*t));
            }
        }
        out.emitted.extend(engine.take_out());
        for n in engine.take_notes() {
            let _ = writeln!(out.report, "    note [{}]: {}", n.playbook, n.message);
            out.notes.push(n);
        }
        for e in &out.emitted[before..] {
            describe(e, templates, &mut out.report);
            if let Ok(p) = e.payload::<PlaybookRunStarted>() {
                order.push(p.run_key);
            }
        }
        finished.extend(engine.take_finished_runs());
    }
    for key in order {
        let run = finished.get(&key).or_else(|| engine.run(&key));
        let Some(run) = run else { continue };
        let mut s = RunSummary {
            key: run.key.clone(),
            playbook: run.playbook.clone(),
            trigger: run.trigger.clone(),
            outcome: run.outcome.clone().unwrap_or_else(|| "running".to_owned()),
            steps: Vec::new(),
            skipped: Vec::new(),
            failed: Vec::new(),
        };
        for e in &run.events {
            if let Ok(c) = e.payload::<PlaybookStepCompleted>() {
                if c.output.get("skipped").and_then(Value::as_bool) == Some(true) {
                    s.skipped.push(c.step);
                } else {
                    s.steps.push(c.step);
                }
            } else if let Ok(f) = e.payload::<PlaybookStepFailed>() {
                if !f.will_retry {
                    s.failed.push(f.step);
                }
            }
        }
        out.runs.push(s);
    }
    let _ = writeln!(
        out.report,
        "\n{} run{}, {} request{} to other services, {} not started (dedup {}, cooldown {})",
        out.runs.len(),
        if out.runs.len() == 1 { "" } else { "s" },
        out.effects().count(),
        if out.effects().count() == 1 { "" } else { "s" },
        engine.skipped_dedup + engine.skipped_cooldown,
        engine.skipped_dedup,
        engine.skipped_cooldown
    );
    out
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn describe(e: &Envelope, templates: Option<&steward_notifier::Templates>, out: &mut String) {
    let short = |k: &str| k.chars().take(12).collect::<String>();
    if let Ok(p) = e.payload::<PlaybookRunStarted>() {
        let _ = writeln!(
            out,
            "  ▶ run {} of `{}` started ({}, version {}){}",
            short(&p.run_key),
            p.playbook,
            p.trigger,
            short(&p.version),
            p.dedup_key
                .as_ref()
                .map(|k| format!(", key `{k}`"))
                .unwrap_or_default()
        );
    } else if let Ok(p) = e.payload::<PlaybookStepCompleted>() {
        if p.output.get("skipped").and_then(Value::as_bool) == Some(true) {
            let _ = writeln!(out, "    step `{}` skipped (`when` was false)", p.step);
            return;
        }
        let _ = writeln!(out, "    step `{}` completed", p.step);
        if let Some(vars) = p.output.get("vars") {
            let _ = writeln!(out, "      set {vars}");
        }
        if let Some(ev) = p.output.get("event") {
            let _ = writeln!(
                out,
                "      matched {} {}",
                ev.get("type").and_then(Value::as_str).unwrap_or("?"),
                ev.get("key").and_then(Value::as_str).unwrap_or("?")
            );
        }
        if let Some(a) = p.output.get("approvers") {
            let _ = writeln!(out, "      approved by {a}");
        }
        if let Some(decoded) = p.output.get("decoded").and_then(Value::as_array) {
            for (i, c) in decoded.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "      call {}: {} on {} with {}, value {} wei",
                    i + 1,
                    c.get("function").and_then(Value::as_str).unwrap_or("?"),
                    c.get("to").and_then(Value::as_str).unwrap_or("?"),
                    c.get("args").cloned().unwrap_or(Value::Null),
                    c.get("value").and_then(Value::as_str).unwrap_or("0")
                );
            }
        }
    } else if let Ok(p) = e.payload::<PlaybookStepFailed>() {
        let _ = writeln!(
            out,
            "    step `{}` failed (attempt {}): {}{}",
            p.step,
            p.attempt,
            p.error,
            if p.will_retry { "; will retry" } else { "" }
        );
    } else if let Ok(p) = e.payload::<PlaybookRunFinished>() {
        let _ = writeln!(out, "  ■ run {} {}", short(&p.run_key), p.outcome);
    } else if let Ok(n) = e.payload::<NotifyRequested>() {
        let _ = writeln!(
            out,
            "    → {} to [{}], {:?}, template `{}` (key {})",
            NotifyRequested::TYPE,
            n.channels.join(", "),
            n.severity,
            n.template,
            short(&e.key)
        );
        if let Some(t) = templates {
            let mut ctx = n.context.clone();
            ctx.insert(
                "severity".into(),
                serde_json::to_value(n.severity).unwrap_or(Value::Null),
            );
            ctx.insert("template".into(), Value::String(n.template.clone()));
            ctx.insert("fields".into(), Value::Object(n.context.clone()));
            ctx.insert(
                "channel".into(),
                Value::String(n.channels.first().cloned().unwrap_or_default()),
            );
            ctx.insert("time".into(), Value::String(fmt_time(e.time)));
            ctx.insert(
                "correlation_id".into(),
                Value::String(e.correlation_id.to_string()),
            );
            if let Some(c) = e.chain_id {
                ctx.insert("chain_id".into(), Value::from(c));
            }
            match t.render(&n.template, &Value::Object(ctx)) {
                Ok(r) => {
                    for line in r.text.lines() {
                        let _ = writeln!(out, "      | {line}");
                    }
                }
                Err(err) => {
                    let _ = writeln!(out, "      (the notifier could not render it: {err})");
                }
            }
        } else {
            let _ = writeln!(out, "      context {}", Value::Object(n.context));
        }
    } else {
        let data: Value = serde_json::from_str(e.data.get()).unwrap_or(Value::Null);
        let _ = writeln!(
            out,
            "    → {} (key {}{}): {data}",
            e.event_type,
            short(&e.key),
            e.chain_id
                .map(|c| format!(", chain {c}"))
                .unwrap_or_default()
        );
    }
}

/// Where a replay starts: a sequence number, or a time.
#[derive(Debug, Clone, Copy)]
pub enum ReplayFrom {
    Sequence(u64),
    Time(DateTime<Utc>),
}

/// `--from`: a sequence number or an RFC 3339 time.
pub fn parse_from(s: &str) -> Result<ReplayFrom, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(ReplayFrom::Sequence(n.max(1)));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| ReplayFrom::Time(t.with_timezone(&Utc)))
        .map_err(|_| {
            format!(
                "`{s}` is neither a sequence number nor an RFC 3339 time (2026-01-02T09:00:00Z)"
            )
        })
}

// ------------------------------------------------------------------ expectations

/// What a dry run must produce: the runs (in start order) and the effects (in order). Only
/// what is written is compared; `data` is a subset of the effect's payload, scalars compared
/// as text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub runs: Option<Vec<ExpectRun>>,
    pub effects: Option<Vec<ExpectEffect>>,
    /// Texts that must appear in the notes (runs not started and why).
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectRun {
    pub playbook: Option<String>,
    pub trigger: Option<String>,
    pub outcome: Option<String>,
    pub steps: Option<Vec<String>>,
    pub skipped: Option<Vec<String>>,
    pub failed: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectEffect {
    #[serde(rename = "type")]
    pub kind: String,
    pub data: Option<Value>,
    pub chain_id: Option<String>,
}

/// Reads an expectation file (YAML).
pub fn read_expectation(text: &str, file: &str) -> Result<Expectation, ConfigError> {
    Document::parse(text, file, &MapEnv::new())?.deserialize()
}

/// Every difference between `outcome` and `want`; empty when it matches.
pub fn compare(outcome: &Outcome, want: &Expectation) -> Vec<String> {
    let mut diffs = Vec::new();
    if let Some(runs) = &want.runs {
        if runs.len() != outcome.runs.len() {
            diffs.push(format!(
                "expected {} run(s), got {}",
                runs.len(),
                outcome.runs.len()
            ));
        }
        for (i, (w, g)) in runs.iter().zip(&outcome.runs).enumerate() {
            let mut field = |name: &str, want: &Option<String>, got: &str| {
                if let Some(w) = want {
                    if w != got {
                        diffs.push(format!("run {}: expected {name} `{w}`, got `{got}`", i + 1));
                    }
                }
            };
            field("playbook", &w.playbook, &g.playbook);
            field("trigger", &w.trigger, &g.trigger);
            field("outcome", &w.outcome, &g.outcome);
            for (name, want, got) in [
                ("steps", &w.steps, &g.steps),
                ("skipped", &w.skipped, &g.skipped),
                ("failed", &w.failed, &g.failed),
            ] {
                if let Some(w) = want {
                    if w != got {
                        diffs.push(format!("run {}: expected {name} {w:?}, got {got:?}", i + 1));
                    }
                }
            }
        }
    }
    if let Some(effects) = &want.effects {
        let got: Vec<&Envelope> = outcome.effects().collect();
        if effects.len() != got.len() {
            diffs.push(format!(
                "expected {} effect(s), got {}: {}",
                effects.len(),
                got.len(),
                got.iter()
                    .map(|e| e.event_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for (i, (w, g)) in effects.iter().zip(got).enumerate() {
            if w.kind != g.event_type {
                diffs.push(format!(
                    "effect {}: expected type `{}`, got `{}`",
                    i + 1,
                    w.kind,
                    g.event_type
                ));
                continue;
            }
            if let Some(c) = &w.chain_id {
                let got = g.chain_id.map(|c| c.to_string()).unwrap_or_default();
                if *c != got {
                    diffs.push(format!(
                        "effect {}: expected chain_id `{c}`, got `{got}`",
                        i + 1
                    ));
                }
            }
            if let Some(d) = &w.data {
                let actual: Value = serde_json::from_str(g.data.get()).unwrap_or(Value::Null);
                subset(
                    d,
                    &actual,
                    &format!("effect {} ({}) data", i + 1, g.event_type),
                    &mut diffs,
                );
            }
        }
    }
    for n in &want.notes {
        if !outcome.notes.iter().any(|x| x.message.contains(n.as_str())) {
            diffs.push(format!("no note contains `{n}`"));
        }
    }
    diffs
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".into()),
        _ => None,
    }
}

fn subset(want: &Value, got: &Value, at: &str, diffs: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => subset(wv, gv, &format!("{at}.{k}"), diffs),
                    None => diffs.push(format!(
                        "{at}.{k}: expected {wv}, but there is no such field"
                    )),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if w.len() != g.len() {
                diffs.push(format!(
                    "{at}: expected {} item(s), got {}",
                    w.len(),
                    g.len()
                ));
            }
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                subset(wv, gv, &format!("{at}[{i}]"), diffs);
            }
        }
        (w, g) => match (scalar_text(w), scalar_text(g)) {
            (Some(a), Some(b)) if a == b => {}
            _ => diffs.push(format!("{at}: expected {w}, got {g}")),
        },
    }
}
