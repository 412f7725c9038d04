//! Fetching a file from a peer that only takes turns: the CIYAM session's walk over the
//! file's tree, one item per turn, only what is missing (so a re-run resumes). Also the walk
//! the owner's side of custody uses ([`super::owner`]).

use super::answer;
use super::fetch::Priority;
use super::{
    Exchange, ExchangeError, InitiatorSession, NodePolicy, COLLISION_BACKOFF, OPENING_RETRIES,
};
use crate::api::FetchReport;
use crate::clock::mono_now;
use kith_crypto::identity::AgentId;
use kith_proto::files::{CloseReason, Command, Event, Policy, Reply, Target};
use kith_store::tree::{parse_list, MAX_TREE_DEPTH};
use kith_store::{ContentHash, ItemKind, StoreError};

/// Fetches from one peer over the turn-taking session, trying again when we gave way to the
/// peer's own session.
pub(super) async fn fetch_from(
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
