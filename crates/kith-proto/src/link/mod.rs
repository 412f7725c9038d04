//! The link protocol over an established secure link, as a sans-IO machine.
//!
//! A [`LinkMachine`] owns the [`secure::Link`] (the transport cipher states) that a handshake
//! handed over, and speaks the link protocol on it, both ways:
//!
//! - the plaintext of the `T` frames is a byte stream of Datt [`Envelope`]s (one envelope may
//!   span many frames, one frame may hold several), except that a `T` frame whose plaintext
//!   starts with `{` at an envelope boundary is one JSON object ([`Payload::Json`]): the
//!   MyCHIPs reference sends one JSON object per frame, and a Datt envelope starts with its
//!   version (0 today, so a `0x00` byte). A JSON payload we send always gets a frame of its
//!   own, so the two share a link;
//! - `version` is the first envelope each side sends ([`VersionInfo`]); the peer's first one is
//!   reported once ([`Event::Version`]), later ones are ignored and counted, and a peer that
//!   speaks none of our protocols ends the link ([`LinkEnd::Incompatible`]);
//! - `ping` (8 bytes) is answered with `pong` by the machine itself; a `pong` that answers one
//!   of our recent pings is reported ([`Event::Pong`]), any other is dropped and counted;
//! - `bye` `{"reason": ...}` means "I will send nothing more on this link". The side that says
//!   it first ([`LinkMachine::retire`]) keeps reading until the other's `bye` or its drain
//!   deadline; the other side is told ([`Event::PeerDone`]), sends what it still had queued,
//!   then answers `bye` (reason `ack`). So a retired duplicate, an idle link or a removed peer
//!   closes without losing an envelope in flight;
//! - only the responder closes an idle link ([`Event::IdleTimeout`], after
//!   [`crate::Limits::idle_timeout_ms`] without a frame), as the reference does.
//!
//! Every other envelope is handed up as [`Event::Payload`].
//!
//! ## Key confirmation
//! A responder's link is not yet proof of anything: the `N`+`K` (or `I`, `Q`) it answered may
//! be a replay of someone else's handshake, and the replayer cannot read our `A` nor produce a
//! `T` frame. [`Event::Confirmed`] reports the first `T` frame that decrypted, which only the
//! holder of the initiator's keys can make. A driver registers a responder link (retiring an
//! older one, recording the peer's address) only on `Confirmed`, and acts on the handshake's
//! early data (`Link::take_early_data`, which is not confirmed) only after it. A responder link
//! that is not confirmed within [`LinkSettings::confirm_timeout`] ends as lost. On the
//! initiator, `Confirmed` comes at once: the `A` it read already proved the responder.
//! Sending before `Confirmed` is allowed (only the holder of the keys can read it), so a
//! driver may answer early data on the link itself; acting on it is what must wait. In raw
//! mode nothing is proven: `Confirmed` then only means a first `T` frame arrived.
//!
//! ## Calling contract
//! 1. On `secure::Event::Established(link)`, build [`LinkMachine::new`] (it queues our
//!    `version` at once), then feed the bytes the handshake read past its last frame to
//!    [`handle_bytes`](LinkMachine::handle_bytes).
//! 2. After every call into the machine: drain [`poll_transmit`](LinkMachine::poll_transmit)
//!    and write what it gives, in order; drain [`poll_event`](LinkMachine::poll_event) and act
//!    on each event; re-arm one timer at [`poll_timeout`](LinkMachine::poll_timeout).
//! 3. Bytes read from the socket go to [`handle_bytes`](LinkMachine::handle_bytes), in any
//!    split; end of stream to [`handle_eof`](LinkMachine::handle_eof); the timer to
//!    [`handle_timeout`](LinkMachine::handle_timeout).
//! 4. To send, [`send`](LinkMachine::send) or [`ping`](LinkMachine::ping). The machine holds
//!    at most [`LinkSettings::max_pending_transmit`] bytes (plus one payload and a `bye`):
//!    beyond it `send` and `ping` say [`SendError::Backpressure`] and pongs are not sent
//!    (counted). A driver that drains `poll_transmit` (and writes it) before each `send`
//!    never sees `Backpressure`; one whose socket is full stops taking work until it drains.
//! 5. [`Event::PeerDone`] and [`Event::IdleTimeout`]: stop queueing new work on this link
//!    (unregister it), hand the machine whatever was already queued for it
//!    ([`send`](LinkMachine::send)), then call [`retire`](LinkMachine::retire) with
//!    [`ByeReason::Ack`] or [`ByeReason::Idle`]. To close a link on purpose (duplicate,
//!    shutdown) do the same with [`ByeReason::Duplicate`] or [`ByeReason::Closing`]; from then
//!    on `send` says [`SendError::Closed`], and incoming payloads still arrive until the
//!    peer's `bye`.
//! 6. [`Event::Ended`] is the last event: write what `poll_transmit` still holds (the final
//!    `bye`, after an orderly end), then close the socket. Later calls do nothing.
//!
//! No input makes the machine panic or allocate without bound: frames are capped by
//! [`LinkSettings::max_frame`] from their length prefix, envelopes by
//! [`LinkSettings::max_envelope_data`] from their header, a `version` by
//! [`version::MAX_VERSION_LEN`]; a decrypt, frame or envelope error ends the link as lost.
//! Events are proportional to the bytes fed, so a driver that reads a bounded buffer at a time
//! and drains the events between reads holds a bounded number of them.
//!
//! [`secure::Link`]: crate::secure::Link
//! [`Envelope`]: crate::wire::Envelope

