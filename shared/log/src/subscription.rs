//! The consumer-side policy shared by every backend: decoding, attempt limits, backoff,
//! dead-lettering, metrics.

use std::sync::Arc;
use std::time::Duration;

use steward_events::{Envelope, LogEventDeadLettered, Severity};

use crate::{AckToken, Consumer, ConsumerSpec, EventLog, LogMetrics, RawDelivery, Result};

/// Source name of events the log itself writes (dead letters).
pub const LOG_SOURCE: &str = "log";

/// An event handed to a service, decoded.
#[derive(Debug)]
pub struct Delivery {
    pub sequence: u64,
    pub attempt: u32,
    pub event: Envelope,
    token: AckToken,
}

impl Delivery {
    pub fn token(&self) -> &AckToken {
        &self.token
    }
}

/// Why a handler could not process an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Transient (an RPC timed out, a server was down): try again after the backoff, and
    /// dead-letter once the attempts are used up.
    #[error("{0}")]
    Retry(String),
    /// Permanent (the event can never be processed): dead-letter now.
    #[error("{0}")]
    Fatal(String),
}

/// A durable consumer with Steward's delivery policy on top.
pub struct Subscription {
    log: Arc<dyn EventLog>,
    consumer: Box<dyn Consumer>,
    metrics: LogMetrics,
}

impl Subscription {
    pub async fn open(
        log: Arc<dyn EventLog>,
        spec: ConsumerSpec,
        metrics: LogMetrics,
    ) -> Result<Self> {
        spec.validate()?;
        let consumer = log.consumer(&spec).await?;
        metrics.init_consumer(&spec.name);
        Ok(Self {
            log,
            consumer,
            metrics,
        })
    }

    pub fn spec(&self) -> &ConsumerSpec {
        self.consumer.spec()
    }

    pub fn name(&self) -> &str {
        &self.consumer.spec().name
    }

    /// Wait up to `wait` for up to `max` events. Events past their delivery limit and
    /// events that cannot be decoded are dead-lettered here and not returned.
    pub async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let raw = self.consumer.fetch(max, wait).await?;
        let name = self.name().to_owned();
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            let max_deliver = self.spec().max_deliver;
            if r.attempt > max_deliver {
                let why = format!(
                    "delivered {} times without an ack or a failure report (the consumer crashed or timed out each time)",
                    r.attempt - 1
                );
                self.park(&r, r.attempt - 1, &why).await?;
                continue;
            }
            match Envelope::from_json(&r.payload) {
                Ok(event) => {
                    self.metrics.consumer(&self.metrics.consumed, &name).inc();
                    if r.attempt > 1 {
                        self.metrics
                            .consumer(&self.metrics.redelivered, &name)
                            .inc();
                    }
                    out.push(Delivery {
                        sequence: r.sequence,
                        attempt: r.attempt,
                        event,
                        token: r.token,
                    });
                }
                Err(e) => {
                    let why = format!("cannot decode event: {e}");
                    self.park(&r, r.attempt, &why).await?;
                }
            }
        }
        Ok(out)
    }

    /// Acknowledge processed events.
    pub async fn ack(&self, deliveries: &[Delivery]) -> Result<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let tokens: Vec<AckToken> = deliveries.iter().map(|d| d.token.clone()).collect();
        self.consumer.ack(&tokens).await?;
        self.metrics
            .consumer(&self.metrics.acked, self.name())
            .inc_by(deliveries.len() as u64);
        Ok(())
    }

    /// Report that handling failed: retry after the backoff, or dead-letter when the error
    /// is fatal or the attempts are used up.
    pub async fn fail(&self, d: &Delivery, error: &HandlerError) -> Result<()> {
        let spec = self.spec();
        let exhausted = d.attempt >= spec.max_deliver;
        match error {
            HandlerError::Retry(msg) if !exhausted => {
                tracing::warn!(consumer = %spec.name, sequence = d.sequence, attempt = d.attempt,
                    correlation_id = %d.event.correlation_id, error = %msg, "event handling failed; will retry");
                self.metrics
                    .consumer(&self.metrics.retried, self.name())
                    .inc();
                self.consumer
                    .nak(&d.token, spec.backoff_after(d.attempt))
                    .await
            }
            _ => {
                let raw = RawDelivery {
                    sequence: d.sequence,
                    attempt: d.attempt,
                    subject: d.event.subject(self.log.prefix()),
                    payload: d.event.to_json(),
                    token: d.token.clone(),
                };
                self.park(&raw, d.attempt, &error.to_string()).await
            }
        }
    }

    /// Events matching this consumer not yet delivered; also updates the lag gauge.
    pub async fn lag(&self) -> Result<u64> {
        let lag = self.consumer.lag().await?;
        self.metrics
            .lag
            .get_or_create(&crate::metrics::ConsumerLabels {
                consumer: self.name().to_owned(),
            })
            .set(lag as i64);
        Ok(lag)
    }

    /// Park an event: append a `log.event.dead_lettered` event holding the original, then
    /// stop its delivery. The dead letter's key is derived from the consumer and the
    /// original's sequence, so parking twice (after a crash in between) writes it once.
    async fn park(&self, raw: &RawDelivery, deliveries: u32, why: &str) -> Result<()> {
        let name = self.name();
        let original: serde_json::Value = serde_json::from_slice(&raw.payload).unwrap_or_else(|_| {
            serde_json::json!({ "subject": raw.subject, "raw": String::from_utf8_lossy(&raw.payload) })
        });
        let payload = LogEventDeadLettered {
            consumer: name.to_owned(),
            sequence: raw.sequence,
            deliveries,
            last_error: why.to_owned(),
            event: original,
            severity: Severity::High,
        };
        let step = format!("dead-letter/{name}/{}", raw.sequence);
        let dead = match Envelope::from_json(&raw.payload) {
            Ok(orig) => orig.derive(LOG_SOURCE, &step, &payload),
            Err(_) => Envelope::new(
                LOG_SOURCE,
                steward_events::derive_key("undecodable", &step),
                &payload,
            ),
        };
        tracing::error!(consumer = %name, sequence = raw.sequence, deliveries, error = %why,
            correlation_id = %dead.correlation_id, "event dead-lettered; the consumer moves on");
        self.log.append(std::slice::from_ref(&dead)).await?;
        self.consumer.term(&raw.token).await?;
        self.metrics
            .consumer(&self.metrics.dead_lettered, name)
            .inc();
        Ok(())
    }
}
