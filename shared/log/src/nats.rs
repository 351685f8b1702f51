//! NATS JetStream backend of the event log.
//!
//! Layout on the server (DESIGN §3): one stream (default `STEWARD`, file storage) holding
//! the subjects `<prefix>.>`; an event is published on `<prefix>.<type>` with the header
//! `Nats-Msg-Id` set to its key, so the server drops repeats within the stream's duplicate
//! window. Every [`Consumer`] is a durable pull consumer with explicit acks.
//!
//! Choices worth knowing:
//! - **Provisioning** is idempotent: [`NatsLog::connect`] creates the stream, or updates the
//!   settings this crate owns (subjects, storage, replicas, duplicate window, max age) when
//!   they differ, keeping every other setting. It never deletes a stream or a message.
//! - **Appends are pipelined**: every publish of a batch is sent before any ack is awaited,
//!   with at most [`MAX_INFLIGHT`] unacknowledged publishes per connection. A failed append
//!   may have stored a prefix of the batch; retrying it is safe within the duplicate window.
//! - **Attempts**: the server counts deliveries. It is configured with `max_deliver` one
//!   higher than the spec's, so the delivery past the limit reaches [`crate::Subscription`],
//!   which dead-letters it.
//! - **Backoff**: when a delivery is neither acked nor failed (the process crashed or hung),
//!   attempt n+1 comes `ack_wait + backoff[n-1]` after attempt n (the server's `backoff`).
//!   Explicit failures use a NAK with the backoff as delay, sent by the subscription; the NAK
//!   delay is corrected for the way the server combines it with its backoff (see
//!   `NatsConsumer::nak_delay`), so it comes back after the delay asked for.
//! - **Crashes**: the server does not know a client died; what that client held unacked comes
//!   back after its ack wait (a restarted process sees it then, as attempt n+1).
//! - **Filters**: one type pattern is a server-side `filter_subject`. Several use
//!   `filter_subjects` on servers ≥ 2.10; on older servers (Debian ships 2.9) the consumer
//!   takes `<prefix>.>` and drops non-matching events on the client by acking them, so
//!   [`Consumer::lag`] then also counts events the filters exclude.
//! - **Fetch** never leaves a pull request waiting on the server once it returns: it first
//!   asks for what is available now (`no_wait`), and only when nothing is waits for a single
//!   event, then collects whatever else has arrived. (A fetch dropped while it waits leaves
//!   that one-event request behind: the event it catches comes back after `ack_wait`.)
//! - **Replay** ([`EventLog::read`]) uses a short-lived ephemeral consumer without acks, so
//!   durable consumers are never touched.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{
    self, consumer, context::PublishAckFuture, response::Response, stream, ErrorCode,
};
use async_nats::{Client, ConnectErrorKind, StatusCode, Subject};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use steward_events::{subject_matches, type_pattern_to_subject, Envelope};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::{
    AckInner, AckToken, Appended, Consumer, ConsumerSpec, DeliverFrom, EventLog, LogError,
    RawDelivery, Result, Stored,
};

/// Publishes awaiting their ack, per connection. Bounds memory and the server's backlog;
/// large batches are streamed through this window.
pub const MAX_INFLIGHT: usize = 8192;

/// Unacknowledged deliveries a consumer may have out at once.
pub const MAX_ACK_PENDING: i64 = 10_000;

/// Events asked for per pull request by [`EventLog::read`].
const READ_BATCH: usize = 2048;

/// How to reach NATS and how the stream is laid out.
#[derive(Clone)]
pub struct NatsConfig {
    /// Server URL, or several separated by commas: `nats://host:4222`. Credentials in the
    /// URL (`nats://user:pass@host`) are accepted and never printed.
    pub url: String,
    /// Stream name.
    pub stream: String,
    /// Subject prefix: events go to `<prefix>.<type>`.
    pub prefix: String,
    /// Stream replicas (1 on a single server; 3 or 5 in a cluster).
    pub replicas: usize,
    /// How long the server remembers a key to drop duplicates.
    pub duplicate_window: Duration,
    /// Age after which the server removes events; `None` keeps them forever.
    pub max_age: Option<Duration>,
    /// Authentication token, if the server requires one.
    pub token: Option<String>,
    /// Name this connection shows in the server's monitoring (e.g. `steward-watcher`).
    pub connection_name: Option<String>,
    /// Limit for establishing the connection.
    pub connect_timeout: Duration,
    /// Limit for one JetStream API request or publish ack.
    pub request_timeout: Duration,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    pub fn duplicate_window(mut self, d: Duration) -> Self {
        self.duplicate_window = d;
        self
    }

