//! A file written piece by piece into the store, for content that does not come from a
//! reader: an encrypted custody copy produced as its plaintext arrives from a peer.
//!
//! [`FileWriter`] cuts exactly as [`BlobStore::put_file`] does (the same chunk capacity and the
//! same list tree), so a file written either way gets the same address, except that its leaf
//! items carry the type the caller chooses (an encrypted blob, `0x05`, for custody copies;
//! the flag does not enter the hash). Memory is one chunk plus one list per tree level.
//!
//! Items are fsync'd as they are written, their directories when [`FileWriter::finish`]
//! returns. A writer dropped or [`FileWriter::abort`]ed leaves (or removes) loose items and
//! records nothing.
//!
//! A writer holds the store's write lease from creation until it finishes or is dropped, so
//! no garbage collection runs meanwhile (a custody copy may take a whole session to write);
//! [`FileWriter::finish`] freshens every item of the file, so that the caller has the
//! collector's whole grace period to record it.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::address::{ContentHash, ItemKind, ItemType};
use crate::blobs::{sync_dir, BlobStore};
use crate::error::StoreError;
use crate::lock::WriteLease;
use crate::tree::{ItemSink, StoredFile, TreeBuilder};

/// The store side of a [`FileWriter`]: where items go, and which were written.
struct OwnedSink {
    store: BlobStore,
    items: Vec<ContentHash>,
    seen: HashSet<ContentHash>,
    dirs: HashSet<PathBuf>,
    /// Items this writer created (not already present), for [`FileWriter::abort`].
    created: Vec<ContentHash>,
    _lease: WriteLease,
}

impl ItemSink for OwnedSink {
    fn put(&mut self, item_type: ItemType, content: &[u8]) -> Result<ContentHash, StoreError> {
        let (hash, dir) = self.store.put_item_deferred(item_type, content)?;
        if let Some(dir) = dir {
            self.dirs.insert(dir);
            self.created.push(hash);
        }
        if self.seen.insert(hash) {
            self.items.push(hash);
        }
        Ok(hash)
    }
}

/// Writes one file into the store from successive [`FileWriter::write`] calls.
pub struct FileWriter {
    sink: OwnedSink,
    leaf_type: ItemType,
    capacity: usize,
    /// The chunk being filled (at most `capacity` bytes).
    chunk: Vec<u8>,
    /// The list tree, once the file is known to need more than one chunk.
    tree: Option<TreeBuilder>,
    size: u64,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("size", &self.size)
            .field("items", &self.sink.items.len())
            .finish()
    }
}

impl FileWriter {
    /// A writer into `store` whose chunks get the type `leaf_type` (a blob kind, flags
    /// allowed but compression).
    pub fn new(store: BlobStore, leaf_type: ItemType) -> Result<FileWriter, StoreError> {
        let max_item = store.max_item_size();
        FileWriter::with_item_size(store, leaf_type, max_item)
    }

    /// Like [`FileWriter::new`], with items of at most `max_item` bytes (type byte included;
    /// between [`crate::blobs::MIN_MAX_ITEM_SIZE`] and the store's own maximum), for a file
    /// that must fit another store's smaller items.
    pub fn with_item_size(
        store: BlobStore,
        leaf_type: ItemType,
        max_item: usize,
    ) -> Result<FileWriter, StoreError> {
        if !(crate::blobs::MIN_MAX_ITEM_SIZE..=store.max_item_size()).contains(&max_item) {
            return Err(StoreError::Config(format!(
                "item size {max_item} is outside {}..={}",
                crate::blobs::MIN_MAX_ITEM_SIZE,
                store.max_item_size()
            )));
        }
        if leaf_type.kind() != ItemKind::Blob || leaf_type.has_flag(ItemType::FLAG_COMPRESSED) {
            return Err(StoreError::Config(format!(
                "a file's chunks must be uncompressed blobs, not type {:#04x}",
                leaf_type.byte()
            )));
        }
        let capacity = max_item - 1;
        let lease = store.write_lease()?;
        Ok(FileWriter {
            sink: OwnedSink {
                _lease: lease,
                store,
                items: Vec::new(),
                seen: HashSet::new(),
                dirs: HashSet::new(),
                created: Vec::new(),
            },
            leaf_type,
            capacity,
            chunk: Vec::new(),
            tree: None,
            size: 0,
        })
    }

