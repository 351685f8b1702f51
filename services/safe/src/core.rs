//! The queue's rules: proposals, submissions, signatures, executions, owner changes.
//!
//! Every handler runs under one lock (`serial`), so nonces are handed out one at a time:
//! two proposals requested together never share a nonce, and an execution seen by the
//! relayer cannot interleave with a proposal reading the queue. Each handler writes the store
//! first and returns the events to append; a redelivered request finds its row and returns
//! the same events again (same keys: the log drops the copies).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::rpc::types::Log;
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;
use steward_chain::{ChainError, EndpointPool, LogFilter};
use steward_config::section::safes::RelayerConfig;
use steward_config::{ChainConfig, Config, Finality};
use steward_events::{
    ChainLogObserved, ChainReorgDetected, ChainStateObserved, Envelope, LiquidationRequested,
    Payload, SafeProposalRequested, SafeSignatureAccepted, SafeSignatureRejected,
    SafeSignatureSubmitted, SafeTxExecuted, SafeTxFailed, SafeTxProposed, SafeTxReady,
    SafeTxReopened, SafeTxSubmitted, SafeTxSuperseded,
};
use steward_log::HandlerError;
use steward_store::StoreError;
use tokio::sync::{Mutex, Notify};

use crate::account;
use crate::decode::Decoder;
use crate::multisend::{self, Call};
use crate::queue::{Account, Job, Queue, Row_, Status};
use crate::signature::{self, Kind, OwnerSignature};
use crate::simulate;
use crate::tx::{SafeTx, Version};
use crate::NAME;

/// How far before the block of an event the queue looks for executions whose logs it has not
/// handled yet (the watcher's confirmation depth and the relayer's lead over it).
const EXECUTION_LOOKBACK: u64 = 256;

/// Chains a signature made for the wrong one most likely came from, checked when a
/// signature recovers to no owner (besides every configured chain).
const KNOWN_CHAINS: &[u64] = &[
    1, 10, 56, 100, 137, 250, 324, 1101, 5000, 8453, 42161, 42220, 43114, 59144, 534352, 11155111,
    17000, 84532, 421614, 31337,
];

/// A configured Safe, ready to use.
pub struct SafeRt {
    pub name: String,
    pub address: Address,
    pub chain: String,
    pub chain_id: u64,
    pub pool: EndpointPool,
    pub decoder: Decoder,
    pub multi_send: Address,
    pub multi_send_call_only: Address,
    pub accessor: Option<Address>,
    /// The relayer account that executes this Safe's ready transactions.
    pub relayer: Option<Address>,
}

/// A relayer account: its key never leaves this struct (no Debug, never logged).
pub struct RelayerRt {
    pub address: Address,
    pub signer: PrivateKeySigner,
    pub chain_id: u64,
    pub pool: EndpointPool,
    pub policy: RelayerConfig,
    /// The chain's `finality`: receipts above the final block are looked at again until
    /// they are final (the watcher reports reorgs only of blocks it has reported).
    pub finality: Finality,
}

/// The safe service's state and rules.
pub struct Core {
    pub queue: Queue,
    pub safes: Vec<SafeRt>,
    pub relayers: Vec<RelayerRt>,
    /// Chain ids checked for "signed for another chain".
    other_chains: Vec<u64>,
    serial: Mutex<()>,
    /// Wakes the relayer when a job is added.
    pub relayer_wake: Arc<Notify>,
}

/// An RPC failure as a handler error: retried when it may pass, dead-lettered when not.
pub fn rpc(e: ChainError) -> HandlerError {
    if e.is_retryable() {
        HandlerError::Retry(e.to_string())
    } else {
        HandlerError::Fatal(e.to_string())
    }
}

pub fn store(e: StoreError) -> HandlerError {
    HandlerError::Retry(format!("store: {e}"))
}

fn hex(b: &[u8]) -> String {
    format!("0x{}", alloy::primitives::hex::encode(b))
}

/// `0x` hex to bytes, with the field named when it is not hex.
pub fn unhex(field: &str, s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    alloy::primitives::hex::decode(t).map_err(|e| format!("{field} is not hex: {e}"))
}

fn uint(field: &str, s: &str) -> Result<U256, String> {
    let t = s.trim();
    let v = if let Some(h) = t.strip_prefix("0x") {
        U256::from_str_radix(h, 16)
    } else {
        U256::from_str_radix(t, 10)
    };
    v.map_err(|_| format!("{field} must be a whole number (decimal or 0x hex), got `{s}`"))
}

fn address(field: &str, s: &str) -> Result<Address, String> {
    Address::from_str(s.trim())
        .map_err(|_| format!("{field} must be an address (0x and 40 hex digits), got `{s}`"))
}

/// An event caused by `parent`, with a key of its own (facts about a Safe transaction have
/// one key whoever notices them first).
pub fn keyed<P: Payload>(parent: &Envelope, key: String, payload: &P, chain_id: u64) -> Envelope {
    let mut e = parent.derive(NAME, &key, payload).with_chain(chain_id);
    e.key = key;
    e
}

/// The SafeTxProposed of a stored row's announcement.
pub fn proposed_of(row: &Row_) -> Result<(Envelope, SafeTxProposed), HandlerError> {
    let env = Envelope::from_json(row.proposed.as_bytes()).map_err(|e| {
        HandlerError::Fatal(format!(
            "stored proposal of {} does not decode: {e}",
            row.safe_tx_hash
        ))
    })?;
    let p = env.payload::<SafeTxProposed>().map_err(|e| {
        HandlerError::Fatal(format!(
            "stored proposal of {} does not decode: {e}",
            row.safe_tx_hash
        ))
    })?;
    Ok((env, p))
}

impl Core {
    /// Builds every configured Safe and relayer; contacts no endpoint.
    pub fn new(config: &Config, queue: Queue) -> anyhow::Result<Self> {
        let mut pools: HashMap<String, EndpointPool> = HashMap::new();
        let mut safes = Vec::new();
        let mut relayers: Vec<RelayerRt> = Vec::new();
        for (i, s) in config.safes.iter().enumerate() {
            let at = format!("safes[{i}] (`{}`)", s.name);
            let chain = config
                .chains
                .iter()
                .find(|c| c.name == s.chain)
                .ok_or_else(|| {
                    anyhow::anyhow!("{at}: no chain named `{}` in `chains:`", s.chain)
                })?;
            let pool = match pools.get(&chain.name) {
                Some(p) => p.clone(),
                None => {
                    let p = account::pool_for(chain)
                        .map_err(|e| anyhow::anyhow!("{at}: chain `{}`: {e}", chain.name))?;
                    pools.insert(chain.name.clone(), p.clone());
                    p
                }
            };
            let a = |field: &str, v: &str| {
                address(&format!("{at}.{field}"), v).map_err(anyhow::Error::msg)
            };
            let decoder = Decoder::new(&config.base_dir, &s.abis)
                .map_err(|e| anyhow::anyhow!("{at}.abis: {e}"))?;
            let relayer = match &s.relayer {
                Some(r) if r.enabled() => Some(Self::relayer(&mut relayers, r, chain, &pool, &at)?),
                _ => None,
            };
            safes.push(SafeRt {
                name: s.name.clone(),
                address: a("address", &s.address)?,
                chain: chain.name.clone(),
                chain_id: chain.chain_id,
                pool,
                decoder,
                multi_send: a("multi_send", &s.multi_send)?,
                multi_send_call_only: a("multi_send_call_only", &s.multi_send_call_only)?,
                accessor: s
                    .simulate_tx_accessor
                    .as_deref()
                    .map(|v| a("simulate_tx_accessor", v))
                    .transpose()?,
                relayer,
            });
        }
        let mut other_chains: Vec<u64> = KNOWN_CHAINS.to_vec();
        other_chains.extend(config.chains.iter().map(|c| c.chain_id));
        other_chains.sort_unstable();
        other_chains.dedup();
        Ok(Self {
            queue,
            safes,
            relayers,
            other_chains,
            serial: Mutex::new(()),
            relayer_wake: Arc::new(Notify::new()),
        })
    }

