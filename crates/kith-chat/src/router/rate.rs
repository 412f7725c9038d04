//! Who pays for a message: the rates that keep a storm on one chat port from spilling over
//! the honest network.
//!
//! - A **linked node** has one bucket (`rate_per_sec`). Over it, messages are dropped and
//!   counted, never charged to its junk budget: most of what a node sends it only relays.
//! - What a node relays is charged to the node that **originated** it (`origin_rate_per_sec`
//!   per author id), and dropped when that author is over its rate, whoever passes it on.
//! - A **chat-port client** pays per address (an IPv4 address, an IPv6 /64) and per id, at
//!   `client_rate_per_sec`; over either, the message is refused and charged to the client's
//!   junk budget (it is the author). All clients together share `clients_rate_per_sec`, so
//!   that what a node forwards for its clients stays within what its neighbours accept.
//!   At most `max_clients_per_address` connections come from one address.
//!
//! Buckets are plain state in virtual time ([`TokenBucket`]); the tables are bounded by
//! `max_origins`, the oldest entry going first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use kith_crypto::NodeId;

use super::caches::TokenBucket;
use super::{CutOffReason, NeighbourId, NeighbourKind, Router};
use crate::config::ChatConfig;
use crate::message::{Body, Envelope};

/// The address a client is charged to: the IPv4 address, or the /64 of an IPv6 address (one
/// host usually holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AddressKey([u8; 16]);

impl AddressKey {
    pub(super) fn of(ip: Option<IpAddr>) -> AddressKey {
        let mut b = [0u8; 16];
        match ip {
            Some(IpAddr::V4(v4)) => b[12..].copy_from_slice(&v4.octets()),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => b[12..].copy_from_slice(&v4.octets()),
                None => b[..8].copy_from_slice(&v6.octets()[..8]),
            },
            None => {}
        }
        AddressKey(b)
    }
}

#[derive(Debug)]
struct Address {
    clients: usize,
    bucket: TokenBucket,
}

/// A bounded map of token buckets, the oldest key forgotten first.
#[derive(Debug)]
struct Buckets<K> {
    buckets: HashMap<K, TokenBucket>,
    order: VecDeque<K>,
    max: usize,
    rate: u32,
    burst: u32,
}

impl<K: std::hash::Hash + Eq + Copy> Buckets<K> {
    fn new(max: usize, rate: u32, burst: u32) -> Self {
        Buckets {
            buckets: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
            rate,
            burst,
        }
    }

    fn take(&mut self, now: Instant, key: K) -> bool {
        if let Some(b) = self.buckets.get_mut(&key) {
            return b.take(now);
        }
        while self.buckets.len() >= self.max {
            match self.order.pop_front() {
                Some(old) => {
                    self.buckets.remove(&old);
                }
                None => break,
            }
        }
        let mut bucket = TokenBucket::new(now, self.rate, self.burst);
        let ok = bucket.take(now);
        self.buckets.insert(key, bucket);
        self.order.push_back(key);
        ok
    }
}

/// Every rate the router keeps apart from the per-neighbour buckets.
#[derive(Debug)]
pub(crate) struct Rates {
    addresses: HashMap<AddressKey, Address>,
    max_addresses: usize,
    client_ids: Buckets<NodeId>,
    origins: Buckets<NodeId>,
    clients: TokenBucket,
}

impl Rates {
    pub(crate) fn new(config: &ChatConfig, now: Instant) -> Rates {
        Rates {
            addresses: HashMap::new(),
            max_addresses: config.max_origins.max(1),
            client_ids: Buckets::new(
                config.max_origins,
                config.client_rate_per_sec,
                config.client_rate_burst,
            ),
            origins: Buckets::new(
                config.max_origins,
                config.origin_rate_per_sec,
                config.origin_rate_burst,
            ),
            clients: TokenBucket::new(now, config.clients_rate_per_sec, config.clients_rate_burst),
        }
    }
}

/// Verbs whose author pays for them when they are relayed (a per-hop ACK, HELLO and ROUTING
/// concern the link itself; a receipt is verified and only ever answers our own traffic).
fn charged_to_author(body: &Body) -> bool {
    !matches!(body, Body::Hello(_) | Body::Routing(_) | Body::Ack(_))
}

