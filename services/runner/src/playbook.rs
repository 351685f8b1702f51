//! Reading a playbook file: parse (YAML with positions, `${ENV}` filled in), type (unknown
//! fields refused), check everything serde cannot, and compile (CEL programs, templates, cron
//! schedules, ABI functions) into a [`Playbook`].
//!
//! Every problem is a [`ConfigError`] naming `file:line:column`, the field path and what was
//! expected — inside a CEL expression or a template, the position is the offending character's
//! in the file. All problems of a file are reported, not only the first.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use alloy::json_abi::Function;
use handlebars::Handlebars;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use steward_config::{
    is_address_syntax, Config, ConfigError, Document, Env, ErrorKind, Located, Position,
};
use steward_events::{subject_matches, type_pattern_to_subject, Severity, EVENT_TYPES};
use steward_notifier::templates::Links;

use crate::expr::{self, Expression};
use crate::fields::{payload_fields, ENVELOPE_FIELDS};
use crate::format::*;
use crate::template::{self, Text};

/// What a run knows about itself, as `run.<field>`.
pub const RUN_FIELDS: [&str; 7] = [
    "key",
    "playbook",
    "version",
    "trigger",
    "correlation_id",
    "started_at",
    "dedup_key",
];

/// A checked, compiled playbook: one version of one file.
pub struct Playbook {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    /// Content hash of the file (first 16 bytes of SHA-256, hex): runs record it.
    pub version: String,
    /// The file it was read from, as named when loaded.
    pub file: String,
    /// The file's text (kept so a version can be stored and recompiled after a restart).
    pub source: Arc<str>,
    pub triggers: Vec<Trigger>,
    pub inputs: BTreeMap<String, Input>,
    pub vars: Map<String, Value>,
    pub dedup: Option<Text>,
    pub cooldown: Option<Duration>,
    pub steps: Vec<Step>,
    pub(crate) templates: Handlebars<'static>,
}

impl std::fmt::Debug for Playbook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playbook")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub enum Trigger {
    Event {
        pattern: String,
        filter: Option<Expression>,
    },
    Schedule {
        expression: String,
        schedule: Box<cron::Schedule>,
        timezone: chrono_tz::Tz,
    },
    Manual,
}

impl Trigger {
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Event { .. } => "event",
            Trigger::Schedule { .. } => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    String,
    Int,
    Bool,
    Address,
    Amount,
}

impl InputType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Self::String,
            "int" => Self::Int,
            "bool" => Self::Bool,
            "address" => Self::Address,
            "amount" => Self::Amount,
            _ => return None,
        })
    }

    /// `text` as a value of this type, or what is wrong with it.
    pub fn read(self, text: &str) -> Result<Value, String> {
        let t = text.trim();
        match self {
            Self::String => Ok(Value::String(text.to_owned())),
            Self::Int => t
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("`{text}` is not a whole number")),
            Self::Bool => match t {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("`{text}` is not `true` or `false`")),
            },
            Self::Address => alloy::primitives::Address::from_str(t)
                .map(|a| Value::String(a.to_checksum(None)))
                .map_err(|_| format!("`{text}` is not an address (0x and 40 hex digits)")),
            Self::Amount => {
                if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
                    Ok(Value::String(t.trim_start_matches('0').to_owned()).pipe_zero())
                } else {
                    Err(format!(
                        "`{text}` is not an amount (a whole number in decimal)"
                    ))
                }
            }
        }
    }
}

trait PipeZero {
    fn pipe_zero(self) -> Value;
}

impl PipeZero for Value {
    fn pipe_zero(self) -> Value {
        match &self {
            Value::String(s) if s.is_empty() => Value::String("0".into()),
            _ => self,
        }
    }
}

#[derive(Debug)]
pub struct Input {
    pub kind: InputType,
    pub required: bool,
    pub default: Option<Value>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnError {
    Fail,
    Continue,
    /// Index of a later step.
    Goto(usize),
}

#[derive(Debug)]
pub struct Step {
    pub id: String,
    pub when: Option<Expression>,
    pub retries: u32,
    pub backoff: Duration,
    pub on_error: OnError,
    pub chain_id: Option<Text>,
    pub kind: StepKind,
}

#[derive(Debug)]
pub enum StepKind {
    Notify {
        channels: Vec<String>,
        template: String,
        severity: Text,
        context_from: Option<Expression>,
        context: Vec<(String, ContextValue)>,
    },
    QueueLiquidation {
        protocol: Text,
        pool: Text,
        user: Text,
        collateral: Text,
        debt: Text,
        amount: Text,
        receive_a_token: bool,
        via: Text,
    },
    RequestRebalance {
        operator_set: Text,
        policy: Text,
        reason: Option<Text>,
    },
    ProposeSafeTx {
        safe: Text,
        calls: Vec<Call>,
        reason: Text,
    },
    WaitFor {
        pattern: String,
        filter: Option<Expression>,
        timeout: Duration,
    },
    Approval {
        approvers: Vec<String>,
        required: u32,
        channels: Vec<String>,
        message: Text,
        timeout: Duration,
    },
    Set(Vec<(String, Expression)>),
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Notify { .. } => "notify",
            StepKind::QueueLiquidation { .. } => "queue_liquidation",
            StepKind::RequestRebalance { .. } => "request_rebalance",
            StepKind::ProposeSafeTx { .. } => "propose_safe_tx",
            StepKind::WaitFor { .. } => "wait_for",
            StepKind::Approval { .. } => "approval",
            StepKind::Set(_) => "set",
        }
    }
}

