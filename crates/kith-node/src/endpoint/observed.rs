//! Our own addresses as our peers see them (`version`'s `observed`).
//!
//! A node behind a NAT does not know its public address; every peer it links with tells it
//! where the link comes from. Because outgoing links leave from the listening port
//! ([`super::reuse`]), that is the NAT's mapping of the listening port: the address to put in
//! tickets, and the one a mutual peer hands to whoever wants to punch through to us.
//!
//! Peers may lie, so the table is small and each peer counts once: an address is ranked by
//! how many distinct peers reported it, then by how recently. It keeps at most
//! [`MAX_ADDRS`] addresses, each with at most [`MAX_REPORTERS`] reporters; a peer that reports
//! a new address withdraws its old report, so one peer holds at most one entry's worth.
//! Plain state with the time passed in.

use kith_crypto::identity::AgentId;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Addresses kept.
pub const MAX_ADDRS: usize = 8;
/// Reporters remembered per address (more still refresh it).
pub const MAX_REPORTERS: usize = 8;
/// An address nobody reported for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone)]
struct Entry {
    addr: SocketAddr,
    reporters: Vec<AgentId>,
    last: Instant,
}

/// The observed-address table (see the module docs).
#[derive(Debug, Default)]
pub struct Observed {
    entries: Vec<Entry>,
}

impl Observed {
    /// `peer` sees us at `addr` (now). Unspecified, multicast and port-0 addresses are
    /// ignored; returns true when the address is new to the table.
    pub fn record(&mut self, peer: AgentId, addr: SocketAddr, now: Instant) -> bool {
        let addr = super::reuse::canonical(addr);
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return false;
        }
        self.expire(now);
        for e in &mut self.entries {
            if e.addr != addr {
                e.reporters.retain(|r| *r != peer);
            }
        }
        self.entries
            .retain(|e| !e.reporters.is_empty() || e.addr == addr);
        if let Some(e) = self.entries.iter_mut().find(|e| e.addr == addr) {
            if !e.reporters.contains(&peer) && e.reporters.len() < MAX_REPORTERS {
                e.reporters.push(peer);
            }
            e.last = now;
            return false;
        }
        if self.entries.len() >= MAX_ADDRS {
            // The weakest goes: fewest reporters, then oldest.
            if let Some(weakest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.reporters.len(), e.last))
                .map(|(i, _)| i)
            {
                self.entries.swap_remove(weakest);
            }
        }
        self.entries.push(Entry {
            addr,
            reporters: vec![peer],
            last: now,
        });
        true
    }

    fn expire(&mut self, now: Instant) {
        self.entries
            .retain(|e| now.saturating_duration_since(e.last) < FORGET_AFTER);
    }

    /// The addresses, best first (most reporters, then most recent).
    pub fn ranked(&self) -> Vec<SocketAddr> {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|a, b| {
            b.reporters
                .len()
                .cmp(&a.reporters.len())
                .then(b.last.cmp(&a.last))
        });
        entries.into_iter().map(|e| e.addr).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_crypto::identity::Identity;

    fn agent() -> AgentId {
        Identity::generate(&mut rand::rngs::OsRng).agent_id()
    }

    #[test]
    fn addresses_rank_by_distinct_reporters_and_a_liar_holds_one_entry() {
        let mut t = Observed::default();
        let now = Instant::now();
        let real: SocketAddr = "203.0.113.5:7420".parse().unwrap();
        let (a, b, liar) = (agent(), agent(), agent());
        t.record(a, real, now);
        t.record(b, real, now);
        for port in 1..1000u16 {
            t.record(
                liar,
                SocketAddr::new("198.51.100.1".parse().unwrap(), port),
                now,
            );
        }
        assert_eq!(t.ranked().len(), 2, "the liar's reports replace each other");
        assert_eq!(t.ranked()[0], real);
    }

    #[test]
    fn the_table_is_bounded_and_forgets() {
        let mut t = Observed::default();
        let now = Instant::now();
        for i in 0..100u16 {
            t.record(
                agent(),
                SocketAddr::new("203.0.113.1".parse().unwrap(), 1 + i),
                now,
            );
        }
        assert_eq!(t.ranked().len(), MAX_ADDRS);
        t.record(
            agent(),
            "203.0.113.2:1".parse().unwrap(),
            now + FORGET_AFTER,
        );
        assert_eq!(t.ranked().len(), 1);
        assert!(!t.record(agent(), "0.0.0.0:1".parse().unwrap(), now));
    }
}