    pub fn max_age(mut self, d: Option<Duration>) -> Self {
        self.max_age = d;
        self
    }

    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = Some(name.into());
        self
    }

    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// The URL with any credentials replaced by `***`, fit for messages and logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    pub fn validate(&self) -> Result<()> {
        if self.url.trim().is_empty() {
            return Err(LogError::Invalid("NATS URL is empty".into()));
        }
        let name_ok = !self.stream.is_empty()
            && self.stream.len() <= 255
            && self
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(LogError::Invalid(format!(
                "stream name {:?} must be 1-255 letters, digits, `_` or `-`",
                self.stream
            )));
        }
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !prefix_ok {
            return Err(LogError::Invalid(format!(
                "subject prefix {:?} must be dot-separated tokens of letters, digits, `_` or `-` (no wildcards)",
                self.prefix
            )));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(LogError::Invalid(format!(
                "stream replicas must be 1 to 5, not {}",
                self.replicas
            )));
        }
        if self.duplicate_window.is_zero() {
            return Err(LogError::Invalid(
                "duplicate window must be longer than zero".into(),
            ));
        }
        if let Some(age) = self.max_age.filter(|a| !a.is_zero()) {
            if self.duplicate_window > age {
                return Err(LogError::Invalid(format!(
                    "duplicate window ({:?}) cannot be longer than max age ({age:?})",
                    self.duplicate_window
                )));
            }
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(LogError::Invalid(
                "NATS timeouts must be longer than zero".into(),
            ));
        }
        Ok(())
    }

    /// Secrets that must never appear in an error: the token and URL credentials.
    fn secrets(&self) -> Vec<String> {
        let mut s: Vec<String> = self
            .token
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect();
        for url in self.url.split(',') {
            if let Some(userinfo) = userinfo(url) {
                s.extend(
                    userinfo
                        .split(':')
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned),
                );
                s.push(userinfo.to_owned());
            }
        }
        // Longest first, so a password is not half-replaced by a shorter user name.
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        s
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream: "STEWARD".into(),
            prefix: "steward".into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(600),
            max_age: None,
            token: None,
            connection_name: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.redacted_url())
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .field("replicas", &self.replicas)
            .field("duplicate_window", &self.duplicate_window)
            .field("max_age", &self.max_age)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("connection_name", &self.connection_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

fn userinfo(url: &str) -> Option<&str> {
    let url = url.trim();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit_once('@').map(|(u, _)| u)
}

fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|u| match userinfo(u) {
            Some(info) => u.trim().replacen(&format!("{info}@"), "***@", 1),
            None => u.trim().to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The NATS JetStream event log. Cheap to share behind an `Arc`.
pub struct NatsLog {
    client: Client,
    js: jetstream::Context,
    stream: String,
    prefix: String,
    /// Filter for every event: `<prefix>.>`.
    all_subject: String,
    request_timeout: Duration,
    /// Server supports `filter_subjects` (≥ 2.10).
    multi_filter: bool,
    inflight: Arc<Semaphore>,
}

impl fmt::Debug for NatsLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsLog")
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl NatsLog {
    /// Connect and provision the stream (create it, or bring its settings up to date).
    pub async fn connect(cfg: NatsConfig) -> Result<Self> {
        cfg.validate()?;
        let secrets = cfg.secrets();
        let redact = |s: String| {
            secrets
                .iter()
                .fold(s, |acc, secret| acc.replace(secret.as_str(), "***"))
        };
        let shown_url = cfg.redacted_url();

        let mut opts = async_nats::ConnectOptions::new()
            .connection_timeout(cfg.connect_timeout)
            .request_timeout(Some(cfg.request_timeout))
            // Room for a pipelined batch of publishes and acks without stalling the caller.
            .client_capacity(8192);
        if let Some(token) = cfg.token.as_ref().filter(|t| !t.is_empty()) {
            opts = opts.token(token.clone());
        }
        if let Some(name) = &cfg.connection_name {
            opts = opts.name(name);
        }
        let urls: Vec<String> = cfg
            .url
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        let client = opts.connect(urls).await.map_err(|e| {
            let msg = redact(format!("cannot connect to NATS at {shown_url}: {e}"));
            match e.kind() {
                ConnectErrorKind::ServerParse => {
                    LogError::Invalid(format!("{msg} (check the URL, e.g. nats://host:4222)"))
                }
                ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                    LogError::Invalid(format!(
                        "{msg} (check the token or the credentials in the URL)"
                    ))
                }
                ConnectErrorKind::Tls => {
                    LogError::Invalid(format!("{msg} (check the TLS settings)"))
                }
                _ => LogError::Unavailable(format!("{msg} (is the server running and reachable?)")),
            }
        })?;

        let js = jetstream::ContextBuilder::new()
            .timeout(cfg.request_timeout)
            // Above MAX_INFLIGHT: publishes of a cancelled append keep their permit until
            // their ack arrives, so ours may be free before the context's are.
            .max_ack_inflight(MAX_INFLIGHT * 2)
            .backpressure_on_inflight(true)
            .build(client.clone());

        let log = Self {
            multi_filter: client.is_server_compatible(2, 10, 0),
            client,
            js,
            stream: cfg.stream.clone(),
            prefix: cfg.prefix.clone(),
            all_subject: format!("{}.>", cfg.prefix),
            request_timeout: cfg.request_timeout,
            inflight: Arc::new(Semaphore::new(MAX_INFLIGHT)),
        };
        log.ensure_stream(&cfg).await?;
        Ok(log)
    }

    /// The underlying connection, e.g. for readiness checks.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// Whether the connection is currently up.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Version of the server this connection talks to.
    pub fn server_version(&self) -> String {
        self.client.server_info().version
    }

    async fn api<T, P>(
        &self,
        what: &str,
        subject: String,
        payload: &P,
    ) -> Result<std::result::Result<T, jetstream::Error>>
    where
        T: serde::de::DeserializeOwned,
        P: serde::Serialize + ?Sized,
    {
        api(&self.js, what, subject, payload).await
    }

    async fn ensure_stream(&self, cfg: &NatsConfig) -> Result<()> {
        let what = format!("provisioning stream {}", self.stream);
        let want = |mut c: stream::Config| {
            c.name = self.stream.clone();
            c.subjects = vec![self.all_subject.clone()];
            c.storage = stream::StorageType::File;
            c.num_replicas = cfg.replicas;
            c.duplicate_window = cfg.duplicate_window;
            c.max_age = cfg.max_age.unwrap_or_default();
            c
        };
        for _ in 0..3 {
            let info: std::result::Result<stream::Info, _> = self
                .api(
                    &what,
                    format!("STREAM.INFO.{}", self.stream),
                    &serde_json::json!({}),
                )
                .await?;
            match info {
                Ok(info) => {
                    let desired = want(info.config.clone());
                    if same_managed_settings(&info.config, &desired) {
                        return Ok(());
                    }
                    let res: std::result::Result<stream::Info, _> = self
                        .api(&what, format!("STREAM.UPDATE.{}", self.stream), &desired)
                        .await?;
                    res.map_err(|e| {
                        server_error(
                            &format!(
                                "{what}: the stream exists with other settings and cannot be updated in place \
                                 (storage, or replicas on some servers, cannot change; migrate it by hand)"
                            ),
                            &e,
                        )
                    })?;
                    tracing::info!(stream = %self.stream, "event log stream settings updated");
                    return Ok(());
                }
                Err(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                    let desired = want(stream::Config {
                        retention: stream::RetentionPolicy::Limits,
                        discard: stream::DiscardPolicy::Old,
                        ..Default::default()
                    });
                    let res: std::result::Result<stream::Info, _> = self
                        .api(&what, format!("STREAM.CREATE.{}", self.stream), &desired)
                        .await?;
                    match res {
                        Ok(_) => {
                            tracing::info!(stream = %self.stream, subjects = %self.all_subject, "event log stream created");
                            return Ok(());
                        }
                        // Created by another process meanwhile: look again and update.
                        Err(e) if e.error_code() == ErrorCode::STREAM_NAME_EXIST => continue,
                        Err(e) if e.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP => {
                            return Err(LogError::Invalid(format!(
                                "{what}: subjects {} are already taken by another stream; choose another prefix or remove that stream ({e})",
                                self.all_subject
                            )))
                        }
                        Err(e) => return Err(server_error(&what, &e)),
                    }
                }
                Err(e) => return Err(server_error(&what, &e)),
            }
        }
        Err(LogError::Unavailable(format!(
            "{what}: the stream keeps changing under us; try again"
        )))
    }

    /// Server-side filter configuration for a set of type patterns, and the client-side
    /// filters to apply when the server cannot do it.
    fn plan_filters(&self, patterns: &[String]) -> Result<FilterPlan> {
        let mut subjects = Vec::new();
        for p in patterns {
            let s = type_pattern_to_subject(&self.prefix, p)
                .map_err(|e| LogError::Invalid(e.to_string()))?;
            if !subjects.contains(&s) {
                subjects.push(s);
            }
        }
        // Drop patterns another one already covers.
        let reduced: Vec<String> = subjects
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                !subjects.iter().enumerate().any(|(j, o)| {
                    j != *i && filter_subsumes(o, s) && (!filter_subsumes(s, o) || j < *i)
                })
            })
            .map(|(_, s)| s.clone())
            .collect();
        Ok(match reduced.len() {
            0 => FilterPlan {
                server: vec![self.all_subject.clone()],
                client: None,
            },
            1 => FilterPlan {
                server: reduced,
                client: None,
            },
            _ => {
                let disjoint = reduced
                    .iter()
                    .enumerate()
                    .all(|(i, a)| reduced[i + 1..].iter().all(|b| !filters_overlap(a, b)));
                if self.multi_filter && disjoint {
                    FilterPlan {
                        server: reduced,
                        client: None,
                    }
                } else {
                    FilterPlan {
                        server: vec![self.all_subject.clone()],
                        client: Some(reduced),
                    }
                }
            }
        })
    }
}

