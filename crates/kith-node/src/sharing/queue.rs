//! The replication queue: offers waiting to be fetched, fair between peers.
//!
//! Each peer has its own queue, and the replicator takes one offer from each peer in turn
//! (round robin), so a peer that floods offers only lengthens its own queue. Each peer's
//! queue holds at most its share; when the whole queue is full, an offer from a peer with
//! fewer queued offers than the busiest peer displaces the busiest peer's newest one. A
//! file offered by several peers is queued once. A peer whose fetch failed waits before its
//! next turn, twice as long after each failure in a row (up to [`MAX_COOLDOWN`]), so offers
//! that are never served cost the others little; a success resets the wait.
//!
//! [`Fair`] is the rule, plain state with the time passed in; [`ReplicationQueue`] wraps it
//! for the async replicator.

use kith_crypto::identity::AgentId;
use kith_proto::files::offer::Offer;
use kith_proto::files::ContentHash;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The first wait after a failed fetch.
pub const BASE_COOLDOWN: Duration = Duration::from_secs(2);
/// The longest wait after failed fetches.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// One peer's share of a queue of `max` offers.
pub fn per_peer_share(max: usize) -> usize {
    (max / 4).max(8).min(max.max(1))
}

/// An offer waiting to be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// Who offered it (and will serve it).
    pub peer: AgentId,
    /// What was offered.
    pub offer: Offer,
    /// Fetches tried so far.
    pub attempts: u32,
}

#[derive(Debug, Default)]
struct PeerQueue {
    jobs: VecDeque<Job>,
    failures: u32,
    ready_at: Option<Instant>,
}

/// The fair queue's rule (see the module docs).
#[derive(Debug)]
pub struct Fair {
    peers: HashMap<AgentId, PeerQueue>,
    order: VecDeque<AgentId>,
    queued: HashSet<ContentHash>,
    total: usize,
    max_total: usize,
    per_peer: usize,
}

impl Fair {
    /// At most `max_total` offers in all and `per_peer` from one peer.
    pub fn new(max_total: usize, per_peer: usize) -> Fair {
        Fair {
            peers: HashMap::new(),
            order: VecDeque::new(),
            queued: HashSet::new(),
            total: 0,
            max_total,
            per_peer: per_peer.max(1),
        }
    }

    /// Offers waiting.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Queues a job; `true` if it is queued (or the file already was), `false` if it was
    /// dropped (its peer's share, or the whole queue, is full).
    pub fn push(&mut self, job: Job) -> bool {
        if self.queued.contains(&job.offer.hash) {
            return true;
        }
        let mine = self.peers.get(&job.peer).map_or(0, |q| q.jobs.len());
        if mine >= self.per_peer || self.max_total == 0 {
            return false;
        }
        if self.total >= self.max_total && !self.displace_for(mine) {
            return false;
        }
        let queue = self.peers.entry(job.peer).or_default();
        if queue.jobs.is_empty() && !self.order.contains(&job.peer) {
            self.order.push_back(job.peer);
        }
        queue.jobs.push_back(job);
        self.queued.insert(job.offer.hash);
        self.total += 1;
        true
    }

    /// Makes room for a peer holding `mine` offers by dropping the newest offer of the
    /// busiest peer, if that peer holds more than one more than `mine`.
    fn displace_for(&mut self, mine: usize) -> bool {
        let Some((&busiest, queue)) = self.peers.iter_mut().max_by_key(|(_, q)| q.jobs.len())
        else {
            return false;
        };
        if queue.jobs.len() <= mine + 1 {
            return false;
        }
        if let Some(dropped) = queue.jobs.pop_back() {
            self.queued.remove(&dropped.offer.hash);
            self.total -= 1;
        }
        if queue.jobs.is_empty() {
            self.order.retain(|p| *p != busiest);
        }
        true
    }

    /// The next job at `now`, taking peers in turn and skipping those cooling down after a
    /// failure. `Err(Some(t))`: nothing is ready before `t`; `Err(None)`: nothing is queued.
    pub fn pop(&mut self, now: Instant) -> Result<Job, Option<Instant>> {
        let mut earliest: Option<Instant> = None;
        for _ in 0..self.order.len() {
            let Some(peer) = self.order.pop_front() else {
                break;
            };
            let Some(queue) = self.peers.get_mut(&peer) else {
                continue;
            };
            if let Some(at) = queue.ready_at.filter(|at| *at > now) {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
                self.order.push_back(peer);
                continue;
            }
            let Some(job) = queue.jobs.pop_front() else {
                continue;
            };
            if !queue.jobs.is_empty() {
                self.order.push_back(peer);
            }
            self.queued.remove(&job.offer.hash);
            self.total -= 1;
            return Ok(job);
        }
        Err(earliest)
    }

    /// `peer` served a fetch: its turns come without waiting again.
    pub fn succeeded(&mut self, peer: AgentId) {
        if let Some(queue) = self.peers.get_mut(&peer) {
            queue.failures = 0;
            queue.ready_at = None;
        }
        self.forget_idle(peer);
    }

    /// A fetch from `peer` failed at `now`: its next turn waits.
    pub fn failed(&mut self, peer: AgentId, now: Instant) {
        let queue = self.peers.entry(peer).or_default();
        queue.failures = queue.failures.saturating_add(1);
        let factor = 1u32 << queue.failures.saturating_sub(1).min(16);
        queue.ready_at = Some(now + (BASE_COOLDOWN * factor).min(MAX_COOLDOWN));
    }

