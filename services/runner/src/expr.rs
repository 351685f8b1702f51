//! CEL conditions: compiled once with positions for errors, checked for the names they use,
//! evaluated over a run's JSON context.
//!
//! A condition sees `event` (the triggering or awaited envelope, as on the wire: `type`, `key`,
//! `chain_id`, `time`, `correlation_id`, `data`…), `inputs`, `vars`, `steps` (completed steps'
//! outputs by id), `run` (`key`, `playbook`, `version`, `trigger`, `correlation_id`,
//! `started_at`, `dedup_key`) and `now` (a timestamp: the runner's clock, or the event's time
//! in a dry run). JSON numbers become CEL `int` when they fit (so `event.data.block_number + 1`
//! works), else `uint` or `double`.
//!
//! Token amounts are decimal strings (they exceed 64 bits); these functions do exact integer
//! arithmetic on them (256 bits) and return decimal strings: `dec_add(a, b)`, `dec_sub(a, b)`
//! (an error below zero), `dec_mul(a, b)`, `dec_div(a, b)` (rounded down), `dec_mul_div(a, b, c)`
//! (`a × b ÷ c` without overflow in between), `dec_pow10(n)`, and `dec_cmp(a, b)` (-1, 0, 1).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use alloy::primitives::U256;
use cel::common::ast::{EntryExpr, Expr};
use cel::objects::{Key, Map};
use cel::{Context, Env, IdedExpr, Program, Value};
use serde_json::Value as Json;

/// Names a condition may start from.
pub const ROOTS: [&str; 6] = ["event", "inputs", "vars", "steps", "run", "now"];

/// Functions this module adds to CEL.
pub const FUNCTIONS: [&str; 7] = [
    "dec_add",
    "dec_sub",
    "dec_mul",
    "dec_div",
    "dec_mul_div",
    "dec_pow10",
    "dec_cmp",
];

/// A compiled CEL expression and its source.
pub struct Expression {
    source: String,
    program: Program,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expression({:?})", self.source)
    }
}

/// A problem in an expression, at a 1-based line and column inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A name an expression uses, with where it is: `event.data.user` → (`["event", "data",
/// "user"]`, line, column of its first character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameUse {
    pub path: Vec<String>,
    pub line: usize,
    pub column: usize,
}

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

/// The root context: the standard library and the decimal functions. Built once; each
/// evaluation adds its variables in a child scope.
fn root() -> &'static Context<'static, 'static> {
    static ROOT: OnceLock<Context<'static, 'static>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let mut c = Context::with_env(env().clone());
        // The names are ours and not declared by the standard library: adding cannot fail.
        let _ = c.add_function(
            "dec_add",
            |a: Arc<String>, b: Arc<String>| -> Result<Value, cel::ExecutionError> {
                dec2(&a, &b, |x, y| x.checked_add(y), "dec_add")
            },
        );
        let _ = c.add_function(
            "dec_sub",
            |a: Arc<String>, b: Arc<String>| -> Result<Value, cel::ExecutionError> {
                dec2(&a, &b, |x, y| x.checked_sub(y), "dec_sub")
            },
        );
        let _ = c.add_function(
            "dec_mul",
            |a: Arc<String>, b: Arc<String>| -> Result<Value, cel::ExecutionError> {
                dec2(&a, &b, |x, y| x.checked_mul(y), "dec_mul")
            },
        );
        let _ = c.add_function(
            "dec_div",
            |a: Arc<String>, b: Arc<String>| -> Result<Value, cel::ExecutionError> {
                dec2(&a, &b, |x, y| x.checked_div(y), "dec_div")
            },
        );
        let _ = c.add_function(
            "dec_mul_div",
            |a: Arc<String>,
             b: Arc<String>,
             d: Arc<String>|
             -> Result<Value, cel::ExecutionError> {
                let (a, b, d) = (
                    parse_dec(&a, "dec_mul_div")?,
                    parse_dec(&b, "dec_mul_div")?,
                    parse_dec(&d, "dec_mul_div")?,
                );
                if d.is_zero() {
                    return Err(cel::ExecutionError::function_error(
                        "dec_mul_div",
                        "division by zero",
                    ));
                }
                // a × b may need 512 bits: divide in two steps when it overflows.
                match a.checked_mul(b) {
                    Some(p) => Ok(Value::String(Arc::new((p / d).to_string()))),
                    None => {
                        let q = a / d;
                        let r = a % d;
                        let whole = q.checked_mul(b);
                        let part = r.checked_mul(b).map(|x| x / d);
                        match (whole, part) {
                            (Some(w), Some(p)) => w
                                .checked_add(p)
                                .map(|v| Value::String(Arc::new(v.to_string())))
                                .ok_or_else(|| {
                                    cel::ExecutionError::function_error(
                                        "dec_mul_div",
                                        "result exceeds 256 bits",
                                    )
                                }),
                            _ => Err(cel::ExecutionError::function_error(
                                "dec_mul_div",
                                "result exceeds 256 bits",
                            )),
                        }
                    }
                }
            },
        );
        let _ = c.add_function(
            "dec_pow10",
            |n: i64| -> Result<Value, cel::ExecutionError> {
                if !(0..=77).contains(&n) {
                    return Err(cel::ExecutionError::function_error(
                        "dec_pow10",
                        "the exponent must be between 0 and 77",
                    ));
                }
                Ok(Value::String(Arc::new(
                    U256::from(10u8).pow(U256::from(n as u64)).to_string(),
                )))
            },
        );
        let _ = c.add_function(
            "dec_cmp",
            |a: Arc<String>, b: Arc<String>| -> Result<Value, cel::ExecutionError> {
                let (a, b) = (parse_dec(&a, "dec_cmp")?, parse_dec(&b, "dec_cmp")?);
                Ok(Value::Int(match a.cmp(&b) {
                    std::cmp::Ordering::Less => -1,
                    std::cmp::Ordering::Equal => 0,
                    std::cmp::Ordering::Greater => 1,
                }))
            },
        );
        c
    })
}

