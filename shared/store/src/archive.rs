//! The event archive: every event once, for audit queries and the API.

use std::ops::{Bound, RangeBounds};

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use steward_events::{subject_matches, type_pattern_to_subject, Envelope};
use uuid::Uuid;

use crate::{now_ms, to_i64, to_u64, Dialect, Result, Store, StoreError};

/// An archived event.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedEvent {
    /// Log sequence it was archived under (of its first copy, for a duplicate).
    pub sequence: u64,
    pub event: Envelope,
    pub archived_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "event_key, sequence, id, event_type, source, time_ms, correlation_id, causation_id, \
                       chain_id, envelope, archived_at_ms";
const COLUMN_COUNT: usize = 11;
const SELECT: &str =
    "SELECT sequence, envelope, archived_at_ms, time_ms, event_key FROM event_archive";
/// Rows per multi-row INSERT: 11 parameters each stays far below both databases' limits.
const INSERT_CHUNK: usize = 200;
/// Rows fetched per round when filtering by type pattern.
const PAGE: i64 = 500;

/// The archive columns of one event, except `sequence` and `archived_at_ms`.
struct Columns<'a> {
    key: &'a str,
    id: String,
    event_type: &'a str,
    source: &'a str,
    time_ms: i64,
    correlation_id: String,
    causation_id: Option<String>,
    chain_id: Option<i64>,
    envelope: String,
}

impl<'a> Columns<'a> {
    fn of(event: &'a Envelope) -> Result<Self> {
        let envelope = String::from_utf8(event.to_json()).map_err(|e| {
            StoreError::Invalid(format!(
                "event {} does not serialise as UTF-8: {e}",
                event.key
            ))
        })?;
        Ok(Self {
            key: &event.key,
            id: event.id.to_string(),
            event_type: &event.event_type,
            source: &event.source,
            time_ms: event.time.timestamp_millis(),
            correlation_id: event.correlation_id.to_string(),
            causation_id: event.causation_id.map(|c| c.to_string()),
            chain_id: event.chain_id.map(|c| to_i64(c, "chain id")).transpose()?,
            envelope,
        })
    }
}

/// Archive `event` taking its sequence from the applied marker of `projection` written
/// earlier in `tx`. `true` if a row was inserted; `false` if the key was already archived
/// or there is no marker.
pub(crate) async fn insert_archived_from_marker(
    tx: &mut Transaction<'_, Any>,
    projection: &str,
    event: &Envelope,
) -> Result<bool> {
    let c = Columns::of(event)?;
    // The WHERE clause also disambiguates `ON CONFLICT` after `INSERT ... SELECT` for SQLite.
    let sql = format!(
        "INSERT INTO event_archive ({COLUMNS}) \
         SELECT $1, pa.sequence, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
         FROM projection_applied pa WHERE pa.projection = $11 AND pa.event_key = $1 \
         ON CONFLICT (event_key) DO NOTHING"
    );
    let done = sqlx::query(&sql)
        .bind(c.key)
        .bind(c.id)
        .bind(c.event_type)
        .bind(c.source)
        .bind(c.time_ms)
        .bind(c.correlation_id)
        .bind(c.causation_id)
        .bind(c.chain_id)
        .bind(c.envelope)
        .bind(now_ms())
        .bind(projection)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn is_archived(tx: &mut Transaction<'_, Any>, key: &str) -> Result<bool> {
    let row = sqlx::query("SELECT 1 FROM event_archive WHERE event_key = $1")
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.is_some())
}

fn decode(row: &AnyRow) -> Result<ArchivedEvent> {
    let sequence: i64 = row.try_get(0)?;
    let envelope: String = row.try_get(1)?;
    let archived_ms: i64 = row.try_get(2)?;
    let event = Envelope::from_json(envelope.as_bytes())
        .map_err(|e| StoreError::Corrupt(format!("archived event at sequence {sequence}: {e}")))?;
    Ok(ArchivedEvent {
        sequence: to_u64(sequence, "archived sequence")?,
        event,
        archived_at: DateTime::from_timestamp_millis(archived_ms).ok_or_else(|| {
            StoreError::Corrupt(format!("archive time {archived_ms} out of range"))
        })?,
    })
}

