//! [`ChatConfig`]: the chat limits of [`crate::ChatLimits`] as durations and counts, plus the
//! few behaviour settings of a node (its name, software version, invite policy).

use std::time::Duration;

use crate::ChatLimits;

use crate::message::{MessageLimits, NodeType};

/// Everything a [`crate::Router`] is configured with. Build it with
/// [`ChatConfig::from_limits`] so every bound comes from [`ChatLimits`].
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Decoding bounds (frame, TTL, fields, lists, text, attachments).
    pub message: MessageLimits,
    /// TTL this node gives the messages it originates.
    pub default_ttl: u8,
    /// Duplicate-cache size and lifetime.
    pub seen_entries: usize,
    /// How long a message id is remembered.
    pub seen_for: Duration,
    /// Routing table bound.
    pub max_routes: usize,
    /// Distance-vector infinity (unreachable).
    pub route_infinity: u8,
    /// Batching delay of triggered ROUTING updates.
    pub routing_batch: Duration,
    /// Full ROUTING refresh interval.
    pub routing_refresh: Duration,
    /// Silence after which a neighbour is dropped.
    pub neighbour_idle: Duration,
    /// Store-and-forward queue bound.
    pub max_queued: usize,
    /// How long a queued message is retried.
    pub queue_for: Duration,
    /// Routed messages awaiting an ACK, bound.
    pub max_in_flight: usize,
    /// ACK deadline of a next hop.
    pub ack_timeout: Duration,
    /// Certificate cache bound.
    pub max_certificates: usize,
    /// Messages waiting for their sender's certificate, bound.
    pub max_pending_verify: usize,
    /// GETCERTIFICATE deadline.
    pub certificate_timeout: Duration,
    /// Channels the local user joined or created, bound (strangers cannot use this room).
    pub max_channels: usize,
    /// Channels learned from others (announced, or joined by invitation), bound; when full,
    /// the oldest one this node is not in is forgotten.
    pub max_foreign_channels: usize,
    /// Members per channel bound.
    pub max_members: usize,
    /// CHANNEL refresh interval.
    pub channel_refresh: Duration,
    /// Old channel keys kept after a rotation.
    pub key_history: usize,
    /// Sustained messages per second per linked node (over it, messages are dropped, never
    /// charged to the node: it may only be relaying them).
    pub rate_per_sec: u32,
    /// Burst per linked node.
    pub rate_burst: u32,
    /// Sustained messages per second per client address (IPv4 address, IPv6 /64) and per
    /// client id, on the chat port.
    pub client_rate_per_sec: u32,
    /// Burst per client address and per client id.
    pub client_rate_burst: u32,
    /// Sustained messages per second from all chat-port clients together, so that what this
    /// node forwards for its clients stays well within what its linked nodes accept.
    pub clients_rate_per_sec: u32,
    /// Burst of all clients together.
    pub clients_rate_burst: u32,
    /// Chat-port connections at once from one address.
    pub max_clients_per_address: usize,
    /// Sustained messages per second relayed for one originating node (charged to the
    /// author, not to the neighbour that passes them on).
    pub origin_rate_per_sec: u32,
    /// Burst per originating node.
    pub origin_rate_burst: u32,
    /// Originating nodes and client addresses whose rates are remembered, bound.
    pub max_origins: usize,
    /// Time a client whose id has the key-derived form has to prove its key.
    pub proof_timeout: Duration,
    /// Time the recipient of one of our messages has to return a signed receipt before the
    /// route is demoted and the message sent again (doubling on each retry).
    pub receipt_timeout: Duration,
    /// Sends of one message without a receipt before it is given up.
    pub max_attempts: u32,
    /// How long a route stays demoted (no receipt) or confirmed (receipts came back).
    pub route_mark_for: Duration,
    /// Refusals a neighbour may cause in a burst before it is cut off.
    pub junk_burst: u32,
    /// Software name and version sent in HELLO.
    pub version: String,
    /// What this node says it is in HELLO (`server` for a kith node: it relays).
    pub node_type: NodeType,
    /// Optional display name, sent as `name@GUID` in our node ids.
    pub name: Option<String>,
    /// When true (the default) an invitation (an unasked KEY) joins the channel at once;
    /// when false it waits for [`crate::Router::join`].
    pub auto_join_invites: bool,
}

impl ChatConfig {
    /// The configuration a node running with `limits` uses.
    pub fn from_limits(limits: &ChatLimits) -> ChatConfig {
        let ms = Duration::from_millis;
        ChatConfig {
            message: MessageLimits::from_limits(limits),
            default_ttl: limits.chat_default_ttl.clamp(1, limits.chat_max_ttl.max(1)),
            seen_entries: limits.chat_seen_entries,
            seen_for: ms(limits.chat_seen_ms),
            max_routes: limits.chat_max_routes,
            route_infinity: limits.chat_route_infinity.max(2),
            routing_batch: ms(limits.chat_routing_batch_ms),
            routing_refresh: ms(limits.chat_routing_refresh_ms.max(1)),
            neighbour_idle: ms(limits.chat_neighbour_idle_ms),
            max_queued: limits.chat_max_queued,
            queue_for: ms(limits.chat_queue_ms),
            max_in_flight: limits.chat_max_in_flight,
            ack_timeout: ms(limits.chat_ack_timeout_ms),
            max_certificates: limits.chat_max_certificates,
            max_pending_verify: limits.chat_max_pending_verify,
            certificate_timeout: ms(limits.chat_certificate_timeout_ms),
            max_channels: limits.chat_max_channels,
            max_foreign_channels: (limits.chat_max_channels / 4).max(1),
            max_members: limits.chat_max_members,
            channel_refresh: ms(limits.chat_channel_refresh_ms.max(1)),
            key_history: limits.chat_key_history.max(1),
            rate_per_sec: limits.chat_rate_per_sec,
            rate_burst: limits.chat_rate_burst.max(1),
            client_rate_per_sec: (limits.chat_rate_per_sec / 10).max(1),
            client_rate_burst: (limits.chat_rate_burst / 10).max(1),
            clients_rate_per_sec: (limits.chat_rate_per_sec / 2).max(1),
            clients_rate_burst: (limits.chat_rate_burst / 2).max(1),
            max_clients_per_address: 8,
            origin_rate_per_sec: (limits.chat_rate_per_sec / 10).max(1),
            origin_rate_burst: (limits.chat_rate_burst / 10).max(1),
            max_origins: limits.chat_max_certificates.max(16),
            proof_timeout: Duration::from_secs(10),
            receipt_timeout: ms(limits.chat_ack_timeout_ms.saturating_mul(2)),
            max_attempts: 6,
            route_mark_for: Duration::from_secs(600),
            junk_burst: limits.chat_junk_burst.max(1),
            version: concat!("kith/", env!("CARGO_PKG_VERSION")).to_string(),
            node_type: NodeType::Server,
            name: None,
            auto_join_invites: true,
        }
    }
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig::from_limits(&ChatLimits::default())
    }
}
