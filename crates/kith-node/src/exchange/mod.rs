//! File exchange over secure links: the CIYAM session carried in `ciyam` envelopes (initiator
//! to responder) and `ciyam-r` envelopes (back).
//!
//! At most one session runs per linked peer and direction: one we initiate and one the peer
//! initiates can run side by side, their envelopes told apart by command. The node
//! that wants something (`kith file get HASH --from AGENT`) is the session's initiator: it
//! opens with `chk HASH`, then `get`s the item and, for a list (a large file), every item of
//! the tree it does not hold yet, depth first, storing each one durably as it arrives. Memory
//! is one item plus one parsed list per tree level, whatever the file size, and because items
//! already present are never asked for again, running the same command after a broken link
//! resumes where the transfer stopped. When every item is present the file is recorded
//! ([`kith_store::FileStore::record_existing`], which walks and verifies the whole tree).
//!
//! The other end is the responder: its session is created when the first envelope of a
//! session (a `chk` line) arrives from the peer, and answers from the store. Its own command
//! after each of the initiator's turns comes from [`NodePolicy`]: for now always the harmless
//! `chk <hello>` (nothing is offered to peers yet). Both ends run without strict get/put
//! alternation (`alternate: false`, the reference's blockchain sessions), so an initiator may
//! `get` item after item.
//!
//! Every responder session is also a custodian ([`crate::custodian`], as on the peer port):
//! a push request `put` to it makes its next own command `get <content>`, and that content is
//! encrypted at once and never stored plain; a `chk` of a file it holds only in custody makes
//! it `put` the pull request. The owner's side of those sessions is `owner` ([`persist`],
//! [`retrieve`]).
//!
//! Envelopes reach the session through [`dispatch`] (called by the link task through
//! `NodeState::dispatch`), via a small bounded queue per session. An envelope for no session
//! (late, after `bye`) or beyond the queue is dropped and counted (`ciyam_envelopes_dropped`);
//! a session opened beyond [`kith_proto::Limits::max_exchange_sessions`] is refused with an
//! `(error)` line. When the link goes down, the peer's session ends at once ([`Exchange::link_down`]); sessions
//! never redial in the middle, since the other end's session died with the link.
//!
//! Counters: `items_received` (items stored from a peer), `exchange_items_sent` (item
//! envelopes sent), `exchange_fetches`, `exchange_sessions_served`,
//! `exchange_sessions_refused`, `ciyam_envelopes_dropped`.

pub mod answer;
mod initiator;
mod owner;
pub mod progress;
mod retention;

use initiator::InitiatorSession;
pub use owner::{persist, retrieve, PersistReport, RetrieveReport};
pub use retention::{check_retention, CheckOutcome};

use crate::control::FetchReport;
use crate::custodian::{Custodian, CustodianPolicy};
use crate::links::Outgoing;
use crate::net::{self, NetError};
use crate::node::NodeState;
use answer::{answer_from_store, content_hash, store_raw_item, with_blobs};
use kith_crypto::identity::AgentId;
use kith_proto::files::binary::{self, KIND_ITEM, KIND_LINE};
use kith_proto::files::{
    CloseReason, Command, EnvelopePort, Event, ItemHash, Policy, Reply, Role, Session,
    SessionConfig, Target, TurnContext,
};
use kith_proto::wire::Envelope;
use kith_store::tree::{parse_list, MAX_TREE_DEPTH};
use kith_store::{ContentHash, ItemKind, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Envelopes queued for one session while its task is busy. The protocol never lets a peer
/// get more than two ahead; the rest is slack.
const SESSION_QUEUE: usize = binary::MAX_QUEUED * 2;

/// How often a fetch looks again at a peer's session slot taken by another session.
const SLOT_POLL: Duration = Duration::from_millis(50);

/// How often a fetch whose session was dropped before its opening went out (the link went
/// down in between) tries again, waiting a little longer each time (`SLOT_POLL` times the
/// attempt).
const OPENING_RETRIES: usize = 12;

/// Why a fetch failed (shown to the user as is).
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Reaching the peer failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The peer answered `(not found)`.
    #[error("{peer} does not have {hash} (not found)")]
    NotFound {
        /// The peer asked.
        peer: String,
        /// The file.
        hash: String,
    },
    /// No linked peer has the file.
    #[error("no linked peer has {0} (not found)")]
    NoPeerHas(String),
    /// Nobody to ask.
    #[error(
        "no peer is linked: link one first (`kith ticket` on its node, then `kith connect TICKET` \
         here), or name a known one with --from AGENT (--to AGENT for persist)"
    )]
    NoPeers,
    /// Another session with the peer did not end in time.
    #[error("another file exchange with {0} is in progress; try again")]
    Busy(String),
    /// Too many sessions at once.
    #[error("too many file-exchange sessions at once (max_exchange_sessions = {0})")]
    TooMany(usize),
    /// The link went down mid-session.
    #[error("the link with {0} went down during the transfer; run the same command again to resume (items already received are kept)")]
    LinkLost(String),
    /// We gave way to the peer's own session opened at the same moment (retried).
    #[error("{0} opened a session at the same moment; try again")]
    GaveWay(String),
    /// A background fetch ended early to let the user's transfer with the peer go first.
    #[error("the background transfer from {0} gave way to a transfer the user asked for")]
    Yielded(String),
    /// The session ended badly.
    #[error("file exchange with {peer} failed: {reason}")]
    Session {
        /// The peer.
        peer: String,
        /// What happened.
        reason: String,
    },
    /// The peer declined what we asked (custody refused, no copy in custody).
    #[error("{0}")]
    Refused(String),
    /// The local store failed, or what arrived does not make a file.
    #[error("{0}")]
    Store(String),
}

