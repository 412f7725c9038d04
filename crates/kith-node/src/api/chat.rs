//! Chat: the actions the control API carries to the chat service, and their replies.

use serde::{Deserialize, Serialize};

/// A user action (from the control API).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum ChatRequest {
    /// Join (or create) a channel.
    Join {
        /// Its name, or its id (an id is never taken for a new channel's name).
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
        /// The node: its node id (`GUID` or `name@GUID`), agent id, or name.
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
    /// Sets (or with `None` clears) the user's name, announced in HELLO and kept.
    Nick {
        /// The name.
        name: Option<String>,
    },
    /// Everyone this node has heard of, with presence.
    People,
    /// Blocks (or unblocks) a node: nothing of it is heard; kept across restarts.
    Block {
        /// The node (node id, agent id or name).
        node_id: String,
        /// Block, or lift the block.
        blocked: bool,
    },
    /// Mutes (or unmutes) a node: its messages are relayed, not shown; kept.
    Mute {
        /// The node (node id, agent id or name).
        node_id: String,
        /// Mute, or unmute.
        muted: bool,
    },
    /// Keeps a ptpchat router dialled (`kith chat peer HOST:PORT`), or forgets it; with no
    /// address, lists them.
    Peer {
        /// `HOST:PORT`.
        address: Option<String>,
        /// Forget it instead.
        #[serde(default)]
        remove: bool,
    },
    /// Recent messages of one channel (by name or id) and the direct messages, for a client
    /// that just joined it (the backlog).
    Backlog {
        /// The channel.
        name: String,
        /// At most this many.
        limit: usize,
    },
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
    /// The message's id, and where it stands.
    Sent {
        /// Id.
        msg_id: String,
        /// `sent` (on its way to every recipient) or `queued` (some recipient has no route
        /// yet: it waits, and goes when one appears).
        #[serde(default = "sent")]
        state: String,
        /// Recipients that are to sign a receipt (see `kith chat read`).
        #[serde(default)]
        recipients: usize,
        /// Of those, waiting for a route.
        #[serde(default)]
        queued: usize,
        /// Nobody here has heard of the recipient (no route, no peer, never seen): the
        /// message waits for it, but the id may be wrong.
        #[serde(default)]
        unknown_recipient: bool,
        /// The recipient of a direct message, as `name@GUID`.
        #[serde(default)]
        to: Option<String>,
    },
    /// The user's name now.
    Nick {
        /// Name (`None`: none).
        name: Option<String>,
        /// This node's chat id with it.
        node_id: String,
    },
    /// Everyone heard of.
    People(Vec<PersonInfo>),
    /// The ptpchat routers kept dialled.
    Peers(Vec<String>),
    /// A channel's recent messages.
    Backlog(Vec<kith_store::meta::ChatMessageRow>),
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
        /// The user's messages waiting for receipts.
        #[serde(default)]
        awaiting_receipts: usize,
        /// The user's name.
        #[serde(default)]
        name: Option<String>,
    },
}

fn sent() -> String {
    "sent".to_owned()
}

/// Someone the chat has heard of, as `kith chat who` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PersonInfo {
    /// `name@GUID`, or the bare GUID.
    pub node_id: String,
    /// The GUID.
    pub guid: String,
    /// The name it goes by.
    pub name: Option<String>,
    /// Its agent id, when it is a kith node (a key-derived id that this node knows the key of).
    pub agent: Option<String>,
    /// A chat neighbour now (linked, or on the chat port).
    pub linked: bool,
    /// Hops away, when there is a route.
    pub hops: Option<u8>,
    /// When it was last heard from, unix seconds.
    pub last_seen: Option<i64>,
    /// Blocked by the user.
    pub blocked: bool,
    /// Muted by the user.
    pub muted: bool,
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
