//! The api's read model: Safe transactions, their confirmations, and the safe service's
//! verdicts on submissions, kept from `safe.*` events by [`ApiProjection`] (exactly once per
//! event, through the store's projection protocol) and read by the HTTP handlers.
//!
//! Every write is an upsert that tolerates order: under redelivery an execution may be
//! applied before the proposal it belongs to. A transaction's status only moves forward
//! (queued → ready → failed → superseded → executed, see [`rank`]), so a late `ready` never
//! hides an execution; the one way back is `safe.tx.reopened` (a reorg retracted the
//! execution that concluded it), which puts it back to `queued` without its execution.

use std::collections::HashMap;
use std::str::FromStr;

use alloy::primitives::{Address, B256};
use async_trait::async_trait;
use serde_json::Value;
use steward_events::{
    Envelope, Event, SafeSignatureAccepted, SafeSignatureRejected, SafeTxProposed,
};
use steward_store::sqlx::{self, Any, AnyPool, Row, Transaction};
use steward_store::{ApplyError, Projection, StoreError};

/// The projection's name (its applied markers and position) and the api's consumer name.
pub const PROJECTION: &str = "api";

/// A hash as the read model keys it: `0x` and 64 lowercase hex digits; `None` if it is not one.
pub fn normalize_hash(s: &str) -> Option<String> {
    B256::from_str(s.trim()).ok().map(|h| format!("{h:#x}"))
}

/// An address as the read model stores it: checksummed; the input as given when it is not
/// an address (the events' producer checked it; nothing is lost by keeping it).
fn normalize_address(s: &str) -> String {
    Address::from_str(s.trim())
        .map(|a| a.to_checksum(None))
        .unwrap_or_else(|_| s.to_owned())
}

/// How far along a status is: a status never moves to a lower rank.
pub fn rank(status: &str) -> u8 {
    match status {
        "ready" => 1,
        "failed" => 2,
        "superseded" => 3,
        "executed" => 4,
        _ => 0,
    }
}

/// Applies `safe.*` events to the api's tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiProjection;

type Tx<'a, 'b> = &'a mut Transaction<'b, Any>;

fn ms(env: &Envelope) -> i64 {
    env.time.timestamp_millis()
}

fn fatal(what: &str, e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Fatal(format!("{what}: {e}"))
}

fn hash_of(s: &str) -> Result<String, ApplyError> {
    normalize_hash(s).ok_or_else(|| fatal("safe_tx_hash is not a 32-byte hash", s))
}

/// The row exists (a bare one if its proposal has not been applied yet).
async fn ensure_row(tx: Tx<'_, '_>, hash: &str, at: i64) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO api_safe_txs (safe_tx_hash, status, modified_at_ms) VALUES ($1, 'queued', $2) \
         ON CONFLICT (safe_tx_hash) DO NOTHING",
    )
    .bind(hash)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `modified_at_ms` moves to `at` if that is later.