    fn relayer(
        relayers: &mut Vec<RelayerRt>,
        r: &RelayerConfig,
        chain: &ChainConfig,
        pool: &EndpointPool,
        at: &str,
    ) -> anyhow::Result<Address> {
        let chain_id = chain.chain_id;
        // The key is a secret: the error says what is wrong with it, never what it is.
        let signer = PrivateKeySigner::from_str(r.key.expose().trim()).map_err(|_| {
            anyhow::anyhow!("{at}.relayer.key is not a valid private key (32 bytes of hex)")
        })?;
        let address = signer.address();
        if let Some(existing) = relayers.iter().find(|x| x.address == address) {
            if existing.chain_id != chain_id {
                anyhow::bail!("{at}.relayer: the same relayer key serves Safes on two chains; give each chain its own key");
            }
            return Ok(address);
        }
        relayers.push(RelayerRt {
            address,
            signer,
            chain_id,
            pool: pool.clone(),
            policy: r.clone(),
            finality: chain.finality,
        });
        Ok(address)
    }

    /// The Safe named or addressed by `s`.
    pub fn find(&self, s: &str) -> Option<usize> {
        let t = s.trim();
        self.safes
            .iter()
            .position(|x| x.name == t || Address::from_str(t).is_ok_and(|a| a == x.address))
    }

    fn find_at(&self, chain_id: Option<u64>, address: Address) -> Option<usize> {
        self.safes
            .iter()
            .position(|x| x.address == address && chain_id.is_none_or(|c| c == x.chain_id))
    }

    /// Reads the Safe from the chain and stores what it says.
    pub async fn refresh(&self, i: usize) -> Result<Account, HandlerError> {
        let s = &self.safes[i];
        let a = account::read(&s.pool, s.address).await.map_err(rpc)?;
        self.queue.save_account(&a).await.map_err(store)?;
        Ok(a)
    }

    /// Handles one event; returns the events to append.
    pub async fn handle(&self, env: &Envelope) -> Result<Vec<Envelope>, HandlerError> {
        let _one_at_a_time = self.serial.lock().await;
        let bad = |e: steward_events::EnvelopeError| {
            HandlerError::Fatal(format!("{} does not decode: {e}", env.event_type))
        };
        match env.event_type.as_str() {
            SafeProposalRequested::TYPE => self.propose(env, &env.payload().map_err(bad)?).await,
            SafeTxSubmitted::TYPE => self.submitted(env, &env.payload().map_err(bad)?).await,
            SafeSignatureSubmitted::TYPE => self.signature(env, &env.payload().map_err(bad)?).await,
            LiquidationRequested::TYPE => self.liquidation(env, &env.payload().map_err(bad)?).await,
            ChainLogObserved::TYPE => self.chain_log(env, &env.payload().map_err(bad)?).await,
            ChainStateObserved::TYPE => self.chain_state(env, &env.payload().map_err(bad)?).await,
            ChainReorgDetected::TYPE => self.reorg(env, &env.payload().map_err(bad)?).await,
            _ => Ok(Vec::new()),
        }
    }

