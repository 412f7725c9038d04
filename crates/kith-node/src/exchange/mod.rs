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
//! resumes where the transfer stopped. When every item is present the file is recorded from
//! what the walk verified on the way, and the fetcher tells the peer with a `have` notice
//! (proof of retention: the peer may check later that we keep it).
//!
//! The other end is the responder: its session is created when the first envelope of a
//! session (a `chk` line) arrives from the peer, and answers from the store. Its own command
//! after each of the initiator's turns comes from [`NodePolicy`]: for now always the harmless
//! `chk <hello>` (nothing is offered to peers yet). Both ends run without strict get/put
//! alternation (`alternate: false`, the reference's blockchain sessions), so an initiator may
//! `get` item after item.
//!
//! Every responder session is also a custodian ([`custodian`], as on the peer port):
//! a push request `put` to it makes its next own command `get <content>`, and that content is
//! encrypted at once and never stored plain; a `chk` of a file it holds only in custody makes
//! it `put` the pull request. The owner's side of those sessions is `owner`
//! ([`Exchange::persist`], [`Exchange::retrieve`]).
//!
//! The service is the protocol handler of `ciyam` and `ciyam-r` (see [`crate::protocol`]):
//! envelopes reach their session via a small bounded queue per session. An envelope for no session
//! (late, after `bye`) or beyond the queue is dropped and counted (`ciyam_envelopes_dropped`);
//! a session opened beyond [`crate::limits::NodeLimits::max_exchange_sessions`] is refused with an
//! `(error)` line. When the peer's last link goes down, its sessions end at once; sessions
//! never redial in the middle, since the other end's session died with the link.
//!
//! Counters: `items_received` (items stored from a peer), `exchange_items_sent` (item
//! envelopes sent), `exchange_fetches`, `exchange_sessions_served`,
//! `exchange_sessions_refused`, `ciyam_envelopes_dropped`.

pub mod answer;
pub mod choke;
pub mod custodian;
mod fetch;
mod folder;
mod initiator;
pub mod output;
mod owner;
pub mod progress;
mod pulls;
pub mod rate;
mod responder;
mod retention;
mod serve;
mod tree;
mod turns;
pub mod uploads;
mod window;

pub use fetch::{FetchOrder, OutputSpec, Priority};
use initiator::InitiatorSession;
pub use retention::CheckOutcome;
pub use uploads::{UploadPermit, Uploads};

use crate::clock::mono_now;
use crate::endpoint::{Endpoint, EndpointError, Payload};
use crate::protocol::{LinkEvent, ProtocolHandler};
use crate::store::{Store, StoreFailure};
use kith_crypto::identity::AgentId;
use kith_proto::files::binary::{self, KIND_ITEM, KIND_LINE};
use kith_proto::files::items::{CAPABILITY, ITEMS_COMMAND, ITEMS_REPLY_COMMAND};
use kith_proto::files::{
    Command, ContentHash, EnvelopePort, Policy, Reply, Role, SessionConfig, Target, TurnContext,
};
use kith_proto::wire::Envelope;
use kith_proto::Limits;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// The envelope command of a placement notice: after a fetch, the fetcher tells the peer it
/// fetched from that it now holds the file (data: the file's 32-byte address). The notice
/// belongs to file exchange; what a node does with notices it receives is
/// `crate::retention`'s business.
pub const HAVE_COMMAND: &str = "have";

/// Envelopes queued for one session while its task is busy. The protocol never lets a peer
/// get more than two ahead; the rest is slack.
const SESSION_QUEUE: usize = binary::MAX_QUEUED * 2;

/// A fetch whose session collided with the peer's own (or was dropped before its opening
/// went out) tries again up to this many times, waiting [`COLLISION_BACKOFF`] times the
/// attempt in between.
const OPENING_RETRIES: usize = 12;

/// The unit of the wait between retries after a collision.
const COLLISION_BACKOFF: Duration = Duration::from_millis(50);