struct FilterPlan {
    server: Vec<String>,
    client: Option<Vec<String>>,
}

fn same_managed_settings(a: &stream::Config, b: &stream::Config) -> bool {
    a.subjects == b.subjects
        && a.storage == b.storage
        && a.num_replicas.max(1) == b.num_replicas.max(1)
        && a.duplicate_window == b.duplicate_window
        && a.max_age == b.max_age
}

/// Whether every subject matching filter `b` also matches filter `a`.
fn filter_subsumes(a: &str, b: &str) -> bool {
    let mut at = a.split('.');
    let mut bt = b.split('.');
    loop {
        match (at.next(), bt.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(x), Some(y)) if x == y && x != "*" && x != ">" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some subject matches both filters.
fn filters_overlap(a: &str, b: &str) -> bool {
    let mut at = a.split('.');
    let mut bt = b.split('.');
    loop {
        match (at.next(), bt.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some("*"), Some(_)) | (Some(_), Some("*")) => {}
            (Some(x), Some(y)) if x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

async fn api<T, P>(
    js: &jetstream::Context,
    what: &str,
    subject: String,
    payload: &P,
) -> Result<std::result::Result<T, jetstream::Error>>
where
    T: serde::de::DeserializeOwned,
    P: serde::Serialize + ?Sized,
{
    use jetstream::context::RequestErrorKind;
    match js.request::<_, _, Response<T>>(subject, payload).await {
        Ok(Response::Ok(v)) => Ok(Ok(v)),
        Ok(Response::Err { error }) => Ok(Err(error)),
        Err(e) => Err(match e.kind() {
            RequestErrorKind::NoResponders => LogError::Unavailable(format!(
                "{what}: JetStream did not answer (no responders): is the server started with JetStream enabled (`nats-server -js`)?"
            )),
            RequestErrorKind::TimedOut => {
                LogError::Unavailable(format!("{what}: JetStream did not answer in time; the server may be overloaded or unreachable"))
            }
            _ => LogError::Unavailable(format!("{what}: {e}")),
        }),
    }
}

/// A refusal from the JetStream API: wrong settings are `Invalid`, the rest `Unavailable`.
fn server_error(what: &str, e: &jetstream::Error) -> LogError {
    let code = e.error_code();
    let msg = format!("{what}: {e}");
    let config_problem = [
        ErrorCode::BAD_REQUEST,
        ErrorCode::INVALID_JSON,
        ErrorCode::STREAM_INVALID_CONFIG,
        ErrorCode::STREAM_INVALID,
        ErrorCode::STREAM_NAME_EXIST,
        ErrorCode::STREAM_SUBJECT_OVERLAP,
        ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED,
        ErrorCode::STREAM_REPLICAS_NOT_UPDATABLE,
        ErrorCode::STREAM_UPDATE,
        ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM,
        ErrorCode::MAXIMUM_CONSUMERS_LIMIT,
        ErrorCode::MAXIMUM_STREAMS_LIMIT,
        ErrorCode::CONSUMER_CREATE,
        ErrorCode::CONSUMER_NAME_EXIST,
        ErrorCode::CONSUMER_FILTER_NOT_SUBSET,
        ErrorCode::CONSUMER_BAD_DURABLE_NAME,
        ErrorCode::CONSUMER_NAME_TOO_LONG,
        ErrorCode::CONSUMER_INVALID_POLICY,
        ErrorCode::NOT_SUPPORTED_IN_CLUSTER_MODE,
    ]
    .contains(&code)
        || (10078..=10110).contains(&code.0);
    if config_problem {
        LogError::Invalid(msg)
    } else {
        LogError::Unavailable(msg)
    }
}

fn publish_error(e: &jetstream::context::PublishError) -> LogError {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        K::StreamNotFound => LogError::Unavailable(format!(
            "append: no stream holds the event's subject ({e}); was the stream deleted? Reconnecting provisions it again"
        )),
        K::TimedOut => LogError::Unavailable(format!("append: the server did not confirm a publish in time ({e})")),
        K::MaxPayloadExceeded => LogError::Invalid(format!("append: an event is larger than the server accepts ({e})")),
        _ => {
            let msg = format!("append failed: {e}");
            if msg.contains("subject") && msg.contains("invalid") {
                LogError::Invalid(msg)
            } else {
                LogError::Unavailable(msg)
            }
        }
    }
}

fn to_ack(
    r: std::result::Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
) -> Result<Appended> {
    let ack = r.map_err(|e| publish_error(&e))?;
    Ok(Appended {
        sequence: ack.sequence,
        duplicate: ack.duplicate,
    })
}

#[async_trait]
impl EventLog for NatsLog {
    fn backend(&self) -> &'static str {
        "nats"
    }

    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn append(&self, events: &[Envelope]) -> Result<Vec<Appended>> {
        let mut out = Vec::with_capacity(events.len());
        let mut pending: VecDeque<(PublishAckFuture, OwnedSemaphorePermit)> = VecDeque::new();
        for event in events {
            // Take a slot in the connection's window. When it is full, settle our own oldest
            // publish first rather than wait while holding slots (two large concurrent
            // appends would otherwise wait on each other forever).
            let permit = loop {
                match self.inflight.clone().try_acquire_owned() {
                    Ok(p) => break p,
                    Err(_) => match pending.pop_front() {
                        Some((fut, _permit)) => out.push(to_ack(fut.await)?),
                        None => {
                            break self.inflight.clone().acquire_owned().await.map_err(|_| {
                                LogError::Unavailable("append: the log is shutting down".into())
                            })?
                        }
                    },
                }
            };
            let publish = jetstream::message::PublishMessage::build()
                .payload(Bytes::from(event.to_json()))
                .message_id(&event.key);
            let fut = self
                .js
                .send_publish(event.subject(&self.prefix), publish)
                .await
                .map_err(|e| publish_error(&e))?;
            pending.push_back((fut, permit));
        }
        for (fut, _permit) in pending {
            out.push(to_ack(fut.await)?);
        }
        Ok(out)
    }

    async fn consumer(&self, spec: &ConsumerSpec) -> Result<Box<dyn Consumer>> {
        spec.validate()?;
        let what = format!("opening consumer {}", spec.name);
        let plan = self.plan_filters(&spec.filters)?;

        // Attempt n that is never acked nor failed comes back after ack_wait + backoff[n-1].
        // The server wants fewer backoff steps than deliveries; later steps never apply.
        let backoff: Vec<Duration> = spec
            .backoff
            .iter()
            .take(spec.max_deliver as usize)
            .map(|b| spec.ack_wait.saturating_add(*b))
            .collect();
        let apply = |c: &mut consumer::Config| {
            c.durable_name = Some(spec.name.clone());
            c.ack_policy = consumer::AckPolicy::Explicit;
            // The server replaces ack_wait with backoff[0] when a backoff is set.
            c.ack_wait = backoff.first().copied().unwrap_or(spec.ack_wait);
            c.max_deliver = i64::from(spec.max_deliver) + 1;
            c.backoff = backoff.clone();
            c.max_ack_pending = MAX_ACK_PENDING;
            if plan.server.len() == 1 {
                c.filter_subject = plan.server[0].clone();
                c.filter_subjects = Vec::new();
            } else {
                c.filter_subject = String::new();
                c.filter_subjects = plan.server.clone();
            }
        };

        let existing: std::result::Result<consumer::Info, _> = self
            .api(
                &what,
                format!("CONSUMER.INFO.{}.{}", self.stream, spec.name),
                &serde_json::json!({}),
            )
            .await?;
        let config = match existing {
            Ok(info) => {
                if info.config.deliver_subject.is_some() {
                    return Err(LogError::Invalid(format!(
                        "{what}: a push consumer with this name exists on stream {}; delete it or choose another name",
                        self.stream
                    )));
                }
                let mut desired = info.config.clone();
                apply(&mut desired);
                (desired != info.config).then_some(desired)
            }
            Err(e) if e.error_code() == ErrorCode::CONSUMER_NOT_FOUND => {
                let mut c = consumer::Config {
                    deliver_policy: match spec.deliver_from {
                        DeliverFrom::All | DeliverFrom::Sequence(0) => consumer::DeliverPolicy::All,
                        DeliverFrom::Sequence(n) => {
                            consumer::DeliverPolicy::ByStartSequence { start_sequence: n }
                        }
                        DeliverFrom::New => consumer::DeliverPolicy::New,
                    },
                    replay_policy: consumer::ReplayPolicy::Instant,
                    ..Default::default()
                };
                apply(&mut c);
                Some(c)
            }
            Err(e) => return Err(server_error(&what, &e)),
        };
        if let Some(config) = config {
            let res: std::result::Result<consumer::Info, _> = self
                .api(
                    &what,
                    format!("CONSUMER.CREATE.{}.{}", self.stream, spec.name),
                    &serde_json::json!({ "stream_name": self.stream, "config": config }),
                )
                .await?;
            res.map_err(|e| server_error(&what, &e))?;
            tracing::info!(consumer = %spec.name, stream = %self.stream, filters = ?plan.server, "event log consumer created or updated");
        }
        Ok(Box::new(NatsConsumer {
            spec: spec.clone(),
            client: self.client.clone(),
            js: self.js.clone(),
            stream: self.stream.clone(),
            next_subject: format!("$JS.API.CONSUMER.MSG.NEXT.{}.{}", self.stream, spec.name),
            client_filters: plan.client,
            request_timeout: self.request_timeout,
            backoff,
        }))
    }

    async fn read(&self, from: u64, filters: &[String], max: usize) -> Result<Vec<Stored>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let what = "reading the event log";
        let plan = self.plan_filters(filters)?;
        let mut config = consumer::Config {
            deliver_policy: if from <= 1 {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                }
            },
            ack_policy: consumer::AckPolicy::None,
            replay_policy: consumer::ReplayPolicy::Instant,
            // Removed by the server soon after use even if our delete below is lost.
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        if plan.server.len() == 1 {
            config.filter_subject = plan.server[0].clone();
        } else {
            config.filter_subjects = plan.server.clone();
        }
        let created: std::result::Result<consumer::Info, _> = self
            .api(
                what,
                format!("CONSUMER.CREATE.{}", self.stream),
                &serde_json::json!({ "stream_name": self.stream, "config": config }),
            )
            .await?;
        let info = created.map_err(|e| server_error(what, &e))?;
        let next_subject = format!("$JS.API.CONSUMER.MSG.NEXT.{}.{}", self.stream, info.name);

        let result = async {
            let mut out = Vec::new();
            if info.num_pending == 0 {
                return Ok(out);
            }
            loop {
                let want = if plan.client.is_some() {
                    READ_BATCH
                } else {
                    (max - out.len()).min(READ_BATCH)
                };
                let (msgs, end) = pull(
                    &self.client,
                    &next_subject,
                    want,
                    None,
                    self.request_timeout,
                    what,
                )
                .await?;
                let got = msgs.len();
                let mut last_pending = None;
                for m in msgs {
                    let (meta, _) = delivery_meta(&m)?;
                    last_pending = Some(meta.pending);
                    if let Some(f) = &plan.client {
                        if !f.iter().any(|f| subject_matches(f, m.subject.as_str())) {
                            continue;
                        }
                    }
                    let event = Envelope::from_json(&m.payload).map_err(|e| {
                        LogError::Corrupt(format!(
                            "event at sequence {} ({}) cannot be decoded: {e}",
                            meta.stream_sequence, m.subject
                        ))
                    })?;
                    out.push(Stored {
                        sequence: meta.stream_sequence,
                        subject: m.subject.to_string(),
                        event,
                    });
                    if out.len() >= max {
                        return Ok(out);
                    }
                }
                if got < want || last_pending == Some(0) || matches!(end, PullEnd::Busy(_)) {
                    return Ok(out);
                }
            }
        }
        .await;

        // Best effort: the server removes it after the inactivity threshold anyway.
        let _: Result<std::result::Result<serde_json::Value, _>> = self
            .api(
                what,
                format!("CONSUMER.DELETE.{}.{}", self.stream, info.name),
                &serde_json::json!({}),
            )
            .await;
        result
    }

    async fn last_sequence(&self) -> Result<u64> {
        let what = format!("reading stream {} state", self.stream);
        let info: std::result::Result<stream::Info, _> = self
            .api(
                &what,
                format!("STREAM.INFO.{}", self.stream),
                &serde_json::json!({}),
            )
            .await?;
        Ok(info
            .map_err(|e| server_error(&what, &e))?
            .state
            .last_sequence)
    }
}

/// A durable pull consumer.
struct NatsConsumer {
    spec: ConsumerSpec,
    client: Client,
    js: jetstream::Context,
    stream: String,
    next_subject: String,
    /// Set when the server cannot filter (several patterns on a server before 2.10).
    client_filters: Option<Vec<String>>,
    request_timeout: Duration,
    /// The backoff configured on the server (see [`NatsConsumer::nak_delay`]).
    backoff: Vec<Duration>,
}

/// What the server reports in a delivery's ack subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DeliveryMeta {
    delivered: u64,
    stream_sequence: u64,
    pending: u64,
}

