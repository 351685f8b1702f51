//! The `notifier` service: how people hear from Steward. It delivers `notify.requested` (and
//! an alert for every `log.event.dead_lettered`) to Telegram and e-mail, once per cause,
//! rendered from templates, within Telegram's limits, surviving restarts.
//!
//! - [`projection`]: each consumed event is applied exactly once; a request becomes rendered
//!   rows of the persisted [`outbox`], one per destination, keyed by the request's key — a
//!   redelivered request adds nothing. The same projection keeps the read models behind the
//!   bot's `/status` and `/queue` (open risks, pending Safe transactions, failures) and the
//!   subscribers (`notify.subscription.*` events).
//! - [`delivery`]: sends what the outbox holds, per destination in order, through the
//!   [`ratelimit`] schedule; retries with exponential backoff and jitter stored in the row;
//!   flood control turns a burst into one digest; outcomes become `notify.delivered` /
//!   `notify.failed`. A row is marked `sending` before the transport is called and `sent`
//!   after; one found `sending` at start-up is never sent again (see [`outbox`]).
//! - [`bot`]: the Telegram commands, with an allowlist.
//! - [`templates`] and [`markup`]: handlebars templates (built in, overridable), helpers, and
//!   Telegram escaping that no value can break.
//!
//! Secrets: the bot token and the SMTP password are read from the configuration's
//! [`steward_config::Secret`]s and never logged, stored, put in an event or shown by `/status`:
//! transport errors are scrubbed of them before they go anywhere.

pub mod bench;
pub mod bot;
pub mod delivery;
pub mod email;
pub mod fake_telegram;
pub mod markup;
pub mod outbox;
pub mod projection;
pub mod ratelimit;
pub mod telegram;
pub mod templates;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use steward_config::{Config, Validator};
use steward_log::{HandlerError, Subscription};
use steward_runtime::{Service, ServiceContext, ServiceKind};
use tokio::sync::Notify;

pub use projection::NotifierProjection;
pub use templates::Templates;

pub const NAME: &str = "notifier";

/// Events per fetch and per store transaction.
const BATCH: usize = 100;
/// How often the consumer's lag is read (for `/status` and the metric).
const LAG_EVERY: Duration = Duration::from_secs(5);

pub fn service() -> Box<dyn Service> {
    Box::new(Notifier)
}

/// Makes ring the process's TLS provider unless one is installed (the chain crate does the
/// same); rustls refuses to pick one itself when none or several are compiled in.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The notifier's configuration checks, for `steward config check` and start-up: every
/// template compiled and rendered against its example (problems name file, line and
/// column), and every e-mail address parsed.
pub fn check_config(config: &Config, v: &mut Validator<'_>) {
    for problem in Templates::check(config) {
        v.invalid("notify.templates", problem);
    }
    if let Some(e) = &config.notify.email {
        if let Err(m) = email::mailbox(&e.from) {
            v.invalid_got("notify.email.from", m, &e.from);
        }
        if let Err(m) = email::ca_certificates(e, &config.base_dir) {
            v.invalid("notify.email.ca_file", m);
        }
    }
    for (i, c) in config.notify.channels.iter().enumerate() {
        if let Some(e) = &c.email {
            for (j, to) in e.to.iter().enumerate() {
                if let Err(m) = email::mailbox(to) {
                    v.invalid_got(&format!("notify.channels[{i}].email.to[{j}]"), m, to);
                }
            }
        }
    }
}

struct Notifier;

#[async_trait]
impl Service for Notifier {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> ServiceKind {
        ServiceKind::Worker
    }

