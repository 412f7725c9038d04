//! Placements: which peers hold which of our files, and what checking them has shown.
//!
//! A placement is a claim "peer P holds file H" that this node records when P tells it so
//! after fetching H from it (and only for files this node holds itself). The node then checks
//! the claim now and then (proof of retention: `chk H NONCE`) and counts what the checks
//! showed, per placement: passed, failed (with the last failure's reason and time), and
//! inconclusive (the link went down or the peer did not answer in time, which says nothing
//! about the file). A failure also adds one to the peer's `retention_failures` in the key
//! store, in the same transaction, so the total outlives the placements it came from.
//!
//! Placements are bounded per peer (the caller passes the bound): a peer cannot make us keep
//! more rows about it than that by announcing files.

use crate::address::ContentHash;
use serde::{Deserialize, Serialize};

/// Longest failure reason kept, in bytes; longer ones are cut (at a character boundary).
pub const MAX_FAILURE_TEXT: usize = 256;

/// One peer holding one of our files, and what checking it has shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The peer (agent id).
    pub agent: String,
    /// The file.
    pub hash: ContentHash,
    /// When the placement was recorded, unix seconds.
    pub placed_at: i64,
    /// When it was last checked (whatever the result), unix seconds; `None` if never.
    pub last_check_at: Option<i64>,
    /// Checks the peer answered correctly.
    pub checks_passed: u64,
    /// Checks the peer failed (`(not found)`, a wrong answer, a protocol error).
    pub checks_failed: u64,
    /// Checks that showed nothing (link lost, no answer in time).
    pub checks_inconclusive: u64,
    /// Why the last failed check failed.
    pub last_failure: Option<String>,
    /// When the last failed check ran, unix seconds.
    pub last_failure_at: Option<i64>,
}

/// The result of one retention check, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "reason", rename_all = "snake_case")]
pub enum CheckResult {
    /// The peer's answer matched ours.
    Passed,
    /// The peer does not hold the file or answered wrongly; the reason.
    Failed(String),
    /// Nothing learnt (link lost, timeout, our own trouble); the reason.
    Inconclusive(String),
}

/// What [`super::MetaDb::insert_placement`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementOutcome {
    /// A new placement was recorded.
    Recorded,
    /// The placement was recorded already (kept as it was).
    AlreadyRecorded,
    /// The peer has as many placements as allowed; nothing recorded.
    Full,
}

/// A peer's retention results, summed over its placements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRetention {
    /// The peer (agent id).
    pub agent: String,
    /// Placements recorded (files of ours it holds, as far as we know).
    pub files_held: u64,
    /// Checks passed, all placements.
    pub checks_passed: u64,
    /// Checks failed, all placements.
    pub checks_failed: u64,
    /// Inconclusive checks, all placements.
    pub checks_inconclusive: u64,
    /// The most recent check, unix seconds.
    pub last_check_at: Option<i64>,
    /// The most recent failure's reason.
    pub last_failure: Option<String>,
    /// The file of the most recent failure.
    pub last_failure_hash: Option<ContentHash>,
    /// When the most recent failure happened, unix seconds.
    pub last_failure_at: Option<i64>,
}

/// The columns of a placement row, in the order [`placement_from_columns`] takes them.
pub(crate) const PLACEMENT_COLUMNS: &str = "agent, hash, placed_at, last_check_at, checks_passed,
    checks_failed, checks_inconclusive, last_failure, last_failure_at";

/// A placement row's columns as read (both backends), before validation.
pub(crate) struct PlacementRow {
    pub agent: String,
    pub hash: String,
    pub placed_at: i64,
    pub last_check_at: Option<i64>,
    pub passed: i64,
    pub failed: i64,
    pub inconclusive: i64,
    pub last_failure: Option<String>,
    pub last_failure_at: Option<i64>,
}

impl PlacementRow {
    pub(crate) fn decode(self) -> Result<Placement, super::MetaError> {
        let count = |n: i64| {
            u64::try_from(n).map_err(|_| {
                super::MetaError::BadRow(format!("negative count in placement of {}", self.hash))
            })
        };
        Ok(Placement {
            checks_passed: count(self.passed)?,
            checks_failed: count(self.failed)?,
            checks_inconclusive: count(self.inconclusive)?,
            hash: super::decode_hash(&self.hash)?,
            agent: self.agent,
            placed_at: self.placed_at,
            last_check_at: self.last_check_at,
            last_failure: self.last_failure,
            last_failure_at: self.last_failure_at,
        })
    }
}

/// A failure reason cut to [`MAX_FAILURE_TEXT`] bytes.
pub(crate) fn failure_text(reason: &str) -> String {
    if reason.len() <= MAX_FAILURE_TEXT {
        return reason.to_owned();
    }
    let mut end = MAX_FAILURE_TEXT;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// Per-peer sums as read (both backends): agent, files, passed, failed, inconclusive, last check.
pub(crate) type SumRow = (String, i64, i64, i64, i64, Option<i64>);

/// A peer's most recent failure as read: agent, hash, reason, time.
pub(crate) type FailureRow = (String, String, Option<String>, Option<i64>);

/// Builds per-peer results from the sums and each peer's most recent failure (when two
/// failures tie, the first row of the agent wins).
pub(crate) fn peer_retention(
    sums: Vec<SumRow>,
    failures: Vec<FailureRow>,
) -> Result<Vec<PeerRetention>, super::MetaError> {
    let count = |agent: &str, n: i64| {
        u64::try_from(n)
            .map_err(|_| super::MetaError::BadRow(format!("negative placement count for {agent}")))
    };
    let mut latest: std::collections::HashMap<String, (String, Option<String>, Option<i64>)> =
        std::collections::HashMap::with_capacity(failures.len());
    for (agent, hash, reason, at) in failures {
        latest.entry(agent).or_insert((hash, reason, at));
    }
    let mut out = Vec::with_capacity(sums.len());
    for (agent, files, passed, failed, inconclusive, last_check_at) in sums {
        let mut sum = PeerRetention {
            files_held: count(&agent, files)?,
            checks_passed: count(&agent, passed)?,
            checks_failed: count(&agent, failed)?,
            checks_inconclusive: count(&agent, inconclusive)?,
            last_check_at,
            ..PeerRetention::default()
        };
        if let Some((hash, reason, at)) = latest.remove(&agent) {
            sum.last_failure_hash = Some(super::decode_hash(&hash)?);
            sum.last_failure = reason;
            sum.last_failure_at = at;
        }
        sum.agent = agent;
        out.push(sum);
    }
    out.sort_by(|a, b| a.agent.cmp(&b.agent));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_failure_reasons_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_FAILURE_TEXT);
        let cut = failure_text(&long);
        assert!(cut.len() <= MAX_FAILURE_TEXT);
        assert!(long.starts_with(&cut));
        assert_eq!(failure_text("short"), "short");
    }
}
