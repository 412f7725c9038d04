//! The chat overlay in the node: one task drives the sans-IO [`kith_chat::Router`], fed by the
//! secure links (`chat` envelopes), the chat port's clients and the control API.
//!
//! **One task owns the router** ([`driver`]): every input arrives on one bounded queue
//! ([`ChatInput`]) and the task carries the router's outputs out in order, which is what the
//! router's calling contract asks. A message the router must keep (`Persist`) is a question:
//! the task commits it to the database and answers (`Router::persisted`) before any later
//! output is acted on, and the router acknowledges it (ACKs the previous hop) or sends the
//! user's own message only on a yes, so nothing is acknowledged before it is durable and a
//! restart restores the queue. A user request that needed a store that failed fails too
//! (`chat send`, `chat invite`; `chat join` when the membership cannot be recorded).
//!
//! **Neighbours.** Each kith node this node has linked with is one neighbour
//! ([`kith_chat::NeighbourKind::Node`], its agent key authenticated by the link); its
//! messages ride the secure link as `chat` envelopes whose payload is the message's JSON.
//! Links are virtually open, and so are these neighbours ([`links`]): when a link closes
//! (idle, or lost) the neighbour sleeps rather than leaves, its routes stand, and the next
//! message for it opens the link again in the background (the driver never waits for a
//! dial); only a node that cannot be reached is given up, and known peers are dialled again
//! while the router keeps copies it has no route for. Each client of the chat port ([`port`])
//! is another neighbour ([`kith_chat::NeighbourKind::Client`], with its address, to which the
//! router charges its rate), framed the reference's way (4-byte big-endian length + JSON, an
//! empty frame is a keep-alive); a client whose id a key derives proves that key in HELLO. A
//! ptpchat router this node keeps dialled (`kith chat peer HOST:PORT`, [`dial`]) is one more
//! ([`kith_chat::NeighbourKind::Router`]), re-dialled with backoff.
//!
//! **What the user sees.** Verified messages (and the user's own, with where they stand:
//! queued, sent, delivered to how many) go to a bounded log in the database
//! (`chat_messages`, [`crate::limits::NodeLimits::chat_log_messages`] rows), read by
//! `kith chat read`; `--follow` long-polls on [`Chat::log_changed`]. A message is logged
//! once, however often it comes. Muted nodes are relayed, not logged. The channels this node
//! is in are kept as the router's records (ids, members, and a closed channel's keys sealed
//! under the node's key) and restored before anything else at start-up, so a restart finds
//! the same channels; so are the people heard of, blocks, mutes, routers to dial and the
//! user's name.

mod connect;
mod dial;
mod driver;
mod links;
mod log;
pub mod port;
mod requests;

pub use driver::run;

use crate::api::{ChatReply, ChatRequest};
use crate::clock::SharedClock;
use crate::endpoint::{Endpoint, Payload};
use crate::protocol::{LinkEvent, ProtocolHandler};
use crate::store::Store;
use bytes::Bytes;
use kith_crypto::identity::AgentId;
use kith_crypto::NodeId;
use kith_proto::wire::Envelope;
use kith_proto::Limits;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};

/// The envelope command of chat messages on secure links.
pub const CHAT_COMMAND: &str = "chat";

/// The envelope for one chat message's JSON.
pub fn chat_envelope(json: Vec<u8>) -> Envelope {
    crate::endpoint::envelope(CHAT_COMMAND, json)
}