/// Milliseconds since the epoch, rounded down / up.
fn floor_ms(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn ceil_ms(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis() + i64::from(!t.timestamp_subsec_nanos().is_multiple_of(1_000_000))
}

/// Archived events have millisecond times (their wire format); turn a range of instants
/// into an inclusive range of milliseconds with the same members.
fn ms_range(range: &impl RangeBounds<DateTime<Utc>>) -> (Option<i64>, Option<i64>) {
    let from = match range.start_bound() {
        Bound::Included(t) => Some(ceil_ms(t)),
        Bound::Excluded(t) => Some(floor_ms(t).saturating_add(1)),
        Bound::Unbounded => None,
    };
    let to = match range.end_bound() {
        Bound::Included(t) => Some(floor_ms(t)),
        Bound::Excluded(t) => Some(ceil_ms(t).saturating_sub(1)),
        Bound::Unbounded => None,
    };
    (from, to)
}

enum Param {
    Int(i64),
    Text(String),
}

/// A SQL condition over `event_type` selecting a superset of the types `pattern` matches
/// (exact unless `*` is followed by more tokens and a final `>`); callers filter exactly.
fn type_condition(dialect: Dialect, pattern: &str, params: &mut Vec<Param>) -> Option<String> {
    let tokens: Vec<&str> = pattern.split('.').collect();
    if tokens == [">"] {
        return None;
    }
    let open_ended = tokens.last() == Some(&">");
    let (glob, like): (Vec<String>, Vec<String>) = tokens
        .iter()
        .map(|t| match *t {
            "*" | ">" => ("*".to_owned(), "%".to_owned()),
            // Tokens are [A-Za-z0-9_-]: nothing to escape for GLOB, `_` for LIKE.
            lit => (lit.to_owned(), lit.replace('_', "\\_")),
        })
        .unzip();
    let dots = tokens.len() as i64 - 1;
    let matcher = match dialect {
        Dialect::Sqlite => {
            params.push(Param::Text(glob.join(".")));
            format!("event_type GLOB ${}", params.len())
        }
        Dialect::Postgres => {
            params.push(Param::Text(like.join(".")));
            format!("event_type LIKE ${} ESCAPE '\\'", params.len())
        }
    };
    params.push(Param::Int(dots));
    let op = if open_ended { ">=" } else { "=" };
    Some(format!(
        "{matcher} AND (LENGTH(event_type) - LENGTH(REPLACE(event_type, '.', ''))) {op} ${}",
        params.len()
    ))
}

impl Store {
    /// Archive events directly (backfills, tools), in one transaction. Keys already
    /// archived are skipped. Returns how many were new. Services archive through the
    /// [`Archiver`](crate::Archiver) projection instead.
    pub async fn archive(&self, events: &[(u64, &Envelope)]) -> Result<u64> {
        let rows = events
            .iter()
            .map(|(seq, e)| Ok((to_i64(*seq, "sequence")?, Columns::of(e)?)))
            .collect::<Result<Vec<_>>>()?;
        if rows.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let mut inserted = 0;
        let mut tx = self.begin().await?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let values = (0..chunk.len())
                .map(|r| {
                    let ps: Vec<String> = (1..=COLUMN_COUNT)
                        .map(|c| format!("${}", r * COLUMN_COUNT + c))
                        .collect();
                    format!("({})", ps.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("INSERT INTO event_archive ({COLUMNS}) VALUES {values} ON CONFLICT (event_key) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for (seq, c) in chunk {
                q = q
                    .bind(c.key)
                    .bind(*seq)
                    .bind(c.id.as_str())
                    .bind(c.event_type)
                    .bind(c.source)
                    .bind(c.time_ms)
                    .bind(c.correlation_id.as_str())
                    .bind(c.causation_id.as_deref())
                    .bind(c.chain_id)
                    .bind(c.envelope.as_str())
                    .bind(now);
            }
            inserted += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// A whole story: every archived event with this correlation id, in log order.
    pub async fn archived_by_correlation(
        &self,
        correlation_id: Uuid,
    ) -> Result<Vec<ArchivedEvent>> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE correlation_id = $1 ORDER BY sequence, time_ms, event_key"
        ))
        .bind(correlation_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    /// Archived events whose type matches `pattern` (`safe.tx.*`, `chain.>`, `>`, or an
    /// exact type) with `time` in `range`, oldest first (by event time, then sequence), at
    /// most `limit`.
    pub async fn archived_by_type(
        &self,
        pattern: &str,
        range: impl RangeBounds<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<ArchivedEvent>> {
        type_pattern_to_subject("x", pattern).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let limit = limit as usize;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let (from, to) = ms_range(&range);
        if matches!((from, to), (Some(f), Some(t)) if f > t) {
            return Ok(out);
        }
        let mut after: Option<(i64, i64, String)> = None;
        loop {
            let mut params = Vec::new();
            let mut conds = Vec::new();
            if let Some(c) = type_condition(self.dialect(), pattern, &mut params) {
                conds.push(c);
            }
            if let Some(f) = from {
                params.push(Param::Int(f));
                conds.push(format!("time_ms >= ${}", params.len()));
            }
            if let Some(t) = to {
                params.push(Param::Int(t));
                conds.push(format!("time_ms <= ${}", params.len()));
            }
            if let Some((t, s, k)) = &after {
                let (pt, ps, pk) = (params.len() + 1, params.len() + 2, params.len() + 3);
                params.extend([Param::Int(*t), Param::Int(*s), Param::Text(k.clone())]);
                conds.push(format!(
                    "(time_ms > ${pt} OR (time_ms = ${pt} AND (sequence > ${ps} OR (sequence = ${ps} AND event_key > ${pk}))))"
                ));
            }
            let want = (limit - out.len()) as i64;
            params.push(Param::Int(want.min(PAGE)));
            let where_ = if conds.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conds.join(" AND "))
            };
            let sql = format!(
                "{SELECT}{where_} ORDER BY time_ms, sequence, event_key LIMIT ${}",
                params.len()
            );
            let mut q = sqlx::query(&sql);
            for p in params {
                q = match p {
                    Param::Int(i) => q.bind(i),
                    Param::Text(s) => q.bind(s),
                };
            }
            let rows = q.fetch_all(&self.pool).await?;
            let exhausted = (rows.len() as i64) < want.min(PAGE);
            if let Some(last) = rows.last() {
                after = Some((last.try_get(3)?, last.try_get(0)?, last.try_get(4)?));
            }
            for row in &rows {
                let e = decode(row)?;
                if subject_matches(pattern, &e.event.event_type) {
                    out.push(e);
                }
            }
            if exhausted || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }

    /// The archived event with this id.
    pub async fn archived_by_id(&self, id: Uuid) -> Result<Option<ArchivedEvent>> {
        let row = sqlx::query(&format!("{SELECT} WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The archived event with this idempotency key.
    pub async fn archived_by_key(&self, key: &str) -> Result<Option<ArchivedEvent>> {
        let row = sqlx::query(&format!("{SELECT} WHERE event_key = $1"))
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ranges_round_to_the_stored_milliseconds() {
        let a = t("2026-01-01T00:00:00.0015Z"); // 1.5 ms past the second
        let base = t("2026-01-01T00:00:00Z").timestamp_millis();
        assert_eq!(ms_range(&(a..)), (Some(base + 2), None));
        assert_eq!(ms_range(&(..=a)), (None, Some(base + 1)));
        assert_eq!(ms_range(&(..a)), (None, Some(base + 1)));
        let b = t("2026-01-01T00:00:00.002Z");
        assert_eq!(ms_range(&(b..b)), (Some(base + 2), Some(base + 1)), "empty");
        assert_eq!(ms_range(&(b..=b)), (Some(base + 2), Some(base + 2)));
        assert_eq!(ms_range(&(..)), (None, None));
    }

    #[test]
    fn type_conditions() {
        let mut p = Vec::new();
        assert_eq!(type_condition(Dialect::Sqlite, ">", &mut p), None);
        let c = type_condition(Dialect::Postgres, "log.event.dead_lettered", &mut p).unwrap();
        assert!(c.contains("LIKE $1 ESCAPE"), "{c}");
        assert!(matches!(&p[0], Param::Text(s) if s == "log.event.dead\\_lettered"));
        assert!(matches!(p[1], Param::Int(2)));
        assert!(c.ends_with("= $2"), "{c}");
        let mut p = Vec::new();
        let c = type_condition(Dialect::Sqlite, "safe.*.>", &mut p).unwrap();
        assert!(c.contains("GLOB $1") && c.ends_with(">= $2"), "{c}");
        assert!(matches!(&p[0], Param::Text(s) if s == "safe.*.*"));
    }
}
