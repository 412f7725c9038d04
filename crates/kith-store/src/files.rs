//! User-visible files: the blob store and the metadata database, kept consistent.
//!
//! A put streams the input into items (all durable on disk), then records the file and every
//! item it uses in the database, and only then returns. A remove forgets the file and deletes
//! the items no other file still uses, so shared chunks survive until their last user goes and a
//! file that is also a chunk of another keeps its item.
//!
//! A CLI process and a running node may share one data dir. The race to prevent is a remove
//! deleting an item that a concurrent put has just found already present (and so did not
//! rewrite) and is about to reference. Both operations therefore take the store's commit lock
//! ([`crate::lock`]): remove for its whole duration, put for its final phase, in which it
//! re-checks that every item it uses still exists before committing. Either the remove ran
//! first (the put sees the gap and fails with [`StoreError::ItemVanished`];
//! [`FileStore::put_path`] retries by itself) or the put committed first (the remove sees the
//! new references and keeps the items). A put also holds the write lease from its first item
//! to its commit, so the garbage collector ([`crate::gc`]) never runs in the middle of it.
//!
//! A put that fails (a full disk, a reader error) removes the items it wrote that no record
//! names, under the commit lock, before reporting the error. A crash (`kill -9`) between the
//! first item and the commit, or between a remove's commit and its deletions, leaves
//! unreferenced items and temp files behind: wasted space, never a dangling reference, and
//! the garbage collector's to reclaim.
//!
//! `FileStore` is `Send + Sync` and every method takes `&self`: blob I/O needs no lock of its
//! own, and the metadata database locks itself for one statement or transaction at a time,
//! so a long put in one thread never makes a `kith file ls` or a ticket check wait.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::address::ContentHash;
use crate::blobs::{sync_dir, BlobStore};
use crate::error::StoreError;
pub use crate::lock::LOCK_FILE;
use crate::lock::{CommitLock, WriteLease};
use crate::meta::{FileRecord, MetaDb};
use crate::outputs::OutputJournal;
use crate::tree::StoredFile;

/// How many times [`FileStore::put_path`] retries after a concurrent remove took an item.
const PUT_ATTEMPTS: usize = 3;

/// A source of unix-seconds timestamps (injectable so tests are deterministic).
pub type Clock = Box<dyn Fn() -> i64 + Send + Sync>;

