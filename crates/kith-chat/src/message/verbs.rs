//! The `msg_data` of each verb, with kith's optional additions (all ignored by other
//! implementations): signatures on channel state, receipts and HELLO proofs ([`Auth`]), the
//! HELLO challenge, KEY's member list, MESSAGE's `public_key` and `unsigned` mark.

use kith_crypto::NodeId;

use super::{ChatId, NodeType};

/// kith's signature on a message that speaks for a node (channel state, receipts, HELLO
/// proofs): `signature`, and optionally the signer's `public_key`, in `msg_data`. The signed
/// bytes are in [`crate::auth`]; the key must derive the signer's id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// `public_key`: the signer's raw Ed25519 public key, so that anyone can verify without
    /// asking for its certificate (it must derive the signer's GUID).
    pub public_key: Option<[u8; 32]>,
    /// `signature`: the Ed25519 signature.
    pub signature: Option<[u8; 64]>,
}

impl Auth {
    /// True when neither field is present.
    pub fn is_empty(&self) -> bool {
        self.public_key.is_none() && self.signature.is_none()
    }
}

/// HELLO `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender.
    pub node_id: ChatId,
    /// Its software (optional, informational).
    pub version: Option<String>,
    /// `attributes.node_type`.
    pub node_type: NodeType,
    /// kith's `challenge`: fresh random text the receiver may sign to prove the key of the id
    /// it claims (a node sends one in its HELLO to a client; a client may send one to have the
    /// node prove itself).
    pub challenge: Option<String>,
    /// kith's proof: the signature over the peer's challenge ([`crate::auth::hello_bytes`])
    /// with the key that derives `node_id`.
    pub auth: Auth,
    /// Decoded from a HELLO of the later revision (no `msg_data.node_id`: the sender is the
    /// top-level `sender_id`). Never written: kith always writes both revisions' fields.
    pub later_revision: bool,
}

/// ACK `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The acknowledging node (the seed's example leaves it blank, so it is optional).
    pub node_id: Option<ChatId>,
    /// The acknowledged message.
    pub msg_id: String,
    /// kith's optional echo of the acknowledged copy's `target_id`.
    pub target_id: Option<NodeId>,
    /// kith's `recipient_id`: set on an end-to-end receipt, routed to the message's author
    /// (the per-hop ACK has none and travels one hop).
    pub recipient_id: Option<NodeId>,
    /// A receipt's signature by `node_id` ([`crate::auth::receipt_bytes`]).
    pub auth: Auth,
}

/// NACK `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    /// The node that could not deliver.
    pub node_id: ChatId,
    /// The message it could not deliver.
    pub msg_id: String,
    /// kith's optional `recipient_id`: the message's originator, where the NACK is routed.
    /// Without it the NACK is for the neighbour that receives it.
    pub recipient_id: Option<NodeId>,
}

/// JOIN and LEAVE `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Identifies this message.
    pub msg_id: String,
    /// The sending node.
    pub node_id: ChatId,
    /// Channel name.
    pub channel: String,
    /// Channel id.
    pub channel_id: String,
    /// LEAVE only, kith's optional `member`: the member removed (a kick); without it the sender
    /// itself leaves.
    pub member: Option<ChatId>,
    /// The sender's signature ([`crate::auth::state_bytes`]).
    pub auth: Auth,
}

/// CHANNEL `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Identifies this message.
    pub msg_id: String,
    /// The sending node.
    pub node_id: ChatId,
    /// Channel name.
    pub channel: String,
    /// Channel id.
    pub channel_id: String,
    /// Members, as the sender knows them.
    pub members: Vec<ChatId>,
    /// Closed (invitation only, encrypted) channel; optional, default false.
    pub closed: bool,
    /// The sender's signature ([`crate::auth::state_bytes`]).
    pub auth: Auth,
}

/// GETCERTIFICATE `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetCertificate {
    /// Identifies this message; the CERTIFICATE answer carries the same id.
    pub msg_id: String,
    /// The asking node.
    pub node_id: ChatId,
    /// kith's optional `recipient_id`: whose certificate is asked for (routed there). Without
    /// it, the neighbour that receives it answers for itself.
    pub recipient_id: Option<NodeId>,
}

