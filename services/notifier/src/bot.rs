//! The Telegram bot: long-polls `getUpdates` and answers `/start`, `/help`, `/subscribe`,
//! `/unsubscribe`, `/status`, `/queue`, and `/approve` / `/deny` (answers to playbooks'
//! approval steps, as `playbook.approval.decided` events) in allowlisted chats (or from allowlisted users);
//! everyone else gets one polite refusal and nothing more.
//!
//! Exactly once, across crashes: the next update offset is stored after each batch; an update
//! handled again after a crash produces the same subscription event (keyed by the update id,
//! so the log drops it) and the same reply (an outbox row keyed by the update id, so it is
//! not queued twice). Replies go through the outbox, so they keep Telegram's limits too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use steward_config::{Config, SeverityLevel};
use steward_events::{
    derive_key, Envelope, NotifySubscriptionAdded, NotifySubscriptionRemoved,
    PlaybookApprovalDecided,
};
use steward_log::EventLog;
use steward_store::sqlx;
use teloxide_core::types::{MaybeInaccessibleMessage, Update, UpdateKind};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::markup::{self, BOLD_CLOSE, BOLD_OPEN};
use crate::outbox::{self, Button, Message, Outbox};
use crate::projection::now_ms;
use crate::telegram::{SendError, Telegram};
use crate::templates::{format_severity, shorten, Templates};

pub const HELP: &str = "Steward's bot. Commands:\n\
/status: services, lag, open risks, failed notifications\n\
/queue: Safe transactions waiting for signatures\n\
/subscribe <severity|topic>: hear notifications of that severity and above (info, low, medium, high, critical), or of a topic (a template or channel name)\n\
/unsubscribe [severity|topic]: stop hearing them (all of them, without an argument)\n\
/approve <run> <step>: approve a playbook's approval step (if you are one of its approvers)\n\
/deny <run> <step> [reason]: deny it\n\
/help: this text";

pub const REFUSAL: &str = "Sorry, this bot only talks to Steward's operators.";

pub struct Bot {
    pub telegram: Telegram,
    pub bot_id: u64,
    pub config: Arc<Config>,
    pub templates: Arc<Templates>,
    pub outbox: Outbox,
    pub log: Arc<dyn EventLog>,
    pub wake: Arc<Notify>,
    /// The notifier consumer's lag, kept fresh by the consumer loop.
    pub lag: Arc<AtomicU64>,
    pub source: &'static str,
}

fn bold(s: &str) -> String {
    format!("{BOLD_OPEN}{}{BOLD_CLOSE}", markup::strip_markers(s))
}

/// A command and its argument: `/subscribe@steward_bot high` → (`subscribe`, `high`).
pub fn parse_command(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let (word, arg) = match rest.split_once(char::is_whitespace) {
        Some((w, a)) => (w, a.trim()),
        None => (rest, ""),
    };
    let word = word.split('@').next().unwrap_or(word);
    Some((word.to_ascii_lowercase(), arg.to_owned()))
}

impl Bot {
    fn allowed(&self, chat: i64, user: Option<i64>) -> bool {
        let t = self.config.notify.telegram.as_ref();
        t.is_some_and(|t| {
            t.allowed_chats.contains(&chat) || user.is_some_and(|u| t.allowed_users.contains(&u))
        })
    }

