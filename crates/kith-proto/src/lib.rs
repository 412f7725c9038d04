//! Sans-IO protocol cores of kith.
//!
//! Everything here is a value you feed bytes (and, for state machines, the current time) and
//! drain results from. Nothing in this crate opens a socket, reads the clock, spawns a task or
//! touches a global: the node's tokio driver does the I/O, and tests drive the same code in
//! memory, deterministically.
//!
//! - [`wire`]: byte-level codecs (the Datt envelope today; the secure-link frames, chat frames
//!   and CIYAM text lines join it as their issues land).
//! - [`secure`]: the secure link: frames, the Noise handshakes (IK with a ticket, N+KK for
//!   known peers, NK for queries, raw mode for simulations) and the established link.
//! - [`link`]: the link protocol on an established secure link (`version`, `ping`/`pong`,
//!   `bye` and drain, the responder's idle close, key confirmation), as a machine the node's
//!   link task and kith-sim both drive.
//! - [`files`]: the CIYAM peer-protocol session (file exchange), one machine for both ends,
//!   spoken as text on the peer port or as envelopes on secure links.
//! - [`limits`]: the one struct that bounds every frame, queue, cache and wait.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod files;
pub mod limits;
pub mod link;
pub mod secure;
pub mod wire;

pub use limits::Limits;
