//! `log:` — what is logged and how.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::join;
use crate::validate::Validator;

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Output format: `text` for people reading a terminal, `json` (one object per line)
    /// for log collectors.
    pub format: LogFormat,
    /// Which events to log: a `tracing` EnvFilter directive, either a level (`error`,
    /// `warn`, `info`, `debug`, `trace`) or a level with per-target overrides
    /// (`info,steward_log=debug`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl LogConfig {
    pub(crate) fn validate(&self, path: &str, v: &mut Validator<'_>) {
        let level = join(path, "level");
        if self.level.trim().is_empty() {
            v.invalid(&level, "must not be empty: use a level such as `info`");
        } else if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.level) {
            v.invalid(
                &level,
                format!("not a valid EnvFilter directive (such as `info` or `info,steward_log=debug`): {e}"),
            );
        }
    }
}
