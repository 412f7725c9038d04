//! The link registry: one logical link per peer, whoever opened it.
//!
//! Every confirmed connection registers here. The manager keeps one *active* link per peer
//! agent and routes every send to it. Two sites that dial each other at the same moment end up
//! with two connections; both sides then keep the same one without talking about it: the link
//! whose initiator has the smaller agent id wins. The other is *retired*, not dropped: each
//! side first sends whatever it had already queued on it, then a `bye`, and reads until the
//! peer's `bye`, so no envelope in flight is lost.
//!
//! The registry also counts each peer's live link tasks (a retiring link is no longer the
//! active one but still delivers what the peer had in flight), so that "up" and "down" are
//! per peer: up when the first link goes live, down when the last one has ended. It holds the
//! waiters of outstanding pings (bounded), the redial backoff of each peer whose link was
//! lost (with jitter, so a restarted hub's peers do not redial in lockstep), and one dial
//! lock per peer being dialled (dropped when nobody holds it).

use super::transport::Via;
use super::Payload;
use kith_crypto::identity::AgentId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

/// Identifies one connection for its whole life.
pub type LinkId = u64;

/// What a link task is asked to do by the rest of the node.
#[derive(Debug)]
pub enum Outgoing {
    /// Send this payload; the permit holds its bytes against the link's byte budget until the
    /// link task has handed it to the machine.
    Payload(Payload, Option<OwnedSemaphorePermit>),
    /// Send a `ping` with this nonce.
    Ping([u8; 8]),
    /// This link lost the duplicate-link tie-break: flush, say `bye`, and close once the peer
    /// has said `bye` too.
    Retire,
    /// Close now (the peer was removed or blocked, or the node is stopping).
    Close,
}

/// Which end of the TCP connection this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// We dialled.
    Initiator,
    /// They dialled.
    Responder,
}

/// A registered link, as the manager sees it.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    /// This connection.
    pub id: LinkId,
    /// Who dialled whom.
    pub side: Side,
    /// The agent that initiated the connection (us or the peer), for the tie-break.
    pub initiator: AgentId,
    /// The peer's socket address.
    pub remote: SocketAddr,
    /// How the connection was made.
    pub via: Via,
    /// When the link was established.
    pub since: Instant,
    /// The link task's queue (bounded: a full queue makes senders wait).
    pub outgoing: mpsc::Sender<Outgoing>,
    /// The bytes that may wait in that queue (`Limits::link_queue_bytes`): a sender takes
    /// permits for its payload's bytes before queueing it.
    pub budget: Arc<Semaphore>,
    /// The budget's size, in bytes (permits).
    pub budget_size: u32,
    /// The capabilities of the peer's `version` once it has come (`None` until then).
    pub capabilities: watch::Receiver<Option<Arc<[String]>>>,
}

/// Where a payload for a peer goes: its active link's queue and byte budget.
#[derive(Debug, Clone)]
pub struct Queue {
    /// The link task's queue.
    pub outgoing: mpsc::Sender<Outgoing>,
    /// Its byte budget.
    pub budget: Arc<Semaphore>,
    /// The budget's size, in bytes (permits).
    pub budget_size: u32,
}

/// A link's state for `kith peers`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkView {
    /// Who dialled whom.
    pub side: Side,
    /// The peer's socket address (`IP:PORT`).
    pub remote: String,
    /// `direct`, `punched` or `relayed`.
    pub via: Via,
    /// Seconds since the link was established.
    pub up_secs: u64,
}

#[derive(Debug, Default)]
struct Inner {
    active: HashMap<AgentId, LinkHandle>,
    /// Live link tasks per peer (active or retiring).
    live: HashMap<AgentId, usize>,
    pings: HashMap<[u8; 8], (AgentId, oneshot::Sender<Instant>)>,
    backoff: HashMap<AgentId, Duration>,
    dials: HashMap<AgentId, Arc<tokio::sync::Mutex<()>>>,
}

/// The registry of links (see the module docs).
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    max_pings: usize,
}

/// What [`Registry::register`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Registration {
    /// The new link is the peer's active link (an older duplicate, if any, was retired).
    Active,
    /// An existing link wins the tie-break; the new one must retire.
    Retire,
}

/// What registering or ending a link changed for its peer.
#[derive(Debug, PartialEq, Eq)]
pub struct Change<T> {
    /// The registry's decision.
    pub outcome: T,
    /// The peer's first live link: tell the services it is up.
    pub first: bool,
}

impl Registry {
    /// An empty registry that allows `max_pings` outstanding pings in all.
    pub fn new(max_pings: usize) -> Registry {
        Registry {
            inner: Mutex::default(),
            next_id: AtomicU64::new(1),
            max_pings,
        }
    }

    /// A fresh connection id.
    pub fn next_id(&self) -> LinkId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent in a way that
        // matters (each operation is a single insert or remove), so recover from poisoning.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a confirmed link with `peer`, resolving duplicates. Every registered link
    /// must be [`ended`](Self::ended) once its task ends.
    pub fn register(&self, peer: AgentId, link: LinkHandle) -> Change<Registration> {
        let mut inner = self.lock();
        inner.backoff.remove(&peer);
        let live = inner.live.entry(peer).or_insert(0);
        *live += 1;
        let first = *live == 1;
        let outcome = Self::decide(&mut inner, peer, link);
        Change { outcome, first }
    }

