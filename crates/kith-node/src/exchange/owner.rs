//! The owner's side of encrypted custody over secure links (`../shared/spec/ciyam-peer.md`,
//! `peer_persist_file`); the custodian's side is [`crate::custodian`], hooked into every
//! responder session. Files of any size: the copy is one encrypted file of its own
//! ([`kith_store::custody_copy`] has the design).
//!
//! - [`persist`]: a session that opens with `chk <push request>` (a harmless opening that
//!   touches no custody), then `put`s the push request (already in the local store, built by
//!   the caller, who alone knows the password). A custodian that takes custody `get`s the
//!   content's items, one per turn; we serve them from the store and give it turn after turn
//!   (a filler `chk <hello>`) while it keeps asking. It ends by `put`ting its pull request for
//!   the file and our key: that is the success (after it, the copy is durable there). A
//!   custodian that holds the file for our key already `put`s the pull request at once
//!   (success, `already`). A custodian that asks for an item that is not part of the file
//!   (the rest of our store is none of its business) ends the session. Any other turn of the
//!   custodian means it refused custody (no quota, custody turned off, too many owners) or
//!   stopped partway.
//! - [`retrieve`]: `chk <original>`; the custodian answers `(not found)` (only copies are
//!   there), the hello exchange follows, then filler `chk <hello>`s give the custodian turns
//!   in which it `put`s the pull requests of the file's owners. We take the one naming our
//!   owner key (the caller derived it from the password), ignore the others, and `get` the
//!   encrypted copy it names, item by item as a fetch does (resuming: items already here are
//!   not asked for again). Decrypting is the caller's business (the password never reaches
//!   the node).
//!
//! Items the custodian `put` that we do not keep (other owners' pull requests, our pull
//! request after a persist) are removed from the store at the end unless a recorded file uses
//! them; the pull request and copy of a retrieve stay for the caller, who removes them once it
//! has decrypted.

use super::answer;
use super::turns::{describe, next_missing, Walk};
use super::{Exchange, ExchangeError, InitiatorSession, NodePolicy};
use crate::api::{PersistReport, RetrieveReport};
use crate::clock::mono_now;
use kith_crypto::custody::{PullRequest, PushRequest};
use kith_crypto::identity::AgentId;
use kith_proto::files::{CloseReason, Command, Event, Policy, Reply, Target};
use kith_store::{ContentHash, StoreError};

/// Custodian turns in a row that neither ask for an item of ours nor hand us our pull
/// request before we stop waiting.
const MAX_IDLE_TURNS: u32 = 4;

/// The request of a persist: who we are and what we push.
#[derive(Debug, Clone)]
struct Push {
    hash: ContentHash,
    owner: [u8; 33],
    content: ContentHash,
    /// Every distinct item of the file, with its size on disk: all a custodian may `get` in
    /// this session (the sizes move the progress bar as each is served).
    items: std::collections::HashMap<ContentHash, u64>,
}

fn pick_peer(ex: &Exchange, peer: Option<AgentId>) -> Result<AgentId, ExchangeError> {
    let peer = match peer {
        Some(peer) => peer,
        None => *ex.endpoint.linked().first().ok_or(ExchangeError::NoPeers)?,
    };
    if peer == ex.endpoint.agent() {
        return Err(ExchangeError::Store(
            "that agent is this node itself".to_owned(),
        ));
    }
    Ok(peer)
}

impl Exchange {
    /// Asks `to` (or the first linked peer) to keep the content named by the push request
    /// `push`, which must be stored here, as must the whole content (any size).
    pub async fn persist(
        &self,
        push: ContentHash,
        to: Option<AgentId>,
    ) -> Result<PersistReport, ExchangeError> {
        persist(self, push, to).await
    }

    /// Gets the pull request for `hash` naming `owner` (any owner when `None`) and the
    /// encrypted copy it names from `from` (or the first linked peer), storing both here.
    pub async fn retrieve(
        &self,
        hash: ContentHash,
        owner: Option<[u8; 33]>,
        from: Option<AgentId>,
    ) -> Result<RetrieveReport, ExchangeError> {
        retrieve(self, hash, owner, from).await
    }
}

