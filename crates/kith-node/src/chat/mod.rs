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
//! **Neighbours.** Each linked kith node is one neighbour ([`kith_chat::NeighbourKind::Node`],
//! its agent key authenticated by the link); its messages ride the secure link as `chat`
//! envelopes whose payload is the message's JSON. Each client of the chat port ([`port`]) is
//! another ([`kith_chat::NeighbourKind::Client`], with its address, to which the router
//! charges its rate), framed the reference's way (4-byte big-endian length + JSON, an empty
//! frame is a keep-alive); a client whose id a key derives proves that key in HELLO.
//!
//! **What the user sees.** Verified messages (and the user's own) go to a bounded log in the
//! database (`chat_messages`, [`kith_proto::Limits::chat_log_messages`] rows), read by
//! `kith chat read`; `--follow` long-polls on [`Chat::log_changed`]. Joined channels are
//! recorded and public ones joined again at start-up (a closed channel's key lives only in
//! memory, so after a restart a member needs a new invitation).

mod connect;
mod driver;
pub mod port;

pub use driver::run;

use bytes::Bytes;
use kith_crypto::identity::AgentId;
use kith_crypto::NodeId;
use kith_proto::wire::Envelope;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

/// The envelope command of chat messages on secure links.
pub const CHAT_COMMAND: &str = "chat";

/// The envelope for one chat message's JSON.
pub fn chat_envelope(json: Vec<u8>) -> Envelope {
    crate::net::link::envelope(CHAT_COMMAND, json)
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
    /// A client connected to the chat port; frames for it go to `tx`.
    ClientUp {
        /// Its neighbour number.
        id: u64,
        /// Its address.
        ip: IpAddr,
        /// Framed messages to send it.
        tx: mpsc::Sender<Bytes>,
    },
    /// A chat-port client went away.
    ClientDown(u64),
    /// A frame's JSON from a chat-port client.
    ClientFrame(u64, Bytes),
    /// A keep-alive from a chat-port client.
    ClientKeepAlive(u64),
    /// A user action, answered on `reply`.
    Request(ChatRequest, oneshot::Sender<Result<ChatReply, String>>),
}

/// A user action (from the control API).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum ChatRequest {
    /// Join (or create) a channel.
    Join {
        /// Its name.
        name: String,
        /// Create it closed (invitation only, encrypted).
        closed: bool,
    },
    /// Leave a channel.
    Leave {
        /// Its name.
        name: String,
    },
    /// Say something in a channel.
    Say {
        /// The channel.
        name: String,
        /// The text.
        text: String,
        /// Attachments.
        #[serde(default)]
        attachments: Vec<Attachment>,
    },
    /// A direct message to one node.
    Send {
        /// Its node id (`GUID` or `name@GUID`).
        node_id: String,
        /// The text.
        text: String,
        /// Attachments.
        #[serde(default)]
        attachments: Vec<Attachment>,
    },
    /// Invite a node into a closed channel.
    Invite {
        /// The channel.
        name: String,
        /// The node.
        node_id: String,
    },
    /// Remove a node from a closed channel (the others get a new key).
    Kick {
        /// The channel.
        name: String,
        /// The node.
        node_id: String,
    },
    /// Ask a node known only through others for a direct link (CONNECT rendezvous).
    Connect {
        /// Its node id.
        node_id: String,
    },
    /// The channels this node knows.
    Channels,
    /// Counters and this node's chat id.
    Status,
}

/// An attachment as the control API carries it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    /// MIME type.
    pub mime_type: String,
    /// The bytes, base64 (standard alphabet).
    pub data: String,
}

/// What a [`ChatRequest`] produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatReply {
    /// Done.
    Done,
    /// The channel's id.
    Joined {
        /// Id.
        channel_id: String,
    },
    /// The message's id.
    Sent {
        /// Id.
        msg_id: String,
    },
    /// Known channels.
    Channels(Vec<ChannelInfo>),
    /// The chat side of `kith status`.
    Status {
        /// This node's chat id.
        node_id: String,
        /// Router counters.
        counters: std::collections::BTreeMap<String, u64>,
        /// Routes known.
        routes: usize,
        /// Messages waiting for a route.
        queued: usize,
    },
}

/// A channel as `kith chat channels` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Name.
    pub name: String,
    /// Id.
    pub channel_id: String,
    /// Invitation only, encrypted.
    pub closed: bool,
    /// This node is a member.
    pub joined: bool,
    /// An invitation waits for `kith chat join`.
    pub invited: bool,
    /// Members as this node knows them.
    pub members: Vec<String>,
}

/// The node's handle on the chat task.
#[derive(Debug)]
pub struct Chat {
    tx: mpsc::Sender<ChatInput>,
    links: mpsc::UnboundedSender<ChatInput>,
    next_client: AtomicU64,
    log: watch::Sender<i64>,
    counters: Mutex<Vec<(&'static str, u64)>>,
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
    /// A handle and the receiving ends of its queues; the input queue holds `capacity`.
    pub fn new(capacity: usize) -> (Chat, ChatQueues) {
        let (tx, inputs) = mpsc::channel(capacity.max(1));
        let (links, link_rx) = mpsc::unbounded_channel();
        let (log, _) = watch::channel(0);
        (
            Chat {
                tx,
                links,
                // Links take numbers from 2^62 up, clients from 1: never equal.
                next_client: AtomicU64::new(1),
                log,
                counters: Mutex::default(),
            },
            ChatQueues {
                inputs,
                links: link_rx,
            },
        )
    }

    /// A link with `agent` came up.
    pub fn link_up(&self, agent: AgentId, ip: Option<IpAddr>) {
        let _ = self.links.send(ChatInput::LinkUp(agent, ip));
    }

    /// The last link with `agent` went down.
    pub fn link_down(&self, agent: AgentId) {
        let _ = self.links.send(ChatInput::LinkDown(agent));
    }

    /// The router's counters as last published, named `chat_*`.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        counters
            .iter()
            .map(|(name, value)| (format!("chat_{name}"), *value))
            .collect()
    }

    pub(crate) fn publish(&self, counters: Vec<(&'static str, u64)>) {
        *self.counters.lock().unwrap_or_else(|e| e.into_inner()) = counters;
    }

    /// Queues an input without waiting; `false` when the queue is full (the input is dropped:
    /// the router's ACKs and retries cover a lost message).
    pub fn offer(&self, input: ChatInput) -> bool {
        self.tx.try_send(input).is_ok()
    }

    /// Queues an input, waiting for room.
    pub async fn send(&self, input: ChatInput) -> bool {
        self.tx.send(input).await.is_ok()
    }

    /// A fresh neighbour number for a chat-port client.
    pub fn next_client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs a user action.
    pub async fn request(&self, request: ChatRequest) -> Result<ChatReply, String> {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(ChatInput::Request(request, reply))
            .await
            .is_err()
        {
            return Err("the chat service has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the chat service has stopped".into()))
    }

    /// Resolves when the message log grows past what the receiver has seen.
    pub fn log_changed(&self) -> watch::Receiver<i64> {
        self.log.subscribe()
    }

    pub(crate) fn logged(&self, seq: i64) {
        self.log.send_replace(seq);
    }
}

/// Parses a node id in either form (`GUID` or `name@GUID`).
pub fn parse_node_id(text: &str) -> Result<NodeId, String> {
    text.trim()
        .parse::<kith_chat::message::ChatId>()
        .map(|id| id.guid)
        .map_err(|_| format!("{text:?} is not a node id (a GUID, or name@GUID; see `kith id`)"))
}
