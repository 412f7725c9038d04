//! Who gets the next upload slot: choking, as BitTorrent does it, without I/O or clocks of its
//! own (time is passed in), so it is tested deterministically.
//!
//! A node uploads at most [`crate::limits::NodeLimits::upload_slots`] items at once. While slots are
//! free every request is granted at once: choking only decides the order under contention.
//! Then a freed slot goes to the waiting peer that gave this node the most lately
//! ([`Reciprocity`]), except that every `optimistic_every`-th one goes to the peer that has
//! waited longest, whatever it gave. That optimistic unchoke is what keeps a newcomer (or a
//! user's `kith file get` from a node that has nothing to give back) moving: it may be served
//! after the generous peers, but never stalled.

use kith_crypto::identity::AgentId;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A waiting request's number, to grant or cancel it.
pub type Ticket = u64;

/// What [`UploadSlots::request`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A slot is yours; call [`UploadSlots::release`] when the upload is done.
    Granted,
    /// Wait: [`UploadSlots::release`] names this ticket when a slot is yours.
    Queued(Ticket),
}

#[derive(Debug)]
struct Waiter {
    ticket: Ticket,
    score: f64,
}

/// The upload slots and the queue of requests waiting for one.
///
/// Calling contract: every [`Request::Granted`], and every ticket returned by
/// [`UploadSlots::release`], holds one slot until [`UploadSlots::release`] is called for it. A
/// waiter that gives up calls [`UploadSlots::cancel`]; if that returns `false` the ticket had
/// already been granted, and the caller must release the slot.
#[derive(Debug)]
pub struct UploadSlots {
    slots: usize,
    in_use: usize,
    optimistic_every: usize,
    contended_grants: usize,
    /// Oldest first.
    waiting: VecDeque<Waiter>,
    next_ticket: Ticket,
}

impl UploadSlots {
    /// `slots` at once (at least one); under contention every `optimistic_every`-th grant
    /// (at least every one) goes to the longest-waiting request.
    pub fn new(slots: usize, optimistic_every: usize) -> UploadSlots {
        UploadSlots {
            slots: slots.max(1),
            in_use: 0,
            optimistic_every: optimistic_every.max(1),
            contended_grants: 0,
            waiting: VecDeque::new(),
            next_ticket: 1,
        }
    }

