//! The delivery loop: sends what the outbox holds, in order per destination, within
//! Telegram's limits; retries with exponential backoff and jitter (the schedule lives in the
//! row, so it survives restarts); turns flood-held messages into digests; and writes each
//! outcome to the log as `notify.delivered` / `notify.failed`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use steward_config::{FloodConfig, RetryConfig};
use steward_events::{derive_key, Envelope, NotifyDelivered, NotifyFailed};
use steward_log::EventLog;
use steward_store::sqlx;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::email::Mailer;
use crate::outbox::{self, Message, Outbox};
use crate::projection::now_ms;
use crate::ratelimit::RateLimiter;
use crate::telegram::{SendError, Telegram};
use crate::templates::Templates;

/// Most messages started per pass of the loop, and in flight at once.
const IN_FLIGHT: usize = 64;
/// Most items a digest lists (the rest are counted).
const DIGEST_ITEMS: usize = 30;
/// The loop looks at the outbox at least this often.
const TICK: Duration = Duration::from_millis(500);
/// Digests and outcome events are handled at most this often.
const HOUSEKEEPING: Duration = Duration::from_millis(100);

pub struct Delivery {
    pub outbox: Outbox,
    pub telegram: Option<Telegram>,
    pub mailer: Option<Arc<Mailer>>,
    pub limiter: Arc<RateLimiter>,
    pub retry: RetryConfig,
    pub flood: FloodConfig,
    pub templates: Arc<Templates>,
    pub log: Arc<dyn EventLog>,
    /// Poked when new messages are in the outbox.
    pub wake: Arc<Notify>,
    pub source: &'static str,
}

