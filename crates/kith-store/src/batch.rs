//! Group commit: items written now, made durable together.
//!
//! Writing an item the plain way ([`BlobStore::put_item`]) costs an fsync of the item and one
//! of its directory: a journal commit per item, which on a busy disk is most of the time a
//! fetch or a put takes. Here an item is first *staged*: written to a temporary file in the
//! store's `tmp/` (same file system) with no fsync, its name not yet taken. A
//! [`ItemBatch`] gathers staged items; [`ItemBatch::commit`] makes them all durable at once
//! (the data of every temp file synced, then each renamed into place, then each directory
//! touched synced once), so a batch of 32 items costs about the journal commits of one.
//!
//! Each staged item's writeback is started at once ([`start_writeback`]), so the disk writes
//! as items arrive and the commit mostly waits for what is already under way.
//!
//! Crash safety is the same as for a single put: an item gets its name only after its bytes
//! are on disk, so a crash at any point leaves each item either whole under its name or only
//! as a temp file (reclaimed by the garbage collector and at start-up), never a torn item
//! under a valid name. Nothing that depends on a staged item (a file record, an
//! acknowledgement to a peer) may happen before its batch has committed. The caller holds the
//! store's write lease from the first stage to the commit, so the collector does not take
//! the temp files meanwhile. Reads still verify every item, whatever wrote it.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

use crate::address::{ContentHash, ItemType};
use crate::blobs::{sync_dir, BlobStore};
use crate::error::StoreError;

/// One item written to a temp file, not durable and not visible yet.
#[derive(Debug)]
pub struct StagedItem {
    hash: ContentHash,
    len: u64,
    /// `None` when the item was already stored (intact): nothing to commit.
    tmp: Option<tempfile::NamedTempFile>,
}

impl StagedItem {
    /// The item's address.
    pub fn hash(&self) -> ContentHash {
        self.hash
    }

    /// Its bytes, type byte included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty item (never: an item has at least its type byte).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the item was already in the store: committing it changes nothing.
    pub fn was_present(&self) -> bool {
        self.tmp.is_none()
    }
}

impl BlobStore {
    /// Writes an item whose address the caller computed from these very bytes (see
    /// [`BlobStore::put_hashed_item`]) to a temp file in the store, without syncing it or
    /// giving it its name: add it to an [`ItemBatch`] and commit that. An item already stored
    /// intact is freshened instead (and committing it is a no-op). The caller holds the write
    /// lease.
    pub fn stage_hashed_item(
        &self,
        hash: ContentHash,
        item_type: ItemType,
        content: &[u8],
    ) -> Result<StagedItem, StoreError> {
        self.check_item(item_type, content)?;
        debug_assert_eq!(hash, ContentHash::compute(item_type, content));
        let len = content.len() as u64 + 1;
        let path = self.path_for(&hash);
        if self.holds_exactly(&path, item_type, content) {
            crate::blobs::freshen(&path);
            return Ok(StagedItem {
                hash,
                len,
                tmp: None,
            });
        }
        let tmp = self.write_tmp_item(item_type, content)?;
        start_writeback(tmp.as_file());
        Ok(StagedItem {
            hash,
            len,
            tmp: Some(tmp),
        })
    }

    /// [`BlobStore::stage_hashed_item`] for an item as the peer protocols carry it (type byte
    /// first), hashing it here: `Ok(None)` when it does not hash to `expected` (nothing was
    /// written).
    pub fn stage_received(
        &self,
        expected: &ContentHash,
        item: &[u8],
    ) -> Result<Option<StagedItem>, StoreError> {
        let Some((&type_byte, content)) = item.split_first() else {
            return Ok(None);
        };
        let Ok(item_type) = ItemType::from_byte(type_byte) else {
            return Ok(None);
        };
        if ContentHash::compute(item_type, content) != *expected {
            return Ok(None);
        }
        self.stage_hashed_item(*expected, item_type, content)
            .map(Some)
    }
}

/// Asks the kernel to start writing `file`'s dirty pages now, without waiting, and to drop
/// its clean ones (Linux does both for `POSIX_FADV_DONTNEED`): the disk works while the
/// transfer goes on, and the sync at the commit only waits for what is still in flight,
/// instead of the whole batch being written at that moment; after the sync, the same call
/// frees the pages. Best effort: without it the commit's sync writes everything.
pub fn start_writeback(file: &std::fs::File) {
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
}

