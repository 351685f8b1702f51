//! [`Config`]: the whole file, its loaders, overrides and summary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::document::Document;
use crate::duration::{self, HumanDuration};
use crate::env::Env;
use crate::error::{ConfigError, ErrorKind, Origin};
use crate::secret::Secret;
use crate::section::api::ApiConfig;
use crate::section::chains::{rpc_url_for_display, validate_chains, ChainConfig, Finality};
use crate::section::database::DatabaseConfig;
use crate::section::event_log::{EventLogBackend, EventLogConfig, NatsConfig};
use crate::section::http::HttpConfig;
use crate::section::log::LogConfig;
use crate::section::notify::NotifyConfig;
use crate::section::playbooks::PlaybooksConfig;
use crate::section::risk::{validate_operator_sets, OperatorSetConfig, RiskConfig};
use crate::section::safes::{validate_safes, SafeConfig};
use crate::validate::Validator;

/// File name of the embedded event log, under `data_dir`.
pub const EVENT_LOG_FILE: &str = "events.db";
/// File name of the embedded database, under `data_dir`, when `database.url` is absent.
pub const DATABASE_FILE: &str = "steward.db";

/// Steward's configuration: one YAML file (every field optional), `${VAR}` references
/// filled from the environment, and overrides from the command line. (This schema
/// describes the values after `${VAR}` interpolation.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(title = "Steward configuration")]
pub struct Config {
    /// Directory where the embedded backends keep their SQLite files (the event log, and
    /// the database when `database.url` is absent). Relative to the working directory.
    pub data_dir: PathBuf,
    /// Logging.
    pub log: LogConfig,
    /// The operational HTTP server (`/healthz`, `/readyz`, `/metrics`).
    pub http: HttpConfig,
    /// How long services get to finish in-flight work after a shutdown signal before
    /// they are abandoned.
    #[serde(with = "duration::required")]
    #[schemars(with = "HumanDuration")]
    pub shutdown_grace: Duration,
    /// The event log that connects the services.
    pub event_log: EventLogConfig,
    /// The services' own state.
    pub database: DatabaseConfig,
    /// EVM chains the watcher follows, and what it watches on each.
    pub chains: Vec<ChainConfig>,
    /// The notifier: Telegram and e-mail channels, templates, retries, flood control.
    pub notify: NotifyConfig,
    /// What the risk service judges: positions, oracles, Safes.
    pub risk: RiskConfig,
    /// Operator sets the risk service assesses and the rebalancer plans for.
    pub operator_sets: Vec<OperatorSetConfig>,
    /// The Safes whose transactions Steward queues, and their relayers.
    pub safes: Vec<SafeConfig>,
    /// The runner's playbooks: their folder, reloading, and who may approve.
    pub playbooks: PlaybooksConfig,
    /// The api service's HTTP server (the Safe Transaction Service compatible API).
    pub api: ApiConfig,
    /// Directory that relative paths in the file (ABI files) are resolved against: the
    /// configuration file's directory, or the working directory without a file.
    #[serde(skip)]
    #[schemars(skip)]
    pub base_dir: PathBuf,
}

/// Checks a service adds to loading (see [`Config::load_checked`]): it reports problems
/// into the validator by field path, and they come out with file:line:column.
pub type ConfigCheck<'a> = &'a dyn Fn(&Config, &mut Validator<'_>);

impl Default for Config {
    /// A working single-process setup: embedded event log and SQLite database under
    /// `./data`, HTTP on `127.0.0.1:9464`.
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            shutdown_grace: Duration::from_secs(30),
            event_log: EventLogConfig::default(),
            database: DatabaseConfig::default(),
            chains: Vec::new(),
            notify: NotifyConfig::default(),
            risk: RiskConfig::default(),
            operator_sets: Vec::new(),
            safes: Vec::new(),
            playbooks: PlaybooksConfig::default(),
            api: ApiConfig::default(),
            base_dir: PathBuf::from("."),
        }
    }
}

/// Where the services' database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// The embedded SQLite file (no `database.url`).
    SqliteFile(PathBuf),
    /// The server at this URL (a secret: it may hold a password).
    Url(Secret),
}

