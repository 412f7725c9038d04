//! The values a [`super::Session`] exchanges with its codec and its driver.

use std::time::Duration;

use bytes::Bytes;

use super::command::{Command, CommandKind, Reply};
use super::hash::ContentHash;
use super::state::State;
use crate::Limits;

/// Settings of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Interactive testing (the reference's test peer port): tags in `chk` need no `bc.`
    /// prefix. Off for real peers.
    pub interactive_test: bool,
    /// Strict get/put alternation (WG/WP), as in the seed. When false (the reference's
    /// blockchain sessions) every state after the opening `chk` is WGP.
    pub alternate: bool,
    /// How long to wait for a line from the peer (a command or a reply); `None` waits forever
    /// (the reference lets local interactive sessions idle).
    pub request_timeout: Option<Duration>,
    /// How long to wait for an expected item to start arriving.
    pub item_timeout: Duration,
    /// Longest command line accepted or sent, in characters.
    pub max_line: usize,
    /// Largest item accepted, in bytes (type byte included).
    pub max_item: usize,
}

impl SessionConfig {
    /// A real-peer configuration from the limits: no interactive testing, strict alternation.
    pub fn new(limits: &Limits) -> SessionConfig {
        SessionConfig {
            interactive_test: false,
            alternate: true,
            request_timeout: Some(Duration::from_millis(limits.ciyam_request_timeout_ms)),
            item_timeout: Duration::from_millis(limits.ciyam_transfer_first_line_timeout_ms),
            max_line: limits.ciyam_max_command_line,
            max_item: limits.ciyam_max_item,
        }
    }

    /// The same, for the interactive test port (tags without `bc.` accepted).
    pub fn interactive(limits: &Limits) -> SessionConfig {
        SessionConfig {
            interactive_test: true,
            ..SessionConfig::new(limits)
        }
    }
}

/// What a codec feeds the session: one decoded unit from the peer.
///
/// Commands and replies arrive as lines because only the session knows, from where it is in
/// the conversation, which one the next line must be (a `pip` answer can be any text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One line, without its line end.
    Line(String),
    /// A whole item (type byte first), reassembled by the codec.
    Item(Bytes),
    /// The item transfer the session offered to skip ([`Wants::Item`] with `skip`) was
    /// skipped: nothing arrived and nothing is needed.
    ItemSkipped,
}

/// What the session asks its codec to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A command line.
    Command(Command),
    /// A reply (for [`Reply::Help`], several lines).
    Reply(Reply),
    /// An item transfer.
    Item {
        /// The item's hash (already checked against `item`).
        hash: ContentHash,
        /// Type byte then content.
        item: Bytes,
    },
}

/// What the session expects from the peer next (what the codec should decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wants {
    /// A line of at most `max` characters.
    Line {
        /// Longest acceptable line.
        max: usize,
    },
    /// An item transfer for `hash`.
    Item {
        /// The item the peer is sending.
        hash: ContentHash,
        /// True when we already hold it: a codec that can (the text port's `(okay skip)`)
        /// should decline the transfer and feed [`Input::ItemSkipped`].
        skip: bool,
        /// Largest acceptable item.
        max: usize,
    },
    /// Nothing from the peer: the session waits for its driver, or has ended.
    Nothing,
}

/// What the responder knows when choosing its own command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnContext {
    /// This turn's number in the session, from 1 (the hello exchange is not counted).
    pub turn: u32,
    /// The state: a `get` is allowed in WG/WGP, a `put` in WP/WGP.
    pub state: State,
    /// The initiator's command just answered.
    pub last_peer_command: CommandKind,
    /// The first item the initiator `put` that we hold (what the reference `chk`s).
    pub prior_put: Option<ContentHash>,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// A `bye` (or a second `?`), sent by the peer (`by_peer`) or by us.
    Bye {
        /// Who said it.
        by_peer: bool,
    },
    /// The peer sent `(error)<text>`.
    PeerError(String),
    /// The peer broke the protocol; the text is what we told it (as `(error)<text>`), or for
    /// an initiator facing a bad reply, what went wrong.
    Violation(String),
    /// The peer did not answer in time.
    Timeout,
    /// Our side failed (a store error, an item the driver supplied that does not match).
    Local(String),
}

/// What a session tells or asks its driver. Questions are answered with the named method;
/// until then the session waits (and [`super::Session::wants`] is [`Wants::Nothing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// (Initiator.) Our turn: call [`super::Session::send_command`].
    Ready,
    /// Which hash does this tag name? Answer with [`super::Session::answer_tag`].
    ResolveTag {
        /// The tag.
        tag: String,
    },
    /// Do we hold this item? Answer with [`super::Session::answer_have`].
    HaveItem {
        /// The item.
        hash: ContentHash,
    },
    /// Read this item (type byte first, uncompressed). Answer with
    /// [`super::Session::supply_item`] (`None` when it is gone).
    ReadItem {
        /// The item.
        hash: ContentHash,
    },
    /// Store this item durably (its hash is already verified), then call
    /// [`super::Session::stored`].
    StoreItem {
        /// The item's hash.
        hash: ContentHash,
        /// Type byte then content.
        item: Bytes,
    },
    /// Which peer address do we offer (a random other peer on this listener, or
    /// `127.0.0.1`)? Answer with [`super::Session::answer_pip`].
    PipAddress,
    /// (Responder.) Our own command for this turn: answer with
    /// [`super::Session::answer_command`] (see [`super::Policy`]).
    ChooseCommand(TurnContext),
    /// Start TLS on the connection now, then call [`super::Session::tls_started`]. Write
    /// everything already transmitted first (the initiator's `tls` line goes out in the
    /// clear); the responder's `(okay)` is produced only after `tls_started`, so it goes over
    /// TLS.
    StartTls,
    /// The peer issued this command (for display and logs).
    PeerCommand(Command),
    /// The peer's reply to our command (for display and logs; `chk`, `pip` and `?`).
    Reply {
        /// Our command.
        to: Command,
        /// The reply.
        reply: Reply,
    },
    /// The session is over: drain the transmits, then close the connection.
    Closed(CloseReason),
}

/// A driver's call that does not fit the session's state. The session is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session has ended.
    #[error("session has ended")]
    Closed,
    /// No question is waiting for this answer.
    #[error("no question is waiting for this answer")]
    NoQuestion,
    /// Input arrived while the session waits for its driver or wants something else.
    #[error("session does not want this input now")]
    NotWanted,
    /// It is not our turn to issue a command.
    #[error("not our turn to issue a command")]
    NotOurTurn,
    /// The command is refused (same text as the peer would get, e.g. `invalid state for get`).
    #[error("{0}")]
    Refused(String),
}
