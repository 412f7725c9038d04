//! The control API's types: every request and response body, and the routes, in one place
//! that imports no service, so the server, the client and the services cannot drift apart.
//!
//! Why a Unix socket: only the node's owner can reach it (the socket is mode 0600 inside a
//! 0700 data dir), so no token or password is needed, and nothing listens on the network for
//! it (see `crate::control`).
//!
//! Routes (all under `/v1`):
//! - `GET /v1/status` → [`StatusReport`]
//! - `GET /v1/web` → [`WebAddress`] (the web page's address with its token, for `kith web`)
//! - `POST /v1/tickets` [`TicketOrder`] → [`IssuedTicket`]; `GET /v1/tickets` → ticket records;
//!   `POST /v1/tickets/revoke` [`TokenBody`] → [`Changed`]
//! - `POST /v1/connect` [`ConnectBody`] → the new peer's record
//! - `GET /v1/peers` → [`PeerView`]s; `POST /v1/peers/remove` [`AgentBody`] → [`Changed`];
//!   `POST /v1/peers/block` [`BlockBody`] → [`Changed`]; `POST /v1/peers/reference-order`
//!   [`ReferenceOrderBody`] → [`Changed`] (`changed`: the agent is a recorded peer)
//! - `POST /v1/peers/check` [`AgentBody`] → [`CheckReport`]s (proof of
//!   retention: check that peer's placements now)
//! - `POST /v1/ping` [`AgentBody`] → [`PingReport`]
//! - `POST /v1/files/fetch` [`FetchBody`] → [`FetchReport`] (a file from a linked peer, or
//!   by file ticket: linked to its node first)
//! - `POST /v1/files/ticket` [`FileTicketOrder`] → [`IssuedFileTicket`] (a file ticket for a
//!   stored file, with a fresh one-time ticket for this node inside)
//! - `POST /v1/files/share` [`HashBody`] → [`ShareReport`] (offer a stored file
//!   to peers); `POST /v1/files/unshare` [`HashBody`] → [`Changed`]
//! - `GET /v1/files/transfers` → [`TransferProgress`]es (fetches
//!   running now, for progress bars)
//! - `POST /v1/chat` [`ChatRequest`] → [`ChatReply`] (every chat
//!   action: join, leave, say, send, invite, kick, channels, status)
//! - `POST /v1/chat/read` [`ChatReadBody`] → [`kith_store::meta::ChatMessageRow`]s (the
//!   message log after a sequence number, waiting up to `wait_ms` for one to arrive)
//! - `POST /v1/posts` [`PostsRequest`] → [`PostsReply`] (every posts action: post, list,
//!   follow, unfollow, communities, block, mute, authors)
//! - `POST /v1/custody/persist` [`PersistBody`] → [`PersistReport`] (a push
//!   request already stored here, to a custodian)
//! - `POST /v1/custody/retrieve` [`RetrieveBody`] → [`RetrieveReport`] (the pull
//!   request and encrypted copy of a file in custody, stored here; the caller decrypts)

mod chat;
mod files;
mod posts;
pub mod value;

pub use chat::*;
pub use files::*;
pub use posts::*;

use serde::{Deserialize, Serialize};

/// The path of the status route.
pub const STATUS_PATH: &str = "/v1/status";
/// The web page's address, token included (`kith web`).
pub const WEB_PATH: &str = "/v1/web";

/// What `GET /v1/web` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebAddress {
    /// The page's full address, token included; `None` when the node serves no page.
    pub web: Option<String>,
}
/// Issue (POST) or list (GET) tickets.
pub const TICKETS_PATH: &str = "/v1/tickets";
/// Revoke a ticket.
pub const REVOKE_PATH: &str = "/v1/tickets/revoke";
/// First contact with a ticket.
pub const CONNECT_PATH: &str = "/v1/connect";
/// List peers.
pub const PEERS_PATH: &str = "/v1/peers";
/// Nodes heard on the LAN: `GET` → [`crate::nearby::NearbyNode`]s.
pub const NEARBY_PATH: &str = "/v1/peers/nearby";
/// Forget a peer.
pub const REMOVE_PEER_PATH: &str = "/v1/peers/remove";
/// Block or unblock a peer.
pub const BLOCK_PEER_PATH: &str = "/v1/peers/block";
/// Set or clear a peer's reference cipher order (a link option).
pub const REFERENCE_ORDER_PATH: &str = "/v1/peers/reference-order";
/// Check a peer's placements now (proof of retention).
pub const CHECK_PEER_PATH: &str = "/v1/peers/check";
/// Ping a peer.
pub const PING_PATH: &str = "/v1/ping";
/// Fetch a file from a linked peer.
pub const FETCH_PATH: &str = "/v1/files/fetch";
/// A file ticket for a stored file.
pub const FILE_TICKET_PATH: &str = "/v1/files/ticket";

/// Offer a stored file to peers.
pub const SHARE_PATH: &str = "/v1/files/share";
/// Stop offering a file.
pub const UNSHARE_PATH: &str = "/v1/files/unshare";
/// Fetches running now.
pub const TRANSFERS_PATH: &str = "/v1/files/transfers";
/// Cancel the fetch of a file (a [`HashBody`]); answers [`Changed`].
pub const CANCEL_PATH: &str = "/v1/files/cancel";

/// A file named by its address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HashBody {
    /// The file's content address (64 hex).
    pub hash: String,
}

