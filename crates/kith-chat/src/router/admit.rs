//! Who a neighbour is: HELLO, the proof of a client's key, and what a client may say.
//!
//! A kith node over a secure link is who its link key says: its HELLO must carry the id that
//! key derives. A chat-port client is who it proves to be:
//!
//! 1. It says HELLO with its id. The node answers with its own HELLO carrying a fresh
//!    `challenge` (and, when the client's HELLO carried a challenge, the node's own proof).
//! 2. An id of the key-derived form ([`auth::key_form`]) counts only once proven: the client
//!    sends HELLO again with `public_key` (which must derive the id) and `signature` over
//!    [`auth::hello_bytes`] (the challenge, the node's GUID, its own GUID). Until then
//!    nothing is routed to it, no queued message is released, and everything but HELLO is
//!    refused; after `proof_timeout` it is cut off.
//! 3. Any other id is a plain client's: identified at once, a leaf bound to this connection,
//!    speaking only for itself, unsigned.
//!
//! No client may take this node's id, another live neighbour's (identified or still proving),
//! or, with a plain id, an id reachable elsewhere. A client is a leaf: its ROUTING is refused,
//! and every message it sends must speak for itself.

use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kith_crypto::{AgentId, NodeId};
use rand::RngCore;

use super::people::Source;
use super::{ChatEvent, CutOffReason, NeighbourId, NeighbourKind, Router};
use crate::auth;
use crate::message::{Auth, Body, ChatId, Envelope, Hello, NodeType};

/// How often a linked node's repeated HELLO is answered with ours at most.
const REHELLO_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the router knows of who a neighbour is.
#[derive(Debug, Clone)]
pub(crate) enum Ident {
    /// A kith node; its key is the link's.
    Node(AgentId),
    /// A client that has not said HELLO yet.
    Unknown,
    /// A client that claimed a key-form id and has until `deadline` to prove it.
    Claimed {
        id: ChatId,
        node_type: NodeType,
        deadline: Instant,
    },
    /// A client that proved the key of its id.
    Proven(AgentId),
    /// A client with an id no key derives.
    Plain,
}

impl Router {
    /// A fresh challenge for a client's HELLO answer: 32 random bytes, base64.
    pub(crate) fn new_challenge(&mut self) -> String {
        let mut b = [0u8; 32];
        self.rng.fill_bytes(&mut b);
        STANDARD.encode(b)
    }

    /// Whether some other neighbour than `except` is identified as `guid`. A mere claim does
    /// not count: several connections may claim an id at once, and the first to prove it
    /// takes it (so an impostor's claim cannot lock the real node out).
    fn id_in_use(&self, except: NeighbourId, guid: &NodeId) -> bool {
        self.neighbours
            .iter()
            .any(|(id, n)| *id != except && n.node_id.as_ref().is_some_and(|c| c.guid == *guid))
    }