/// The system clock in unix seconds.
pub fn system_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What [`FileStore::remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RemoveOutcome {
    /// No such file was recorded; nothing changed.
    NotFound,
    /// The file was forgotten and `items_deleted` items nobody else used were deleted.
    Removed {
        /// Items deleted from disk.
        items_deleted: usize,
    },
}

/// Stored files: blobs on disk plus their records.
pub struct FileStore {
    blobs: BlobStore,
    meta: Box<dyn MetaDb>,
    clock: Clock,
}

// The node shares one store between threads with no lock of its own around it.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<FileStore>();
};

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("blobs", &self.blobs)
            .field("meta", &self.meta.backend())
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// Combines a blob store and a metadata database; timestamps come from the system clock.
    pub fn new(blobs: BlobStore, meta: Box<dyn MetaDb>) -> FileStore {
        FileStore {
            blobs,
            meta,
            clock: Box::new(system_clock),
        }
    }

    /// Replaces the clock that stamps `added_at` (and that the garbage collector measures
    /// ages against).
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> FileStore {
        self.clock = Box::new(clock);
        self
    }

    /// The underlying blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The underlying metadata database.
    pub fn meta(&self) -> &dyn MetaDb {
        self.meta.as_ref()
    }

    /// The current time of this store's clock, unix seconds.
    pub(crate) fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The store's write lease (see [`BlobStore::write_lease`]): a caller that stores items
    /// one by one before recording them (a fetch) holds it throughout, so no garbage
    /// collection runs in between.
    pub fn write_lease(&self) -> Result<WriteLease, StoreError> {
        self.blobs.write_lease()
    }

    pub(crate) fn lock(&self) -> Result<CommitLock, StoreError> {
        CommitLock::take(self.blobs.root())
    }

    /// Stores the file at `path` under `name` (`None`: the path's file name). Streams; all
    /// items are durable and the record committed when this returns. Storing a file that is
    /// already recorded returns the existing record.
    pub fn put_path(&self, path: &Path, name: Option<&str>) -> Result<FileRecord, StoreError> {
        let name = name
            .map(str::to_string)
            .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut file = File::open(path).map_err(StoreError::io("open", path))?;
            match self.put_reader_inner(&mut file, name.clone()) {
                Err(StoreError::ItemVanished { .. }) if attempt < PUT_ATTEMPTS => continue,
                other => return other,
            }
        }
    }

    /// Stores everything `reader` yields under `name`. Streams; all items are durable and the
    /// record committed when this returns. Fails with [`StoreError::ItemVanished`] (nothing
    /// recorded) if a concurrent remove deleted an item meanwhile; the caller may retry.
    pub fn put_reader(
        &self,
        reader: &mut dyn Read,
        name: Option<&str>,
    ) -> Result<FileRecord, StoreError> {
        self.put_reader_inner(reader, name.map(str::to_string))
    }

    fn put_reader_inner(
        &self,
        reader: &mut dyn Read,
        name: Option<String>,
    ) -> Result<FileRecord, StoreError> {
        let _lease = self.blobs.write_lease()?;
        let mut created = Vec::new();
        let result = self
            .blobs
            .put_file_tracked(reader, &mut created)
            .and_then(|stored| self.commit(stored, name));
        if result.is_err() {
            // Best effort: what is left behind is the garbage collector's.
            let _ = self.undo(&created);
        }
        result
    }

    /// Records a stored file, under the commit lock, after checking that every item is still
    /// there.
    /// Checks, under the commit lock, that every item a record is about to name is still
    /// stored (a remove in another process may have taken one meanwhile).
    pub(crate) fn all_present(&self, items: &[ContentHash]) -> Result<(), StoreError> {
        for item in items {
            if !self.blobs.contains(item)? {
                return Err(StoreError::ItemVanished { hash: *item });
            }
        }
        Ok(())
    }

    fn commit(&self, stored: StoredFile, name: Option<String>) -> Result<FileRecord, StoreError> {
        let _lock = self.lock()?;
        self.all_present(&stored.items)?;
        let record = FileRecord {
            hash: stored.hash,
            kind: stored.kind,
            size: stored.size,
            name,
            added_at: (self.clock)(),
        };
        Ok(self.meta.insert_file(&record, &stored.items)?)
    }

    /// Removes the items a failed put wrote, except those a record names meanwhile (another
    /// put of the same content may have committed them): under the commit lock, so no commit
    /// can start naming one between the check and the removal.
    pub(crate) fn undo(&self, created: &[ContentHash]) -> Result<usize, StoreError> {
        if created.is_empty() {
            return Ok(0);
        }
        let _lock = self.lock()?;
        let used = self.meta.items_in_use(created)?;
        let mut removed = 0;
        for item in created.iter().filter(|item| !used.contains(item)) {
            if self.blobs.remove_item(item)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Records the file `hash` whose items are all already in the store (fetched item by item
    /// from a peer) under `name`: walks and verifies the whole tree first, then commits the
    /// record and its item references under the store lock, as a put does. Fails with
    /// [`StoreError::NotFound`] naming the first missing item, or [`StoreError::Corrupt`].
    /// Recording a file that is already recorded returns the existing record.
    pub fn record_existing(
        &self,
        hash: &ContentHash,
        name: Option<&str>,
    ) -> Result<FileRecord, StoreError> {
        let walked = self.blobs.walk_file(hash)?;
        self.record_walked(walked, name)
    }

    /// [`FileStore::record_existing`] for a caller that has just verified every item of the
    /// file itself (a fetch hashes each item as it arrives, and each one it already held as it
    /// walked the tree), so the tree is not read and hashed a second time: `walked` says what
    /// the file is. Each item must still be in the store, checked under the store lock.
    pub fn record_walked(
        &self,
        walked: StoredFile,
        name: Option<&str>,
    ) -> Result<FileRecord, StoreError> {
        let _lock = self.lock()?;
        self.all_present(&walked.items)?;
        let record = FileRecord {
            hash: walked.hash,
            kind: walked.kind,
            size: walked.size,
            name: name.map(str::to_string),
            added_at: (self.clock)(),
        };
        Ok(self.meta.insert_file(&record, &walked.items)?)
    }

    /// Writes the file `hash` to `path`, verifying every item. The bytes go to a temporary file
    /// beside `path`, which is fsync'd and renamed over `path` only when the whole file was read
    /// and verified: a corrupt or incomplete store never leaves a file that looks complete.
    /// Returns the number of bytes written.
    pub fn get_to_path(&self, hash: &ContentHash, path: &Path) -> Result<u64, StoreError> {
        self.write_out(hash, path, true)
    }

    /// The journal of the temporary files that writing out leaves beside its targets until
    /// they are renamed ([`crate::outputs`]): what a crash left there, the next start
    /// removes ([`OutputJournal::reclaim`]).
    pub fn output_journal(&self) -> OutputJournal {
        OutputJournal::new(self.blobs.scratch_dir("outputs"))
    }

    /// [`FileStore::get_to_path`] that, without `replace`, refuses to replace an existing
    /// `path` (an [`StoreError::Io`] whose source is `AlreadyExists`; checked again at the
    /// final rename, so a file that appeared meanwhile is kept too).
    pub fn write_out(
        &self,
        hash: &ContentHash,
        path: &Path,
        replace: bool,
    ) -> Result<u64, StoreError> {
        if !replace && path.exists() {
            return Err(StoreError::io("create", path)(io::Error::from(
                io::ErrorKind::AlreadyExists,
            )));
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let (mut tmp, _marker) = self
            .output_journal()
            .create_tmp(dir)
            .map_err(StoreError::io("create temporary file in", dir))?;
        let written = {
            let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            let written = self.blobs.read_file(hash, &mut out)?;
            out.flush().map_err(|source| StoreError::Stream {
                op: "write output",
                source,
            })?;
            written
        };
        tmp.as_file()
            .sync_all()
            .map_err(StoreError::io("sync", tmp.path().to_path_buf()))?;
        let persisted = if replace {
            tmp.persist(path).map(|_| ())
        } else {
            tmp.persist_noclobber(path).map(|_| ())
        };
        persisted.map_err(|e| StoreError::io("rename into", path)(e.error))?;
        sync_dir(dir)?;
        Ok(written)
    }

    /// Streams the file `hash` to `out`, verifying every item before its bytes are written.
    /// On error `out` may have received a prefix; use [`FileStore::get_to_path`] for files.
    pub fn get_to_writer(
        &self,
        hash: &ContentHash,
        out: &mut dyn Write,
    ) -> Result<u64, StoreError> {
        self.blobs.read_file(hash, out)
    }

    /// Reads the whole file `hash` and checks every item; returns its size in bytes.
    pub fn verify(&self, hash: &ContentHash) -> Result<u64, StoreError> {
        self.blobs.read_file(hash, &mut io::sink())
    }

    /// The address the file at `path` would get, without storing it (`kith file hash`).
    pub fn hash_path(&self, path: &Path) -> Result<ContentHash, StoreError> {
        let mut file = File::open(path).map_err(StoreError::io("open", path))?;
        self.blobs.hash_file(&mut file)
    }

    /// The record of a stored file.
    pub fn get(&self, hash: &ContentHash) -> Result<Option<FileRecord>, StoreError> {
        Ok(self.meta.get_file(hash)?)
    }

    /// All stored files, oldest first.
    pub fn list(&self) -> Result<Vec<FileRecord>, StoreError> {
        Ok(self.meta.list_files()?)
    }

    /// Forgets the file `hash` and deletes every item that no other stored file uses.
    pub fn remove(&self, hash: &ContentHash) -> Result<RemoveOutcome, StoreError> {
        let _lock = self.lock()?;
        let Some(orphans) = self.meta.remove_file(hash)? else {
            return Ok(RemoveOutcome::NotFound);
        };
        let mut items_deleted = 0;
        for item in &orphans {
            if self.blobs.remove_item(item)? {
                items_deleted += 1;
            }
        }
        Ok(RemoveOutcome::Removed { items_deleted })
    }
}
