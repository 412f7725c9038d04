//! Running one connection per the kith-proto calling contract: the handshake machine (drain
//! transmits, one event per turn, answer questions, feed whole frames), then the link (open
//! `T` frames, decode envelopes, answer `ping`).

use std::time::Instant;

use bytes::BytesMut;
use kith_crypto::AgentId;
use kith_proto::secure::{Chad, Event, HandshakeError, Initiator, Link, TicketRequest};
use kith_proto::wire::{Envelope, EnvelopeDecoder};

use super::conn::{Conn, Dial, Linked, Machine, State};
use super::{command, NodeEvent, SecureSimNode};
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
                State::Linked(_) => return self.pump_link(now, id, conn),
                State::Handshake(m) => m,
            };
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
        let _ = link.take_early_data();
        self.known.insert(peer, conn.peer_addr);
        self.redials.remove(&peer);
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
        conn.state = State::Linked(Box::new(Linked {
            link,
            peer,
            since: now,
            plain: BytesMut::new(),
            envelopes: EnvelopeDecoder::new(self.options.limits.max_envelope_data),
        }));
    }

    pub(super) fn pump_link(&mut self, now: Instant, id: ConnId, mut conn: Conn) {
        let State::Linked(l) = &mut conn.state else {
            return;
        };
        let peer = l.peer;
        let mut received = Vec::new();
        let result = (|| -> Result<(), String> {
            while let Some(frame) = self
                .frames
                .decode(&mut conn.inbuf)
                .map_err(|e| e.to_string())?
            {
                let plain = l.link.open(now, &frame).map_err(|e| e.to_string())?;
                l.plain.extend_from_slice(&plain);
                while let Some(env) = l
                    .envelopes
                    .decode(&mut l.plain)
                    .map_err(|e| e.to_string())?
                {
                    received.push(env);
                }
            }
            Ok(())
        })();
        self.conns.insert(id, conn);
        for env in received {
            self.on_envelope(now, id, peer, env);
        }
        if let Err(error) = result {
            self.log(now, NodeEvent::LinkFailed { conn: id, error });
            self.close(id);
        }
    }

    pub(super) fn on_envelope(&mut self, now: Instant, id: ConnId, peer: AgentId, env: Envelope) {
        self.stats.envelopes_received += 1;
        match env.command.as_str() {
            "ping" if env.data.len() == 8 => {
                let pong = Envelope::new(command("pong"), env.data.clone());
                self.send_on(now, id, &pong);
            }
            "pong" if env.data.len() == 8 => {
                let mut nonce = [0u8; 8];
                nonce.copy_from_slice(&env.data);
                if let Some(sent) = self.pings.remove(&nonce) {
                    let rtt = now.saturating_duration_since(sent);
                    self.stats.pongs += 1;
                    self.rtts.push((peer, rtt));
                    self.log(now, NodeEvent::Pong { peer, rtt });
                }
            }
            _ => self.inbox.push_back((peer, env)),
        }
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
