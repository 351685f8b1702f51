//! The persisted outbox (`notifier_outbox`): every message the notifier owes, rendered, with
//! its delivery state and retry schedule.
//!
//! Life of a row: `pending` → (`sending` → `sent` | `pending` again with a later
//! `next_attempt_ms` | `failed`). Flood control parks rows as `held`; they become `digested`
//! when one digest row carries them. A row is marked `sending` (committed) immediately before
//! the transport is called and `sent` right after; a row found `sending` when the notifier
//! starts was interrupted mid-send, and is marked `unconfirmed` and never sent again: the
//! message may have left, and sending it twice is what the outbox exists to prevent.

use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};
use steward_store::sqlx;
use steward_store::Store;

pub const PENDING: &str = "pending";
pub const HELD: &str = "held";
pub const SENDING: &str = "sending";
pub const SENT: &str = "sent";
pub const FAILED: &str = "failed";
pub const DIGESTED: &str = "digested";
pub const UNCONFIRMED: &str = "unconfirmed";

pub const TELEGRAM: &str = "telegram";
pub const EMAIL: &str = "email";

/// A button under a Telegram message: a link, or a callback the bot answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
}

/// One message owed to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub request_key: String,
    pub request_id: String,
    pub correlation_id: String,
    pub channel: String,
    /// `telegram` or `email`.
    pub transport: String,
    /// The chat id, or the e-mail channel's name.
    pub destination: String,
    /// E-mail recipients (empty for Telegram).
    pub recipients: Vec<String>,
    pub severity: String,
    pub template: String,
    pub summary: String,
    /// Telegram markup, or the e-mail's text part.
    pub body: String,
    pub body_html: String,
    pub buttons: Vec<Vec<Button>>,
    pub status: String,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub digest_id: Option<String>,
    pub message_id: Option<String>,
    pub created_at_ms: i64,
}

impl Message {
    /// A new pending message.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        request: &steward_events::Envelope,
        channel: &str,
        transport: &str,
        destination: &str,
        severity: &str,
        template: &str,
        now_ms: i64,
    ) -> Self {
        Self {
            id,
            request_key: request.key.clone(),
            request_id: request.id.to_string(),
            correlation_id: request.correlation_id.to_string(),
            channel: channel.to_owned(),
            transport: transport.to_owned(),
            destination: destination.to_owned(),
            recipients: Vec::new(),
            severity: severity.to_owned(),
            template: template.to_owned(),
            summary: String::new(),
            body: String::new(),
            body_html: String::new(),
            buttons: Vec::new(),
            status: PENDING.to_owned(),
            attempts: 0,
            next_attempt_ms: now_ms,
            last_error: None,
            digest_id: None,
            message_id: None,
            created_at_ms: now_ms,
        }
    }
}