async fn touch(tx: Tx<'_, '_>, hash: &str, at: i64) -> Result<(), ApplyError> {
    sqlx::query(
        "UPDATE api_safe_txs SET modified_at_ms = CASE WHEN modified_at_ms < $2 THEN $2 ELSE modified_at_ms END \
         WHERE safe_tx_hash = $1",
    )
    .bind(hash)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves the status to `status` unless it is already as far or further.
async fn advance_status(tx: Tx<'_, '_>, hash: &str, status: &str) -> Result<bool, ApplyError> {
    let current: String = sqlx::query("SELECT status FROM api_safe_txs WHERE safe_tx_hash = $1")
        .bind(hash)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    if rank(status) <= rank(&current) {
        return Ok(false);
    }
    sqlx::query("UPDATE api_safe_txs SET status = $2 WHERE safe_tx_hash = $1")
        .bind(hash)
        .bind(status)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

async fn record_outcome(
    tx: Tx<'_, '_>,
    env: &Envelope,
    hash: &str,
    owner: Option<&str>,
    reason: Option<&str>,
    detail: Option<&str>,
) -> Result<(), ApplyError> {
    let Some(cause) = env.causation_id else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO api_outcomes (causation_id, event_type, safe_tx_hash, owner, reason, detail, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (causation_id) DO NOTHING",
    )
    .bind(cause.to_string())
    .bind(&env.event_type)
    .bind(hash)
    .bind(owner)
    .bind(reason)
    .bind(detail)
    .bind(ms(env))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `api:<sender>` (or `api:<sender> (<client's origin>)`) names the owner who proposed
/// through a Safe Transaction Service client.
fn proposer_of(origin: Option<&str>) -> Option<String> {
    let rest = origin?.strip_prefix("api:")?;
    let sender = rest.split_whitespace().next()?;
    Address::from_str(sender).ok().map(|a| a.to_checksum(None))
}

impl ApiProjection {
    async fn proposed(
        &self,
        tx: Tx<'_, '_>,
        env: &Envelope,
        p: &SafeTxProposed,
    ) -> Result<(), ApplyError> {
        let hash = hash_of(&p.safe_tx_hash)?;
        let at = ms(env);
        ensure_row(tx, &hash, at).await?;
        let proposed = serde_json::to_string(p).map_err(|e| fatal("payload", e))?;
        sqlx::query(
            "UPDATE api_safe_txs SET safe = $2, nonce = $3, proposed = $4, proposer = $5, origin = $6, \
             threshold = COALESCE(threshold, $7), submitted_at_ms = COALESCE(submitted_at_ms, $8) \
             WHERE safe_tx_hash = $1",
        )
        .bind(&hash)
        .bind(normalize_address(&p.safe))
        .bind(i64::try_from(p.nonce).map_err(|e| fatal("nonce", e))?)
        .bind(proposed)
        .bind(proposer_of(p.origin.as_deref()))
        .bind(p.origin.as_deref())
        .bind(p.threshold.map(i64::from))
        .bind(at)
        .execute(&mut **tx)
        .await?;
        touch(tx, &hash, at).await
    }

    async fn accepted(
        &self,
        tx: Tx<'_, '_>,
        env: &Envelope,
        a: &SafeSignatureAccepted,
    ) -> Result<(), ApplyError> {
        let hash = hash_of(&a.safe_tx_hash)?;
        let at = ms(env);
        let owner = normalize_address(&a.owner);
        ensure_row(tx, &hash, at).await?;
        sqlx::query(
            "INSERT INTO api_confirmations (safe_tx_hash, owner, signature, kind, submitted_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (safe_tx_hash, owner) DO NOTHING",
        )
        .bind(&hash)
        .bind(&owner)
        .bind(a.signature.to_ascii_lowercase())
        .bind(&a.kind)
        .bind(at)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE api_safe_txs SET threshold = $2 WHERE safe_tx_hash = $1")
            .bind(&hash)
            .bind(i64::from(a.threshold))
            .execute(&mut **tx)
            .await?;
        touch(tx, &hash, at).await?;
        record_outcome(tx, env, &hash, Some(&owner), None, None).await
    }

    async fn rejected(
        &self,
        tx: Tx<'_, '_>,
        env: &Envelope,
        r: &SafeSignatureRejected,
    ) -> Result<(), ApplyError> {
        // A refusal may name a hash the submitter got wrong: it belongs to no row.
        let hash = normalize_hash(&r.safe_tx_hash).unwrap_or_else(|| r.safe_tx_hash.clone());
        let owner = r.owner.as_deref().map(normalize_address);
        record_outcome(
            tx,
            env,
            &hash,
            owner.as_deref(),
            Some(&r.reason),
            Some(&r.detail),
        )
        .await
    }

    async fn status(
        &self,
        tx: Tx<'_, '_>,
        env: &Envelope,
        hash: &str,
        status: &str,
    ) -> Result<bool, ApplyError> {
        let hash = hash_of(hash)?;
        let at = ms(env);
        ensure_row(tx, &hash, at).await?;
        touch(tx, &hash, at).await?;
        advance_status(tx, &hash, status).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proposer_is_read_from_the_origin() {
        let a = Address::repeat_byte(0xab);
        let lower = format!("{a:#x}");
        assert_eq!(
            proposer_of(Some(&format!("api:{lower}"))),
            Some(a.to_checksum(None))
        );
        assert_eq!(
            proposer_of(Some(&format!("api:{lower} ({{\"url\":\"x\"}})"))),
            Some(a.to_checksum(None))
        );
        assert_eq!(proposer_of(Some("rebalancer")), None);
        assert_eq!(proposer_of(None), None);
    }
}

#[async_trait]
impl Projection for ApiProjection {
    fn name(&self) -> &str {
        PROJECTION
    }

    async fn apply(&self, tx: &mut Transaction<'_, Any>, env: &Envelope) -> Result<(), ApplyError> {
        match env.decode()? {
            Event::SafeTxProposed(p) => self.proposed(tx, env, &p).await,
            Event::SafeTxSubmitted(s) => {
                // Only the client's `origin` is kept from a submission (the transaction itself
                // is shown once the safe service has proposed it).
                let (Some(hash), Some(origin)) =
                    (normalize_hash(&s.safe_tx_hash), s.origin.as_deref())
                else {
                    return Ok(());
                };
                ensure_row(tx, &hash, ms(env)).await?;
                sqlx::query(
                    "UPDATE api_safe_txs SET client_origin = COALESCE(client_origin, $2) WHERE safe_tx_hash = $1",
                )
                .bind(&hash)
                .bind(origin)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
            Event::SafeSignatureAccepted(a) => self.accepted(tx, env, &a).await,
            Event::SafeSignatureRejected(r) => self.rejected(tx, env, &r).await,
            Event::SafeTxReady(r) => self
                .status(tx, env, &r.safe_tx_hash, "ready")
                .await
                .map(drop),
            Event::SafeTxExecuted(e) => {
                let hash = hash_of(&e.safe_tx_hash)?;
                self.status(tx, env, &hash, "executed").await?;
                // Optional details of the Ethereum transaction, when the producer gives them.
                let extra: Value = serde_json::from_str(env.data.get()).unwrap_or(Value::Null);
                let text = |k: &str| {
                    extra.get(k).and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                };
                sqlx::query(
                    "UPDATE api_safe_txs SET transaction_hash = $2, block_number = $3, executed_at_ms = $4, \
                     executor = $5, gas_used = $6, eth_gas_price = $7 WHERE safe_tx_hash = $1",
                )
                .bind(&hash)
                .bind(e.transaction_hash.to_ascii_lowercase())
                .bind(i64::try_from(e.block_number).map_err(|x| fatal("block_number", x))?)
                .bind(ms(env))
                .bind(text("executor").map(|a| normalize_address(&a)))
                .bind(text("gas_used").and_then(|g| g.parse::<i64>().ok()))
                .bind(text("effective_gas_price"))
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
            Event::SafeTxFailed(f) => {
                let hash = hash_of(&f.safe_tx_hash)?;
                self.status(tx, env, &hash, "failed").await?;
                let failure = match &f.transaction_hash {
                    Some(t) => format!("{} (transaction {t})", f.error),
                    None => f.error.clone(),
                };
                sqlx::query("UPDATE api_safe_txs SET failure = $2 WHERE safe_tx_hash = $1")
                    .bind(&hash)
                    .bind(failure)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
            Event::SafeTxSuperseded(s) => {
                let hash = hash_of(&s.safe_tx_hash)?;
                self.status(tx, env, &hash, "superseded").await?;
                sqlx::query("UPDATE api_safe_txs SET superseded_by = $2 WHERE safe_tx_hash = $1")
                    .bind(&hash)
                    .bind(
                        normalize_hash(&s.by_safe_tx_hash)
                            .unwrap_or_else(|| s.by_safe_tx_hash.clone()),
                    )
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
            Event::SafeTxReopened(r) => {
                // The one move back: the execution that concluded it was retracted by a reorg.
                let hash = hash_of(&r.safe_tx_hash)?;
                let at = ms(env);
                ensure_row(tx, &hash, at).await?;
                touch(tx, &hash, at).await?;
                sqlx::query(
                    "UPDATE api_safe_txs SET status = 'queued', transaction_hash = NULL, block_number = NULL, \
                     executed_at_ms = NULL, executor = NULL, gas_used = NULL, eth_gas_price = NULL, \
                     failure = NULL, superseded_by = NULL WHERE safe_tx_hash = $1",
                )
                .bind(&hash)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
            // safe.proposal.requested and anything else under safe.>: not the api's business.
            _ => Ok(()),
        }
    }
}

// ------------------------------------------------------------------ reads

/// A Safe transaction as the read model holds it.
#[derive(Debug, Clone)]
pub struct TxRow {
    pub safe_tx_hash: String,
    pub safe: String,
    pub nonce: u64,
    pub proposed: SafeTxProposed,
    pub proposer: Option<String>,
    pub origin: Option<String>,
    pub client_origin: Option<String>,
    pub threshold: Option<u32>,
    pub status: String,
    pub submitted_at_ms: i64,
    pub modified_at_ms: i64,
    pub executed_at_ms: Option<i64>,
    pub transaction_hash: Option<String>,
    pub block_number: Option<u64>,
    pub executor: Option<String>,
    pub gas_used: Option<u64>,
    pub eth_gas_price: Option<String>,
    pub failure: Option<String>,
    pub superseded_by: Option<String>,
}

impl TxRow {
    pub fn is_executed(&self) -> bool {
        self.status == "executed"
    }
}

/// An accepted signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    pub owner: String,
    pub signature: String,
    pub kind: String,
    pub submitted_at_ms: i64,
}

/// The safe service's verdict on one submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: bool,
    pub safe_tx_hash: String,
    pub owner: Option<String>,
    pub reason: Option<String>,
    pub detail: Option<String>,
}

/// Which transactions a list shows, and in which order.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub executed: Option<bool>,
    pub has_confirmations: Option<bool>,
    pub nonce_gte: Option<u64>,
    pub nonce_lte: Option<u64>,
    pub nonce_gt: Option<u64>,
    pub nonce_lt: Option<u64>,
    pub nonce: Option<u64>,
    /// SQL `ORDER BY` terms, from a checked whitelist.
    pub order_by: Vec<&'static str>,
    pub limit: u64,
    pub offset: u64,
}

const TX_COLUMNS: &str = "safe_tx_hash, safe, nonce, proposed, proposer, origin, client_origin, threshold, status, \
     submitted_at_ms, modified_at_ms, executed_at_ms, transaction_hash, block_number, executor, gas_used, \
     eth_gas_price, failure, superseded_by";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("api_safe_txs.{what}: {e}"))
}

fn tx_row(r: &sqlx::any::AnyRow) -> Result<TxRow, StoreError> {
    let proposed: String = r.try_get(3)?;
    let u = |v: Option<i64>, what: &str| -> Result<Option<u64>, StoreError> {
        v.map(|n| u64::try_from(n).map_err(|e| corrupt(what, e)))
            .transpose()
    };
    Ok(TxRow {
        safe_tx_hash: r.try_get(0)?,
        safe: r.try_get(1)?,
        nonce: u(r.try_get(2)?, "nonce")?.unwrap_or(0),
        proposed: serde_json::from_str(&proposed).map_err(|e| corrupt("proposed", e))?,
        proposer: r.try_get(4)?,
        origin: r.try_get(5)?,
        client_origin: r.try_get(6)?,
        threshold: r
            .try_get::<Option<i64>, _>(7)?
            .map(|t| u32::try_from(t).map_err(|e| corrupt("threshold", e)))
            .transpose()?,
        status: r.try_get(8)?,
        submitted_at_ms: r.try_get::<Option<i64>, _>(9)?.unwrap_or_default(),
        modified_at_ms: r.try_get(10)?,
        executed_at_ms: r.try_get(11)?,
        transaction_hash: r.try_get(12)?,
        block_number: u(r.try_get(13)?, "block_number")?,
        executor: r.try_get(14)?,
        gas_used: u(r.try_get(15)?, "gas_used")?,
        eth_gas_price: r.try_get(16)?,
        failure: r.try_get(17)?,
        superseded_by: r.try_get(18)?,
    })
}

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One transaction by its safeTxHash (normalized), if it has been proposed.
pub async fn tx(pool: &AnyPool, hash: &str) -> Result<Option<TxRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {TX_COLUMNS} FROM api_safe_txs WHERE safe_tx_hash = $1 AND proposed IS NOT NULL"
    ))
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(tx_row).transpose()
}

/// A page of a Safe's transactions and how many match in all.
pub async fn list(
    pool: &AnyPool,
    safe: &str,
    q: &ListQuery,
) -> Result<(u64, Vec<TxRow>), StoreError> {
    let mut filter = String::from("safe = $1 AND proposed IS NOT NULL");
    let mut binds: Vec<i64> = Vec::new();
    let mut push = |filter: &mut String, sql: &str, v: u64| {
        binds.push(i(v));
        filter.push_str(&format!(" AND {sql} ${}", binds.len() + 1));
    };
    for (sql, v) in [
        ("nonce >=", q.nonce_gte),
        ("nonce <=", q.nonce_lte),
        ("nonce >", q.nonce_gt),
        ("nonce <", q.nonce_lt),
        ("nonce =", q.nonce),
    ] {
        if let Some(v) = v {
            push(&mut filter, sql, v);
        }
    }
    match q.executed {
        Some(true) => filter.push_str(" AND status = 'executed'"),
        Some(false) => filter.push_str(" AND status <> 'executed'"),
        None => {}
    }
    let has = "EXISTS (SELECT 1 FROM api_confirmations c WHERE c.safe_tx_hash = api_safe_txs.safe_tx_hash)";
    match q.has_confirmations {
        Some(true) => filter.push_str(&format!(" AND {has}")),
        Some(false) => filter.push_str(&format!(" AND NOT {has}")),
        None => {}
    }
    let count_sql = format!("SELECT COUNT(*) FROM api_safe_txs WHERE {filter}");
    let mut count = sqlx::query(&count_sql).bind(safe);
    for b in &binds {
        count = count.bind(*b);
    }
    let total: i64 = count.fetch_one(pool).await?.try_get(0)?;
    let order = if q.order_by.is_empty() {
        "nonce DESC, submitted_at_ms DESC".to_owned()
    } else {
        q.order_by.join(", ")
    };
    let n = binds.len();
    let page_sql = format!(
        "SELECT {TX_COLUMNS} FROM api_safe_txs WHERE {filter} ORDER BY {order}, safe_tx_hash LIMIT ${} OFFSET ${}",
        n + 2,
        n + 3
    );
    let mut page = sqlx::query(&page_sql).bind(safe);
    for b in &binds {
        page = page.bind(*b);
    }
    let rows = page
        .bind(i(q.limit))
        .bind(i(q.offset))
        .fetch_all(pool)
        .await?;
    let rows = rows.iter().map(tx_row).collect::<Result<Vec<_>, _>>()?;
    Ok((u64::try_from(total).unwrap_or(0), rows))
}

/// How many distinct nonces a Safe's transactions use.
pub async fn unique_nonces(pool: &AnyPool, safe: &str) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query(
        "SELECT COUNT(DISTINCT nonce) FROM api_safe_txs WHERE safe = $1 AND proposed IS NOT NULL",
    )
    .bind(safe)
    .fetch_one(pool)
    .await?
    .try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The confirmations of these transactions, oldest first, by hash.
pub async fn confirmations(
    pool: &AnyPool,
    hashes: &[&str],
) -> Result<HashMap<String, Vec<Confirmation>>, StoreError> {
    let mut out: HashMap<String, Vec<Confirmation>> = HashMap::new();
    if hashes.is_empty() {
        return Ok(out);
    }
    let placeholders: Vec<String> = (1..=hashes.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT safe_tx_hash, owner, signature, kind, submitted_at_ms FROM api_confirmations \
         WHERE safe_tx_hash IN ({}) ORDER BY submitted_at_ms, owner",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for h in hashes {
        query = query.bind(*h);
    }
    for r in query.fetch_all(pool).await? {
        let hash: String = r.try_get(0)?;
        out.entry(hash).or_default().push(Confirmation {
            owner: r.try_get(1)?,
            signature: r.try_get(2)?,
            kind: r.try_get(3)?,
            submitted_at_ms: r.try_get(4)?,
        });
    }
    Ok(out)
}

/// The verdict on the submission whose event id is `causation_id`, once there is one.
pub async fn outcome(
    pool: &AnyPool,
    causation_id: uuid::Uuid,
) -> Result<Option<Outcome>, StoreError> {
    let row = sqlx::query(
        "SELECT event_type, safe_tx_hash, owner, reason, detail FROM api_outcomes WHERE causation_id = $1",
    )
    .bind(causation_id.to_string())
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        let event_type: String = r.try_get(0)?;
        Ok(Outcome {
            accepted: event_type == "safe.signature.accepted",
            safe_tx_hash: r.try_get(1)?,
            owner: r.try_get(2)?,
            reason: r.try_get(3)?,
            detail: r.try_get(4)?,
        })
    })
    .transpose()
}
