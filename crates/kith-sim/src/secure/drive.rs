//! Running one handshake per the kith-proto calling contract (drain transmits, one event per
//! turn, answer questions, feed whole frames, drop a replayed handshake before answering it),
//! then handing the link to a [`LinkMachine`].

use std::time::Instant;

use bytes::BytesMut;
use kith_proto::link::{LinkMachine, LinkSettings};
use kith_proto::secure::{Chad, Event, HandshakeError, Initiator, Link, TicketRequest};

use super::conn::{Conn, Dial, Linked, Machine, State};
use super::{NodeEvent, SecureSimNode};
use crate::node::{ConnId, Output};

impl SecureSimNode {
    pub(super) fn send_frames(&mut self, id: ConnId, machine: &mut Machine) -> Result<(), String> {
        let mut out = BytesMut::new();
        while let Some(frame) = machine.poll_transmit() {
            frame.encode(&mut out).map_err(|e| e.to_string())?;
        }
        if !out.is_empty() {
            self.outputs.push_back(Output::Send {
                conn: id,
                bytes: out.freeze(),
            });
        }
        Ok(())
    }

    /// A handshake ended without a link on our side: close silently, count it, and back off
    /// a redial if it was one.
    pub(super) fn handshake_failed(
        &mut self,
        now: Instant,
        id: ConnId,
        conn: &Conn,
        error: HandshakeError,
    ) {
        if error == HandshakeError::Timeout {
            self.stats.handshake_timeouts += 1;
        } else {
            self.stats.handshake_failures += 1;
        }
        self.log(now, NodeEvent::HandshakeFailed { conn: id, error });
        self.outputs.push_back(Output::Close { conn: id });
        self.dial_failed(now, conn.dial.as_ref());
    }

    pub(super) fn pump(&mut self, now: Instant, id: ConnId, mut conn: Conn) {
        loop {
            let machine = match &mut conn.state {
                State::Linked(_) => {
                    self.conns.insert(id, conn);
                    return self.drive_link(now, id);
                }
                State::Handshake(m) => m,
            };
            // Before anything is answered: a handshake message seen before is a replay,
            // dropped without a word (not even the `A` already queued goes out).
            if let (false, Some(ephemeral)) = (conn.replay_checked, machine.remote_ephemeral()) {
                conn.replay_checked = true;
                if !self.replay.check_and_insert(now, ephemeral) {
                    self.stats.replays_refused += 1;
                    self.log(now, NodeEvent::ReplayRefused { conn: id });
                    self.outputs.push_back(Output::Close { conn: id });
                    return;
                }
            }
            if let Err(e) = self.send_frames(id, machine) {
                self.log(now, NodeEvent::LinkFailed { conn: id, error: e });
                self.outputs.push_back(Output::Close { conn: id });
                return;
            }
            // One event per turn: an answer queues frames (the `A`) that must go out before
            // the `Established` after it is acted on.
            if let Some(event) = machine.poll_event() {
                let answered = match event {
                    Event::Established(link) => {
                        self.established(now, id, &mut conn, link);
                        Ok(())
                    }
                    Event::Refused { reason } => {
                        self.stats.refused += 1;
                        self.log(now, NodeEvent::Refused { conn: id, reason });
                        self.outputs.push_back(Output::Close { conn: id });
                        return;
                    }
                    Event::CheckTicket { token, .. } => {
                        let accepted = self.redeem(&token);
                        match machine {
                            Machine::Responder(r) => r.answer_ticket(now, accepted),
                            Machine::Initiator(_) => Err(HandshakeError::NoQuestion),
                        }
                    }
                    Event::LookupPeer { agent } => {
                        let key = self
                            .known
                            .contains_key(&agent)
                            .then(|| agent.noise_public());
                        match machine {
                            Machine::Responder(r) => r.answer_peer(now, key),
                            Machine::Initiator(_) => Err(HandshakeError::NoQuestion),
                        }
                    }
                };
                if let Err(e) = answered {
                    return self.handshake_failed(now, id, &conn, e);
                }
                continue;
            }
            match self.frames.decode(&mut conn.inbuf) {
                Ok(Some(frame)) => {
                    if let Err(e) = machine.handle_frame(now, frame) {
                        return self.handshake_failed(now, id, &conn, e);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let error = HandshakeError::BadPayload(e.to_string());
                    return self.handshake_failed(now, id, &conn, error);
                }
            }
        }
        self.conns.insert(id, conn);
    }

    pub(super) fn redeem(&mut self, token: &str) -> bool {
        match self.tickets.get_mut(token) {
            Some(t) if !(t.one_time && t.used) => {
                t.used = true;
                true
            }
            _ => false,
        }
    }

    pub(super) fn established(
        &mut self,
        now: Instant,
        id: ConnId,
        conn: &mut Conn,
        mut link: Link,
    ) {
        let peer = match (link.peer(), &conn.dial) {
            (Some(p), _) => p,
            (None, Some(d)) => d.agent(),
            // A query link: no peer to record; this node never queries, so it cannot happen.
            (None, None) => return self.outputs.push_back(Output::Close { conn: id }),
        };
        // The handshake's payload is not key-confirmed; this node sends none anyway.
        let _ = link.take_early_data();
        self.stats.established += 1;
        self.log(
            now,
            NodeEvent::Established {
                conn: id,
                peer,
                role: link.role(),
                kind: link.kind(),
            },
        );
        let settings = LinkSettings {
            announce: Some(self.addr.to_string()),
            observed: Some(conn.peer_addr.to_string()),
            ..LinkSettings::new(&self.options.limits)
        };
        let mut machine = LinkMachine::new(link, settings, now);
        // Bytes read past the handshake's last frame belong to the link.
        let leftover = conn.inbuf.split();
        machine.handle_bytes(now, &leftover);
        conn.state = State::Linked(Box::new(Linked {
            machine,
            peer,
            since: now,
        }));
    }

    pub(super) fn start_initiator(
        &mut self,
        now: Instant,
        dial: &Dial,
    ) -> Result<Initiator, HandshakeError> {
        match dial {
            Dial::Ticket { agent, addr, token } => {
                let to = Chad {
                    cuid: None,
                    agent: agent.to_string(),
                    host: Some(addr.to_string()),
                    port: None,
                };
                let from = Chad {
                    cuid: None,
                    agent: self.agent().to_string(),
                    host: Some(self.addr.to_string()),
                    port: None,
                };
                let request = TicketRequest::new(to, from, token.clone());
                Initiator::ik(&self.secure, *agent, &request, now, &mut self.rng)
            }
            Dial::Known { agent, .. } => {
                Initiator::known(&self.secure, *agent, &[], now, &mut self.rng)
            }
        }
    }
}
