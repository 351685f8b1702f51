//! `event_log:` — where events are stored and how consumers are redelivered.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{is_token, join, TOKEN_PATTERN};
use crate::duration::{self, HumanDuration};
use crate::secret::{redact_url, Secret};
use crate::validate::Validator;

/// The event log that the services share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EventLogConfig {
    /// Which backend stores the events: `embedded` (a SQLite file under `data_dir`, for
    /// a single process) or `nats` (NATS JetStream, for several processes; needs
    /// `event_log.nats.url`).
    pub backend: EventLogBackend,
    /// First token of every event subject (`<prefix>.<event type>`, e.g.
    /// `steward.chain.log.observed`). One NATS subject token: letters, digits, `_` and
    /// `-`, no dots. Give each Steward sharing a NATS server its own prefix.
    #[schemars(regex(pattern = TOKEN_PATTERN))]
    pub prefix: String,
    /// The NATS JetStream connection and stream; required when `backend` is `nats`.
    pub nats: Option<NatsConfig>,
    /// Redelivery defaults for the services' durable consumers.
    pub consumers: ConsumerConfig,
}

impl Default for EventLogConfig {
    fn default() -> Self {
        Self {
            backend: EventLogBackend::Embedded,
            prefix: "steward".to_owned(),
            nats: None,
            consumers: ConsumerConfig::default(),
        }
    }
}

/// Event log backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventLogBackend {
    /// A SQLite file under `data_dir`: no server to run, one process only.
    Embedded,
    /// NATS JetStream: several processes, replication.
    Nats,
}

impl EventLogBackend {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            EventLogBackend::Embedded => "embedded",
            EventLogBackend::Nats => "nats",
        }
    }
}

/// NATS JetStream settings.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL: `nats://host:4222` (or `tls://`, `ws://`, `wss://`); several
    /// comma-separated URLs for a cluster. Credentials in the URL are accepted but
    /// better kept out of it (use `token`): the URL is printed with its password masked.
    #[serde(serialize_with = "serialize_redacted_url")]
    pub url: String,
    /// JetStream stream holding the events (created if missing). Letters, digits, `_`
    /// and `-`.
    #[serde(default = "default_stream")]
    #[schemars(regex(pattern = TOKEN_PATTERN))]
    pub stream: String,
    /// Copies of the stream kept by the cluster, 1 to 5 (JetStream's limit); 3 for a
    /// production cluster, 1 for a single server.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: u8,
    /// How long the stream remembers an event key to drop a republished duplicate.
    /// Must not exceed `max_age`.
    #[serde(default = "default_duplicate_window", with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub duplicate_window: Duration,
    /// How long events are kept; `null` (the default) keeps them forever.
    #[serde(default, with = "duration::optional")]
    #[schemars(with = "Option<HumanDuration>")]
    pub max_age: Option<Duration>,
    /// Authentication token, if the server wants one. A secret: write `${NATS_TOKEN}`.
    #[serde(default)]
    pub token: Option<Secret>,
}

impl NatsConfig {
    /// Settings for the server at `url`, with the defaults for the rest.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: default_stream(),
            replicas: default_replicas(),
            duplicate_window: default_duplicate_window(),
            max_age: None,
            token: None,
        }
    }

    /// The server URL(s) with any password masked, for display.
    pub fn redacted_url(&self) -> String {
        self.url
            .split(',')
            .map(|u| redact_url(u.trim()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Prints the URL with its password masked.
impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.redacted_url())
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("duplicate_window", &self.duplicate_window)
            .field("max_age", &self.max_age)
            .field("token", &self.token)
            .finish()
    }
}

fn serialize_redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    let redacted = url
        .split(',')
        .map(|u| redact_url(u.trim()))
        .collect::<Vec<_>>()
        .join(",");
    s.serialize_str(&redacted)
}

fn default_stream() -> String {
    "STEWARD".to_owned()
}

fn default_replicas() -> u8 {
    1
}

fn default_duplicate_window() -> Duration {
    Duration::from_secs(10 * 60)
}

/// How a delivery that is not acknowledged is retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// How long a delivery may stay unacknowledged before it is delivered again.
    #[serde(with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub ack_wait: Duration,
    /// Attempts after which an event is dead-lettered (parked for an operator); at
    /// least 1.
    #[schemars(range(min = 1))]
    pub max_deliver: u32,
    /// Delay before each redelivery after a failure: the n-th entry after the n-th
    /// failed attempt, the last one repeating. Empty redelivers at once. Must have fewer
    /// entries than `max_deliver`.
    #[serde(with = "duration::list")]
    #[schemars(with = "Vec<HumanDuration>")]
    pub backoff: Vec<Duration>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
        }
    }
}

