//! Replayed handshakes: a responder drops a handshake whose initiator ephemeral key it has
//! seen before.
//!
//! Key confirmation (a responder link counts only after an authenticated transport frame, see
//! the link task) already stops a replay from doing harm; this cache stops the responder from
//! even answering it, so a captured handshake costs the node no database lookup, no ticket
//! check and no `A`. The ephemeral key is the first 32 bytes of the `I`, `K` and `Q` messages
//! (IK, KK and NK all begin with `e`), in the clear. Fresh keys are random, so an honest
//! initiator never collides with the cache.

use kith_proto::secure::{Frame, FrameKind};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The initiator's ephemeral public key at the start of a handshake message that carries one.
pub(super) fn initiator_ephemeral(frame: &Frame) -> Option<[u8; 32]> {
    match frame.kind {
        FrameKind::Ticket | FrameKind::Known | FrameKind::Query => {
            frame.body.get(..32).and_then(|b| b.try_into().ok())
        }
        _ => None,
    }
}

/// Ephemeral keys seen lately: at most `capacity`, each kept for `window`.
#[derive(Debug)]
pub(super) struct ReplayCache {
    seen: HashSet<[u8; 32]>,
    order: VecDeque<(Instant, [u8; 32])>,
    capacity: usize,
    window: Duration,
}

impl ReplayCache {
    pub(super) fn new(capacity: usize, window: Duration) -> ReplayCache {
        ReplayCache {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            window,
        }
    }

    /// True (and remembered) when `key` was not seen within the window.
    pub(super) fn check_and_insert(&mut self, now: Instant, key: [u8; 32]) -> bool {
        while let Some((at, old)) = self.order.front().copied() {
            let expired = now.saturating_duration_since(at) > self.window;
            if !expired && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back((now, key));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_fresh_once_within_the_window_and_the_cache_is_bounded() {
        let t0 = Instant::now();
        let mut cache = ReplayCache::new(2, Duration::from_secs(60));
        assert!(cache.check_and_insert(t0, [1; 32]));
        assert!(!cache.check_and_insert(t0, [1; 32]), "a replay");
        assert!(cache.check_and_insert(t0, [2; 32]));
        assert!(cache.check_and_insert(t0, [3; 32]), "the oldest makes room");
        assert_eq!(cache.seen.len(), 2);
        let later = t0 + Duration::from_secs(61);
        assert!(
            cache.check_and_insert(later, [2; 32]),
            "expired from the window"
        );
    }
}
