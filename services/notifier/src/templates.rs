//! Handlebars templates: the built-in set (compiled into the binary from the repository's
//! `templates/` folder), the user's folder over it, the helpers, and the checks run at
//! `steward config check`.
//!
//! A template `NAME` has four parts: `NAME.telegram.hbs` (plain text; formatting through
//! helpers only, see [`crate::markup`]), `NAME.subject.hbs` (one line: the e-mail subject and
//! the line a digest shows), `NAME.text.hbs` and `NAME.html.hbs` (the e-mail's two parts), and
//! `NAME.example.json`: the variables the template may use, with example values. Every part
//! is rendered against its example in strict mode when the configuration is loaded, so a
//! syntax error or a variable that the example does not declare is reported with the file,
//! line and column.
//!
//! At run time templates render leniently (a variable the request lacks renders empty, with
//! a warning): an alert with a hole in it is better than an alert lost.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, TemplateError,
};
use serde_json::{Map, Value};
use steward_config::{Config, ParseMode};

use crate::markup;

/// The parts of a template, in file-name order.
pub const PARTS: [&str; 4] = ["telegram", "subject", "text", "html"];

/// Variables every template gets besides the request's context.
pub const GLOBALS: [&str; 7] = [
    "fields",
    "severity",
    "template",
    "channel",
    "time",
    "correlation_id",
    "chain_id",
];

macro_rules! builtin {
    ($($name:literal),+ $(,)?) => {
        /// The built-in templates: (name, part or `example`, source).
        pub const BUILTIN: &[(&str, &str, &str)] = &[
            $(
                ($name, "telegram", include_str!(concat!("../../../templates/", $name, ".telegram.hbs"))),
                ($name, "subject", include_str!(concat!("../../../templates/", $name, ".subject.hbs"))),
                ($name, "text", include_str!(concat!("../../../templates/", $name, ".text.hbs"))),
                ($name, "html", include_str!(concat!("../../../templates/", $name, ".html.hbs"))),
                ($name, "example", include_str!(concat!("../../../templates/", $name, ".example.json"))),
            )+
        ];
    };
}

builtin!(
    "default",
    "dead_letter",
    "playbook_failed",
    "digest",
    "liquidation",
    "safe_tx",
    "approval",
    "safe_tx_review",
    "daily_digest",
);

/// Where links point: per-chain explorers (from `chains:`), a default explorer, the signing
/// page.
#[derive(Debug, Clone, Default)]
pub struct Links {
    pub explorers: HashMap<u64, String>,
    pub explorer: Option<String>,
    pub signing: Option<String>,
    /// `safes[].signing_url` by the Safe's lowercase address: preferred to `signing`.
    pub signing_by_safe: HashMap<String, String>,
}

impl Links {
    pub fn from_config(config: &Config) -> Self {
        Self {
            explorers: config
                .chains
                .iter()
                .filter_map(|c| Some((c.chain_id, c.explorer.clone()?)))
                .collect(),
            explorer: config.notify.links.explorer.clone(),
            signing: config.notify.links.signing.clone(),
            signing_by_safe: config
                .safes
                .iter()
                .filter_map(|s| Some((s.address.to_ascii_lowercase(), s.signing_url.clone()?)))
                .collect(),
        }
    }

    /// The explorer for `chain_id`, or the default one.
    pub fn explorer_for(&self, chain_id: Option<u64>) -> Option<&str> {
        chain_id
            .and_then(|c| self.explorers.get(&c))
            .or(self.explorer.as_ref())
            .map(|s| s.trim_end_matches('/'))
    }

    /// The signing page of a Safe transaction, when one is configured: the Safe's own
    /// (`safes[].signing_url`), else `notify.links.signing`.
    pub fn signing_url(
        &self,
        safe: &str,
        safe_tx_hash: &str,
        chain_id: Option<u64>,
    ) -> Option<String> {
        let own = self.signing_by_safe.get(&safe.to_ascii_lowercase());
        own.or(self.signing.as_ref()).map(|t| {
            t.replace("{safe}", safe)
                .replace("{safe_tx_hash}", safe_tx_hash)
                .replace(
                    "{chain_id}",
                    &chain_id.map(|c| c.to_string()).unwrap_or_default(),
                )
        })
    }
}

