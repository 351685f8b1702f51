//! The queue in the store: Safes as the chain last showed them, transactions, signatures.

use std::str::FromStr;

use alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};
use steward_store::sqlx::{self, Row};
use steward_store::{Store, StoreError};

use crate::tx::SafeTx;

/// A Safe as the chain last showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub safe: Address,
    pub chain_id: u64,
    pub owners: Vec<Address>,
    pub threshold: u32,
    pub nonce: u64,
    pub version: String,
}

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    Ready,
    Executed,
    Failed,
    Superseded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Ready => "ready",
            Status::Executed => "executed",
            Status::Failed => "failed",
            Status::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "ready" => Status::Ready,
            "executed" => Status::Executed,
            "failed" => Status::Failed,
            "superseded" => Status::Superseded,
            _ => Status::Queued,
        }
    }

    /// Still waiting to be executed.
    pub fn pending(self) -> bool {
        matches!(self, Status::Queued | Status::Ready)
    }
}

/// A queued transaction.
#[derive(Debug, Clone)]
pub struct Row_ {
    pub safe_tx_hash: B256,
    pub safe: Address,
    pub chain_id: u64,
    pub nonce: u64,
    pub status: Status,
    /// The `safe.tx.proposed` envelope, JSON.
    pub proposed: String,
    pub tx: SafeTx,
    pub executed_tx: Option<String>,
    /// How often a reorg retracted the execution that concluded it (0: never).
    pub reopened: u64,
}

impl Row_ {
    /// What keys of events about this transaction end with: nothing until it is reopened,
    /// then `:r<n>`, so the same fact after a reopening is a new event, not a repeat.
    pub fn generation(&self) -> String {
        if self.reopened == 0 {
            String::new()
        } else {
            format!(":r{}", self.reopened)
        }
    }
}

/// An accepted signature.
#[derive(Debug, Clone)]
pub struct StoredSignature {
    pub owner: Address,
    pub signature: Vec<u8>,
    pub kind: String,
    pub submission_key: String,
}

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn bad(what: &str) -> impl Fn(String) -> StoreError + '_ {
    move |e| StoreError::Invalid(format!("stored {what} does not decode: {e}"))
}

fn addr(s: &str) -> Result<Address, StoreError> {
    Address::from_str(s).map_err(|e| bad("address")(e.to_string()))
}

/// The safe service's tables.
#[derive(Clone)]
pub struct Queue {
    pub store: Store,
}

