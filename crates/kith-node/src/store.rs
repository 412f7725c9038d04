//! The node's handle on its store: the content-addressed blobs and the metadata database.
//!
//! The store is synchronous (file I/O, and a PostgreSQL client that must not block a runtime
//! thread), so every call runs on tokio's blocking pool. [`Store`] is cheap to clone; every
//! service holds one.

use kith_store::{FileStore, MetaError, StoreError};
use std::sync::{Arc, Mutex};

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
    files: Arc<Mutex<FileStore>>,
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
            files: Arc::new(Mutex::new(files)),
        }
    }

    /// Runs `f` on the blocking pool and returns what it returned.
    pub async fn run<R, E, F>(&self, f: F) -> Result<R, StoreFailure>
    where
        R: Send + 'static,
        E: Into<StoreFailure> + Send + 'static,
        F: FnOnce(&mut FileStore) -> Result<R, E> + Send + 'static,
    {
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || {
            // A panic in an earlier call cannot leave the store half-changed in memory (its
            // state is on disk and in the database), so a poisoned lock is recovered.
            let mut guard = files.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard).map_err(Into::into)
        })
        .await
        .map_err(|e| StoreFailure::Task(e.to_string()))?
    }

    /// Runs `f` on the blocking pool and returns its result as is (for a result whose error
    /// is not the store's).
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreFailure>
    where
        R: Send + 'static,
        F: FnOnce(&mut FileStore) -> R + Send + 'static,
    {
        self.run(move |s| Ok::<_, StoreFailure>(f(s))).await
    }

    /// Runs `f` on the calling thread (for code already on the blocking pool).
    pub fn run_blocking<R>(&self, f: impl FnOnce(&mut FileStore) -> R) -> R {
        let mut guard = self.files.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}
