//! The thirteen ptpchat verbs as typed messages, decoded from and encoded to JSON.
//!
//! A message on the wire is a JSON object with four keys: `msg_type` (the verb), `msg_data`
//! (an object with the verb's fields), `ttl` (integer) and `flood` (boolean). kith adds one
//! optional top-level key, `target_id` (the reference implementations used it too): the node a
//! routed copy is heading for. Every other top-level key, and every unknown key inside
//! `msg_data`, is ignored. Keys are lower-case; a key in another case is an unknown key, so a
//! required field spelt `Node_ID` is reported missing.
//!
//! [`Envelope::decode`] checks every required field and its type and reports the first
//! problem as a [`MessageError`] naming the field (`msg_data.channel`,
//! `msg_data.members[3].node_id`, ...). It also enforces the propagation rules: HELLO and
//! ROUTING only with `ttl` 1 and `flood` false; verbs that are never flooded (ACK, NACK,
//! GETCERTIFICATE, CERTIFICATE, GETKEY, KEY, CONNECT) refused with `flood` true; any `ttl`
//! outside `1..=max_ttl` refused. The sizes of strings, lists, text and attachments are
//! bounded by [`MessageLimits`].
//!
//! Binary fields (`certificate`, `key`, `message`, `attachment`) are standard base64 with
//! padding on the wire and raw bytes in these types.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use kith_crypto::NodeId;
use kith_proto::Limits;

pub use decode::MessageError;

/// The bounds a decoder enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageLimits {
    /// Largest JSON text (a frame), in bytes.
    pub max_frame: u32,
    /// Highest acceptable `ttl`.
    pub max_ttl: u8,
    /// Longest string field, in bytes.
    pub max_field: usize,
    /// Most entries in any list.
    pub max_list: usize,
    /// Longest MESSAGE text, in bytes (signature excluded).
    pub max_text: usize,
    /// Largest total of decoded attachments, in bytes.
    pub max_attachment_bytes: usize,
}

impl MessageLimits {
    /// The bounds of `limits` (`chat_*` fields).
    pub fn from_limits(limits: &Limits) -> MessageLimits {
        MessageLimits {
            max_frame: limits.chat_max_frame,
            max_ttl: limits.chat_max_ttl.max(1),
            max_field: limits.chat_max_field,
            max_list: limits.chat_max_list,
            max_text: limits.chat_max_text,
            max_attachment_bytes: limits.chat_max_attachment_bytes,
        }
    }
}

impl Default for MessageLimits {
    fn default() -> Self {
        MessageLimits::from_limits(&Limits::default())
    }
}

/// A chat node id as written on the wire: a GUID, optionally prefixed by a display name
/// (`name@GUID`). Two ids are equal when their GUIDs are; the name is only for display.
#[derive(Debug, Clone, Eq)]
pub struct ChatId {
    /// The GUID, which is what identifies the node.
    pub guid: NodeId,
    /// The display name before `@`, if any.
    pub name: Option<String>,
}

impl ChatId {
    /// A bare-GUID id.
    pub fn new(guid: NodeId) -> ChatId {
        ChatId { guid, name: None }
    }

    /// An id with a display name.
    pub fn named(guid: NodeId, name: Option<String>) -> ChatId {
        ChatId { guid, name }
    }
}

impl PartialEq for ChatId {
    fn eq(&self, other: &ChatId) -> bool {
        self.guid == other.guid
    }
}

impl Hash for ChatId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.guid.hash(state);
    }
}

impl fmt::Display for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name}@{}", self.guid),
            None => write!(f, "{}", self.guid),
        }
    }
}

impl FromStr for ChatId {
    type Err = kith_crypto::IdentityError;

    /// Accepts `GUID` and `name@GUID` (the name is everything before the last `@`).
    fn from_str(s: &str) -> Result<ChatId, Self::Err> {
        let guid: NodeId = s.parse()?;
        let name = s
            .rsplit_once('@')
            .map(|(name, _)| name.to_string())
            .filter(|n| !n.is_empty());
        Ok(ChatId { guid, name })
    }
}

/// What a node says it is in HELLO (`attributes.node_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// A user's client: sends and reads, does not relay.
    Client,
    /// A relay (every kith node says `server`: it relays, and it also has a user).
    Server,
}

impl NodeType {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Client => "client",
            NodeType::Server => "server",
        }
    }
}

/// One message: the top-level keys and the verb with its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Hops this message may still take.
    pub ttl: u8,
    /// Whether it is flooded to every neighbour.
    pub flood: bool,
    /// kith's optional top-level `target_id`: the node this routed copy is for (one copy per
    /// recipient, so that a node can act on each copy once).
    pub target_id: Option<NodeId>,
    /// The verb and its fields.
    pub body: Body,
}

impl Envelope {
    /// An envelope with `ttl`, no flood and no target.
    pub fn new(ttl: u8, body: Body) -> Envelope {
        Envelope {
            ttl,
            flood: false,
            target_id: None,
            body,
        }
    }

    /// The verb.
    pub fn verb(&self) -> Verb {
        self.body.verb()
    }

