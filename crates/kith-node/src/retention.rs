//! Proof of retention: knowing which peers hold our files, and checking now and then that
//! they still do.
//!
//! **Placements.** When a node has fetched a file from a peer over a link
//! ([`crate::exchange::Exchange::fetch`], whether for `kith file get` or for a background replication),
//! it tells that peer so with a `have` envelope whose data is the file's 32-byte content hash
//! (anything else is dropped and counted). The notice needs no answer and proves nothing by
//! itself; it comes over the authenticated link, so it names the peer truly. The peer records
//! a placement (agent, hash) only if it holds the file itself as a file (otherwise there is
//! nothing to check against), and at most [`crate::limits::NodeLimits::max_placements_per_peer`] per
//! peer. [`Retention::record_placement`] is the same step for other code. Notices are handled off the
//! link task, a few at a time ([`MAX_NOTICES_IN_FLIGHT`]); beyond that they are dropped.
//!
//! **Checks.** A background task ([`Retention::spawn_scheduler`]) wakes every
//! [`crate::limits::NodeLimits::retention_check_interval_ms`] and takes up to
//! [`crate::limits::NodeLimits::retention_checks_per_round`] placements of currently linked peers not
//! checked within the interval, the longest unchecked first (a peer that is not linked is
//! skipped, not failed, and its placements wait). Each is checked with an initiator session
//! `chk ITEM NONCE` ([`crate::exchange::Exchange::check_retention`]) and the result is committed to the
//! database before it is counted or reported. `kith peers --check AGENT` ([`Retention::check_peer`]) runs
//! one round for one peer at once, dialling it if needed. A placement of a file we no longer
//! hold ourselves is forgotten.
//!
//! Counters (`kith status --json`): `retention_checks_passed`, `retention_checks_failed`,
//! `retention_checks_inconclusive`, `retention_notices_sent`, `retention_notices_received`,
//! `retention_placements_recorded`, `retention_notices_refused` (file not held here, or the
//! peer's placements full), `retention_notices_dropped` (malformed, or too many at once),
//! `retention_placements_forgotten`.

use crate::api::CheckReport;
use crate::clock::SharedClock;
use crate::endpoint::{Endpoint, Payload};
use crate::exchange::{CheckOutcome, Exchange, ExchangeError, HAVE_COMMAND};
use crate::limits::NodeLimits;
use crate::protocol::ProtocolHandler;
use crate::store::{Store, StoreFailure};
use kith_crypto::identity::AgentId;
use kith_store::meta::{CheckResult, Placement, PlacementOutcome};
use kith_store::ContentHash;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Placement notices handled at once; more are dropped (and counted) rather than queued.
pub const MAX_NOTICES_IN_FLIGHT: usize = 8;

crate::counters! {
    /// What proof of retention counts.
    pub struct RetentionCounters {
        /// Checks the peer passed.
        retention_checks_passed,
        /// Checks the peer failed (lost or lying).
        retention_checks_failed,
        /// Checks that showed nothing (peer away, session failed).
        retention_checks_inconclusive,
        /// Placement notices received.
        retention_notices_received,
        /// Placements recorded from notices.
        retention_placements_recorded,
        /// Notices refused (file not held here, or the peer's placements full).
        retention_notices_refused,
        /// Notices dropped (malformed, or too many at once).
        retention_notices_dropped,
        /// Placements forgotten because we no longer hold the file.
        retention_placements_forgotten,
    }
}

/// The proof-of-retention service: a handle, cheap to clone.
#[derive(Debug, Clone)]
pub struct Retention {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Endpoint,
    store: Store,
    exchange: Exchange,
    limits: NodeLimits,
    clock: SharedClock,
    notices: Arc<Semaphore>,
    /// One round of checks at a time (the scheduler's and `kith peers --check`).
    round: tokio::sync::Mutex<()>,
    counters: RetentionCounters,
}