/// Parse `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`, or the
/// newer form with domain and account hash in front (and possibly a trailing token).
fn parse_ack_subject(reply: &str) -> Option<DeliveryMeta> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let mut tokens = [""; 12];
    let mut n = 0;
    for t in rest.split('.') {
        if n == tokens.len() {
            break;
        }
        tokens[n] = t;
        n += 1;
    }
    let base = match n {
        7 => 0,
        n if n >= 9 => 2,
        _ => return None,
    };
    Some(DeliveryMeta {
        delivered: tokens[base + 2].parse().ok()?,
        stream_sequence: tokens[base + 3].parse().ok()?,
        pending: tokens[base + 6].parse().ok()?,
    })
}

fn delivery_meta(m: &async_nats::Message) -> Result<(DeliveryMeta, &Subject)> {
    let reply = m.reply.as_ref().ok_or_else(|| {
        LogError::Corrupt(format!(
            "a delivery on {} carries no ack subject; is this a JetStream consumer?",
            m.subject
        ))
    })?;
    let meta = parse_ack_subject(reply.as_str()).ok_or_else(|| {
        LogError::Corrupt(format!(
            "unrecognised JetStream ack subject {:?}",
            reply.as_str()
        ))
    })?;
    Ok((meta, reply))
}

/// Why a pull request ended.
#[derive(Debug)]
enum PullEnd {
    /// As many messages as asked for.
    Filled,
    /// Nothing more available now (or the wait expired).
    Drained,
    /// The server has nothing to hand out until deliveries are acked (max ack pending) or
    /// too many requests are waiting.
    Busy(String),
}

