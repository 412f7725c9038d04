//! The limits that bound what a peer can make us hold or wait for.
//!
//! The node's invariant is that no input from the network can make it allocate without bound or
//! wait forever. Each crate keeps the bounds it enforces in one struct (this one for the
//! protocol cores and the link layer; `kith_chat::ChatLimits`; the node's own in kith-node),
//! and the node reads all three from the one `[limits]` table of `kith.toml`, so an operator
//! still sees and tunes every bound in one place, and a reviewer can check that a new decoder
//! or queue took its bound from its crate's struct rather than inventing one.

use serde::{Deserialize, Serialize};

/// The bounds of the protocol cores (envelopes, secure-link frames and handshakes, the link
/// protocol, CIYAM sessions) and of the link layer that drives them.
///
/// Deserialised, with the node's and chat's own limits, from the `[limits]` table of
/// `kith.toml`; a missing key keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest `data` a received Datt envelope may declare, in bytes. Checked against the
    /// header before any buffer is grown. The default leaves room for a full 1,000,000-byte
    /// store item plus a small header of its own.
    pub max_envelope_data: u32,
    /// Largest secure-link frame a peer may declare, in bytes, counting the header byte but not
    /// the 4-byte length prefix. Checked against the prefix before anything is buffered. The
    /// default, 65,536, is the most a frame can need (one header byte plus the largest Noise
    /// message, 65,535 bytes); a larger value is treated as 65,536.
    pub max_secure_frame: u32,
    /// How long a secure-link handshake may take in total, from the first byte (or the
    /// connect) to the established link, in milliseconds; default 10,000 (10 s). Counted from
    /// the start however slowly the peer drips its bytes, and while our own driver is looking up
    /// a ticket or a key.
    pub handshake_timeout_ms: u64,
    /// Handshake ephemeral keys a responder remembers (for a day) so that a captured
    /// handshake replayed to it is dropped before it answers; default 100,000 (about 6 MB at
    /// most). 0 turns the cache off; key confirmation still keeps a replay from counting.
    pub handshake_replay_entries: usize,
    /// How long an established secure link may go without receiving a frame before the
    /// responding side closes it, in milliseconds; default 60,000 (60 s, the MyCHIPs reference
    /// value). Only the responder closes idle links.
    pub idle_timeout_ms: u64,
    /// Envelopes queued for one link before senders wait (backpressure).
    pub link_queue_envelopes: usize,
    /// Bytes queued for one link before senders wait (backpressure), whatever the number of
    /// envelopes: what a node holds for a slow peer. A payload larger than this goes alone.
    pub link_queue_bytes: u32,
    /// After saying `bye`, how long a link keeps reading for the peer's `bye`, in ms.
    pub link_drain_ms: u64,
    /// How long a TCP connect to a peer may take, in ms.
    pub connect_timeout_ms: u64,
    /// How long `kith ping` may take in all, dialling the peer included, in ms.
    pub ping_timeout_ms: u64,
    /// Outstanding pings at once, in all.
    pub max_pending_pings: usize,
    /// First delay before re-dialling a lost link, in ms (doubles after each failure).
    pub redial_min_ms: u64,
    /// Longest delay between re-dial attempts, in ms.
    pub redial_max_ms: u64,
    /// Longest CIYAM peer-protocol command line, in characters (the reference's 500). Reply
    /// lines may be somewhat longer (an error quotes the command) and transfer lines are
    /// bounded by the transfer framing itself.
    pub ciyam_max_command_line: usize,
    /// Largest item the CIYAM peer protocol moves, in bytes, type byte included (the
    /// reference's 1,000,000). Checked against a transfer's header before anything is
    /// buffered.
    pub ciyam_max_item: usize,
    /// How long a CIYAM session waits for a command or reply line, in ms (30 s).
    pub ciyam_request_timeout_ms: u64,
    /// How long a CIYAM session waits for the first line of an expected transfer, in ms (25 s).
    pub ciyam_transfer_first_line_timeout_ms: u64,
    /// How long a CIYAM transfer waits for each further chunk or acknowledgement, in ms (20 s).
    pub ciyam_transfer_chunk_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope_data: 2 * 1024 * 1024,
            max_secure_frame: 65_536,
            handshake_timeout_ms: 10_000,
            handshake_replay_entries: 100_000,
            idle_timeout_ms: 60_000,
            link_queue_envelopes: 256,
            link_queue_bytes: 4 * 1024 * 1024,
            link_drain_ms: 5_000,
            connect_timeout_ms: 5_000,
            ping_timeout_ms: 10_000,
            max_pending_pings: 1_024,
            redial_min_ms: 1_000,
            redial_max_ms: 300_000,
            ciyam_max_command_line: 500,
            ciyam_max_item: 1_000_000,
            ciyam_request_timeout_ms: 30_000,
            ciyam_transfer_first_line_timeout_ms: 25_000,
            ciyam_transfer_chunk_timeout_ms: 20_000,
        }
    }
}