/// The sessions with peers, one slot per peer at most.
#[derive(Debug)]
pub struct Exchange {
    /// One slot per peer and direction: a session we initiate and one the peer initiates can
    /// run at once, their envelopes told apart by command (`ciyam` / `ciyam-r`).
    slots: Mutex<HashMap<(AgentId, Role), Slot>>,
    next_id: AtomicU64,
    max: usize,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    tx: mpsc::Sender<Envelope>,
    /// Ours only (initiator sessions); responder sessions have none.
    flags: Option<Arc<SlotFlags>>,
}

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
    fn byte_budget(self) -> u64 {
        match self {
            Priority::Background { max_bytes } => max_bytes,
            Priority::User => u64::MAX,
        }
    }
}

#[derive(Debug, Default)]
struct SlotFlags {
    /// A background session, which a user's session with the same peer preempts.
    background: bool,
    /// Set by a user's session waiting for the slot: end at the next turn.
    preempt: AtomicBool,
    /// Initiator: our opening `chk` is not answered yet (a `chk` from the peer now is a
    /// collision, not its own command).
    opening: AtomicBool,
    /// Initiator: we gave way to the peer's session.
    gave_way: AtomicBool,
}

impl Exchange {
    /// No sessions; at most `max` at once.
    pub fn new(max: usize) -> Exchange {
        Exchange {
            slots: Mutex::default(),
            next_id: AtomicU64::new(1),
            max: max.max(1),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<(AgentId, Role), Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sessions running now.
    pub fn sessions(&self) -> usize {
        self.slots().len()
    }

    /// The link with `peer` is gone: its session (either end) ends now.
    pub fn link_down(&self, peer: &AgentId) {
        self.slots().retain(|(p, _), _| p != peer);
    }

    fn release(&self, peer: &AgentId, id: u64) {
        self.slots().retain(|(p, _), s| !(p == peer && s.id == id));
    }

    /// Takes the peer's slot for a session we initiate, waiting up to `wait` while another
    /// session with the peer runs.
    async fn acquire(
        &self,
        peer: AgentId,
        wait: Duration,
        background: bool,
    ) -> Result<(u64, mpsc::Receiver<Envelope>, Arc<SlotFlags>), ExchangeError> {
        let deadline = Instant::now() + wait;
        loop {
            {
                let mut slots = self.slots();
                if let Some(Slot {
                    flags: Some(flags), ..
                }) = slots.get(&(peer, Role::Initiator))
                {
                    // The user's transfer goes first: the background one ends at its next turn.
                    if flags.background && !background {
                        flags.preempt.store(true, Ordering::Release);
                    }
                }
                if !slots.contains_key(&(peer, Role::Initiator)) {
                    if slots.len() >= self.max {
                        return Err(ExchangeError::TooMany(self.max));
                    }
                    let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let flags = Arc::new(SlotFlags {
                        background,
                        preempt: AtomicBool::new(false),
                        opening: AtomicBool::new(true),
                        gave_way: AtomicBool::new(false),
                    });
                    let slot = Slot {
                        id,
                        tx,
                        flags: Some(Arc::clone(&flags)),
                    };
                    slots.insert((peer, Role::Initiator), slot);
                    return Ok((id, rx, flags));
                }
            }
            if Instant::now() >= deadline {
                return Err(ExchangeError::Busy(peer.to_string()));
            }
            tokio::time::sleep(SLOT_POLL).await;
        }
    }
}

/// Releases a session's slot when its task ends, however it ends.
struct SlotGuard<'a> {
    state: &'a NodeState,
    peer: AgentId,
    id: u64,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.state.exchange.release(&self.peer, self.id);
    }
}