/// What a helper writes: Telegram's marker text, HTML, or plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Rich,
    Html,
    Text,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Amount,
    Address,
    Tx,
    Link,
    SigningLink,
    Duration,
    Severity,
    Bold,
    Italic,
    Code,
}

const HELPERS: [(&str, Kind); 10] = [
    ("fmt_amount", Kind::Amount),
    ("fmt_address", Kind::Address),
    ("fmt_tx", Kind::Tx),
    ("link", Kind::Link),
    ("signing_link", Kind::SigningLink),
    ("fmt_duration", Kind::Duration),
    ("fmt_severity", Kind::Severity),
    ("bold", Kind::Bold),
    ("italic", Kind::Italic),
    ("code", Kind::Code),
];

struct Helpr {
    kind: Kind,
    format: Format,
    links: Arc<Links>,
}

fn param<'a>(h: &'a Helper<'_>, i: usize, strict: bool) -> Result<&'a Value, RenderError> {
    match h.param(i) {
        Some(p) if p.is_value_missing() && strict => {
            Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into())
        }
        Some(p) => Ok(p.value()),
        None => Err(RenderErrorReason::ParamNotFoundForIndex(helper_name(h), i).into()),
    }
}

fn helper_name(h: &Helper<'_>) -> &'static str {
    HELPERS
        .iter()
        .find(|(n, _)| *n == h.name())
        .map(|(n, _)| *n)
        .unwrap_or("helper")
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn chain_id_of(ctx: &Context) -> Option<u64> {
    ctx.data().get("chain_id").and_then(Value::as_u64)
}

impl Helpr {
    fn escape(&self, s: &str) -> String {
        match self.format {
            Format::Rich => markup::strip_markers(s),
            Format::Html => handlebars::html_escape(s),
            Format::Text => s.to_owned(),
        }
    }

    fn link(&self, text: &str, url: Option<&str>) -> String {
        match (url, self.format) {
            (None, _) => self.escape(text),
            (Some(u), Format::Rich) => markup::link(text, u),
            (Some(u), Format::Html) => format!(
                "<a href=\"{}\">{}</a>",
                handlebars::html_escape(u),
                handlebars::html_escape(text)
            ),
            (Some(u), Format::Text) if u == text => u.to_owned(),
            (Some(u), Format::Text) => format!("{text} ({u})"),
        }
    }

    fn wrap(&self, open: char, close: char, html: &str, inner: &str) -> String {
        match self.format {
            Format::Rich => format!("{open}{inner}{close}"),
            Format::Html => format!("<{html}>{inner}</{html}>"),
            Format::Text => inner.to_owned(),
        }
    }
}

impl HelperDef for Helpr {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let strict = r.strict_mode();
        let written = match self.kind {
            Kind::Bold | Kind::Italic | Kind::Code => {
                let mut inner = handlebars::StringOutput::new();
                if let Some(t) = h.template() {
                    handlebars::Renderable::render(t, r, ctx, rc, &mut inner)?;
                }
                let inner = inner.into_string()?;
                match self.kind {
                    Kind::Bold => self.wrap(markup::BOLD_OPEN, markup::BOLD_CLOSE, "b", &inner),
                    Kind::Italic => {
                        self.wrap(markup::ITALIC_OPEN, markup::ITALIC_CLOSE, "i", &inner)
                    }
                    _ => self.wrap(markup::CODE_OPEN, markup::CODE_CLOSE, "code", &inner),
                }
            }
            Kind::Amount => {
                let value = text_of(param(h, 0, strict)?);
                let decimals = param(h, 1, strict)?;
                let decimals = decimals
                    .as_u64()
                    .or_else(|| decimals.as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0) as u32;
                let unit = match h.param(2) {
                    Some(_) => format!(" {}", text_of(param(h, 2, strict)?)),
                    None => String::new(),
                };
                self.escape(&format!("{}{unit}", format_amount(&value, decimals)))
            }
            Kind::Address => {
                let a = text_of(param(h, 0, strict)?);
                let url = self
                    .links
                    .explorer_for(chain_id_of(ctx))
                    .map(|e| format!("{e}/address/{a}"));
                let shown = if self.format == Format::Text {
                    a.clone()
                } else {
                    shorten(&a)
                };
                self.link(&shown, url.as_deref())
            }
            Kind::Tx => {
                let hash = text_of(param(h, 0, strict)?);
                let url = self
                    .links
                    .explorer_for(chain_id_of(ctx))
                    .map(|e| format!("{e}/tx/{hash}"));
                let shown = if self.format == Format::Text {
                    hash.clone()
                } else {
                    shorten(&hash)
                };
                self.link(&shown, url.as_deref())
            }
            Kind::Link => {
                let url = text_of(param(h, 0, strict)?);
                let text = match h.param(1) {
                    Some(_) => text_of(param(h, 1, strict)?),
                    None => url.clone(),
                };
                let ok = url.starts_with("https://") || url.starts_with("http://");
                self.link(&text, ok.then_some(url.as_str()))
            }
            Kind::SigningLink => {
                let safe = text_of(param(h, 0, strict)?);
                let hash = text_of(param(h, 1, strict)?);
                let text = match h.param(2) {
                    Some(_) => text_of(param(h, 2, strict)?),
                    None => "Sign".to_owned(),
                };
                let url = self.links.signing_url(&safe, &hash, chain_id_of(ctx));
                match url {
                    Some(u) => self.link(&text, Some(&u)),
                    None => self.escape(&hash),
                }
            }
            Kind::Duration => {
                let v = param(h, 0, strict)?;
                let secs = v
                    .as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0.0);
                self.escape(&format_duration(secs))
            }
            Kind::Severity => {
                let s = text_of(param(h, 0, strict)?);
                self.escape(&format_severity(&s))
            }
        };
        out.write(&written)?;
        Ok(())
    }
}

