//! Chat: the actions the control API carries to the chat service, and their replies.

use serde::{Deserialize, Serialize};

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

/// Every chat action.
pub const CHAT_PATH: &str = "/v1/chat";

/// The chat message log.
pub const CHAT_READ_PATH: &str = "/v1/chat/read";

/// The longest a `POST /v1/chat/read` waits for a message (below the control timeout).
pub const MAX_CHAT_WAIT_MS: u64 = 5_000;

/// What `POST /v1/chat/read` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatReadBody {
    /// Only this channel (by name); `None` for every channel and the direct messages.
    pub channel: Option<String>,
    /// Messages after this sequence number (0: from the oldest kept).
    pub after: i64,
    /// At most this many.
    pub limit: usize,
    /// With nothing to return, wait up to this long (capped at [`MAX_CHAT_WAIT_MS`]).
    pub wait_ms: u64,
}