    /// Content bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `bytes` to the file; every chunk that fills up (and is followed by more bytes)
    /// is stored at once.
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        while !bytes.is_empty() {
            if self.chunk.len() == self.capacity {
                self.flush_chunk()?;
            }
            let take = (self.capacity - self.chunk.len()).min(bytes.len());
            self.chunk.extend_from_slice(&bytes[..take]);
            self.size += take as u64;
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// Stores the full chunk as a leaf of the tree.
    fn flush_chunk(&mut self) -> Result<(), StoreError> {
        let hash = self.sink.put(self.leaf_type, &self.chunk)?;
        self.chunk.clear();
        let max_item = self.capacity + 1;
        let tree = self.tree.get_or_insert_with(|| TreeBuilder::new(max_item));
        tree.push(0, hash, &mut self.sink)
    }

    /// Stores what is left and the lists, syncs every directory written, and returns the
    /// file's address and items (root first).
    pub fn finish(mut self) -> Result<StoredFile, StoreError> {
        let (hash, kind) = match self.tree.take() {
            None => (self.sink.put(self.leaf_type, &self.chunk)?, ItemKind::Blob),
            Some(mut tree) => {
                if !self.chunk.is_empty() {
                    let leaf = self.sink.put(self.leaf_type, &self.chunk)?;
                    tree.push(0, leaf, &mut self.sink)?;
                }
                (tree.finish(&mut self.sink)?, ItemKind::List)
            }
        };
        for dir in &self.sink.dirs {
            sync_dir(dir)?;
        }
        let mut items = self.sink.items;
        if let Some(pos) = items.iter().position(|h| *h == hash) {
            items.remove(pos);
        }
        items.insert(0, hash);
        // Items written early in a long session are as old as the session: make the whole
        // file young again before the lease goes, so the collector leaves it to be recorded.
        self.sink.store.freshen_items(&items);
        Ok(StoredFile {
            hash,
            kind,
            size: self.size,
            items,
        })
    }

    /// Gives up: removes the items this writer created (items that were already in the
    /// store are left alone).
    pub fn abort(self) -> Result<(), StoreError> {
        for hash in &self.sink.created {
            self.sink.store.remove_item(hash)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn pieces_of_any_size_get_the_address_put_file_gives() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::with_max_item_size(dir.path(), 200).unwrap();
        for len in [0usize, 1, 198, 199, 200, 398, 5_000, 20_000] {
            let content = bytes(len);
            let expected = store.put_file(&mut &content[..]).unwrap();
            let mut writer = FileWriter::new(store.clone(), ItemType::BLOB).unwrap();
            for piece in content.chunks(7 + len % 13) {
                writer.write(piece).unwrap();
            }
            let got = writer.finish().unwrap();
            assert_eq!(got.hash, expected.hash, "len {len}");
            assert_eq!(got.kind, expected.kind, "len {len}");
            assert_eq!(got.size, len as u64);
            let mut back = Vec::new();
            store.read_file(&got.hash, &mut back).unwrap();
            assert_eq!(back, content);
        }
    }

    #[test]
    fn encrypted_leaves_keep_the_address_and_abort_removes_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::with_max_item_size(dir.path(), 200).unwrap();
        let content = bytes(3_000);
        let plain = store.hash_file(&mut &content[..]).unwrap();
        let encrypted = ItemType::BLOB.with_flags(ItemType::FLAG_ENCRYPTED).unwrap();
        let mut writer = FileWriter::new(store.clone(), encrypted).unwrap();
        writer.write(&content).unwrap();
        let got = writer.finish().unwrap();
        assert_eq!(got.hash, plain);
        let mut back = Vec::new();
        store.read_file(&got.hash, &mut back).unwrap();
        assert_eq!(back, content);

        let other = bytes(1_000).into_iter().rev().collect::<Vec<_>>();
        let mut writer = FileWriter::new(store.clone(), ItemType::BLOB).unwrap();
        writer.write(&other).unwrap();
        writer.abort().unwrap();
        let left: Vec<_> = store.iter().unwrap().collect();
        assert_eq!(
            left.len(),
            got.items.len(),
            "only the first file's items remain"
        );
    }
}
