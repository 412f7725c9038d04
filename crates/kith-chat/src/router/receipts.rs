//! End-to-end receipts: a route claim is only a claim, so delivery is proven by the recipient.
//!
//! The recipient of a MESSAGE or KEY signs a receipt ([`auth::receipt_bytes`]) and routes it
//! back to the author as an ACK with `recipient_id` (the seed's ACK only answers one hop).
//! The author keeps its copy (persisted) until the receipt comes, not merely until the first
//! hop's ACK. When `receipt_timeout` passes without one, it demotes the next hop it used for
//! that recipient and sends the copy again, over another path if there is one, waiting twice
//! as long each time, up to `max_attempts` sends.
//!
//! Relays learn the same way: each remembers (bounded) the next hop it gave each copy. A
//! copy that comes again is a retry (the author got no receipt), so the relay demotes the hop
//! it used before; a receipt that passes back through it confirms that hop. So a neighbour
//! that claims a short route and swallows what it gets is routed around wherever it sits, and
//! a confirmed path is not given up for anyone's claim.
//!
//! Only key-derived recipients can sign receipts: messages to plain clients are acknowledged
//! hop by hop, as in the seed, with no end-to-end assurance.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use kith_crypto::NodeId;

use super::forward::Origin;
use super::table::Mark;
use super::{ChatEvent, NeighbourId, Output, QueuedMessage, Router};
use crate::auth;
use crate::message::{Ack, Auth, Body, Envelope, Verb};

#[derive(Debug)]
struct Awaiting {
    envelope: Envelope,
    target: NodeId,
    hop: Option<NeighbourId>,
    attempt: u32,
    /// `None` while the copy waits in the queue for a route: the clock runs only for copies
    /// that left.
    deadline: Option<Instant>,
    seq: u64,
}

/// Our copies waiting for receipts, and the next hops recently given to routed copies.
#[derive(Debug, Default)]
pub(crate) struct Receipts {
    awaiting: HashMap<String, Awaiting>,
    order: BTreeMap<(Instant, u64), String>,
    hops: HashMap<(String, NodeId), NeighbourId>,
    hop_order: VecDeque<(String, NodeId)>,
    seq: u64,
}

impl Receipts {
    pub(crate) fn awaits(&self, key: &str) -> bool {
        self.awaiting.contains_key(key)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.order.first_key_value().map(|((at, _), _)| *at)
    }

    fn take(&mut self, key: &str) -> Option<Awaiting> {
        let a = self.awaiting.remove(key)?;
        if let Some(at) = a.deadline {
            self.order.remove(&(at, a.seq));
        }
        Some(a)
    }

    fn put(&mut self, key: String, mut a: Awaiting) {
        self.take(&key);
        self.seq += 1;
        a.seq = self.seq;
        if let Some(at) = a.deadline {
            self.order.insert((at, a.seq), key.clone());
        }
        self.awaiting.insert(key, a);
    }

    /// Stops the clock of our copy under `key` (it waits for a route), keeping its attempts;
    /// starts waiting for a receipt if we were not yet.
    pub(crate) fn park(&mut self, key: &str, envelope: &Envelope, target: NodeId) {
        let a = self.take(key).unwrap_or(Awaiting {
            envelope: envelope.clone(),
            target,
            hop: None,
            attempt: 0,
            deadline: None,
            seq: 0,
        });
        self.put(
            key.to_string(),
            Awaiting {
                deadline: None,
                hop: None,
                ..a
            },
        );
    }

    /// No longer waits for a receipt for `key`; true when it did.
    pub(crate) fn forget(&mut self, key: &str) -> bool {
        self.take(key).is_some()
    }

    /// Copies waiting for a receipt (armed or parked).
    pub(crate) fn len(&self) -> usize {
        self.awaiting.len()
    }