    pub(crate) fn on_hello(&mut self, now: Instant, from: NeighbourId, hello: Hello) {
        let Some(n) = self.neighbours.get_mut(&from) else {
            return;
        };
        if let Some(c) = &hello.challenge {
            n.peer_challenge = c.clone();
        }
        let asked = hello
            .challenge
            .as_deref()
            .map(|c| (c.to_string(), hello.node_id.guid));
        if let Some(known) = n.node_id.clone() {
            // A second HELLO on the same connection: harmless if it says the same (a new
            // name is taken; a challenge, answered).
            if known != hello.node_id {
                self.refuse(now, from);
                return;
            }
            if hello.node_id.name.is_some() {
                if let Some(n) = self.neighbours.get_mut(&from) {
                    n.node_id = Some(hello.node_id.clone());
                }
                self.people.heard(now, &hello.node_id, Source::Own);
            }
            self.answer_challenge(from, asked);
            // A kith node that says HELLO again over its link may have restarted behind a link
            // that never looked down here: it needs our HELLO and table again, and its ROUTING
            // starts over (a secure link cannot replay). At most once a second, so two nodes
            // never keep answering each other's HELLO.
            let node = self.is_node(from);
            if let Some(n) = self.neighbours.get_mut(&from) {
                let due = n
                    .rehello_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= REHELLO_EVERY);
                if node && due {
                    n.rehello_at = Some(now);
                    n.hello_sent = false;
                    n.routing_seq = None;
                    self.send_hello(from);
                    self.send_table_to(from, known.guid);
                    self.announce_channels_to(from);
                }
            }
            return;
        }
        let guid = hello.node_id.guid;
        let ident = n.ident.clone();
        let dialled = matches!(n.info.kind, NeighbourKind::Router);
        let server = hello.node_type == NodeType::Server;
        match ident {
            Ident::Node(agent) => {
                if agent.node_id() != guid || self.id_in_use(from, &guid) {
                    return self.refuse_identity(now, from);
                }
                self.certs.bind(guid, agent);
                self.answer_challenge(from, asked);
                self.send_hello(from);
                self.identify(now, from, hello.node_id, hello.node_type);
            }
            Ident::Unknown => {
                if guid == self.me.guid || self.id_in_use(from, &guid) {
                    return self.refuse_identity(now, from);
                }
                if auth::key_form(&guid) {
                    self.answer_challenge(from, asked);
                    self.send_hello(from);
                    // A node we dialled may prove its key in its first HELLO (ours, with our
                    // challenge, went first).
                    if hello.auth.signature.is_some() {
                        return self.check_proof(now, from, hello);
                    }
                    if let Some(n) = self.neighbours.get_mut(&from) {
                        n.ident = Ident::Claimed {
                            id: hello.node_id,
                            node_type: hello.node_type,
                            deadline: now + self.config.proof_timeout,
                        };
                    }
                    self.proof_deadlines
                        .push_back((now + self.config.proof_timeout, from));
                } else {
                    // A plain client may not shadow an id reachable elsewhere (another node's
                    // client): both would lose their messages. A router we reach directly
                    // may: its direct route wins over one through others.
                    let shadows = self.table.route(&guid).is_some();
                    if shadows && !(server || dialled) {
                        return self.refuse_identity(now, from);
                    }
                    if let Some(n) = self.neighbours.get_mut(&from) {
                        n.ident = Ident::Plain;
                        // A later-revision client without a key reads text, as it writes it.
                        n.plain_text = hello.later_revision && !server;
                    }
                    self.answer_challenge(from, asked);
                    self.send_hello(from);
                    self.identify(now, from, hello.node_id, hello.node_type);
                }
            }
            Ident::Claimed { id, .. } => {
                if id != hello.node_id || self.id_in_use(from, &guid) {
                    return self.refuse_identity(now, from);
                }
                self.answer_challenge(from, asked);
                self.check_proof(now, from, hello);
            }
            Ident::Proven(_) | Ident::Plain => {}
        }
    }

    /// A HELLO that should prove the key of its key-derived id over our challenge: the
    /// neighbour is identified, or cut off.
    fn check_proof(&mut self, now: Instant, from: NeighbourId, hello: Hello) {
        let Some(n) = self.neighbours.get(&from) else {
            return;
        };
        let guid = hello.node_id.guid;
        let node_type = match &n.ident {
            Ident::Claimed { node_type, .. } => *node_type,
            _ => hello.node_type,
        };
        let challenge = n.challenge.clone();
        let proven = auth::named_key(&hello.auth, &guid)
            .ok()
            .flatten()
            .filter(|key| {
                let bytes = auth::hello_bytes(&challenge, &self.me.guid, &guid);
                !challenge.is_empty() && auth::check(key, &hello.auth, &bytes).is_ok()
            });
        let Some(key) = proven else {
            return self.refuse_identity(now, from);
        };
        self.certs.bind(guid, key);
        if let Some(n) = self.neighbours.get_mut(&from) {
            n.ident = Ident::Proven(key);
        }
        self.identify(now, from, hello.node_id, node_type);
    }

    /// Proves our key over `asked` (the neighbour's challenge, and its GUID), once per
    /// connection, in a HELLO of its own if ours went out already.
    fn answer_challenge(&mut self, to: NeighbourId, asked: Option<(String, NodeId)>) {
        let Some((challenge, peer)) = asked else {
            return;
        };
        let Some(n) = self.neighbours.get(&to) else {
            return;
        };
        if n.proved {
            return;
        }
        let on_port = !matches!(n.info.kind, NeighbourKind::Node { .. });
        let fresh = (on_port && n.challenge.is_empty()).then(|| self.new_challenge());
        let Some(n) = self.neighbours.get_mut(&to) else {
            return;
        };
        n.proved = true;
        // This HELLO is ours if none went out yet.
        n.hello_sent = true;
        if let Some(c) = fresh {
            n.challenge = c;
        }
        let proof = auth::sign(
            &self.identity,
            &auth::hello_bytes(&challenge, &peer, &self.me.guid),
        );
        let challenge = (!n.challenge.is_empty()).then(|| n.challenge.clone());
        let hello = self.hello_body(challenge, proof);
        self.transmit(to, Envelope::new(1, Body::Hello(hello)));
    }

    fn refuse_identity(&mut self, now: Instant, from: NeighbourId) {
        self.counters.hello_refused += 1;
        self.cut_off(now, from, CutOffReason::IdentityRefused);
    }

    /// The neighbour is who it said: it becomes a route, hears our table and our channels;
    /// whoever else still claims its id is cut off.
    fn identify(&mut self, now: Instant, from: NeighbourId, id: ChatId, node_type: NodeType) {
        let guid = id.guid;
        let claimants: Vec<NeighbourId> = self
            .neighbours
            .iter()
            .filter(|(n, nb)| {
                **n != from && matches!(&nb.ident, Ident::Claimed { id, .. } if id.guid == guid)
            })
            .map(|(n, _)| *n)
            .collect();
        for c in claimants {
            self.refuse_identity(now, c);
        }
        if let Some(n) = self.neighbours.get_mut(&from) {
            n.node_id = Some(id.clone());
            n.node_type = Some(node_type);
            n.rehello_at = Some(now);
        }
        self.people.heard(now, &id, Source::Own);
        let untrusted = !self.is_node(from)
            && !matches!(
                self.neighbours.get(&from).map(|n| &n.ident),
                Some(Ident::Proven(_))
            );
        self.table.set_untrusted(from, untrusted);
        self.deliver(ChatEvent::NeighbourIdentified {
            neighbour: from,
            node_id: id,
        });
        self.table.add_neighbour(from, guid);
        self.send_table_to(from, guid);
        self.announce_channels_to(from);
    }

    /// Cuts off clients that claimed a key-form id and did not prove it in time.
    pub(crate) fn expire_claims(&mut self, now: Instant) {
        while let Some((at, id)) = self.proof_deadlines.front().copied() {
            if at > now {
                break;
            }
            self.proof_deadlines.pop_front();
            let unproven = self.neighbours.get(&id).is_some_and(
                |n| matches!(n.ident, Ident::Claimed { deadline, .. } if deadline <= now),
            );
            if unproven {
                self.refuse_identity(now, id);
            }
        }
    }

    /// Our HELLO to `to` (once): to a chat-port connection, with a challenge of ours (kept
    /// for the connection's life: ROUTING signatures name it).
    pub(crate) fn send_hello(&mut self, to: NeighbourId) {
        let Some(n) = self.neighbours.get(&to) else {
            return;
        };
        if n.hello_sent {
            return;
        }
        let on_port = !matches!(n.info.kind, NeighbourKind::Node { .. });
        let fresh = (on_port && n.challenge.is_empty()).then(|| self.new_challenge());
        let Some(n) = self.neighbours.get_mut(&to) else {
            return;
        };
        n.hello_sent = true;
        if let Some(c) = fresh {
            n.challenge = c;
        }
        let challenge = (!n.challenge.is_empty()).then(|| n.challenge.clone());
        let hello = self.hello_body(challenge, Auth::default());
        self.transmit(to, Envelope::new(1, Body::Hello(hello)));
    }

    fn hello_body(&self, challenge: Option<String>, auth: Auth) -> Hello {
        Hello {
            node_id: self.me.clone(),
            version: Some(self.config.version.clone()),
            node_type: self.config.node_type,
            challenge,
            auth,
            later_revision: false,
        }
    }

    /// Whether `from` relays for others: a kith node, or a chat-port neighbour whose HELLO
    /// said `node_type: server` (a ptpchat router).
    pub(crate) fn relays(&self, from: NeighbourId) -> bool {
        self.neighbours.get(&from).is_some_and(|n| {
            matches!(n.info.kind, NeighbourKind::Node { .. })
                || n.node_type == Some(NodeType::Server)
        })
    }

    /// Whether a client's message speaks only for the client itself (a leaf may not relay,
    /// route or speak for anyone else); a plain client, which has no key, may not send keys,
    /// certificates or receipts either.
    pub(crate) fn speaks_for_itself(&self, from: NeighbourId, env: &Envelope) -> bool {
        let Some(n) = self.neighbours.get(&from) else {
            return false;
        };
        let Some(me) = n.node_id.as_ref().map(|i| i.guid) else {
            return false;
        };
        let plain = matches!(n.ident, Ident::Plain);
        match &env.body {
            Body::Routing(_) | Body::Hello(_) => false,
            Body::Connect(c) => c.src_node_id.guid == me || c.dst_node_id.guid == me,
            Body::Ack(a) if a.recipient_id.is_none() => {
                a.node_id.as_ref().is_none_or(|i| i.guid == me)
            }
            Body::Ack(_) | Body::Key(_) | Body::Certificate(_) if plain => false,
            Body::Leave(m) if plain => {
                m.member.as_ref().is_none_or(|x| x.guid == me) && m.node_id.guid == me
            }
            body => body.author().is_some_and(|a| a.guid == me),
        }
    }

    /// The key a client proved, if it did.
    pub(crate) fn proven_key(&self, from: NeighbourId) -> Option<AgentId> {
        match self.neighbours.get(&from)?.ident {
            Ident::Proven(key) => Some(key),
            _ => None,
        }
    }
}