/// Tells the peer `bye` (best effort, never waiting) when an initiator's session ends without
/// the peer knowing: our own error, a deadline, or the fetch being cancelled (the CLI went
/// away). Otherwise the peer's responder would wait for its deadline and take our next
/// session's opening for a command of the old one. Disarmed when the peer's session has
/// ended anyway (a `bye` either way, an `(error)`) or cannot hear us (link lost, we gave way).
struct ByeOnDrop<'a> {
    state: &'a NodeState,
    peer: AgentId,
    armed: bool,
}

impl Drop for ByeOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(tx) = self.state.links.sender(&self.peer) {
            for env in binary::encode(
                &kith_proto::files::Transmit::Command(Command::Bye),
                Role::Initiator,
            ) {
                let _ = tx.try_send(Outgoing::Envelope(env));
            }
        }
    }
}

/// The session settings on secure links: real peers, no strict alternation, items as large
/// as the store's (and as an envelope can carry).
fn link_config(state: &NodeState) -> SessionConfig {
    let envelope_room = (state.config.limits.max_envelope_data as usize).saturating_sub(1);
    SessionConfig {
        alternate: false,
        max_item: state.config.max_item.min(envelope_room),
        ..SessionConfig::new(&state.config.limits)
    }
}

/// The responder's own command after each of the initiator's turns.
///
/// Nothing is offered to peers yet, so there is never anything to `put`, and a responder has
/// no way to learn what it would want to `get`: it always answers with the harmless
/// `chk <hello>`, which the state table allows in every state after the opening.
#[derive(Debug, Default)]
pub struct NodePolicy;

impl Policy for NodePolicy {
    fn choose(&mut self, _ctx: &TurnContext) -> Command {
        Command::Chk {
            target: Target::Hash(ItemHash::hello()),
            nonce: None,
        }
    }

    fn pip_address(&mut self) -> String {
        "127.0.0.1".to_owned()
    }
}

/// Routes a `ciyam` envelope from `peer` to its session, starting a responder session for a
/// session's first line. Never blocks: a full queue or an envelope for no session is dropped
/// and counted.
pub fn dispatch(state: &Arc<NodeState>, peer: AgentId, envelope: Envelope) {
    let line = match envelope.data.split_first() {
        Some((&KIND_LINE, body)) => std::str::from_utf8(body).ok(),
        _ => None,
    };
    let opener = line.is_some_and(|l| l.starts_with("chk "));
    let bye = line == Some("bye");
    // `ciyam` comes from the peer's initiator, so it is for our responder; `ciyam-r` answers
    // our own session.
    let ours = if envelope.command.as_str() == binary::ENVELOPE_COMMAND {
        Role::Responder
    } else {
        Role::Initiator
    };
    let key = (peer, ours);
    let mut slots = state.exchange.slots();
    if let Some(slot) = slots.get(&key) {
        if slot.tx.try_send(envelope).is_err() {
            state.counters.bump("ciyam_envelopes_dropped");
            slots.remove(&key); // the session cannot go on without it
        } else if bye && ours == Role::Responder {
            // The session is over: the peer may open the next one at once.
            slots.remove(&key);
        }
        return;
    }
    if ours == Role::Initiator {
        state.counters.bump("ciyam_envelopes_dropped");
        return; // an answer for a session of ours that has already ended
    }
    if !opener {
        state.counters.bump("ciyam_envelopes_dropped");
        return;
    }
    if slots.len() >= state.exchange.max {
        state.counters.bump("exchange_sessions_refused");
        if let Some(tx) = state.links.sender(&peer) {
            let refusal = Reply::Error("too many sessions".into());
            for env in binary::encode(
                &kith_proto::files::Transmit::Reply(refusal),
                Role::Responder,
            ) {
                let _ = tx.try_send(Outgoing::Envelope(env));
            }
        }
        return;
    }
    let (tx, rx) = mpsc::channel(SESSION_QUEUE);
    let id = state.exchange.next_id.fetch_add(1, Ordering::Relaxed);
    let _ = tx.try_send(envelope);
    slots.insert(
        key,
        Slot {
            id,
            tx,
            flags: None,
        },
    );
    drop(slots);
    let task_state = Arc::clone(state);
    tokio::spawn(async move {
        if let Err(e) = respond(&task_state, peer, id, rx).await {
            tracing::debug!(peer = %peer, "file-exchange session ended: {e}");
        }
    });
}

