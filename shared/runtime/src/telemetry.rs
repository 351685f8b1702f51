//! Logging setup: human-readable text or one JSON object per line.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Targets whose debug and trace output can carry secrets (alloy's HTTP transport puts the
/// full RPC URL, API key included, in a debug span). Whatever the filter says, they log at
/// info at most.
const SECRET_BEARING_TARGETS: &[&str] = &[
    "alloy_transport_http",
    "alloy_transport_ws",
    "reqwest",
    "hyper",
];

/// Whether an event or span of `target` at `level` may be logged at all.
pub fn allowed(target: &str, level: &Level) -> bool {
    *level <= Level::INFO
        || !SECRET_BEARING_TARGETS
            .iter()
            .any(|t| target == *t || target.starts_with(&format!("{t}::")))
}

/// Install the global subscriber. `filter` is an EnvFilter directive (`info`,
/// `steward=debug,sqlx=warn`); `RUST_LOG` overrides it when set.
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let env_filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(&v)
            .map_err(|e| format!("RUST_LOG={v:?} is not a valid filter: {e}"))?,
        _ => EnvFilter::try_new(filter)
            .map_err(|e| format!("log level {filter:?} is not a valid filter: {e}"))?,
    };
    let filter = env_filter.and(filter_fn(|meta| allowed(meta.target(), meta.level())));
    // Colour only on a terminal: a log collector would store the escape codes.
    let ansi = std::io::stderr().is_terminal();
    let res = match format {
        // Spans are flattened into each line so `correlation_id` is a field of every log
        // line written while handling an event.
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
    };
    res.map_err(|e| format!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_never_log_below_info() {
        assert!(!allowed("alloy_transport_http", &Level::DEBUG));
        assert!(!allowed("alloy_transport_http::reqwest", &Level::TRACE));
        assert!(!allowed("hyper::client", &Level::DEBUG));
        assert!(allowed("alloy_transport_http", &Level::WARN));
        assert!(allowed("steward_chain", &Level::DEBUG));
        assert!(
            allowed("hyperlocal_thing", &Level::DEBUG),
            "prefix match is per module path"
        );
    }
}
