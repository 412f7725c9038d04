//! A folder written out whole or not at all.
//!
//! Everything is built in a temporary directory beside the target (`.kith-get-*`, noted in the
//! store's output journal, [`crate::outputs`], until it is gone), each file
//! read from the store and verified item by item, written with mode 0644 (0755 when the
//! manifest says executable), synced, and every directory synced; then the temporary directory
//! is renamed to the target (`RENAME_NOREPLACE`, so a target that appeared meanwhile is kept)
//! or, with `force`, exchanged with the existing target (`RENAME_EXCHANGE`), which is then
//! removed. A failure at any step removes the temporary directory: the target is untouched.
//!
//! Paths come from a decoded [`Manifest`], whose decoder refuses any path that could leave the
//! folder; files are also created with `O_EXCL`, so nothing already there is followed or
//! overwritten.

use crate::blobs::sync_dir;
use crate::error::StoreError;
use crate::files::FileStore;
use crate::manifest::{FolderEntry, Manifest};
use rustix::fs::{renameat_with, RenameFlags, CWD};
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A folder being built in its temporary directory (see the module docs): each file goes at
/// [`FolderWriter::path_of`], written from the store ([`write_entry`]) or by the caller and
/// then adopted ([`adopt_entry`]), in any order (a fetch writes each file as it arrives);
/// [`finish`](FolderWriter::finish) moves the tree into place. Dropped unfinished, the
/// temporary directory is removed: the target is untouched.
#[derive(Debug)]
pub struct FolderWriter {
    tmp: tempfile::TempDir,
    _marker: crate::outputs::Marker,
    dirs: BTreeSet<PathBuf>,
    target: PathBuf,
    parent: PathBuf,
    force: bool,
}

impl FileStore {
    /// Writes the folder `manifest` describes to `target` from the store (see the module
    /// docs); refuses an existing `target` unless `force` (an [`StoreError::Io`] whose source
    /// is `AlreadyExists`). `progress` learns the bytes written. Returns the bytes written.
    pub fn write_folder(
        &self,
        manifest: &Manifest,
        target: &Path,
        force: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, StoreError> {
        let writer = self.begin_folder(manifest, target, force)?;
        let mut written = 0u64;
        for entry in &manifest.files {
            written += write_entry(self, &writer.path_of(entry), entry, progress)?;
        }
        writer.finish()?;
        Ok(written)
    }

    /// Starts writing the folder `manifest` describes to `target`: the temporary directory
    /// beside it, with every directory of the folder; refuses an existing `target` unless
    /// `force`, as [`FileStore::write_folder`].
    pub fn begin_folder(
        &self,
        manifest: &Manifest,
        target: &Path,
        force: bool,
    ) -> Result<FolderWriter, StoreError> {
        if !force && fs::symlink_metadata(target).is_ok() {
            return Err(exists(target));
        }
        let parent = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // Noted in the output journal until it is gone: a crash leaves no half folder.
        let (tmp, marker) = self
            .output_journal()
            .create_tmp_dir(parent)
            .map_err(StoreError::io("create temporary directory in", parent))?;
        let root = tmp.path();
        let mut dirs = BTreeSet::from([PathBuf::new()]);
        for dir in &manifest.dirs {
            add_with_parents(&mut dirs, Path::new(dir));
        }
        for file in &manifest.files {
            if let Some(dir) = Path::new(&file.path).parent() {
                add_with_parents(&mut dirs, dir);
            }
        }
        for dir in dirs.iter().filter(|d| !d.as_os_str().is_empty()) {
            let path = root.join(dir);
            fs::create_dir(&path).map_err(StoreError::io("create directory", &path))?;
        }
        Ok(FolderWriter {
            tmp,
            _marker: marker,
            dirs,
            target: target.to_owned(),
            parent: parent.to_owned(),
            force,
        })
    }
}

impl FolderWriter {
    /// Where `entry` goes in the temporary tree.
    pub fn path_of(&self, entry: &FolderEntry) -> PathBuf {
        self.tmp.path().join(&entry.path)
    }

