//! The node as a whole: inputs from the harness, timers (handshake deadlines, the link
//! machines' deadlines, redials) and the redial backoff.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use kith_crypto::AgentId;
use kith_proto::secure::Responder;

use super::conn::{Conn, Dial, Machine, State};
use super::{NodeEvent, Redial, SecureSimNode};
use crate::node::{CloseReason, ConnId, Input, Output, SimNode};

impl SecureSimNode {
    pub(super) fn dial_failed(&mut self, now: Instant, dial: Option<&Dial>) {
        let Some(agent) = dial.map(Dial::agent) else {
            return;
        };
        let max = Duration::from_millis(self.options.limits.redial_max_ms);
        if let Some(r) = self.redials.get_mut(&agent) {
            r.delay = (r.delay * 2).min(max);
            r.next = Some(now + r.delay);
        } else if self.has_pending(agent) {
            // Sends wait for this peer: keep trying, with the backoff.
            self.schedule_redial(now, agent);
        }
    }

    pub(super) fn schedule_redial(&mut self, now: Instant, agent: AgentId) {
        if !self.options.auto_redial || !self.known.contains_key(&agent) {
            return;
        }
        let delay = Duration::from_millis(self.options.limits.redial_min_ms);
        self.redials.entry(agent).or_insert(Redial {
            next: Some(now + delay),
            delay,
        });
    }

    /// The network closed a connection under a handshake or a link.
    pub(super) fn on_closed(&mut self, now: Instant, id: ConnId, reason: CloseReason) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        match &conn.state {
            State::Handshake(_) => {
                self.stats.closed_in_handshake += 1;
                self.log(
                    now,
                    NodeEvent::ClosedInHandshake {
                        conn: id,
                        reason,
                        bytes_received: conn.bytes_received,
                    },
                );
                self.dial_failed(now, conn.dial.as_ref());
            }
            State::Linked(l) => {
                let peer = l.peer;
                self.log(
                    now,
                    NodeEvent::LinkClosed {
                        conn: id,
                        peer,
                        reason,
                    },
                );
                // The machine decides: orderly after a `bye`, lost otherwise.
                self.conns.insert(id, conn);
                if let Some(m) = self.machine_mut(id) {
                    m.handle_eof(now);
                }
                self.drive_link(now, id);
            }
        }
    }

    pub(super) fn on_timeout(&mut self, now: Instant) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(mut conn) = self.conns.remove(&id) else {
                continue;
            };
            match &mut conn.state {
                State::Handshake(m) => match m.handle_timeout(now) {
                    Err(e) => self.handshake_failed(now, id, &conn, e),
                    Ok(()) => {
                        self.conns.insert(id, conn);
                    }
                },
                State::Linked(l) => {
                    let due = l.machine.poll_timeout().is_some_and(|t| t <= now);
                    if due {
                        l.machine.handle_timeout(now);
                    }
                    self.conns.insert(id, conn);
                    if due {
                        self.drive_link(now, id);
                    }
                }
            }
        }
        let due: Vec<AgentId> = self
            .redials
            .iter()
            .filter(|(_, r)| r.next.is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for agent in due {
            if let Some(r) = self.redials.get_mut(&agent) {
                r.next = None;
            }
            self.stats.redials += 1;
            if !self.connect_known(agent) {
                self.redials.remove(&agent);
            }
        }
    }
}

impl SimNode for SecureSimNode {
    fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connected {
                conn: id,
                peer,
                tag,
            } => {
                let Some(dial) = self.dials.remove(&tag) else {
                    return self.outputs.push_back(Output::Close { conn: id });
                };
                match self.start_initiator(now, &dial) {
                    Ok(m) => {
                        let conn = Conn {
                            peer_addr: peer,
                            dial: Some(dial),
                            inbuf: BytesMut::new(),
                            bytes_received: 0,
                            replay_checked: false,
                            state: State::Handshake(Machine::Initiator(Box::new(m))),
                        };
                        self.pump(now, id, conn);
                    }
                    Err(error) => {
                        self.stats.handshake_failures += 1;
                        self.log(now, NodeEvent::HandshakeFailed { conn: id, error });
                        self.outputs.push_back(Output::Close { conn: id });
                        self.dial_failed(now, Some(&dial));
                    }
                }
            }
            Input::ConnectFailed { peer, tag } => {
                let dial = self.dials.remove(&tag);
                self.stats.connect_failures += 1;
                self.log(now, NodeEvent::ConnectFailed { to: peer });
                self.dial_failed(now, dial.as_ref());
            }
            Input::Accepted { conn: id, peer } => {
                let m = Responder::new(&self.secure, now, &mut self.rng);
                let conn = Conn {
                    peer_addr: peer,
                    dial: None,
                    inbuf: BytesMut::new(),
                    bytes_received: 0,
                    replay_checked: false,
                    state: State::Handshake(Machine::Responder(Box::new(m))),
                };
                self.conns.insert(id, conn);
            }
            Input::Data { conn: id, bytes } => {
                let Some(mut conn) = self.conns.remove(&id) else {
                    return;
                };
                conn.bytes_received += bytes.len();
                if let State::Linked(l) = &mut conn.state {
                    l.machine.handle_bytes(now, &bytes);
                    self.conns.insert(id, conn);
                    return self.drive_link(now, id);
                }
                conn.inbuf.extend_from_slice(&bytes);
                self.pump(now, id, conn);
            }
            Input::Closed { conn, reason } => self.on_closed(now, conn, reason),
            Input::Datagram { .. } => self.stats.datagrams_received += 1,
            Input::Timeout => self.on_timeout(now),
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(Conn::deadline);
        let redials = self.redials.values().filter_map(|r| r.next);
        conns.chain(redials).min()
    }
}
