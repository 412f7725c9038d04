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

use super::sql::{args, lock, placeholders, Row, Sql, Value};
use super::MetaError;
use crate::address::ContentHash;
use serde::{Deserialize, Serialize};

/// Agents per query of [`due`]: well under both backends' limits on bound parameters.
const AGENTS_PER_QUERY: usize = 500;

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

const PLACEMENT_COLUMNS: &str = "agent, hash, placed_at, last_check_at, checks_passed,
    checks_failed, checks_inconclusive, last_failure, last_failure_at";

fn placement(row: Row) -> Result<Placement, MetaError> {
    let mut c = row.cols();
    let (agent, hash) = (c.text()?, c.text()?);
    let placed_at = c.int()?;
    let last_check_at = c.opt_int()?;
    let mut count = || -> Result<u64, MetaError> {
        u64::try_from(c.int()?)
            .map_err(|_| MetaError::BadRow(format!("negative count in placement of {hash}")))
    };
    let (checks_passed, checks_failed, checks_inconclusive) = (count()?, count()?, count()?);
    Ok(Placement {
        checks_passed,
        checks_failed,
        checks_inconclusive,
        last_failure: c.opt_text()?,
        last_failure_at: c.opt_int()?,
        hash: super::decode_hash(&hash)?,
        agent,
        placed_at,
        last_check_at,
    })
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

pub(super) fn insert(
    tx: &mut dyn Sql,
    agent: &str,
    hash: &ContentHash,
    now: i64,
    max_per_agent: u64,
) -> Result<PlacementOutcome, MetaError> {
    // Two processes placing files with one agent at once: the count and the insert must not
    // interleave, or the bound could be passed.
    tx.serialize("locking placements", lock::PLACEMENT, agent)?;
    let hex = hash.to_hex();
    let known = tx.query_opt(
        "reading placement",
        "SELECT 1 FROM placements WHERE agent = $1 AND hash = $2",
        args![agent, &hex],
    )?;
    if known.is_some() {
        return Ok(PlacementOutcome::AlreadyRecorded);
    }
    let held = tx.query_int(
        "counting placements",
        "SELECT COUNT(*) FROM placements WHERE agent = $1",
        args![agent],
    )?;
    if u64::try_from(held).unwrap_or(0) >= max_per_agent {
        return Ok(PlacementOutcome::Full);
    }
    tx.execute(
        "recording placement",
        "INSERT INTO placements (agent, hash, placed_at) VALUES ($1, $2, $3)",
        args![agent, &hex, now],
    )?;
    Ok(PlacementOutcome::Recorded)
}

pub(super) fn due(
    c: &mut dyn Sql,
    agents: &[String],
    checked_before: i64,
    limit: usize,
) -> Result<Vec<Placement>, MetaError> {
    let limit_db = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut found = Vec::new();
    for chunk in agents.chunks(AGENTS_PER_QUERY) {
        let n = chunk.len();
        // Only placeholders are generated here; every value is bound.
        let sql = format!(
            "SELECT {PLACEMENT_COLUMNS} FROM placements
             WHERE agent IN ({}) AND (last_check_at IS NULL OR last_check_at < ${})
             ORDER BY COALESCE(last_check_at, -1), placed_at, agent, hash LIMIT ${}",
            placeholders(1, n),
            n + 1,
            n + 2
        );
        let mut bound: Vec<Value<'_>> = chunk.iter().map(|a| Value::Text(a)).collect();
        bound.extend([Value::Int(checked_before), Value::Int(limit_db)]);
        for row in c.query("reading placements", &sql, &bound)? {
            found.push(placement(row)?);
        }
    }
    let key = |p: &Placement| {
        (
            p.last_check_at.unwrap_or(-1),
            p.placed_at,
            p.agent.clone(),
            p.hash.0,
        )
    };
    found.sort_by_key(key);
    found.truncate(limit);
    Ok(found)
}

pub(super) fn of_agent(c: &mut dyn Sql, agent: &str) -> Result<Vec<Placement>, MetaError> {
    c.query(
        "reading placements",
        &format!("SELECT {PLACEMENT_COLUMNS} FROM placements WHERE agent = $1 ORDER BY hash"),
        args![agent],
    )?
    .into_iter()
    .map(placement)
    .collect()
}

pub(super) fn record_check(
    tx: &mut dyn Sql,
    agent: &str,
    hash: &ContentHash,
    now: i64,
    result: &CheckResult,
) -> Result<bool, MetaError> {
    let hex = hash.to_hex();
    let changed = match result {
        CheckResult::Passed => tx.execute(
            "recording check",
            "UPDATE placements SET last_check_at = $3, checks_passed = checks_passed + 1
             WHERE agent = $1 AND hash = $2",
            args![agent, &hex, now],
        ),
        CheckResult::Inconclusive(_) => tx.execute(
            "recording check",
            "UPDATE placements SET last_check_at = $3,
                checks_inconclusive = checks_inconclusive + 1
             WHERE agent = $1 AND hash = $2",
            args![agent, &hex, now],
        ),
        CheckResult::Failed(reason) => tx.execute(
            "recording check",
            "UPDATE placements SET last_check_at = $3, checks_failed = checks_failed + 1,
                last_failure = $4, last_failure_at = $3
             WHERE agent = $1 AND hash = $2",
            args![agent, &hex, now, &failure_text(reason)],
        ),
    }?;
    if changed == 0 {
        return Ok(false);
    }
    if matches!(result, CheckResult::Failed(_)) {
        tx.execute(
            "counting retention failure",
            "UPDATE peers SET retention_failures = retention_failures + 1 WHERE agent = $1",
            args![agent],
        )?;
    }
    Ok(true)
}

pub(super) fn remove(c: &mut dyn Sql, agent: &str, hash: &ContentHash) -> Result<bool, MetaError> {
    let removed = c.execute(
        "removing placement",
        "DELETE FROM placements WHERE agent = $1 AND hash = $2",
        args![agent, &hash.to_hex()],
    )?;
    Ok(removed > 0)
}

/// Per-peer sums, then each peer's most recent failure (when two failures tie, the first row
/// of the agent wins).
pub(super) fn by_peer(c: &mut dyn Sql) -> Result<Vec<PeerRetention>, MetaError> {
    let op = "summing placements";
    let count = |agent: &str, n: i64| {
        u64::try_from(n)
            .map_err(|_| MetaError::BadRow(format!("negative placement count for {agent}")))
    };
    // SUM of BIGINT is NUMERIC in PostgreSQL: cast back.
    let mut out = Vec::new();
    for row in c.query(
        op,
        "SELECT agent, COUNT(*), CAST(COALESCE(SUM(checks_passed), 0) AS BIGINT),
            CAST(COALESCE(SUM(checks_failed), 0) AS BIGINT),
            CAST(COALESCE(SUM(checks_inconclusive), 0) AS BIGINT), MAX(last_check_at)
         FROM placements GROUP BY agent ORDER BY agent",
        args![],
    )? {
        let mut c = row.cols();
        let agent = c.text()?;
        out.push(PeerRetention {
            files_held: count(&agent, c.int()?)?,
            checks_passed: count(&agent, c.int()?)?,
            checks_failed: count(&agent, c.int()?)?,
            checks_inconclusive: count(&agent, c.int()?)?,
            last_check_at: c.opt_int()?,
            agent,
            ..PeerRetention::default()
        });
    }
    let mut latest = std::collections::HashMap::new();
    for row in c.query(
        op,
        "SELECT p.agent, p.hash, p.last_failure, p.last_failure_at FROM placements p
         WHERE p.last_failure_at = (SELECT MAX(q.last_failure_at) FROM placements q
                                    WHERE q.agent = p.agent)
         ORDER BY p.agent, p.hash",
        args![],
    )? {
        let mut c = row.cols();
        let agent = c.text()?;
        if let std::collections::hash_map::Entry::Vacant(slot) = latest.entry(agent) {
            slot.insert((c.text()?, c.opt_text()?, c.opt_int()?));
        }
    }
    for sum in &mut out {
        if let Some((hash, reason, at)) = latest.remove(&sum.agent) {
            sum.last_failure_hash = Some(super::decode_hash(&hash)?);
            sum.last_failure = reason;
            sum.last_failure_at = at;
        }
    }
    // Byte order, whatever the database's collation.
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
