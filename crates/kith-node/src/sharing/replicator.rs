//! The background replicator: one task that fetches the files peers offered, one at a time,
//! taking the peers in turn ([`super::queue`]).
//!
//! One at a time keeps replication from crowding out everything else on the node. A fetch
//! that gave way to a user's transfer goes back to the queue after
//! [`crate::limits::NodeLimits::replication_retry_ms`]; one that failed costs its peer a cooldown
//! and is tried again, at most [`MAX_ATTEMPTS`] times; after that the next offer (the peer
//! offers again when it next links) starts afresh.

use super::queue::Job;
use super::Sharing;
use crate::exchange::{ExchangeError, FetchOrder, Priority, HAVE_COMMAND};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Attempts per offer before it is dropped.
pub(super) const MAX_ATTEMPTS: u32 = 5;

/// What became of one offer.
enum Outcome {
    Replicated,
    AlreadyHeld,
    OverQuota,
    /// Gave way to the user's transfer: try again, the peer did nothing wrong.
    GaveWay,
    /// Failed for now: the peer cools down, and the offer is tried again.
    Retry,
    Failed,
}

/// Works through the replication queue until `cancel`.
pub(super) async fn replicate(sharing: Sharing, cancel: CancellationToken) {
    let inner = &sharing.inner;
    let counters = &inner.counters;
    loop {
        let job = tokio::select! {
            job = inner.queue.pop() => job,
            _ = cancel.cancelled() => return,
        };
        let outcome = tokio::select! {
            outcome = replicate_one(&sharing, job) => outcome,
            _ = cancel.cancelled() => return,
        };
        match outcome {
            Outcome::Replicated => {
                inner.queue.succeeded(job.peer);
                counters.replications_completed.bump();
            }
            Outcome::AlreadyHeld => {
                // The sharer learns we hold it, so it can check that we keep it.
                let notice = crate::endpoint::envelope(HAVE_COMMAND, job.offer.hash.0.to_vec());
                let _ = inner.endpoint.try_send(job.peer, notice);
                counters.offers_already_held.bump();
            }
            Outcome::OverQuota => counters.offers_declined_quota.bump(),
            Outcome::Failed => {
                inner.queue.failed(job.peer);
                counters.replications_failed.bump();
            }
            Outcome::GaveWay | Outcome::Retry => {
                if matches!(outcome, Outcome::Retry) {
                    inner.queue.failed(job.peer);
                }
                counters.replications_retried.bump();
                let again = sharing.clone();
                let delay = Duration::from_millis(inner.limits.replication_retry_ms);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let job = Job {
                        attempts: job.attempts + 1,
                        ..job
                    };
                    if !again.inner.queue.push_job(job) {
                        again.inner.counters.offers_dropped_queue_full.bump();
                    }
                });
            }
        }
    }
}

async fn replicate_one(sharing: &Sharing, job: Job) -> Outcome {
    let inner = &sharing.inner;
    let Job { peer, offer, .. } = job;
    let quota = inner.limits.max_replica_bytes;
    let hash = offer.hash;
    let checked = inner
        .store
        .run(move |s| {
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
        Ok(Some(outcome)) => return outcome,
        Ok(None) => {}
        Err(e) => {
            tracing::warn!("replication of {hash}: {e}");
            return Outcome::Failed;
        }
    }
    // A shared folder comes whole: its manifest, then its files (the offer's size is all of
    // them together).
    let mut order = FetchOrder::new(hash, Some(peer));
    order.priority = Priority::background_for(offer.size, inner.exchange.max_item() as u64);
    order.folders = true;
    let fetched = inner.exchange.fetch_order(order).await;
    match fetched {
        Ok(report) => {
            let now = inner.clock.unix_secs();
            let from = peer.to_string();
            let size = report.size;
            let recorded = inner
                .store
                .run(move |s| s.meta().record_replica(&hash, &from, size, now))
                .await;
            if recorded.is_err() {
                tracing::warn!("replicated {hash} but could not record it as a replica");
            }
            tracing::info!(peer = %peer, "replicated {hash} ({size} bytes)");
            Outcome::Replicated
        }
        Err(ExchangeError::Yielded(_)) => Outcome::GaveWay,
        Err(
            e @ (ExchangeError::NotFound { .. }
            | ExchangeError::OverBudget { .. }
            | ExchangeError::Store(_)
            | ExchangeError::Local(_)),
        ) => {
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
