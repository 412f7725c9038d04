//! The router: the sans-IO state machine of one chat node, in the quinn-proto shape.
//!
//! # Calling contract
//!
//! The driver (kith-node, or a simulation) owns the connections and the clock:
//!
//! 1. Build one [`Router`] per node with [`Router::new`], then feed it back what it asked to
//!    keep durably before the restart ([`Router::restore`], once per stored
//!    [`QueuedMessage`]).
//! 2. For each new connection call [`Router::neighbour_up`] with a fresh [`NeighbourId`] and
//!    what is known of the other end ([`NeighbourInfo`]: a client's address matters, it is
//!    what the client's rate and the cap on clients per address are charged to); call
//!    [`Router::neighbour_down`] when it closes. The router sends HELLO to kith nodes at
//!    once; a client on the chat port is expected to speak first (and to prove its key when
//!    its id has the key-derived form: see the crate documentation).
//! 3. For each frame received: a keep-alive goes to [`Router::handle_keepalive`]; the JSON of
//!    any other frame (or of a `chat` envelope on a secure link) to
//!    [`Router::handle_frame`]. Already-decoded messages may go to
//!    [`Router::handle_input`].
//! 4. Local user actions are methods: [`Router::join`], [`Router::leave`], [`Router::say`],
//!    [`Router::send_direct`], [`Router::invite`], [`Router::kick`], [`Router::connect`],
//!    [`Router::answer_connect`].
//! 5. After every call, drain [`Router::poll_output`] until `None` and carry the outputs out
//!    **in order**. [`Output::Persist`] is a question: store the copy, then answer with
//!    [`Router::persisted`] (true once durable, false if the store failed); the router ACKs a
//!    copy it keeps, or sends the user's own message, only after a true answer (answering
//!    at once, before draining further outputs, keeps everything in order).
//!    [`Output::Transmit`] messages go to one neighbour each (frame them with
//!    [`crate::frame::encode_frame`] on the chat port); after [`Output::Disconnect`] close the
//!    connection without calling `neighbour_down` (the router has forgotten it already); its
//!    [`CutOffReason`] says when a kith node may be dialled again
//!    ([`CutOffReason::retry_after`]).
//! 6. Call [`Router::handle_timeout`] when the instant of [`Router::poll_timeout`] is reached
//!    (a spurious early call is harmless), then drain outputs again.
//!
//! Time is only what the driver passes in; randomness (message ids, keys, nonces) comes from
//! the seed given to `new`, so a simulation replays exactly.

mod actions;
mod admit;
mod caches;
mod channels;
mod forward;
mod inbound;
mod people;
mod queue;
mod rate;
mod receipts;
mod routing;
mod send;
mod store;
mod table;
mod timers;
mod types;
mod verify;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use kith_crypto::{Identity, NodeId};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

pub use people::PersonView;
pub use table::Route;
pub use types::{
    ChannelRecord, ChannelStanding, ChatCounters, ChatEvent, CutOffReason, FileAttachment,
    NeighbourId, NeighbourInfo, NeighbourKind, Output, QueuedMessage, ReceivedMessage,
};

use crate::config::ChatConfig;
use crate::message::{Body, ChatId, Envelope, MessageError, NodeType};
use crate::{auth, crypto};
pub use actions::is_channel_id;
use admit::Ident;
use caches::{CertCache, SeenCache, TokenBucket};
pub use channels::ChannelView;
use channels::Channels;
use queue::{InFlight, StoreQueue};
use rate::Rates;
use receipts::Receipts;
use table::RouteTable;
use verify::Held;

