//! [`Secret`]: a string that never prints, and [`redact_url`].

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What every redacted value prints as.
pub const REDACTED: &str = "[redacted]";

/// What a URL's password (or a sensitive query parameter) is replaced with by
/// [`redact_url`].
pub const MASK: &str = "***";

/// A secret string: a password, a token, a URL with credentials in it.
///
/// `Debug`, `Display` and `Serialize` all print `[redacted]`; [`Secret::expose`] is the
/// only way to the value, so every read of it is easy to find. The memory is zeroed when
/// the secret is dropped (it wraps [`secrecy::SecretString`]).
///
/// In YAML and in the JSON Schema a secret is a plain string (usually `${SOME_VAR}`, so
/// the value stays out of the file).
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The value. Keep it out of logs, errors and `Debug` output.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// The value read as a URL with its secrets masked, for display: see [`redact_url`].
    pub fn redacted_url(&self) -> String {
        redact_url(self.expose())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<SecretString> for Secret {
    fn from(value: SecretString) -> Self {
        Self(value)
    }
}

/// Compares the values (not in constant time: this is for configuration, not for
/// checking credentials).
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

impl JsonSchema for Secret {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "writeOnly": true,
        })
    }
}

/// `url` with its secrets masked, for display.
///
/// Keeps scheme, user name, host, port, path (the database name) and harmless query
/// parameters; replaces the password and the values of query parameters whose names
/// suggest a secret (`password`, `token`, `secret`, `key`…) with `***`:
/// `postgres://steward:hunter2@db:5432/steward` becomes
/// `postgres://steward:***@db:5432/steward`. A value that does not parse as a URL, or
/// one with an opaque body (`mailto:`-like), may hide anything and prints as
/// `[redacted]`.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return REDACTED.to_owned();
    };
    if parsed.cannot_be_a_base() {
        // `sqlite:steward.db` and the like: only a path, but nothing tells us so.
        return match parsed.scheme() {
            "sqlite" if parsed.query().is_none() => url.to_owned(),
            _ => REDACTED.to_owned(),
        };
    }
    if parsed.password().is_some() && parsed.set_password(Some(MASK)).is_err() {
        return REDACTED.to_owned();
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_sensitive_name(&k) {
                    MASK.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(Some(MASK));
    }
    parsed.to_string()
}

fn is_sensitive_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "pass", "pwd", "token", "secret", "key", "auth", "cred", "sig",
    ]
    .iter()
    .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redacts_password_keeps_the_rest() {
        assert_eq!(
            redact_url("postgres://steward:hunter2@db:5432/steward"),
            "postgres://steward:***@db:5432/steward"
        );
        assert_eq!(
            redact_url("postgres://db:5432/steward?sslmode=require&password=hunter2"),
            "postgres://db:5432/steward?sslmode=require&password=***"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact_url("nats://alice:s3cr%40t@nats.internal:4222"),
            "nats://alice:***@nats.internal:4222"
        );
        assert_eq!(
            redact_url("sqlite:data/steward.db"),
            "sqlite:data/steward.db"
        );
        assert_eq!(redact_url("not a url hunter2"), "[redacted]");
        assert_eq!(redact_url("mailto:hunter2"), "[redacted]");
    }
}
