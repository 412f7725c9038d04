//! Shared files and replicas: what this node offers its peers, and what it keeps for them.
//!
//! A *shared* file is one the user asked to replicate (`kith file share HASH`): the node offers
//! it to every linked peer and again to each peer that links later, so it spreads without the
//! user naming anyone. A *replica* is a file this node fetched because a peer offered it; replicas
//! count against the node's replica quota, and removing the file (`kith file rm`) removes the
//! row too (both tables reference `files` with `ON DELETE CASCADE`).
//!
use super::sql::{args, Sql};
use super::{decode_hash, size_to_db, MetaError};
use crate::address::ContentHash;

/// SQL for the migration that adds sharing (SQLite).
pub(crate) const SQLITE_MIGRATION: &str = "CREATE TABLE shared_files (
        hash TEXT PRIMARY KEY NOT NULL REFERENCES files(hash) ON DELETE CASCADE,
        shared_at INTEGER NOT NULL
    );
    CREATE TABLE replicas (
        hash TEXT PRIMARY KEY NOT NULL REFERENCES files(hash) ON DELETE CASCADE,
        from_agent TEXT NOT NULL,
        size INTEGER NOT NULL,
        replicated_at INTEGER NOT NULL
    );";

/// SQL for the migration that adds sharing (PostgreSQL).
pub(crate) const POSTGRES_MIGRATION: &str = "CREATE TABLE shared_files (
        hash TEXT PRIMARY KEY NOT NULL REFERENCES files(hash) ON DELETE CASCADE,
        shared_at BIGINT NOT NULL
    );
    CREATE TABLE replicas (
        hash TEXT PRIMARY KEY NOT NULL REFERENCES files(hash) ON DELETE CASCADE,
        from_agent TEXT NOT NULL,
        size BIGINT NOT NULL,
        replicated_at BIGINT NOT NULL
    );";

pub(super) fn share(c: &mut dyn Sql, hash: &ContentHash, now: i64) -> Result<bool, MetaError> {
    let added = c.execute(
        "sharing a file",
        "INSERT INTO shared_files (hash, shared_at) SELECT $1, $2
         WHERE EXISTS (SELECT 1 FROM files WHERE hash = $1)
         ON CONFLICT (hash) DO NOTHING",
        args![&hash.to_hex(), now],
    )?;
    Ok(added == 1)
}

pub(super) fn unshare(c: &mut dyn Sql, hash: &ContentHash) -> Result<bool, MetaError> {
    let removed = c.execute(
        "unsharing a file",
        "DELETE FROM shared_files WHERE hash = $1",
        args![&hash.to_hex()],
    )?;
    Ok(removed == 1)
}

pub(super) fn shared(c: &mut dyn Sql, limit: usize) -> Result<Vec<ContentHash>, MetaError> {
    c.query(
        "listing shared files",
        "SELECT hash FROM shared_files ORDER BY shared_at DESC, hash LIMIT $1",
        args![i64::try_from(limit).unwrap_or(i64::MAX)],
    )?
    .into_iter()
    .map(|row| decode_hash(&row.cols().text()?))
    .collect()
}

pub(super) fn record_replica(
    c: &mut dyn Sql,
    hash: &ContentHash,
    from: &str,
    size: u64,
    now: i64,
) -> Result<(), MetaError> {
    c.execute(
        "recording a replica",
        "INSERT INTO replicas (hash, from_agent, size, replicated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (hash) DO NOTHING",
        args![&hash.to_hex(), from, size_to_db(size)?, now],
    )?;
    Ok(())
}

pub(super) fn replica_bytes(c: &mut dyn Sql) -> Result<u64, MetaError> {
    let total = c.query_int(
        "summing replicas",
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM replicas",
        args![],
    )?;
    Ok(u64::try_from(total).unwrap_or(0))
}

/// Whether `item` is a shared file or an item of one: `file_items` lists every item a file
/// uses, its own included.
pub(super) fn item_shared(c: &mut dyn Sql, item: &ContentHash) -> Result<bool, MetaError> {
    c.query_bool(
        "checking whether an item is shared",
        "SELECT EXISTS (SELECT 1 FROM file_items fi JOIN shared_files s ON s.hash = fi.file_hash
                        WHERE fi.item_hash = $1)",
        args![&item.to_hex()],
    )
}