    /// Asks for a slot for a peer whose giving is worth `score` now.
    pub fn request(&mut self, score: f64) -> Request {
        if self.in_use < self.slots && self.waiting.is_empty() {
            self.in_use += 1;
            return Request::Granted;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiting.push_back(Waiter { ticket, score });
        Request::Queued(ticket)
    }

    /// A slot is free again. Returns the waiting ticket it now belongs to, if any.
    pub fn release(&mut self) -> Option<Ticket> {
        if self.waiting.is_empty() {
            self.in_use = self.in_use.saturating_sub(1);
            return None;
        }
        self.contended_grants += 1;
        let index = if self.contended_grants.is_multiple_of(self.optimistic_every) {
            0 // the optimistic unchoke: whoever waited longest
        } else {
            // The most generous; among equals, the one waiting longest (first in the queue).
            let mut best = 0;
            for (i, w) in self.waiting.iter().enumerate() {
                if w.score > self.waiting[best].score {
                    best = i;
                }
            }
            best
        };
        self.waiting.remove(index).map(|w| w.ticket)
    }

    /// A waiter gave up. `false` when the ticket is not waiting (it was granted already).
    pub fn cancel(&mut self, ticket: Ticket) -> bool {
        match self.waiting.iter().position(|w| w.ticket == ticket) {
            Some(i) => {
                self.waiting.remove(i);
                true
            }
            None => false,
        }
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// What each peer gave this node and took from it, with what it gave decaying so that recent
/// giving counts most (BitTorrent ranks by the rate over the last seconds; an exponential
/// decay is the same idea without a window to store).
#[derive(Debug)]
pub struct Reciprocity {
    half_life: Duration,
    peers: HashMap<AgentId, Ledger>,
    max_peers: usize,
}

/// One peer's account.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    /// Bytes received from the peer since the node started.
    pub bytes_received: u64,
    /// Bytes sent to the peer since the node started.
    pub bytes_sent: u64,
    /// Items it sent that did not match their name, or nobody asked for, since the node
    /// started.
    #[serde(default)]
    pub bad_items: u64,
    /// Bytes received, decayed to `at` with the half-life.
    #[serde(skip)]
    recent: f64,
    #[serde(skip)]
    at: Option<Instant>,
}

impl Ledger {
    fn decayed(&self, now: Instant, half_life: Duration) -> f64 {
        match self.at {
            Some(at) => {
                let age = now.saturating_duration_since(at).as_secs_f64();
                self.recent * 0.5f64.powf(age / half_life.as_secs_f64().max(1e-3))
            }
            None => 0.0,
        }
    }
}

impl Reciprocity {
    /// Giving halves in weight every `half_life`; at most `max_peers` accounts are kept (the
    /// least generous is forgotten first).
    pub fn new(half_life: Duration, max_peers: usize) -> Reciprocity {
        Reciprocity {
            half_life,
            peers: HashMap::new(),
            max_peers: max_peers.max(1),
        }
    }

    fn entry(&mut self, peer: AgentId, now: Instant) -> &mut Ledger {
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.max_peers {
            let half_life = self.half_life;
            if let Some(least) = self
                .peers
                .iter()
                .min_by(|a, b| {
                    let (a, b) = (a.1.decayed(now, half_life), b.1.decayed(now, half_life));
                    a.total_cmp(&b)
                })
                .map(|(p, _)| *p)
            {
                self.peers.remove(&least);
            }
        }
        self.peers.entry(peer).or_default()
    }

    /// `peer` gave us `bytes`.
    pub fn received(&mut self, peer: AgentId, bytes: u64, now: Instant) {
        let half_life = self.half_life;
        let ledger = self.entry(peer, now);
        ledger.recent = ledger.decayed(now, half_life) + bytes as f64;
        ledger.at = Some(now);
        ledger.bytes_received = ledger.bytes_received.saturating_add(bytes);
    }

    /// We gave `peer` `bytes`.
    pub fn sent(&mut self, peer: AgentId, bytes: u64, now: Instant) {
        let ledger = self.entry(peer, now);
        ledger.bytes_sent = ledger.bytes_sent.saturating_add(bytes);
    }

    /// `peer` sent a wrong or unsolicited item: counted, and what it gave lately no longer
    /// counts for its rank.
    pub fn penalize(&mut self, peer: AgentId, now: Instant) {
        let ledger = self.entry(peer, now);
        ledger.bad_items = ledger.bad_items.saturating_add(1);
        ledger.recent = 0.0;
        ledger.at = Some(now);
    }

    /// What `peer` gave lately, the rank for upload slots.
    pub fn score(&self, peer: &AgentId, now: Instant) -> f64 {
        self.peers
            .get(peer)
            .map_or(0.0, |l| l.decayed(now, self.half_life))
    }

    /// The account of `peer`.
    pub fn ledger(&self, peer: &AgentId) -> Ledger {
        self.peers.get(peer).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_crypto::identity::Identity;

    fn agent() -> AgentId {
        Identity::generate(&mut rand::rngs::OsRng).agent_id()
    }

    /// Fills every slot, queues `scores` in order, then frees slots one by one and returns
    /// the order (indexes into `scores`) in which the waiters got a slot.
    fn grant_order(slots: usize, optimistic_every: usize, scores: &[f64]) -> Vec<usize> {
        let mut up = UploadSlots::new(slots, optimistic_every);
        for _ in 0..slots {
            assert_eq!(up.request(0.0), Request::Granted);
        }
        let tickets: Vec<Ticket> = scores
            .iter()
            .map(|&s| match up.request(s) {
                Request::Queued(t) => t,
                Request::Granted => panic!("no slot should be free"),
            })
            .collect();
        let mut order = Vec::new();
        while let Some(t) = up.release() {
            order.push(tickets.iter().position(|&x| x == t).unwrap());
        }
        order
    }

    #[test]
    fn free_slots_are_granted_at_once_whatever_the_score() {
        let mut up = UploadSlots::new(2, 4);
        assert_eq!(up.request(0.0), Request::Granted);
        assert_eq!(up.request(0.0), Request::Granted);
        assert!(matches!(up.request(5.0), Request::Queued(_)));
        assert_eq!(up.in_use(), 2);
    }

    #[test]
    fn under_contention_the_peers_that_give_back_go_first() {
        // Scores: a leecher (0), two givers, another leecher. With an optimistic unchoke
        // every 3rd grant, the generous go first and the longest-waiting leecher third.
        let order = grant_order(1, 3, &[0.0, 500.0, 900.0, 0.0]);
        assert_eq!(order, vec![2, 1, 0, 3]);
    }

    #[test]
    fn a_peer_that_gives_nothing_is_never_stalled() {
        // One leecher behind a stream of generous peers: the optimistic unchoke reaches it
        // within `optimistic_every` grants.
        let mut up = UploadSlots::new(1, 4);
        assert_eq!(up.request(0.0), Request::Granted);
        let Request::Queued(leecher) = up.request(0.0) else {
            panic!()
        };
        let mut grants = 0;
        loop {
            // A new generous request keeps arriving before each slot frees.
            let _ = up.request(1000.0);
            grants += 1;
            if up.release() == Some(leecher) {
                break;
            }
            assert!(grants < 4, "the leecher waited more than 4 grants");
        }
    }

    #[test]
    fn a_cancelled_waiter_is_skipped_and_a_granted_one_cannot_cancel() {
        let mut up = UploadSlots::new(1, 4);
        assert_eq!(up.request(0.0), Request::Granted);
        let Request::Queued(a) = up.request(1.0) else {
            panic!()
        };
        let Request::Queued(b) = up.request(0.0) else {
            panic!()
        };
        assert!(up.cancel(a));
        assert_eq!(up.release(), Some(b));
        assert!(!up.cancel(b), "b holds the slot now");
        assert_eq!(up.release(), None);
        assert_eq!(up.in_use(), 0);
    }

    #[test]
    fn recent_giving_outweighs_old_giving() {
        let t0 = Instant::now();
        let half = Duration::from_secs(10);
        let mut r = Reciprocity::new(half, 8);
        let (old, new) = (agent(), agent());
        r.received(old, 1000, t0);
        r.received(new, 300, t0 + Duration::from_secs(30));
        let now = t0 + Duration::from_secs(30);
        assert!(
            (r.score(&old, now) - 125.0).abs() < 1e-6,
            "three half-lives"
        );
        assert!(r.score(&new, now) > r.score(&old, now));
        assert_eq!(r.ledger(&old).bytes_received, 1000);
        assert_eq!(r.score(&agent(), now), 0.0);
    }

    #[test]
    fn the_ledger_is_bounded_and_forgets_the_least_generous() {
        let t0 = Instant::now();
        let mut r = Reciprocity::new(Duration::from_secs(60), 2);
        let (a, b, c) = (agent(), agent(), agent());
        r.received(a, 10, t0);
        r.received(b, 1000, t0);
        r.sent(c, 5, t0);
        assert_eq!(r.peers.len(), 2);
        assert_eq!(r.ledger(&a), Ledger::default());
        assert_eq!(r.ledger(&b).bytes_received, 1000);
        assert_eq!(r.ledger(&c).bytes_sent, 5);
    }
}