/// Why a local action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// No channel of that name is known (or we are not in it).
    #[error("this node is not in channel {0:?}: join it first")]
    NoSuchChannel(String),
    /// A channel id that no announcement or invitation brought here.
    #[error("no channel with id {0} is known here (it is announced when a member is reachable; a closed one needs an invitation)")]
    UnknownChannelId(String),
    /// A closed channel can only be joined by invitation.
    #[error("channel {0:?} is closed and this node was not invited")]
    NotInvited(String),
    /// Inviting and removing members only make sense in closed channels.
    #[error("channel {0:?} is public: anyone may join it")]
    PublicChannel(String),
    /// A text, name or attachment over its limit.
    #[error("{0} is over its limit")]
    TooLarge(&'static str),
    /// Too many channels, recipients or members.
    #[error("limit reached: {0}")]
    LimitReached(&'static str),
    /// A channel name must be non-empty and free of control characters.
    #[error("invalid channel name")]
    InvalidName,
    /// This node's own certificate could not be built.
    #[error("cannot build this node's certificate: {0}")]
    Certificate(String),
}

/// How many entries the router's bounded tables hold ([`Router::footprint`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Message ids in the duplicate caches (flooded and delivered, each bounded by
    /// `chat_seen_entries`).
    pub seen: usize,
    /// Destinations in the routing table.
    pub routes: usize,
    /// Copies waiting for a route.
    pub queued: usize,
    /// Copies waiting for a next hop's ACK.
    pub in_flight: usize,
    /// Messages waiting for their author's certificate.
    pub held: usize,
    /// Copies waiting for the driver's store answer.
    pub storing: usize,
    /// Our copies waiting for receipts.
    pub awaiting_receipts: usize,
    /// People heard of.
    pub people: usize,
    /// Channels known.
    pub channels: usize,
}

/// One neighbour connection.
#[derive(Debug)]
pub(crate) struct Neighbour {
    pub info: NeighbourInfo,
    /// Set once the neighbour is identified (a client: proven, or plain): only then is it a
    /// route, and only then does it receive floods.
    pub node_id: Option<ChatId>,
    pub node_type: Option<NodeType>,
    pub ident: Ident,
    /// The challenge our HELLO gave a client.
    pub challenge: String,
    pub hello_sent: bool,
    /// The challenge the neighbour's HELLO gave us (what our ROUTING to it signs).
    pub peer_challenge: String,
    /// We answered the neighbour's challenge with a proof of our key.
    pub proved: bool,
    /// The highest `seq` of a signed ROUTING accepted from it on this connection.
    pub routing_seq: Option<u64>,
    /// A client of the later revision that reads `message` as text (it sent text itself,
    /// or said HELLO the later revision's way without a key).
    pub plain_text: bool,
    /// A kith node whose secure link closed for idleness: still a neighbour (its routes
    /// stand), spared periodic traffic, woken by the driver when something is sent to it.
    pub asleep: bool,
    /// When we last answered a repeated HELLO of this linked node with ours.
    pub rehello_at: Option<Instant>,
    pub last_heard: Instant,
    pub rate: TokenBucket,
    pub junk: TokenBucket,
}

/// A KEY waiting for its recipient's certificate.
#[derive(Debug, Clone)]
pub(crate) struct PendingKey {
    pub deadline: Instant,
    pub channel_id: String,
    pub recipient: NodeId,
    pub reply_to: Option<String>,
}