/// One pull request: up to `batch` messages, waiting up to `expires` for them, or answered
/// at once when `expires` is `None`. Never returns before the request is over on the server
/// (except on a connection failure), so no delivery goes to an inbox nobody reads.
async fn pull(
    client: &Client,
    next_subject: &str,
    batch: usize,
    expires: Option<Duration>,
    request_timeout: Duration,
    what: &str,
) -> Result<(Vec<async_nats::Message>, PullEnd)> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.map_err(|e| {
        LogError::Unavailable(format!("{what}: cannot subscribe for deliveries: {e}"))
    })?;
    let request = match expires {
        None => format!("{{\"batch\":{batch},\"no_wait\":true}}"),
        Some(d) => format!(
            "{{\"batch\":{batch},\"expires\":{}}}",
            d.as_nanos().max(1_000_000)
        ),
    };
    client
        .publish_with_reply(next_subject.to_owned(), inbox, request.into())
        .await
        .map_err(|e| LogError::Unavailable(format!("{what}: cannot send a pull request: {e}")))?;
    // One timer for the whole request: deliveries arrive in bursts, and a timer per
    // message costs more than the message.
    // A waiting request ends with a status from the server when it expires; allow it a
    // little time to arrive, not a whole request timeout, so a lapsed request (see below)
    // does not hold up the consumer.
    let grace = match expires {
        Some(_) => request_timeout.min(Duration::from_secs(2)),
        None => request_timeout,
    };
    let limit = tokio::time::sleep(expires.unwrap_or_default() + grace);
    tokio::pin!(limit);
    let mut out = Vec::with_capacity(batch.min(1024));
    while out.len() < batch {
        let next = tokio::select! {
            biased;
            m = sub.next() => Some(m),
            _ = &mut limit => None,
        };
        let m = match next {
            Some(Some(m)) => m,
            Some(None) => {
                return Err(LogError::Unavailable(format!(
                    "{what}: the NATS connection was closed"
                )))
            }
            None => {
                if out.is_empty() {
                    // Silence. Either the server is unreachable, or it let the request lapse
                    // without the 408 it normally sends (seen on 2.9 under heavy load). A
                    // round trip tells the two apart: if the connection answers, the
                    // request is over and nothing was available.
                    let waited = expires.unwrap_or_default() + grace;
                    return match tokio::time::timeout(request_timeout, client.flush()).await {
                        Ok(Ok(())) => {
                            tracing::debug!("{what}: JetStream ended a pull request without a status after {waited:?}; treated as empty");
                            Ok((out, PullEnd::Drained))
                        }
                        _ => Err(LogError::Unavailable(format!(
                            "{what}: JetStream did not answer a pull request within {waited:?} and the connection does not answer either; the server may be overloaded or unreachable"
                        ))),
                    };
                }
                return Ok((out, PullEnd::Drained));
            }
        };
        match m.status {
            None | Some(StatusCode::OK) => out.push(m),
            Some(StatusCode::IDLE_HEARTBEAT) => {}
            Some(StatusCode::NOT_FOUND) | Some(StatusCode::TIMEOUT) => return Ok((out, PullEnd::Drained)),
            Some(StatusCode::REQUEST_TERMINATED) => {
                let desc = m.description.unwrap_or_default();
                let lower = desc.to_ascii_lowercase();
                if lower.contains("maxackpending") || lower.contains("max ack pending") || lower.contains("maxwaiting") {
                    return Ok((out, PullEnd::Busy(desc)));
                }
                if !out.is_empty() {
                    return Ok((out, PullEnd::Drained));
                }
                if lower.contains("deleted") {
                    return Err(LogError::Unavailable(format!("{what}: the consumer was deleted on the server ({desc}); open it again")));
                }
                return Err(LogError::Unavailable(format!("{what}: the server ended the pull request: 409 {desc}")));
            }
            Some(StatusCode::NO_RESPONDERS) => {
                return Err(LogError::Unavailable(format!(
                    "{what}: nothing answers pull requests (no responders): the stream or consumer may have been deleted, or JetStream is down"
                )))
            }
            Some(other) => {
                return Err(LogError::Unavailable(format!(
                    "{what}: the server refused a pull request: {other} {}",
                    m.description.unwrap_or_default()
                )))
            }
        }
    }
    Ok((out, PullEnd::Filled))
}

