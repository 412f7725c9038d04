//! The node's upload slots and peer accounts, shared by every session that serves items.
//!
//! A responder session takes an [`UploadPermit`] before it reads an item to send and holds it
//! until the item is queued on the link; the permit frees its slot when dropped, however the
//! session ends. The order under contention is [`super::choke`]'s.

use super::choke::{Ledger, Reciprocity, Request, Ticket, UploadSlots};
use crate::limits::NodeLimits;
use kith_crypto::identity::AgentId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[derive(Debug)]
struct Inner {
    slots: UploadSlots,
    wakers: HashMap<Ticket, oneshot::Sender<()>>,
    accounts: Reciprocity,
}

/// Upload slots and what each peer gave and took.
#[derive(Debug, Clone)]
pub struct Uploads {
    inner: Arc<Mutex<Inner>>,
    /// The node's upload rate limit, all peers together.
    rate: Arc<Mutex<super::rate::RateLimit>>,
}

/// One upload slot, held until dropped.
#[derive(Debug)]
pub struct UploadPermit {
    uploads: Uploads,
}

impl Drop for UploadPermit {
    fn drop(&mut self) {
        self.uploads.release();
    }
}

impl Uploads {
    /// Slots and accounts sized by `limits`; at most `max_peers` accounts are kept.
    pub fn new(limits: &NodeLimits, max_peers: usize) -> Uploads {
        Uploads {
            inner: Arc::new(Mutex::new(Inner {
                slots: UploadSlots::new(limits.upload_slots, limits.upload_optimistic_every),
                wakers: HashMap::new(),
                accounts: Reciprocity::new(
                    Duration::from_secs(limits.reciprocity_half_life_secs.max(1)),
                    max_peers,
                ),
            })),
            rate: Arc::new(Mutex::new(super::rate::RateLimit::new(
                limits.upload_bytes_per_sec,
            ))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for an upload slot for `peer`. Cancel-safe: dropping the future gives the place
    /// (or the slot, if it was granted meanwhile) back.
    pub async fn acquire(&self, peer: AgentId) -> UploadPermit {
        let (ticket, rx) = {
            let mut inner = self.lock();
            let score = inner.accounts.score(&peer, Instant::now());
            match inner.slots.request(score) {
                Request::Granted => {
                    return UploadPermit {
                        uploads: self.clone(),
                    }
                }
                Request::Queued(ticket) => {
                    let (tx, rx) = oneshot::channel();
                    inner.wakers.insert(ticket, tx);
                    (ticket, rx)
                }
            }
        };
        let mut waiting = Waiting {
            uploads: self,
            ticket,
            done: false,
        };
        // The sender lives in `wakers` until the slot is handed over, so `rx` only errs if the
        // table was torn down, which never happens while `self` lives.
        let _ = rx.await;
        waiting.done = true;
        UploadPermit {
            uploads: self.clone(),
        }
    }

    fn release(&self) {
        let mut inner = self.lock();
        // Hand the slot to the chosen waiter; one that already gave up is skipped.
        while let Some(ticket) = inner.slots.release() {
            if let Some(tx) = inner.wakers.remove(&ticket) {
                if tx.send(()).is_ok() {
                    return;
                }
            }
        }
    }

    /// `peer` gave us `bytes` (an item we stored).
    pub fn received(&self, peer: AgentId, bytes: u64) {
        self.lock().accounts.received(peer, bytes, Instant::now());
    }

    /// We gave `peer` `bytes` (an item we sent).
    pub fn sent(&self, peer: AgentId, bytes: u64) {
        self.lock().accounts.sent(peer, bytes, Instant::now());
    }

    /// `peer` sent a wrong or unsolicited item (see [`Reciprocity::penalize`]).
    pub fn penalize(&self, peer: AgentId) {
        self.lock().accounts.penalize(peer, Instant::now());
    }

    /// Waits until `bytes` more may go out within the node's upload rate limit.
    pub async fn throttle(&self, bytes: u64) {
        let wait = {
            let mut rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
            rate.take(bytes, tokio::time::Instant::now().into_std())
        };
        if let Some(at) = wait {
            tokio::time::sleep_until(at.into()).await;
        }
    }

    /// The account of `peer` since the node started.
    pub fn ledger(&self, peer: &AgentId) -> Ledger {
        self.lock().accounts.ledger(peer)
    }

    /// Uploads running and waiting now.
    pub fn load(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.slots.in_use(), inner.slots.waiting())
    }
}

/// A place in the queue; gives it back if the wait is abandoned.
struct Waiting<'a> {
    uploads: &'a Uploads,
    ticket: Ticket,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut inner = self.uploads.lock();
        inner.wakers.remove(&self.ticket);
        if !inner.slots.cancel(self.ticket) {
            // Granted while we were going away: pass the slot on.
            drop(inner);
            self.uploads.release();
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

    fn one_slot() -> Uploads {
        let limits = NodeLimits {
            upload_slots: 1,
            upload_optimistic_every: 100,
            ..NodeLimits::default()
        };
        Uploads::new(&limits, 16)
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_peer_that_gave_most() {
        let uploads = one_slot();
        let (leecher, giver) = (agent(), agent());
        uploads.received(giver, 1_000_000);
        let held = uploads.acquire(agent()).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (name, peer) in [("leecher", leecher), ("giver", giver)] {
            let (u, tx) = (uploads.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = u.acquire(peer).await;
                tx.send(name).unwrap();
            });
            // Let it queue, in this order.
            while uploads.load().1 == 0 || (name == "giver" && uploads.load().1 < 2) {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        assert_eq!(rx.recv().await, Some("giver"));
        assert_eq!(rx.recv().await, Some("leecher"));
        assert_eq!(uploads.load(), (0, 0));
    }

    #[tokio::test]
    async fn an_abandoned_wait_gives_its_place_back() {
        let uploads = one_slot();
        let held = uploads.acquire(agent()).await;
        let waiting = tokio::spawn({
            let u = uploads.clone();
            async move {
                let _p = u.acquire(agent()).await;
            }
        });
        while uploads.load().1 == 0 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(uploads.load(), (1, 0));
        drop(held);
        assert_eq!(uploads.load(), (0, 0));
        let _again = uploads.acquire(agent()).await;
    }
}