    /// Forgets a peer with nothing queued and nothing to remember.
    fn forget_idle(&mut self, peer: AgentId) {
        if self
            .peers
            .get(&peer)
            .is_some_and(|q| q.jobs.is_empty() && q.failures == 0)
        {
            self.peers.remove(&peer);
        }
    }
}

/// The fair queue, shared by the offer handler and the replicator.
#[derive(Debug)]
pub struct ReplicationQueue {
    fair: Mutex<Fair>,
    notify: Notify,
}

impl ReplicationQueue {
    /// At most `max` offers in all, `per_peer` from one peer.
    pub fn new(max: usize, per_peer: usize) -> ReplicationQueue {
        ReplicationQueue {
            fair: Mutex::new(Fair::new(max, per_peer)),
            notify: Notify::new(),
        }
    }

    fn fair(&self) -> std::sync::MutexGuard<'_, Fair> {
        self.fair.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an offer from `peer` (see [`Fair::push`]).
    pub fn push(&self, peer: AgentId, offer: Offer) -> bool {
        self.push_job(Job {
            peer,
            offer,
            attempts: 0,
        })
    }

    /// Queues a job again (see [`Fair::push`]).
    pub fn push_job(&self, job: Job) -> bool {
        let queued = self.fair().push(job);
        if queued {
            self.notify.notify_one();
        }
        queued
    }

    /// Offers waiting now.
    pub fn len(&self) -> usize {
        self.fair().len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// See [`Fair::succeeded`].
    pub fn succeeded(&self, peer: AgentId) {
        self.fair().succeeded(peer);
    }

    /// See [`Fair::failed`].
    pub fn failed(&self, peer: AgentId) {
        self.fair().failed(peer, crate::clock::mono_now());
        self.notify.notify_one();
    }

    /// The next job, waiting for one to be queued or to come out of its cooldown.
    pub async fn pop(&self) -> Job {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = self.fair().pop(crate::clock::mono_now());
            match next {
                Ok(job) => return job,
                Err(Some(at)) => {
                    let _ = tokio::time::timeout_at(at.into(), notified).await;
                }
                Err(None) => notified.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_crypto::identity::Identity;

    fn agent() -> AgentId {
        Identity::generate(&mut rand::rngs::OsRng).agent_id()
    }

    fn job(peer: AgentId, n: u16) -> Job {
        let mut hash = [0u8; 32];
        hash[..2].copy_from_slice(&n.to_be_bytes());
        hash[2..22].copy_from_slice(&peer.as_bytes()[..20]);
        Job {
            peer,
            offer: Offer {
                hash: ContentHash(hash),
                size: 10,
            },
            attempts: 0,
        }
    }

    #[test]
    fn a_flooding_peer_cannot_starve_another() {
        let (flooder, honest) = (agent(), agent());
        let mut fair = Fair::new(16, 8);
        let pushed = (0..300).filter(|n| fair.push(job(flooder, *n))).count();
        assert_eq!(pushed, 8, "a peer's share is bounded");
        assert!(fair.push(job(honest, 1)), "the honest offer still gets in");
        let now = Instant::now();
        let first_two: Vec<_> = (0..2).map(|_| fair.pop(now).unwrap().peer).collect();
        assert!(first_two.contains(&honest), "taken in turn: {first_two:?}");
    }

    #[test]
    fn a_full_queue_makes_room_for_a_peer_with_fewer_offers() {
        let (a, b, c) = (agent(), agent(), agent());
        let mut fair = Fair::new(4, 4);
        for n in 0..4 {
            assert!(fair.push(job(a, n)));
        }
        assert!(fair.push(job(b, 0)), "displaces a's newest");
        assert!(fair.push(job(c, 0)));
        assert!(!fair.push(job(c, 1)), "no peer holds two more than c now");
        assert_eq!(fair.len(), 4);
    }

    #[test]
    fn a_failing_peer_cools_down_and_the_others_go_first() {
        let (bad, good) = (agent(), agent());
        let mut fair = Fair::new(64, 16);
        for n in 0..10 {
            fair.push(job(bad, n));
        }
        fair.push(job(good, 100));
        let now = Instant::now();
        let first = fair.pop(now).unwrap();
        assert_eq!(first.peer, bad);
        fair.failed(bad, now);
        assert_eq!(fair.pop(now).unwrap().peer, good);
        match fair.pop(now) {
            Err(Some(at)) => assert_eq!(at, now + BASE_COOLDOWN),
            other => panic!("expected a cooldown, got {other:?}"),
        }
        assert_eq!(fair.pop(now + BASE_COOLDOWN).unwrap().peer, bad);
        fair.failed(bad, now);
        fair.failed(bad, now);
        assert!(
            matches!(fair.pop(now + BASE_COOLDOWN), Err(Some(_))),
            "longer each time"
        );
        fair.succeeded(bad);
        assert_eq!(
            fair.pop(now).unwrap().peer,
            bad,
            "a success resets the wait"
        );
    }

    #[test]
    fn duplicates_are_merged_across_peers() {
        let (a, b) = (agent(), agent());
        let mut fair = Fair::new(8, 8);
        let j = job(a, 1);
        assert!(fair.push(j));
        assert!(fair.push(Job { peer: b, ..j }), "counts as queued");
        assert_eq!(fair.len(), 1);
    }
}