fn nats_token(t: &AckToken) -> Result<&Subject> {
    match &t.0 {
        AckInner::Nats { reply } => Ok(reply),
        AckInner::Embedded { .. } => Err(LogError::Invalid(
            "an ack token of the embedded backend was passed to the NATS backend".into(),
        )),
    }
}

impl NatsConsumer {
    /// The delay to send with a NAK so the event comes back after `want`.
    ///
    /// With a backoff configured, the server (2.9 through 2.14 at least) redelivers a NAK
    /// with delay `d` on redelivery count `dc` after `d + backoff[min(dc, len-1)] - backoff[0]`,
    /// not after `d`: it backdates the delivery by `ack_wait` (which it set to `backoff[0]`)
    /// but then measures it against the attempt's backoff entry. Subtract that term. When
    /// it exceeds `want`, the event comes back after the term: late, never early.
    fn nak_delay(&self, reply: &Subject, want: Duration) -> Duration {
        let (Some(first), Some(last)) = (self.backoff.first(), self.backoff.last()) else {
            return want;
        };
        let attempt = parse_ack_subject(reply.as_str()).map_or(1, |m| m.delivered.max(1));
        let entry = usize::try_from(attempt - 1)
            .ok()
            .and_then(|i| self.backoff.get(i))
            .unwrap_or(last);
        want.saturating_sub(entry.saturating_sub(*first))
    }