const COLUMNS: &str = "id, request_key, request_id, correlation_id, channel, transport, destination, recipients, severity, template, summary, body, body_html, buttons, status, attempts, next_attempt_ms, last_error, digest_id, message_id, created_at_ms";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Message, sqlx::Error> {
    let recipients: String = r.try_get("recipients")?;
    let buttons: String = r.try_get("buttons")?;
    let attempts: i64 = r.try_get("attempts")?;
    Ok(Message {
        id: r.try_get("id")?,
        request_key: r.try_get("request_key")?,
        request_id: r.try_get("request_id")?,
        correlation_id: r.try_get("correlation_id")?,
        channel: r.try_get("channel")?,
        transport: r.try_get("transport")?,
        destination: r.try_get("destination")?,
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        severity: r.try_get("severity")?,
        template: r.try_get("template")?,
        summary: r.try_get("summary")?,
        body: r.try_get("body")?,
        body_html: r.try_get("body_html")?,
        buttons: serde_json::from_str(&buttons).unwrap_or_default(),
        status: r.try_get("status")?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_ms: r.try_get("next_attempt_ms")?,
        last_error: r.try_get("last_error")?,
        digest_id: r.try_get("digest_id")?,
        message_id: r.try_get("message_id")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}

/// Inserts `m` unless a row with its id exists; `true` if inserted.
pub async fn insert(tx: &mut Transaction<'_, Any>, m: &Message) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(&format!(
        "INSERT INTO notifier_outbox ({COLUMNS}, reported, updated_at_ms) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, 0, $21) \
         ON CONFLICT (id) DO NOTHING"
    ))
    .bind(&m.id)
    .bind(&m.request_key)
    .bind(&m.request_id)
    .bind(&m.correlation_id)
    .bind(&m.channel)
    .bind(&m.transport)
    .bind(&m.destination)
    .bind(serde_json::to_string(&m.recipients).unwrap_or_else(|_| "[]".into()))
    .bind(&m.severity)
    .bind(&m.template)
    .bind(&m.summary)
    .bind(&m.body)
    .bind(&m.body_html)
    .bind(serde_json::to_string(&m.buttons).unwrap_or_else(|_| "[]".into()))
    .bind(&m.status)
    .bind(i64::from(m.attempts))
    .bind(m.next_attempt_ms)
    .bind(&m.last_error)
    .bind(&m.digest_id)
    .bind(&m.message_id)
    .bind(m.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Messages created for a destination since `since_ms` (flood control's count).
pub async fn recent_count(
    tx: &mut Transaction<'_, Any>,
    transport: &str,
    destination: &str,
    since_ms: i64,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM notifier_outbox WHERE transport = $1 AND destination = $2 \
         AND created_at_ms > $3 AND status <> 'digested'",
    )
    .bind(transport)
    .bind(destination)
    .bind(since_ms)
    .fetch_one(&mut **tx)
    .await?;
    row.try_get(0)
}

/// The outbox's queries outside projections.
#[derive(Clone, Debug)]
pub struct Outbox {
    store: Store,
}

impl Outbox {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Marks rows left `sending` by a process that stopped mid-send as `unconfirmed`;
    /// returns them.
    pub async fn recover(&self, now_ms: i64) -> Result<Vec<Message>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifier_outbox WHERE status = 'sending'"
        ))
        .fetch_all(self.store.pool())
        .await?;
        let found = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        sqlx::query(
            "UPDATE notifier_outbox SET status = 'unconfirmed', updated_at_ms = $1, \
             last_error = 'the process stopped while sending: not sent again, to avoid a duplicate' \
             WHERE status = 'sending'",
        )
        .bind(now_ms)
        .execute(self.store.pool())
        .await?;
        Ok(found)
    }

    /// Pending messages due at `now_ms`, oldest first.
    pub async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<Message>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifier_outbox WHERE status = 'pending' AND next_attempt_ms <= $1 \
             ORDER BY next_attempt_ms, created_at_ms, id LIMIT $2"
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// When the next pending message is due, if any.
    pub async fn next_due(&self) -> Result<Option<i64>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_ms) FROM notifier_outbox WHERE status = 'pending'",
        )
        .fetch_one(self.store.pool())
        .await?;
        row.try_get::<Option<i64>, _>(0)
    }

    /// Claims a pending message for sending: `true` if this call moved it to `sending`.
    pub async fn claim(&self, id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE notifier_outbox SET status = 'sending', attempts = attempts + 1, updated_at_ms = $2 \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(now_ms)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn mark_sent(
        &self,
        id: &str,
        message_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE notifier_outbox SET status = 'sent', message_id = $2, last_error = NULL, updated_at_ms = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(message_id)
        .bind(now_ms)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Back to `pending`, due at `next_ms`. `refund` gives the attempt back (a 429 is not a
    /// failed attempt).
    pub async fn reschedule(
        &self,
        id: &str,
        next_ms: i64,
        error: &str,
        refund: bool,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE notifier_outbox SET status = 'pending', next_attempt_ms = $2, last_error = $3, \
             attempts = attempts - $4, updated_at_ms = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(next_ms)
        .bind(error)
        .bind(i64::from(refund))
        .bind(now_ms)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// The message failed for good; the messages a failed digest carried fail with it.
    pub async fn mark_failed(&self, id: &str, error: &str, now_ms: i64) -> Result<(), sqlx::Error> {
        let mut tx = self.store.begin().await.map_err(store_to_sqlx)?;
        for q in [
            "UPDATE notifier_outbox SET status = 'failed', last_error = $2, updated_at_ms = $3 WHERE id = $1",
            "UPDATE notifier_outbox SET status = 'failed', last_error = $2, updated_at_ms = $3 WHERE digest_id = $1",
        ] {
            sqlx::query(q)
                .bind(id)
                .bind(error)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// Destinations with held messages whose window has passed: (transport, destination).
    pub async fn digests_due(&self, before_ms: i64) -> Result<Vec<(String, String)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT transport, destination FROM notifier_outbox WHERE status = 'held' \
             GROUP BY transport, destination HAVING MIN(created_at_ms) <= $1",
        )
        .bind(before_ms)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The held messages of one destination, oldest first.
    pub async fn held(
        &self,
        transport: &str,
        destination: &str,
    ) -> Result<Vec<Message>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifier_outbox WHERE status = 'held' AND transport = $1 AND destination = $2 \
             ORDER BY created_at_ms, id"
        ))
        .bind(transport)
        .bind(destination)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Inserts the digest and marks the held messages it carries, in one transaction.
    pub async fn insert_digest(
        &self,
        digest: &Message,
        carried: &[String],
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.store.begin().await.map_err(store_to_sqlx)?;
        insert(&mut tx, digest).await?;
        for id in carried {
            sqlx::query(
                "UPDATE notifier_outbox SET status = 'digested', digest_id = $2, updated_at_ms = $3 \
                 WHERE id = $1 AND status = 'held'",
            )
            .bind(id)
            .bind(&digest.id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Inserts a message outside a projection (the bot's replies); `true` if new.
    pub async fn insert_one(&self, m: &Message) -> Result<bool, sqlx::Error> {
        let mut tx = self.store.begin().await.map_err(store_to_sqlx)?;
        let new = insert(&mut tx, m).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Sent, failed and digested-and-delivered messages whose outcome is not in the log yet.
    /// For a digested message the digest's message id is returned.
    pub async fn unreported(&self, limit: i64) -> Result<Vec<Message>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifier_outbox WHERE reported = 0 AND status IN ('sent', 'failed') \
             AND channel NOT IN ('bot', 'digest') ORDER BY updated_at_ms LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        let mut out = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        let rows = sqlx::query(
            "SELECT o.id, d.message_id FROM notifier_outbox o JOIN notifier_outbox d ON o.digest_id = d.id \
             WHERE o.reported = 0 AND o.status = 'digested' AND d.status = 'sent' LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        for r in rows {
            let id: String = r.try_get(0)?;
            let digest_message: Option<String> = r.try_get(1)?;
            if let Some(mut m) = self.get(&id).await? {
                m.message_id = digest_message;
                out.push(m);
            }
        }
        Ok(out)
    }

    pub async fn mark_reported(&self, ids: &[String]) -> Result<(), sqlx::Error> {
        // One statement per 100 rows: one commit, not one per row.
        for chunk in ids.chunks(100) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "UPDATE notifier_outbox SET reported = 1 WHERE id IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(self.store.pool()).await?;
        }
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<Message>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifier_outbox WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.store.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every message, oldest first (tests and the benchmark).
    pub async fn all(&self) -> Result<Vec<Message>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifier_outbox ORDER BY created_at_ms, id"
        ))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Messages by status.
    pub async fn counts(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) FROM notifier_outbox WHERE channel <> 'bot' GROUP BY status ORDER BY status",
        )
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}

fn store_to_sqlx(e: steward_store::StoreError) -> sqlx::Error {
    match e {
        steward_store::StoreError::Database(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
