//! The endpoint pool: selection, retries, health and probes.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::{ClientBuilder, RpcClient};
use alloy::rpc::json_rpc::{RpcRecv, RpcSend};
use alloy::transports::ws::WsConnect;
use alloy::transports::TransportResult;
use tokio::time::Instant;

use crate::bucket::TokenBucket;
use crate::config::{EndpointConfig, EndpointKind, PoolOptions};
use crate::error::{ChainError, Fault, Result};
use crate::redact::redact_rpc_url;

/// Health state of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    /// Not yet probed; its chain id is checked before its first use.
    Unverified,
    /// Serving requests.
    Healthy,
    /// Resting after failures; probed again after the cool-down.
    Demoted,
    /// Serves another chain: never used again.
    Refused,
}

/// One endpoint in [`PoolStatus`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointStatus {
    /// Redacted URL.
    pub url: String,
    /// HTTP or WebSocket.
    pub kind: EndpointKind,
    /// Current state.
    pub state: EndpointState,
    /// Selection score (higher is preferred): weight × success rate ÷ (1 + latency/100 ms).
    pub score: f64,
    /// Smoothed latency of successful requests, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Last head block number seen by a probe.
    pub head: Option<u64>,
    /// Requests sent (probes included).
    pub requests: u64,
    /// Requests that failed through the endpoint's fault.
    pub failures: u64,
    /// Last failure, redacted.
    pub last_error: Option<String>,
    /// Remaining cool-down of a demoted endpoint.
    pub cooldown_left: Option<Duration>,
}

/// Health report of a pool.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolStatus {
    /// The pool's chain id.
    pub chain_id: u64,
    /// One entry per configured endpoint, in configuration order.
    pub endpoints: Vec<EndpointStatus>,
}

impl PoolStatus {
    /// Number of endpoints in the `Healthy` state.
    pub fn healthy(&self) -> usize {
        self.endpoints
            .iter()
            .filter(|e| e.state == EndpointState::Healthy)
            .count()
    }
}

/// Several RPC endpoints of one chain behind one request API. Cheap to clone (shared state).
#[derive(Clone)]
pub struct EndpointPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EndpointPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPool")
            .field("status", &self.status())
            .finish()
    }
}

/// What one attempt of a request runs on.
pub(crate) struct Conn {
    /// The endpoint's alloy provider.
    pub provider: RootProvider,
    /// For an HTTP endpoint, the pool's HTTP client and the endpoint's URL.
    pub http: Option<(reqwest::Client, url::Url)>,
}

struct Inner {
    chain_id: u64,
    options: PoolOptions,
    http: reqwest::Client,
    endpoints: Vec<Endpoint>,
}

struct Endpoint {
    url: String,
    /// `url`, parsed once (checked when the pool is built).
    parsed: url::Url,
    redacted: String,
    kind: EndpointKind,
    weight: f64,
    bucket: Option<TokenBucket>,
    /// Connected lazily (WebSocket) and dropped after a connection failure so the next use
    /// reconnects.
    provider: tokio::sync::Mutex<Option<RootProvider>>,
    health: Mutex<Health>,
    probing: AtomicBool,
}

struct Health {
    state: EndpointState,
    latency_ms: Option<f64>,
    success: f64,
    strikes: u32,
    head: Option<u64>,
    requests: u64,
    failures: u64,
    last_error: Option<String>,
    demoted_until: Option<Instant>,
}

/// Weight of the newest sample in the moving averages.
const EWMA: f64 = 0.2;

impl Endpoint {
    fn health(&self) -> MutexGuard<'_, Health> {
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn score(&self, health: &Health) -> f64 {
        self.weight * health.success / (1.0 + health.latency_ms.unwrap_or(0.0) / 100.0)
    }
}

