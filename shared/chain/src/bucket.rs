//! A small token bucket: a per-endpoint request rate limit.
//!
//! Written here rather than taken from `governor` because it runs on tokio's clock, so tests
//! (and callers) with paused time see it behave exactly; it is a few lines.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Allows `rate` requests per second with a burst of `rate` (one second's worth).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Tokens available; negative when callers have reserved future tokens and are waiting.
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate_per_second: u32) -> Self {
        let rate = f64::from(rate_per_second.max(1));
        Self {
            rate,
            state: Mutex::new(State {
                tokens: rate,
                at: Instant::now(),
            }),
        }
    }

    /// Waits until a request may be sent. Callers are served in the order they arrive: each
    /// reserves its token at once and sleeps until it would have been refilled.
    pub(crate) async fn acquire(&self) {
        let wait = {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(state.at).as_secs_f64() * self.rate;
            state.tokens = (state.tokens + refill).min(self.rate);
            state.at = now;
            state.tokens -= 1.0;
            if state.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-state.tokens / self.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let bucket = TokenBucket::new(5);
        let start = Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first second's worth is a burst"
        );
        for _ in 0..10 {
            bucket.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1990),
            "10 more at 5/s take 2 s, took {elapsed:?}"
        );
        assert!(
            elapsed <= Duration::from_millis(2010),
            "paused clock is exact, took {elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_rate() {
        let bucket = std::sync::Arc::new(TokenBucket::new(5));
        let start = Instant::now();
        let tasks: Vec<_> = (0..15)
            .map(|_| {
                let bucket = bucket.clone();
                tokio::spawn(async move { bucket.acquire().await })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        assert!(start.elapsed() >= Duration::from_millis(1990));
    }
}
