//! Subjects are `<prefix>.<type>`, e.g. `steward.chain.log.observed`.
//!
//! No routing token (such as the chain id) is appended: catalogue types have two tokens
//! (`notify.requested`) or three (`safe.tx.proposed`), so a trailing token would make
//! `notify.requested.*` ambiguous. A type pattern is therefore a subject filter as is,
//! with NATS wildcards: `*` one token, a final `>` one or more.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubjectError {
    #[error("event type pattern {0:?} is not valid: use dot-separated tokens, `*` for one token, and `>` only at the end")]
    BadPattern(String),
}

pub fn subject_for(prefix: &str, event_type: &str) -> String {
    format!("{prefix}.{event_type}")
}

/// Turn an event type pattern (`risk.position.*`, `chain.>`, `>`) into a subject filter.
pub fn type_pattern_to_subject(prefix: &str, pattern: &str) -> Result<String, SubjectError> {
    let tokens: Vec<&str> = pattern.split('.').collect();
    let bad = || SubjectError::BadPattern(pattern.to_owned());
    for (i, t) in tokens.iter().enumerate() {
        let valid_chars = t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let ok = match *t {
            "*" => true,
            ">" => i == tokens.len() - 1,
            _ => !t.is_empty() && valid_chars,
        };
        if !ok {
            return Err(bad());
        }
    }
    Ok(format!("{prefix}.{pattern}"))
}

/// NATS subject matching: `*` matches one token, a final `>` one or more.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_filters() {
        assert_eq!(
            type_pattern_to_subject("steward", "risk.position.*").unwrap(),
            "steward.risk.position.*"
        );
        assert_eq!(
            type_pattern_to_subject("steward", "chain.>").unwrap(),
            "steward.chain.>"
        );
        assert_eq!(
            type_pattern_to_subject("steward", ">").unwrap(),
            "steward.>"
        );
        assert!(type_pattern_to_subject("s", "chain.>.x").is_err());
        assert!(type_pattern_to_subject("s", "chain..x").is_err());
        assert!(type_pattern_to_subject("s", "chain.lo g").is_err());
        assert!(type_pattern_to_subject("s", "").is_err());
    }

    #[test]
    fn matching_follows_nats() {
        assert!(subject_matches("s.>", "s.a.b.c"));
        assert!(!subject_matches("s.>", "s"));
        assert!(subject_matches("s.a.*.c", "s.a.b.c"));
        assert!(!subject_matches("s.a.*.c", "s.a.b.d"));
        assert!(!subject_matches("s.a.*", "s.a.b.c"));
        assert!(subject_matches("s.notify.*", "s.notify.requested"));
        assert!(!subject_matches("s.notify.*", "s.safe.tx.proposed"));
    }
}
