//! [`SecureSimNode`]: a node that opens kith secure links in the simulation.
//!
//! It drives `kith_proto::secure`'s [`Initiator`] and [`Responder`] exactly per their calling
//! contract (drain transmits, then one event, answer questions, feed whole frames; any error
//! or refusal closes the connection without a word; a handshake message whose ephemeral the
//! [`ReplayCache`] has seen is dropped before it is answered), then hands each link to a
//! [`LinkMachine`], the same link protocol code the node runs: `version`, `ping`/`pong`
//! (pongs give round-trip times on the virtual clock), `bye` and drain, the responder's idle
//! close after [`Limits::idle_timeout_ms`], key confirmation. Every other envelope goes to an
//! inbox for the test (or a later protocol core) to take.
//!
//! Links are registered as kith-node registers them: one active link per peer, a responder's
//! only once the initiator confirmed its keys (so a replayed handshake never displaces a real
//! link nor records an address), a duplicate retired by the same tie-break (the link dialled
//! by the smaller agent id wins) with `bye` and drain. Links look "virtually open":
//! [`SecureSimNode::send_envelope`] to a known peer with no link queues the envelope, dials,
//! and delivers once the new link is up, so a link the responder closed for idleness is
//! re-opened by the next send from either side.
//!
//! Tickets and known peers live in memory. A successful ticket handshake makes both ends
//! known peers of each other, so they can later reconnect with N+KK. With `auto_redial` on,
//! the side that dialled a link redials it (N+KK, backoff from [`Limits::redial_min_ms`]
//! doubling to [`Limits::redial_max_ms`]) when it is lost to a reset or a partition; a link
//! that ended in order (`bye`) is not redialled. What it leaves out of the tokio driver: the
//! admission guard, and any per-link send queue (sends go straight into the machine).

mod conn;
mod drive;
mod lifecycle;
mod link;
mod report;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use kith_crypto::{AgentId, Identity};
use kith_proto::link::ByeReason;
#[cfg(doc)]
use kith_proto::link::LinkMachine;
use kith_proto::secure::{FrameDecoder, Mode, ReplayCache, SecureConfig};
#[cfg(doc)]
use kith_proto::secure::{Initiator, Responder};
use kith_proto::wire::Envelope;
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
    /// Handshake ephemerals remembered against replay (default 4,096; 0 turns the cache off,
    /// leaving key confirmation as the only defence).
    pub replay_cache_entries: usize,
    /// How long an ephemeral is remembered (default 10 minutes).
    pub replay_window: Duration,
}

impl Default for SecureNodeConfig {
    fn default() -> Self {
        SecureNodeConfig {
            limits: Limits::default(),
            mode: Mode::Noise,
            auto_redial: true,
            replay_cache_entries: 4_096,
            replay_window: Duration::from_secs(600),
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
    /// The active (confirmed, not retiring) link per peer.
    active: BTreeMap<AgentId, ConnId>,
    /// Envelopes for peers without an active link, waiting for the dial they started.
    pending: BTreeMap<AgentId, VecDeque<Envelope>>,
    replay: ReplayCache,
    redials: BTreeMap<AgentId, Redial>,
    pings: BTreeMap<[u8; 8], Instant>,
    outputs: VecDeque<Output>,
    events: Vec<(Instant, NodeEvent)>,
    rtts: Vec<(AgentId, Duration)>,
    inbox: VecDeque<(AgentId, Envelope)>,
    stats: SecureStats,
}

impl SecureSimNode {
    /// A node at `addr` whose identity and handshake randomness come from `rng`.
    pub fn new(addr: Addr, mut rng: StdRng, options: SecureNodeConfig) -> SecureSimNode {
        let identity = Identity::generate(&mut rng);
        let secure = SecureConfig::new(&identity, &options.limits).with_mode(options.mode);
        SecureSimNode {
            addr,
            frames: FrameDecoder::new(&options.limits),
            replay: ReplayCache::new(options.replay_cache_entries, options.replay_window),
            active: BTreeMap::new(),
            pending: BTreeMap::new(),
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

    /// Sends `ping` with a random 8-byte nonce on the active link to `agent`. False if there
    /// is none or too many pings are outstanding.
    pub fn ping(&mut self, now: Instant, agent: AgentId) -> bool {
        if self.pings.len() >= self.options.limits.max_pending_pings {
            return false;
        }
        let Some(&id) = self.active.get(&agent) else {
            return false;
        };
        let mut nonce = [0u8; 8];
        self.rng.fill_bytes(&mut nonce);
        let sent = self.machine_mut(id).is_some_and(|m| m.ping(nonce).is_ok());
        if sent {
            self.pings.insert(nonce, now);
            self.flush(id);
        }
        sent
    }

    /// Sends an envelope to `agent`: on the active link, or, for a known peer with none,
    /// queued (up to [`Limits::link_queue_envelopes`]) while a link is dialled, and sent once
    /// it is up. False if `agent` is unknown, the queue is full or the link refused it.
    pub fn send_envelope(&mut self, _now: Instant, agent: AgentId, envelope: &Envelope) -> bool {
        if let Some(&id) = self.active.get(&agent) {
            return self.send_on(id, envelope);
        }
        if !self.known.contains_key(&agent) {
            return false;
        }
        let queue = self.pending.entry(agent).or_default();
        if queue.len() >= self.options.limits.link_queue_envelopes.max(1) {
            return false;
        }
        queue.push_back(envelope.clone());
        self.ensure_dial(agent)
    }

    /// Closes the active link to `agent` in order: `bye`, then drain. False if there is none.
    pub fn close_link(&mut self, now: Instant, agent: AgentId) -> bool {
        let Some(id) = self.active.remove(&agent) else {
            return false;
        };
        if let Some(m) = self.machine_mut(id) {
            m.retire(now, ByeReason::Closing);
        }
        self.drive_link(now, id);
        true
    }

    /// The active links (confirmed, not retiring), in connection order.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.conns
            .iter()
            .filter_map(|(&conn, c)| match &c.state {
                State::Linked(l) if self.active.get(&l.peer) == Some(&conn) => Some(LinkInfo {
                    conn,
                    peer: l.peer,
                    role: l.machine.role(),
                    kind: l.machine.kind(),
                    mode: l.machine.mode(),
                    handshake_hash: l.machine.link().handshake_hash().to_vec(),
                    since: l.since,
                }),
                _ => None,
            })
            .collect()
    }

    /// Connections that carry an established link, active or not (an unconfirmed responder
    /// link, a retiring duplicate, one draining after `bye`).
    pub fn established_connections(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.state, State::Linked(_)))
            .count()
    }

    /// Whether an active link to `agent` is up.
    pub fn is_linked(&self, agent: AgentId) -> bool {
        self.active.contains_key(&agent)
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

    /// Takes the envelopes received that are not link-level commands (`version`, `ping`,
    /// `pong`, `bye`).
    pub fn take_inbox(&mut self) -> Vec<(AgentId, Envelope)> {
        self.inbox.drain(..).collect()
    }

    pub(super) fn log(&mut self, now: Instant, event: NodeEvent) {
        self.events.push((now, event));
    }
}