async fn persist(
    ex: &Exchange,
    push: ContentHash,
    to: Option<AgentId>,
) -> Result<PersistReport, ExchangeError> {
    let peer = pick_peer(ex, to)?;
    let request = answer::read_item(&ex.store, push)
        .await?
        .ok_or_else(|| ExchangeError::Store(format!("push request {push} is not stored here")))?;
    let parsed = PushRequest::parse(&request[1..])
        .map_err(|e| ExchangeError::Store(format!("{push} is not a push request: {e}")))?;
    let content = ContentHash(parsed.content_hash);
    // The whole file must be here: the custodian will ask for every item of it, and for
    // nothing else.
    let walked = ex
        .store
        .run(move |s| s.blobs().walk_file(&content))
        .await
        .map_err(|e| ExchangeError::Store(format!("{content} is not complete here: {e}")))?;
    let items = ex
        .store
        .run(move |s| {
            let blobs = s.blobs();
            let size =
                |h: ContentHash| std::fs::metadata(blobs.path_for(&h)).map_or(0, |m| m.len());
            Ok::<_, StoreError>(walked.items.into_iter().map(|h| (h, size(h))).collect())
        })
        .await?;
    let push = Push {
        hash: push,
        owner: parsed.owner_key,
        content,
        items,
    };
    // Shown by `kith persist`'s progress bar as the custodian takes the items (total: the
    // bytes of every item, a little over the file's size: the tree's lists and type bytes).
    let (_progress, _) = ex.progress.start(content, super::Priority::User);
    let name = ex
        .store
        .run(move |s| s.get(&content).map(|r| r.and_then(|r| r.name)))
        .await
        .unwrap_or(None);
    ex.progress
        .describe(content, Some(push.items.values().sum()), name);
    let mut kept = Vec::new();
    let result = run_persist(ex, peer, &push, &mut kept).await;
    forget_items(ex, kept).await;
    let (already, items_sent) = result?;
    Ok(PersistReport {
        push_request: push.hash.to_hex(),
        content: content.to_hex(),
        custodian: peer.to_string(),
        already,
        items_sent,
    })
}

async fn retrieve(
    ex: &Exchange,
    hash: ContentHash,
    owner: Option<[u8; 33]>,
    from: Option<AgentId>,
) -> Result<RetrieveReport, ExchangeError> {
    let peer = pick_peer(ex, from)?;
    // The copy's items arrive one by one before anything records them: hold off the store's
    // garbage collector until the caller has them (see `fetch`).
    let _lease = ex.store.run(|s| s.write_lease()).await?;
    let mut extra = Vec::new();
    let result = run_retrieve(ex, peer, hash, owner, &mut extra).await;
    if let Ok((pull, _)) = &result {
        extra.retain(|item| item != pull);
    }
    forget_items(ex, extra).await;
    let (pull, encrypted) = result?;
    Ok(RetrieveReport {
        hash: hash.to_hex(),
        pull_request: pull.to_hex(),
        encrypted: encrypted.to_hex(),
        custodian: peer.to_string(),
    })
}

/// Removes loose items a session stored that we do not keep (unless a file uses them).
async fn forget_items(ex: &Exchange, items: Vec<ContentHash>) {
    if items.is_empty() {
        return;
    }
    let result = ex
        .store
        .run(move |s| {
            for item in &items {
                if !s.meta().item_in_use(item)? {
                    s.blobs().remove_item(item)?;
                }
            }
            Ok::<_, StoreError>(())
        })
        .await;
    if let Err(e) = result {
        tracing::warn!("could not remove loose custody items: {e}");
    }
}

/// Reads and parses a pull request stored here.
async fn stored_pull_request(
    ex: &Exchange,
    hash: ContentHash,
) -> Result<Option<PullRequest>, ExchangeError> {
    let item = answer::read_item(&ex.store, hash).await?;
    Ok(item.and_then(|item| PullRequest::parse(&item[1..]).ok()))
}

fn filler() -> Command {
    Command::Chk {
        target: Target::Hash(ContentHash::hello()),
        nonce: None,
    }
}