/// Why a fetch failed (shown to the user as is).
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Reaching the peer failed.
    #[error(transparent)]
    Net(#[from] EndpointError),
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
    /// The peer sent more than the size it offered (a background fetch's budget).
    #[error("{peer} sent more than the {budget} bytes it offered")]
    OverBudget {
        /// The peer.
        peer: String,
        /// The budget.
        budget: u64,
    },
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
    /// What arrived does not make a file, or the store refused it.
    #[error("{0}")]
    Store(String),
    /// The local store failed.
    #[error(transparent)]
    Local(#[from] StoreFailure),
    /// A store question of the session could not be answered.
    #[error(transparent)]
    Answer(#[from] answer::AnswerError),
    /// The output file could not be written.
    #[error(transparent)]
    Output(#[from] output::OutputError),
    /// The fetch was cancelled (the user pressed Ctrl-C, or the node is stopping).
    #[error("the transfer was cancelled; items already received are kept (run the same command again to resume)")]
    Cancelled,
    /// Nothing arrived from any source for the session deadline.
    #[error("the transfer of {0} stalled: no source sent anything for too long; run the same command again to resume")]
    Stalled(String),
    /// No source left holds an item of the file.
    #[error("no linked peer that holds {file} has its item {item}")]
    Unavailable {
        /// The file.
        file: String,
        /// The item nobody has.
        item: String,
    },
    /// Every source went away or was dropped.
    #[error("every source of {0} went away or misbehaved; items already received are kept (run the same command again to resume)")]
    SourcesLost(String),
    /// A folder whose manifest was refused (it came from the network: a path that would
    /// leave the folder, a limit exceeded, malformed).
    #[error("{0}; nothing was written")]
    BadFolder(String),
}

impl From<kith_store::StoreError> for ExchangeError {
    fn from(e: kith_store::StoreError) -> ExchangeError {
        ExchangeError::Local(e.into())
    }
}

crate::counters! {
    /// What file exchange (and custody, which rides it) counts.
    pub struct ExchangeCounters {
        /// Items stored from a peer over a link.
        items_received,
        /// Item envelopes sent.
        exchange_items_sent,
        /// Fetches started.
        exchange_fetches,
        /// Responder sessions served.
        exchange_sessions_served,
        /// Responder sessions refused (too many).
        exchange_sessions_refused,
        /// `ciyam` envelopes for no session, or beyond a session's queue.
        ciyam_envelopes_dropped,
        /// Custody taken and the copy durable.
        custody_accepted,
        /// Custody asked again for a file already in custody for that owner.
        custody_already,
        /// Custody refused or abandoned (quota, owners, a bad copy).
        custody_refused,
        /// Placement notices (`have`) sent after a fetch.
        retention_notices_sent,
        /// Items that did not hash to their name (the source was dropped from the fetch).
        items_rejected,
        /// Items a peer sent that nobody asked it for (dropped, the source with them).
        items_unsolicited,
        /// `items`/`items-r` envelopes that did not decode (too large, malformed).
        items_malformed,
        /// Copies of items that came from elsewhere first, or after their request was given
        /// up (no offence).
        items_late,
        /// `items` requests dropped because the peer's queue was full.
        items_requests_dropped,
        /// Sources of a fetch that stalled mid-window (their requests went elsewhere).
        fetch_sources_stalled,
        /// Sources dropped from a fetch for misbehaving or stalling too often.
        fetch_sources_dropped,
    }
}

/// What the file-exchange service needs to know of the node's settings.
#[derive(Debug, Clone)]
pub struct ExchangeSettings {
    /// The sessions' bounds and deadlines.
    pub limits: Limits,
    /// The node's own bounds (sessions at once, custody, upload slots).
    pub node_limits: crate::limits::NodeLimits,
    /// Bytes per store item, type byte included.
    pub max_item: usize,
    /// Wall-clock time (custody records).
    pub clock: crate::clock::SharedClock,
}

/// The file-exchange service: a handle, cheap to clone.
#[derive(Debug, Clone)]
pub struct Exchange {
    inner: Arc<Inner>,
}

/// What the handles share.
#[derive(Debug)]
pub struct Inner {
    endpoint: Endpoint,
    store: Store,
    settings: ExchangeSettings,
    sessions: Sessions,
    /// Fetches in progress, for progress bars.
    pub progress: progress::Transfers,
    /// Upload slots and what each peer gave and took (choking).
    pub uploads: Uploads,
    /// What this service counts.
    pub counters: ExchangeCounters,
    /// Priced serving (the value service's hook), when set.
    gate: std::sync::OnceLock<Arc<dyn ServeGate>>,
    /// Windowed fetches running now, and where their answers go.
    pulls: pulls::Pulls,
    /// The holder's tasks, one per peer that asks for items.
    servers: serve::Servers,
    /// The user's own fetches running now (background replication gives way to them).
    user_fetches: AtomicUsize,
    /// One fetch of a file at a time.
    fetch_locks: fetch::FetchLocks,
}

/// A gate on what this node serves to a peer: items are sent only while the gate allows
/// (the value service: a paid allowance when file items are priced).
pub trait ServeGate: Send + Sync + std::fmt::Debug + 'static {
    /// Whether `peer` may be sent another item now.
    fn may_send(&self, peer: &AgentId) -> bool;
    /// `bytes` of an item were sent to `peer`.
    fn sent(&self, peer: &AgentId, bytes: u64);
    /// Custody of `content` that `payer` asks for (`None`: a stranger on the peer port):
    /// `None` when custody is free here, otherwise the bytes of copy paid for (0: unpaid,
    /// refused).
    fn custody_allowance(&self, payer: Option<&AgentId>, content: &ContentHash) -> Option<u64> {
        let _ = (payer, content);
        None
    }
    /// A custody `payer` paid for was taken: its allowance is used up.
    fn custody_taken(&self, payer: &AgentId, content: &ContentHash) {
        let _ = (payer, content);
    }
}

impl std::ops::Deref for Exchange {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// The sessions with peers, one slot per peer at most.
#[derive(Debug)]
struct Sessions {
    /// One slot per peer and direction: a session we initiate and one the peer initiates can
    /// run at once, their envelopes told apart by command (`ciyam` / `ciyam-r`).
    slots: Mutex<HashMap<(AgentId, Role), Slot>>,
    next_id: AtomicU64,
    max: usize,
    /// Wakes fetches waiting for a peer's slot when a session ends.
    freed: Notify,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    tx: mpsc::Sender<Envelope>,
    /// Ours only (initiator sessions); responder sessions have none.
    flags: Option<Arc<SlotFlags>>,
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
}

impl Exchange {
    /// Puts serving behind `gate` (once; later calls do nothing).
    pub fn set_gate(&self, gate: Arc<dyn ServeGate>) {
        let _ = self.inner.gate.set(gate);
    }

    /// The serving gate, if one is set.
    pub(crate) fn gate(&self) -> Option<&Arc<dyn ServeGate>> {
        self.inner.gate.get()
    }

    /// The service, serving sessions over `endpoint`'s links from `store`.
    pub fn new(endpoint: Endpoint, store: Store, settings: ExchangeSettings) -> Exchange {
        let max = settings.node_limits.max_exchange_sessions;
        let uploads = Uploads::new(&settings.node_limits, settings.node_limits.max_links);
        Exchange {
            inner: Arc::new(Inner {
                endpoint,
                store,
                sessions: Sessions {
                    slots: Mutex::default(),
                    next_id: AtomicU64::new(1),
                    max: max.max(1),
                    freed: Notify::new(),
                },
                settings,
                progress: Default::default(),
                uploads,
                counters: ExchangeCounters::default(),
                gate: std::sync::OnceLock::new(),
                pulls: Default::default(),
                servers: Default::default(),
                user_fetches: AtomicUsize::new(0),
                fetch_locks: Default::default(),
            }),
        }
    }

    /// The node's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The node's endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The sessions' limits.
    pub fn limits(&self) -> &Limits {
        &self.settings.limits
    }

    /// The node's own limits.
    pub fn node_limits(&self) -> &crate::limits::NodeLimits {
        &self.settings.node_limits
    }

    /// Bytes per store item, type byte included.
    pub fn max_item(&self) -> usize {
        self.settings.max_item
    }

    /// Windowed item exchange is on (`fetch_window_bytes` above 0): we serve it and list
    /// its capability.
    pub fn items_enabled(&self) -> bool {
        self.settings.node_limits.fetch_window_bytes > 0
    }

    /// A user's fetch is running: background work gives way.
    fn user_waiting(&self) -> bool {
        self.user_fetches.load(Ordering::Acquire) > 0
    }
}

/// The capabilities the exchange adds to the node's link `version`.
pub fn capabilities(limits: &crate::limits::NodeLimits) -> Vec<String> {
    if limits.fetch_window_bytes > 0 {
        vec![CAPABILITY.to_owned()]
    } else {
        Vec::new()
    }
}

impl Sessions {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<(AgentId, Role), Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link with `peer` is gone: its session (either end) ends now.
    fn link_down(&self, peer: &AgentId) {
        self.slots().retain(|(p, _), _| p != peer);
        self.freed.notify_waiters();
    }

    fn release(&self, peer: &AgentId, id: u64) {
        self.slots().retain(|(p, _), s| !(p == peer && s.id == id));
        self.freed.notify_waiters();
    }

    /// Takes the peer's slot for a session we initiate, waiting up to `wait` while another
    /// session with the peer runs.
    async fn acquire(
        &self,
        peer: AgentId,
        wait: Duration,
        background: bool,
    ) -> Result<(u64, mpsc::Receiver<Envelope>, Arc<SlotFlags>), ExchangeError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the slot is looked at, so a release in between still wakes us.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
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
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(ExchangeError::Busy(peer.to_string()));
            }
        }
    }
}

