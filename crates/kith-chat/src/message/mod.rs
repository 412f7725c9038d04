//! The thirteen ptpchat verbs as typed messages, decoded from and encoded to JSON.
//!
//! A message on the wire is a JSON object with four keys: `msg_type` (the verb), `msg_data`
//! (an object with the verb's fields), `ttl` (integer) and `flood` (boolean). The later
//! revision of the protocol (the one the reference programs follow) adds three top-level keys:
//! `msg_id` (a UUID), `sender_id` (the node the message speaks for) and `target_id` (the node a
//! routed copy is heading for), ids as `name@GUID`, and leaves `node_id` (and often `msg_id`)
//! out of `msg_data`. Both are read: `msg_data.node_id` and `msg_data.msg_id` win, the
//! top-level ones stand in when they are absent, and a `sender_id` naming another GUID than
//! `msg_data.node_id` is refused. Both are written: every message carries the seed's fields
//! and the top-level ones, ids in `name@GUID` form (`kith@GUID` when no name is known). Every
//! other top-level key, and every unknown key inside `msg_data`, is ignored. Keys are
//! lower-case; a key in another case is an unknown key, so a required field spelt `Node_ID`
//! is reported missing.
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
mod verbs;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use crate::ChatLimits;
use kith_crypto::NodeId;

pub use decode::MessageError;
pub use verbs::{
    Ack, Attachment, Auth, CertificateData, ChannelInfo, ChatMessage, Connect, GetCertificate,
    GetKey, Hello, KeyData, Membership, Nack, RouteEntry, Routing,
};

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
    pub fn from_limits(limits: &ChatLimits) -> MessageLimits {
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
        MessageLimits::from_limits(&ChatLimits::default())
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

impl ChatId {
    /// The id as the later revision writes it: always `name@GUID`, with `kith` standing in for
    /// a missing name (the reference programs refuse a bare GUID, and accept only letters
    /// and digits before the `@`).
    pub fn wire(&self) -> String {
        let name = self
            .name
            .as_deref()
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()));
        format!("{}@{}", name.unwrap_or("kith"), self.guid)
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

/// True when `id` has the form of an id derived from a key (UUID version 8, RFC 4122
/// variant), as every kith node's id has. Such an id counts only with a proof of its key;
/// any other GUID (a plain client's uuid4) is derived from no key.
pub fn key_form(id: &NodeId) -> bool {
    let b = id.as_bytes();
    b[6] >> 4 == 8 && b[8] & 0xc0 == 0x80
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
    /// The later revision's top-level `msg_id`: for verbs whose `msg_data` carries their own
    /// id it is that id (and is written as such when `None`); HELLO, ROUTING, ACK, NACK and
    /// CONNECT get one of their own here.
    pub msg_id: Option<String>,
    /// The top-level `target_id`: the node this routed copy is for (one copy per recipient,
    /// so that a node can act on each copy once).
    pub target_id: Option<ChatId>,
    /// The verb and its fields.
    pub body: Body,
}

impl Envelope {
    /// An envelope with `ttl`, no flood and no target.
    pub fn new(ttl: u8, body: Body) -> Envelope {
        Envelope {
            ttl,
            flood: false,
            msg_id: None,
            target_id: None,
            body,
        }
    }

    /// The GUID of `target_id`.
    pub fn target(&self) -> Option<NodeId> {
        self.target_id.as_ref().map(|t| t.guid)
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

    /// The node this message speaks for (its `node_id`; CONNECT has none of its own: it
    /// names two nodes and is passed on by others).
    pub fn author(&self) -> Option<&ChatId> {
        match self {
            Body::Hello(m) => Some(&m.node_id),
            Body::Ack(m) => m.node_id.as_ref(),
            Body::Nack(m) => Some(&m.node_id),
            Body::Join(m) | Body::Leave(m) => Some(&m.node_id),
            Body::Channel(m) => Some(&m.node_id),
            Body::GetCertificate(m) => Some(&m.node_id),
            Body::Certificate(m) => Some(&m.node_id),
            Body::GetKey(m) => Some(&m.node_id),
            Body::Key(m) => Some(&m.node_id),
            Body::Message(m) => Some(&m.node_id),
            Body::Routing(m) => Some(&m.node_id),
            Body::Connect(_) => None,
        }
    }
}