crate::counters! {
    /// What the node's side of chat counts (the router's own counters are `chat_*` too).
    pub struct ChatNodeCounters {
        /// Chat-port clients connected.
        chat_clients,
        /// Chat-port clients refused (too many).
        chat_clients_refused,
        /// Chat-port clients over TLS.
        chat_clients_tls,
        /// Chat-port clients over WebSocket.
        chat_clients_websocket,
        /// Chat-port TLS handshakes that failed.
        chat_tls_failed,
        /// Chat-port frames refused (too large, malformed).
        chat_frames_refused,
        /// `chat` envelopes from links dropped (the chat task's queue was full).
        chat_envelopes_dropped,
        /// Messages the router wanted sent that could not be queued.
        chat_transmits_dropped,
        /// Neighbours the router cut off.
        chat_neighbours_cut_off,
        /// Messages the router asked to keep that could not be stored (not acknowledged).
        chat_persist_failed,
        /// CONNECT rendezvous asked by the user.
        chat_connects_requested,
        /// CONNECT rendezvous answered.
        chat_connects_answered,
        /// CONNECT rendezvous that opened a link.
        chat_connects_linked,
        /// CONNECT rendezvous that could not link.
        chat_connects_failed,
        /// CONNECT rendezvous refused (bad address, unbound id, blocked agent).
        chat_connects_refused,
        /// CONNECT rendezvous dropped (too many pending).
        chat_connects_dropped,
        /// CONNECT rendezvous whose key never came.
        chat_connects_expired,
        /// Sleeping links opened again for what chat had to send.
        chat_links_woken,
        /// Sleeping links that could not be opened again (the node was given up).
        chat_wakes_failed,
        /// Messages held for a sleeping link while it opened.
        chat_frames_held,
        /// Messages dropped because a sleeping link's hold was full.
        chat_held_dropped,
        /// Known peers dialled because the router kept copies it had no route for.
        chat_peers_redialled,
        /// Connections opened to ptpchat routers (`kith chat peer`).
        chat_routers_dialled,
        /// Dials to ptpchat routers that failed.
        chat_router_dial_failures,
    }
}

/// What the chat service needs to know of the node.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// The router's and the chat port framing's bounds.
    pub limits: kith_chat::ChatLimits,
    /// The node's own bounds (queues, clients, the message log).
    pub node_limits: crate::limits::NodeLimits,
    /// The link layer's bounds (the largest envelope a link carries, the TLS deadline).
    pub link_limits: Limits,
    /// The name this node gives in chat (`name@GUID`).
    pub name: Option<String>,
    /// The name was given on the command line (`--name`): it beats the one kept by
    /// `kith chat nick`.
    pub name_given: bool,
    /// Join a closed channel as soon as an invitation arrives.
    pub auto_join_invites: bool,
    /// Our secure-link port (CONNECT answers name it).
    pub listen_port: Option<u16>,
    /// TLS for the chat port.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Wall-clock time.
    pub clock: SharedClock,
}

/// Something for the chat task.
#[derive(Debug)]
pub enum ChatInput {
    /// A link with a kith node is up (the address it came from, if known).
    LinkUp(AgentId, Option<IpAddr>),
    /// The last link with a kith node is gone.
    LinkDown(AgentId),
    /// A `chat` envelope's payload from a linked node.
    LinkFrame(AgentId, Bytes),
    /// A client connected to the chat port, or a connection to a ptpchat router this node
    /// dialled (`dialled`); frames for it go to `tx`.
    ClientUp {
        /// Its neighbour number.
        id: u64,
        /// Its address.
        ip: IpAddr,
        /// Framed messages to send it.
        tx: mpsc::Sender<Bytes>,
        /// This node dialled it (`kith chat peer`): it is a router, and we speak first.
        dialled: bool,
    },
    /// A sleeping link could not be opened again: the node is given up for now.
    WakeFailed(AgentId),
    /// Known peers dialled for the router's queue: which could not be reached.
    Redialled(Vec<(AgentId, bool)>),
    /// A chat-port client went away.
    ClientDown(u64),
    /// A frame's JSON from a chat-port client.
    ClientFrame(u64, Bytes),
    /// A keep-alive from a chat-port client.
    ClientKeepAlive(u64),
    /// A user action, answered on `reply`.
    Request(
        ChatRequest,
        oneshot::Sender<Result<ChatReply, ChatRequestError>>,
    ),
}

/// The chat service: a handle on the chat task, cheap to clone.
#[derive(Debug, Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<ChatInput>,
    links: mpsc::UnboundedSender<ChatInput>,
    next_client: AtomicU64,
    log: watch::Sender<i64>,
    router_counters: Mutex<Vec<(&'static str, u64)>>,
    counters: ChatNodeCounters,
    endpoint: Endpoint,
    store: Store,
    settings: ChatSettings,
}

