//! The blob store: one file per item, named by its hash, laid out like the CIYAM reference.
//!
//! An item lives at `<root>/<first 2 hex>/<other 62 hex>` and holds `type byte ‖ content`, the
//! same bytes the reference keeps, so a store can be inspected with `sha256sum`-style tools and
//! compared with a reference node's `files/` directory.
//!
//! Two rules shape the code:
//! - *Nothing is acknowledged before it is durable.* A put writes a temporary file inside the
//!   store (`<root>/tmp/`, same file system, so the rename is atomic), fsyncs it, renames it into
//!   place and fsyncs the directory. A crash leaves either the old state or the complete item,
//!   plus perhaps a stray temporary file, never a half item under a valid name.
//! - *Nothing is collected that a writer is about to use.* Every write holds the store's write
//!   lease ([`crate::lock`]) and an item that is already present is not rewritten but
//!   *freshened* (its modification time set to now, as git does), so the garbage collector,
//!   which keeps unreferenced items younger than its grace period, never takes an item a
//!   writer has just written or found.
//! - *Nothing is served that does not match its name.* Every read re-hashes the bytes; a file
//!   that is missing, oversized, malformed or altered is reported with its hash and not returned.
//!   Size is checked against the configured maximum before anything is read into memory, so a
//!   planted huge file cannot exhaust memory.

use std::fs::{self, File, ReadDir};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::address::{ContentHash, ItemType};
use crate::error::StoreError;
use crate::lock::WriteLease;

/// The reference's maximum item size: 1,000,000 bytes, type byte included.
pub const DEFAULT_MAX_ITEM_SIZE: usize = 1_000_000;

/// The smallest allowed maximum item size: a list must hold at least two hashes
/// (64 + 1 + 64 bytes) plus its type byte, or a tree of lists could not shrink.
pub const MIN_MAX_ITEM_SIZE: usize = 130;

/// The temp dir inside the store root.
pub(crate) const TMP_DIR: &str = "tmp";

