//! Placements on PostgreSQL (see [`crate::meta::placements`]).

use postgres::{Client, GenericClient, Row};

use super::query_err;
use crate::address::ContentHash;
use crate::meta::placements::{
    failure_text, peer_retention, CheckResult, PeerRetention, Placement, PlacementOutcome,
    PlacementRow, PLACEMENT_COLUMNS,
};
use crate::meta::MetaError;

/// Namespace of the advisory locks that serialise placements of one agent (the second key is
/// derived from the agent id by the server).
const PLACEMENT_LOCK: i32 = 0x6b69_7404;

fn bad(e: postgres::Error) -> MetaError {
    MetaError::BadRow(e.to_string())
}

fn decode(row: &Row) -> Result<Placement, MetaError> {
    PlacementRow {
        agent: row.try_get(0).map_err(bad)?,
        hash: row.try_get(1).map_err(bad)?,
        placed_at: row.try_get(2).map_err(bad)?,
        last_check_at: row.try_get(3).map_err(bad)?,
        passed: row.try_get(4).map_err(bad)?,
        failed: row.try_get(5).map_err(bad)?,
        inconclusive: row.try_get(6).map_err(bad)?,
        last_failure: row.try_get(7).map_err(bad)?,
        last_failure_at: row.try_get(8).map_err(bad)?,
    }
    .decode()
}

pub(super) fn insert(
    client: &mut Client,
    agent: &str,
    hash: &ContentHash,
    now: i64,
    max_per_agent: u64,
) -> Result<PlacementOutcome, MetaError> {
    let mut tx = client
        .transaction()
        .map_err(query_err("starting placement"))?;
    // Two processes placing files with one agent at once: the count and the insert must not
    // interleave, or the bound could be passed.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&PLACEMENT_LOCK, &agent],
    )
    .map_err(query_err("locking placements"))?;
    let hex = hash.to_hex();
    let known = tx
        .query_opt(
            "SELECT 1 FROM placements WHERE agent = $1 AND hash = $2",
            &[&agent, &hex],
        )
        .map_err(query_err("reading placement"))?;
    if known.is_some() {
        return Ok(PlacementOutcome::AlreadyRecorded);
    }
    let held: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM placements WHERE agent = $1",
            &[&agent],
        )
        .map_err(query_err("counting placements"))?
        .try_get(0)
        .map_err(bad)?;
    if u64::try_from(held).unwrap_or(0) >= max_per_agent {
        return Ok(PlacementOutcome::Full);
    }
    tx.execute(
        "INSERT INTO placements (agent, hash, placed_at) VALUES ($1, $2, $3)",
        &[&agent, &hex, &now],
    )
    .map_err(query_err("recording placement"))?;
    tx.commit().map_err(query_err("committing placement"))?;
    Ok(PlacementOutcome::Recorded)
}

pub(super) fn due(
    client: &mut Client,
    agents: &[String],
    checked_before: i64,
    limit: usize,
) -> Result<Vec<Placement>, MetaError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let agents = agents.to_vec();
    client
        .query(
            &format!(
                "SELECT {PLACEMENT_COLUMNS} FROM placements
                 WHERE agent = ANY($1) AND (last_check_at IS NULL OR last_check_at < $2)
                 ORDER BY COALESCE(last_check_at, -1), placed_at, agent, hash LIMIT $3"
            ),
            &[&agents, &checked_before, &limit],
        )
        .map_err(query_err("reading placements"))?
        .iter()
        .map(decode)
        .collect()
}

pub(super) fn of_agent(client: &mut Client, agent: &str) -> Result<Vec<Placement>, MetaError> {
    client
        .query(
            &format!("SELECT {PLACEMENT_COLUMNS} FROM placements WHERE agent = $1 ORDER BY hash"),
            &[&agent],
        )
        .map_err(query_err("reading placements"))?
        .iter()
        .map(decode)
        .collect()
}

pub(super) fn record_check(
    client: &mut Client,
    agent: &str,
    hash: &ContentHash,
    now: i64,
    result: &CheckResult,
) -> Result<bool, MetaError> {
    let mut tx = client
        .transaction()
        .map_err(query_err("starting check record"))?;
    let hex = hash.to_hex();
    let changed = match result {
        CheckResult::Passed => tx.execute(
            "UPDATE placements SET last_check_at = $3, checks_passed = checks_passed + 1
             WHERE agent = $1 AND hash = $2",
            &[&agent, &hex, &now],
        ),
        CheckResult::Inconclusive(_) => tx.execute(
            "UPDATE placements SET last_check_at = $3,
                checks_inconclusive = checks_inconclusive + 1
             WHERE agent = $1 AND hash = $2",
            &[&agent, &hex, &now],
        ),
        CheckResult::Failed(reason) => tx.execute(
            "UPDATE placements SET last_check_at = $3, checks_failed = checks_failed + 1,
                last_failure = $4, last_failure_at = $3
             WHERE agent = $1 AND hash = $2",
            &[&agent, &hex, &now, &failure_text(reason)],
        ),
    }
    .map_err(query_err("recording check"))?;
    if changed == 0 {
        return Ok(false);
    }
    if matches!(result, CheckResult::Failed(_)) {
        tx.execute(
            "UPDATE peers SET retention_failures = retention_failures + 1 WHERE agent = $1",
            &[&agent],
        )
        .map_err(query_err("counting retention failure"))?;
    }
    tx.commit().map_err(query_err("committing check record"))?;
    Ok(true)
}

pub(super) fn remove(
    client: &mut Client,
    agent: &str,
    hash: &ContentHash,
) -> Result<bool, MetaError> {
    let removed = client
        .execute(
            "DELETE FROM placements WHERE agent = $1 AND hash = $2",
            &[&agent, &hash.to_hex()],
        )
        .map_err(query_err("removing placement"))?;
    Ok(removed > 0)
}

pub(super) fn by_peer(client: &mut impl GenericClient) -> Result<Vec<PeerRetention>, MetaError> {
    let op = "summing placements";
    // SUM of BIGINT is NUMERIC in PostgreSQL: cast back.
    let sums = client
        .query(
            "SELECT agent, COUNT(*), COALESCE(SUM(checks_passed), 0)::BIGINT,
                COALESCE(SUM(checks_failed), 0)::BIGINT,
                COALESCE(SUM(checks_inconclusive), 0)::BIGINT, MAX(last_check_at)
             FROM placements GROUP BY agent ORDER BY agent",
            &[],
        )
        .map_err(query_err(op))?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(bad)?,
                r.try_get(1).map_err(bad)?,
                r.try_get(2).map_err(bad)?,
                r.try_get(3).map_err(bad)?,
                r.try_get(4).map_err(bad)?,
                r.try_get(5).map_err(bad)?,
            ))
        })
        .collect::<Result<Vec<_>, MetaError>>()?;
    let failures = client
        .query(
            "SELECT p.agent, p.hash, p.last_failure, p.last_failure_at FROM placements p
             WHERE p.last_failure_at = (SELECT MAX(q.last_failure_at) FROM placements q
                                        WHERE q.agent = p.agent)
             ORDER BY p.agent, p.hash",
            &[],
        )
        .map_err(query_err(op))?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(bad)?,
                r.try_get(1).map_err(bad)?,
                r.try_get(2).map_err(bad)?,
                r.try_get(3).map_err(bad)?,
            ))
        })
        .collect::<Result<Vec<_>, MetaError>>()?;
    peer_retention(sums, failures)
}
