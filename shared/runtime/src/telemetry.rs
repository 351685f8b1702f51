//! Logging setup: human-readable text or one JSON object per line.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the global subscriber. `filter` is an EnvFilter directive (`info`,
/// `steward=debug,sqlx=warn`); `RUST_LOG` overrides it when set.
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(&v)
            .map_err(|e| format!("RUST_LOG={v:?} is not a valid filter: {e}"))?,
        _ => EnvFilter::try_new(filter)
            .map_err(|e| format!("log level {filter:?} is not a valid filter: {e}"))?,
    };
    // Colour only on a terminal: a log collector would store the escape codes.
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let res = match format {
        // Spans are flattened into each line so `correlation_id` is a field of every log
        // line written while handling an event.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    res.map_err(|e| format!("cannot install the logger: {e}"))
}