impl Config {
    /// Reads, interpolates, types and validates the file at `path`. Messages name the
    /// file as `path` is written.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Self, ConfigError> {
        Self::load_checked(path, env, &|_, _| {})
    }

    /// Like [`Config::load`], with the services' own checks (`check`) run on the typed
    /// result, so their problems too are reported at the field's file:line:column.
    pub fn load_checked(
        path: &Path,
        env: &dyn Env,
        check: ConfigCheck<'_>,
    ) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                ErrorKind::Io,
                Origin::File(name.clone()),
                "",
                format!("cannot read the configuration file: {e}"),
            )
        })?;
        let doc = Document::parse(&text, &name, env)?;
        let base_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self::from_document_checked(&doc, base_dir, check)
    }

    /// Like [`Config::load`], for text already read; `file_name` names it in messages.
    pub fn from_yaml_str(text: &str, file_name: &str, env: &dyn Env) -> Result<Self, ConfigError> {
        Self::from_document(&Document::parse(text, file_name, env)?)
    }

    /// Types and validates a parsed document.
    pub fn from_document(doc: &Document) -> Result<Self, ConfigError> {
        Self::from_document_checked(doc, PathBuf::from("."), &|_, _| {})
    }

    /// Types and validates a parsed document, relative paths resolved against
    /// `base_dir`, with the services' own checks.
    pub fn from_document_checked(
        doc: &Document,
        base_dir: PathBuf,
        check: ConfigCheck<'_>,
    ) -> Result<Self, ConfigError> {
        let mut config: Config = doc.deserialize()?;
        config.base_dir = base_dir;
        let mut v = Validator::for_document(doc);
        config.validate_with(&mut v);
        if v.is_ok() {
            check(&config, &mut v);
        }
        v.finish()?;
        Ok(config)
    }

    /// Checks the configuration as it is now, after overrides (the `with_*` methods, or
    /// fields set directly). Values read from a file were already checked by the
    /// loaders, with positions; problems found here are reported as coming from an
    /// override: `override: event_log.nats.url: not a valid URL: …`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut v = Validator::for_origin(Origin::Override("override".to_owned()));
        self.validate_with(&mut v);
        v.finish()
    }

    /// Runs the checks that serde cannot express (ranges, names, URLs, fields that
    /// must agree), reporting into `v`.
    pub fn validate_with(&self, v: &mut Validator<'_>) {
        if self.data_dir.as_os_str().is_empty() {
            v.invalid(
                "data_dir",
                "must not be empty: use `.` for the working directory",
            );
        }
        self.log.validate("log", v);
        if self.shutdown_grace.is_zero() {
            v.invalid("shutdown_grace", "must be longer than zero");
        }
        self.event_log.validate("event_log", v);
        self.database.validate("database", v);
        validate_chains(&self.chains, v);
        self.risk.validate("risk", v);
        validate_operator_sets(&self.operator_sets, v);
        validate_safes(&self.safes, v);
        self.playbooks.validate("playbooks", v);
        self.api.validate("api", v);
        self.notify.validate("notify", v);
    }

    /// Applies the NATS URL override (`--nats-url`, `STEWARD_NATS_URL`): when given, it
    /// replaces `event_log.nats.url` (adding the `nats` section with its defaults if
    /// the file had none) and selects the `nats` backend. Call [`Config::validate`]
    /// once all overrides are applied.
    #[must_use]
    pub fn with_nats_url(mut self, url: Option<String>) -> Self {
        if let Some(url) = url {
            match &mut self.event_log.nats {
                Some(nats) => nats.url = url,
                None => self.event_log.nats = Some(NatsConfig::new(url)),
            }
            self.event_log.backend = EventLogBackend::Nats;
        }
        self
    }

    /// Applies the database URL override (`--database-url`, `STEWARD_DATABASE_URL`):
    /// when given, it replaces `database.url`. Call [`Config::validate`] once all
    /// overrides are applied.
    #[must_use]
    pub fn with_database_url<S: Into<Secret>>(mut self, url: Option<S>) -> Self {
        if let Some(url) = url {
            self.database.url = Some(url.into());
        }
        self
    }

    /// Whether the event log is NATS JetStream (else the embedded SQLite file).
    pub fn uses_nats(&self) -> bool {
        self.event_log.backend == EventLogBackend::Nats
    }

    /// The embedded event log's file.
    pub fn event_log_file(&self) -> PathBuf {
        self.data_dir.join(EVENT_LOG_FILE)
    }

    /// Where the services' database is.
    pub fn database_target(&self) -> DatabaseTarget {
        match &self.database.url {
            Some(url) => DatabaseTarget::Url(url.clone()),
            None => DatabaseTarget::SqliteFile(self.data_dir.join(DATABASE_FILE)),
        }
    }

    /// A readable description of the effective configuration, secrets redacted, for
    /// `steward config check`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            let _ = writeln!(out, "{label:<16}{value}");
        };
        let ev = &self.event_log;
        match (ev.backend, &ev.nats) {
            (EventLogBackend::Embedded, _) => line(
                "event log:",
                format!(
                    "embedded (SQLite file {}), subject prefix `{}`",
                    self.event_log_file().display(),
                    ev.prefix
                ),
            ),
            (EventLogBackend::Nats, nats) => {
                line(
                    "event log:",
                    format!("NATS JetStream, subject prefix `{}`", ev.prefix),
                );
                if let Some(nats) = nats {
                    line("  url:", nats.redacted_url());
                    line(
                        "  stream:",
                        format!(
                            "{} ({} replica{}, duplicate window {}, {})",
                            nats.stream,
                            nats.replicas,
                            if nats.replicas == 1 { "" } else { "s" },
                            duration::format(&nats.duplicate_window),
                            match &nats.max_age {
                                Some(age) => format!("events kept {}", duration::format(age)),
                                None => "events kept forever".to_owned(),
                            }
                        ),
                    );
                    line(
                        "  token:",
                        match &nats.token {
                            Some(_) => "set (redacted)".to_owned(),
                            None => "none".to_owned(),
                        },
                    );
                }
            }
        }
        if ev.backend == EventLogBackend::Embedded {
            if let Some(nats) = &ev.nats {
                line(
                    "  (nats:",
                    format!("{} configured but unused)", nats.redacted_url()),
                );
            }
        }
        let c = &ev.consumers;
        let backoff = if c.backoff.is_empty() {
            "none".to_owned()
        } else {
            c.backoff
                .iter()
                .map(duration::format)
                .collect::<Vec<_>>()
                .join(", ")
        };
        line(
            "  consumers:",
            format!(
                "ack wait {}, max deliver {}, backoff {backoff}",
                duration::format(&c.ack_wait),
                c.max_deliver
            ),
        );
        let pool = self.database.max_connections;
        match self.database_target() {
            DatabaseTarget::SqliteFile(path) => line(
                "database:",
                format!("embedded (SQLite file {}), pool of {pool}", path.display()),
            ),
            DatabaseTarget::Url(url) => line(
                "database:",
                format!("{}, pool of {pool}", url.redacted_url()),
            ),
        }
        line("data dir:", self.data_dir.display().to_string());
        line(
            "log:",
            format!("{}, level `{}`", self.log.format.as_str(), self.log.level),
        );
        line(
            "http:",
            format!("{} (/healthz, /readyz, /metrics)", self.http.listen),
        );
        line(
            "api:",
            format!(
                "{}{} (Safe Transaction Service API at {}/api)",
                self.api.listen_addr(),
                if self.api.listen.is_none() {
                    ", the default: off if the port is taken"
                } else {
                    ""
                },
                self.api.local_url()
            ),
        );
        line("shutdown grace:", duration::format(&self.shutdown_grace));
        if self.chains.is_empty() {
            line(
                "chains:",
                "none (the watcher has nothing to watch)".to_owned(),
            );
        }
        line("notify:", self.notify.summary());
        line("playbooks:", self.playbooks.summary());
        line(
            "risk:",
            format!(
                "{} oracle asset{}, {} Safe{} held to their configuration, {} operator set{}",
                self.risk.oracles.len(),
                if self.risk.oracles.len() == 1 {
                    ""
                } else {
                    "s"
                },
                self.risk.safes.len(),
                if self.risk.safes.len() == 1 { "" } else { "s" },
                self.operator_sets.len(),
                if self.operator_sets.len() == 1 {
                    ""
                } else {
                    "s"
                },
            ),
        );
        for s in &self.safes {
            line(
                "safe:",
                format!(
                    "{} {} on {}, {}",
                    s.name,
                    s.address,
                    s.chain,
                    match &s.relayer {
                        Some(r) if r.enabled() => "relayer key set (redacted)",
                        _ => "no relayer: owners execute",
                    }
                ),
            );
        }
        for c in &self.chains {
            let finality = match c.finality {
                Finality::Confirmations(0) => "the head".to_owned(),
                Finality::Confirmations(n) => format!("{n} confirmations"),
                Finality::Tag(t) => format!("the `{}` block", t.as_str()),
            };
            line(
                "chain:",
                format!(
                    "{} (id {}), final at {finality}, {} watch{}, {} balance set{}",
                    c.name,
                    c.chain_id,
                    c.watches.len(),
                    if c.watches.len() == 1 { "" } else { "es" },
                    c.balances.len(),
                    if c.balances.len() == 1 { "" } else { "s" },
                ),
            );
            for r in &c.rpc {
                line("  rpc:", rpc_url_for_display(r.url.expose()));
            }
            for w in &c.watches {
                let what = match &w.pack {
                    Some(p) => format!("pack {p}"),
                    None => "custom".to_owned(),
                };
                line(
                    "  watch:",
                    format!(
                        "{} ({what}), {} address{}",
                        w.name,
                        ChainConfig::watch_addresses(w).len(),
                        if ChainConfig::watch_addresses(w).len() == 1 {
                            ""
                        } else {
                            "es"
                        }
                    ),
                );
            }
        }
        out
    }
}

/// The JSON Schema of the configuration file, generated from the types (field doc
/// comments become descriptions). Committed as `shared/config/config.schema.json`.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(Config).to_value()
}