/// One persist session. Returns (already, items sent); `received` collects the items the
/// custodian `put` (to forget afterwards).
async fn run_persist(
    ex: &Exchange,
    peer: AgentId,
    push: &Push,
    received: &mut Vec<ContentHash>,
) -> Result<(bool, u64), ExchangeError> {
    ex.endpoint.ensure_link(peer).await?;
    let mut link = InitiatorSession::open(ex, peer).await?;
    let mut opened = false;
    let mut asked = false;
    let mut done = false;
    // What the custodian did in its turn since our last command.
    let mut served_now = 0u64;
    let mut peer_put: Option<ContentHash> = None;
    let mut served = 0u64;
    let mut idle = 0u32;
    let mut outcome: Option<(bool, u64)> = None;
    let mut refusal: Option<String> = None;
    while let Some(event) = link.next_event().await? {
        let now = mono_now();
        let result = match event {
            Event::Ready => {
                let command = if done {
                    Command::Bye
                } else if !opened {
                    Command::Chk {
                        target: Target::Hash(push.hash),
                        nonce: None,
                    }
                } else if !asked {
                    asked = true;
                    Command::Put { hash: push.hash }
                } else {
                    let ours = match peer_put.take() {
                        Some(hash) => stored_pull_request(ex, hash)
                            .await?
                            .filter(|p| {
                                p.original_hash == push.content.0 && p.owner_key == Some(push.owner)
                            })
                            .is_some(),
                        None => false,
                    };
                    idle = if served_now > 0 { 0 } else { idle + 1 };
                    served_now = 0;
                    if ours {
                        outcome = Some((served == 0, served));
                        done = true;
                        Command::Bye
                    } else if idle == 0 || (idle < MAX_IDLE_TURNS && served > 0) {
                        // It is still taking items (or finishing): give it another turn.
                        filler()
                    } else {
                        refusal = Some(if served == 0 {
                            format!(
                                "{peer} refused custody of {} (custody is off there, over its quota, or it keeps too many owners' copies of it)",
                                push.content
                            )
                        } else {
                            format!(
                                "{peer} stopped taking custody of {} after {served} items (over its quota?)",
                                push.content
                            )
                        });
                        done = true;
                        Command::Bye
                    }
                };
                link.port.session_mut().send_command(now, command)
            }
            Event::Reply {
                to: Command::Chk { .. },
                ..
            } if !opened => {
                link.opened();
                opened = true;
                Ok(())
            }
            Event::PeerCommand(Command::Get { hash }) if asked => {
                if hash != ContentHash::hello() && !push.items.contains_key(&hash) {
                    // Not part of the file: a custodian has no business with the rest of our
                    // store. Ending now leaves the question unanswered.
                    return Err(ExchangeError::Refused(format!(
                        "{peer} asked for {hash}, which is not part of {}: custody abandoned",
                        push.content
                    )));
                }
                served_now += 1;
                served += 1;
                if let Some(&len) = push.items.get(&hash) {
                    ex.progress.advance(push.content, len);
                }
                Ok(())
            }
            Event::PeerCommand(Command::Put { hash }) if hash != ContentHash::hello() => {
                peer_put = Some(hash);
                Ok(())
            }
            Event::StoreItem { hash: got, item } => {
                if link.store_received(got, item).await? {
                    received.push(got);
                }
                Ok(())
            }
            Event::PipAddress => link
                .port
                .session_mut()
                .answer_pip(now, &NodePolicy.pip_address()),
            Event::Closed(reason) => {
                link.closed(&reason).await?;
                if let (true, CloseReason::Bye { by_peer: false }) = (done, &reason) {
                    break;
                }
                return Err(link.failed(describe(&reason)));
            }
            _ => Ok(()),
        };
        result.map_err(|e| link.failed(e.to_string()))?;
        link.port.process(mono_now());
    }
    if let Some(refusal) = refusal {
        return Err(ExchangeError::Refused(refusal));
    }
    outcome.ok_or_else(|| link.failed("the session ended early".to_owned()))
}

/// Where a retrieve session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `chk` not sent yet.
    Start,
    /// Waiting for the opening `chk` reply.
    Checking,
    /// Giving the custodian turns to `put` pull requests.
    Offering,
    /// Getting the items of the copy.
    Getting,
    /// `bye` sent.
    Done,
}

