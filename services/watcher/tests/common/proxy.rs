//! A JSON-RPC proxy on loopback in front of a real anvil, for what anvil will not do by
//! itself: refuse large log ranges like a hosted provider, lie (missing blocks, `null`
//! answers), count requests by method, and die mid-run (every connection dropped at once).
//!
//! HTTP/1.1 with keep-alive and `Content-Length` bodies only: what alloy's client sends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How the proxy misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Refuse `eth_getLogs` over more blocks than this, as Infura words it.
    pub max_log_range: Option<u64>,
    /// Answer `null` for `eth_getBlockByNumber` of blocks above this number.
    pub null_blocks_above: Option<u64>,
    /// Answer `[]` to every `eth_getLogs` (a node that lost its log index).
    pub no_logs: bool,
}

struct State {
    upstream: String,
    behaviour: Mutex<Behaviour>,
    counts: Mutex<HashMap<String, u64>>,
    refused: AtomicU64,
    dead: AtomicBool,
}

/// A running proxy; killed on drop.
pub struct Proxy {
    port: u16,
    state: Arc<State>,
    stop: CancellationToken,
}

impl Proxy {
    pub async fn start(upstream_url: &str, behaviour: Behaviour) -> Self {
        let upstream = upstream_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            upstream,
            behaviour: Mutex::new(behaviour),
            counts: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            dead: AtomicBool::new(false),
        });
        let stop = CancellationToken::new();
        let (s, st) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    c = listener.accept() => c,
                    _ = st.cancelled() => return,
                };
                let Ok((sock, _)) = conn else { continue };
                let _ = sock.set_nodelay(true);
                let (s, st) = (s.clone(), st.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = serve(sock, s) => {}
                        _ = st.cancelled() => {}
                    }
                });
            }
        });
        Self { port, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests seen for `method` (batch members counted one by one).
    pub fn count(&self, method: &str) -> u64 {
        *self.state.counts.lock().unwrap().get(method).unwrap_or(&0)
    }

    /// Every request seen.
    pub fn total(&self) -> u64 {
        self.state.counts.lock().unwrap().values().sum()
    }

    /// Log queries refused as too large.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// Stops listening and drops every open connection: the endpoint is gone.
    pub fn kill(&self) {
        self.state.dead.store(true, Ordering::Relaxed);
        self.stop.cancel();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A proxy that refuses log ranges above `max` blocks.
pub struct RangeLimit;

impl RangeLimit {
    pub async fn start(upstream: &str, max: u64) -> Proxy {
        Proxy::start(
            upstream,
            Behaviour {
                max_log_range: Some(max),
                ..Behaviour::default()
            },
        )
        .await
    }
}

async fn read_message(
    r: &mut BufReader<impl tokio::io::AsyncRead + Unpin>,
) -> Option<(String, Vec<u8>)> {
    let mut first = String::new();
    if r.read_line(&mut first).await.ok()? == 0 {
        return None;
    }
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.ok()?;
    Some((first, body))
}

async fn serve(sock: TcpStream, state: Arc<State>) {
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    let mut upstream: Option<(
        BufReader<tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
    )> = None;
    while let Some((_, body)) = read_message(&mut rd).await {
        if state.dead.load(Ordering::Relaxed) {
            return;
        }
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let answer = match local_answer(&state, &request) {
            Some(a) => serde_json::to_vec(&a).unwrap(),
            None => {
                if upstream.is_none() {
                    let Ok(s) = TcpStream::connect(&state.upstream).await else {
                        return;
                    };
                    let (r, w) = s.into_split();
                    upstream = Some((BufReader::new(r), w));
                }
                let (ur, uw) = upstream.as_mut().unwrap();
                let head = format!(
                    "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    state.upstream,
                    body.len()
                );
                if uw.write_all(head.as_bytes()).await.is_err()
                    || uw.write_all(&body).await.is_err()
                {
                    return;
                }
                let Some((_, resp)) = read_message(ur).await else {
                    return;
                };
                rewrite(&state, &request, resp)
            }
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if wr.write_all(head.as_bytes()).await.is_err() || wr.write_all(&answer).await.is_err() {
            return;
        }
    }
}

fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

/// Counts the request; answers it here when the behaviour says so.
fn local_answer(state: &State, request: &Value) -> Option<Value> {
    let items: Vec<&Value> = match request {
        Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    {
        let mut counts = state.counts.lock().unwrap();
        for r in &items {
            let m = r["method"].as_str().unwrap_or("?").to_owned();
            *counts.entry(m).or_default() += 1;
        }
    }
    let b = state.behaviour.lock().unwrap().clone();
    if let Value::Object(r) = request {
        if r.get("method").and_then(Value::as_str) == Some("eth_getLogs") {
            let f = &r["params"][0];
            if let (Some(max), Some(from), Some(to)) = (
                b.max_log_range,
                hex_u64(&f["fromBlock"]),
                hex_u64(&f["toBlock"]),
            ) {
                if to - from + 1 > max {
                    state.refused.fetch_add(1, Ordering::Relaxed);
                    return Some(
                        json!({"jsonrpc": "2.0", "id": r["id"], "error": {"code": -32005, "message": "query returned more than 10000 results"}}),
                    );
                }
            }
            if b.no_logs {
                return Some(json!({"jsonrpc": "2.0", "id": r["id"], "result": []}));
            }
        }
    }
    None
}

/// Alters an upstream answer when the behaviour says so.
fn rewrite(state: &State, request: &Value, resp: Vec<u8>) -> Vec<u8> {
    let b = state.behaviour.lock().unwrap().clone();
    let Some(limit) = b.null_blocks_above else {
        return resp;
    };
    let Ok(mut answer) = serde_json::from_slice::<Value>(&resp) else {
        return resp;
    };
    let null_if_above = |req: &Value, ans: &mut Value| {
        if req["method"] == "eth_getBlockByNumber" {
            if let Some(n) = hex_u64(&req["params"][0]) {
                if n > limit {
                    ans["result"] = Value::Null;
                }
            }
        }
    };
    match (request, &mut answer) {
        (Value::Array(reqs), Value::Array(answers)) => {
            for a in answers.iter_mut() {
                if let Some(req) = reqs.iter().find(|r| r["id"] == a["id"]) {
                    null_if_above(req, a);
                }
            }
        }
        (req, ans) => null_if_above(req, ans),
    }
    serde_json::to_vec(&answer).unwrap()
}