/// `1234567890` with 6 decimals → `1,234.56789`; at most 6 decimal places, trailing zeros
/// dropped. Text that is not a decimal integer is returned as it is.
pub fn format_amount(value: &str, decimals: u32) -> String {
    let v = value.trim();
    let (neg, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return value.to_owned();
    }
    let d = decimals as usize;
    let padded = if digits.len() <= d {
        format!("{}{digits}", "0".repeat(d + 1 - digits.len()))
    } else {
        digits.to_owned()
    };
    let (int, frac) = padded.split_at(padded.len() - d);
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let frac: String = frac.chars().take(6).collect();
    let frac = frac.trim_end_matches('0');
    let sign = if neg { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// `0x1234…abcd` for long hex strings.
pub fn shorten(s: &str) -> String {
    let hex = s.len() > 14 && s.starts_with("0x") && s[2..].chars().all(|c| c.is_ascii_hexdigit());
    if hex {
        format!("{}…{}", &s[..6], &s[s.len() - 4..])
    } else {
        s.to_owned()
    }
}

/// Seconds as `2d 3h`, `1h 5m`, `4m 10s`, `12s`.
pub fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) if sec == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

/// `high` → `🟠 HIGH`.
pub fn format_severity(s: &str) -> String {
    let icon = match s {
        "critical" => "🔴",
        "high" => "🟠",
        "medium" => "🟡",
        "low" => "🔵",
        "info" => "⚪",
        _ => "•",
    };
    format!("{icon} {}", s.to_uppercase())
}

/// The rendered parts a transport needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line: the e-mail subject, the digest's line.
    pub summary: String,
    /// Telegram markup (in the configured parse mode).
    pub telegram: String,
    pub text: String,
    pub html: String,
}

