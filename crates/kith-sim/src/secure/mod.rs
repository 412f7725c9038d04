//! [`SecureSimNode`]: a node that opens kith secure links in the simulation.
//!
//! It drives `kith_proto::secure`'s [`Initiator`] and [`Responder`] exactly per their calling
//! contract (drain transmits, then one event, answer questions, feed whole frames; any error
//! or refusal closes the connection without a word), then carries Datt envelopes in `T`
//! frames over the [`Link`]: `ping` is answered with `pong`, pongs give round-trip times on
//! the virtual clock, every other envelope goes to an inbox for the test (or a later protocol
//! core) to take. The responder closes links idle for [`Limits::idle_timeout_ms`].
//!
//! Tickets and known peers live in memory. A successful ticket handshake makes both ends
//! known peers of each other, so they can later reconnect with N+KK. With `auto_redial` on,
//! the side that dialled a link redials it (N+KK, backoff from [`Limits::redial_min_ms`]
//! doubling to [`Limits::redial_max_ms`]) when it is lost to a reset or a partition; a link
//! the peer closed (an idle close) is not redialled. It is a demonstration of the cores, not a
//! copy of the tokio driver: no admission guard, no duplicate-link retirement, no `bye`.

mod conn;
mod report;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kith_crypto::{AgentId, Identity};
use kith_proto::secure::{
    Chad, Event, FrameDecoder, HandshakeError, Initiator, Link, Mode, Responder, Role,
    SecureConfig, TicketRequest,
};
use kith_proto::wire::{Command, Envelope, EnvelopeDecoder};
use kith_proto::Limits;
use rand::rngs::StdRng;
use rand::RngCore;

use crate::node::{Addr, CloseReason, ConnId, Input, Output, SimNode};
use conn::{Conn, Dial, Linked, Machine, State};
pub use report::{LinkInfo, NodeEvent, SecureStats, SimTicket};

/// How a [`SecureSimNode`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureNodeConfig {
    /// Frame size, handshake deadline, idle timeout, redial backoff, pending pings.
    pub limits: Limits,
    /// Noise (default) or raw.
    pub mode: Mode,
    /// Redial lost links we had dialled (default true).
    pub auto_redial: bool,
}

impl Default for SecureNodeConfig {
    fn default() -> Self {
        SecureNodeConfig {
            limits: Limits::default(),
            mode: Mode::Noise,
            auto_redial: true,
        }
    }
}

struct TicketUse {
    one_time: bool,
    used: bool,
}

struct Redial {
    next: Option<Instant>,
    delay: Duration,
}

/// A simulated kith node speaking the secure-link protocol. See the [module docs](self).
pub struct SecureSimNode {
    addr: Addr,
    secure: SecureConfig,
    options: SecureNodeConfig,
    rng: StdRng,
    frames: FrameDecoder,
    known: BTreeMap<AgentId, Addr>,
    tickets: BTreeMap<String, TicketUse>,
    dials: BTreeMap<u64, Dial>,
    next_tag: u64,
    conns: BTreeMap<ConnId, Conn>,
    redials: BTreeMap<AgentId, Redial>,
    pings: BTreeMap<[u8; 8], Instant>,
    outputs: VecDeque<Output>,
    events: Vec<(Instant, NodeEvent)>,
    rtts: Vec<(AgentId, Duration)>,
    inbox: VecDeque<(AgentId, Envelope)>,
    stats: SecureStats,
}

fn command(name: &str) -> Command {
    // Only called with the fixed names of this module, which are valid.
    Command::new(name).unwrap_or_else(|_| unreachable!())
}

impl SecureSimNode {
    /// A node at `addr` whose identity and handshake randomness come from `rng`.
    pub fn new(addr: Addr, mut rng: StdRng, options: SecureNodeConfig) -> SecureSimNode {
        let identity = Identity::generate(&mut rng);
        let secure = SecureConfig::new(&identity, &options.limits).with_mode(options.mode);
        SecureSimNode {
            addr,
            frames: FrameDecoder::new(&options.limits),
            secure,
            options,
            rng,
            known: BTreeMap::new(),
            tickets: BTreeMap::new(),
            dials: BTreeMap::new(),
            next_tag: 0,
            conns: BTreeMap::new(),
            redials: BTreeMap::new(),
            pings: BTreeMap::new(),
            outputs: VecDeque::new(),
            events: Vec::new(),
            rtts: Vec::new(),
            inbox: VecDeque::new(),
            stats: SecureStats::default(),
        }
    }

    /// Our agent id.
    pub fn agent(&self) -> AgentId {
        self.secure.agent()
    }

