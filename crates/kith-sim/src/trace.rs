//! The run's fingerprint: every input delivered to every node, hashed in order.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::node::{Addr, CloseReason, Input};

/// One delivered input, kept when recording is on ([`crate::Sim::record_trace`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// Virtual time since the start.
    pub at: Duration,
    /// The node that got it.
    pub node: Addr,
    /// What it got.
    pub input: Input,
}

/// A running SHA-256 over `(time, node, input)` of every delivery, plus an optional log.
#[derive(Default)]
pub struct Trace {
    hasher: Sha256,
    deliveries: u64,
    entries: Option<Vec<TraceEntry>>,
}

impl Trace {
    /// Starts or stops keeping entries (the hash is always kept).
    pub fn set_recording(&mut self, on: bool) {
        match (on, self.entries.is_some()) {
            (true, false) => self.entries = Some(Vec::new()),
            (false, true) => self.entries = None,
            _ => {}
        }
    }

    /// Adds one delivery.
    pub fn record(&mut self, at: Duration, node: Addr, input: &Input) {
        self.deliveries += 1;
        let h = &mut self.hasher;
        h.update(at.as_nanos().to_be_bytes());
        h.update(node.0.to_be_bytes());
        match input {
            Input::Connected { conn, peer, tag } => {
                h.update([1]);
                h.update(conn.0.to_be_bytes());
                h.update(peer.0.to_be_bytes());
                h.update(tag.to_be_bytes());
            }
            Input::ConnectFailed { peer, tag } => {
                h.update([2]);
                h.update(peer.0.to_be_bytes());
                h.update(tag.to_be_bytes());
            }
            Input::Accepted { conn, peer } => {
                h.update([3]);
                h.update(conn.0.to_be_bytes());
                h.update(peer.0.to_be_bytes());
            }
            Input::Data { conn, bytes } => {
                h.update([4]);
                h.update(conn.0.to_be_bytes());
                h.update((bytes.len() as u64).to_be_bytes());
                h.update(bytes);
            }
            Input::Closed { conn, reason } => {
                h.update([5]);
                h.update(conn.0.to_be_bytes());
                h.update([match reason {
                    CloseReason::PeerClosed => 0,
                    CloseReason::Reset => 1,
                    CloseReason::TimedOut => 2,
                }]);
            }
            Input::Datagram { from, bytes } => {
                h.update([6]);
                h.update(from.0.to_be_bytes());
                h.update((bytes.len() as u64).to_be_bytes());
                h.update(bytes);
            }
            Input::Timeout => h.update([7]),
        }
        if let Some(entries) = &mut self.entries {
            entries.push(TraceEntry {
                at,
                node,
                input: input.clone(),
            });
        }
    }

    /// The hash of everything delivered so far.
    pub fn hash(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    /// How many inputs were delivered.
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }

    /// The entries recorded since recording was turned on.
    pub fn entries(&self) -> &[TraceEntry] {
        self.entries.as_deref().unwrap_or(&[])
    }
}
