//! The store's error type.
//!
//! Every error that concerns a particular item names its hash, so an operator reading a log
//! can find the file on disk (`<root>/<2 hex>/<62 hex>`) and a peer session can answer
//! `(not found)` or drop the file rather than serve bytes that do not match their name.

use std::io;
use std::path::PathBuf;

use crate::address::ContentHash;
use crate::meta::MetaError;

/// Errors of the blob store and of the file store built on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation on `path` failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "rename", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file system holding the store is full (or the user's quota is): the write of
    /// `path` failed. A put undoes what it had written before reporting this.
    #[error(
        "no space left to write {} ({source}); nothing was recorded: free some space and retry",
        path.display()
    )]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// The underlying error (ENOSPC or EDQUOT).
        #[source]
        source: io::Error,
    },
    /// A garbage collection that was not to wait found a writer at work (a put, a fetch, a
    /// custody copy, in this process or another).
    #[error("the store is busy: another put, fetch or custody copy is writing to it")]
    Busy,
    /// Reading or writing the caller's stream failed (not a store file).
    #[error("{op}: {source}")]
    Stream {
        /// "read input" or "write output".
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No item with this hash is stored.
    #[error("item {hash} not found in the store")]
    NotFound {
        /// The missing item.
        hash: ContentHash,
    },
    /// The stored item does not match its hash or is malformed; it is never served.
    #[error("item {hash} is corrupt: {reason}")]
    Corrupt {
        /// The corrupt item.
        hash: ContentHash,
        /// What is wrong with it.
        reason: String,
    },
    /// An item to store is larger than the configured maximum item size.
    #[error("item of {size} bytes (type byte included) exceeds the maximum item size of {max}")]
    ItemTooLarge {
        /// Size including the type byte.
        size: u64,
        /// The configured maximum.
        max: usize,
    },
    /// kith keeps items uncompressed; a compressed item must be inflated before it is stored.
    #[error("compressed items are not stored (inflate the content first)")]
    CompressedItem,
    /// A setting is out of range.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// An item a put was about to reference was deleted meanwhile (by a concurrent remove);
    /// nothing was committed and the put can simply be retried.
    #[error("item {hash} vanished before the file could be committed (concurrent remove); retry")]
    ItemVanished {
        /// The item that disappeared.
        hash: ContentHash,
    },
    /// The metadata database failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A folder manifest that was refused (malformed, over a limit, a path that would leave
    /// the folder): nothing was written.
    #[error("folder {hash}: {source}")]
    Manifest {
        /// The manifest's address.
        hash: ContentHash,
        /// Why it was refused.
        #[source]
        source: crate::manifest::ManifestError,
    },
    /// A folder that cannot be stored as one (too many entries for a manifest).
    #[error("cannot store this folder: {0}")]
    FolderRefused(#[source] crate::manifest::ManifestError),
    /// `kith file put DIR` of something that is not a directory.
    #[error("{}: not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| match source.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                StoreError::DiskFull { path, source }
            }
            _ => StoreError::Io { op, path, source },
        }
    }

    /// The write was refused because its target exists (and replacing it was not asked for):
    /// what [`FileStore::write_out`](crate::FileStore::write_out) and
    /// [`FileStore::write_folder`](crate::FileStore::write_folder) say without `force`.
    pub fn is_target_exists(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists)
    }

    pub(crate) fn corrupt(hash: ContentHash, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            hash,
            reason: reason.into(),
        }
    }
}
