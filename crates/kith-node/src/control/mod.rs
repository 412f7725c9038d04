//! The local control API: JSON over HTTP/1.1 on `control.sock` in the data dir.
//!
//! Why a Unix socket: only the node's owner can reach it (the socket is mode 0600 inside a
//! 0700 data dir), so no token or password is needed, and nothing listens on the network for
//! it. The request and response types and the routes live in [`crate::api`], once, and both
//! [`server`] and [`client`] use them, so the two ends cannot drift apart. The server holds
//! a [`Services`]: the handles of the node's services, and nothing else. [`accept`] is the
//! socket's accept path: header and body deadlines, the body cap and the connection cap, so
//! that no local program can make the node hold memory or connections without bound.
//!
//! Errors are `{"error": "..."}` with a status code; 504 means a peer (not this node) did not
//! answer in time.

pub mod accept;
pub mod client;
mod files;
pub mod server;

pub use client::{ControlClient, ControlError};

use crate::chat::Chat;
use crate::endpoint::Endpoint;
use crate::exchange::Exchange;
use crate::retention::Retention;
use crate::sharing::Sharing;
use crate::store::Store;
use crate::tally::Tallies;
use std::sync::Arc;

/// What the control API serves from: the node's service handles.
#[derive(Debug, Clone)]
pub struct Services {
    /// Links, tickets, pings.
    pub endpoint: Endpoint,
    /// Files and the database.
    pub store: Store,
    /// File exchange and custody.
    pub exchange: Exchange,
    /// Offers and replication.
    pub sharing: Sharing,
    /// Proof of retention.
    pub retention: Retention,
    /// Chat.
    pub chat: Chat,
    /// Tallies and chits.
    pub tallies: Tallies,
    /// Nodes heard on the LAN.
    pub nearby: crate::nearby::Nearby,
    /// Punching, relaying, short codes.
    pub reach: crate::reach::Reach,
    /// Posts and communities.
    pub posts: crate::posts::Posts,
    /// The node's identity, settings and counters, for `status` and tickets.
    pub node: Arc<dyn NodeInfo>,
    /// What the control API itself counts.
    pub control_counters: Arc<server::ControlCounters>,
}

/// What the control API asks about the node itself.
pub trait NodeInfo: Send + Sync + std::fmt::Debug + 'static {
    /// The status report, given the number of stored files.
    fn status(&self, files: u64) -> crate::api::StatusReport;
    /// Whether the secure-link listener is on (tickets need it).
    fn listens(&self) -> bool;
    /// The web page's full address, token included, when it is on.
    fn web_url(&self) -> Option<String> {
        None
    }
    /// Largest control request body, in bytes.
    fn max_control_body(&self) -> usize;
    /// Wall-clock time.
    fn clock(&self) -> &crate::clock::SharedClock;
}
