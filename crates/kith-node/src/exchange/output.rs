//! The output file of a fetch (`kith file get -o PATH`), written by the node as the items
//! arrive, so the file is not read back from the store and hashed a second time.
//!
//! The bytes go to a temporary file beside the target, written by a task fed by a small queue
//! (a slow disk holds the fetch back, not memory). Each write is a short blocking job of
//! what is queued: not one blocking thread for the whole fetch, which would keep a paused
//! test clock from ever advancing, nor a thread tokio does not know of, while which a paused
//! clock would leap to the next timer. Every [`SYNC_EVERY`] bytes the
//! writeback of what was written is started (without waiting: the writer goes on), so the
//! disk writes as the fetch goes rather than all at the end; the file is synced once when
//! whole, then renamed over the target: a fetch that fails or is cancelled leaves no file,
//! and an existing file is replaced only with `force`.
//!
//! The temporary file is noted in the store's output journal ([`kith_store::outputs`]), so
//! that one a crash left behind is removed when the node starts again.

use bytes::Bytes;
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Bytes written between two starts of the output's writeback.
pub(super) const SYNC_EVERY: u64 = 8 * 1024 * 1024;
/// Writes queued for the writer thread. Each is an item (up to 1 MiB) that has left the
/// fetch's window, so this is memory beyond the window: 2 measured as fast as 4 on a 1 GiB
/// fetch, with a peak RSS 2-3 MiB lower.
const QUEUE: usize = 2;

/// Why the output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The target exists and `force` was not given.
    #[error("{} exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    /// The target is not an absolute path (the node does not share the CLI's directory).
    #[error("{} is not an absolute path", .0.display())]
    NotAbsolute(PathBuf),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The target.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

enum Cmd {
    Write(Bytes),
    /// Sync and rename into place at this path.
    Finish(PathBuf),
}

/// An output file being written (see the module docs). Dropping it unfinished removes the
/// temporary file.
#[derive(Debug)]
pub(super) struct OutputFile {
    tx: mpsc::Sender<Cmd>,
    writer: tokio::task::JoinHandle<Result<u64, OutputError>>,
    path: PathBuf,
}

