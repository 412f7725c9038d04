//! The node's handle on its store: the content-addressed blobs and the metadata database.
//!
//! The store is synchronous (file I/O, and a PostgreSQL client that must not block a runtime
//! thread), so every call runs on tokio's blocking pool. [`Store`] is cheap to clone; every
//! service holds one. There is no lock around it: blob reads and writes need none, and the
//! metadata database holds its own lock for one statement or transaction at a time, so a
//! chat message, a ticket check or a `kith file ls` never waits behind a long transfer.

use kith_store::{FileStore, MetaError, StoreError};
use std::sync::Arc;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The metadata database failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The blocking task running the call panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}

/// A shared handle on the node's store.
#[derive(Clone)]
pub struct Store {
    files: Arc<FileStore>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Wraps an opened store.
    pub fn new(files: FileStore) -> Store {
        Store {
            files: Arc::new(files),
        }
    }

    /// Runs `f` on the blocking pool and returns what it returned.
    pub async fn run<R, E, F>(&self, f: F) -> Result<R, StoreFailure>
    where
        R: Send + 'static,
        E: Into<StoreFailure> + Send + 'static,
        F: FnOnce(&FileStore) -> Result<R, E> + Send + 'static,
    {
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || f(&files).map_err(Into::into))
            .await
            .map_err(|e| StoreFailure::Task(e.to_string()))?
    }

    /// Runs `f` on the blocking pool and returns its result as is (for a result whose error
    /// is not the store's).
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreFailure>
    where
        R: Send + 'static,
        F: FnOnce(&FileStore) -> R + Send + 'static,
    {
        self.run(move |s| Ok::<_, StoreFailure>(f(s))).await
    }

    /// The store itself, for code already on a blocking thread.
    pub fn files(&self) -> &FileStore {
        &self.files
    }
}
