//! The background replicator: one task that fetches the files peers offered, one at a time.
//!
//! One at a time keeps replication from crowding out everything else on the node, and a
//! single queue makes the order predictable: first offered, first fetched. A fetch that gave
//! way to a user's transfer, or failed, goes to the back of the queue after
//! [`kith_proto::Limits::replication_retry_ms`], at most [`MAX_ATTEMPTS`] times; after that
//! the next offer (the peer offers again when it next links) starts afresh.

use crate::exchange::{self, ExchangeError, Priority};
use crate::node::NodeState;
use kith_crypto::identity::AgentId;
use kith_proto::files::offer::Offer;
use kith_store::ContentHash;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Attempts per offer before it is dropped.
pub const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, Copy)]
struct Job {
    peer: AgentId,
    offer: Offer,
    attempts: u32,
}

/// Offers waiting to be fetched, bounded, without duplicates.
#[derive(Debug)]
pub struct ReplicationQueue {
    jobs: Mutex<VecDeque<Job>>,
    max: usize,
    notify: Notify,
}

impl ReplicationQueue {
    /// An empty queue holding at most `max` offers.
    pub fn new(max: usize) -> ReplicationQueue {
        ReplicationQueue {
            jobs: Mutex::default(),
            max,
            notify: Notify::new(),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an offer; `true` if it is queued (or already was), `false` if the queue is full.
    pub fn push(&self, peer: AgentId, offer: Offer) -> bool {
        self.push_job(Job {
            peer,
            offer,
            attempts: 0,
        })
    }

    fn push_job(&self, job: Job) -> bool {
        let mut jobs = self.jobs();
        if jobs.iter().any(|j| j.offer.hash == job.offer.hash) {
            return true;
        }
        if jobs.len() >= self.max {
            return false;
        }
        jobs.push_back(job);
        drop(jobs);
        self.notify.notify_one();
        true
    }

    /// Offers waiting now.
    pub fn len(&self) -> usize {
        self.jobs().len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn pop(&self) -> Job {
        loop {
            if let Some(job) = self.jobs().pop_front() {
                return job;
            }
            self.notify.notified().await;
        }
    }
}

/// What became of one offer.
enum Outcome {
    Replicated,
    AlreadyHeld,
    OverQuota,
    Retry,
    Failed,
}

/// Works through the replication queue until the node stops.
pub async fn replicate(state: Arc<NodeState>) {
    let mut stopping = state.stopping();
    loop {
        let job = tokio::select! {
            job = state.replication.pop() => job,
            _ = stopping.changed() => return,
        };
        let outcome = tokio::select! {
            outcome = replicate_one(&state, job) => outcome,
            _ = stopping.changed() => return,
        };
        match outcome {
            Outcome::Replicated => state.counters.bump("replications_completed"),
            Outcome::AlreadyHeld => {
                // The sharer learns we hold it, so it can check that we keep it.
                crate::retention::announce(&state, job.peer, ContentHash(job.offer.hash.0));
                state.counters.bump("offers_already_held");
            }
            Outcome::OverQuota => state.counters.bump("offers_declined_quota"),
            Outcome::Failed => state.counters.bump("replications_failed"),
            Outcome::Retry => {
                state.counters.bump("replications_retried");
                let state = Arc::clone(&state);
                let delay = Duration::from_millis(state.config.limits.replication_retry_ms);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let job = Job {
                        attempts: job.attempts + 1,
                        ..job
                    };
                    if !state.replication.push_job(job) {
                        state.counters.bump("offers_dropped_queue_full");
                    }
                });
            }
        }
    }
}

async fn replicate_one(state: &Arc<NodeState>, job: Job) -> Outcome {
    let Job { peer, offer, .. } = job;
    let quota = state.config.limits.max_replica_bytes;
    let hash = ContentHash(offer.hash.0);
    let checked = state
        .with_store(move |s| {
            if s.get(&hash)?.is_some() {
                return Ok(Some(Outcome::AlreadyHeld));
            }
            let held = s.meta().replica_bytes()?;
            if held.saturating_add(offer.size) > quota {
                return Ok(Some(Outcome::OverQuota));
            }
            Ok::<_, kith_store::StoreError>(None)
        })
        .await;
    match checked {
        Ok(Ok(Some(outcome))) => return outcome,
        Ok(Ok(None)) => {}
        Ok(Err(e)) => {
            tracing::warn!("replication of {hash}: {e}");
            return Outcome::Failed;
        }
        Err(e) => {
            tracing::warn!("replication of {hash}: {e}");
            return Outcome::Failed;
        }
    }
    let priority = Priority::Background {
        max_bytes: byte_budget(offer.size, state.config.max_item as u64),
    };
    match exchange::fetch_with(state, hash, Some(peer), priority).await {
        Ok(report) => {
            let now = crate::ticket::unix_secs(std::time::SystemTime::now());
            let from = peer.to_string();
            let size = report.size;
            let recorded = state
                .with_store(move |s| s.meta().record_replica(&hash, &from, size, now))
                .await;
            if !matches!(recorded, Ok(Ok(()))) {
                tracing::warn!("replicated {hash} but could not record it as a replica");
            }
            tracing::info!(peer = %peer, "replicated {hash} ({size} bytes)");
            Outcome::Replicated
        }
        Err(e @ (ExchangeError::NotFound { .. } | ExchangeError::Store(_))) => {
            tracing::info!(peer = %peer, "replication of {hash} failed: {e}");
            Outcome::Failed
        }
        Err(e) if job.attempts + 1 < MAX_ATTEMPTS => {
            tracing::debug!(peer = %peer, "replication of {hash} will be retried: {e}");
            Outcome::Retry
        }
        Err(e) => {
            tracing::info!(peer = %peer, "replication of {hash} failed: {e}");
            Outcome::Failed
        }
    }
}

/// The most a replication of a file of `size` content bytes may store: the content, the lists
/// that hold it (one 65-byte line per item of at most `max_item` bytes, at every level), and
/// two items of slack for rounding.
pub fn byte_budget(size: u64, max_item: u64) -> u64 {
    let lines_per_item = (max_item / 65).max(2);
    let mut total = size;
    let mut level = size.div_ceil(max_item.max(2) - 1);
    while level > 1 {
        total = total.saturating_add(level.saturating_mul(65));
        level = level.div_ceil(lines_per_item);
    }
    total.saturating_add(2 * max_item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_crypto::identity::Identity;
    use kith_proto::files::ItemHash;

    fn offer(n: u8) -> Offer {
        Offer {
            hash: ItemHash([n; 32]),
            size: 10,
        }
    }

    #[test]
    fn the_queue_is_bounded_and_merges_duplicates() {
        let peer = Identity::generate(&mut rand::rngs::OsRng).agent_id();
        let queue = ReplicationQueue::new(2);
        assert!(queue.push(peer, offer(1)));
        assert!(queue.push(peer, offer(1)), "a duplicate counts as queued");
        assert!(queue.push(peer, offer(2)));
        assert!(!queue.push(peer, offer(3)), "full");
        assert_eq!(queue.len(), 2);
    }

    #[test]
    fn the_byte_budget_covers_the_tree_but_not_much_more() {
        let item = 1_000_000;
        assert_eq!(byte_budget(0, item), 2 * item);
        let gib = 1u64 << 30;
        let budget = byte_budget(gib, item);
        assert!(budget > gib + 1074 * 65, "room for the list lines");
        assert!(budget < gib + 3 * item, "not much more than the file");
    }
}
