//! Fetching a file: from the peers that speak windowed item exchange, all at once
//! ([`super::window`]); from a peer that only takes turns, the CIYAM session's walk over the
//! file's tree, item by item ([`super::turns`]). Either way only what is missing is fetched, so a re-run
//! resumes, and a file already here is not fetched at all.

use super::turns::fetch_from;
use super::{window, Exchange, ExchangeError};
use crate::api::FetchReport;
use kith_crypto::identity::AgentId;
use kith_proto::files::items::CAPABILITY;
use kith_store::ContentHash;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Whose transfer a fetch is: the user's goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Asked for by the user (`kith file get`, custody): never waits for background work.
    User,
    /// Background replication: gives way to the user at its next turn, and stores at most
    /// `max_bytes` (what the offer announced, plus the lists).
    Background {
        /// The byte budget of the whole fetch.
        max_bytes: u64,
    },
}

impl Priority {
    /// Background work on a file (or a folder) of `size` content bytes: it may store the
    /// content, the lists that hold it (one 65-byte line per item of at most `max_item` bytes,
    /// at every level), and two items of slack for rounding.
    pub fn background_for(size: u64, max_item: u64) -> Priority {
        let lines_per_item = (max_item / 65).max(2);
        let mut total = size;
        let mut level = size.div_ceil(max_item.max(2) - 1);
        while level > 1 {
            total = total.saturating_add(level.saturating_mul(65));
            level = level.div_ceil(lines_per_item);
        }
        Priority::Background {
            max_bytes: total.saturating_add(2 * max_item),
        }
    }

    /// The most a fetch at this priority may store (unbounded for the user's own).
    pub(super) fn byte_budget(self) -> u64 {
        match self {
            Priority::Background { max_bytes } => max_bytes,
            Priority::User => u64::MAX,
        }
    }
}

/// Where a fetch writes the file it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    /// An absolute path: the file itself, or with `into_dir` the directory it goes in.
    pub path: PathBuf,
    /// `path` is a directory: the file takes the name its source gave it (a plain file name),
    /// or its hash when it has none.
    pub into_dir: bool,
    /// Replace an existing file.
    pub force: bool,
}

impl OutputSpec {
    /// The file to write, once the file's name is known.
    pub fn resolve(&self, name: Option<&str>, hash: &ContentHash) -> PathBuf {
        if !self.into_dir {
            return self.path.clone();
        }
        self.path
            .join(kith_proto::files::items::output_name(name, hash))
    }
}

/// A fetch as the control API asks for it.
#[derive(Debug, Clone)]
pub struct FetchOrder {
    /// The file.
    pub hash: ContentHash,
    /// The one peer to ask; `None`: every linked peer that holds it, at once.
    pub from: Option<AgentId>,
    /// The user's own, or background replication.
    pub priority: Priority,
    /// Where to write the file as it arrives.
    pub output: Option<OutputSpec>,
    /// Download rate limit, bytes per second (`None` or 0: the node's
    /// `download_bytes_per_sec`).
    pub rate: Option<u64>,
    /// A folder manifest is a folder: fetch its files too, and write the folder (not the
    /// manifest) to `output` ([`super::folder`]).
    pub folders: bool,
    /// The folder this file is fetched for (progress and cancellation are the folder's).
    pub parent: Option<ContentHash>,
    /// Record the file (false for a folder's files: the folder's record names their items).
    pub record: bool,
    /// Where a folder goes when `output` is `None` (a file would only be stored or go to
    /// stdout, which a folder cannot).
    pub folder_into: Option<OutputSpec>,
    /// Bytes requested or held at once at most, below the node's `fetch_window_bytes` (a
    /// folder's files fetched together share one window); `None`: the node's.
    pub window: Option<u64>,
}

impl FetchOrder {
    /// The user's fetch of `hash` (from `from` only, if given), stored and not written out.
    pub fn new(hash: ContentHash, from: Option<AgentId>) -> FetchOrder {
        FetchOrder {
            hash,
            from,
            priority: Priority::User,
            output: None,
            rate: None,
            folders: false,
            parent: None,
            record: true,
            folder_into: None,
            window: None,
        }
    }
}

impl Exchange {
    /// Fetches the file `hash` from `from`, or from every linked peer that has it.
    pub async fn fetch(
        &self,
        hash: ContentHash,
        from: Option<AgentId>,
    ) -> Result<FetchReport, ExchangeError> {
        self.fetch_order(FetchOrder::new(hash, from)).await
    }

