//! Proof of retention: knowing which peers hold our files, and checking now and then that
//! they still do.
//!
//! **Placements.** When a node has fetched a file from a peer over a link
//! ([`crate::exchange::fetch`], whether for `kith file get` or for a background replication),
//! it tells that peer so with a `have` envelope whose data is the file's 32-byte content hash
//! (anything else is dropped and counted). The notice needs no answer and proves nothing by
//! itself; it comes over the authenticated link, so it names the peer truly. The peer records
//! a placement (agent, hash) only if it holds the file itself as a file (otherwise there is
//! nothing to check against), and at most [`kith_proto::Limits::max_placements_per_peer`] per
//! peer. [`record_placement`] is the same step for other code. Notices are handled off the
//! link task, a few at a time ([`MAX_NOTICES_IN_FLIGHT`]); beyond that they are dropped.
//!
//! **Checks.** A background task ([`spawn_scheduler`]) wakes every
//! [`kith_proto::Limits::retention_check_interval_ms`] and takes up to
//! [`kith_proto::Limits::retention_checks_per_round`] placements of currently linked peers not
//! checked within the interval, the longest unchecked first (a peer that is not linked is
//! skipped, not failed, and its placements wait). Each is checked with an initiator session
//! `chk ITEM NONCE` ([`crate::exchange::check_retention`]) and the result is committed to the
//! database before it is counted or reported. `kith peers --check AGENT` ([`check_peer`]) runs
//! one round for one peer at once, dialling it if needed. A placement of a file we no longer
//! hold ourselves is forgotten.
//!
//! Counters (`kith status --json`): `retention_checks_passed`, `retention_checks_failed`,
//! `retention_checks_inconclusive`, `retention_notices_sent`, `retention_notices_received`,
//! `retention_placements_recorded`, `retention_notices_refused` (file not held here, or the
//! peer's placements full), `retention_notices_dropped` (malformed, or too many at once),
//! `retention_placements_forgotten`.

use crate::exchange::{check_retention, CheckOutcome};
use crate::links::Outgoing;
use crate::node::NodeState;
use crate::ticket::unix_secs;
use kith_crypto::identity::AgentId;
use kith_proto::wire::{Command, Envelope};
use kith_store::meta::{CheckResult, Placement, PlacementOutcome};
use kith_store::ContentHash;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;

/// The envelope command of a placement notice.
pub const HAVE_COMMAND: &str = "have";

/// Placement notices handled at once; more are dropped (and counted) rather than queued.
pub const MAX_NOTICES_IN_FLIGHT: usize = 8;

/// The node's proof-of-retention state.
#[derive(Debug)]
pub struct Retention {
    notices: Arc<Semaphore>,
    /// One round of checks at a time (the scheduler's and `kith peers --check`).
    round: tokio::sync::Mutex<()>,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            notices: Arc::new(Semaphore::new(MAX_NOTICES_IN_FLIGHT)),
            round: tokio::sync::Mutex::new(()),
        }
    }
}

/// What one check of a placement showed, as `kith peers --check` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckReport {
    /// The peer.
    pub agent: String,
    /// The file.
    pub hash: String,
    /// The item of the file asked about.
    pub item: String,
    /// `passed`, `failed`, `inconclusive`, or `forgotten` (we no longer hold the file).
    pub result: String,
    /// Why it failed or was inconclusive.
    pub reason: Option<String>,
}

/// Tells `peer` we now hold the file `hash` (best effort: a notice that cannot be queued on
/// the link is dropped).
pub fn announce(state: &NodeState, peer: AgentId, hash: ContentHash) {
    let Some(tx) = state.links.sender(&peer) else {
        return;
    };
    let Ok(command) = Command::new(HAVE_COMMAND) else {
        return;
    };
    let notice = Envelope::new(command, hash.0.to_vec());
    if tx.try_send(Outgoing::Envelope(notice)).is_ok() {
        state.counters.bump("retention_notices_sent");
    }
}

/// Handles a `have` envelope from `peer` (called from [`NodeState::dispatch`]); never blocks.
pub fn dispatch(state: &Arc<NodeState>, peer: AgentId, envelope: Envelope) {
    state.counters.bump("retention_notices_received");
    let Some(hash) = parse_notice(&envelope.data) else {
        state.counters.bump("retention_notices_dropped");
        return;
    };
    let Ok(permit) = Arc::clone(&state.retention.notices).try_acquire_owned() else {
        state.counters.bump("retention_notices_dropped");
        return;
    };
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = record_placement(&state, peer, hash).await {
            tracing::warn!(peer = %peer, "could not record a placement: {e}");
        }
    });
}

/// The file a `have` notice names: its data must be exactly the 32-byte hash.
pub fn parse_notice(data: &[u8]) -> Option<ContentHash> {
    <[u8; 32]>::try_from(data).ok().map(ContentHash)
}

/// Records that `peer` holds our file `hash`, if we hold it as a file and the peer has room.
/// `Ok(None)` when we do not hold the file.
pub async fn record_placement(
    state: &NodeState,
    peer: AgentId,
    hash: ContentHash,
) -> Result<Option<PlacementOutcome>, String> {
    let max = state.config.limits.max_placements_per_peer;
    let now = unix_secs(SystemTime::now());
    let outcome = state
        .with_store(move |s| {
            if s.meta().get_file(&hash)?.is_none() {
                return Ok(None);
            }
            s.meta()
                .insert_placement(&peer.to_string(), &hash, now, max)
                .map(Some)
        })
        .await?
        .map_err(|e: kith_store::MetaError| e.to_string())?;
    match outcome {
        Some(PlacementOutcome::Recorded) => state.counters.bump("retention_placements_recorded"),
        Some(PlacementOutcome::AlreadyRecorded) => {}
        Some(PlacementOutcome::Full) | None => state.counters.bump("retention_notices_refused"),
    }
    Ok(outcome)
}

