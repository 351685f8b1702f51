//! `notify:` — how the notifier reaches people: Telegram and email channels, the bot's
//! allowlist, templates, retries, rate limits and flood control.
//!
//! This module holds the shape of the section and the checks that need only the values
//! (names, ranges, URLs, which channel uses which transport). What needs the notifier's
//! machinery — compiling the templates, parsing e-mail addresses — is checked by
//! `steward_notifier::check_config` when the configuration is loaded, with the same
//! file:line:column errors.
//!
//! The bot token and the SMTP password are [`Secret`]s. Only the notifier's pod gets them,
//! so the shared file writes them `${TELEGRAM_BOT_TOKEN:-}` / `${SMTP_PASSWORD:-}`: absent
//! means that transport is off (the notifier says so when it starts), never an error here.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{is_token, join, TOKEN_PATTERN};
use crate::duration::{self, HumanDuration};
use crate::secret::Secret;
use crate::validate::Validator;

/// The notifier: channels, transports, templates and delivery policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Folder of handlebars templates (`<name>.telegram.hbs`, `<name>.subject.hbs`,
    /// `<name>.text.hbs`, `<name>.html.hbs`, and `<name>.example.json` with the variables a
    /// new template uses), relative to this file. A file here replaces the built-in
    /// template of the same name; absent: the built-in templates only.
    pub templates: Option<PathBuf>,
    /// Links in messages.
    pub links: LinksConfig,
    /// Channels that hear Steward's own alerts: events the log gave up on
    /// (`log.event.dead_lettered`) and failed playbook runs; empty: every channel.
    pub alert_channels: Vec<String>,
    /// Retries of a message that could not be delivered.
    pub retry: RetryConfig,
    /// Flood control: more than `max_messages` for one destination within `window` are
    /// held and sent as one digest at the end of the window.
    pub flood: FloodConfig,
    /// The Telegram bot; absent: no Telegram.
    pub telegram: Option<TelegramConfig>,
    /// The SMTP server; absent: no e-mail.
    pub email: Option<EmailConfig>,
    /// Named destinations that `notify.requested` events address (`channels: [ops]`).
    pub channels: Vec<ChannelConfig>,
}

/// Where links in messages point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LinksConfig {
    /// Block explorer for chains without their own `explorer` in `chains:`
    /// (`https://etherscan.io`): transactions at `<explorer>/tx/<hash>`, addresses at
    /// `<explorer>/address/<address>`.
    pub explorer: Option<String>,
    /// The page where signers sign a Safe transaction, with `{safe}`, `{safe_tx_hash}` and
    /// `{chain_id}` replaced: `https://app.safe.global/transactions/tx?safe=eth:{safe}&id=multisig_{safe}_{safe_tx_hash}`.
    pub signing: Option<String>,
}

/// Retries with exponential backoff and jitter; the schedule is stored with each message,
/// so it survives restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per message, the first included; after the last one the message becomes
    /// `notify.failed`.
    pub attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one (with jitter:
    /// between half and all of it).
    #[serde(with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    #[serde(with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 8,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(600),
        }
    }
}

/// Flood control per destination (a chat, or an e-mail channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FloodConfig {
    /// Messages one destination may get within `window` before the rest are held for a
    /// digest.
    pub max_messages: u32,
    /// The window; held messages go out as one digest when it has passed since the first
    /// of them.
    #[serde(with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub window: Duration,
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self {
            max_messages: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// The Telegram bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot's token from @BotFather, a secret: `${TELEGRAM_BOT_TOKEN:-}`. Absent or empty:
    /// Telegram is off (messages for Telegram channels fail and say why).
    #[serde(default)]
    pub bot_token: Option<Secret>,
    /// Bot API server (a local `telegram-bot-api`, or a test double).
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// How messages are formatted: `markdown_v2` or `html`. Every value a template inserts
    /// is escaped for it.
    #[serde(default)]
    pub parse_mode: ParseMode,
    /// Chats (ids; groups are negative) whose members may use the bot's commands.
    #[serde(default)]
    pub allowed_chats: Vec<i64>,
    /// Users (ids) who may use the bot's commands in any chat.
    #[serde(default)]
    pub allowed_users: Vec<i64>,
    /// Long-poll timeout of `getUpdates`.
    #[serde(default = "default_poll_timeout", with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub poll_timeout: Duration,
    /// Deadline of one Bot API request (the long poll gets `poll_timeout` on top).
    #[serde(default = "default_request_timeout", with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub request_timeout: Duration,
    /// Telegram's limits, kept by a queue: a message waits for its turn.
    #[serde(default)]
    pub rate_limits: TelegramRateLimits,
}