impl Retention {
    /// The service: notices recorded in `store`, checks run as `exchange` sessions.
    pub fn new(
        endpoint: Endpoint,
        store: Store,
        exchange: Exchange,
        limits: NodeLimits,
        clock: SharedClock,
    ) -> Retention {
        Retention {
            inner: Arc::new(Inner {
                endpoint,
                store,
                exchange,
                limits,
                clock,
                notices: Arc::new(Semaphore::new(MAX_NOTICES_IN_FLIGHT)),
                round: tokio::sync::Mutex::new(()),
                counters: RetentionCounters::default(),
            }),
        }
    }

    /// What this service counts.
    pub fn counters(&self) -> &RetentionCounters {
        &self.inner.counters
    }

    /// Records that `peer` holds our file `hash`, if we hold it as a file and the peer has
    /// room. `Ok(None)` when we do not hold the file.
    pub async fn record_placement(
        &self,
        peer: AgentId,
        hash: ContentHash,
    ) -> Result<Option<PlacementOutcome>, StoreFailure> {
        let inner = &self.inner;
        let max = inner.limits.max_placements_per_peer;
        let now = inner.clock.unix_secs();
        let outcome = inner
            .store
            .run(move |s| {
                if s.meta().get_file(&hash)?.is_none() {
                    return Ok(None);
                }
                s.meta()
                    .insert_placement(&peer.to_string(), &hash, now, max)
                    .map(Some)
            })
            .await?;
        match outcome {
            Some(PlacementOutcome::Recorded) => inner.counters.retention_placements_recorded.bump(),
            Some(PlacementOutcome::AlreadyRecorded) => {}
            Some(PlacementOutcome::Full) | None => inner.counters.retention_notices_refused.bump(),
        }
        Ok(outcome)
    }

    /// Checks up to `retention_checks_per_round` placements of `peer` now (the longest
    /// unchecked first), dialling it if needed, and returns what each showed (already
    /// committed).
    pub async fn check_peer(&self, peer: AgentId) -> Result<Vec<CheckReport>, ExchangeError> {
        let inner = &self.inner;
        inner.endpoint.ensure_link(peer).await?;
        let _round = inner.round.lock().await;
        let limit = inner.limits.retention_checks_per_round;
        let agents = vec![peer.to_string()];
        let due = inner
            .store
            .run(move |s| s.meta().due_placements(&agents, i64::MAX, limit))
            .await?;
        let mut reports = Vec::with_capacity(due.len());
        for placement in due {
            reports.push(self.check_and_record(placement).await);
        }
        Ok(reports)
    }

