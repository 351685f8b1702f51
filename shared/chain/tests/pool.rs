//! EndpointPool against real anvil nodes, plus a tiny misbehaving JSON-RPC server where a
//! faulty endpoint is needed.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::U256;
use serde_json::{json, Value};
use steward_chain::{
    alloy, Backoff, ChainError, EndpointConfig, EndpointPool, EndpointState, PoolOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const ANVIL_CHAIN: u64 = 31337;

/// An anvil process from PATH on a loopback port; killed on drop.
struct Anvil {
    child: Child,
    port: u16,
}

impl Anvil {
    async fn start(chain_id: Option<u64>) -> Self {
        Self::start_on(free_port().await, chain_id).await
    }

    async fn start_on(port: u16, chain_id: Option<u64>) -> Self {
        let mut cmd = Command::new("anvil");
        cmd.args(["--port", &port.to_string(), "--silent"]);
        if let Some(id) = chain_id {
            cmd.args(["--chain-id", &id.to_string()]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `anvil` from PATH ({e}); install it with scripts/install-test-deps \
                     or npm's @foundry-rs/anvil-linux-amd64 and put its bin/ on PATH"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "anvil did not listen on port {port} within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, port }
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    async fn kill(mut self) -> u16 {
        self.child.kill().await.expect("kill anvil");
        self.port
    }
}

async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// How the fake endpoint misbehaves on methods other than `eth_chainId`/`eth_blockNumber`,
/// which it always answers like anvil (so it passes the probes).
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Answers correctly (`eth_call` → `0x`).
    Healthy,
    /// JSON-RPC internal error.
    Errors,
    /// HTTP 429.
    TooMany,
    /// Answers after 5 s.
    Slow,
    /// `null` result.
    Null,
    /// A provider's limit on `eth_getLogs` ranges.
    RangeLimit,
    /// HTTP 503 with an HTML body.
    Unavailable,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// A provider's limit on `eth_getLogs` ranges, with HTTP 400.
    RangeLimit400,
}

/// A JSON-RPC-over-HTTP server counting the methods it was asked.
struct Fake {
    url: String,
    calls: Arc<Mutex<HashMap<String, u32>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let calls = Arc::new(Mutex::new(HashMap::new()));
        let counted = calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, mode, counted.clone()));
            }
        });
        Self { url, calls, task }
    }

    fn count(&self, method: &str) -> u32 {
        self.calls
            .lock()
            .expect("lock")
            .get(method)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, mode: Mode, calls: Arc<Mutex<HashMap<String, u32>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (pos + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request: Value =
        serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    let method = request["method"].as_str().unwrap_or("").to_owned();
    let id = request["id"].clone();
    *calls
        .lock()
        .expect("lock")
        .entry(method.clone())
        .or_insert(0) += 1;
    let (status, body) = match (method.as_str(), mode) {
        ("eth_chainId", _) => (200, json!({"jsonrpc": "2.0", "id": id, "result": "0x7a69"})),
        ("eth_blockNumber", _) => (200, json!({"jsonrpc": "2.0", "id": id, "result": "0x0"})),
        (_, Mode::Healthy) => (200, json!({"jsonrpc": "2.0", "id": id, "result": "0x"})),
        (_, Mode::Errors) => (
            200,
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "internal error"}}),
        ),
        (_, Mode::TooMany) => (429, json!({"message": "too many requests"})),
        (_, Mode::Slow) => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            (200, json!({"jsonrpc": "2.0", "id": id, "result": "0x1"}))
        }
        (_, Mode::Null) => (200, json!({"jsonrpc": "2.0", "id": id, "result": null})),
        (_, Mode::RangeLimit) => (
            200,
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32600, "message": "eth_getLogs is limited to a 10,000 range"}}),
        ),
        (_, Mode::RangeLimit400) => (
            400,
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "query returned more than 10000 results"}}),
        ),
        (_, Mode::Unavailable) => (503, json!("<html>upstream down</html>")),
        (_, Mode::Garbage) => (200, json!("{\"jsonrpc\": \"2.0\", \"res")),
    };
    // Strings stand for raw bodies (not JSON-RPC at all).
    let body = match body {
        Value::String(raw) => raw,
        other => other.to_string(),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        429 => "Too Many Requests",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn options() -> PoolOptions {
    PoolOptions {
        timeout: Duration::from_millis(1500),
        retries: 3,
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            multiplier: 2.0,
        },
        cooldown: Duration::from_secs(60),
        demote_after: 3,
        max_head_lag: 10,
    }
}

