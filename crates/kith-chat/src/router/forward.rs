//! Propagation: flooding with the duplicate cache, routing with per-hop ACKs, the
//! store-and-forward queue, NACKs and ROUTING updates.

use std::time::Instant;

use kith_crypto::NodeId;

use super::queue::Unacked;
use super::{NeighbourId, NeighbourKind, Output, QueuedMessage, Router};
use crate::message::{Ack, Body, ChatId, Envelope, Nack, RouteEntry, Routing};

/// Who a routed copy comes from, which decides whether it is kept when it cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Passing through: kept (and NACKed to its author) when there is no route.
    Relay(NeighbourId),
    /// Ours and worth keeping (a MESSAGE, a KEY): persisted until the first hop ACKs it.
    LocalDurable,
    /// Ours, worth a wait but not a disk write (certificate and key requests and answers):
    /// kept in memory while there is no route.
    LocalQueued,
}

impl Router {
    /// Acts on the first copy of a flooded message and passes it on; false for a duplicate.
    pub(crate) fn flood_onward(
        &mut self,
        now: Instant,
        from: Option<NeighbourId>,
        env: &Envelope,
    ) -> bool {
        let Some(msg_id) = env.msg_id() else {
            return false;
        };
        if !self.seen.insert(now, (msg_id.to_string(), None)) {
            self.counters.duplicates += 1;
            return false;
        }
        self.counters.flooded += 1;
        let ttl = if from.is_some() {
            env.ttl.saturating_sub(1)
        } else {
            env.ttl
        };
        if ttl == 0 {
            return true;
        }
        let copy = Envelope {
            ttl,
            flood: true,
            target_id: None,
            body: env.body.clone(),
        };
        let targets: Vec<NeighbourId> = self
            .neighbours
            .iter()
            .filter(|(id, n)| Some(**id) != from && n.node_id.is_some())
            .map(|(id, _)| *id)
            .collect();
        for to in targets {
            self.transmit(to, copy.clone());
        }
        true
    }

    /// Floods a message this node originates.
    pub(crate) fn flood_local(&mut self, now: Instant, body: Body) {
        let env = Envelope {
            ttl: self.config.default_ttl,
            flood: true,
            target_id: None,
            body,
        };
        self.flood_onward(now, None, &env);
    }

    /// Where a routed message (other than CONNECT) is going: one target per copy.
    fn targets(&self, env: &Envelope) -> Vec<NodeId> {
        if let Some(t) = env.target_id {
            return vec![t];
        }
        let me = self.me.guid;
        match &env.body {
            Body::Nack(m) => vec![m.recipient_id.unwrap_or(me)],
            Body::GetCertificate(m) => vec![m.recipient_id.unwrap_or(me)],
            Body::GetKey(m) => vec![m.recipient_id.unwrap_or(me)],
            Body::Certificate(m) => vec![m.recipient_id.guid],
            Body::Key(m) => vec![m.recipient_id.guid],
            Body::Message(m) => {
                let mut t: Vec<NodeId> = m.recipient.iter().map(|r| r.guid).collect();
                t.sort();
                t.dedup();
                t
            }
            _ => Vec::new(),
        }
    }

    /// A routed message from a neighbour: one copy per target, each acted on once.
    pub(crate) fn on_routed(&mut self, now: Instant, from: NeighbourId, env: Envelope) {
        let verb = env.verb();
        for target in self.targets(&env) {
            let mut copy = env.clone();
            copy.target_id = Some(target);
            let msg_id = copy.msg_id().unwrap_or_default().to_string();
            let first = self.seen.insert(now, (msg_id.clone(), Some(target)));
            if first {
                if target == self.me.guid {
                    self.on_local(now, from, copy);
                } else {
                    copy.ttl = copy.ttl.saturating_sub(1);
                    if copy.ttl == 0 {
                        self.counters.ttl_expired += 1;
                        self.nack(&copy);
                    } else {
                        self.counters.routed += 1;
                        self.route_or_queue(now, copy, target, Origin::Relay(from));
                    }
                }
            } else {
                self.counters.duplicates += 1;
            }
            // After any Persist the copy needed, so that an ACK always means "kept".
            if verb.acknowledged() {
                self.send_ack(from, msg_id, Some(target));
            }
        }
    }

    pub(crate) fn send_ack(&mut self, to: NeighbourId, msg_id: String, target: Option<NodeId>) {
        let ack = Ack {
            node_id: Some(self.me.clone()),
            msg_id,
            target_id: target,
        };
        self.transmit(to, Envelope::new(1, Body::Ack(ack)));
    }

    pub(crate) fn on_ack(&mut self, from: NeighbourId, msg_id: &str, target: Option<NodeId>) {
        for copy in self.in_flight.ack(from, msg_id, target) {
            if copy.persisted {
                let key = QueuedMessage::key_for(msg_id, &copy.target);
                self.outputs.push_back(Output::Forget { key });
            }
        }
    }

