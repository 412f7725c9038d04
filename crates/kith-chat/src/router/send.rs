//! Sending routed copies on: to the best next hop (waiting for its ACK), or into the
//! store-and-forward queue until a route appears; again when a next hop fails.

use std::time::Instant;

use kith_crypto::NodeId;

use super::forward::Origin;
use super::queue::Unacked;
use super::store::AfterStore;
use super::{ChatEvent, NeighbourId, NeighbourKind, Output, QueuedMessage, Router};
use crate::message::{Body, Envelope};

impl Router {
    /// Sends a copy on towards `target`, or keeps it when there is no route. Returns whether
    /// the copy is in our hands now (false while the driver is asked to store it: the ACK to
    /// its previous hop waits for the answer).
    pub(crate) fn route_or_queue(
        &mut self,
        now: Instant,
        env: Envelope,
        target: NodeId,
        origin: Origin,
    ) -> bool {
        let from = match origin {
            Origin::Relay(n) => Some(n),
            _ => None,
        };
        let key = QueuedMessage::key_for(env.msg_id().unwrap_or(""), &target);
        if origin == Origin::LocalDurable {
            // Durable before it leaves: a crash before the receipt loses nothing.
            self.store_then(now, key, env, target, AfterStore::Local);
            return false;
        }
        let next = self
            .table
            .route(&target)
            .map(|r| r.next_hop)
            .filter(|hop| Some(*hop) != from);
        match (next, origin) {
            (Some(hop), _) => {
                self.send_tracked(now, hop, env, target, false);
                true
            }
            (None, Origin::LocalQueued) => {
                self.enqueue(now, key, env, target);
                true
            }
            // A receipt is only worth something now: its author sends again anyway.
            (None, Origin::Relay(_)) if matches!(env.body, Body::Ack(_)) => true,
            (None, Origin::Relay(from)) => {
                self.nack(&env);
                self.store_then(now, key, env, target, AfterStore::Relay { ack_to: from });
                false
            }
            (None, Origin::LocalDurable) => true,
        }
    }

    /// Our own copy, now stored: send it, or keep it (and tell the user) without a route.
    /// True when it went.
    pub(crate) fn send_stored(&mut self, now: Instant, env: Envelope, target: NodeId) -> bool {
        match self.table.route(&target) {
            Some(route) => {
                self.send_tracked(now, route.next_hop, env, target, true);
                true
            }
            None => {
                self.keep_own(now, env, target);
                false
            }
        }
    }

    /// Keeps our own copy for `target` until a route appears (its receipt clock stops
    /// meanwhile: attempts count only copies that left), and tells the user.
    pub(crate) fn keep_own(&mut self, now: Instant, env: Envelope, target: NodeId) {
        let msg_id = env.msg_id().unwrap_or_default().to_string();
        let key = QueuedMessage::key_for(&msg_id, &target);
        if self.wants_receipt(&env, &target) {
            self.receipts.park(&key, &env, target);
        }
        self.enqueue(now, key, env, target);
        self.deliver(ChatEvent::Queued { msg_id, target });
    }

    /// Transmits a routed copy and, to a kith node, waits for its ACK.
    pub(crate) fn send_tracked(
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
        self.sent_via(now, &env, target, hop);
        let key = QueuedMessage::key_for(env.msg_id().unwrap_or(""), &target);
        if node && env.verb().acknowledged() {
            while self.in_flight.len() >= self.config.max_in_flight.max(1) {
                let Some(old) = self.in_flight.evict_oldest() else {
                    break;
                };
                self.counters.queue_dropped += 1;
                let old_key =
                    QueuedMessage::key_for(old.envelope.msg_id().unwrap_or(""), &old.target);
                if old.persisted && !self.awaits_receipt(&old_key) {
                    self.outputs.push_back(Output::Forget { key: old_key });
                }
            }
            let deadline = now + self.config.ack_timeout;
            self.in_flight
                .add(hop, env.clone(), target, persisted, deadline);
        } else if persisted && !self.awaits_receipt(&key) {
            // A client does not ACK: handing it over is the end of our responsibility (unless
            // its recipient is to sign a receipt).
            self.transmit(hop, env);
            self.outputs.push_back(Output::Forget { key });
            return;
        }
        self.transmit(hop, env);
    }

    /// Keeps a copy in memory until a route to `target` appears (the caller had it stored,
    /// or it is not worth storing).
    pub(crate) fn enqueue(&mut self, now: Instant, key: String, env: Envelope, target: NodeId) {
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

    /// A copy whose next hop went away or never ACKed: route it again, or keep it.
    pub(crate) fn reroute(&mut self, now: Instant, copy: Unacked) {
        let key = QueuedMessage::key_for(copy.envelope.msg_id().unwrap_or(""), &copy.target);
        if self.wants_receipt(&copy.envelope, &copy.target) && !self.awaits_receipt(&key) {
            return; // delivered (the receipt came) or given up already
        }
        match self.table.route(&copy.target) {
            Some(r) => {
                self.send_tracked(now, r.next_hop, copy.envelope, copy.target, copy.persisted)
            }
            None if copy.persisted => {
                if self.awaits_receipt(&key) {
                    self.receipts.park(&key, &copy.envelope, copy.target);
                }
                self.enqueue(now, key, copy.envelope, copy.target)
            }
            None => self.store_then(now, key, copy.envelope, copy.target, AfterStore::Requeue),
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

    pub(crate) fn flush_queue_for(&mut self, now: Instant, target: NodeId) {
        let Some(route) = self.table.route(&target) else {
            return;
        };
        for (_key, waiting) in self.queue.take_for(&target) {
            // Stored when it was queued: the next hop's ACK (or the receipt) Forgets it.
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
}
