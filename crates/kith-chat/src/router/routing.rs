//! ROUTING: what neighbours tell us (only kith nodes over secure links, about what they can
//! reach), and what we tell them, batched.

use kith_crypto::NodeId;
use std::time::Instant;

use super::{NeighbourId, NeighbourKind, Router};
use crate::message::{Body, ChatId, Envelope, RouteEntry, Routing};

impl Router {
    pub(crate) fn on_routing(&mut self, now: Instant, from: NeighbourId, routing: Routing) {
        let Some(n) = self.neighbours.get(&from) else {
            return;
        };
        let from_node = matches!(n.info.kind, NeighbourKind::Node { .. });
        let same = n
            .node_id
            .as_ref()
            .is_some_and(|id| id.guid == routing.node_id.guid);
        if !from_node || !same {
            // Clients are leaves: believing their routes would let anyone hijack an id.
            self.refuse(now, from);
            return;
        }
        self.table.apply(
            from,
            routing.nodes.into_iter().map(|e| (e.node_id.guid, e.ttl)),
        );
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
        let neighbours: Vec<(NeighbourId, NodeId)> = self
            .neighbours
            .iter()
            .filter_map(|(id, n)| n.node_id.as_ref().map(|c| (*id, c.guid)))
            .collect();
        let chunk = self.config.message.max_list.max(1);
        for (to, their_id) in neighbours {
            let entries: Vec<RouteEntry> = dests
                .iter()
                .filter(|d| **d != their_id)
                .map(|d| RouteEntry {
                    node_id: ChatId::new(*d),
                    ttl: self.table.advertised(to, d),
                })
                // A refresh leaves out what the neighbour already heard was unreachable.
                .filter(|e| !full || e.ttl < infinity)
                .collect();
            for part in entries.chunks(chunk) {
                let routing = Routing {
                    node_id: self.me.clone(),
                    nodes: part.to_vec(),
                };
                self.transmit(to, Envelope::new(1, Body::Routing(routing)));
            }
        }
    }

    /// The full table to one neighbour that just said HELLO.
    pub(crate) fn send_table_to(&mut self, to: NeighbourId, their_id: NodeId) {
        let mut entries: Vec<RouteEntry> = self
            .table
            .routes()
            .filter(|(d, r)| **d != their_id && r.next_hop != to)
            .map(|(d, r)| RouteEntry {
                node_id: ChatId::new(*d),
                ttl: u32::from(r.hops),
            })
            .collect();
        entries.sort_by_key(|e| e.node_id.guid);
        for part in entries.chunks(self.config.message.max_list.max(1)) {
            let routing = Routing {
                node_id: self.me.clone(),
                nodes: part.to_vec(),
            };
            self.transmit(to, Envelope::new(1, Body::Routing(routing)));
        }
    }
}