mod inbound;
mod machine;
#[cfg(test)]
mod tests;
pub mod version;

use std::time::Duration;

use bytes::Bytes;

use crate::secure::{FrameError, LinkError};
use crate::wire::{Envelope, EnvelopeError};
use crate::Limits;

pub use machine::LinkMachine;
pub use version::{VersionError, VersionInfo};

/// The link protocol versions this build speaks.
pub const PROTOCOLS: &[u32] = &[1];
/// This build's software name, as sent in `version`.
pub const SOFTWARE: &str = concat!("kith/", env!("CARGO_PKG_VERSION"));
/// The default of [`LinkSettings::max_pending_transmit`]: 256 KiB.
pub const DEFAULT_MAX_PENDING_TRANSMIT: usize = 256 * 1024;
/// Our pings whose pongs a machine still recognises; a newer ping forgets the oldest.
pub const PINGS_REMEMBERED: usize = 16;
/// The capability by which a node says: on an encrypted link with a peer that lists it too,
/// envelope checksums are left zero and not checked, since the AEAD tag of every frame
/// already authenticates each byte (the checksum would cost a SHA-256 pass over every byte
/// sent and received for nothing). It takes effect, both ways, from the peer's `version` on;
/// raw links, and peers that do not list it, keep the seed's checksums.
pub const UNSUMMED_CAPABILITY: &str = "unsummed/1";
/// The commands the machine speaks itself; [`LinkMachine::send`] refuses them.
pub const LINK_COMMANDS: [&str; 4] = ["version", "ping", "pong", "bye"];

