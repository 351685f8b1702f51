//! A parsed YAML file: positions kept, `${VAR}` interpolated, ready to deserialise into
//! any `serde` type with errors that name file:line:column and the field path.

use std::fmt;
use std::num::IntErrorKind;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Marker, Node, Span};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::env::Env;
use crate::error::{ConfigError, ErrorKind, Location, Origin};
use crate::interpolate::{interpolate, InterpolationError};
use crate::secret::Secret;

/// A position in a document: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Position {
    /// This position in `file`.
    pub fn in_file(self, file: impl Into<String>) -> Location {
        Location {
            file: file.into(),
            line: self.line,
            column: self.column,
        }
    }
}

impl From<&Marker> for Position {
    fn from(m: &Marker) -> Self {
        Self {
            line: m.line(),
            column: m.column(),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A value together with the position it was read from.
///
/// Use it for fields whose problems are only found after deserialising (a cron
/// expression, a reference to another section…), so the error can still name
/// file:line:column: see [`Document::error_at`]. It is transparent otherwise: it
/// dereferences to `T`, serialises as `T`, and its JSON Schema is `T`'s.
///
/// The position is that of the value for scalars; for mappings and lists it is where
/// the YAML parser started them, which is less precise. It is only recorded when
/// deserialising through [`Document::deserialize`] (or [`Config`](crate::Config)'s
/// loaders): other deserialisers reject `Located` fields.
#[derive(Clone)]
pub struct Located<T> {
    inner: marked_yaml::Spanned<T>,
}

impl<T> Located<T> {
    /// A value with a position, e.g. for tests or for values built in code.
    pub fn new(value: T, position: Option<Position>) -> Self {
        let span = match position {
            Some(p) => Span::new_start(Marker::new(0, 0, p.line, p.column)),
            None => Span::new_blank(),
        };
        Self {
            inner: marked_yaml::Spanned::new(span, value),
        }
    }

    /// The value.
    pub fn get(&self) -> &T {
        &self.inner
    }

    /// Where the value was read from, when it was read from a document.
    pub fn position(&self) -> Option<Position> {
        self.inner.span().start().map(Position::from)
    }
}

impl<T> std::ops::Deref for Located<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: fmt::Debug> fmt::Debug for Located<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)?;
        if let Some(p) = self.position() {
            write!(f, " @{p}")?;
        }
        Ok(())
    }
}

/// Compares the values only, not the positions.
impl<T: PartialEq> PartialEq for Located<T> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl<T: Eq> Eq for Located<T> {}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        marked_yaml::Spanned::<T>::deserialize(deserializer).map(|inner| Self { inner })
    }
}

impl<T: Serialize> Serialize for Located<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(serializer)
    }
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// Values that came from the environment at one field, kept to keep them out of
/// messages.
struct Interpolation {
    path: String,
    vars: Vec<String>,
    values: Vec<Secret>,
}

/// A YAML document, parsed with positions and interpolated, before typing.
///
/// [`Config`](crate::Config) is loaded through it; other YAML files (playbooks) can be
/// too:
///
/// ```
/// use steward_config::{Document, ErrorKind, Located, MapEnv};
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Playbook {
///     schedule: Located<String>,
/// }
///
/// let env = MapEnv::new().with("SCHEDULE", "every full moon");
/// let doc = Document::parse("schedule: ${SCHEDULE}\n", "nightly.yaml", &env)?;
/// let playbook: Playbook = doc.deserialize()?;
/// // A check that serde could not do, reported at the value:
/// let err = doc.error_at(ErrorKind::InvalidValue, "schedule", playbook.schedule.position(),
///     "not a cron expression");
/// assert_eq!(err.to_string(), "nightly.yaml:1:11: schedule: not a cron expression");
/// # Ok::<(), steward_config::ConfigError>(())
/// ```
///
/// Rules applied before typing, so every loader built on it behaves the same:
/// - `${VAR}`, `${VAR:-default}` and `$$` are replaced in every string value (not in
///   keys); see the [crate docs](crate#interpolation).
/// - A mapping entry whose value is `null`, `~` or empty (unquoted), or an unquoted value
///   that interpolates to the empty string, is dropped: the field takes its default.
/// - Quoted values are strings: `"3"` is not a number, `"true"` not a boolean.
/// - Duplicate keys, anchors/aliases and tags are errors.
pub struct Document {
    file: String,
    root: Node,
    interpolations: Vec<Interpolation>,
    /// Just past the text's last character: no position given out lies beyond it.
    end: Position,
}

impl fmt::Debug for Document {
    /// Only the file name and which fields were interpolated: values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let interpolated: Vec<&str> = self
            .interpolations
            .iter()
            .map(|i| i.path.as_str())
            .collect();
        f.debug_struct("Document")
            .field("file", &self.file)
            .field("interpolated", &interpolated)
            .finish_non_exhaustive()
    }
}