/// CERTIFICATE `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateData {
    /// The GETCERTIFICATE's id when answering one.
    pub msg_id: String,
    /// The node whose certificate this is.
    pub node_id: ChatId,
    /// Who asked (where it is routed).
    pub recipient_id: ChatId,
    /// The certificate: a DER X.509 certificate on an Ed25519 key, or the raw 32-byte Ed25519
    /// public key.
    pub certificate: Vec<u8>,
}

/// GETKEY `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetKey {
    /// Identifies this message.
    pub msg_id: String,
    /// The asking node.
    pub node_id: ChatId,
    /// Channel name.
    pub channel: String,
    /// Channel id.
    pub channel_id: String,
    /// kith's optional `recipient_id`: the member asked (routed there); without it, the
    /// neighbour that receives it answers.
    pub recipient_id: Option<NodeId>,
}

/// KEY `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyData {
    /// Identifies this message (the GETKEY's id when answering one).
    pub msg_id: String,
    /// The sending member.
    pub node_id: ChatId,
    /// The node the key is encrypted to.
    pub recipient_id: ChatId,
    /// Channel name.
    pub channel: String,
    /// Channel id.
    pub channel_id: String,
    /// The algorithm names (see [`crate::crypto::KEY_CIPHER`]).
    pub cipher: String,
    /// The wrapped key.
    pub key: Vec<u8>,
    /// kith's optional `members`: the channel's members as the sending member knows them (an
    /// invitation tells the new member whom it joins).
    pub members: Vec<ChatId>,
    /// The sender's signature ([`crate::auth::state_bytes`]).
    pub auth: Auth,
}

/// One MESSAGE attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The MIME type (`attachment_type`).
    pub mime_type: String,
    /// The bytes (`attachment`, base64 on the wire); encrypted in closed channels.
    pub data: Vec<u8>,
}

/// MESSAGE `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Identifies this message.
    pub msg_id: String,
    /// The author.
    pub node_id: ChatId,
    /// Recipients of a direct message (empty for a channel message).
    pub recipient: Vec<ChatId>,
    /// The author's timestamp (a string; a number on the wire is taken as its decimal text).
    pub timestamp: String,
    /// Channel name (empty for a direct message).
    pub channel: String,
    /// Channel id (empty for a direct message).
    pub channel_id: String,
    /// `message` after base64: the 64-byte Ed25519 signature, then the body.
    pub message: Vec<u8>,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// kith's optional `public_key`: the author's raw Ed25519 key (it must derive the author's
    /// GUID), so that relays verify before forwarding without asking for a certificate.
    pub public_key: Option<[u8; 32]>,
    /// kith's `unsigned` mark: the author is a client that proves no key; the node it is
    /// attached to vouches only that it came on the author's own connection.
    pub unsigned: bool,
    /// `message` is (or is to be written as) the text itself rather than base64 of
    /// `signature ‖ body`: what the reference client sends and reads. Only ever true for a
    /// message whose author has a plain id; [`ChatMessage::message`] holds `zero slot ‖ text`
    /// either way.
    pub plain_text: bool,
}

impl ChatMessage {
    /// True for a channel message (flooded), false for a direct one (routed).
    pub fn is_channel(&self) -> bool {
        !self.channel_id.is_empty()
    }
}

/// One ROUTING entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// The destination.
    pub node_id: ChatId,
    /// Hops from the sender to it.
    pub ttl: u32,
}

/// ROUTING `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The sender.
    pub node_id: ChatId,
    /// Its distance vector.
    pub nodes: Vec<RouteEntry>,
    /// kith's `seq`: increases with every ROUTING a node sends on one connection, so a
    /// replayed one is refused ([`crate::auth::routing_bytes`]).
    pub seq: Option<u64>,
    /// kith's signature ([`crate::auth::routing_bytes`]).
    pub auth: Auth,
}

/// CONNECT `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The node initiating the rendezvous.
    pub src_node_id: ChatId,
    /// The node it wants to reach.
    pub dst_node_id: ChatId,
    /// The target's socket, partial (`port`) or full (`host:port`), empty at first.
    pub dst: String,
    /// The initiator's socket, partial or full.
    pub src: String,
}