/// A value of a notification's context: templates inside lists and maps too.
#[derive(Debug)]
pub enum ContextValue {
    Text(Text),
    List(Vec<ContextValue>),
    Map(Vec<(String, ContextValue)>),
}

#[derive(Debug)]
pub struct Call {
    pub to: Text,
    pub function: Function,
    /// The signature as written.
    pub signature: String,
    pub args: Vec<Text>,
    pub value: Text,
}

/// What the checks may compare against: the configuration (channels, approvers, operator
/// sets, notification templates), when there is one.
#[derive(Default)]
pub struct CheckContext<'a> {
    pub config: Option<&'a Config>,
    /// Names of the notifier's templates (built in and configured), when known.
    pub notify_templates: Option<BTreeSet<String>>,
}

impl<'a> CheckContext<'a> {
    pub fn for_config(config: &'a Config) -> Self {
        let notify_templates = steward_notifier::Templates::load(config)
            .ok()
            .map(|t| t.names().cloned().collect());
        Self {
            config: Some(config),
            notify_templates,
        }
    }

    fn links(&self) -> Links {
        self.config.map(Links::from_config).unwrap_or_default()
    }
}

/// The version of a file's text.
pub fn version_of(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// Reads a playbook from `text` (named `file` in messages).
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Env,
    ctx: &CheckContext<'_>,
) -> Result<Playbook, Vec<ConfigError>> {
    let doc = Document::parse(text, file, env).map_err(|e| vec![placed(rewrite_step_kind(e))])?;
    let d: PlaybookDoc = doc
        .deserialize()
        .map_err(|e| vec![placed(rewrite_step_kind(place_unknown(&doc, e)))])?;
    let mut c = Checker {
        doc: &doc,
        lines: yaml_lines(text),
        errors: Vec::new(),
        hb: template::registry(ctx.links()),
        ctx,
        scope: Scope::default(),
    };
    let playbook = c.playbook(d, text, file);
    if c.errors.is_empty() {
        Ok(playbook.expect("a playbook is built whenever no error was found"))
    } else {
        Err(c.errors)
    }
}

/// The lines of `text` as the YAML reader counts them: `\r\n`, `\r` and `\n` each end one.
fn yaml_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['\r', '\n']) {
        out.push(&rest[..i]);
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    out.push(rest);
    out
}

/// The 1-based column, in characters, of `needle` in `text` (1 when it is not there).
fn char_column(text: &str, needle: &str) -> usize {
    text.find(needle).map_or(0, |i| text[..i].chars().count()) + 1
}

/// An error the reader could place nowhere in the text (an empty document has no field to
/// point at) goes at its start.
fn placed(e: ConfigError) -> ConfigError {
    match e.origin() {
        steward_config::Origin::File(file) => ConfigError::new(
            e.kind(),
            steward_config::Origin::At(Position { line: 1, column: 1 }.in_file(file.clone())),
            e.path(),
            e.message(),
        ),
        _ => e,
    }
}

/// serde places an unknown field at the start of its mapping; the field's own line is more
/// use to someone looking for it.
fn place_unknown(doc: &Document, e: ConfigError) -> ConfigError {
    if e.kind() != ErrorKind::UnknownField {
        return e;
    }
    match doc.position_of(e.path()) {
        Some(p) => ConfigError::new(
            e.kind(),
            steward_config::Origin::At(p.in_file(doc.file_name())),
            e.path(),
            e.message(),
        ),
        None => e,
    }
}

