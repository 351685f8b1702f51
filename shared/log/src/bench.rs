//! Throughput and latency of the event log, for `steward bench log`.
//!
//! Both functions run the same workload: a producer appends `n` events of a realistic size
//! (a `chain.block.observed` envelope, about 420 bytes) in batches of `batch`, while a
//! consumer concurrently fetches batches of up to `batch` and acks them. The figures cover
//! the whole run, from the first append to the last ack; latency is measured per event,
//! from the start of the append of its batch to the moment the consumer holds it.
//!
//! - [`raw_jetstream`] is the limit: bare async-nats on a fresh stream of its own (deleted
//!   afterwards), pre-serialised payloads, a prefetching pull consumer.
//! - [`log_backend`] goes through [`EventLog::append`] and a [`Subscription`], so it measures
//!   any backend, including the encoding and decoding of envelopes. Give it a log of its own:
//!   it appends `n` events and leaves a durable consumer named `bench_<run id>` behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use steward_events::{ChainBlockObserved, Envelope, Payload};

use crate::nats::NatsConfig;
use crate::{ConsumerSpec, DeliverFrom, EventLog, LogError, LogMetrics, Result, Subscription};

/// Give up when the consumer sees nothing new for this long.
const STALL: Duration = Duration::from_secs(30);

/// Figures of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Events appended and consumed.
    pub events: u64,
    /// Wall time from the first append to the last ack.
    pub seconds: f64,
    pub events_per_sec: f64,
    /// Append-to-consume latency, median.
    pub p50_latency: Duration,
    /// Append-to-consume latency, 99th percentile.
    pub p99_latency: Duration,
}

/// A `chain.block.observed` envelope of typical size (about 420 bytes as JSON).
pub fn sample_event(key: String) -> Envelope {
    Envelope::new(
        "watcher",
        key,
        &ChainBlockObserved {
            number: 19_000_000,
            hash: "0x8e38b4dbf6b11fcc3b9dee84fb7986e29ca0a02cecd8977c161ff7333329681e".into(),
            parent_hash: "0x9f3a2c1b0e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b"
                .into(),
            timestamp: 1_705_000_000,
        },
    )
    .with_chain(1)
}

fn run_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Duration::from_nanos(sorted[i.min(sorted.len() - 1)])
}

/// Shared bookkeeping of one run: when each event's batch was appended, and latencies.
struct Clock {
    start: Instant,
    sent_at: Vec<AtomicU64>,
}

impl Clock {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            sent_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// With a target rate, wait until event `index` is due.
    async fn pace(&self, index: usize, rate: Option<f64>) {
        if let Some(rate) = rate.filter(|r| *r > 0.0) {
            let due = self.start + Duration::from_secs_f64(index as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
    }

    fn sent(&self, range: std::ops::Range<usize>) {
        let t = self.now();
        for i in range {
            self.sent_at[i].store(t, Ordering::Relaxed);
        }
    }

    fn latency(&self, i: usize) -> u64 {
        self.now()
            .saturating_sub(self.sent_at[i].load(Ordering::Relaxed))
    }

    fn figures(&self, mut latencies: Vec<u64>) -> Figures {
        let seconds = self.start.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let events = latencies.len() as u64;
        Figures {
            events,
            seconds,
            events_per_sec: if seconds > 0.0 {
                events as f64 / seconds
            } else {
                0.0
            },
            p50_latency: percentile(&latencies, 0.50),
            p99_latency: percentile(&latencies, 0.99),
        }
    }
}

/// Index of a bench event from its key `bench:<run>:<i>`, if it belongs to this run.
fn index_of(key: &str, run: &str) -> Option<usize> {
    let rest = key
        .strip_prefix("bench:")?
        .strip_prefix(run)?
        .strip_prefix(':')?;
    rest.parse().ok()
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(format!("bench: {what}: {e}"))
}

/// Collects one latency per event index, ignoring redeliveries.
struct Tally {
    seen: Vec<bool>,
    latencies: Vec<u64>,
    last_progress: Instant,
}

impl Tally {
    fn new(n: usize) -> Self {
        Self {
            seen: vec![false; n],
            latencies: Vec::with_capacity(n),
            last_progress: Instant::now(),
        }
    }

    fn record(&mut self, clock: &Clock, i: usize) {
        if i < self.seen.len() && !self.seen[i] {
            self.seen[i] = true;
            self.latencies.push(clock.latency(i));
            self.last_progress = Instant::now();
        }
    }

    fn done(&self) -> bool {
        self.latencies.len() == self.seen.len()
    }

    fn check_stall(&self) -> Result<()> {
        if self.last_progress.elapsed() > STALL {
            return Err(LogError::Unavailable(format!(
                "bench: the consumer stalled after {} of {} events",
                self.latencies.len(),
                self.seen.len()
            )));
        }
        Ok(())
    }
}

/// The limit: bare async-nats on a fresh stream, `n` events in batches of `batch`, as fast
/// as the producer can go.
pub async fn raw_jetstream(url: &str, n: usize, batch: usize) -> Result<Figures> {
    raw_jetstream_paced(&NatsConfig::new(url), n, batch, None).await
}

/// [`raw_jetstream`] with the connection settings (URL, token) of `cfg`, and optionally a
/// target append rate in events/s: at full speed the consumer runs behind and latency is
/// mostly queueing, so latency is best compared at a rate both can sustain. The stream and
/// prefix of `cfg` are not used: the run makes its own stream and deletes it at the end.
pub async fn raw_jetstream_paced(
    cfg: &NatsConfig,
    n: usize,
    batch: usize,
    rate: Option<f64>,
) -> Result<Figures> {
    let batch = batch.max(1);
    let mut opts = async_nats::ConnectOptions::new().client_capacity(8192);
    if let Some(t) = &cfg.token {
        opts = opts.token(t.clone());
    }
    let client = opts.connect(cfg.url.as_str()).await.map_err(|e| {
        unavailable(
            &format!("cannot connect to {}", cfg.redacted_url()),
            e.kind(),
        )
    })?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(10))
        .max_ack_inflight(batch.max(1024) * 2)
        .build(client);
    let run = run_id();
    let name = format!("BENCH_{run}");
    let prefix = format!("bench_{run}");
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.>")],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable("create stream", e))?;
    let result = raw_run(&js, &stream, &prefix, &run, n, batch, rate).await;
    let _ = js.delete_stream(&name).await;
    result
}

async fn raw_run(
    js: &jetstream::Context,
    stream: &stream::Stream,
    prefix: &str,
    run: &str,
    n: usize,
    batch: usize,
    rate: Option<f64>,
) -> Result<Figures> {
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bench".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: crate::nats::MAX_ACK_PENDING,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable("create consumer", e))?;
    let template = sample_event(String::new());
    let subject = template.subject(prefix);
    let payload = Bytes::from(template.to_json());
    let keys: Vec<String> = (0..n).map(|i| format!("bench:{run}:{i}")).collect();

    let clock = Clock::new(n);
    let producer = {
        let js = js.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut acks = Vec::with_capacity(batch);
            for (c, chunk) in keys.chunks(batch).enumerate() {
                clock.pace(c * batch, rate).await;
                clock.sent(c * batch..c * batch + chunk.len());
                for key in chunk {
                    let msg = jetstream::message::PublishMessage::build()
                        .payload(payload.clone())
                        .message_id(key);
                    acks.push(
                        js.send_publish(subject.clone(), msg)
                            .await
                            .map_err(|e| unavailable("publish", e))?,
                    );
                }
                for ack in acks.drain(..) {
                    ack.await.map_err(|e| unavailable("publish ack", e))?;
                }
            }
            Ok::<_, LogError>(())
        })
    };

    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| unavailable("consume", e))?;
    let mut tally = Tally::new(n);
    while !tally.done() {
        tally.check_stall()?;
        let m = match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
            Err(_) => continue,
            Ok(None) => {
                return Err(LogError::Unavailable(
                    "bench: the message stream ended".into(),
                ))
            }
            Ok(Some(m)) => m.map_err(|e| unavailable("consume", e))?,
        };
        let idx = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .and_then(|id| index_of(id.as_str(), run));
        if let Some(i) = idx {
            tally.record(&clock, i);
        }
        m.ack().await.map_err(|e| unavailable("ack", e))?;
    }
    js.client()
        .flush()
        .await
        .map_err(|e| unavailable("flush", e))?;
    let figures = clock.figures(tally.latencies);
    producer.await.map_err(|e| unavailable("producer", e))??;
    Ok(figures)
}

