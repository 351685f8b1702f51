//! The api service as the binary runs it (embedded log; SQLite and PostgreSQL stores) against
//! a real anvil with the real Safe v1.4.1 contracts, over real HTTP. The safe service is played
//! by a small responder in this file that answers submissions the way the catalogue says the
//! safe service does (the proposal, then the sender's signature accepted or rejected, with the
//! submission's id as causation id), so the API's own behaviour is what is tested here; the
//! binary's tests (`services/steward/tests/safe_api.rs`) run it with the real safe service.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{hex, Address, Bytes, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use serde_json::{json, Value};
use steward_config::{Config, Document, MapEnv};
use steward_events::{
    Envelope, Event, SafeSignatureAccepted, SafeSignatureRejected, SafeTxExecuted, SafeTxProposed,
    SafeTxReady, SafeTxReopened,
};
use steward_log::embedded::EmbeddedLog;
use steward_log::{EventLog, LogMetrics};
use steward_runtime::{Readiness, ServiceContext};
use steward_safe::tx::{SafeTx, Version};
use steward_store::Store;
use steward_testkit::{Anvil, SafeDeployment, ANVIL_KEYS};
use tokio_util::sync::CancellationToken;

const CHAIN: u64 = 31337;
/// Part of the RPC URL, standing for an API key: it must never be served.
const RPC_SECRET: &str = "sekr3t-api-key";
const RELAYER_KEY: &str = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6";

fn key(i: usize) -> PrivateKeySigner {
    PrivateKeySigner::from_str(ANVIL_KEYS[i]).unwrap()
}

fn sign(i: usize, hash: B256) -> String {
    format!(
        "0x{}",
        hex::encode(key(i).sign_hash_sync(&hash).unwrap().as_bytes())
    )
}

#[derive(Clone, Copy)]
enum Db {
    Sqlite,
    Postgres,
}

/// How the stand-in safe service answers.
#[derive(Default)]
struct Responder {
    silent: AtomicBool,
    /// Owners whose signatures were accepted, per safeTxHash.
    signed: Mutex<HashSet<(String, String)>>,
}

