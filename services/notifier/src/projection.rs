//! The notifier's projection: each event it consumes is applied exactly once (the store's
//! projection protocol), in one transaction with its effects:
//!
//! - `notify.requested` and `log.event.dead_lettered` are rendered and become outbox rows,
//!   one per destination, each keyed by the request's key, the channel and the destination
//!   (flood control may park a row as `held` for the next digest);
//! - `notify.subscription.*` keep the subscribers;
//! - `risk.*`, `safe.tx.*`, `safe.signature.accepted` and `notify.failed` keep the read models
//!   behind the bot's `/status` and `/queue`.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::{Any, Row, Transaction};
use steward_config::{Config, SeverityLevel};
use steward_events::{
    derive_key, Envelope, Event, LogEventDeadLettered, NotifyRequested, PlaybookRunFinished,
    Severity,
};
use steward_store::{sqlx, ApplyError, Projection};

use crate::outbox::{self, Button, Message};
use crate::templates::{Rendered, Templates};

/// The projection's name (and the consumer's).
pub const NAME: &str = "notifier";

/// Event types the notifier consumes.
pub const FILTERS: [&str; 11] = [
    "notify.requested",
    "notify.failed",
    "notify.subscription.*",
    "log.event.dead_lettered",
    "playbook.run.finished",
    "risk.position.*",
    "risk.oracle.*",
    "risk.operator_set.*",
    "risk.safe.*",
    "safe.tx.*",
    "safe.signature.accepted",
];

/// The channel name of messages that go to subscribers.
pub const SUBSCRIBERS: &str = "subscribers";

pub struct NotifierProjection {
    pub config: Arc<Config>,
    pub templates: Arc<Templates>,
    /// The clock, in ms since the epoch (a field so the benchmark and tests can fix it).
    pub now_ms: fn() -> i64,
}

pub fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

fn level(s: Severity) -> SeverityLevel {
    match s {
        Severity::Info => SeverityLevel::Info,
        Severity::Low => SeverityLevel::Low,
        Severity::Medium => SeverityLevel::Medium,
        Severity::High => SeverityLevel::High,
        Severity::Critical => SeverityLevel::Critical,
    }
}

fn parse_level(s: &str) -> Option<SeverityLevel> {
    serde_json::from_value(Value::String(s.to_owned())).ok()
}

