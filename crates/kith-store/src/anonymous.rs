//! Items strangers store on the CIYAM peer port, kept apart from the user's files.
//!
//! The rules (a quota charged in disk blocks, the heaviest address evicted first, a deadline
//! per item, a row that is a reference like any other) are the table's, in
//! [`crate::meta::AnonymousItem`]'s module. Here they meet the disk: an item is written
//! durably first (under the write lease, so the collector does not run meanwhile), then,
//! under the commit lock, its row is recorded and every item whose row went (expired or
//! evicted) is deleted unless another record names it. So the quota counts an item until its
//! bytes are gone, no row ever names a deleted item, and a crash between the two steps
//! leaves at worst an unreferenced item, which the garbage collector takes.

use crate::address::{ContentHash, ItemType};
use crate::error::StoreError;
use crate::files::FileStore;
use crate::meta::{anonymous_charge, AnonymousItem, AnonymousOutcome};

/// Who stores an anonymous item, and under which rules.
#[derive(Debug, Clone, Copy)]
pub struct AnonymousPut<'a> {
    /// The client's address as the caller charges it (an IPv4 address, an IPv6 /64).
    pub client: &'a str,
    /// Bytes all anonymous items may be charged together.
    pub quota: u64,
    /// How long an item is kept, in seconds.
    pub ttl_secs: u64,
    /// The time now, unix seconds.
    pub now: i64,
}

/// What [`FileStore::put_anonymous`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnonymousStored {
    /// The item's address.
    pub hash: Option<ContentHash>,
    /// Recorded (with how many evictions), held already, or refused (larger than the quota).
    pub outcome: AnonymousOutcome,
    /// Items deleted from disk because their rows went (expired or evicted).
    pub items_deleted: usize,
}

impl AnonymousStored {
    /// Whether the item is in the store now (recorded, or held already).
    pub fn is_stored(&self) -> bool {
        self.outcome != AnonymousOutcome::Refused
    }
}

impl FileStore {
    /// Stores a stranger's item (type byte and content; `hash` when the caller has just
    /// computed it from these bytes) as an anonymous item: durable when this returns, charged
    /// against `put.quota`, kept for `put.ttl_secs`. Never recorded as a file. An item larger
    /// than the whole quota is refused before anything is written.
    pub fn put_anonymous(
        &self,
        hash: Option<ContentHash>,
        item_type: ItemType,
        content: &[u8],
        put: &AnonymousPut<'_>,
    ) -> Result<AnonymousStored, StoreError> {
        let charged = anonymous_charge(content.len() as u64 + 1);
        if charged > put.quota {
            return Ok(AnonymousStored {
                hash,
                outcome: AnonymousOutcome::Refused,
                items_deleted: 0,
            });
        }
        let _lease = self.blobs().write_lease()?;
        let hash = self.write(hash, item_type, content)?;
        let _lock = self.lock()?;
        // A release in another thread (an eviction, a `file rm`) may have deleted the same
        // item between the write and the lock: write it again, now that nothing can.
        if !self.blobs().contains(&hash)? {
            self.write(Some(hash), item_type, content)?;
        }
        let item = AnonymousItem {
            hash,
            client: put.client.to_owned(),
            charged,
            stored_at: put.now,
            expires_at: put
                .now
                .saturating_add(i64::try_from(put.ttl_secs).unwrap_or(i64::MAX)),
        };
        let record = match self.meta().record_anonymous(&item, put.quota) {
            Ok(record) => record,
            Err(e) => {
                let _ = self.delete_unused(&[hash]);
                return Err(e.into());
            }
        };
        let mut released = record.released;
        if record.outcome == AnonymousOutcome::Refused {
            released.push(hash);
        }
        Ok(AnonymousStored {
            hash: Some(hash),
            outcome: record.outcome,
            items_deleted: self.delete_unused(&released)?.0,
        })
    }

    /// Deletes the anonymous items whose deadline is at or before `now` (those no other record
    /// names); returns how many were deleted from disk.
    pub fn expire_anonymous(&self, now: i64) -> Result<usize, StoreError> {
        let _lock = self.lock()?;
        let released = self.meta().expire_anonymous(now)?;
        Ok(self.delete_unused(&released)?.0)
    }

    fn write(
        &self,
        hash: Option<ContentHash>,
        item_type: ItemType,
        content: &[u8],
    ) -> Result<ContentHash, StoreError> {
        match hash {
            Some(hash) => {
                self.blobs().put_hashed_item(hash, item_type, content)?;
                Ok(hash)
            }
            None => self.blobs().put_item(item_type, content),
        }
    }

    /// Deletes the items of `items` that no record names; returns how many, and their bytes.
    /// The caller holds the commit lock, so no commit can start naming one between the check
    /// and the deletion.
    pub(crate) fn delete_unused(&self, items: &[ContentHash]) -> Result<(usize, u64), StoreError> {
        if items.is_empty() {
            return Ok((0, 0));
        }
        let used = self.meta().items_in_use(items)?;
        let (mut deleted, mut bytes) = (0, 0);
        for item in items.iter().filter(|item| !used.contains(item)) {
            let len = std::fs::metadata(self.blobs().path_for(item)).map_or(0, |m| m.len());
            if self.blobs().remove_item(item)? {
                deleted += 1;
                bytes += len;
            }
        }
        Ok((deleted, bytes))
    }
}