    fn due(&mut self, now: Instant) -> Vec<(String, Awaiting)> {
        let mut out = Vec::new();
        while let Some(((at, _), key)) = self.order.first_key_value() {
            if *at > now {
                break;
            }
            let key = key.clone();
            if let Some(a) = self.take(&key) {
                out.push((key, a));
            }
        }
        out
    }

    fn note_hop(&mut self, msg_id: &str, target: NodeId, hop: NeighbourId, max: usize) {
        let key = (msg_id.to_string(), target);
        if self.hops.insert(key.clone(), hop).is_none() {
            self.hop_order.push_back(key);
            while self.hop_order.len() > max.max(1) {
                if let Some(old) = self.hop_order.pop_front() {
                    self.hops.remove(&old);
                }
            }
        }
    }

    fn hop_of(&self, msg_id: &str, target: NodeId) -> Option<NeighbourId> {
        self.hops.get(&(msg_id.to_string(), target)).copied()
    }
}

/// Verbs whose recipient signs a receipt.
fn receipted(verb: Verb) -> bool {
    matches!(verb, Verb::Message | Verb::Key)
}

impl Router {
    /// Whether we wait for a receipt for this copy: our own MESSAGE or KEY, to a recipient
    /// whose id a key derives.
    pub(crate) fn wants_receipt(&self, env: &Envelope, target: &NodeId) -> bool {
        receipted(env.verb())
            && auth::key_form(target)
            && env.body.author().is_some_and(|a| a.guid == self.me.guid)
    }

    /// Whether our copy under `key` is still waiting for its receipt.
    pub(crate) fn awaits_receipt(&self, key: &str) -> bool {
        self.receipts.awaits(key)
    }

    /// A routed copy left through `hop`: remember the hop, and for our own copies wait for the
    /// receipt (keeping the attempt count of an earlier send).
    pub(crate) fn sent_via(
        &mut self,
        now: Instant,
        env: &Envelope,
        target: NodeId,
        hop: NeighbourId,
    ) {
        let Some(msg_id) = env.msg_id() else {
            return;
        };
        let max = self.config.max_in_flight;
        self.receipts.note_hop(msg_id, target, hop, max);
        if !self.wants_receipt(env, &target) {
            return;
        }
        let key = QueuedMessage::key_for(msg_id, &target);
        let attempt = self.receipts.take(&key).map_or(0, |a| a.attempt);
        let wait = self.config.receipt_timeout * 2u32.saturating_pow(attempt.min(16));
        self.receipts.put(
            key,
            Awaiting {
                envelope: env.clone(),
                target,
                hop: Some(hop),
                attempt,
                deadline: Some(now + wait),
                seq: 0,
            },
        );
    }

    /// A channel member's copy of our message, stored: with a route to the member, the
    /// flood should reach it and its receipt come back, so the copy only waits (and goes
    /// routed if the receipt does not come); without one it is kept until a route appears.
    /// True when the member is reachable now.
    pub(crate) fn await_flood_receipt(
        &mut self,
        now: Instant,
        key: String,
        env: Envelope,
        target: NodeId,
    ) -> bool {
        if self.table.route(&target).is_none() {
            self.keep_own(now, env, target);
            return false;
        }
        self.receipts.put(
            key,
            Awaiting {
                envelope: env,
                target,
                hop: None,
                attempt: 0,
                deadline: Some(now + self.config.receipt_timeout),
                seq: 0,
            },
        );
        true
    }

    /// A copy for `target` that we relayed before came again: the author got no receipt, so
    /// the hop we gave it did not deliver. Demote it (the caller routes the copy afresh).
    pub(crate) fn relayed_again(&mut self, now: Instant, env: &Envelope, target: NodeId) {
        if !receipted(env.verb()) || !auth::key_form(&target) {
            return;
        }
        let Some(prev) = env.msg_id().and_then(|m| self.receipts.hop_of(m, target)) else {
            return;
        };
        self.demote(now, target, prev);
    }

