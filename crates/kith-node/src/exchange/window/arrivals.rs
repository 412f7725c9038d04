//! What happens to an item once it arrived: verified and staged on the blocking pool (a few
//! at a time), then counted, walked and committed in groups; and after an early end, what
//! already arrived is kept so that the next run resumes after it.

use super::super::ExchangeError;
use super::run::Run;
use crate::clock::mono_now;
use bytes::Bytes;
use kith_crypto::identity::AgentId;
use kith_store::{ContentHash, ItemKind, StagedItem, StoreError};

/// A finished verify-and-stage job.
pub(super) type Staged = (
    AgentId,
    ContentHash,
    Bytes,
    Result<Option<StagedItem>, ExchangeError>,
);

impl Run<'_> {
    /// After an early end: the items being verified are staged, and everything staged is
    /// committed (best effort: a store failure here loses only what a re-run fetches again).
    pub(super) async fn keep_what_arrived(&mut self) {
        self.max_checks = usize::MAX;
        self.start_checks();
        while let Some(job) = self.jobs.join_next().await {
            if let Ok((peer, _, item, Ok(Some(staged)))) = job {
                // Kept, so counted as received like every other: the next run will not
                // fetch it again.
                self.accept(peer, staged, item.len() as u64);
            }
        }
        if let Err(e) = self.finish_commits().await {
            tracing::warn!(
                "could not keep the items of {} fetched so far: {e}",
                self.hash
            );
        }
    }

    pub(super) fn start_commit(&mut self) {
        let fresh = self.batch.empty_like();
        let batch = std::mem::replace(&mut self.batch, fresh);
        self.committing_items = batch.hashes().collect();
        let store = self.ex.store.clone();
        self.committing = Some(tokio::task::spawn_blocking(move || {
            batch.commit(store.files().blobs())
        }));
    }

    /// Waits for the commit in flight, then commits what is staged.
    pub(super) async fn finish_commits(&mut self) -> Result<(), ExchangeError> {
        self.await_commit().await?;
        if !self.batch.is_empty() {
            self.start_commit();
            self.await_commit().await?;
        }
        Ok(())
    }

    /// Waits for the commit in flight, if any.
    async fn await_commit(&mut self) -> Result<(), ExchangeError> {
        if let Some(job) = self.committing.take() {
            job.await
                .map_err(|e| ExchangeError::Store(e.to_string()))??;
        }
        self.committing_items.clear();
        Ok(())
    }

    /// A verified, staged item counts: in the batch to commit, and as received from `peer`.
    fn accept(&mut self, peer: AgentId, staged: StagedItem, len: u64) {
        self.batch.push(staged);
        self.fetched += 1;
        self.ex.counters.items_received.bump();
        self.ex.uploads.received(peer, len);
    }

    /// Starts verify-and-stage jobs for queued items, up to [`Run::max_checks`] at once.
    pub(super) fn start_checks(&mut self) {
        while self.jobs.len() < self.max_checks {
            let Some((peer, hash, item)) = self.checks.pop_front() else {
                return;
            };
            let store = self.ex.store.clone();
            self.jobs.spawn(async move {
                let check = item.clone();
                let staged = store
                    .run(move |s| s.blobs().stage_received(&hash, &check))
                    .await
                    .map_err(ExchangeError::from);
                (peer, hash, item, staged)
            });
        }
    }

    pub(super) fn on_staged(
        &mut self,
        (peer, hash, item, staged): Staged,
    ) -> Result<(), ExchangeError> {
        let now = mono_now();
        let Some(staged) = staged? else {
            // It did not hash to its name: that source is out, the item asked of others.
            self.wrong += 1;
            self.ex.counters.items_rejected.bump();
            self.ex.uploads.penalize(peer);
            self.sched.wrong(hash, now);
            return Ok(());
        };
        let len = item.len() as u64;
        if len > self.budget {
            return Err(ExchangeError::OverBudget {
                peer: peer.to_string(),
                budget: self.priority.byte_budget(),
            });
        }
        self.budget -= len;
        self.accept(peer, staged, len);
        self.ex.progress.advance(self.hash, len);
        let kind = self
            .walk
            .arrived(hash, item)
            .map_err(|e| ExchangeError::Store(e.to_string()))?;
        if kind == ItemKind::List {
            // Parsed into the walk: its bytes leave the window now.
            self.sched.done(&hash);
        }
        Ok(())
    }
}

/// The commit in flight (the caller checks there is one).
pub(super) async fn wait_commit(
    job: &mut Option<tokio::task::JoinHandle<Result<Vec<ContentHash>, StoreError>>>,
) -> Result<Result<Vec<ContentHash>, StoreError>, tokio::task::JoinError> {
    match job.as_mut() {
        Some(job) => job.await,
        None => std::future::pending().await,
    }
}
