//! The owner's side of encrypted custody over secure links (`../shared/spec/ciyam-peer.md`,
//! `peer_persist_file`); the custodian's side is [`crate::custodian`], hooked into every
//! responder session.
//!
//! - [`persist`]: a session that opens with `chk <content>`, then `put`s the push request
//!   (already in the local store, built by the caller, who alone knows the password). A
//!   custodian that accepts answers with `get <content>`, which the session serves from the
//!   store, and takes it into custody before its `(okay)`. A custodian that holds the file in
//!   custody already answers the opening `chk` with `(not found)` and later `put`s its pull
//!   request for it: that counts as success too. Any other own command of the custodian means
//!   it refused custody (no quota, or custody turned off).
//! - [`retrieve`]: `chk <original>`; the custodian answers `(not found)` (only the copy is
//!   there), the hello exchange follows, then a harmless `chk <hello>` of ours gives the
//!   custodian its turn, in which it `put`s the pull request. We `get` the encrypted copy it
//!   names and end the session. Both items are stored locally; decrypting is the caller's
//!   business (the password never reaches the node).

use super::*;
use kith_crypto::custody::PullRequest;
use serde::{Deserialize, Serialize};

/// What a [`persist`] did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PersistReport {
    /// The push request's hash.
    pub push_request: String,
    /// The content's hash.
    pub content: String,
    /// The custodian (agent id).
    pub custodian: String,
    /// True when the custodian held the file in custody already.
    pub already: bool,
}

/// What a [`retrieve`] did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetrieveReport {
    /// The original content's hash.
    pub hash: String,
    /// The pull request's hash (stored locally).
    pub pull_request: String,
    /// The encrypted copy's hash (stored locally).
    pub encrypted: String,
    /// The custodian (agent id).
    pub custodian: String,
}

/// What the session is for.
#[derive(Debug, Clone, Copy)]
enum Goal {
    Persist { push: ContentHash },
    Retrieve,
}

/// Where an owner session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `chk` not sent yet.
    Start,
    /// Waiting for the opening `chk` reply.
    Checking,
    /// Opened: our next turn issues the goal's command (push request / filler `chk`).
    Opened,
    /// Waiting for the custodian's answer to that command.
    Asked,
    /// Retrieve: `get` of the copy sent.
    Getting,
    /// `bye` sent.
    Done,
}

/// How an owner session ended well.
#[derive(Debug)]
enum Outcome {
    /// Persist: the custodian took the content (or held it already).
    Persisted { already: bool },
    /// Retrieve: the pull request and the copy are stored here.
    Retrieved {
        pull: ContentHash,
        encrypted: ContentHash,
    },
}

fn pick_peer(state: &NodeState, peer: Option<AgentId>) -> Result<AgentId, ExchangeError> {
    let peer = match peer {
        Some(peer) => peer,
        None => *state.links.linked().first().ok_or(ExchangeError::NoPeers)?,
    };
    if peer == state.agent {
        return Err(ExchangeError::Store(
            "that agent is this node itself".to_owned(),
        ));
    }
    Ok(peer)
}

/// Asks `to` (or the first linked peer) to keep the content named by the push request
/// `push`, which must be stored here, as must the content (a single item).
pub async fn persist(
    state: &Arc<NodeState>,
    push: ContentHash,
    to: Option<AgentId>,
) -> Result<PersistReport, ExchangeError> {
    let peer = pick_peer(state, to)?;
    let request = answer::read_item(state, push)
        .await
        .map_err(ExchangeError::Store)?
        .ok_or_else(|| ExchangeError::Store(format!("push request {push} is not stored here")))?;
    let parsed = kith_crypto::custody::PushRequest::parse(&request[1..])
        .map_err(|e| ExchangeError::Store(format!("{push} is not a push request: {e}")))?;
    let content = ContentHash(parsed.content_hash);
    match answer::read_item(state, content).await {
        Ok(Some(item)) if item.first() == Some(&kith_store::ItemType::BLOB.byte()) => {}
        Ok(Some(_)) => {
            return Err(ExchangeError::Store(format!(
                "{content} is larger than one item: custody holds single-item files only for now"
            )))
        }
        Ok(None) => {
            return Err(ExchangeError::Store(format!(
                "{content} is not stored here"
            )))
        }
        Err(e) => return Err(ExchangeError::Store(e)),
    }
    match run(state, peer, content, Goal::Persist { push }).await? {
        Outcome::Persisted { already } => Ok(PersistReport {
            push_request: push.to_hex(),
            content: content.to_hex(),
            custodian: peer.to_string(),
            already,
        }),
        Outcome::Retrieved { .. } => Err(ExchangeError::Store("unexpected outcome".into())),
    }
}

/// Gets the pull request for `hash` and the encrypted copy it names from `from` (or the first
/// linked peer), storing both here.
pub async fn retrieve(
    state: &Arc<NodeState>,
    hash: ContentHash,
    from: Option<AgentId>,
) -> Result<RetrieveReport, ExchangeError> {
    let peer = pick_peer(state, from)?;
    match run(state, peer, hash, Goal::Retrieve).await? {
        Outcome::Retrieved { pull, encrypted } => Ok(RetrieveReport {
            hash: hash.to_hex(),
            pull_request: pull.to_hex(),
            encrypted: encrypted.to_hex(),
            custodian: peer.to_string(),
        }),
        Outcome::Persisted { .. } => Err(ExchangeError::Store("unexpected outcome".into())),
    }
}

