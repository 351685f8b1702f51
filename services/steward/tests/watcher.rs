//! The watcher inside the `steward` process: `steward up` following a real anvil, and two
//! `steward run watcher` replicas on NATS and PostgreSQL, one active, one standing by, the
//! standby taking over when the active one is killed.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use steward_events::{ChainLogObserved, Envelope};
use steward_log::EventLog;
use steward_testkit::Anvil;

mod common;

use common::*;

const TRANSFER: &str = "event Transfer(address indexed from, address indexed to, uint256 value)";

fn emit(anvil: &Anvil, token: &str, n: u64) {
    // emitTransfers(uint256)
    let data = format!("0x9a1304ae{n:064x}");
    anvil.send_transaction(json!({ "to": token, "data": data }));
}

fn chain_yaml(anvil_url: &str, token: &str) -> String {
    format!(
        "chains:\n  - name: local\n    chain_id: 31337\n    rpc: [{{url: \"{anvil_url}\"}}]\n    poll_interval: 200ms\n    multicall: disabled\n    start_block: 1\n    watches:\n      - name: tokens\n        address: \"{token}\"\n        events: [\"{TRANSFER}\"]\n"
    )
}

async fn logs_in(log: &dyn EventLog) -> Vec<Envelope> {
    log.read(1, &["chain.log.observed".to_owned()], 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.event)
        .collect()
}

async fn wait_for_logs(log: &dyn EventLog, n: usize) -> Vec<Envelope> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = logs_in(log).await;
        if logs.len() >= n || Instant::now() > deadline {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write(dir: &Path, text: &str) -> String {
    let p = dir.join("steward.yaml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn up_follows_a_chain_into_the_embedded_log_and_never_prints_the_rpc_key() {
    let anvil = Anvil::start();
    let token = anvil.deploy_fixture("TransferEmitter");
    emit(&anvil, &token, 3);
    let dir = tempfile::tempdir().unwrap();
    // The query string stands for a provider key: anvil ignores it, the logs must too.
    let rpc = format!("{}/?apikey=K3Y-n0t-in-logs", anvil.url());
    let cfg = write(
        dir.path(),
        &format!(
            "data_dir: {}\n{}      - name: ghost\n        address: \"0x000000000000000000000000000000000000dEaD\"\n        events: [\"{TRANSFER}\"]\n",
            dir.path().join("data").display(),
            chain_yaml(&rpc, &token)
        ),
    );
    let addr = free_addr();
    let mut up = spawn(
        steward(&["up", "--config", &cfg, "--listen", &addr.to_string()]).env("RUST_LOG", "debug"),
    );
    let body = wait_ready(addr, &mut up.child);
    assert!(body.contains("\"watcher\":true"), "{body}");
    emit(&anvil, &token, 2);

    let log =
        steward_log::embedded::EmbeddedLog::open(&dir.path().join("data/events.db"), "steward")
            .await
            .unwrap();
    let logs = wait_for_logs(&log, 5).await;
    assert_eq!(logs.len(), 5, "3 + 2 transfers");
    let keys: HashSet<&str> = logs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys.len(), 5);
    let p: ChainLogObserved = logs[4].payload().unwrap();
    assert_eq!(p.watch.as_deref(), Some("tokens"));

    signal(&up.child, "TERM");
    let status = wait_exit(&mut up.child, Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", up.stderr());
    let stderr = up.stderr();
    assert!(stderr.contains("following the chain"), "{stderr}");
    assert!(
        !stderr.contains("K3Y-n0t-in-logs"),
        "the RPC key leaked: {stderr}"
    );

    // Restarted, it resumes: no block, no log twice.
    let mut again = spawn(&mut steward(&[
        "up",
        "--config",
        &cfg,
        "--listen",
        &addr.to_string(),
    ]));
    wait_ready(addr, &mut again.child);
    emit(&anvil, &token, 1);
    let logs = wait_for_logs(&log, 6).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let logs_after = logs_in(&log).await;
    assert_eq!(logs.len(), 6);
    assert_eq!(logs_after.len(), 6, "nothing doubled after the restart");
    let blocks = log
        .read(1, &["chain.block.observed".to_owned()], 10_000)
        .await
        .unwrap();
    let numbers: Vec<u64> = blocks
        .iter()
        .map(|s| {
            s.event
                .payload::<steward_events::ChainBlockObserved>()
                .unwrap()
                .number
        })
        .collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "every block once, in order");
    signal(&again.child, "TERM");
    assert!(wait_exit(&mut again.child, Duration::from_secs(30)).success());
}

#[tokio::test]
async fn two_replicas_follow_a_chain_once_and_the_standby_takes_over_from_a_killed_one() {
    let anvil = Anvil::start();
    let token = anvil.deploy_fixture("TransferEmitter");
    emit(&anvil, &token, 2);
    let nats = steward_testkit::nats_url();
    let db = steward_testkit::fresh_postgres().await;
    let stream = steward_testkit::unique("S").to_uppercase();
    let prefix = steward_testkit::unique("p");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "event_log:\n  backend: nats\n  prefix: {prefix}\n  nats:\n    url: ${{NATS_URL}}\n    stream: {stream}\ndatabase:\n  url: ${{DB_URL}}\n{}",
            chain_yaml(&anvil.url(), &token)
        ),
    );
    let replica = |addr: std::net::SocketAddr| -> Command {
        let mut c = steward(&[
            "run",
            "watcher",
            "--config",
            &cfg,
            "--listen",
            &addr.to_string(),
        ]);
        c.env("NATS_URL", &nats).env("DB_URL", &db);
        c
    };
    let (a_addr, b_addr) = (free_addr(), free_addr());
    let mut a = spawn(&mut replica(a_addr));
    wait_ready(a_addr, &mut a.child);
    let log = steward_log::nats::NatsLog::connect(
        steward_log::nats::NatsConfig::new(nats.clone())
            .stream(stream.clone())
            .prefix(prefix.clone()),
    )
    .await
    .unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log);
    assert_eq!(wait_for_logs(log.as_ref(), 2).await.len(), 2);
    let mut b = spawn(&mut replica(b_addr));
    wait_ready(b_addr, &mut b.child);
    // Both are ready; only one follows the chain.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.stderr().contains("standing by") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(b.stderr().contains("standing by"), "{}", b.stderr());
    assert!(
        !b.stderr().contains("following the chain"),
        "{}",
        b.stderr()
    );

    emit(&anvil, &token, 3);
    assert_eq!(wait_for_logs(log.as_ref(), 5).await.len(), 5);

    // The active replica dies without a goodbye; the standby takes the chain over and
    // resumes from the shared cursor.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    emit(&anvil, &token, 4);
    let logs = wait_for_logs(log.as_ref(), 9).await;
    assert_eq!(logs.len(), 9, "{}", b.stderr());
    assert!(b.stderr().contains("following the chain"), "{}", b.stderr());
    let keys: HashSet<&str> = logs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys.len(), 9, "no log event twice");
    // Nothing more arrives: the takeover did not re-ingest.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(logs_in(log.as_ref()).await.len(), 9);
    signal(&b.child, "TERM");
    assert!(wait_exit(&mut b.child, Duration::from_secs(30)).success());
}
