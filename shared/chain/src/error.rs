//! Errors of chain access, classified as retryable or not.

use std::time::Duration;

use alloy::primitives::Bytes;
use alloy::transports::{RpcError, TransportError, TransportErrorKind};

use crate::redact::scrub;

/// Result alias of this crate.
pub type Result<T, E = ChainError> = std::result::Result<T, E>;

/// What went wrong talking to a chain. Every `endpoint` field is a redacted URL
/// ([`crate::redact_rpc_url`]); no message carries a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The call reverted: a fact about chain state, the same on every honest endpoint.
    #[error("execution reverted on {endpoint}: {message} (the call fails on chain state; check its target, data and block)")]
    Reverted {
        /// Endpoint that answered.
        endpoint: String,
        /// The node's message.
        message: String,
        /// Revert data, if the node returned it.
        data: Option<Bytes>,
    },
    /// The endpoint refused the request as malformed (invalid params, invalid request).
    #[error("{endpoint} rejected the request as invalid (JSON-RPC {code}: {message}); fix the method or its parameters")]
    Rejected {
        /// Endpoint that answered.
        endpoint: String,
        /// JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The node refused a transaction for the sender's state or its fees (nonce too low,
    /// insufficient funds, underpriced, below the base fee): a fact about the transaction,
    /// not a fault of the endpoint, which stays in use.
    #[error("{endpoint} refused the transaction (JSON-RPC {code}: {message})")]
    TxRefused {
        /// Endpoint that answered.
        endpoint: String,
        /// JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The endpoint says we are over its rate limit (HTTP 429 or a JSON-RPC limit error).
    #[error(
        "{endpoint} rate-limited the request ({detail}); lower its rate_limit or add endpoints"
    )]
    RateLimited {
        /// Endpoint that answered.
        endpoint: String,
        /// What it said.
        detail: String,
    },
    /// The endpoint refuses a log query as too large (too many blocks or results): split
    /// the range. The endpoint is healthy; it has a limit.
    #[error("{endpoint} refused the log query as too large ({message}); split the block range")]
    RangeTooLarge {
        /// Endpoint that answered.
        endpoint: String,
        /// The node's message.
        message: String,
    },
    /// No answer within the pool's timeout.
    #[error(
        "{endpoint} did not answer within {timeout:?}; check the node or raise the pool timeout"
    )]
    Timeout {
        /// Endpoint that was asked.
        endpoint: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The endpoint could not be reached or the connection broke.
    #[error("{endpoint} unreachable: {detail}; check the URL, the node and the network")]
    Connection {
        /// Endpoint that was asked.
        endpoint: String,
        /// The client's error.
        detail: String,
    },
    /// A non-success HTTP status other than 429.
    #[error("{endpoint} answered HTTP {status}: {detail}{hint}", hint = http_hint(*status))]
    Http {
        /// Endpoint that answered.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// Start of the body.
        detail: String,
    },
    /// A JSON-RPC error that another endpoint may not return (internal error, missing state,
    /// method not supported there).
    #[error("{endpoint} returned JSON-RPC error {code}: {message}")]
    Server {
        /// Endpoint that answered.
        endpoint: String,
        /// JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The answer did not decode, was `null` where a value is required, or contradicts the
    /// other endpoints (head far behind).
    #[error("{endpoint} returned an invalid or inconsistent answer: {detail}")]
    InvalidResponse {
        /// Endpoint that answered.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },
    /// The endpoint serves another chain. Fatal for that endpoint: it is never used again.
    #[error("{endpoint} serves chain id {actual}, not the configured {expected}; it is refused for good, fix its URL")]
    WrongChain {
        /// Endpoint that answered.
        endpoint: String,
        /// The pool's chain id.
        expected: u64,
        /// What `eth_chainId` returned.
        actual: u64,
    },
    /// No endpoint can take the request now.
    #[error("no usable RPC endpoint for chain {chain_id}: {detail}")]
    NoEndpoint {
        /// The pool's chain id.
        chain_id: u64,
        /// Each endpoint's state.
        detail: String,
        /// Every endpoint is refused for good (wrong chain): waiting will not help.
        all_refused: bool,
    },
    /// Every attempt failed with a retryable error.
    #[error("chain {chain_id}: gave up after {attempts} attempts; last error: {last}")]
    Exhausted {
        /// The pool's chain id.
        chain_id: u64,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<ChainError>,
    },
    /// The pool's configuration is unusable.
    #[error("invalid chain endpoint configuration: {0}")]
    Config(String),
    /// The request could not be built or sent locally (serialisation, unsupported feature).
    #[error("request failed before reaching {endpoint}: {detail}")]
    Local {
        /// Endpoint it was meant for.
        endpoint: String,
        /// What failed.
        detail: String,
    },
}

fn http_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (check the endpoint's API key)",
        404 => " (check the endpoint's URL path)",
        500..=599 => " (server error at the provider)",
        _ => "",
    }
}

/// How a failure affects the endpoint that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Not the endpoint's fault (it answered correctly, or we failed locally).
    None,
    /// Counts towards `demote_after`.
    Strike,
    /// Demotes at once.
    Demote,
    /// Refuses the endpoint for good.
    Refuse,
}

