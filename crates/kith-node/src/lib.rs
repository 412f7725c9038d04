//! The kith node runtime: the only crate that knows tokio.
//!
//! It drives the sans-IO cores of `kith-proto` and `kith-chat` over real sockets, owns the
//! listeners and the timers, and serves the local control API that the CLI uses to talk to a
//! running node. Callers (the `kith` binary) stay synchronous: [`node::run`] builds its own
//! runtime and [`control::ControlClient`] is a blocking client on a std Unix socket.
//!
//! Two floors (see ARCHITECTURE.md for the picture):
//! - the **endpoint** ([`endpoint`]): listeners, admission, handshakes, the link registry,
//!   dialling, and one send API; it knows no protocol. [`protocol`] is the seam: the handler
//!   trait and the router that hands each payload to the service that registered its command;
//! - the **services**, each a struct holding an endpoint handle and a store handle:
//!   [`exchange`] (file exchange and custody), [`sharing`] (fair replication), [`retention`]
//!   (proof of retention), [`chat`] (the ptpchat overlay), [`peer_port`] (the CIYAM text
//!   port), [`tally`] (MyCHIPs tallies and chits between users), [`reach`] (hole punching
//!   and relaying through mutual peers).
//!
//! Around them: [`node`] (the composition root: `kith up`), [`control`] (the control API
//! server and client, over a struct of service handles) and [`api`] (its types), [`config`],
//! [`store`] (the store handle), [`clock`], [`counters`], [`ticket`] and [`file_ticket`], [`tls`],
//! and [`web`] (the
//! local web page, another client of the same service handles).
#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![forbid(unsafe_code)]

pub mod api;
pub mod chat;
pub mod clock;
pub mod config;
pub mod control;
pub mod counters;
pub mod dht;
pub mod endpoint;
pub mod exchange;
pub mod file_ticket;
pub mod limits;
pub mod nearby;
pub mod node;
pub mod peer_port;
pub mod posts;
pub mod protocol;
pub mod reach;
pub mod retention;
pub mod sharing;
pub mod store;
pub mod tally;
pub mod ticket;
pub mod tls;
pub mod web;

pub use config::{ConfigError, NodeConfig, Overrides};