/// serde's "unknown field" for a step names the field; for a step, an unknown field is most
/// likely an unknown step kind, so say that.
fn rewrite_step_kind(e: ConfigError) -> ConfigError {
    if e.kind() != ErrorKind::UnknownField {
        return e;
    }
    let path = e.path().to_owned();
    let Some((parent, field)) = path.rsplit_once('.') else {
        return e;
    };
    let is_step =
        parent.starts_with("steps[") && parent.ends_with(']') && !parent[6..].contains(['.', '[']);
    if !is_step {
        return e;
    }
    let mut message = format!(
        "unknown step kind `{field}`: a step is one of {} (besides `id`, `when`, `retry`, `on_error`, `chain_id`)",
        STEP_KINDS.map(|k| format!("`{k}`")).join(", ")
    );
    if let Some(close) = STEP_KINDS
        .iter()
        .min_by_key(|k| distance(field, k))
        .filter(|k| distance(field, k) <= k.len() / 3 + 1)
    {
        message.push_str(&format!(" (did you mean `{close}`?)"));
    }
    ConfigError::new(ErrorKind::UnknownField, e.origin().clone(), path, message)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// What names are defined where a condition or template is checked.
#[derive(Default, Clone)]
struct Scope {
    /// Event types `event` may be (empty with `has_event` false: there is no event).
    event_types: Vec<String>,
    has_event: bool,
    /// Whether some pattern matches types the field table does not know.
    open_types: bool,
    inputs: BTreeSet<String>,
    vars: BTreeSet<String>,
    /// Steps before the current one.
    steps: Vec<String>,
    /// All step ids (to tell "later" from "unknown").
    all_steps: Vec<String>,
}

struct Checker<'a> {
    doc: &'a Document,
    lines: Vec<&'a str>,
    errors: Vec<ConfigError>,
    hb: Handlebars<'static>,
    ctx: &'a CheckContext<'a>,
    scope: Scope,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Checker<'_> {
    /// An error at `pos`; without one, at the field or its closest ancestor in the document
    /// (a key such as `a[b` is not a path `position_of` can follow), or at the start.
    fn err(
        &mut self,
        kind: ErrorKind,
        path: &str,
        pos: Option<Position>,
        message: impl Into<String>,
    ) {
        let pos = pos
            .or_else(|| self.doc.nearest_position(path))
            .unwrap_or(Position { line: 1, column: 1 });
        self.errors
            .push(self.doc.error_at(kind, path, Some(pos), message));
    }

    fn invalid<T>(&mut self, path: &str, at: &Located<T>, message: impl Into<String>) {
        self.err(ErrorKind::InvalidValue, path, at.position(), message);
    }

    /// The file position of (line, column) inside the string `value` read from a scalar that
    /// starts at `start`. The value's characters are followed through the source: a quote
    /// opening it, indentation, line breaks (kept, or folded into spaces by `>` and plain
    /// scalars) and escapes are stepped over, so a position is exact in plain, quoted and block
    /// scalars of one or more lines, and stays inside the file whatever the text.
    fn inner(
        &self,
        start: Option<Position>,
        value: &str,
        line: usize,
        column: usize,
    ) -> Option<Position> {
        let start = start?;
        let value: Vec<char> = value.chars().collect();
        // The character offset of (line, column) in the value.
        let mut target = 0;
        let mut at_line = 1;
        while at_line < line && target < value.len() {
            if value[target] == '\n' {
                at_line += 1;
            }
            target += 1;
        }
        for _ in 1..column {
            if target >= value.len() || value[target] == '\n' {
                break;
            }
            target += 1;
        }
        let src: Vec<Vec<char>> = self
            .lines
            .get(start.line.checked_sub(1)?..)?
            .iter()
            .map(|l| l.chars().collect())
            .collect();
        let (mut l, mut c) = (0, start.column.saturating_sub(1));
        if src
            .first()
            .and_then(|f| f.get(c))
            .is_some_and(|q| matches!(q, '"' | '\''))
        {
            c += 1;
        }
        // Moves (l, c) to where `want` is written, stepping over what the value does not have
        // as written. Whether it consumed a line break for it.
        let seek = |l: &mut usize, c: &mut usize, want: char| -> bool {
            while let Some(line) = src.get(*l) {
                match line.get(*c) {
                    None if matches!(want, ' ' | '\n') || *l + 1 == src.len() => {
                        if *l + 1 < src.len() {
                            *l += 1;
                            *c = 0;
                        }
                        return true;
                    }
                    None => {
                        *l += 1;
                        *c = 0;
                    }
                    Some(&s) if s == want => return false,
                    Some(' ' | '\t' | '\\' | '"' | '\'') => *c += 1,
                    // An escape's letters, or something else the value holds another way.
                    Some(_) => return false,
                }
            }
            false
        };
        for &want in &value[..target] {
            if !seek(&mut l, &mut c, want) {
                c += 1;
            }
        }
        if let Some(&want) = value.get(target) {
            seek(&mut l, &mut c, want);
        }
        let l = l.min(src.len().saturating_sub(1));
        let c = c.min(src.get(l).map_or(0, Vec::len));
        Some(Position {
            line: start.line + l,
            column: c + 1,
        })
    }

    fn duration(&mut self, path: &str, d: &Located<String>) -> Option<Duration> {
        match humantime::parse_duration(d.trim()) {
            Ok(v) if !v.is_zero() => Some(v),
            Ok(_) => {
                self.invalid(path, d, "must be longer than zero");
                None
            }
            Err(e) => {
                self.invalid(
                    path,
                    d,
                    format!(
                        "expected a duration such as `30s`, `10m` or `1h 30m` (got `{}`: {e})",
                        d.get()
                    ),
                );
                None
            }
        }
    }

    fn names_ok(
        &mut self,
        path: &str,
        start: Option<Position>,
        src: &str,
        uses: Vec<(Vec<String>, usize, usize)>,
        what: &str,
    ) {
        for (p, line, column) in uses {
            if let Some(problem) = self.check_name(&p) {
                let at = self.inner(start, src, line, column);
                self.err(
                    ErrorKind::InvalidValue,
                    path,
                    at,
                    format!("unknown {what} `{}`: {problem}", p.join(".")),
                );
            }
        }
    }

    /// Why `path` is not a name the run has, or `None` when it is.
    fn check_name(&self, path: &[String]) -> Option<String> {
        let root = path.first()?.as_str();
        let second = path.get(1).map(String::as_str);
        let list = |items: &mut dyn Iterator<Item = &str>| {
            let v: Vec<String> = items.map(|s| format!("`{s}`")).collect();
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        match root {
            "event" => {
                if !self.scope.has_event {
                    return Some("this playbook has no `event` trigger, so there is no event".to_owned());
                }
                let f = second?;
                if !ENVELOPE_FIELDS.contains(&f) {
                    return Some(format!("an event has {}", list(&mut ENVELOPE_FIELDS.iter().copied())));
                }
                if f != "data" || self.scope.open_types {
                    return None;
                }
                let field = path.get(2)?;
                let mut known = BTreeSet::new();
                for t in &self.scope.event_types {
                    known.extend(payload_fields(t).unwrap_or(&[]).iter().copied());
                }
                if known.contains(field.as_str()) {
                    None
                } else {
                    Some(format!(
                        "the data of {} has {}",
                        self.scope.event_types.join(", "),
                        list(&mut known.iter().copied())
                    ))
                }
            }
            "inputs" => match second {
                Some(i) if !self.scope.inputs.contains(i) => Some(format!(
                    "the declared inputs are {}",
                    list(&mut self.scope.inputs.iter().map(String::as_str))
                )),
                _ => None,
            },
            "vars" => match second {
                Some(v) if !self.scope.vars.contains(v) => Some(format!(
                    "the vars (declared or `set`) are {}",
                    list(&mut self.scope.vars.iter().map(String::as_str))
                )),
                _ => None,
            },
            "steps" => match second {
                Some(s) if self.scope.steps.iter().any(|x| x == s) => None,
                Some(s) if self.scope.all_steps.iter().any(|x| x == s) => {
                    Some(format!("step `{s}` has not run yet at this point: only earlier steps' outputs can be read"))
                }
                Some(_) => Some(format!(
                    "the steps before this one are {}",
                    list(&mut self.scope.steps.iter().map(String::as_str))
                )),
                None => None,
            },
            "run" => match second {
                Some(f) if !RUN_FIELDS.contains(&f) => Some(format!("a run has {}", list(&mut RUN_FIELDS.iter().copied()))),
                _ => None,
            },
            "now" => None,
            _ => Some(format!(
                "a name starts with {}",
                list(&mut expr::ROOTS.iter().copied())
            )),
        }
    }

    fn cel(&mut self, path: &str, src: &Located<String>) -> Option<Expression> {
        match Expression::compile(src.get()) {
            Err(e) => {
                let at = self.inner(src.position(), src.get(), e.line, e.column);
                self.err(
                    ErrorKind::InvalidValue,
                    path,
                    at,
                    format!(
                        "bad CEL at line {}, column {} of the expression: {}",
                        e.line, e.column, e.message
                    ),
                );
                None
            }
            Ok(x) => {
                let uses = x
                    .names()
                    .into_iter()
                    .map(|n| (n.path, n.line, n.column))
                    .collect();
                self.names_ok(path, src.position(), src.get(), uses, "name");
                for f in x.unknown_functions() {
                    self.invalid(
                        path,
                        src,
                        format!(
                            "unknown function `{f}`: CEL's standard functions and Steward's {} are available",
                            expr::FUNCTIONS.join(", ")
                        ),
                    );
                }
                Some(x)
            }
        }
    }

    fn text(&mut self, path: &str, src: &Located<String>) -> Option<Text> {
        self.text_at(path, src.get(), src.position())
    }

    fn text_at(&mut self, path: &str, src: &str, start: Option<Position>) -> Option<Text> {
        match template::compile(src, path) {
            Err(e) => {
                let at = self.inner(start, src, e.line, e.column);
                self.err(ErrorKind::InvalidValue, path, at, e.message);
                None
            }
            Ok(c) => {
                let uses = c
                    .names()
                    .into_iter()
                    .map(|n| (n.path, n.line, n.column))
                    .collect();
                self.names_ok(path, start, src, uses, "template variable");
                for h in c.unknown_helpers() {
                    let at = self.inner(start, src, h.line, h.column);
                    self.err(
                        ErrorKind::InvalidValue,
                        path,
                        at,
                        format!(
                            "unknown template helper `{}`: the helpers are {}",
                            h.path.join("."),
                            template::HELPERS.join(", ")
                        ),
                    );
                }
                if let Some(t) = c.template {
                    self.hb.register_template(path, t);
                }
                Some(c.text)
            }
        }
    }

    /// A literal (not templated) value checked with `check`.
    fn literal_check(
        &mut self,
        path: &str,
        src: &Located<String>,
        check: impl Fn(&str) -> Result<(), String>,
    ) {
        if !src.contains("{{") {
            if let Err(m) = check(src.get()) {
                self.invalid(path, src, m);
            }
        }
    }

    fn playbook(&mut self, d: PlaybookDoc, text: &str, file: &str) -> Option<Playbook> {
        if !is_name(&d.name) {
            self.invalid(
                "name",
                &d.name,
                format!(
                    "a playbook's name is letters, digits, `_` or `-` (got `{}`)",
                    d.name.get()
                ),
            );
        }
        // Inputs and vars first: conditions and templates refer to them.
        let mut inputs = BTreeMap::new();
        for (name, i) in &d.inputs {
            let p = format!("inputs.{name}");
            if !is_name(name) {
                self.err(
                    ErrorKind::InvalidValue,
                    &p,
                    self.doc.position_of(&p),
                    "an input's name is letters, digits, `_` or `-`",
                );
            }
            let Some(kind) = InputType::parse(i.kind.trim()) else {
                self.invalid(&format!("{p}.type"), &i.kind, format!("unknown input type `{}`: expected `string`, `int`, `bool`, `address` or `amount`", i.kind.get()));
                continue;
            };
            let default = match &i.default {
                Some(dv) => match kind.read(dv.get()) {
                    Ok(v) => Some(v),
                    Err(m) => {
                        self.invalid(&format!("{p}.default"), dv, m);
                        None
                    }
                },
                None => None,
            };
            inputs.insert(
                name.clone(),
                Input {
                    kind,
                    required: i.required,
                    default,
                    description: i.description.clone(),
                },
            );
        }
        let mut vars = Map::new();
        for (k, v) in &d.vars {
            if !is_name(k) {
                let p = format!("vars.{k}");
                self.err(
                    ErrorKind::InvalidValue,
                    &p,
                    self.doc.position_of(&p),
                    "a var's name is letters, digits, `_` or `-`",
                );
            }
            vars.insert(k.clone(), v.get().clone());
        }
        self.scope.inputs = d.inputs.keys().cloned().collect();
        self.scope.vars = d.vars.keys().cloned().collect();
        for s in d.steps.iter() {
            if let Some(set) = &s.set {
                self.scope.vars.extend(set.keys().cloned());
            }
        }
        self.scope.all_steps = d.steps.iter().map(|s| s.id.get().clone()).collect();

        // Triggers.
        let mut triggers = Vec::new();
        if d.on.is_empty() {
            self.invalid(
                "on",
                &d.on,
                "a playbook needs at least one trigger (`event`, `schedule` or `manual`)",
            );
        }
        let patterns: Vec<String> =
            d.on.iter()
                .filter_map(|t| t.event.as_ref().map(|e| e.trim().to_owned()))
                .collect();
        self.scope.has_event = !patterns.is_empty();
        for p in &patterns {
            let types: Vec<&str> = EVENT_TYPES
                .iter()
                .copied()
                .filter(|t| subject_matches(p, t))
                .collect();
            if types.is_empty() {
                self.scope.open_types = true;
            }
            self.scope
                .event_types
                .extend(types.iter().map(|t| (*t).to_owned()));
        }
        for (i, t) in d.on.iter().enumerate() {
            let p = format!("on[{i}]");
            if let Some(tr) = self.trigger(&p, t) {
                triggers.push(tr);
            }
        }

        let dedup = d.dedup.as_ref().and_then(|x| self.text("dedup", x));
        let cooldown = d
            .cooldown
            .as_ref()
            .and_then(|c| self.duration("cooldown", c));

        // Steps.
        if d.steps.is_empty() {
            self.invalid("steps", &d.steps, "a playbook needs at least one step");
        }
        let ids: Vec<String> = d.steps.iter().map(|s| s.id.get().clone()).collect();
        let mut seen = BTreeSet::new();
        let mut steps = Vec::new();
        for (i, s) in d.steps.iter().enumerate() {
            let p = format!("steps[{i}]");
            if !is_name(&s.id) {
                self.invalid(
                    &format!("{p}.id"),
                    &s.id,
                    format!(
                        "a step id is letters, digits, `_` or `-` (got `{}`)",
                        s.id.get()
                    ),
                );
            }
            if !seen.insert(s.id.get().clone()) {
                self.invalid(
                    &format!("{p}.id"),
                    &s.id,
                    format!(
                        "step id `{}` is used twice: ids key the steps' effects and must be unique",
                        s.id.get()
                    ),
                );
            }
            self.scope.steps = ids[..i].to_vec();
            if let Some(step) = self.step(&p, i, s, &ids) {
                steps.push(step);
            }
        }
        if !self.errors.is_empty() {
            return None;
        }
        let hb = std::mem::replace(&mut self.hb, Handlebars::new());
        Some(Playbook {
            name: d.name.get().clone(),
            description: d.description,
            enabled: d.enabled,
            version: version_of(text),
            file: file.to_owned(),
            source: Arc::from(text),
            triggers,
            inputs,
            vars,
            dedup,
            cooldown,
            steps,
            templates: hb,
        })
    }

    fn trigger(&mut self, p: &str, t: &TriggerDoc) -> Option<Trigger> {
        let kinds = [t.event.is_some(), t.schedule.is_some(), t.manual.is_some()];
        let n = kinds.iter().filter(|k| **k).count();
        let at = self.doc.nearest_position(p);
        if n != 1 {
            self.err(
                ErrorKind::Validation,
                p,
                at,
                format!("a trigger is exactly one of `event`, `schedule` or `manual` ({n} given)"),
            );
            return None;
        }
        if let Some(e) = &t.event {
            if t.timezone.is_some() {
                self.err(
                    ErrorKind::Validation,
                    &format!("{p}.timezone"),
                    t.timezone.as_ref().and_then(|z| z.position()),
                    "`timezone` belongs to a `schedule` trigger",
                );
            }
            let pattern = e.trim().to_owned();
            if let Err(err) = type_pattern_to_subject("steward", &pattern) {
                self.invalid(&format!("{p}.event"), e, err.to_string());
                return None;
            }
            if let Some(why) = unheard(&pattern) {
                self.invalid(&format!("{p}.event"), e, why);
            }
            let filter = t
                .where_
                .as_ref()
                .and_then(|w| self.cel(&format!("{p}.where"), w));
            return Some(Trigger::Event { pattern, filter });
        }
        if t.where_.is_some() {
            self.err(
                ErrorKind::Validation,
                &format!("{p}.where"),
                t.where_.as_ref().and_then(|z| z.position()),
                "`where` belongs to an `event` trigger",
            );
        }
        if let Some(s) = &t.schedule {
            let schedule = match cron::Schedule::from_str(s.trim()) {
                Ok(c) => Some(c),
                Err(e) => {
                    let e = e.to_string();
                    let e = e
                        .lines()
                        .rev()
                        .map(str::trim)
                        .find(|l| !l.is_empty() && !l.starts_with('^'))
                        .unwrap_or("not a cron expression")
                        .to_owned();
                    self.invalid(
                        &format!("{p}.schedule"),
                        s,
                        format!("bad cron expression `{}`: {e}; expected `sec min hour day-of-month month day-of-week [year]`, e.g. `0 0 9 * * *` for 09:00 every day", s.get()),
                    );
                    None
                }
            };
            let timezone = match &t.timezone {
                None => Some(chrono_tz::UTC),
                Some(z) => match chrono_tz::Tz::from_str(z.trim()) {
                    Ok(tz) => Some(tz),
                    Err(_) => {
                        self.invalid(&format!("{p}.timezone"), z, format!("unknown time zone `{}`: expected an IANA name such as `UTC` or `Europe/Berlin`", z.get()));
                        None
                    }
                },
            };
            return Some(Trigger::Schedule {
                expression: s.trim().to_owned(),
                schedule: Box::new(schedule?),
                timezone: timezone?,
            });
        }
        if let Some(m) = &t.manual {
            if !*m.get() {
                self.invalid(
                    &format!("{p}.manual"),
                    m,
                    "write `manual: true`, or leave the trigger out",
                );
                return None;
            }
        }
        Some(Trigger::Manual)
    }

    fn names_list(
        &mut self,
        path: &str,
        list: &Located<Vec<Located<String>>>,
        what: &str,
        known: Option<Vec<String>>,
    ) -> Vec<String> {
        if list.is_empty() {
            self.invalid(path, list, format!("give at least one {what}"));
        }
        let mut out = Vec::new();
        for (i, n) in list.iter().enumerate() {
            if let Some(k) = &known {
                if !k.contains(n.get()) {
                    self.invalid(
                        &format!("{path}[{i}]"),
                        n,
                        format!(
                            "no {what} named `{}` in the configuration (there are: {})",
                            n.get(),
                            if k.is_empty() {
                                "none".to_owned()
                            } else {
                                k.join(", ")
                            }
                        ),
                    );
                }
            }
            out.push(n.get().clone());
        }
        out
    }

    fn step(&mut self, p: &str, index: usize, s: &StepDoc, ids: &[String]) -> Option<Step> {
        let kinds = [
            s.notify.is_some(),
            s.queue_liquidation.is_some(),
            s.request_rebalance.is_some(),
            s.propose_safe_tx.is_some(),
            s.wait_for.is_some(),
            s.approval.is_some(),
            s.set.is_some(),
        ];
        let n = kinds.iter().filter(|k| **k).count();
        if n != 1 {
            let at = s.id.position();
            self.err(
                ErrorKind::Validation,
                p,
                at,
                format!(
                    "step `{}` must have exactly one kind: one of {} ({n} given)",
                    s.id.get(),
                    STEP_KINDS.map(|k| format!("`{k}`")).join(", ")
                ),
            );
            return None;
        }
        let when = s
            .when
            .as_ref()
            .and_then(|w| self.cel(&format!("{p}.when"), w));
        let (retries, backoff) = match &s.retry {
            Some(r) => {
                let b = match &r.backoff {
                    Some(b) => self
                        .duration(&format!("{p}.retry.backoff"), b)
                        .unwrap_or_default(),
                    None => Duration::from_secs(10),
                };
                (r.count, b)
            }
            None => (0, Duration::ZERO),
        };
        let on_error = match &s.on_error {
            None => OnError::Fail,
            Some(o) => {
                let t = o.trim();
                match t {
                    "fail" => OnError::Fail,
                    "continue" => OnError::Continue,
                    _ => match t.strip_prefix("goto ").map(str::trim) {
                        Some(target) => match ids.iter().position(|x| x == target) {
                            Some(j) if j > index => OnError::Goto(j),
                            Some(_) => {
                                let col = char_column(o.get(), target);
                                let at = self.inner(o.position(), o.get(), 1, col);
                                self.err(ErrorKind::InvalidValue, &format!("{p}.on_error"), at, format!("`goto {target}` jumps back: a jump goes to a later step (a run never repeats a step)"));
                                OnError::Fail
                            }
                            None => {
                                let col = char_column(o.get(), target);
                                let at = self.inner(o.position(), o.get(), 1, col);
                                self.err(
                                    ErrorKind::InvalidValue,
                                    &format!("{p}.on_error"),
                                    at,
                                    format!(
                                        "jump to a missing step `{target}`: the steps are {}",
                                        ids.join(", ")
                                    ),
                                );
                                OnError::Fail
                            }
                        },
                        None => {
                            self.invalid(
                                &format!("{p}.on_error"),
                                o,
                                format!(
                                    "expected `fail`, `continue` or `goto STEP` (got `{}`)",
                                    o.get()
                                ),
                            );
                            OnError::Fail
                        }
                    },
                }
            }
        };
        let chain_id = s.chain_id.as_ref().and_then(|c| {
            self.literal_check(&format!("{p}.chain_id"), c, |t| {
                t.trim()
                    .parse::<u64>()
                    .map(|_| ())
                    .map_err(|_| format!("expected a chain id (a number), got `{t}`"))
            });
            self.text(&format!("{p}.chain_id"), c)
        });
        let kind = self.kind(p, s)?;
        Some(Step {
            id: s.id.get().clone(),
            when,
            retries,
            backoff,
            on_error,
            chain_id,
            kind,
        })
    }

    fn context_value(
        &mut self,
        path: &str,
        v: &Value,
        start: Option<Position>,
    ) -> Option<ContextValue> {
        Some(match v {
            Value::String(s) => ContextValue::Text(self.text_at(path, s, start)?),
            Value::Array(a) => ContextValue::List(
                a.iter()
                    .enumerate()
                    .map(|(i, x)| {
                        let p = format!("{path}[{i}]");
                        let at = self.doc.position_of(&p).or(start);
                        self.context_value(&p, x, at)
                    })
                    .collect::<Option<_>>()?,
            ),
            Value::Object(o) => ContextValue::Map(
                o.iter()
                    .map(|(k, x)| {
                        let p = format!("{path}.{k}");
                        let at = self.doc.position_of(&p).or(start);
                        self.context_value(&p, x, at).map(|c| (k.clone(), c))
                    })
                    .collect::<Option<_>>()?,
            ),
            other => ContextValue::Text(Text::Literal(other.to_string())),
        })
    }

    fn kind(&mut self, p: &str, s: &StepDoc) -> Option<StepKind> {
        let config = self.ctx.config;
        let channels_known = config.map(|c| {
            c.notify
                .channels
                .iter()
                .map(|ch| ch.name.clone())
                .collect::<Vec<_>>()
        });
        if let Some(n) = &s.notify {
            let q = format!("{p}.notify");
            let channels = self.names_list(
                &format!("{q}.channels"),
                &n.channels,
                "notification channel",
                channels_known,
            );
            if let Some(names) = &self.ctx.notify_templates {
                if !names.contains(n.template.get()) {
                    let list: Vec<&str> = names.iter().map(String::as_str).collect();
                    self.invalid(
                        &format!("{q}.template"),
                        &n.template,
                        format!(
                            "no notification template named `{}` (there are: {})",
                            n.template.get(),
                            list.join(", ")
                        ),
                    );
                }
            }
            self.literal_check(&format!("{q}.severity"), &n.severity, |t| {
                severity(t).map(|_| ())
            });
            let severity = self.text(&format!("{q}.severity"), &n.severity);
            let context_from = n
                .context_from
                .as_ref()
                .and_then(|c| self.cel(&format!("{q}.context_from"), c));
            let mut context = Vec::new();
            for (k, v) in &n.context {
                let path = format!("{q}.context.{k}");
                if let Some(cv) = self.context_value(&path, v.get(), v.position()) {
                    context.push((k.clone(), cv));
                }
            }
            return Some(StepKind::Notify {
                channels,
                template: n.template.get().clone(),
                severity: severity?,
                context_from,
                context,
            });
        }
        if let Some(l) = &s.queue_liquidation {
            let q = format!("{p}.queue_liquidation");
            for (f, v) in [
                ("pool", &l.pool),
                ("user", &l.user),
                ("collateral", &l.collateral),
                ("debt", &l.debt),
            ] {
                self.literal_check(&format!("{q}.{f}"), v, address_check);
            }
            self.literal_check(&format!("{q}.amount"), &l.amount, |t| {
                let t = t.trim();
                if t == "max" || (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit())) {
                    Ok(())
                } else {
                    Err(format!("expected a whole number of the debt asset's smallest units, or `max` (got `{t}`)"))
                }
            });
            self.literal_check(&format!("{q}.via"), &l.via, via_check);
            let t = |c: &mut Self, f: &str, v: &Located<String>| c.text(&format!("{q}.{f}"), v);
            let (protocol, pool, user, collateral, debt, amount, via) = (
                t(self, "protocol", &l.protocol),
                t(self, "pool", &l.pool),
                t(self, "user", &l.user),
                t(self, "collateral", &l.collateral),
                t(self, "debt", &l.debt),
                t(self, "amount", &l.amount),
                t(self, "via", &l.via),
            );
            return Some(StepKind::QueueLiquidation {
                protocol: protocol?,
                pool: pool?,
                user: user?,
                collateral: collateral?,
                debt: debt?,
                amount: amount?,
                receive_a_token: l.receive_a_token,
                via: via?,
            });
        }
        if let Some(r) = &s.request_rebalance {
            let q = format!("{p}.request_rebalance");
            if let Some(c) = config {
                let sets: Vec<String> = c.operator_sets.iter().map(|s| s.name.clone()).collect();
                self.literal_check(&format!("{q}.operator_set"), &r.operator_set, |t| {
                    if sets.iter().any(|s| s == t) {
                        Ok(())
                    } else {
                        Err(format!(
                            "no operator set named `{t}` in `operator_sets:` (there are: {})",
                            if sets.is_empty() {
                                "none".to_owned()
                            } else {
                                sets.join(", ")
                            }
                        ))
                    }
                });
            }
            let operator_set = self.text(&format!("{q}.operator_set"), &r.operator_set);
            let policy = self.text(&format!("{q}.policy"), &r.policy);
            let reason = r
                .reason
                .as_ref()
                .and_then(|x| self.text(&format!("{q}.reason"), x));
            return Some(StepKind::RequestRebalance {
                operator_set: operator_set?,
                policy: policy?,
                reason,
            });
        }
        if let Some(x) = &s.propose_safe_tx {
            let q = format!("{p}.propose_safe_tx");
            self.literal_check(&format!("{q}.safe"), &x.safe, address_check);
            let safe = self.text(&format!("{q}.safe"), &x.safe);
            let reason = self.text(&format!("{q}.reason"), &x.reason);
            if x.calls.is_empty() {
                self.invalid(&format!("{q}.calls"), &x.calls, "give at least one call");
            }
            let mut calls = Vec::new();
            for (i, c) in x.calls.iter().enumerate() {
                let cp = format!("{q}.calls[{i}]");
                self.literal_check(&format!("{cp}.to"), &c.to, address_check);
                let to = self.text(&format!("{cp}.to"), &c.to);
                let value = match &c.value {
                    Some(v) => {
                        self.literal_check(&format!("{cp}.value"), v, |t| {
                            if !t.trim().is_empty() && t.trim().chars().all(|c| c.is_ascii_digit())
                            {
                                Ok(())
                            } else {
                                Err(format!("expected wei as a whole number (got `{t}`)"))
                            }
                        });
                        self.text(&format!("{cp}.value"), v)
                    }
                    None => Some(Text::Literal("0".into())),
                };
                let function = match steward_chain::abi::parse_function_signature(c.function.get())
                {
                    Ok(f) => Some(f),
                    Err(e) => {
                        self.invalid(&format!("{cp}.function"), &c.function, format!("{e}; expected e.g. `function transfer(address to, uint256 amount)`"));
                        None
                    }
                };
                let mut args = Vec::new();
                if let Some(f) = &function {
                    if f.inputs.len() != c.args.len() {
                        self.err(
                            ErrorKind::InvalidValue,
                            &format!("{cp}.args"),
                            self.doc.nearest_position(&format!("{cp}.args")),
                            format!(
                                "`{}` takes {} argument{}, {} given",
                                f.name,
                                f.inputs.len(),
                                if f.inputs.len() == 1 { "" } else { "s" },
                                c.args.len()
                            ),
                        );
                    } else {
                        for (j, (param, a)) in f.inputs.iter().zip(&c.args).enumerate() {
                            self.literal_check(&format!("{cp}.args[{j}]"), a, |t| {
                                steward_chain::abi::coerce_arg(param, t).map(|_| ())
                            });
                        }
                    }
                }
                for (j, a) in c.args.iter().enumerate() {
                    args.push(self.text(&format!("{cp}.args[{j}]"), a));
                }
                if let (Some(to), Some(function), Some(value)) = (to, function, value) {
                    if let Some(args) = args.into_iter().collect::<Option<Vec<_>>>() {
                        calls.push(Call {
                            to,
                            signature: c.function.get().clone(),
                            function,
                            args,
                            value,
                        });
                    }
                }
            }
            return Some(StepKind::ProposeSafeTx {
                safe: safe?,
                calls,
                reason: reason?,
            });
        }
        if let Some(w) = &s.wait_for {
            let q = format!("{p}.wait_for");
            let pattern = w.event.trim().to_owned();
            if let Err(e) = type_pattern_to_subject("steward", &pattern) {
                self.invalid(&format!("{q}.event"), &w.event, e.to_string());
            } else if let Some(why) = unheard(&pattern) {
                self.invalid(&format!("{q}.event"), &w.event, why);
            }
            let timeout = self.duration(&format!("{q}.timeout"), &w.timeout);
            // In the condition, `event` is the candidate.
            let saved = self.scope.clone();
            self.scope.has_event = true;
            self.scope.event_types = EVENT_TYPES
                .iter()
                .filter(|t| subject_matches(&pattern, t))
                .map(|t| (*t).to_owned())
                .collect();
            self.scope.open_types = self.scope.event_types.is_empty();
            let filter = w
                .where_
                .as_ref()
                .and_then(|c| self.cel(&format!("{q}.where"), c));
            self.scope = saved;
            return Some(StepKind::WaitFor {
                pattern,
                filter,
                timeout: timeout?,
            });
        }
        if let Some(a) = &s.approval {
            let q = format!("{p}.approval");
            let known = config.map(|c| c.playbooks.approvers.keys().cloned().collect::<Vec<_>>());
            let approvers =
                self.names_list(&format!("{q}.approvers"), &a.approvers, "approver", known);
            let channels = self.names_list(
                &format!("{q}.channels"),
                &a.channels,
                "notification channel",
                channels_known,
            );
            let required = a.required.as_ref().map(|r| *r.get()).unwrap_or(1);
            if let Some(r) = &a.required {
                if required == 0 || required as usize > approvers.len() {
                    self.invalid(
                        &format!("{q}.required"),
                        r,
                        format!(
                            "must be between 1 and the number of approvers ({})",
                            approvers.len()
                        ),
                    );
                }
            }
            let message = self.text(&format!("{q}.message"), &a.message);
            let timeout = self.duration(&format!("{q}.timeout"), &a.timeout);
            return Some(StepKind::Approval {
                approvers,
                required,
                channels,
                message: message?,
                timeout: timeout?,
            });
        }
        if let Some(set) = &s.set {
            let q = format!("{p}.set");
            if set.is_empty() {
                self.err(
                    ErrorKind::InvalidValue,
                    &q,
                    self.doc.nearest_position(&q),
                    "give at least one var to set",
                );
            }
            let mut out = Vec::new();
            for (k, v) in set {
                if let Some(e) = self.cel(&format!("{q}.{k}"), v) {
                    out.push((k.clone(), e));
                }
            }
            return Some(StepKind::Set(out));
        }
        None
    }
}