    /// Syncs every directory of the tree and moves it to the target (never over an existing
    /// one unless `force`).
    pub fn finish(self) -> Result<(), StoreError> {
        let root = self.tmp.path();
        for dir in self.dirs.iter().rev() {
            let path = root.join(dir);
            fs::set_permissions(&path, Permissions::from_mode(0o755))
                .map_err(StoreError::io("chmod", &path))?;
            sync_dir(&path)?;
        }
        place(root, &self.target, self.force).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => exists(&self.target),
            _ => StoreError::io("rename into", &self.target)(e),
        })?;
        // In place: the temporary directory is gone (or holds the replaced target).
        let leftover = self.tmp.keep();
        if leftover.exists() {
            let _ = fs::remove_dir_all(&leftover).or_else(|_| fs::remove_file(&leftover));
        }
        sync_dir(&self.parent)
    }
}

/// Writes `entry`'s file at `path` (its place in a folder being built, where nothing is yet)
/// from `store`, every item verified, with its mode, synced. Returns its bytes.
pub fn write_entry(
    store: &FileStore,
    path: &Path,
    entry: &FolderEntry,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(StoreError::io("create", path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut counted = Counted {
        inner: &mut out,
        progress,
    };
    let n = store.blobs().read_file(&entry.hash, &mut counted)?;
    if n != entry.size {
        return Err(size_differs(entry, n));
    }
    let file = out.into_inner().map_err(|e| StoreError::Stream {
        op: "write output",
        source: e.into_error(),
    })?;
    set_mode(&file, entry, path)?;
    file.sync_all().map_err(StoreError::io("sync", path))?;
    Ok(n)
}

/// `entry`'s file, written at `path` (its place in a folder being built) by the caller, who
/// verified its content and synced it: checks that it is a plain file of the entry's size and
/// gives it its mode.
pub fn adopt_entry(path: &Path, entry: &FolderEntry) -> Result<(), StoreError> {
    // Not followed: the caller's file, not something that took its place.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(StoreError::io("open", path))?;
    let meta = file.metadata().map_err(StoreError::io("stat", path))?;
    if !meta.is_file() || meta.len() != entry.size {
        return Err(size_differs(entry, meta.len()));
    }
    set_mode(&file, entry, path)
}

fn exists(target: &Path) -> StoreError {
    StoreError::io("create", target)(io::Error::from(io::ErrorKind::AlreadyExists))
}

fn size_differs(entry: &FolderEntry, n: u64) -> StoreError {
    StoreError::corrupt(
        entry.hash,
        format!("{} bytes where the folder says {}", n, entry.size),
    )
}

/// The mode is set, not left to the umask, so the tree is the same everywhere.
fn set_mode(file: &fs::File, entry: &FolderEntry, path: &Path) -> Result<(), StoreError> {
    let mode = if entry.exec { 0o755 } else { 0o644 };
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(StoreError::io("chmod", path))
}

/// Moves the built tree `from` to `to`: never over an existing one unless `force`, and then
/// by exchanging the two (the old tree ends up at `from`).
fn place(from: &Path, to: &Path, force: bool) -> io::Result<()> {
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Err(e) if e == rustix::io::Errno::EXIST && force => {}
        Err(e) if e == rustix::io::Errno::EXIST => {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists))
        }
        other => return other.map_err(io::Error::from),
    }
    renameat_with(CWD, from, CWD, to, RenameFlags::EXCHANGE).map_err(io::Error::from)
}

/// Adds `dir` and every ancestor of it (relative paths) to `dirs`.
fn add_with_parents(dirs: &mut BTreeSet<PathBuf>, dir: &Path) {
    for ancestor in dir.ancestors() {
        if !dirs.insert(ancestor.to_owned()) {
            break;
        }
    }
}

/// A writer that reports the bytes it takes.
struct Counted<'a, W: Write> {
    inner: &'a mut W,
    progress: &'a mut dyn FnMut(u64),
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
