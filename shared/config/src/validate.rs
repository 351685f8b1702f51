//! [`Validator`]: checks run after typing, reported at the field's position.

use std::fmt::Display;

use crate::document::Document;
use crate::error::{ConfigError, ErrorKind, Origin};

/// Collects problems found after deserialising, placing each at the field it concerns.
///
/// With a [`Document`], errors name file:line:column (or the closest enclosing field
/// that the file has, for values that took their default) and never echo values
/// interpolated from the environment; without one (values passed in code), they name
/// the given [`Origin`].
#[derive(Debug)]
pub struct Validator<'a> {
    doc: Option<&'a Document>,
    origin: Origin,
    errors: Vec<ConfigError>,
}

impl<'a> Validator<'a> {
    /// Checks values read from `doc`.
    pub fn for_document(doc: &'a Document) -> Self {
        Self {
            doc: Some(doc),
            origin: Origin::File(doc.file_name().to_owned()),
            errors: Vec::new(),
        }
    }

    /// Checks values that came from `origin` (an override, the defaults).
    pub fn for_origin(origin: Origin) -> Self {
        Self {
            doc: None,
            origin,
            errors: Vec::new(),
        }
    }

    /// Reports that the value at `path` is not acceptable.
    pub fn invalid(&mut self, path: &str, message: impl Into<String>) {
        self.push(ErrorKind::InvalidValue, path, message.into());
    }

    /// Reports that the value at `path` is not acceptable, showing the value unless it
    /// came from the environment: `message (got value)`. Never pass a secret as `got`.
    pub fn invalid_got(&mut self, path: &str, message: impl Display, got: impl Display) {
        let message = match self.doc.map(|d| d.interpolated_vars(path)) {
            Some(vars) if !vars.is_empty() => {
                let vars: Vec<String> = vars.iter().map(|v| format!("`${{{v}}}`")).collect();
                format!("{message} (the value comes from {})", vars.join(", "))
            }
            _ => format!("{message} (got {got})"),
        };
        self.push(ErrorKind::InvalidValue, path, message);
    }

    /// Reports fields that are each valid but do not fit together, at `path`.
    pub fn conflict(&mut self, path: &str, message: impl Into<String>) {
        self.push(ErrorKind::Validation, path, message.into());
    }

    /// Whether nothing has been reported.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// Everything reported, in the order it was found.
    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }

    /// The first problem reported, if any.
    pub fn finish(self) -> Result<(), ConfigError> {
        match self.errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn push(&mut self, kind: ErrorKind, path: &str, message: String) {
        let error = match self.doc {
            Some(doc) => doc.error(kind, path, message),
            None => ConfigError::new(kind, self.origin.clone(), path, message),
        };
        self.errors.push(error);
    }
}