async fn block_number(pool: &EndpointPool) -> Result<u64, ChainError> {
    pool.call(|p| async move {
        use alloy::providers::Provider;
        p.get_block_number().await
    })
    .await
}

#[tokio::test]
async fn failover_when_an_endpoint_dies_and_promotion_after_restart() {
    let a = Anvil::start(None).await;
    let b = Anvil::start(None).await;
    let pool = EndpointPool::new(
        ANVIL_CHAIN,
        vec![
            EndpointConfig::new(a.http()).with_weight(10),
            EndpointConfig::new(b.ws()),
        ],
        PoolOptions {
            cooldown: Duration::from_millis(500),
            ..options()
        },
    )
    .expect("pool");

    for _ in 0..5 {
        block_number(&pool)
            .await
            .expect("request through the preferred endpoint");
    }
    let status = pool.status();
    assert_eq!(status.endpoints[0].state, EndpointState::Healthy);
    assert_eq!(
        status.endpoints[1].state,
        EndpointState::Unverified,
        "{status:?}"
    );
    assert_eq!(
        status.endpoints[1].requests, 0,
        "the failover endpoint was not needed"
    );

    let port = a.kill().await;
    for i in 0..10 {
        block_number(&pool)
            .await
            .unwrap_or_else(|e| panic!("request {i} after the kill: {e}"));
    }
    let status = pool.status();
    assert_eq!(
        status.endpoints[0].state,
        EndpointState::Demoted,
        "{status:?}"
    );
    assert!(status.endpoints[0].last_error.is_some());
    assert_eq!(
        status.endpoints[1].state,
        EndpointState::Healthy,
        "{status:?}"
    );
    assert!(status.endpoints[1].requests >= 10);

    let _a = Anvil::start_on(port, None).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        block_number(&pool).await.expect("requests keep succeeding");
        if pool.status().endpoints[0].state == EndpointState::Healthy {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not promoted back: {:?}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = pool.status().endpoints[0].requests;
    block_number(&pool).await.expect("request");
    assert_eq!(
        pool.status().endpoints[0].requests,
        before + 1,
        "the preferred endpoint serves again"
    );
}

#[tokio::test]
async fn wrong_chain_id_endpoint_is_refused_and_never_used() {
    let wrong = Anvil::start(Some(999)).await;
    let good = Anvil::start(None).await;
    let pool = EndpointPool::new(
        ANVIL_CHAIN,
        vec![
            EndpointConfig::new(wrong.http()).with_weight(100),
            EndpointConfig::new(good.http()),
        ],
        options(),
    )
    .expect("pool");
    for _ in 0..5 {
        block_number(&pool)
            .await
            .expect("served by the right chain");
    }
    pool.check_health().await;
    for _ in 0..5 {
        block_number(&pool)
            .await
            .expect("served by the right chain");
    }
    let status = pool.status();
    let refused = &status.endpoints[0];
    assert_eq!(refused.state, EndpointState::Refused);
    assert_eq!(
        refused.requests, 1,
        "only the eth_chainId probe ever reached it"
    );
    let why = refused.last_error.as_deref().expect("reason");
    assert!(why.contains("999") && why.contains("31337"), "{why}");

    let alone = EndpointPool::new(
        ANVIL_CHAIN,
        vec![EndpointConfig::new(wrong.http())],
        options(),
    )
    .expect("pool");
    let err = block_number(&alone)
        .await
        .expect_err("no endpoint of chain 31337");
    assert!(!err.is_retryable(), "all endpoints refused is fatal: {err}");
}

#[tokio::test]
async fn misbehaving_endpoints_are_demoted_and_others_used() {
    let anvil = Anvil::start(None).await;
    for mode in [Mode::Errors, Mode::TooMany, Mode::Slow, Mode::Null] {
        let fake = Fake::start(mode).await;
        let pool = EndpointPool::new(
            ANVIL_CHAIN,
            vec![
                EndpointConfig::new(&fake.url).with_weight(100),
                EndpointConfig::new(anvil.http()),
            ],
            PoolOptions {
                timeout: Duration::from_millis(500),
                ..options()
            },
        )
        .expect("pool");
        for i in 0..5 {
            let price: U256 = pool
                .request("eth_gasPrice", json!([]))
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: request {i} failed: {e}"));
            assert!(price > U256::ZERO);
        }
        let status = pool.status();
        assert_eq!(
            status.endpoints[0].state,
            EndpointState::Demoted,
            "{mode:?}: {status:?}"
        );
        assert!(status.endpoints[0].last_error.is_some());
        assert_eq!(
            status.endpoints[1].state,
            EndpointState::Healthy,
            "{mode:?}"
        );
        let hits = fake.count("eth_gasPrice");
        assert!(hits >= 1, "{mode:?}: the fake was tried");
        for _ in 0..5 {
            let _: U256 = pool
                .request("eth_gasPrice", json!([]))
                .await
                .expect("request");
        }
        assert_eq!(
            fake.count("eth_gasPrice"),
            hits,
            "{mode:?}: demoted endpoint left alone"
        );
    }
}

#[tokio::test]
async fn rate_limit_holds() {
    let anvil = Anvil::start(None).await;
    let pool = EndpointPool::new(
        ANVIL_CHAIN,
        vec![EndpointConfig::new(anvil.http()).with_rate_limit(5)],
        options(),
    )
    .expect("pool");
    let start = Instant::now();
    for _ in 0..15 {
        block_number(&pool).await.expect("request");
    }
    // 15 requests (plus 2 probe requests) at 5/s with a burst of 5: at least 2 s.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2),
        "15 requests at 5/s took only {elapsed:?}"
    );
}