fn parse_dec(s: &str, f: &str) -> Result<U256, cel::ExecutionError> {
    let t = s.trim();
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit()) {
        return Err(cel::ExecutionError::function_error(
            f,
            format!("`{s}` is not a non-negative whole number written in decimal"),
        ));
    }
    U256::from_str_radix(t, 10)
        .map_err(|_| cel::ExecutionError::function_error(f, format!("`{s}` exceeds 256 bits")))
}

fn dec2(
    a: &str,
    b: &str,
    op: impl Fn(U256, U256) -> Option<U256>,
    f: &str,
) -> Result<Value, cel::ExecutionError> {
    let (x, y) = (parse_dec(a, f)?, parse_dec(b, f)?);
    op(x, y)
        .map(|v| Value::String(Arc::new(v.to_string())))
        .ok_or_else(|| {
            cel::ExecutionError::function_error(
                f,
                "the result is below zero, above 256 bits, or a division by zero",
            )
        })
}

impl Expression {
    /// Compiles `source`; a syntax error names its line and column inside the expression.
    pub fn compile(source: &str) -> Result<Self, ExprError> {
        match env().compile(source) {
            Ok(program) => Ok(Self {
                source: source.to_owned(),
                program,
            }),
            Err(errors) => {
                let e = errors.errors.first();
                let (line, column) = e
                    .map(|e| (e.pos.0.max(1) as usize, e.pos.1.max(1) as usize))
                    .unwrap_or((1, 1));
                let message = e
                    .map(|e| tidy_parse_message(&e.msg))
                    .unwrap_or_else(|| "not a CEL expression".to_owned());
                Err(ExprError {
                    line,
                    column,
                    message,
                })
            }
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every variable path the expression reads (through `.field` selections and constant
    /// `["key"]` indexes), with its position. Names bound by macros (`x` in
    /// `list.exists(x, …)`) are left out.
    pub fn names(&self) -> Vec<NameUse> {
        let mut out = Vec::new();
        let mut bound = Vec::new();
        walk(
            self.program.expression(),
            &self.source,
            self.program.source_info(),
            &mut bound,
            &mut out,
        );
        out
    }

    /// Functions called that neither CEL's standard library nor Steward declares.
    pub fn unknown_functions(&self) -> Vec<String> {
        let refs = self.program.references();
        refs.functions()
            .into_iter()
            .filter(|f| !FUNCTIONS.contains(f) && !is_builtin_function(f) && !is_declared(f))
            .map(str::to_owned)
            .collect()
    }

    /// Evaluates against `vars` (root name → JSON), `now` as a timestamp.
    pub fn eval(&self, vars: &ExprVars<'_>) -> Result<Json, String> {
        let mut ctx = root().new_inner_scope();
        for (name, value) in vars.values {
            ctx.add_variable_from_value(*name, json_to_cel(value));
        }
        ctx.add_variable_from_value("now", Value::Timestamp(vars.now.fixed_offset()));
        let v = self
            .program
            .execute(&ctx)
            .map_err(|e| format!("`{}` failed: {e}", self.source))?;
        cel_to_json(&v).map_err(|e| format!("`{}` gave a value that is not JSON: {e}", self.source))
    }

    /// Evaluates a condition: it must give a boolean.
    pub fn test(&self, vars: &ExprVars<'_>) -> Result<bool, String> {
        match self.eval(vars)? {
            Json::Bool(b) => Ok(b),
            other => Err(format!(
                "`{}` must give true or false, it gave {other}",
                self.source
            )),
        }
    }
}

impl Expression {
    /// [`Expression::eval`] over a run's context object (`event`, `inputs`, `vars`, `steps`,
    /// `run`).
    pub fn eval_ctx(&self, ctx: &Json, now: chrono::DateTime<chrono::Utc>) -> Result<Json, String> {
        let pairs: Vec<(&str, &Json)> = ["event", "inputs", "vars", "steps", "run"]
            .into_iter()
            .filter_map(|k| ctx.get(k).map(|v| (k, v)))
            .collect();
        self.eval(&ExprVars {
            values: &pairs,
            now,
        })
    }

    /// [`Expression::test`] over a run's context object.
    pub fn test_ctx(&self, ctx: &Json, now: chrono::DateTime<chrono::Utc>) -> Result<bool, String> {
        match self.eval_ctx(ctx, now)? {
            Json::Bool(b) => Ok(b),
            other => Err(format!(
                "`{}` must give true or false, it gave {other}",
                self.source
            )),
        }
    }
}

/// What an expression is evaluated against.
pub struct ExprVars<'a> {
    pub values: &'a [(&'a str, &'a Json)],
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Whether CEL knows `name` as a global or a member function: called with no arguments, a
/// declared function fails to match an overload, an undeclared one is not found at all.
fn is_declared(name: &str) -> bool {
    let undeclared = |src: String| match env().compile(&src) {
        Ok(p) => {
            matches!(p.execute(root()), Err(cel::ExecutionError::UndeclaredReference(n)) if n.as_str() == name)
        }
        Err(_) => true,
    };
    !(undeclared(format!("{name}()")) && undeclared(format!("null.{name}()")))
}

/// Macro and operator names the parser produces, which `references()` reports as functions.
fn is_builtin_function(f: &str) -> bool {
    f.starts_with('_') || f.starts_with('@') || f == "has" || f.contains('.')
}

fn tidy_parse_message(msg: &str) -> String {
    let m = msg.strip_prefix("Syntax error: ").unwrap_or(msg);
    if let Some(rest) = m.strip_prefix("mismatched input '<EOF>' expecting ") {
        return format!("the expression ends too early (expected one of {rest})");
    }
    if let Some(rest) = m.strip_prefix("token recognition error at: ") {
        return format!("unexpected characters {rest}");
    }
    m.to_owned()
}

/// Line and column (1-based, in characters) of byte `offset` in `source`.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn position(source: &str, info: &cel::common::ast::SourceInfo, e: &IdedExpr) -> (usize, usize) {
    info.offset_for(e.id)
        .map(|(start, _)| line_col(source, start as usize))
        .unwrap_or((1, 1))
}

/// A selection chain down to an identifier: `event.data.user` → (["event","data","user"],
/// the identifier's node).
fn chain<'a>(e: &'a IdedExpr, out: &mut Vec<String>) -> Option<&'a IdedExpr> {
    match &e.expr {
        Expr::Ident(name) => {
            out.push(name.clone());
            Some(e)
        }
        Expr::Select(s) => {
            let root = chain(&s.operand, out)?;
            out.push(s.field.clone());
            Some(root)
        }
        Expr::Call(c) if c.func_name == "_[_]" && c.args.len() == 2 => {
            let root = chain(&c.args[0], out)?;
            match &c.args[1].expr {
                Expr::Literal(cel::common::ast::LiteralValue::String(s)) => {
                    out.push(s.to_string());
                    Some(root)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn walk(
    e: &IdedExpr,
    source: &str,
    info: &cel::common::ast::SourceInfo,
    bound: &mut Vec<String>,
    out: &mut Vec<NameUse>,
) {
    let mut path = Vec::new();
    if let Some(root) = chain(e, &mut path) {
        if !bound.contains(&path[0]) {
            let (line, column) = position(source, info, root);
            out.push(NameUse { path, line, column });
        }
        // A chain with a dynamic index inside still reads its operands.
        if let Expr::Call(c) = &e.expr {
            for a in &c.args[1..] {
                walk(a, source, info, bound, out);
            }
        }
        return;
    }
    match &e.expr {
        Expr::Select(s) => walk(&s.operand, source, info, bound, out),
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                walk(t, source, info, bound, out);
            }
            for a in &c.args {
                walk(a, source, info, bound, out);
            }
        }
        Expr::List(l) => {
            for x in &l.elements {
                walk(x, source, info, bound, out);
            }
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    walk(&me.key, source, info, bound, out);
                    walk(&me.value, source, info, bound, out);
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    walk(&f.value, source, info, bound, out);
                }
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, source, info, bound, out);
            walk(&c.accu_init, source, info, bound, out);
            let n = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            bound.push(c.accu_var.clone());
            walk(&c.loop_cond, source, info, bound, out);
            walk(&c.loop_step, source, info, bound, out);
            walk(&c.result, source, info, bound, out);
            bound.truncate(n);
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// JSON to CEL: integers as `int` when they fit, objects as maps with string keys.
pub fn json_to_cel(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(a) => Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        Json::Object(o) => {
            let map: HashMap<Key, Value> = o
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// CEL to JSON (timestamps as RFC 3339, durations as seconds).
pub fn cel_to_json(v: &Value) -> Result<Json, String> {
    Ok(match v {
        Value::Timestamp(t) => Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        Value::Duration(d) => Json::from(d.num_milliseconds() as f64 / 1000.0),
        Value::List(l) => Json::Array(l.iter().map(cel_to_json).collect::<Result<_, _>>()?),
        Value::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    Key::String(s) => s.to_string(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                out.insert(key, cel_to_json(v)?);
            }
            Json::Object(out)
        }
        other => other.json().map_err(|e| e.to_string())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(src: &str, event: &Json) -> Result<Json, String> {
        let e = Expression::compile(src).map_err(|e| e.message)?;
        e.eval(&ExprVars {
            values: &[("event", event)],
            now: chrono::Utc::now(),
        })
    }

    #[test]
    fn syntax_errors_have_positions_inside_the_expression() {
        let e = Expression::compile("event.data.x > ").unwrap_err();
        assert_eq!((e.line, e.column), (1, 16));
        assert!(e.message.contains("ends too early"), "{}", e.message);
        let e = Expression::compile("a &&\n  foo(").unwrap_err();
        assert_eq!(e.line, 2);
        let e = Expression::compile("a &&& b").unwrap_err();
        assert_eq!((e.line, e.column), (1, 5));
    }

    #[test]
    fn names_are_found_with_positions_and_macro_variables_are_not() {
        let e = Expression::compile(
            "event.data.sources.exists(s, s.feed == vars.feed) && steps['ask'].approved && x",
        )
        .unwrap();
        let names: Vec<(String, usize)> = e
            .names()
            .into_iter()
            .map(|n| (n.path.join("."), n.column))
            .collect();
        assert_eq!(
            names,
            vec![
                ("event.data.sources".to_owned(), 1),
                ("vars.feed".to_owned(), 40),
                ("steps.ask.approved".to_owned(), 54),
                ("x".to_owned(), 79)
            ]
        );
    }

    #[test]
    fn numbers_are_ints_and_decimals_are_exact() {
        let ev = json!({"data": {"block": 10, "debt": "900000000000", "hf": "950000000000000000"}});
        assert_eq!(eval("event.data.block * 2 + 1", &ev).unwrap(), json!(21));
        assert_eq!(
            eval(
                "dec_mul_div(event.data.debt, dec_pow10(18), '100000000')",
                &ev
            )
            .unwrap(),
            json!("9000000000000000000000")
        );
        assert_eq!(
            eval("dec_cmp(event.data.hf, '1000000000000000000')", &ev).unwrap(),
            json!(-1)
        );
        // 2^255 × 4 ÷ 8 needs more than 256 bits in between.
        let big: U256 = U256::from(1u8) << 255;
        let v = eval(&format!("dec_mul_div('{big}', '4', '8')"), &ev).unwrap();
        let half: U256 = big / U256::from(2u8);
        assert_eq!(v, json!(half.to_string()));
        assert!(eval("dec_sub('1', '2')", &ev)
            .unwrap_err()
            .contains("below zero"));
        assert!(eval("dec_add('x', '2')", &ev)
            .unwrap_err()
            .contains("not a non-negative"));
    }

    #[test]
    fn conditions_must_be_boolean() {
        let e = Expression::compile("1 + 1").unwrap();
        let err = e
            .test(&ExprVars {
                values: &[],
                now: chrono::Utc::now(),
            })
            .unwrap_err();
        assert!(err.contains("must give true or false"), "{err}");
    }

    #[test]
    fn unknown_functions_are_reported() {
        let e = Expression::compile("size(event) > 0 && frobnicate(1) && dec_cmp('1','2') == 0 && event.type.startsWith('x')").unwrap();
        assert_eq!(e.unknown_functions(), vec!["frobnicate".to_owned()]);
    }
}
