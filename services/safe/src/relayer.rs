//! The relayer: an account of Steward's own that sends `execTransaction` for ready Safe
//! transactions and the steps of liquidations.
//!
//! Per relayer, jobs go one at a time, in the order they were added (a Safe transaction
//! waits until the Safe's nonce reaches it; jobs behind it go on). A job's transaction is
//! EIP-1559: tip `priority_fee_gwei`, fee cap `min(2 × base fee + tip, max_fee_gwei)`; while
//! the base fee plus the tip is above the cap, nothing is sent. Its nonce is the account's
//! pending nonce when first sent. Not mined within `resubmit_after`: sent again at the same
//! nonce with both fees raised by `bump_percent` (at least the 10% nodes require), never above
//! the cap. Dropped from the mempool (the node no longer knows it and the nonce is unused):
//! sent again at once, so a lost transaction never jams the account. Used by something
//! else (the nonce moved on and none of ours was mined): sent again at a fresh nonce.
//!
//! Every attempt is written to the store before it leaves, with the job marked sent: after a
//! crash the receipts of every attempt are looked up before anything is sent again.
//! The key is used to sign and for nothing else: never logged, never in an event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, Bytes, TxKind, B256, U256};
use steward_chain::{ChainError, Receipt};
use steward_config::Finality;
use steward_events::{Envelope, LiquidationFailed, LiquidationRequested, SafeTxFailed};
use steward_log::{EventLog, HandlerError};
use tokio_util::sync::CancellationToken;

use crate::account;
use crate::core::{keyed, proposed_of, unhex, Core, RelayerRt};
use crate::liquidation;
use crate::queue::{Attempt, Job, Status};
use crate::simulate::revert_reason;

/// How often open jobs are looked at without being woken.
const POLL: Duration = Duration::from_secs(1);
const GWEI: f64 = 1e9;

/// The fees of a first attempt, or `None` while the base fee is above the cap.
pub fn first_fees(
    base_fee: u128,
    policy: &steward_config::section::safes::RelayerConfig,
) -> Option<(u128, u128)> {
    let cap = (policy.max_fee_gwei * GWEI) as u128;
    let tip = (policy.priority_fee_gwei * GWEI) as u128;
    if base_fee.saturating_add(tip) > cap {
        return None;
    }
    Some((
        (base_fee.saturating_mul(2)).saturating_add(tip).min(cap),
        tip,
    ))
}

/// The fees of a replacement: both raised by `bump` percent (at least 10), at least what
/// the market asks now, never above the cap. `None` when the cap leaves no room for a valid
/// replacement.
pub fn bumped_fees(
    prev: (u128, u128),
    now: Option<(u128, u128)>,
    policy: &steward_config::section::safes::RelayerConfig,
) -> Option<(u128, u128)> {
    let cap = (policy.max_fee_gwei * GWEI) as u128;
    let pct = u128::from(policy.bump_percent.max(10));
    let up = |v: u128| v.saturating_mul(100 + pct).div_ceil(100);
    let (mut max_fee, mut tip) = (up(prev.0), up(prev.1));
    if let Some((m, t)) = now {
        max_fee = max_fee.max(m);
        tip = tip.max(t);
    }
    let max_fee = max_fee.min(cap);
    let tip = tip.min(max_fee);
    // Nodes refuse a replacement that raises either fee by less than 10%.
    let min = |v: u128| v.saturating_mul(110).div_ceil(100);
    (max_fee >= min(prev.0) && tip >= min(prev.1)).then_some((max_fee, tip))
}

/// The fees of a job's next send: `Send` them, or wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextFees {
    Send(u128, u128),
    /// The base fee leaves no room under the cap.
    AboveCap,
    /// The transaction in the mempool is at the cap: no valid replacement exists.
    CannotBump,
}

