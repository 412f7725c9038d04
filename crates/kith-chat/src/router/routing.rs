//! ROUTING: what neighbours tell us, and what we tell them, batched.
//!
//! Who may route: kith nodes over secure links, and ptpchat routers on the chat port (a HELLO
//! saying `node_type: server`); plain clients are leaves and their ROUTING is refused. A
//! neighbour whose id a key derives (every kith node, a router that proved its key) signs
//! each ROUTING ([`auth::routing_bytes`]: bound to the receiver, to the challenge the
//! receiver gave it on this connection, and to an increasing `seq`); unsigned, badly signed
//! or replayed, it is refused and counted as forged. A router with a plain id cannot sign:
//! its routes are untrusted and capped ([`super::table`]). We sign every ROUTING we send.

use kith_crypto::NodeId;
use std::time::Instant;

use super::people::Source;
use super::{NeighbourId, Router};
use crate::auth;
use crate::message::{Body, Envelope, NodeType, RouteEntry, Routing};

impl Router {
    pub(crate) fn on_routing(&mut self, now: Instant, from: NeighbourId, env: Envelope) {
        let Body::Routing(routing) = env.body else {
            return;
        };
        let Some(n) = self.neighbours.get(&from) else {
            return;
        };
        let same = n
            .node_id
            .as_ref()
            .is_some_and(|id| id.guid == routing.node_id.guid);
        let routes = self.is_node(from) || n.node_type == Some(NodeType::Server);
        if !routes || !same {
            // Clients are leaves: believing their routes would let anyone hijack an id.
            self.refuse(now, from);
            return;
        }
        let sender = routing.node_id.guid;
        let entries: Vec<(NodeId, u32)> = routing
            .nodes
            .iter()
            .map(|e| (e.node_id.guid, e.ttl))
            .collect();
        if auth::key_form(&sender) {
            let challenge = n.challenge.clone();
            let last = n.routing_seq;
            let key = self.certs.get(&sender).copied();
            let valid = match (key, routing.seq, env.msg_id.as_deref()) {
                (Some(key), Some(seq), Some(msg_id)) if last.is_none_or(|l| seq > l) => {
                    let bytes = auth::routing_bytes(
                        msg_id,
                        &sender,
                        &self.me.guid,
                        &challenge,
                        seq,
                        &entries,
                    );
                    auth::check(&key, &routing.auth, &bytes)
                        .is_ok()
                        .then_some(seq)
                }
                _ => None,
            };
            let Some(seq) = valid else {
                self.counters.forged += 1;
                self.junk(now, from);
                return;
            };
            if let Some(n) = self.neighbours.get_mut(&from) {
                n.routing_seq = Some(seq);
            }
        }
        for e in routing
            .nodes
            .iter()
            .filter(|e| e.node_id.guid != self.me.guid)
        {
            self.people.heard(now, &e.node_id, Source::Hearsay);
        }
        let before = self.table.refused;
        self.table.apply(from, entries.into_iter());
        self.counters.routes_refused += self.table.refused - before;
    }

    /// Sends ROUTING to every identified neighbour: the changed destinations, or (`full`)
    /// every one, in messages of at most `max_list` entries.
    pub(crate) fn send_routing_update(&mut self, full: bool) {
        let dests: Vec<NodeId> = if full {
            let _ = self.table.take_dirty();
            let mut all: Vec<NodeId> = self.table.routes().map(|(d, _)| *d).collect();
            all.sort();
            all
        } else {
            self.table.take_dirty()
        };
        let infinity = u32::from(self.config.route_infinity);
        // Sleeping links are spared: they hear the whole table when they wake.
        let neighbours: Vec<(NeighbourId, NodeId)> = self
            .neighbours
            .iter()
            .filter(|(_, n)| !n.asleep)
            .filter_map(|(id, n)| n.node_id.as_ref().map(|c| (*id, c.guid)))
            .collect();
        for (to, their_id) in neighbours {
            let entries: Vec<(NodeId, u32)> = dests
                .iter()
                .filter(|d| **d != their_id)
                .map(|d| (*d, self.table.advertised(to, d)))
                // A refresh leaves out what the neighbour already heard was unreachable.
                .filter(|(_, hops)| !full || *hops < infinity)
                .collect();
            self.send_routing(to, their_id, entries);
        }
    }

    /// The full table to one neighbour that just said HELLO.
    pub(crate) fn send_table_to(&mut self, to: NeighbourId, their_id: NodeId) {
        let mut entries: Vec<(NodeId, u32)> = self
            .table
            .routes()
            .filter(|(d, r)| **d != their_id && r.next_hop != to)
            .map(|(d, r)| (*d, u32::from(r.hops)))
            .collect();
        entries.sort();
        self.send_routing(to, their_id, entries);
    }

    /// Signed ROUTING messages of at most `max_list` entries each.
    fn send_routing(&mut self, to: NeighbourId, their_id: NodeId, entries: Vec<(NodeId, u32)>) {
        let Some(challenge) = self.neighbours.get(&to).map(|n| n.peer_challenge.clone()) else {
            return;
        };
        for part in entries.chunks(self.config.message.max_list.max(1)) {
            let msg_id = self.new_msg_id();
            let seq = self.routing_seq;
            self.routing_seq += 1;
            let bytes =
                auth::routing_bytes(&msg_id, &self.me.guid, &their_id, &challenge, seq, part);
            let routing = Routing {
                node_id: self.me.clone(),
                nodes: part
                    .iter()
                    .map(|(d, hops)| RouteEntry {
                        node_id: self.chat_id(*d),
                        ttl: *hops,
                    })
                    .collect(),
                seq: Some(seq),
                auth: auth::sign(&self.identity, &bytes),
            };
            let mut env = Envelope::new(1, Body::Routing(routing));
            env.msg_id = Some(msg_id);
            self.transmit(to, env);
        }
    }
}
