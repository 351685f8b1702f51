//! Typed configuration: YAML with file:line:column errors, ${VAR} interpolation, secrets that never print, JSON Schema.
//!
//! Steward reads one YAML file (every field optional: an empty file, or none at all via
//! [`Config::default`], gives a working single-process setup), fills `${VAR}` references
//! from the environment, types it with `#[serde(deny_unknown_fields)]` structs, checks
//! what serde cannot, and then applies the overrides the binary passes in.
//!
//! ```
//! use steward_config::{Config, EventLogBackend, MapEnv};
//!
//! let yaml = "
//! event_log:
//!   backend: nats
//!   nats:
//!     url: ${NATS_URL:-nats://127.0.0.1:4222}
//!     token: ${NATS_TOKEN}
//! ";
//! let env = MapEnv::new().with("NATS_TOKEN", "s3cr3t");
//! let config = Config::from_yaml_str(yaml, "steward.yaml", &env)?;
//! assert_eq!(config.event_log.backend, EventLogBackend::Nats);
//! assert!(!format!("{config:?}").contains("s3cr3t"));
//!
//! // Overrides from the command line, then a check of the result.
//! let config = config.with_database_url(Some("postgres://steward:pw@db/steward"));
//! config.validate()?;
//! assert!(config.summary().contains("postgres://steward:***@db/steward"));
//! # Ok::<(), steward_config::ConfigError>(())
//! ```
//!
//! # The file
//!
//! ```yaml
//! data_dir: ./data                 # the embedded backends' SQLite files
//! log: { format: text, level: info }   # text|json; level is a tracing EnvFilter directive
//! http: { listen: "127.0.0.1:9464" }   # /healthz /readyz /metrics
//! shutdown_grace: 30s              # humantime durations everywhere: 250ms, 30s, 10m, 1h 30m
//! event_log:
//!   backend: embedded              # or nats
//!   prefix: steward                # one NATS subject token
//!   nats:                          # required for backend: nats
//!     url: nats://127.0.0.1:4222   # required within `nats`
//!     stream: STEWARD
//!     replicas: 1                  # 1..=5
//!     duplicate_window: 10m
//!     max_age: null                # null: keep events forever
//!     token: ${NATS_TOKEN}         # a Secret
//!   consumers: { ack_wait: 30s, max_deliver: 5, backoff: [1s, 5s, 30s] }
//! database:
//!   url: ${DATABASE_URL}           # a Secret; absent: SQLite file under data_dir
//!   max_connections: 10
//! ```
//!
//! `deploy/steward.example.yaml` is a commented example, and
//! `shared/config/config.schema.json` (from [`json_schema`]) gives editors completion
//! and checks. An unquoted `null`, `~` or empty value means "the default".
//!
//! # Interpolation
//!
//! Every string value (not keys) may hold references, replaced after parsing and
//! before typing, so positions stay those of the file:
//!
//! | written | becomes |
//! |---|---|
//! | `${VAR}` | the value of `VAR`; an error naming file:line:column, field and variable if it is not set |
//! | `${VAR:-default}` | the value of `VAR`, or `default` if it is unset or empty |
//! | `$$` | a literal `$` (any other `$` is kept as it is) |
//!
//! An unquoted value is typed after replacement (`replicas: ${REPLICAS}` is a number);
//! one that becomes empty (`token: ${NATS_TOKEN:-}`) counts as absent. Variables are read
//! through the [`Env`] trait: [`SystemEnv`] in the binary, [`MapEnv`] in tests.
//!
//! # Errors
//!
//! Every [`ConfigError`] names where and what:
//! `steward.yaml:12:7: event_log.nats.replicas: must be between 1 and 5 (got 0)`. Its
//! [`ErrorKind`] tells YAML syntax, interpolation, unknown field (listing the expected
//! ones), wrong type, invalid value, missing field, and cross-field validation apart.
//! Overrides ([`Config::with_nats_url`], [`Config::with_database_url`], or fields set
//! directly) are checked by [`Config::validate`], whose errors name the override
//! instead of a position.
//!
//! # Secrets
//!
//! [`Secret`] (the NATS token, the database URL) prints as `[redacted]` in `Debug`,
//! `Display` and `Serialize`; [`Secret::expose`] reads it and [`Secret::redacted_url`]
//! shows a URL with its password masked (`postgres://steward:***@db:5432/steward`). No
//! error message contains a secret, nor any value interpolated from the environment: a
//! message that would echo one is replaced by one naming the variable instead.
//! [`Config::summary`] (for `steward config check`) and the `Debug` of every type here
//! are redacted the same way, NATS URLs included.
//!
//! # Other YAML files: [`Document`] and [`Located`]
//!
//! Files such as playbooks reuse the same loader: [`Document::parse`] (syntax,
//! interpolation, positions), [`Document::deserialize`] into any `serde` type (same
//! error format), and for checks after typing either [`Document::error`] (placed by
//! field path) or a [`Located<T>`] field, which keeps the value's line and column, with
//! [`Document::error_at`]. [`Validator`] collects such checks.
//!
//! # Adding a section
//!
//! 1. A module in `src/section/` with a struct deriving `Debug, Clone, PartialEq,
//!    Serialize, Deserialize, JsonSchema`, `#[serde(default, deny_unknown_fields)]`, a doc
//!    comment on every field (it becomes the schema's description), and a `Default`
//!    that works (or an `Option<Section>` field when the section has required fields, as
//!    `event_log.nats` does). Durations use `crate::duration` and `HumanDuration`;
//!    secrets use [`Secret`]; a hand-written `Debug` must redact what may hold
//!    credentials.
//! 2. A `validate(&self, path, &mut Validator)` for what serde cannot check, called from
//!    [`Config::validate_with`]; never pass a secret as a `got` value.
//! 3. A field on [`Config`], a line or two in [`Config::summary`], the example file
//!    `deploy/steward.example.yaml`, then regenerate the schema:
//!    `UPDATE_SCHEMA=1 cargo test -p steward-config --test artifacts`.
//!
//! # Why `marked-yaml`
//!
//! It parses into a tree of nodes that carry their positions, which is what
//! interpolation before typing needs (values are replaced in the tree, positions kept),
//! deserialises that tree with serde reporting the field path and position of errors,
//! and offers a `Spanned<T>` (wrapped here as [`Located`]) for positions after
//! typing. `serde_yaml` is deprecated and `serde_yml` has an advisory. Its limits:
//! no anchors or aliases, and the top level must be a mapping.

