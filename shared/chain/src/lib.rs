//! Chain access for Steward: a pool of JSON-RPC endpoints (HTTP and WebSocket) per chain.
//!
//! [`EndpointPool`] sends each request to the best *healthy* endpoint and keeps the others
//! as failover. Invariants:
//!
//! - **Chain id.** An endpoint is used only after `eth_chainId` returned the pool's chain
//!   id. One that serves another chain is **refused for good** ([`EndpointState::Refused`]),
//!   logged at error level with the reason, and never contacted again.
//! - **What is retried.** Timeouts, connection errors, HTTP 429 and 5xx, JSON-RPC server
//!   errors (internal error, limit exceeded, method unsupported there, …), and answers
//!   that do not decode or are `null` where a value is required are *retryable*: the
//!   request is tried again on another endpoint not yet tried by it, at once; when none is
//!   left, on the best one again after a jittered exponential backoff
//!   ([`Backoff`]), up to [`PoolOptions::retries`] extra attempts. Reverts, invalid
//!   params/requests and local errors are *deterministic*: returned at once, never tried
//!   elsewhere, and not held against the endpoint. [`ChainError::is_retryable`] tells the
//!   two apart for callers.
//! - **Demotion.** An endpoint is demoted ([`EndpointState::Demoted`]) at once on a
//!   timeout, connection error, rate limiting (429 / `-32005`), HTTP 4xx, an invalid or
//!   `null` answer, or a head more than [`PoolOptions::max_head_lag`] blocks behind the
//!   best endpoint's (seen by probes); after [`PoolOptions::demote_after`] consecutive
//!   JSON-RPC server errors or HTTP 5xx. The others carry on.
//! - **Promotion.** A demoted endpoint rests for [`PoolOptions::cooldown`]; then, the next
//!   time the pool picks an endpoint (or on [`EndpointPool::check_health`]), it is probed
//!   in the background (chain id, head, lag) and promoted back to healthy if the probe
//!   passes, or demoted for another cool-down.
//! - **Rate limit.** Each endpoint's requests (probes included) go through its own token
//!   bucket ([`EndpointConfig::rate_limit`] per second, burst of one second's worth).
//! - **Secrets.** RPC URLs carry API keys. No log line, error or status holds a full URL:
//!   only [`redact_rpc_url`]'s form (scheme and host kept; credentials, long path segments
//!   and query values hidden); error text from the HTTP/WebSocket clients is scrubbed of the
//!   URL. Do not enable `debug` logs of `alloy_transport_http`, whose spans show the URL.

pub mod abi;
mod bucket;
mod config;
mod error;
mod pool;
mod redact;
mod rpc;

pub use config::{Backoff, EndpointConfig, EndpointKind, PoolOptions};
pub use error::{ChainError, Result};
pub use pool::{EndpointPool, EndpointState, EndpointStatus, PoolStatus};
pub use redact::redact_rpc_url;
pub use rpc::{BlockHeader, BlockRef, LogFilter, Receipt};

/// The alloy crates this one is built on, for callers of [`EndpointPool::call`].
pub use alloy;
