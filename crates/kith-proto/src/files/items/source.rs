//! One source of a windowed fetch, as the [`super::Scheduler`] keeps it: its window, the
//! requests it has in flight, what it lacks, and how fast it has been.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::super::hash::ContentHash;

/// Hashes a source may lack before it is dropped as useless (bounds the set).
pub(super) const MAX_LACKS: usize = 4096;
/// Abandoned requests remembered per source (a late item for one is not held against it);
/// the oldest is forgotten beyond this.
pub(super) const MAX_ABANDONED: usize = 1024;

/// A request sent to a source.
#[derive(Debug, Clone)]
pub(super) struct InFlight {
    pub(super) hash: ContentHash,
    pub(super) sent: Instant,
}

/// Why a source was dropped from a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// It sent an item that does not hash to what was asked.
    WrongItem,
    /// It sent an item nobody asked it for.
    Unsolicited,
    /// It broke the wire format (an item too large, a malformed answer).
    Malformed,
    /// It stalled too many times.
    Stalls,
    /// It lacked too many items.
    Lacks,
    /// It went away (the link went down).
    Gone,
}

/// A source's state in one fetch.
#[derive(Debug)]
pub(super) struct Source<S> {
    pub(super) key: S,
    pub(super) dropped: Option<DropReason>,
    /// Bytes this source may have in flight.
    pub(super) window: u64,
    pub(super) in_flight: Vec<InFlight>,
    /// Requests given up on (re-queued elsewhere, or cancelled): a late item is no offence.
    pub(super) abandoned: Vec<ContentHash>,
    pub(super) lacks: HashSet<ContentHash>,
    /// Not asked for anything new until it delivers, or until then.
    pub(super) probation_until: Option<Instant>,
    pub(super) stalls: u32,
    pub(super) delivered_bytes: u64,
    pub(super) delivered_items: u64,
    pub(super) wrong_items: u64,
    busy_since: Option<Instant>,
    busy_time: Duration,
    /// Moving average of the time from request to item.
    pub(super) latency: Option<Duration>,
    /// The last item (or the first request, when none has come yet).
    pub(super) last_progress: Instant,
}

impl<S: Copy> Source<S> {
    pub(super) fn new(key: S, window: u64, now: Instant) -> Source<S> {
        Source {
            key,
            dropped: None,
            window,
            in_flight: Vec::new(),
            abandoned: Vec::new(),
            lacks: HashSet::new(),
            probation_until: None,
            stalls: 0,
            delivered_bytes: 0,
            delivered_items: 0,
            wrong_items: 0,
            busy_since: None,
            busy_time: Duration::ZERO,
            latency: None,
            last_progress: now,
        }
    }

    pub(super) fn live(&self) -> bool {
        self.dropped.is_none()
    }

    /// May be asked for something new now.
    pub(super) fn usable(&self, now: Instant) -> bool {
        self.live() && self.probation_until.is_none_or(|until| now >= until)
    }

    /// Bytes reserved by its requests in flight.
    pub(super) fn in_flight_bytes(&self, item_size: u64) -> u64 {
        self.in_flight.len() as u64 * item_size
    }

    pub(super) fn has_room(&self, item_size: u64) -> bool {
        self.in_flight_bytes(item_size) + item_size <= self.window
    }

    /// Bytes per second while it had requests out, if it has delivered anything.
    pub(super) fn rate(&self, now: Instant) -> Option<f64> {
        if self.delivered_bytes == 0 {
            return None;
        }
        let busy = self.busy_time + self.busy_since.map_or(Duration::ZERO, |s| now - s);
        Some(self.delivered_bytes as f64 / busy.as_secs_f64().max(1e-6))
    }

    pub(super) fn send(&mut self, hash: ContentHash, now: Instant) {
        if self.in_flight.is_empty() {
            self.busy_since = Some(now);
            if self.delivered_items == 0 {
                self.last_progress = now;
            }
        }
        self.in_flight.push(InFlight { hash, sent: now });
    }

    /// Removes the live request for `hash`, if any.
    pub(super) fn take(&mut self, hash: &ContentHash, now: Instant) -> Option<InFlight> {
        let at = self.in_flight.iter().position(|r| r.hash == *hash)?;
        let request = self.in_flight.remove(at);
        self.idle_check(now);
        Some(request)
    }

    /// Every live request, oldest first, now abandoned.
    pub(super) fn abandon_all(&mut self, now: Instant) -> Vec<ContentHash> {
        let hashes: Vec<_> = self.in_flight.drain(..).map(|r| r.hash).collect();
        for h in &hashes {
            self.remember_abandoned(*h);
        }
        self.idle_check(now);
        hashes
    }

    pub(super) fn remember_abandoned(&mut self, hash: ContentHash) {
        if self.abandoned.len() >= MAX_ABANDONED {
            self.abandoned.remove(0);
        }
        self.abandoned.push(hash);
    }

    /// Forgets an abandoned request; true if it was one.
    pub(super) fn forget_abandoned(&mut self, hash: &ContentHash) -> bool {
        match self.abandoned.iter().position(|h| h == hash) {
            Some(at) => {
                self.abandoned.remove(at);
                true
            }
            None => false,
        }
    }

    /// An item came: the stats.
    pub(super) fn delivered(&mut self, request: &InFlight, len: u64, now: Instant) {
        self.delivered_bytes += len;
        self.delivered_items += 1;
        self.last_progress = now;
        self.probation_until = None;
        let took = now.saturating_duration_since(request.sent);
        self.latency = Some(match self.latency {
            Some(avg) => avg.mul_f64(0.8) + took.mul_f64(0.2),
            None => took,
        });
    }

    fn idle_check(&mut self, now: Instant) {
        if self.in_flight.is_empty() {
            if let Some(since) = self.busy_since.take() {
                self.busy_time += now.saturating_duration_since(since);
            }
        }
    }

    /// When its oldest live request counts as stalled, if it has any.
    pub(super) fn stall_deadline(&self, stall_timeout: Duration) -> Option<Instant> {
        let oldest = self.in_flight.first()?;
        Some(oldest.sent.max(self.last_progress) + stall_timeout)
    }
}