fn address_check(t: &str) -> Result<(), String> {
    if is_address_syntax(t.trim()) {
        Ok(())
    } else {
        Err(format!(
            "expected an address (0x and 40 hex digits), got `{t}`"
        ))
    }
}

fn via_check(t: &str) -> Result<(), String> {
    if t.trim() == "relayer" || is_address_syntax(t.trim()) {
        Ok(())
    } else {
        Err(format!(
            "expected `relayer` or the address of a Safe, got `{t}`"
        ))
    }
}

/// A severity as written.
pub fn severity(t: &str) -> Result<Severity, String> {
    serde_json::from_value(Value::String(t.trim().to_owned())).map_err(|_| {
        format!("expected a severity: `info`, `low`, `medium`, `high` or `critical` (got `{t}`)")
    })
}

/// Why an event pattern (of a trigger or a `wait_for`) would never be heard, if it would not:
/// it matches no type of the catalogue, or only the runner's own `playbook.*` events, which
/// start no run and end no wait (a playbook reacting to runs could loop for ever; the notifier
/// already alerts on failed runs).
fn unheard(pattern: &str) -> Option<String> {
    let matching: Vec<&str> = EVENT_TYPES
        .iter()
        .copied()
        .filter(|ty| subject_matches(pattern, ty))
        .collect();
    if matching.is_empty() {
        return Some(format!("`{pattern}` matches no event type of the catalogue (e.g. `risk.position.liquidatable`, `risk.oracle.*`, `chain.>`)"));
    }
    if matching.iter().all(|ty| ty.starts_with("playbook.")) {
        return Some(format!("`{pattern}` matches only the runner's own events (`playbook.*`), which start no run and end no wait: a playbook reacting to runs could loop for ever (the notifier already alerts on failed runs)"));
    }
    None
}
