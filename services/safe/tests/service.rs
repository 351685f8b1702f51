//! The safe service as `steward run safe` runs it: on a real nats-server (JetStream) and a
//! real PostgreSQL, against anvil with the Safe v1.4.1 contracts. A proposal is queued,
//! signed and executed by the relayer (settled from its receipt, with no watcher running);
//! after a restart, redelivered requests announce what was already queued instead of taking
//! new nonces.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use steward_config::{Config, Document, MapEnv};
use steward_events::{
    Envelope, SafeCall, SafeProposalRequested, SafeSignatureAccepted, SafeSignatureSubmitted,
    SafeTxExecuted, SafeTxProposed,
};
use steward_log::nats::{NatsConfig, NatsLog};
use steward_log::{EventLog, LogMetrics};
use steward_runtime::{Readiness, ServiceContext};
use steward_store::Store;
use steward_testkit::{Anvil, ANVIL_KEYS};
use tokio_util::sync::CancellationToken;

fn key(i: usize) -> PrivateKeySigner {
    PrivateKeySigner::from_str(ANVIL_KEYS[i]).unwrap()
}

struct Running {
    token: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(config: &Config, log: Arc<dyn EventLog>, db: &str) -> Running {
    let store = Store::connect(db, 4).await.unwrap();
    let token = CancellationToken::new();
    let mut registry = prometheus_client::registry::Registry::default();
    let ctx = ServiceContext {
        name: steward_safe::NAME,
        log,
        metrics: LogMetrics::register(&mut registry),
        store,
        config: Arc::new(config.clone()),
        shutdown: token.clone(),
        ready: Readiness::default().register(steward_safe::NAME),
    };
    let handle = tokio::spawn(steward_safe::service().run(ctx));
    Running { token, handle }
}

async fn stop(r: Running) {
    r.token.cancel();
    r.handle.await.unwrap().unwrap();
}

async fn wait<P: serde::de::DeserializeOwned + steward_events::Payload>(
    log: &dyn EventLog,
    event_type: &str,
    n: usize,
) -> Vec<(Envelope, P)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found: Vec<(Envelope, P)> = log
            .read(1, &[event_type.to_owned()], 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|s| {
                let p = s.event.payload::<P>().unwrap();
                (s.event, p)
            })
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{n} {event_type} not seen in 60 s (saw {})",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn on_nats_and_postgres_a_proposal_is_signed_relayed_and_survives_a_restart() {
    let anvil = Anvil::start();
    let d = anvil.deploy_safe();
    let owners = [key(0).address().to_string(), key(1).address().to_string()];
    let safe = anvil.create_safe(&d, &owners, 2, 1);
    let token = anvil.deploy_fixture("MockERC20");
    let yaml = format!(
        "chains:
  - name: local
    chain_id: 31337
    rpc: [{{url: \"{url}\"}}]
    multicall: disabled
    watches:
      - {{name: treasury, pack: safe, address: \"{safe}\"}}
safes:
  - name: treasury
    chain: local
    address: \"{safe}\"
    multi_send: \"{ms}\"
    multi_send_call_only: \"{msco}\"
    relayer: {{key: \"{relayer}\"}}
",
        url = anvil.url(),
        ms = d.multi_send,
        msco = d.multi_send_call_only,
        relayer = ANVIL_KEYS[6],
    );
    let dir = tempfile::tempdir().unwrap();
    let doc = Document::parse(&yaml, "steward.yaml", &MapEnv::new()).unwrap();
    let config =
        Config::from_document_checked(&doc, dir.path().to_path_buf(), &steward_safe::check_config)
            .unwrap_or_else(|e| panic!("config: {e}"));
    let nats = steward_testkit::nats_url();
    let stream = steward_testkit::unique("SAFE").to_ascii_uppercase();
    let log: Arc<dyn EventLog> = Arc::new(
        NatsLog::connect(
            NatsConfig::new(nats)
                .stream(stream.clone())
                .prefix(stream.to_ascii_lowercase()),
        )
        .await
        .unwrap(),
    );
    let db = steward_testkit::fresh_postgres().await;
    let running = start(&config, log.clone(), &db).await;

    let mint = |n: u64| {
        format!(
            "0x40c10f19{:0>64}{n:064x}",
            safe.trim_start_matches("0x").to_ascii_lowercase()
        )
    };
    let request = |k: &str, n: u64| {
        Envelope::new(
            "test",
            k,
            &SafeProposalRequested {
                safe: "treasury".into(),
                calls: vec![SafeCall {
                    to: token.clone(),
                    value: "0".into(),
                    data: mint(n),
                    operation: 0,
                }],
                reason: k.into(),
                replace_nonce: None,
            },
        )
    };
    log.append(&[request("one", 1), request("two", 2)])
        .await
        .unwrap();
    let proposed: Vec<(Envelope, SafeTxProposed)> = wait(log.as_ref(), "safe.tx.proposed", 2).await;
    let one = proposed
        .iter()
        .find(|(_, p)| p.reason == "one")
        .unwrap()
        .1
        .clone();
    assert_eq!(one.nonce, 0);
    let hash = B256::from_str(&one.safe_tx_hash).unwrap();
    for (i, k) in [(0, "s0"), (1, "s1")] {
        log.append(&[Envelope::new(
            "test",
            k,
            &SafeSignatureSubmitted {
                safe: safe.clone(),
                safe_tx_hash: one.safe_tx_hash.clone(),
                owner: key(i).address().to_string(),
                signature: format!(
                    "0x{}",
                    alloy::primitives::hex::encode(
                        key(i).sign_hash_sync(&hash).unwrap().as_bytes()
                    )
                ),
                via: "test".into(),
            },
        )])
        .await
        .unwrap();
    }
    let accepted: Vec<(Envelope, SafeSignatureAccepted)> =
        wait(log.as_ref(), "safe.signature.accepted", 2).await;
    assert_eq!(accepted.len(), 2);
    // The relayer's receipt settles it (no watcher runs here).
    let executed: Vec<(Envelope, SafeTxExecuted)> = wait(log.as_ref(), "safe.tx.executed", 1).await;
    assert_eq!(executed[0].1.safe_tx_hash, one.safe_tx_hash);
    let receipt = anvil.rpc(
        "eth_getTransactionReceipt",
        serde_json::json!([executed[0].1.transaction_hash]),
    );
    assert_eq!(receipt["status"], "0x1");
    // It continues the proposal's story.
    let story = proposed
        .iter()
        .find(|(_, p)| p.reason == "one")
        .unwrap()
        .0
        .correlation_id;
    assert_eq!(executed[0].0.correlation_id, story);

    // Restarted, it carries on from the store: the next request takes the next nonce.
    stop(running).await;
    let running = start(&config, log.clone(), &db).await;
    log.append(&[request("three", 3)]).await.unwrap();
    let proposed: Vec<(Envelope, SafeTxProposed)> = wait(log.as_ref(), "safe.tx.proposed", 3).await;
    let three = proposed.iter().find(|(_, p)| p.reason == "three").unwrap();
    assert_eq!(three.1.nonce, 2);
    stop(running).await;

    // A request delivered again (a crash after handling, before the ack) announces the
    // same transaction, the very same envelope, and takes no nonce.
    let core = steward_safe::Core::new(
        &config,
        steward_safe::Queue::new(Store::connect(&db, 2).await.unwrap()),
    )
    .unwrap();
    let original = log
        .read(1, &["safe.proposal.requested".to_owned()], 100)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.event.key == "two")
        .unwrap()
        .event;
    let again = core.handle(&original).await.unwrap();
    let first = proposed.iter().find(|(_, p)| p.reason == "two").unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first.0.id);
    assert_eq!(again[0].payload::<SafeTxProposed>().unwrap().nonce, 1);
}
