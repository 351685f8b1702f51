//! Exactly-once projections: see the crate documentation for the protocol and its invariant.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Any, Row, Transaction};
use steward_events::Envelope;

use crate::archive::{insert_archived_from_marker, is_archived};
use crate::{now_ms, to_i64, to_u64, ApplyError, Result, Store, StoreError};

/// A read model kept from events, exactly once per event key.
///
/// `apply` writes through the transaction it is given and nothing else: the store commits
/// it together with the "applied" marker and the position, or rolls all of it back. It must
/// not commit, and should not have effects outside the database (send those as events).
#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: it keys the applied markers and the position. Renaming a projection
    /// makes it apply every event again.
    fn name(&self) -> &str;

    /// Apply one event to the read model, inside `tx`.
    async fn apply(
        &self,
        tx: &mut Transaction<'_, Any>,
        event: &Envelope,
    ) -> Result<(), ApplyError>;
}

/// Outcome of projecting one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event was applied now.
    Applied,
    /// The projection had already applied an event with this key; nothing changed.
    AlreadyApplied,
}

impl Applied {
    pub fn is_applied(self) -> bool {
        self == Applied::Applied
    }
}

/// Where a projection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionPosition {
    pub projection: String,
    /// Highest log sequence applied.
    pub sequence: u64,
    /// When an event was last applied.
    pub updated_at: DateTime<Utc>,
}

/// Insert the applied marker if absent; `true` if it was inserted (the event is new).
async fn mark_applied(
    tx: &mut Transaction<'_, Any>,
    projection: &str,
    key: &str,
    sequence: i64,
    now: i64,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO projection_applied (projection, event_key, sequence, applied_at_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (projection, event_key) DO NOTHING",
    )
    .bind(projection)
    .bind(key)
    .bind(sequence)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Advance the position to `max(current, sequence)`.
async fn advance(
    tx: &mut Transaction<'_, Any>,
    projection: &str,
    sequence: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO projection_positions (projection, sequence, updated_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (projection) DO UPDATE SET \
           sequence = CASE WHEN excluded.sequence > projection_positions.sequence \
                           THEN excluded.sequence ELSE projection_positions.sequence END, \
           updated_at_ms = excluded.updated_at_ms",
    )
    .bind(projection)
    .bind(sequence)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn rollback(tx: Transaction<'_, Any>, projection: &str) {
    // Dropping the transaction would roll it back as well, but only when the connection is
    // next used; doing it now returns a clean connection to the pool.
    if let Err(e) = tx.rollback().await {
        tracing::warn!(projection, error = %e, "rollback failed; the connection is discarded");
    }
}

impl Store {
    /// Apply `event` (delivered at log `sequence`) to `projection` exactly once; see the
    /// crate documentation. On `Err` nothing was written: nak the delivery and it will be
    /// applied on redelivery.
    pub async fn project<P: Projection + ?Sized>(
        &self,
        projection: &P,
        sequence: u64,
        event: &Envelope,
    ) -> Result<Applied> {
        let name = projection.name();
        let seq = to_i64(sequence, "sequence")?;
        let now = now_ms();
        let mut tx = self.begin().await?;
        if !mark_applied(&mut tx, name, &event.key, seq, now).await? {
            rollback(tx, name).await;
            tracing::debug!(projection = name, sequence, key = %event.key, "event already applied; skipped");
            return Ok(Applied::AlreadyApplied);
        }
        if let Err(source) = projection.apply(&mut tx, event).await {
            rollback(tx, name).await;
            return Err(StoreError::Apply {
                projection: name.to_owned(),
                sequence,
                key: event.key.clone(),
                source,
            });
        }
        advance(&mut tx, name, seq, now).await?;
        tx.commit().await?;
        Ok(Applied::Applied)
    }

    /// Apply a batch of `(sequence, event)` to `projection` in one transaction, each event
    /// exactly once (a key already applied, or repeated within the batch, is skipped).
    /// Returns one outcome per input, in order. If any `apply` fails the whole batch is
    /// rolled back and the error names the failing event: nak them all, or fall back to
    /// [`Store::project`] one by one.
    pub async fn project_batch<P: Projection + ?Sized>(
        &self,
        projection: &P,
        events: &[(u64, &Envelope)],
    ) -> Result<Vec<Applied>> {
        let name = projection.name();
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let sequences = events
            .iter()
            .map(|(s, _)| to_i64(*s, "sequence"))
            .collect::<Result<Vec<_>>>()?;
        let now = now_ms();
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(events.len());
        let mut highest: Option<i64> = None;
        for (&(sequence, event), &seq) in events.iter().zip(&sequences) {
            if !mark_applied(&mut tx, name, &event.key, seq, now).await? {
                out.push(Applied::AlreadyApplied);
                continue;
            }
            if let Err(source) = projection.apply(&mut tx, event).await {
                rollback(tx, name).await;
                return Err(StoreError::Apply {
                    projection: name.to_owned(),
                    sequence,
                    key: event.key.clone(),
                    source,
                });
            }
            highest = highest.max(Some(seq));
            out.push(Applied::Applied);
        }
        match highest {
            Some(seq) => {
                advance(&mut tx, name, seq, now).await?;
                tx.commit().await?;
            }
            // Nothing new: leave no trace, not even the position's timestamp.
            None => rollback(tx, name).await,
        }
        Ok(out)
    }

    /// Highest log sequence `projection` has applied; `None` before its first event.
    pub async fn position(&self, projection: &str) -> Result<Option<u64>> {
        let row = sqlx::query("SELECT sequence FROM projection_positions WHERE projection = $1")
            .bind(projection)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| to_u64(r.try_get::<i64, _>(0)?, "projection position"))
            .transpose()
    }

    /// Every projection's position, by name.
    pub async fn positions(&self) -> Result<Vec<ProjectionPosition>> {
        let rows = sqlx::query("SELECT projection, sequence, updated_at_ms FROM projection_positions ORDER BY projection")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let ms: i64 = r.try_get(2)?;
                Ok(ProjectionPosition {
                    projection: r.try_get(0)?,
                    sequence: to_u64(r.try_get(1)?, "projection position")?,
                    updated_at: DateTime::from_timestamp_millis(ms).ok_or_else(|| {
                        StoreError::Corrupt(format!("position time {ms} out of range"))
                    })?,
                })
            })
            .collect()
    }

    /// Whether `projection` has applied the event with this key.
    pub async fn is_applied(&self, projection: &str, key: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM projection_applied WHERE projection = $1 AND event_key = $2",
        )
        .bind(projection)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}

/// The projection that writes the event archive (`event_archive`), so the archive is
/// exactly-once like any read model. Run it through [`Store::project`] or
/// [`Store::project_batch`]: it takes the event's sequence from the applied marker written
/// in the same transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Archiver;

impl Archiver {
    /// The projection name (and a good consumer name for the archiving subscription).
    pub const NAME: &'static str = "archive";
}

#[async_trait]
impl Projection for Archiver {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Any>,
        event: &Envelope,
    ) -> Result<(), ApplyError> {
        if insert_archived_from_marker(tx, Self::NAME, event).await? {
            return Ok(());
        }
        // Nothing inserted: either the key is archived already (through `Store::archive`,
        // or under another sequence), which is fine, or there is no marker to take the
        // sequence from, which means the Archiver was called outside `Store::project`.
        if is_archived(tx, &event.key).await? {
            Ok(())
        } else {
            Err(ApplyError::Fatal(format!(
                "the Archiver found no applied marker for event {}: run it through Store::project",
                event.key
            )))
        }
    }
}
