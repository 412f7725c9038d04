//! Secure links: the MyCHIPs Noise sessions, sans-IO.
//!
//! A secure link is a TCP connection carrying length-prefixed [`frame`]s. It opens with one of
//! three handshakes, all `Noise_*_25519_ChaChaPoly_BLAKE2b` with an empty prologue:
//!
//! | use | frames (initiator → responder, ← answer) | pattern |
//! | --- | --- | --- |
//! | first contact, with a ticket | `I` → ; ← `A` | IK (payload of `I`: a [`TicketRequest`]) |
//! | known peer | `N` → `K` → ; ← `A` | N (payload: agent id as JSON string), then KK |
//! | anonymous query | `Q` → ; ← `A` | NK (payload of `Q`: the query) |
//!
//! then `T` frames both ways ([`Link`]). In raw [`Mode`] (simulations only) the same frames
//! carry plaintext and nothing is authenticated.
//!
//! The machines are values in the manner of quinn-proto: the driver feeds them frames and the
//! time, and drains frames to send, events and the next deadline. They do no I/O and read no
//! clock. Their randomness (the ephemeral keys) comes from an RNG the caller passes to the
//! constructor: a seed is drawn from it and expanded with a ChaCha-based `StdRng`, so a
//! simulation with a seeded RNG is reproducible; a node passes a cryptographic RNG such as
//! `rand::rngs::OsRng`.
//!
//! The responder decides nothing about tickets or peer keys itself: it asks its driver
//! ([`Event::CheckTicket`], [`Event::LookupPeer`]) and waits for the answer
//! ([`Responder::answer_ticket`], [`Responder::answer_peer`]). Whatever goes wrong, it never
//! answers a refused or failed handshake: a refusal is [`Event::Refused`] and a failure is a
//! [`HandshakeError`], and both mean "close the connection without a word".
//!
//! ## Calling contract (both roles)
//! 1. Build the machine ([`Initiator::ik`], [`Initiator::known`], [`Initiator::query`],
//!    [`Responder::new`]); arm a timer for [`poll_timeout`](Initiator::poll_timeout).
//! 2. After every call, drain [`poll_transmit`](Initiator::poll_transmit) (encode each frame
//!    with [`Frame::encode`] and write it) and [`poll_event`](Initiator::poll_event).
//! 3. Feed each decoded frame to `handle_frame(now, frame)`, and call `handle_timeout(now)` when
//!    the timer fires. Answer the responder's questions when their answers are known.
//! 4. `Err(_)` from any call, or [`Event::Refused`], ends the handshake: close the socket and
//!    send nothing more. [`Event::Established`] hands over the [`Link`]: give it to a
//!    [`crate::link::LinkMachine`] (which speaks the link protocol on it) with every byte
//!    already read past the handshake, and drop the handshake machine.
//! 5. (Responder.) Against replayed handshakes: the first time
//!    [`Responder::remote_ephemeral`] is `Some` after a call, ask a [`ReplayCache`] shared by
//!    the listener before draining `poll_transmit`, and close silently on a replay. And treat
//!    the link as unproven until [`crate::link::Event::Confirmed`] (see key confirmation in
//!    [`crate::link`]).
//!
//! The cipher states follow the Noise specification (the initiator sends with the first key
//! of Split()), as snow and every specification-following implementation do, and *not* the
//! swapped order of the npm library the MyCHIPs reference uses.

pub mod frame;
mod handshake;
mod link;
mod noise;
pub mod payload;
mod replay;
#[cfg(test)]
mod tests;

use std::fmt;

use kith_crypto::{AgentId, Identity};
use zeroize::Zeroizing;

pub use frame::{Frame, FrameDecoder, FrameError, FrameKind};
pub use handshake::{Initiator, Responder};
pub use link::{Link, LinkError};
pub use noise::{IK_PARAMS, KK_PARAMS, NK_PARAMS, N_PARAMS};
pub use payload::{Chad, TicketProof, TicketRequest};
pub use replay::ReplayCache;

use crate::Limits;

/// Whether links are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Noise handshakes and encrypted transport: the only mode for real networks.
    #[default]
    Noise,
    /// The same frames carrying plaintext, for simulations. Nothing is authenticated: the
    /// peer's agent id is whatever it claims.
    Raw,
}

/// Which end of the connection a machine or link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that connected and sent the first frame.
    Initiator,
    /// The side that accepted the connection; it alone closes idle links.
    Responder,
}

/// Which handshake opened a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeKind {
    /// IK with a ticket (`I`, `A`).
    Ticket,
    /// N then KK between known peers (`N`, `K`, `A`).
    Known,
    /// NK anonymous query (`Q`, `A`).
    Query,
}

