//! A token bucket per session: `rate` messages per second, bursts of up to `rate`.

use tokio::time::Instant;

/// Token bucket. 24 bytes; refilled lazily on each take, so an idle session costs no work.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Messages allowed per second (0: unlimited).
    rate: u32,
    /// Tokens left, in thousandths of a message (so refills need no floating point).
    milli_tokens: u64,
    /// When tokens were last added.
    last: Instant,
}

impl RateLimiter {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        RateLimiter {
            rate,
            milli_tokens: u64::from(rate) * 1000,
            last: now,
        }
    }

    /// Takes one token; false when the session is over its rate.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let cap = u64::from(self.rate) * 1000;
        let elapsed_ms = now.saturating_duration_since(self.last).as_millis() as u64;
        if elapsed_ms > 0 {
            // rate tokens per 1000 ms = rate milli-tokens per ms.
            self.milli_tokens = (self.milli_tokens + elapsed_ms * u64::from(self.rate)).min(cap);
            self.last = now;
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, t0);
        for _ in 0..10 {
            assert!(r.take(t0));
        }
        assert!(!r.take(t0));
        assert!(
            r.take(t0 + Duration::from_millis(100)),
            "one token per 100 ms"
        );
        assert!(!r.take(t0 + Duration::from_millis(100)));
        let mut off = RateLimiter::new(0, t0);
        assert!((0..100_000).all(|_| off.take(t0)));
    }
}