    async fn offset(&self) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT update_offset FROM notifier_telegram WHERE bot = $1")
            .bind(self.bot_id.to_string())
            .fetch_optional(self.outbox.store().pool())
            .await?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map(|o| o.unwrap_or(0))
    }

    async fn save_offset(&self, offset: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO notifier_telegram (bot, update_offset, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (bot) DO UPDATE SET update_offset = excluded.update_offset, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(self.bot_id.to_string())
        .bind(offset)
        .bind(now_ms())
        .execute(self.outbox.store().pool())
        .await?;
        Ok(())
    }

    /// Polls and answers until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut offset = loop {
            match self.offset().await {
                Ok(o) => break o,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the bot's update offset; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut failures = 0u32;
        loop {
            let updates = tokio::select! {
                _ = shutdown.cancelled() => return,
                u = self.telegram.updates(offset) => u,
            };
            let updates = match updates {
                Ok(u) => {
                    failures = 0;
                    u
                }
                Err(e) => {
                    failures += 1;
                    let wait = match &e {
                        SendError::RetryAfter(d) => *d,
                        SendError::Permanent(_) => Duration::from_secs(30),
                        SendError::Transient(_) => {
                            Duration::from_millis(500 * u64::from(failures.min(20)))
                        }
                    };
                    tracing::warn!(error = %e, retry_in = ?wait, "getUpdates failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            if updates.is_empty() {
                continue;
            }
            let mut next = offset;
            for u in &updates {
                if let Err(e) = self.handle(u).await {
                    // The offset is not advanced past it: handled again on the next poll.
                    tracing::warn!(error = %e, update = u.id.0, "cannot handle an update; will retry");
                    break;
                }
                next = next.max(i64::from(u.id.0) + 1);
            }
            if next != offset {
                if let Err(e) = self.save_offset(next).await {
                    tracing::warn!(error = %e, "cannot store the bot's update offset");
                }
                offset = next;
            }
        }
    }

    async fn handle(&self, u: &Update) -> anyhow::Result<()> {
        let update_key = format!("telegram:{}:update:{}", self.bot_id, u.id.0);
        match &u.kind {
            UpdateKind::Message(msg) => {
                let Some(text) = msg.text() else {
                    return Ok(());
                };
                let Some((cmd, arg)) = parse_command(text) else {
                    return Ok(());
                };
                let chat = msg.chat.id.0;
                let user = msg.from.as_ref().map(|u| u.id.0 as i64);
                if !self.allowed(chat, user) {
                    tracing::info!(chat, user = ?user, command = %cmd, "command from a chat and user not on the allowlist: refused");
                    return self
                        .reply(
                            &update_key,
                            chat,
                            &markup::to_telegram(REFUSAL, self.templates.parse_mode()),
                            Vec::new(),
                        )
                        .await;
                }
                tracing::info!(chat, user = ?user, command = %cmd, "bot command");
                let (text, buttons) = self.command(&update_key, chat, user, &cmd, &arg).await?;
                self.reply(&update_key, chat, &text, buttons).await
            }
            UpdateKind::CallbackQuery(q) => {
                self.telegram.answer_callback(q.id.clone()).await;
                let chat = match &q.message {
                    Some(MaybeInaccessibleMessage::Regular(m)) => m.chat.id.0,
                    Some(MaybeInaccessibleMessage::Inaccessible(m)) => m.chat.id.0,
                    None => return Ok(()),
                };
                let user = Some(q.from.id.0 as i64);
                if !self.allowed(chat, user) {
                    return Ok(());
                }
                let cmd = match q.data.as_deref() {
                    Some("refresh:status") => "status",
                    Some("refresh:queue") => "queue",
                    _ => return Ok(()),
                };
                let (text, buttons) = self.command(&update_key, chat, user, cmd, "").await?;
                self.reply(&update_key, chat, &text, buttons).await
            }
            _ => Ok(()),
        }
    }

    /// Queues a reply (Telegram markup) through the outbox.
    async fn reply(
        &self,
        update_key: &str,
        chat: i64,
        text: &str,
        buttons: Vec<Vec<Button>>,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        let id = derive_key(update_key, "reply");
        let request = Envelope::new(
            self.source,
            update_key.to_owned(),
            &NotifySubscriptionRemoved {
                chat_id: chat,
                user_id: None,
                subscription: None,
            },
        );
        let mut m = Message::new(
            id,
            &request,
            "bot",
            outbox::TELEGRAM,
            &chat.to_string(),
            "info",
            "reply",
            now,
        );
        m.summary = text.lines().next().unwrap_or_default().to_owned();
        m.body = text.to_owned();
        m.buttons = buttons;
        self.outbox.insert_one(&m).await?;
        self.wake.notify_one();
        Ok(())
    }

    async fn command(
        &self,
        update_key: &str,
        chat: i64,
        user: Option<i64>,
        cmd: &str,
        arg: &str,
    ) -> anyhow::Result<(String, Vec<Vec<Button>>)> {
        let mode = self.templates.parse_mode();
        let plain = |s: &str| markup::to_telegram(s, mode);
        Ok(match cmd {
            "start" | "help" => (plain(HELP), Vec::new()),
            "subscribe" => {
                let arg = arg.trim().to_ascii_lowercase();
                let valid = !arg.is_empty()
                    && arg.len() <= 64
                    && arg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    return Ok((
                        plain("Usage: /subscribe <severity|topic>, e.g. /subscribe high or /subscribe liquidation"),
                        Vec::new(),
                    ));
                }
                self.append(
                    &NotifySubscriptionAdded {
                        chat_id: chat,
                        user_id: user,
                        subscription: arg.clone(),
                    },
                    update_key,
                )
                .await?;
                let what = match serde_json::from_value::<SeverityLevel>(serde_json::Value::String(
                    arg.clone(),
                )) {
                    Ok(SeverityLevel::Critical) => "critical notifications".to_owned(),
                    Ok(l) => format!("notifications of severity {} and above", l.as_str()),
                    Err(_) => format!("notifications about `{arg}`"),
                };
                (
                    plain(&format!("Subscribed: this chat will hear {what}.")),
                    Vec::new(),
                )
            }
            "unsubscribe" => {
                let arg = arg.trim().to_ascii_lowercase();
                self.append(
                    &NotifySubscriptionRemoved {
                        chat_id: chat,
                        user_id: user,
                        subscription: (!arg.is_empty()).then(|| arg.clone()),
                    },
                    update_key,
                )
                .await?;
                let text = if arg.is_empty() {
                    "Unsubscribed from everything.".to_owned()
                } else {
                    format!("Unsubscribed from {arg}.")
                };
                (plain(&text), Vec::new())
            }
            "approve" | "deny" => {
                let mut words = arg.split_whitespace();
                let (run, step) = (words.next(), words.next());
                let reason: Vec<&str> = words.collect();
                let valid = |w: &str| {
                    !w.is_empty()
                        && w.len() <= 64
                        && w.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                };
                let (Some(run), Some(step)) = (run, step) else {
                    return Ok((
                        plain(&format!(
                            "Usage: /{cmd} <run> <step>, as the approval request says"
                        )),
                        Vec::new(),
                    ));
                };
                if !valid(run) || !valid(step) {
                    return Ok((
                        plain(&format!(
                            "Usage: /{cmd} <run> <step>, as the approval request says"
                        )),
                        Vec::new(),
                    ));
                }
                let approved = cmd == "approve";
                self.append(
                    &PlaybookApprovalDecided {
                        run_key: run.to_owned(),
                        step: step.to_owned(),
                        approved,
                        via: "telegram".into(),
                        telegram_user_id: user,
                        chat_id: Some(chat),
                        reason: (!reason.is_empty())
                            .then(|| reason.join(" ").chars().take(500).collect()),
                    },
                    update_key,
                )
                .await?;
                (
                    plain(&format!(
                        "Recorded: you {} step {step} of run {run}. It counts if you are one of the step's approvers and the step still waits.",
                        if approved { "approved" } else { "denied" }
                    )),
                    Vec::new(),
                )
            }
            "status" => (
                markup::to_telegram(&self.status(chat).await?, mode),
                vec![vec![Button {
                    text: "🔄 Refresh".into(),
                    url: None,
                    callback: Some("refresh:status".into()),
                }]],
            ),
            "queue" => {
                let (text, mut buttons) = self.queue().await?;
                buttons.push(vec![Button {
                    text: "🔄 Refresh".into(),
                    url: None,
                    callback: Some("refresh:queue".into()),
                }]);
                (markup::to_telegram(&text, mode), buttons)
            }
            other => (
                plain(&format!("Unknown command /{other}.\n\n{HELP}")),
                Vec::new(),
            ),
        })
    }

    async fn append<P: steward_events::Payload>(
        &self,
        payload: &P,
        update_key: &str,
    ) -> anyhow::Result<()> {
        let e = Envelope::new(self.source, update_key.to_owned(), payload);
        self.log.append(std::slice::from_ref(&e)).await?;
        Ok(())
    }

    /// `/status`: services (projections) and how far behind they are, the notifier's
    /// consumer lag, open risks, notifications by state and the last failures. Marker text.
    pub async fn status(&self, chat: i64) -> anyhow::Result<String> {
        let store = self.outbox.store();
        let pool = store.pool();
        let mut out = format!("{}\n", bold("Steward status"));
        let last = self.log.last_sequence().await.unwrap_or(0);
        out.push_str(&format!("\n{}\n", bold("Services")));
        let now = chrono::Utc::now();
        for p in store.positions().await? {
            let ago = (now - p.updated_at).num_seconds().max(0) as f64;
            out.push_str(&format!(
                "• {}: at event {}, {} behind the log, last active {} ago\n",
                p.projection,
                p.sequence,
                last.saturating_sub(p.sequence),
                crate::templates::format_duration(ago)
            ));
        }
        out.push_str(&format!(
            "Event log: {} events; notifier consumer lag {}\n",
            last,
            self.lag.load(Ordering::Relaxed)
        ));
        let risks = sqlx::query(
            "SELECT kind, severity, summary FROM notifier_risks ORDER BY updated_at_ms DESC LIMIT 20",
        )
        .fetch_all(pool)
        .await?;
        out.push_str(&format!(
            "\n{}\n",
            bold(&format!("Open risks ({})", risks.len()))
        ));
        if risks.is_empty() {
            out.push_str("none\n");
        }
        for r in &risks {
            let kind: String = r.try_get(0)?;
            let sev: String = r.try_get(1)?;
            let summary: String = r.try_get(2)?;
            out.push_str(&format!(
                "{} {kind}: {}\n",
                format_severity(&sev),
                markup::strip_markers(&summary)
            ));
        }
        out.push_str(&format!("\n{}\n", bold("Notifications")));
        let counts = self.outbox.counts().await?;
        if counts.is_empty() {
            out.push_str("none yet\n");
        } else {
            let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
            out.push_str(&format!("{}\n", parts.join(", ")));
        }
        let failures = sqlx::query(
            "SELECT channel, error, attempts FROM notifier_failures ORDER BY failed_at_ms DESC LIMIT 5",
        )
        .fetch_all(pool)
        .await?;
        if !failures.is_empty() {
            out.push_str(&format!("\n{}\n", bold("Last failures")));
        }
        for f in &failures {
            let channel: String = f.try_get(0)?;
            let error: String = f.try_get(1)?;
            let attempts: i64 = f.try_get(2)?;
            out.push_str(&format!(
                "• {channel} after {attempts} attempt{}: {}\n",
                if attempts == 1 { "" } else { "s" },
                markup::strip_markers(&error)
            ));
        }
        let subs = sqlx::query(
            "SELECT subscription FROM notifier_subscriptions WHERE chat_id = $1 ORDER BY subscription",
        )
        .bind(chat)
        .fetch_all(pool)
        .await?;
        let subs: Vec<String> = subs
            .iter()
            .filter_map(|r| r.try_get::<String, _>(0).ok())
            .collect();
        out.push_str(&format!(
            "\nThis chat's subscriptions: {}\n",
            if subs.is_empty() {
                "none".to_owned()
            } else {
                subs.join(", ")
            }
        ));
        Ok(out)
    }

    /// `/queue`: Safe transactions waiting for signatures, with links. Marker text and
    /// buttons.
    pub async fn queue(&self) -> anyhow::Result<(String, Vec<Vec<Button>>)> {
        let rows = sqlx::query(
            "SELECT safe_tx_hash, safe, chain_id, nonce, reason, confirmations, threshold, ready \
             FROM notifier_safe_txs ORDER BY safe, nonce LIMIT 30",
        )
        .fetch_all(self.outbox.store().pool())
        .await?;
        let links = self.templates.links();
        let mut out = format!(
            "{}\n",
            bold(&format!("Safe transactions waiting ({})", rows.len()))
        );
        if rows.is_empty() {
            out.push_str("Nothing waits for signatures.\n");
        }
        let mut buttons = Vec::new();
        for r in &rows {
            let hash: String = r.try_get(0)?;
            let safe: String = r.try_get(1)?;
            let chain: Option<i64> = r.try_get(2)?;
            let chain = chain.and_then(|c| u64::try_from(c).ok());
            let nonce: i64 = r.try_get(3)?;
            let reason: String = r.try_get(4)?;
            let conf: i64 = r.try_get(5)?;
            let threshold: i64 = r.try_get(6)?;
            let ready: i64 = r.try_get(7)?;
            let safe_shown = match links.explorer_for(chain) {
                Some(e) => markup::link(&shorten(&safe), &format!("{e}/address/{safe}")),
                None => shorten(&safe),
            };
            let sigs = if threshold > 0 {
                format!("{conf} of {threshold} signatures")
            } else {
                "no signatures yet".to_owned()
            };
            let sign = match links.signing_url(&safe, &hash, chain) {
                Some(u) => {
                    if buttons.len() < 10 {
                        buttons.push(vec![Button {
                            text: format!("✍️ Sign #{nonce} ({})", shorten(&safe)),
                            url: Some(u.clone()),
                            callback: None,
                        }]);
                    }
                    format!(" · {}", markup::link("sign", &u))
                }
                None => String::new(),
            };
            out.push_str(&format!(
                "• Safe {safe_shown} #{nonce}: {}, {sigs}{}{sign}\n",
                markup::strip_markers(&reason),
                if ready != 0 { ", ready to execute" } else { "" },
            ));
        }
        Ok((out, buttons))
    }
}