    fn what(&self) -> String {
        format!("consumer {}", self.spec.name)
    }

    async fn send_ack(&self, reply: &Subject, kind: jetstream::AckKind) -> Result<()> {
        self.client
            .publish(reply.clone(), kind.into())
            .await
            .map_err(|e| {
                LogError::Unavailable(format!(
                    "{}: cannot send an acknowledgement: {e}",
                    self.what()
                ))
            })
    }

    async fn flush(&self) -> Result<()> {
        self.client.flush().await.map_err(|e| {
            LogError::Unavailable(format!(
                "{}: acknowledgements may not have reached the server ({e}); the events will be delivered again",
                self.what()
            ))
        })
    }

    /// Turn messages into deliveries, dropping (and acking) those the client-side filters
    /// exclude.
    async fn deliveries(&self, msgs: Vec<async_nats::Message>) -> Result<Vec<RawDelivery>> {
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            let (meta, reply) = delivery_meta(&m)?;
            let reply = reply.clone();
            if let Some(filters) = &self.client_filters {
                if !filters
                    .iter()
                    .any(|f| subject_matches(f, m.subject.as_str()))
                {
                    self.send_ack(&reply, jetstream::AckKind::Ack).await?;
                    continue;
                }
            }
            out.push(RawDelivery {
                sequence: meta.stream_sequence,
                attempt: u32::try_from(meta.delivered).unwrap_or(u32::MAX),
                subject: m.subject.to_string(),
                payload: m.payload.to_vec(),
                token: AckToken(AckInner::Nats { reply }),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Consumer for NatsConsumer {
    fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }

    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<RawDelivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let what = format!("fetching from {}", self.what());
        let deadline = Instant::now() + wait;
        loop {
            // What is there now.
            let (mut msgs, end) = pull(
                &self.client,
                &self.next_subject,
                max,
                None,
                self.request_timeout,
                &what,
            )
            .await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if msgs.is_empty() && !remaining.is_zero() {
                if let PullEnd::Busy(why) = end {
                    // Everything allowed is out unacked; look again shortly.
                    tracing::debug!(consumer = %self.spec.name, reason = %why, "consumer cannot hand out more events yet");
                    tokio::time::sleep(remaining.min(Duration::from_millis(50))).await;
                    continue;
                }
                // Nothing: wait for one, then take whatever else came with it.
                let (first, end) = pull(
                    &self.client,
                    &self.next_subject,
                    1,
                    Some(remaining),
                    self.request_timeout,
                    &what,
                )
                .await?;
                msgs = first;
                if !msgs.is_empty() && max > 1 {
                    let (more, _) = pull(
                        &self.client,
                        &self.next_subject,
                        max - 1,
                        None,
                        self.request_timeout,
                        &what,
                    )
                    .await?;
                    msgs.extend(more);
                } else if let PullEnd::Busy(_) = end {
                    tokio::time::sleep(
                        deadline
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(50)),
                    )
                    .await;
                }
            }
            let had_any = !msgs.is_empty();
            let out = self.deliveries(msgs).await?;
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
            if !had_any && self.client_filters.is_none() {
                return Ok(out);
            }
        }
    }

    async fn ack(&self, tokens: &[AckToken]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        for t in tokens {
            self.send_ack(nats_token(t)?, jetstream::AckKind::Ack)
                .await?;
        }
        self.flush().await
    }

    async fn nak(&self, token: &AckToken, delay: Duration) -> Result<()> {
        let reply = nats_token(token)?;
        // A bare NAK redelivers at once; a NAK with a delay, even zero, takes the delayed path.
        let kind =
            jetstream::AckKind::Nak((!delay.is_zero()).then(|| self.nak_delay(reply, delay)));
        self.send_ack(reply, kind).await?;
        self.flush().await
    }

    async fn term(&self, token: &AckToken) -> Result<()> {
        self.send_ack(nats_token(token)?, jetstream::AckKind::Term)
            .await?;
        self.flush().await
    }

    async fn lag(&self) -> Result<u64> {
        let what = format!("reading the state of {}", self.what());
        let info: std::result::Result<consumer::Info, _> = api(
            &self.js,
            &what,
            format!("CONSUMER.INFO.{}.{}", self.stream, self.spec.name),
            &serde_json::json!({}),
        )
        .await?;
        Ok(info.map_err(|e| server_error(&what, &e))?.num_pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_parse_in_both_formats() {
        let v1 = parse_ack_subject("$JS.ACK.STEWARD.svc.3.100.7.1790230470084404000.42").unwrap();
        assert_eq!(
            v1,
            DeliveryMeta {
                delivered: 3,
                stream_sequence: 100,
                pending: 42
            }
        );
        let v2 = parse_ack_subject("$JS.ACK.hub.szMp.STEWARD.svc.2.50.9.1790230470084404000.0.tok")
            .unwrap();
        assert_eq!(
            v2,
            DeliveryMeta {
                delivered: 2,
                stream_sequence: 50,
                pending: 0
            }
        );
        assert!(parse_ack_subject("_INBOX.x").is_none());
        assert!(parse_ack_subject("$JS.ACK.a.b.c").is_none());
    }

    #[test]
    fn filter_relations() {
        assert!(filter_subsumes("s.chain.>", "s.chain.block.observed"));
        assert!(filter_subsumes("s.chain.>", "s.chain.*.x"));
        assert!(filter_subsumes("s.*.x", "s.a.x"));
        assert!(!filter_subsumes("s.*", "s.>"));
        assert!(!filter_subsumes("s.a.x", "s.*.x"));
        assert!(filters_overlap("s.a.*.c", "s.a.b.*"));
        assert!(filters_overlap("s.>", "s.x"));
        assert!(!filters_overlap("s.notify.*", "s.chain.block.observed"));
        assert!(!filters_overlap("s.a.*", "s.a.b.c"));
    }

    #[test]
    fn credentials_never_show() {
        let cfg = NatsConfig::new("nats://alice:s3cret@h1:4222,nats://tok123@h2:4222")
            .token(Some("t0ken".into()));
        assert_eq!(cfg.redacted_url(), "nats://***@h1:4222,nats://***@h2:4222");
        let dbg = format!("{cfg:?}");
        for secret in ["s3cret", "tok123", "t0ken", "alice"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
        let secrets = cfg.secrets();
        assert!(secrets.contains(&"s3cret".to_owned()) && secrets.contains(&"tok123".to_owned()));
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn config_is_checked() {
        assert!(NatsConfig::default().validate().is_ok());
        assert!(NatsConfig::default().stream("a.b").validate().is_err());
        assert!(NatsConfig::default().prefix("a.>").validate().is_err());
        assert!(NatsConfig::default().replicas(0).validate().is_err());
        assert!(NatsConfig::default()
            .max_age(Some(Duration::from_secs(60)))
            .validate()
            .is_err());
        assert!(NatsConfig::default()
            .duplicate_window(Duration::ZERO)
            .validate()
            .is_err());
    }
}
