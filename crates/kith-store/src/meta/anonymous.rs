//! Anonymous items: what strangers on the CIYAM peer port stored (`anonymous_items`), kept
//! apart from the user's files.
//!
//! A stranger's `put` is not a file of the user's: `kith file ls` never shows it, and it lives
//! under its own rules, which this table carries:
//! - **A small quota.** Each row is charged its item's size rounded up to a whole 4 KiB disk
//!   block (so ten thousand one-byte items cost what they cost the disk, and the row count is
//!   bounded by the quota too). A new item that does not fit makes room: the address holding
//!   the most gives up its oldest item, again until the new one fits, so a flood from one
//!   address evicts its own items before anyone else's. An item larger than the whole quota
//!   is refused.
//! - **A deadline.** Each row carries `expires_at`; past it the row is deleted (on the next
//!   anonymous put, by the node's periodic sweep, or by the garbage collector), whatever else
//!   happens, so a stranger's item is never kept alive for ever. Putting the same item again
//!   does not extend it.
//! - **A reference like any other.** While its row exists an item is in use: the garbage
//!   collector keeps it and `kith file rm` of a user file sharing it does not delete it. When
//!   a row goes, the caller deletes the item unless another record names it, under the store's
//!   commit lock, in the same step: quota bytes are freed only as the bytes leave the disk.
//!
//! The client is the stranger's address as the peer port charges it (an IPv4 address or an
//! IPv6 /64), as text.

use super::sql::{args, lock, Row, Sql};
use super::{decode_hash, size_to_db, MetaError};
use crate::address::ContentHash;
use serde::Serialize;

/// The unit an anonymous item is charged in: a disk block.
pub const ANONYMOUS_BLOCK: u64 = 4096;

/// SQL for the migration that adds anonymous items (SQLite).
pub(crate) const SQLITE_MIGRATION: &str = "CREATE TABLE anonymous_items (
        hash TEXT PRIMARY KEY NOT NULL,
        client TEXT NOT NULL,
        charged INTEGER NOT NULL,
        stored_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX anonymous_items_client ON anonymous_items(client, stored_at);
    CREATE INDEX anonymous_items_expires_at ON anonymous_items(expires_at);";

/// SQL for the migration that adds anonymous items (PostgreSQL).
pub(crate) const POSTGRES_MIGRATION: &str = "CREATE TABLE anonymous_items (
        hash TEXT PRIMARY KEY NOT NULL,
        client TEXT NOT NULL,
        charged BIGINT NOT NULL,
        stored_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX anonymous_items_client ON anonymous_items(client, stored_at);
    CREATE INDEX anonymous_items_expires_at ON anonymous_items(expires_at);";

/// What a stranger's item is charged: its stored size (type byte included) rounded up to a
/// whole [`ANONYMOUS_BLOCK`], at least one block.
pub fn anonymous_charge(stored_len: u64) -> u64 {
    stored_len
        .max(1)
        .div_ceil(ANONYMOUS_BLOCK)
        .saturating_mul(ANONYMOUS_BLOCK)
}

/// One item a stranger stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnonymousItem {
    /// The item's address.
    pub hash: ContentHash,
    /// Who stored it: the address the peer port charges (IPv4 address, IPv6 /64).
    pub client: String,
    /// Bytes charged against the quota ([`anonymous_charge`]).
    pub charged: u64,
    /// When it was stored, unix seconds.
    pub stored_at: i64,
    /// When it goes, unix seconds.
    pub expires_at: i64,
}

/// What [`super::MetaDb::record_anonymous`] did with a new item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymousOutcome {
    /// Recorded, after evicting this many older items to make room.
    Recorded {
        /// Items evicted for it.
        evicted: usize,
    },
    /// The item has a row already (this client's or another's): nothing changed, nothing
    /// charged again, the deadline not extended.
    AlreadyHeld,
    /// The item alone is larger than the quota: not recorded (the caller removes it).
    Refused,
}

/// The rows an anonymous step removed, and what it did with the new item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonymousRecord {
    /// What happened to the new item.
    pub outcome: AnonymousOutcome,
    /// Items whose rows were deleted (expired or evicted): the caller deletes each one that no
    /// other record names.
    pub released: Vec<ContentHash>,
}

/// Anonymous items held now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AnonymousUsage {
    /// Rows.
    pub items: u64,
    /// Bytes charged.
    pub bytes: u64,
}

