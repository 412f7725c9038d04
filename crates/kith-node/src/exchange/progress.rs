//! Transfers in progress, for the CLI's progress bars (`GET /v1/files/transfers`).
//!
//! A fetch registers when it starts and is removed when it ends, however it ends (the
//! [`ProgressGuard`] is dropped); every item it stores adds its bytes, and once a source has
//! said how large the file is and what it is called, the bar has a total and a name. Each
//! entry carries the fetch's cancellation token ([`Transfers::cancel`]: Ctrl-C on `kith file
//! get`). The table holds at most [`MAX_TRACKED`] transfers: one more is simply not shown
//! (and cannot be cancelled but by stopping the node).

use super::Priority;
use crate::api::TransferProgress;
use kith_store::ContentHash;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Transfers shown at once.
pub const MAX_TRACKED: usize = 256;

#[derive(Debug)]
struct Entry {
    bytes: u64,
    items: u64,
    background: bool,
    started: Instant,
    /// Fetches of the same file at once share one entry.
    holders: usize,
    total: Option<u64>,
    name: Option<String>,
    cancel: CancellationToken,
    /// The folder this file is fetched for: its bytes count there too.
    parent: Option<ContentHash>,
}

/// The transfers running now.
#[derive(Debug, Clone, Default)]
pub struct Transfers {
    map: Arc<Mutex<HashMap<ContentHash, Entry>>>,
}

/// Removes a transfer from the table when dropped.
#[derive(Debug)]
pub struct ProgressGuard {
    transfers: Transfers,
    hash: Option<ContentHash>,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        let Some(hash) = self.hash else { return };
        let mut map = self.transfers.lock();
        if let Some(entry) = map.get_mut(&hash) {
            entry.holders -= 1;
            if entry.holders == 0 {
                map.remove(&hash);
            }
        }
    }
}

impl Transfers {
    fn lock(&self) -> MutexGuard<'_, HashMap<ContentHash, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fetch of `hash` starts: its guard, and the token that [`Transfers::cancel`]
    /// cancels.
    pub fn start(
        &self,
        hash: ContentHash,
        priority: Priority,
    ) -> (ProgressGuard, CancellationToken) {
        self.start_under(hash, priority, None)
    }

    /// [`Transfers::start`] of a file fetched for the folder `parent` (running now): its
    /// bytes count for the folder too, and cancelling the folder cancels it.
    pub fn start_under(
        &self,
        hash: ContentHash,
        priority: Priority,
        parent: Option<ContentHash>,
    ) -> (ProgressGuard, CancellationToken) {
        let mut map = self.lock();
        let parent_token = parent.and_then(|p| map.get(&p)).map(|e| e.cancel.clone());
        if !map.contains_key(&hash) && map.len() >= MAX_TRACKED {
            let guard = ProgressGuard {
                transfers: self.clone(),
                hash: None,
            };
            return (guard, CancellationToken::new());
        }
        let entry = map.entry(hash).or_insert_with(|| Entry {
            bytes: 0,
            items: 0,
            background: matches!(priority, Priority::Background { .. }),
            started: Instant::now(),
            holders: 0,
            total: None,
            name: None,
            cancel: parent_token
                .as_ref()
                .map_or_else(CancellationToken::new, CancellationToken::child_token),
            parent: parent_token.and(parent),
        });
        entry.holders += 1;
        let token = entry.cancel.clone();
        let guard = ProgressGuard {
            transfers: self.clone(),
            hash: Some(hash),
        };
        (guard, token)
    }

    /// What the sources said of the file being fetched: its size and name.
    pub fn describe(&self, hash: ContentHash, total: Option<u64>, name: Option<String>) {
        if let Some(entry) = self.lock().get_mut(&hash) {
            entry.total = total.or(entry.total);
            entry.name = name.or(entry.name.take());
        }
    }

    /// Cancels every fetch of `hash` running now; false when none runs.
    pub fn cancel(&self, hash: &ContentHash) -> bool {
        match self.lock().get(hash) {
            Some(entry) => {
                entry.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// The fetch of `hash` stored an item of `bytes`.
    pub fn advance(&self, hash: ContentHash, bytes: u64) {
        let mut map = self.lock();
        let parent = map.get_mut(&hash).and_then(|entry| {
            entry.bytes += bytes;
            entry.items += 1;
            entry.parent
        });
        if let Some(folder) = parent.and_then(|p| map.get_mut(&p)) {
            folder.bytes += bytes;
            folder.items += 1;
        }
    }

    /// Every transfer running now.
    pub fn list(&self) -> Vec<TransferProgress> {
        let mut list: Vec<TransferProgress> = self
            .lock()
            .iter()
            .map(|(hash, e)| TransferProgress {
                hash: hash.to_hex(),
                bytes: e.bytes,
                items: e.items,
                background: e.background,
                elapsed_ms: e.started.elapsed().as_millis() as u64,
                total: e.total,
                name: e.name.clone(),
            })
            .collect();
        list.sort_by(|a, b| a.hash.cmp(&b.hash));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_is_shown_while_it_runs_and_gone_after() {
        let transfers = Transfers::default();
        let hash = ContentHash([1; 32]);
        let (guard, token) = transfers.start(hash, Priority::User);
        let (second, _) = transfers.start(hash, Priority::User);
        transfers.describe(hash, Some(1000), Some("f.txt".into()));
        transfers.advance(hash, 100);
        transfers.advance(ContentHash([2; 32]), 5); // not running: ignored
        let list = transfers.list();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].bytes, list[0].items), (100, 1));
        assert_eq!(
            (list[0].total, list[0].name.as_deref()),
            (Some(1000), Some("f.txt"))
        );
        assert!(transfers.cancel(&hash));
        assert!(token.is_cancelled());
        assert!(!transfers.cancel(&ContentHash([9; 32])));
        drop(guard);
        assert_eq!(transfers.list().len(), 1, "the second fetch still runs");
        drop(second);
        assert!(transfers.list().is_empty());
    }

    #[test]
    fn a_folder_counts_its_files_and_cancels_them() {
        let transfers = Transfers::default();
        let (folder, member) = (ContentHash([1; 32]), ContentHash([2; 32]));
        let (_f, folder_token) = transfers.start(folder, Priority::User);
        let (_m, member_token) = transfers.start_under(member, Priority::User, Some(folder));
        transfers.advance(member, 100);
        let list = transfers.list();
        assert_eq!((list[0].bytes, list[1].bytes), (100, 100));
        assert!(transfers.cancel(&folder));
        assert!(folder_token.is_cancelled() && member_token.is_cancelled());
    }
}