    /// Runs `f` under the queue's lock (for the relayer).
    pub async fn serially<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let _one_at_a_time = self.serial.lock().await;
        f.await
    }

    // ------------------------------------------------------------------ proposals

    /// The transaction a list of calls makes: one call as it is, several through MultiSend
    /// (MultiSendCallOnly unless a call needs DELEGATECALL), none as a rejection.
    pub fn build(&self, i: usize, calls: &[Call], nonce: u64) -> SafeTx {
        let s = &self.safes[i];
        match calls {
            [] => SafeTx::rejection(s.address, nonce),
            [one] => {
                let mut t = SafeTx::call(one.to, one.value, one.data.clone(), nonce);
                t.operation = one.operation;
                t
            }
            many => {
                let target = if many.iter().any(|c| c.operation == 1) {
                    s.multi_send
                } else {
                    s.multi_send_call_only
                };
                let mut t = SafeTx::call(target, U256::ZERO, multisend::encode(many), nonce);
                t.operation = 1;
                t
            }
        }
    }

    /// The next nonce: after the chain's and after everything still queued.
    async fn next_nonce(&self, i: usize, onchain: u64) -> Result<u64, HandlerError> {
        let highest = self
            .queue
            .highest_pending_nonce(self.safes[i].address)
            .await
            .map_err(store)?;
        Ok(highest.map_or(onchain, |h| (h + 1).max(onchain)))
    }

    /// Queues `tx` (simulated and decoded) and returns its announcement, or the existing
    /// row's when the same transaction or origin is already queued.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn enqueue(
        &self,
        i: usize,
        parent: &Envelope,
        acct: &Account,
        tx: SafeTx,
        reason: String,
        origin: String,
        origin_key: &str,
    ) -> Result<(Envelope, bool), HandlerError> {
        let s = &self.safes[i];
        let version = acct.hash_version();
        let hash = tx.hash(s.chain_id, s.address, version);
        if let Some(row) = self.queue.by_hash(hash).await.map_err(store)? {
            return Ok((proposed_of(&row)?.0, false));
        }
        let sim = match s.accessor {
            Some(accessor) => Some(
                simulate::simulate(&s.pool, s.address, accessor, &tx)
                    .await
                    .map_err(rpc)?,
            ),
            None => None,
        };
        let nonce = u64::try_from(tx.nonce).unwrap_or(u64::MAX);
        let payload = SafeTxProposed {
            safe: s.address.to_checksum(None),
            safe_tx_hash: hash.to_string(),
            nonce,
            to: tx.to.to_checksum(None),
            value: tx.value.to_string(),
            data: hex(&tx.data),
            operation: tx.operation,
            safe_tx_gas: tx.safe_tx_gas.to_string(),
            base_gas: tx.base_gas.to_string(),
            gas_price: tx.gas_price.to_string(),
            gas_token: tx.gas_token.to_checksum(None),
            refund_receiver: tx.refund_receiver.to_checksum(None),
            would_revert: sim.as_ref().is_some_and(|x| !x.success),
            reason,
            decoded: Some(s.decoder.describe(tx.to, tx.value, &tx.data, tx.operation)),
            origin: Some(origin),
            threshold: Some(acct.threshold),
            simulation: sim.and_then(|x| x.reason),
        };
        let out = keyed(
            parent,
            format!("safe:proposed:{hash}"),
            &payload,
            s.chain_id,
        );
        let row = Row_ {
            safe_tx_hash: hash,
            safe: s.address,
            chain_id: s.chain_id,
            nonce,
            status: Status::Queued,
            proposed: String::from_utf8_lossy(&out.to_json()).into_owned(),
            tx,
            executed_tx: None,
            reopened: 0,
        };
        if !self.queue.insert(&row, origin_key).await.map_err(store)? {
            // Its origin was queued by an earlier delivery: announce that one again.
            if let Some(row) = self.queue.by_origin(origin_key).await.map_err(store)? {
                return Ok((proposed_of(&row)?.0, false));
            }
            return Err(HandlerError::Retry(format!(
                "{hash} was neither queued nor found; trying again"
            )));
        }
        tracing::info!(safe = %s.name, safe_tx_hash = %hash, nonce, would_revert = payload.would_revert, "Safe transaction queued");
        Ok((out, true))
    }

    /// `safe.proposal.requested`.
    async fn propose(
        &self,
        env: &Envelope,
        req: &SafeProposalRequested,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let i = self.find(&req.safe).ok_or_else(|| {
            HandlerError::Fatal(format!(
                "no Safe `{}` in `safes:` (configured: {})",
                req.safe,
                self.safes
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if let Some(row) = self.queue.by_origin(&env.key).await.map_err(store)? {
            return Ok(vec![proposed_of(&row)?.0]);
        }
        let mut calls = Vec::with_capacity(req.calls.len());
        for (n, c) in req.calls.iter().enumerate() {
            let f = |field: &str| format!("calls[{n}].{field}");
            let call = (|| -> Result<Call, String> {
                if c.operation > 1 {
                    return Err(format!(
                        "{} must be 0 (CALL) or 1 (DELEGATECALL), got {}",
                        f("operation"),
                        c.operation
                    ));
                }
                Ok(Call {
                    operation: c.operation,
                    to: address(&f("to"), &c.to)?,
                    value: uint(&f("value"), &c.value)?,
                    data: Bytes::from(unhex(&f("data"), &c.data)?),
                })
            })()
            .map_err(|e| {
                HandlerError::Fatal(format!("safe.proposal.requested for `{}`: {e}", req.safe))
            })?;
            calls.push(call);
        }
        if calls.is_empty() && req.replace_nonce.is_none() {
            return Err(HandlerError::Fatal(format!(
                "safe.proposal.requested for `{}` has no calls: a rejection needs `replace_nonce` (the nonce it cancels)",
                req.safe
            )));
        }
        let acct = self.refresh(i).await?;
        let nonce = match req.replace_nonce {
            Some(n) if n < acct.nonce => {
                return Err(HandlerError::Fatal(format!(
                "cannot replace nonce {n} of `{}`: it is already executed (the Safe's nonce is {})",
                req.safe, acct.nonce
            )))
            }
            Some(n) => n,
            None => self.next_nonce(i, acct.nonce).await?,
        };
        let tx = self.build(i, &calls, nonce);
        let (out, _) = self
            .enqueue(
                i,
                env,
                &acct,
                tx,
                req.reason.clone(),
                env.source.clone(),
                &env.key,
            )
            .await?;
        Ok(vec![out])
    }

    // ------------------------------------------------------------------ signatures

    fn rejected(
        &self,
        parent: &Envelope,
        safe: &str,
        hash: &str,
        owner: Option<String>,
        reason: &str,
        detail: String,
    ) -> Envelope {
        tracing::info!(safe, safe_tx_hash = hash, reason, detail = %detail, "signature refused");
        let mut e = parent.derive(
            NAME,
            "rejected",
            &SafeSignatureRejected {
                safe: safe.to_owned(),
                safe_tx_hash: hash.to_owned(),
                owner,
                reason: reason.to_owned(),
                detail,
            },
        );
        if let Some(c) = parent.chain_id {
            e = e.with_chain(c);
        }
        e
    }

    /// The chain (or pre-v1.3.0 domain) a signature that fits no owner here was made for.
    fn other_domain(
        &self,
        i: usize,
        tx: &SafeTx,
        raw: &[u8],
        owners: &[Address],
    ) -> Option<String> {
        let s = &self.safes[i];
        let mut candidates: Vec<(u64, B256)> = self
            .other_chains
            .iter()
            .filter(|c| **c != s.chain_id)
            .map(|c| (*c, tx.hash(*c, s.address, Version::Current)))
            .collect();
        candidates.push((0, tx.hash(s.chain_id, s.address, Version::Legacy)));
        signature::signed_for_another_chain(raw, owners, &candidates).map(|c| {
            if c == 0 {
                "it was made over the pre-v1.3.0 hash (a domain without chain id)".to_owned()
            } else {
                format!("it was made for chain {c}, not chain {}", s.chain_id)
            }
        })
    }

    /// Checks `raw` as `claimed`'s signature of `row` and records it. Returns the events:
    /// accepted (and ready when it completes the threshold) or rejected with the reason.
    #[allow(clippy::too_many_arguments)]
    async fn add_signature(
        &self,
        i: usize,
        parent: &Envelope,
        row: &Row_,
        acct: &Account,
        raw: &[u8],
        claimed: Option<Address>,
        submission_key: &str,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let s = &self.safes[i];
        let safe = s.address.to_checksum(None);
        let hash = row.safe_tx_hash;
        let hash_s = hash.to_string();
        let claimed_s = claimed.map(|c| c.to_checksum(None));
        let reject = |reason: &str, detail: String| {
            Ok(vec![self.rejected(
                parent,
                &safe,
                &hash_s,
                claimed_s.clone(),
                reason,
                detail,
            )])
        };
        if !row.status.pending() {
            return reject(
                "not_pending",
                format!(
                    "the transaction is {} (nonce {} is used); it takes no more signatures",
                    row.status.as_str(),
                    row.nonce
                ),
            );
        }
        let sig = match signature::parse(raw, hash) {
            Ok(sig) => sig,
            Err(r) => return reject(r.reason.as_str(), r.detail),
        };
        let recovered_kind = matches!(sig.kind, Kind::Ecdsa | Kind::EthSign);
        if let Some(c) = claimed {
            if sig.owner != c {
                if recovered_kind {
                    if let Some(why) = self.other_domain(i, &row.tx, raw, &acct.owners) {
                        return reject(
                            "wrong_chain",
                            format!("the signature is not for this Safe transaction: {why}"),
                        );
                    }
                    return reject(
                        "wrong_hash",
                        format!("the signature recovers to {}, not {c}: it was made over another hash than {hash} (or with another key)", sig.owner),
                    );
                }
                return reject(
                    "invalid",
                    format!("the signature names {} as its signer, not {c}", sig.owner),
                );
            }
        }
        if !acct.owners.contains(&sig.owner) {
            if recovered_kind {
                if let Some(why) = self.other_domain(i, &row.tx, raw, &acct.owners) {
                    return reject(
                        "wrong_chain",
                        format!("the signature is not for this Safe transaction: {why}"),
                    );
                }
            }
            return reject(
                "not_owner",
                format!(
                    "{} is not an owner of {safe} (owners: {})",
                    sig.owner,
                    acct.owners
                        .iter()
                        .map(|o| o.to_checksum(None))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let hash_data = row.tx.hash_data(s.chain_id, s.address, acct.hash_version());
        if let Err(r) = signature::verify_on_chain(&s.pool, s.address, &sig, hash, &hash_data, None)
            .await
            .map_err(rpc)?
        {
            return reject(r.reason.as_str(), r.detail);
        }
        let owner = sig.owner.to_checksum(None);
        match self
            .queue
            .add_signature(hash, sig.owner, raw, sig.kind.as_str(), submission_key)
            .await
            .map_err(store)?
        {
            Some(k) if k != submission_key => {
                return reject(
                    "duplicate",
                    format!("{owner} already signed this transaction"),
                );
            }
            _ => {}
        }
        let (confirmations, _) = self.confirmations(hash, acct).await?;
        let accepted = keyed(
            parent,
            format!("safe:signature:{hash}:{owner}"),
            &SafeSignatureAccepted {
                safe: safe.clone(),
                safe_tx_hash: hash_s.clone(),
                owner: owner.clone(),
                kind: sig.kind.as_str().to_owned(),
                confirmations,
                threshold: acct.threshold,
                signature: hex(raw),
            },
            s.chain_id,
        );
        tracing::info!(safe = %s.name, safe_tx_hash = %hash, owner = %owner, confirmations, threshold = acct.threshold, "signature accepted");
        let mut out = vec![accepted];
        out.extend(self.readiness(i, parent, row, acct).await?);
        Ok(out)
    }

    /// Valid signatures of `hash` by current owners, and their signers.
    async fn confirmations(
        &self,
        hash: B256,
        acct: &Account,
    ) -> Result<(u32, Vec<Address>), HandlerError> {
        let sigs = self.queue.signatures(hash).await.map_err(store)?;
        let signers: Vec<Address> = sigs
            .into_iter()
            .map(|s| s.owner)
            .filter(|o| acct.owners.contains(o))
            .collect();
        Ok((signers.len() as u32, signers))
    }

    /// Marks `row` ready (announcing it, and handing it to the relayer) when its owners'
    /// signatures reach the threshold, or back to queued when owner changes took it below.
    async fn readiness(
        &self,
        i: usize,
        parent: &Envelope,
        row: &Row_,
        acct: &Account,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let s = &self.safes[i];
        let (n, mut signers) = self.confirmations(row.safe_tx_hash, acct).await?;
        let now = self.queue.by_hash(row.safe_tx_hash).await.map_err(store)?;
        let row = now.as_ref().unwrap_or(row);
        let current = row.status;
        if !current.pending() {
            return Ok(Vec::new());
        }
        if n < acct.threshold || acct.threshold == 0 {
            if current == Status::Ready {
                self.queue
                    .set_status(row.safe_tx_hash, Status::Queued, None)
                    .await
                    .map_err(store)?;
                tracing::warn!(safe = %s.name, safe_tx_hash = %row.safe_tx_hash, confirmations = n, threshold = acct.threshold,
                    "no longer ready: the owners or threshold changed");
            }
            return Ok(Vec::new());
        }
        if current == Status::Queued {
            self.queue
                .set_status(row.safe_tx_hash, Status::Ready, None)
                .await
                .map_err(store)?;
        }
        // The same signers and threshold make the same fact: one key.
        signers.sort();
        let mut fp = Vec::new();
        for o in &signers {
            fp.extend_from_slice(o.as_slice());
        }
        fp.extend_from_slice(&acct.threshold.to_be_bytes());
        let fp = &keccak256(&fp).to_string()[2..14];
        let ready = keyed(
            parent,
            format!("safe:ready:{}:{fp}{}", row.safe_tx_hash, row.generation()),
            &SafeTxReady {
                safe: s.address.to_checksum(None),
                safe_tx_hash: row.safe_tx_hash.to_string(),
                nonce: row.nonce,
                confirmations: n,
                threshold: acct.threshold,
            },
            s.chain_id,
        );
        if let Some(relayer) = s.relayer {
            let key = format!("exec:{}", row.safe_tx_hash);
            let added = self
                .queue
                .add_job(&Job {
                    key: key.clone(),
                    relayer,
                    chain_id: s.chain_id,
                    kind: "exec".into(),
                    target: s.address,
                    data: String::new(),
                    safe_tx_hash: Some(row.safe_tx_hash),
                    liquidation_key: None,
                    status: "pending".into(),
                    detail: None,
                })
                .await
                .map_err(store)?;
            // A job the relayer cancelled while the transaction was not ready (owners
            // changed, or a reorg reopened it) goes again now that it is.
            let revived = !added
                && self
                    .queue
                    .revive_job_from(&key, &["cancelled"], "ready again")
                    .await
                    .map_err(store)?;
            if added || revived {
                self.relayer_wake.notify_one();
            }
        }
        if current == Status::Queued {
            tracing::info!(safe = %s.name, safe_tx_hash = %row.safe_tx_hash, confirmations = n, threshold = acct.threshold, "ready to execute");
        }
        Ok(vec![ready])
    }

    /// `safe.signature.submitted`.
    async fn signature(
        &self,
        env: &Envelope,
        req: &SafeSignatureSubmitted,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let reject = |reason: &str, detail: String| {
            Ok(vec![self.rejected(
                env,
                &req.safe,
                &req.safe_tx_hash,
                Some(req.owner.clone()).filter(|o| !o.is_empty()),
                reason,
                detail,
            )])
        };
        let Ok(hash) = B256::from_str(req.safe_tx_hash.trim()) else {
            return reject(
                "malformed",
                format!("safe_tx_hash `{}` is not 32 bytes of hex", req.safe_tx_hash),
            );
        };
        let raw = match unhex("signature", &req.signature) {
            Ok(r) => r,
            Err(e) => return reject("malformed", e),
        };
        let claimed = if req.owner.trim().is_empty() {
            None
        } else {
            match address("owner", &req.owner) {
                Ok(a) => Some(a),
                Err(e) => return reject("malformed", e),
            }
        };
        let Some(row) = self.queue.by_hash(hash).await.map_err(store)? else {
            return reject(
                "unknown_tx",
                format!("no queued Safe transaction has the hash {hash}"),
            );
        };
        if !req.safe.trim().is_empty()
            && Address::from_str(req.safe.trim()).is_ok_and(|a| a != row.safe)
            && self.find(&req.safe) != self.find_at(Some(row.chain_id), row.safe)
        {
            return reject(
                "wrong_safe",
                format!(
                    "{hash} is a transaction of {}, not of {}",
                    row.safe, req.safe
                ),
            );
        }
        let Some(i) = self.find_at(Some(row.chain_id), row.safe) else {
            return reject(
                "unknown_safe",
                format!("{} is no longer configured in `safes:`", row.safe),
            );
        };
        let acct = self.refresh(i).await?;
        self.add_signature(i, env, &row, &acct, &raw, claimed, &env.key)
            .await
    }

    /// `safe.tx.submitted`: a transaction built elsewhere, with its sender's signature.
    async fn submitted(
        &self,
        env: &Envelope,
        req: &SafeTxSubmitted,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let reject = |reason: &str, detail: String| {
            Ok(vec![self.rejected(
                env,
                &req.safe,
                &req.safe_tx_hash,
                Some(req.sender.clone()),
                reason,
                detail,
            )])
        };
        let Some(i) = self.find(&req.safe) else {
            return reject(
                "unknown_safe",
                format!(
                    "{} is not a Safe Steward queues for (see `safes:`)",
                    req.safe
                ),
            );
        };
        let s = &self.safes[i];
        let parsed = (|| -> Result<(SafeTx, B256, Address, Vec<u8>), String> {
            if req.operation > 1 {
                return Err(format!(
                    "operation must be 0 (CALL) or 1 (DELEGATECALL), got {}",
                    req.operation
                ));
            }
            let tx = SafeTx {
                to: address("to", &req.to)?,
                value: uint("value", &req.value)?,
                data: Bytes::from(unhex("data", &req.data)?),
                operation: req.operation,
                safe_tx_gas: uint("safeTxGas", &req.safe_tx_gas)?,
                base_gas: uint("baseGas", &req.base_gas)?,
                gas_price: uint("gasPrice", &req.gas_price)?,
                gas_token: address("gasToken", &req.gas_token)?,
                refund_receiver: address("refundReceiver", &req.refund_receiver)?,
                nonce: U256::from(req.nonce),
            };
            let claimed = B256::from_str(req.safe_tx_hash.trim()).map_err(|_| {
                format!(
                    "contractTransactionHash `{}` is not 32 bytes of hex",
                    req.safe_tx_hash
                )
            })?;
            Ok((
                tx,
                claimed,
                address("sender", &req.sender)?,
                unhex("signature", &req.signature)?,
            ))
        })();
        let (tx, claimed, sender, raw) = match parsed {
            Ok(p) => p,
            Err(e) => return reject("malformed", e),
        };
        if let Some(row) = self.queue.by_origin(&env.key).await.map_err(store)? {
            // Redelivered: announce it again, with its signature.
            let acct = self.refresh(i).await?;
            let mut out = vec![proposed_of(&row)?.0];
            out.extend(
                self.add_signature(i, env, &row, &acct, &raw, Some(sender), &env.key)
                    .await?,
            );
            return Ok(out);
        }
        let acct = self.refresh(i).await?;
        let hash = tx.hash(s.chain_id, s.address, acct.hash_version());
        if hash != claimed {
            let other = self.other_chains.iter().find(|c| {
                **c != s.chain_id && tx.hash(**c, s.address, Version::Current) == claimed
            });
            return match other {
                Some(c) => reject("wrong_chain", format!("contractTransactionHash {claimed} is this transaction's hash on chain {c}; on chain {} it is {hash}", s.chain_id)),
                None => reject("wrong_hash", format!("contractTransactionHash {claimed} is not the hash of these fields: recomputed {hash} (chain {}, Safe {}, v{})", s.chain_id, s.address, acct.version)),
            };
        }
        if req.nonce < acct.nonce {
            return reject(
                "nonce_used",
                format!(
                    "nonce {} is already executed: the Safe's nonce is {}",
                    req.nonce, acct.nonce
                ),
            );
        }
        if !acct.owners.contains(&sender) {
            return reject(
                "not_owner",
                format!("sender {sender} is not an owner of {}", s.address),
            );
        }
        let mut out = Vec::new();
        let row = match self.queue.by_hash(hash).await.map_err(store)? {
            Some(row) => row,
            None => {
                // Check the sender's signature before queueing anything in its name.
                match signature::parse(&raw, hash) {
                    Ok(sig) if sig.owner == sender => {}
                    Ok(sig) if matches!(sig.kind, Kind::Ecdsa | Kind::EthSign) => {
                        return match self.other_domain(i, &tx, &raw, &acct.owners) {
                            Some(why) => reject("wrong_chain", format!("the signature is not for this transaction: {why}")),
                            None => reject("wrong_hash", format!("the signature recovers to {}, not the sender {sender}: it was made over another hash (or with another key)", sig.owner)),
                        };
                    }
                    Ok(sig) => {
                        return reject(
                            "invalid",
                            format!(
                                "the signature names {} as its signer, not the sender {sender}",
                                sig.owner
                            ),
                        )
                    }
                    Err(r) => return reject(r.reason.as_str(), r.detail),
                }
                let origin = match req
                    .origin
                    .as_deref()
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                {
                    Some(o) => format!("api:{sender} ({o})"),
                    None => format!("api:{sender}"),
                };
                let (proposed, _) = self
                    .enqueue(i, env, &acct, tx, String::new(), origin, &env.key)
                    .await?;
                out.push(proposed);
                self.queue
                    .by_hash(hash)
                    .await
                    .map_err(store)?
                    .ok_or_else(|| {
                        HandlerError::Retry(format!("{hash} not found after queueing"))
                    })?
            }
        };
        out.extend(
            self.add_signature(i, env, &row, &acct, &raw, Some(sender), &env.key)
                .await?,
        );
        Ok(out)
    }

    // ------------------------------------------------------------------ executions

    /// A Safe transaction ran on chain (seen by the watcher or in the relayer's receipt):
    /// marks it executed (or failed: `ExecutionFailure`), supersedes what waited at used
    /// nonces, and re-evaluates the rest against the owners and threshold now.
    pub async fn executed(
        &self,
        i: usize,
        parent: Option<&Envelope>,
        safe_tx_hash: B256,
        transaction_hash: B256,
        block_number: u64,
        success: bool,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let s = &self.safes[i];
        let acct = self.refresh(i).await?;
        let mut out = Vec::new();
        if let Some(row) = self.queue.by_hash(safe_tx_hash).await.map_err(store)? {
            // A superseded transaction cannot run at a used nonce: its own execution means
            // the chain changed under the conclusion (a reorg retracted what superseded it,
            // reported or not). The chain is the truth: it is executed.
            if row.status.pending() || row.status == Status::Superseded {
                if row.status == Status::Superseded {
                    tracing::warn!(safe = %s.name, safe_tx_hash = %safe_tx_hash, transaction_hash = %transaction_hash,
                        "a transaction the queue had called superseded was executed: the chain changed under it");
                }
                out.extend(
                    self.mark_executed(i, &row, transaction_hash, block_number, success)
                        .await?,
                );
            }
        } else {
            tracing::info!(safe = %s.name, safe_tx_hash = %safe_tx_hash, "a transaction Steward did not queue was executed");
        }
        let fallback = parent.cloned();
        out.extend(
            self.settle(
                i,
                fallback.as_ref(),
                &acct,
                Some(safe_tx_hash),
                block_number,
            )
            .await?,
        );
        Ok(out)
    }

    /// Marks a pending `row` executed (or failed) by `transaction_hash` and announces it.
    async fn mark_executed(
        &self,
        i: usize,
        row: &Row_,
        transaction_hash: B256,
        block_number: u64,
        success: bool,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let s = &self.safes[i];
        let safe_tx_hash = row.safe_tx_hash;
        let status = if success {
            Status::Executed
        } else {
            Status::Failed
        };
        self.queue
            .set_status(safe_tx_hash, status, Some(&transaction_hash.to_string()))
            .await
            .map_err(store)?;
        let (story, _) = proposed_of(row)?;
        let e = if success {
            keyed(
                &story,
                format!("safe:executed:{safe_tx_hash}{}", row.generation()),
                &SafeTxExecuted {
                    safe: s.address.to_checksum(None),
                    safe_tx_hash: safe_tx_hash.to_string(),
                    nonce: row.nonce,
                    transaction_hash: transaction_hash.to_string(),
                    block_number,
                },
                s.chain_id,
            )
        } else {
            keyed(&story, format!("safe:failed:{safe_tx_hash}{}", row.generation()), &SafeTxFailed {
                safe: s.address.to_checksum(None),
                safe_tx_hash: safe_tx_hash.to_string(),
                error: "the Safe ran the transaction but its call reverted (ExecutionFailure); the nonce is used".into(),
                transaction_hash: Some(transaction_hash.to_string()),
            }, s.chain_id)
        };
        tracing::info!(safe = %s.name, safe_tx_hash = %safe_tx_hash, transaction_hash = %transaction_hash, success, "Safe transaction executed");
        let mut out = vec![e];
        out.extend(
            crate::liquidation::after_execution(
                self,
                i,
                &story,
                safe_tx_hash,
                transaction_hash,
                success,
            )
            .await?,
        );
        Ok(out)
    }

    /// The Safe's own execution logs (`ExecutionSuccess`/`ExecutionFailure`) from
    /// [`EXECUTION_LOOKBACK`] blocks before `since` to the head: where a transaction whose
    /// nonce is used looks for its own execution before it is called superseded.
    async fn recent_executions(&self, i: usize, since: u64) -> Result<Vec<Log>, HandlerError> {
        let s = &self.safes[i];
        let head = s.pool.block_number().await.map_err(rpc)?;
        let from = since.saturating_sub(EXECUTION_LOOKBACK).min(head);
        s.pool
            .logs(&LogFilter {
                from_block: from,
                to_block: head,
                address: vec![s.address],
                topics: crate::relayer::EXECUTION_TOPICS.to_vec(),
            })
            .await
            .map_err(rpc)
    }

    /// Supersedes pending transactions whose nonce the Safe has used, and re-evaluates the
    /// readiness of the others.
    ///
    /// `since` is the block of the event being handled. The account is read at the head, which
    /// may be past executions whose logs the queue has not handled yet (the same transaction's
    /// `ExecutionSuccess` follows its `ChangedThreshold`; a later block's execution follows
    /// this one's): a transaction whose nonce is used with no known execution at it is looked
    /// for among the Safe's execution logs since then, and marked executed when it ran itself.
    async fn settle(
        &self,
        i: usize,
        parent: Option<&Envelope>,
        acct: &Account,
        last_executed: Option<B256>,
        since: u64,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let s = &self.safes[i];
        let mut out = Vec::new();
        let mut recent: Option<Vec<Log>> = None;
        for row in self.queue.pending(s.address).await.map_err(store)? {
            let (story, _) = proposed_of(&row)?;
            if row.nonce < acct.nonce {
                let known = self
                    .queue
                    .executed_at(s.address, row.nonce)
                    .await
                    .map_err(store)?;
                if known.is_none() {
                    let logs = match &recent {
                        Some(l) => l,
                        None => recent.insert(self.recent_executions(i, since).await?),
                    };
                    if let Some((log, success)) =
                        crate::relayer::execution_log(logs, s.address, row.safe_tx_hash)
                    {
                        let (Some(tx), Some(block)) = (log.transaction_hash, log.block_number)
                        else {
                            return Err(HandlerError::Retry(
                                "an execution log without its transaction hash or block".into(),
                            ));
                        };
                        tracing::info!(safe = %s.name, safe_tx_hash = %row.safe_tx_hash, transaction_hash = %tx,
                            "its nonce is used by its own execution, ahead of the execution's log");
                        out.extend(self.mark_executed(i, &row, tx, block, success).await?);
                        continue;
                    }
                }
                let by = match known {
                    Some(h) => h.to_string(),
                    None if row.nonce + 1 == acct.nonce => {
                        last_executed.map_or_else(|| "unknown".to_owned(), |h| h.to_string())
                    }
                    None => "unknown".to_owned(),
                };
                self.queue
                    .set_status(row.safe_tx_hash, Status::Superseded, None)
                    .await
                    .map_err(store)?;
                tracing::info!(safe = %s.name, safe_tx_hash = %row.safe_tx_hash, nonce = row.nonce, by = %by, "superseded: its nonce was used");
                out.push(keyed(
                    &story,
                    format!("safe:superseded:{}{}", row.safe_tx_hash, row.generation()),
                    &SafeTxSuperseded {
                        safe: s.address.to_checksum(None),
                        safe_tx_hash: row.safe_tx_hash.to_string(),
                        nonce: row.nonce,
                        by_safe_tx_hash: by,
                    },
                    s.chain_id,
                ));
                out.extend(crate::liquidation::superseded(self, &story, row.safe_tx_hash).await?);
                continue;
            }
            out.extend(
                self.readiness(i, parent.unwrap_or(&story), &row, acct)
                    .await?,
            );
        }
        Ok(out)
    }

    /// `chain.log.observed`: executions and owner changes of configured Safes.
    async fn chain_log(
        &self,
        env: &Envelope,
        l: &ChainLogObserved,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let Ok(at) = Address::from_str(&l.address) else {
            return Ok(Vec::new());
        };
        let Some(i) = self.find_at(env.chain_id, at) else {
            return Ok(Vec::new());
        };
        if l.removed {
            return self.retracted(i, env, l).await;
        }
        match l.event.as_str() {
            "ExecutionSuccess" | "ExecutionFailure" => {
                let hash = l
                    .args
                    .get("txHash")
                    .and_then(Value::as_str)
                    .and_then(|h| B256::from_str(h).ok());
                let tx = B256::from_str(&l.transaction_hash).unwrap_or_default();
                match hash {
                    Some(h) => {
                        self.executed(
                            i,
                            Some(env),
                            h,
                            tx,
                            l.block_number,
                            l.event == "ExecutionSuccess",
                        )
                        .await
                    }
                    None => Err(HandlerError::Fatal(format!(
                        "{} without a txHash argument",
                        l.event
                    ))),
                }
            }
            "AddedOwner" | "RemovedOwner" | "ChangedThreshold" => {
                let acct = self.refresh(i).await?;
                tracing::info!(safe = %self.safes[i].name, event = %l.event, owners = acct.owners.len(), threshold = acct.threshold, "owners changed; queue re-evaluated");
                self.settle(i, Some(env), &acct, None, l.block_number).await
            }
            _ => Ok(Vec::new()),
        }
    }

    /// `chain.log.observed` with `removed`: a reorg retracted an event of a configured Safe.
    /// An execution the queue concluded from is undone unless its transaction is mined on the
    /// canonical chain (the reorg only moved it): the transaction, and what it superseded,
    /// wait again (`safe.tx.reopened`) and are re-evaluated; where the canonical chain has
    /// used the nonce, they stay queued for its own execution logs, ingested next, to settle.
    /// Owner and threshold changes re-evaluate the queue against the chain as it is now.
    async fn retracted(
        &self,
        i: usize,
        env: &Envelope,
        l: &ChainLogObserved,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let s = &self.safes[i];
        let acct = self.refresh(i).await?;
        tracing::warn!(safe = %s.name, event = %l.event, transaction_hash = %l.transaction_hash, block = l.block_number,
            "a Safe event was retracted by a reorg");
        if !matches!(l.event.as_str(), "ExecutionSuccess" | "ExecutionFailure") {
            return self.settle(i, Some(env), &acct, None, l.block_number).await;
        }
        let (Some(hash), Ok(tx)) = (
            l.args
                .get("txHash")
                .and_then(Value::as_str)
                .and_then(|h| B256::from_str(h).ok()),
            B256::from_str(&l.transaction_hash),
        ) else {
            return Err(HandlerError::Fatal(format!(
                "retracted {} without a txHash argument or transaction hash",
                l.event
            )));
        };
        if s.pool.receipt(tx).await.map_err(rpc)?.is_some() {
            tracing::info!(safe = %s.name, safe_tx_hash = %hash, transaction_hash = %tx,
                "the retracted execution is mined on the canonical chain too: the queue's conclusion stands");
            return Ok(Vec::new());
        }
        self.execution_retracted(i, &acct, hash, tx, l.block_number, &l.block_hash)
            .await
    }

    /// An execution of the Safe `i` (Ethereum transaction `tx`, in `block_number`) is no
    /// longer on the chain: what it concluded waits again.
    async fn execution_retracted(
        &self,
        i: usize,
        acct: &Account,
        hash: B256,
        tx: B256,
        block_number: u64,
        block_hash: &str,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let s = &self.safes[i];
        // What to reopen: the executed transaction if it is ours and this was its execution,
        // and what was superseded at its nonce (at any nonce the Safe has not used now, when
        // the execution was not Steward's).
        let mut reopen: Vec<(Row_, Status)> = Vec::new();
        let ours = self.queue.by_hash(hash).await.map_err(store)?.filter(|r| {
            matches!(r.status, Status::Executed | Status::Failed)
                && r.executed_tx
                    .as_deref()
                    .is_some_and(|t| B256::from_str(t).is_ok_and(|t| t == tx))
        });
        let from = ours.as_ref().map_or(acct.nonce, |r| r.nonce);
        for r in self
            .queue
            .superseded_from(s.address, from)
            .await
            .map_err(store)?
        {
            let free = match &ours {
                Some(o) => r.nonce == o.nonce,
                None => self
                    .queue
                    .executed_at(s.address, r.nonce)
                    .await
                    .map_err(store)?
                    .is_none(),
            };
            if free {
                reopen.push((r, Status::Superseded));
            }
        }
        if let Some(o) = ours {
            let status = o.status;
            reopen.insert(0, (o, status));
        }
        let mut out = Vec::new();
        for (row, previous) in reopen {
            let Some(row) = self
                .queue
                .reopen(row.safe_tx_hash, previous)
                .await
                .map_err(store)?
            else {
                continue;
            };
            let (story, proposed) = proposed_of(&row)?;
            tracing::warn!(safe = %s.name, safe_tx_hash = %row.safe_tx_hash, nonce = row.nonce, previous = previous.as_str(),
                onchain_nonce = acct.nonce, "back in the queue: the execution that concluded it was retracted by a reorg");
            out.push(keyed(
                &story,
                format!("safe:reopened:{}:{}", row.safe_tx_hash, row.reopened),
                &SafeTxReopened {
                    safe: s.address.to_checksum(None),
                    safe_tx_hash: row.safe_tx_hash.to_string(),
                    nonce: row.nonce,
                    previous_status: previous.as_str().to_owned(),
                    transaction_hash: tx.to_string(),
                    block_number,
                    block_hash: block_hash.to_owned(),
                    reopened: row.reopened,
                    reason: proposed.reason,
                },
                s.chain_id,
            ));
            // A liquidation it carried no longer has an outcome.
            if let Some(l) = self
                .queue
                .liquidation_by_safe_tx(row.safe_tx_hash)
                .await
                .map_err(store)?
            {
                out.extend(crate::liquidation::retract(self, &l.key, tx).await?);
            }
            // Where the Safe has used the nonce on the canonical chain, its execution logs
            // (ingested after this retraction) settle the transaction.
            if row.nonce >= acct.nonce {
                out.extend(self.readiness(i, &story, &row, acct).await?);
            }
            // The relayer's job goes again (it was concluded by the retracted execution, or
            // cancelled when someone else executed): it follows its own transactions first.
            // After readiness: a job woken while the row was still queued would be
            // cancelled as not ready.
            if s.relayer.is_some()
                && self
                    .queue
                    .revive_job(
                        &format!("exec:{}", row.safe_tx_hash),
                        "reopened: a reorg retracted the execution",
                    )
                    .await
                    .map_err(store)?
            {
                self.relayer_wake.notify_one();
            }
        }
        Ok(out)
    }

    /// `chain.reorg.detected`: relayed liquidation transactions (approval, `liquidationCall`)
    /// mined above the fork and not on the canonical chain go again, at their nonce, and the
    /// liquidation's outcome is retracted. (A Safe's executions are followed through its
    /// retracted logs instead: see [`Self::retracted`].)
    async fn reorg(
        &self,
        env: &Envelope,
        r: &ChainReorgDetected,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let Some(chain) = env.chain_id else {
            return Ok(Vec::new());
        };
        self.revisit(chain, r.fork_block_number, false).await
    }

    /// Relayed transactions on `chain` concluded from receipts in blocks above `above` whose
    /// receipts are gone: the jobs go again (at their nonce), liquidations' outcomes are
    /// retracted, and with `executions` (blocks the watcher has not reported, so no retracted
    /// log will come) relayed Safe executions are reopened.
    pub async fn revisit(
        &self,
        chain: u64,
        above: u64,
        executions: bool,
    ) -> Result<Vec<Envelope>, HandlerError> {
        // First every lookup (the RPC may fail midway; the event is then handled again from
        // the start), then the changes: jobs revived and liquidations retracted together, so
        // a failure cannot leave a job revived whose liquidation keeps its retracted outcome
        // (a revived job is no longer listed as mined above the fork).
        let mut moved: Vec<(String, u64)> = Vec::new();
        let mut lost: Vec<(Job, u64, Option<B256>)> = Vec::new();
        for (job, block) in self.queue.mined_above(chain, above).await.map_err(store)? {
            if job.kind == "exec" && !executions {
                continue;
            }
            let Some(rel) = self.relayers.iter().find(|x| x.address == job.relayer) else {
                continue;
            };
            let attempts = self.queue.attempts(&job.key).await.map_err(store)?;
            let mut mined = None;
            for a in &attempts {
                if let Some(receipt) = rel.pool.receipt(a.tx_hash).await.map_err(rpc)? {
                    mined = Some(receipt.block_number.to::<u64>());
                    break;
                }
            }
            match mined {
                // Moved, not lost: the conclusion stands.
                Some(now) => moved.push((job.key.clone(), now)),
                None => lost.push((job, block, attempts.last().map(|a| a.tx_hash))),
            }
        }
        let mut out = Vec::new();
        // Relayed Safe executions: reopened as for a retracted `ExecutionSuccess` (which
        // revives the job). The block's hash is not known here: it is left empty.
        let (execs, lost): (Vec<_>, Vec<_>) =
            lost.into_iter().partition(|(job, ..)| job.kind == "exec");
        let mut safe_execs = Vec::new();
        for (job, block, last) in execs {
            let (Some(hash), Some(tx)) = (job.safe_tx_hash, last) else {
                continue;
            };
            let Some(i) = self
                .safes
                .iter()
                .position(|s| s.address == job.target && s.chain_id == chain)
            else {
                continue;
            };
            let acct = self.refresh(i).await?;
            safe_execs.push((i, acct, hash, tx, block));
        }
        for (key, block) in moved {
            self.queue.set_job_mined(&key, block).await.map_err(store)?;
        }
        // Per liquidation, the retracted transaction to name: its `liquidationCall`'s if that
        // was retracted too, else its approval's.
        let mut liquidations: Vec<(String, B256, bool)> = Vec::new();
        for (job, _, last) in &lost {
            if let (Some(key), Some(last)) = (&job.liquidation_key, last) {
                let call = job.kind == "liquidate";
                match liquidations.iter_mut().find(|(k, ..)| k == key) {
                    Some(l) if call => *l = (key.clone(), *last, true),
                    Some(_) => {}
                    None => liquidations.push((key.clone(), *last, call)),
                }
            }
        }
        for (i, acct, hash, tx, block) in safe_execs {
            tracing::warn!(safe = %self.safes[i].name, safe_tx_hash = %hash, transaction_hash = %tx, block,
                "the relayer's execution is no longer on the chain (a reorg above the final block)");
            out.extend(
                self.execution_retracted(i, &acct, hash, tx, block, "")
                    .await?,
            );
        }
        for (key, tx, _) in &liquidations {
            out.extend(crate::liquidation::retract(self, key, *tx).await?);
        }
        for (job, ..) in &lost {
            tracing::warn!(job = %job.key, above, "a reorg retracted a relayed transaction; the job goes again");
            self.queue
                .revive_job(&job.key, "reopened: a reorg retracted its transaction")
                .await
                .map_err(store)?;
        }
        // A retracted liquidation's later steps that ended unmined (the call refused after the
        // retracted approval, or cancelled behind a failed step) go again, after the steps
        // before them (the relayer takes a liquidation's jobs in order).
        for (key, ..) in &liquidations {
            for job in self.queue.unmined_ended_steps(key).await.map_err(store)? {
                tracing::warn!(job = %job.key, "a step that ended after a retracted one goes again");
                self.queue
                    .revive_job_from(
                        &job.key,
                        &["failed", "cancelled"],
                        "an earlier step was retracted by a reorg",
                    )
                    .await
                    .map_err(store)?;
            }
        }
        if !lost.is_empty() || !liquidations.is_empty() {
            self.relayer_wake.notify_one();
        }
        Ok(out)
    }

    /// `chain.state.observed`: a polled nonce, owner list or threshold of a Safe changed
    /// (the watcher's view when no event was seen).
    async fn chain_state(
        &self,
        env: &Envelope,
        st: &ChainStateObserved,
    ) -> Result<Vec<Envelope>, HandlerError> {
        let Ok(at) = Address::from_str(&st.address) else {
            return Ok(Vec::new());
        };
        let Some(i) = self.find_at(env.chain_id, at) else {
            return Ok(Vec::new());
        };
        let relevant = ["nonce()", "getOwners()", "getThreshold()"].contains(&st.function.as_str());
        if !relevant || st.previous.as_ref().is_none_or(|p| *p == st.value) {
            return Ok(Vec::new());
        }
        let acct = self.refresh(i).await?;
        self.settle(i, Some(env), &acct, None, st.block_number)
            .await
    }

    /// At start: every ready transaction of a Safe with a relayer has its job.
    pub async fn recover(&self) -> Result<(), HandlerError> {
        for (i, s) in self.safes.iter().enumerate() {
            if s.relayer.is_none() {
                continue;
            }
            for row in self.queue.pending(s.address).await.map_err(store)? {
                if row.status == Status::Ready {
                    let acct = match self.queue.account(s.address).await.map_err(store)? {
                        Some(a) => a,
                        None => continue,
                    };
                    let (story, _) = proposed_of(&row)?;
                    // Events already announced; only the job matters here.
                    let _ = self.readiness(i, &story, &row, &acct).await?;
                }
            }
        }
        Ok(())
    }

    /// The packed signatures of a ready transaction, checked against the owners now.
    pub async fn packed_signatures(
        &self,
        row: &Row_,
        acct: &Account,
    ) -> Result<Bytes, HandlerError> {
        let sigs = self
            .queue
            .signatures(row.safe_tx_hash)
            .await
            .map_err(store)?;
        let mut parsed: Vec<OwnerSignature> = Vec::new();
        for s in sigs {
            if !acct.owners.contains(&s.owner) {
                continue;
            }
            if let Ok(p) = signature::parse(&s.signature, row.safe_tx_hash) {
                parsed.push(p);
            }
        }
        parsed.sort_by_key(|p| p.owner);
        parsed.truncate(acct.threshold as usize);
        Ok(signature::pack(&parsed))
    }
}
