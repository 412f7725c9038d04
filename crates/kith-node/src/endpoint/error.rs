//! Why reaching a peer failed: the errors of the endpoint's send API.

use super::dial;
use super::handshake::{HandshakeFailure, HandshakeOutcome};
use std::time::Duration;

/// Why reaching a peer failed (shown to the user as is).
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// No peer with that agent id is recorded.
    #[error("{0} is not a known peer; connect to it first with a ticket (`kith connect TICKET`)")]
    UnknownPeer(String),
    /// The peer is blocked.
    #[error("{0} is blocked; `kith peers --unblock {0}` lifts the block")]
    Blocked(String),
    /// The peer has no recorded address.
    #[error("no address is recorded for {0}; it can still connect to us")]
    NoAddress(String),
    /// Connecting failed or timed out.
    #[error(
        "cannot reach {addr} ({reason}): the node there is not running, or that address cannot \
         be reached from here; ask its owner to start it (`kith up`), or to give it an address \
         you can reach (`kith up --announce HOST:PORT`, then a new ticket). A known peer \
         re-links by itself once it is back"
    )]
    Unreachable {
        /// host:port.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The handshake did not complete.
    #[error("{what}: {outcome}{}", advice(what, outcome))]
    Handshake {
        /// What the dial was for: `first contact failed` or `reconnect failed`.
        what: &'static str,
        /// How the handshake ended.
        outcome: HandshakeOutcome,
    },
    /// The ticket cannot be used.
    #[error(transparent)]
    Ticket(#[from] crate::ticket::TicketError),
    /// The ticket was issued by this node itself.
    #[error("this ticket was issued by this node itself")]
    OwnTicket,
    /// The peer did not answer a ping in time (dial included).
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// Too many pings are waiting for an answer.
    #[error("too many pings outstanding")]
    TooManyPings,
    /// The link closed while the payload was being queued.
    #[error("the link with {0} closed while sending")]
    LinkClosed(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The peer directory failed.
    #[error("peer directory: {0}")]
    Directory(#[from] crate::store::StoreFailure),
}

/// What a user should do after a handshake that a site ended without a word: that is how a
/// site refuses (so strangers learn nothing), and the likely reason depends on the dial.
fn advice(what: &str, outcome: &HandshakeOutcome) -> &'static str {
    if !matches!(
        outcome,
        HandshakeOutcome::Failed(HandshakeFailure::PeerClosed)
    ) {
        return "";
    }
    if what == dial::FIRST_CONTACT {
        "; that is how a node refuses a ticket that is already used, expired, revoked or not \
         its own: ask whoever gave you the ticket for a new one (`kith ticket` on their node) \
         and `kith connect` with that"
    } else {
        "; it no longer accepts this node as a peer (it forgot or blocked it): ask its owner \
         for a new ticket and `kith connect` with that"
    }
}

/// Why [`Endpoint::try_send`] did not queue a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError {
    /// No link with the peer is up.
    #[error("not linked")]
    NotLinked,
    /// The link's queue is full.
    #[error("the link's queue is full")]
    Full,
}