#[tokio::test]
async fn deterministic_errors_are_not_retried_on_another_endpoint() {
    let anvil = Anvil::start(None).await;
    let fake = Fake::start(Mode::Healthy).await;
    let pool = EndpointPool::new(
        ANVIL_CHAIN,
        vec![
            EndpointConfig::new(anvil.http()).with_weight(100),
            EndpointConfig::new(&fake.url),
        ],
        options(),
    )
    .expect("pool");
    // Init code PUSH1 0 PUSH1 0 REVERT: the simulated deployment reverts.
    let err = pool
        .request::<_, alloy::primitives::Bytes>(
            "eth_call",
            json!([{"data": "0x60006000fd"}, "latest"]),
        )
        .await
        .expect_err("reverts");
    assert!(matches!(err, ChainError::Reverted { .. }), "{err}");
    assert!(!err.is_retryable());

    let err = pool
        .request::<_, U256>("eth_getBalance", json!(["not-an-address", "latest"]))
        .await
        .expect_err("invalid params");
    assert!(matches!(err, ChainError::Rejected { .. }), "{err}");

    assert_eq!(
        fake.count("eth_call") + fake.count("eth_getBalance"),
        0,
        "never retried elsewhere"
    );
    let status = pool.status();
    assert_eq!(
        status.endpoints[0].state,
        EndpointState::Healthy,
        "not held against anvil"
    );
    assert_eq!(status.endpoints[0].failures, 0);
}

#[tokio::test]
async fn refused_transactions_do_not_bench_the_endpoint() {
    use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy::eips::eip2718::Encodable2718;
    use alloy::network::TxSignerSync;
    use alloy::primitives::{Address, TxKind, B256};
    use alloy::signers::local::PrivateKeySigner;

    let anvil = Anvil::start(None).await;
    let pool = EndpointPool::new(
        ANVIL_CHAIN,
        vec![EndpointConfig::new(anvil.http())],
        options(),
    )
    .expect("pool");
    // A key that holds nothing: anvil refuses its transfers for want of funds.
    let key = PrivateKeySigner::from_bytes(&B256::repeat_byte(0x42)).unwrap();
    for nonce in 0..5u64 {
        let mut tx = TxEip1559 {
            chain_id: ANVIL_CHAIN,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: 10_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(Address::repeat_byte(1)),
            value: U256::from(1u64),
            ..Default::default()
        };
        let sig = key.sign_transaction_sync(&mut tx).unwrap();
        let signed = tx.into_signed(sig);
        let hash = *signed.hash();
        let raw = TxEnvelope::from(signed).encoded_2718();
        let err = pool
            .send_raw_transaction(raw.into(), hash)
            .await
            .expect_err("an unfunded sender is refused");
        assert!(matches!(err, ChainError::TxRefused { .. }), "{err}");
        assert!(
            err.to_string()
                .to_ascii_lowercase()
                .contains("insufficient funds"),
            "{err}"
        );
    }
    // The endpoint is still the pool's, and healthy: the refusals were the transactions'.
    let status = pool.status();
    assert_eq!(status.endpoints[0].state, EndpointState::Healthy);
    assert_eq!(status.endpoints[0].failures, 0);
    block_number(&pool)
        .await
        .expect("the endpoint still answers");
}

