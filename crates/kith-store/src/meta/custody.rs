//! Encrypted custody records: which copies this node keeps for other people.
//!
//! A custodian keeps, for each file it holds in custody, the encrypted copy's address, the pull
//! request it hands the owner on retrieval, and the owner's public key. It never has the plain
//! content or a key that opens the copy. One row per (original content, owner): two owners who
//! persist the same file each get their own copy.

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

/// SQL (both backends) for migration 3.
pub(crate) const CUSTODY_COLUMNS: &str =
    "original_hash, owner_key, encrypted_hash, pull_request_hash, size, received_at";

/// Builds a record from column values as read (both backends), checking each.
pub(crate) fn custody_from_columns(
    original: &str,
    owner_key: &[u8],
    encrypted: &str,
    pull_request: &str,
    size: i64,
    received_at: i64,
) -> Result<CustodyRecord, super::MetaError> {
    let bad = |what: &str| super::MetaError::BadRow(format!("custody row for {original}: {what}"));
    Ok(CustodyRecord {
        original_hash: super::decode_hash(original)?,
        owner_key: owner_key
            .try_into()
            .map_err(|_| bad("owner key is not 33 bytes"))?,
        encrypted_hash: super::decode_hash(encrypted)?,
        pull_request_hash: super::decode_hash(pull_request)?,
        size: u64::try_from(size).map_err(|_| bad("negative size"))?,
        received_at,
    })
}
