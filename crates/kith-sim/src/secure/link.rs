//! Driving the [`LinkMachine`] of each established link per its calling contract, and the
//! node's registry of active links: one per peer, registered on key confirmation, duplicates
//! retired by the kith-node rule, sends to a peer without a link queued while it is dialled.

use std::time::Instant;

use bytes::BytesMut;
use kith_crypto::AgentId;
use kith_proto::link::{ByeReason, Event, LinkEnd, LinkMachine, Payload};
use kith_proto::secure::Role;
use kith_proto::wire::Envelope;

use super::conn::{Conn, State};
use super::{NodeEvent, SecureSimNode};
use crate::node::{ConnId, Output};

impl SecureSimNode {
    pub(super) fn machine_mut(&mut self, id: ConnId) -> Option<&mut LinkMachine> {
        match self.conns.get_mut(&id) {
            Some(Conn {
                state: State::Linked(l),
                ..
            }) => Some(&mut l.machine),
            _ => None,
        }
    }

    /// Acts on every event of link `id`'s machine, then writes what it has to send.
    pub(super) fn drive_link(&mut self, now: Instant, id: ConnId) {
        loop {
            let Some(Conn {
                state: State::Linked(l),
                ..
            }) = self.conns.get_mut(&id)
            else {
                return;
            };
            let peer = l.peer;
            let Some(event) = l.machine.poll_event() else {
                break;
            };
            self.on_link_event(now, id, peer, event);
        }
        self.flush(id);
    }

    /// Writes what link `id`'s machine has to send.
    pub(super) fn flush(&mut self, id: ConnId) {
        let Some(machine) = self.machine_mut(id) else {
            return;
        };
        let mut out = BytesMut::new();
        if machine.poll_transmit(&mut out) {
            self.outputs.push_back(Output::Send {
                conn: id,
                bytes: out.freeze(),
            });
        }
    }

    fn on_link_event(&mut self, now: Instant, id: ConnId, peer: AgentId, event: Event) {
        match event {
            Event::Confirmed => self.register(now, id, peer),
            Event::Version(_) => self.stats.versions_received += 1,
            Event::Pong { nonce } => {
                if let Some(sent) = self.pings.remove(&nonce) {
                    let rtt = now.saturating_duration_since(sent);
                    self.stats.pongs += 1;
                    self.rtts.push((peer, rtt));
                    self.log(now, NodeEvent::Pong { peer, rtt });
                }
            }
            Event::Payload(Payload::Envelope(env)) => {
                self.stats.envelopes_received += 1;
                self.inbox.push_back((peer, env));
            }
            Event::Payload(Payload::Json(_)) => self.stats.json_received += 1,
            Event::PeerDone => {
                // New sends to this peer go to a new link; nothing is queued per link here,
                // so the answer is at once.
                self.stats.links_closed_by_peer += 1;
                self.unregister(peer, id);
                if let Some(m) = self.machine_mut(id) {
                    m.retire(now, ByeReason::Ack);
                }
            }
            Event::IdleTimeout => {
                self.stats.idle_closes += 1;
                self.log(now, NodeEvent::IdleClosed { conn: id, peer });
                self.unregister(peer, id);
                if let Some(m) = self.machine_mut(id) {
                    m.retire(now, ByeReason::Idle);
                }
            }
            Event::Ended(end) => self.link_ended(now, id, peer, end),
        }
    }

    fn link_ended(&mut self, now: Instant, id: ConnId, peer: AgentId, end: LinkEnd) {
        // The closing `bye`, if any, goes out before the close.
        self.flush(id);
        let role = self
            .conns
            .remove(&id)
            .and_then(|c| match c.state {
                State::Linked(l) => Some(l.machine.role()),
                State::Handshake(_) => None,
            })
            .unwrap_or(Role::Responder);
        self.outputs.push_back(Output::Close { conn: id });
        self.unregister(peer, id);
        match &end {
            LinkEnd::Orderly => self.stats.links_ended_orderly += 1,
            LinkEnd::Lost(_) => self.stats.links_lost += 1,
            LinkEnd::Incompatible(_) => self.stats.links_incompatible += 1,
        }
        self.log(
            now,
            NodeEvent::LinkEnded {
                conn: id,
                peer,
                end: end.clone(),
            },
        );
        if self.is_linked(peer) {
            return;
        }
        let lost = matches!(end, LinkEnd::Lost(_));
        if (lost && role == Role::Initiator) || self.has_pending(peer) {
            // A link we dialled broke, or work waits for this peer: dial again (after the
            // backoff, or at once for waiting work, as the next send would).
            if lost {
                self.schedule_redial(now, peer);
            } else {
                self.ensure_dial(peer);
            }
        }
    }