impl EndpointPool {
    /// A pool for `chain_id` over `endpoints`. Nothing is contacted yet: each endpoint's
    /// chain id is checked before its first use (or by [`Self::check_health`]).
    pub fn new(
        chain_id: u64,
        endpoints: Vec<EndpointConfig>,
        options: PoolOptions,
    ) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(ChainError::Config(format!(
                "chain {chain_id} has no RPC endpoint"
            )));
        }
        if options.timeout.is_zero() {
            return Err(ChainError::Config(
                "the pool timeout must be above zero".to_owned(),
            ));
        }
        // reqwest is built without a TLS provider of its own (its default is aws-lc, which
        // deny.toml bans); ring is installed as the process default unless one already is.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: a provider is then installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .build()
            .map_err(|e| ChainError::Config(format!("cannot build the HTTP client: {e}")))?;
        let mut built = Vec::with_capacity(endpoints.len());
        for config in endpoints {
            let redacted = redact_rpc_url(&config.url);
            match EndpointKind::from_url(&config.url) {
                Some(kind) if kind == config.kind => {}
                _ => {
                    return Err(ChainError::Config(format!(
                        "endpoint {redacted} is configured as {:?} but its scheme does not say so \
                         (http/https for HTTP, ws/wss for WebSocket)",
                        config.kind
                    )))
                }
            }
            let Ok(parsed) = url::Url::parse(&config.url) else {
                return Err(ChainError::Config(format!(
                    "endpoint {redacted} is not a valid URL"
                )));
            };
            built.push(Endpoint {
                url: config.url,
                parsed,
                redacted,
                kind: config.kind,
                weight: f64::from(config.weight.max(1)),
                bucket: config.rate_limit.map(|rate| TokenBucket::new(rate.get())),
                provider: tokio::sync::Mutex::new(None),
                health: Mutex::new(Health {
                    state: EndpointState::Unverified,
                    latency_ms: None,
                    success: 1.0,
                    strikes: 0,
                    head: None,
                    requests: 0,
                    failures: 0,
                    last_error: None,
                    demoted_until: None,
                }),
                probing: AtomicBool::new(false),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                chain_id,
                options,
                http,
                endpoints: built,
            }),
        })
    }

    /// The chain this pool serves.
    pub fn chain_id(&self) -> u64 {
        self.inner.chain_id
    }

    /// Sends one JSON-RPC request through the best endpoint, with the retry policy of
    /// [`Self::call`].
    pub async fn request<P, R>(&self, method: impl Into<Cow<'static, str>>, params: P) -> Result<R>
    where
        P: RpcSend + Clone,
        R: RpcRecv,
    {
        let method = method.into();
        self.call(|provider| {
            let method = method.clone();
            let params = params.clone();
            async move { provider.raw_request::<P, R>(method, params).await }
        })
        .await
    }

    /// Runs `f` with the best healthy endpoint's provider. A retryable failure (timeout,
    /// connection error, HTTP 429/5xx, JSON-RPC server error, undecodable or `null` answer) is
    /// recorded against that endpoint and `f` runs again on another one, up to
    /// `options.retries` more times; a deterministic failure (revert, invalid request) is
    /// returned at once. `f` should make one request: its whole run is under the timeout.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(RootProvider) -> Fut,
        Fut: Future<Output = TransportResult<T>>,
    {
        self.call_conn(|c| f(c.provider)).await
    }

    /// [`EndpointPool::call`] with the endpoint's [`Conn`]: its provider and, for an HTTP
    /// endpoint, the HTTP client and URL (for a request read without alloy's transport).
    pub(crate) async fn call_conn<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = TransportResult<T>>,
    {
        let inner = &self.inner;
        let attempts = inner.options.retries.saturating_add(1);
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<ChainError> = None;
        let mut sleeps = 0;
        for _ in 0..attempts {
            let index = match self.pick(&tried).await {
                Ok(index) => index,
                Err(err) if err.is_retryable() => {
                    last = Some(err);
                    sleeps += 1;
                    tokio::time::sleep(inner.options.backoff.delay(sleeps)).await;
                    continue;
                }
                Err(err) => return Err(err),
            };
            if tried.contains(&index) {
                // Every usable endpoint already failed this request: back off before reusing.
                sleeps += 1;
                tokio::time::sleep(inner.options.backoff.delay(sleeps)).await;
            }
            tried.push(index);
            match self.attempt(index, &f).await {
                Ok(value) => return Ok(value),
                Err(err) if err.is_retryable() => {
                    tracing::debug!(chain_id = inner.chain_id, error = %err, "RPC attempt failed, retrying");
                    last = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        let last = last.unwrap_or_else(|| ChainError::NoEndpoint {
            chain_id: inner.chain_id,
            detail: "no attempt was possible".to_owned(),
            all_refused: false,
        });
        Err(ChainError::Exhausted {
            chain_id: inner.chain_id,
            attempts,
            last: Box::new(last),
        })
    }

    /// Per-endpoint health, with redacted URLs.
    pub fn status(&self) -> PoolStatus {
        let now = Instant::now();
        let endpoints = self
            .inner
            .endpoints
            .iter()
            .map(|ep| {
                let h = ep.health();
                EndpointStatus {
                    url: ep.redacted.clone(),
                    kind: ep.kind,
                    state: h.state,
                    score: ep.score(&h),
                    latency_ms: h.latency_ms,
                    head: h.head,
                    requests: h.requests,
                    failures: h.failures,
                    last_error: h.last_error.clone(),
                    cooldown_left: match h.state {
                        EndpointState::Demoted => h
                            .demoted_until
                            .map(|until| until.saturating_duration_since(now)),
                        _ => None,
                    },
                }
            })
            .collect();
        PoolStatus {
            chain_id: self.inner.chain_id,
            endpoints,
        }
    }

    /// Probes every endpoint that is not refused and not resting (chain id, head), then
    /// demotes those whose head lags the best by more than `max_head_lag` and promotes the
    /// others. Meant to be called periodically by the owner of the pool.
    pub async fn check_health(&self) -> PoolStatus {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.inner.endpoints.len())
            .filter(|&i| {
                let h = self.inner.endpoints[i].health();
                match h.state {
                    EndpointState::Refused => false,
                    EndpointState::Demoted => h.demoted_until.is_none_or(|until| until <= now),
                    _ => true,
                }
            })
            .collect();
        let results = futures::future::join_all(due.iter().map(|&i| self.fetch_probe(i))).await;
        let best = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .copied()
            .max();
        for (&index, result) in due.iter().zip(results) {
            self.apply_probe(index, result, best);
        }
        self.status()
    }

    /// Chooses the endpoint for the next attempt: the best-scored healthy one not yet tried
    /// by this request, else the best healthy one. Unverified endpoints are probed first;
    /// demoted ones past their cool-down get a background probe.
    async fn pick(&self, tried: &[usize]) -> Result<usize> {
        let now = Instant::now();
        let mut candidates: Vec<(bool, f64, usize, EndpointState)> = Vec::new();
        for (index, ep) in self.inner.endpoints.iter().enumerate() {
            let h = ep.health();
            match h.state {
                EndpointState::Healthy | EndpointState::Unverified => {
                    candidates.push((!tried.contains(&index), ep.score(&h), index, h.state))
                }
                EndpointState::Demoted if h.demoted_until.is_none_or(|until| until <= now) => {
                    drop(h);
                    self.spawn_reprobe(index);
                }
                _ => {}
            }
        }
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)));
        for (_, _, index, state) in candidates {
            if state == EndpointState::Healthy {
                return Ok(index);
            }
            let result = self.fetch_probe(index).await;
            let best = self.best_known_head();
            if self.apply_probe(index, result, best) {
                return Ok(index);
            }
        }
        Err(self.no_endpoint())
    }

    fn no_endpoint(&self) -> ChainError {
        let status = self.status();
        let all_refused = status
            .endpoints
            .iter()
            .all(|e| e.state == EndpointState::Refused);
        let detail = status
            .endpoints
            .iter()
            .map(|e| {
                let mut s = format!("{} {:?}", e.url, e.state);
                if let Some(left) = e.cooldown_left {
                    s.push_str(&format!(" for {left:?}"));
                }
                if let Some(err) = &e.last_error {
                    s.push_str(&format!(" ({err})"));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ");
        ChainError::NoEndpoint {
            chain_id: self.inner.chain_id,
            detail,
            all_refused,
        }
    }

    fn best_known_head(&self) -> Option<u64> {
        self.inner
            .endpoints
            .iter()
            .filter_map(|ep| {
                let h = ep.health();
                (h.state == EndpointState::Healthy)
                    .then_some(h.head)
                    .flatten()
            })
            .max()
    }

    fn spawn_reprobe(&self, index: usize) {
        let ep = &self.inner.endpoints[index];
        if ep.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            let result = pool.fetch_probe(index).await;
            let best = pool.best_known_head();
            pool.apply_probe(index, result, best);
            pool.inner.endpoints[index]
                .probing
                .store(false, Ordering::Release);
        });
    }

    /// Asks an endpoint for its chain id and head. Counts as requests (rate limit included).
    async fn fetch_probe(&self, index: usize) -> Result<u64> {
        let actual = self
            .attempt_raw(index, |c| async move { c.provider.get_chain_id().await })
            .await?;
        if actual != self.inner.chain_id {
            let ep = &self.inner.endpoints[index];
            return Err(ChainError::WrongChain {
                endpoint: ep.redacted.clone(),
                expected: self.inner.chain_id,
                actual,
            });
        }
        self.attempt_raw(
            index,
            |c| async move { c.provider.get_block_number().await },
        )
        .await
    }

    /// Records a probe's outcome; returns whether the endpoint is now healthy.
    fn apply_probe(&self, index: usize, result: Result<u64>, best: Option<u64>) -> bool {
        let ep = &self.inner.endpoints[index];
        match result {
            Ok(head) => {
                if let Some(best) =
                    best.filter(|&b| b > head.saturating_add(self.inner.options.max_head_lag))
                {
                    let err = ChainError::InvalidResponse {
                        endpoint: ep.redacted.clone(),
                        detail: format!(
                            "head {head} is {} blocks behind the best endpoint's {best}",
                            best - head
                        ),
                    };
                    self.record_failure(index, &err);
                    return false;
                }
                let mut h = ep.health();
                h.head = Some(head);
                h.strikes = 0;
                h.demoted_until = None;
                if h.state != EndpointState::Healthy {
                    let was = h.state;
                    h.state = EndpointState::Healthy;
                    drop(h);
                    if was == EndpointState::Demoted {
                        tracing::info!(chain_id = self.inner.chain_id, endpoint = %ep.redacted, head, "RPC endpoint healthy again, promoted");
                    }
                }
                true
            }
            Err(err) => {
                // A probe failure the endpoint is not blamed for (e.g. local) still must not
                // let an unverified endpoint through.
                if err.fault() == Fault::None {
                    return false;
                }
                self.record_failure_force(index, &err);
                false
            }
        }
    }

    /// One attempt of `f` on endpoint `index`, with the outcome recorded in its health.
    async fn attempt<T, F, Fut>(&self, index: usize, f: &F) -> Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = TransportResult<T>>,
    {
        self.attempt_raw(index, f)
            .await
            .inspect_err(|err| self.record_failure(index, err))
    }

    /// One attempt, recording successes and latency; failures are left to the caller.
    async fn attempt_raw<T, F, Fut>(&self, index: usize, f: F) -> Result<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = TransportResult<T>>,
    {
        let ep = &self.inner.endpoints[index];
        let timeout = self.inner.options.timeout;
        if let Some(bucket) = &ep.bucket {
            bucket.acquire().await;
        }
        ep.health().requests += 1;
        let provider = self.provider(index).await?;
        let http = match ep.kind {
            EndpointKind::Http => Some((self.inner.http.clone(), ep.parsed.clone())),
            EndpointKind::Ws => None,
        };
        let start = Instant::now();
        let outcome = tokio::time::timeout(timeout, f(Conn { provider, http })).await;
        let elapsed = start.elapsed();
        let result = match outcome {
            Err(_) => Err(ChainError::Timeout {
                endpoint: ep.redacted.clone(),
                timeout,
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(ChainError::from_transport(err, &ep.url, &ep.redacted)),
        };
        match &result {
            Ok(_) => self.record_success(index, elapsed),
            // The endpoint answered correctly; the request itself is at fault.
            Err(err) if err.fault() == Fault::None => self.record_success(index, elapsed),
            Err(_) => {}
        }
        result
    }

    async fn provider(&self, index: usize) -> Result<RootProvider> {
        let ep = &self.inner.endpoints[index];
        let mut slot = ep.provider.lock().await;
        if let Some(provider) = slot.as_ref() {
            return Ok(provider.clone());
        }
        let client = match ep.kind {
            EndpointKind::Http => {
                RpcClient::new_http_with_client(self.inner.http.clone(), ep.parsed.clone())
            }
            EndpointKind::Ws => {
                // The pool does its own failover: the socket gives up at once when it drops
                // and is reconnected here on the next use.
                let connect = WsConnect::new(ep.url.clone()).with_max_retries(0);
                let timeout = self.inner.options.timeout;
                match tokio::time::timeout(timeout, ClientBuilder::default().ws(connect)).await {
                    Err(_) => {
                        return Err(ChainError::Timeout {
                            endpoint: ep.redacted.clone(),
                            timeout,
                        })
                    }
                    Ok(Err(err)) => {
                        return Err(ChainError::from_transport(err, &ep.url, &ep.redacted))
                    }
                    Ok(Ok(client)) => client,
                }
            }
        };
        let provider = RootProvider::new(client);
        *slot = Some(provider.clone());
        Ok(provider)
    }

    fn record_success(&self, index: usize, elapsed: Duration) {
        let ep = &self.inner.endpoints[index];
        let mut h = ep.health();
        let ms = elapsed.as_secs_f64() * 1000.0;
        h.latency_ms = Some(h.latency_ms.map_or(ms, |avg| avg + EWMA * (ms - avg)));
        h.success += EWMA * (1.0 - h.success);
        h.strikes = 0;
    }

    fn record_failure(&self, index: usize, err: &ChainError) {
        match err.fault() {
            Fault::None => {}
            Fault::Strike => {
                let demote = {
                    let mut h = self.inner.endpoints[index].health();
                    h.strikes += 1;
                    h.strikes >= self.inner.options.demote_after.max(1)
                };
                if demote {
                    self.demote(index, err, false);
                } else {
                    self.note_failure(index, err);
                }
            }
            Fault::Demote => self.demote(index, err, false),
            Fault::Refuse => self.demote(index, err, true),
        }
    }

    /// Like [`Self::record_failure`], but a failed probe demotes at once whatever the fault.
    fn record_failure_force(&self, index: usize, err: &ChainError) {
        self.demote(index, err, err.fault() == Fault::Refuse);
    }

    fn note_failure(&self, index: usize, err: &ChainError) {
        let mut h = self.inner.endpoints[index].health();
        h.failures += 1;
        h.success -= EWMA * h.success;
        h.last_error = Some(err.to_string());
    }

    fn demote(&self, index: usize, err: &ChainError, refuse: bool) {
        self.note_failure(index, err);
        let ep = &self.inner.endpoints[index];
        let cooldown = self.inner.options.cooldown;
        let was = {
            let mut h = ep.health();
            let was = h.state;
            if was == EndpointState::Refused {
                return;
            }
            h.state = if refuse {
                EndpointState::Refused
            } else {
                EndpointState::Demoted
            };
            h.demoted_until = (!refuse).then(|| Instant::now() + cooldown);
            h.strikes = 0;
            was
        };
        if refuse {
            tracing::error!(chain_id = self.inner.chain_id, endpoint = %ep.redacted, error = %err, "RPC endpoint refused for good");
        } else if was != EndpointState::Demoted {
            tracing::warn!(chain_id = self.inner.chain_id, endpoint = %ep.redacted, error = %err, ?cooldown, "RPC endpoint demoted");
        }
        if ep.kind == EndpointKind::Ws
            && matches!(
                err,
                ChainError::Connection { .. } | ChainError::Timeout { .. }
            )
        {
            // Reconnect on the next use; if the lock is busy, the user will fail and retry.
            if let Ok(mut slot) = ep.provider.try_lock() {
                *slot = None;
            }
        }
    }
}