fn hashes(rows: Vec<Row>) -> Result<Vec<ContentHash>, MetaError> {
    rows.into_iter()
        .map(|row| decode_hash(&row.cols().text()?))
        .collect()
}

/// Deletes the rows past their deadline; returns their items.
pub(super) fn expire(c: &mut dyn Sql, now: i64) -> Result<Vec<ContentHash>, MetaError> {
    hashes(c.query(
        "expiring anonymous items",
        "DELETE FROM anonymous_items WHERE expires_at <= $1 RETURNING hash",
        args![now],
    )?)
}

pub(super) fn usage(c: &mut dyn Sql) -> Result<AnonymousUsage, MetaError> {
    let mut cols = c
        .query_one(
            "summing anonymous items",
            "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(charged), 0) AS BIGINT)
             FROM anonymous_items",
            args![],
        )?
        .cols();
    Ok(AnonymousUsage {
        items: u64::try_from(cols.int()?).unwrap_or(0),
        bytes: u64::try_from(cols.int()?).unwrap_or(0),
    })
}

/// In one transaction: expires what is due, then records `item` within `quota`, evicting
/// the oldest item of the address holding the most until it fits.
pub(super) fn record(
    tx: &mut dyn Sql,
    item: &AnonymousItem,
    quota: u64,
) -> Result<AnonymousRecord, MetaError> {
    // Two processes sharing a PostgreSQL database must not both evict for the same room.
    tx.serialize("locking anonymous items", lock::ANONYMOUS, "")?;
    let mut released = expire(tx, item.stored_at)?;
    let hex = item.hash.to_hex();
    let held = tx.query_bool(
        "checking an anonymous item",
        "SELECT EXISTS (SELECT 1 FROM anonymous_items WHERE hash = $1)",
        args![&hex],
    )?;
    if held {
        return Ok(AnonymousRecord {
            outcome: AnonymousOutcome::AlreadyHeld,
            released,
        });
    }
    if item.charged > quota {
        return Ok(AnonymousRecord {
            outcome: AnonymousOutcome::Refused,
            released,
        });
    }
    let mut used = usage(tx)?.bytes;
    let mut evicted = 0;
    while used.saturating_add(item.charged) > quota {
        // The heaviest address (ties: the smallest address text) gives up its oldest item.
        let Some(row) = tx.query_opt(
            "choosing an anonymous item to evict",
            "SELECT hash, charged FROM anonymous_items
             WHERE client = (SELECT client FROM anonymous_items GROUP BY client
                             ORDER BY SUM(charged) DESC, client LIMIT 1)
             ORDER BY stored_at, hash LIMIT 1",
            args![],
        )?
        else {
            break; // nothing left to evict: the quota is smaller than the item (checked above)
        };
        let mut cols = row.cols();
        let victim = cols.text()?;
        let charged = u64::try_from(cols.int()?).unwrap_or(0);
        tx.execute(
            "evicting an anonymous item",
            "DELETE FROM anonymous_items WHERE hash = $1",
            args![&victim],
        )?;
        released.push(decode_hash(&victim)?);
        used = used.saturating_sub(charged);
        evicted += 1;
    }
    tx.execute(
        "recording an anonymous item",
        "INSERT INTO anonymous_items (hash, client, charged, stored_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        args![
            &hex,
            &item.client,
            size_to_db(item.charged)?,
            item.stored_at,
            item.expires_at
        ],
    )?;
    Ok(AnonymousRecord {
        outcome: AnonymousOutcome::Recorded { evicted },
        released,
    })
}

/// Every anonymous item, oldest first (for tests and diagnostics; at most the quota's
/// worth of rows).
pub(super) fn list(c: &mut dyn Sql) -> Result<Vec<AnonymousItem>, MetaError> {
    c.query(
        "listing anonymous items",
        "SELECT hash, client, charged, stored_at, expires_at FROM anonymous_items
         ORDER BY stored_at, hash",
        args![],
    )?
    .into_iter()
    .map(|row| {
        let mut c = row.cols();
        Ok(AnonymousItem {
            hash: decode_hash(&c.text()?)?,
            client: c.text()?,
            charged: u64::try_from(c.int()?)
                .map_err(|_| MetaError::BadRow("negative anonymous charge".into()))?,
            stored_at: c.int()?,
            expires_at: c.int()?,
        })
    })
    .collect()
}