    fn decide(inner: &mut Inner, peer: AgentId, link: LinkHandle) -> Registration {
        match inner.active.get(&peer) {
            Some(existing) if existing.id != link.id => {
                // The link opened by the smaller agent id wins; ties (both opened by the same
                // side, e.g. a redial racing a reconnect) keep the newer one.
                let new_wins = link.initiator <= existing.initiator;
                if new_wins {
                    let old = inner.active.insert(peer, link);
                    if let Some(old) = old {
                        let _ = old.outgoing.try_send(Outgoing::Retire);
                    }
                    Registration::Active
                } else {
                    Registration::Retire
                }
            }
            _ => {
                inner.active.insert(peer, link);
                Registration::Active
            }
        }
    }

    /// A registered link's task has ended: forgets it, and says whether it was the peer's
    /// last live link (tell the services the peer is down).
    pub fn ended(&self, peer: &AgentId, id: LinkId) -> Change<bool> {
        let was_active = self.unregister(peer, id);
        let mut inner = self.lock();
        let last = match inner.live.get_mut(peer) {
            Some(live) if *live > 1 => {
                *live -= 1;
                false
            }
            Some(_) => {
                inner.live.remove(peer);
                true
            }
            None => false,
        };
        Change {
            outcome: was_active,
            first: last,
        }
    }

    /// Stops routing sends to link `id` with `peer` if it is the active one (it is retiring;
    /// it stays live until [`ended`](Self::ended)). Returns true if it was active.
    pub fn unregister(&self, peer: &AgentId, id: LinkId) -> bool {
        let mut inner = self.lock();
        if inner.active.get(peer).is_some_and(|l| l.id == id) {
            inner.active.remove(peer);
            inner.pings.retain(|_, (agent, _)| agent != peer);
            return true;
        }
        false
    }

    /// The active link's queue for `peer`, if there is one.
    pub fn sender(&self, peer: &AgentId) -> Option<mpsc::Sender<Outgoing>> {
        self.lock().active.get(peer).map(|l| l.outgoing.clone())
    }

    /// The active link's queue and byte budget for `peer`, if there is one.
    pub fn queue(&self, peer: &AgentId) -> Option<Queue> {
        self.lock().active.get(peer).map(|l| Queue {
            outgoing: l.outgoing.clone(),
            budget: Arc::clone(&l.budget),
            budget_size: l.budget_size,
        })
    }

    /// The active link's view of the peer's capabilities, if there is one.
    pub fn capabilities(&self, peer: &AgentId) -> Option<watch::Receiver<Option<Arc<[String]>>>> {
        self.lock().active.get(peer).map(|l| l.capabilities.clone())
    }

    /// The link state of `peer`, for display.
    pub fn view(&self, peer: &AgentId) -> Option<LinkView> {
        self.lock().active.get(peer).map(|l| LinkView {
            side: l.side,
            remote: l.remote.to_string(),
            via: l.via,
            up_secs: l.since.elapsed().as_secs(),
        })
    }

    /// Agents with an active link.
    pub fn linked(&self) -> Vec<AgentId> {
        self.lock().active.keys().copied().collect()
    }

    /// Asks the active link with `peer` (if any) to close.
    pub fn close(&self, peer: &AgentId) {
        if let Some(link) = self.lock().active.remove(peer) {
            let _ = link.outgoing.try_send(Outgoing::Close);
        }
    }

    /// Asks every link to close (shutdown).
    pub fn close_all(&self) {
        let mut inner = self.lock();
        for (_, link) in inner.active.drain() {
            let _ = link.outgoing.try_send(Outgoing::Close);
        }
    }

    /// Registers a ping waiter. Fails when too many pings are outstanding.
    pub fn expect_pong(&self, peer: AgentId, nonce: [u8; 8]) -> Option<oneshot::Receiver<Instant>> {
        let mut inner = self.lock();
        if inner.pings.len() >= self.max_pings {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        inner.pings.insert(nonce, (peer, tx));
        Some(rx)
    }

    /// Delivers a pong; returns false when nobody was waiting for it (or it came from another
    /// peer than the one pinged).
    pub fn pong(&self, from: &AgentId, nonce: [u8; 8], now: Instant) -> bool {
        let mut inner = self.lock();
        match inner.pings.remove(&nonce) {
            Some((peer, tx)) if &peer == from => tx.send(now).is_ok(),
            Some(entry) => {
                inner.pings.insert(nonce, entry);
                false
            }
            None => false,
        }
    }

    /// Forgets a ping waiter (timed out).
    pub fn forget_ping(&self, nonce: &[u8; 8]) {
        self.lock().pings.remove(nonce);
    }

    /// The next redial delay for `peer`: a base of `min` at first, doubling up to `max`, and
    /// the delay drawn between half the base and the base (`jitter`, in `0.0..1.0`, picks
    /// where), so that the peers of a node that restarts do not all redial at one moment.
    pub fn next_backoff(
        &self,
        peer: AgentId,
        min: Duration,
        max: Duration,
        jitter: f64,
    ) -> Duration {
        let mut inner = self.lock();
        let base = inner.backoff.get(&peer).map_or(min, |d| (*d * 2).min(max));
        inner.backoff.insert(peer, base);
        base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// The lock that serialises dials to `peer`. Release it with [`Self::release_dial`] so the
    /// table does not grow with every peer ever dialled.
    pub fn dial_lock(&self, peer: AgentId) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.lock().dials.entry(peer).or_default())
    }