/// Message formatting of the Bot API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParseMode {
    /// Telegram's MarkdownV2.
    #[default]
    MarkdownV2,
    /// Telegram's HTML subset.
    Html,
}

/// Telegram's broadcast limits (about 1 message per second per chat, 20 per minute per
/// group, 30 per second overall).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramRateLimits {
    /// Least time between two messages to one chat.
    #[serde(with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub per_chat_interval: Duration,
    /// Messages per minute to one group (a chat with a negative id).
    pub per_group_per_minute: u32,
    /// Messages per second over all chats.
    pub overall_per_second: u32,
}

impl Default for TelegramRateLimits {
    fn default() -> Self {
        Self {
            per_chat_interval: Duration::from_secs(1),
            per_group_per_minute: 20,
            overall_per_second: 30,
        }
    }
}

/// The SMTP server mail goes through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Host name of the SMTP server.
    pub host: String,
    /// Port; default 587 for `starttls`, 465 for `tls`, 25 for `plain`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (upgrade a plain connection, required), `tls` (TLS from the first byte),
    /// or `plain` (no encryption: only for a local relay or a test server).
    #[serde(default)]
    pub security: SmtpSecurity,
    /// User name for SMTP authentication; absent: no authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for SMTP authentication, a secret: `${SMTP_PASSWORD:-}`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A PEM file of CA certificates to trust for the SMTP server besides the system's (a
    /// relay whose certificate a private CA signed); relative to the configuration file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Sender: `Steward <steward@example.org>` or `steward@example.org`.
    pub from: String,
    /// Deadline of one SMTP conversation.
    #[serde(default = "default_smtp_timeout", with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub timeout: Duration,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (refused if the server does not offer it).
    #[default]
    Starttls,
    /// TLS from the start (SMTPS).
    Tls,
    /// No encryption.
    Plain,
}

impl SmtpSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::Starttls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::Plain => "plain",
        }
    }

    /// The usual port for this kind of connection.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Plain => 25,
        }
    }
}

impl EmailConfig {
    /// The port in use: the configured one or the usual one for `security`.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.security.default_port())
    }
}

/// Severities, least urgent first; the same names as the events'.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SeverityLevel {
    #[default]
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl SeverityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            SeverityLevel::Info => "info",
            SeverityLevel::Low => "low",
            SeverityLevel::Medium => "medium",
            SeverityLevel::High => "high",
            SeverityLevel::Critical => "critical",
        }
    }
}

/// One named destination: Telegram chats or e-mail recipients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// The name `notify.requested` uses. Letters, digits, `_` and `-`; unique.
    #[schemars(regex(pattern = TOKEN_PATTERN))]
    pub name: String,
    /// Messages less severe than this are not sent to this channel.
    #[serde(default)]
    pub min_severity: SeverityLevel,
    /// Telegram chats.
    #[serde(default)]
    pub telegram: Option<TelegramChannel>,
    /// E-mail recipients.
    #[serde(default)]
    pub email: Option<EmailChannel>,
}

/// A channel's Telegram chats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelegramChannel {
    /// Chat ids (groups and channels are negative, e.g. `-1001234567890`).
    pub chats: Vec<i64>,
}

/// A channel's e-mail recipients: one message to all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    /// Recipients: `ops@example.org` or `Ops <ops@example.org>`.
    pub to: Vec<String>,
}