impl ChainError {
    /// Whether the same request may succeed if tried again (on another endpoint, or later).
    /// `false` for reverts, invalid requests, configuration errors, and when every endpoint is
    /// refused.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Reverted { .. }
            | Self::Rejected { .. }
            | Self::TxRefused { .. }
            | Self::RangeTooLarge { .. }
            | Self::Config(_)
            | Self::Local { .. } => false,
            Self::NoEndpoint { all_refused, .. } => !all_refused,
            Self::Exhausted { last, .. } => last.is_retryable(),
            Self::RateLimited { .. }
            | Self::Timeout { .. }
            | Self::Connection { .. }
            | Self::Http { .. }
            | Self::Server { .. }
            | Self::InvalidResponse { .. }
            | Self::WrongChain { .. } => true,
        }
    }

    pub(crate) fn fault(&self) -> Fault {
        match self {
            Self::Reverted { .. }
            | Self::Rejected { .. }
            | Self::TxRefused { .. }
            | Self::RangeTooLarge { .. }
            | Self::Local { .. }
            | Self::Config(_)
            | Self::NoEndpoint { .. }
            | Self::Exhausted { .. } => Fault::None,
            Self::Server { .. } => Fault::Strike,
            Self::Http { status, .. } if *status >= 500 => Fault::Strike,
            Self::RateLimited { .. }
            | Self::Timeout { .. }
            | Self::Connection { .. }
            | Self::Http { .. }
            | Self::InvalidResponse { .. } => Fault::Demote,
            Self::WrongChain { .. } => Fault::Refuse,
        }
    }

    /// Classifies an alloy error from the endpoint `raw_url` (redacted as `endpoint`).
    pub(crate) fn from_transport(err: TransportError, raw_url: &str, endpoint: &str) -> Self {
        let clean = |text: String| truncate(&scrub(&text, raw_url, endpoint), 300);
        let endpoint = endpoint.to_owned();
        match err {
            RpcError::ErrorResp(payload) => {
                let code = payload.code;
                let message = clean(payload.message.to_string());
                let lower = message.to_ascii_lowercase();
                if is_range_limit(&lower) {
                    Self::RangeTooLarge { endpoint, message }
                } else if code == 3 || lower.contains("revert") {
                    let data = payload.as_revert_data();
                    Self::Reverted {
                        endpoint,
                        message,
                        data,
                    }
                } else if matches!(code, -32700 | -32600 | -32602) {
                    Self::Rejected {
                        endpoint,
                        code,
                        message,
                    }
                } else if is_tx_refusal(&lower) {
                    Self::TxRefused {
                        endpoint,
                        code,
                        message,
                    }
                } else if code == -32005
                    || code == 429
                    || lower.contains("rate limit")
                    || lower.contains("too many requests")
                {
                    Self::RateLimited {
                        endpoint,
                        detail: format!("JSON-RPC {code}: {message}"),
                    }
                } else {
                    Self::Server {
                        endpoint,
                        code,
                        message,
                    }
                }
            }
            RpcError::NullResp => Self::InvalidResponse {
                endpoint,
                detail: "null result where a value is required".to_owned(),
            },
            RpcError::DeserError { err, text } => Self::InvalidResponse {
                endpoint,
                detail: clean(format!("{err}; body: {text}")),
            },
            RpcError::SerError(err) => Self::Local {
                endpoint,
                detail: clean(err.to_string()),
            },
            RpcError::LocalUsageError(err) => Self::Local {
                endpoint,
                detail: clean(chain_of(err.as_ref())),
            },
            RpcError::UnsupportedFeature(feature) => Self::Local {
                endpoint,
                detail: format!("unsupported feature: {feature}"),
            },
            RpcError::Transport(kind) => match kind {
                TransportErrorKind::HttpError(http)
                | TransportErrorKind::HttpErrorWithRetryAfter { error: http, .. }
                    if http.status == 429 =>
                {
                    Self::RateLimited {
                        endpoint,
                        detail: "HTTP 429".to_owned(),
                    }
                }
                TransportErrorKind::HttpError(http)
                | TransportErrorKind::HttpErrorWithRetryAfter { error: http, .. } => Self::Http {
                    endpoint,
                    status: http.status,
                    detail: clean(http.body),
                },
                TransportErrorKind::MissingBatchResponse(id) => Self::InvalidResponse {
                    endpoint,
                    detail: format!("missing response for request {id}"),
                },
                TransportErrorKind::NonRetryable(err) => Self::Local {
                    endpoint,
                    detail: clean(chain_of(err.as_ref())),
                },
                TransportErrorKind::Custom(err) => Self::Connection {
                    endpoint,
                    detail: clean(chain_of(err.as_ref())),
                },
                other => Self::Connection {
                    endpoint,
                    detail: clean(other.to_string()),
                },
            },
        }
    }
}

