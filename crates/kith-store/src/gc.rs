//! Garbage collection: reclaims the items no record names and the temp files that crashed
//! writers left (`kill -9` of a put, a full disk, a custody session that died).
//!
//! The rule, as git and restic keep it:
//! - **Writers hold the write lease** (shared `flock` on `<root>/gc.lock`, see
//!   [`crate::lock`]) while they write items no record names yet; the collector takes it
//!   exclusively. So it never runs in the middle of a put or a custody copy, in any process,
//!   and every temp file it finds is abandoned. [`FileStore::startup_gc`] only tries (a busy
//!   store is left for next time); `kith store gc` waits.
//! - **Unreferenced items younger than a grace period are kept** (default
//!   [`DEFAULT_GRACE_SECS`], one day; git keeps unreachable objects for two weeks for the
//!   same reason). A fetch stores a file's items one by one and records the file only at the
//!   end, and a re-run resumes by skipping the items already here; the peer port and custody
//!   keep loose items for moments too. These writers hold the lease only for each item, so the
//!   grace period is what keeps their work: an item's age is its file's modification time,
//!   which a write that finds the item present refreshes (as git freshens objects). A fetch
//!   interrupted for longer than the grace period starts over.
//! - **Under the commit lock**, so no commit can start naming an item between the check and
//!   the deletion; and a commit re-checks that its items exist, so even a fetch whose items
//!   were collected records nothing dangling: it fails and is run again.
//!
//! In use means: a recorded file is the item or uses it (`file_items`), a custody record
//! names it, or it is a stranger's anonymous item (`anonymous_items`); a custody copy's tree,
//! which no row lists item by item, is walked (lists only) from its root. Anonymous items
//! have a deadline of their own: the collector first deletes the rows past it and their
//! items (unless another record names them), whatever their age on disk, so the table never
//! keeps an item alive for ever and never names a deleted one. Memory is one batch of hashes plus the custody trees' hashes, whatever the
//! store's size.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::address::ContentHash;
use crate::error::StoreError;
use crate::files::FileStore;
use crate::lock::GcLock;

/// How long an unreferenced item is kept by default: one day, in seconds.
pub const DEFAULT_GRACE_SECS: u64 = 24 * 60 * 60;

/// Items checked against the database per query batch.
const BATCH: usize = 500;

/// How a collection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// Unreferenced items younger than this (seconds since written or last found by a
    /// writer) are kept.
    pub grace_secs: u64,
    /// Wait for writers to finish (`true`), or give up with [`StoreError::Busy`] at once.
    pub wait: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace_secs: DEFAULT_GRACE_SECS,
            wait: true,
        }
    }
}

/// What a collection found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Item files in the store.
    pub items_scanned: u64,
    /// Items a record names (or in a custody copy's tree): kept.
    pub items_in_use: u64,
    /// Items no record names, younger than the grace period: kept.
    pub items_kept_young: u64,
    /// Bytes of those.
    pub bytes_kept_young: u64,
    /// Items no record names, removed.
    pub items_removed: u64,
    /// Abandoned temp files removed.
    pub temp_files_removed: u64,
    /// Strangers' anonymous items past their deadline, removed.
    pub anonymous_expired: u64,
    /// Bytes freed, items and temp files.
    pub bytes_freed: u64,
    /// The grace period used, seconds.
    pub grace_secs: u64,
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "removed {} unreferenced items and {} temp files, freeing {}; {} items in use",
            self.items_removed,
            self.temp_files_removed,
            human_bytes(self.bytes_freed),
            self.items_in_use,
        )?;
        if self.anonymous_expired > 0 {
            write!(
                f,
                "; {} anonymous items past their deadline removed",
                self.anonymous_expired
            )?;
        }
        if self.items_kept_young > 0 {
            write!(
                f,
                "; kept {} unreferenced items ({}) younger than {} s, which a fetch may resume with",
                self.items_kept_young,
                human_bytes(self.bytes_kept_young),
                self.grace_secs
            )?;
        }
        Ok(())
    }
}

/// Bytes in the largest unit that keeps a number of at least 1 (decimal units).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// What the start-up collection did (for the node's log).
#[derive(Debug)]
pub enum StartupGc {
    /// It ran.
    Done(GcReport),
    /// A writer was at work (a CLI put, say): nothing was touched.
    Busy,
    /// It failed; nothing is wrong with the store because of it.
    Failed(StoreError),
}