    /// [`Exchange::fetch`] at a given priority.
    pub async fn fetch_with(
        &self,
        hash: ContentHash,
        from: Option<AgentId>,
        priority: Priority,
    ) -> Result<FetchReport, ExchangeError> {
        let mut order = FetchOrder::new(hash, from);
        order.priority = priority;
        self.fetch_order(order).await
    }

    /// Runs a fetch (see the module docs of [`super`] and of `window`); with
    /// `order.folders`, a folder's too ([`super::folder`]).
    pub async fn fetch_order(&self, order: FetchOrder) -> Result<FetchReport, ExchangeError> {
        if !order.folders {
            return fetch_order(self, order).await;
        }
        // The folder's progress and cancellation span its manifest and every file.
        let (_progress, cancel) = self.progress.start(order.hash, order.priority);
        let report = fetch_order(self, order.clone()).await?;
        if !report.folder {
            return Ok(report);
        }
        super::folder::complete(self, &order, report, cancel).await
    }

    /// Cancels the fetch of `hash` running now (Ctrl-C on `kith file get`): it stops at its
    /// next step, keeping the items it committed. False when none runs.
    pub fn cancel_fetch(&self, hash: &ContentHash) -> bool {
        self.progress.cancel(hash)
    }
}

/// One fetch of a file at a time: a lock per file being fetched, dropped from the table when
/// nobody holds or waits for it.
#[derive(Debug, Default)]
pub(super) struct FetchLocks {
    map: std::sync::Mutex<HashMap<ContentHash, Arc<tokio::sync::Mutex<()>>>>,
}

/// A held [`FetchLocks`] entry.
pub(super) struct FetchLock<'a> {
    locks: &'a FetchLocks,
    hash: ContentHash,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl FetchLocks {
    fn table(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ContentHash, Arc<tokio::sync::Mutex<()>>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until no other fetch of `hash` runs in this node.
    pub(super) async fn lock(&self, hash: ContentHash) -> FetchLock<'_> {
        let lock = Arc::clone(self.table().entry(hash).or_default());
        let guard = Arc::clone(&lock).lock_owned().await;
        FetchLock {
            locks: self,
            hash,
            lock,
            guard: Some(guard),
        }
    }
}

impl Drop for FetchLock<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut table = self.locks.table();
        // The table's copy and ours: nobody else holds or waits for it.
        if Arc::strong_count(&self.lock) <= 2 {
            table.remove(&self.hash);
        }
    }
}

/// Counts a user's fetch while it runs (background work gives way meanwhile).
struct UserFetch<'a>(&'a Exchange);