impl Document {
    /// Parses `text` (read from `file_name`, which only names it in messages) and
    /// interpolates `${VAR}` references from `env`.
    pub fn parse(
        text: &str,
        file_name: impl Into<String>,
        env: &dyn Env,
    ) -> Result<Self, ConfigError> {
        let file = file_name.into();
        let options = LoaderOptions::default()
            .error_on_duplicate_keys(true)
            .prevent_coercion(true);
        let mut root = match marked_yaml::parse_yaml_with_options(0, text, options) {
            Ok(root) => root,
            // `---` alone, or `~`: an empty document, like an empty file.
            Err(LoadError::TopLevelMustBeMapping(_)) if is_null_document(text) => {
                Node::Mapping(MarkedMappingNode::new_empty(Span::new_blank()))
            }
            Err(e) => return Err(load_error(&file, text, e)),
        };
        let mut walker = Walker {
            file: &file,
            lines: text.lines().collect(),
            env,
            interpolations: Vec::new(),
        };
        walker.node(&mut root, "")?;
        let interpolations = walker.interpolations;
        Ok(Self {
            file,
            root,
            interpolations,
            end: text_end(text),
        })
    }

    /// The file name given to [`Document::parse`].
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// Deserialises the document into `T`. Errors name file:line:column, the field path
    /// and what was expected; they never echo a value that came from the environment.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        marked_yaml::from_node(&self.root).map_err(|e| self.convert(e))
    }

    /// The position of the field at `path` (`event_log.nats.url`, `items[2].name`): of
    /// its value when that is a scalar, else of its key. `None` when the document does
    /// not have that field.
    pub fn position_of(&self, path: &str) -> Option<Position> {
        let segments = parse_path(path)?;
        let mut node = &self.root;
        let mut key_position = None;
        for segment in segments {
            match segment {
                Segment::Key(name) => {
                    let map = node.as_mapping()?;
                    let (key, value) = map.iter().find(|(k, _)| k.as_str() == name)?;
                    key_position = key.span().start().map(Position::from);
                    node = value;
                }
                Segment::Index(i) => {
                    node = node.as_sequence()?.get(i)?;
                    key_position = None;
                }
            }
        }
        let p = match node {
            Node::Scalar(s) => s.span().start().map(Position::from),
            Node::Mapping(m) if key_position.is_none() => m
                .keys()
                .next()
                .and_then(|k| k.span().start().map(Position::from)),
            _ => key_position.or_else(|| node.span().start().map(Position::from)),
        };
        p.map(|p| clamp(self.end, p))
    }

    /// The position of `path`, or of its closest ancestor that the document has (for
    /// problems with a value that took its default).
    pub fn nearest_position(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(p) = self.position_of(path) {
                return Some(p);
            }
            path = parent_path(path)?;
        }
    }

    /// An error about the field at `path`, placed at it (or at its closest ancestor in
    /// the document, or at the file). The message is stripped of values interpolated
    /// from the environment at that field.
    pub fn error(&self, kind: ErrorKind, path: &str, message: impl Into<String>) -> ConfigError {
        self.error_at(kind, path, self.nearest_position(path), message)
    }

    /// An error about the field at `path`, placed at `position` (e.g. a
    /// [`Located::position`]), or at the file when there is none.
    pub fn error_at(
        &self,
        kind: ErrorKind,
        path: &str,
        position: Option<Position>,
        message: impl Into<String>,
    ) -> ConfigError {
        let origin = match position {
            Some(p) => Origin::At(clamp(self.end, p).in_file(&self.file)),
            None => Origin::File(self.file.clone()),
        };
        ConfigError::new(kind, origin, path, self.sanitize(path, message.into()))
    }

    /// The `${VAR}` names whose values were used in the field at `path` (empty when it
    /// was written literally).
    pub fn interpolated_vars(&self, path: &str) -> Vec<&str> {
        self.interpolations
            .iter()
            .filter(|i| is_within(&i.path, path))
            .flat_map(|i| i.vars.iter().map(String::as_str))
            .collect()
    }

    fn interpolations_within<'a>(
        &'a self,
        path: &'a str,
    ) -> impl Iterator<Item = &'a Interpolation> + 'a {
        self.interpolations
            .iter()
            .filter(move |i| is_within(&i.path, path))
    }

    /// `message` unless it contains a value interpolated at or below `path`; then a
    /// generic message naming the variables instead.
    fn sanitize(&self, path: &str, message: String) -> String {
        let values: Vec<&str> = self
            .interpolations_within(path)
            .flat_map(|i| i.values.iter().map(Secret::expose))
            .filter(|v| !v.is_empty())
            .collect();
        let leaks = |text: &str| {
            values
                .iter()
                .any(|v| text.contains(v) || text.contains(&v.escape_debug().to_string()))
        };
        if !leaks(&message) {
            return message;
        }
        let vars = describe_vars(&self.interpolated_vars(path));
        let mut generic = format!("invalid value (it comes from {vars} and is not shown)");
        if let Some(i) = message.find(", expected ") {
            let expected = &message[i + 2..];
            if !leaks(expected) {
                generic.push_str(", ");
                generic.push_str(expected);
            }
        }
        generic
    }

    fn scalar_at(&self, path: &str) -> Option<&str> {
        let mut node = &self.root;
        for segment in parse_path(path)? {
            node = match segment {
                Segment::Key(name) => node.as_mapping()?.get_node(name)?,
                Segment::Index(i) => node.as_sequence()?.get(i)?,
            };
        }
        node.as_scalar().map(MarkedScalarNode::as_str)
    }

    fn convert(&self, e: marked_yaml::FromNodeError) -> ConfigError {
        use marked_yaml::Error;
        let path = e.path().unwrap_or_default().to_owned();
        let mark = e.start_mark().as_ref().map(Position::from);
        let (kind, message, position) = match &*e {
            Error::UnknownFieldError(field, expected, _) => (
                ErrorKind::UnknownField,
                unknown_field_message(field, expected),
                mark,
            ),
            Error::NotBoolean(_) => (
                ErrorKind::WrongType,
                "expected a boolean (`true` or `false`)".to_owned(),
                mark,
            ),
            Error::IntegerParseFailure(err, _) => match err.kind() {
                IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => (
                    ErrorKind::InvalidValue,
                    "number out of range for this field".to_owned(),
                    mark,
                ),
                _ if self.scalar_at(&path).is_some_and(looks_negative) => (
                    ErrorKind::InvalidValue,
                    "must not be negative".to_owned(),
                    mark,
                ),
                _ => (
                    ErrorKind::WrongType,
                    "expected a whole number".to_owned(),
                    mark,
                ),
            },
            Error::FloatParseFailure(..) => {
                (ErrorKind::WrongType, "expected a number".to_owned(), mark)
            }
            Error::Other(message, _) => {
                if let Some(field) = message.strip_prefix("missing field ") {
                    (
                        ErrorKind::MissingField,
                        format!("missing required field {field}"),
                        self.position_of(&path).or(mark),
                    )
                } else if message.starts_with("invalid type: ") {
                    (ErrorKind::WrongType, message.clone(), mark)
                } else {
                    (ErrorKind::InvalidValue, message.clone(), mark)
                }
            }
        };
        self.error_at(
            kind,
            &path,
            position.or_else(|| self.nearest_position(&path)),
            message,
        )
    }
}

