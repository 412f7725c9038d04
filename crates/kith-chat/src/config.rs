//! [`ChatConfig`]: the chat limits of [`kith_proto::Limits`] as durations and counts, plus the
//! few behaviour settings of a node (its name, software version, invite policy).

use std::time::Duration;

use kith_proto::Limits;

use crate::message::{MessageLimits, NodeType};

/// Everything a [`crate::Router`] is configured with. Build it with
/// [`ChatConfig::from_limits`] so every bound comes from the node's one `Limits` struct.
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
    /// Known channels bound.
    pub max_channels: usize,
    /// Members per channel bound.
    pub max_members: usize,
    /// CHANNEL refresh interval.
    pub channel_refresh: Duration,
    /// Old channel keys kept after a rotation.
    pub key_history: usize,
    /// Sustained messages per second per neighbour.
    pub rate_per_sec: u32,
    /// Burst per neighbour.
    pub rate_burst: u32,
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
    pub fn from_limits(limits: &Limits) -> ChatConfig {
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
            max_members: limits.chat_max_members,
            channel_refresh: ms(limits.chat_channel_refresh_ms.max(1)),
            key_history: limits.chat_key_history.max(1),
            rate_per_sec: limits.chat_rate_per_sec,
            rate_burst: limits.chat_rate_burst.max(1),
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
        ChatConfig::from_limits(&Limits::default())
    }
}
