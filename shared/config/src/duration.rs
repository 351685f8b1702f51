//! Durations as humantime strings (`30s`, `10m`, `1h 30m`): serde helpers for
//! `Duration`, `Option<Duration>` and `Vec<Duration>` fields, and the schema they share.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};

/// Parses a humantime duration (`30s`, `1m 30s`, `250ms`, `2h`). The error names the
/// problem but not the text, which the caller places.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| match e {
        humantime::DurationError::Empty => "a duration cannot be empty".to_owned(),
        humantime::DurationError::NumberExpected(_) => {
            "expected a duration such as `30s`, `10m` or `1h 30m` (a number comes first)".to_owned()
        }
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("unknown time unit `{unit}` (use ns, us, ms, s, m, h, d, w, e.g. `30s`, `10m`)")
        }
        humantime::DurationError::InvalidCharacter(_) => {
            "invalid character in duration (use e.g. `30s`, `10m`, `1h 30m`)".to_owned()
        }
        humantime::DurationError::NumberOverflow => "duration is too large".to_owned(),
    })
}

/// Formats a duration the way the configuration writes it (`30s`, `10m`, `1h 30m`, `90d`).
/// Whole days are written in days: humantime's months and years are averages (30.44 and
/// 365.25 days), so `90d` would read back as `2months 29days 2h 52m 48s`.
pub fn format(duration: &Duration) -> String {
    const DAY: u64 = 86_400;
    let secs = duration.as_secs();
    if duration.subsec_nanos() == 0 && secs >= DAY && secs.is_multiple_of(DAY) {
        return format!("{}d", secs / DAY);
    }
    if secs >= 30 * DAY {
        // Long but not whole days: days plus the humantime rest, never months.
        let rest = Duration::new(secs % DAY, duration.subsec_nanos());
        return format!("{}d {}", secs / DAY, humantime::format_duration(rest));
    }
    humantime::format_duration(*duration).to_string()
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn days_stay_days() {
        assert_eq!(format(&Duration::from_secs(90 * 86_400)), "90d");
        assert_eq!(format(&Duration::from_secs(86_400)), "1d");
        assert_eq!(format(&Duration::from_secs(40 * 86_400 + 3600)), "40d 1h");
        assert_eq!(format(&Duration::from_secs(30)), "30s");
        assert_eq!(format(&Duration::from_secs(600)), "10m");
        assert_eq!(format(&Duration::from_millis(1500)), "1s 500ms");
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as `30s` or `10m`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }
}

/// Schema of a duration field: a humantime string.
pub(crate) struct HumanDuration;

impl JsonSchema for HumanDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": r"^\s*[0-9]+\s*[a-zA-Zµ]+(\s*[0-9]+\s*[a-zA-Zµ]+)*\s*$",
            "examples": ["30s", "10m", "1h 30m"],
        })
    }
}

/// `#[serde(with = "crate::duration::required")]` for `Duration` fields.
pub(crate) mod required {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }
}

/// `#[serde(with = "crate::duration::optional")]` for `Option<Duration>` fields, where
/// absent (or `null`) means "none".
pub(crate) mod optional {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&format(d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_str(DurationVisitor).map(Some)
    }
}

/// `#[serde(with = "crate::duration::list")]` for `Vec<Duration>` fields.
pub(crate) mod list {
    use super::*;

    struct Item(Duration);

    impl<'de> serde::Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(DurationVisitor).map(Item)
        }
    }

    struct ListVisitor;

    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of durations such as `[1s, 5s, 30s]`")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Duration>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(Item(d)) = seq.next_element()? {
                out.push(d);
            }
            Ok(out)
        }
    }

    pub fn serialize<S: Serializer>(list: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for d in list {
            seq.serialize_element(&format(d))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        d.deserialize_seq(ListVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse(" 1h 30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(format(&Duration::from_secs(600)), "10m");
        assert!(parse("5 parsecs").unwrap_err().contains("`parsecs`"));
        assert!(parse("").is_err());
        assert!(parse("fast").is_err());
    }
}