    /// Makes link `id` the active one with `peer`, unless a duplicate wins the tie-break (the
    /// link whose initiator has the smaller agent id; the newer one if both have the same
    /// initiator, as in kith-node's endpoint registry). The loser says `bye` and drains.
    fn register(&mut self, now: Instant, id: ConnId, peer: AgentId) {
        let Some(new_initiator) = self.initiator_of(id) else {
            return;
        };
        self.stats.confirmed += 1;
        self.log(now, NodeEvent::Confirmed { conn: id, peer });
        // Only a confirmed peer's address is recorded, and its redial is moot.
        if let Some(c) = self.conns.get(&id) {
            let addr = c.peer_addr;
            self.known.insert(peer, addr);
        }
        self.redials.remove(&peer);
        let old = self.active.get(&peer).copied().filter(|&old| old != id);
        let new_wins = match old.and_then(|old| self.initiator_of(old)) {
            Some(old_initiator) => new_initiator <= old_initiator,
            None => true,
        };
        if !new_wins {
            return self.retire_duplicate(now, id, peer);
        }
        self.active.insert(peer, id);
        if let Some(old) = old {
            self.retire_duplicate(now, old, peer);
            self.drive_link(now, old);
        }
        self.flush_pending(id, peer);
    }

    fn retire_duplicate(&mut self, now: Instant, id: ConnId, peer: AgentId) {
        self.stats.duplicates_retired += 1;
        self.log(now, NodeEvent::DuplicateRetired { conn: id, peer });
        if let Some(m) = self.machine_mut(id) {
            m.retire(now, ByeReason::Duplicate);
        }
    }

    /// The agent that dialled link `id`.
    fn initiator_of(&self, id: ConnId) -> Option<AgentId> {
        match &self.conns.get(&id)?.state {
            State::Linked(l) => Some(match l.machine.role() {
                Role::Initiator => self.agent(),
                Role::Responder => l.peer,
            }),
            State::Handshake(_) => None,
        }
    }

    /// Forgets link `id` as `peer`'s active link, if it is. True if it was.
    pub(super) fn unregister(&mut self, peer: AgentId, id: ConnId) -> bool {
        if self.active.get(&peer) == Some(&id) {
            self.active.remove(&peer);
            return true;
        }
        false
    }

    pub(super) fn has_pending(&self, peer: AgentId) -> bool {
        self.pending.get(&peer).is_some_and(|q| !q.is_empty())
    }

    /// Hands the envelopes waiting for `peer` to its new active link.
    fn flush_pending(&mut self, id: ConnId, peer: AgentId) {
        let Some(queue) = self.pending.remove(&peer) else {
            return;
        };
        for env in queue {
            let sent = self
                .machine_mut(id)
                .is_some_and(|m| m.send(Payload::Envelope(env)).is_ok());
            if sent {
                self.stats.envelopes_sent += 1;
            }
        }
        self.flush(id);
    }

    /// Sends `envelope` on link `id` now. False if the machine refused it.
    pub(super) fn send_on(&mut self, id: ConnId, envelope: &Envelope) -> bool {
        let sent = self
            .machine_mut(id)
            .is_some_and(|m| m.send(Payload::Envelope(envelope.clone())).is_ok());
        if sent {
            self.stats.envelopes_sent += 1;
            self.flush(id);
        }
        sent
    }

    /// Dials `peer` (N+KK) unless a dial to it is already under way.
    pub(super) fn ensure_dial(&mut self, peer: AgentId) -> bool {
        let dialling = self.dials.values().any(|d| d.agent() == peer)
            || self.conns.values().any(|c| {
                matches!(c.state, State::Handshake(_))
                    && c.dial.as_ref().is_some_and(|d| d.agent() == peer)
            });
        dialling || self.connect_known(peer)
    }
}