fn looks_negative(text: &str) -> bool {
    text.trim()
        .strip_prefix('-')
        .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()))
}

fn unknown_field_message(field: &str, expected: &[&str]) -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut message = match expected {
        [] => format!("unknown field `{field}`: this section has no fields"),
        [only] => format!("unknown field `{field}`, expected `{only}`"),
        [a, b] => format!("unknown field `{field}`, expected `{a}` or `{b}`"),
        _ => format!(
            "unknown field `{field}`, expected one of {}",
            list(expected)
        ),
    };
    let closest = expected
        .iter()
        .map(|candidate| (edit_distance(field, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min();
    if let Some((_, candidate)) = closest {
        message.push_str(&format!(" (did you mean `{candidate}`?)"));
    }
    message
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn describe_vars(vars: &[&str]) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for v in vars {
        if !unique.contains(v) {
            unique.push(v);
        }
    }
    let names: Vec<String> = unique.iter().map(|v| format!("`${{{v}}}`")).collect();
    match names.len() {
        0 => "the environment".to_owned(),
        _ => names.join(", "),
    }
}

/// Whether `path` is `ancestor` or below it.
fn is_within(path: &str, ancestor: &str) -> bool {
    if ancestor.is_empty() {
        return true;
    }
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → `` → None.
fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn parse_path(path: &str) -> Option<Vec<Segment<'_>>> {
    let mut out = Vec::new();
    if path.is_empty() {
        return Some(out);
    }
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']')?;
            out.push(Segment::Index(after[..close].parse().ok()?));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Whether `text` holds nothing but comments, document markers and a null.
fn is_null_document(text: &str) -> bool {
    text.lines()
        .map(|line| {
            line.split_once('#')
                .map_or(line, |(before, _)| before)
                .trim()
        })
        .all(|line| {
            matches!(
                line,
                "" | "---" | "..." | "~" | "null" | "--- ~" | "--- null"
            )
        })
}

fn is_null(s: &MarkedScalarNode) -> bool {
    s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

fn load_error(file: &str, text: &str, e: LoadError) -> ConfigError {
    let end = text_end(text);
    let at = |m: &Marker| Origin::At(clamp(end, Position::from(m)).in_file(file));
    let (origin, message) = match &e {
        LoadError::TopLevelMustBeMapping(m) => (
            at(m),
            "the top level must be a mapping of `key: value` lines".to_owned(),
        ),
        LoadError::TopLevelMustBeSequence(m) => (at(m), "the top level must be a list".to_owned()),
        LoadError::UnexpectedAnchor(m) => (
            at(m),
            "YAML anchors and aliases (`&name`, `*name`) are not supported".to_owned(),
        ),
        LoadError::MappingKeyMustBeScalar(m) => {
            (at(m), "mapping keys must be plain strings".to_owned())
        }
        LoadError::UnexpectedTag(m) => (at(m), "YAML tags (`!tag`) are not supported".to_owned()),
        LoadError::ScanError(m, scan) => (at(m), scan.info().to_owned()),
        LoadError::DuplicateKey(dup) => {
            let first = dup
                .prev_key
                .span()
                .start()
                .map(|m| format!(" (first at line {}, column {})", m.line(), m.column()))
                .unwrap_or_default();
            let origin = dup
                .key
                .span()
                .start()
                .map(at)
                .unwrap_or_else(|| Origin::File(file.to_owned()));
            (
                origin,
                format!("duplicate key `{}`{first}", dup.key.as_str()),
            )
        }
    };
    ConfigError::new(ErrorKind::Syntax, origin, "", message)
}

/// The position just past the last character of `text`, with lines counted as the YAML
/// reader counts them (`\r\n`, `\r` and `\n` each end one).
fn text_end(text: &str) -> Position {
    let mut end = Position { line: 1, column: 1 };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' || c == '\n' {
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            end.line += 1;
            end.column = 1;
        } else {
            end.column += 1;
        }
    }
    end
}

/// `p`, or `end` when `p` is past it: at the end of a text without a final line break the
/// YAML reader reports the line after the last one, and an empty document is placed there.
fn clamp(end: Position, p: Position) -> Position {
    p.min(end)
}

/// Interpolates and drops nulls, in place, keeping positions.
struct Walker<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    env: &'a dyn Env,
    interpolations: Vec<Interpolation>,
}

