//! Fetching a file: from the peers that speak windowed item exchange, all at once
//! ([`super::window`]); from a peer that only takes turns, the CIYAM session's walk over the
//! file's tree, item by item (here). Either way only what is missing is fetched, so a re-run
//! resumes, and a file already here is not fetched at all.

use super::answer;
use super::{
    window, Exchange, ExchangeError, InitiatorSession, NodePolicy, COLLISION_BACKOFF,
    OPENING_RETRIES,
};
use crate::api::FetchReport;
use crate::clock::mono_now;
use kith_crypto::identity::AgentId;
use kith_proto::files::items::CAPABILITY;
use kith_proto::files::{CloseReason, Command, Event, Policy, Reply, Target};
use kith_store::tree::{parse_list, MAX_TREE_DEPTH};
use kith_store::{ContentHash, ItemKind, StoreError};
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
        let name = name
            .filter(|n| kith_proto::files::items::is_plain_name(n))
            .map(str::to_owned)
            .unwrap_or_else(|| hash.to_hex());
        self.path.join(name)
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
        Err(StoreError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            Err(super::output::OutputError::Exists(path).into())
        }
        Err(e) => Err(ExchangeError::Store(e.to_string())),
    }
}

/// Fetches from one peer over the turn-taking session, trying again when we gave way to the
/// peer's own session.
async fn fetch_from(
    ex: &Exchange,
    peer: AgentId,
    hash: ContentHash,
    priority: Priority,
    record: bool,
) -> Result<FetchReport, ExchangeError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        ex.endpoint.ensure_link(peer).await?;
        match initiate(ex, peer, hash, priority, record).await {
            Err(ExchangeError::GaveWay(_)) if attempt < OPENING_RETRIES => {
                tokio::time::sleep(COLLISION_BACKOFF * attempt as u32).await;
                continue;
            }
            Ok(report) => {
                // The peer learns we hold the file now: proof of retention lets it check later
                // that we keep it (`crate::retention`).
                let notice = crate::endpoint::envelope(super::HAVE_COMMAND, hash.0.to_vec());
                if ex.endpoint.try_send(peer, notice).is_ok() {
                    ex.counters.retention_notices_sent.bump();
                }
                return Ok(report);
            }
            other => return other,
        }
    }
}

/// The walk over a file's tree: which item to ask for next, and what the file turned out to
/// be (every item it entered was verified: hashed on arrival, or read through the store's
/// verifying `get_item`), so recording the file needs no second pass over it.
pub(super) struct Walk {
    root: Option<ContentHash>,
    stack: Vec<(Vec<ContentHash>, usize)>,
    visited: u64,
    /// Every item entered (32 bytes each, as a put keeps), deduplicated at the end.
    items: Vec<ContentHash>,
    /// Content bytes of the blobs entered.
    size: u64,
    /// The root's kind, once entered.
    kind: Option<ItemKind>,
}

impl Walk {
    pub(super) fn new(root: ContentHash) -> Walk {
        Walk {
            root: Some(root),
            stack: Vec::new(),
            visited: 0,
            items: Vec::new(),
            size: 0,
            kind: None,
        }
    }

    /// What the walked file is, once every item was entered.
    fn into_stored(mut self, hash: ContentHash) -> Option<kith_store::StoredFile> {
        let kind = self.kind?;
        // Distinct items, the root first (as a put lists them).
        let mut seen = std::collections::HashSet::with_capacity(self.items.len());
        self.items.retain(|h| seen.insert(*h));
        Some(kith_store::StoredFile {
            hash,
            kind,
            size: self.size,
            items: self.items,
        })
    }

    /// The next item of the tree, depth first, in file order.
    fn next_hash(&mut self) -> Option<ContentHash> {
        let next = self.root.take().or_else(|| loop {
            let (hashes, next) = self.stack.last_mut()?;
            if let Some(hash) = hashes.get(*next).copied() {
                *next += 1;
                break Some(hash);
            }
            self.stack.pop();
        });
        self.visited += u64::from(next.is_some());
        next
    }

    /// A well-formed item of the tree was entered.
    fn entered(&mut self, hash: ContentHash, kind: ItemKind) {
        if self.kind.is_none() {
            self.kind = Some(kind);
        }
        self.items.push(hash);
    }