#[tokio::test]
async fn status_and_errors_never_show_credentials() {
    // Nothing listens on port 1: connection refused, with the key in the URL.
    let url = "http://127.0.0.1:1/v3/9aa3d95b3bc440fa88ea12eaa4456161?apikey=topsecret";
    let pool =
        EndpointPool::new(ANVIL_CHAIN, vec![EndpointConfig::new(url)], options()).expect("pool");
    let err = block_number(&pool).await.expect_err("nothing listens");
    assert!(err.is_retryable());
    // eth_getLogs goes over Steward's own HTTP request, not alloy's transport.
    let logs = pool
        .logs(&steward_chain::LogFilter {
            from_block: 1,
            to_block: 2,
            address: vec![],
            topics: vec![],
        })
        .await
        .expect_err("nothing listens");
    assert!(logs.is_retryable());
    let text = format!("{err} {err:?} {logs} {logs:?} {:?}", pool.status());
    assert!(
        !text.contains("9aa3d95b") && !text.contains("topsecret"),
        "{text}"
    );
    assert!(
        text.contains("http://127.0.0.1:1/v3/***?apikey=***"),
        "{text}"
    );
}

/// `eth_getLogs` over HTTP is read from the response body by Steward itself (not through
/// alloy's transport): every failure must come out as the same error alloy's path gives, so
/// failover and range splitting work the same.
#[tokio::test]
async fn logs_over_http_fail_as_alloys_transport_fails() {
    use steward_chain::LogFilter;
    for mode in [
        Mode::Errors,
        Mode::TooMany,
        Mode::Null,
        Mode::RangeLimit,
        Mode::RangeLimit400,
        Mode::Unavailable,
        Mode::Garbage,
        // `0x` where an array of logs belongs.
        Mode::Healthy,
    ] {
        let fake = Fake::start(mode).await;
        // A pool each: a failure may demote the endpoint.
        let pool = || {
            EndpointPool::new(
                ANVIL_CHAIN,
                vec![EndpointConfig::new(&fake.url)],
                PoolOptions {
                    retries: 0,
                    ..options()
                },
            )
            .expect("pool")
        };
        let filter = LogFilter {
            from_block: 1,
            to_block: 9,
            address: vec![],
            topics: vec![],
        };
        let ours = pool().logs(&filter).await.expect_err("fails");
        let alloys = pool()
            .request::<_, Vec<alloy::rpc::types::Log>>("eth_getLogs", (filter.clone(),))
            .await
            .expect_err("fails");
        let last = |e: &ChainError| match e {
            ChainError::Exhausted { last, .. } => std::mem::discriminant(last.as_ref()),
            other => std::mem::discriminant(other),
        };
        assert_eq!(last(&ours), last(&alloys), "{mode:?}: {ours} / {alloys}");
        // The variant and retryability are what the pool acts on; the wording may differ
        // (alloy reads a `null` result as a sequence that failed to decode, Steward says
        // `null result`).
        assert_eq!(ours.is_retryable(), alloys.is_retryable(), "{mode:?}");
        assert_eq!(
            fake.count("eth_getLogs"),
            2,
            "{mode:?}: both asked the fake"
        );
        let expected = match mode {
            Mode::RangeLimit => "eth_getLogs is limited",
            Mode::RangeLimit400 => "more than 10000 results",
            Mode::Errors => "internal error",
            Mode::TooMany => "429",
            Mode::Unavailable => "503",
            Mode::Null => "null",
            _ => "",
        };
        assert!(ours.to_string().contains(expected), "{mode:?}: {ours}");
        if matches!(mode, Mode::RangeLimit | Mode::RangeLimit400) {
            assert!(matches!(ours, ChainError::RangeTooLarge { .. }), "{ours}");
        }
    }
}
