//! Transfers in progress, for the CLI's progress bars (`GET /v1/files/transfers`).
//!
//! A fetch registers when it starts and is removed when it ends, however it ends (the
//! [`ProgressGuard`] is dropped); every item it stores adds its bytes. The table holds at most
//! [`MAX_TRACKED`] transfers: one more is simply not shown.

use super::Priority;
use crate::api::TransferProgress;
use kith_store::ContentHash;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

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

    /// A fetch of `hash` starts.
    pub fn start(&self, hash: ContentHash, priority: Priority) -> ProgressGuard {
        let mut map = self.lock();
        if !map.contains_key(&hash) && map.len() >= MAX_TRACKED {
            return ProgressGuard {
                transfers: self.clone(),
                hash: None,
            };
        }
        map.entry(hash)
            .or_insert_with(|| Entry {
                bytes: 0,
                items: 0,
                background: matches!(priority, Priority::Background { .. }),
                started: Instant::now(),
                holders: 0,
            })
            .holders += 1;
        ProgressGuard {
            transfers: self.clone(),
            hash: Some(hash),
        }
    }

    /// The fetch of `hash` stored an item of `bytes`.
    pub fn advance(&self, hash: ContentHash, bytes: u64) {
        if let Some(entry) = self.lock().get_mut(&hash) {
            entry.bytes += bytes;
            entry.items += 1;
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
        let guard = transfers.start(hash, Priority::User);
        let second = transfers.start(hash, Priority::User);
        transfers.advance(hash, 100);
        transfers.advance(ContentHash([2; 32]), 5); // not running: ignored
        let list = transfers.list();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].bytes, list[0].items), (100, 1));
        drop(guard);
        assert_eq!(transfers.list().len(), 1, "the second fetch still runs");
        drop(second);
        assert!(transfers.list().is_empty());
    }
}