/// Send a push request to a custodian.
pub const PERSIST_PATH: &str = "/v1/custody/persist";
/// Get an encrypted copy back from a custodian.
pub const RETRIEVE_PATH: &str = "/v1/custody/retrieve";

/// What `POST /v1/custody/persist` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistBody {
    /// The push request's hash (64 hex), stored here, as is the content it names.
    pub push_request: String,
    /// The custodian (agent id); `None` picks the first linked peer.
    pub to: Option<String>,
    /// Units paid at most for the custody (a Datt payment request on the shared tally);
    /// `None`: `[value] max_price`.
    #[serde(default)]
    pub max_price: Option<u64>,
    /// Days of custody asked for when the custodian prices it (`None`: 30).
    #[serde(default)]
    pub days: Option<u64>,
}

/// Days of custody a persist asks for when it does not say.
pub const DEFAULT_CUSTODY_DAYS: u64 = 30;

/// What `POST /v1/custody/retrieve` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetrieveBody {
    /// The original content's address (64 hex).
    pub hash: String,
    /// The custodian (agent id); `None` asks the first linked peer.
    pub from: Option<String>,
    /// The owner's public key (33 bytes, standard base64), derived from the password by the
    /// caller: the custodian may keep copies of the file for several owners, and only the
    /// pull request naming this key is taken. `None` takes the first pull request offered.
    #[serde(default)]
    pub owner_key: Option<String>,
    /// Units paid at most for the copy, when the custodian prices what it serves; `None`:
    /// `[value] max_price`.
    #[serde(default)]
    pub max_price: Option<u64>,
}

/// What `kith ticket` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketOrder {
    /// Usable more than once until it expires.
    pub reusable: bool,
    /// Lifetime in seconds.
    pub ttl_secs: u64,
    /// The user the ticket is for, if any.
    pub cuid: Option<String>,
    /// Also make a short code for it (`kith ticket --code`).
    #[serde(default)]
    pub code: bool,
}

/// A freshly issued ticket, in both forms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedTicket {
    /// The MyCHIPs JSON form.
    pub ticket: crate::ticket::Ticket,
    /// The one-line form.
    pub line: String,
    /// Whether it may be used more than once.
    pub reusable: bool,
    /// Why the ticket may not work from everywhere (no public address, behind a NAT with
    /// nobody to broker), for stderr.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The short code that stands for the ticket, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A ticket token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenBody {
    /// 32 hex digits.
    pub token: String,
}

/// A ticket to connect with, in either form.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectBody {
    /// JSON or `kith-ticket:` line.
    pub ticket: String,
}

/// A peer's agent id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentBody {
    /// 43-character agent id.
    pub agent: String,
}

/// Block (true) or unblock (false) an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockBody {
    /// 43-character agent id.
    pub agent: String,
    /// Block or unblock.
    pub blocked: bool,
}

/// Links with a recorded peer use the MyCHIPs reference library's transport cipher order
/// (`on`), or the Noise specification's again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferenceOrderBody {
    /// 43-character agent id.
    pub agent: String,
    /// Use the reference order.
    pub on: bool,
}

/// Whether an operation changed anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Changed {
    /// True when something changed.
    pub changed: bool,
}

/// A peer with its link state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerView {
    /// The key-store record.
    #[serde(flatten)]
    pub record: kith_store::meta::PeerRecord,
    /// `linked`, `blocked` or `idle`.
    pub state: String,
    /// The link, when there is one: `initiator` or `responder`, remote address, seconds up.
    pub link: Option<serde_json::Value>,
    /// Bytes of file items this node received from the peer and sent to it since it started
    /// (what ranks the peer for upload slots).
    pub exchanged: Exchanged,
    /// Proof of retention: files of ours it holds and what checking them showed (`None`
    /// when it holds none).
    #[serde(default)]
    pub retention: Option<kith_store::meta::PeerRetention>,
}

/// Bytes of file items exchanged with a peer since the node started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Exchanged {
    /// Bytes received from the peer.
    pub bytes_received: u64,
    /// Bytes sent to the peer.
    pub bytes_sent: u64,
}

/// A ping's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PingReport {
    /// Who answered.
    pub agent: String,
    /// Round-trip time in milliseconds.
    pub rtt_ms: f64,
}

/// What `GET /v1/status` returns (and `kith status --json` prints).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    /// kith version of the running node.
    pub version: String,
    /// Process id of the node.
    pub pid: u32,
    /// The node's data dir.
    pub data_dir: String,
    /// Agent id (base64url Ed25519 public key).
    pub agent: String,
    /// Chat node id derived from the agent key.
    pub node_id: String,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Metadata backend: `sqlite` or `postgres`.
    pub db: String,
    /// Files in the local store.
    pub files: u64,
    /// Peers with an established link.
    pub links: u64,
    /// Addresses the node listens on, by name (`control` today; the secure-link, peer and chat
    /// listeners join as they land).
    pub listeners: std::collections::BTreeMap<String, String>,
    /// Event and refusal counters, by name: every counter, zero included, since the node
    /// started.
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Other peers' files kept here (fair replication).
    #[serde(default)]
    pub replication: Option<ReplicationStatus>,
}

/// How much of other peers' files this node keeps.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicationStatus {
    /// Bytes of replicas held.
    pub bytes: u64,
    /// The most this node keeps (`max_replica_bytes`; 0 declines every offer).
    pub quota: u64,
    /// Offers waiting to be fetched.
    pub queued: u64,
}

/// The body of every error response: one line for a human.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}
