//! Endpoint and pool configuration.

use std::num::NonZeroU32;
use std::time::Duration;

/// How an endpoint is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// JSON-RPC over HTTP(S), one POST per request.
    Http,
    /// JSON-RPC over a WebSocket (`ws://`, `wss://`), connected on first use and reconnected
    /// after a failure.
    Ws,
}

impl EndpointKind {
    /// The kind a URL's scheme implies, if any.
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split_once("://")?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "http" | "https" => Some(Self::Http),
            "ws" | "wss" => Some(Self::Ws),
            _ => None,
        }
    }
}

/// One RPC URL of a chain.
#[derive(Clone)]
pub struct EndpointConfig {
    /// The full URL, credentials included. Never logged: see [`crate::redact_rpc_url`].
    pub url: String,
    /// Must match the URL's scheme.
    pub kind: EndpointKind,
    /// Requests per second this endpoint may receive (probes included); `None` for no limit.
    pub rate_limit: Option<NonZeroU32>,
    /// Preference among healthy endpoints: the score is proportional to it. At least 1.
    pub weight: u32,
}

impl EndpointConfig {
    /// An endpoint with its kind taken from the URL's scheme (HTTP if unknown, which
    /// [`crate::EndpointPool::new`] then refuses), no rate limit and weight 1.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        let kind = EndpointKind::from_url(&url).unwrap_or(EndpointKind::Http);
        Self {
            url,
            kind,
            rate_limit: None,
            weight: 1,
        }
    }

    /// Sets the rate limit in requests per second.
    pub fn with_rate_limit(mut self, per_second: u32) -> Self {
        self.rate_limit = NonZeroU32::new(per_second);
        self
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("url", &crate::redact_rpc_url(&self.url))
            .field("kind", &self.kind)
            .field("rate_limit", &self.rate_limit)
            .field("weight", &self.weight)
            .finish()
    }
}

/// Jittered exponential backoff between retries of one request.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// Growth factor per retry.
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// Delay before retry number `retry` (1-based): the exponential value `d`, capped at
    /// `max`, then "equal jitter": uniformly in `[d/2, d]`, so callers that failed together do
    /// not retry together.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(retry.saturating_sub(1).min(64) as i32);
        let base = self.initial.as_secs_f64() * exp;
        let capped = base.min(self.max.as_secs_f64()).max(0.0);
        Duration::from_secs_f64(capped * (0.5 + 0.5 * jitter_unit()))
    }
}

/// A number in `[0, 1)`, different on each call; good enough for jitter, not for secrets.
fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Behaviour of an [`crate::EndpointPool`].
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Deadline of one request on one endpoint (and of connecting a WebSocket).
    pub timeout: Duration,
    /// Further attempts after the first failed one, on other endpoints first.
    pub retries: u32,
    /// Delay before retrying when no endpoint untried by this request is left.
    pub backoff: Backoff,
    /// How long a demoted endpoint rests before it is probed again.
    pub cooldown: Duration,
    /// Consecutive JSON-RPC server errors (HTTP 5xx, internal errors) that demote an endpoint;
    /// other failures demote at once.
    pub demote_after: u32,
    /// An endpoint whose head is more than this many blocks behind the best endpoint's is
    /// demoted when probed.
    pub max_head_lag: u64,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Backoff::default(),
            cooldown: Duration::from_secs(30),
            demote_after: 3,
            max_head_lag: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            multiplier: 2.0,
        };
        for _ in 0..100 {
            let first = backoff.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff.delay(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff.delay(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
        let delays: std::collections::HashSet<_> = (0..20).map(|_| backoff.delay(5)).collect();
        assert!(delays.len() > 1, "delays are jittered");
    }

    #[test]
    fn kind_from_scheme() {
        assert_eq!(
            EndpointKind::from_url("HTTPS://x"),
            Some(EndpointKind::Http)
        );
        assert_eq!(EndpointKind::from_url("wss://x"), Some(EndpointKind::Ws));
        assert_eq!(EndpointKind::from_url("ipc:///tmp/x"), None);
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let config =
            EndpointConfig::new("https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161");
        assert!(!format!("{config:?}").contains("9aa3d95b"));
    }
}
