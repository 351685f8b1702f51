//! Handlebars strings in playbooks: every string a step sends somewhere (an address, an amount,
//! a reason, a notification's context) may be a template over the run's context — `event`,
//! `inputs`, `vars`, `steps`, `run`, `now`.
//!
//! The helpers are the notifier's (one implementation for both; see
//! `steward_notifier::templates`): `fmt_amount value decimals [unit]`, `fmt_address`,
//! `fmt_tx`, `link url [text]`, `signing_link safe hash`, `fmt_duration seconds`,
//! `fmt_severity`; rendered as plain text. The runner adds `short` (`0x1234…abcd`),
//! `checksum` (EIP-55) and `json` (a value as JSON text).
//!
//! Templates render strictly: a variable that is not there is an error, so a step never acts on
//! an empty address. `steward playbook validate` checks every name a template uses (see
//! [`Compiled::names`]).

use std::str::FromStr;

use alloy::primitives::Address;
use handlebars::template::{Parameter, TemplateElement};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, Template,
};
use serde_json::Value;
use steward_notifier::templates::{plain_registry, shorten, Links};

/// Helpers a playbook template may call: handlebars' own, the notifier's and the runner's.
pub const HELPERS: [&str; 26] = [
    "if",
    "unless",
    "each",
    "with",
    "lookup",
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "and",
    "or",
    "not",
    "len",
    "fmt_amount",
    "fmt_address",
    "fmt_tx",
    "link",
    "signing_link",
    "fmt_duration",
    "fmt_severity",
    "bold",
    "short",
    "checksum",
    "json",
];

/// Block helpers that change the context: names inside them are not checked.
const SCOPING: [&str; 3] = ["each", "with", "lookup"];

/// A variable a template reads, at a 1-based line and column inside the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateName {
    pub path: Vec<String>,
    pub line: usize,
    pub column: usize,
}

/// A problem in a template, inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateIssue {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A string as written in a playbook: plain text, or a compiled template.
#[derive(Debug, Clone)]
pub enum Text {
    Literal(String),
    Template { name: String, source: String },
}

impl Text {
    pub fn source(&self) -> &str {
        match self {
            Text::Literal(s) => s,
            Text::Template { source, .. } => source,
        }
    }
}

/// What compiling a template found.
pub struct Compiled {
    pub text: Text,
    pub template: Option<Template>,
}

impl Compiled {
    /// The variables the template reads (outside `#each`/`#with` blocks, whose context is an
    /// item rather than the run).
    pub fn names(&self) -> Vec<TemplateName> {
        let mut out = Vec::new();
        if let Some(t) = &self.template {
            names_in(t, &mut out);
        }
        out
    }

    /// Helpers called that do not exist.
    pub fn unknown_helpers(&self) -> Vec<TemplateName> {
        let mut out = Vec::new();
        if let Some(t) = &self.template {
            helpers_in(t, &mut out);
        }
        out
    }
}

/// Compiles `source`; a string without `{{` is a literal and costs nothing to render.
pub fn compile(source: &str, name: &str) -> Result<Compiled, TemplateIssue> {
    if !source.contains("{{") {
        return Ok(Compiled {
            text: Text::Literal(source.to_owned()),
            template: None,
        });
    }
    match Template::compile(source) {
        Ok(t) => Ok(Compiled {
            text: Text::Template {
                name: name.to_owned(),
                source: source.to_owned(),
            },
            template: Some(t),
        }),
        Err(e) => {
            let (line, column) = e.pos().unwrap_or((1, 1));
            Err(TemplateIssue {
                line,
                column,
                message: format!("not a valid template: {}", e.reason()),
            })
        }
    }
}

fn path_segments(raw: &str) -> Vec<String> {
    raw.split(['.', '/'])
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_start_matches('[').trim_end_matches(']').to_owned())
        .collect()
}

fn param_names(p: &Parameter, line: usize, column: usize, out: &mut Vec<TemplateName>) {
    match p {
        Parameter::Path(path) => {
            let raw = match path {
                handlebars::Path::Relative((_, raw)) => raw.as_str(),
                handlebars::Path::Local(_) => return,
            };
            if raw.starts_with('@')
                || raw == "this"
                || raw.starts_with("this.")
                || raw.starts_with("../")
            {
                return;
            }
            out.push(TemplateName {
                path: path_segments(raw),
                line,
                column,
            });
        }
        Parameter::Subexpression(sub) => element_names(&sub.element, line, column, out),
        _ => {}
    }
}

fn element_names(e: &TemplateElement, line: usize, column: usize, out: &mut Vec<TemplateName>) {
    match e {
        TemplateElement::Expression(h)
        | TemplateElement::HtmlExpression(h)
        | TemplateElement::HelperBlock(h) => {
            // `{{event.x}}` is an expression whose name is the path itself.
            if h.params.is_empty() && h.hash.is_empty() && !h.block {
                param_names(&h.name, line, column, out);
            }
            for p in h.params.iter().chain(h.hash.values()) {
                param_names(p, line, column, out);
            }
            let scoping = matches!(&h.name, Parameter::Name(n) if SCOPING.contains(&n.as_str()));
            if !scoping {
                for t in h.template.iter().chain(h.inverse.iter()) {
                    names_in(t, out);
                }
            }
        }
        _ => {}
    }
}

fn names_in(t: &Template, out: &mut Vec<TemplateName>) {
    for (i, e) in t.elements.iter().enumerate() {
        let (line, column) = t.mapping.get(i).map(|m| (m.0, m.1)).unwrap_or((1, 1));
        element_names(e, line, column, out);
    }
}