/// Backoff before attempt `attempt + 1` after attempt `attempt` failed: `initial × 2^(n-1)`,
/// capped at `max`, then a random point between half of it and all of it.
pub fn backoff(retry: &RetryConfig, attempt: u32, seed: &str) -> Duration {
    let exp = retry
        .initial_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let d = exp.min(retry.max_backoff);
    let mut h = Sha256::new();
    h.update(seed.as_bytes());
    h.update(attempt.to_le_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    let r = u64::from_le_bytes(h.finalize()[..8].try_into().unwrap_or([0; 8]));
    let frac = 0.5 + (r as f64 / u64::MAX as f64) * 0.5;
    d.mul_f64(frac)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Delivery {
    /// Runs until `shutdown`; sends already started are finished first.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut busy: HashSet<(String, String)> = HashSet::new();
        let mut tasks: JoinSet<(String, String)> = JoinSet::new();
        let mut housekeeping: Option<tokio::time::Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let now = now_ms();
            // Digests and outcomes in the log: a few times a second is enough, and saves the
            // queries on every wake while many messages are in flight.
            if housekeeping.is_none_or(|t| t.elapsed() >= HOUSEKEEPING) {
                housekeeping = Some(tokio::time::Instant::now());
                if let Err(e) = self.flush_digests(now).await {
                    tracing::warn!(error = %e, "cannot build digests; will retry");
                }
                if let Err(e) = self.report().await {
                    tracing::warn!(error = %e, "cannot write delivery outcomes to the log; will retry");
                }
            }
            match self.outbox.due(now, 1000).await {
                Ok(due) => {
                    for m in due {
                        if tasks.len() >= IN_FLIGHT {
                            break;
                        }
                        let key = (m.transport.clone(), m.destination.clone());
                        if !busy.insert(key.clone()) {
                            continue;
                        }
                        let this = self.clone();
                        let stop = shutdown.clone();
                        tasks.spawn(async move {
                            this.deliver(m, stop).await;
                            key
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the outbox; will retry"),
            }
            let wait = match self.outbox.next_due().await {
                Ok(Some(at)) if tasks.is_empty() => {
                    Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(TICK)
                }
                _ => TICK,
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(key) = done {
                        busy.remove(&key);
                    }
                    while let Some(done) = tasks.try_join_next() {
                        if let Ok(key) = done {
                            busy.remove(&key);
                        }
                    }
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        // Outcomes of the last sends.
        if let Err(e) = self.report().await {
            tracing::warn!(error = %e, "cannot write delivery outcomes to the log before stopping");
        }
    }

    /// Sends one message and records the outcome.
    async fn deliver(&self, m: Message, shutdown: CancellationToken) {
        let chat = m.destination.parse::<i64>().ok();
        let mut slot = None;
        if m.transport == outbox::TELEGRAM {
            if let Some(chat) = chat {
                tokio::select! {
                    s = self.limiter.acquire(chat) => slot = Some(s),
                    _ = shutdown.cancelled() => return,
                }
            }
        }
        let now = now_ms();
        match self.outbox.claim(&m.id, now).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a message; will retry");
                return;
            }
        }
        if let (Some(chat), Some(_)) = (chat, slot) {
            // Memory only, and almost always immediate: the slot already spaced it out.
            self.limiter.confirmed(chat).await;
        }
        let attempt = m.attempts + 1;
        let result = match (m.transport.as_str(), chat, &self.telegram, &self.mailer) {
            (outbox::TELEGRAM, Some(chat), Some(tg), _) => tg.send(chat, &m.body, &m.buttons).await,
            (outbox::TELEGRAM, _, None, _) => Err(SendError::Permanent(
                "Telegram is off: notify.telegram.bot_token is not set (TELEGRAM_BOT_TOKEN)".into(),
            )),
            (outbox::EMAIL, _, _, Some(mailer)) => mailer.send(&m).await,
            (outbox::EMAIL, _, _, None) => Err(SendError::Permanent(
                "e-mail is off: notify.email is not configured".into(),
            )),
            _ => Err(SendError::Permanent(format!(
                "cannot deliver to {} {}",
                m.transport, m.destination
            ))),
        };
        let now = now_ms();
        let outcome = match result {
            Ok(message_id) => {
                tracing::info!(channel = %m.channel, transport = %m.transport, destination = %m.destination,
                    request_key = %m.request_key, correlation_id = %m.correlation_id, attempt, "notification delivered");
                self.outbox.mark_sent(&m.id, Some(&message_id), now).await
            }
            Err(SendError::RetryAfter(d)) => {
                tracing::warn!(channel = %m.channel, destination = %m.destination, retry_after = ?d,
                    "Telegram asked to slow down (429); the message waits");
                if let Some(chat) = chat {
                    self.limiter.pause(chat, d);
                }
                self.outbox
                    .reschedule(
                        &m.id,
                        now + ms(d),
                        &format!("429: retry after {d:?}"),
                        true,
                        now,
                    )
                    .await
            }
            Err(SendError::Transient(e)) if attempt < self.retry.attempts => {
                let wait = backoff(&self.retry, attempt, &m.id);
                tracing::warn!(channel = %m.channel, transport = %m.transport, destination = %m.destination,
                    attempt, of = self.retry.attempts, retry_in = ?wait, error = %e, "delivery failed; will retry");
                self.outbox
                    .reschedule(&m.id, now + ms(wait), &e, false, now)
                    .await
            }
            Err(e) => {
                tracing::error!(channel = %m.channel, transport = %m.transport, destination = %m.destination,
                    request_key = %m.request_key, correlation_id = %m.correlation_id, attempt, error = %e,
                    "delivery failed for good; notify.failed follows");
                self.outbox.mark_failed(&m.id, &e.to_string(), now).await
            }
        };
        if let Err(e) = outcome {
            tracing::error!(error = %e, id = %m.id, "cannot record a delivery outcome");
        }
        self.wake.notify_one();
    }

    /// Held messages whose window has passed become one digest per destination.
    async fn flush_digests(&self, now: i64) -> Result<(), sqlx::Error> {
        let window = ms(self.flood.window);
        for (transport, destination) in self.outbox.digests_due(now - window).await? {
            let held = self.outbox.held(&transport, &destination).await?;
            let Some(first) = held.first() else { continue };
            let severity = held
                .iter()
                .map(|m| severity_rank(&m.severity))
                .max()
                .unwrap_or(0);
            let severity = ["info", "low", "medium", "high", "critical"][severity];
            let items: Vec<Value> = held
                .iter()
                .take(DIGEST_ITEMS)
                .map(|m| json!({"severity": m.severity, "summary": m.summary}))
                .collect();
            let ctx = json!({
                "count": held.len(),
                "window_secs": self.flood.window.as_secs(),
                "items": items,
                "more": held.len().saturating_sub(DIGEST_ITEMS),
                "severity": severity,
                "template": "digest",
                "channel": first.channel,
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "correlation_id": first.correlation_id,
                "chain_id": Value::Null,
                "fields": {},
            });
            let rendered = match self.templates.render("digest", &ctx) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the digest template failed; held messages stay held");
                    continue;
                }
            };
            let mut d = first.clone();
            d.id = derive_key(&first.id, "digest");
            d.request_key = format!("digest:{}", first.id);
            d.channel = "digest".into();
            d.severity = severity.into();
            d.template = "digest".into();
            d.summary = rendered.summary;
            if transport == outbox::TELEGRAM {
                d.body = rendered.telegram;
                d.buttons = Vec::new();
            } else {
                d.body = rendered.text;
                d.body_html = rendered.html;
            }
            d.status = outbox::PENDING.into();
            d.attempts = 0;
            d.next_attempt_ms = now;
            d.created_at_ms = now;
            d.last_error = None;
            d.digest_id = None;
            let ids: Vec<String> = held.iter().map(|m| m.id.clone()).collect();
            tracing::info!(transport = %transport, destination = %destination, messages = ids.len(),
                "flood control: held messages go out as one digest");
            self.outbox.insert_digest(&d, &ids, now).await?;
        }
        Ok(())
    }

    /// Writes `notify.delivered` / `notify.failed` for outcomes not yet in the log.
    async fn report(&self) -> anyhow::Result<()> {
        let rows = self.outbox.unreported(200).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut events = Vec::with_capacity(rows.len());
        for m in &rows {
            let step = |what: &str| format!("notify/{what}/{}/{}", m.channel, m.destination);
            let mut e = if m.status == outbox::FAILED {
                Envelope::new(
                    self.source,
                    derive_key(&m.request_key, &step("failed")),
                    &NotifyFailed {
                        channel: m.channel.clone(),
                        request_key: m.request_key.clone(),
                        attempts: m.attempts,
                        error: m.last_error.clone().unwrap_or_default(),
                    },
                )
            } else {
                Envelope::new(
                    self.source,
                    derive_key(&m.request_key, &step("delivered")),
                    &NotifyDelivered {
                        channel: m.channel.clone(),
                        request_key: m.request_key.clone(),
                        message_id: m.message_id.clone(),
                    },
                )
            };
            if let Ok(c) = m.correlation_id.parse() {
                e.correlation_id = c;
            }
            e.causation_id = m.request_id.parse().ok();
            events.push(e);
        }
        self.log.append(&events).await?;
        let ids: Vec<String> = rows.into_iter().map(|m| m.id).collect();
        self.outbox.mark_reported(&ids).await?;
        Ok(())
    }
}

fn severity_rank(s: &str) -> usize {
    match s {
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let r = RetryConfig {
            attempts: 10,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
        };
        for attempt in 1..=8u32 {
            let full = Duration::from_secs(2 * (1 << (attempt - 1))).min(Duration::from_secs(60));
            for i in 0..50 {
                let d = backoff(&r, attempt, &format!("m{i}"));
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} vs {full:?}"
                );
            }
        }
        // Jitter: not all the same.
        let ds: HashSet<Duration> = (0..20).map(|i| backoff(&r, 3, &format!("x{i}"))).collect();
        assert!(ds.len() > 10);
    }
}