/// The compiled templates.
pub struct Templates {
    rich: Handlebars<'static>,
    plain: Handlebars<'static>,
    html: Handlebars<'static>,
    names: BTreeSet<String>,
    examples: BTreeMap<String, Value>,
    mode: ParseMode,
    links: Arc<Links>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("names", &self.names)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// One template file: where it came from (for messages) and its text.
struct Source {
    label: String,
    text: String,
}

fn registry(format: Format, links: &Arc<Links>, strict: bool) -> Handlebars<'static> {
    let mut r = Handlebars::new();
    r.set_strict_mode(strict);
    // Templates are text: a line holding only a block tag should not leave a blank line,
    // which Handlebars' standalone rule already ensures; indentation of partials is kept.
    match format {
        Format::Rich => r.register_escape_fn(markup::strip_markers),
        Format::Html => r.register_escape_fn(handlebars::html_escape),
        Format::Text => r.register_escape_fn(handlebars::no_escape),
    }
    for (name, kind) in HELPERS {
        r.register_helper(
            name,
            Box::new(Helpr {
                kind,
                format,
                links: links.clone(),
            }),
        );
    }
    r
}

/// A registry for plain text with the helpers above (`fmt_amount`, `fmt_address`, `fmt_tx`,
/// `link`, `signing_link`, `fmt_duration`, `fmt_severity`; `bold`, `italic` and `code` keep
/// their text), no escaping: what playbooks render their strings with.
pub fn plain_registry(links: Links, strict: bool) -> Handlebars<'static> {
    registry(Format::Text, &Arc::new(links), strict)
}

impl Templates {
    /// The built-in templates with the user's folder (`notify.templates`, relative to
    /// `base_dir`) over them. Every problem is one message naming the file, line and column.
    pub fn load(config: &Config) -> Result<Self, Vec<String>> {
        Self::load_with(config, false)
    }