    /// Our address.
    pub fn addr(&self) -> Addr {
        self.addr
    }

    /// Our secure-link configuration.
    pub fn secure_config(&self) -> &SecureConfig {
        &self.secure
    }

    /// Issues a ticket for this node; a one-time ticket is good for one handshake.
    pub fn issue_ticket(&mut self, one_time: bool) -> SimTicket {
        let mut token = [0u8; 16];
        self.rng.fill_bytes(&mut token);
        let token = hex::encode(token);
        self.tickets.insert(
            token.clone(),
            TicketUse {
                one_time,
                used: false,
            },
        );
        SimTicket {
            agent: self.agent(),
            addr: self.addr,
            token,
        }
    }

    /// Records `agent` at `addr` as a known peer (N+KK is accepted from it and can dial it).
    pub fn add_known_peer(&mut self, agent: AgentId, addr: Addr) {
        self.known.insert(agent, addr);
    }

    /// Whether `agent` is a known peer.
    pub fn is_known(&self, agent: &AgentId) -> bool {
        self.known.contains_key(agent)
    }

    /// Known peers and their addresses.
    pub fn known_peers(&self) -> impl Iterator<Item = (AgentId, Addr)> + '_ {
        self.known.iter().map(|(a, b)| (*a, *b))
    }

    /// Dials the ticket's node and presents the ticket (IK).
    pub fn connect_ticket(&mut self, ticket: &SimTicket) {
        self.dial(Dial::Ticket {
            agent: ticket.agent,
            addr: ticket.addr,
            token: ticket.token.clone(),
        });
    }

    /// Dials a known peer (N+KK). False if `agent` is not known.
    pub fn connect_known(&mut self, agent: AgentId) -> bool {
        let Some(&addr) = self.known.get(&agent) else {
            return false;
        };
        self.dial(Dial::Known { agent, addr });
        true
    }

    fn dial(&mut self, dial: Dial) {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.outputs.push_back(Output::Connect {
            to: dial.addr(),
            tag,
        });
        self.dials.insert(tag, dial);
    }

    /// Sends `ping` with a random 8-byte nonce on the link to `agent`. False if there is no
    /// link or too many pings are outstanding.
    pub fn ping(&mut self, now: Instant, agent: AgentId) -> bool {
        if self.pings.len() >= self.options.limits.max_pending_pings {
            return false;
        }
        let mut nonce = [0u8; 8];
        self.rng.fill_bytes(&mut nonce);
        let envelope = Envelope::new(command("ping"), nonce.to_vec());
        if !self.send_envelope(now, agent, &envelope) {
            return false;
        }
        self.pings.insert(nonce, now);
        true
    }

    /// Sends an envelope on the (newest) link to `agent`. False if there is none.
    pub fn send_envelope(&mut self, now: Instant, agent: AgentId, envelope: &Envelope) -> bool {
        match self.link_conn(agent) {
            Some(id) => self.send_on(now, id, envelope),
            None => false,
        }
    }

    /// Closes the link to `agent` from our side. False if there is none.
    pub fn close_link(&mut self, agent: AgentId) -> bool {
        match self.link_conn(agent) {
            Some(id) => {
                self.close(id);
                true
            }
            None => false,
        }
    }

    /// The newest link to `agent`.
    fn link_conn(&self, agent: AgentId) -> Option<ConnId> {
        self.conns
            .iter()
            .rev()
            .find(|(_, c)| matches!(&c.state, State::Linked(l) if l.peer == agent))
            .map(|(&id, _)| id)
    }

    fn send_on(&mut self, now: Instant, id: ConnId, envelope: &Envelope) -> bool {
        let Some(Conn {
            state: State::Linked(l),
            ..
        }) = self.conns.get_mut(&id)
        else {
            return false;
        };
        let Ok(bytes) = envelope.to_bytes() else {
            return false;
        };
        let mut out = BytesMut::new();
        match l.link.seal_into(&bytes, &mut out) {
            Ok(_) => {
                self.outputs.push_back(Output::Send {
                    conn: id,
                    bytes: out.freeze(),
                });
                true
            }
            Err(e) => {
                self.log(
                    now,
                    NodeEvent::LinkFailed {
                        conn: id,
                        error: e.to_string(),
                    },
                );
                self.close(id);
                false
            }
        }
    }

    /// Every established link, in connection order.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.conns
            .iter()
            .filter_map(|(&conn, c)| match &c.state {
                State::Linked(l) => Some(LinkInfo {
                    conn,
                    peer: l.peer,
                    role: l.link.role(),
                    kind: l.link.kind(),
                    mode: l.link.mode(),
                    handshake_hash: l.link.handshake_hash().to_vec(),
                    since: l.since,
                }),
                State::Handshake(_) => None,
            })
            .collect()
    }

    /// Whether a link to `agent` is up.
    pub fn is_linked(&self, agent: AgentId) -> bool {
        self.link_conn(agent).is_some()
    }

    /// Round-trip times measured by our pings, in order.
    pub fn rtts(&self) -> &[(AgentId, Duration)] {
        &self.rtts
    }

    /// Everything that happened, in order.
    pub fn events(&self) -> &[(Instant, NodeEvent)] {
        &self.events
    }

    /// Counters.
    pub fn stats(&self) -> &SecureStats {
        &self.stats
    }

    /// Takes the envelopes received that are not link-level commands (`ping`, `pong`).
    pub fn take_inbox(&mut self) -> Vec<(AgentId, Envelope)> {
        self.inbox.drain(..).collect()
    }

    fn log(&mut self, now: Instant, event: NodeEvent) {
        self.events.push((now, event));
    }

    /// Closes a connection from our side, silently.
    fn close(&mut self, id: ConnId) {
        if self.conns.remove(&id).is_some() {
            self.outputs.push_back(Output::Close { conn: id });
        }
    }

    fn send_frames(&mut self, id: ConnId, machine: &mut Machine) -> Result<(), String> {
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
    fn handshake_failed(&mut self, now: Instant, id: ConnId, conn: &Conn, error: HandshakeError) {
        if error == HandshakeError::Timeout {
            self.stats.handshake_timeouts += 1;
        } else {
            self.stats.handshake_failures += 1;
        }
        self.log(now, NodeEvent::HandshakeFailed { conn: id, error });
        self.outputs.push_back(Output::Close { conn: id });
        self.dial_failed(now, conn.dial.as_ref());
    }

    fn dial_failed(&mut self, now: Instant, dial: Option<&Dial>) {
        let Some(agent) = dial.map(Dial::agent) else {
            return;
        };
        let max = Duration::from_millis(self.options.limits.redial_max_ms);
        if let Some(r) = self.redials.get_mut(&agent) {
            r.delay = (r.delay * 2).min(max);
            r.next = Some(now + r.delay);
        }
    }

    fn schedule_redial(&mut self, now: Instant, agent: AgentId) {
        if !self.options.auto_redial || !self.known.contains_key(&agent) {
            return;
        }
        let delay = Duration::from_millis(self.options.limits.redial_min_ms);
        self.redials.entry(agent).or_insert(Redial {
            next: Some(now + delay),
            delay,
        });
    }

    /// Runs a connection as far as its buffered input allows, per the calling contract.
    fn pump(&mut self, now: Instant, id: ConnId, mut conn: Conn) {
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

    fn redeem(&mut self, token: &str) -> bool {
        match self.tickets.get_mut(token) {
            Some(t) if !(t.one_time && t.used) => {
                t.used = true;
                true
            }
            _ => false,
        }
    }

    fn established(&mut self, now: Instant, id: ConnId, conn: &mut Conn, mut link: Link) {
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

    fn pump_link(&mut self, now: Instant, id: ConnId, mut conn: Conn) {
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

    fn on_envelope(&mut self, now: Instant, id: ConnId, peer: AgentId, env: Envelope) {
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

    fn on_closed(&mut self, now: Instant, id: ConnId, reason: CloseReason) {
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
                if reason == CloseReason::PeerClosed {
                    self.stats.links_closed_by_peer += 1;
                } else {
                    self.stats.links_lost += 1;
                    if l.link.role() == Role::Initiator && !self.is_linked(peer) {
                        self.schedule_redial(now, peer);
                    }
                }
            }
        }
    }

    fn on_timeout(&mut self, now: Instant) {
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
                State::Linked(l) if l.link.is_idle(now) => {
                    let peer = l.peer;
                    self.stats.idle_closes += 1;
                    self.log(now, NodeEvent::IdleClosed { conn: id, peer });
                    self.outputs.push_back(Output::Close { conn: id });
                }
                State::Linked(_) => {
                    self.conns.insert(id, conn);
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

    fn start_initiator(&mut self, now: Instant, dial: &Dial) -> Result<Initiator, HandshakeError> {
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
                    state: State::Handshake(Machine::Responder(Box::new(m))),
                };
                self.conns.insert(id, conn);
            }
            Input::Data { conn: id, bytes } => {
                let Some(mut conn) = self.conns.remove(&id) else {
                    return;
                };
                conn.bytes_received += bytes.len();
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