/// The same workload through [`EventLog::append`] and a [`Subscription`].
pub async fn log_backend(log: Arc<dyn EventLog>, n: usize, batch: usize) -> Result<Figures> {
    log_backend_paced(log, n, batch, None).await
}

/// [`log_backend`] with an optional target append rate in events/s (see
/// [`raw_jetstream_paced`]).
pub async fn log_backend_paced(
    log: Arc<dyn EventLog>,
    n: usize,
    batch: usize,
    rate: Option<f64>,
) -> Result<Figures> {
    let batch = batch.max(1);
    let run = run_id();
    let spec = ConsumerSpec::new(format!("bench_{run}"))
        .filters([ChainBlockObserved::TYPE])
        .deliver_from(DeliverFrom::New)
        .ack_wait(Duration::from_secs(30))
        .max_deliver(5)
        .backoff(vec![]);
    let sub = Subscription::open(log.clone(), spec, LogMetrics::default()).await?;
    let template = sample_event(String::new());

    let clock = Clock::new(n);
    let producer = {
        let clock = clock.clone();
        let run = run.clone();
        tokio::spawn(async move {
            let mut events = Vec::with_capacity(batch);
            let mut start = 0;
            while start < n {
                let end = (start + batch).min(n);
                events.clear();
                events.extend((start..end).map(|i| {
                    let mut e = template.clone();
                    e.key = format!("bench:{run}:{i}");
                    e
                }));
                clock.pace(start, rate).await;
                clock.sent(start..end);
                log.append(&events).await?;
                start = end;
            }
            Ok::<_, LogError>(())
        })
    };

    let mut tally = Tally::new(n);
    while !tally.done() {
        tally.check_stall()?;
        let got = sub.fetch(batch, Duration::from_secs(1)).await?;
        for d in &got {
            if let Some(i) = index_of(&d.event.key, &run) {
                tally.record(&clock, i);
            }
        }
        sub.ack(&got).await?;
    }
    let figures = clock.figures(tally.latencies);
    producer.await.map_err(|e| unavailable("producer", e))??;
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_event_is_realistic_size() {
        let len = sample_event("bench:0190aaaa:123456".into()).to_json().len();
        assert!((350..500).contains(&len), "{len} bytes");
    }

    #[test]
    fn keys_map_back_to_indices() {
        assert_eq!(index_of("bench:abc:42", "abc"), Some(42));
        assert_eq!(index_of("bench:abd:42", "abc"), None);
        assert_eq!(index_of("other", "abc"), None);
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_nanos(51));
        assert_eq!(percentile(&v, 0.99), Duration::from_nanos(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
