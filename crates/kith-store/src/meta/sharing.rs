//! Shared files and replicas: what this node offers its peers, and what it keeps for them.
//!
//! A *shared* file is one the user asked to replicate (`kith file share HASH`): the node offers
//! it to every linked peer and again to each peer that links later, so it spreads without the
//! user naming anyone. A *replica* is a file this node fetched because a peer offered it; replicas
//! count against the node's replica quota, and removing the file (`kith file rm`) removes the
//! row too (both tables reference `files` with `ON DELETE CASCADE`).
//!
//! The SQL lives here once per backend; `sqlite.rs` and `pg.rs` only delegate, so the two
//! cannot drift apart in meaning.

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

/// The SQLite side.
pub(crate) mod sqlite {
    use super::super::sqlite::query_err as err;
    use super::*;
    use rusqlite::{params, Connection};

    pub(crate) fn share(
        conn: &Connection,
        hash: &ContentHash,
        now: i64,
    ) -> Result<bool, MetaError> {
        let added = conn
            .execute(
                "INSERT INTO shared_files (hash, shared_at) SELECT ?1, ?2
                 WHERE EXISTS (SELECT 1 FROM files WHERE hash = ?1)
                 ON CONFLICT (hash) DO NOTHING",
                params![hash.to_hex(), now],
            )
            .map_err(err("sharing a file"))?;
        Ok(added == 1)
    }

    pub(crate) fn unshare(conn: &Connection, hash: &ContentHash) -> Result<bool, MetaError> {
        let removed = conn
            .execute(
                "DELETE FROM shared_files WHERE hash = ?1",
                params![hash.to_hex()],
            )
            .map_err(err("unsharing a file"))?;
        Ok(removed == 1)
    }

    pub(crate) fn shared(conn: &Connection, limit: usize) -> Result<Vec<ContentHash>, MetaError> {
        let mut stmt = conn
            .prepare("SELECT hash FROM shared_files ORDER BY shared_at DESC, hash LIMIT ?1")
            .map_err(err("listing shared files"))?;
        let rows = stmt
            .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                row.get::<_, String>(0)
            })
            .map_err(err("listing shared files"))?;
        let mut hashes = Vec::new();
        for row in rows {
            hashes.push(decode_hash(&row.map_err(err("listing shared files"))?)?);
        }
        Ok(hashes)
    }

    pub(crate) fn record_replica(
        conn: &Connection,
        hash: &ContentHash,
        from: &str,
        size: u64,
        now: i64,
    ) -> Result<(), MetaError> {
        conn.execute(
            "INSERT INTO replicas (hash, from_agent, size, replicated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (hash) DO NOTHING",
            params![hash.to_hex(), from, size_to_db(size)?, now],
        )
        .map_err(err("recording a replica"))?;
        Ok(())
    }

    pub(crate) fn replica_bytes(conn: &Connection) -> Result<u64, MetaError> {
        let total: i64 = conn
            .query_row("SELECT COALESCE(SUM(size), 0) FROM replicas", [], |row| {
                row.get(0)
            })
            .map_err(err("summing replicas"))?;
        Ok(u64::try_from(total).unwrap_or(0))
    }
}

/// The PostgreSQL side.
pub(crate) mod pg {
    use super::super::pg::query_err as err;
    use super::*;
    use postgres::GenericClient;

    pub(crate) fn share(
        client: &mut impl GenericClient,
        hash: &ContentHash,
        now: i64,
    ) -> Result<bool, MetaError> {
        let added = client
            .execute(
                "INSERT INTO shared_files (hash, shared_at) SELECT $1, $2
                 WHERE EXISTS (SELECT 1 FROM files WHERE hash = $1)
                 ON CONFLICT (hash) DO NOTHING",
                &[&hash.to_hex(), &now],
            )
            .map_err(err("sharing a file"))?;
        Ok(added == 1)
    }

    pub(crate) fn unshare(
        client: &mut impl GenericClient,
        hash: &ContentHash,
    ) -> Result<bool, MetaError> {
        let removed = client
            .execute(
                "DELETE FROM shared_files WHERE hash = $1",
                &[&hash.to_hex()],
            )
            .map_err(err("unsharing a file"))?;
        Ok(removed == 1)
    }

    pub(crate) fn shared(
        client: &mut impl GenericClient,
        limit: usize,
    ) -> Result<Vec<ContentHash>, MetaError> {
        let rows = client
            .query(
                "SELECT hash FROM shared_files ORDER BY shared_at DESC, hash LIMIT $1",
                &[&i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .map_err(err("listing shared files"))?;
        rows.iter()
            .map(|row| {
                let hash: String = row
                    .try_get(0)
                    .map_err(|e| MetaError::BadRow(e.to_string()))?;
                decode_hash(&hash)
            })
            .collect()
    }

    pub(crate) fn record_replica(
        client: &mut impl GenericClient,
        hash: &ContentHash,
        from: &str,
        size: u64,
        now: i64,
    ) -> Result<(), MetaError> {
        client
            .execute(
                "INSERT INTO replicas (hash, from_agent, size, replicated_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING",
                &[&hash.to_hex(), &from, &size_to_db(size)?, &now],
            )
            .map_err(err("recording a replica"))?;
        Ok(())
    }

    pub(crate) fn replica_bytes(client: &mut impl GenericClient) -> Result<u64, MetaError> {
        let row = client
            .query_one("SELECT COALESCE(SUM(size), 0)::BIGINT FROM replicas", &[])
            .map_err(err("summing replicas"))?;
        let total: i64 = row
            .try_get(0)
            .map_err(|e| MetaError::BadRow(e.to_string()))?;
        Ok(u64::try_from(total).unwrap_or(0))
    }
}
