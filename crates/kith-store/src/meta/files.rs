//! Files and the items they use (`files`, `file_items`): what reference counting, `kith file
//! rm` and the garbage collector read.

use std::collections::HashSet;

use super::sql::{args, lock, placeholders, Row, Sql, Value};
use super::{decode_hash, decode_record, size_to_db, FileRecord, MetaError};
use crate::address::ContentHash;

/// Item rows per INSERT: 2 parameters each, far below both backends' parameter limits.
const ITEM_BATCH: usize = 1_000;

/// Hashes per `IN (...)` list of [`items_in_use`].
const IN_BATCH: usize = 500;

const FILE_COLUMNS: &str = "hash, kind, size, name, added_at";

fn record(row: Row) -> Result<FileRecord, MetaError> {
    let mut c = row.cols();
    let (hash, kind, size) = (c.text()?, c.text()?, c.int()?);
    decode_record(&hash, &kind, size, c.opt_text()?, c.int()?)
}

pub(super) fn insert(
    tx: &mut dyn Sql,
    record: &FileRecord,
    items: &[ContentHash],
) -> Result<FileRecord, MetaError> {
    let hash = record.hash.to_hex();
    tx.execute(
        "inserting file",
        "INSERT INTO files (hash, kind, size, name, added_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (hash) DO NOTHING",
        args![
            &hash,
            record.kind.as_str(),
            size_to_db(record.size)?,
            record.name.as_deref(),
            record.added_at
        ],
    )?;
    for (batch_index, batch) in items.chunks(ITEM_BATCH).enumerate() {
        let hexes: Vec<String> = batch.iter().map(ContentHash::to_hex).collect();
        let base = (batch_index * ITEM_BATCH) as i64;
        let mut values = Vec::with_capacity(batch.len());
        let mut bound = vec![Value::Text(&hash)];
        for (i, hex) in hexes.iter().enumerate() {
            values.push(format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3));
            bound.push(Value::Text(hex));
            bound.push(Value::Int(base + i as i64));
        }
        // Only placeholders are generated here; every value is bound.
        let sql = format!(
            "INSERT INTO file_items (file_hash, item_hash, seq) VALUES {}
             ON CONFLICT (file_hash, item_hash) DO NOTHING",
            values.join(", ")
        );
        tx.execute("inserting file items", &sql, &bound)?;
    }
    get(tx, &record.hash)?
        .ok_or_else(|| MetaError::BadRow(format!("file {hash} vanished after insert")))
}

pub(super) fn get(c: &mut dyn Sql, hash: &ContentHash) -> Result<Option<FileRecord>, MetaError> {
    c.query_opt(
        "reading file",
        &format!("SELECT {FILE_COLUMNS} FROM files WHERE hash = $1"),
        args![&hash.to_hex()],
    )?
    .map(record)
    .transpose()
}

pub(super) fn list(c: &mut dyn Sql) -> Result<Vec<FileRecord>, MetaError> {
    c.query(
        "listing files",
        &format!("SELECT {FILE_COLUMNS} FROM files ORDER BY added_at, hash"),
        args![],
    )?
    .into_iter()
    .map(record)
    .collect()
}

pub(super) fn remove(
    tx: &mut dyn Sql,
    hash: &ContentHash,
) -> Result<Option<Vec<ContentHash>>, MetaError> {
    let hex = hash.to_hex();
    // Two removes of one file must not both compute its orphans.
    tx.serialize("locking file", lock::FILE, &hex)?;
    if get(tx, hash)?.is_none() {
        return Ok(None);
    }
    let orphans = tx
        .query(
            "finding unused items",
            "SELECT fi.item_hash FROM file_items fi
             WHERE fi.file_hash = $1
               AND NOT EXISTS (SELECT 1 FROM file_items o
                               WHERE o.item_hash = fi.item_hash AND o.file_hash <> $1)
               AND NOT EXISTS (SELECT 1 FROM files f
                               WHERE f.hash = fi.item_hash AND f.hash <> $1)
               AND NOT EXISTS (SELECT 1 FROM anonymous_items a WHERE a.hash = fi.item_hash)
             ORDER BY fi.seq",
            args![&hex],
        )?
        .into_iter()
        .map(|row| decode_hash(&row.cols().text()?))
        .collect::<Result<Vec<_>, _>>()?;
    tx.execute(
        "removing file items",
        "DELETE FROM file_items WHERE file_hash = $1",
        args![&hex],
    )?;
    tx.execute(
        "removing file",
        "DELETE FROM files WHERE hash = $1",
        args![&hex],
    )?;
    Ok(Some(orphans))
}

/// Which of `items` a record names: a recorded file or an item of one, a custody copy's
/// root or pull request (the copy's inner items are named by no row: the collector walks the
/// copy's tree for them), or a stranger's anonymous item.
pub(super) fn items_in_use(
    c: &mut dyn Sql,
    items: &[ContentHash],
) -> Result<HashSet<ContentHash>, MetaError> {
    let mut used = HashSet::new();
    for batch in items.chunks(IN_BATCH) {
        let hexes: Vec<String> = batch.iter().map(ContentHash::to_hex).collect();
        let bound: Vec<Value<'_>> = hexes.iter().map(|h| Value::Text(h)).collect();
        let list = placeholders(1, batch.len());
        // Only placeholders are generated here; every value is bound.
        let sql = format!(
            "SELECT item_hash FROM file_items WHERE item_hash IN ({list})
             UNION SELECT hash FROM files WHERE hash IN ({list})
             UNION SELECT encrypted_hash FROM custody WHERE encrypted_hash IN ({list})
             UNION SELECT pull_request_hash FROM custody WHERE pull_request_hash IN ({list})
             UNION SELECT hash FROM anonymous_items WHERE hash IN ({list})"
        );
        for row in c.query("checking item use", &sql, &bound)? {
            used.insert(decode_hash(&row.cols().text()?)?);
        }
    }
    Ok(used)
}
