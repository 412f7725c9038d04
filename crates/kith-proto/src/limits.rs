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
    /// Largest request body the control API accepts, in bytes. A request that declares more
    /// (`Content-Length`) is answered 413 at once, before any of its body is read.
    pub max_control_body: usize,
    /// How long a control connection may take to send a request's headers, in ms; also how
    /// long an idle keep-alive connection is kept. Past it the node closes the connection, so
    /// half-sent requests cannot pile up.
    pub control_header_timeout_ms: u64,
    /// How long a control request may take to send its body once its headers are in, in ms
    /// (answered 408 past it). The handler's own work is not bounded by this: a long-poll
    /// (`chat read --follow`, a fetch) keeps its own deadline.
    pub control_body_timeout_ms: u64,
    /// Control connections open at once. When full, a new connection evicts the oldest one
    /// that has no request in progress; when every one has, the newcomer is answered 503.
    pub max_control_connections: usize,
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
    /// Bytes of replicas this node keeps for peers (files fetched because a peer offered them
    /// with `kith file share`), without its user asking; 0 declines every offer. Modest by
    /// default (256 MiB): a linked peer should not fill the disk unasked. `kith status` shows
    /// what is held against it.
    pub max_replica_bytes: u64,
    /// Offered files waiting to be fetched; offers beyond this are dropped (and offered again
    /// when the peer next links).
    pub max_pending_replications: usize,
    /// Shared files offered to a peer when it links (the most recently shared first).
    pub max_offers_per_link: usize,
    /// Items this node uploads at once across all peers. When more are asked for, peers that
    /// gave this node the most lately go first (choking, as BitTorrent's).
    pub upload_slots: usize,
    /// Under contention every this-many-th free upload slot goes to the peer that has waited
    /// longest, whatever it gave (the optimistic unchoke): nobody is ever stalled for want of
    /// a return.
    pub upload_optimistic_every: usize,
    /// Half-life of what a peer gave, for ranking uploads, in seconds: recent giving counts.
    pub reciprocity_half_life_secs: u64,
    /// How long a background replication waits before trying again after it gave way to a
    /// user's transfer, or failed, in ms.
    pub replication_retry_ms: u64,
    /// How often the node checks that peers still hold the files they fetched from it (proof
    /// of retention: `chk HASH NONCE`), in milliseconds; default 600,000 (10 minutes). Each
    /// placement is checked at most once per interval. 0 turns the background checks off
    /// (`kith peers --check AGENT` still works).
    pub retention_check_interval_ms: u64,
    /// Placements checked per round of the background checks (and per `kith peers --check`),
    /// the longest unchecked first; default 16.
    pub retention_checks_per_round: usize,
    /// Placements (files of ours a peer says it holds) recorded per peer; a peer's notices
    /// beyond that are ignored. Default 10,000.
    pub max_placements_per_peer: u64,
    /// Largest chat-port frame a peer may declare, in bytes (the JSON text, not the 4-byte
    /// length prefix). Checked from the prefix alone, before anything is buffered. Attachments
    /// travel inside frames, so this also bounds a message with its attachments.
    pub chat_max_frame: u32,
    /// TTL a chat message gets when this node originates it (the seed's 32).
    pub chat_default_ttl: u8,
    /// Highest TTL a received chat message may carry; a higher one is refused.
    pub chat_max_ttl: u8,
    /// Longest string field of a chat message (ids, names, versions, timestamps, MIME types),
    /// in bytes. Text, keys, certificates and attachments have their own caps.
    pub chat_max_field: usize,
    /// Most entries in one list of a chat message (CHANNEL members, MESSAGE recipients and
    /// attachments, ROUTING nodes).
    pub chat_max_list: usize,
    /// Longest MESSAGE text, in bytes (after base64 decoding, signature excluded).
    pub chat_max_text: usize,
    /// Largest total of a MESSAGE's attachments, in bytes after base64 decoding.
    pub chat_max_attachment_bytes: usize,
    /// Message ids the flood/duplicate cache remembers at once; the oldest is forgotten first.
    pub chat_seen_entries: usize,
    /// How long a message id stays in the duplicate cache, in ms.
    pub chat_seen_ms: u64,
    /// Destinations the chat routing table holds at once; more are ignored and counted.
    pub chat_max_routes: usize,
    /// Hop count that means "unreachable" in ROUTING (distance-vector infinity, poisoned
    /// reverse); also the longest usable route.
    pub chat_route_infinity: u8,
    /// How long routing changes are batched before a ROUTING update is sent, in ms.
    pub chat_routing_batch_ms: u64,
    /// Interval of the full ROUTING refresh to every neighbour, in ms.
    pub chat_routing_refresh_ms: u64,
    /// A chat neighbour silent (no message, no keep-alive) for this long is dropped, in ms (the
    /// reference's 120 s).
    pub chat_neighbour_idle_ms: u64,
    /// Routed messages waiting for a route (store-and-forward), in all; the oldest is dropped.
    pub chat_max_queued: usize,
    /// How long an undeliverable routed message is kept and retried, in ms (default 7 days).
    pub chat_queue_ms: u64,
    /// Routed messages sent to a next hop and waiting for its ACK, in all.
    pub chat_max_in_flight: usize,
    /// How long a next hop has to ACK a routed message before it is re-routed, in ms.
    pub chat_ack_timeout_ms: u64,
    /// Certificates (node id to key bindings) cached at once.
    pub chat_max_certificates: usize,
    /// Received messages waiting for their sender's certificate, in all.
    pub chat_max_pending_verify: usize,
    /// How long a GETCERTIFICATE may go unanswered before what waits on it is dropped, in ms.
    pub chat_certificate_timeout_ms: u64,
    /// Channels known at once.
    pub chat_max_channels: usize,
    /// Members per channel.
    pub chat_max_members: usize,
    /// Interval of the CHANNEL refresh for subscribed channels, in ms.
    pub chat_channel_refresh_ms: u64,
    /// Old channel keys a member keeps after a rotation, to read messages still in flight.
    pub chat_key_history: usize,
    /// Messages a neighbour may send per second, sustained (token bucket, virtual time).
    pub chat_rate_per_sec: u32,
    /// Burst a neighbour may send above the sustained rate.
    pub chat_rate_burst: u32,
    /// Refused messages (invalid, over the rate, forged) a neighbour may cause in a burst
    /// before it is cut off; refilled at one per second.
    pub chat_junk_burst: u32,
    /// Chat messages kept in the node's log for `kith chat read` (the oldest go first).
    pub chat_log_messages: usize,
    /// Clients on the chat port at once; more are closed on accept.
    pub max_chat_clients: usize,
    /// Inputs waiting for the chat task (frames from links and clients, user actions); a
    /// frame from a link beyond this is dropped (ACKs and retries recover it), a client's
    /// reader waits.
    pub chat_input_queue: usize,
    /// Frames waiting to be written to one chat-port client; a client that falls this far
    /// behind loses what does not fit.
    pub chat_client_queue: usize,
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
            control_header_timeout_ms: 5_000,
            control_body_timeout_ms: 5_000,
            max_control_connections: 64,
            max_secure_frame: 65_536,
            handshake_timeout_ms: 10_000,
            handshake_replay_entries: 100_000,
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
            max_replica_bytes: 256 * 1024 * 1024,
            max_pending_replications: 256,
            max_offers_per_link: 1_000,
            upload_slots: 4,
            upload_optimistic_every: 4,
            reciprocity_half_life_secs: 60,
            replication_retry_ms: 2_000,
            retention_check_interval_ms: 600_000,
            retention_checks_per_round: 16,
            max_placements_per_peer: 10_000,
            chat_max_frame: 1024 * 1024,
            chat_default_ttl: 32,
            chat_max_ttl: 64,
            chat_max_field: 256,
            chat_max_list: 1_024,
            chat_max_text: 16 * 1024,
            chat_max_attachment_bytes: 512 * 1024,
            chat_seen_entries: 65_536,
            chat_seen_ms: 600_000,
            chat_max_routes: 65_536,
            chat_route_infinity: 32,
            chat_routing_batch_ms: 200,
            chat_routing_refresh_ms: 30_000,
            chat_neighbour_idle_ms: 120_000,
            chat_max_queued: 10_000,
            chat_queue_ms: 7 * 24 * 3_600_000,
            chat_max_in_flight: 10_000,
            chat_ack_timeout_ms: 10_000,
            chat_max_certificates: 4_096,
            chat_max_pending_verify: 1_024,
            chat_certificate_timeout_ms: 30_000,
            chat_max_channels: 1_024,
            chat_max_members: 4_096,
            chat_channel_refresh_ms: 300_000,
            chat_key_history: 4,
            chat_rate_per_sec: 200,
            chat_rate_burst: 1_000,
            chat_junk_burst: 100,
            chat_log_messages: 10_000,
            max_chat_clients: 256,
            chat_input_queue: 1_024,
            chat_client_queue: 256,
            max_custody_owners: 16,
        }
    }
}