    async fn run(self: Box<Self>, ctx: ServiceContext) -> anyhow::Result<()> {
        let config = ctx.config.clone();
        let templates = Arc::new(Templates::load(&config).map_err(|p| {
            anyhow::anyhow!("the notification templates are invalid: {}", p.join("; "))
        })?);
        let notify = &config.notify;
        let telegram = match &notify.telegram {
            Some(t) => telegram::Telegram::new(t)?,
            None => None,
        };
        let mut bot_id = None;
        match (&notify.telegram, &telegram) {
            (None, _) => tracing::info!("Telegram is off: no `notify.telegram` section"),
            (Some(_), None) => tracing::warn!(
                "Telegram is off: notify.telegram.bot_token is not set (TELEGRAM_BOT_TOKEN); messages for Telegram channels fail"
            ),
            (Some(cfg), Some(tg)) => match tg.get_me().await {
                Ok((id, username)) => {
                    tracing::info!(bot = %username, api_url = %steward_config::redact_url(&cfg.api_url),
                        parse_mode = ?cfg.parse_mode, "Telegram bot ready");
                    bot_id = Some(id);
                }
                Err(telegram::SendError::Permanent(e)) => {
                    anyhow::bail!("Telegram refused the bot at start-up: {e}. Check notify.telegram (bot_token, api_url).")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Telegram cannot be reached at start-up; messages wait in the outbox and the bot starts when it answers");
                }
            },
        }
        let mailer = match &notify.email {
            Some(e) => {
                let m = email::Mailer::new(e, &config.base_dir)?;
                tracing::info!(server = %m.endpoint, "e-mail ready");
                Some(Arc::new(m))
            }
            None => {
                tracing::info!("e-mail is off: no `notify.email` section");
                None
            }
        };
        if notify.channels.is_empty() {
            tracing::info!("no notification channels configured (`notify.channels`): requests are recorded as failed, subscribers still hear them");
        }

        let outbox = outbox::Outbox::new(ctx.store.clone());
        let interrupted = outbox.recover(projection::now_ms()).await?;
        for m in &interrupted {
            tracing::warn!(channel = %m.channel, destination = %m.destination, request_key = %m.request_key,
                "a message was being sent when the notifier stopped: it may have arrived; not sent again (status unconfirmed)");
        }
        let wake = Arc::new(Notify::new());
        let limiter = Arc::new(ratelimit::RateLimiter::new(
            notify
                .telegram
                .as_ref()
                .map(|t| t.rate_limits.clone())
                .unwrap_or_default(),
        ));
        let lag = Arc::new(AtomicU64::new(0));
        let delivery = Arc::new(delivery::Delivery {
            outbox: outbox.clone(),
            telegram: telegram.clone(),
            mailer,
            limiter,
            retry: notify.retry.clone(),
            flood: notify.flood.clone(),
            templates: templates.clone(),
            log: ctx.log.clone(),
            wake: wake.clone(),
            source: NAME,
        });
        let sub = Subscription::open(
            ctx.log.clone(),
            steward_runtime::archiver::consumer_spec(&ctx, NAME).filters(projection::FILTERS),
            ctx.metrics.clone(),
        )
        .await?;
        let projection = NotifierProjection::new(config.clone(), templates.clone());

        let stop = ctx.shutdown.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(delivery.run(stop.clone()));
        if let Some(tg) = telegram {
            let bot = bot::Bot {
                telegram: tg.clone(),
                bot_id: bot_id.unwrap_or(0),
                config: config.clone(),
                templates: templates.clone(),
                outbox: outbox.clone(),
                log: ctx.log.clone(),
                wake: wake.clone(),
                lag: lag.clone(),
                source: NAME,
            };
            let stop = stop.clone();
            tasks.spawn(async move {
                let mut bot = bot;
                // Without getMe's answer the bot cannot key its offset: wait for Telegram.
                while bot.bot_id == 0 {
                    match bot.telegram.get_me().await {
                        Ok((id, _)) => bot.bot_id = id,
                        Err(e) => {
                            tracing::warn!(error = %e, "Telegram still unreachable; the bot waits");
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                            }
                        }
                    }
                }
                Arc::new(bot).run(stop).await
            });
        }
        ctx.ready.set_ready();

        let mut last_lag: Option<tokio::time::Instant> = None;
        let result = loop {
            let batch = tokio::select! {
                _ = ctx.shutdown.cancelled() => break Ok(()),
                b = sub.fetch(BATCH, Duration::from_secs(1)) => b,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "event log unavailable; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => break Err(anyhow::Error::from(e)),
            };
            if last_lag.is_none_or(|t| t.elapsed() >= LAG_EVERY) {
                last_lag = Some(tokio::time::Instant::now());
                if let Ok(l) = sub.lag().await {
                    lag.store(l, Ordering::Relaxed);
                }
            }
            if batch.is_empty() {
                continue;
            }
            let items: Vec<_> = batch.iter().map(|d| (d.sequence, &d.event)).collect();
            let handled = match ctx.store.project_batch(&projection, &items).await {
                Ok(_) => sub.ack(&batch).await,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, events = batch.len(), "notifier projection failed; the batch will be retried");
                    let mut r = Ok(());
                    for d in &batch {
                        r = r.and(sub.fail(d, &HandlerError::Retry(e.to_string())).await);
                    }
                    r
                }
                // One event cannot be applied: one at a time, so that one is dead-lettered.
                Err(_) => {
                    let mut r = Ok(());
                    for d in &batch {
                        r = r.and(
                            match ctx.store.project(&projection, d.sequence, &d.event).await {
                                Ok(_) => sub.ack(std::slice::from_ref(d)).await,
                                Err(e) => sub.fail(d, &HandlerError::from(e)).await,
                            },
                        );
                    }
                    r
                }
            };
            if let Err(e) = handled {
                tracing::warn!(error = %e, "cannot ack or fail deliveries; they come back after the ack wait");
            }
            wake.notify_one();
        };
        stop.cancel();
        while tasks.join_next().await.is_some() {}
        result
    }
}