    pub(crate) fn demote(&mut self, now: Instant, target: NodeId, hop: NeighbourId) {
        if self.table.is_direct(&target, hop) {
            return;
        }
        if self.table.mark_of(&target, hop) != Some(Mark::Demoted) {
            self.counters.routes_demoted += 1;
        }
        let until = now + self.config.route_mark_for;
        self.table.mark(target, hop, Mark::Demoted, until);
    }

    fn confirm(&mut self, now: Instant, target: NodeId, hop: NeighbourId) {
        let until = now + self.config.route_mark_for;
        self.table.mark(target, hop, Mark::Confirmed, until);
    }

    /// Signs and routes a receipt for `msg_id` back to its author (if a key derives the
    /// author's id: nobody else could check it); without a route yet it waits in memory (and
    /// if it is lost the author sends again, and the duplicate is answered again).
    pub(crate) fn send_receipt(&mut self, now: Instant, msg_id: &str, author: NodeId) {
        if !auth::key_form(&author) || author == self.me.guid {
            return;
        }
        let mut ack = Ack {
            node_id: Some(self.me.clone()),
            msg_id: msg_id.to_string(),
            target_id: None,
            recipient_id: Some(author),
            auth: Auth::default(),
        };
        auth::sign_receipt(&self.identity, &mut ack);
        self.counters.receipts_sent += 1;
        let mut env = Envelope::new(self.config.default_ttl, Body::Ack(ack));
        env.target_id = Some(self.chat_id(author));
        self.route_or_queue(now, env, author, Origin::LocalQueued);
    }

    /// A verified receipt for one of our copies.
    pub(crate) fn on_receipt(&mut self, now: Instant, ack: &Ack) {
        let Some(signer) = ack.node_id.as_ref().map(|i| i.guid) else {
            return;
        };
        let key = QueuedMessage::key_for(&ack.msg_id, &signer);
        let Some(a) = self.receipts.take(&key) else {
            return; // a duplicate receipt, or not ours
        };
        self.counters.receipts += 1;
        self.queue.remove(&key);
        self.outputs.push_back(Output::Forget { key });
        if let Some(hop) = a.hop {
            self.confirm(now, signer, hop);
        }
        self.deliver(ChatEvent::Delivered {
            msg_id: ack.msg_id.clone(),
            target: a.target,
        });
    }

    /// A verified receipt passing through: the hop we gave that copy delivered it.
    pub(crate) fn observe_receipt(&mut self, now: Instant, ack: &Ack) {
        let Some(signer) = ack.node_id.as_ref().map(|i| i.guid) else {
            return;
        };
        if let Some(hop) = self.receipts.hop_of(&ack.msg_id, signer) {
            self.confirm(now, signer, hop);
        }
    }

    /// Our copies whose receipt is overdue: demote the hop, send again or give up.
    pub(crate) fn receipt_timeouts(&mut self, now: Instant) {
        for (key, mut a) in self.receipts.due(now) {
            if let Some(hop) = a.hop {
                self.demote(now, a.target, hop);
            }
            a.attempt += 1;
            if a.attempt >= self.config.max_attempts.max(1) {
                self.counters.unconfirmed += 1;
                self.queue.remove(&key);
                self.outputs.push_back(Output::Forget { key });
                let msg_id = a.envelope.msg_id().unwrap_or_default().to_string();
                self.deliver(ChatEvent::Unconfirmed {
                    msg_id,
                    target: a.target,
                });
                continue;
            }
            self.counters.retries += 1;
            let wait = self.config.receipt_timeout * 2u32.saturating_pow(a.attempt.min(16));
            let (env, target) = (a.envelope.clone(), a.target);
            a.hop = None;
            a.deadline = Some(now + wait);
            self.receipts.put(key.clone(), a);
            match self.table.route(&target) {
                Some(route) => self.send_tracked(now, route.next_hop, env, target, true),
                None => {
                    // No route: the copy waits for one, and its clock stops meanwhile.
                    self.receipts.park(&key, &env, target);
                    self.enqueue(now, key, env, target);
                }
            }
        }
    }
}
