//! Encrypted custody records: which copies this node keeps for other people.
//!
//! A custodian keeps, for each file it holds in custody, the encrypted copy's address, the pull
//! request it hands the owner on retrieval, and the owner's public key. It never has the plain
//! content or a key that opens the copy. One row per (original content, owner): two owners who
//! persist the same file each get their own copy.

use super::sql::{args, Row, Sql};
use super::{size_to_db, MetaError};
use crate::address::ContentHash;
use serde::Serialize;

/// One file in custody.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustodyRecord {
    /// The address of the owner's plain content.
    pub original_hash: ContentHash,
    /// The owner's compressed secp256k1 public key (from the push request).
    #[serde(serialize_with = "hex_key")]
    pub owner_key: [u8; 33],
    /// The address of the encrypted copy this node stores.
    pub encrypted_hash: ContentHash,
    /// The address of the pull request blob handed to the owner on retrieval.
    pub pull_request_hash: ContentHash,
    /// Bytes stored for the copy (counted against the custody quota).
    pub size: u64,
    /// When the copy was made, unix seconds.
    pub received_at: i64,
}

fn hex_key<S: serde::Serializer>(key: &[u8; 33], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(key))
}

const CUSTODY_COLUMNS: &str =
    "original_hash, owner_key, encrypted_hash, pull_request_hash, size, received_at";

/// Builds a record from a row, checking each column.
fn record(row: Row) -> Result<CustodyRecord, MetaError> {
    let mut c = row.cols();
    let original = c.text()?;
    let bad = |what: &str| MetaError::BadRow(format!("custody row for {original}: {what}"));
    Ok(CustodyRecord {
        owner_key: c
            .bytes()?
            .try_into()
            .map_err(|_| bad("owner key is not 33 bytes"))?,
        encrypted_hash: super::decode_hash(&c.text()?)?,
        pull_request_hash: super::decode_hash(&c.text()?)?,
        size: u64::try_from(c.int()?).map_err(|_| bad("negative size"))?,
        received_at: c.int()?,
        original_hash: super::decode_hash(&original)?,
    })
}

pub(super) fn insert(c: &mut dyn Sql, r: &CustodyRecord) -> Result<CustodyRecord, MetaError> {
    c.execute(
        "recording custody",
        "INSERT INTO custody (original_hash, owner_key, encrypted_hash, pull_request_hash, size,
                              received_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (original_hash, owner_key) DO NOTHING",
        args![
            &r.original_hash.to_hex(),
            &r.owner_key[..],
            &r.encrypted_hash.to_hex(),
            &r.pull_request_hash.to_hex(),
            size_to_db(r.size)?,
            r.received_at
        ],
    )?;
    of(c, &r.original_hash)?
        .into_iter()
        .find(|stored| stored.owner_key == r.owner_key)
        .ok_or_else(|| MetaError::BadRow("custody row vanished after insert".into()))
}

pub(super) fn of(c: &mut dyn Sql, original: &ContentHash) -> Result<Vec<CustodyRecord>, MetaError> {
    c.query(
        "reading custody",
        &format!(
            "SELECT {CUSTODY_COLUMNS} FROM custody WHERE original_hash = $1
             ORDER BY received_at DESC"
        ),
        args![&original.to_hex()],
    )?
    .into_iter()
    .map(record)
    .collect()
}

pub(super) fn all(c: &mut dyn Sql) -> Result<Vec<CustodyRecord>, MetaError> {
    c.query(
        "listing custody",
        &format!("SELECT {CUSTODY_COLUMNS} FROM custody ORDER BY received_at, original_hash"),
        args![],
    )?
    .into_iter()
    .map(record)
    .collect()
}

pub(super) fn bytes(c: &mut dyn Sql) -> Result<u64, MetaError> {
    let total = c.query_int(
        "summing custody",
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM custody",
        args![],
    )?;
    Ok(u64::try_from(total).unwrap_or(0))
}