/// Why a responder refused a handshake (for counters and logs; the peer is told nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// `from.agent` in the ticket request is not the static key the IK handshake proved.
    AgentKeyMismatch,
    /// The driver refused the ticket.
    TicketRefused,
    /// The driver does not know the agent declared in `N`.
    UnknownPeer,
    /// The key the driver gave for the declared agent is not that agent's Noise key.
    PeerKeyMismatch,
    /// A query (`Q`) arrived and this responder does not take queries.
    QueriesDisabled,
}

/// Why a handshake failed. Every variant means: close the connection, send nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The handshake did not complete within [`Limits::handshake_timeout_ms`].
    #[error("handshake not complete within its deadline")]
    Timeout,
    /// A frame that is not valid in the current state.
    #[error("unexpected {got:?} frame while {state}")]
    UnexpectedFrame {
        /// The frame's kind.
        got: FrameKind,
        /// What the machine was waiting for.
        state: &'static str,
    },
    /// Noise refused a message (bad key, bad tag, wrong length) or could not build a state.
    #[error("noise: {0}")]
    Noise(String),
    /// A handshake payload that decrypted but does not parse.
    #[error("bad handshake payload: {0}")]
    BadPayload(String),
    /// Our own payload does not fit in one Noise message.
    #[error("handshake payload of {len} bytes does not fit one Noise message (at most {max})")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The most this message can carry.
        max: usize,
    },
    /// An answer for a question the responder is not asking.
    #[error("no question is waiting for this answer")]
    NoQuestion,
    /// The machine has already finished (established, refused or failed).
    #[error("handshake already finished")]
    Finished,
}

impl From<snow::Error> for HandshakeError {
    fn from(e: snow::Error) -> HandshakeError {
        HandshakeError::Noise(e.to_string())
    }
}

/// What a handshake machine tells its driver.
#[derive(Debug)]
pub enum Event {
    /// (Responder, IK.) Is this ticket good? Answer with [`Responder::answer_ticket`]. A
    /// one-time token should be marked used when accepted.
    CheckTicket {
        /// The ticket's token.
        token: String,
        /// The initiator's agent id (`from.agent`), already checked against the proven key.
        from_agent: AgentId,
        /// The initiator's whole claimed address (`from`).
        claimed_from: Chad,
        /// The address the request is for (`to`).
        to: Chad,
        /// The initiator's static key the handshake proved (`None` in raw mode: no proof).
        proven_static_key: Option<[u8; 32]>,
    },
    /// (Responder, N.) Is this agent a known peer, and what is its Noise key? Answer with
    /// [`Responder::answer_peer`].
    LookupPeer {
        /// The agent id declared in `N`.
        agent: AgentId,
    },
    /// The handshake is complete: here is the link. The machine is finished.
    Established(Link),
    /// (Responder.) The handshake is refused: close silently. The machine is finished.
    Refused {
        /// Why, for counters.
        reason: RefuseReason,
    },
}

/// A node's side of the secure-link setup: its keys, the mode, the limits and whether it
/// answers anonymous queries. Build once, share by reference with every handshake.
#[derive(Clone)]
pub struct SecureConfig {
    agent: AgentId,
    noise_secret: Zeroizing<[u8; 32]>,
    mode: Mode,
    limits: Limits,
    accept_queries: bool,
}

impl SecureConfig {
    /// Noise mode, accepting queries, with `identity`'s keys and these limits.
    pub fn new(identity: &Identity, limits: &Limits) -> SecureConfig {
        SecureConfig {
            agent: identity.agent_id(),
            noise_secret: Zeroizing::new(identity.noise_secret()),
            mode: Mode::Noise,
            limits: limits.clone(),
            accept_queries: true,
        }
    }

    /// Sets the mode (default [`Mode::Noise`]).
    pub fn with_mode(mut self, mode: Mode) -> SecureConfig {
        self.mode = mode;
        self
    }

    /// Whether a responder answers `Q` queries (default true); when false a `Q` is refused
    /// with [`RefuseReason::QueriesDisabled`].
    pub fn with_queries(mut self, accept: bool) -> SecureConfig {
        self.accept_queries = accept;
        self
    }

    /// Our agent id.
    pub fn agent(&self) -> AgentId {
        self.agent
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl fmt::Debug for SecureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureConfig")
            .field("agent", &self.agent)
            .field("mode", &self.mode)
            .field("accept_queries", &self.accept_queries)
            .field("noise_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}
