//! The sections of the configuration file, one module each.
//!
//! A section is a struct deriving `Deserialize`, `Serialize` and `JsonSchema`, with
//! `#[serde(default, deny_unknown_fields)]`, a doc comment on every field, a `Default`
//! that works out of the box, and a `validate(&self, path, &mut Validator)` for the
//! checks serde cannot express.

pub mod api;
pub mod chains;
pub mod database;
pub mod event_log;
pub mod http;
pub mod log;
pub mod notify;
pub mod playbooks;
pub mod risk;
pub mod safes;

/// `parent.field`, or `field` at the top level.
pub(crate) fn join(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

/// Whether `s` is a non-empty run of `[A-Za-z0-9_-]`: safe as one NATS subject token, a
/// stream or consumer name, and a file name.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The pattern [`is_token`] checks, for the JSON Schema.
pub(crate) const TOKEN_PATTERN: &str = "^[A-Za-z0-9_-]+$";