impl Walker<'_> {
    fn node(&mut self, node: &mut Node, path: &str) -> Result<(), ConfigError> {
        match node {
            Node::Scalar(s) => {
                self.scalar(s, path)?;
            }
            Node::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.node(item, &format!("{path}[{i}]"))?;
                }
            }
            Node::Mapping(map) => self.mapping(map, path)?,
        }
        Ok(())
    }

    fn mapping(&mut self, map: &mut MarkedMappingNode, path: &str) -> Result<(), ConfigError> {
        let mut nulls = Vec::new();
        for (key, value) in map.iter_mut() {
            let child = join(path, key.as_str());
            let null = match value {
                Node::Scalar(s) => is_null(s) || self.scalar(s, &child)?,
                _ => {
                    self.node(value, &child)?;
                    false
                }
            };
            if null {
                nulls.push(key.clone());
            }
        }
        for key in nulls {
            map.remove(&key);
        }
        Ok(())
    }

    /// Interpolates one scalar; true when it is now null (unquoted, interpolated to "").
    fn scalar(&mut self, s: &mut MarkedScalarNode, path: &str) -> Result<bool, ConfigError> {
        match interpolate(s.as_str(), self.env) {
            Ok(None) => Ok(false),
            Ok(Some(done)) => {
                let plain = s.may_coerce();
                let null = plain && done.substituted && done.value.is_empty();
                if !done.vars.is_empty() {
                    self.interpolations.push(Interpolation {
                        path: path.to_owned(),
                        vars: done.vars,
                        values: done.values.into_iter().map(Secret::new).collect(),
                    });
                }
                let mut replaced = MarkedScalarNode::new(*s.span(), done.value);
                replaced.set_coerce(plain);
                *s = replaced;
                Ok(null)
            }
            Err(InterpolationError::Unset { var, offset }) => Err(ConfigError::new(
                ErrorKind::Interpolation,
                self.origin(s, offset),
                path,
                format!(
                    "environment variable `{var}` is not set \
                     (write `${{{var}:-default}}` to give a default)"
                ),
            )),
            Err(InterpolationError::Malformed { message, offset }) => Err(ConfigError::new(
                ErrorKind::Interpolation,
                self.origin(s, offset),
                path,
                message,
            )),
        }
    }

    /// Where the `$` at character `offset` of the scalar's value is in the file: exact
    /// when the value is written verbatim on its first line (plain or quoted without
    /// escapes before it), else the start of the value.
    fn origin(&self, s: &MarkedScalarNode, offset: usize) -> Origin {
        let Some(start) = s.span().start() else {
            return Origin::File(self.file.to_owned());
        };
        let mut position = Position::from(start);
        if let Some(line) = self.lines.get(position.line.wrapping_sub(1)) {
            let rest: Vec<char> = line.chars().skip(position.column - 1).collect();
            let quote = usize::from(matches!(rest.first(), Some('"' | '\'')));
            let wanted: Vec<char> = s.as_str().chars().take(offset + 2).collect();
            if rest.get(quote..quote + wanted.len()) == Some(&wanted[..]) {
                position.column += quote + offset;
            }
        }
        Origin::At(position.in_file(self.file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("replica", "replicas"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let fields = &["url", "stream", "replicas"];
        assert!(unknown_field_message("replica", fields).ends_with("(did you mean `replicas`?)"));
        assert!(unknown_field_message("urls", fields).ends_with("(did you mean `url`?)"));
        assert!(!unknown_field_message("colour", fields).contains("did you mean"));
    }

    #[test]
    fn paths() {
        assert_eq!(parent_path("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent_path("a.b[2]"), Some("a.b"));
        assert_eq!(parent_path("a"), Some(""));
        assert_eq!(parent_path(""), None);
        assert!(is_within("a.b", "a"));
        assert!(is_within("a[1]", "a"));
        assert!(!is_within("ab", "a"));
        assert!(is_within("x", ""));
        assert!(parse_path("a.b[2].c").is_some_and(|p| p.len() == 4));
        assert!(parse_path("a[x]").is_none());
    }
}