    /// Drops `peer`'s dial lock from the table once nobody but the caller holds it.
    pub fn release_dial(&self, peer: AgentId, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut inner = self.lock();
        // The table's copy and the caller's: nobody else waits on it.
        if Arc::strong_count(&lock) <= 2 {
            inner.dials.remove(&peer);
        }
    }

    /// Dial locks held or waited on now (for tests).
    pub fn dial_locks(&self) -> usize {
        self.lock().dials.len()
    }

    /// True when `peer` has an active link.
    pub fn is_linked(&self, peer: &AgentId) -> bool {
        self.lock().active.contains_key(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::transport::Via;
    use kith_crypto::identity::Identity;

    fn agent() -> AgentId {
        Identity::generate(&mut rand::rngs::OsRng).agent_id()
    }

    fn handle(m: &Registry, initiator: AgentId) -> (LinkHandle, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(4);
        let link = LinkHandle {
            id: m.next_id(),
            side: Side::Initiator,
            initiator,
            remote: "127.0.0.1:1".parse().unwrap(),
            via: Via::Direct,
            since: Instant::now(),
            outgoing: tx,
            budget: Arc::new(Semaphore::new(1 << 20)),
            budget_size: 1 << 20,
            capabilities: watch::channel(None).1,
        };
        (link, rx)
    }

    #[test]
    fn simultaneous_opens_converge_on_the_link_opened_by_the_smaller_agent() {
        let (a, b) = (agent(), agent());
        let (small, large) = if a < b { (a, b) } else { (b, a) };
        // Seen from either side, in either arrival order, the same link wins.
        for first_is_small in [true, false] {
            let m = Registry::new(8);
            let (by_small, _rx1) = handle(&m, small);
            let (by_large, mut rx2) = handle(&m, large);
            let small_id = by_small.id;
            let peer = large;
            if first_is_small {
                assert_eq!(m.register(peer, by_small).outcome, Registration::Active);
                assert_eq!(m.register(peer, by_large).outcome, Registration::Retire);
            } else {
                assert_eq!(m.register(peer, by_large).outcome, Registration::Active);
                assert_eq!(m.register(peer, by_small).outcome, Registration::Active);
                assert!(matches!(rx2.try_recv(), Ok(Outgoing::Retire)));
            }
            assert!(!m.unregister(&peer, small_id + 1));
            assert!(m.is_linked(&peer));
            assert!(m.unregister(&peer, small_id));
        }
    }

    #[test]
    fn pongs_resolve_only_their_own_ping_and_pings_are_bounded() {
        let m = Registry::new(1);
        let (peer, other) = (agent(), agent());
        let mut rx = m.expect_pong(peer, [1; 8]).unwrap();
        assert!(m.expect_pong(peer, [2; 8]).is_none(), "bounded");
        assert!(
            !m.pong(&other, [1; 8], Instant::now()),
            "a pong from someone else"
        );
        assert!(m.pong(&peer, [1; 8], Instant::now()));
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_on_a_new_link() {
        let m = Registry::new(1);
        let peer = agent();
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<_> = (0..5)
            .map(|_| m.next_backoff(peer, min, max, 1.0).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        let (link, _rx) = handle(&m, peer);
        m.register(peer, link);
        assert_eq!(m.next_backoff(peer, min, max, 1.0), min);
        // Jitter spreads each delay over half the base to the base.
        assert_eq!(m.next_backoff(peer, min, max, 0.0), min * 2 / 2);
    }

    #[test]
    fn up_and_down_are_per_peer_across_duplicate_links() {
        let m = Registry::new(1);
        let peer = agent();
        let (a, _rxa) = handle(&m, peer);
        let (b, _rxb) = handle(&m, peer);
        let (ida, idb) = (a.id, b.id);
        assert!(
            m.register(peer, a).first,
            "the first live link brings the peer up"
        );
        assert!(!m.register(peer, b).first, "a second one does not");
        assert!(!m.ended(&peer, ida).first, "one link is still live");
        assert!(m.is_linked(&peer));
        assert!(
            m.ended(&peer, idb).first,
            "the last link ending takes the peer down"
        );
        assert!(!m.is_linked(&peer));
    }

    #[test]
    fn dial_locks_do_not_accumulate() {
        let m = Registry::new(1);
        for _ in 0..100 {
            let peer = agent();
            let lock = m.dial_lock(peer);
            m.release_dial(peer, lock);
        }
        assert_eq!(m.dial_locks(), 0);
    }
}
