//! File exchange: the CIYAM peer-protocol session, sans-IO.
//!
//! One machine, [`Session`], plays either end ([`Role::Initiator`] connects, the
//! [`Role::Responder`] accepts) and knows nothing of encodings: it takes lines and whole items
//! ([`Input`]) and produces typed commands, replies and items ([`Transmit`]). Two codecs
//! carry it: [`TextPort`] on the peer port (CRLF lines, base64 transfers, see [`text`]) and
//! [`EnvelopePort`] on secure links (one Datt envelope per line or raw item, see [`binary`]).
//!
//! ## The conversation
//! The state table ([`State::allows`]) is the spec's: `tls` only first; `chk` first (after an
//! optional `tls`) and then at any time; `get` in WG/WGP, `put` in WP/WGP; `pip` after the
//! opening `chk`; `bye` always; `?` once (a second is a `bye`). Unknown commands, bad usage and
//! commands out of state are answered `(error)unknown command '<cmd>'`,
//! `(error)invalid command usage '<line>'` and `(error)invalid state for <cmd>`, and end the
//! session. An argument containing `.key` is refused, and outside interactive testing a tag
//! must start with `bc.`.
//!
//! Turn-taking, as it goes on the wire (I = initiator, R = responder):
//!
//! ```text
//! I: chk hello                 first chk, not found: the hello exchange
//! R: (not found)
//! R: put cceeb7…               R's put and the hello item,
//! R: 6:8.b64!01aGVsbG8=
//! I: 6:8.b64!01aGVsbG8=        which I sends straight back (a mismatch ends the session)
//! R: (okay)                    I's turn; state WP
//! I: put cceeb7…  + item       I's command (a put has no reply line) → WG
//! R: get cceeb7…               R's own command (chosen by its Policy)
//! I: 6:8.b64!01aGVsbG8=        I answers it
//! R: (okay)                    I's turn again
//! ```
//!
//! After each of the initiator's commands is answered (`chk`: `(not found)` or a hash; `get`:
//! the item; `put`: nothing; `pip`: one address line), the responder issues its own `chk`,
//! `get`, `put` or `pip`, the initiator answers it, and the responder's `(okay)` returns the
//! turn. The initiator's `get` and `put` move the state (`get` → WP, `put` → WG); the
//! responder's commands are checked against it and leave it alone, so after the initiator's
//! `put` the responder `get`s and after its `get` the responder `put`s. The opening `chk`, if
//! found, is answered with the hash (or nonce answer) and `(okay)`, no own command, state WG.
//! A found `chk` always answers the hash (the reference answers nothing for a found plain hash
//! other than hello's); with a nonce it answers lowercase hex sha256(nonce ‖ item)
//! ([`nonce_answer`]).
//!
//! The seed's `ciyam_client` shows the reply lines and the responder's commands, not the
//! `(okay)` lines, the transfers, or its own automatic answers (the items it sends, its `pip`
//! address line), which is why the seed's sessions look shorter than the wire.
//!
//! ## Calling contract
//! 1. Build a [`Session`] with [`SessionConfig::new`] (or [`SessionConfig::interactive`] for
//!    the test port) and wrap it in a [`TextPort`] or [`EnvelopePort`] (or drive it directly:
//!    feed [`Input`]s matching [`Session::wants`], encode [`Transmit`]s).
//! 2. After every call, drain the port's `poll_transmit` (write in order) and `poll_event`.
//! 3. Answer each question event with its method on `session_mut()`, then call the port's
//!    `process(now)`: [`Event::ResolveTag`] → [`Session::answer_tag`], [`Event::HaveItem`] →
//!    [`Session::answer_have`], [`Event::ReadItem`] → [`Session::supply_item`],
//!    [`Event::StoreItem`] → (store durably, fsync) [`Session::stored`], [`Event::PipAddress`]
//!    → [`Session::answer_pip`], [`Event::ChooseCommand`] → [`Session::answer_command`] (a
//!    [`Policy`] decides), [`Event::StartTls`] → (switch the socket to TLS)
//!    [`Session::tls_started`]. One question is open at a time; the session reads nothing
//!    from the peer until it is answered, so answers may take as long as a database needs.
//! 4. On [`Event::Ready`] (initiator), issue the next command with [`Session::send_command`].
//! 5. Arm a timer for `poll_timeout` and call `handle_timeout(now)` when it fires.
//! 6. After [`Event::Closed`], send what is left and close.
//!
//! Received items are hashed and checked against the hash asked for before
//! [`Event::StoreItem`] is raised: a mismatch ends the session and nothing is stored.

pub mod binary;
mod command;
mod hash;
pub mod items;
pub mod offer;
mod policy;
mod session;
mod state;
#[cfg(test)]
mod tests;
pub mod text;
mod text_port;
mod types;

pub use crate::secure::Role;
pub use binary::EnvelopePort;
pub use command::{Command, CommandKind, ParseError, Reply, Target, HELP_TEXT};
pub use hash::{nonce_answer, ContentHash, ParseHashError, HELLO_ITEM};
pub use policy::{InteractiveTestPolicy, Policy};
pub use session::Session;
pub use state::State;
pub use text_port::{TextPort, MAX_AHEAD};
pub use types::{
    CloseReason, Event, Input, SessionConfig, SessionError, Transmit, TurnContext, Wants,
};
