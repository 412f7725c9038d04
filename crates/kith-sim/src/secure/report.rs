//! What a [`super::SecureSimNode`] reports: tickets it issues, its links, its event log and
//! counters.

use std::time::{Duration, Instant};

use kith_crypto::AgentId;
use kith_proto::link::LinkEnd;
use kith_proto::secure::{HandshakeError, HandshakeKind, Mode, RefuseReason, Role};

use crate::node::{Addr, CloseReason, ConnId};

/// A ticket a node issued: who to connect to, where, and the token to present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTicket {
    /// The issuing node's agent (the IK responder key).
    pub agent: AgentId,
    /// The issuing node's address.
    pub addr: Addr,
    /// The token (32 hex digits, as in the reference).
    pub token: String,
}

/// One established link, as seen from one end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The connection carrying it.
    pub conn: ConnId,
    /// The agent at the other end.
    pub peer: AgentId,
    /// Who dialled.
    pub role: Role,
    /// Which handshake opened it.
    pub kind: HandshakeKind,
    /// Noise or raw.
    pub mode: Mode,
    /// The Noise handshake hash (empty in raw mode).
    pub handshake_hash: Vec<u8>,
    /// When it was established.
    pub since: Instant,
}

/// Something that happened on a node, in order, with the virtual time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A handshake finished: the link is up.
    Established {
        /// The connection.
        conn: ConnId,
        /// The other agent.
        peer: AgentId,
        /// Our role.
        role: Role,
        /// Which handshake.
        kind: HandshakeKind,
    },
    /// As responder we refused a handshake, and closed without a word.
    Refused {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: RefuseReason,
    },
    /// A handshake failed on our side (bad frame, Noise error, deadline): closed silently.
    HandshakeFailed {
        /// The connection.
        conn: ConnId,
        /// What went wrong.
        error: HandshakeError,
    },
    /// The connection closed under a handshake in progress (for an initiator whose ticket
    /// was refused: the silent close).
    ClosedInHandshake {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
        /// Bytes we had received on it (0 for a silent refusal).
        bytes_received: usize,
    },
    /// The initiator proved its keys with its first `T` frame (on the initiator: at once), and
    /// the link was registered.
    Confirmed {
        /// The connection.
        conn: ConnId,
        /// The other agent.
        peer: AgentId,
    },
    /// A link lost the duplicate tie-break and said `bye`.
    DuplicateRetired {
        /// The connection.
        conn: ConnId,
        /// The other agent.
        peer: AgentId,
    },
    /// As responder we dropped a handshake whose ephemeral we had seen: a replay.
    ReplayRefused {
        /// The connection.
        conn: ConnId,
    },
    /// A link's machine ended it (the last thing that happens to a link).
    LinkEnded {
        /// The connection.
        conn: ConnId,
        /// The other agent.
        peer: AgentId,
        /// How.
        end: LinkEnd,
    },
    /// The network closed the connection under an established link (end of stream, reset,
    /// partition); a [`NodeEvent::LinkEnded`] follows.
    LinkClosed {
        /// The connection.
        conn: ConnId,
        /// The other agent.
        peer: AgentId,
        /// Why.
        reason: CloseReason,
    },
    /// As responder we started closing (`bye`) a link that received nothing for the idle
    /// timeout.
    IdleClosed {
        /// The connection.
        conn: ConnId,
        /// The other agent.
        peer: AgentId,
    },
    /// A handshake broke on our side (a frame we could not encode) and we closed it.
    LinkFailed {
        /// The connection.
        conn: ConnId,
        /// What went wrong.
        error: String,
    },
    /// A connect failed before any handshake.
    ConnectFailed {
        /// Who we tried.
        to: Addr,
    },
    /// A pong answered our ping.
    Pong {
        /// The other agent.
        peer: AgentId,
        /// Round-trip time on the virtual clock.
        rtt: Duration,
    },
}

/// Counters of a [`super::SecureSimNode`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecureStats {
    /// Links established (either role).
    pub established: u64,
    /// Handshakes we refused as responder.
    pub refused: u64,
    /// Handshakes that failed on our side, deadline excluded.
    pub handshake_failures: u64,
    /// Handshakes that hit their deadline on our side.
    pub handshake_timeouts: u64,
    /// Connections closed by the other side or the network during a handshake.
    pub closed_in_handshake: u64,
    /// Links registered on key confirmation.
    pub confirmed: u64,
    /// Links the peer closed first (its `bye`).
    pub links_closed_by_peer: u64,
    /// Links that ended in order (both `bye`s, or ours and the drain deadline).
    pub links_ended_orderly: u64,
    /// Links lost: reset, partition, end of stream without `bye`, decrypt or decode error,
    /// or a responder link never confirmed.
    pub links_lost: u64,
    /// Links ended because the peer speaks none of our protocol versions.
    pub links_incompatible: u64,
    /// Links that lost the duplicate tie-break and retired.
    pub duplicates_retired: u64,
    /// Handshakes dropped as replays.
    pub replays_refused: u64,
    /// Idle links we closed as responder.
    pub idle_closes: u64,
    /// Connects that failed.
    pub connect_failures: u64,
    /// Redials started.
    pub redials: u64,
    /// Pongs received for our pings.
    pub pongs: u64,
    /// Envelopes received on links (link-level commands excluded).
    pub envelopes_received: u64,
    /// Envelopes handed to a link to send (link-level commands excluded).
    pub envelopes_sent: u64,
    /// Peers' first `version`s.
    pub versions_received: u64,
    /// JSON frames received (dropped: this node speaks only envelopes).
    pub json_received: u64,
    /// Datagrams received (this node ignores them otherwise).
    pub datagrams_received: u64,
}