/// Sends what the port has to send, in order, on the peer's current link (never dialling:
/// the peer's session ended with the old link).
async fn flush(
    state: &NodeState,
    peer: AgentId,
    port: &mut EnvelopePort,
) -> Result<(), ExchangeError> {
    while let Some(env) = port.poll_transmit() {
        if env.data.len() > state.config.limits.max_envelope_data as usize {
            // The peer's envelope decoder would drop the whole link for it.
            return Err(ExchangeError::Session {
                peer: peer.to_string(),
                reason: format!(
                    "an item of {} bytes exceeds max_envelope_data ({}); raise [limits] max_envelope_data above max_item on both nodes",
                    env.data.len() - 1,
                    state.config.limits.max_envelope_data
                ),
            });
        }
        if env.data.first() == Some(&KIND_ITEM) {
            state.counters.bump("exchange_items_sent");
            state.uploads.sent(peer, env.data.len() as u64 - 1);
        }
        let lost = || ExchangeError::LinkLost(peer.to_string());
        let tx = state.links.sender(&peer).ok_or_else(lost)?;
        tx.send(Outgoing::Envelope(env)).await.map_err(|_| lost())?;
    }
    Ok(())
}

/// [`flush`] for an initiator whose opening `chk` is not answered yet: the envelopes are
/// queued on the link under the session table's lock, so that a collision is decided
/// either before our `chk` leaves (we gave way: it never leaves) or after (the peer sees our
/// `chk` before anything its own session sends).
fn flush_opening(
    state: &NodeState,
    peer: AgentId,
    id: u64,
    port: &mut EnvelopePort,
) -> Result<(), ExchangeError> {
    let slots = state.exchange.slots();
    if slots
        .get(&(peer, Role::Initiator))
        .is_none_or(|s| s.id != id)
    {
        return Err(ExchangeError::GaveWay(peer.to_string()));
    }
    let lost = || ExchangeError::LinkLost(peer.to_string());
    let tx = state.links.sender(&peer).ok_or_else(lost)?;
    while let Some(env) = port.poll_transmit() {
        tx.try_send(Outgoing::Envelope(env)).map_err(|_| lost())?;
    }
    drop(slots);
    Ok(())
}

/// Waits for the next envelope or the session's deadline. `false` when the queue closed
/// (the link went down, or we gave way).
async fn wait_input(port: &mut EnvelopePort, rx: &mut mpsc::Receiver<Envelope>) -> bool {
    let deadline = port.poll_timeout().map(tokio::time::Instant::from_std);
    let sleep = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        env = rx.recv() => match env {
            Some(env) => {
                port.handle_envelope(Instant::now(), &env);
                true
            }
            None => false,
        },
        _ = sleep => {
            port.handle_timeout(Instant::now());
            true
        }
    }
}

