//! What the router tells its driver: outputs, events for the local user, counters.

use std::net::IpAddr;

use kith_crypto::{AgentId, NodeId};

use crate::message::{ChatId, Envelope, MessageError, MessageLimits};

/// A neighbour as the driver names it (one per connection: a secure link to a kith node, or a
/// client on the chat port). The driver picks the numbers; the router never reuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NeighbourId(pub u64);

/// What is on the other end of a neighbour connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeighbourKind {
    /// A kith node over a secure link: its agent key is authenticated by the link, so its
    /// HELLO must carry the node id derived from that key, and its routes are believed.
    Node {
        /// The link's authenticated agent key.
        agent: AgentId,
    },
    /// A client on the chat port (plain TCP or TLS): unauthenticated until it proves a key.
    /// A client whose id has the key-derived form ([`crate::auth::key_form`]) must answer the
    /// challenge of the node's HELLO with that key before it is identified; any other id is
    /// a plain client's, bound to its connection. It is a leaf that speaks only for itself,
    /// unless its HELLO says `node_type: server`: then it is a ptpchat router, whose ROUTING
    /// is taken (untrusted, capped, if its id is plain) and who relays for others.
    Client,
    /// A chat-port connection this node dialled (`kith chat peer HOST:PORT`), to a ptpchat
    /// router or another node's chat port: unauthenticated like [`NeighbourKind::Client`],
    /// but this node speaks first, and asks the other end to prove its key if its id has the
    /// key-derived form.
    Router,
}

/// What the driver knows about a new neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourInfo {
    /// Node or client.
    pub kind: NeighbourKind,
    /// The neighbour's address as this node sees it (for CONNECT, and for a client, the
    /// rate and the cap on clients per address), if known.
    pub observed_ip: Option<IpAddr>,
}

/// Why the router wants a neighbour cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutOffReason {
    /// It sent more refused messages (invalid, over its rate, forged, out of place) than its
    /// junk budget allows.
    Junk,
    /// Its HELLO claimed a node id it may not use, or it did not prove the key of the id it
    /// claimed in time.
    IdentityRefused,
    /// Nothing heard from it for `neighbour_idle`.
    Idle,
    /// A client from an address that already has `max_clients_per_address` connections.
    Crowded,
}

impl CutOffReason {
    /// When the node may dial a cut-off kith node again (for a link, the driver decides;
    /// this is the router's advice): at once after an idle cut-off (the link may simply have
    /// gone quiet), after a quarantine for junk or a refused identity (the other side
    /// misbehaved, and an immediate redial would be cut off again).
    pub fn retry_after(self) -> std::time::Duration {
        match self {
            CutOffReason::Idle => std::time::Duration::ZERO,
            CutOffReason::Junk | CutOffReason::IdentityRefused | CutOffReason::Crowded => {
                std::time::Duration::from_secs(60)
            }
        }
    }
}

/// A routed message kept until it can be delivered: what the driver stores durably after a
/// [`Output::Persist`] and hands back with [`crate::Router::restore`] after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Identifies the entry (`msg_id` `>` target GUID); [`Output::Forget`] names it.
    pub key: String,
    /// The node this copy is for.
    pub target: NodeId,
    /// The message as JSON (what [`Envelope::decode`] reads back).
    pub json: Vec<u8>,
}

impl QueuedMessage {
    /// The key of the copy of `msg_id` for `target`.
    pub fn key_for(msg_id: &str, target: &NodeId) -> String {
        format!("{msg_id}>{target}")
    }

    /// Decodes the stored message.
    pub fn envelope(&self, limits: &MessageLimits) -> Result<Envelope, MessageError> {
        Envelope::decode(&self.json, limits)
    }
}

/// Where this node stands in a channel it keeps a record of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelStanding {
    /// A member.
    Member,
    /// Holds an invitation the user has not accepted yet.
    Invited,
    /// Asked a member for the key (GETKEY); joins when it comes.
    Joining,
}

impl ChannelStanding {
    /// The name stored for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelStanding::Member => "member",
            ChannelStanding::Invited => "invited",
            ChannelStanding::Joining => "joining",
        }
    }

    /// The standing a stored name means.
    pub fn parse(s: &str) -> Option<ChannelStanding> {
        match s {
            "member" => Some(ChannelStanding::Member),
            "invited" => Some(ChannelStanding::Invited),
            "joining" => Some(ChannelStanding::Joining),
            _ => None,
        }
    }
}

/// What a node keeps of a channel it is in, so that a restart finds the same channel (same
/// id, members, keys) and never makes a new one: what the driver stores after
/// [`Output::SaveChannel`] and hands back with [`crate::Router::restore_channel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    /// The channel's id.
    pub channel_id: String,
    /// Its name.
    pub name: String,
    /// Closed (invitation only, encrypted).
    pub closed: bool,
    /// This node's standing.
    pub standing: ChannelStanding,
    /// Its members as this node knows them (in a closed channel, the ones a member signed
    /// for).
    pub members: Vec<ChatId>,
    /// A closed channel's keys, newest first, sealed under this node's own key
    /// ([`crate::crypto::seal_at_rest`]); empty for a public channel.
    pub sealed_keys: Vec<u8>,
}