/// The receiving ends of the chat task's queues, for [`run`].
#[derive(Debug)]
pub struct ChatQueues {
    /// Frames, clients and requests (bounded).
    pub inputs: mpsc::Receiver<ChatInput>,
    /// Link up and down, in order (see [`driver::LinkEvents`]).
    pub links: driver::LinkEvents,
}

impl Chat {
    /// A handle and the receiving ends of its queues (for [`run`]).
    pub fn new(endpoint: Endpoint, store: Store, settings: ChatSettings) -> (Chat, ChatQueues) {
        let (tx, inputs) = mpsc::channel(settings.node_limits.chat_input_queue.max(1));
        let (links, link_rx) = mpsc::unbounded_channel();
        let (log, _) = watch::channel(0);
        (
            Chat {
                inner: Arc::new(Inner {
                    tx,
                    links,
                    // Links take numbers from 2^62 up, clients from 1: never equal.
                    next_client: AtomicU64::new(1),
                    log,
                    router_counters: Mutex::default(),
                    counters: ChatNodeCounters::default(),
                    endpoint,
                    store,
                    settings,
                }),
            },
            ChatQueues {
                inputs,
                links: link_rx,
            },
        )
    }

    /// The node side's counters.
    pub fn counters(&self) -> &ChatNodeCounters {
        &self.inner.counters
    }

    /// The router's counters as last published, named `chat_*`.
    pub fn router_counters(&self) -> Vec<(String, u64)> {
        let counters = self
            .inner
            .router_counters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counters
            .iter()
            .map(|(name, value)| (format!("chat_{name}"), *value))
            .collect()
    }