/// A destination of one request.
struct Target {
    channel: String,
    transport: &'static str,
    destination: String,
    recipients: Vec<String>,
    /// Why this destination cannot be served (unknown channel, transport off).
    refused: Option<String>,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl NotifierProjection {
    pub fn new(config: Arc<Config>, templates: Arc<Templates>) -> Self {
        Self {
            config,
            templates,
            now_ms,
        }
    }

    async fn targets(
        &self,
        tx: &mut Transaction<'_, Any>,
        channels: &[String],
        severity: Severity,
        template: &str,
    ) -> Result<Vec<Target>, ApplyError> {
        let notify = &self.config.notify;
        let telegram_on = notify.telegram_enabled();
        let mut out = Vec::new();
        let mut chats = BTreeSet::new();
        for name in channels {
            let Some(ch) = notify.channel(name) else {
                out.push(Target {
                    channel: name.clone(),
                    transport: "none",
                    destination: name.clone(),
                    recipients: Vec::new(),
                    refused: Some(format!("no channel named `{name}` in notify.channels")),
                });
                continue;
            };
            if level(severity) < ch.min_severity {
                continue;
            }
            if let Some(t) = &ch.telegram {
                for chat in &t.chats {
                    chats.insert(*chat);
                    out.push(Target {
                        channel: name.clone(),
                        transport: outbox::TELEGRAM,
                        destination: chat.to_string(),
                        recipients: Vec::new(),
                        refused: (!telegram_on).then(|| {
                            "Telegram is off: notify.telegram.bot_token is not set (TELEGRAM_BOT_TOKEN)"
                                .to_owned()
                        }),
                    });
                }
            }
            if let Some(e) = &ch.email {
                out.push(Target {
                    channel: name.clone(),
                    transport: outbox::EMAIL,
                    destination: name.clone(),
                    recipients: e.to.clone(),
                    refused: None,
                });
            }
        }
        if telegram_on {
            let rows = sqlx::query(
                "SELECT chat_id, subscription FROM notifier_subscriptions ORDER BY chat_id",
            )
            .fetch_all(&mut **tx)
            .await?;
            for r in rows {
                let chat: i64 = r.try_get(0)?;
                let sub: String = r.try_get(1)?;
                let hears = match parse_level(&sub) {
                    Some(min) => level(severity) >= min,
                    None => sub == template || channels.contains(&sub),
                };
                if hears && chats.insert(chat) {
                    out.push(Target {
                        channel: SUBSCRIBERS.to_owned(),
                        transport: outbox::TELEGRAM,
                        destination: chat.to_string(),
                        recipients: Vec::new(),
                        refused: None,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The buttons under a Telegram message, from the context: `buttons: [{text, url}]`, a
    /// signing page for a Safe transaction, the explorer for a transaction hash.
    fn buttons(&self, ctx: &Map<String, Value>, chain_id: Option<u64>) -> Vec<Vec<Button>> {
        let mut row = Vec::new();
        if let Some(Value::Array(given)) = ctx.get("buttons") {
            for b in given {
                let text = b.get("text").and_then(Value::as_str);
                let url = b.get("url").and_then(Value::as_str);
                if let (Some(text), Some(url)) = (text, url) {
                    if url.starts_with("https://") || url.starts_with("http://") {
                        row.push(Button {
                            text: text.to_owned(),
                            url: Some(url.to_owned()),
                            callback: None,
                        });
                    }
                }
            }
        }
        let links = self.templates.links();
        let s = |k: &str| ctx.get(k).and_then(Value::as_str);
        if let (Some(safe), Some(hash)) = (s("safe"), s("safe_tx_hash")) {
            if let Some(url) = links.signing_url(safe, hash, chain_id) {
                row.push(Button {
                    text: "✍️ Sign".into(),
                    url: Some(url),
                    callback: None,
                });
            }
        }
        if let (Some(hash), Some(explorer)) = (s("transaction_hash"), links.explorer_for(chain_id))
        {
            row.push(Button {
                text: "🔎 Transaction".into(),
                url: Some(format!("{explorer}/tx/{hash}")),
                callback: None,
            });
        }
        if row.is_empty() {
            Vec::new()
        } else {
            row.truncate(8);
            vec![row]
        }
    }

    /// Renders a request and writes one outbox row per destination.
    async fn enqueue(
        &self,
        tx: &mut Transaction<'_, Any>,
        env: &Envelope,
        req: &NotifyRequested,
    ) -> Result<(), ApplyError> {
        let now = (self.now_ms)();
        let sev = severity_str(req.severity);
        let targets = self
            .targets(tx, &req.channels, req.severity, &req.template)
            .await?;
        if targets.is_empty() {
            tracing::info!(template = %req.template, severity = sev, channels = ?req.channels,
                "no destination wants this notification (below every channel's min_severity)");
            return Ok(());
        }
        if !self.templates.has(&req.template) {
            tracing::warn!(template = %req.template, "no template of this name: rendering with `default`");
        }
        let buttons = self.buttons(&req.context, env.chain_id);
        let flood = &self.config.notify.flood;
        let mut rendered: Option<(String, Rendered)> = None;
        for t in targets {
            let id = derive_key(&env.key, &format!("notify/{}/{}", t.channel, t.destination));
            let mut m = Message::new(
                id,
                env,
                &t.channel,
                t.transport,
                &t.destination,
                sev,
                &req.template,
                now,
            );
            m.recipients = t.recipients;
            if let Some(why) = t.refused {
                m.status = outbox::FAILED.to_owned();
                m.last_error = Some(why);
                outbox::insert(tx, &m).await?;
                continue;
            }
            if rendered.as_ref().map(|(c, _)| c.as_str()) != Some(t.channel.as_str()) {
                let ctx = render_context(env, req, &t.channel);
                match self.templates.render(&req.template, &ctx) {
                    Ok(r) => rendered = Some((t.channel.clone(), r)),
                    Err(e) => {
                        m.status = outbox::FAILED.to_owned();
                        m.last_error = Some(format!("template `{}` failed: {e}", req.template));
                        outbox::insert(tx, &m).await?;
                        continue;
                    }
                }
            }
            let Some((_, r)) = &rendered else { continue };
            m.summary = r.summary.clone();
            if t.transport == outbox::TELEGRAM {
                m.body = r.telegram.clone();
                m.buttons = buttons.clone();
            } else {
                m.body = r.text.clone();
                m.body_html = r.html.clone();
            }
            let since = now - i64::try_from(flood.window.as_millis()).unwrap_or(i64::MAX);
            let recent = outbox::recent_count(tx, t.transport, &m.destination, since).await?;
            if recent >= i64::from(flood.max_messages) {
                m.status = outbox::HELD.to_owned();
            }
            outbox::insert(tx, &m).await?;
        }
        Ok(())
    }

    async fn open_risk(
        &self,
        tx: &mut Transaction<'_, Any>,
        r: Risk<'_>,
        chain_id: Option<u64>,
    ) -> Result<(), ApplyError> {
        let Risk {
            key,
            kind,
            severity,
            summary,
            active,
        } = r;
        if !active {
            sqlx::query("DELETE FROM notifier_risks WHERE risk_key = $1")
                .bind(key)
                .execute(&mut **tx)
                .await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO notifier_risks (risk_key, kind, severity, summary, chain_id, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (risk_key) DO UPDATE SET \
             severity = excluded.severity, summary = excluded.summary, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(key)
        .bind(kind)
        .bind(severity_str(severity))
        .bind(summary)
        .bind(chain_id.and_then(|c| i64::try_from(c).ok()))
        .bind((self.now_ms)())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A Safe transaction waiting for signatures (proposed, or reopened by a reorg), unless
    /// it is listed already: `[safe_tx_hash, safe, reason]`.
    async fn pending_safe_tx(
        &self,
        tx: &mut Transaction<'_, Any>,
        [hash, safe, reason]: [String; 3],
        chain: Option<u64>,
        nonce: u64,
        now: i64,
    ) -> Result<(), ApplyError> {
        self.safe_tx(
            tx,
            "INSERT INTO notifier_safe_txs (safe_tx_hash, safe, chain_id, nonce, reason, confirmations, threshold, ready, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, 0, 0, 0, $6) ON CONFLICT (safe_tx_hash) DO NOTHING",
            vec![
                hash.into(),
                safe.into(),
                chain.map(Value::from).unwrap_or(Value::Null),
                Value::from(nonce),
                reason.into(),
                Value::from(now),
            ],
        )
        .await
    }

    async fn safe_tx(
        &self,
        tx: &mut Transaction<'_, Any>,
        sql: &str,
        binds: Vec<Value>,
    ) -> Result<(), ApplyError> {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = match b {
                Value::String(s) => q.bind(s),
                Value::Number(n) => q.bind(n.as_i64().unwrap_or(0)),
                Value::Null => q.bind(None::<i64>),
                other => q.bind(other.to_string()),
            };
        }
        q.execute(&mut **tx).await?;
        Ok(())
    }
}

/// A risk as `/status` lists it; `active: false` closes it.
struct Risk<'a> {
    key: &'a str,
    kind: &'a str,
    severity: Severity,
    summary: String,
    active: bool,
}

/// What a template sees: the request's context, and the globals.
pub fn render_context(env: &Envelope, req: &NotifyRequested, channel: &str) -> Value {
    let mut m = req.context.clone();
    m.insert("fields".into(), Value::Object(req.context.clone()));
    m.insert("severity".into(), severity_str(req.severity).into());
    m.insert("template".into(), req.template.clone().into());
    m.insert("channel".into(), channel.into());
    m.insert(
        "time".into(),
        env.time
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into(),
    );
    m.insert(
        "correlation_id".into(),
        env.correlation_id.to_string().into(),
    );
    m.insert(
        "chain_id".into(),
        env.chain_id.map(Value::from).unwrap_or(Value::Null),
    );
    Value::Object(m)
}

/// Where Steward's own alerts go: `notify.alert_channels`, or every channel.
fn alert_channels(config: &Config) -> Vec<String> {
    if config.notify.alert_channels.is_empty() {
        config
            .notify
            .channels
            .iter()
            .map(|c| c.name.clone())
            .collect()
    } else {
        config.notify.alert_channels.clone()
    }
}

/// A failed playbook run as a notification request: automation that stopped half-way is
/// something people must hear about even when the playbook itself notifies nobody.
pub fn run_failed_request(config: &Config, f: &PlaybookRunFinished) -> NotifyRequested {
    let mut context = Map::new();
    context.insert("playbook".into(), f.playbook.clone().into());
    context.insert("run_key".into(), f.run_key.clone().into());
    context.insert(
        "step".into(),
        f.failed_step.clone().unwrap_or_default().into(),
    );
    context.insert("error".into(), f.error.clone().unwrap_or_default().into());
    NotifyRequested {
        channels: alert_channels(config),
        template: "playbook_failed".into(),
        severity: Severity::High,
        context,
    }
}

/// A dead letter as a notification request.
pub fn dead_letter_request(config: &Config, d: &LogEventDeadLettered) -> NotifyRequested {
    let channels = alert_channels(config);
    let mut context = Map::new();
    context.insert("consumer".into(), d.consumer.clone().into());
    context.insert("sequence".into(), d.sequence.into());
    context.insert("deliveries".into(), d.deliveries.into());
    context.insert("last_error".into(), d.last_error.clone().into());
    context.insert(
        "event_type".into(),
        d.event
            .get("type")
            .cloned()
            .unwrap_or_else(|| Value::from("(undecodable)")),
    );
    context.insert(
        "event_key".into(),
        d.event.get("key").cloned().unwrap_or(Value::from("")),
    );
    NotifyRequested {
        channels,
        template: "dead_letter".into(),
        severity: d.severity,
        context,
    }
}

/// A request with `include_status: true` (a playbook's daily digest) gets what the notifier's
/// read models hold, as of this point in the log: `pending_safe_txs`, `open_risks` and
/// `failed_deliveries` (the last day's), up to 30 of each.
async fn with_status(
    tx: &mut Transaction<'_, Any>,
    mut req: NotifyRequested,
    now: i64,
) -> Result<NotifyRequested, ApplyError> {
    let rows = sqlx::query(
        "SELECT safe, nonce, reason, confirmations, threshold, safe_tx_hash, ready FROM notifier_safe_txs ORDER BY safe, nonce LIMIT 30",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut safe_txs = Vec::new();
    for r in &rows {
        safe_txs.push(serde_json::json!({
            "safe": r.try_get::<String, _>(0)?,
            "nonce": r.try_get::<i64, _>(1)?,
            "reason": r.try_get::<String, _>(2)?,
            "confirmations": r.try_get::<i64, _>(3)?,
            "threshold": r.try_get::<i64, _>(4)?,
            "safe_tx_hash": r.try_get::<String, _>(5)?,
            "ready": r.try_get::<i64, _>(6)? != 0,
        }));
    }
    let rows = sqlx::query(
        "SELECT kind, severity, summary FROM notifier_risks ORDER BY updated_at_ms DESC LIMIT 30",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut risks = Vec::new();
    for r in &rows {
        risks.push(serde_json::json!({
            "kind": r.try_get::<String, _>(0)?,
            "severity": r.try_get::<String, _>(1)?,
            "summary": r.try_get::<String, _>(2)?,
        }));
    }
    let rows = sqlx::query(
        "SELECT channel, attempts, error FROM notifier_failures WHERE failed_at_ms >= $1 ORDER BY failed_at_ms DESC LIMIT 30",
    )
    .bind(now - 24 * 3600 * 1000)
    .fetch_all(&mut **tx)
    .await?;
    let mut failures = Vec::new();
    for r in &rows {
        failures.push(serde_json::json!({
            "channel": r.try_get::<String, _>(0)?,
            "attempts": r.try_get::<i64, _>(1)?,
            "error": r.try_get::<String, _>(2)?,
        }));
    }
    req.context
        .insert("pending_safe_txs".into(), Value::Array(safe_txs));
    req.context.insert("open_risks".into(), Value::Array(risks));
    req.context
        .insert("failed_deliveries".into(), Value::Array(failures));
    Ok(req)
}

fn short(s: &str) -> String {
    crate::templates::shorten(s)
}

#[async_trait]
impl Projection for NotifierProjection {
    fn name(&self) -> &str {
        NAME
    }

    async fn apply(&self, tx: &mut Transaction<'_, Any>, env: &Envelope) -> Result<(), ApplyError> {
        let event = match env.decode() {
            Ok(e) => e,
            Err(e) => return Err(ApplyError::Fatal(e.to_string())),
        };
        let now = (self.now_ms)();
        let chain = env.chain_id;
        match event {
            Event::NotifyRequested(req)
                if req.context.get("include_status") == Some(&Value::Bool(true)) =>
            {
                let req = with_status(tx, req, now).await?;
                self.enqueue(tx, env, &req).await?
            }
            Event::NotifyRequested(req) => self.enqueue(tx, env, &req).await?,
            Event::LogEventDeadLettered(d) => {
                let req = dead_letter_request(&self.config, &d);
                self.enqueue(tx, env, &req).await?;
            }
            Event::PlaybookRunFinished(f) if f.outcome == "failed" => {
                let req = run_failed_request(&self.config, &f);
                self.enqueue(tx, env, &req).await?;
            }
            Event::NotifySubscriptionAdded(s) => {
                sqlx::query(
                    "INSERT INTO notifier_subscriptions (chat_id, subscription, user_id, created_at_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (chat_id, subscription) DO NOTHING",
                )
                .bind(s.chat_id)
                .bind(&s.subscription)
                .bind(s.user_id)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            Event::NotifySubscriptionRemoved(s) => {
                let q = match &s.subscription {
                    Some(_) => {
                        "DELETE FROM notifier_subscriptions WHERE chat_id = $1 AND subscription = $2"
                    }
                    None => "DELETE FROM notifier_subscriptions WHERE chat_id = $1 AND $2 = $2",
                };
                sqlx::query(q)
                    .bind(s.chat_id)
                    .bind(s.subscription.clone().unwrap_or_default())
                    .execute(&mut **tx)
                    .await?;
            }
            Event::NotifyFailed(f) => {
                sqlx::query(
                    "INSERT INTO notifier_failures (failure_key, request_key, channel, attempts, error, failed_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (failure_key) DO NOTHING",
                )
                .bind(&env.key)
                .bind(&f.request_key)
                .bind(&f.channel)
                .bind(i64::from(f.attempts))
                .bind(&f.error)
                .bind(env.time.timestamp_millis())
                .execute(&mut **tx)
                .await?;
            }
            Event::RiskPositionLiquidatable(p) => {
                let summary = format!(
                    "{} position {} on {}: health factor {}",
                    p.protocol,
                    short(&p.user),
                    short(&p.pool),
                    crate::templates::format_amount(&p.health_factor, 18)
                );
                let key = format!("position:{}:{}:{}", chain.unwrap_or(0), p.pool, p.user);
                self.open_risk(
                    tx,
                    Risk {
                        key: &key,
                        kind: "liquidatable",
                        severity: p.severity,
                        summary,
                        active: p.active,
                    },
                    chain,
                )
                .await?;
            }
            Event::RiskOracleStale(o) => {
                let summary = format!(
                    "oracle {} ({}) stale for {} (heartbeat {})",
                    o.asset,
                    short(&o.feed),
                    crate::templates::format_duration(o.age_secs as f64),
                    crate::templates::format_duration(o.heartbeat_secs as f64)
                );
                let key = format!("oracle-stale:{}:{}", chain.unwrap_or(0), o.feed);
                self.open_risk(
                    tx,
                    Risk {
                        key: &key,
                        kind: "oracle stale",
                        severity: o.severity,
                        summary,
                        active: o.active,
                    },
                    chain,
                )
                .await?;
            }
            Event::RiskOracleDeviation(o) => {
                let summary = format!(
                    "oracle {} deviates {} bps (bound {})",
                    o.asset, o.deviation_bps, o.bound_bps
                );
                let key = format!("oracle-deviation:{}:{}", chain.unwrap_or(0), o.asset);
                self.open_risk(
                    tx,
                    Risk {
                        key: &key,
                        kind: "oracle deviation",
                        severity: o.severity,
                        summary,
                        active: o.active,
                    },
                    chain,
                )
                .await?;
            }
            Event::RiskOperatorSetAssessed(o) => {
                let summary = format!("operator set {}: {}", o.operator_set, o.breaches.join("; "));
                let key = format!("operator-set:{}", o.operator_set);
                let active = !o.breaches.is_empty();
                self.open_risk(
                    tx,
                    Risk {
                        key: &key,
                        kind: "concentration",
                        severity: o.severity,
                        summary,
                        active,
                    },
                    chain,
                )
                .await?;
            }
            Event::RiskSafeDrift(d) => {
                let summary = format!("Safe {} {} drifted", short(&d.safe), d.field);
                let key = format!("safe-drift:{}:{}:{}", chain.unwrap_or(0), d.safe, d.field);
                self.open_risk(
                    tx,
                    Risk {
                        key: &key,
                        kind: "safe drift",
                        severity: d.severity,
                        summary,
                        active: d.active,
                    },
                    chain,
                )
                .await?;
            }
            Event::SafeTxProposed(p) => {
                let row = [p.safe_tx_hash, p.safe, p.reason];
                self.pending_safe_tx(tx, row, chain, p.nonce, now).await?;
            }
            Event::SafeSignatureAccepted(s) => {
                self.safe_tx(
                    tx,
                    "UPDATE notifier_safe_txs SET confirmations = $2, threshold = $3, updated_at_ms = $4 WHERE safe_tx_hash = $1",
                    vec![
                        s.safe_tx_hash.into(),
                        Value::from(s.confirmations),
                        Value::from(s.threshold),
                        Value::from(now),
                    ],
                )
                .await?;
            }
            Event::SafeTxReady(r) => {
                self.safe_tx(
                    tx,
                    "UPDATE notifier_safe_txs SET confirmations = $2, threshold = $3, ready = 1, updated_at_ms = $4 WHERE safe_tx_hash = $1",
                    vec![
                        r.safe_tx_hash.into(),
                        Value::from(r.confirmations),
                        Value::from(r.threshold),
                        Value::from(now),
                    ],
                )
                .await?;
            }
            Event::SafeTxExecuted(e) => {
                self.safe_tx(
                    tx,
                    "DELETE FROM notifier_safe_txs WHERE safe_tx_hash = $1",
                    vec![e.safe_tx_hash.into()],
                )
                .await?
            }
            Event::SafeTxFailed(e) => {
                self.safe_tx(
                    tx,
                    "DELETE FROM notifier_safe_txs WHERE safe_tx_hash = $1",
                    vec![e.safe_tx_hash.into()],
                )
                .await?
            }
            Event::SafeTxReopened(r) => {
                // Waiting again: back in the list of pending transactions (its signatures
                // come with the `safe.tx.ready` that follows, when they suffice).
                let row = [r.safe_tx_hash, r.safe, r.reason];
                self.pending_safe_tx(tx, row, chain, r.nonce, now).await?;
            }
            Event::SafeTxSuperseded(e) => {
                self.safe_tx(
                    tx,
                    "DELETE FROM notifier_safe_txs WHERE safe_tx_hash = $1",
                    vec![e.safe_tx_hash.into()],
                )
                .await?
            }
            // Other events are not the notifier's business (a filter on NATS 2.9 may let
            // them through).
            _ => {}
        }
        Ok(())
    }
}
