//! The built-in `archiver` service: every event in the log, projected into the store's
//! event archive exactly once (for audit queries and the API).

use std::time::Duration;

use async_trait::async_trait;
use steward_log::{ConsumerSpec, HandlerError, Subscription};

use crate::{Service, ServiceContext, ServiceKind};

pub const NAME: &str = "archiver";

/// Events per fetch and per store transaction.
const BATCH: usize = 500;

/// How often the consumer-lag gauge is refreshed.
const LAG_EVERY: Duration = Duration::from_secs(5);

pub fn service() -> Box<dyn Service> {
    Box::new(Archiver)
}

struct Archiver;

/// The consumer definition every service derives from the config's consumer defaults.
pub fn consumer_spec(ctx: &ServiceContext, name: &str) -> ConsumerSpec {
    let c = &ctx.config.event_log.consumers;
    ConsumerSpec::new(name)
        .ack_wait(c.ack_wait)
        .max_deliver(c.max_deliver)
        .backoff(c.backoff.clone())
}

#[async_trait]
impl Service for Archiver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> ServiceKind {
        ServiceKind::Worker
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let sub = Subscription::open(
            ctx.log.clone(),
            consumer_spec(&ctx, NAME),
            ctx.metrics.clone(),
        )
        .await?;
        let projection = steward_store::Archiver;
        ctx.ready.set_ready();
        let mut last_lag: Option<tokio::time::Instant> = None;
        loop {
            let batch = tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                b = sub.fetch(BATCH, Duration::from_secs(1)) => b,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "event log unavailable; retrying");
                    ctx.ready.set_not_ready();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            ctx.ready.set_ready();
            // Lag matters most when the consumer is busy, so refresh it on a clock, not only
            // when idle (on NATS it costs a request to the server).
            if last_lag.is_none_or(|t| t.elapsed() >= LAG_EVERY) {
                last_lag = Some(tokio::time::Instant::now());
                if let Err(e) = sub.lag().await {
                    tracing::debug!(error = %e, "cannot read the consumer's lag");
                }
            }
            if batch.is_empty() {
                continue;
            }
            let items: Vec<_> = batch.iter().map(|d| (d.sequence, &d.event)).collect();
            match ctx.store.project_batch(&projection, &items).await {
                Ok(applied) => {
                    sub.ack(&batch).await?;
                    for (d, a) in batch.iter().zip(applied) {
                        let _span = crate::event_span(NAME, &d.event).entered();
                        tracing::debug!(sequence = d.sequence, outcome = ?a, "archived");
                    }
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, events = batch.len(), "archiving failed; the batch will be retried");
                    for d in &batch {
                        sub.fail(d, &HandlerError::Retry(e.to_string())).await?;
                    }
                }
                // One event cannot be archived: retry the batch one event at a time, so the
                // bad one is dead-lettered and the others are archived.
                Err(_) => {
                    for d in &batch {
                        match ctx.store.project(&projection, d.sequence, &d.event).await {
                            Ok(_) => sub.ack(std::slice::from_ref(d)).await?,
                            Err(e) => sub.fail(d, &HandlerError::from(e)).await?,
                        }
                    }
                }
            }
        }
        // In-flight work is finished: the last batch was acked or failed above.
        Ok(())
    }
}
