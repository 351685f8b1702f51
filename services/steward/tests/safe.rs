//! The Safe queue end to end, in the `steward` process against a real anvil with the real
//! Safe v1.4.1 contracts: proposals built, simulated and decoded; signatures of every kind
//! accepted or refused with their reason; the threshold checked against live owners; the
//! relayer executing; the watcher confirming executions, superseding what waited at a used
//! nonce and re-evaluating the queue when the threshold changes; liquidations re-checked and
//! carried out through the relayer or a Safe.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use alloy::dyn_abi::JsonAbiExt;
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use serde_json::{json, Value};
use steward_events::{
    Envelope, LiquidationExecuted, LiquidationFailed, LiquidationRequested, LiquidationRetracted,
    LiquidationSkipped, SafeCall, SafeProposalRequested, SafeSignatureAccepted,
    SafeSignatureRejected, SafeSignatureSubmitted, SafeTxExecuted, SafeTxProposed, SafeTxReady,
    SafeTxReopened, SafeTxSubmitted, SafeTxSuperseded,
};
use steward_log::EventLog;
use steward_safe::signature;
use steward_safe::tx::{self, SafeTx, Version};
use steward_testkit::{fixture_artifact, Anvil, SafeDeployment, ANVIL_KEYS};

mod common;

use common::*;

const CHAIN: u64 = 31337;
/// The relayer's account (anvil's sixth).
const RELAYER: usize = 5;

fn key(i: usize) -> PrivateKeySigner {
    PrivateKeySigner::from_str(ANVIL_KEYS[i]).unwrap()
}

fn addr(a: &str) -> Address {
    Address::from_str(a).unwrap()
}

fn calldata(signature: &str, args: &[&str]) -> String {
    let f = steward_chain::abi::parse_function_signature(signature).unwrap();
    let values = steward_chain::abi::coerce_args(&f.inputs, args).unwrap();
    format!(
        "0x{}",
        alloy::primitives::hex::encode(f.abi_encode_input(&values).unwrap())
    )
}

fn hex(b: &[u8]) -> String {
    format!("0x{}", alloy::primitives::hex::encode(b))
}

/// `mint(address,uint256)` of the mock token.
fn mint(to: &str, amount: u64) -> String {
    calldata("mint(address,uint256)", &[to, &amount.to_string()])
}

fn balance_of(anvil: &Anvil, token: &str, who: &str) -> U256 {
    let out = anvil.rpc(
        "eth_call",
        json!([{ "to": token, "data": calldata("balanceOf(address)", &[who]) }, "latest"]),
    );
    U256::from_str(out.as_str().unwrap()).unwrap()
}

/// Anvil with the Safe contracts, a token, and a 2-of-3 Safe owned by keys 0 and 1 and by
/// a 1-of-1 Safe of key 3 (a contract owner, signing by EIP-1271).
struct World {
    anvil: Anvil,
    d: SafeDeployment,
    safe: String,
    inner: String,
    token: String,
}

fn world() -> World {
    let anvil = Anvil::start();
    let d = anvil.deploy_safe();
    let inner = anvil.create_safe(&d, &[key(3).address().to_string()], 1, 1);
    let owners = [
        key(0).address().to_string(),
        key(1).address().to_string(),
        inner.clone(),
    ];
    let safe = anvil.create_safe(&d, &owners, 2, 2);
    let token = anvil.deploy_fixture("MockERC20");
    World {
        anvil,
        d,
        safe,
        inner,
        token,
    }
}

