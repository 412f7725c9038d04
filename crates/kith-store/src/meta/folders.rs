//! Folders (`folders`): which recorded files are folder manifests, with the number of files
//! and bytes they describe, for `kith file ls`. The manifest's `files` row names every item of
//! every file of the folder in `file_items`, so reference counting, `kith file rm` and the
//! garbage collector treat a folder as one file; this table only describes it.

use super::sql::{args, Row, Sql};
use super::{decode_hash, files, size_to_db, FileRecord, MetaError};
use crate::address::ContentHash;
use serde::Serialize;

/// SQL for the migration that adds folders (SQLite).
pub(crate) const SQLITE_MIGRATION: &str = "CREATE TABLE folders (
        hash TEXT PRIMARY KEY NOT NULL REFERENCES files(hash) ON DELETE CASCADE,
        files INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );";

/// SQL for the migration that adds folders (PostgreSQL).
pub(crate) const POSTGRES_MIGRATION: &str = "CREATE TABLE folders (
        hash TEXT PRIMARY KEY NOT NULL REFERENCES files(hash) ON DELETE CASCADE,
        files BIGINT NOT NULL,
        bytes BIGINT NOT NULL
    );";

/// A recorded folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FolderRow {
    /// The manifest's address (the folder's).
    pub hash: ContentHash,
    /// Files in the folder.
    pub files: u64,
    /// Their bytes together.
    pub bytes: u64,
}

fn row(row: Row) -> Result<FolderRow, MetaError> {
    let mut c = row.cols();
    let hash = decode_hash(&c.text()?)?;
    let count = |v: i64| u64::try_from(v).map_err(|_| MetaError::BadRow(format!("folder {hash}")));
    Ok(FolderRow {
        hash,
        files: count(c.int()?)?,
        bytes: count(c.int()?)?,
    })
}

/// Records the manifest `record` as a folder of `folder.files` files, naming `items` (the
/// manifest's and every file's) as its items; in the caller's transaction.
pub(super) fn insert(
    tx: &mut dyn Sql,
    record: &FileRecord,
    items: &[ContentHash],
    folder: &FolderRow,
) -> Result<FileRecord, MetaError> {
    let recorded = files::insert(tx, record, items)?;
    tx.execute(
        "recording folder",
        "INSERT INTO folders (hash, files, bytes) VALUES ($1, $2, $3)
         ON CONFLICT (hash) DO NOTHING",
        args![
            &record.hash.to_hex(),
            size_to_db(folder.files)?,
            size_to_db(folder.bytes)?
        ],
    )?;
    Ok(recorded)
}

pub(super) fn get(c: &mut dyn Sql, hash: &ContentHash) -> Result<Option<FolderRow>, MetaError> {
    c.query_opt(
        "reading folder",
        "SELECT hash, files, bytes FROM folders WHERE hash = $1",
        args![&hash.to_hex()],
    )?
    .map(row)
    .transpose()
}

pub(super) fn list(c: &mut dyn Sql) -> Result<Vec<FolderRow>, MetaError> {
    c.query(
        "listing folders",
        "SELECT hash, files, bytes FROM folders ORDER BY hash",
        args![],
    )?
    .into_iter()
    .map(row)
    .collect()
}
