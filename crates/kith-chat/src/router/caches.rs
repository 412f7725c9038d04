//! The router's bounded helpers: the duplicate cache, the certificate cache and the token
//! bucket. Each is plain state with time passed in.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use kith_crypto::{AgentId, NodeId};

/// Which message a node acted on: a flooded one by `(msg_id, author, FLOODED)` (so a forged
/// copy under another author's name cannot make the genuine one a duplicate), a routed copy
/// delivered here by `(msg_id, its author, ROUTED)`, a channel message shown to the user by
/// `(msg_id, author, SHOWN)` (it may come both flooded and routed).
pub(crate) type SeenKey = (String, NodeId, u8);

/// [`SeenKey`] kind: a flooded message acted on.
pub(crate) const FLOODED: u8 = 0;
/// [`SeenKey`] kind: a routed copy for this node.
pub(crate) const ROUTED: u8 = 1;
/// [`SeenKey`] kind: a channel message shown to the user.
pub(crate) const SHOWN: u8 = 2;

/// A bounded, time-limited set of message ids this node has acted on.
#[derive(Debug)]
pub(crate) struct SeenCache {
    entries: HashMap<SeenKey, Instant>,
    order: VecDeque<(Instant, SeenKey)>,
    max: usize,
    ttl: Duration,
}

impl SeenCache {
    pub(crate) fn new(max: usize, ttl: Duration) -> SeenCache {
        SeenCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
            ttl,
        }
    }

    /// Records `key`; false when it was already there (a duplicate).
    pub(crate) fn insert(&mut self, now: Instant, key: SeenKey) -> bool {
        self.expire(now);
        if self.entries.contains_key(&key) {
            return false;
        }
        while self.entries.len() >= self.max {
            match self.order.pop_front() {
                Some((_, old)) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        self.entries.insert(key.clone(), now);
        self.order.push_back((now, key));
        true
    }

    /// Whether `key` was acted on (and not yet forgotten).
    pub(crate) fn contains(&self, now: Instant, key: &SeenKey) -> bool {
        self.entries
            .get(key)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.ttl)
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.ttl {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.entries.remove(&key);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Node id to Ed25519 key bindings, bounded; the oldest binding is forgotten first. Only a
/// key that derives the id binds ([`NodeId::is_derived_from`]): a certificate for anything
/// else proves nothing, whoever sends it, solicited or not.
#[derive(Debug)]
pub(crate) struct CertCache {
    keys: HashMap<NodeId, AgentId>,
    order: VecDeque<NodeId>,
    max: usize,
}

/// What [`CertCache::bind`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindOutcome {
    /// New or confirmed binding.
    Bound,
    /// The key does not derive the id.
    Refused,
}

impl CertCache {
    pub(crate) fn new(max: usize) -> CertCache {
        CertCache {
            keys: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
        }
    }

    pub(crate) fn get(&self, id: &NodeId) -> Option<&AgentId> {
        self.keys.get(id)
    }

    /// Binds `id` to `key` if the key derives the id.
    pub(crate) fn bind(&mut self, id: NodeId, key: AgentId) -> BindOutcome {
        if !id.is_derived_from(key.as_bytes()) {
            return BindOutcome::Refused;
        }
        if self.keys.contains_key(&id) {
            return BindOutcome::Bound;
        }
        while self.keys.len() >= self.max {
            match self.order.pop_front() {
                Some(old) => {
                    self.keys.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(id);
        self.keys.insert(id, key);
        BindOutcome::Bound
    }
}

/// A token bucket in virtual time: `rate` tokens a second, at most `burst` saved.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    /// Thousandths of a token, so that a slow refill is not lost to rounding.
    milli: u64,
    rate: u64,
    burst: u64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(now: Instant, rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            milli: u64::from(burst) * 1000,
            rate: u64::from(rate),
            burst: u64::from(burst),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        let refill = (elapsed.as_millis() as u64).saturating_mul(self.rate);
        self.milli = (self.milli.saturating_add(refill)).min(self.burst * 1000);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_crypto::Identity;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn seen_cache_is_bounded_and_forgets_after_its_ttl() {
        let t0 = Instant::now();
        let n = NodeId::from_bytes([1; 16]);
        let key = |s: &str| (s.to_string(), n, FLOODED);
        let mut seen = SeenCache::new(2, Duration::from_secs(10));
        assert!(seen.insert(t0, key("a")));
        assert!(!seen.insert(t0, key("a")));
        assert!(seen.insert(t0, key("b")));
        assert!(seen.insert(t0, key("c")));
        assert_eq!(seen.len(), 2);
        assert!(!seen.contains(t0, &key("a")), "oldest evicted");
        assert!(seen.insert(t0 + Duration::from_secs(11), key("b")));
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn only_a_key_that_derives_the_id_binds() {
        let a = Identity::generate(&mut StdRng::seed_from_u64(1));
        let b = Identity::generate(&mut StdRng::seed_from_u64(2));
        let mut certs = CertCache::new(8);
        assert_eq!(
            certs.bind(a.node_id(), b.agent_id()),
            BindOutcome::Refused,
            "never seen before, still refused"
        );
        assert_eq!(certs.get(&a.node_id()), None);
        assert_eq!(certs.bind(a.node_id(), a.agent_id()), BindOutcome::Bound);
        assert_eq!(certs.get(&a.node_id()), Some(&a.agent_id()));
        let free = NodeId::from_bytes([7; 16]);
        assert_eq!(certs.bind(free, a.agent_id()), BindOutcome::Refused);
    }

    #[test]
    fn token_bucket_refills_in_virtual_time() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(t0, 2, 3);
        assert!((0..3).all(|_| bucket.take(t0)));
        assert!(!bucket.take(t0));
        assert!(bucket.take(t0 + Duration::from_millis(500)));
        assert!(!bucket.take(t0 + Duration::from_millis(500)));
        assert!((0..3).all(|_| bucket.take(t0 + Duration::from_secs(60))));
        assert!(!bucket.take(t0 + Duration::from_secs(60)));
    }
}