impl Drop for UserFetch<'_> {
    fn drop(&mut self) {
        self.0.user_fetches.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a fetch waits for a linked peer's `version` to say whether it speaks windowed
/// exchange (it follows the link's first frames).
const VERSION_WAIT: Duration = Duration::from_secs(2);

pub(super) async fn fetch_order(
    ex: &Exchange,
    order: FetchOrder,
) -> Result<FetchReport, ExchangeError> {
    let FetchOrder {
        hash,
        from,
        priority,
        output,
        rate,
        folders,
        parent,
        record,
        folder_into: _,
        window,
    } = order;
    let rate = rate
        .filter(|r| *r > 0)
        .unwrap_or(ex.node_limits().download_bytes_per_sec);
    ex.counters.exchange_fetches.bump();
    let _user = (priority == Priority::User).then(|| {
        ex.user_fetches.fetch_add(1, Ordering::AcqRel);
        UserFetch(ex)
    });
    // One fetch of a file at a time in this node: a second one waits, then finds it here.
    let file_lock = ex.fetch_locks.lock(hash).await;
    // Items arrive one by one before the file is recorded: the store's garbage collector must
    // not take them for orphans meanwhile (it waits while any writer holds a lease).
    let _lease = ex.store.run(|s| s.write_lease()).await?;
    let (_progress, cancel) = ex.progress.start_under(hash, priority, parent);
    if let Some(record) = ex.store.run(move |s| s.get(&hash)).await? {
        let folder = folders && is_folder(ex, hash).await?;
        let path = output
            .as_ref()
            .filter(|_| !folder)
            .map(|o| (o.resolve(record.name.as_deref(), &hash), o.force));
        let written = write_out(ex, hash, path.as_ref()).await?;
        drop(file_lock);
        return Ok(FetchReport {
            hash: hash.to_hex(),
            size: record.size,
            kind: record.kind.as_str().to_owned(),
            name: record.name,
            path: path.map(|(p, _)| p.display().to_string()),
            written,
            already_present: true,
            folder,
            ..FetchReport::default()
        });
    }
    if let Some(out) = output.as_ref().filter(|o| !o.into_dir) {
        // Refused before anything moves, not after the transfer.
        if !out.force && out.path.exists() {
            return Err(super::output::OutputError::Exists(out.path.clone()).into());
        }
    }
    let peers = match from {
        Some(peer) if peer == ex.endpoint.agent() => {
            return Err(ExchangeError::Store(
                "that agent is this node itself".to_owned(),
            ))
        }
        Some(peer) => {
            ex.endpoint.ensure_link(peer).await?;
            vec![peer]
        }
        None => ex.endpoint.linked(),
    };
    if peers.is_empty() {
        return Err(ExchangeError::NoPeers);
    }
    let mut windowed = Vec::new();
    let mut turn_taking = Vec::new();
    for peer in peers {
        let speaks = ex.items_enabled()
            && ex
                .endpoint
                .peer_capabilities(peer, VERSION_WAIT)
                .await
                .is_some_and(|caps| caps.iter().any(|c| c == CAPABILITY));
        if speaks {
            windowed.push(peer);
        } else {
            turn_taking.push(peer);
        }
    }
    let mut failure = None;
    if !windowed.is_empty() {
        let pulled = window::pull(
            ex,
            window::PullOrder {
                hash,
                candidates: windowed,
                priority,
                output: output.clone(),
                cancel: cancel.clone(),
                rate,
                folders,
                record,
                window,
                journaled: parent.is_none(),
            },
        )
        .await;
        match pulled {
            Ok(report) => return Ok(report),
            Err(e @ (ExchangeError::NotFound { .. } | ExchangeError::NoPeerHas(_)))
                if !turn_taking.is_empty() =>
            {
                failure = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    // Peers that only take turns (older nodes, other implementations): one at a time.
    for peer in turn_taking {
        if cancel.is_cancelled() {
            return Err(ExchangeError::Cancelled);
        }
        match fetch_from(ex, peer, hash, priority, record).await {
            Ok(mut report) => {
                report.folder = folders && is_folder(ex, hash).await?;
                let path = output
                    .as_ref()
                    .filter(|_| !report.folder)
                    .map(|o| (o.resolve(report.name.as_deref(), &hash), o.force));
                report.written = write_out(ex, hash, path.as_ref()).await?;
                report.path = path.map(|(p, _)| p.display().to_string());
                return Ok(report);
            }
            Err(ExchangeError::NotFound { .. }) if from.is_none() => {}
            Err(e) if from.is_none() => {
                tracing::info!(peer = %peer, "fetch of {hash} failed: {e}");
                failure = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(failure.unwrap_or_else(|| ExchangeError::NoPeerHas(hash.to_hex())))
}

/// Whether the stored file `hash` is a folder manifest (then it is not written out as a file).
pub(super) async fn is_folder(ex: &Exchange, hash: ContentHash) -> Result<bool, ExchangeError> {
    Ok(ex.store.run(move |s| s.is_folder_manifest(&hash)).await?)
}

/// Writes the stored file `hash` to the order's output, if any (verified as every read is).
async fn write_out(
    ex: &Exchange,
    hash: ContentHash,
    output: Option<&(PathBuf, bool)>,
) -> Result<Option<u64>, ExchangeError> {
    let Some((path, force)) = output.cloned() else {
        return Ok(None);
    };
    if !path.is_absolute() {
        return Err(super::output::OutputError::NotAbsolute(path).into());
    }
    let target = path.clone();
    let written = ex
        .store
        .call(move |s| s.write_out(&hash, &target, force))
        .await?;
    match written {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.is_target_exists() => Err(super::output::OutputError::Exists(path).into()),
        Err(e) => Err(ExchangeError::Store(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::Priority;

    #[test]
    fn a_background_budget_covers_the_tree_but_not_much_more() {
        let item = 1_000_000;
        assert_eq!(Priority::background_for(0, item).byte_budget(), 2 * item);
        let gib = 1u64 << 30;
        let budget = Priority::background_for(gib, item).byte_budget();
        assert!(budget > gib + 1074 * 65, "room for the list lines");
        assert!(budget < gib + 3 * item, "not much more than the file");
    }
}