/// What a link says about us, and the bounds it keeps. Build with [`LinkSettings::new`] and
/// fill in the node's own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    /// Link protocol versions we speak ([`PROTOCOLS`]).
    pub protocols: Vec<u32>,
    /// Our software name ([`SOFTWARE`]).
    pub software: String,
    /// Where we listen (`host:port`), sent so a peer that knew an older address redials here.
    pub announce: Option<String>,
    /// The peer's address as we see it (`ip:port`), sent back so a node behind NAT learns
    /// its public address.
    pub observed: Option<String>,
    /// Feature flags for later negotiation.
    pub capabilities: Vec<String>,
    /// After our `bye`, how long we read for the peer's ([`Limits::link_drain_ms`]).
    pub drain_timeout: Duration,
    /// How long a responder link may wait for its first authenticated `T` frame
    /// ([`Limits::handshake_timeout_ms`]); see the module docs on key confirmation.
    pub confirm_timeout: Duration,
    /// Largest `data` a received envelope may declare ([`Limits::max_envelope_data`]); we
    /// refuse to send larger ones too.
    pub max_envelope_data: u32,
    /// Largest frame a peer may declare ([`Limits::max_secure_frame`]).
    pub max_frame: u32,
    /// Bytes waiting in [`LinkMachine::poll_transmit`] above which `send` and `ping` say
    /// [`SendError::Backpressure`] and pings are not answered
    /// ([`DEFAULT_MAX_PENDING_TRANSMIT`]).
    pub max_pending_transmit: usize,
}

impl LinkSettings {
    /// Our protocols and software name, bounds from `limits`, no addresses, no capabilities.
    pub fn new(limits: &Limits) -> LinkSettings {
        LinkSettings {
            protocols: PROTOCOLS.to_vec(),
            software: SOFTWARE.to_owned(),
            announce: None,
            observed: None,
            capabilities: Vec::new(),
            drain_timeout: Duration::from_millis(limits.link_drain_ms),
            confirm_timeout: Duration::from_millis(limits.handshake_timeout_ms),
            max_envelope_data: limits.max_envelope_data,
            max_frame: limits.max_secure_frame,
            max_pending_transmit: DEFAULT_MAX_PENDING_TRANSMIT,
        }
    }

    /// The `version` we send.
    pub fn version(&self) -> VersionInfo {
        VersionInfo {
            protocols: self.protocols.clone(),
            software: self.software.clone(),
            announce: self.announce.clone(),
            observed: self.observed.clone(),
            capabilities: self.capabilities.clone(),
        }
    }
}

/// What a link carries for the layers above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A Datt envelope (any command but the link's own `version`, `ping`, `pong`, `bye`).
    Envelope(Envelope),
    /// One JSON object in a `T` frame of its own, as the MyCHIPs reference sends them. What
    /// we send must start with `{`, be one valid JSON value and fit one frame
    /// ([`crate::secure::Link::max_plaintext`]); what we receive has been checked the same way.
    Json(Bytes),
}

impl From<Envelope> for Payload {
    fn from(envelope: Envelope) -> Payload {
        Payload::Envelope(envelope)
    }
}

/// Why we say `bye`. On the wire the reason is the string in the `bye` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByeReason {
    /// This link lost the duplicate tie-break (`"duplicate"`).
    Duplicate,
    /// We are closing on purpose: shutdown, the peer removed (`"closing"`).
    Closing,
    /// The responder's idle close (`"idle"`).
    Idle,
    /// The answer to the peer's `bye` (`"ack"`).
    Ack,
}

impl ByeReason {
    /// The reason string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ByeReason::Duplicate => "duplicate",
            ByeReason::Closing => "closing",
            ByeReason::Idle => "idle",
            ByeReason::Ack => "ack",
        }
    }
}

/// Why a link broke (not an orderly end): worth a redial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkFailure {
    /// A frame the decoder refused (too large, empty, unknown header byte).
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// A frame that is not `T`, or that does not decrypt; or our own encryption failed.
    #[error("transport: {0}")]
    Transport(#[from] LinkError),
    /// An envelope the decoder refused (too large, bad command, bad checksum).
    #[error("bad envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A frame that starts with `{` and is not one JSON value.
    #[error("bad JSON frame: {0}")]
    Json(String),
    /// The connection ended without the peer's `bye`.
    #[error("connection closed without bye")]
    Eof,
    /// (Responder.) No authenticated frame arrived within the confirmation deadline.
    #[error("the initiator sent no authenticated frame within {0:?}")]
    NotConfirmed(Duration),
}