    fn load_with(config: &Config, strict: bool) -> Result<Self, Vec<String>> {
        let links = Arc::new(Links::from_config(config));
        let mode = config
            .notify
            .telegram
            .as_ref()
            .map(|t| t.parse_mode)
            .unwrap_or_default();
        let mut problems = Vec::new();
        // (name, part) → source; user files replace built-in ones.
        let mut sources: BTreeMap<(String, String), Source> = BTreeMap::new();
        for (name, part, text) in BUILTIN {
            sources.insert(
                ((*name).to_owned(), (*part).to_owned()),
                Source {
                    label: format!("built-in template {name}.{part}"),
                    text: (*text).to_owned(),
                },
            );
        }
        let builtin_names: BTreeSet<String> =
            BUILTIN.iter().map(|(n, _, _)| (*n).to_owned()).collect();
        if let Some(dir) = &config.notify.templates {
            read_folder(dir, &config.base_dir.join(dir), &mut sources, &mut problems);
        }
        let names: BTreeSet<String> = sources.keys().map(|(n, _)| n.clone()).collect();
        for name in &names {
            if builtin_names.contains(name) {
                continue;
            }
            let missing: Vec<String> = PARTS
                .iter()
                .chain(std::iter::once(&"example"))
                .filter(|p| !sources.contains_key(&(name.clone(), (**p).to_owned())))
                .map(|p| file_name(name, p))
                .collect();
            if !missing.is_empty() {
                let dir = config.notify.templates.as_deref().unwrap_or(Path::new("."));
                problems.push(format!(
                    "{}: the new template `{name}` lacks {}: a template that is not built in needs all four parts and its example variables",
                    dir.display(),
                    missing.join(", ")
                ));
            }
        }
        let mut t = Templates {
            rich: registry(Format::Rich, &links, strict),
            plain: registry(Format::Text, &links, strict),
            html: registry(Format::Html, &links, strict),
            names: names.clone(),
            examples: BTreeMap::new(),
            mode,
            links,
        };
        let mut labels: BTreeMap<(String, String), String> = BTreeMap::new();
        for ((name, part), src) in &sources {
            labels.insert((name.clone(), part.clone()), src.label.clone());
            let result = match part.as_str() {
                "telegram" => t.rich.register_template_string(name, &src.text),
                "subject" => t
                    .plain
                    .register_template_string(&format!("{name}.subject"), &src.text),
                "text" => t
                    .plain
                    .register_template_string(&format!("{name}.text"), &src.text),
                "html" => t.html.register_template_string(name, &src.text),
                _ => {
                    match serde_json::from_str::<Value>(&src.text) {
                        Ok(Value::Object(m)) => {
                            t.examples.insert(name.clone(), Value::Object(m));
                        }
                        Ok(_) => problems.push(format!(
                            "{}: must be a JSON object of the template's variables and example values",
                            src.label
                        )),
                        Err(e) => problems.push(format!(
                            "{}:{}:{}: not valid JSON: {e}",
                            src.label,
                            e.line(),
                            e.column()
                        )),
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                problems.push(template_error(&src.label, &e));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        if strict {
            // Render every part against its example: unknown variables are found here.
            for name in &names {
                let ctx = t.example_context(name);
                for part in PARTS {
                    let label = &labels[&(name.clone(), part.to_owned())];
                    if let Err(e) = t.render_part(name, part, &ctx) {
                        problems.push(render_error(label, &e, name, &ctx));
                    }
                }
            }
            if !problems.is_empty() {
                return Err(problems);
            }
        }
        Ok(t)
    }

    /// The configuration check: everything [`Templates::load`] finds, plus every part
    /// rendered against its example in strict mode.
    pub fn check(config: &Config) -> Vec<String> {
        match Self::load_with(config, true) {
            Ok(_) => Vec::new(),
            Err(p) => p,
        }
    }

    pub fn parse_mode(&self) -> ParseMode {
        self.mode
    }

    pub fn links(&self) -> &Links {
        &self.links
    }

    /// The names of every template (built in and configured).
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.names.iter()
    }

    /// Whether a template of this name exists.
    pub fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The template's example, with the global variables filled in.
    pub fn example_context(&self, name: &str) -> Value {
        let mut m = match self.examples.get(name) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let globals = [
            ("severity", Value::from("high")),
            ("template", Value::from(name)),
            ("channel", Value::from("ops")),
            ("time", Value::from("2026-11-25T12:00:00.000Z")),
            (
                "correlation_id",
                Value::from("0192f1a0-7c00-7000-8000-000000000001"),
            ),
            ("chain_id", Value::from(1)),
        ];
        let fields = Value::Object(m.clone());
        for (k, v) in globals {
            m.entry(k).or_insert(v);
        }
        m.entry("fields").or_insert(fields);
        Value::Object(m)
    }

    fn render_part(&self, name: &str, part: &str, ctx: &Value) -> Result<String, RenderError> {
        match part {
            "telegram" => self.rich.render(name, ctx),
            "subject" | "text" => self.plain.render(&format!("{name}.{part}"), ctx),
            _ => self.html.render(name, ctx),
        }
    }

    /// Renders template `name` (or `default` when there is none of that name) with `ctx`.
    pub fn render(&self, name: &str, ctx: &Value) -> Result<Rendered, RenderError> {
        let name = if self.has(name) { name } else { "default" };
        let summary = self.render_part(name, "subject", ctx)?;
        let summary = summary
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_owned();
        let rich = self.render_part(name, "telegram", ctx)?;
        Ok(Rendered {
            summary,
            telegram: markup::to_telegram(rich.trim(), self.mode),
            text: self.render_part(name, "text", ctx)?.trim().to_owned() + "\n",
            html: self.render_part(name, "html", ctx)?,
        })
    }
}

fn file_name(name: &str, part: &str) -> String {
    if part == "example" {
        format!("{name}.example.json")
    } else {
        format!("{name}.{part}.hbs")
    }
}

/// Reads `dir` (shown as `shown`): `NAME.PART.hbs` and `NAME.example.json` files.
fn read_folder(
    shown: &Path,
    dir: &Path,
    sources: &mut BTreeMap<(String, String), Source>,
    problems: &mut Vec<String>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!(
                "{}: cannot read the templates folder: {e}",
                shown.display()
            ));
            return;
        }
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for path in files {
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let label = shown.join(file).display().to_string();
        let (name, part) = if let Some(stem) = file.strip_suffix(".example.json") {
            (stem, "example")
        } else if let Some(stem) = file.strip_suffix(".hbs") {
            match stem.rsplit_once('.') {
                Some((n, p)) if PARTS.contains(&p) => (n, p),
                _ => {
                    problems.push(format!(
                        "{label}: a template file is named NAME.PART.hbs with PART one of {}",
                        PARTS.join(", ")
                    ));
                    continue;
                }
            }
        } else {
            // Other files (a README) are not templates.
            continue;
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            problems.push(format!(
                "{label}: a template name is letters, digits, `_` or `-`"
            ));
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                sources.insert((name.to_owned(), part.to_owned()), Source { label, text });
            }
            Err(e) => problems.push(format!("{label}: cannot read: {e}")),
        }
    }
}

