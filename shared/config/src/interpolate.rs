//! `${VAR}` interpolation of one string.

use crate::env::Env;

/// The result of interpolating a string that contained at least one `$`.
pub(crate) struct Interpolated {
    /// The text with every reference replaced.
    pub value: String,
    /// Names of the variables whose values from the environment were used.
    pub vars: Vec<String>,
    /// Those values (for redaction: they must not show up in messages).
    pub values: Vec<String>,
    /// Whether any `${…}` reference was replaced (by a value or by its default).
    pub substituted: bool,
}

/// Why a string could not be interpolated. `offset` is the character offset of the `$`
/// that starts the bad reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InterpolationError {
    Unset { var: String, offset: usize },
    Malformed { message: String, offset: usize },
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces `${VAR}` with the variable's value, `${VAR:-default}` with the value or
/// (when unset or empty) `default`, and `$$` with `$`. Any other `$` stays as it is.
/// Returns `None` when `text` has no `$` at all.
pub(crate) fn interpolate(
    text: &str,
    env: &dyn Env,
) -> Result<Option<Interpolated>, InterpolationError> {
    if !text.contains('$') {
        return Ok(None);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = Interpolated {
        value: String::with_capacity(text.len()),
        vars: Vec::new(),
        values: Vec::new(),
        substituted: false,
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.value.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.value.push('$');
                i += 2;
            }
            Some('{') => {
                let start = i;
                let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
                    return Err(InterpolationError::Malformed {
                        message: "unterminated `${`: write `${NAME}`, or `$$` for a literal `$`"
                            .to_owned(),
                        offset: start,
                    });
                };
                let body: String = chars[i + 2..i + 2 + close].iter().collect();
                i += 2 + close + 1;
                let (name, default) = match body.split_once(":-") {
                    Some((name, default)) => (name, Some(default)),
                    None => (body.as_str(), None),
                };
                if !is_name(name) {
                    return Err(InterpolationError::Malformed {
                        message: "`${…}` must hold a variable name (letters, digits and `_`, \
                                  not starting with a digit), optionally followed by \
                                  `:-default`"
                            .to_owned(),
                        offset: start,
                    });
                }
                out.substituted = true;
                match (env.var(name), default) {
                    (Some(value), Some(default)) if value.is_empty() => {
                        out.value.push_str(default);
                    }
                    (Some(value), _) => {
                        out.value.push_str(&value);
                        out.vars.push(name.to_owned());
                        out.values.push(value);
                    }
                    (None, Some(default)) => out.value.push_str(default),
                    (None, None) => {
                        return Err(InterpolationError::Unset {
                            var: name.to_owned(),
                            offset: start,
                        })
                    }
                }
            }
            _ => {
                out.value.push('$');
                i += 1;
            }
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnv;

    fn run(text: &str) -> Result<Option<String>, InterpolationError> {
        let env = MapEnv::new()
            .with("HOST", "db")
            .with("EMPTY", "")
            .with("PASSWORD", "hunter2");
        interpolate(text, &env).map(|o| o.map(|i| i.value))
    }

    #[test]
    fn plain_text_is_untouched() {
        assert_eq!(run("no dollars here"), Ok(None));
    }

    #[test]
    fn references_defaults_and_escapes() {
        assert_eq!(run("${HOST}"), Ok(Some("db".into())));
        assert_eq!(run("pg://${HOST}:5432"), Ok(Some("pg://db:5432".into())));
        assert_eq!(run("${NOPE:-x}"), Ok(Some("x".into())));
        assert_eq!(run("${EMPTY:-x}"), Ok(Some("x".into())));
        assert_eq!(run("${EMPTY}"), Ok(Some("".into())));
        assert_eq!(run("${NOPE:-}"), Ok(Some("".into())));
        assert_eq!(run("${HOST:-x}"), Ok(Some("db".into())));
        assert_eq!(run("$${HOST}"), Ok(Some("${HOST}".into())));
        assert_eq!(run("a$$b"), Ok(Some("a$b".into())));
        assert_eq!(run("cost: $5"), Ok(Some("cost: $5".into())));
        assert_eq!(run("$"), Ok(Some("$".into())));
    }

    #[test]
    fn records_used_values() {
        let env = MapEnv::new().with("PASSWORD", "hunter2");
        let i = interpolate("u:${PASSWORD}@${NOPE:-h}", &env)
            .unwrap()
            .unwrap();
        assert_eq!(i.value, "u:hunter2@h");
        assert_eq!(i.vars, ["PASSWORD"]);
        assert_eq!(i.values, ["hunter2"]);
        assert!(i.substituted);
        let i = interpolate("a$$b", &env).unwrap().unwrap();
        assert!(!i.substituted);
    }

    #[test]
    fn errors_point_at_the_reference() {
        assert_eq!(
            run("ab${MISSING}"),
            Err(InterpolationError::Unset {
                var: "MISSING".into(),
                offset: 2
            })
        );
        assert!(matches!(
            run("x${HOST"),
            Err(InterpolationError::Malformed { offset: 1, .. })
        ));
        assert!(matches!(
            run("${}"),
            Err(InterpolationError::Malformed { offset: 0, .. })
        ));
        assert!(matches!(
            run("${1A}"),
            Err(InterpolationError::Malformed { .. })
        ));
        assert!(matches!(
            run("${A-b}"),
            Err(InterpolationError::Malformed { .. })
        ));
    }
}