fn config(w: &World, dir: &Path, relayer: bool, extra_watches: &str) -> String {
    std::fs::write(
        dir.join("erc20.abi.json"),
        fixture_artifact("MockERC20").0.to_string(),
    )
    .unwrap();
    let relayer = if relayer {
        "    relayer: {key: \"${SAFE_RELAYER_KEY}\", resubmit_after: 5s}\n"
    } else {
        ""
    };
    format!(
        "chains:
  - name: local
    chain_id: {CHAIN}
    rpc: [{{url: \"{url}\"}}]
    poll_interval: 200ms
    start_block: 1
    multicall: disabled
    watches:
      - {{name: treasury, pack: safe, address: \"{safe}\"}}
{extra_watches}safes:
  - name: treasury
    chain: local
    address: \"{safe}\"
    multi_send: \"{ms}\"
    multi_send_call_only: \"{msco}\"
    simulate_tx_accessor: \"{sim}\"
    abis: [erc20.abi.json]
{relayer}",
        url = w.anvil.url(),
        safe = w.safe,
        ms = w.d.multi_send,
        msco = w.d.multi_send_call_only,
        sim = w.d.simulate_tx_accessor,
    )
}

struct Steward {
    run: Running,
    log: steward_log::embedded::EmbeddedLog,
}

async fn up(dir: &Path, yaml: &str) -> Steward {
    up_with_relayer(dir, yaml, ANVIL_KEYS[RELAYER]).await
}

async fn up_with_relayer(dir: &Path, yaml: &str, relayer_key: &str) -> Steward {
    let cfg = dir.join("steward.yaml");
    std::fs::write(
        &cfg,
        format!("data_dir: {}\n{yaml}", dir.join("data").display()),
    )
    .unwrap();
    let addr = free_addr();
    let mut cmd = steward(&[
        "up",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        &addr.to_string(),
    ]);
    cmd.env("SAFE_RELAYER_KEY", relayer_key);
    let mut run = spawn(&mut cmd);
    wait_ready(addr, &mut run.child);
    let log = steward_log::embedded::EmbeddedLog::open(&dir.join("data/events.db"), "steward")
        .await
        .unwrap();
    Steward { run, log }
}

impl Steward {
    async fn all(&self, event_type: &str) -> Vec<Envelope> {
        self.log
            .read(1, &[event_type.to_owned()], 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.event)
            .collect()
    }

    /// Waits until `n` events of a type satisfy `pred`; returns them.
    async fn wait<P: serde::de::DeserializeOwned + steward_events::Payload>(
        &self,
        event_type: &str,
        n: usize,
        pred: impl Fn(&P) -> bool,
    ) -> Vec<P> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found: Vec<P> = self
                .all(event_type)
                .await
                .iter()
                .filter_map(|e| e.payload::<P>().ok())
                .filter(|p| pred(p))
                .collect();
            if found.len() >= n {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "{n} {event_type} not seen within 60 s (saw {}); steward said:\n{}",
                    found.len(),
                    self.run.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn send(&self, events: &[Envelope]) {
        self.log.append(events).await.unwrap();
    }

    async fn propose(
        &self,
        key: &str,
        calls: Vec<SafeCall>,
        replace: Option<u64>,
    ) -> SafeTxProposed {
        self.send(&[Envelope::new(
            "test",
            key,
            &SafeProposalRequested {
                safe: "treasury".into(),
                calls,
                reason: format!("test {key}"),
                replace_nonce: replace,
            },
        )])
        .await;
        let origin = key.to_owned();
        let mut all = self.all("safe.tx.proposed").await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(p) = all.iter().find(|e| {
                e.payload::<SafeTxProposed>()
                    .is_ok_and(|p| p.reason == format!("test {origin}"))
            }) {
                return p.payload().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "no proposal for {key}:\n{}",
                self.run.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            all = self.all("safe.tx.proposed").await;
        }
    }

    async fn sign(&self, id: &str, p: &SafeTxProposed, owner: &str, sig: &[u8]) {
        self.send(&[Envelope::new(
            "test",
            format!("sig:{id}"),
            &SafeSignatureSubmitted {
                safe: p.safe.clone(),
                safe_tx_hash: p.safe_tx_hash.clone(),
                owner: owner.to_owned(),
                signature: hex(sig),
                via: "test".into(),
            },
        )])
        .await;
    }

    /// The outcome of the signature submitted as `id`: accepted, or the refusal.
    async fn outcome(&self, id: &str) -> Result<SafeSignatureAccepted, SafeSignatureRejected> {
        let key = format!("sig:{id}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let subs = self.all("safe.signature.submitted").await;
            if let Some(sub) = subs.iter().find(|e| e.key == key) {
                for e in self.all("safe.signature.accepted").await {
                    if e.causation_id == Some(sub.id) {
                        return Ok(e.payload().unwrap());
                    }
                }
                for e in self.all("safe.signature.rejected").await {
                    if e.causation_id == Some(sub.id) {
                        return Err(e.payload().unwrap());
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no outcome for {id}:\n{}",
                self.run.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn tx_of(p: &SafeTxProposed) -> SafeTx {
    SafeTx {
        to: addr(&p.to),
        value: U256::from_str(&p.value).unwrap(),
        data: Bytes::from(alloy::primitives::hex::decode(p.data.trim_start_matches("0x")).unwrap()),
        operation: p.operation,
        safe_tx_gas: U256::from_str(&p.safe_tx_gas).unwrap(),
        base_gas: U256::from_str(&p.base_gas).unwrap(),
        gas_price: U256::from_str(&p.gas_price).unwrap(),
        gas_token: addr(&p.gas_token),
        refund_receiver: addr(&p.refund_receiver),
        nonce: U256::from(p.nonce),
    }
}

fn hash_of(p: &SafeTxProposed) -> B256 {
    B256::from_str(&p.safe_tx_hash).unwrap()
}

/// Typed-data ECDSA (v 27/28).
fn typed(i: usize, hash: B256) -> Vec<u8> {
    key(i).sign_hash_sync(&hash).unwrap().as_bytes().to_vec()
}

/// eth_sign (v 31/32).
fn eth_sign(i: usize, hash: B256) -> Vec<u8> {
    let mut s = key(i)
        .sign_message_sync(hash.as_slice())
        .unwrap()
        .as_bytes()
        .to_vec();
    s[64] += 4;
    s
}

fn call(to: &str, data: String) -> SafeCall {
    SafeCall {
        to: to.to_owned(),
        value: "0".into(),
        data,
        operation: 0,
    }
}

/// execTransaction sent by an owner (no relayer).
fn execute_as_owner(w: &World, p: &SafeTxProposed, sigs: &[Vec<u8>]) -> Value {
    let hash = hash_of(p);
    let parsed: Vec<_> = sigs
        .iter()
        .map(|s| signature::parse(s, hash).unwrap())
        .collect();
    let data = steward_safe::account::exec_calldata(&tx_of(p), &signature::pack(&parsed));
    w.anvil.send_transaction(json!({
        "from": key(0).address().to_string(),
        "to": w.safe,
        "data": hex(&data),
    }))
}

#[tokio::test]
async fn a_batch_is_proposed_decoded_signed_two_ways_and_executed_by_the_relayer() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let s = up(dir.path(), &config(&w, dir.path(), true, "")).await;
    let (r1, r2) = (
        "0x00000000000000000000000000000000000000c1",
        "0x00000000000000000000000000000000000000c2",
    );
    let p = s
        .propose(
            "batch",
            vec![call(&w.token, mint(r1, 7)), call(&w.token, mint(r2, 9))],
            None,
        )
        .await;
    // Built as a MultiSendCallOnly batch, hashed as the contract does, simulated, decoded.
    assert_eq!(p.nonce, 0);
    assert_eq!(addr(&p.to), addr(&w.d.multi_send_call_only));
    assert_eq!(p.operation, 1);
    assert_eq!(
        hash_of(&p),
        tx_of(&p).hash(CHAIN, addr(&w.safe), Version::Current)
    );
    assert!(!p.would_revert, "{:?}", p.simulation);
    assert_eq!(p.threshold, Some(2));
    assert_eq!(p.origin.as_deref(), Some("test"));
    let decoded = p.decoded.clone().unwrap();
    assert_eq!(decoded["method"], "multiSend");
    assert_eq!(decoded["calls"][0]["method"], "mint");
    assert_eq!(
        decoded["calls"][1]["args"]["to"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase(),
        r2
    );
    assert_eq!(decoded["calls"][1]["args"]["amount"], "9");

    // One owner signs by typed data: accepted, not yet ready.
    let hash = hash_of(&p);
    let o0 = key(0).address().to_checksum(None);
    s.sign("a", &p, &o0, &typed(0, hash)).await;
    let a = s.outcome("a").await.unwrap();
    assert_eq!(
        (a.kind.as_str(), a.confirmations, a.threshold),
        ("ecdsa", 1, 2)
    );
    assert!(
        s.all("safe.tx.ready").await.is_empty(),
        "ready below the threshold"
    );
    // The second by eth_sign: ready, and the relayer executes it.
    let o1 = key(1).address().to_checksum(None);
    s.sign("b", &p, &o1, &eth_sign(1, hash)).await;
    let b = s.outcome("b").await.unwrap();
    assert_eq!((b.kind.as_str(), b.confirmations), ("eth_sign", 2));
    let ready: Vec<SafeTxReady> = s.wait("safe.tx.ready", 1, |_: &SafeTxReady| true).await;
    assert_eq!((ready[0].confirmations, ready[0].threshold), (2, 2));
    let done: Vec<SafeTxExecuted> = s
        .wait("safe.tx.executed", 1, |e: &SafeTxExecuted| {
            e.safe_tx_hash == p.safe_tx_hash
        })
        .await;
    let receipt = w.anvil.rpc(
        "eth_getTransactionReceipt",
        json!([done[0].transaction_hash]),
    );
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(
        receipt["from"].as_str().unwrap().to_ascii_lowercase(),
        key(RELAYER).address().to_string().to_ascii_lowercase(),
        "sent by the relayer"
    );
    assert_eq!(balance_of(&w.anvil, &w.token, r1), U256::from(7));
    assert_eq!(balance_of(&w.anvil, &w.token, r2), U256::from(9));
    // Once, whoever noticed first (the relayer's receipt, the watcher's ExecutionSuccess).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.all("safe.tx.executed").await.len(), 1);

    // The next proposal takes the next nonce.
    let q = s
        .propose("next", vec![call(&w.token, mint(r1, 1))], None)
        .await;
    assert_eq!(q.nonce, 1);
    assert_eq!(
        addr(&q.to),
        addr(&w.token),
        "a single call is sent as it is"
    );
    // The relayer's key is nowhere in what Steward says.
    let secret = ANVIL_KEYS[RELAYER].trim_start_matches("0x");
    assert!(!s.run.stderr().contains(secret));
    for e in s.log.read(1, &[], 100_000).await.unwrap() {
        assert!(!String::from_utf8_lossy(&e.event.to_json()).contains(secret));
    }
}

#[tokio::test]
async fn signatures_are_refused_with_their_reason_and_a_nested_safe_signs_by_eip1271() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let s = up(dir.path(), &config(&w, dir.path(), false, "")).await;
    let p = s
        .propose("t", vec![call(&w.token, mint(&w.safe, 5))], None)
        .await;
    let hash = hash_of(&p);
    let o = |i: usize| key(i).address().to_checksum(None);

    // Not an owner.
    s.sign("stranger", &p, &o(4), &typed(4, hash)).await;
    let r = s.outcome("stranger").await.unwrap_err();
    assert_eq!(r.reason, "not_owner", "{}", r.detail);
    // Malformed bytes.
    s.sign("short", &p, &o(0), &[7u8; 64]).await;
    let r = s.outcome("short").await.unwrap_err();
    assert_eq!(r.reason, "malformed");
    assert!(r.detail.contains("65 bytes"), "{}", r.detail);
    // Made for another chain (chain 1's hash of the same transaction).
    let mainnet = tx_of(&p).hash(1, addr(&w.safe), Version::Current);
    s.sign("mainnet", &p, &o(1), &typed(1, mainnet)).await;
    let r = s.outcome("mainnet").await.unwrap_err();
    assert_eq!(r.reason, "wrong_chain", "{}", r.detail);
    assert!(r.detail.contains("chain 1"), "{}", r.detail);
    // Over another hash.
    s.sign("other", &p, &o(1), &typed(1, B256::repeat_byte(9)))
        .await;
    let r = s.outcome("other").await.unwrap_err();
    assert_eq!(r.reason, "wrong_hash", "{}", r.detail);
    // Accepted once; the same owner again is a duplicate; still below the threshold.
    s.sign("first", &p, &o(0), &typed(0, hash)).await;
    assert_eq!(s.outcome("first").await.unwrap().confirmations, 1);
    s.sign("again", &p, &o(0), &eth_sign(0, hash)).await;
    let r = s.outcome("again").await.unwrap_err();
    assert_eq!(r.reason, "duplicate");
    // A redelivered submission is not a duplicate of itself: the same acceptance again.
    s.send(&[Envelope::new(
        "test",
        "sig:first",
        &SafeSignatureSubmitted {
            safe: p.safe.clone(),
            safe_tx_hash: p.safe_tx_hash.clone(),
            owner: o(0),
            signature: hex(&typed(0, hash)),
            via: "test".into(),
        },
    )])
    .await;
    assert!(
        s.all("safe.tx.ready").await.is_empty(),
        "one signature of two is not ready"
    );
    // A contract owner's signature that its own owner did not make is refused.
    let hash_data = tx_of(&p).hash_data(CHAIN, addr(&w.safe), Version::Current);
    let msg = tx::safe_message_hash(CHAIN, addr(&w.inner), Version::Current, &hash_data);
    let forged = signature::contract_signature(addr(&w.inner), &typed(4, msg));
    s.sign("forged", &p, &w.inner, &forged).await;
    let r = s.outcome("forged").await.unwrap_err();
    assert_eq!(r.reason, "invalid", "{}", r.detail);
    assert!(r.detail.contains("EIP-1271"), "{}", r.detail);
    // The nested Safe signs by EIP-1271 (its owner, key 3, signs its message hash): ready.
    let nested = signature::contract_signature(addr(&w.inner), &typed(3, msg));
    s.sign("nested", &p, &w.inner, &nested).await;
    let a = s.outcome("nested").await.unwrap();
    assert_eq!((a.kind.as_str(), a.confirmations), ("contract", 2));
    s.wait("safe.tx.ready", 1, |_: &SafeTxReady| true).await;
    // No relayer: an owner executes, with the signatures Steward accepted.
    let accepted: Vec<SafeSignatureAccepted> = s
        .wait("safe.signature.accepted", 2, |a: &SafeSignatureAccepted| {
            a.safe_tx_hash == p.safe_tx_hash
        })
        .await;
    let sigs: Vec<Vec<u8>> = accepted
        .iter()
        .map(|a| alloy::primitives::hex::decode(a.signature.trim_start_matches("0x")).unwrap())
        .collect();
    let receipt = execute_as_owner(&w, &p, &sigs);
    assert_eq!(receipt["status"], "0x1");
    // The watcher's ExecutionSuccess confirms it.
    s.wait("safe.tx.executed", 1, |e: &SafeTxExecuted| {
        e.safe_tx_hash == p.safe_tx_hash
    })
    .await;
    assert_eq!(balance_of(&w.anvil, &w.token, &w.safe), U256::from(5));
    // An executed transaction takes no more signatures.
    s.sign("late", &p, &o(1), &typed(1, hash)).await;
    assert_eq!(s.outcome("late").await.unwrap_err().reason, "not_pending");
    // A transaction submitted at the used nonce is refused.
    let mut t = tx_of(&p);
    t.data = Bytes::from(
        alloy::primitives::hex::decode(mint(&w.safe, 6).trim_start_matches("0x")).unwrap(),
    );
    let h = t.hash(CHAIN, addr(&w.safe), Version::Current);
    s.send(&[Envelope::new(
        "test",
        "sig:replay",
        &SafeTxSubmitted {
            safe: w.safe.clone(),
            to: w.token.clone(),
            value: "0".into(),
            data: hex(&t.data),
            operation: 0,
            safe_tx_gas: "0".into(),
            base_gas: "0".into(),
            gas_price: "0".into(),
            gas_token: Address::ZERO.to_string(),
            refund_receiver: Address::ZERO.to_string(),
            nonce: 0,
            safe_tx_hash: h.to_string(),
            sender: o(1),
            signature: hex(&typed(1, h)),
            origin: None,
        },
    )])
    .await;
    let rejected: Vec<SafeSignatureRejected> = s
        .wait("safe.signature.rejected", 1, |r: &SafeSignatureRejected| {
            r.reason == "nonce_used"
        })
        .await;
    assert!(
        rejected[0].detail.contains("already executed"),
        "{}",
        rejected[0].detail
    );
}

#[tokio::test]
async fn fifty_proposals_requested_at_once_get_distinct_gap_free_nonces() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let s = up(dir.path(), &config(&w, dir.path(), false, "")).await;
    let requests: Vec<Envelope> = (0..50)
        .map(|i| {
            Envelope::new(
                "test",
                format!("many:{i}"),
                &SafeProposalRequested {
                    safe: "treasury".into(),
                    calls: vec![call(&w.token, mint(&w.safe, i + 1))],
                    reason: format!("many {i}"),
                    replace_nonce: None,
                },
            )
        })
        .collect();
    s.send(&requests).await;
    let proposed: Vec<SafeTxProposed> = s
        .wait("safe.tx.proposed", 50, |_: &SafeTxProposed| true)
        .await;
    let mut nonces: Vec<u64> = proposed.iter().map(|p| p.nonce).collect();
    nonces.sort_unstable();
    assert_eq!(nonces, (0..50).collect::<Vec<u64>>());
    // Redelivered requests announce the same transactions again, not new ones.
    s.send(&requests[..5]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again: Vec<SafeTxProposed> = s
        .all("safe.tx.proposed")
        .await
        .iter()
        .map(|e| e.payload().unwrap())
        .collect();
    let mut hashes: Vec<&str> = again.iter().map(|p| p.safe_tx_hash.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), 50);
}

#[tokio::test]
async fn an_execution_supersedes_its_nonce_and_a_threshold_change_reevaluates_the_queue() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let s = up(dir.path(), &config(&w, dir.path(), false, "")).await;
    let o = |i: usize| key(i).address().to_checksum(None);
    let a = s
        .propose("a", vec![call(&w.token, mint(&w.safe, 1))], None)
        .await;
    // A rejection of nonce 0: the Safe calling itself with nothing.
    let r = s.propose("reject", vec![], Some(0)).await;
    assert_eq!(
        (r.nonce, addr(&r.to), r.data.as_str()),
        (0, addr(&w.safe), "0x")
    );
    // Lower the threshold to 1 (the Safe calling its own changeThreshold).
    let lower = calldata("changeThreshold(uint256)", &["1"]);
    let b = s.propose("lower", vec![call(&w.safe, lower)], None).await;
    let c = s
        .propose("c", vec![call(&w.token, mint(&w.safe, 3))], None)
        .await;
    assert_eq!((a.nonce, b.nonce, c.nonce), (0, 1, 2));
    assert_eq!(b.decoded.as_ref().unwrap()["method"], "changeThreshold");

    let sig = |i: usize, p: &SafeTxProposed| typed(i, hash_of(p));
    for (id, p, i) in [
        ("a0", &a, 0),
        ("a1", &a, 1),
        ("b0", &b, 0),
        ("b1", &b, 1),
        ("c0", &c, 0),
    ] {
        s.sign(id, p, &o(i), &sig(i, p)).await;
        s.outcome(id).await.unwrap();
    }
    // A executes (by an owner): the rejection waiting at nonce 0 is superseded by it.
    assert_eq!(
        execute_as_owner(&w, &a, &[sig(0, &a), sig(1, &a)])["status"],
        "0x1"
    );
    let sup: Vec<SafeTxSuperseded> = s
        .wait("safe.tx.superseded", 1, |_: &SafeTxSuperseded| true)
        .await;
    assert_eq!(sup[0].safe_tx_hash, r.safe_tx_hash);
    assert_eq!(sup[0].by_safe_tx_hash, a.safe_tx_hash);
    // C has one signature of two: not ready until B lowers the threshold to 1.
    let ready_c = |e: &SafeTxReady| e.safe_tx_hash == c.safe_tx_hash;
    assert!(s
        .all("safe.tx.ready")
        .await
        .iter()
        .all(|e| !ready_c(&e.payload().unwrap())));
    assert_eq!(
        execute_as_owner(&w, &b, &[sig(0, &b), sig(1, &b)])["status"],
        "0x1"
    );
    let ready: Vec<SafeTxReady> = s.wait("safe.tx.ready", 1, ready_c).await;
    assert_eq!((ready[0].confirmations, ready[0].threshold), (1, 1));
    // B is executed, not superseded: its ChangedThreshold log, handled before its own
    // ExecutionSuccess, already finds the nonce used.
    s.wait("safe.tx.executed", 1, |e: &SafeTxExecuted| {
        e.safe_tx_hash == b.safe_tx_hash
    })
    .await;
    assert!(s.all("safe.tx.superseded").await.iter().all(|e| e
        .payload::<SafeTxSuperseded>()
        .unwrap()
        .safe_tx_hash
        != b.safe_tx_hash));
    // The rejection's later signature is refused: its nonce is used.
    s.sign("r0", &r, &o(0), &sig(0, &r)).await;
    assert_eq!(s.outcome("r0").await.unwrap_err().reason, "not_pending");
}

#[tokio::test]
async fn an_execution_retracted_by_a_reorg_reopens_the_transaction_and_what_it_superseded() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let s = up(dir.path(), &config(&w, dir.path(), false, "")).await;
    let o = |i: usize| key(i).address().to_checksum(None);
    let a = s
        .propose("a", vec![call(&w.token, mint(&w.safe, 1))], None)
        .await;
    let r = s.propose("reject", vec![], Some(0)).await;
    let sig = |i: usize| typed(i, hash_of(&a));
    for (id, i) in [("a0", 0), ("a1", 1)] {
        s.sign(id, &a, &o(i), &sig(i)).await;
        s.outcome(id).await.unwrap();
    }
    let of_a = |h: &str| h == a.safe_tx_hash;
    s.wait("safe.tx.ready", 1, |e: &SafeTxReady| of_a(&e.safe_tx_hash))
        .await;

    // A executes (by an owner) in a block that a longer branch then replaces.
    let snapshot = w.anvil.rpc("evm_snapshot", json!([]));
    let first = execute_as_owner(&w, &a, &[sig(0), sig(1)]);
    let executed: Vec<SafeTxExecuted> = s
        .wait("safe.tx.executed", 1, |e: &SafeTxExecuted| {
            of_a(&e.safe_tx_hash)
        })
        .await;
    assert_eq!(executed[0].transaction_hash, first["transactionHash"]);
    s.wait("safe.tx.superseded", 1, |e: &SafeTxSuperseded| {
        e.safe_tx_hash == r.safe_tx_hash
    })
    .await;
    assert_eq!(w.anvil.rpc("evm_revert", json!([snapshot])), json!(true));
    w.anvil.rpc("anvil_mine", json!([3]));

    // Both wait again: A (executed) and the rejection it had superseded, each announced once
    // with the retracted execution; A is ready again (its signatures still count).
    let reopened: Vec<SafeTxReopened> = s
        .wait("safe.tx.reopened", 2, |_: &SafeTxReopened| true)
        .await;
    let find = |h: &str| reopened.iter().find(|e| e.safe_tx_hash == h).unwrap();
    let (ra, rr) = (find(&a.safe_tx_hash), find(&r.safe_tx_hash));
    assert_eq!(
        (ra.previous_status.as_str(), rr.previous_status.as_str()),
        ("executed", "superseded")
    );
    assert_eq!(ra.transaction_hash, first["transactionHash"]);
    assert_eq!(ra.block_number, executed[0].block_number);
    assert_eq!((ra.nonce, ra.reopened), (0, 1));
    assert_eq!(ra.reason, "test a");
    s.wait("safe.tx.ready", 2, |e: &SafeTxReady| of_a(&e.safe_tx_hash))
        .await;

    // Executed again on the canonical chain: a new fact, announced again, and the rejection
    // superseded again.
    let second = execute_as_owner(&w, &a, &[sig(0), sig(1)]);
    let executed: Vec<SafeTxExecuted> = s
        .wait("safe.tx.executed", 2, |e: &SafeTxExecuted| {
            of_a(&e.safe_tx_hash)
        })
        .await;
    assert_eq!(executed[1].transaction_hash, second["transactionHash"]);
    s.wait("safe.tx.superseded", 2, |e: &SafeTxSuperseded| {
        e.safe_tx_hash == r.safe_tx_hash
    })
    .await;
    assert_eq!(s.all("safe.tx.reopened").await.len(), 2);
    // The rejection's signature is refused again: its nonce is used.
    s.sign("r0", &r, &o(0), &typed(0, hash_of(&r))).await;
    assert_eq!(s.outcome("r0").await.unwrap_err().reason, "not_pending");
}

#[tokio::test]
async fn a_transaction_superseded_by_a_retracted_execution_and_then_executed_is_executed() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let s = up(dir.path(), &config(&w, dir.path(), false, "")).await;
    let o = |i: usize| key(i).address().to_checksum(None);
    let r = s
        .propose("r", vec![call(&w.token, mint(&w.safe, 1))], None)
        .await;
    let sig = |i: usize, p: &SafeTxProposed| typed(i, hash_of(p));
    for (id, i) in [("r0", 0), ("r1", 1)] {
        s.sign(id, &r, &o(i), &sig(i, &r)).await;
        s.outcome(id).await.unwrap();
    }
    // X, made outside Steward at the same nonce, is executed by the owners: R is superseded.
    let mut x = tx_of(&r);
    x.data = Bytes::from(
        alloy::primitives::hex::decode(mint(&w.safe, 2).trim_start_matches("0x")).unwrap(),
    );
    let xh = x.hash(CHAIN, addr(&w.safe), Version::Current);
    let xsigs = signature::pack(&[
        signature::parse(&typed(0, xh), xh).unwrap(),
        signature::parse(&typed(1, xh), xh).unwrap(),
    ]);
    let snapshot = w.anvil.rpc("evm_snapshot", json!([]));
    let sent = w.anvil.send_transaction(json!({
        "from": key(0).address().to_string(),
        "to": w.safe,
        "data": hex(&steward_safe::account::exec_calldata(&x, &xsigs)),
    }));
    assert_eq!(sent["status"], "0x1");
    s.wait("safe.tx.superseded", 1, |e: &SafeTxSuperseded| {
        e.safe_tx_hash == r.safe_tx_hash
    })
    .await;
    // A reorg retracts X and the canonical chain runs R at once: by the time the queue
    // hears of the retraction the nonce is used again, by R, whose execution must count.
    assert_eq!(w.anvil.rpc("evm_revert", json!([snapshot])), json!(true));
    let canonical = execute_as_owner(&w, &r, &[sig(0, &r), sig(1, &r)]);
    assert_eq!(canonical["status"], "0x1");
    w.anvil.rpc("anvil_mine", json!([2]));
    let executed: Vec<SafeTxExecuted> = s
        .wait("safe.tx.executed", 1, |e: &SafeTxExecuted| {
            e.safe_tx_hash == r.safe_tx_hash
        })
        .await;
    assert_eq!(executed[0].transaction_hash, canonical["transactionHash"]);
    assert_eq!(balance_of(&w.anvil, &w.token, &w.safe), U256::from(1));
}

#[tokio::test]
async fn a_relayed_execution_retracted_by_a_reorg_is_relayed_again() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let s = up(dir.path(), &config(&w, dir.path(), true, "")).await;
    let to = "0x00000000000000000000000000000000000000c3";
    let p = s
        .propose("p", vec![call(&w.token, mint(to, 5))], None)
        .await;
    let hash = hash_of(&p);
    let o = |i: usize| key(i).address().to_checksum(None);
    s.sign("p0", &p, &o(0), &typed(0, hash)).await;
    s.outcome("p0").await.unwrap();
    // Taken before it is ready: the relayer executes as soon as it is.
    let snapshot = w.anvil.rpc("evm_snapshot", json!([]));
    s.sign("p1", &p, &o(1), &typed(1, hash)).await;
    s.outcome("p1").await.unwrap();
    let of_p = |e: &SafeTxExecuted| e.safe_tx_hash == p.safe_tx_hash;
    let first: Vec<SafeTxExecuted> = s.wait("safe.tx.executed", 1, of_p).await;
    assert_eq!(balance_of(&w.anvil, &w.token, to), U256::from(5));
    // The relayer has seen its receipt too (its job is done).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.run.stderr().contains("relayer transaction mined") {
        assert!(
            Instant::now() < deadline,
            "the relayer never saw its receipt"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The relayer's transaction is retracted: the transaction waits again, is ready again,
    // and the relayer executes it again on the canonical chain, once.
    assert_eq!(w.anvil.rpc("evm_revert", json!([snapshot])), json!(true));
    w.anvil.rpc("anvil_mine", json!([3]));
    assert_eq!(balance_of(&w.anvil, &w.token, to), U256::ZERO);
    let reopened: Vec<SafeTxReopened> = s
        .wait("safe.tx.reopened", 1, |_: &SafeTxReopened| true)
        .await;
    assert_eq!(reopened[0].transaction_hash, first[0].transaction_hash);
    let again: Vec<SafeTxExecuted> = s.wait("safe.tx.executed", 2, of_p).await;
    let receipt = w.anvil.rpc(
        "eth_getTransactionReceipt",
        json!([again[1].transaction_hash]),
    );
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(
        receipt["from"].as_str().unwrap().to_ascii_lowercase(),
        key(RELAYER).address().to_string().to_ascii_lowercase(),
        "sent by the relayer"
    );
    assert_eq!(balance_of(&w.anvil, &w.token, to), U256::from(5));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.all("safe.tx.executed").await.len(), 2);
    assert_eq!(balance_of(&w.anvil, &w.token, to), U256::from(5));
}

#[tokio::test]
async fn a_transaction_ready_again_after_an_owner_change_is_relayed_again() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let s = up(dir.path(), &config(&w, dir.path(), true, "")).await;
    let o = |i: usize| key(i).address().to_checksum(None);
    let to = "0x00000000000000000000000000000000000000c7";
    // A raises the threshold to 3 (all owners); B, behind it, has two signatures.
    let raise = calldata("changeThreshold(uint256)", &["3"]);
    let a = s.propose("a", vec![call(&w.safe, raise)], None).await;
    let b = s
        .propose("b", vec![call(&w.token, mint(to, 7))], None)
        .await;
    assert_eq!((a.nonce, b.nonce), (0, 1));
    for (id, p, i) in [("b0", &b, 0), ("b1", &b, 1), ("a0", &a, 0), ("a1", &a, 1)] {
        s.sign(id, p, &o(i), &typed(i, hash_of(p))).await;
        s.outcome(id).await.unwrap();
    }
    // The relayer executes A (announced as executed, not superseded, though its
    // ChangedThreshold log comes first); B, two of three now, is no longer ready and its job
    // is dropped.
    s.wait("safe.tx.executed", 1, |e: &SafeTxExecuted| {
        e.safe_tx_hash == a.safe_tx_hash
    })
    .await;
    until("B's job dropped", &s, || {
        s.run
            .stderr()
            .lines()
            .any(|l| l.contains("job dropped") && l.contains(&b.safe_tx_hash))
            .then_some(())
    })
    .await;
    assert_eq!(balance_of(&w.anvil, &w.token, to), U256::ZERO);
    // The nested Safe's signature makes B ready again: the relayer executes it.
    let hash_data = tx_of(&b).hash_data(CHAIN, addr(&w.safe), Version::Current);
    let msg = tx::safe_message_hash(CHAIN, addr(&w.inner), Version::Current, &hash_data);
    let nested = signature::contract_signature(addr(&w.inner), &typed(3, msg));
    s.sign("b2", &b, &w.inner, &nested).await;
    assert_eq!(s.outcome("b2").await.unwrap().confirmations, 3);
    let done: Vec<SafeTxExecuted> = s
        .wait("safe.tx.executed", 1, |e: &SafeTxExecuted| {
            e.safe_tx_hash == b.safe_tx_hash
        })
        .await;
    let receipt = w.anvil.rpc(
        "eth_getTransactionReceipt",
        json!([done[0].transaction_hash]),
    );
    assert_eq!(
        receipt["from"].as_str().unwrap().to_ascii_lowercase(),
        key(RELAYER).address().to_string().to_ascii_lowercase(),
        "sent by the relayer"
    );
    assert_eq!(balance_of(&w.anvil, &w.token, to), U256::from(7));
}

#[tokio::test]
async fn liquidations_are_rechecked_then_relayed_or_proposed_through_the_safe() {
    let w = world();
    let pool = w.anvil.deploy_fixture("MockLendingPool");
    let accounts = w.anvil.accounts();
    let user = accounts[2].clone();
    let collateral = "0x00000000000000000000000000000000000000c1";
    let send = |sig: &str, args: &[&str]| {
        w.anvil
            .send_transaction(json!({ "from": user, "to": pool, "data": calldata(sig, args) }))
    };
    let health = |hf: &str| send("setHealthFactor(address,uint256)", &[&user, hf]);
    send(
        "supply(address,uint256,address,uint16)",
        &[collateral, "10000", &user, "0"],
    );
    send(
        "borrow(address,uint256,uint256,uint16,address)",
        &[&w.token, "4000", "2", "0", &user],
    );
    health("970000000000000000");
    // The relayer and the Safe hold the debt asset.
    let relayer = key(RELAYER).address().to_string();
    for holder in [&relayer, &w.safe] {
        w.anvil
            .send_transaction(json!({ "to": w.token, "data": mint(holder, 1_000_000) }));
    }
    let dir = tempfile::tempdir().unwrap();
    let s = up(dir.path(), &config(&w, dir.path(), true, "")).await;
    let request = |key: &str, via: &str| {
        Envelope::new(
            "test",
            key,
            &LiquidationRequested {
                protocol: "aave-v3".into(),
                pool: pool.clone(),
                user: user.clone(),
                collateral_asset: collateral.into(),
                debt_asset: w.token.clone(),
                debt_to_cover: "max".into(),
                receive_a_token: false,
                via: via.into(),
            },
        )
        .with_chain(CHAIN)
    };
    // Through the relayer: approval, then liquidationCall; half the debt at HF 0.97.
    s.send(&[request("liq:relayer", "relayer")]).await;
    let done: Vec<LiquidationExecuted> = s
        .wait("liquidation.executed", 1, |_: &LiquidationExecuted| true)
        .await;
    assert_eq!(
        (
            done[0].debt_covered.as_str(),
            done[0].collateral_received.as_str()
        ),
        ("2000", "2100")
    );
    let receipt = w.anvil.rpc(
        "eth_getTransactionReceipt",
        json!([done[0].transaction_hash]),
    );
    assert_eq!(
        receipt["from"].as_str().unwrap().to_ascii_lowercase(),
        relayer.to_ascii_lowercase()
    );
    let allowance = w.anvil.rpc(
        "eth_call",
        json!([{ "to": w.token, "data": calldata("allowance(address,address)", &[&relayer, &pool]) }, "latest"]),
    );
    assert!(
        U256::from_str(allowance.as_str().unwrap()).unwrap() > U256::ZERO,
        "approved first"
    );

    // Healthy again: skipped, with the reason.
    health("1200000000000000000");
    s.send(&[request("liq:healthy", "relayer")]).await;
    let skipped: Vec<LiquidationSkipped> = s
        .wait("liquidation.skipped", 1, |_: &LiquidationSkipped| true)
        .await;
    assert!(
        skipped[0].reason.contains("healthy"),
        "{}",
        skipped[0].reason
    );
    assert!(
        skipped[0].reason.contains("1.2000"),
        "{}",
        skipped[0].reason
    );

    // Through the Safe: proposed as approve + liquidationCall, signed, relayed, settled.
    health("900000000000000000");
    s.send(&[request("liq:safe", "treasury")]).await;
    let p: Vec<SafeTxProposed> = s
        .wait("safe.tx.proposed", 1, |p: &SafeTxProposed| {
            p.origin.as_deref() == Some("liquidation")
        })
        .await;
    let p = &p[0];
    let decoded = p.decoded.as_ref().unwrap();
    assert_eq!(decoded["calls"][0]["method"], "approve");
    assert_eq!(decoded["calls"][1]["method"], "liquidationCall");
    assert!(!p.would_revert, "{:?}", p.simulation);
    let o = |i: usize| key(i).address().to_checksum(None);
    s.sign("l0", p, &o(0), &typed(0, hash_of(p))).await;
    s.sign("l1", p, &o(1), &typed(1, hash_of(p))).await;
    let done: Vec<LiquidationExecuted> = s
        .wait("liquidation.executed", 2, |_: &LiquidationExecuted| true)
        .await;
    // Below 0.95 all of the remaining 2000 can be covered; the Safe ran it.
    assert_eq!(
        (
            done[1].debt_covered.as_str(),
            done[1].collateral_received.as_str()
        ),
        ("2000", "2100")
    );
    let receipt = w.anvil.rpc(
        "eth_getTransactionReceipt",
        json!([done[1].transaction_hash]),
    );
    assert_eq!(
        receipt["to"].as_str().unwrap().to_ascii_lowercase(),
        w.safe.to_ascii_lowercase()
    );
    s.wait("safe.tx.executed", 1, |e: &SafeTxExecuted| {
        e.safe_tx_hash == p.safe_tx_hash
    })
    .await;
}

/// The relayer's transactions waiting in anvil's pool, by nonce: (hash, maxFeePerGas).
fn pooled(w: &World) -> Vec<(String, u128)> {
    let content = w.anvil.rpc("txpool_content", json!([]));
    let relayer = key(RELAYER).address().to_string().to_ascii_lowercase();
    let mut out = Vec::new();
    for (from, txs) in content["pending"].as_object().unwrap() {
        if from.to_ascii_lowercase() != relayer {
            continue;
        }
        for tx in txs.as_object().unwrap().values() {
            let fee = u128::from_str_radix(
                tx["maxFeePerGas"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("0x"),
                16,
            )
            .unwrap();
            out.push((tx["hash"].as_str().unwrap().to_owned(), fee));
        }
    }
    out
}

async fn until<T>(what: &str, s: &Steward, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 60 s:\n{}",
            s.run.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A base fee of 80 gwei, a relayer capped at 50, and a `mint(recipient, amount)` proposed
/// and signed by two owners: ready, and waiting for fees under the cap.
async fn ready_above_the_fee_cap(w: &World, dir: &Path, recipient: &str, amount: u64) -> Steward {
    let gwei: u128 = 1_000_000_000;
    w.anvil.rpc(
        "anvil_setNextBlockBaseFeePerGas",
        json!([format!("{:#x}", 80 * gwei)]),
    );
    w.anvil.rpc("evm_mine", json!([]));
    let yaml = config(w, dir, true, "").replace(
        "resubmit_after: 5s}",
        "resubmit_after: 1s, max_fee_gwei: 50, priority_fee_gwei: 1}",
    );
    let s = up(dir, &yaml).await;
    let p = s
        .propose("p", vec![call(&w.token, mint(recipient, amount))], None)
        .await;
    let o = |i: usize| key(i).address().to_checksum(None);
    s.sign("p0", &p, &o(0), &typed(0, hash_of(&p))).await;
    s.sign("p1", &p, &o(1), &typed(1, hash_of(&p))).await;
    s.wait("safe.tx.ready", 1, |_: &SafeTxReady| true).await;
    s
}

#[tokio::test]
async fn the_relayer_waits_under_its_fee_cap_bumps_slow_transactions_and_resends_dropped_ones() {
    let w = world();
    // From here blocks are mined only when the test says so.
    w.anvil.rpc("evm_setAutomine", json!([false]));
    let gwei: u128 = 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let r1 = "0x00000000000000000000000000000000000000c1";
    let s = ready_above_the_fee_cap(&w, dir.path(), r1, 4).await;
    // The base fee (80 gwei) is above the cap (50): nothing is sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(pooled(&w).is_empty(), "sent above the fee cap");
    assert!(
        s.run.stderr().contains("fees above the cap"),
        "{}",
        s.run.stderr()
    );
    // The base fee falls: sent.
    w.anvil.rpc(
        "anvil_setNextBlockBaseFeePerGas",
        json!([format!("{:#x}", 2 * gwei)]),
    );
    w.anvil.rpc("evm_mine", json!([]));
    let first = until("a first send", &s, || pooled(&w).into_iter().next()).await;
    assert!(first.1 <= 50 * gwei);
    // Not mined within resubmit_after: replaced at the same nonce with higher fees.
    let bumped = until("a resubmission", &s, || {
        pooled(&w).into_iter().find(|t| t.0 != first.0)
    })
    .await;
    assert!(
        bumped.1 * 100 >= first.1 * 115,
        "{} then {}",
        first.1,
        bumped.1
    );
    assert_eq!(
        pooled(&w).len(),
        1,
        "a replacement, not a second transaction"
    );
    // Dropped from the mempool: sent again, at the same nonce (no jam).
    w.anvil.rpc("anvil_dropTransaction", json!([bumped.0]));
    let again = until("a resend after the drop", &s, || {
        pooled(&w).into_iter().next()
    })
    .await;
    assert_ne!(again.0, bumped.0);
    let nonce = w.anvil.rpc("eth_getTransactionByHash", json!([again.0]))["nonce"].clone();
    assert_eq!(nonce, "0x0");
    // Mined: executed once, with its effect.
    w.anvil.rpc("evm_mine", json!([]));
    let done: Vec<SafeTxExecuted> = s
        .wait("safe.tx.executed", 1, |_: &SafeTxExecuted| true)
        .await;
    assert!(
        [first.0, bumped.0, again.0].contains(&done[0].transaction_hash),
        "{}",
        done[0].transaction_hash
    );
    assert_eq!(balance_of(&w.anvil, &w.token, r1), U256::from(4));
}

/// Sent at its fee cap, a slow transaction cannot be bumped (a replacement must pay 10% more):
/// the relayer says so and waits. Dropped from the mempool, it replaces nothing there and is
/// sent again at what the market asks, instead of waiting forever for room to bump.
#[tokio::test]
async fn a_dropped_transaction_at_the_fee_cap_is_sent_again() {
    let w = world();
    w.anvil.rpc("evm_setAutomine", json!([false]));
    let gwei: u128 = 1_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let r1 = "0x00000000000000000000000000000000000000c2";
    let s = ready_above_the_fee_cap(&w, dir.path(), r1, 6).await;
    // Base fee 30 gwei: 2 × 30 + 1 is above the cap, so the first send pays the cap, 50.
    w.anvil.rpc(
        "anvil_setNextBlockBaseFeePerGas",
        json!([format!("{:#x}", 30 * gwei)]),
    );
    w.anvil.rpc("evm_mine", json!([]));
    let first = until("a first send", &s, || pooled(&w).into_iter().next()).await;
    assert_eq!(first.1, 50 * gwei, "the first send pays the cap");
    // Slow (resubmit_after is 1 s) but no room to bump: it says so, sends nothing new.
    until("the relayer to say it cannot bump", &s, || {
        s.run
            .stderr()
            .contains("at the fee cap (50 gwei) and cannot be bumped")
            .then_some(())
    })
    .await;
    assert_eq!(
        pooled(&w),
        vec![first.clone()],
        "one transaction, unchanged"
    );
    // Dropped: sent again at the same nonce (here at the same fees, the market being above
    // the cap too; the choice of fees is unit-tested in the relayer).
    w.anvil.rpc("anvil_dropTransaction", json!([first.0]));
    let again = until("a resend after the drop", &s, || {
        pooled(&w).into_iter().next()
    })
    .await;
    assert!(again.1 <= 50 * gwei);
    let nonce = w.anvil.rpc("eth_getTransactionByHash", json!([again.0]))["nonce"].clone();
    assert_eq!(nonce, "0x0");
    w.anvil.rpc("evm_mine", json!([]));
    let done: Vec<SafeTxExecuted> = s
        .wait("safe.tx.executed", 1, |_: &SafeTxExecuted| true)
        .await;
    assert_eq!(done[0].transaction_hash, again.0);
    assert_eq!(balance_of(&w.anvil, &w.token, r1), U256::from(6));
}

/// A relayer key changed while a ready transaction waited for it (here: under its fee cap):
/// the new key's relayer takes the job over at start and executes it; nothing stays stuck
/// behind the old account.
#[tokio::test]
async fn after_a_relayer_key_change_the_new_key_takes_over_the_waiting_execution() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let r1 = "0x00000000000000000000000000000000000000c2";
    let s = ready_above_the_fee_cap(&w, dir.path(), r1, 9).await;
    until("the old relayer waiting under its cap", &s, || {
        s.run.stderr().contains("fees above the cap").then_some(())
    })
    .await;
    drop(s);

    // The new key, with a cap above the base fee.
    const NEW: usize = 6;
    let s = up_with_relayer(
        dir.path(),
        &config(&w, dir.path(), true, ""),
        ANVIL_KEYS[NEW],
    )
    .await;
    let done: Vec<SafeTxExecuted> = s
        .wait("safe.tx.executed", 1, |_: &SafeTxExecuted| true)
        .await;
    let tx = w.anvil.rpc(
        "eth_getTransactionByHash",
        json!([done[0].transaction_hash]),
    );
    assert_eq!(
        tx["from"].as_str().unwrap().to_ascii_lowercase(),
        key(NEW).address().to_string().to_ascii_lowercase(),
        "sent by the new key"
    );
    assert_eq!(balance_of(&w.anvil, &w.token, r1), U256::from(9));
    assert!(s.run.stderr().contains("taken over"), "{}", s.run.stderr());
}

#[tokio::test]
async fn a_relayed_liquidation_retracted_by_a_reorg_is_sent_again_at_its_nonce_once() {
    liquidation_retracted_by_a_reorg("relayer", 0).await;
}

#[tokio::test]
async fn a_liquidation_through_the_safe_retracted_by_a_reorg_waits_and_runs_again_once() {
    liquidation_retracted_by_a_reorg("treasury", 0).await;
}

/// A liquidation (through the relayer or the Safe `treasury`, whose relayer executes it) is
/// executed, retracted by a reorg, announced as retracted and executed again, once.
/// As above, in blocks the watcher (reporting blocks 4 below the head) never reported: no
/// reorg is announced and the relayer finds the receipts gone itself.
#[tokio::test]
async fn a_relayed_liquidation_retracted_by_a_reorg_the_watcher_never_saw_is_sent_again_once() {
    liquidation_retracted_by_a_reorg("relayer", 4).await;
}

#[tokio::test]
async fn a_safe_liquidation_retracted_by_a_reorg_the_watcher_never_saw_runs_again_once() {
    liquidation_retracted_by_a_reorg("treasury", 4).await;
}

/// A `MockLendingPool` with a borrower of 4,000 of the world's token whose health factor is
/// 0.97, and the relayer and the Safe holding the token to cover debt. Returns the pool and
/// the borrower.
fn unhealthy_borrower(w: &World) -> (String, String) {
    let pool = w.anvil.deploy_fixture("MockLendingPool");
    let user = w.anvil.accounts()[2].clone();
    let send = |sig: &str, args: &[&str]| {
        w.anvil
            .send_transaction(json!({ "from": user, "to": pool, "data": calldata(sig, args) }))
    };
    send(
        "supply(address,uint256,address,uint16)",
        &[
            "0x00000000000000000000000000000000000000c1",
            "10000",
            &user,
            "0",
        ],
    );
    send(
        "borrow(address,uint256,uint256,uint16,address)",
        &[&w.token, "4000", "2", "0", &user],
    );
    send(
        "setHealthFactor(address,uint256)",
        &[&user, "970000000000000000"],
    );
    let relayer = key(RELAYER).address().to_string();
    for holder in [&relayer, &w.safe] {
        w.anvil
            .send_transaction(json!({ "to": w.token, "data": mint(holder, 1_000_000) }));
    }
    (pool, user)
}

/// The borrower's debt in the pool (getUserAccountData's totalDebtBase).
fn pool_debt(w: &World, pool: &str, user: &str) -> U256 {
    let data = w.anvil.rpc(
        "eth_call",
        json!([{ "to": pool, "data": calldata("getUserAccountData(address)", &[user]) }, "latest"]),
    );
    let data = data.as_str().unwrap().trim_start_matches("0x");
    U256::from_str_radix(&data[64..128], 16).unwrap()
}

fn liquidation_of(pool: &str, user: &str, debt_asset: &str, via: &str) -> Envelope {
    let request = LiquidationRequested {
        protocol: "aave-v3".into(),
        pool: pool.to_owned(),
        user: user.to_owned(),
        collateral_asset: "0x00000000000000000000000000000000000000c1".into(),
        debt_asset: debt_asset.to_owned(),
        debt_to_cover: "max".into(),
        receive_a_token: false,
        via: via.into(),
    };
    Envelope::new("test", "liq:reorg", &request).with_chain(CHAIN)
}

#[tokio::test]
async fn a_liquidation_call_refused_after_a_retracted_approval_goes_again_with_it() {
    let w = world();
    let (pool, user) = unhealthy_borrower(&w);
    let dir = tempfile::tempdir().unwrap();
    let s = up(dir.path(), &config(&w, dir.path(), true, "")).await;
    let snapshot = w.anvil.rpc("evm_snapshot", json!([]));
    // Blocks are mined by hand: the approval and the borrower's repair share one block.
    w.anvil.rpc("evm_setAutomine", json!([false]));
    s.send(&[liquidation_of(&pool, &user, &w.token, "relayer")])
        .await;
    until("the approval sent", &s, || {
        s.run
            .stderr()
            .lines()
            .any(|l| l.contains("relayer transaction sent") && l.contains(":approve"))
            .then_some(())
    })
    .await;
    w.anvil.rpc(
        "eth_sendTransaction",
        json!([{ "from": user, "to": pool,
            "data": calldata("setHealthFactor(address,uint256)", &[&user, "1500000000000000000"]) }]),
    );
    w.anvil.rpc("evm_mine", json!([]));
    // The call is refused: the borrower is healthy now.
    let failed: Vec<LiquidationFailed> = s
        .wait("liquidation.failed", 1, |_: &LiquidationFailed| true)
        .await;
    assert!(
        failed[0].error.contains("liquidationCall would revert"),
        "{}",
        failed[0].error
    );

    // A reorg retracts the block: the approval and the repair are gone, the borrower is
    // unhealthy again. The approval goes again, and the refused call with it.
    assert_eq!(w.anvil.rpc("evm_revert", json!([snapshot])), json!(true));
    w.anvil.rpc("evm_setAutomine", json!([true]));
    w.anvil.rpc("anvil_mine", json!([3]));
    let retracted: Vec<LiquidationRetracted> = s
        .wait("liquidation.retracted", 1, |_: &LiquidationRetracted| true)
        .await;
    assert_eq!(retracted[0].previous, "liquidation.failed");
    let executed: Vec<LiquidationExecuted> = s
        .wait("liquidation.executed", 1, |_: &LiquidationExecuted| true)
        .await;
    assert_eq!(executed[0].debt_covered, "2000");
    assert_eq!(pool_debt(&w, &pool, &user), U256::from(2000));
}

async fn liquidation_retracted_by_a_reorg(via: &str, finality: u64) {
    let w = world();
    let (pool, user) = unhealthy_borrower(&w);
    let debt = || pool_debt(&w, &pool, &user);
    assert_eq!(debt(), U256::from(4000));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&w, dir.path(), true, "").replace(
        "    poll_interval: 200ms\n",
        &format!("    poll_interval: 200ms\n    finality: {finality}\n"),
    );
    let s = up(dir.path(), &cfg).await;
    let mut snapshot = w.anvil.rpc("evm_snapshot", json!([]));
    s.send(&[liquidation_of(&pool, &user, &w.token, via)]).await;
    if via != "relayer" {
        // Proposed for the Safe's signers; the second signature makes it ready.
        let p: Vec<SafeTxProposed> = s
            .wait("safe.tx.proposed", 1, |p: &SafeTxProposed| {
                p.origin.as_deref() == Some("liquidation")
            })
            .await;
        let o = |i: usize| key(i).address().to_checksum(None);
        s.sign("l0", &p[0], &o(0), &typed(0, hash_of(&p[0]))).await;
        s.outcome("l0").await.unwrap();
        snapshot = w.anvil.rpc("evm_snapshot", json!([]));
        s.sign("l1", &p[0], &o(1), &typed(1, hash_of(&p[0]))).await;
    }
    let first: Vec<LiquidationExecuted> = s
        .wait("liquidation.executed", 1, |_: &LiquidationExecuted| true)
        .await;
    assert_eq!(first[0].debt_covered, "2000");
    assert_eq!(debt(), U256::from(2000));

    // The approval and the liquidationCall are retracted: the outcome no longer stands, and
    // both go again at their nonces; the position is liquidated once on the canonical chain.
    assert_eq!(w.anvil.rpc("evm_revert", json!([snapshot])), json!(true));
    w.anvil.rpc("anvil_mine", json!([3]));
    let retracted: Vec<LiquidationRetracted> = s
        .wait("liquidation.retracted", 1, |_: &LiquidationRetracted| true)
        .await;
    assert_eq!(
        (
            retracted[0].previous.as_str(),
            retracted[0].transaction_hash.as_str(),
            retracted[0].via.as_str(),
            retracted[0].reopened
        ),
        (
            "liquidation.executed",
            first[0].transaction_hash.as_str(),
            via,
            1
        )
    );
    let again: Vec<LiquidationExecuted> = s
        .wait("liquidation.executed", 2, |_: &LiquidationExecuted| true)
        .await;
    assert_eq!(again[1].debt_covered, "2000");
    let receipt = w.anvil.rpc(
        "eth_getTransactionReceipt",
        json!([again[1].transaction_hash]),
    );
    assert_eq!(receipt["status"], "0x1");
    let retracted_receipt = w.anvil.rpc(
        "eth_getTransactionReceipt",
        json!([first[0].transaction_hash]),
    );
    assert!(
        retracted_receipt.is_null() || again[1].transaction_hash == first[0].transaction_hash,
        "the retracted transaction is not on the canonical chain"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.all("liquidation.executed").await.len(), 2);
    assert_eq!(s.all("liquidation.retracted").await.len(), 1);
    assert_eq!(debt(), U256::from(2000));
    if finality > 0 {
        assert!(
            s.all("chain.reorg.detected").await.is_empty(),
            "the watcher saw no reorg: the relayer found it"
        );
    }
}