impl Queue {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn account(&self, safe: Address) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(
            "SELECT chain_id, owners, threshold, nonce, version FROM safe_accounts WHERE safe = $1",
        )
        .bind(safe.to_checksum(None))
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| {
            let owners: String = r.try_get(1)?;
            Ok(Account {
                safe,
                chain_id: r.try_get::<i64, _>(0)? as u64,
                owners: serde_json::from_str(&owners).map_err(|e| bad("owners")(e.to_string()))?,
                threshold: r.try_get::<i64, _>(2)? as u32,
                nonce: r.try_get::<i64, _>(3)? as u64,
                version: r.try_get(4)?,
            })
        })
        .transpose()
    }

    pub async fn save_account(&self, a: &Account) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO safe_accounts (safe, chain_id, owners, threshold, nonce, version, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (safe) DO UPDATE SET chain_id = excluded.chain_id, \
             owners = excluded.owners, threshold = excluded.threshold, nonce = excluded.nonce, \
             version = excluded.version, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(a.safe.to_checksum(None))
        .bind(i(a.chain_id))
        .bind(serde_json::to_string(&a.owners).unwrap_or_default())
        .bind(i64::from(a.threshold))
        .bind(i(a.nonce))
        .bind(&a.version)
        .bind(now())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    fn row(r: &steward_store::sqlx::any::AnyRow) -> Result<Row_, StoreError> {
        let hash: String = r.try_get(0)?;
        let proposed: String = r.try_get(5)?;
        let env: serde_json::Value =
            serde_json::from_str(&proposed).map_err(|e| bad("proposal")(e.to_string()))?;
        let d = &env["data"];
        let u = |k: &str| d[k].as_str().unwrap_or("0").parse().unwrap_or_default();
        let a = |k: &str| Address::from_str(d[k].as_str().unwrap_or_default()).unwrap_or_default();
        let tx = SafeTx {
            to: a("to"),
            value: u("value"),
            data: d["data"]
                .as_str()
                .and_then(|h| alloy::primitives::hex::decode(h.trim_start_matches("0x")).ok())
                .unwrap_or_default()
                .into(),
            operation: d["operation"].as_u64().unwrap_or(0) as u8,
            safe_tx_gas: u("safe_tx_gas"),
            base_gas: u("base_gas"),
            gas_price: u("gas_price"),
            gas_token: a("gas_token"),
            refund_receiver: a("refund_receiver"),
            nonce: alloy::primitives::U256::from(d["nonce"].as_u64().unwrap_or(0)),
        };
        Ok(Row_ {
            safe_tx_hash: B256::from_str(&hash).map_err(|e| bad("hash")(e.to_string()))?,
            safe: addr(&r.try_get::<String, _>(1)?)?,
            chain_id: r.try_get::<i64, _>(2)? as u64,
            nonce: r.try_get::<i64, _>(3)? as u64,
            status: Status::parse(&r.try_get::<String, _>(4)?),
            proposed,
            tx,
            executed_tx: r.try_get(6)?,
            reopened: r.try_get::<i64, _>(7)? as u64,
        })
    }

    const COLS: &'static str =
        "safe_tx_hash, safe, chain_id, nonce, status, proposed, executed_tx, reopened";

    pub async fn by_hash(&self, hash: B256) -> Result<Option<Row_>, StoreError> {
        let r = sqlx::query(&format!(
            "SELECT {} FROM safe_txs WHERE safe_tx_hash = $1",
            Self::COLS
        ))
        .bind(hash.to_string())
        .fetch_optional(self.store.pool())
        .await?;
        r.as_ref().map(Self::row).transpose()
    }

    pub async fn by_origin(&self, key: &str) -> Result<Option<Row_>, StoreError> {
        let r = sqlx::query(&format!(
            "SELECT {} FROM safe_txs WHERE origin_key = $1",
            Self::COLS
        ))
        .bind(key)
        .fetch_optional(self.store.pool())
        .await?;
        r.as_ref().map(Self::row).transpose()
    }

    /// Transactions of `safe` still waiting, lowest nonce first.
    pub async fn pending(&self, safe: Address) -> Result<Vec<Row_>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM safe_txs WHERE safe = $1 AND status IN ('queued', 'ready') ORDER BY nonce, created_at_ms",
            Self::COLS
        ))
        .bind(safe.to_checksum(None))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(Self::row).collect()
    }

    /// Every transaction in a status, for the relayer.
    pub async fn with_status(&self, status: Status) -> Result<Vec<Row_>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM safe_txs WHERE status = $1 ORDER BY nonce",
            Self::COLS
        ))
        .bind(status.as_str())
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(Self::row).collect()
    }

    /// The highest nonce queued for `safe` and still waiting.
    pub async fn highest_pending_nonce(&self, safe: Address) -> Result<Option<u64>, StoreError> {
        let r = sqlx::query(
            "SELECT MAX(nonce) FROM safe_txs WHERE safe = $1 AND status IN ('queued', 'ready')",
        )
        .bind(safe.to_checksum(None))
        .fetch_one(self.store.pool())
        .await?;
        Ok(r.try_get::<Option<i64>, _>(0)?.map(|n| n as u64))
    }

    /// Records a new transaction; false if its origin or hash is already there.
    pub async fn insert(&self, row: &Row_, origin_key: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO safe_txs (safe_tx_hash, safe, chain_id, nonce, origin_key, status, proposed, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(row.safe_tx_hash.to_string())
        .bind(row.safe.to_checksum(None))
        .bind(i(row.chain_id))
        .bind(i(row.nonce))
        .bind(origin_key)
        .bind(row.status.as_str())
        .bind(&row.proposed)
        .bind(now())
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_status(
        &self,
        hash: B256,
        status: Status,
        executed_tx: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE safe_txs SET status = $2, executed_tx = COALESCE($3, executed_tx) WHERE safe_tx_hash = $1")
            .bind(hash.to_string())
            .bind(status.as_str())
            .bind(executed_tx)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Puts a concluded transaction back in the queue (`queued`, no execution, one more
    /// reopening) if it is still in `from`; returns its row as it is now, or `None` if it was
    /// not in `from`.
    pub async fn reopen(&self, hash: B256, from: Status) -> Result<Option<Row_>, StoreError> {
        let done = sqlx::query(
            "UPDATE safe_txs SET status = 'queued', executed_tx = NULL, reopened = reopened + 1 \
             WHERE safe_tx_hash = $1 AND status = $2",
        )
        .bind(hash.to_string())
        .bind(from.as_str())
        .execute(self.store.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.by_hash(hash).await
    }

    /// Transactions of `safe` at `nonce` or above that the queue has concluded were
    /// superseded, lowest nonce first.
    pub async fn superseded_from(
        &self,
        safe: Address,
        nonce: u64,
    ) -> Result<Vec<Row_>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM safe_txs WHERE safe = $1 AND nonce >= $2 AND status = 'superseded' ORDER BY nonce, created_at_ms",
            Self::COLS
        ))
        .bind(safe.to_checksum(None))
        .bind(i(nonce))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(Self::row).collect()
    }

    pub async fn signatures(&self, hash: B256) -> Result<Vec<StoredSignature>, StoreError> {
        let rows = sqlx::query("SELECT owner, signature, kind, submission_key FROM safe_signatures WHERE safe_tx_hash = $1 ORDER BY owner")
            .bind(hash.to_string())
            .fetch_all(self.store.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let sig: String = r.try_get(1)?;
                Ok(StoredSignature {
                    owner: addr(&r.try_get::<String, _>(0)?)?,
                    signature: alloy::primitives::hex::decode(sig.trim_start_matches("0x"))
                        .map_err(|e| bad("signature")(e.to_string()))?,
                    kind: r.try_get(2)?,
                    submission_key: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Records an accepted signature; returns the submission key already there for this owner,
    /// if there was one.
    pub async fn add_signature(
        &self,
        hash: B256,
        owner: Address,
        signature: &[u8],
        kind: &str,
        submission_key: &str,
    ) -> Result<Option<String>, StoreError> {
        let done = sqlx::query(
            "INSERT INTO safe_signatures (safe_tx_hash, owner, signature, kind, submission_key, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(hash.to_string())
        .bind(owner.to_checksum(None))
        .bind(format!("0x{}", alloy::primitives::hex::encode(signature)))
        .bind(kind)
        .bind(submission_key)
        .bind(now())
        .execute(self.store.pool())
        .await?;
        if done.rows_affected() == 1 {
            return Ok(None);
        }
        let r = sqlx::query(
            "SELECT submission_key FROM safe_signatures WHERE safe_tx_hash = $1 AND owner = $2",
        )
        .bind(hash.to_string())
        .bind(owner.to_checksum(None))
        .fetch_one(self.store.pool())
        .await?;
        Ok(Some(r.try_get(0)?))
    }
}

/// Something a relayer account must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub key: String,
    pub relayer: Address,
    pub chain_id: u64,
    /// `exec` (execTransaction of a ready Safe transaction), `approve` or `liquidate`.
    pub kind: String,
    pub target: Address,
    /// Calldata, 0x hex (empty for `exec`: built from the signatures when sent).
    pub data: String,
    pub safe_tx_hash: Option<B256>,
    pub liquidation_key: Option<String>,
    /// `pending`, `sent`, `done`, `failed` or `cancelled`.
    pub status: String,
    pub detail: Option<String>,
}

/// One signed transaction sent for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub tx_hash: B256,
    pub nonce: u64,
    pub max_fee: u128,
    pub priority_fee: u128,
    pub gas_limit: u64,
    pub sent_at_ms: i64,
}

/// A liquidation request and where it stands.
#[derive(Debug, Clone)]
pub struct Liquidation {
    pub key: String,
    /// The `liquidation.requested` envelope, JSON.
    pub request: String,
    pub safe_tx_hash: Option<B256>,
    /// The outcome envelope, JSON, once there is one.
    pub outcome: Option<String>,
    /// How often a reorg retracted its outcome.
    pub reopened: u64,
}

impl Queue {
    /// The transaction executed at `nonce` of `safe`, if Steward knows it.
    pub async fn executed_at(&self, safe: Address, nonce: u64) -> Result<Option<B256>, StoreError> {
        let r = sqlx::query("SELECT safe_tx_hash FROM safe_txs WHERE safe = $1 AND nonce = $2 AND status IN ('executed', 'failed')")
            .bind(safe.to_checksum(None))
            .bind(i(nonce))
            .fetch_optional(self.store.pool())
            .await?;
        r.map(|r| {
            B256::from_str(&r.try_get::<String, _>(0)?).map_err(|e| bad("hash")(e.to_string()))
        })
        .transpose()
    }

    /// Adds a job unless one with its key exists.
    pub async fn add_job(&self, job: &Job) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO relay_jobs (job_key, relayer, chain_id, kind, target, data, safe_tx_hash, liquidation_key, status, detail, created_at_ms, seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, (SELECT COALESCE(MAX(seq), 0) + 1 FROM relay_jobs)) ON CONFLICT DO NOTHING",
        )
        .bind(&job.key)
        .bind(job.relayer.to_checksum(None))
        .bind(i(job.chain_id))
        .bind(&job.kind)
        .bind(job.target.to_checksum(None))
        .bind(&job.data)
        .bind(job.safe_tx_hash.map(|h| h.to_string()))
        .bind(job.liquidation_key.as_deref())
        .bind(&job.status)
        .bind(job.detail.as_deref())
        .bind(now())
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A relayer's jobs still to do (`pending` or `sent`), in the order they were added.
    pub async fn open_jobs(&self, relayer: Address) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(&format!(
            "{JOB_COLUMNS} WHERE relayer = $1 AND status IN ('pending', 'sent') ORDER BY seq"
        ))
        .bind(relayer.to_checksum(None))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Open jobs on `chain_id` made for an account other than `relayer`: left behind when
    /// the relayer key was changed.
    pub async fn others_open_jobs(
        &self,
        chain_id: u64,
        relayer: Address,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(&format!(
            "{JOB_COLUMNS} WHERE chain_id = $1 AND relayer <> $2 AND status IN ('pending', 'sent') ORDER BY seq"
        ))
        .bind(i(chain_id))
        .bind(relayer.to_checksum(None))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Gives a job to `relayer`, pending again; the attempts of the account it was made for
    /// (none of them on chain or in a node's pool) are forgotten with it.
    pub async fn hand_over(
        &self,
        key: &str,
        relayer: Address,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        sqlx::query("DELETE FROM relay_attempts WHERE job_key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE relay_jobs SET relayer = $2, status = 'pending', detail = $3 WHERE job_key = $1",
        )
        .bind(key)
        .bind(relayer.to_checksum(None))
        .bind(detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_job(
        &self,
        key: &str,
        status: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE relay_jobs SET status = $2, detail = $3 WHERE job_key = $1")
            .bind(key)
            .bind(status)
            .bind(detail)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Records an attempt and marks its job sent, together: written before the transaction
    /// leaves, so a crash right after sending still knows what to look for.
    pub async fn record_attempt(&self, job: &str, a: &Attempt) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        sqlx::query(
            "INSERT INTO relay_attempts (tx_hash, job_key, nonce, max_fee, priority_fee, gas_limit, sent_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tx_hash) DO UPDATE SET sent_at_ms = excluded.sent_at_ms",
        )
        .bind(a.tx_hash.to_string())
        .bind(job)
        .bind(i(a.nonce))
        .bind(a.max_fee.to_string())
        .bind(a.priority_fee.to_string())
        .bind(i(a.gas_limit))
        .bind(a.sent_at_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE relay_jobs SET status = 'sent' WHERE job_key = $1")
            .bind(job)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A job's attempts, oldest first.
    /// A job's transaction was mined in `block` (its receipt was seen).
    pub async fn set_job_mined(&self, key: &str, block: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE relay_jobs SET mined_block = $2 WHERE job_key = $1")
            .bind(key)
            .bind(i(block))
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// A liquidation's steps that ended without a transaction mined (refused by the node's
    /// estimate, or cancelled after an earlier step failed).
    pub async fn unmined_ended_steps(&self, liquidation: &str) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(&format!(
            "{JOB_COLUMNS} WHERE liquidation_key = $1 AND status IN ('failed', 'cancelled') AND mined_block IS NULL ORDER BY seq"
        ))
        .bind(liquidation)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// One job by its key.
    pub async fn job(&self, key: &str) -> Result<Option<Job>, StoreError> {
        let r = sqlx::query(&format!("{JOB_COLUMNS} WHERE job_key = $1"))
            .bind(key)
            .fetch_optional(self.store.pool())
            .await?;
        r.as_ref().map(job_from_row).transpose()
    }

    /// Concluded jobs on `chain_id` whose transaction was mined above `block` (what a reorg
    /// forking at `block` may have retracted), each with the block it was mined in, in the
    /// order they were added.
    pub async fn mined_above(
        &self,
        chain_id: u64,
        block: u64,
    ) -> Result<Vec<(Job, u64)>, StoreError> {
        let rows = sqlx::query(&format!(
            "{JOB_COLUMNS} WHERE chain_id = $1 AND status IN ('done', 'failed') AND mined_block > $2 ORDER BY seq"
        ))
        .bind(i(chain_id))
        .bind(i(block))
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((job_from_row(r)?, r.try_get::<i64, _>(10)? as u64)))
            .collect()
    }

    /// A concluded job goes again: `sent` when it has attempts (the relayer follows them
    /// first, and sends again at the same nonce only when none is mined or held), `pending`
    /// otherwise. False when it is open already or there is no such job.
    pub async fn revive_job(&self, key: &str, why: &str) -> Result<bool, StoreError> {
        self.revive_job_from(key, &["done", "failed", "cancelled"], why)
            .await
    }

    /// [`Self::revive_job`] for a job whose status is one of `from`.
    pub async fn revive_job_from(
        &self,
        key: &str,
        from: &[&str],
        why: &str,
    ) -> Result<bool, StoreError> {
        let has_attempts = !self.attempts(key).await?.is_empty();
        let statuses = from
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let done = sqlx::query(&format!("UPDATE relay_jobs SET status = $2, detail = $3, mined_block = NULL WHERE job_key = $1 AND status IN ({statuses})"))
            .bind(key)
            .bind(if has_attempts { "sent" } else { "pending" })
            .bind(why)
            .execute(self.store.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn attempts(&self, job: &str) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT tx_hash, nonce, max_fee, priority_fee, gas_limit, sent_at_ms FROM relay_attempts WHERE job_key = $1 ORDER BY sent_at_ms, tx_hash",
        )
        .bind(job)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let num = |s: String| s.parse::<u128>().map_err(|e| bad("fee")(e.to_string()));
                Ok(Attempt {
                    tx_hash: B256::from_str(&r.try_get::<String, _>(0)?)
                        .map_err(|e| bad("hash")(e.to_string()))?,
                    nonce: r.try_get::<i64, _>(1)? as u64,
                    max_fee: num(r.try_get(2)?)?,
                    priority_fee: num(r.try_get(3)?)?,
                    gas_limit: r.try_get::<i64, _>(4)? as u64,
                    sent_at_ms: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Records a liquidation request; false if it is already there.
    pub async fn add_liquidation(&self, key: &str, request: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO safe_liquidations (liquidation_key, request, created_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .bind(request)
        .bind(now())
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    fn liquidation_row(r: &steward_store::sqlx::any::AnyRow) -> Result<Liquidation, StoreError> {
        let hash: Option<String> = r.try_get(2)?;
        Ok(Liquidation {
            key: r.try_get(0)?,
            request: r.try_get(1)?,
            safe_tx_hash: hash
                .map(|h| B256::from_str(&h).map_err(|e| bad("hash")(e.to_string())))
                .transpose()?,
            outcome: r.try_get(3)?,
            reopened: r.try_get::<i64, _>(4)? as u64,
        })
    }

    pub async fn liquidation(&self, key: &str) -> Result<Option<Liquidation>, StoreError> {
        let r = sqlx::query("SELECT liquidation_key, request, safe_tx_hash, outcome, reopened FROM safe_liquidations WHERE liquidation_key = $1")
            .bind(key)
            .fetch_optional(self.store.pool())
            .await?;
        r.as_ref().map(Self::liquidation_row).transpose()
    }

    pub async fn liquidation_by_safe_tx(
        &self,
        hash: B256,
    ) -> Result<Option<Liquidation>, StoreError> {
        let r = sqlx::query("SELECT liquidation_key, request, safe_tx_hash, outcome, reopened FROM safe_liquidations WHERE safe_tx_hash = $1")
            .bind(hash.to_string())
            .fetch_optional(self.store.pool())
            .await?;
        r.as_ref().map(Self::liquidation_row).transpose()
    }

    pub async fn set_liquidation_tx(&self, key: &str, hash: B256) -> Result<(), StoreError> {
        sqlx::query("UPDATE safe_liquidations SET safe_tx_hash = $2 WHERE liquidation_key = $1")
            .bind(key)
            .bind(hash.to_string())
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// A reorg retracted the transaction of a liquidation's outcome: the outcome is cleared
    /// and the reopening counted. Returns the liquidation as it was (its outcome) and the new
    /// count; `None` when it had no outcome (already reopened).
    pub async fn reopen_liquidation(
        &self,
        key: &str,
    ) -> Result<Option<(Liquidation, u64)>, StoreError> {
        let Some(before) = self.liquidation(key).await? else {
            return Ok(None);
        };
        let done = sqlx::query("UPDATE safe_liquidations SET outcome = NULL, reopened = reopened + 1 WHERE liquidation_key = $1 AND outcome IS NOT NULL")
            .bind(key)
            .execute(self.store.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let reopened = before.reopened + 1;
        Ok(Some((before, reopened)))
    }

    /// Records the outcome unless one is there; returns the outcome that stands.
    pub async fn set_liquidation_outcome(
        &self,
        key: &str,
        outcome: &str,
    ) -> Result<String, StoreError> {
        sqlx::query("UPDATE safe_liquidations SET outcome = $2 WHERE liquidation_key = $1 AND outcome IS NULL")
            .bind(key)
            .bind(outcome)
            .execute(self.store.pool())
            .await?;
        let r = sqlx::query("SELECT outcome FROM safe_liquidations WHERE liquidation_key = $1")
            .bind(key)
            .fetch_one(self.store.pool())
            .await?;
        Ok(r.try_get::<Option<String>, _>(0)?
            .unwrap_or_else(|| outcome.to_owned()))
    }
}

/// A job's columns, then (index 10) the block its transaction was mined in.
const JOB_COLUMNS: &str = "SELECT job_key, relayer, chain_id, kind, target, data, safe_tx_hash, liquidation_key, status, detail, mined_block FROM relay_jobs";

fn job_from_row(r: &sqlx::any::AnyRow) -> Result<Job, StoreError> {
    let hash: Option<String> = r.try_get(6)?;
    Ok(Job {
        key: r.try_get(0)?,
        relayer: addr(&r.try_get::<String, _>(1)?)?,
        chain_id: r.try_get::<i64, _>(2)? as u64,
        kind: r.try_get(3)?,
        target: addr(&r.try_get::<String, _>(4)?)?,
        data: r.try_get(5)?,
        safe_tx_hash: hash
            .map(|h| B256::from_str(&h).map_err(|e| bad("hash")(e.to_string())))
            .transpose()?,
        liquidation_key: r.try_get(7)?,
        status: r.try_get(8)?,
        detail: r.try_get(9)?,
    })
}