    /// The `msg_id` of the verbs that carry one.
    pub fn msg_id(&self) -> Option<&str> {
        match &self.body {
            Body::Hello(_) | Body::Routing(_) | Body::Connect(_) => None,
            Body::Ack(m) => Some(&m.msg_id),
            Body::Nack(m) => Some(&m.msg_id),
            Body::Join(m) | Body::Leave(m) => Some(&m.msg_id),
            Body::Channel(m) => Some(&m.msg_id),
            Body::GetCertificate(m) => Some(&m.msg_id),
            Body::Certificate(m) => Some(&m.msg_id),
            Body::GetKey(m) => Some(&m.msg_id),
            Body::Key(m) => Some(&m.msg_id),
            Body::Message(m) => Some(&m.msg_id),
        }
    }
}

/// The thirteen verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// HELLO: introduces a node to its neighbour (ttl 1).
    Hello,
    /// ACK: per-hop receipt.
    Ack,
    /// NACK: a message could not be delivered (yet); sent to its originator.
    Nack,
    /// JOIN: a node joins a channel (flooded).
    Join,
    /// CHANNEL: a channel and its members (flooded).
    Channel,
    /// LEAVE: a node leaves a channel (flooded).
    Leave,
    /// GETCERTIFICATE: asks a node for its certificate.
    GetCertificate,
    /// CERTIFICATE: a node's certificate.
    Certificate,
    /// GETKEY: asks for a closed channel's key.
    GetKey,
    /// KEY: a closed channel's key, encrypted to its recipient.
    Key,
    /// MESSAGE: a signed chat message.
    Message,
    /// ROUTING: the sender's distance vector (ttl 1).
    Routing,
    /// CONNECT: rendezvous through a third node.
    Connect,
}

impl Verb {
    /// Every verb.
    pub const ALL: [Verb; 13] = [
        Verb::Hello,
        Verb::Ack,
        Verb::Nack,
        Verb::Join,
        Verb::Channel,
        Verb::Leave,
        Verb::GetCertificate,
        Verb::Certificate,
        Verb::GetKey,
        Verb::Key,
        Verb::Message,
        Verb::Routing,
        Verb::Connect,
    ];

    /// The `msg_type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Hello => "HELLO",
            Verb::Ack => "ACK",
            Verb::Nack => "NACK",
            Verb::Join => "JOIN",
            Verb::Channel => "CHANNEL",
            Verb::Leave => "LEAVE",
            Verb::GetCertificate => "GETCERTIFICATE",
            Verb::Certificate => "CERTIFICATE",
            Verb::GetKey => "GETKEY",
            Verb::Key => "KEY",
            Verb::Message => "MESSAGE",
            Verb::Routing => "ROUTING",
            Verb::Connect => "CONNECT",
        }
    }

    /// The verb a `msg_type` names (exact, upper-case).
    pub fn from_name(name: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == name)
    }

    /// Verbs that must travel with `ttl` 1 (neighbour to neighbour only).
    pub fn neighbour_only(self) -> bool {
        matches!(self, Verb::Hello | Verb::Routing)
    }

    /// Verbs that are never flooded.
    pub fn never_flooded(self) -> bool {
        !matches!(
            self,
            Verb::Join | Verb::Channel | Verb::Leave | Verb::Message
        )
    }

    /// Verbs a receiving hop acknowledges with ACK (the seed's list).
    pub fn acknowledged(self) -> bool {
        matches!(
            self,
            Verb::GetCertificate | Verb::Certificate | Verb::GetKey | Verb::Key | Verb::Message
        )
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verb with its `msg_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// HELLO.
    Hello(Hello),
    /// ACK.
    Ack(Ack),
    /// NACK.
    Nack(Nack),
    /// JOIN.
    Join(Membership),
    /// CHANNEL.
    Channel(ChannelInfo),
    /// LEAVE.
    Leave(Membership),
    /// GETCERTIFICATE.
    GetCertificate(GetCertificate),
    /// CERTIFICATE.
    Certificate(CertificateData),
    /// GETKEY.
    GetKey(GetKey),
    /// KEY.
    Key(KeyData),
    /// MESSAGE.
    Message(ChatMessage),
    /// ROUTING.
    Routing(Routing),
    /// CONNECT.
    Connect(Connect),
}

impl Body {
    /// The verb of this body.
    pub fn verb(&self) -> Verb {
        match self {
            Body::Hello(_) => Verb::Hello,
            Body::Ack(_) => Verb::Ack,
            Body::Nack(_) => Verb::Nack,
            Body::Join(_) => Verb::Join,
            Body::Channel(_) => Verb::Channel,
            Body::Leave(_) => Verb::Leave,
            Body::GetCertificate(_) => Verb::GetCertificate,
            Body::Certificate(_) => Verb::Certificate,
            Body::GetKey(_) => Verb::GetKey,
            Body::Key(_) => Verb::Key,
            Body::Message(_) => Verb::Message,
            Body::Routing(_) => Verb::Routing,
            Body::Connect(_) => Verb::Connect,
        }
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