/// A temporary file this old was left by a writer that crashed: a live writer holds each one
/// for the few milliseconds it takes to write and fsync one item.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Best effort: deletes temporary files older than `age`. Failing to delete one only wastes
/// space, so errors are ignored rather than stopping the store from opening.
fn remove_abandoned_temp_files(tmp_dir: &Path, age: std::time::Duration) {
    let Ok(entries) = fs::read_dir(tmp_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// One stored item, verified against its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The stored type byte.
    pub item_type: ItemType,
    /// The content after the type byte.
    pub content: Vec<u8>,
}

/// A directory of content-addressed items.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    max_item: usize,
    /// Test hook: bytes the "disk" still takes before writes fail with ENOSPC.
    #[cfg(test)]
    pub(crate) space_left: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl BlobStore {
    /// Opens (creating if needed) a store at `root` with the default maximum item size.
    pub fn open(root: impl AsRef<Path>) -> Result<BlobStore, StoreError> {
        BlobStore::with_max_item_size(root, DEFAULT_MAX_ITEM_SIZE)
    }

    /// Opens (creating if needed) a store at `root` whose items hold at most `max_item_size`
    /// bytes, type byte included. Every node exchanging files with another must use the same
    /// value, since it decides how large files are cut into items and therefore their hashes.
    pub fn with_max_item_size(
        root: impl AsRef<Path>,
        max_item_size: usize,
    ) -> Result<BlobStore, StoreError> {
        if max_item_size < MIN_MAX_ITEM_SIZE {
            return Err(StoreError::Config(format!(
                "maximum item size {max_item_size} is below the minimum of {MIN_MAX_ITEM_SIZE}"
            )));
        }
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(root.join(TMP_DIR)).map_err(StoreError::io("create", &root))?;
        remove_abandoned_temp_files(&root.join(TMP_DIR), ABANDONED_AFTER);
        Ok(BlobStore {
            root,
            max_item: max_item_size,
            #[cfg(test)]
            space_left: None,
        })
    }

    /// Takes the store's write lease (shared; see [`crate::lock`]): while it is held, in this
    /// process or any other, the garbage collector does not run. A writer that stores items
    /// over a long time before a record names them (a fetch, item by item) holds one for its
    /// whole duration; each single write here takes one for itself. Waits while a garbage
    /// collection runs.
    pub fn write_lease(&self) -> Result<WriteLease, StoreError> {
        WriteLease::take(&self.root)
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A directory under the store's temporary directory that the store's own collections
    /// leave alone (they remove files directly in it only), for a caller's bookkeeping of
    /// what a crash may leave elsewhere.
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        self.root.join(TMP_DIR).join(name)
    }

    /// The maximum item size in bytes, type byte included.
    pub fn max_item_size(&self) -> usize {
        self.max_item
    }

    /// Where the item `hash` lives (whether or not it exists).
    pub fn path_for(&self, hash: &ContentHash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..])
    }

    /// Stores an item durably and returns its hash. Idempotent: storing an item that is
    /// already present (and intact) does not rewrite it; a damaged copy is replaced.
    pub fn put_item(&self, item_type: ItemType, content: &[u8]) -> Result<ContentHash, StoreError> {
        let _lease = self.write_lease()?;
        let (hash, dir) = self.put_item_deferred(item_type, content)?;
        if let Some(dir) = dir {
            sync_dir(&dir)?;
        }
        Ok(hash)
    }

    /// [`BlobStore::put_item`] for an item whose address the caller computed from these very
    /// bytes moments ago (a CIYAM session hashes every item it receives before it asks for it
    /// to be stored), so the content is not hashed a second time: for a 1 MB item that is a
    /// good part of the fetching node's work. Durability is the same as `put_item`'s. The name
    /// is still never trusted for reading: every read re-hashes, so a wrong `hash` would only
    /// leave an item that is refused as corrupt, never serve wrong bytes. Debug builds check
    /// the hash anyway.
    pub fn put_hashed_item(
        &self,
        hash: ContentHash,
        item_type: ItemType,
        content: &[u8],
    ) -> Result<(), StoreError> {
        self.check_item(item_type, content)?;
        debug_assert_eq!(hash, ContentHash::compute(item_type, content));
        let _lease = self.write_lease()?;
        if let Some(dir) = self.write_item(hash, item_type, content)? {
            sync_dir(&dir)?;
        }
        Ok(())
    }

    /// Like [`BlobStore::put_item`] but leaves the final directory fsync to the caller: returns
    /// the directory to sync when the item was newly written. The file itself is fsync'd. The
    /// caller holds the write lease.
    pub(crate) fn put_item_deferred(
        &self,
        item_type: ItemType,
        content: &[u8],
    ) -> Result<(ContentHash, Option<PathBuf>), StoreError> {
        self.check_item(item_type, content)?;
        let hash = ContentHash::compute(item_type, content);
        Ok((hash, self.write_item(hash, item_type, content)?))
    }

    /// Refuses an item that may not be stored: compressed, or over the maximum size.
    pub(crate) fn check_item(&self, item_type: ItemType, content: &[u8]) -> Result<(), StoreError> {
        if item_type.has_flag(ItemType::FLAG_COMPRESSED) {
            return Err(StoreError::CompressedItem);
        }
        let size = content.len() as u64 + 1;
        if size > self.max_item as u64 {
            return Err(StoreError::ItemTooLarge {
                size,
                max: self.max_item,
            });
        }
        Ok(())
    }

    /// Writes the item durably under `hash` (temp file, fsync, rename) unless it is already
    /// there intact (then it is freshened); returns the directory whose fsync is still owed
    /// when it was written. The caller has checked the item ([`BlobStore::check_item`]) and
    /// holds the write lease.
    fn write_item(
        &self,
        hash: ContentHash,
        item_type: ItemType,
        content: &[u8],
    ) -> Result<Option<PathBuf>, StoreError> {
        let path = self.path_for(&hash);
        if self.holds_exactly(&path, item_type, content) {
            freshen(&path);
            return Ok(None);
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        match fs::create_dir(&dir) {
            Ok(()) => sync_dir(&self.root)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io("create", &dir)(e)),
        }
        let tmp = self.write_tmp_item(item_type, content)?;
        tmp.as_file()
            .sync_all()
            .map_err(StoreError::io("write", tmp.path().to_path_buf()))?;
        tmp.persist(&path)
            .map_err(|e| StoreError::io("rename into", &path)(e.error))?;
        Ok(Some(dir))
    }

    /// Writes an item (type byte, then content) to a new temporary file in the store's
    /// `tmp/`, unsynced and without a name: the caller syncs and renames it, or stages it.
    /// On any error the temporary file is removed (as it drops).
    pub(crate) fn write_tmp_item(
        &self,
        item_type: ItemType,
        content: &[u8],
    ) -> Result<tempfile::NamedTempFile, StoreError> {
        let tmp_dir = self.root.join(TMP_DIR);
        // The tmp dir may have been removed by hand; recreate rather than fail.
        fs::create_dir_all(&tmp_dir).map_err(StoreError::io("create", &tmp_dir))?;
        let mut tmp = tempfile::Builder::new()
            .prefix("item-")
            .tempfile_in(&tmp_dir)
            .map_err(StoreError::io("create temporary file in", &tmp_dir))?;
        let tmp_path = tmp.path().to_path_buf();
        self.write_bytes(tmp.as_file_mut(), &[item_type.byte()])
            .and_then(|()| self.write_bytes(tmp.as_file_mut(), content))
            .map_err(StoreError::io("write", &tmp_path))?;
        Ok(tmp)
    }

    /// Writes `bytes` to a temporary item file (through the full-disk hook in tests).
    pub(crate) fn write_bytes(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if let Some(space) = &self.space_left {
            use std::sync::atomic::Ordering;
            let left = space.load(Ordering::SeqCst);
            let fits = (bytes.len() as u64).min(left);
            space.fetch_sub(fits, Ordering::SeqCst);
            file.write_all(&bytes[..fits as usize])?;
            if fits < bytes.len() as u64 {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            return Ok(());
        }
        file.write_all(bytes)
    }

    /// Marks the stored items `hashes` as just used, so that the garbage collector's grace
    /// period starts again for them (best effort, like every freshening).
    pub(crate) fn freshen_items(&self, hashes: &[ContentHash]) {
        for hash in hashes {
            freshen(&self.path_for(hash));
        }
    }

    /// Whether `path` already holds exactly this item (bounded read: items are small).
    pub(crate) fn holds_exactly(&self, path: &Path, item_type: ItemType, content: &[u8]) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        match file.metadata() {
            Ok(meta) if meta.is_file() && meta.len() == content.len() as u64 + 1 => {}
            _ => return false,
        }
        let mut stored = Vec::with_capacity(content.len() + 1);
        if file
            .take(self.max_item as u64 + 1)
            .read_to_end(&mut stored)
            .is_err()
        {
            return false;
        }
        stored.first() == Some(&item_type.byte()) && stored[1..] == *content
    }

    /// Reads an item and checks it against its hash.
    ///
    /// Errors: [`StoreError::NotFound`] when absent, [`StoreError::Corrupt`] when the file is
    /// empty, larger than the maximum item size (refused before reading), has an unknown or
    /// compressed type byte, or does not hash to its name.
    pub fn get_item(&self, hash: &ContentHash) -> Result<Item, StoreError> {
        let (item_type, mut bytes) = self.read_verified(hash)?;
        bytes.remove(0);
        Ok(Item {
            item_type,
            content: bytes,
        })
    }

    /// [`BlobStore::get_item`] as stored: the type byte, then the content, in one buffer (as
    /// the peer protocols carry an item), verified the same way and without copying it again.
    pub fn get_item_bytes(&self, hash: &ContentHash) -> Result<Vec<u8>, StoreError> {
        self.read_verified(hash).map(|(_, bytes)| bytes)
    }

    /// [`BlobStore::get_item_bytes`] into a buffer that starts with `prefix` (a protocol's
    /// header), so the item is read straight into the message that carries it. Verified the
    /// same way.
    pub fn get_item_with_prefix(
        &self,
        hash: &ContentHash,
        prefix: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.read_verified_into(hash, prefix.to_vec())
            .map(|(_, bytes)| bytes)
    }

    /// Reads and verifies an item file: its type and its bytes, type byte first.
    fn read_verified(&self, hash: &ContentHash) -> Result<(ItemType, Vec<u8>), StoreError> {
        self.read_verified_into(hash, Vec::new())
    }

    /// [`BlobStore::read_verified`] appending to `bytes` (which may hold a prefix, returned
    /// with the item after it).
    fn read_verified_into(
        &self,
        hash: &ContentHash,
        mut bytes: Vec<u8>,
    ) -> Result<(ItemType, Vec<u8>), StoreError> {
        let start = bytes.len();
        let path = self.path_for(hash);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { hash: *hash })
            }
            Err(e) => return Err(StoreError::io("open", &path)(e)),
        };
        let meta = file.metadata().map_err(StoreError::io("stat", &path))?;
        if !meta.is_file() {
            return Err(StoreError::corrupt(*hash, "not a regular file"));
        }
        let max = self.max_item as u64;
        if meta.len() > max {
            return Err(StoreError::corrupt(
                *hash,
                format!(
                    "file of {} bytes exceeds the maximum item size {max}",
                    meta.len()
                ),
            ));
        }
        bytes.reserve_exact(meta.len() as usize);
        // `take` guards against the file growing after the size check.
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(StoreError::io("read", &path))?;
        if (bytes.len() - start) as u64 > max {
            return Err(StoreError::corrupt(
                *hash,
                "file grew past the maximum item size",
            ));
        }
        let Some((&type_byte, content)) = bytes[start..].split_first() else {
            return Err(StoreError::corrupt(*hash, "empty file (no type byte)"));
        };
        let item_type = ItemType::from_byte(type_byte)
            .map_err(|e| StoreError::corrupt(*hash, e.to_string()))?;
        if item_type.has_flag(ItemType::FLAG_COMPRESSED) {
            return Err(StoreError::corrupt(
                *hash,
                "compressed item (kith keeps items uncompressed)",
            ));
        }
        if ContentHash::compute(item_type, content) != *hash {
            return Err(StoreError::corrupt(
                *hash,
                "content does not match its hash",
            ));
        }
        Ok((item_type, bytes))
    }

    /// Whether a file for `hash` exists (not verified; use [`BlobStore::get_item`] for that).
    pub fn contains(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        let path = self.path_for(hash);
        path.try_exists().map_err(StoreError::io("stat", &path))
    }

    /// Deletes an item; returns whether it existed. The directory is fsync'd.
    pub fn remove_item(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        let path = self.path_for(hash);
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    sync_dir(dir)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("remove", &path)(e)),
        }
    }

    /// Iterates over the hashes of all stored items (unverified; order unspecified).
    /// Names that are not item files (the tmp dir, the lock file, strays) are skipped.
    pub fn iter(&self) -> Result<BlobIter, StoreError> {
        let outer = fs::read_dir(&self.root).map_err(StoreError::io("list", &self.root))?;
        Ok(BlobIter {
            outer,
            inner: None,
            root: self.root.clone(),
        })
    }
}