/// An attachment as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAttachment {
    /// MIME type.
    pub mime_type: String,
    /// Decrypted bytes.
    pub data: Vec<u8>,
}

/// A message for the local user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Its id.
    pub msg_id: String,
    /// Its author: signature checked against the key that derives its id when `signed`; a
    /// plain client's id (derived from no key) otherwise.
    pub from: ChatId,
    /// Signed by its author. False only for a plain client's message, which its node vouches
    /// came on the author's own connection, nothing more.
    pub signed: bool,
    /// `(name, id)` of its channel, or `None` for a direct message.
    pub channel: Option<(String, String)>,
    /// The author's timestamp.
    pub timestamp: String,
    /// The text.
    pub text: String,
    /// Attachments.
    pub attachments: Vec<FileAttachment>,
}

/// Something for the local user (or the node's UI) to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A verified (and, in a closed channel, decrypted) message.
    Message(ReceivedMessage),
    /// A channel this node had not heard of.
    ChannelDiscovered {
        /// Name.
        name: String,
        /// Id.
        channel_id: String,
        /// Closed channel.
        closed: bool,
    },
    /// This node is now a member of a channel (joined, created, or by invitation).
    Joined {
        /// Name.
        name: String,
        /// Id.
        channel_id: String,
    },
    /// An invitation waiting for [`crate::Router::join`] (when invites do not auto-join).
    Invited {
        /// Name.
        name: String,
        /// Id.
        channel_id: String,
        /// Who sent the key.
        by: ChatId,
    },
    /// A member of one of our channels joined or left.
    MembershipChanged {
        /// Channel id.
        channel_id: String,
        /// The member.
        member: ChatId,
        /// True for a join, false for a leave or removal.
        joined: bool,
    },
    /// We were removed from a closed channel.
    Removed {
        /// Name.
        name: String,
        /// Id.
        channel_id: String,
    },
    /// A NACK: one of our messages could not be delivered yet (it waits at `by`) or ran out
    /// of TTL there.
    Nacked {
        /// Our message.
        msg_id: String,
        /// Where it stopped.
        by: ChatId,
    },
    /// One of the user's messages (a direct one, or a channel message) is stored and on its
    /// way: for `recipients` nodes that are to receipt it (0 for a channel with no other
    /// member that can), of which `queued` have no route now (their copies wait).
    Posted {
        /// The message.
        msg_id: String,
        /// Copies kept until their recipient's receipt.
        recipients: usize,
        /// Of those, waiting for a route.
        queued: usize,
    },
    /// One of our routed messages has no route now and waits in our own queue.
    Queued {
        /// Our message.
        msg_id: String,
        /// The recipient it waits for.
        target: NodeId,
    },
    /// The recipient of one of our direct messages (or keys) signed a receipt for it.
    Delivered {
        /// Our message.
        msg_id: String,
        /// The recipient.
        target: NodeId,
    },
    /// No receipt came for one of our messages after every retry: it was given up.
    Unconfirmed {
        /// Our message.
        msg_id: String,
        /// The recipient.
        target: NodeId,
    },
    /// One of our messages could not be stored ([`crate::Router::persisted`] said so): it
    /// was not sent.
    NotStored {
        /// Our message.
        msg_id: String,
    },
    /// A neighbour said HELLO (and, a client with a key-derived id, proved its key).
    NeighbourIdentified {
        /// The driver's neighbour id.
        neighbour: NeighbourId,
        /// Its node id.
        node_id: ChatId,
    },
    /// CONNECT step 2: `peer` wants a direct connection and is at `address`; answer with
    /// [`crate::Router::answer_connect`] and start dialling it.
    ConnectRequested {
        /// The initiator.
        peer: ChatId,
        /// Its observed address (`host:port`).
        address: String,
    },
    /// CONNECT step 5: `peer` answered and is at `address`.
    ConnectReady {
        /// The target.
        peer: ChatId,
        /// Its observed address (`host:port`).
        address: String,
    },
}