/// A responder session, from the first envelope to its end.
async fn respond(
    state: &Arc<NodeState>,
    peer: AgentId,
    id: u64,
    mut rx: mpsc::Receiver<Envelope>,
) -> Result<(), ExchangeError> {
    let _slot = SlotGuard { state, peer, id };
    state.counters.bump("exchange_sessions_served");
    let session = Session::new(Role::Responder, link_config(state), Instant::now());
    let mut port = EnvelopePort::new(session);
    let mut policy = NodePolicy;
    let mut custodian = Custodian::default();
    let local = |e: String| ExchangeError::Store(e);
    let mut upload: Option<crate::sharing::UploadPermit> = None;
    loop {
        flush(state, peer, &mut port).await?;
        // The item that held an upload slot is on the link now.
        drop(upload.take());
        if let Some(event) = port.poll_event() {
            if matches!(event, Event::ReadItem { .. }) {
                // An item to send waits for an upload slot (choking: the peers that give
                // back go first under contention).
                let _ = upload.insert(state.uploads.acquire(peer).await);
            }
            let session = port.session_mut();
            let now = Instant::now();
            let result = match answer_from_store(state, session, event)
                .await
                .map_err(local)?
            {
                None => Ok(()),
                Some(Event::ChooseCommand(ctx)) => {
                    let mut policy = CustodianPolicy {
                        custodian: &mut custodian,
                        inner: &mut policy,
                    };
                    session.answer_command(now, policy.choose(&ctx))
                }
                Some(Event::PeerCommand(Command::Chk {
                    target: Target::Hash(hash),
                    nonce: None,
                })) => {
                    custodian.on_chk(state, hash).await;
                    Ok(())
                }
                Some(Event::PeerCommand(Command::Put { hash })) => {
                    custodian.on_put(state, hash).await;
                    Ok(())
                }
                Some(Event::StoreItem { hash, item }) => {
                    // Content we asked for under custody is encrypted at once and never
                    // stored plain; anything else is stored, and a push request in it may
                    // make us ask for its content.
                    let ok = match custodian.take_into_custody(state, hash, item.clone()).await {
                        Some(custody) => {
                            if let Err(e) = &custody {
                                tracing::info!(peer = %peer, "custody of {hash} failed: {e}");
                            }
                            custody.is_ok()
                        }
                        None => {
                            let ok = store_raw_item(state, item.clone()).await.is_ok();
                            if ok {
                                custodian.on_item_stored(state, &item).await;
                            }
                            ok
                        }
                    };
                    if ok {
                        state.counters.bump("items_received");
                        state.uploads.received(peer, item.len() as u64);
                    }
                    session.stored(now, ok)
                }
                Some(Event::PipAddress) => session.answer_pip(now, &policy.pip_address()),
                Some(Event::Closed(reason)) => {
                    flush(state, peer, &mut port).await?;
                    tracing::debug!(peer = %peer, ?reason, "file-exchange session closed");
                    return Ok(());
                }
                Some(_) => Ok(()),
            };
            result.map_err(|e| ExchangeError::Session {
                peer: peer.to_string(),
                reason: e.to_string(),
            })?;
            port.process(Instant::now());
            continue;
        }
        if port.is_finished() {
            return flush(state, peer, &mut port).await;
        }
        if !wait_input(&mut port, &mut rx).await {
            return Err(ExchangeError::LinkLost(peer.to_string()));
        }
    }
}

/// Fetches the file `hash` from `from`, or from each linked peer in turn until one has it.
pub async fn fetch(
    state: &Arc<NodeState>,
    hash: ContentHash,
    from: Option<AgentId>,
) -> Result<FetchReport, ExchangeError> {
    fetch_with(state, hash, from, Priority::User).await
}

/// [`fetch`] at a given priority.
pub async fn fetch_with(
    state: &Arc<NodeState>,
    hash: ContentHash,
    from: Option<AgentId>,
    priority: Priority,
) -> Result<FetchReport, ExchangeError> {
    state.counters.bump("exchange_fetches");
    let _progress = state.progress.start(hash, priority);
    if let Some(peer) = from {
        return fetch_from(state, peer, hash, priority).await;
    }
    let peers = state.links.linked();
    if peers.is_empty() {
        return Err(ExchangeError::NoPeers);
    }
    let mut failure = None;
    for peer in peers {
        match fetch_from(state, peer, hash, priority).await {
            Ok(report) => return Ok(report),
            Err(ExchangeError::NotFound { .. }) => {}
            Err(e) => {
                tracing::info!(peer = %peer, "fetch of {hash} failed: {e}");
                failure = Some(e);
            }
        }
    }
    Err(failure.unwrap_or_else(|| ExchangeError::NoPeerHas(hash.to_hex())))
}