/// Whether a JSON-RPC error message is a provider's limit on `eth_getLogs` (block range or
/// result count), as worded by geth, Erigon, Infura, Alchemy, QuickNode, Ankr and others.
/// A transaction pool's refusals (geth, reth, erigon, nethermind, anvil wordings): the
/// sender's nonce or balance, or the fees offered.
pub(crate) fn is_tx_refusal(lower: &str) -> bool {
    const PATTERNS: &[&str] = &[
        "nonce too low",
        "nonce is too low",
        "nonce too high",
        "insufficient funds",
        "underpriced",
        "already known",
        "known transaction",
        "less than block base fee",
        "max fee per gas less than",
        "fee cap less than",
        "intrinsic gas too low",
        "exceeds block gas limit",
        "exceeds the configured cap",
    ];
    PATTERNS.iter().any(|p| lower.contains(p))
}

pub(crate) fn is_range_limit(lower: &str) -> bool {
    const PATTERNS: &[&str] = &[
        "query returned more than",
        "block range",
        "range is too large",
        "range too large",
        "range is too wide",
        "exceed maximum block range",
        "exceeds the range",
        "log response size exceeded",
        "response size exceeded",
        "too many logs",
        "logs matched by query exceeds",
        "limited to a 10,000 range",
        "range limit exceeded",
    ];
    PATTERNS.iter().any(|p| lower.contains(p))
}

