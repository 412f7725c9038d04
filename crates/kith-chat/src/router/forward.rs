//! Propagation of what neighbours send: flooding with the duplicate cache, routed copies one
//! per target, per-hop ACKs and NACKs. Everything is verified ([`super::verify`]) before it is
//! acted on or passed on.

use std::time::Instant;

use kith_crypto::NodeId;

use super::caches::{FLOODED, ROUTED};
use super::verify::Gate;
use super::{NeighbourId, Output, QueuedMessage, Router};
use crate::message::{Ack, Auth, Body, Envelope, Nack, Verb};

/// Who a routed copy comes from, which decides whether it is kept when it cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Passing through: kept (and NACKed to its author) when there is no route.
    Relay(NeighbourId),
    /// Ours and worth keeping (a MESSAGE, a KEY): persisted before it leaves, kept until the
    /// recipient's receipt (or, for a plain recipient, the first hop's ACK).
    LocalDurable,
    /// Ours, worth a wait but not a disk write (certificate and key requests and answers):
    /// kept in memory while there is no route.
    LocalQueued,
}

impl Router {
    /// Passes on the first copy of a flooded message (recording it as seen); false for a
    /// duplicate.
    pub(crate) fn flood_onward(
        &mut self,
        now: Instant,
        from: Option<NeighbourId>,
        env: &Envelope,
    ) -> bool {
        let (Some(msg_id), Some(author)) = (env.msg_id(), env.body.author()) else {
            return false;
        };
        if !self
            .seen
            .insert(now, (msg_id.to_string(), author.guid, FLOODED))
        {
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
            msg_id: env.msg_id.clone(),
            target_id: None,
            body: env.body.clone(),
        };
        // A sleeping link is not woken for channel state (it hears it again on waking).
        let state = matches!(env.body, Body::Channel(_));
        let targets: Vec<NeighbourId> = self
            .neighbours
            .iter()
            .filter(|(id, n)| Some(**id) != from && n.node_id.is_some())
            .filter(|(_, n)| !(state && n.asleep))
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
            msg_id: None,
            target_id: None,
            body,
        };
        self.flood_onward(now, None, &env);
    }

    /// JOIN, LEAVE, CHANNEL or a channel MESSAGE from a neighbour: verified, then passed on
    /// and acted on once.
    pub(crate) fn on_flooded(&mut self, now: Instant, from: NeighbourId, env: Envelope) {
        let (Some(msg_id), Some(author)) = (env.msg_id(), env.body.author()) else {
            return;
        };
        let (msg_id, author) = (msg_id.to_string(), author.guid);
        // Acknowledge hop by hop what the sender did not flood itself.
        let ack = matches!(env.body, Body::Message(_)) && !env.flood;
        if self.seen.contains(now, &(msg_id.clone(), author, FLOODED)) {
            self.counters.duplicates += 1;
            if ack {
                self.send_ack(from, msg_id, None);
            }
            return;
        }
        let gate = match self.authenticate(&env) {
            Gate::Wait => return self.hold(now, from, env),
            Gate::Refuse => return self.junk(now, from),
            gate => gate,
        };
        if !self.charge_origin(now, from, &env) {
            return;
        }
        if ack {
            self.send_ack(from, msg_id, None);
        }
        if !self.flood_onward(now, Some(from), &env) {
            return;
        }
        let signed = gate == Gate::Signed;
        match env.body {
            Body::Message(m) => self.on_channel_message(now, m, signed, true),
            body => self.on_channel_verb(now, body, signed),
        }
    }

    /// Where a routed message (other than CONNECT) is going: one target per copy.
    fn targets(&self, env: &Envelope) -> Vec<NodeId> {
        if let Some(t) = env.target() {
            return vec![t];
        }
        let me = self.me.guid;
        match &env.body {
            Body::Nack(m) => vec![m.recipient_id.unwrap_or(me)],
            Body::Ack(m) => m.recipient_id.into_iter().collect(),
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

    /// A routed message from a neighbour: verified once, then one copy per target, each
    /// delivered here once or passed on.
    pub(crate) fn on_routed(&mut self, now: Instant, from: NeighbourId, env: Envelope) {
        let gate = match self.authenticate(&env) {
            Gate::Wait => return self.hold(now, from, env),
            Gate::Refuse => return self.junk(now, from),
            gate => gate,
        };
        if !self.charge_origin(now, from, &env) {
            return;
        }
        let verb = env.verb();
        for target in self.targets(&env) {
            let mut copy = env.clone();
            copy.target_id = Some(self.chat_id(target));
            let msg_id = copy.msg_id().unwrap_or_default().to_string();
            let mut ack_now = true;
            if target == self.me.guid {
                let author = copy.body.author().map(|a| a.guid);
                // Keyed by author too: every recipient's receipt for one message carries
                // that message's id.
                let first = self
                    .delivered
                    .insert(now, (msg_id.clone(), author.unwrap_or(target), ROUTED));
                if first {
                    self.on_local(now, from, copy, gate == Gate::Signed);
                } else {
                    self.counters.duplicates += 1;
                }
                // A duplicate is a retry: the receipt was lost, so it goes again.
                if let (Gate::Signed, Some(author)) = (gate, author) {
                    if matches!(verb, Verb::Message | Verb::Key) {
                        self.send_receipt(now, &msg_id, author);
                    }
                }
            } else {
                if let Body::Ack(receipt) = &copy.body {
                    self.observe_receipt(now, receipt);
                }
                copy.ttl = copy.ttl.saturating_sub(1);
                if copy.ttl == 0 {
                    self.counters.ttl_expired += 1;
                    self.nack(&copy);
                } else {
                    self.counters.routed += 1;
                    self.relayed_again(now, &copy, target);
                    ack_now = self.route_or_queue(now, copy, target, Origin::Relay(from));
                }
            }
            // After the copy is kept (a Persist answered), so that an ACK always means "kept".
            if verb.acknowledged() && ack_now {
                self.send_ack(from, msg_id, Some(target));
            }
        }
    }

    pub(crate) fn send_ack(&mut self, to: NeighbourId, msg_id: String, target: Option<NodeId>) {
        let ack = Ack {
            node_id: Some(self.me.clone()),
            msg_id,
            target_id: target,
            recipient_id: None,
            auth: Auth::default(),
        };
        self.transmit(to, Envelope::new(1, Body::Ack(ack)));
    }

    /// A per-hop ACK: the next hop holds the copies it covers. Ours stay stored until the
    /// recipient's receipt when one is expected.
    pub(crate) fn on_ack(&mut self, from: NeighbourId, msg_id: &str, target: Option<NodeId>) {
        for copy in self.in_flight.ack(from, msg_id, target) {
            let key = QueuedMessage::key_for(msg_id, &copy.target);
            if copy.persisted && !self.awaits_receipt(&key) {
                self.outputs.push_back(Output::Forget { key });
            }
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
        out.target_id = Some(self.chat_id(author));
        self.transmit(route.next_hop, out);
    }
}
