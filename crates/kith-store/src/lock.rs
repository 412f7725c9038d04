//! The store's two lock files, shared by every process that opens the data dir (a node, CLI
//! commands): advisory `flock`s, which the kernel releases when a process dies, even by
//! `kill -9`, so a crash never leaves the store locked.
//!
//! - `<root>/gc.lock`, the **write lease**: every writer holds it *shared* for as long as it
//!   writes items that no record names yet (a put from its first item to its commit, a
//!   [`crate::FileWriter`] for its whole life, a single item write for its duration); the
//!   garbage collector holds it *exclusively*. So the collector never runs while anything is
//!   being written, and it may take every unreferenced item (past the grace period) and every
//!   temp file: none belongs to a live writer.
//! - `<root>/lock`, the **commit lock**, exclusive and short: a put's final check-and-commit, a
//!   remove, a fetch's record, and the collector's sweep. A commit re-checks under it that
//!   every item it is about to reference still exists, so no record ever names a deleted
//!   item, whatever else ran.
//!
//! Order: a lease is always taken before the commit lock, never the reverse, so the two
//! cannot deadlock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::StoreError;

/// Name of the commit lock file in the store root.
pub const LOCK_FILE: &str = "lock";

/// Name of the write-lease lock file in the store root.
pub const GC_LOCK_FILE: &str = "gc.lock";

fn open(root: &Path, name: &str) -> Result<File, StoreError> {
    let path = root.join(name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(StoreError::io("open lock file", &path))
}

/// A shared hold on the store's write lease: while any exists (in any process), the garbage
/// collector does not run. Released when dropped.
#[derive(Debug)]
pub struct WriteLease(#[allow(dead_code)] File);

impl WriteLease {
    /// Takes the lease on the store at `root`, waiting while a garbage collection runs.
    pub(crate) fn take(root: &Path) -> Result<WriteLease, StoreError> {
        let file = open(root, GC_LOCK_FILE)?;
        file.lock_shared()
            .map_err(StoreError::io("lock", root.join(GC_LOCK_FILE)))?;
        Ok(WriteLease(file))
    }
}

/// The exclusive hold of the garbage collector.
#[derive(Debug)]
pub(crate) struct GcLock(#[allow(dead_code)] File);

impl GcLock {
    /// Takes the write lease exclusively: waits for every writer to finish when `wait`,
    /// otherwise returns `None` at once if any is writing.
    pub(crate) fn take(root: &Path, wait: bool) -> Result<Option<GcLock>, StoreError> {
        let file = open(root, GC_LOCK_FILE)?;
        let path = root.join(GC_LOCK_FILE);
        if wait {
            file.lock().map_err(StoreError::io("lock", &path))?;
            return Ok(Some(GcLock(file)));
        }
        match file.try_lock() {
            Ok(()) => Ok(Some(GcLock(file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(StoreError::io("lock", &path)(e)),
        }
    }
}

/// The commit lock, held until dropped.
#[derive(Debug)]
pub(crate) struct CommitLock(#[allow(dead_code)] File);

impl CommitLock {
    /// Takes the commit lock of the store at `root`, waiting for its holder.
    pub(crate) fn take(root: &Path) -> Result<CommitLock, StoreError> {
        let file = open(root, LOCK_FILE)?;
        file.lock()
            .map_err(StoreError::io("lock", root.join(LOCK_FILE)))?;
        Ok(CommitLock(file))
    }
}
