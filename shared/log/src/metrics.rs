//! Prometheus metrics of the log, per consumer, plus a decorator that counts appends.

use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use steward_events::Envelope;

use crate::{Appended, Consumer, ConsumerSpec, EventLog, Result, Stored};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

/// Counters shared by every subscription of a process. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct LogMetrics {
    pub published: Family<SourceLabels, Counter>,
    pub duplicates: Family<SourceLabels, Counter>,
    pub consumed: Family<ConsumerLabels, Counter>,
    pub acked: Family<ConsumerLabels, Counter>,
    pub redelivered: Family<ConsumerLabels, Counter>,
    pub retried: Family<ConsumerLabels, Counter>,
    pub dead_lettered: Family<ConsumerLabels, Counter>,
    pub lag: Family<ConsumerLabels, Gauge>,
}

impl LogMetrics {
    /// Metrics registered under `steward_log_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("steward_log");
        r.register(
            "events_published",
            "Events appended (not counting duplicates), by source service",
            m.published.clone(),
        );
        r.register(
            "events_duplicate",
            "Appends dropped as duplicates of an earlier key, by source service",
            m.duplicates.clone(),
        );
        r.register(
            "events_consumed",
            "Deliveries handed to a consumer",
            m.consumed.clone(),
        );
        r.register("events_acked", "Deliveries acknowledged", m.acked.clone());
        r.register(
            "events_redelivered",
            "Deliveries that were a second or later attempt",
            m.redelivered.clone(),
        );
        r.register(
            "events_retried",
            "Failed deliveries scheduled for another attempt",
            m.retried.clone(),
        );
        r.register(
            "events_dead_lettered",
            "Events parked after their delivery limit",
            m.dead_lettered.clone(),
        );
        r.register(
            "consumer_lag",
            "Events matching a consumer not yet delivered to it",
            m.lag.clone(),
        );
        m
    }

    /// Create every series of a consumer at zero, so dashboards see it before its first
    /// event.
    pub(crate) fn init_consumer(&self, name: &str) {
        let l = ConsumerLabels {
            consumer: name.to_owned(),
        };
        for f in [
            &self.consumed,
            &self.acked,
            &self.redelivered,
            &self.retried,
            &self.dead_lettered,
        ] {
            let _ = f.get_or_create(&l);
        }
        let _ = self.lag.get_or_create(&l);
    }

    pub(crate) fn consumer(&self, family: &Family<ConsumerLabels, Counter>, name: &str) -> Counter {
        family
            .get_or_create(&ConsumerLabels {
                consumer: name.to_owned(),
            })
            .clone()
    }
}

/// An [`EventLog`] that counts what is appended through it.
pub struct MeteredLog {
    inner: Arc<dyn EventLog>,
    metrics: LogMetrics,
}

impl MeteredLog {
    pub fn new(inner: Arc<dyn EventLog>, metrics: LogMetrics) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl EventLog for MeteredLog {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn prefix(&self) -> &str {
        self.inner.prefix()
    }

    async fn append(&self, events: &[Envelope]) -> Result<Vec<Appended>> {
        let out = self.inner.append(events).await?;
        for (e, a) in events.iter().zip(&out) {
            let labels = SourceLabels {
                source: e.source.clone(),
            };
            if a.duplicate {
                self.metrics.duplicates.get_or_create(&labels).inc();
            } else {
                self.metrics.published.get_or_create(&labels).inc();
            }
        }
        Ok(out)
    }

    async fn consumer(&self, spec: &ConsumerSpec) -> Result<Box<dyn Consumer>> {
        self.inner.consumer(spec).await
    }

    async fn read(&self, from: u64, filters: &[String], max: usize) -> Result<Vec<Stored>> {
        self.inner.read(from, filters, max).await
    }

    async fn last_sequence(&self) -> Result<u64> {
        self.inner.last_sequence().await
    }
}