impl OutputFile {
    /// Starts writing the file that will be `path`; refuses an existing `path` unless
    /// `force`. The temporary file is noted in `journal` until it is gone.
    pub(super) fn create(
        path: &Path,
        force: bool,
        journal: Option<&kith_store::OutputJournal>,
    ) -> Result<OutputFile, OutputError> {
        if !path.is_absolute() {
            return Err(OutputError::NotAbsolute(path.to_owned()));
        }
        if !force && path.exists() {
            return Err(OutputError::Exists(path.to_owned()));
        }
        let io = |source| OutputError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("/")).to_owned();
        let (tmp, marker) = match journal {
            Some(journal) => {
                let (tmp, marker) = journal.create_tmp(&dir).map_err(io)?;
                (tmp, Some(marker))
            }
            None => (
                tempfile::Builder::new()
                    .prefix(kith_store::outputs::TMP_PREFIX)
                    .tempfile_in(&dir)
                    .map_err(io)?,
                None,
            ),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write(tmp, marker, rx, dir, force));
        Ok(OutputFile {
            tx,
            writer,
            path: path.to_owned(),
        })
    }

    /// Appends `bytes` (waits while the writer is behind).
    pub(super) async fn write(&mut self, bytes: Bytes) -> Result<(), OutputError> {
        if self.tx.send(Cmd::Write(bytes)).await.is_err() {
            return Err(self.failure().await);
        }
        Ok(())
    }

    /// Syncs and renames the file into place; returns its size.
    #[cfg(test)]
    pub(super) async fn finish(self) -> Result<u64, OutputError> {
        let path = self.path.clone();
        self.finish_as(&path).await
    }

    /// [`OutputFile::finish`] under another name in the same directory (the name was only
    /// settled once the transfer was over); refuses an existing one unless `force`.
    pub(super) async fn finish_as(self, path: &Path) -> Result<u64, OutputError> {
        let _ = self.tx.send(Cmd::Finish(path.to_owned())).await;
        match self.writer.await {
            Ok(result) => result,
            Err(e) => Err(OutputError::Io {
                path: self.path,
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }

    /// The writer stopped early: why.
    async fn failure(&mut self) -> OutputError {
        match (&mut self.writer).await {
            Ok(Err(e)) => e,
            _ => OutputError::Io {
                path: self.path.clone(),
                source: std::io::Error::other("the output writer stopped"),
            },
        }
    }
}

async fn write(
    tmp: tempfile::NamedTempFile,
    marker: Option<kith_store::outputs::Marker>,
    mut rx: mpsc::Receiver<Cmd>,
    dir: PathBuf,
    force: bool,
) -> Result<u64, OutputError> {
    // Whatever way this ends, the temporary file is gone (renamed, or removed when dropped)
    // by the time the marker is.
    let _marker = marker;
    let mut file = Some(Written {
        tmp,
        written: 0,
        since_sync: 0,
    });
    loop {
        let mut chunks = Vec::new();
        let finish = loop {
            let cmd = if chunks.is_empty() {
                rx.recv().await
            } else {
                match rx.try_recv() {
                    Ok(cmd) => Some(cmd),
                    Err(_) => break None,
                }
            };
            match cmd {
                Some(Cmd::Write(bytes)) => chunks.push(bytes),
                Some(Cmd::Finish(target)) => break Some(target),
                // Abandoned: the temp file is removed when `file` is dropped (below).
                None => {
                    let abandoned = file.take();
                    let _ = tokio::task::spawn_blocking(move || drop(abandoned)).await;
                    return Ok(0);
                }
            }
        };
        let mut taken = file.take().expect("the file is back after every job");
        let job_dir = dir.clone();
        let job = tokio::task::spawn_blocking(move || {
            let result = taken.append(&chunks, &job_dir);
            match (result, finish) {
                (Err(e), _) => (Some(taken), Err(e)),
                (Ok(()), None) => (Some(taken), Ok(None)),
                (Ok(()), Some(target)) => (None, taken.persist(&target, &job_dir, force).map(Some)),
            }
        });
        let (back, result) = job.await.map_err(|e| OutputError::Io {
            path: tmp_path_of(&dir),
            source: std::io::Error::other(e.to_string()),
        })?;
        file = back;
        if let Some(written) = result? {
            return Ok(written);
        }
    }
}

/// The temporary file and how much of it is written.
struct Written {
    tmp: tempfile::NamedTempFile,
    written: u64,
    since_sync: u64,
}

impl Written {
    fn append(&mut self, chunks: &[Bytes], dir: &Path) -> Result<(), OutputError> {
        for bytes in chunks {
            self.tmp
                .as_file_mut()
                .write_all(bytes)
                .map_err(|source| OutputError::Io {
                    path: tmp_path_of(dir),
                    source,
                })?;
            self.written += bytes.len() as u64;
            self.since_sync += bytes.len() as u64;
            if self.since_sync >= SYNC_EVERY {
                let start = self.written - self.since_sync;
                kith_store::batch::start_writeback_range(
                    self.tmp.as_file(),
                    start,
                    self.since_sync,
                );
                // The chunk before the previous one has had a chunk's time to reach the
                // disk: its clean pages are dropped, so the page cache holds a few chunks
                // of the output, not all of it (pages still being written stay).
                if let Some(old) = start.checked_sub(2 * SYNC_EVERY) {
                    kith_store::batch::start_writeback_range(
                        self.tmp.as_file(),
                        0,
                        old + SYNC_EVERY,
                    );
                }
                self.since_sync = 0;
            }
        }
        Ok(())
    }

    /// Syncs the file and renames it to `target` (not over an existing one unless `force`).
    fn persist(self, target: &Path, dir: &Path, force: bool) -> Result<u64, OutputError> {
        let io = |source| OutputError::Io {
            path: target.to_owned(),
            source,
        };
        self.tmp.as_file().sync_all().map_err(io)?;
        let persisted = if force {
            self.tmp.persist(target).map(|_| ())
        } else {
            self.tmp.persist_noclobber(target).map(|_| ())
        };
        if let Err(e) = persisted {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(OutputError::Exists(target.to_owned()));
            }
            return Err(io(e.error));
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(self.written)
    }
}

/// What an error names before the output has its final name.
fn tmp_path_of(dir: &Path) -> PathBuf {
    dir.join(".kith-get-*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_appears_whole_and_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let mut out = OutputFile::create(&target, false, None).unwrap();
        out.write(Bytes::from_static(b"hello ")).await.unwrap();
        out.write(Bytes::from_static(b"world")).await.unwrap();
        assert!(!target.exists());
        assert_eq!(out.finish().await.unwrap(), 11);
        assert_eq!(std::fs::read(&target).unwrap(), b"hello world");
        // Not again without force; with force, replaced.
        assert!(matches!(
            OutputFile::create(&target, false, None),
            Err(OutputError::Exists(_))
        ));
        let mut out = OutputFile::create(&target, true, None).unwrap();
        out.write(Bytes::from_static(b"new")).await.unwrap();
        out.finish().await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[tokio::test]
    async fn an_abandoned_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let mut out = OutputFile::create(&target, false, None).unwrap();
        out.write(Bytes::from_static(b"partial")).await.unwrap();
        drop(out);
        // The writer notices the closed queue and removes its temp file.
        for _ in 0..100 {
            if std::fs::read_dir(dir.path()).unwrap().count() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(matches!(
            OutputFile::create(Path::new("relative.bin"), false, None),
            Err(OutputError::NotAbsolute(_))
        ));
    }
}
