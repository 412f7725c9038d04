//! The SQLite backend: one file in the data dir, shared safely by a CLI process and a node.
//!
//! WAL mode lets readers proceed while a writer commits; `busy_timeout` makes a writer wait for
//! the other process's transaction instead of failing at once; `synchronous = FULL` makes a
//! commit durable before it returns (WAL's default `NORMAL` may lose the last commits on power
//! loss, which would break "nothing is acknowledged before it is durable").

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    decode_hash, decode_record, size_to_db, DriverError, FileRecord, MetaDb, MetaError,
    BUSY_TIMEOUT, SQLITE_MIGRATIONS,
};
use crate::address::ContentHash;

/// [`MetaDb`] on an SQLite file.
#[derive(Debug)]
pub struct SqliteMeta {
    conn: Connection,
    path: PathBuf,
}

fn query_err(op: &'static str) -> impl FnOnce(rusqlite::Error) -> MetaError {
    move |e| MetaError::Query {
        backend: "sqlite",
        op,
        source: Box::new(e),
    }
}

impl SqliteMeta {
    /// Opens (creating if needed, parent directories included) the database at `path`, sets WAL
    /// mode and the busy timeout, and applies pending migrations.
    pub fn open(path: &Path) -> Result<SqliteMeta, MetaError> {
        let open_err = |source: DriverError| MetaError::SqliteOpen {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| open_err(Box::new(e)))?;
        }
        let conn = Connection::open(path).map_err(|e| open_err(Box::new(e)))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| open_err(Box::new(e)))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| open_err(Box::new(e)))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(
                format!("could not switch to WAL mode (got '{mode}')").into(),
            ));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|e| open_err(Box::new(e)))?;
        let mut db = SqliteMeta {
            conn,
            path: path.to_path_buf(),
        };
        db.migrate()?;
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<(), MetaError> {
        let supported = SQLITE_MIGRATIONS.len() as u32;
        // IMMEDIATE takes the write lock up front, so two processes migrate one after the other.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_err("starting migration"))?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(query_err("creating schema_version"))?;
        let found: u32 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |row| row.get(0),
            )
            .map_err(query_err("reading schema_version"))?;
        if found > supported {
            return Err(MetaError::SchemaTooNew { found, supported });
        }
        for (index, script) in SQLITE_MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.execute_batch(script).map_err(query_err("migrating"))?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![index as u32 + 1],
            )
            .map_err(query_err("recording migration"))?;
        }
        tx.commit().map_err(query_err("committing migration"))
    }
}

impl MetaDb for SqliteMeta {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn schema_version(&mut self) -> Result<u32, MetaError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |row| row.get(0),
            )
            .map_err(query_err("reading schema_version"))
    }

    fn insert_file(
        &mut self,
        record: &FileRecord,
        items: &[ContentHash],
    ) -> Result<FileRecord, MetaError> {
        let hash = record.hash.to_hex();
        let size = size_to_db(record.size)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_err("starting insert"))?;
        tx.execute(
            "INSERT INTO files (hash, kind, size, name, added_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (hash) DO NOTHING",
            params![
                hash,
                record.kind.as_str(),
                size,
                record.name,
                record.added_at
            ],
        )
        .map_err(query_err("inserting file"))?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO file_items (file_hash, item_hash, seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT (file_hash, item_hash) DO NOTHING",
                )
                .map_err(query_err("inserting file items"))?;
            for (seq, item) in items.iter().enumerate() {
                stmt.execute(params![hash, item.to_hex(), seq as i64])
                    .map_err(query_err("inserting file items"))?;
            }
        }
        let stored = get_file(&tx, &hash)?
            .ok_or_else(|| MetaError::BadRow(format!("file {hash} vanished after insert")))?;
        tx.commit().map_err(query_err("committing insert"))?;
        Ok(stored)
    }

    fn get_file(&mut self, hash: &ContentHash) -> Result<Option<FileRecord>, MetaError> {
        get_file(&self.conn, &hash.to_hex())
    }

    fn list_files(&mut self) -> Result<Vec<FileRecord>, MetaError> {
        let mut stmt = self
            .conn
            .prepare("SELECT hash, kind, size, name, added_at FROM files ORDER BY added_at, hash")
            .map_err(query_err("listing files"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            })
            .map_err(query_err("listing files"))?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, kind, size, name, added_at) = row.map_err(query_err("listing files"))?;
            out.push(decode_record(&hash, &kind, size, name, added_at)?);
        }
        Ok(out)
    }

    fn remove_file(&mut self, hash: &ContentHash) -> Result<Option<Vec<ContentHash>>, MetaError> {
        let hash = hash.to_hex();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_err("starting remove"))?;
        if get_file(&tx, &hash)?.is_none() {
            return Ok(None);
        }
        let orphans = {
            let mut stmt = tx
                .prepare(
                    "SELECT fi.item_hash FROM file_items fi
                     WHERE fi.file_hash = ?1
                       AND NOT EXISTS (SELECT 1 FROM file_items o
                                       WHERE o.item_hash = fi.item_hash AND o.file_hash <> ?1)
                       AND NOT EXISTS (SELECT 1 FROM files f
                                       WHERE f.hash = fi.item_hash AND f.hash <> ?1)
                     ORDER BY fi.seq",
                )
                .map_err(query_err("finding unused items"))?;
            let rows = stmt
                .query_map(params![hash], |row| row.get::<_, String>(0))
                .map_err(query_err("finding unused items"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(decode_hash(
                    &row.map_err(query_err("finding unused items"))?,
                )?);
            }
            out
        };
        tx.execute("DELETE FROM file_items WHERE file_hash = ?1", params![hash])
            .map_err(query_err("removing file items"))?;
        tx.execute("DELETE FROM files WHERE hash = ?1", params![hash])
            .map_err(query_err("removing file"))?;
        tx.commit().map_err(query_err("committing remove"))?;
        Ok(Some(orphans))
    }
}

fn get_file(conn: &Connection, hash: &str) -> Result<Option<FileRecord>, MetaError> {
    let row = conn
        .query_row(
            "SELECT hash, kind, size, name, added_at FROM files WHERE hash = ?1",
            params![hash],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()
        .map_err(query_err("reading file"))?;
    row.map(|(hash, kind, size, name, added_at)| decode_record(&hash, &kind, size, name, added_at))
        .transpose()
}
