//! The watcher's tables in the store (migration `0002_watcher.sql`): cursor, reorg window,
//! last reported values, discovered parameters, backfill progress. SQL in the subset both
//! PostgreSQL and SQLite accept.

use std::collections::HashMap;

use alloy::primitives::B256;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_store::sqlx::{self, Row};
use steward_store::{Store, StoreError};

/// A block in the reorg window, with what was emitted from it.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowBlock {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    pub events: Vec<EmittedEvent>,
}

/// An event emitted from a block: enough to name it in a retraction, and the whole envelope
/// for logs (so the retraction can repeat it with `removed: true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmittedEvent {
    pub key: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Value>,
}

/// Everything one ingested range changes, written in one transaction.
#[derive(Debug, Default)]
pub struct Commit {
    /// The new cursor: every block up to this one is in the log.
    pub cursor: Option<(u64, B256)>,
    pub blocks: Vec<WindowBlock>,
    /// (call id, block, value) of state observations reported.
    pub values: Vec<(String, u64, Value)>,
    /// (watch, parameter, value, block) learned from events.
    pub params: Vec<(String, String, String, u64)>,
    /// Drop window blocks below this number.
    pub prune_below: Option<u64>,
    /// A backfill's progress: (from, to, next block).
    pub backfill: Option<(u64, u64, u64)>,
}

/// The watcher's view of the store, for one chain.
#[derive(Clone)]
pub struct WatcherStore {
    store: Store,
    chain_id: i64,
}

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn hash(text: &str) -> Result<B256, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Invalid(format!("stored block hash {text:?} is not a hash")))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl WatcherStore {
    pub fn new(store: Store, chain_id: u64) -> Self {
        Self {
            store,
            chain_id: i(chain_id),
        }
    }

    /// The last block fully ingested.
    pub async fn cursor(&self) -> Result<Option<(u64, B256)>, StoreError> {
        let row =
            sqlx::query("SELECT block_number, block_hash FROM watcher_cursors WHERE chain_id = $1")
                .bind(self.chain_id)
                .fetch_optional(self.store.pool())
                .await?;
        row.map(|r| Ok((u(r.try_get(0)?), hash(&r.try_get::<String, _>(1)?)?)))
            .transpose()
    }

    /// The reorg window, lowest block first.
    pub async fn window(&self) -> Result<Vec<WindowBlock>, StoreError> {
        let rows = sqlx::query(
            "SELECT block_number, block_hash, parent_hash, events FROM watcher_blocks \
             WHERE chain_id = $1 ORDER BY block_number",
        )
        .bind(self.chain_id)
        .fetch_all(self.store.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                let events: String = r.try_get(3)?;
                Ok(WindowBlock {
                    number: u(r.try_get(0)?),
                    hash: hash(&r.try_get::<String, _>(1)?)?,
                    parent_hash: hash(&r.try_get::<String, _>(2)?)?,
                    events: serde_json::from_str(&events).map_err(|e| {
                        StoreError::Invalid(format!("stored window events do not decode: {e}"))
                    })?,
                })
            })
            .collect()
    }

    /// Last value reported per call id, with its block.
    pub async fn values(&self) -> Result<HashMap<String, (u64, Value)>, StoreError> {
        let rows = sqlx::query(
            "SELECT call_id, block_number, value FROM watcher_values WHERE chain_id = $1",
        )
        .bind(self.chain_id)
        .fetch_all(self.store.pool())
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let value: String = r.try_get(2)?;
            let value = serde_json::from_str(&value).map_err(|e| {
                StoreError::Invalid(format!("stored state value does not decode: {e}"))
            })?;
            out.insert(r.try_get(0)?, (u(r.try_get(1)?), value));
        }
        Ok(out)
    }

    /// Parameter values learned from events: (watch, parameter, value).
    pub async fn params(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT watch, param, value FROM watcher_params WHERE chain_id = $1 ORDER BY block_number",
        )
        .bind(self.chain_id)
        .fetch_all(self.store.pool())
        .await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Writes one range's changes atomically.
    pub async fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        for b in &c.blocks {
            let events = serde_json::to_string(&b.events)
                .map_err(|e| StoreError::Invalid(format!("window events do not encode: {e}")))?;
            sqlx::query(
                "INSERT INTO watcher_blocks (chain_id, block_number, block_hash, parent_hash, events) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (chain_id, block_number) DO UPDATE SET \
                 block_hash = excluded.block_hash, parent_hash = excluded.parent_hash, events = excluded.events",
            )
            .bind(self.chain_id)
            .bind(i(b.number))
            .bind(b.hash.to_string())
            .bind(b.parent_hash.to_string())
            .bind(events)
            .execute(&mut *tx)
            .await?;
        }
        for (id, block, value) in &c.values {
            sqlx::query(
                "INSERT INTO watcher_values (chain_id, call_id, block_number, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (chain_id, call_id) DO UPDATE SET block_number = excluded.block_number, value = excluded.value",
            )
            .bind(self.chain_id)
            .bind(id)
            .bind(i(*block))
            .bind(value.to_string())
            .execute(&mut *tx)
            .await?;
        }
        for (watch, param, value, block) in &c.params {
            sqlx::query(
                "INSERT INTO watcher_params (chain_id, watch, param, value, block_number) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (chain_id, watch, param, value) DO NOTHING",
            )
            .bind(self.chain_id)
            .bind(watch)
            .bind(param)
            .bind(value)
            .bind(i(*block))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(below) = c.prune_below {
            sqlx::query("DELETE FROM watcher_blocks WHERE chain_id = $1 AND block_number < $2")
                .bind(self.chain_id)
                .bind(i(below))
                .execute(&mut *tx)
                .await?;
        }
        if let Some((from, to, next)) = c.backfill {
            sqlx::query(
                "INSERT INTO watcher_backfills (chain_id, from_block, to_block, next_block, updated_at_ms) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (chain_id, from_block, to_block) DO UPDATE SET next_block = excluded.next_block, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(self.chain_id)
            .bind(i(from))
            .bind(i(to))
            .bind(i(next))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        if let Some((number, h)) = c.cursor {
            sqlx::query(
                "INSERT INTO watcher_cursors (chain_id, block_number, block_hash, updated_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (chain_id) DO UPDATE SET block_number = excluded.block_number, \
                 block_hash = excluded.block_hash, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(self.chain_id)
            .bind(i(number))
            .bind(h.to_string())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// After a reorg: forget the window above `fork`, and the values reported from there
    /// (they will be reported again from the canonical branch), and move the cursor to `fork`.
    pub async fn rewind(&self, fork: u64, fork_hash: B256) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        sqlx::query("DELETE FROM watcher_blocks WHERE chain_id = $1 AND block_number > $2")
            .bind(self.chain_id)
            .bind(i(fork))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM watcher_values WHERE chain_id = $1 AND block_number > $2")
            .bind(self.chain_id)
            .bind(i(fork))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE watcher_cursors SET block_number = $2, block_hash = $3, updated_at_ms = $4 WHERE chain_id = $1",
        )
        .bind(self.chain_id)
        .bind(i(fork))
        .bind(fork_hash.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A backfill's next block, if it was started before.
    pub async fn backfill_next(&self, from: u64, to: u64) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(
            "SELECT next_block FROM watcher_backfills WHERE chain_id = $1 AND from_block = $2 AND to_block = $3",
        )
        .bind(self.chain_id)
        .bind(i(from))
        .bind(i(to))
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| Ok(u(r.try_get(0)?))).transpose()
    }
}