impl Router {
    /// A new client connection from `ip`: cut off when its address already has
    /// `max_clients_per_address` connections.
    pub(crate) fn admit_address(&mut self, now: Instant, id: NeighbourId, ip: Option<IpAddr>) {
        let key = AddressKey::of(ip);
        let max = self.config.max_clients_per_address.max(1);
        let rates = &mut self.rates;
        if !rates.addresses.contains_key(&key) && rates.addresses.len() >= rates.max_addresses {
            // Forget an address nobody is connected from (its bucket is the least useful).
            if let Some(idle) = rates
                .addresses
                .iter()
                .find(|(_, a)| a.clients == 0)
                .map(|(k, _)| *k)
            {
                rates.addresses.remove(&idle);
            }
        }
        let (rate, burst) = (
            self.config.client_rate_per_sec,
            self.config.client_rate_burst,
        );
        let address = rates.addresses.entry(key).or_insert_with(|| Address {
            clients: 0,
            bucket: TokenBucket::new(now, rate, burst),
        });
        // Counted first: cutting it off releases its place again.
        address.clients += 1;
        if address.clients > max {
            self.counters.clients_refused += 1;
            self.cut_off(now, id, CutOffReason::Crowded);
        }
    }

    /// A client connection from `ip` went away.
    pub(crate) fn release_address(&mut self, ip: Option<IpAddr>) {
        if let Some(a) = self.rates.addresses.get_mut(&AddressKey::of(ip)) {
            a.clients = a.clients.saturating_sub(1);
        }
    }

    /// Charges a message to the connection it came on; false when it must be dropped (counted,
    /// and charged to a client's junk budget when the client is over its own rate). What a
    /// linked node relays is charged to its author later, once verified
    /// ([`Router::charge_origin`]).
    pub(crate) fn charge(&mut self, now: Instant, from: NeighbourId) -> bool {
        let Some(n) = self.neighbours.get_mut(&from) else {
            return false;
        };
        match n.info.kind {
            NeighbourKind::Node { .. } => {
                if !n.rate.take(now) {
                    self.counters.rate_limited += 1;
                    return false;
                }
                true
            }
            NeighbourKind::Client | NeighbourKind::Router => {
                let key = AddressKey::of(n.info.observed_ip);
                let id = n.node_id.as_ref().map(|i| i.guid);
                let by_address = self
                    .rates
                    .addresses
                    .get_mut(&key)
                    .is_none_or(|a| a.bucket.take(now));
                let by_id = id.is_none_or(|id| self.rates.client_ids.take(now, id));
                if !(by_address && by_id) {
                    self.counters.rate_limited += 1;
                    self.junk(now, from);
                    return false;
                }
                // All clients share what the node forwards for them; the client that finds
                // the common budget empty is not to blame.
                if !self.rates.clients.take(now) {
                    self.counters.rate_limited += 1;
                    return false;
                }
                true
            }
        }
    }
}

impl Router {
    /// Charges a verified message a linked node passed on to its author (not to the node);
    /// false, counted, when that author is over its rate. Only after verification: a forgery
    /// in an honest author's name must not spend that author's rate.
    pub(crate) fn charge_origin(
        &mut self,
        now: Instant,
        from: NeighbourId,
        env: &Envelope,
    ) -> bool {
        let Some(n) = self.neighbours.get(&from) else {
            return true;
        };
        if !matches!(n.info.kind, NeighbourKind::Node { .. }) || !charged_to_author(&env.body) {
            return true;
        }
        let Some(author) = env.body.author().map(|a| a.guid) else {
            return true;
        };
        let own = n.node_id.as_ref().is_some_and(|i| i.guid == author);
        if own || author == self.me.guid || self.rates.origins.take(now, author) {
            return true;
        }
        self.counters.rate_limited += 1;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn an_ipv6_host_is_charged_by_its_64() {
        let a = AddressKey::of(Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 1, 2, 3, 4, 5, 6,
        ))));
        let b = AddressKey::of(Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 1, 2, 9, 9, 9, 9,
        ))));
        let c = AddressKey::of(Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 1, 3, 3, 4, 5, 6,
        ))));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let v4 = AddressKey::of(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        let mapped = AddressKey::of(Some(IpAddr::V6(
            Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped(),
        )));
        assert_eq!(v4, mapped);
    }

    #[test]
    fn bucket_tables_are_bounded() {
        let now = Instant::now();
        let mut b: Buckets<u32> = Buckets::new(3, 1, 1);
        for k in 0..10 {
            assert!(b.take(now, k));
        }
        assert_eq!(b.buckets.len(), 3);
        assert!(!b.take(now, 9), "still remembered, and empty");
    }
}
