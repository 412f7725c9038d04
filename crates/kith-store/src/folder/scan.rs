//! `kith file put DIR`: what is under the directory, and storing it.
//!
//! The scan never leaves DIR: a symbolic link is skipped (never followed, to a file or a
//! directory), and so is anything that is neither a regular file nor a directory (a FIFO,
//! a socket, a device), and a name a manifest may not carry (not UTF-8, a backslash or a
//! control character); each skip is reported so the CLI can warn. A directory with nothing
//! stored under it is listed as an empty directory, so the structure is kept.
//!
//! The put stores every file as `kith file put FILE` does (streamed, each item durable), then
//! the manifest, then records the folder in one transaction under the commit lock, holding the
//! write lease throughout; a put that fails removes the items it wrote that no record names.

use crate::error::StoreError;
use crate::files::FileStore;
use crate::manifest::{is_component, FolderEntry, Manifest, ManifestError, ManifestLimits};
use crate::meta::{FileRecord, FolderRow};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Something under the directory that is not stored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where it is.
    pub path: PathBuf,
    /// Why it is skipped.
    pub reason: &'static str,
}

/// One file found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    /// Relative, `/`-separated.
    rel: String,
    abs: PathBuf,
    exec: bool,
}

/// What is under a directory.
#[derive(Debug, Clone, Default)]
pub struct FolderScan {
    files: Vec<Found>,
    dirs: Vec<String>,
    /// Bytes of all files, as the scan saw them (for a progress bar).
    pub bytes: u64,
    /// What is not stored.
    pub skipped: Vec<Skipped>,
}

/// What [`FileStore::put_folder`] did.
#[derive(Debug, Clone)]
pub struct FolderPut {
    /// The manifest's record (the folder's address and name).
    pub record: FileRecord,
    /// The folder.
    pub folder: FolderRow,
}

impl FolderScan {
    /// Scans `dir` (which must be a directory; a symbolic link to one is followed, as the
    /// user named it). Refuses a folder with more entries than `limits` allow.
    pub fn of(dir: &Path, limits: &ManifestLimits) -> Result<FolderScan, StoreError> {
        let meta = std::fs::metadata(dir).map_err(StoreError::io("read", dir))?;
        if !meta.is_dir() {
            return Err(StoreError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        let mut scan = FolderScan::default();
        scan.walk(dir, "", limits)?;
        if scan.files.len() + scan.dirs.len() > limits.max_entries {
            return Err(StoreError::FolderRefused(ManifestError::TooManyEntries {
                max: limits.max_entries,
            }));
        }
        Ok(scan)
    }

    /// Files found.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Scans `abs` (relative path `rel`); returns whether anything under it is listed.
    fn walk(&mut self, abs: &Path, rel: &str, limits: &ManifestLimits) -> Result<bool, StoreError> {
        let mut children: Vec<_> = std::fs::read_dir(abs)
            .map_err(StoreError::io("read", abs))?
            .collect::<Result<_, _>>()
            .map_err(StoreError::io("read", abs))?;
        children.sort_by_key(|c| c.file_name());
        let mut listed = false;
        for child in children {
            let path = child.path();
            let skip = |reason| Skipped {
                path: path.clone(),
                reason,
            };
            let Some(name) = child.file_name().to_str().map(str::to_owned) else {
                self.skipped.push(skip("the name is not UTF-8"));
                continue;
            };
            if !is_component(&name) {
                self.skipped
                    .push(skip("the name has a backslash or control character"));
                continue;
            }
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if child_rel.len() > limits.max_path {
                self.skipped.push(skip("the path is too long"));
                continue;
            }
            // The entry's own type: a symbolic link is not followed.
            let kind = child.file_type().map_err(StoreError::io("stat", &path))?;
            if kind.is_symlink() {
                self.skipped.push(skip("a symbolic link (not followed)"));
            } else if kind.is_dir() {
                if !self.walk(&path, &child_rel, limits)? {
                    self.dirs.push(child_rel);
                }
                listed = true;
            } else if kind.is_file() {
                let meta = child.metadata().map_err(StoreError::io("stat", &path))?;
                self.bytes += meta.len();
                self.files.push(Found {
                    rel: child_rel,
                    abs: path,
                    exec: meta.permissions().mode() & 0o111 != 0,
                });
                listed = true;
            } else {
                self.skipped
                    .push(skip("not a regular file (a FIFO, socket or device)"));
            }
        }
        Ok(listed)
    }
}

impl FileStore {
    /// Stores the scanned folder under `name` (see the module docs); `progress` learns the
    /// bytes read as they are read. Putting a folder that is stored already returns its record.
    pub fn put_folder(
        &self,
        scan: &FolderScan,
        name: Option<&str>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<FolderPut, StoreError> {
        let _lease = self.blobs().write_lease()?;
        let mut created = Vec::new();
        let result = self.put_folder_inner(scan, name, progress, &mut created);
        if result.is_err() {
            // Best effort: what is left behind is the garbage collector's.
            let _ = self.undo(&created);
        }
        result
    }

    fn put_folder_inner(
        &self,
        scan: &FolderScan,
        name: Option<&str>,
        progress: &mut dyn FnMut(u64),
        created: &mut Vec<crate::address::ContentHash>,
    ) -> Result<FolderPut, StoreError> {
        let mut manifest = Manifest {
            dirs: scan.dirs.clone(),
            files: Vec::with_capacity(scan.files.len()),
        };
        let mut items = Vec::new();
        for found in &scan.files {
            // Opened without following a link that replaced the file since the scan.
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&found.abs)
                .map_err(StoreError::io("open", &found.abs))?;
            let mut reader = Counting {
                inner: file,
                progress: &mut *progress,
            };
            let stored = self.blobs().put_file_tracked(&mut reader, created)?;
            manifest.files.push(FolderEntry {
                exec: found.exec,
                hash: stored.hash,
                path: found.rel.clone(),
                size: stored.size,
            });
            items.extend(stored.items);
        }
        manifest.sort();
        manifest
            .validate(&ManifestLimits::default())
            .map_err(StoreError::FolderRefused)?;
        let bytes = manifest.encode();
        let stored = self.blobs().put_file_tracked(&mut &bytes[..], created)?;
        let _lock = self.lock()?;
        let mut all = stored.items.clone();
        let mut seen: HashSet<_> = all.iter().copied().collect();
        all.extend(items.into_iter().filter(|i| seen.insert(*i)));
        self.all_present(&all)?;
        let record = FileRecord {
            hash: stored.hash,
            kind: stored.kind,
            size: stored.size,
            name: name.map(str::to_owned),
            added_at: self.now(),
        };
        let folder = FolderRow {
            hash: stored.hash,
            files: manifest.files.len() as u64,
            bytes: manifest.total_bytes(),
        };
        let record = self.meta().insert_folder(&record, &all, &folder)?;
        Ok(FolderPut { record, folder })
    }
}

/// A reader that reports the bytes it yields.
struct Counting<'a> {
    inner: File,
    progress: &'a mut dyn FnMut(u64),
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}
