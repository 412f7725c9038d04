//! Wall-clock time, injectable.
//!
//! Two clocks matter to a node. *Monotonic* time (deadlines, idle timers, backoff) is tokio's
//! ([`mono_now`]): in-process tests pause and advance it with `tokio::time::pause`/`advance`,
//! so nothing waits on the real clock to expire. *Wall-clock* time (ticket expiry, timestamps
//! in the database) comes from a [`Clock`] the node is built with: [`SystemClock`] in a real
//! node, [`ManualClock`] in tests that need a ticket to expire.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Sleeps until `at` (tokio's clock), or forever when there is no deadline: the timer arm of
/// a `select!` over a sans-IO machine's `poll_timeout`.
pub(crate) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where a node reads the time of day.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The time of day now.
    fn system_now(&self) -> SystemTime;

    /// Seconds since the Unix epoch (0 before it).
    fn unix_secs(&self) -> i64 {
        unix_secs(self.system_now())
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn system_now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that runs with the system clock plus an offset that tests move forward.
#[derive(Debug, Default)]
pub struct ManualClock {
    offset_secs: AtomicI64,
}

impl ManualClock {
    /// A clock at the system time, to be advanced.
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock::default())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn system_now(&self) -> SystemTime {
        let offset = self.offset_secs.load(Ordering::Relaxed);
        let now = SystemTime::now();
        if offset >= 0 {
            now + Duration::from_secs(offset as u64)
        } else {
            now - Duration::from_secs(offset.unsigned_abs())
        }
    }
}

/// Seconds since the Unix epoch of `t` (0 before it).
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Monotonic now, from tokio's clock (which tests can pause and advance).
pub fn mono_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        let before = clock.unix_secs();
        clock.advance(Duration::from_secs(3600));
        let after = clock.unix_secs();
        assert!((3600..3605).contains(&(after - before)), "{before} {after}");
    }
}