/// Iterator over stored item hashes, from [`BlobStore::iter`].
#[derive(Debug)]
pub struct BlobIter {
    outer: ReadDir,
    inner: Option<(String, PathBuf, ReadDir)>,
    root: PathBuf,
}

fn is_lower_hex(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Iterator for BlobIter {
    type Item = Result<ContentHash, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((prefix, dir, entries)) = &mut self.inner {
                match entries.next() {
                    Some(Ok(entry)) => {
                        let name = entry.file_name();
                        let Some(name) = name.to_str() else { continue };
                        if !is_lower_hex(name, 62) {
                            continue;
                        }
                        let full = format!("{prefix}{name}");
                        if let Some(hash) = ContentHash::from_lower_hex(full.as_bytes()) {
                            return Some(Ok(hash));
                        }
                    }
                    Some(Err(e)) => return Some(Err(StoreError::io("list", dir.clone())(e))),
                    None => self.inner = None,
                }
                continue;
            }
            match self.outer.next()? {
                Ok(entry) => {
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    if !is_lower_hex(name, 2) {
                        continue;
                    }
                    let dir = entry.path();
                    match fs::read_dir(&dir) {
                        Ok(entries) => self.inner = Some((name.to_string(), dir, entries)),
                        Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
                        Err(e) => return Some(Err(StoreError::io("list", dir)(e))),
                    }
                }
                Err(e) => return Some(Err(StoreError::io("list", self.root.clone())(e))),
            }
        }
    }
}

/// Sets a stored item's modification time to now: the garbage collector measures an
/// unreferenced item's age from it. Best effort: a failure only means the item may be
/// collected earlier, and then a commit that wanted it fails its re-check (retried), never
/// records a missing item.
pub(crate) fn freshen(path: &Path) {
    if let Ok(file) = File::options().write(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// fsyncs a directory so that renames and deletions inside it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_a_store_removes_only_abandoned_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let tmp_dir = dir.path().join(TMP_DIR);
        fs::create_dir_all(&tmp_dir).unwrap();
        let (old, fresh) = (tmp_dir.join("old"), tmp_dir.join("fresh"));
        fs::write(&old, b"x").unwrap();
        fs::write(&fresh, b"y").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        BlobStore::open(dir.path()).unwrap();
        assert!(!old.exists(), "abandoned temp file removed");
        assert!(fresh.exists(), "a temp file a live writer may own is kept");
    }
}