fn template_error(label: &str, e: &TemplateError) -> String {
    match e.pos() {
        Some((line, col)) => format!("{label}:{line}:{col}: syntax error: {}", e.reason()),
        None => format!("{label}: syntax error: {}", e.reason()),
    }
}

fn render_error(label: &str, e: &RenderError, name: &str, ctx: &Value) -> String {
    let at = match (e.line_no, e.column_no) {
        (Some(l), Some(c)) => format!("{label}:{l}:{c}"),
        _ => label.to_owned(),
    };
    match e.reason() {
        RenderErrorReason::MissingVariable(path) => {
            let known: Vec<String> = ctx
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            format!(
                "{at}: unknown variable `{}`: {name}.example.json does not declare it (the variables are: {})",
                path.as_deref().unwrap_or("?"),
                known.join(", ")
            )
        }
        other => format!("{at}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_durations_severities() {
        assert_eq!(format_amount("1234567890", 6), "1,234.56789");
        assert_eq!(format_amount("1000000000000000000", 18), "1");
        assert_eq!(format_amount("5", 2), "0.05");
        assert_eq!(format_amount("-123456", 0), "-123,456");
        assert_eq!(format_amount("max", 18), "max");
        assert_eq!(format_duration(3725.0), "1h 2m");
        assert_eq!(format_duration(59.0), "59s");
        assert_eq!(format_duration(90_000.0), "1d 1h");
        assert_eq!(format_severity("critical"), "🔴 CRITICAL");
        assert_eq!(
            shorten("0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2"),
            "0x8787…A4E2"
        );
    }

    #[test]
    fn a_safes_own_signing_page_comes_before_the_default_one() {
        let treasury = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
        let other = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";
        let yaml = format!(
            "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"http://127.0.0.1:8545\"}}]\n    watches:\n      - {{name: t, pack: safe, address: \"{treasury}\"}}\nsafes:\n  - name: treasury\n    chain: local\n    address: \"{treasury}\"\n    multi_send: \"0x38869bf66a61cF6bDB996A6aE40D5853Fd43B526\"\n    multi_send_call_only: \"0x9641d764fc13c8B624c04430C7356C1C7C8102e2\"\n    signing_url: \"https://app.safe.global/transactions/tx?safe=eth:{{safe}}&id=multisig_{{safe}}_{{safe_tx_hash}}\"\nnotify:\n  links:\n    signing: \"https://sign.example/{{chain_id}}/{{safe}}/{{safe_tx_hash}}\"\n"
        );
        let config =
            Config::from_yaml_str(&yaml, "steward.yaml", &steward_config::MapEnv::new()).unwrap();
        let links = Links::from_config(&config);
        assert_eq!(
            links
                .signing_url(&treasury.to_ascii_lowercase(), "0xab", Some(31337))
                .unwrap(),
            format!(
                "https://app.safe.global/transactions/tx?safe=eth:{0}&id=multisig_{0}_0xab",
                treasury.to_ascii_lowercase()
            )
        );
        assert_eq!(
            links.signing_url(other, "0xcd", Some(31337)).unwrap(),
            format!("https://sign.example/31337/{other}/0xcd")
        );
    }

    #[test]
    fn the_built_in_templates_pass_their_own_check() {
        let config = Config::default();
        assert_eq!(Templates::check(&config), Vec::<String>::new());
        let mut config = Config::default();
        config.notify.telegram =
            Some(serde_json::from_value(serde_json::json!({"parse_mode": "html"})).unwrap());
        assert_eq!(Templates::check(&config), Vec::<String>::new());
    }
}
