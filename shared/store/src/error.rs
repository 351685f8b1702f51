//! Errors, and the redaction that keeps database passwords out of them.

use steward_log::HandlerError;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the store can fail with.
///
/// Messages never contain the password of the database URL: URLs are shown redacted and
/// connection and migration errors are scrubbed of the password before they are wrapped.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("unsupported database URL {url}: expected postgres://, postgresql:// or sqlite:")]
    UnsupportedUrl { url: String },
    /// The database could not be reached or refused us.
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The schema migrations failed.
    #[error("cannot migrate {url}: {reason}")]
    Migrate { url: String, reason: String },
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A projection's `apply` failed; its transaction was rolled back, so the event is not
    /// marked as applied and a redelivery will apply it.
    #[error("projection {projection} failed on event {key} (sequence {sequence}): {source}")]
    Apply {
        projection: String,
        sequence: u64,
        key: String,
        #[source]
        source: ApplyError,
    },
    /// The caller passed something the store cannot hold (a sequence above `i64::MAX`, a bad
    /// type pattern).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Stored data could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether trying again may succeed (the database was unavailable, a lock timed out...).
    /// `false` for bad input, corrupt data and projections that rejected an event.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::UnsupportedUrl { .. } | StoreError::Invalid(_) | StoreError::Corrupt(_) => {
                false
            }
            StoreError::Apply { source, .. } => !matches!(source, ApplyError::Fatal(_)),
            StoreError::Connect { .. } | StoreError::Migrate { .. } | StoreError::Database(_) => {
                true
            }
        }
    }
}

/// A failing store call inside an event handler: retryable errors are retried with the
/// consumer's backoff, the others dead-letter the event at once.
impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            HandlerError::Retry(e.to_string())
        } else {
            HandlerError::Fatal(e.to_string())
        }
    }
}

/// Why a [`Projection`](crate::Projection) could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A query in `apply` failed. Treated as transient: the event is retried and, once the
    /// consumer's attempts are used up, dead-lettered.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Transient failure of another kind; retry.
    #[error("{0}")]
    Retry(String),
    /// The event can never be applied (its payload does not decode, it breaks an invariant
    /// of the read model): dead-letter it now.
    #[error("{0}")]
    Fatal(String),
}

impl From<steward_events::EnvelopeError> for ApplyError {
    fn from(e: steward_events::EnvelopeError) -> Self {
        ApplyError::Fatal(e.to_string())
    }
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(e) => ApplyError::Database(e),
            StoreError::Apply { source, .. } => source,
            e if e.is_retryable() => ApplyError::Retry(e.to_string()),
            e => ApplyError::Fatal(e.to_string()),
        }
    }
}

const MASK: &str = "***";

/// A database URL split into what may be shown and what must not.
#[derive(Clone)]
pub(crate) struct Redacted {
    /// The URL with its password (userinfo or `password=` query parameter) masked.
    pub shown: String,
    /// The secrets as they may appear in an error message: raw and percent-decoded.
    secrets: Vec<String>,
}

impl Redacted {
    pub fn new(url: &str) -> Self {
        let mut shown = String::with_capacity(url.len());
        let mut secrets = Vec::new();

        let (before_fragment, fragment) = match url.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (url, None),
        };
        let (base, query) = match before_fragment.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (before_fragment, None),
        };

        // scheme://[user[:password]@]host...: the userinfo ends at the last '@' of the
        // authority (a password may contain an unencoded '@'; the host never does).
        match base.find("://") {
            Some(i) => {
                let rest_start = i + 3;
                let rest = &base[rest_start..];
                let authority_len = rest.find('/').unwrap_or(rest.len());
                let authority = &rest[..authority_len];
                shown.push_str(&base[..rest_start]);
                match authority.rfind('@') {
                    Some(at) => {
                        let userinfo = &authority[..at];
                        match userinfo.split_once(':') {
                            Some((user, password)) => {
                                push_secret(&mut secrets, password);
                                shown.push_str(user);
                                shown.push(':');
                                shown.push_str(MASK);
                            }
                            None => shown.push_str(userinfo),
                        }
                        shown.push_str(&authority[at..]);
                    }
                    None => shown.push_str(authority),
                }
                shown.push_str(&rest[authority_len..]);
            }
            None => shown.push_str(base),
        }

        if let Some(query) = query {
            shown.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    shown.push('&');
                }
                match pair.split_once('=') {
                    Some((k, v)) if is_secret_param(k) => {
                        push_secret(&mut secrets, v);
                        shown.push_str(k);
                        shown.push('=');
                        shown.push_str(MASK);
                    }
                    _ => shown.push_str(pair),
                }
            }
        }
        if let Some(f) = fragment {
            shown.push('#');
            shown.push_str(f);
        }
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { shown, secrets }
    }

    /// `message` with every occurrence of a secret masked.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.to_owned();
        for s in &self.secrets {
            out = out.replace(s.as_str(), MASK);
        }
        out
    }

    pub fn connect_error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Connect {
            url: self.shown.clone(),
            reason: self.scrub(&e.to_string()),
        }
    }

    pub fn migrate_error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Migrate {
            url: self.shown.clone(),
            reason: self.scrub(&e.to_string()),
        }
    }
}

fn is_secret_param(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "password" || k == "sslpassword" || k == "pass"
}

fn push_secret(secrets: &mut Vec<String>, raw: &str) {
    if raw.is_empty() {
        return;
    }
    for s in [
        raw.to_owned(),
        percent_decode(raw, false),
        percent_decode(raw, true),
    ] {
        if !s.is_empty() && !secrets.contains(&s) {
            secrets.push(s);
        }
    }
}

/// Percent-decoding, lossy on invalid UTF-8; `plus_is_space` for form-encoded queries.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_password_is_masked() {
        let r =
            Redacted::new("postgres://steward:hunter2@db.internal:5432/steward?sslmode=require");
        assert_eq!(
            r.shown,
            "postgres://steward:***@db.internal:5432/steward?sslmode=require"
        );
        assert_eq!(
            r.scrub("auth failed for hunter2 at x"),
            "auth failed for *** at x"
        );
    }

    #[test]
    fn encoded_and_query_passwords_are_masked() {
        let r = Redacted::new("postgres://u:p%40ss%2Fw@h/db?password=s3cr%21t&application_name=a");
        assert_eq!(
            r.shown,
            "postgres://u:***@h/db?password=***&application_name=a"
        );
        for leaked in ["p%40ss%2Fw", "p@ss/w", "s3cr%21t", "s3cr!t"] {
            assert_eq!(r.scrub(&format!("x {leaked} y")), "x *** y", "{leaked}");
        }
    }

    #[test]
    fn at_sign_in_password_is_masked_whole() {
        let r = Redacted::new("postgres://u:a@b@host/db");
        assert_eq!(r.shown, "postgres://u:***@host/db");
    }

    #[test]
    fn urls_without_password_are_unchanged() {
        for url in [
            "postgres://u@h:1/db",
            "sqlite:///tmp/x.db",
            "sqlite::memory:",
            "sqlite://a.db?mode=rwc",
        ] {
            let r = Redacted::new(url);
            assert_eq!(r.shown, url);
            assert_eq!(r.scrub("nothing secret"), "nothing secret");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%zz%", false), "a b%zz%");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("a+b", false), "a+b");
    }
}