    /// An item of the tree is present: descend into it if it is a list.
    pub(super) fn enter(&mut self, hash: ContentHash, item: &[u8]) -> Result<(), ExchangeError> {
        let (item_type, content) =
            answer::split_item(item).map_err(|e| ExchangeError::Store(e.to_string()))?;
        if item_type.kind() != ItemKind::List {
            self.entered(hash, item_type.kind());
            self.size += content.len() as u64;
            return Ok(());
        }
        if self.stack.len() >= MAX_TREE_DEPTH {
            return Err(ExchangeError::Store(format!(
                "{hash}: lists nested deeper than {MAX_TREE_DEPTH} levels"
            )));
        }
        let hashes = parse_list(content)
            .map_err(|e| ExchangeError::Store(format!("list item {hash} is malformed: {e}")))?;
        self.entered(hash, ItemKind::List);
        self.stack.push((hashes, 0));
        Ok(())
    }
}

/// The next command of a fetch: the next item of the tree we do not hold (descending into
/// lists we hold), or `bye` when the tree is complete.
pub(super) async fn next_missing(
    ex: &Exchange,
    walk: &mut Walk,
) -> Result<Option<ContentHash>, ExchangeError> {
    while let Some(hash) = walk.next_hash() {
        let present = ex
            .store
            .run(move |s| match s.blobs().get_item(&hash) {
                Ok(item) => {
                    let mut bytes = Vec::with_capacity(item.content.len() + 1);
                    bytes.push(item.item_type.byte());
                    bytes.extend_from_slice(&item.content);
                    Ok(Some(bytes))
                }
                // Missing, or a damaged copy (which storing the fetched one replaces).
                Err(StoreError::NotFound { .. } | StoreError::Corrupt { .. }) => Ok(None),
                Err(e) => Err(e),
            })
            .await?;
        match present {
            Some(item) => walk.enter(hash, &item)?,
            None => return Ok(Some(hash)),
        }
    }
    Ok(None)
}

/// Where an initiator's session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `chk HASH` not sent yet.
    Start,
    /// Waiting for the `chk` reply.
    Checking,
    /// The peer has it: getting items.
    Getting,
    /// The peer does not have it: `bye` on our turn.
    NotFound,
    /// Everything is here; `bye` sent.
    Done,
    /// A background fetch gave way to the user: `bye` sent.
    Yielded,
}