/// Checks up to `retention_checks_per_round` placements of `peer` now (the longest unchecked
/// first), dialling it if needed, and returns what each showed (already committed).
pub async fn check_peer(
    state: &Arc<NodeState>,
    peer: AgentId,
) -> Result<Vec<CheckReport>, crate::exchange::ExchangeError> {
    crate::net::ensure_link(state, peer).await?;
    let _round = state.retention.round.lock().await;
    let limit = state.config.limits.retention_checks_per_round;
    let agents = vec![peer.to_string()];
    let due = state
        .with_store(move |s| s.meta().due_placements(&agents, i64::MAX, limit))
        .await
        .map_err(crate::exchange::ExchangeError::Store)?
        .map_err(|e| crate::exchange::ExchangeError::Store(e.to_string()))?;
    let mut reports = Vec::with_capacity(due.len());
    for placement in due {
        reports.push(check_and_record(state, placement).await);
    }
    Ok(reports)
}

/// One round of background checks: placements of linked peers not checked within the
/// interval, the longest unchecked first.
pub async fn run_round(state: &Arc<NodeState>) -> Vec<CheckReport> {
    let _round = state.retention.round.lock().await;
    let linked: Vec<String> = state
        .links
        .linked()
        .iter()
        .map(ToString::to_string)
        .collect();
    if linked.is_empty() {
        return Vec::new();
    }
    let limits = &state.config.limits;
    let interval = i64::try_from(limits.retention_check_interval_ms / 1000).unwrap_or(i64::MAX);
    let checked_before = unix_secs(SystemTime::now()).saturating_sub(interval);
    let limit = limits.retention_checks_per_round;
    let due = match state
        .with_store(move |s| s.meta().due_placements(&linked, checked_before, limit))
        .await
    {
        Ok(Ok(due)) => due,
        Ok(Err(e)) => {
            tracing::warn!("retention checks: cannot read placements: {e}");
            return Vec::new();
        }
        Err(e) => {
            tracing::warn!("retention checks: {e}");
            return Vec::new();
        }
    };
    let mut reports = Vec::with_capacity(due.len());
    for placement in due {
        let Ok(agent) = placement.agent.parse::<AgentId>() else {
            continue;
        };
        // Linked when the round began, maybe not now: skipped, not failed.
        if !state.links.is_linked(&agent) {
            continue;
        }
        reports.push(check_and_record(state, placement).await);
    }
    reports
}

/// Runs [`run_round`] every `retention_check_interval_ms` until the node stops (not at all
/// when the interval is 0).
pub fn spawn_scheduler(state: Arc<NodeState>) {
    let every = state.config.limits.retention_check_interval_ms;
    if every == 0 {
        return;
    }
    let mut stopping = state.stopping();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(every));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate: nothing has been placed yet
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopping.changed() => return,
            }
            if state.is_stopping() {
                return;
            }
            run_round(&state).await;
        }
    });
}

/// Checks one placement, commits the result, then counts and reports it.
async fn check_and_record(state: &Arc<NodeState>, placement: Placement) -> CheckReport {
    let Ok(peer) = placement.agent.parse::<AgentId>() else {
        return report(
            &placement,
            placement.hash,
            "inconclusive",
            Some("bad agent id"),
        );
    };
    let hash = placement.hash;
    let (item, result) = match check_retention(state, peer, hash).await {
        CheckOutcome::Checked { item, result } => (item, result),
        CheckOutcome::NotHeldHere => {
            let agent = placement.agent.clone();
            let forgot = state
                .with_store(move |s| s.meta().remove_placement(&agent, &hash))
                .await;
            if matches!(forgot, Ok(Ok(true))) {
                state.counters.bump("retention_placements_forgotten");
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
    let now = unix_secs(SystemTime::now());
    let recorded = result.clone();
    let committed = state
        .with_store(move |s| s.meta().record_check(&agent, &hash, now, &recorded))
        .await;
    if let Err(e) = committed
        .as_ref()
        .map_err(|e| e.to_string())
        .and_then(|r| r.as_ref().map(|_| ()).map_err(|e| e.to_string()))
    {
        // Not durable, so not reported as a result.
        tracing::warn!(peer = %peer, "could not record the check of {hash}: {e}");
        return report(&placement, item, "inconclusive", Some(&e));
    }
    let (name, counter, reason) = match &result {
        CheckResult::Passed => ("passed", "retention_checks_passed", None),
        CheckResult::Failed(why) => ("failed", "retention_checks_failed", Some(why.as_str())),
        CheckResult::Inconclusive(why) => (
            "inconclusive",
            "retention_checks_inconclusive",
            Some(why.as_str()),
        ),
    };
    state.counters.bump(counter);
    if let CheckResult::Failed(why) = &result {
        tracing::info!(peer = %peer, "retention check of {hash} failed: {why}");
    }
    report(&placement, item, name, reason)
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