    /// One round of background checks: placements of linked peers not checked within the
    /// interval, the longest unchecked first.
    pub async fn run_round(&self) -> Vec<CheckReport> {
        let inner = &self.inner;
        let _round = inner.round.lock().await;
        let linked: Vec<String> = inner
            .endpoint
            .linked()
            .iter()
            .map(ToString::to_string)
            .collect();
        if linked.is_empty() {
            return Vec::new();
        }
        let limits = &inner.limits;
        let interval = i64::try_from(limits.retention_check_interval_ms / 1000).unwrap_or(i64::MAX);
        let checked_before = inner.clock.unix_secs().saturating_sub(interval);
        let limit = limits.retention_checks_per_round;
        let due = match inner
            .store
            .run(move |s| s.meta().due_placements(&linked, checked_before, limit))
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!("retention checks: cannot read placements: {e}");
                return Vec::new();
            }
        };
        let mut reports = Vec::with_capacity(due.len());
        for placement in due {
            let Ok(agent) = placement.agent.parse::<AgentId>() else {
                continue;
            };
            // Linked when the round began, maybe not now: skipped, not failed.
            if !inner.endpoint.is_linked(&agent) {
                continue;
            }
            reports.push(self.check_and_record(placement).await);
        }
        reports
    }

    /// Runs [`Retention::run_round`] every `retention_check_interval_ms` until `cancel` (not
    /// at all when the interval is 0).
    pub fn spawn_scheduler(&self, tracker: &TaskTracker, cancel: CancellationToken) {
        let every = self.inner.limits.retention_check_interval_ms;
        if every == 0 {
            return;
        }
        let this = self.clone();
        tracker.spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(every));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is immediate: nothing has been placed yet
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = cancel.cancelled() => return,
                }
                tokio::select! {
                    _ = this.run_round() => {}
                    _ = cancel.cancelled() => return,
                }
            }
        });
    }

    /// Checks one placement, commits the result, then counts and reports it.
    async fn check_and_record(&self, placement: Placement) -> CheckReport {
        let inner = &self.inner;
        let Ok(peer) = placement.agent.parse::<AgentId>() else {
            return report(
                &placement,
                placement.hash,
                "inconclusive",
                Some("bad agent id"),
            );
        };
        let hash = placement.hash;
        let (item, result) = match inner.exchange.check_retention(peer, hash).await {
            CheckOutcome::Checked { item, result } => (item, result),
            CheckOutcome::NotHeldHere => {
                let agent = placement.agent.clone();
                let forgot = inner
                    .store
                    .run(move |s| s.meta().remove_placement(&agent, &hash))
                    .await;
                if matches!(forgot, Ok(true)) {
                    inner.counters.retention_placements_forgotten.bump();
                }
                return report(
                    &placement,
                    hash,
                    "forgotten",
                    Some("we no longer hold the file"),
                );
            }
        };
        let agent = placement.agent.clone();
        let now = inner.clock.unix_secs();
        let recorded = result.clone();
        let committed = inner
            .store
            .run(move |s| s.meta().record_check(&agent, &hash, now, &recorded))
            .await;
        if let Err(e) = committed {
            // Not durable, so not reported as a result.
            tracing::warn!(peer = %peer, "could not record the check of {hash}: {e}");
            return report(&placement, item, "inconclusive", Some(&e.to_string()));
        }
        let (name, reason) = match &result {
            CheckResult::Passed => {
                inner.counters.retention_checks_passed.bump();
                ("passed", None)
            }
            CheckResult::Failed(why) => {
                inner.counters.retention_checks_failed.bump();
                tracing::info!(peer = %peer, "retention check of {hash} failed: {why}");
                ("failed", Some(why.as_str()))
            }
            CheckResult::Inconclusive(why) => {
                inner.counters.retention_checks_inconclusive.bump();
                ("inconclusive", Some(why.as_str()))
            }
        };
        report(&placement, item, name, reason)
    }
}

impl ProtocolHandler for Retention {
    fn commands(&self) -> &'static [&'static str] {
        &[HAVE_COMMAND]
    }

    /// A `have` notice from `peer`: recorded off the link task, a few at a time.
    fn on_payload(&self, peer: AgentId, payload: Payload) {
        let counters = &self.inner.counters;
        counters.retention_notices_received.bump();
        let hash = match &payload {
            Payload::Envelope(envelope) => parse_notice(&envelope.data),
            Payload::Json(_) => None,
        };
        let Some(hash) = hash else {
            counters.retention_notices_dropped.bump();
            return;
        };
        let Ok(permit) = Arc::clone(&self.inner.notices).try_acquire_owned() else {
            counters.retention_notices_dropped.bump();
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = this.record_placement(peer, hash).await {
                tracing::warn!(peer = %peer, "could not record a placement: {e}");
            }
        });
    }
}

/// The file a `have` notice names: its data must be exactly the 32-byte hash.
pub fn parse_notice(data: &[u8]) -> Option<ContentHash> {
    <[u8; 32]>::try_from(data).ok().map(ContentHash)
}

fn report(
    placement: &Placement,
    item: ContentHash,
    result: &str,
    reason: Option<&str>,
) -> CheckReport {
    CheckReport {
        agent: placement.agent.clone(),
        hash: placement.hash.to_hex(),
        item: item.to_hex(),
        result: result.to_owned(),
        reason: reason.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_notice_is_exactly_one_hash() {
        let hash = ContentHash([7; 32]);
        assert_eq!(parse_notice(&hash.0), Some(hash));
        assert_eq!(parse_notice(&[7; 31]), None);
        assert_eq!(parse_notice(&[7; 33]), None);
        assert_eq!(parse_notice(&[]), None);
    }

    proptest! {
        #[test]
        fn arbitrary_notice_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let parsed = parse_notice(&data);
            prop_assert_eq!(parsed.is_some(), data.len() == 32);
        }
    }
}