/// Fetches from one peer, trying again when we gave way to the peer's own session.
async fn fetch_from(
    state: &Arc<NodeState>,
    peer: AgentId,
    hash: ContentHash,
    priority: Priority,
) -> Result<FetchReport, ExchangeError> {
    if peer == state.agent {
        return Err(ExchangeError::Store(
            "that agent is this node itself".to_owned(),
        ));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        net::ensure_link(state, peer).await?;
        match initiate(state, peer, hash, priority).await {
            Err(ExchangeError::GaveWay(_)) if attempt < OPENING_RETRIES => {
                tokio::time::sleep(SLOT_POLL * attempt as u32).await;
                continue;
            }
            Ok(report) => {
                // The peer learns we hold the file now (proof of retention, `crate::retention`).
                crate::retention::announce(state, peer, hash);
                return Ok(report);
            }
            other => return other,
        }
    }
}

/// The walk over a file's tree: which item to ask for next, and what the file turned out to
/// be (every item it entered was verified: hashed on arrival, or read through the store's
/// verifying `get_item`), so recording the file needs no second pass over it.
struct Walk {
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
    fn new(root: ContentHash) -> Walk {
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
    fn enter(&mut self, hash: ContentHash, item: &[u8]) -> Result<(), ExchangeError> {
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
async fn next_missing(
    state: &NodeState,
    walk: &mut Walk,
) -> Result<Option<ContentHash>, ExchangeError> {
    while let Some(hash) = walk.next_hash() {
        let present = with_blobs(state, move |s| match s.blobs().get_item(&hash) {
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
        .await
        .map_err(ExchangeError::Store)?;
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
    state: &Arc<NodeState>,
    peer: AgentId,
    hash: ContentHash,
    priority: Priority,
) -> Result<FetchReport, ExchangeError> {
    let background = matches!(priority, Priority::Background { .. });
    let mut link = InitiatorSession::open_with(state, peer, background).await?;
    let mut walk = Walk::new(hash);
    let mut step = Step::Start;
    let mut asked: Option<ContentHash> = None;
    let mut fetched = 0u64;
    let mut budget = priority.byte_budget();
    while let Some(event) = link.next_event().await? {
        let now = Instant::now();
        let result = match event {
            Event::Ready => {
                let command = match step {
                    Step::Start => {
                        step = Step::Checking;
                        Command::Chk {
                            target: Target::Hash(ItemHash(hash.0)),
                            nonce: None,
                        }
                    }
                    Step::Getting if link.preempted() => {
                        step = Step::Yielded;
                        Command::Bye
                    }
                    Step::Getting => match next_missing(state, &mut walk).await? {
                        Some(item) => {
                            asked = Some(item);
                            Command::Get {
                                hash: ItemHash(item.0),
                            }
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
                let ours = asked == Some(content_hash(got));
                // A list we asked for must parse before anything of it is kept.
                let size = item.len() as u64;
                if size > budget {
                    return Err(link.failed(format!(
                        "the peer sent more than the {} bytes it offered",
                        priority.byte_budget()
                    )));
                }
                budget -= size;
                if ours {
                    if let Err(e) = walk.enter(content_hash(got), &item) {
                        tracing::warn!(peer = %peer, "could not store item {got}: {e}");
                        link.port.session_mut().stored(now, false)
                    } else if link.store_received(got, item).await? {
                        fetched += 1;
                        asked = None;
                        state.progress.advance(hash, size);
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
        link.port.process(Instant::now());
    }
    if step != Step::Done {
        return Err(link.failed("the session ended early".to_owned()));
    }
    let items = walk.visited;
    let record = match walk.into_stored(hash) {
        Some(walked) => with_blobs(state, move |s| s.record_walked(walked, None)).await,
        None => with_blobs(state, move |s| s.record_existing(&hash, None)).await,
    }
    .map_err(ExchangeError::Store)?;
    Ok(FetchReport {
        hash: hash.to_hex(),
        from: peer.to_string(),
        size: record.size,
        kind: record.kind.as_str().to_owned(),
        items,
        items_fetched: fetched,
    })
}

fn describe(reason: &CloseReason) -> String {
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
fn item_bytes(kind: u8, content: &[u8]) -> bytes::Bytes {
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
