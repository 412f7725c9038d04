//! The admission guard: who may open a connection, and how many handshakes and links each
//! address may hold.
//!
//! It is plain state with the time passed in, so every rule is tested without sockets. The
//! listener asks [`AdmissionGuard::admit`] before it reads a byte, reports how each handshake
//! ended, and reports links closing. The rules, all bounded by [`NodeLimits`]:
//! - an address that failed `max_failures_per_addr` handshakes within `failure_window_secs` is
//!   refused for `block_secs` (so one mistyped ticket does not lock out everyone behind a shared
//!   address, but a guesser is stopped);
//! - each address may open `max_connects_per_addr_per_minute` connections a minute;
//! - each address may have `max_pending_handshakes_per_addr` handshakes in progress and
//!   `max_links_per_addr` links; in all there may be `max_links` links;
//! - when `max_pending_handshakes` handshakes are in progress, a new one evicts the oldest, so a
//!   slow flood from one place cannot keep everyone else out;
//! - the guard itself remembers at most `max_tracked_addrs` addresses.

use crate::limits::NodeLimits;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Identifies one pending handshake, so that an eviction can name it.
pub type HandshakeId = u64;

/// Why a connection was refused (each has its own counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// The address failed too often recently and is blocked.
    AddrBlocked,
    /// The address connects faster than the per-minute limit.
    RateLimited,
    /// The address already has its share of handshakes in progress.
    TooManyPendingFromAddr,
    /// The address already has its share of links.
    TooManyLinksFromAddr,
    /// The node has as many links as it allows.
    TooManyLinks,
}

impl Refusal {
    /// The counter name shown by `kith status --json`.
    pub fn counter(self) -> &'static str {
        match self {
            Refusal::AddrBlocked => "refused_addr_blocked",
            Refusal::RateLimited => "refused_rate_limited",
            Refusal::TooManyPendingFromAddr => "refused_pending_per_addr",
            Refusal::TooManyLinksFromAddr => "refused_links_per_addr",
            Refusal::TooManyLinks => "refused_links_total",
        }
    }
}

/// The guard's answer to a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; report the end of the handshake with this id.
    Admit {
        /// The new handshake's id.
        id: HandshakeId,
        /// A pending handshake that must be dropped to make room (the oldest one).
        evict: Option<HandshakeId>,
    },
    /// Close the socket without a word.
    Refuse(Refusal),
}

#[derive(Debug, Default)]
struct AddrState {
    connects: VecDeque<Instant>,
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    pending: usize,
    links: usize,
    last_seen: Option<Instant>,
}

impl AddrState {
    fn idle(&self) -> bool {
        self.pending == 0 && self.links == 0
    }
}

/// Admission state for one listener (see the module docs for the rules).
#[derive(Debug)]
pub struct AdmissionGuard {
    limits: NodeLimits,
    addrs: HashMap<IpAddr, AddrState>,
    /// Pending handshakes by start time, oldest first.
    pending: BTreeMap<(Instant, HandshakeId), IpAddr>,
    pending_index: HashMap<HandshakeId, (Instant, IpAddr)>,
    links: usize,
    next_id: HandshakeId,
}

const MINUTE: Duration = Duration::from_secs(60);

impl AdmissionGuard {
    /// A guard enforcing `limits`.
    pub fn new(limits: NodeLimits) -> AdmissionGuard {
        AdmissionGuard {
            limits,
            addrs: HashMap::new(),
            pending: BTreeMap::new(),
            pending_index: HashMap::new(),
            links: 0,
            next_id: 0,
        }
    }

