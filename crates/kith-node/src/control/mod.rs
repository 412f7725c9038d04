//! The local control API: JSON over HTTP/1.1 on `control.sock` in the data dir.
//!
//! Why a Unix socket: only the node's owner can reach it (the socket is mode 0600 inside a
//! 0700 data dir), so no token or password is needed, and nothing listens on the network for
//! it. The request and response types live here, once, and both [`server`] and [`client`] use
//! them, so the two ends cannot drift apart.
//!
//! Routes (all under `/v1`):
//! - `GET /v1/status` → [`StatusReport`]

pub mod client;
pub mod server;

pub use client::{ControlClient, ControlError};

use serde::{Deserialize, Serialize};

/// The path of the status route.
pub const STATUS_PATH: &str = "/v1/status";

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
    /// Event and refusal counters, by name.
    pub counters: std::collections::BTreeMap<String, u64>,
}

/// The body of every error response: one line for a human.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}