/// One initiator session with `peer` for the file `hash`.
async fn initiate(
    ex: &Exchange,
    peer: AgentId,
    hash: ContentHash,
    priority: Priority,
    record: bool,
) -> Result<FetchReport, ExchangeError> {
    let background = matches!(priority, Priority::Background { .. });
    let mut link = InitiatorSession::open_with(ex, peer, background).await?;
    let mut walk = Walk::new(hash);
    let mut step = Step::Start;
    let mut asked: Option<ContentHash> = None;
    let mut fetched = 0u64;
    let mut budget = priority.byte_budget();
    while let Some(event) = link.next_event().await? {
        let now = mono_now();
        let result = match event {
            Event::Ready => {
                let command = match step {
                    Step::Start => {
                        step = Step::Checking;
                        Command::Chk {
                            target: Target::Hash(hash),
                            nonce: None,
                        }
                    }
                    Step::Getting if link.preempted() => {
                        step = Step::Yielded;
                        Command::Bye
                    }
                    Step::Getting => match next_missing(ex, &mut walk).await? {
                        Some(item) => {
                            asked = Some(item);
                            Command::Get { hash: item }
                        }
                        None => {
                            step = Step::Done;
                            Command::Bye
                        }
                    },
                    Step::Checking | Step::NotFound | Step::Done | Step::Yielded => Command::Bye,
                };
                link.port.session_mut().send_command(now, command)
            }
            Event::Reply {
                to: Command::Chk { .. },
                reply,
            } if step == Step::Checking => {
                link.opened();
                step = match reply {
                    Reply::NotFound => Step::NotFound,
                    _ => Step::Getting,
                };
                Ok(())
            }
            Event::StoreItem { hash: got, item } => {
                let ours = asked == Some(got);
                // A list we asked for must parse before anything of it is kept.
                let size = item.len() as u64;
                if size > budget {
                    return Err(ExchangeError::OverBudget {
                        peer: peer.to_string(),
                        budget: priority.byte_budget(),
                    });
                }
                budget -= size;
                if ours {
                    if let Err(e) = walk.enter(got, &item) {
                        tracing::warn!(peer = %peer, "could not store item {got}: {e}");
                        link.port.session_mut().stored(now, false)
                    } else if link.store_received(got, item).await? {
                        fetched += 1;
                        asked = None;
                        ex.progress.advance(hash, size);
                        Ok(())
                    } else {
                        Ok(())
                    }
                } else {
                    link.store_received(got, item).await.map(|_| ())?;
                    Ok(())
                }
            }
            Event::PipAddress => link
                .port
                .session_mut()
                .answer_pip(now, &NodePolicy.pip_address()),
            Event::Closed(reason) => {
                link.closed(&reason).await?;
                match (step, reason) {
                    (Step::Done, CloseReason::Bye { by_peer: false }) => break,
                    (Step::Yielded, CloseReason::Bye { by_peer: false }) => {
                        return Err(ExchangeError::Yielded(peer.to_string()))
                    }
                    (Step::NotFound, CloseReason::Bye { by_peer: false }) => {
                        return Err(ExchangeError::NotFound {
                            peer: peer.to_string(),
                            hash: hash.to_hex(),
                        })
                    }
                    (_, reason) => return Err(link.failed(describe(&reason))),
                }
            }
            _ => Ok(()),
        };
        result.map_err(|e| link.failed(e.to_string()))?;
        link.port.process(mono_now());
    }
    if step != Step::Done {
        return Err(link.failed("the session ended early".to_owned()));
    }
    let items = walk.visited;
    let walked = match walk.into_stored(hash) {
        Some(walked) => walked,
        None => ex.store.run(move |s| s.blobs().walk_file(&hash)).await?,
    };
    let (size, kind, name) = if record {
        let r = ex.store.run(move |s| s.record_walked(walked, None)).await?;
        (r.size, r.kind, r.name)
    } else {
        (walked.size, walked.kind, None)
    };
    Ok(FetchReport {
        hash: hash.to_hex(),
        from: peer.to_string(),
        size,
        kind: kind.as_str().to_owned(),
        items,
        items_fetched: fetched,
        name,
        ..FetchReport::default()
    })
}

pub(super) fn describe(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Bye { by_peer: true } => "the peer ended the session".to_owned(),
        CloseReason::Bye { by_peer: false } => "the session ended early".to_owned(),
        CloseReason::PeerError(text) => format!("the peer said: {text}"),
        CloseReason::Violation(text) => format!("protocol violation: {text}"),
        CloseReason::Timeout => "the peer did not answer in time".to_owned(),
        CloseReason::Local(text) => text.clone(),
    }
}

/// An item as a session carries it (type byte first), for tests.
#[cfg(test)]
pub(super) fn item_bytes(kind: u8, content: &[u8]) -> bytes::Bytes {
    let mut bytes = vec![kind];
    bytes.extend_from_slice(content);
    bytes::Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_goes_depth_first_in_file_order() {
        let h = |n: u8| ContentHash([n; 32]);
        let mut walk = Walk::new(h(1));
        assert_eq!(walk.next_hash(), Some(h(1)));
        let list = format!("{}\n{}\n", h(2).to_hex(), h(3).to_hex());
        walk.enter(h(1), &item_bytes(2, list.as_bytes())).unwrap();
        assert_eq!(walk.next_hash(), Some(h(2)));
        let inner = format!("{}\n", h(4).to_hex());
        walk.enter(h(2), &item_bytes(2, inner.as_bytes())).unwrap();
        assert_eq!(walk.next_hash(), Some(h(4)));
        walk.enter(h(4), &item_bytes(1, b"blob")).unwrap();
        assert_eq!(walk.next_hash(), Some(h(3)));
        walk.enter(h(3), &item_bytes(1, b"blob")).unwrap();
        assert_eq!(walk.next_hash(), None);
        assert!(walk.enter(h(5), &item_bytes(2, b"not a list")).is_err());
        // What the file is, as a put would say: every distinct item once, the root first;
        // the size counts the content of every blob entered.
        let stored = walk.into_stored(h(1)).unwrap();
        assert_eq!(stored.kind, ItemKind::List);
        assert_eq!(stored.items, vec![h(1), h(2), h(4), h(3)]);
        assert_eq!(stored.size, 8);
    }
}