fn helpers_in(t: &Template, out: &mut Vec<TemplateName>) {
    for (i, e) in t.elements.iter().enumerate() {
        let (line, column) = t.mapping.get(i).map(|m| (m.0, m.1)).unwrap_or((1, 1));
        if let TemplateElement::Expression(h)
        | TemplateElement::HtmlExpression(h)
        | TemplateElement::HelperBlock(h) = e
        {
            let called = !h.params.is_empty() || !h.hash.is_empty() || h.block;
            let name = match &h.name {
                Parameter::Name(n) => Some(n.clone()),
                Parameter::Path(handlebars::Path::Relative((_, raw))) if called => {
                    Some(raw.clone())
                }
                _ => None,
            };
            if let Some(n) = name {
                if called && !HELPERS.contains(&n.as_str()) {
                    out.push(TemplateName {
                        path: vec![n],
                        line,
                        column,
                    });
                }
            }
            for tt in h.template.iter().chain(h.inverse.iter()) {
                helpers_in(tt, out);
            }
        }
    }
}

/// The registry a playbook's templates live in, with every helper, strict.
pub fn registry(links: Links) -> Handlebars<'static> {
    let mut r = plain_registry(links, true);
    r.register_helper("short", Box::new(Short));
    r.register_helper("checksum", Box::new(Checksum));
    r.register_helper("json", Box::new(JsonHelper));
    r
}

/// Renders `text` with `ctx`.
pub fn render(r: &Handlebars<'static>, text: &Text, ctx: &Value) -> Result<String, String> {
    match text {
        Text::Literal(s) => Ok(s.clone()),
        Text::Template { name, source } => r.render(name, ctx).map_err(|e| {
            let what = match e.reason() {
                RenderErrorReason::MissingVariable(Some(v)) => format!("`{v}` is not there"),
                other => other.to_string(),
            };
            format!("template `{source}` cannot be rendered: {what}")
        }),
    }
}

fn first_param<'a>(h: &'a Helper<'_>, name: &'static str) -> Result<&'a Value, RenderError> {
    match h.param(0) {
        Some(p) if p.is_value_missing() => {
            Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into())
        }
        Some(p) => Ok(p.value()),
        None => Err(RenderErrorReason::ParamNotFoundForIndex(name, 0).into()),
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

struct Short;

impl HelperDef for Short {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        out.write(&shorten(&text_of(first_param(h, "short")?)))?;
        Ok(())
    }
}

struct Checksum;

impl HelperDef for Checksum {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let text = text_of(first_param(h, "checksum")?);
        let a = Address::from_str(text.trim()).map_err(|_| {
            RenderErrorReason::Other(format!("checksum: `{text}` is not an address"))
        })?;
        out.write(&a.to_checksum(None))?;
        Ok(())
    }
}

struct JsonHelper;

impl HelperDef for JsonHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        out.write(&first_param(h, "json")?.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_helpers_are_found_with_positions() {
        let c = compile(
            "Liquidate {{short event.data.user}} for {{fmt_amount event.data.debt 6 \"USDC\"}}\n{{#if vars.x}}{{vars.y}}{{/if}}{{#each event.data.sources}}{{this.feed}}{{/each}} {{frob 1}}",
            "t",
        )
        .unwrap();
        let mut names: Vec<(String, usize, usize)> = c
            .names()
            .into_iter()
            .map(|n| (n.path.join("."), n.line, n.column))
            .collect();
        names.sort();
        let mut want = [
            ("event.data.user".to_owned(), 1, 11),
            ("event.data.debt".to_owned(), 1, 41),
            ("vars.x".to_owned(), 2, 1),
            ("vars.y".to_owned(), 1, 1),
            ("event.data.sources".to_owned(), 2, 33),
        ];
        want.sort();
        // Names inside `#each` (`this.feed`) are the item's, not the run's.
        assert_eq!(
            names.iter().map(|n| n.0.as_str()).collect::<Vec<_>>(),
            want.iter().map(|n| n.0.as_str()).collect::<Vec<_>>()
        );
        let user = names.iter().find(|n| n.0 == "event.data.user").unwrap();
        assert_eq!((user.1, user.2), (1, 11));
        let helpers: Vec<String> = c
            .unknown_helpers()
            .into_iter()
            .map(|n| n.path.join("."))
            .collect();
        assert_eq!(helpers, vec!["frob".to_owned()]);
    }

    #[test]
    fn rendering_is_strict_and_the_helpers_work() {
        let mut r = registry(Links::default());
        let src = "{{checksum event.user}} {{short event.user}} {{fmt_amount event.debt 6 \"USDC\"}} {{json event.list}}";
        let c = compile(src, "t").unwrap();
        r.register_template("t", c.template.clone().unwrap());
        let ctx = json!({"event": {"user": "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", "debt": "1234500000", "list": [1, "a"]}});
        assert_eq!(
            render(&r, &c.text, &ctx).unwrap(),
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed 0x5aae…beaed 1,234.5 USDC [1,\"a\"]"
                .replace(
                    "0x5aae…beaed",
                    &shorten("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
                )
        );
        let err = render(&r, &c.text, &json!({"event": {}})).unwrap_err();
        assert!(err.contains("cannot be rendered"), "{err}");
        let bad = compile("{{#if x}}", "b").err().unwrap();
        assert_eq!(bad.line, 1);
    }
}
