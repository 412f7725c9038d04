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
mod drive;
mod lifecycle;
mod report;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kith_crypto::{AgentId, Identity};
use kith_proto::secure::{FrameDecoder, Mode, SecureConfig};
#[cfg(doc)]
use kith_proto::secure::{Initiator, Link, Responder};
use kith_proto::wire::{Command, Envelope};
use kith_proto::Limits;
use rand::rngs::StdRng;
use rand::RngCore;

use crate::node::{Addr, ConnId, Output};
use conn::{Conn, Dial, State};
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

    pub(super) fn dial(&mut self, dial: Dial) {
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

    pub(super) fn send_on(&mut self, now: Instant, id: ConnId, envelope: &Envelope) -> bool {
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

    pub(super) fn log(&mut self, now: Instant, event: NodeEvent) {
        self.events.push((now, event));
    }

    /// Closes a connection from our side, silently.
    pub(super) fn close(&mut self, id: ConnId) {
        if self.conns.remove(&id).is_some() {
            self.outputs.push_back(Output::Close { conn: id });
        }
    }
}