/// An error and its sources, `: `-separated (reqwest puts the useful part, e.g. "Connection
/// refused", in a source).
fn chain_of(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = inner.source();
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::rpc::json_rpc::ErrorPayload;

    const RAW: &str = "https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161";
    const RED: &str = "https://mainnet.infura.io/v3/***";

    fn resp(code: i64, message: &'static str) -> TransportError {
        RpcError::ErrorResp(ErrorPayload {
            code,
            message: message.into(),
            data: None,
        })
    }

    #[test]
    fn reverts_and_invalid_params_are_not_retried() {
        let e = ChainError::from_transport(resp(3, "execution reverted: nope"), RAW, RED);
        assert!(matches!(e, ChainError::Reverted { .. }) && !e.is_retryable());
        assert_eq!(e.fault(), Fault::None);
        let e = ChainError::from_transport(resp(-32000, "execution reverted"), RAW, RED);
        assert!(matches!(e, ChainError::Reverted { .. }));
        let e = ChainError::from_transport(resp(-32602, "invalid params"), RAW, RED);
        assert!(matches!(e, ChainError::Rejected { .. }) && !e.is_retryable());
    }

    #[test]
    fn transaction_refusals_are_the_transactions_not_the_endpoints() {
        for (code, msg) in [
            (-32000, "nonce too low: next nonce 5, tx nonce 4"),
            (-32003, "Insufficient funds for gas * price + value"),
            (-32000, "replacement transaction underpriced"),
            (-32000, "max fee per gas less than block base fee"),
            (
                -32010,
                "Transaction nonce is too low. Try incrementing the nonce.",
            ),
        ] {
            let e = ChainError::from_transport(resp(code, msg), RAW, RED);
            assert!(matches!(e, ChainError::TxRefused { .. }), "{msg}: {e:?}");
            assert!(!e.is_retryable(), "{msg}");
            assert_eq!(e.fault(), Fault::None, "{msg}");
            assert!(e.to_string().contains(msg), "{e}");
        }
        // Other server errors still count against the endpoint.
        let e = ChainError::from_transport(resp(-32000, "header not found"), RAW, RED);
        assert_eq!(e.fault(), Fault::Strike);
    }

    #[test]
    fn server_and_transport_errors_are_retried() {
        let e = ChainError::from_transport(resp(-32603, "internal error"), RAW, RED);
        assert!(e.is_retryable() && e.fault() == Fault::Strike);
        let e = ChainError::from_transport(resp(-32005, "limit exceeded"), RAW, RED);
        assert!(matches!(e, ChainError::RateLimited { .. }) && e.fault() == Fault::Demote);
        let e = ChainError::from_transport(
            TransportErrorKind::http_error(429, "slow down".into()),
            RAW,
            RED,
        );
        assert!(matches!(e, ChainError::RateLimited { .. }));
        let e = ChainError::from_transport(
            TransportErrorKind::http_error(503, String::new()),
            RAW,
            RED,
        );
        assert!(e.is_retryable() && e.fault() == Fault::Strike);
        let e = ChainError::from_transport(RpcError::NullResp, RAW, RED);
        assert!(e.is_retryable() && e.fault() == Fault::Demote);
    }

    #[test]
    fn provider_log_limits_mean_split_the_range() {
        for (code, message) in [
            (-32005, "query returned more than 10000 results"),
            (-32602, "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range"),
            (-32000, "block range is too wide"),
            (-32600, "eth_getLogs is limited to a 10,000 range"),
        ] {
            let e = ChainError::from_transport(resp(code, message), RAW, RED);
            assert!(matches!(e, ChainError::RangeTooLarge { .. }), "{message}: {e:?}");
            assert!(!e.is_retryable() && e.fault() == Fault::None);
        }
    }

    #[test]
    fn messages_never_carry_the_key() {
        let err = TransportErrorKind::custom_str(&format!("error sending request for url ({RAW})"));
        let e = ChainError::from_transport(err, RAW, RED);
        let text = e.to_string();
        assert!(!text.contains("9aa3d95b"), "{text}");
        assert!(text.contains(RED), "{text}");
    }
}