/// One retrieve session. Returns (pull request, copy); `extra` collects the items the
/// custodian `put` (all of them: the caller keeps the pull request it returns).
async fn run_retrieve(
    ex: &Exchange,
    peer: AgentId,
    content: ContentHash,
    owner: Option<[u8; 33]>,
    extra: &mut Vec<ContentHash>,
) -> Result<(ContentHash, ContentHash), ExchangeError> {
    ex.endpoint.ensure_link(peer).await?;
    let mut link = InitiatorSession::open(ex, peer).await?;
    let mut step = Step::Start;
    let mut peer_put: Option<ContentHash> = None;
    let mut others = 0u32;
    let mut malformed: Option<ContentHash> = None;
    let mut idle = 0u32;
    let mut chosen: Option<(ContentHash, ContentHash)> = None;
    let mut walk: Option<Walk> = None;
    let mut asked: Option<ContentHash> = None;
    let mut refusal: Option<String> = None;
    while let Some(event) = link.next_event().await? {
        let now = mono_now();
        let result = match event {
            Event::Ready => {
                let command = match step {
                    Step::Start => {
                        step = Step::Checking;
                        Command::Chk {
                            target: Target::Hash(content),
                            nonce: None,
                        }
                    }
                    Step::Offering => {
                        let offered = match peer_put.take() {
                            Some(hash) => {
                                let pull = stored_pull_request(ex, hash).await?;
                                if pull.is_none() {
                                    malformed = Some(hash);
                                }
                                pull.filter(|p| p.original_hash == content.0)
                                    .map(|p| (hash, p))
                            }
                            None => None,
                        };
                        match offered {
                            Some((hash, pull)) if owner.is_none() || pull.owner_key == owner => {
                                let encrypted = ContentHash(pull.encrypted_hash);
                                chosen = Some((hash, encrypted));
                                walk = Some(Walk::new(encrypted));
                                step = Step::Getting;
                                next_copy_item(ex, &mut walk, &mut asked, &mut step).await?
                            }
                            Some(_) => {
                                others += 1;
                                idle = 0;
                                filler()
                            }
                            None if idle == 0 => {
                                // The custodian's first turn is still to come.
                                idle += 1;
                                filler()
                            }
                            None => {
                                refusal = Some(if let Some(bad) = malformed {
                                    format!(
                                        "{peer} put {bad} where a pull request for {content} was due, and it is not a well-formed pull request"
                                    )
                                } else if others > 0 {
                                    format!(
                                        "{peer} keeps {content} in custody, but not for this key: wrong password (or --ciyam-compat given or missing when it was persisted); check the password file (the password is its first line) and try again"
                                    )
                                } else {
                                    format!("{peer} holds no copy of {content} in custody")
                                });
                                step = Step::Done;
                                Command::Bye
                            }
                        }
                    }
                    Step::Getting => next_copy_item(ex, &mut walk, &mut asked, &mut step).await?,
                    Step::Checking | Step::Done => Command::Bye,
                };
                link.port.session_mut().send_command(now, command)
            }
            Event::Reply {
                to: Command::Chk { .. },
                reply,
            } if step == Step::Checking => {
                link.opened();
                step = Step::Offering;
                if reply != Reply::NotFound {
                    refusal = Some(format!(
                        "{peer} holds {content} as a plain file, not in custody: use `kith file get {content} --from {peer}`"
                    ));
                    step = Step::Done;
                }
                Ok(())
            }
            Event::PeerCommand(Command::Put { hash }) if hash != ContentHash::hello() => {
                peer_put = Some(hash);
                Ok(())
            }
            Event::StoreItem { hash: got, item } => {
                let ours = step == Step::Getting && asked == Some(got);
                match (ours, walk.as_mut()) {
                    (true, Some(walk)) => {
                        // A list of the copy must parse before anything of it is kept.
                        if let Err(e) = walk.enter(got, &item) {
                            tracing::warn!(peer = %peer, "could not store item {got}: {e}");
                            link.port.session_mut().stored(now, false)
                        } else {
                            if link.store_received(got, item).await? {
                                asked = None;
                            }
                            Ok(())
                        }
                    }
                    _ => {
                        if link.store_received(got, item).await? {
                            extra.push(got);
                        }
                        Ok(())
                    }
                }
            }
            Event::PipAddress => link
                .port
                .session_mut()
                .answer_pip(now, &NodePolicy.pip_address()),
            Event::Closed(reason) => {
                link.closed(&reason).await?;
                if let (Step::Done, CloseReason::Bye { by_peer: false }) = (step, &reason) {
                    break;
                }
                return Err(link.failed(describe(&reason)));
            }
            _ => Ok(()),
        };
        result.map_err(|e| link.failed(e.to_string()))?;
        link.port.process(mono_now());
    }
    if let Some(refusal) = refusal {
        return Err(ExchangeError::Refused(refusal));
    }
    chosen.ok_or_else(|| link.failed("the session ended early".to_owned()))
}

/// The next command while getting the copy: the next item of its tree not held here, or
/// `bye` when it is complete.
async fn next_copy_item(
    ex: &Exchange,
    walk: &mut Option<Walk>,
    asked: &mut Option<ContentHash>,
    step: &mut Step,
) -> Result<Command, ExchangeError> {
    let next = match walk.as_mut() {
        Some(walk) => next_missing(ex, walk).await?,
        None => None,
    };
    Ok(match next {
        Some(item) => {
            *asked = Some(item);
            Command::Get { hash: item }
        }
        None => {
            *step = Step::Done;
            Command::Bye
        }
    })
}
