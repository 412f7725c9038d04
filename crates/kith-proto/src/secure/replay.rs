//! [`ReplayCache`]: the initiator ephemerals a responder has answered lately, so a replayed
//! handshake message is dropped before it is answered.
//!
//! A captured `I`, `N`+`K` or `Q` decrypts again on the responder that first read it (its
//! static key has not changed), so without a memory of ephemerals a replay costs the
//! responder a Diffie-Hellman, an `A` and a link slot, and tells an observer the responder is
//! there. The replayer still cannot finish the link (it cannot read `A` nor write a `T`
//! frame; see key confirmation in [`crate::link`]), so this cache is a cheap first filter,
//! not the defence: it is bounded in count and time, and a replay older than its window, or
//! pushed out by many fresh handshakes, is caught by key confirmation instead.
//!
//! Driver use: after each `Responder::handle_frame` or `answer_*`, once
//! [`Responder::remote_ephemeral`](super::Responder::remote_ephemeral) is `Some` for the first
//! time, call [`ReplayCache::check_and_insert`]; on `false` close the connection without
//! draining `poll_transmit` (nothing, not even the `A`, goes out) and count it. For IK and NK
//! the ephemeral is known from the first frame, before a ticket is redeemed; for N+KK it is
//! the `K` message's, known when `A` is queued.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Ephemeral keys seen within a window, at most a given number (see the module docs).
#[derive(Debug, Clone)]
pub struct ReplayCache {
    capacity: usize,
    window: Duration,
    seen: BTreeMap<[u8; 32], Instant>,
    order: VecDeque<(Instant, [u8; 32])>,
}

impl ReplayCache {
    /// Remembers up to `capacity` keys, each for `window`. When full, the oldest is
    /// forgotten first.
    pub fn new(capacity: usize, window: Duration) -> ReplayCache {
        ReplayCache {
            capacity,
            window,
            seen: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }

    /// True if `key` was not seen within the window (it is now remembered); false if it is a
    /// replay (the first sighting's time is kept, so replaying does not extend it).
    pub fn check_and_insert(&mut self, now: Instant, key: [u8; 32]) -> bool {
        self.expire(now);
        if self.seen.contains_key(&key) {
            return false;
        }
        if self.capacity == 0 {
            return true;
        }
        while self.seen.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_front() else {
                break;
            };
            self.seen.remove(&oldest);
        }
        self.seen.insert(key, now);
        self.order.push_back((now, key));
        true
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.seen.clear();
        self.order.clear();
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            let expired = at.checked_add(self.window).is_none_or(|until| until <= now);
            if !expired {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_within_the_window_and_accepted_after() {
        let t0 = Instant::now();
        let mut cache = ReplayCache::new(8, Duration::from_secs(60));
        assert!(cache.check_and_insert(t0, [1; 32]));
        assert!(!cache.check_and_insert(t0 + Duration::from_secs(59), [1; 32]));
        assert!(cache.check_and_insert(t0 + Duration::from_secs(59), [2; 32]));
        // The replay at 59 s did not extend the first sighting.
        assert!(cache.check_and_insert(t0 + Duration::from_secs(60), [1; 32]));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_count_is_bounded_oldest_first() {
        let t0 = Instant::now();
        let mut cache = ReplayCache::new(3, Duration::from_secs(3600));
        for i in 0..10u8 {
            assert!(cache.check_and_insert(t0, [i; 32]));
            assert!(cache.len() <= 3);
        }
        assert!(!cache.check_and_insert(t0, [9; 32]));
        assert!(
            cache.check_and_insert(t0, [0; 32]),
            "the oldest was forgotten"
        );
        cache.clear();
        assert!(cache.is_empty());
        let mut none = ReplayCache::new(0, Duration::from_secs(1));
        assert!(none.check_and_insert(t0, [0; 32]) && none.check_and_insert(t0, [0; 32]));
    }
}
