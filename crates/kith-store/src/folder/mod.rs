//! Folders: `kith file put DIR` and `kith file get` of a folder.
//!
//! A folder is stored as its files, each a file exactly as `kith file put FILE` stores it, and
//! a [`crate::manifest`] (a file too, so it travels over every path a file does) that lists each
//! file's relative path, address, size and executable bit, and the empty directories. The
//! manifest is recorded under the folder's name, and its record names every item of every file
//! of the folder (`file_items`), so the folder is one entry for `kith file ls`, `kith file rm`
//! and the garbage collector; the `folders` table says that it is a folder, of how many files
//! and bytes ([`crate::meta::FolderRow`]).
//!
//! - [`scan`]: what is under a directory (symbolic links and special files are skipped, never
//!   followed), and [`FileStore::put_folder`], which stores it.
//! - [`write`]: [`FileStore::write_folder`], a folder written out whole or not at all: built in a
//!   temporary directory beside the target, then renamed into place; [`FolderWriter`] the same
//!   tree built file by file in any order (a fetch writes each file as it arrives).
//! - Here: reading a stored manifest (bounded), whether a file of a folder is here whole, and
//!   recording a fetched folder.

pub mod scan;
pub mod write;

pub use crate::manifest::{FolderEntry, Manifest, ManifestError, ManifestLimits};
pub use scan::{FolderPut, FolderScan, Skipped};
pub use write::{adopt_entry, write_entry, FolderWriter};

use crate::address::{ContentHash, ItemKind};
use crate::error::StoreError;
use crate::files::FileStore;
use crate::meta::{FileRecord, FolderRow};
use crate::tree::{parse_list, MAX_TREE_DEPTH};
use std::collections::HashSet;
use std::io::{self, Write};

impl FileStore {
    /// Whether the stored file `hash` is a folder manifest: a cheap look at its first bytes
    /// (the root item, or the first chunk of a larger file), verified as every read is.
    /// False for a file that is not (wholly) here.
    pub fn is_folder_manifest(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        let mut next = *hash;
        for _ in 0..MAX_TREE_DEPTH {
            let item = match self.blobs().get_item(&next) {
                Ok(item) => item,
                Err(StoreError::NotFound { .. } | StoreError::Corrupt { .. }) => return Ok(false),
                Err(e) => return Err(e),
            };
            if item.item_type.kind() == ItemKind::Blob {
                return Ok(Manifest::looks_like(&item.content));
            }
            match parse_list(&item.content)
                .ok()
                .and_then(|l| l.first().copied())
            {
                Some(first) => next = first,
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Reads and decodes the stored manifest `hash` within `limits` (its size is checked
    /// before more than that is read).
    pub fn read_manifest(
        &self,
        hash: &ContentHash,
        limits: &ManifestLimits,
    ) -> Result<Manifest, StoreError> {
        let refused = |source| StoreError::Manifest {
            hash: *hash,
            source,
        };
        let mut out = Capped {
            bytes: Vec::new(),
            max: limits.max_bytes,
        };
        match self.blobs().read_file(hash, &mut out) {
            Ok(_) => {}
            Err(StoreError::Stream { source, .. })
                if source.kind() == io::ErrorKind::FileTooLarge =>
            {
                return Err(refused(ManifestError::TooLarge {
                    size: out.bytes.len() as u64 + 1,
                    max: limits.max_bytes,
                }))
            }
            Err(e) => return Err(e),
        }
        Manifest::decode(&out.bytes, limits).map_err(refused)
    }

    /// Every item of the stored file `hash`, root first: lists are read (and verified), the
    /// other items only looked for (each was verified when it was stored). Fails with
    /// [`StoreError::NotFound`] naming the first item missing: the file is not here whole.
    pub fn tree_items(&self, hash: &ContentHash) -> Result<Vec<ContentHash>, StoreError> {
        let mut seen = HashSet::new();
        let mut items = Vec::new();
        let mut stack = vec![(*hash, 0usize)];
        while let Some((item, depth)) = stack.pop() {
            if !seen.insert(item) {
                continue;
            }
            if !self.blobs().contains(&item)? {
                return Err(StoreError::NotFound { hash: item });
            }
            items.push(item);
            if !self.blobs().is_list(&item) {
                continue;
            }
            if depth >= MAX_TREE_DEPTH {
                return Err(StoreError::corrupt(item, "lists nested too deep"));
            }
            let list = self.blobs().get_item(&item)?;
            let children =
                parse_list(&list.content).map_err(|e| StoreError::corrupt(item, e.to_string()))?;
            // Reversed, so the walk goes in file order.
            stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
        }
        Ok(items)
    }

    /// Whether the file `hash` is here whole (see [`FileStore::tree_items`]); a damaged list
    /// counts as missing (fetching the file again replaces it).
    pub fn has_whole(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        match self.tree_items(hash) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. } | StoreError::Corrupt { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records the folder whose manifest `hash` and files are all here (fetched), under
    /// `name` if the manifest is not recorded yet: its record names every item of the folder.
    /// Under the commit lock, as a put commits.
    pub fn record_folder(
        &self,
        hash: &ContentHash,
        manifest: &Manifest,
        name: Option<&str>,
    ) -> Result<FileRecord, StoreError> {
        let _lock = self.lock()?;
        let walked = self.blobs().walk_file(hash)?;
        let mut items = walked.items;
        let mut seen: HashSet<ContentHash> = items.iter().copied().collect();
        for entry in &manifest.files {
            for item in self.tree_items(&entry.hash)? {
                if seen.insert(item) {
                    items.push(item);
                }
            }
        }
        let record = FileRecord {
            hash: *hash,
            kind: walked.kind,
            size: walked.size,
            name: name.map(str::to_owned),
            added_at: self.now(),
        };
        let folder = FolderRow {
            hash: *hash,
            files: manifest.files.len() as u64,
            bytes: manifest.total_bytes(),
        };
        Ok(self.meta().insert_folder(&record, &items, &folder)?)
    }
}

/// A writer that refuses to hold more than `max` bytes.
struct Capped {
    bytes: Vec<u8>,
    max: u64,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if (self.bytes.len() + buf.len()) as u64 > self.max {
            return Err(io::Error::from(io::ErrorKind::FileTooLarge));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