/// Reads and parses a pull request stored here.
async fn stored_pull_request(
    state: &NodeState,
    hash: ContentHash,
) -> Result<Option<PullRequest>, ExchangeError> {
    let item = answer::read_item(state, hash)
        .await
        .map_err(ExchangeError::Store)?;
    Ok(item.and_then(|item| PullRequest::parse(&item[1..]).ok()))
}

/// One owner session with `peer` about the content `content`.
async fn run(
    state: &Arc<NodeState>,
    peer: AgentId,
    content: ContentHash,
    goal: Goal,
) -> Result<Outcome, ExchangeError> {
    net::ensure_link(state, peer).await?;
    let mut link = InitiatorSession::open(state, peer).await?;
    let mut step = Step::Start;
    // What the custodian did in its turns since our last command.
    let mut served_content = false;
    let mut peer_put: Option<ContentHash> = None;
    let mut outcome: Option<Outcome> = None;
    let mut refusal: Option<String> = None;
    let mut getting: Option<(ContentHash, ContentHash)> = None;
    while let Some(event) = link.next_event().await? {
        let now = Instant::now();
        let result = match event {
            Event::Ready => {
                let command = match step {
                    Step::Start => {
                        step = Step::Checking;
                        Command::Chk {
                            target: Target::Hash(ItemHash(content.0)),
                            nonce: None,
                        }
                    }
                    Step::Opened => {
                        step = Step::Asked;
                        served_content = false;
                        peer_put = None;
                        match goal {
                            Goal::Persist { push } => Command::Put {
                                hash: ItemHash(push.0),
                            },
                            // Gives the custodian a turn to `put` the pull request.
                            Goal::Retrieve => Command::Chk {
                                target: Target::Hash(ItemHash::hello()),
                                nonce: None,
                            },
                        }
                    }
                    Step::Asked => {
                        let pull = match peer_put {
                            Some(hash) => stored_pull_request(state, hash)
                                .await?
                                .filter(|p| p.original_hash == content.0)
                                .map(|p| (hash, p)),
                            None => None,
                        };
                        match (goal, pull) {
                            (Goal::Persist { .. }, Some(_)) => {
                                outcome = Some(Outcome::Persisted { already: true });
                                step = Step::Done;
                                Command::Bye
                            }
                            (Goal::Persist { .. }, None) if served_content => {
                                outcome = Some(Outcome::Persisted { already: false });
                                step = Step::Done;
                                Command::Bye
                            }
                            (Goal::Persist { .. }, None) => {
                                refusal = Some(format!(
                                    "{peer} refused custody of {content} (custody is off there, or over its quota)"
                                ));
                                step = Step::Done;
                                Command::Bye
                            }
                            (Goal::Retrieve, Some((pull_hash, pull))) => {
                                let encrypted = ContentHash(pull.encrypted_hash);
                                getting = Some((pull_hash, encrypted));
                                step = Step::Getting;
                                Command::Get {
                                    hash: ItemHash(encrypted.0),
                                }
                            }
                            (Goal::Retrieve, None) => {
                                refusal =
                                    Some(format!("{peer} holds no copy of {content} in custody"));
                                step = Step::Done;
                                Command::Bye
                            }
                        }
                    }
                    Step::Getting => {
                        if let Some((pull, encrypted)) = getting {
                            let present = answer::read_item(state, encrypted)
                                .await
                                .map_err(ExchangeError::Store)?
                                .is_some();
                            if present {
                                outcome = Some(Outcome::Retrieved { pull, encrypted });
                            } else {
                                refusal = Some(format!(
                                    "{peer} did not send the encrypted copy {encrypted}"
                                ));
                            }
                        }
                        step = Step::Done;
                        Command::Bye
                    }
                    Step::Checking | Step::Done => Command::Bye,
                };
                link.port.session_mut().send_command(now, command)
            }
            Event::Reply {
                to: Command::Chk { .. },
                reply,
            } if step == Step::Checking => {
                link.opened();
                step = Step::Opened;
                if matches!(goal, Goal::Retrieve) && reply != Reply::NotFound {
                    refusal = Some(format!(
                        "{peer} holds {content} as a plain file, not in custody: use `kith file get {content} --from {peer}`"
                    ));
                    step = Step::Done;
                }
                Ok(())
            }
            Event::PeerCommand(Command::Get { hash }) if hash.0 == content.0 => {
                served_content = true;
                Ok(())
            }
            Event::PeerCommand(Command::Put { hash }) if hash != ItemHash::hello() => {
                peer_put = Some(ContentHash(hash.0));
                Ok(())
            }
            Event::StoreItem { hash: got, item } => {
                link.store_received(got, item).await?;
                Ok(())
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
        link.port.process(Instant::now());
    }
    if let Some(refusal) = refusal {
        return Err(ExchangeError::Refused(refusal));
    }
    outcome.ok_or_else(|| link.failed("the session ended early".to_owned()))
}