/// What the driver must do, in order.
// Transmit, the large variant, is also by far the most common: boxing it would cost an
// allocation per message to spare a few bytes on the rare small ones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `message` to `to` (encode with [`Envelope::encode`], frame it or wrap it in an
    /// envelope).
    Transmit {
        /// The neighbour.
        to: NeighbourId,
        /// The message.
        message: Envelope,
    },
    /// Show to the local user.
    Deliver(ChatEvent),
    /// Store (or replace, by key) this message durably, then answer with
    /// [`crate::Router::persisted`]: the router acknowledges, sends or keeps the copy only
    /// once it is told it is stored, and never if the store failed.
    Persist(QueuedMessage),
    /// The stored message with this key is no longer needed (the key may name something that
    /// was only ever held in memory: ignore unknown keys).
    Forget {
        /// [`QueuedMessage::key`].
        key: String,
    },
    /// Store (or replace, by channel id) what this node keeps of a channel it is in. Not a
    /// question: a failure only means a restart would find an older record.
    SaveChannel(ChannelRecord),
    /// This node is no longer in the channel: drop its record.
    DropChannel {
        /// The channel.
        channel_id: String,
    },
    /// Close this neighbour's connection; the router has already forgotten it.
    Disconnect {
        /// The neighbour.
        neighbour: NeighbourId,
        /// Why.
        reason: CutOffReason,
    },
}

/// What the router has done and refused, for `kith status --json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatCounters {
    /// Messages handled from neighbours.
    pub received: u64,
    /// Refused by the decoder (bad JSON, missing or mistyped field, ttl rule).
    pub invalid: u64,
    /// Dropped because the neighbour was over its rate.
    pub rate_limited: u64,
    /// Copies already acted on (flood duplicates), dropped.
    pub duplicates: u64,
    /// Flooded messages this node acted on (first copies).
    pub flooded: u64,
    /// Routed copies passed on to a next hop.
    pub routed: u64,
    /// Messages delivered to the local user.
    pub delivered: u64,
    /// Messages speaking for a key-derived id whose signature did not verify (or that were
    /// unsigned), dropped before being acted on or forwarded.
    pub forged: u64,
    /// Messages dropped because the author's certificate never came.
    pub unverifiable: u64,
    /// Unsigned messages of plain clients accepted (marked unsigned).
    pub unsigned: u64,
    /// Certificates refused: the key does not derive the id they claim.
    pub certificates_refused: u64,
    /// Closed-channel messages this member could not decrypt.
    pub undecryptable: u64,
    /// Routed copies put in the store-and-forward queue.
    pub queued: u64,
    /// Queued copies dropped (queue full or expired).
    pub queue_dropped: u64,
    /// Copies dropped because their TTL ran out.
    pub ttl_expired: u64,
    /// NACKs sent.
    pub nacks_sent: u64,
    /// HELLOs refused (id in use or not the link's key).
    pub hello_refused: u64,
    /// Messages refused as out of place (before HELLO, ROUTING from a client, unauthorised
    /// kick or key request, bad certificate).
    pub refused: u64,
    /// Neighbours cut off.
    pub cut_off: u64,
    /// Next hops that did not ACK in time (the copy was re-routed).
    pub ack_timeouts: u64,
    /// Copies not acknowledged because the driver could not store them.
    pub persist_failed: u64,
    /// End-to-end receipts for our messages.
    pub receipts: u64,
    /// Our messages sent again for want of a receipt.
    pub retries: u64,
    /// Our messages given up without a receipt.
    pub unconfirmed: u64,
    /// Routes demoted (a copy sent along them was not acknowledged end to end).
    pub routes_demoted: u64,
    /// Chat-port clients refused (too many from one address).
    pub clients_refused: u64,
    /// Messages dropped because the user blocked their author.
    pub blocked: u64,
    /// ROUTING entries refused (over the cap of an unauthenticated router, or a claim to be
    /// another node).
    pub routes_refused: u64,
    /// Receipts this node signed for messages it received.
    pub receipts_sent: u64,
}

impl ChatCounters {
    /// Every counter with its name, for status reports.
    pub fn pairs(&self) -> [(&'static str, u64); 29] {
        [
            ("received", self.received),
            ("invalid", self.invalid),
            ("rate_limited", self.rate_limited),
            ("duplicates", self.duplicates),
            ("flooded", self.flooded),
            ("routed", self.routed),
            ("delivered", self.delivered),
            ("forged", self.forged),
            ("unverifiable", self.unverifiable),
            ("unsigned", self.unsigned),
            ("certificates_refused", self.certificates_refused),
            ("undecryptable", self.undecryptable),
            ("queued", self.queued),
            ("queue_dropped", self.queue_dropped),
            ("ttl_expired", self.ttl_expired),
            ("nacks_sent", self.nacks_sent),
            ("hello_refused", self.hello_refused),
            ("refused", self.refused),
            ("cut_off", self.cut_off),
            ("ack_timeouts", self.ack_timeouts),
            ("persist_failed", self.persist_failed),
            ("receipts", self.receipts),
            ("retries", self.retries),
            ("unconfirmed", self.unconfirmed),
            ("routes_demoted", self.routes_demoted),
            ("clients_refused", self.clients_refused),
            ("blocked", self.blocked),
            ("routes_refused", self.routes_refused),
            ("receipts_sent", self.receipts_sent),
        ]
    }
}
