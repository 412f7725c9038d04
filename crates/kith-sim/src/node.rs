//! The seam between the harness and a node: addresses, connection ids, what a node is told
//! ([`Input`]) and what it asks for ([`Output`]), and the [`SimNode`] trait.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use bytes::Bytes;

/// A node's address on the simulated network (its index, in the order nodes were added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr(pub u32);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sim-{}", self.0)
    }
}

impl FromStr for Addr {
    type Err = std::num::ParseIntError;

    /// Parses the `sim-N` form that [`Display`](fmt::Display) writes.
    fn from_str(s: &str) -> Result<Addr, Self::Err> {
        s.strip_prefix("sim-").unwrap_or(s).parse().map(Addr)
    }
}

/// One simulated stream connection, unique for the whole run (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Why a connection ended, as seen by one end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The other end closed it ([`Output::Close`]), after all it had sent was delivered: the
    /// FIN of a TCP connection.
    PeerClosed,
    /// The harness reset it ([`crate::Sim::reset`] and friends): in-flight bytes are lost.
    Reset,
    /// A partition outlived [`crate::NetConfig::partition_break_after`]: the connection timed
    /// out on both ends; in-flight bytes are lost.
    TimedOut,
}

/// What the harness tells a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Our [`Output::Connect`] with this `tag` succeeded: `conn` is open both ways.
    Connected {
        /// The new connection.
        conn: ConnId,
        /// Who we connected to.
        peer: Addr,
        /// The tag we gave in [`Output::Connect`].
        tag: u64,
    },
    /// Our [`Output::Connect`] with this `tag` failed (no such node, or partitioned for longer
    /// than [`crate::NetConfig::connect_timeout`]).
    ConnectFailed {
        /// Who we tried.
        peer: Addr,
        /// The tag we gave in [`Output::Connect`].
        tag: u64,
    },
    /// Someone connected to us (every node listens).
    Accepted {
        /// The new connection.
        conn: ConnId,
        /// Who connected.
        peer: Addr,
    },
    /// Bytes arrived on a connection, in order (one chunk of the peer's stream; frames may be
    /// split across chunks).
    Data {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: Bytes,
    },
    /// A connection ended. Nothing more arrives on it and sends on it are dropped.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// A datagram arrived (unordered, unreliable channel).
    Datagram {
        /// The sender.
        from: Addr,
        /// The payload.
        bytes: Bytes,
    },
    /// The deadline from [`SimNode::poll_timeout`] has been reached.
    Timeout,
}

/// What a node asks the harness to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a stream connection to `to`; the answer is [`Input::Connected`] or
    /// [`Input::ConnectFailed`] carrying the same `tag`.
    Connect {
        /// The node to connect to.
        to: Addr,
        /// Ours to pick; echoed back.
        tag: u64,
    },
    /// Write bytes on a connection (delivered in order, possibly in several chunks).
    Send {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: Bytes,
    },
    /// Close a connection: the peer sees [`CloseReason::PeerClosed`] after everything sent
    /// before it. The closing end gets no more input for this connection.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Send a datagram (may be lost or reordered per [`crate::LinkConfig`]).
    Datagram {
        /// The receiver.
        to: Addr,
        /// The payload.
        bytes: Bytes,
    },
}

/// A sans-IO node the harness can drive: feed it inputs with the (virtual) time, drain its
/// outputs, and wake it at its deadline.
///
/// The harness calls [`handle`](Self::handle), then drains [`poll_output`](Self::poll_output)
/// until `None`, then reads [`poll_timeout`](Self::poll_timeout) and delivers
/// [`Input::Timeout`] once the virtual clock reaches it. A node must not read the wall clock
/// or any RNG it was not given.
pub trait SimNode {
    /// Handles one input at virtual time `now`.
    fn handle(&mut self, now: Instant, input: Input);
    /// The next thing the node wants done.
    fn poll_output(&mut self) -> Option<Output>;
    /// When the node next wants [`Input::Timeout`], if ever.
    fn poll_timeout(&self) -> Option<Instant>;
}

impl<T: SimNode + ?Sized> SimNode for Box<T> {
    fn handle(&mut self, now: Instant, input: Input) {
        (**self).handle(now, input)
    }
    fn poll_output(&mut self) -> Option<Output> {
        (**self).poll_output()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
}