/// The chat state machine of one node. See the module documentation for the calling contract.
pub struct Router {
    pub(crate) identity: Identity,
    pub(crate) me: ChatId,
    pub(crate) certificate: Vec<u8>,
    pub(crate) config: ChatConfig,
    pub(crate) rng: StdRng,
    pub(crate) neighbours: BTreeMap<NeighbourId, Neighbour>,
    pub(crate) table: RouteTable,
    pub(crate) seen: SeenCache,
    /// What was delivered here (routed copies for us, channel messages shown), remembered as
    /// long as a kept copy may still come (`queue_for`): a retry or a replay is answered,
    /// never shown twice.
    pub(crate) delivered: SeenCache,
    pub(crate) certs: CertCache,
    pub(crate) channels: Channels,
    pub(crate) queue: StoreQueue,
    pub(crate) in_flight: InFlight,
    pub(crate) held: VecDeque<Held>,
    pub(crate) storing: store::Pending,
    pub(crate) receipts: Receipts,
    pub(crate) rates: Rates,
    pub(crate) proof_deadlines: VecDeque<(Instant, NeighbourId)>,
    pub(crate) cert_requests: HashMap<NodeId, Instant>,
    pub(crate) cert_request_order: VecDeque<(Instant, NodeId)>,
    pub(crate) pending_keys: VecDeque<PendingKey>,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) counters: ChatCounters,
    pub(crate) next_routing_flush: Option<Instant>,
    pub(crate) next_routing_refresh: Instant,
    pub(crate) next_idle_check: Instant,
    pub(crate) people: people::People,
    pub(crate) started: Instant,
    /// The `seq` of the next ROUTING this node sends (increasing for the router's life).
    pub(crate) routing_seq: u64,
    /// The user's channel messages waiting for their copies to be stored before they go.
    pub(crate) saying: actions::Saying,
    /// Channels whose stored record is out of date ([`Output::SaveChannel`]).
    pub(crate) dirty_channels: std::collections::BTreeSet<String>,
    /// Channels whose record the driver holds (so a departure drops it).
    pub(crate) saved_channels: std::collections::BTreeSet<String>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("me", &self.me)
            .field("neighbours", &self.neighbours.len())
            .field("routes", &self.table.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router for `identity` (its node id is the one derived from the agent key), with
    /// randomness drawn from `rng_seed` (the node seeds it from the OS; simulations from their
    /// own RNG).
    pub fn new(
        identity: Identity,
        config: ChatConfig,
        now: Instant,
        rng_seed: [u8; 32],
    ) -> Result<Router, ChatError> {
        let certificate = identity
            .self_signed_certificate()
            .map_err(|e| ChatError::Certificate(e.to_string()))?
            .der;
        let me = ChatId::named(identity.node_id(), config.name.clone());
        let config_max_people = config.max_routes.max(16);
        let mut certs = CertCache::new(config.max_certificates);
        certs.bind(me.guid, identity.agent_id());
        let mut rng = StdRng::from_seed(rng_seed);
        let jitter = jitter(&mut rng, config.routing_refresh);
        Ok(Router {
            table: RouteTable::new(me.guid, config.route_infinity, config.max_routes),
            seen: SeenCache::new(config.seen_entries, config.seen_for),
            delivered: SeenCache::new(config.seen_entries, config.queue_for.max(config.seen_for)),
            channels: Channels::new(config.max_channels, config.max_foreign_channels),
            rates: Rates::new(&config, now),
            next_routing_refresh: now + config.routing_refresh + jitter,
            next_idle_check: now + config.neighbour_idle,
            identity,
            me,
            certificate,
            certs,
            rng,
            config,
            neighbours: BTreeMap::new(),
            queue: StoreQueue::default(),
            in_flight: InFlight::default(),
            held: VecDeque::new(),
            storing: store::Pending::default(),
            receipts: Receipts::default(),
            proof_deadlines: VecDeque::new(),
            cert_requests: HashMap::new(),
            cert_request_order: VecDeque::new(),
            pending_keys: VecDeque::new(),
            outputs: VecDeque::new(),
            counters: ChatCounters::default(),
            next_routing_flush: None,
            people: people::People::new(config_max_people),
            started: now,
            routing_seq: 1,
            saying: actions::Saying::default(),
            dirty_channels: Default::default(),
            saved_channels: Default::default(),
        })
    }

    /// This node's id as it is sent (`name@GUID` when a name is configured).
    pub fn node_id(&self) -> &ChatId {
        &self.me
    }

    /// The Ed25519 key bound to `id` (from a certificate, or the link of a neighbour), if known.
    pub fn key_of(&self, id: &NodeId) -> Option<kith_crypto::AgentId> {
        self.certs.get(id).copied()
    }

    /// Asks `id` for its certificate, unless its key is known or a request is already out;
    /// the answer binds the key ([`Router::key_of`]).
    pub fn fetch_certificate(&mut self, now: Instant, id: NodeId) {
        if self.certs.get(&id).is_none() {
            self.request_certificate(now, id);
        }
    }

    /// What the router has done and refused.
    pub fn counters(&self) -> &ChatCounters {
        &self.counters
    }

    /// The route to `dest`, if any.
    pub fn route_to(&self, dest: &NodeId) -> Option<Route> {
        self.table.route(dest)
    }

    /// Destinations in the routing table.
    pub fn route_count(&self) -> usize {
        self.table.len()
    }

    /// Routed copies waiting for a route.
    pub fn queued_count(&self) -> usize {
        self.queue.len()
    }

    /// Copies waiting for a next hop's ACK.
    pub fn unacked_count(&self) -> usize {
        self.in_flight.len()
    }

    /// How much the router holds, entry by entry (for reports and tests: what a flood of
    /// unique message ids costs is bounded here).
    pub fn footprint(&self) -> Footprint {
        Footprint {
            seen: self.seen.len() + self.delivered.len(),
            routes: self.table.len(),
            queued: self.queue.len(),
            in_flight: self.in_flight.len(),
            held: self.held.len(),
            storing: self.storing.len(),
            awaiting_receipts: self.receipts.len(),
            people: self.people.len(),
            channels: self.channels.ids().len(),
        }
    }

    /// The user's copies waiting for their recipient's receipt (sent or queued).
    pub fn awaiting_receipts(&self) -> usize {
        self.receipts.len()
    }

    /// Whether copies wait for a route that a link to a known node might bring: a driver
    /// whose links close when idle should then bring its links to known nodes up again (in
    /// the background), since the router cannot reach what nobody linked can.
    pub fn wants_links(&self) -> bool {
        self.queue.len() > 0
    }

    /// The next output to carry out, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() && !self.dirty_channels.is_empty() {
            self.save_dirty_channels();
        }
        self.outputs.pop_front()
    }

    /// A new connection. A client from an address that already has
    /// `max_clients_per_address` connections is cut off at once ([`CutOffReason::Crowded`]).
    pub fn neighbour_up(&mut self, now: Instant, id: NeighbourId, info: NeighbourInfo) {
        let ident = match &info.kind {
            NeighbourKind::Node { agent } => Ident::Node(*agent),
            NeighbourKind::Client | NeighbourKind::Router => Ident::Unknown,
        };
        let (node, ip) = (matches!(ident, Ident::Node(_)), info.observed_ip);
        let dialled = matches!(info.kind, NeighbourKind::Router);
        self.neighbours.insert(
            id,
            Neighbour {
                info,
                node_id: None,
                node_type: None,
                ident,
                challenge: String::new(),
                hello_sent: false,
                peer_challenge: String::new(),
                proved: false,
                routing_seq: None,
                plain_text: false,
                asleep: false,
                rehello_at: None,
                last_heard: now,
                rate: TokenBucket::new(now, self.config.rate_per_sec, self.config.rate_burst),
                junk: TokenBucket::new(now, 1, self.config.junk_burst),
            },
        );
        self.next_idle_check = self.next_idle_check.min(now + self.config.neighbour_idle);
        if node {
            self.send_hello(id);
        } else {
            self.admit_address(now, id, ip);
            // A ptpchat router we dialled: we speak first (and ask it to prove its key).
            if dialled {
                self.send_hello(id);
            }
        }
    }

    /// A connection closed: its routes go, and what was sent through it and not acknowledged
    /// is routed again.
    pub fn neighbour_down(&mut self, now: Instant, id: NeighbourId) {
        let Some(n) = self.neighbours.remove(&id) else {
            return;
        };
        if !matches!(n.info.kind, NeighbourKind::Node { .. }) {
            self.release_address(n.info.observed_ip);
        }
        self.table.remove_neighbour(id);
        for copy in self.in_flight.take_neighbour(id) {
            self.reroute(now, copy);
        }
        self.after_table_change(now);
    }

    /// The secure link of kith node `id` closed for idleness (or was lost): it stays a
    /// neighbour, its routes stand, and the router spares it periodic traffic (ROUTING,
    /// CHANNEL announcements and refreshes); what else is sent to it, the driver delivers by
    /// opening the link again ([`Router::neighbour_relinked`] once it is up), or reports the
    /// node gone ([`Router::neighbour_down`]) if it cannot be reached. Links are virtually
    /// open, and so are chat's neighbours.
    pub fn neighbour_asleep(&mut self, id: NeighbourId) {
        if let Some(n) = self.neighbours.get_mut(&id) {
            n.asleep = true;
        }
    }

    /// The link of sleeping neighbour `id` is up again (the same node; it may have
    /// restarted): the connection's state starts over (HELLO, ROUTING order), and it hears
    /// our whole table and our channels again, since it was spared updates while asleep.
    pub fn neighbour_relinked(&mut self, now: Instant, id: NeighbourId) {
        let Some(n) = self.neighbours.get_mut(&id) else {
            return;
        };
        n.asleep = false;
        n.hello_sent = false;
        n.routing_seq = None;
        n.last_heard = now;
        // Our HELLO goes now: the other end's, if it comes, needs no answer.
        n.rehello_at = Some(now);
        let their = n.node_id.as_ref().map(|i| i.guid);
        self.send_hello(id);
        if let Some(their) = their {
            self.send_table_to(id, their);
            self.announce_channels_to(id);
        }
    }

    /// Whether neighbour `id` sleeps ([`Router::neighbour_asleep`]).
    pub fn is_asleep(&self, id: NeighbourId) -> bool {
        self.neighbours.get(&id).is_some_and(|n| n.asleep)
    }

    /// A keep-alive (empty frame) from a neighbour.
    pub fn handle_keepalive(&mut self, now: Instant, from: NeighbourId) {
        if let Some(n) = self.neighbours.get_mut(&from) {
            n.last_heard = now;
        }
    }

    /// A frame's JSON from a neighbour. Undecodable messages are counted and charged to the
    /// neighbour's junk budget; the error is returned for logging.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        from: NeighbourId,
        json: &[u8],
    ) -> Result<(), MessageError> {
        match Envelope::decode(json, &self.config.message) {
            Ok(env) => {
                self.handle_input(now, from, env);
                Ok(())
            }
            Err(e) => {
                if let Some(n) = self.neighbours.get_mut(&from) {
                    n.last_heard = now;
                    self.counters.invalid += 1;
                    self.junk(now, from);
                }
                Err(e)
            }
        }
    }

    /// One decoded message from a neighbour: charged to whoever originated it, refused
    /// before its sender is identified (HELLO aside) or, from a client, unless it speaks for
    /// the client itself; then verified, acted on and passed on.
    pub fn handle_input(&mut self, now: Instant, from: NeighbourId, mut env: Envelope) {
        let Some(n) = self.neighbours.get_mut(&from) else {
            return;
        };
        n.last_heard = now;
        if !self.charge(now, from) {
            return;
        }
        self.counters.received += 1;
        if let Body::Hello(hello) = env.body {
            self.on_hello(now, from, hello);
            self.after_table_change(now);
            return;
        }
        let Some(n) = self.neighbours.get(&from) else {
            return;
        };
        if n.node_id.is_none() {
            self.refuse(now, from);
            return;
        }
        if let Some(author) = env.body.author() {
            if self.people.is_blocked(&author.guid) {
                self.counters.blocked += 1;
                return;
            }
        }
        if !matches!(n.info.kind, NeighbourKind::Node { .. }) {
            let relays = self.relays(from);
            if !relays && !self.speaks_for_itself(from, &env) {
                self.refuse(now, from);
                return;
            }
            let own = self.proven_key(from).map(|k| *k.as_bytes());
            if let Body::Message(m) = &mut env.body {
                if m.plain_text {
                    // It reads what it writes: text, the reference client's way.
                    if let Some(n) = self.neighbours.get_mut(&from) {
                        n.plain_text = true;
                    }
                    m.plain_text = false;
                }
                // What a plain client says goes on marked as such; a proven client's key
                // goes with its messages so that relays verify them without asking.
                m.unsigned = !auth::key_form(&m.node_id.guid);
                if m.public_key.is_none() && !relays {
                    m.public_key = own;
                }
            }
        }
        self.dispatch(now, from, env);
        self.after_table_change(now);
    }

    /// Acts on a message from an identified neighbour (or one that waited for a key).
    pub(crate) fn dispatch(&mut self, now: Instant, from: NeighbourId, env: Envelope) {
        match env.body {
            Body::Hello(_) => {}
            Body::Ack(ref ack) if ack.recipient_id.is_none() => {
                self.on_ack(from, &ack.msg_id, ack.target_id)
            }
            Body::Routing(_) => self.on_routing(now, from, env),
            Body::Connect(_) => self.on_connect(now, from, env),
            Body::Join(_) | Body::Leave(_) | Body::Channel(_) => self.on_flooded(now, from, env),
            // A channel message comes flooded, or routed to one member (store-and-forward).
            Body::Message(ref m) if m.is_channel() && (env.flood || env.target_id.is_none()) => {
                self.on_flooded(now, from, env)
            }
            _ => self.on_routed(now, from, env),
        }
    }

    /// Puts back a message stored after a [`Output::Persist`] (after a restart). It is
    /// retried when a route to its target appears, and expires `queue_for` after now.
    pub fn restore(&mut self, now: Instant, stored: QueuedMessage) -> Result<(), MessageError> {
        let env = stored.envelope(&self.config.message)?;
        self.enqueue(now, stored.key, env, stored.target);
        self.after_table_change(now);
        Ok(())
    }

    /// Charges one refusal to `from`; cuts it off when its junk budget is spent.
    pub(crate) fn junk(&mut self, now: Instant, from: NeighbourId) {
        let Some(n) = self.neighbours.get_mut(&from) else {
            return;
        };
        if !n.junk.take(now) {
            self.cut_off(now, from, CutOffReason::Junk);
        }
    }

    pub(crate) fn refuse(&mut self, now: Instant, from: NeighbourId) {
        self.counters.refused += 1;
        self.junk(now, from);
    }

    pub(crate) fn cut_off(&mut self, now: Instant, id: NeighbourId, reason: CutOffReason) {
        if !self.neighbours.contains_key(&id) {
            return;
        }
        self.counters.cut_off += 1;
        self.neighbour_down(now, id);
        self.outputs.push_back(Output::Disconnect {
            neighbour: id,
            reason,
        });
    }

    /// Queues `message` for `to`, with the later revision's top-level fields filled in: a
    /// `msg_id` of its own for the verbs that have none in `msg_data`, and the target's name.
    pub(crate) fn transmit(&mut self, to: NeighbourId, mut message: Envelope) {
        if message.msg_id.is_none()
            && matches!(
                message.body,
                Body::Hello(_) | Body::Routing(_) | Body::Ack(_) | Body::Nack(_) | Body::Connect(_)
            )
        {
            message.msg_id = Some(self.new_msg_id());
        }
        if let Some(t) = &mut message.target_id {
            if t.name.is_none() {
                *t = self.chat_id(t.guid);
            }
        }
        if let Body::Message(m) = &mut message.body {
            let text = self.neighbours.get(&to).is_some_and(|n| n.plain_text);
            if text {
                m.plain_text = m
                    .message
                    .get(crypto::SIGNATURE_LEN..)
                    .is_some_and(|t| std::str::from_utf8(t).is_ok());
            }
        }
        self.outputs.push_back(Output::Transmit { to, message });
    }

    pub(crate) fn deliver(&mut self, event: ChatEvent) {
        self.outputs.push_back(Output::Deliver(event));
    }

    /// A fresh message id: a random UUID (version 4).
    pub(crate) fn new_msg_id(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        NodeId::from_bytes(b).to_string()
    }
}

/// A random delay of up to a tenth of `period`, so that nodes do not refresh in lockstep.
pub(crate) fn jitter(rng: &mut StdRng, period: std::time::Duration) -> std::time::Duration {
    let max = (period.as_millis() / 10).max(1) as u64;
    std::time::Duration::from_millis(rng.next_u64() % max)
}