/// Releases a session's slot when its task ends, however it ends.
struct SlotGuard<'a> {
    ex: &'a Exchange,
    peer: AgentId,
    id: u64,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.ex.sessions.release(&self.peer, self.id);
    }
}

/// Tells the peer `bye` (best effort, never waiting) when an initiator's session ends without
/// the peer knowing: our own error, a deadline, or the fetch being cancelled (the CLI went
/// away). Otherwise the peer's responder would wait for its deadline and take our next
/// session's opening for a command of the old one. Disarmed when the peer's session has
/// ended anyway (a `bye` either way, an `(error)`) or cannot hear us (link lost, we gave way).
struct ByeOnDrop<'a> {
    ex: &'a Exchange,
    peer: AgentId,
    armed: bool,
}

impl Drop for ByeOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for env in binary::encode(
            &kith_proto::files::Transmit::Command(Command::Bye),
            Role::Initiator,
        ) {
            let _ = self.ex.endpoint.try_send(self.peer, env);
        }
    }
}

/// The session settings on secure links: real peers, no strict alternation, items as large
/// as the store's (and as an envelope can carry).
fn link_config(ex: &Exchange) -> SessionConfig {
    let limits = &ex.settings.limits;
    let envelope_room = (limits.max_envelope_data as usize).saturating_sub(1);
    SessionConfig {
        alternate: false,
        max_item: ex.settings.max_item.min(envelope_room),
        ..SessionConfig::new(limits)
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
            target: Target::Hash(ContentHash::hello()),
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
fn dispatch(ex: &Exchange, peer: AgentId, envelope: Envelope) {
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
    let mut slots = ex.sessions.slots();
    if let Some(slot) = slots.get(&key) {
        if slot.tx.try_send(envelope).is_err() {
            ex.counters.ciyam_envelopes_dropped.bump();
            slots.remove(&key); // the session cannot go on without it
        } else if bye && ours == Role::Responder {
            // The session is over: the peer may open the next one at once.
            slots.remove(&key);
        }
        return;
    }
    if ours == Role::Initiator {
        ex.counters.ciyam_envelopes_dropped.bump();
        return; // an answer for a session of ours that has already ended
    }
    if !opener {
        ex.counters.ciyam_envelopes_dropped.bump();
        return;
    }
    if slots.len() >= ex.sessions.max {
        ex.counters.exchange_sessions_refused.bump();
        let refusal = Reply::Error("too many sessions".into());
        for env in binary::encode(
            &kith_proto::files::Transmit::Reply(refusal),
            Role::Responder,
        ) {
            let _ = ex.endpoint.try_send(peer, env);
        }
        return;
    }
    let (tx, rx) = mpsc::channel(SESSION_QUEUE);
    let id = ex.sessions.next_id.fetch_add(1, Ordering::Relaxed);
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
    let task_ex = ex.clone();
    tokio::spawn(async move {
        if let Err(e) = responder::respond(&task_ex, peer, id, rx).await {
            tracing::debug!(peer = %peer, "file-exchange session ended: {e}");
        }
    });
}

impl ProtocolHandler for Exchange {
    fn commands(&self) -> &'static [&'static str] {
        &[
            binary::ENVELOPE_COMMAND,
            binary::REPLY_ENVELOPE_COMMAND,
            ITEMS_COMMAND,
            ITEMS_REPLY_COMMAND,
        ]
    }

    fn on_payload(&self, peer: AgentId, payload: Payload) {
        match payload {
            Payload::Envelope(envelope) => match envelope.command.as_str() {
                ITEMS_COMMAND => serve::dispatch(self, peer, &envelope),
                ITEMS_REPLY_COMMAND => {
                    self.pulls
                        .dispatch(peer, &envelope, self.max_item(), &self.counters)
                }
                _ => dispatch(self, peer, envelope),
            },
            Payload::Json(_) => self.counters.ciyam_envelopes_dropped.bump(),
        }
    }

    fn on_link(&self, event: LinkEvent) {
        if let LinkEvent::Down { peer } = event {
            // The peer's sessions (either end) died with its links.
            self.sessions.link_down(&peer);
            self.pulls.link_down(&peer);
            self.servers.link_down(&peer);
        }
    }
}

/// Sends what the port has to send, in order, on the peer's current link (never dialling:
/// the peer's session ended with the old link).
async fn flush(ex: &Exchange, peer: AgentId, port: &mut EnvelopePort) -> Result<(), ExchangeError> {
    while let Some(env) = port.poll_transmit() {
        let max_envelope_data = ex.settings.limits.max_envelope_data;
        if env.data.len() > max_envelope_data as usize {
            // The peer's envelope decoder would drop the whole link for it.
            return Err(ExchangeError::Session {
                peer: peer.to_string(),
                reason: format!(
                    "an item of {} bytes exceeds max_envelope_data ({}); raise [limits] max_envelope_data above max_item on both nodes",
                    env.data.len() - 1,
                    max_envelope_data
                ),
            });
        }
        if env.data.first() == Some(&KIND_ITEM) {
            ex.counters.exchange_items_sent.bump();
            ex.uploads.sent(peer, env.data.len() as u64 - 1);
        }
        ex.endpoint
            .send_linked(peer, env)
            .await
            .map_err(|_| ExchangeError::LinkLost(peer.to_string()))?;
    }
    Ok(())
}

/// [`flush`] for an initiator whose opening `chk` is not answered yet: the envelopes are
/// queued on the link under the session table's lock, so that a collision is decided
/// either before our `chk` leaves (we gave way: it never leaves) or after (the peer sees our
/// `chk` before anything its own session sends).
fn flush_opening(
    ex: &Exchange,
    peer: AgentId,
    id: u64,
    port: &mut EnvelopePort,
) -> Result<(), ExchangeError> {
    let slots = ex.sessions.slots();
    if slots
        .get(&(peer, Role::Initiator))
        .is_none_or(|s| s.id != id)
    {
        return Err(ExchangeError::GaveWay(peer.to_string()));
    }
    while let Some(env) = port.poll_transmit() {
        ex.endpoint
            .try_send(peer, env)
            .map_err(|_| ExchangeError::LinkLost(peer.to_string()))?;
    }
    drop(slots);
    Ok(())
}

/// Waits for the next envelope or the session's deadline. `false` when the queue closed
/// (the link went down, or we gave way).
async fn wait_input(port: &mut EnvelopePort, rx: &mut mpsc::Receiver<Envelope>) -> bool {
    let deadline = port.poll_timeout().map(tokio::time::Instant::from_std);
    let sleep = crate::clock::sleep_until_opt(deadline);
    tokio::select! {
        env = rx.recv() => match env {
            Some(env) => {
                port.handle_envelope(mono_now(), &env);
                true
            }
            None => false,
        },
        _ = sleep => {
            port.handle_timeout(mono_now());
            true
        }
    }
}