struct H {
    dir: tempfile::TempDir,
    anvil: Anvil,
    d: SafeDeployment,
    safe: Address,
    log: Arc<EmbeddedLog>,
    _store: Store,
    base: String,
    token: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    http: reqwest::Client,
    responder: Arc<Responder>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl H {
    async fn start(db: Db, answer_timeout: &str) -> H {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let anvil = Anvil::start();
        let d = anvil.deploy_safe();
        let owners: Vec<String> = (0..3).map(|i| key(i).address().to_string()).collect();
        let safe = Address::from_str(&anvil.create_safe(&d, &owners, 2, 1)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let yaml = format!(
            "chains:\n  - name: local\n    chain_id: {CHAIN}\n    rpc: [{{url: \"{}/?key={RPC_SECRET}\"}}]\n\
             \x20 - name: mainnet\n    chain_id: 1\n    rpc: [{{url: \"http://127.0.0.1:9\"}}]\n\
             safes:\n  - name: treasury\n    chain: local\n    address: \"{safe}\"\n    multi_send: \"{}\"\n    multi_send_call_only: \"{}\"\n    relayer: {{key: \"{RELAYER_KEY}\"}}\n\
             api:\n  listen: 127.0.0.1:{port}\n  answer_timeout: {answer_timeout}\n",
            anvil.url(),
            d.multi_send,
            d.multi_send_call_only,
        );
        let doc = Document::parse(&yaml, "steward.yaml", &MapEnv::new()).unwrap();
        let config = Config::from_document_checked(
            &doc,
            dir.path().to_path_buf(),
            &steward_api::check_config,
        )
        .unwrap_or_else(|e| panic!("config: {e}"));
        let log = Arc::new(
            EmbeddedLog::open(&dir.path().join("events.db"), "steward")
                .await
                .unwrap(),
        );
        let url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("steward.db").display()),
            Db::Postgres => steward_testkit::fresh_postgres().await,
        };
        let store = Store::connect(&url, 4).await.unwrap();
        let token = CancellationToken::new();
        let mut registry = prometheus_client::registry::Registry::default();
        let ctx = ServiceContext {
            name: steward_api::NAME,
            log: log.clone(),
            metrics: LogMetrics::register(&mut registry),
            store: store.clone(),
            config: Arc::new(config),
            shutdown: token.clone(),
            ready: Readiness::default().register(steward_api::NAME),
        };
        let handle = tokio::spawn(steward_api::service().run(ctx));
        let h = H {
            dir,
            anvil,
            d,
            safe,
            log,
            _store: store,
            base: format!("http://127.0.0.1:{port}/api"),
            token,
            handle: Some(handle),
            http: reqwest::Client::new(),
            responder: Arc::new(Responder::default()),
        };
        h.spawn_responder(owners);
        // Ready when it answers.
        for _ in 0..100 {
            if h.http
                .get(format!("{}/v1/about/", h.base))
                .send()
                .await
                .is_ok()
            {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the api did not start listening");
    }

    /// The stand-in safe service: answers each submission once, as the catalogue describes.
    fn spawn_responder(&self, owners: Vec<String>) {
        let log = self.log.clone();
        let r = self.responder.clone();
        let stop = self.token.clone();
        tokio::spawn(async move {
            let mut from = 1;
            while !stop.is_cancelled() {
                let batch = log
                    .read(
                        from,
                        &[
                            "safe.tx.submitted".into(),
                            "safe.signature.submitted".into(),
                        ],
                        100,
                    )
                    .await
                    .unwrap();
                if r.silent.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                for s in &batch {
                    from = s.sequence + 1;
                    let env = &s.event;
                    let mut out = Vec::new();
                    let (hash, owner, signature, safe) = match env.decode().unwrap() {
                        Event::SafeTxSubmitted(t) => {
                            // The sender's own signature, or a refusal (as the safe service does).
                            let hash = B256::from_str(&t.safe_tx_hash).unwrap();
                            let raw = hex::decode(t.signature.trim_start_matches("0x")).unwrap();
                            let signer = steward_safe::signature::parse(&raw, hash).unwrap().owner;
                            if !signer.to_string().eq_ignore_ascii_case(&t.sender) {
                                let detail = format!(
                                    "the signature recovers to {signer}, not the sender {}",
                                    t.sender
                                );
                                out.push(env.derive(
                                    "safe",
                                    "rejected",
                                    &SafeSignatureRejected {
                                        safe: t.safe,
                                        safe_tx_hash: t.safe_tx_hash,
                                        owner: Some(t.sender),
                                        reason: "wrong_hash".into(),
                                        detail,
                                    },
                                ));
                                log.append(&out).await.unwrap();
                                continue;
                            }
                            let fresh = !r
                                .signed
                                .lock()
                                .unwrap()
                                .iter()
                                .any(|(h, _)| *h == t.safe_tx_hash);
                            if fresh && owners.iter().any(|o| o.eq_ignore_ascii_case(&t.sender)) {
                                out.push(env.derive(
                                    "safe",
                                    "proposed",
                                    &SafeTxProposed {
                                        safe: t.safe.clone(),
                                        safe_tx_hash: t.safe_tx_hash.clone(),
                                        nonce: t.nonce,
                                        to: t.to,
                                        value: t.value,
                                        data: t.data,
                                        operation: t.operation,
                                        safe_tx_gas: t.safe_tx_gas,
                                        base_gas: t.base_gas,
                                        gas_price: t.gas_price,
                                        gas_token: t.gas_token,
                                        refund_receiver: t.refund_receiver,
                                        would_revert: false,
                                        reason: "submitted through the API".into(),
                                        decoded: Some(
                                            json!({"method": "(transfer of the native coin)"}),
                                        ),
                                        origin: Some(format!("api:{}", t.sender)),
                                        threshold: Some(2),
                                        simulation: None,
                                    },
                                ));
                            }
                            (t.safe_tx_hash, t.sender, t.signature, t.safe)
                        }
                        Event::SafeSignatureSubmitted(sig) => {
                            (sig.safe_tx_hash, sig.owner, sig.signature, sig.safe)
                        }
                        _ => continue,
                    };
                    let is_owner = owners.iter().any(|o| o.eq_ignore_ascii_case(&owner));
                    let first = r
                        .signed
                        .lock()
                        .unwrap()
                        .insert((hash.clone(), owner.to_ascii_lowercase()));
                    if !is_owner {
                        out.push(env.derive(
                            "safe",
                            "rejected",
                            &SafeSignatureRejected {
                                safe,
                                safe_tx_hash: hash,
                                owner: Some(owner.clone()),
                                reason: "not_owner".into(),
                                detail: format!("{owner} is not an owner of the Safe"),
                            },
                        ));
                    } else if !first {
                        out.push(env.derive(
                            "safe",
                            "rejected",
                            &SafeSignatureRejected {
                                safe,
                                safe_tx_hash: hash,
                                owner: Some(owner.clone()),
                                reason: "duplicate".into(),
                                detail: format!("{owner} has already signed"),
                            },
                        ));
                    } else {
                        let n = r
                            .signed
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|(h, _)| *h == hash)
                            .count() as u32;
                        out.push(env.derive(
                            "safe",
                            "accepted",
                            &SafeSignatureAccepted {
                                safe: safe.clone(),
                                safe_tx_hash: hash.clone(),
                                owner,
                                kind: "ecdsa".into(),
                                confirmations: n,
                                threshold: 2,
                                signature,
                            },
                        ));
                        if n == 2 {
                            out.push(env.derive(
                                "safe",
                                "ready",
                                &SafeTxReady {
                                    safe,
                                    safe_tx_hash: hash,
                                    nonce: 0,
                                    confirmations: 2,
                                    threshold: 2,
                                },
                            ));
                        }
                    }
                    log.append(&out).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    async fn stop(&mut self) {
        self.token.cancel();
        if let Some(h) = self.handle.take() {
            h.await.unwrap().expect("the api stopped with an error");
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(RPC_SECRET) && !text.contains(&RELAYER_KEY[2..]),
            "a secret was served: {text}"
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(RPC_SECRET) && !text.contains(&RELAYER_KEY[2..]),
            "a secret was served: {text}"
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn list_path(&self) -> String {
        format!(
            "/v2/safes/{}/multisig-transactions/",
            self.safe.to_checksum(None)
        )
    }

    async fn events(&self, t: &str) -> Vec<Envelope> {
        self.log
            .read(1, &[t.to_owned()], 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.event)
            .collect()
    }

    fn hash(&self, t: &SafeTx) -> B256 {
        t.hash(CHAIN, self.safe, Version::Current)
    }
}

/// The body protocol-kit and api-kit send: the SafeTransactionData fields, the hash, the sender and its signature.
fn proposal(t: &SafeTx, hash: B256, sender: usize, signature: &str) -> String {
    json!({
        "to": t.to.to_checksum(None),
        "value": t.value.to_string(),
        "data": format!("0x{}", hex::encode(&t.data)),
        "operation": t.operation,
        "safeTxGas": t.safe_tx_gas.to_string(),
        "baseGas": t.base_gas.to_string(),
        "gasPrice": t.gas_price.to_string(),
        "gasToken": t.gas_token.to_checksum(None),
        "refundReceiver": t.refund_receiver.to_checksum(None),
        "nonce": u64::try_from(t.nonce).unwrap(),
        "contractTransactionHash": format!("{hash:#x}"),
        "sender": key(sender).address().to_checksum(None),
        "signature": signature,
        "origin": "{\"url\":\"https://example.invalid\",\"name\":\"test\"}",
    })
    .to_string()
}

fn transfer(nonce: u64) -> SafeTx {
    // An ERC-20 transfer, so dataDecoded has something to show.
    let mut data = hex::decode("a9059cbb").unwrap();
    data.extend_from_slice(Address::repeat_byte(0x42).into_word().as_slice());
    data.extend_from_slice(&U256::from(1234u64).to_be_bytes::<32>());
    SafeTx::call(
        Address::repeat_byte(0x17),
        U256::ZERO,
        Bytes::from(data),
        nonce,
    )
}

async fn round_trip(db: Db) {
    let mut h = H::start(db, "10s").await;
    let t = transfer(0);
    let hash = h.hash(&t);

    // Proposed by owner 0: 201 once the safe service accepted the sender's signature.
    let (status, body) = h
        .post(&h.list_path(), &proposal(&t, hash, 0, &sign(0, hash)))
        .await;
    assert_eq!(status, 201, "{body}");
    let submitted = h.events("safe.tx.submitted").await;
    assert_eq!(submitted.len(), 1);
    let s: steward_events::SafeTxSubmitted = submitted[0].payload().unwrap();
    assert_eq!(s.safe_tx_hash, format!("{hash:#x}"));
    assert_eq!(s.sender, key(0).address().to_checksum(None));
    assert_eq!(submitted[0].chain_id, Some(CHAIN));

    // Listed as pending, in the Safe Transaction Service's shape.
    let (status, list) = h
        .get(&format!("{}?executed=false&nonce__gte=0", h.list_path()))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["count"], 1);
    assert_eq!(list["next"], Value::Null);
    assert_eq!(list["previous"], Value::Null);
    let tx = &list["results"][0];
    assert_eq!(tx["safe"], h.safe.to_checksum(None));
    assert_eq!(tx["to"], t.to.to_checksum(None));
    assert_eq!(tx["value"], "0");
    assert_eq!(tx["nonce"], "0");
    assert_eq!(tx["safeTxGas"], "0");
    assert_eq!(tx["operation"], 0);
    assert_eq!(tx["safeTxHash"], format!("{hash:#x}"));
    assert_eq!(tx["proposer"], key(0).address().to_checksum(None));
    assert_eq!(tx["isExecuted"], false);
    assert_eq!(tx["isSuccessful"], Value::Null);
    assert_eq!(tx["confirmationsRequired"], 2);
    assert_eq!(
        tx["origin"],
        "{\"url\":\"https://example.invalid\",\"name\":\"test\"}"
    );
    assert_eq!(tx["trusted"], true);
    assert_eq!(tx["signatures"], Value::Null);
    assert_eq!(
        tx["dataDecoded"],
        json!({"method": "transfer", "parameters": [
            {"name": "to", "type": "address", "value": Address::repeat_byte(0x42).to_checksum(None)},
            {"name": "value", "type": "uint256", "value": "1234"},
        ]})
    );
    assert_eq!(tx["confirmations"].as_array().unwrap().len(), 1);
    assert_eq!(
        tx["confirmations"][0]["owner"],
        key(0).address().to_checksum(None)
    );
    assert_eq!(tx["confirmations"][0]["signatureType"], "EOA");
    assert_eq!(tx["confirmations"][0]["signature"], sign(0, hash));
    assert!(tx["submissionDate"].as_str().unwrap().ends_with('Z'));
    assert_eq!(tx["steward"]["chainId"], CHAIN);
    assert_eq!(tx["steward"]["status"], "queued");

    // Confirmed by owner 1.
    let path = format!("/v1/multisig-transactions/{hash:#x}/confirmations/");
    let (status, body) = h
        .post(&path, &json!({"signature": sign(1, hash)}).to_string())
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["signature"], sign(1, hash));
    // The same signature again: what the Safe Transaction Service answers too.
    let (status, _) = h
        .post(&path, &json!({"signature": sign(1, hash)}).to_string())
        .await;
    assert_eq!(status, 201);
    let (status, c) = h.get(&path).await;
    assert_eq!(status, 200);
    assert_eq!(c["count"], 2);
    let owners: Vec<&str> = c["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["owner"].as_str().unwrap())
        .collect();
    assert!(
        owners.contains(&key(1).address().to_checksum(None).as_str()),
        "{c}"
    );

    // By hash, v2 and v1 number formats.
    let (status, one) = h
        .get(&format!("/v2/multisig-transactions/{hash:#x}/"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["confirmations"].as_array().unwrap().len(), 2);
    let (_, v1) = h.get(&format!("/v1/multisig-transactions/{hash:#x}")).await;
    assert_eq!(v1["nonce"], 0);
    assert_eq!(v1["safeTxGas"], 0);

    // Executed: the relayer (here: the test) reports it.
    let ready = h.events("safe.tx.ready").await;
    assert_eq!(ready.len(), 1, "two owners signed");
    let executed = ready[0].derive(
        "safe",
        "executed",
        &SafeTxExecuted {
            safe: h.safe.to_checksum(None),
            safe_tx_hash: format!("{hash:#x}"),
            nonce: 0,
            transaction_hash: format!("{:#x}", B256::repeat_byte(0xee)),
            block_number: 42,
        },
    );
    h.log.append(&[executed]).await.unwrap();
    let mut done = Value::Null;
    for _ in 0..100 {
        let (_, one) = h
            .get(&format!("/v2/multisig-transactions/{hash:#x}/"))
            .await;
        if one["isExecuted"] == true {
            done = one;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done["isExecuted"], true, "never shown executed");
    assert_eq!(done["isSuccessful"], true);
    assert_eq!(done["blockNumber"], 42);
    assert_eq!(
        done["transactionHash"],
        format!("{:#x}", B256::repeat_byte(0xee))
    );
    assert!(done["executionDate"].is_string());
    assert_eq!(done["steward"]["status"], "executed");
    // The signatures as execTransaction takes them: sorted by owner.
    let mut pair = [
        (key(0).address(), sign(0, hash)),
        (key(1).address(), sign(1, hash)),
    ];
    pair.sort();
    let packed = format!("0x{}{}", &pair[0].1[2..], &pair[1].1[2..]);
    assert_eq!(done["signatures"], packed);
    let (_, pending) = h.get(&format!("{}?executed=false", h.list_path())).await;
    assert_eq!(pending["count"], 0);
    let (_, all) = h.get(&format!("{}?executed=true", h.list_path())).await;
    assert_eq!(all["count"], 1);
    // Confirming an executed transaction is refused.
    let (status, body) = h
        .post(&path, &json!({"signature": sign(2, hash)}).to_string())
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("already executed"),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn proposals_and_confirmations_round_trip_on_sqlite() {
    round_trip(Db::Sqlite).await;
}

#[tokio::test]
async fn proposals_and_confirmations_round_trip_on_postgres() {
    round_trip(Db::Postgres).await;
}

#[tokio::test]
async fn refusals_are_answered_at_once_or_with_the_safe_services_reason() {
    let mut h = H::start(Db::Sqlite, "10s").await;
    let t = transfer(0);
    let hash = h.hash(&t);

    // A hash computed for another configured chain, or for none: refused by the API, nothing
    // is submitted.
    let other_chain = t.hash(1, h.safe, Version::Current);
    let (status, body) = h
        .post(
            &h.list_path(),
            &proposal(&t, other_chain, 0, &sign(0, other_chain)),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["reason"], "wrong_chain");
    assert!(
        body["detail"].as_str().unwrap().contains("hash on chain 1"),
        "{body}"
    );
    let nowhere = t.hash(5, h.safe, Version::Current);
    let (status, body) = h
        .post(&h.list_path(), &proposal(&t, nowhere, 0, &sign(0, nowhere)))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["reason"], "wrong_hash");
    assert!(
        body["nonFieldErrors"][0]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{body}"
    );
    // A sender who is not an owner.
    let (status, body) = h
        .post(&h.list_path(), &proposal(&t, hash, 5, &sign(5, hash)))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["reason"], "not_owner");
    // Bytes that are no signature.
    let mut bad = sign(0, hash);
    bad.replace_range(bad.len() - 2.., "07");
    let (status, body) = h.post(&h.list_path(), &proposal(&t, hash, 0, &bad)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["reason"], "malformed");
    assert!(
        h.events("safe.tx.submitted").await.is_empty(),
        "refused proposals were submitted"
    );
    // A signature by another owner than the sender: the safe service's refusal comes back.
    let (status, body) = h
        .post(&h.list_path(), &proposal(&t, hash, 0, &sign(1, hash)))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["reason"], "wrong_hash");
    assert!(
        body["detail"].as_str().unwrap().contains("not the sender"),
        "{body}"
    );
    assert_eq!(h.events("safe.tx.submitted").await.len(), 1);

    // A confirmation the safe service refuses: its reason and detail come back.
    let (status, _) = h
        .post(&h.list_path(), &proposal(&t, hash, 0, &sign(0, hash)))
        .await;
    assert_eq!(status, 201);
    let path = format!("/v1/multisig-transactions/{hash:#x}/confirmations/");
    let (status, body) = h
        .post(&path, &json!({"signature": sign(6, hash)}).to_string())
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["reason"], "not_owner");
    assert_eq!(
        body["detail"],
        format!(
            "{} is not an owner of the Safe",
            key(6).address().to_checksum(None)
        )
    );
    assert_eq!(
        h.events("safe.signature.submitted").await.len(),
        1,
        "submitted to the safe service"
    );

    // The safe service does not answer: 504 after answer_timeout, the submission is in the log.
    h.responder.silent.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let (status, body) = h
        .post(&path, &json!({"signature": sign(2, hash)}).to_string())
        .await;
    assert_eq!(status, 504, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("has not answered"),
        "{body}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "answered before the timeout"
    );
    assert_eq!(h.events("safe.signature.submitted").await.len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_message_and_safes_are_read_live() {
    let mut h = H::start(Db::Sqlite, "2s").await;
    let safe = h.safe.to_checksum(None);

    let (status, info) = h.get(&format!("/v1/safes/{safe}/")).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["address"], safe);
    assert_eq!(info["nonce"], "0");
    assert_eq!(info["threshold"], 2);
    let owners: HashSet<String> = info["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        owners,
        (0..3).map(|i| key(i).address().to_checksum(None)).collect()
    );
    let cs = |a: &str| Address::from_str(a).unwrap().to_checksum(None);
    assert_eq!(info["masterCopy"], cs(&h.d.singleton));
    assert_eq!(info["fallbackHandler"], cs(&h.d.fallback_handler));
    assert_eq!(info["modules"], json!([]));
    assert_eq!(info["guard"], Address::ZERO.to_checksum(None));
    assert_eq!(info["version"], "1.4.1");
    // Without the trailing slash too (api-kit calls /v1/about without one).
    let (status, about) = h.get("/v1/about").await;
    assert_eq!(status, 200);
    assert_eq!(about["steward"]["safes"][0]["address"], safe);

    let lower = safe.to_ascii_lowercase();
    let (status, body) = h.get(&format!("/v1/safes/{lower}/")).await;
    assert_eq!(status, 422);
    assert_eq!(body["message"], "Checksum address validation failed");
    let (status, body) = h.get("/v1/safes/0x1234/").await;
    assert_eq!(status, 422);
    assert!(
        body["message"].as_str().unwrap().contains("not an address"),
        "{body}"
    );
    let stranger = Address::repeat_byte(0x99).to_checksum(None);
    let (status, body) = h.get(&format!("/v1/safes/{stranger}/")).await;
    assert_eq!(status, 404);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("not a Safe Steward queues"),
        "{body}"
    );
    let (status, _) = h.get("/v2/multisig-transactions/0x12/").await;
    assert_eq!(status, 400);
    let (status, _) = h
        .get(&format!(
            "/v2/multisig-transactions/{:#x}/",
            B256::repeat_byte(3)
        ))
        .await;
    assert_eq!(status, 404);
    let (status, body) = h.get(&format!("{}?ordering=value", h.list_path())).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("cannot order by `value`"),
        "{body}"
    );
    let (status, body) = h.post(&h.list_path(), "not json").await;
    assert_eq!(status, 400);
    assert_eq!(body["detail"], "the body must be a JSON object");
    let mut p: Value =
        serde_json::from_str(&proposal(&transfer(0), B256::ZERO, 0, "0x00")).unwrap();
    p["to"] = json!("0xABCDEF");
    let (status, body) = h.post(&h.list_path(), &p.to_string()).await;
    assert_eq!(status, 422);
    assert!(
        body["to"][0].as_str().unwrap().contains("not an address"),
        "{body}"
    );
    let (status, body) = h
        .post(
            &format!(
                "/v1/multisig-transactions/{:#x}/confirmations/",
                B256::repeat_byte(3)
            ),
            "{\"signature\": \"0xzz\"}",
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["signature"][0].as_str().unwrap().contains("not hex"),
        "{body}"
    );
    let (status, _) = h.get("/v3/nothing/").await;
    assert_eq!(status, 404);

    // A page at a time, with links to the others.
    for n in 0..3 {
        let t = transfer(n);
        let hash = h.hash(&t);
        let (status, body) = h
            .post(&h.list_path(), &proposal(&t, hash, 0, &sign(0, hash)))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, page) = h
        .get(&format!("{}?limit=2&ordering=nonce", h.list_path()))
        .await;
    assert_eq!(page["count"], 3);
    assert_eq!(page["countUniqueNonce"], 3);
    let nonces: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["nonce"].as_str().unwrap())
        .collect();
    assert_eq!(nonces, ["0", "1"]);
    let next = page["next"].as_str().unwrap();
    assert!(next.ends_with("?ordering=nonce&limit=2&offset=2"), "{next}");
    let next_page: Value =
        serde_json::from_str(&h.http.get(next).send().await.unwrap().text().await.unwrap())
            .unwrap();
    assert_eq!(next_page["results"][0]["nonce"], "2");
    assert!(next_page["previous"]
        .as_str()
        .unwrap()
        .ends_with("?ordering=nonce&limit=2"));
    let (_, gte) = h.get(&format!("{}?nonce__gte=1", h.list_path())).await;
    assert_eq!(gte["count"], 2);
    assert_eq!(
        gte["results"][0]["nonce"], "2",
        "newest nonce first by default"
    );
    h.stop().await;
    drop(h.dir);
    drop(h.anvil);
}

#[tokio::test]
async fn the_projection_is_idempotent_and_tolerates_order() {
    use steward_api::model::{self, ApiProjection};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        2,
    )
    .await
    .unwrap();
    let safe = Address::repeat_byte(0x5a).to_checksum(None);
    let hash = format!("{:#x}", B256::repeat_byte(0x77));
    let proposed = Envelope::new(
        "safe",
        "p",
        &SafeTxProposed {
            safe: safe.clone(),
            safe_tx_hash: hash.to_uppercase().replace("0X", "0x"),
            nonce: 4,
            to: safe.clone(),
            value: "0".into(),
            data: "0x".into(),
            operation: 0,
            safe_tx_gas: "0".into(),
            base_gas: "0".into(),
            gas_price: "0".into(),
            gas_token: Address::ZERO.to_checksum(None),
            refund_receiver: Address::ZERO.to_checksum(None),
            would_revert: true,
            reason: "rejection".into(),
            decoded: None,
            origin: Some("runner".into()),
            threshold: Some(2),
            simulation: Some("GS013".into()),
        },
    );
    let accepted = proposed.derive(
        "safe",
        "a",
        &SafeSignatureAccepted {
            safe: safe.clone(),
            safe_tx_hash: hash.clone(),
            owner: Address::repeat_byte(1).to_checksum(None),
            kind: "eth_sign".into(),
            confirmations: 1,
            threshold: 3,
            signature: "0xAB".into(),
        },
    );
    let executed = proposed.derive(
        "safe",
        "e",
        &SafeTxExecuted {
            safe: safe.clone(),
            safe_tx_hash: hash.clone(),
            nonce: 4,
            transaction_hash: format!("{:#x}", B256::repeat_byte(9)),
            block_number: 7,
        },
    );
    let ready = proposed.derive(
        "safe",
        "r",
        &SafeTxReady {
            safe: safe.clone(),
            safe_tx_hash: hash.clone(),
            nonce: 4,
            confirmations: 3,
            threshold: 3,
        },
    );
    // Out of order: the execution first, a late `ready` last; then everything again.
    for (seq, e) in [(3, &executed), (2, &accepted), (1, &proposed), (4, &ready)] {
        assert!(store
            .project(&ApiProjection, seq, e)
            .await
            .unwrap()
            .is_applied());
    }
    for (seq, e) in [(1, &proposed), (2, &accepted), (3, &executed), (4, &ready)] {
        assert!(!store
            .project(&ApiProjection, seq, e)
            .await
            .unwrap()
            .is_applied());
    }
    let row = model::tx(store.pool(), &hash)
        .await
        .unwrap()
        .expect("the transaction");
    assert_eq!(
        row.status, "executed",
        "a late `ready` does not undo an execution"
    );
    assert_eq!(row.nonce, 4);
    assert_eq!(
        row.threshold,
        Some(3),
        "the threshold of the latest signature"
    );
    assert_eq!(row.block_number, Some(7));
    assert_eq!(row.origin.as_deref(), Some("runner"));
    assert_eq!(row.proposer, None);
    let c = model::confirmations(store.pool(), &[hash.as_str()])
        .await
        .unwrap();
    assert_eq!(c[&hash].len(), 1);
    assert_eq!(c[&hash][0].signature, "0xab");
    // Applied again without the marker (a projection bug or a hand replay): still one row each.
    let mut tx = store.begin().await.unwrap();
    for e in [&proposed, &accepted, &executed] {
        steward_store::Projection::apply(&ApiProjection, &mut tx, e)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let c = model::confirmations(store.pool(), &[hash.as_str()])
        .await
        .unwrap();
    assert_eq!(c[&hash].len(), 1);
    let (count, rows) = model::list(
        store.pool(),
        &safe,
        &model::ListQuery {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((count, rows.len()), (1, 1));
    let v = steward_api::sts::transaction(&rows[0], &c[&hash], None, Some(1), true);
    assert_eq!(v["steward"]["wouldRevert"], true);
    assert_eq!(v["steward"]["simulation"], "GS013");
    assert_eq!(v["confirmations"][0]["signatureType"], "ETH_SIGN");
    assert_eq!(v["origin"], "runner");
    // A verdict is found by its submission's id.
    let o = model::outcome(store.pool(), proposed.id)
        .await
        .unwrap()
        .expect("verdict");
    assert!(o.accepted);
    assert_eq!(
        model::outcome(store.pool(), uuid::Uuid::now_v7())
            .await
            .unwrap(),
        None
    );
    // A reorg retracted the execution: back to queued, without it; then ready again.
    let reopened = proposed.derive(
        "safe",
        "o",
        &SafeTxReopened {
            safe: safe.clone(),
            safe_tx_hash: hash.clone(),
            nonce: 4,
            previous_status: "executed".into(),
            transaction_hash: format!("{:#x}", B256::repeat_byte(9)),
            block_number: 7,
            block_hash: format!("{:#x}", B256::repeat_byte(8)),
            reopened: 1,
            reason: "rejection".into(),
        },
    );
    let again = proposed.derive(
        "safe",
        "r2",
        &SafeTxReady {
            safe: safe.clone(),
            safe_tx_hash: hash.clone(),
            nonce: 4,
            confirmations: 3,
            threshold: 3,
        },
    );
    let status = |row: model::TxRow| (row.status, row.block_number, row.transaction_hash);
    store.project(&ApiProjection, 5, &reopened).await.unwrap();
    let row = model::tx(store.pool(), &hash).await.unwrap().unwrap();
    assert_eq!(status(row), ("queued".into(), None, None));
    store.project(&ApiProjection, 6, &again).await.unwrap();
    let row = model::tx(store.pool(), &hash).await.unwrap().unwrap();
    assert_eq!(status(row), ("ready".into(), None, None));
}
