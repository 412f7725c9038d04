//! Output files in progress, noted so that a crash does not leave them behind.
//!
//! A file written out of the store (`kith file get -o PATH`) is built in a temporary file
//! beside its target, then synced and renamed: a reader never sees half a file. A process
//! killed meanwhile (`kill -9`, a power cut) cannot remove that temporary file, and it lies
//! in the user's directory where no collection of the store looks. So each one is noted in
//! a journal: a directory in the store's scratch space holding one small marker per
//! temporary file, naming it. The marker goes once the file is renamed or removed
//! ([`Marker`]'s drop); whatever the markers still name when the node starts was left by a
//! crash, and [`OutputJournal::reclaim`] removes it.
//!
//! Each marker is locked (`flock`) while its writer lives, so a collection that runs
//! meanwhile, in any process, leaves it and its file alone; the kernel drops the lock of a
//! process that dies, by `kill -9` too.
//!
//! Markers are not synced: after a power cut a marker may be lost while the file it names
//! survived (after a mere crash the kernel keeps both). Only a file whose name is a
//! temporary output's ([`TMP_PREFIX`]) is ever removed, whatever a marker says.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What a temporary output file's name starts with.
pub const TMP_PREFIX: &str = ".kith-get-";
/// The longest marker read back (a path).
const MAX_MARKER: u64 = 16 * 1024;

/// The journal of temporary output files (see the module docs).
#[derive(Debug, Clone)]
pub struct OutputJournal {
    dir: PathBuf,
}

impl OutputJournal {
    /// The journal kept in `dir` (created when first needed).
    pub fn new(dir: PathBuf) -> OutputJournal {
        OutputJournal { dir }
    }

    /// A temporary output file in `dir` (the target's directory), noted in the journal. The
    /// marker must live as long as the file: drop it after the file is renamed or removed.
    pub fn create_tmp(&self, dir: &Path) -> std::io::Result<(tempfile::NamedTempFile, Marker)> {
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(dir)?;
        let marker = self.note(tmp.path())?;
        Ok((tmp, marker))
    }

    /// [`OutputJournal::create_tmp`] for a directory (a folder being written out).
    pub fn create_tmp_dir(&self, dir: &Path) -> std::io::Result<(tempfile::TempDir, Marker)> {
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempdir_in(dir)?;
        let marker = self.note(tmp.path())?;
        Ok((tmp, marker))
    }

    fn note(&self, tmp: &Path) -> std::io::Result<Marker> {
        // Absolute: the node that reclaims it may run in another directory.
        let tmp = std::path::absolute(tmp)?;
        std::fs::create_dir_all(&self.dir)?;
        let mut marker = tempfile::Builder::new()
            .prefix("output-")
            .tempfile_in(&self.dir)?;
        marker.write_all(tmp.as_os_str().as_bytes())?;
        // Locked while its writer lives (the kernel drops the lock when the process dies, by
        // `kill -9` too): a collection running meanwhile, from another process, leaves it.
        rustix::fs::flock(marker.as_file(), rustix::fs::FlockOperation::LockExclusive)?;
        let (file, path) = marker.keep().map_err(|e| e.error)?;
        Ok(Marker(Some((path, file))))
    }

    /// Removes the temporary output files the markers still name, and the markers; returns
    /// the files removed. A marker whose writer is still alive (any process) is locked, and
    /// left with its file; so this may run at any time, though the node runs it at start-up.
    pub fn reclaim(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let marker = entry.path();
            let Ok(file) = std::fs::File::open(&marker) else {
                continue;
            };
            let unlocked =
                rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
            if unlocked.is_err() {
                continue; // its writer is alive
            }
            let mut named = Vec::new();
            let read = (&file).take(MAX_MARKER).read_to_end(&mut named);
            if read.is_ok() {
                let named = PathBuf::from(std::ffi::OsStr::from_bytes(&named));
                let ours = named
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(TMP_PREFIX));
                if ours && named.is_absolute() && remove(&named).is_ok() {
                    removed.push(named);
                }
            }
            let _ = std::fs::remove_file(&marker);
        }
        removed
    }
}

/// Removes a temporary output: a file, or a folder with what is in it (never following a
/// symbolic link: one is removed as itself).
fn remove(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// A journal marker, locked while it lives: removed when dropped.
#[derive(Debug)]
pub struct Marker(Option<(PathBuf, std::fs::File)>);

impl Marker {
    /// What a crash does to the marker: closed (so unlocked) and left behind.
    #[cfg(test)]
    fn crash(mut self) {
        self.0.take();
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        // Removed before it is closed (which unlocks it): a collection never takes it for an
        // orphan meanwhile.
        if let Some((path, file)) = self.0.take() {
            let _ = std::fs::remove_file(path);
            drop(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_leaves_a_temporary_file_that_the_next_start_removes() {
        let store = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let journal = OutputJournal::new(store.path().join("outputs"));
        let (tmp, marker) = journal.create_tmp(out.path()).unwrap();
        // A crash: neither the file nor the marker is cleaned up.
        let (_, left) = tmp.keep().unwrap();
        marker.crash();
        assert!(left.exists());
        assert_eq!(journal.reclaim(), vec![left.clone()]);
        assert!(!left.exists());
        assert_eq!(
            std::fs::read_dir(store.path().join("outputs"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_folder_a_crash_left_half_written_is_removed_whole() {
        let store = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let journal = OutputJournal::new(store.path().join("outputs"));
        let (tmp, marker) = journal.create_tmp_dir(out.path()).unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        std::fs::write(tmp.path().join("sub/half.txt"), b"half").unwrap();
        let left = tmp.keep();
        marker.crash();
        assert_eq!(journal.reclaim(), vec![left.clone()]);
        assert!(!left.exists());
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_collection_while_an_output_is_written_leaves_it_alone() {
        let store = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let journal = OutputJournal::new(store.path().join("outputs"));
        let (tmp, marker) = journal.create_tmp(out.path()).unwrap();
        // Another process's collection (flock is per open file: a fresh open stands for it).
        assert!(journal.reclaim().is_empty());
        assert!(tmp.path().exists());
        drop(marker);
        drop(tmp);
    }

    #[test]
    fn a_finished_output_leaves_no_marker_and_nothing_to_reclaim() {
        let store = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let journal = OutputJournal::new(store.path().join("outputs"));
        let (tmp, marker) = journal.create_tmp(out.path()).unwrap();
        tmp.persist(out.path().join("done.bin")).unwrap();
        drop(marker);
        assert!(journal.reclaim().is_empty());
        assert!(out.path().join("done.bin").exists());
    }

    #[test]
    fn a_marker_naming_anything_else_removes_nothing() {
        let store = tempfile::tempdir().unwrap();
        let victim = tempfile::NamedTempFile::new().unwrap();
        let dir = store.path().join("outputs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("output-x"), victim.path().as_os_str().as_bytes()).unwrap();
        std::fs::write(dir.join("output-y"), b"relative/.kith-get-abc").unwrap();
        let journal = OutputJournal::new(dir.clone());
        assert!(journal.reclaim().is_empty());
        assert!(victim.path().exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