impl std::fmt::Display for StartupGc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartupGc::Done(report) => write!(f, "store gc: {report}"),
            StartupGc::Busy => {
                f.write_str("store gc skipped: another process is writing to the store")
            }
            StartupGc::Failed(e) => write!(f, "store gc failed: {e}"),
        }
    }
}

impl FileStore {
    /// Reclaims unreferenced items older than the grace period and every abandoned temp file
    /// (see the module documentation for the rule). Waits for writers, or fails with
    /// [`StoreError::Busy`], as `options` says.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport, StoreError> {
        let root = self.blobs().root().to_path_buf();
        let Some(_gc) = GcLock::take(&root, options.wait)? else {
            return Err(StoreError::Busy);
        };
        let _commit = self.lock()?;
        let mut report = GcReport {
            grace_secs: options.grace_secs,
            ..GcReport::default()
        };
        remove_temp_files(&root.join(crate::blobs::TMP_DIR), &mut report);
        let now = self.now();
        let expired = self.meta().expire_anonymous(now)?;
        let (deleted, bytes) = self.delete_unused(&expired)?;
        report.anonymous_expired = deleted as u64;
        report.bytes_freed += bytes;
        let mut custody = HashSet::new();
        for record in self.meta().list_custody()? {
            self.blobs().mark_tree(&record.encrypted_hash, &mut custody);
            custody.insert(record.pull_request_hash);
        }
        let grace = i64::try_from(options.grace_secs).unwrap_or(i64::MAX);
        let mut batch = Vec::with_capacity(BATCH);
        for hash in self.blobs().iter()? {
            let hash = hash?;
            report.items_scanned += 1;
            if custody.contains(&hash) {
                report.items_in_use += 1;
                continue;
            }
            batch.push(hash);
            if batch.len() == BATCH {
                self.sweep(&mut batch, now, grace, &mut report)?;
            }
        }
        self.sweep(&mut batch, now, grace, &mut report)?;
        Ok(report)
    }

    /// The collection a node runs when it opens its store: default grace period, and skipped
    /// if anything is writing to the store. Never fails the caller: the outcome is for a log
    /// line.
    pub fn startup_gc(&self) -> StartupGc {
        let options = GcOptions {
            wait: false,
            ..GcOptions::default()
        };
        match self.gc(&options) {
            Ok(report) => StartupGc::Done(report),
            Err(StoreError::Busy) => StartupGc::Busy,
            Err(e) => StartupGc::Failed(e),
        }
    }

    /// Removes the items of `batch` that no record names and that are older than `grace`.
    /// Deletions are not fsync'd: one undone by a crash is still unreferenced, and the next
    /// collection takes it.
    fn sweep(
        &self,
        batch: &mut Vec<ContentHash>,
        now: i64,
        grace: i64,
        report: &mut GcReport,
    ) -> Result<(), StoreError> {
        let used = self.meta().items_in_use(batch)?;
        for hash in batch.drain(..) {
            if used.contains(&hash) {
                report.items_in_use += 1;
                continue;
            }
            let path = self.blobs().path_for(&hash);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue; // gone meanwhile (a remove)
            };
            if now.saturating_sub(mtime_secs(&meta)) < grace {
                report.items_kept_young += 1;
                report.bytes_kept_young += meta.len();
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    report.items_removed += 1;
                    report.bytes_freed += meta.len();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &path)(e)),
            }
        }
        Ok(())
    }
}

/// A file's modification time in unix seconds (a time before 1970 counts as 0; a missing one
/// as now, i.e. young).
fn mtime_secs(meta: &fs::Metadata) -> i64 {
    match meta.modified() {
        Ok(t) => t
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0),
        Err(_) => i64::MAX,
    }
}

/// Removes every file in the temp dir: with the write lease held exclusively, no writer owns
/// one. Best effort (a file that cannot be removed is left for next time).
fn remove_temp_files(tmp_dir: &Path, report: &mut GcReport) {
    let Ok(entries) = fs::read_dir(tmp_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() && fs::remove_file(entry.path()).is_ok() {
            report.temp_files_removed += 1;
            report.bytes_freed += meta.len();
        }
    }
}

#[cfg(test)]
mod tests;