    pub(crate) fn publish(&self, counters: Vec<(&'static str, u64)>) {
        *self
            .inner
            .router_counters
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = counters;
    }

    /// Queues an input without waiting; `false` when the queue is full (the input is dropped:
    /// the router's ACKs and retries cover a lost message).
    pub fn offer(&self, input: ChatInput) -> bool {
        self.inner.tx.try_send(input).is_ok()
    }

    /// Queues an input, waiting for room.
    pub async fn send(&self, input: ChatInput) -> bool {
        self.inner.tx.send(input).await.is_ok()
    }

    /// Reports a background result to the chat task, in order with link events (never
    /// dropped: each comes from a task the chat task started, which it bounds).
    pub(crate) fn report(&self, input: ChatInput) {
        let _ = self.inner.links.send(input);
    }

    /// A fresh neighbour number for a chat-port client.
    pub fn next_client_id(&self) -> u64 {
        self.inner.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs a user action.
    pub async fn request(&self, request: ChatRequest) -> Result<ChatReply, ChatRequestError> {
        let (reply, rx) = oneshot::channel();
        if self
            .inner
            .tx
            .send(ChatInput::Request(request, reply))
            .await
            .is_err()
        {
            return Err(ChatRequestError::Stopped);
        }
        rx.await.unwrap_or(Err(ChatRequestError::Stopped))
    }

    /// Resolves when the message log grows past what the receiver has seen.
    pub fn log_changed(&self) -> watch::Receiver<i64> {
        self.inner.log.subscribe()
    }

    pub(crate) fn logged(&self, seq: i64) {
        self.inner.log.send_replace(seq);
    }

    /// The message log after `after`, at most `limit` rows (of `channel` only, if given).
    pub async fn read(
        &self,
        after: i64,
        channel: Option<String>,
        limit: usize,
    ) -> Result<Vec<kith_store::meta::ChatMessageRow>, crate::store::StoreFailure> {
        self.inner
            .store
            .run(move |s| s.meta().chat_read(after, channel.as_deref(), limit))
            .await
    }

    /// The settings.
    pub fn settings(&self) -> &ChatSettings {
        &self.inner.settings
    }
}

impl ProtocolHandler for Chat {
    fn commands(&self) -> &'static [&'static str] {
        &[CHAT_COMMAND]
    }

    fn on_payload(&self, peer: AgentId, payload: Payload) {
        let Payload::Envelope(envelope) = payload else {
            self.inner.counters.chat_envelopes_dropped.bump();
            return;
        };
        if !self.offer(ChatInput::LinkFrame(peer, envelope.data)) {
            self.inner.counters.chat_envelopes_dropped.bump();
        }
    }

    fn on_link(&self, event: LinkEvent) {
        let input = match event {
            LinkEvent::Up { peer, remote } => ChatInput::LinkUp(peer, Some(remote.ip())),
            LinkEvent::Down { peer } => ChatInput::LinkDown(peer),
        };
        // Unbounded, but at most two events per link, which the admission guard bounds.
        let _ = self.inner.links.send(input);
    }
}

/// Parses a node id in either form (`GUID` or `name@GUID`), or an agent id (whose node id
/// is derived from it).
pub fn parse_node_id(text: &str) -> Result<NodeId, ChatRequestError> {
    let text = text.trim();
    if let Ok(id) = text.parse::<kith_chat::message::ChatId>() {
        return Ok(id.guid);
    }
    if let Ok(agent) = text.parse::<AgentId>() {
        return Ok(agent.node_id());
    }
    Err(ChatRequestError::BadNodeId(text.to_owned()))
}

/// Why a user's chat action failed (the control API answers 400 with this text).
#[derive(Debug, thiserror::Error)]
pub enum ChatRequestError {
    /// The router refused it (no such channel, not a member, too long, ...).
    #[error(transparent)]
    Router(kith_chat::ChatError),
    /// Not a node id.
    #[error("{0:?} is not a node id (a GUID, or name@GUID; see `kith id`)")]
    BadNodeId(String),
    /// A name nobody here goes by.
    #[error("nobody called {0:?} is known here (`kith chat who` lists who is; a node id or an agent id works too)")]
    UnknownName(String),
    /// A name several go by.
    #[error("{name:?} could be any of {ids}: give the node id")]
    AmbiguousName {
        /// The name.
        name: String,
        /// The ids it could be.
        ids: String,
    },
    /// Not a name the user may take.
    #[error("a name is 1 to 32 letters, digits, '-', '_' or '.' (the ptpchat reference programs show only letters and digits)")]
    BadName,
    /// Not `HOST:PORT`.
    #[error("{0:?} is not HOST:PORT")]
    BadAddress(String),
    /// The channel is not one this node is in.
    #[error("this node is not in channel {0:?}: `kith chat join {0}` first")]
    NotInChannel(String),
    /// An attachment's data is not base64.
    #[error("attachment is not base64: {0}")]
    BadAttachment(base64::DecodeError),
    /// The message could not be kept, so it was not sent.
    #[error("the message could not be stored (is the disk full?), so it was not sent")]
    NotStored,
    /// Joining could not be recorded, so the channel was not joined.
    #[error("could not record the membership of {name} (is the disk full?): {source}; not joined")]
    JoinNotRecorded {
        /// The channel.
        name: String,
        /// What the store said.
        source: crate::store::StoreFailure,
    },
    /// Leaving could not be recorded, so the node is still a member.
    #[error("could not record leaving {name} (is the disk full?): {source}; still a member")]
    LeaveNotRecorded {
        /// The channel.
        name: String,
        /// What the store said.
        source: crate::store::StoreFailure,
    },
    /// The store failed.
    #[error("the database failed (is the disk full?): {source}")]
    Store {
        /// What the store said.
        source: crate::store::StoreFailure,
    },
    /// CONNECT needs a secure-link listener to name.
    #[error("this node has no secure-link listener (--listen off): nobody could dial it")]
    NoListener,
    /// Nobody linked knows the node.
    #[error("no route to {0}: no linked node knows it")]
    NoRoute(String),
    /// The chat task has ended.
    #[error("the chat service has stopped")]
    Stopped,
}

impl From<kith_chat::ChatError> for ChatRequestError {
    fn from(e: kith_chat::ChatError) -> Self {
        match e {
            // The next step, named.
            kith_chat::ChatError::NoSuchChannel(name) => ChatRequestError::NotInChannel(name),
            other => ChatRequestError::Router(other),
        }
    }
}