mod config;
mod document;
mod duration;
mod env;
mod error;
mod interpolate;
mod secret;
pub mod section;
mod validate;

pub use config::{json_schema, Config, ConfigCheck, DatabaseTarget, DATABASE_FILE, EVENT_LOG_FILE};
pub use document::{Document, Located, Position};
pub use env::{Env, MapEnv, SystemEnv};
pub use error::{ConfigError, ErrorKind, Location, Origin};
pub use secret::{redact_url, Secret, MASK, REDACTED};
pub use section::api::ApiConfig;
pub use section::chains::{
    is_address_syntax, rpc_url_for_display, BalanceConfig, CallConfig, ChainConfig, EmitMode,
    Finality, FinalityTag, Latest, RpcConfig, Scalar, StartBlock, WatchConfig, MULTICALL3,
};
pub use section::database::DatabaseConfig;
pub use section::event_log::{ConsumerConfig, EventLogBackend, EventLogConfig, NatsConfig};
pub use section::http::HttpConfig;
pub use section::log::{LogConfig, LogFormat};
pub use section::notify::{
    ChannelConfig, EmailChannel, EmailConfig, FloodConfig, LinksConfig, NotifyConfig, ParseMode,
    RetryConfig, SeverityLevel, SmtpSecurity, TelegramChannel, TelegramConfig, TelegramRateLimits,
};
pub use section::playbooks::{ApproverConfig, PlaybooksConfig};
pub use section::risk::{
    Encoder, OperatorSetConfig, OperatorSource, OracleConfig, PositionsConfig, ProposeConfig,
    RiskConfig, SafeExpectation,
};
pub use section::safes::{RelayerConfig, SafeConfig};
pub use validate::Validator;