fn default_api_url() -> String {
    "https://api.telegram.org".to_owned()
}
fn default_poll_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_smtp_timeout() -> Duration {
    Duration::from_secs(30)
}

impl TelegramConfig {
    /// The token, when one is set (an empty value counts as none).
    pub fn token(&self) -> Option<&Secret> {
        self.bot_token.as_ref().filter(|t| !t.is_empty())
    }
}

impl NotifyConfig {
    /// Whether Telegram can be used: configured with a token.
    pub fn telegram_enabled(&self) -> bool {
        self.telegram.as_ref().and_then(|t| t.token()).is_some()
    }

    /// The channel called `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    pub(crate) fn validate(&self, path: &str, v: &mut Validator<'_>) {
        let r = &self.retry;
        if r.attempts == 0 {
            v.invalid(&join(path, "retry.attempts"), "must be at least 1");
        }
        if r.initial_backoff.is_zero() {
            v.invalid(
                &join(path, "retry.initial_backoff"),
                "must be longer than zero",
            );
        }
        if r.max_backoff < r.initial_backoff {
            v.conflict(
                &join(path, "retry.max_backoff"),
                "must not be shorter than retry.initial_backoff",
            );
        }
        if self.flood.max_messages == 0 {
            v.invalid(
                &join(path, "flood.max_messages"),
                "must be at least 1 message",
            );
        }
        if self.flood.window.is_zero() {
            v.invalid(&join(path, "flood.window"), "must be longer than zero");
        }
        for (field, value) in [
            ("links.explorer", &self.links.explorer),
            ("links.signing", &self.links.signing),
        ] {
            if let Some(u) = value {
                check_http_url(v, &join(path, field), u);
            }
        }
        if let Some(t) = &self.telegram {
            let p = join(path, "telegram");
            match url::Url::parse(&t.api_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
                _ => v.invalid_got(
                    &join(&p, "api_url"),
                    "must be an http(s) URL such as https://api.telegram.org",
                    &t.api_url,
                ),
            }
            if let Some(token) = t.token() {
                // The token is a secret: say what is wrong, never what it is.
                let looks_right = token.expose().split_once(':').is_some_and(|(id, rest)| {
                    !id.is_empty()
                        && id.chars().all(|c| c.is_ascii_digit())
                        && !rest.is_empty()
                        && !rest.chars().any(|c| c.is_whitespace() || c == '/')
                });
                if !looks_right {
                    v.invalid(
                        &join(&p, "bot_token"),
                        "does not look like a bot token (`<digits>:<secret>`, as @BotFather gives it)",
                    );
                }
            }
            if t.poll_timeout.is_zero() {
                v.invalid(&join(&p, "poll_timeout"), "must be longer than zero");
            }
            if t.request_timeout.is_zero() {
                v.invalid(&join(&p, "request_timeout"), "must be longer than zero");
            }
            let rl = &t.rate_limits;
            if rl.per_group_per_minute == 0 {
                v.invalid(
                    &join(&p, "rate_limits.per_group_per_minute"),
                    "must be at least 1",
                );
            }
            if rl.overall_per_second == 0 {
                v.invalid(
                    &join(&p, "rate_limits.overall_per_second"),
                    "must be at least 1",
                );
            }
        }
        if let Some(e) = &self.email {
            let p = join(path, "email");
            if e.host.trim().is_empty() || e.host.contains(['/', ' ', ':']) {
                v.invalid_got(
                    &join(&p, "host"),
                    "must be a host name such as smtp.example.org (the port goes in `port`)",
                    &e.host,
                );
            }
            if e.port == Some(0) {
                v.invalid(&join(&p, "port"), "must be a port number from 1 to 65535");
            }
            if e.password.as_ref().is_some_and(|s| !s.is_empty()) && e.username.is_none() {
                v.conflict(
                    &join(&p, "password"),
                    "a password without `username`: give both for SMTP authentication",
                );
            }
            if e.timeout.is_zero() {
                v.invalid(&join(&p, "timeout"), "must be longer than zero");
            }
            if e.ca_file.is_some() && e.security == SmtpSecurity::Plain {
                v.conflict(
                    &join(&p, "ca_file"),
                    "`security: plain` uses no TLS, so no CA: use `starttls` or `tls`, or drop `ca_file`",
                );
            }
        }
        let mut names = HashSet::new();
        for (i, c) in self.channels.iter().enumerate() {
            let p = format!("{}[{i}]", join(path, "channels"));
            if !is_token(&c.name) {
                v.invalid_got(
                    &join(&p, "name"),
                    "must be letters, digits, `_` or `-`",
                    &c.name,
                );
            } else if !names.insert(c.name.as_str()) {
                v.conflict(
                    &join(&p, "name"),
                    format!("another channel is named `{}`", c.name),
                );
            }
            match (&c.telegram, &c.email) {
                (None, None) => v.invalid(
                    &p,
                    "says nowhere to send: give `telegram: {chats: [...]}` or `email: {to: [...]}`",
                ),
                (Some(_), Some(_)) => v.conflict(
                    &p,
                    "has both `telegram` and `email`: make two channels, one per transport",
                ),
                (Some(t), None) => {
                    if t.chats.is_empty() {
                        v.invalid(&join(&p, "telegram.chats"), "needs at least one chat id");
                    }
                    if self.telegram.is_none() {
                        v.conflict(
                            &join(&p, "telegram"),
                            "a Telegram channel needs the bot: add `notify.telegram` with `bot_token`",
                        );
                    }
                }
                (None, Some(e)) => {
                    if e.to.is_empty() {
                        v.invalid(&join(&p, "email.to"), "needs at least one recipient");
                    }
                    if self.email.is_none() {
                        v.conflict(
                            &join(&p, "email"),
                            "an e-mail channel needs the SMTP server: add `notify.email` with `host` and `from`",
                        );
                    }
                }
            }
        }
        for (i, a) in self.alert_channels.iter().enumerate() {
            if !names.contains(a.as_str()) {
                v.invalid_got(
                    &format!("{}[{i}]", join(path, "alert_channels")),
                    format!(
                        "no channel has this name; the channels are: {}",
                        channel_list(&self.channels)
                    ),
                    a,
                );
            }
        }
    }

    /// One line for `steward config check`.
    pub fn summary(&self) -> String {
        let telegram = match &self.telegram {
            None => "off".to_owned(),
            Some(t) if t.token().is_none() => {
                "off (no bot_token: TELEGRAM_BOT_TOKEN is not set)".to_owned()
            }
            Some(t) => format!(
                "bot at {} (token set, redacted), {}",
                crate::secret::redact_url(&t.api_url),
                match t.parse_mode {
                    ParseMode::MarkdownV2 => "MarkdownV2",
                    ParseMode::Html => "HTML",
                }
            ),
        };
        let email = match &self.email {
            None => "off".to_owned(),
            Some(e) => format!(
                "{}:{} ({}{})",
                e.host,
                e.port(),
                e.security.as_str(),
                match (&e.username, e.password.as_ref().filter(|p| !p.is_empty())) {
                    (Some(u), Some(_)) => format!(", user {u}, password set (redacted)"),
                    (Some(u), None) => format!(", user {u}, no password"),
                    _ => String::new(),
                }
            ),
        };
        format!(
            "{} channel{} ({}); telegram {telegram}; email {email}; templates {}",
            self.channels.len(),
            if self.channels.len() == 1 { "" } else { "s" },
            if self.channels.is_empty() {
                "none".to_owned()
            } else {
                channel_list(&self.channels)
            },
            match &self.templates {
                Some(d) => format!("{} over the built-in ones", d.display()),
                None => "built-in".to_owned(),
            }
        )
    }
}

fn channel_list(channels: &[ChannelConfig]) -> String {
    if channels.is_empty() {
        return "(none)".to_owned();
    }
    channels
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_http_url(v: &mut Validator<'_>, path: &str, value: &str) {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => v.invalid_got(path, "must be an http(s) URL", value),
    }
}