/// How a link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEnd {
    /// Both sides said `bye`; or we did and the drain deadline passed, or the connection
    /// closed after it: nothing to redial.
    Orderly,
    /// The link broke: decrypt, frame or envelope error, or end of stream without `bye`.
    Lost(LinkFailure),
    /// The peer's `version` lists no protocol we speak, or cannot be read.
    Incompatible(VersionError),
}

/// What a [`LinkMachine`] tells its driver. See the module docs for what to do with each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first authenticated `T` frame from the peer arrived (key confirmation). On the
    /// initiator it is the first event, at once.
    Confirmed,
    /// The peer's first `version`, once. Later ones are ignored and counted
    /// ([`LinkStats::versions_ignored`]).
    Version(VersionInfo),
    /// The peer answered our [`ping`](LinkMachine::ping) with this nonce.
    Pong {
        /// The nonce we sent.
        nonce: [u8; 8],
    },
    /// Any other envelope, or a JSON frame.
    Payload(Payload),
    /// The peer said `bye`: stop queueing work on this link, [`send`](LinkMachine::send)
    /// what was already queued, then [`retire`](LinkMachine::retire) with [`ByeReason::Ack`].
    PeerDone,
    /// (Responder.) Nothing arrived for the idle timeout: unregister the link, send what was
    /// queued, then [`retire`](LinkMachine::retire) with [`ByeReason::Idle`].
    IdleTimeout,
    /// The last event: write what [`poll_transmit`](LinkMachine::poll_transmit) still holds,
    /// then close the socket.
    Ended(LinkEnd),
}

/// Why [`LinkMachine::send`] or [`LinkMachine::ping`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// We said `bye`, or the link ended: nothing more goes out on it.
    #[error("link closed for sending")]
    Closed,
    /// More than [`LinkSettings::max_pending_transmit`] bytes wait in `poll_transmit`: drain
    /// and write them first.
    #[error("transmit buffer full: drain poll_transmit first")]
    Backpressure,
    /// An envelope whose data is over [`LinkSettings::max_envelope_data`] (the peer would
    /// drop the link for it), or a JSON payload over one frame.
    #[error("payload of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A JSON payload that does not start with `{` or is not one valid JSON value.
    #[error("JSON payload is not one JSON object")]
    NotJsonObject,
    /// An envelope whose version field starts with the byte `{`: the peer would read it as a
    /// JSON frame.
    #[error("envelope version {0:#010x} starts with '{{' and would read as JSON")]
    EnvelopeVersion(u32),
    /// An envelope with one of the link's own commands (`version`, `ping`, `pong`, `bye`):
    /// use [`LinkMachine::ping`] and [`LinkMachine::retire`].
    #[error("{0} is a link-level command the machine sends itself")]
    LinkCommand(String),
}

/// Counters of one link ([`LinkMachine::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Bytes fed to [`LinkMachine::handle_bytes`].
    pub bytes_in: u64,
    /// Bytes queued for [`LinkMachine::poll_transmit`].
    pub bytes_out: u64,
    /// `T` frames opened.
    pub frames_in: u64,
    /// `T` frames sealed.
    pub frames_out: u64,
    /// Envelopes received, link-level ones included.
    pub envelopes_in: u64,
    /// Envelopes sent, link-level ones included.
    pub envelopes_out: u64,
    /// JSON frames received.
    pub json_in: u64,
    /// JSON frames sent.
    pub json_out: u64,
    /// `version` envelopes after the first, ignored.
    pub versions_ignored: u64,
    /// The peer's pings we answered.
    pub pings_answered: u64,
    /// The peer's pings we did not answer (transmit buffer full, or after our `bye`).
    pub pings_unanswered: u64,
    /// Pongs that answer none of our recent pings, dropped.
    pub pongs_unmatched: u64,
    /// Malformed `ping`/`pong` envelopes (not 8 bytes), ignored.
    pub malformed_ignored: u64,
}
