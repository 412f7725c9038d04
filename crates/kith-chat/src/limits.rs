//! The chat overlay's limits: every bound the router and the chat port's framing enforce.

use serde::{Deserialize, Serialize};

/// The chat overlay's bounds (frames, fields, caches, queues, rates), read from the
/// `[limits]` table of `kith.toml` with the others; a missing key keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatLimits {
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
}

impl Default for ChatLimits {
    fn default() -> Self {
        ChatLimits {
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
        }
    }
}
