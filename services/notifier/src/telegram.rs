//! The Bot API through teloxide-core: sending, long polling, answering callbacks. Every
//! error leaving this module has had the token scrubbed from it (teloxide hides tokens of
//! the usual shape in network errors; this also covers any other shape, and every path).

use std::time::Duration;

use steward_config::{ParseMode, Secret, TelegramConfig};
use teloxide_core::payloads::{GetUpdatesSetters, SendMessageSetters};
use teloxide_core::requests::Requester;
use teloxide_core::types::{
    AllowedUpdate, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Update,
};
use teloxide_core::{ApiError, Bot, RequestError};

use crate::outbox::Button;

/// Why a request failed, classified for the outbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Telegram asked us to wait (429).
    #[error("rate limited by Telegram: retry after {0:?}")]
    RetryAfter(Duration),
    /// Worth another attempt later (network, 5xx, timeouts).
    #[error("{0}")]
    Transient(String),
    /// Will never succeed as it is (chat not found, bot blocked, bad markup, bad token).
    #[error("{0}")]
    Permanent(String),
}

/// The bot's two clients: one for sending (short deadline), one for the long poll.
#[derive(Clone)]
pub struct Telegram {
    send: Bot,
    poll: Bot,
    token: Secret,
    mode: ParseMode,
    poll_timeout: Duration,
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telegram")
            .field("api_url", &self.send.api_url().as_str())
            .field("token", &steward_config::REDACTED)
            .finish_non_exhaustive()
    }
}

/// Replaces the token (and its secret half) in `text`.
pub fn scrub(text: &str, token: &str) -> String {
    if token.is_empty() {
        return text.to_owned();
    }
    let mut out = text.replace(token, steward_config::REDACTED);
    if let Some((_, secret)) = token.split_once(':') {
        if secret.len() >= 4 {
            out = out.replace(secret, steward_config::REDACTED);
        }
    }
    out
}

impl Telegram {
    /// Clients for the configured bot; `None` when no token is set.
    pub fn new(cfg: &TelegramConfig) -> anyhow::Result<Option<Self>> {
        let Some(token) = cfg.token().cloned() else {
            return Ok(None);
        };
        crate::install_crypto_provider();
        let url: url::Url = cfg
            .api_url
            .parse()
            .map_err(|e| anyhow::anyhow!("notify.telegram.api_url is not a valid URL: {e}"))?;
        let client = |timeout: Duration| {
            teloxide_core::net::default_reqwest_settings()
                .timeout(timeout)
                .build()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot build the Telegram HTTP client: {}",
                        scrub(&e.to_string(), token.expose())
                    )
                })
        };
        let send =
            Bot::with_client(token.expose(), client(cfg.request_timeout)?).set_api_url(url.clone());
        let poll = Bot::with_client(
            token.expose(),
            client(cfg.request_timeout + cfg.poll_timeout)?,
        )
        .set_api_url(url);
        Ok(Some(Self {
            send,
            poll,
            token,
            mode: cfg.parse_mode,
            poll_timeout: cfg.poll_timeout,
        }))
    }

    fn classify(&self, e: RequestError) -> SendError {
        match e {
            RequestError::RetryAfter(s) => SendError::RetryAfter(s.duration()),
            RequestError::Api(api) => {
                let text = self.scrub(&api.to_string());
                match api {
                    ApiError::InvalidToken => SendError::Permanent(format!(
                        "Telegram refused the bot token ({text}): check TELEGRAM_BOT_TOKEN"
                    )),
                    ApiError::Unknown(ref s)
                        if s.starts_with("Internal Server Error")
                            || s.starts_with("Bad Gateway")
                            || s.contains("Too Many Requests") =>
                    {
                        SendError::Transient(text)
                    }
                    _ => SendError::Permanent(text),
                }
            }
            RequestError::MigrateToChatId(c) => SendError::Permanent(format!(
                "the group became a supergroup with id {}: put that id in the channel's chats",
                c.0
            )),
            other => SendError::Transient(self.scrub(&other.to_string())),
        }
    }

    fn scrub(&self, text: &str) -> String {
        scrub(text, self.token.expose())
    }

    /// Who the bot is: `(id, username)`.
    pub async fn get_me(&self) -> Result<(u64, String), SendError> {
        let me = self.send.get_me().await.map_err(|e| self.classify(e))?;
        Ok((me.user.id.0, me.username().to_owned()))
    }

    /// Sends one message; returns Telegram's message id.
    pub async fn send(
        &self,
        chat: i64,
        text: &str,
        buttons: &[Vec<Button>],
    ) -> Result<String, SendError> {
        let mut req = self
            .send
            .send_message(ChatId(chat), text)
            .parse_mode(match self.mode {
                ParseMode::MarkdownV2 => teloxide_core::types::ParseMode::MarkdownV2,
                ParseMode::Html => teloxide_core::types::ParseMode::Html,
            })
            .link_preview_options(LinkPreviewOptions {
                is_disabled: true,
                url: None,
                prefer_small_media: false,
                prefer_large_media: false,
                show_above_text: false,
            });
        let rows: Vec<Vec<InlineKeyboardButton>> = buttons
            .iter()
            .map(|row| {
                row.iter()
                    .filter_map(|b| match (&b.url, &b.callback) {
                        (Some(u), _) => u
                            .parse()
                            .ok()
                            .map(|u| InlineKeyboardButton::url(b.text.clone(), u)),
                        (None, Some(c)) => {
                            Some(InlineKeyboardButton::callback(b.text.clone(), c.clone()))
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|r| !r.is_empty())
            .collect();
        if !rows.is_empty() {
            req = req.reply_markup(InlineKeyboardMarkup::new(rows));
        }
        let msg = req.await.map_err(|e| self.classify(e))?;
        Ok(msg.id.0.to_string())
    }

    /// Long-polls for updates from `offset` on.
    pub async fn updates(&self, offset: i64) -> Result<Vec<Update>, SendError> {
        self.poll
            .get_updates()
            .offset(i32::try_from(offset).unwrap_or(i32::MAX))
            .timeout(u32::try_from(self.poll_timeout.as_secs()).unwrap_or(u32::MAX))
            .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery])
            .await
            .map_err(|e| self.classify(e))
    }

    pub async fn answer_callback(&self, id: teloxide_core::types::CallbackQueryId) {
        if let Err(e) = self.send.answer_callback_query(id).await {
            tracing::warn!(error = %self.classify(e), "cannot answer a callback query");
        }
    }
}
