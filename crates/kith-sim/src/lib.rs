//! kith-sim: a deterministic, in-memory harness for kith's sans-IO protocol cores.
//!
//! Any number of nodes implementing [`SimNode`] talk over a simulated network on a virtual
//! clock. Nothing here uses tokio, sockets or the wall clock; all randomness comes from one
//! seed, so the same seed and the same calls give the same run, byte for byte
//! ([`Sim::trace_hash`]).
//!
//! - [`EventQueue`]: the discrete-event scheduler, `(time, sequence)` ordered.
//! - [`Sim`]: nodes, network and clock; [`Sim::step`], [`Sim::run_until`],
//!   [`Sim::run_until_idle`]; faults ([`Sim::partition`], [`Sim::heal`], [`Sim::reset`]).
//! - [`SimNode`], [`Input`], [`Output`]: the seam a protocol core plugs into.
//! - [`LinkConfig`], [`NetConfig`]: latency, jitter, bandwidth, datagram loss and reordering,
//!   partition and connect timeouts.
//! - [`secure::SecureSimNode`]: a node running kith's secure-link handshakes and links.
//!
//! ## The network model
//! A connection is a pair of ordered byte streams, as TCP gives. Writes are cut into chunks of
//! at most [`LinkConfig::mss`] bytes; each chunk takes the link's latency plus jitter (and its
//! transmission time when a bandwidth is set), but never overtakes the chunk before it, so a
//! stream is never reordered and never loses bytes while the connection lives. Stream faults
//! are whole-connection faults: a reset ([`CloseReason::Reset`]), or a partition, which stalls
//! delivery and, if it lasts longer than [`NetConfig::partition_break_after`], breaks the
//! connection on both ends ([`CloseReason::TimedOut`]); a shorter partition delays the stalled
//! bytes until one latency after the heal. Closing ([`Output::Close`]) is a full close: the
//! peer sees [`CloseReason::PeerClosed`] after all bytes sent before it.
//!
//! Datagrams ([`Output::Datagram`]) are a separate, unordered, unreliable channel: each is
//! dropped with probability [`LinkConfig::loss`], delayed by [`LinkConfig::reorder_delay`]
//! with probability [`LinkConfig::reorder`] (so later ones overtake it), and dropped if a
//! partition stands when it arrives. Loss and reordering never apply to streams.
//!
//! ## Plugging in a protocol core
//! Wrap the core in a type implementing [`SimNode`]: translate [`Input`]s into the core's
//! inputs (bytes on a connection into its decoder, [`Input::Timeout`] into its
//! `handle_timeout`), and its outputs into [`Output`]s; report its next deadline from
//! [`SimNode::poll_timeout`]. Give it an RNG from [`Sim::fork_rng`] (or build it with
//! [`Sim::add_node_with`]). Tests then call [`Sim::act`] to make a node do something, run the
//! clock, and inspect nodes with [`Sim::node`]. [`secure::SecureSimNode`] is the worked
//! example, and the base later cores can extend (its inbox takes every envelope that is not a
//! link-level command).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use kith_sim::{Input, Output, Sim, SimNode};
//!
//! /// Echoes every datagram back to its sender.
//! #[derive(Default)]
//! struct Echo { out: Vec<Output>, heard: Vec<Instant> }
//!
//! impl SimNode for Echo {
//!     fn handle(&mut self, now: Instant, input: Input) {
//!         if let Input::Datagram { from, bytes } = input {
//!             self.heard.push(now);
//!             self.out.push(Output::Datagram { to: from, bytes });
//!         }
//!     }
//!     fn poll_output(&mut self) -> Option<Output> { self.out.pop() }
//!     fn poll_timeout(&self) -> Option<Instant> { None }
//! }
//!
//! let mut sim: Sim<Echo> = Sim::new(7);
//! let a = sim.add_node(Echo::default());
//! let b = sim.add_node(Echo::default());
//! sim.act(a, |n, _| n.out.push(Output::Datagram { to: b, bytes: "hi".into() }));
//! sim.run_until(Duration::from_millis(100)); // 20 ms a hop: it bounces 5 times
//! assert_eq!(sim.node(a).heard.len() + sim.node(b).heard.len(), 5);
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod config;
mod net;
mod node;
mod queue;
pub mod secure;
mod sim;
mod stats;
mod trace;

pub use config::{LinkConfig, NetConfig};
pub use node::{Addr, CloseReason, ConnId, Input, Output, SimNode};
pub use queue::EventQueue;
pub use sim::{Sim, SimError, DEFAULT_STEP_LIMIT};
pub use stats::NetStats;
pub use trace::{Trace, TraceEntry};
