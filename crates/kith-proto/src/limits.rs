//! The limits that bound what a peer can make us hold or wait for.
//!
//! The node's invariant is that no input from the network can make it allocate without bound or
//! wait forever. Every such bound lives in this one struct so that an operator can see (and
//! tune, in `kith.toml` under `[limits]`) all of them in one place, and so that a reviewer can
//! check that a new decoder or queue took its bound from here rather than inventing one.

use serde::{Deserialize, Serialize};

/// Every size, count and deadline limit the protocol cores and the node enforce.
///
/// Deserialised from the `[limits]` table of `kith.toml`; a missing key keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest `data` a received Datt envelope may declare, in bytes. Checked against the
    /// header before any buffer is grown. The default leaves room for a full 1,000,000-byte
    /// store item plus a small header of its own.
    pub max_envelope_data: u32,
    /// Largest file `kith content sign|verify|seal|open` will read, in bytes (the Datt layouts
    /// carry a `u32` length, and the whole content is held in memory to sign it).
    pub max_content_file: u64,
    /// How long a CLI command waits for the local control API to answer, in milliseconds.
    pub control_timeout_ms: u64,
    /// Largest request body the control API accepts, in bytes.
    pub max_control_body: usize,
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
    /// How long an established secure link may go without receiving a frame before the
    /// responding side closes it, in milliseconds; default 60,000 (60 s, the MyCHIPs reference
    /// value). Only the responder closes idle links.
    pub idle_timeout_ms: u64,
    /// Handshakes in progress at once, from all addresses. When full, the oldest pending
    /// handshake is evicted so that one address cannot lock the others out.
    pub max_pending_handshakes: usize,
    /// Handshakes in progress at once from one IP address.
    pub max_pending_handshakes_per_addr: usize,
    /// Established links at once, in all.
    pub max_links: usize,
    /// Established links at once with one IP address.
    pub max_links_per_addr: usize,
    /// New connections accepted from one IP address per minute.
    pub max_connects_per_addr_per_minute: usize,
    /// Failed handshakes from one address within `failure_window_secs` that get it blocked.
    pub max_failures_per_addr: usize,
    /// The window in which failures are counted, in seconds.
    pub failure_window_secs: u64,
    /// How long a failing address stays blocked, in seconds.
    pub block_secs: u64,
    /// Addresses the admission guard remembers at once (rate and failure history); the
    /// least recently seen is forgotten first.
    pub max_tracked_addrs: usize,
    /// Envelopes queued for one link before senders wait (backpressure).
    pub link_queue_envelopes: usize,
    /// After saying `bye`, how long a link keeps reading for the peer's `bye`, in ms.
    pub link_drain_ms: u64,
    /// How long a TCP connect to a peer may take, in ms.
    pub connect_timeout_ms: u64,
    /// How long `kith ping` waits for the pong, in ms.
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
    /// Sessions on the CIYAM peer port at once; more are closed on accept.
    pub max_peer_sessions: usize,
    /// Bytes this node keeps in encrypted custody for other people; 0 refuses custody.
    pub max_custody_bytes: u64,
    /// File-exchange sessions over secure links at once (one per linked peer at most, either
    /// end); a session opened by a peer beyond this is refused with an `(error)` line.
    pub max_exchange_sessions: usize,
    /// How long `kith file get --from` may take as a whole (the control call's deadline), in
    /// ms. Each step of the transfer has the session's own, much shorter, deadlines.
    pub exchange_fetch_timeout_ms: u64,
    /// Owners whose copies of one file a custodian keeps (each has its own copy and pull
    /// request); a further owner's push request is refused. Also bounds the pull requests a
    /// `chk` of that file makes the custodian `put`.
    pub max_custody_owners: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope_data: 2 * 1024 * 1024,
            max_content_file: 256 * 1024 * 1024,
            control_timeout_ms: 10_000,
            max_control_body: 64 * 1024,
            max_secure_frame: 65_536,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_pending_handshakes: 256,
            max_pending_handshakes_per_addr: 8,
            max_links: 10_000,
            max_links_per_addr: 64,
            max_connects_per_addr_per_minute: 60,
            max_failures_per_addr: 5,
            failure_window_secs: 60,
            block_secs: 300,
            max_tracked_addrs: 65_536,
            link_queue_envelopes: 256,
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
            max_peer_sessions: 64,
            max_custody_bytes: 1024 * 1024 * 1024,
            max_exchange_sessions: 64,
            exchange_fetch_timeout_ms: 3_600_000,
            max_custody_owners: 16,
        }
    }
}