    /// Decides on a new connection from `ip`.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admission {
        self.make_room_for(ip);
        let limits = &self.limits;
        let state = self.addrs.entry(ip).or_default();
        state.last_seen = Some(now);
        if let Some(until) = state.blocked_until {
            if now < until {
                return Admission::Refuse(Refusal::AddrBlocked);
            }
            state.blocked_until = None;
        }
        while state
            .connects
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINUTE)
        {
            state.connects.pop_front();
        }
        if state.connects.len() >= limits.max_connects_per_addr_per_minute {
            return Admission::Refuse(Refusal::RateLimited);
        }
        state.connects.push_back(now);
        if state.pending >= limits.max_pending_handshakes_per_addr {
            return Admission::Refuse(Refusal::TooManyPendingFromAddr);
        }
        if state.links >= limits.max_links_per_addr {
            return Admission::Refuse(Refusal::TooManyLinksFromAddr);
        }
        if self.links >= limits.max_links {
            return Admission::Refuse(Refusal::TooManyLinks);
        }
        state.pending += 1;
        let evict = if self.pending.len() >= limits.max_pending_handshakes {
            self.pending.keys().next().map(|&(_, id)| id)
        } else {
            None
        };
        if let Some(old) = evict {
            self.forget_pending(old);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert((now, id), ip);
        self.pending_index.insert(id, (now, ip));
        Admission::Admit { id, evict }
    }

    /// Reports how handshake `id` ended. A success turns it into a link; a failure counts
    /// against its address and may block it.
    pub fn handshake_finished(&mut self, id: HandshakeId, succeeded: bool, now: Instant) {
        let Some(ip) = self.forget_pending(id) else {
            return; // evicted earlier; its end was already accounted for
        };
        let limits = &self.limits;
        let Some(state) = self.addrs.get_mut(&ip) else {
            return;
        };
        if succeeded {
            state.links += 1;
            self.links += 1;
            return;
        }
        let window = Duration::from_secs(limits.failure_window_secs);
        while state
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            state.failures.pop_front();
        }
        state.failures.push_back(now);
        if state.failures.len() >= limits.max_failures_per_addr {
            state.blocked_until = Some(now + Duration::from_secs(limits.block_secs));
            state.failures.clear();
        }
    }

    /// Reports that a link with `ip` closed.
    pub fn link_closed(&mut self, ip: IpAddr) {
        if let Some(state) = self.addrs.get_mut(&ip) {
            if state.links > 0 {
                state.links -= 1;
                self.links = self.links.saturating_sub(1);
            }
        }
    }

    /// Links currently counted.
    pub fn links(&self) -> usize {
        self.links
    }

    /// Handshakes currently pending.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn forget_pending(&mut self, id: HandshakeId) -> Option<IpAddr> {
        let (started, ip) = self.pending_index.remove(&id)?;
        self.pending.remove(&(started, id));
        if let Some(state) = self.addrs.get_mut(&ip) {
            state.pending = state.pending.saturating_sub(1);
        }
        Some(ip)
    }

    /// Keeps the address table bounded: forgets the least recently seen idle address when a
    /// new one would exceed the limit. Addresses with handshakes or links are never forgotten
    /// (their number is bounded by the other limits).
    fn make_room_for(&mut self, ip: IpAddr) {
        if self.addrs.contains_key(&ip) || self.addrs.len() < self.limits.max_tracked_addrs {
            return;
        }
        let oldest = self
            .addrs
            .iter()
            .filter(|(_, s)| s.idle())
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(ip, _)| *ip);
        if let Some(oldest) = oldest {
            self.addrs.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn admit_id(guard: &mut AdmissionGuard, ip: IpAddr, now: Instant) -> HandshakeId {
        match guard.admit(ip, now) {
            Admission::Admit { id, .. } => id,
            other => panic!("expected admission, got {other:?}"),
        }
    }

    #[test]
    fn an_address_that_keeps_failing_is_blocked_then_forgiven() {
        let limits = NodeLimits {
            max_failures_per_addr: 3,
            block_secs: 100,
            ..NodeLimits::default()
        };
        let mut guard = AdmissionGuard::new(limits);
        let t0 = Instant::now();
        for i in 0..3 {
            let id = admit_id(&mut guard, ip(1), t0 + Duration::from_secs(i));
            guard.handshake_finished(id, false, t0 + Duration::from_secs(i));
        }
        assert_eq!(
            guard.admit(ip(1), t0 + Duration::from_secs(5)),
            Admission::Refuse(Refusal::AddrBlocked)
        );
        // Another address behind no shared fault is unaffected.
        admit_id(&mut guard, ip(2), t0 + Duration::from_secs(5));
        admit_id(&mut guard, ip(1), t0 + Duration::from_secs(103));
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_block() {
        let limits = NodeLimits {
            max_failures_per_addr: 2,
            failure_window_secs: 10,
            ..NodeLimits::default()
        };
        let mut guard = AdmissionGuard::new(limits);
        let t0 = Instant::now();
        for i in 0..5u64 {
            let now = t0 + Duration::from_secs(i * 20);
            let id = admit_id(&mut guard, ip(1), now);
            guard.handshake_finished(id, false, now);
        }
        admit_id(&mut guard, ip(1), t0 + Duration::from_secs(200));
    }

    #[test]
    fn connection_rate_is_limited_per_address_per_minute() {
        let limits = NodeLimits {
            max_connects_per_addr_per_minute: 2,
            ..NodeLimits::default()
        };
        let mut guard = AdmissionGuard::new(limits);
        let t0 = Instant::now();
        for _ in 0..2 {
            let id = admit_id(&mut guard, ip(1), t0);
            guard.handshake_finished(id, true, t0);
        }
        assert_eq!(
            guard.admit(ip(1), t0),
            Admission::Refuse(Refusal::RateLimited)
        );
        admit_id(&mut guard, ip(1), t0 + MINUTE);
    }

    #[test]
    fn when_the_pending_table_is_full_the_oldest_handshake_is_evicted() {
        let limits = NodeLimits {
            max_pending_handshakes: 2,
            ..NodeLimits::default()
        };
        let mut guard = AdmissionGuard::new(limits);
        let t0 = Instant::now();
        let first = admit_id(&mut guard, ip(1), t0);
        admit_id(&mut guard, ip(1), t0 + Duration::from_millis(1));
        match guard.admit(ip(2), t0 + Duration::from_millis(2)) {
            Admission::Admit { evict, .. } => assert_eq!(evict, Some(first)),
            other => panic!("{other:?}"),
        }
        assert_eq!(guard.pending(), 2);
        // The evicted handshake's late report changes nothing.
        guard.handshake_finished(first, true, t0 + Duration::from_millis(3));
        assert_eq!(guard.links(), 0);
    }

    #[test]
    fn per_address_and_total_link_caps_hold() {
        let limits = NodeLimits {
            max_links_per_addr: 1,
            max_links: 2,
            ..NodeLimits::default()
        };
        let mut guard = AdmissionGuard::new(limits);
        let t0 = Instant::now();
        let id = admit_id(&mut guard, ip(1), t0);
        guard.handshake_finished(id, true, t0);
        assert_eq!(
            guard.admit(ip(1), t0),
            Admission::Refuse(Refusal::TooManyLinksFromAddr)
        );
        let id = admit_id(&mut guard, ip(2), t0);
        guard.handshake_finished(id, true, t0);
        assert_eq!(
            guard.admit(ip(3), t0),
            Admission::Refuse(Refusal::TooManyLinks)
        );
        guard.link_closed(ip(2));
        admit_id(&mut guard, ip(3), t0);
    }

    #[test]
    fn pending_handshakes_per_address_are_capped() {
        let limits = NodeLimits {
            max_pending_handshakes_per_addr: 2,
            ..NodeLimits::default()
        };
        let mut guard = AdmissionGuard::new(limits);
        let t0 = Instant::now();
        admit_id(&mut guard, ip(1), t0);
        admit_id(&mut guard, ip(1), t0);
        assert_eq!(
            guard.admit(ip(1), t0),
            Admission::Refuse(Refusal::TooManyPendingFromAddr)
        );
        admit_id(&mut guard, ip(2), t0);
    }

    #[test]
    fn the_address_table_stays_bounded() {
        let limits = NodeLimits {
            max_tracked_addrs: 4,
            ..NodeLimits::default()
        };
        let mut guard = AdmissionGuard::new(limits);
        let t0 = Instant::now();
        for i in 0..50u8 {
            let now = t0 + Duration::from_secs(u64::from(i));
            let id = admit_id(&mut guard, ip(i), now);
            guard.handshake_finished(id, true, now);
            guard.link_closed(ip(i));
        }
        assert!(guard.addrs.len() <= 4);
    }
}
