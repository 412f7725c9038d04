//! Placements on SQLite (see [`crate::meta::placements`]).

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};

use super::query_err;
use crate::address::ContentHash;
use crate::meta::placements::{
    failure_text, peer_retention, CheckResult, PeerRetention, Placement, PlacementOutcome,
    PlacementRow, PLACEMENT_COLUMNS,
};
use crate::meta::MetaError;

/// Agents per query of [`due`]: well under SQLite's limit on bound parameters.
const AGENTS_PER_QUERY: usize = 500;

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PlacementRow> {
    Ok(PlacementRow {
        agent: row.get(0)?,
        hash: row.get(1)?,
        placed_at: row.get(2)?,
        last_check_at: row.get(3)?,
        passed: row.get(4)?,
        failed: row.get(5)?,
        inconclusive: row.get(6)?,
        last_failure: row.get(7)?,
        last_failure_at: row.get(8)?,
    })
}

fn collect(
    rows: impl Iterator<Item = rusqlite::Result<PlacementRow>>,
) -> Result<Vec<Placement>, MetaError> {
    rows.map(|row| row.map_err(query_err("reading placements"))?.decode())
        .collect()
}

pub(super) fn insert(
    conn: &mut Connection,
    agent: &str,
    hash: &ContentHash,
    now: i64,
    max_per_agent: u64,
) -> Result<PlacementOutcome, MetaError> {
    // IMMEDIATE: the count and the insert see the same rows, whoever else writes.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(query_err("starting placement"))?;
    let hex = hash.to_hex();
    let known = tx
        .query_row(
            "SELECT 1 FROM placements WHERE agent = ?1 AND hash = ?2",
            params![agent, hex],
            |_| Ok(()),
        )
        .optional()
        .map_err(query_err("reading placement"))?;
    if known.is_some() {
        return Ok(PlacementOutcome::AlreadyRecorded);
    }
    let held: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM placements WHERE agent = ?1",
            params![agent],
            |row| row.get(0),
        )
        .map_err(query_err("counting placements"))?;
    if u64::try_from(held).unwrap_or(0) >= max_per_agent {
        return Ok(PlacementOutcome::Full);
    }
    tx.execute(
        "INSERT INTO placements (agent, hash, placed_at) VALUES (?1, ?2, ?3)",
        params![agent, hex, now],
    )
    .map_err(query_err("recording placement"))?;
    tx.commit().map_err(query_err("committing placement"))?;
    Ok(PlacementOutcome::Recorded)
}

pub(super) fn due(
    conn: &mut Connection,
    agents: &[String],
    checked_before: i64,
    limit: usize,
) -> Result<Vec<Placement>, MetaError> {
    let limit_db = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut found = Vec::new();
    for chunk in agents.chunks(AGENTS_PER_QUERY) {
        // Only `?` placeholders are generated here; every value is bound.
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT {PLACEMENT_COLUMNS} FROM placements
             WHERE agent IN ({marks}) AND (last_check_at IS NULL OR last_check_at < ?)
             ORDER BY COALESCE(last_check_at, -1), placed_at, agent, hash LIMIT ?"
        );
        let mut stmt = conn
            .prepare(&sql)
            .map_err(query_err("reading placements"))?;
        let values = chunk
            .iter()
            .map(|a| rusqlite::types::Value::Text(a.clone()))
            .chain([
                rusqlite::types::Value::Integer(checked_before),
                rusqlite::types::Value::Integer(limit_db),
            ]);
        let rows = stmt
            .query_map(params_from_iter(values), read_row)
            .map_err(query_err("reading placements"))?;
        found.extend(collect(rows)?);
    }
    found.sort_by(|a, b| {
        (
            a.last_check_at.unwrap_or(-1),
            a.placed_at,
            &a.agent,
            a.hash.0,
        )
            .cmp(&(
                b.last_check_at.unwrap_or(-1),
                b.placed_at,
                &b.agent,
                b.hash.0,
            ))
    });
    found.truncate(limit);
    Ok(found)
}

pub(super) fn of_agent(conn: &mut Connection, agent: &str) -> Result<Vec<Placement>, MetaError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {PLACEMENT_COLUMNS} FROM placements WHERE agent = ?1 ORDER BY hash"
        ))
        .map_err(query_err("reading placements"))?;
    let rows = stmt
        .query_map(params![agent], read_row)
        .map_err(query_err("reading placements"))?;
    collect(rows)
}

pub(super) fn record_check(
    conn: &mut Connection,
    agent: &str,
    hash: &ContentHash,
    now: i64,
    result: &CheckResult,
) -> Result<bool, MetaError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(query_err("starting check record"))?;
    let hex = hash.to_hex();
    let changed = match result {
        CheckResult::Passed => tx.execute(
            "UPDATE placements SET last_check_at = ?3, checks_passed = checks_passed + 1
             WHERE agent = ?1 AND hash = ?2",
            params![agent, hex, now],
        ),
        CheckResult::Inconclusive(_) => tx.execute(
            "UPDATE placements SET last_check_at = ?3,
                checks_inconclusive = checks_inconclusive + 1
             WHERE agent = ?1 AND hash = ?2",
            params![agent, hex, now],
        ),
        CheckResult::Failed(reason) => tx.execute(
            "UPDATE placements SET last_check_at = ?3, checks_failed = checks_failed + 1,
                last_failure = ?4, last_failure_at = ?3
             WHERE agent = ?1 AND hash = ?2",
            params![agent, hex, now, failure_text(reason)],
        ),
    }
    .map_err(query_err("recording check"))?;
    if changed == 0 {
        return Ok(false);
    }
    if matches!(result, CheckResult::Failed(_)) {
        tx.execute(
            "UPDATE peers SET retention_failures = retention_failures + 1 WHERE agent = ?1",
            params![agent],
        )
        .map_err(query_err("counting retention failure"))?;
    }
    tx.commit().map_err(query_err("committing check record"))?;
    Ok(true)
}

pub(super) fn remove(
    conn: &mut Connection,
    agent: &str,
    hash: &ContentHash,
) -> Result<bool, MetaError> {
    let removed = conn
        .execute(
            "DELETE FROM placements WHERE agent = ?1 AND hash = ?2",
            params![agent, hash.to_hex()],
        )
        .map_err(query_err("removing placement"))?;
    Ok(removed > 0)
}

pub(super) fn by_peer(conn: &mut Connection) -> Result<Vec<PeerRetention>, MetaError> {
    let op = "summing placements";
    let mut stmt = conn
        .prepare(
            "SELECT agent, COUNT(*), COALESCE(SUM(checks_passed), 0),
                COALESCE(SUM(checks_failed), 0), COALESCE(SUM(checks_inconclusive), 0),
                MAX(last_check_at)
             FROM placements GROUP BY agent ORDER BY agent",
        )
        .map_err(query_err(op))?;
    let sums = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .map_err(query_err(op))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(query_err(op))?;
    let mut stmt = conn
        .prepare(
            "SELECT p.agent, p.hash, p.last_failure, p.last_failure_at FROM placements p
             WHERE p.last_failure_at = (SELECT MAX(q.last_failure_at) FROM placements q
                                        WHERE q.agent = p.agent)
             ORDER BY p.agent, p.hash",
        )
        .map_err(query_err(op))?;
    let failures = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(query_err(op))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(query_err(op))?;
    peer_retention(sums, failures)
}