/// The schemes a NATS server URL may use.
const NATS_SCHEMES: [&str; 4] = ["nats", "tls", "ws", "wss"];

/// Checks a NATS server URL list; the message never includes the URL (it may hold a
/// password).
fn check_nats_url(url: &str) -> Result<(), String> {
    if url.trim().is_empty() {
        return Err("must not be empty: give the server URL, e.g. `nats://127.0.0.1:4222`".into());
    }
    let servers: Vec<&str> = url.split(',').map(str::trim).collect();
    for (i, server) in servers.iter().enumerate() {
        let which = if servers.len() > 1 {
            format!("server {} of {}: ", i + 1, servers.len())
        } else {
            String::new()
        };
        let parsed = match url::Url::parse(server) {
            Ok(parsed) => parsed,
            Err(e) => return Err(format!("{which}not a valid URL: {e}")),
        };
        if !NATS_SCHEMES.contains(&parsed.scheme()) {
            return Err(format!(
                "{which}unsupported scheme: use `nats://`, `tls://`, `ws://` or `wss://`"
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("{which}the URL has no host"));
        }
    }
    Ok(())
}

impl EventLogConfig {
    pub(crate) fn validate(&self, path: &str, v: &mut Validator<'_>) {
        if !is_token(&self.prefix) {
            v.invalid_got(
                &join(path, "prefix"),
                "must be one NATS subject token: letters, digits, `_` and `-`, no dots",
                format_args!("`{}`", self.prefix),
            );
        }
        match &self.nats {
            Some(nats) => nats.validate(&join(path, "nats"), v),
            None if self.backend == EventLogBackend::Nats => v.conflict(
                &join(path, "backend"),
                "the `nats` backend needs `event_log.nats.url` (or the NATS URL override)",
            ),
            None => {}
        }
        self.consumers.validate(&join(path, "consumers"), v);
    }
}

impl NatsConfig {
    fn validate(&self, path: &str, v: &mut Validator<'_>) {
        if let Err(message) = check_nats_url(&self.url) {
            v.invalid(&join(path, "url"), message);
        }
        if !is_token(&self.stream) {
            v.invalid_got(
                &join(path, "stream"),
                "must be a stream name: letters, digits, `_` and `-`",
                format_args!("`{}`", self.stream),
            );
        }
        if !(1..=5).contains(&self.replicas) {
            v.invalid_got(
                &join(path, "replicas"),
                "must be between 1 and 5",
                self.replicas,
            );
        }
        if self.duplicate_window.is_zero() {
            v.invalid(&join(path, "duplicate_window"), "must be longer than zero");
        }
        if let Some(max_age) = self.max_age {
            if max_age.is_zero() {
                v.invalid(
                    &join(path, "max_age"),
                    "must be longer than zero (leave it out to keep events forever)",
                );
            } else if self.duplicate_window > max_age {
                v.conflict(
                    &join(path, "duplicate_window"),
                    format!(
                        "must not exceed max_age ({} > {})",
                        duration::format(&self.duplicate_window),
                        duration::format(&max_age)
                    ),
                );
            }
        }
        if self.token.as_ref().is_some_and(Secret::is_empty) {
            v.invalid(
                &join(path, "token"),
                "must not be empty (leave it out for no token)",
            );
        }
    }
}

impl ConsumerConfig {
    fn validate(&self, path: &str, v: &mut Validator<'_>) {
        if self.ack_wait.is_zero() {
            v.invalid(&join(path, "ack_wait"), "must be longer than zero");
        }
        if self.max_deliver == 0 {
            v.invalid_got(
                &join(path, "max_deliver"),
                "must be at least 1",
                self.max_deliver,
            );
        }
        for (i, step) in self.backoff.iter().enumerate() {
            if step.is_zero() {
                v.invalid(
                    &format!("{}[{i}]", join(path, "backoff")),
                    "must be longer than zero (leave the list empty to redeliver at once)",
                );
            }
        }
        if self.max_deliver > 0 && self.backoff.len() >= self.max_deliver as usize {
            v.conflict(
                &join(path, "backoff"),
                format!(
                    "has {} entries but max_deliver is {}: at most {} redeliveries follow \
                     a failure, so give fewer entries (JetStream rejects the consumer otherwise)",
                    self.backoff.len(),
                    self.max_deliver,
                    self.max_deliver - 1
                ),
            );
        }
    }
}