    /// Sends a copy on towards `target`, or keeps it when there is no route.
    pub(crate) fn route_or_queue(
        &mut self,
        now: Instant,
        env: Envelope,
        target: NodeId,
        origin: Origin,
    ) {
        let from = match origin {
            Origin::Relay(n) => Some(n),
            _ => None,
        };
        let key = QueuedMessage::key_for(env.msg_id().unwrap_or(""), &target);
        if origin == Origin::LocalDurable {
            // Durable before it leaves: a crash before the first hop's ACK loses nothing.
            self.persist(&key, &env, target);
        }
        let next = self
            .table
            .route(&target)
            .map(|r| r.next_hop)
            .filter(|hop| Some(*hop) != from);
        match next {
            Some(hop) => self.send_tracked(now, hop, env, target, origin == Origin::LocalDurable),
            None => match origin {
                Origin::LocalQueued => self.enqueue(now, key, env, target, false),
                Origin::LocalDurable => {
                    let msg_id = env.msg_id().unwrap_or_default().to_string();
                    self.enqueue(now, key, env, target, false);
                    self.deliver(super::ChatEvent::Queued { msg_id, target });
                }
                Origin::Relay(_) => {
                    self.nack(&env);
                    self.enqueue(now, key, env, target, true);
                }
            },
        }
    }

    /// Transmits a routed copy and, to a kith node, waits for its ACK.
    fn send_tracked(
        &mut self,
        now: Instant,
        hop: NeighbourId,
        env: Envelope,
        target: NodeId,
        persisted: bool,
    ) {
        let node = self
            .neighbours
            .get(&hop)
            .is_some_and(|n| matches!(n.info.kind, NeighbourKind::Node { .. }));
        if node && env.verb().acknowledged() {
            while self.in_flight.len() >= self.config.max_in_flight.max(1) {
                let Some(old) = self.in_flight.evict_oldest() else {
                    break;
                };
                self.counters.queue_dropped += 1;
                if old.persisted {
                    let key =
                        QueuedMessage::key_for(old.envelope.msg_id().unwrap_or(""), &old.target);
                    self.outputs.push_back(Output::Forget { key });
                }
            }
            let deadline = now + self.config.ack_timeout;
            self.in_flight
                .add(hop, env.clone(), target, persisted, deadline);
        } else if persisted {
            // A client does not ACK: handing it over is the end of our responsibility.
            let key = QueuedMessage::key_for(env.msg_id().unwrap_or(""), &target);
            self.transmit(hop, env);
            self.outputs.push_back(Output::Forget { key });
            return;
        }
        self.transmit(hop, env);
    }

    fn persist(&mut self, key: &str, env: &Envelope, target: NodeId) {
        self.outputs.push_back(Output::Persist(QueuedMessage {
            key: key.to_string(),
            target,
            json: env.encode(),
        }));
    }

    /// Keeps a copy until a route to `target` appears; `persist` when the driver does not hold
    /// it yet.
    pub(crate) fn enqueue(
        &mut self,
        now: Instant,
        key: String,
        env: Envelope,
        target: NodeId,
        persist: bool,
    ) {
        if persist {
            self.persist(&key, &env, target);
        }
        self.counters.queued += 1;
        let expires = now + self.config.queue_for;
        if let Some(evicted) = self
            .queue
            .push(key, env, target, expires, self.config.max_queued)
        {
            self.counters.queue_dropped += 1;
            self.outputs.push_back(Output::Forget { key: evicted });
        }
    }

    /// A copy whose next hop went away or never ACKed: route it again (or keep it).
    pub(crate) fn reroute(&mut self, now: Instant, copy: Unacked) {
        let key = QueuedMessage::key_for(copy.envelope.msg_id().unwrap_or(""), &copy.target);
        match self.table.route(&copy.target) {
            Some(r) => {
                self.send_tracked(now, r.next_hop, copy.envelope, copy.target, copy.persisted)
            }
            None => self.enqueue(now, key, copy.envelope, copy.target, !copy.persisted),
        }
    }

    /// Sends what waits for destinations that became reachable, and schedules the batched
    /// ROUTING update for whatever changed.
    pub(crate) fn after_table_change(&mut self, now: Instant) {
        let reachable = self.table.take_reachable();
        if self.queue.len() > 0 {
            for target in reachable {
                self.flush_queue_for(now, target);
            }
        }
        if self.table.has_dirty() && self.next_routing_flush.is_none() {
            self.next_routing_flush = Some(now + self.config.routing_batch);
        }
    }

    fn flush_queue_for(&mut self, now: Instant, target: NodeId) {
        let Some(route) = self.table.route(&target) else {
            return;
        };
        for (_key, waiting) in self.queue.take_for(&target) {
            // Persisted when it was queued: the ACK of the next hop Forgets it.
            self.send_tracked(now, route.next_hop, waiting.envelope, target, true);
        }
    }

    /// The periodic backstop: try again everything that has a route now (its earlier next hop
    /// may have been alive but silent).
    pub(crate) fn retry_queue(&mut self, now: Instant) {
        let targets = self.queue.targets();
        for target in targets {
            self.flush_queue_for(now, target);
        }
    }

    /// A NACK to the author of `env`, which stopped here.
    pub(crate) fn nack(&mut self, env: &Envelope) {
        let author = match &env.body {
            Body::Message(m) => Some(m.node_id.guid),
            Body::GetCertificate(m) => Some(m.node_id.guid),
            Body::Certificate(m) => Some(m.node_id.guid),
            Body::GetKey(m) => Some(m.node_id.guid),
            Body::Key(m) => Some(m.node_id.guid),
            _ => None,
        };
        let (Some(author), Some(msg_id)) = (author, env.msg_id()) else {
            return;
        };
        if author == self.me.guid {
            return;
        }
        let Some(route) = self.table.route(&author) else {
            return;
        };
        self.counters.nacks_sent += 1;
        let nack = Nack {
            node_id: self.me.clone(),
            msg_id: msg_id.to_string(),
            recipient_id: Some(author),
        };
        let mut out = Envelope::new(self.config.default_ttl, Body::Nack(nack));
        out.target_id = Some(author);
        self.transmit(route.next_hop, out);
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
