//! A rate limit in bytes per second, as plain state with time passed in: a token bucket
//! holding at most one second's worth, so a burst after a pause is short.

use std::time::{Duration, Instant};

/// A byte-rate limit (0: none).
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: u64,
    tokens: f64,
    at: Option<Instant>,
}

impl RateLimit {
    /// `bytes_per_sec` at most; 0 for no limit.
    pub fn new(bytes_per_sec: u64) -> RateLimit {
        RateLimit {
            rate: bytes_per_sec,
            tokens: 0.0,
            at: None,
        }
    }

    /// Takes `bytes` at `now`; returns when the caller may go on (`None`: at once). The
    /// bytes are taken either way: the caller waits, then sends.
    pub fn take(&mut self, bytes: u64, now: Instant) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        let rate = self.rate as f64;
        let elapsed = self
            .at
            .map_or(1.0, |at| now.saturating_duration_since(at).as_secs_f64());
        self.tokens = (self.tokens + elapsed * rate).min(rate) - bytes as f64;
        self.at = Some(now);
        (self.tokens < 0.0).then(|| now + Duration::from_secs_f64(-self.tokens / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_spreads_bytes_over_time_and_none_lets_all_through() {
        let t0 = Instant::now();
        let mut none = RateLimit::new(0);
        assert_eq!(none.take(1 << 30, t0), None);
        let mut limit = RateLimit::new(1_000_000);
        // A second's worth at first, then each megabyte costs a second.
        assert_eq!(limit.take(1_000_000, t0), None);
        let wait = limit.take(1_000_000, t0).unwrap();
        assert_eq!(wait - t0, Duration::from_secs(1));
        let wait = limit.take(500_000, wait).unwrap();
        assert_eq!(wait - t0, Duration::from_millis(1500));
    }
}
