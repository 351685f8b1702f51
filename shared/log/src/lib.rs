//! The event log: an append-only, deduplicated sequence of [`Envelope`]s that services read
//! through durable consumers.
//!
//! Two backends implement [`EventLog`] with the same semantics, checked by one conformance
//! suite ([`conformance`]):
//! - [`nats::NatsLog`]: NATS JetStream, for `steward run` on Kubernetes;
//! - [`embedded::EmbeddedLog`]: SQLite, for `steward up` with no server.
//!
//! Semantics every backend upholds:
//! - **Append** takes a batch and returns, per event, its sequence and whether it was a
//!   duplicate (same `key` seen before: within the JetStream duplicate window, forever on
//!   the embedded backend). A duplicate is not stored again.
//! - **Consumers** are durable and named. Each delivery carries the stream sequence and its
//!   attempt number. An event not acked within `ack_wait` (or naked, or held by a consumer
//!   that crashed) is delivered again, with a higher attempt number.
//! - **First deliveries** come in stream order, so events of one subject reach a consumer in
//!   the order they were appended.
//! - **Dead letters**: backends only count attempts; the policy lives once, in
//!   [`Subscription`]: after `max_deliver` failed attempts the event is parked as a
//!   `log.event.dead_lettered` event (which carries the whole original and raises an alert)
//!   and the consumer moves on.
//! - **Replay** ([`EventLog::read`]) reads any range without touching consumer state.

pub mod bench;
pub mod conformance;
pub mod embedded;
mod metrics;
pub mod nats;
mod subscription;

use std::time::Duration;

use async_trait::async_trait;
use steward_events::Envelope;

pub use metrics::{LogMetrics, MeteredLog};
pub use subscription::{Delivery, HandlerError, Subscription};

pub type Result<T, E = LogError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The backend could not be reached or refused the operation; worth retrying.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (bad filter, bad consumer config); retrying won't help.
    #[error("invalid request to the event log: {0}")]
    Invalid(String),
    /// Stored data could not be read back.
    #[error("event log data is corrupt: {0}")]
    Corrupt(String),
}

impl LogError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, LogError::Unavailable(_))
    }
}

/// Outcome of appending one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence of the stored event (of the earlier copy, for a duplicate).
    pub sequence: u64,
    pub duplicate: bool,
}

/// An event as stored, with its sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub sequence: u64,
    pub subject: String,
    pub event: Envelope,
}

/// Where a new consumer starts. Ignored when the consumer already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliverFrom {
    /// From the first event in the log.
    #[default]
    All,
    /// From this sequence (inclusive).
    Sequence(u64),
    /// Only events appended after the consumer is created.
    New,
}

/// A durable consumer's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerSpec {
    /// Durable name, unique per log: `[A-Za-z0-9_-]+`.
    pub name: String,
    /// Event type patterns (`chain.>`, `safe.tx.*`); empty means every event.
    pub filters: Vec<String>,
    pub deliver_from: DeliverFrom,
    /// How long a delivery may stay unacked before it is delivered again.
    pub ack_wait: Duration,
    /// Failed attempts after which the event is dead-lettered.
    pub max_deliver: u32,
    /// Delay before attempt n+1 after attempt n failed: `backoff[n-1]`, the last entry
    /// repeating. Empty means redeliver at once.
    pub backoff: Vec<Duration>,
}

impl ConsumerSpec {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            filters: Vec::new(),
            deliver_from: DeliverFrom::All,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
        }
    }

    pub fn filters<I: IntoIterator<Item = S>, S: Into<String>>(mut self, f: I) -> Self {
        self.filters = f.into_iter().map(Into::into).collect();
        self
    }

    pub fn deliver_from(mut self, d: DeliverFrom) -> Self {
        self.deliver_from = d;
        self
    }

    pub fn ack_wait(mut self, d: Duration) -> Self {
        self.ack_wait = d;
        self
    }

    pub fn max_deliver(mut self, n: u32) -> Self {
        self.max_deliver = n;
        self
    }

    pub fn backoff(mut self, b: Vec<Duration>) -> Self {
        self.backoff = b;
        self
    }

    /// Delay before the next attempt after `attempt` failed.
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        if self.backoff.is_empty() {
            return Duration::ZERO;
        }
        let i = (attempt.max(1) as usize - 1).min(self.backoff.len() - 1);
        self.backoff[i]
    }

    pub fn validate(&self) -> Result<()> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(LogError::Invalid(format!(
                "consumer name {:?} must be letters, digits, `_` or `-`",
                self.name
            )));
        }
        if self.max_deliver == 0 {
            return Err(LogError::Invalid("max_deliver must be at least 1".into()));
        }
        for f in &self.filters {
            steward_events::type_pattern_to_subject("x", f)
                .map_err(|e| LogError::Invalid(e.to_string()))?;
        }
        Ok(())
    }
}

/// A delivery as the backend hands it out: raw bytes, not yet decoded.
#[derive(Debug)]
pub struct RawDelivery {
    pub sequence: u64,
    /// 1 for the first delivery, 2 for the first redelivery, ...
    pub attempt: u32,
    pub subject: String,
    pub payload: Vec<u8>,
    pub token: AckToken,
}

/// Backend-specific handle to acknowledge one delivery.
#[derive(Debug, Clone)]
pub struct AckToken(pub(crate) AckInner);

#[derive(Debug, Clone)]
pub(crate) enum AckInner {
    Embedded { sequence: u64 },
    Nats { reply: async_nats::Subject },
}

/// The append-only log.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// `"nats"` or `"embedded"`.
    fn backend(&self) -> &'static str;

    /// Subject prefix, `steward` unless configured otherwise.
    fn prefix(&self) -> &str;

    /// Append a batch, in order. Returns one outcome per input event.
    async fn append(&self, events: &[Envelope]) -> Result<Vec<Appended>>;

    /// Open a durable consumer, creating it if it does not exist.
    async fn consumer(&self, spec: &ConsumerSpec) -> Result<Box<dyn Consumer>>;

    /// Read up to `max` stored events with sequence ≥ `from` whose type matches one of
    /// `filters` (all when empty), in order. Touches no consumer.
    async fn read(&self, from: u64, filters: &[String], max: usize) -> Result<Vec<Stored>>;

    /// Sequence of the last event appended, 0 when the log is empty.
    async fn last_sequence(&self) -> Result<u64>;
}

/// One handle on a durable consumer.
#[async_trait]
pub trait Consumer: Send + Sync {
    fn spec(&self) -> &ConsumerSpec;

    /// Wait up to `wait` for up to `max` deliveries; returns early once any are available.
    async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<RawDelivery>>;

    /// Acknowledge deliveries: they will not be delivered again.
    async fn ack(&self, tokens: &[AckToken]) -> Result<()>;

    /// Negative acknowledgement: deliver again after `delay`.
    async fn nak(&self, token: &AckToken, delay: Duration) -> Result<()>;

    /// Stop delivering this event for good (after it has been dead-lettered).
    async fn term(&self, token: &AckToken) -> Result<()>;

    /// Events matching this consumer not yet delivered (the consumer's lag).
    async fn lag(&self) -> Result<u64>;
}