/// [`start_writeback`] for the `len` bytes at `offset` only: for a file that grows, where
/// asking for the whole file each time would walk every page written so far again (the
/// kernel's cost would grow with the file, quadratic over a large fetch).
pub fn start_writeback_range(file: &std::fs::File, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        file,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

/// Staged items committed together (see the module docs).
#[derive(Debug, Default)]
pub struct ItemBatch {
    items: Vec<StagedItem>,
    bytes: u64,
    /// Whether committed items leave the page cache (see [`ItemBatch::streaming`]).
    uncached: bool,
}

impl ItemBatch {
    /// An empty batch.
    pub fn new() -> ItemBatch {
        ItemBatch::default()
    }

    /// An empty batch for a stream of items larger than the page cache should keep (a big
    /// fetch): once its items are durable, their pages are dropped from the cache. Clean
    /// pages cost nothing to drop, and reusing them for the next items is much cheaper than
    /// the kernel taking fresh memory for every item (on a virtual machine whose free memory
    /// goes back to the host, each fresh page is a fault in the host too).
    pub fn streaming() -> ItemBatch {
        ItemBatch {
            uncached: true,
            ..ItemBatch::default()
        }
    }

    /// An empty batch like this one (streaming or not).
    pub fn empty_like(&self) -> ItemBatch {
        ItemBatch {
            uncached: self.uncached,
            ..ItemBatch::default()
        }
    }

    /// Adds a staged item.
    pub fn push(&mut self, item: StagedItem) {
        self.bytes += item.len;
        self.items.push(item);
    }

    /// Items in the batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes staged.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The items in the batch.
    pub fn hashes(&self) -> impl Iterator<Item = ContentHash> + '_ {
        self.items.iter().map(|i| i.hash)
    }

    /// True when the batch holds `hash`.
    pub fn contains(&self, hash: &ContentHash) -> bool {
        self.items.iter().any(|i| i.hash == *hash)
    }

    /// Makes every staged item durable and gives it its name: syncs the data of every temp
    /// file, renames each into place, then syncs each directory touched. Returns the items
    /// committed. On error the items not yet renamed are removed with their temp files;
    /// those renamed are whole (their data was synced first).
    pub fn commit(self, store: &BlobStore) -> Result<Vec<ContentHash>, StoreError> {
        let mut hashes = Vec::with_capacity(self.items.len());
        let mut pending = Vec::with_capacity(self.items.len());
        for item in self.items {
            hashes.push(item.hash);
            if let Some(tmp) = item.tmp {
                let path = tmp.path().to_path_buf();
                tmp.as_file()
                    .sync_data()
                    .map_err(StoreError::io("sync", &path))?;
                pending.push((item.hash, tmp));
            }
        }
        let mut dirs: HashSet<PathBuf> = HashSet::new();
        let mut new_dir = false;
        for (hash, tmp) in pending {
            let path = store.path_for(&hash);
            let dir = path.parent().unwrap_or(store.root()).to_path_buf();
            if !dirs.contains(&dir) {
                match fs::create_dir(&dir) {
                    Ok(()) => new_dir = true,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(StoreError::io("create", &dir)(e)),
                }
            }
            let file = tmp
                .persist(&path)
                .map_err(|e| StoreError::io("rename into", &path)(e.error))?;
            if self.uncached {
                // Synced above, so its pages are clean: this drops them.
                start_writeback(&file);
            }
            dirs.insert(dir);
        }
        if new_dir {
            sync_dir(store.root())?;
        }
        for dir in &dirs {
            sync_dir(dir)?;
        }
        Ok(hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u8) -> (ContentHash, Vec<u8>) {
        let content = vec![n; 1000];
        (ContentHash::compute(ItemType::BLOB, &content), content)
    }

    #[test]
    fn staged_items_are_invisible_until_the_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut batch = ItemBatch::new();
        for n in 0..5 {
            let (hash, content) = item(n);
            batch.push(
                store
                    .stage_hashed_item(hash, ItemType::BLOB, &content)
                    .unwrap(),
            );
            assert!(!store.contains(&hash).unwrap(), "not before the commit");
        }
        assert_eq!(batch.len(), 5);
        assert_eq!(batch.bytes(), 5 * 1001);
        let committed = batch.commit(&store).unwrap();
        assert_eq!(committed.len(), 5);
        for n in 0..5 {
            let (hash, content) = item(n);
            assert_eq!(store.get_item(&hash).unwrap().content, content);
        }
        let tmp_left = fs::read_dir(dir.path().join(crate::blobs::TMP_DIR))
            .unwrap()
            .count();
        assert_eq!(tmp_left, 0, "every temp file became an item");
    }

    #[test]
    fn a_batch_dropped_before_its_commit_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (hash, content) = item(1);
        let mut batch = ItemBatch::new();
        batch.push(
            store
                .stage_hashed_item(hash, ItemType::BLOB, &content)
                .unwrap(),
        );
        drop(batch);
        assert!(!store.contains(&hash).unwrap());
        let tmp_left = fs::read_dir(dir.path().join(crate::blobs::TMP_DIR))
            .unwrap()
            .count();
        assert_eq!(tmp_left, 0);
    }

    #[test]
    fn a_received_item_that_does_not_match_its_name_is_not_staged() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (hash, content) = item(1);
        let mut wire = vec![ItemType::BLOB.byte()];
        wire.extend_from_slice(&content);
        assert!(store.stage_received(&hash, &wire).unwrap().is_some());
        wire[10] ^= 1;
        assert!(store.stage_received(&hash, &wire).unwrap().is_none());
        assert!(store.stage_received(&hash, &[]).unwrap().is_none());
        // An item already stored is not written again.
        store.put_item(ItemType::BLOB, &content).unwrap();
        wire[10] ^= 1;
        let again = store.stage_received(&hash, &wire).unwrap().unwrap();
        assert!(again.was_present());
    }
}
