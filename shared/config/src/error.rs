//! [`ConfigError`]: one problem, with where it is and which field it concerns.

use std::fmt;

/// What went wrong, for callers (and tests) that need more than the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not YAML that this loader accepts (syntax, duplicate key, anchor, tag,
    /// a top level that is not a mapping).
    Syntax,
    /// A `${VAR}` reference is malformed or names a variable that is not set.
    Interpolation,
    /// A key that the section does not have.
    UnknownField,
    /// A value of the wrong shape: a list where a number belongs, a word for a boolean…
    WrongType,
    /// A value of the right shape that is not acceptable: a bad duration, URL, name, a
    /// number out of range.
    InvalidValue,
    /// A field that must be given is absent.
    MissingField,
    /// Fields that are each fine but do not fit together (checked after parsing).
    Validation,
}

/// A position in a file: 1-based line and column (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The file name as given to the loader (usually the path on the command line).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Where the offending value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A position in a configuration file.
    At(Location),
    /// A file, when no position applies (it could not be read, or the problem is a value
    /// that was not written in it, such as a default).
    File(String),
    /// A value passed by the program rather than read from a file: a command-line flag or
    /// an environment override, named as the caller named it (e.g. `--nats-url`).
    Override(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::At(location) => location.fmt(f),
            Origin::File(file) => f.write_str(file),
            Origin::Override(name) => f.write_str(name),
        }
    }
}

/// A configuration problem.
///
/// Displays as `origin: path: message`, e.g.
/// `steward.yaml:12:7: event_log.nats.replicas: must be between 1 and 5 (got 0)`; the
/// path is left out when the problem concerns the whole document.
///
/// The message never contains the value of a [`Secret`](crate::Secret), nor a value that
/// was interpolated from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ErrorKind,
    origin: Origin,
    path: String,
    message: String,
}

impl ConfigError {
    /// A new error. `path` is the dotted field path (`event_log.nats.url`,
    /// `event_log.consumers.backoff[2]`), empty for the whole document.
    pub fn new(
        kind: ErrorKind,
        origin: Origin,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            origin,
            path: path.into(),
            message: message.into(),
        }
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Where the offending value came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The file position, when there is one.
    pub fn location(&self) -> Option<&Location> {
        match &self.origin {
            Origin::At(location) => Some(location),
            _ => None,
        }
    }

    /// The dotted field path; empty for the whole document.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The description, without origin and path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}