/// The fees of a first send (`again: None`), or of a send at the same nonce as `again`'s fees
/// (`occupied`: a transaction of ours still holds that nonce in the mempool, so a replacement
/// must outbid it). A send whose nonce nothing holds any more replaces nothing: when the cap
/// leaves no room to bump, it goes at what the market asks now.
pub fn next_fees(
    market: Option<(u128, u128)>,
    again: Option<((u128, u128), bool)>,
    policy: &steward_config::section::safes::RelayerConfig,
) -> NextFees {
    let fees = match again {
        None => market,
        Some((prev, occupied)) => match bumped_fees(prev, market, policy) {
            Some(f) => Some(f),
            None if !occupied => market,
            None => return NextFees::CannotBump,
        },
    };
    match fees {
        Some((max_fee, tip)) => NextFees::Send(max_fee, tip),
        None => NextFees::AboveCap,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs every relayer until `shutdown`.
pub async fn run(core: Arc<Core>, log: Arc<dyn EventLog>, shutdown: CancellationToken) {
    if core.relayers.is_empty() {
        return;
    }
    for r in &core.relayers {
        tracing::info!(relayer = %r.address, chain_id = r.chain_id, max_fee_gwei = r.policy.max_fee_gwei, "relayer running");
    }
    // Jobs left by a key that was changed are taken over (or said to be stuck) first.
    let mut pending_takeover = true;
    let mut said: HashMap<String, String> = HashMap::new();
    let mut unsent: Vec<Envelope> = Vec::new();
    loop {
        if pending_takeover {
            pending_takeover = false;
            for r in &core.relayers {
                if let Err(e) = take_over(&core, r).await {
                    tracing::warn!(relayer = %r.address, error = %e, "cannot look at the jobs of a previous relayer key yet; trying again");
                    pending_takeover = true;
                }
            }
        }
        for r in 0..core.relayers.len() {
            let rel = &core.relayers[r];
            // Once per chain: the recheck covers every relayer's jobs on it.
            if !core.relayers[..r]
                .iter()
                .any(|x| x.chain_id == rel.chain_id)
            {
                let rechecked = recheck(&core, rel).await;
                gather(
                    rechecked,
                    rel,
                    "cannot look at recent receipts again",
                    &mut said,
                    &mut unsent,
                );
            }
            let stepped = step(&core, r, &mut said).await;
            gather(stepped, rel, "relayer step failed", &mut said, &mut unsent);
        }
        // What the relayer learned is announced before anything else happens; if the log
        // is down, it is kept and offered again.
        if !unsent.is_empty() {
            match log.append(&unsent).await {
                Ok(_) => unsent.clear(),
                Err(e) => {
                    tracing::warn!(events = unsent.len(), error = %e, "cannot append the relayer's events yet; keeping them")
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = core.relayer_wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    if !unsent.is_empty() {
        if let Err(e) = log.append(&unsent).await {
            tracing::error!(events = unsent.len(), error = %e, "relayer events lost at shutdown; the watcher's ExecutionSuccess/Failure will still settle the queue");
        }
    }
}

/// Keeps the events of a relayer's round, or says its failure (once until it changes).
fn gather(
    result: anyhow::Result<Vec<Envelope>>,
    rel: &RelayerRt,
    what: &'static str,
    said: &mut HashMap<String, String>,
    unsent: &mut Vec<Envelope>,
) {
    match result {
        Ok(events) => unsent.extend(events),
        Err(e) => {
            let msg = e.to_string();
            let slot = format!("__{what}");
            if said.get(&slot).is_none_or(|m| *m != msg) {
                tracing::warn!(relayer = %rel.address, error = %msg, "{what}; trying again");
                said.insert(slot, msg);
            }
        }
    }
}

/// Open jobs on the relayer's chain made for another account (the key was changed): each one
/// none of whose transactions the node knows (never sent, or dropped) becomes this relayer's,
/// so a ready Safe transaction does not wait forever behind a key that is gone. One whose
/// transaction the node still knows stays with its account: sending it again from another
/// would race it; it is named so an operator can settle it (docs/operations.md).
async fn take_over(core: &Core, rel: &RelayerRt) -> anyhow::Result<()> {
    for job in core
        .queue
        .others_open_jobs(rel.chain_id, rel.address)
        .await?
    {
        let mut known = None;
        for a in core.queue.attempts(&job.key).await? {
            if rel.pool.transaction_known(a.tx_hash).await? {
                known = Some(a.tx_hash);
                break;
            }
        }
        match known {
            Some(tx) => tracing::warn!(
                job = %job.key, previous_relayer = %job.relayer, relayer = %rel.address, transaction_hash = %tx,
                "a job of the previous relayer key has a transaction the node still knows: it stays with that account until it is mined or dropped (restart the safe service then to hand it over)"
            ),
            None => {
                core.queue
                    .hand_over(
                        &job.key,
                        rel.address,
                        &format!("taken over from {} after a key change", job.relayer),
                    )
                    .await?;
                tracing::info!(job = %job.key, previous_relayer = %job.relayer, relayer = %rel.address, "job of the previous relayer key taken over");
            }
        }
    }
    Ok(())
}

/// Blocks below the chain's final block whose receipts are still looked at again: the
/// watcher reports a block some time after it is final, and a reorg of a block it never
/// reported is announced by nobody.
const RECHECK_MARGIN: u64 = 16;

/// Looks again at the receipts the relayer concluded from in recent blocks (above the chain's
/// final block, less [`RECHECK_MARGIN`]): a reorg of blocks the watcher has not reported
/// retracts no log and is announced by nobody, so the relayer finds it itself. A receipt
/// gone from the chain revives its job as a reported reorg would ([`Core::revisit`]). It
/// covers every relayer's jobs on the chain.
async fn recheck(core: &Core, rel: &RelayerRt) -> anyhow::Result<Vec<Envelope>> {
    let last_final = match rel.finality {
        Finality::Confirmations(n) => rel.pool.block_number().await?.saturating_sub(n),
        Finality::Tag(t) => rel.pool.header_by_tag(t.as_str()).await?.num(),
    };
    core.serially(core.revisit(
        rel.chain_id,
        last_final.saturating_sub(RECHECK_MARGIN),
        true,
    ))
    .await
    .map_err(err)
}

fn err(e: HandlerError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// One look at a relayer's open jobs: follows the one in flight, or sends the next one
/// that can go. Returns events to announce.
async fn step(
    core: &Core,
    r: usize,
    said: &mut HashMap<String, String>,
) -> anyhow::Result<Vec<Envelope>> {
    let rel = &core.relayers[r];
    let jobs = core.queue.open_jobs(rel.address).await?;
    if let Some(job) = jobs.iter().find(|j| j.status == "sent") {
        return follow(core, rel, job, said).await;
    }
    for job in &jobs {
        match prepare(core, job).await? {
            Prepared::Send(data) => return send(core, rel, job, data, None, said).await,
            Prepared::Wait(why) => {
                if said.get(&job.key) != Some(&why) {
                    tracing::info!(job = %job.key, "{why}");
                    said.insert(job.key.clone(), why);
                }
                // An exec job may wait for its nonce; jobs behind it go on.
                continue;
            }
            Prepared::Drop(why) => {
                tracing::info!(job = %job.key, "job dropped: {why}");
                core.queue
                    .set_job(&job.key, "cancelled", Some(&why))
                    .await?;
            }
        }
    }
    Ok(Vec::new())
}

enum Prepared {
    Send(Bytes),
    Wait(String),
    Drop(String),
}

/// The calldata a job sends now, or why it waits or no longer applies.
async fn prepare(core: &Core, job: &Job) -> anyhow::Result<Prepared> {
    if job.kind != "exec" {
        return Ok(Prepared::Send(Bytes::from(
            unhex("data", &job.data).map_err(anyhow::Error::msg)?,
        )));
    }
    let Some(hash) = job.safe_tx_hash else {
        return Ok(Prepared::Drop("no Safe transaction".into()));
    };
    let Some(row) = core.queue.by_hash(hash).await? else {
        return Ok(Prepared::Drop(format!("{hash} is not in the queue")));
    };
    if row.status != Status::Ready {
        return Ok(Prepared::Drop(format!("{hash} is {}", row.status.as_str())));
    }
    let Some(i) = core
        .safes
        .iter()
        .position(|s| s.address == row.safe && s.chain_id == row.chain_id)
    else {
        return Ok(Prepared::Drop(format!(
            "the Safe {} is no longer configured",
            row.safe
        )));
    };
    let s = &core.safes[i];
    let nonce = account::read_nonce(&s.pool, s.address).await?;
    if row.nonce > nonce {
        return Ok(Prepared::Wait(format!(
            "{hash} waits for nonce {} (the Safe is at {nonce})",
            row.nonce
        )));
    }
    let acct = core.refresh(i).await.map_err(err)?;
    let sigs = core.packed_signatures(&row, &acct).await.map_err(err)?;
    Ok(Prepared::Send(account::exec_calldata(&row.tx, &sigs)))
}

/// Signs and sends a job's transaction.
async fn send(
    core: &Core,
    rel: &RelayerRt,
    job: &Job,
    data: Bytes,
    again: Option<Again<'_>>,
    said: &mut HashMap<String, String>,
) -> anyhow::Result<Vec<Envelope>> {
    // A replacement is the same transaction: it keeps its gas limit.
    let gas_limit = match again {
        Some(Again { last: prev, .. }) => prev.gas_limit,
        None => match rel
            .pool
            .estimate_gas(rel.address, job.target, data.clone(), U256::ZERO)
            .await
        {
            Ok(g) => g.saturating_mul(13) / 10 + 10_000,
            Err(ChainError::Reverted {
                data: rdata,
                message,
                ..
            }) => {
                let reason = rdata.as_ref().map_or(message, |d| revert_reason(d));
                return refused(core, job, &reason, said).await;
            }
            Err(e) => return Err(e.into()),
        },
    };
    let base = rel.pool.base_fee().await?;
    let market = first_fees(base, &rel.policy);
    let prev = again.map(|a| ((a.last.max_fee, a.last.priority_fee), a.occupied));
    let (max_fee, tip) = match next_fees(market, prev, &rel.policy) {
        NextFees::Send(max_fee, tip) => (max_fee, tip),
        NextFees::CannotBump => {
            let why = format!(
                "transaction {} is at the fee cap ({} gwei) and cannot be bumped; waiting for it to be mined",
                again.map(|a| a.last.tx_hash).unwrap_or_default(),
                rel.policy.max_fee_gwei
            );
            if said.get(&job.key) != Some(&why) {
                tracing::warn!(job = %job.key, "{why}");
                said.insert(job.key.clone(), why);
            }
            return Ok(Vec::new());
        }
        NextFees::AboveCap => {
            let why = format!(
                "fees above the cap: base fee {:.2} gwei, cap {} gwei; waiting",
                base as f64 / GWEI,
                rel.policy.max_fee_gwei
            );
            if said.get(&job.key) != Some(&why) {
                tracing::warn!(job = %job.key, "{why}");
                said.insert(job.key.clone(), why);
            }
            return Ok(Vec::new());
        }
    };
    let nonce = match again {
        Some(Again { last: prev, .. }) => prev.nonce,
        None => rel.pool.transaction_count(rel.address, true).await?,
    };
    let mut tx = TxEip1559 {
        chain_id: rel.chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(job.target),
        value: U256::ZERO,
        access_list: Default::default(),
        input: data,
    };
    let sig = rel
        .signer
        .sign_transaction_sync(&mut tx)
        .map_err(|e| anyhow::anyhow!("signing failed: {e}"))?;
    let signed = tx.into_signed(sig);
    let hash = *signed.hash();
    let raw = TxEnvelope::from(signed).encoded_2718();
    let attempt = Attempt {
        tx_hash: hash,
        nonce,
        max_fee,
        priority_fee: tip,
        gas_limit,
        sent_at_ms: now_ms(),
    };
    core.queue.record_attempt(&job.key, &attempt).await?;
    match rel.pool.send_raw_transaction(raw.into(), hash).await {
        Ok(_) => {
            tracing::info!(job = %job.key, transaction_hash = %hash, nonce, max_fee_gwei = max_fee as f64 / GWEI,
                tip_gwei = tip as f64 / GWEI, resend = again.is_some(), "relayer transaction sent");
            Ok(Vec::new())
        }
        Err(e) => {
            let m = e.to_string().to_ascii_lowercase();
            if m.contains("nonce too low") || m.contains("nonce is too low") {
                // The nonce is used: by one of this job's earlier attempts (mined elsewhere
                // after the node dropped it), which the next look finds by its receipt, or by
                // another transaction, and then the next look sends at a fresh nonce.
                for a in core.queue.attempts(&job.key).await? {
                    if a.tx_hash != hash && rel.pool.receipt(a.tx_hash).await?.is_some() {
                        return Err(e.into());
                    }
                }
                core.queue
                    .set_job(
                        &job.key,
                        "pending",
                        Some("nonce used elsewhere; sending again"),
                    )
                    .await?;
            }
            Err(e.into())
        }
    }
}

/// The node refuses a job's transaction (its estimate reverts).
async fn refused(
    core: &Core,
    job: &Job,
    reason: &str,
    said: &mut HashMap<String, String>,
) -> anyhow::Result<Vec<Envelope>> {
    if job.kind == "exec" {
        // It may pass later (funds arriving, a guard's window): keep it, say it once.
        let why = format!("execTransaction would revert now ({reason}); trying again");
        if said.get(&job.key) != Some(&why) {
            tracing::warn!(job = %job.key, "{why}");
            said.insert(job.key.clone(), why);
        }
        return Ok(Vec::new());
    }
    core.queue.set_job(&job.key, "failed", Some(reason)).await?;
    let mut out = Vec::new();
    if let Some(k) = &job.liquidation_key {
        if let Some(l) = core.queue.liquidation(k).await? {
            if l.outcome.is_none() {
                let request = Envelope::from_json(l.request.as_bytes())?;
                let req: LiquidationRequested = request.payload()?;
                let step = if job.kind == "approve" {
                    "the approval of the debt asset"
                } else {
                    "liquidationCall"
                };
                out.push(
                    liquidation::outcome(
                        core,
                        &request,
                        &LiquidationFailed {
                            user: req.user,
                            error: format!("{step} would revert: {reason}"),
                            transaction_hash: None,
                        },
                    )
                    .await
                    .map_err(err)?,
                );
            }
            // The steps after a failed one cannot succeed.
            for j in core.queue.open_jobs(job.relayer).await? {
                if j.liquidation_key.as_deref() == Some(k.as_str()) {
                    core.queue
                        .set_job(&j.key, "cancelled", Some("an earlier step failed"))
                        .await?;
                }
            }
        }
    }
    Ok(out)
}

/// Follows a job in flight: its receipt, or a resend when it was dropped or is slow.
async fn follow(
    core: &Core,
    rel: &RelayerRt,
    job: &Job,
    said: &mut HashMap<String, String>,
) -> anyhow::Result<Vec<Envelope>> {
    let attempts = core.queue.attempts(&job.key).await?;
    // The mined nonce is read before the receipts: an attempt mined between the two reads
    // then shows as mined, never as a nonce used by someone else (which would send the job
    // again at a fresh nonce: a second liquidationCall).
    let mined_nonce = rel.pool.transaction_count(rel.address, false).await?;
    for a in attempts.iter().rev() {
        if let Some(receipt) = rel.pool.receipt(a.tx_hash).await? {
            return finish(core, rel, job, &receipt).await;
        }
    }
    let Some(last) = attempts.last() else {
        core.queue.set_job(&job.key, "pending", None).await?;
        return Ok(Vec::new());
    };
    if mined_nonce > last.nonce {
        // The nonce was used before the receipts were read, by none of ours.
        tracing::warn!(job = %job.key, nonce = last.nonce, "the relayer's nonce was used by another transaction; sending again at a fresh nonce");
        core.queue
            .set_job(&job.key, "pending", Some("nonce used elsewhere"))
            .await?;
        return Ok(Vec::new());
    }
    let known = rel.pool.transaction_known(last.tx_hash).await?;
    let slow = now_ms() - last.sent_at_ms >= rel.policy.resubmit_after.as_millis() as i64;
    if known && !slow {
        return Ok(Vec::new());
    }
    let data = match prepare(core, job).await? {
        Prepared::Send(d) => d,
        // Executed by someone else meanwhile, or no longer ready: the receipt-less attempt
        // is left to drop out of the mempool.
        Prepared::Wait(_) | Prepared::Drop(_) if job.kind == "exec" => {
            core.queue
                .set_job(
                    &job.key,
                    "cancelled",
                    Some("no longer ready while in flight"),
                )
                .await?;
            return Ok(Vec::new());
        }
        Prepared::Wait(_) | Prepared::Drop(_) => return Ok(Vec::new()),
    };
    if !known {
        tracing::warn!(job = %job.key, transaction_hash = %last.tx_hash, "relayer transaction dropped from the mempool; sending again at the same nonce");
    }
    // Whether a transaction of ours still holds the nonce: the last attempt, or an earlier
    // one the node kept when a later one was refused (the pending count then covers it; the
    // mined count was checked above).
    let occupied = known || rel.pool.transaction_count(rel.address, true).await? > last.nonce;
    let again = Again { last, occupied };
    send(core, rel, job, data, Some(again), said).await
}

/// A job sent before and sent again: its last attempt, and whether a transaction of ours
/// still holds its nonce in the node's mempool.
#[derive(Clone, Copy)]
struct Again<'a> {
    last: &'a Attempt,
    occupied: bool,
}

/// A job's transaction was mined.
async fn finish(
    core: &Core,
    rel: &RelayerRt,
    job: &Job,
    receipt: &Receipt,
) -> anyhow::Result<Vec<Envelope>> {
    let tx_hash = receipt.transaction_hash;
    let block = receipt.block_number.to::<u64>();
    tracing::info!(job = %job.key, transaction_hash = %tx_hash, block, success = receipt.success(), gas_used = receipt.gas_used.to::<u64>(), "relayer transaction mined");
    let status = if receipt.success() { "done" } else { "failed" };
    core.queue
        .set_job(
            &job.key,
            status,
            (!receipt.success()).then_some("reverted on chain"),
        )
        .await?;
    // Where it was mined: a reorg below this block revives the job.
    core.queue.set_job_mined(&job.key, block).await?;
    match job.kind.as_str() {
        "exec" => {
            let Some(hash) = job.safe_tx_hash else {
                return Ok(Vec::new());
            };
            let Some(i) = core
                .safes
                .iter()
                .position(|s| s.address == job.target && s.chain_id == rel.chain_id)
            else {
                return Ok(Vec::new());
            };
            if !receipt.success() {
                // Nothing happened on chain: the nonce is unused and owners can still execute.
                let Some(row) = core.queue.by_hash(hash).await? else {
                    return Ok(Vec::new());
                };
                let (story, _) = proposed_of(&row).map_err(err)?;
                return Ok(vec![keyed(&story, format!("safe:failed:{hash}:{tx_hash}"), &SafeTxFailed {
                    safe: core.safes[i].address.to_checksum(None),
                    safe_tx_hash: hash.to_string(),
                    error: "the relayer's execTransaction reverted; the transaction stays queued and an owner can still execute it".into(),
                    transaction_hash: Some(tx_hash.to_string()),
                }, rel.chain_id)]);
            }
            let success = execution_outcome(&receipt.logs, job.target, hash).unwrap_or(true);
            core.serially(core.executed(i, None, hash, tx_hash, block, success))
                .await
                .map_err(err)
        }
        "liquidate" => {
            let Some(k) = &job.liquidation_key else {
                return Ok(Vec::new());
            };
            // Under the queue's lock, as the safe service's handlers: a reorg handled
            // meanwhile (which revives this job) is seen before the outcome is recorded.
            core.serially(async {
                let concluded = core
                    .queue
                    .job(&job.key)
                    .await?
                    .is_some_and(|j| j.status == status);
                let Some(l) = core.queue.liquidation(k).await? else {
                    return Ok(Vec::new());
                };
                if !concluded || l.outcome.is_some() {
                    return Ok(Vec::new());
                }
                let request = Envelope::from_json(l.request.as_bytes())?;
                let req: LiquidationRequested = request.payload()?;
                Ok(vec![liquidation::settle(
                    core,
                    &request,
                    &req,
                    Some(receipt),
                    tx_hash,
                    receipt.success(),
                )
                .await
                .map_err(err)?])
            })
            .await
        }
        _ if !receipt.success() => {
            // An approval that reverted: the liquidation behind it cannot go.
            refused(core, job, "reverted on chain", &mut HashMap::new()).await
        }
        _ => Ok(Vec::new()),
    }
}

/// `ExecutionSuccess` (true) or `ExecutionFailure` (false) of `safe_tx_hash` in a receipt.
pub fn execution_outcome(
    logs: &[alloy::rpc::types::Log],
    safe: Address,
    safe_tx_hash: B256,
) -> Option<bool> {
    execution_log(logs, safe, safe_tx_hash).map(|(_, ok)| ok)
}

/// The `ExecutionSuccess` (true) or `ExecutionFailure` (false) log of `safe_tx_hash` among
/// `logs`. v1.4.1 indexes the hash (a topic); v1.3.0 puts it in the data.
pub fn execution_log(
    logs: &[alloy::rpc::types::Log],
    safe: Address,
    safe_tx_hash: B256,
) -> Option<(&alloy::rpc::types::Log, bool)> {
    let [ok, failed] = EXECUTION_TOPICS;
    logs.iter().filter(|l| l.address() == safe).find_map(|l| {
        let t = l.topics();
        let names = t.get(1).copied() == Some(safe_tx_hash)
            || l.data().data.get(..32) == Some(safe_tx_hash.as_slice());
        match t.first() {
            Some(x) if *x == ok && names => Some((l, true)),
            Some(x) if *x == failed && names => Some((l, false)),
            _ => None,
        }
    })
}

/// `ExecutionSuccess(bytes32,uint256)` and `ExecutionFailure(bytes32,uint256)`.
pub const EXECUTION_TOPICS: [B256; 2] = [
    alloy::primitives::b256!("442e715f626346e8c54381002da614f62bee8d27386535b2521ec8540898556e"),
    alloy::primitives::b256!("23428b18acfb3ea64b08dc0c1d296ea9c09702c09083ca5272e64d115b687d23"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use steward_config::section::safes::RelayerConfig;

    #[test]
    fn execution_topics_are_the_events_hashes() {
        assert_eq!(
            EXECUTION_TOPICS,
            [
                alloy::primitives::keccak256("ExecutionSuccess(bytes32,uint256)"),
                alloy::primitives::keccak256("ExecutionFailure(bytes32,uint256)"),
            ]
        );
    }

    fn policy(max: f64, tip: f64, bump: u32) -> RelayerConfig {
        let mut p: RelayerConfig =
            serde_json::from_value(serde_json::json!({ "key": "" })).unwrap();
        p.max_fee_gwei = max;
        p.priority_fee_gwei = tip;
        p.bump_percent = bump;
        p
    }

    #[test]
    fn at_the_cap_a_held_nonce_waits_and_a_free_one_goes_at_market() {
        let p = policy(50.0, 1.0, 12);
        let gwei = |g: u128| g * 1_000_000_000;
        let at_cap = (gwei(50), gwei(1));
        let market = first_fees(gwei(10), &p);
        assert_eq!(market, Some((gwei(21), gwei(1))));
        // A first send takes the market.
        assert_eq!(
            next_fees(market, None, &p),
            NextFees::Send(gwei(21), gwei(1))
        );
        // Still in the mempool at the cap: no valid replacement, wait.
        assert_eq!(
            next_fees(market, Some((at_cap, true)), &p),
            NextFees::CannotBump
        );
        // The nonce is free again (dropped, or the bump was refused and nothing holds it):
        // the market, even below the earlier fees.
        assert_eq!(
            next_fees(market, Some((at_cap, false)), &p),
            NextFees::Send(gwei(21), gwei(1))
        );
        // ... unless the market is above the cap.
        assert_eq!(
            next_fees(first_fees(gwei(60), &p), Some((at_cap, false)), &p),
            NextFees::AboveCap
        );
        // Below the cap, a held nonce is bumped by at least 10%.
        match next_fees(market, Some(((gwei(30), gwei(1)), true)), &p) {
            NextFees::Send(fee, tip) => assert!(fee >= gwei(33) && tip * 10 >= gwei(11)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fees_respect_the_cap_and_bumps_are_valid_replacements() {
        let g = GWEI as u128;
        let p = policy(100.0, 2.0, 15);
        assert_eq!(first_fees(10 * g, &p), Some((22 * g, 2 * g)));
        // Twice the base fee would pass the cap: capped.
        assert_eq!(first_fees(60 * g, &p), Some((100 * g, 2 * g)));
        // The base fee alone is above what may be paid: wait.
        assert_eq!(first_fees(99 * g, &p), None);
        let b = bumped_fees((22 * g, 2 * g), Some((22 * g, 2 * g)), &p).unwrap();
        assert!(b.0 >= 22 * g * 115 / 100 && b.1 >= 2 * g * 115 / 100);
        // The market rose more than the bump: follow the market.
        let b = bumped_fees((22 * g, 2 * g), Some((60 * g, 2 * g)), &p).unwrap();
        assert_eq!(b.0, 60 * g);
        // At the cap no valid replacement exists.
        assert_eq!(bumped_fees((100 * g, 2 * g), None, &p), None);
        // A bump below 10% is raised to 10%: nodes refuse less.
        let low = policy(1000.0, 2.0, 5);
        let b = bumped_fees((100 * g, 10 * g), None, &low).unwrap();
        assert_eq!(b, (110 * g, 11 * g));
    }
}
