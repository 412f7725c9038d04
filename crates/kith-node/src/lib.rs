//! The kith node runtime: the only crate that knows tokio.
//!
//! It drives the sans-IO cores of `kith-proto` over real sockets, owns the listeners and the
//! timers, and serves the local control API that the CLI uses to talk to a running node.
//! Callers (the `kith` binary) stay synchronous: [`node::run`] builds its own runtime and
//! [`control::ControlClient`] is a blocking client on a std Unix socket.
//!
//! - [`config`]: settings from flags, `kith.toml` and defaults, merged in that order.
//! - [`node`]: `kith up`: open the data dir, serve, shut down cleanly on Ctrl-C/SIGTERM.
//! - [`guard`]: who may connect, and how many handshakes and links each address may hold.
//! - [`ticket`]: connection tickets, in the MyCHIPs JSON form and a one-line form.
//! - [`links`]: one logical link per peer; duplicate links converge; pings; redial backoff.
//! - [`net`]: the secure-link listener, dialling, handshakes and link tasks.
//! - [`tls`]: TLS with the node certificate for the plain-text ports.
//! - [`peer_port`]: the CIYAM text protocol for `kith shell` and plain clients.
//! - [`custodian`]: encrypted custody of other people's files (the custodian's side).
//! - [`exchange`]: the same protocol over secure links: `kith file get --from`.
//! - [`retention`]: proof of retention: placements of our files with peers, and checks.
//! - [`sharing`]: fair replication: offers, the background replicator, choking.
//! - [`retention`]: proof of retention: placements and `chk HASH NONCE` checks.
//! - [`chat`]: the ptpchat overlay: the router's task, the chat port, chat over links.
//! - [`control`]: the JSON-over-HTTP API on the data dir's Unix socket, server and client.
#![deny(missing_docs)]

pub mod chat;
pub mod config;
pub mod control;
pub mod custodian;
pub mod exchange;
pub mod guard;
pub mod links;
pub mod net;
pub mod node;
pub mod peer_port;
pub mod retention;
pub mod sharing;
pub mod ticket;
pub mod tls;

pub use config::{ConfigError, NodeConfig, Overrides};
