//! A deterministic in-memory network of chat routers on a virtual clock.
//!
//! kith-sim moves byte streams between `SimNode`s; the chat router works on whole messages,
//! and a 500- or 1,000-node run is only fast enough in a debug build when messages are moved
//! as values. So this small harness is message-level: each link has a fixed latency (so it
//! never reorders, like TCP), links can be cut and restored (cutting drops what is in flight
//! and tells both routers), and every output of every router is carried out in order. With
//! `json` on, every message is encoded and decoded on the way, as on the chat port.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use kith_chat::auth;
use kith_chat::message::{
    Auth, Body, ChatId, ChatMessage, Envelope, Hello, MessageLimits, NodeType,
};
use kith_chat::router::{
    ChannelRecord, ChatEvent, NeighbourInfo, NeighbourKind, Output, QueuedMessage,
};
use kith_chat::{ChatConfig, NeighbourId, Router};
use kith_crypto::{Identity, NodeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Deliver {
        to: usize,
        via: NeighbourId,
        epoch: u64,
        seq: u64,
    },
    Timer {
        node: usize,
    },
    /// A message for an endpoint (a scripted client or a rogue node attached to a router).
    ToEndpoint {
        endpoint: usize,
        seq: u64,
    },
    /// A dial (the driver re-opening a link for what waits) completes.
    Relink {
        a: usize,
        b: usize,
    },
    /// `from` dialled `to` to wake their sleeping link for what it buffered.
    Dial {
        from: usize,
        to: usize,
    },
    /// Links quiet for `idle` close (the secure links' responder does this).
    IdleCheck,
}

/// A scripted neighbour of one router: a chat-port client or a rogue kith node, driven by the
/// test (`inject`), whose received messages land in `inbox`.
pub struct Endpoint {
    pub node: usize,
    pub nb: NeighbourId,
    pub inbox: Vec<Envelope>,
    /// Per-hop ACK every acknowledged verb it receives (what a kith node does; a black hole
    /// that ACKs and drops looks like this).
    pub auto_ack: bool,
    pub up: bool,
    /// When the router cut it off, if it did.
    pub cut_at: Option<Instant>,
}

struct Link {
    /// The neighbour id each end uses for the other: (a's id for b, b's id for a).
    ids: (NeighbourId, NeighbourId),
    latency: Duration,
    epoch: u64,
    up: bool,
    /// Closed for idleness: both routers keep the neighbour; the next send dials.
    asleep: bool,
    dialling: bool,
    /// What was sent on it while asleep: (sender, message), delivered once it wakes.
    buffer: Vec<(usize, Envelope)>,
    /// Last time something was sent on it.
    active: Instant,
}

pub struct Net {
    pub routers: Vec<Router>,
    pub ids: Vec<NodeId>,
    pub identities: Vec<Identity>,
    pub start: Instant,
    pub now: Instant,
    pub json: bool,
    pub events: Vec<Vec<ChatEvent>>,
    pub persisted: Vec<BTreeMap<String, QueuedMessage>>,
    /// What each node keeps of its channels (SaveChannel / DropChannel).
    pub channel_records: Vec<BTreeMap<String, ChannelRecord>>,
    /// Transmissions per msg_id of MESSAGE copies (hops taken), when counting is on.
    pub message_hops: HashMap<String, u64>,
    /// Every transmitted MESSAGE's JSON is searched for this, when set.
    pub watch: Option<Vec<u8>>,
    pub watch_hits: u64,
    pub transmitted: u64,
    pub adjacency: Vec<Vec<usize>>,
    pub endpoints: Vec<Endpoint>,
    /// Per node: fail every Persist (a full disk).
    pub fail_persist: Vec<bool>,
    /// Links cut by a router (Disconnect), with when: (a, b, at).
    pub cut_offs: Vec<(usize, usize, Instant)>,
    /// Links close after this long without traffic (None: never), and a node whose router
    /// [`Router::wants_links`] dials its known neighbours again, as kith-node's driver does.
    pub idle: Option<Duration>,
    /// Nodes stopped (restarting): no link comes up with them.
    pub down: Vec<bool>,
    /// Links closed for idleness, and re-opened for what waited.
    pub idle_closed: u64,
    pub relinked: u64,
    /// Last dial attempt per pair, so a wanting node dials each neighbour at most every few
    /// seconds.
    dialled: HashMap<(usize, usize), Instant>,
    config: ChatConfig,
    links: BTreeMap<(usize, usize), Link>,
    /// Per node: neighbour id to (peer, link key).
    nb: Vec<HashMap<NeighbourId, usize>>,
    queue: BinaryHeap<Reverse<(Instant, u64, Event)>>,
    payloads: HashMap<u64, Envelope>,
    timers: Vec<Option<Instant>>,
    seq: u64,
    next_nb: u64,
    rng: StdRng,
    limits: MessageLimits,
}

impl Net {
    /// `n` routers, no links yet.
    pub fn new(n: usize, seed: u64, config: ChatConfig) -> Net {
        let start = Instant::now();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut routers = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut identities = Vec::with_capacity(n);
        for _ in 0..n {
            let identity = Identity::generate(&mut rng);
            ids.push(identity.node_id());
            identities.push(identity.clone());
            let seed: [u8; 32] = rng.gen();
            routers.push(Router::new(identity, config.clone(), start, seed).expect("router"));
        }
        Net {
            limits: config.message.clone(),
            config,
            routers,
            ids,
            identities,
            start,
            now: start,
            json: false,
            events: vec![Vec::new(); n],
            persisted: vec![BTreeMap::new(); n],
            channel_records: vec![BTreeMap::new(); n],
            message_hops: HashMap::new(),
            watch: None,
            watch_hits: 0,
            transmitted: 0,
            adjacency: vec![Vec::new(); n],
            endpoints: Vec::new(),
            fail_persist: vec![false; n],
            cut_offs: Vec::new(),
            idle: None,
            down: vec![false; n],
            idle_closed: 0,
            relinked: 0,
            dialled: HashMap::new(),
            links: BTreeMap::new(),
            nb: vec![HashMap::new(); n],
            queue: BinaryHeap::new(),
            payloads: HashMap::new(),
            timers: vec![None; n],
            seq: 0,
            next_nb: 1,
            rng,
        }
    }

    /// A random connected topology: a random tree, then extra random edges up to an average
    /// degree of `degree`.
    pub fn random_topology(&mut self, degree: usize) {
        let n = self.routers.len();
        for i in 1..n {
            let j = self.rng.gen_range(0..i);
            self.link(i, j);
        }
        let extra = (n * degree / 2).saturating_sub(n - 1);
        let mut added = 0;
        while added < extra {
            let (a, b) = (self.rng.gen_range(0..n), self.rng.gen_range(0..n));
            if a != b && !self.links.contains_key(&(a.min(b), a.max(b))) {
                self.link(a, b);
                added += 1;
            }
        }
    }

    fn ip(node: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(
            10,
            (node >> 16) as u8,
            (node >> 8) as u8,
            node as u8,
        ))
    }

    /// Connects `a` and `b` (both kith nodes, over a secure link), or restores a cut link.
    pub fn link(&mut self, a: usize, b: usize) {
        let key = (a.min(b), a.max(b));
        let (ia, ib) = (NeighbourId(self.next_nb), NeighbourId(self.next_nb + 1));
        self.next_nb += 2;
        let latency = Duration::from_millis(self.rng.gen_range(5..50));
        let epoch = self.links.get(&key).map_or(0, |l| l.epoch + 1);
        let (lo_id, hi_id) = if a == key.0 { (ia, ib) } else { (ib, ia) };
        self.links.insert(
            key,
            Link {
                ids: (lo_id, hi_id),
                latency,
                epoch,
                up: true,
                asleep: false,
                dialling: false,
                buffer: Vec::new(),
                active: self.now,
            },
        );
        if !self.adjacency[a].contains(&b) {
            self.adjacency[a].push(b);
            self.adjacency[b].push(a);
        }
        self.nb[a].insert(ia, b);
        self.nb[b].insert(ib, a);
        let now = self.now;
        let agent_b = self.identities[b].agent_id();
        let agent_a = self.identities[a].agent_id();
        self.routers[a].neighbour_up(
            now,
            ia,
            NeighbourInfo {
                kind: NeighbourKind::Node { agent: agent_b },
                observed_ip: Some(Self::ip(b)),
            },
        );
        self.routers[b].neighbour_up(
            now,
            ib,
            NeighbourInfo {
                kind: NeighbourKind::Node { agent: agent_a },
                observed_ip: Some(Self::ip(a)),
            },
        );
        self.drain(a);
        self.drain(b);
    }

    /// Cuts the link between `a` and `b`: what is in flight is lost, both ends are told.
    pub fn cut(&mut self, a: usize, b: usize) {
        let key = (a.min(b), a.max(b));
        let Some(link) = self.links.get_mut(&key) else {
            return;
        };
        if !link.up {
            return;
        }
        link.up = false;
        link.epoch += 1;
        let (lo_id, hi_id) = link.ids;
        let now = self.now;
        self.nb[key.0].remove(&lo_id);
        self.nb[key.1].remove(&hi_id);
        self.routers[key.0].neighbour_down(now, lo_id);
        self.routers[key.1].neighbour_down(now, hi_id);
        self.drain(key.0);
        self.drain(key.1);
    }

    /// Runs `f` on node `i` at the current time, then carries out its outputs.
    pub fn act<T>(&mut self, i: usize, f: impl FnOnce(&mut Router, Instant) -> T) -> T {
        let now = self.now;
        let out = f(&mut self.routers[i], now);
        self.drain(i);
        out
    }

    fn drain(&mut self, i: usize) {
        while let Some(out) = self.routers[i].poll_output() {
            match out {
                Output::Transmit { to, message } => self.send(i, to, message),
                Output::Deliver(e) => self.events[i].push(e),
                Output::Persist(q) => {
                    // The driver's answer, at once (as kith-node's does).
                    let stored = !self.fail_persist[i];
                    let key = q.key.clone();
                    if stored {
                        self.persisted[i].insert(key.clone(), q);
                    }
                    let now = self.now;
                    self.routers[i].persisted(now, &key, stored);
                }
                Output::Forget { key } => {
                    self.persisted[i].remove(&key);
                }
                Output::SaveChannel(record) => {
                    self.channel_records[i].insert(record.channel_id.clone(), record);
                }
                Output::DropChannel { channel_id } => {
                    self.channel_records[i].remove(&channel_id);
                }
                Output::Disconnect { neighbour, .. } => {
                    if let Some(&peer) = self.nb[i].get(&neighbour) {
                        self.cut_offs.push((i, peer, self.now));
                        self.cut(i, peer);
                    } else if let Some(e) = self
                        .endpoints
                        .iter_mut()
                        .find(|e| e.node == i && e.nb == neighbour && e.up)
                    {
                        e.up = false;
                        e.cut_at = Some(self.now);
                    }
                }
            }
        }
        if self.idle.is_some() && !self.down[i] && self.routers[i].wants_links() {
            self.wake(i);
        }
        let next = self.routers[i].poll_timeout();
        if next != self.timers[i] {
            self.timers[i] = next;
            if let Some(at) = next {
                self.seq += 1;
                self.queue.push(Reverse((
                    at.max(self.now),
                    self.seq,
                    Event::Timer { node: i },
                )));
            }
        }
    }

    fn send(&mut self, from: usize, to_nb: NeighbourId, message: Envelope) {
        let Some(&peer) = self.nb[from].get(&to_nb) else {
            if let Some(endpoint) = self
                .endpoints
                .iter()
                .position(|e| e.node == from && e.nb == to_nb && e.up)
            {
                self.transmitted += 1;
                self.seq += 1;
                self.payloads.insert(self.seq, message);
                let at = self.now + ENDPOINT_LATENCY;
                self.queue.push(Reverse((
                    at,
                    self.seq,
                    Event::ToEndpoint {
                        endpoint,
                        seq: self.seq,
                    },
                )));
            }
            return;
        };
        let key = (from.min(peer), from.max(peer));
        let now = self.now;
        if let Some(link) = self.links.get_mut(&key) {
            link.active = now;
            if link.asleep {
                // The driver opens the link again for it (a dial takes 30 ms).
                link.buffer.push((from, message));
                if !link.dialling {
                    link.dialling = true;
                    self.seq += 1;
                    let at = now + Duration::from_millis(30);
                    self.queue
                        .push(Reverse((at, self.seq, Event::Dial { from, to: peer })));
                }
                return;
            }
        }
        let link = &self.links[&key];
        let via = if from == key.0 {
            link.ids.1
        } else {
            link.ids.0
        };
        self.transmitted += 1;
        if let Body::Message(m) = &message.body {
            *self.message_hops.entry(m.msg_id.clone()).or_default() += 1;
            if let Some(needle) = &self.watch {
                let json = message.encode();
                if json.windows(needle.len()).any(|w| w == needle.as_slice()) {
                    self.watch_hits += 1;
                }
            }
        }
        let message = if self.json {
            Envelope::decode(&message.encode(), &self.limits).expect("round trip")
        } else {
            message
        };
        self.seq += 1;
        let at = self.now + link.latency;
        let epoch = link.epoch;
        self.payloads.insert(self.seq, message);
        self.queue.push(Reverse((
            at,
            self.seq,
            Event::Deliver {
                to: peer,
                via,
                epoch,
                seq: self.seq,
            },
        )));
        let _ = key;
    }

    /// Runs the clock for `d`.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > until {
                break;
            }
            let Some(Reverse((at, _, event))) = self.queue.pop() else {
                break;
            };
            self.now = self.now.max(at);
            match event {
                Event::Deliver {
                    to,
                    via,
                    epoch,
                    seq,
                } => {
                    let Some(env) = self.payloads.remove(&seq) else {
                        continue;
                    };
                    let Some(&peer) = self.nb[to].get(&via) else {
                        continue;
                    };
                    let key = (to.min(peer), to.max(peer));
                    if self.links.get(&key).map(|l| (l.up, l.epoch)) != Some((true, epoch)) {
                        continue;
                    }
                    let now = self.now;
                    self.routers[to].handle_input(now, via, env);
                    self.drain(to);
                }
                Event::ToEndpoint { endpoint, seq } => {
                    let Some(env) = self.payloads.remove(&seq) else {
                        continue;
                    };
                    if !self.endpoints[endpoint].up {
                        continue;
                    }
                    let ack = match (&env.body, self.endpoints[endpoint].auto_ack) {
                        (body, true) if body_acknowledged(body) => env.msg_id().map(|id| {
                            Envelope::new(
                                1,
                                Body::Ack(kith_chat::message::Ack {
                                    node_id: None,
                                    msg_id: id.to_string(),
                                    target_id: env.target(),
                                    recipient_id: None,
                                    auth: Default::default(),
                                }),
                            )
                        }),
                        _ => None,
                    };
                    self.endpoints[endpoint].inbox.push(env);
                    if let Some(ack) = ack {
                        self.inject(endpoint, ack);
                    }
                }
                Event::Relink { a, b } => {
                    if !self.down[a] && !self.down[b] && !self.link_up(a, b) {
                        self.relinked += 1;
                        self.link(a, b);
                    }
                }
                Event::IdleCheck => self.close_idle(),
                Event::Dial { from, to } => self.dialled_to(from, to),
                Event::Timer { node } => {
                    if self.down[node] || self.timers[node] != Some(at) {
                        continue;
                    }
                    self.timers[node] = None;
                    let now = self.now;
                    self.routers[node].handle_timeout(now);
                    self.drain(node);
                }
            }
        }
        self.now = until;
    }

    /// Hop distances from `src` (BFS over the links that are up).
    pub fn distances(&self, src: usize) -> Vec<Option<u32>> {
        let mut dist = vec![None; self.routers.len()];
        dist[src] = Some(0);
        let mut q = VecDeque::from([src]);
        while let Some(u) = q.pop_front() {
            for &v in &self.adjacency[u] {
                let up = self.links.get(&(u.min(v), u.max(v))).is_some_and(|l| l.up);
                if up && dist[v].is_none() {
                    dist[v] = Some(dist[u].unwrap_or(0) + 1);
                    q.push_back(v);
                }
            }
        }
        dist
    }

    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Messages (text) delivered to node `i` with this msg_id.
    pub fn deliveries(&self, i: usize, msg_id: &str) -> usize {
        self.events[i]
            .iter()
            .filter(|e| matches!(e, ChatEvent::Message(m) if m.msg_id == msg_id))
            .count()
    }

    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// Attaches a scripted neighbour to node `node`; returns its index in `endpoints`.
    pub fn attach(&mut self, node: usize, info: NeighbourInfo, auto_ack: bool) -> usize {
        let nb = NeighbourId(self.next_nb);
        self.next_nb += 1;
        self.endpoints.push(Endpoint {
            node,
            nb,
            inbox: Vec::new(),
            auto_ack,
            up: true,
            cut_at: None,
        });
        let now = self.now;
        self.routers[node].neighbour_up(now, nb, info);
        self.drain(node);
        self.endpoints.len() - 1
    }

    /// A chat-port client at `ip` on node `node`.
    pub fn attach_client(&mut self, node: usize, ip: IpAddr) -> usize {
        self.attach(
            node,
            NeighbourInfo {
                kind: NeighbourKind::Client,
                observed_ip: Some(ip),
            },
            false,
        )
    }

    /// A message from endpoint `e` to its router, now.
    pub fn inject(&mut self, e: usize, env: Envelope) {
        if !self.endpoints[e].up {
            return;
        }
        let (node, nb) = (self.endpoints[e].node, self.endpoints[e].nb);
        let now = self.now;
        self.routers[node].handle_input(now, nb, env);
        self.drain(node);
    }

    /// A frame of JSON text from endpoint `e` to its router, now (what a client on the chat
    /// port sends); the decoder's verdict is returned.
    pub fn inject_json(&mut self, e: usize, json: &serde_json::Value) -> bool {
        if !self.endpoints[e].up {
            return false;
        }
        let (node, nb) = (self.endpoints[e].node, self.endpoints[e].nb);
        let now = self.now;
        let ok = self.routers[node]
            .handle_frame(now, nb, &serde_json::to_vec(json).unwrap())
            .is_ok();
        self.drain(node);
        ok
    }

    /// What endpoint `e` received, as the JSON on its wire.
    pub fn inbox_json(&self, e: usize) -> Vec<serde_json::Value> {
        self.endpoints[e]
            .inbox
            .iter()
            .map(|m| m.to_json())
            .collect()
    }

    /// Endpoint `e` closes its connection.
    pub fn detach(&mut self, e: usize) {
        if !self.endpoints[e].up {
            return;
        }
        self.endpoints[e].up = false;
        let (node, nb) = (self.endpoints[e].node, self.endpoints[e].nb);
        let now = self.now;
        self.routers[node].neighbour_down(now, nb);
        self.drain(node);
    }

    /// Whether the link between `a` and `b` is up.
    pub fn link_up(&self, a: usize, b: usize) -> bool {
        self.links.get(&(a.min(b), a.max(b))).is_some_and(|l| l.up)
    }

    /// Links close after `idle` without traffic from now on (checked every second), and are
    /// dialled again by a node whose router wants links.
    pub fn idle_links(&mut self, idle: Duration) {
        self.idle = Some(idle);
        self.seq += 1;
        let at = self.now + Duration::from_secs(1);
        self.queue.push(Reverse((at, self.seq, Event::IdleCheck)));
    }

    fn close_idle(&mut self) {
        let Some(idle) = self.idle else {
            return;
        };
        let now = self.now;
        let quiet: Vec<(usize, usize)> = self
            .links
            .iter()
            .filter(|(_, l)| l.up && !l.asleep && now.saturating_duration_since(l.active) >= idle)
            .map(|(k, _)| *k)
            .collect();
        for (a, b) in quiet {
            self.idle_closed += 1;
            self.sleep(a, b);
        }
        self.seq += 1;
        self.queue.push(Reverse((
            now + Duration::from_secs(1),
            self.seq,
            Event::IdleCheck,
        )));
    }

    /// Node `i` wants links: every known neighbour whose link is down is dialled (a dial
    /// takes 30 ms), each at most every 5 s.
    fn wake(&mut self, i: usize) {
        let now = self.now;
        for j in self.adjacency[i].clone() {
            let pair = (i.min(j), i.max(j));
            let asleep = self.links.get(&pair).is_some_and(|l| l.up && l.asleep);
            if (self.link_up(i, j) && !asleep) || self.down[j] {
                continue;
            }
            if self
                .dialled
                .get(&pair)
                .is_some_and(|at| now.saturating_duration_since(*at) < Duration::from_secs(5))
            {
                continue;
            }
            self.dialled.insert(pair, now);
            self.seq += 1;
            let at = now + Duration::from_millis(30);
            let event = if asleep {
                Event::Dial { from: i, to: j }
            } else {
                Event::Relink { a: i, b: j }
            };
            self.queue.push(Reverse((at, self.seq, event)));
        }
    }

    /// The link of `a` and `b` closes for idleness: both keep the other as a sleeping
    /// neighbour (what kith-node's driver does on a link's idle close).
    fn sleep(&mut self, a: usize, b: usize) {
        let key = (a.min(b), a.max(b));
        let Some(link) = self.links.get_mut(&key) else {
            return;
        };
        if !link.up || link.asleep {
            return;
        }
        link.asleep = true;
        let (lo_id, hi_id) = link.ids;
        if !self.down[key.0] {
            self.routers[key.0].neighbour_asleep(lo_id);
        }
        if !self.down[key.1] {
            self.routers[key.1].neighbour_asleep(hi_id);
        }
    }

    /// `from`'s dial to wake its link with `to` completes: the link is up again (both
    /// routers told) and what waited goes; or `to` is down, and `from` learns it is gone.
    fn dialled_to(&mut self, from: usize, to: usize) {
        let key = (from.min(to), from.max(to));
        let Some(link) = self.links.get_mut(&key) else {
            return;
        };
        link.dialling = false;
        if !link.up {
            link.buffer.clear();
            return;
        }
        let (lo_id, hi_id) = link.ids;
        let (from_id, to_id) = if from == key.0 {
            (lo_id, hi_id)
        } else {
            (hi_id, lo_id)
        };
        let now = self.now;
        if self.down[to] {
            // Nobody answers: `from` reports the node gone; its router reroutes.
            link.buffer.clear();
            link.up = false;
            link.epoch += 1;
            self.nb[from].remove(&from_id);
            self.nb[to].remove(&to_id);
            self.routers[from].neighbour_down(now, from_id);
            self.drain(from);
            return;
        }
        if !link.asleep {
            return;
        }
        link.asleep = false;
        link.active = now;
        let buffer = std::mem::take(&mut link.buffer);
        self.relinked += 1;
        self.routers[from].neighbour_relinked(now, from_id);
        self.routers[to].neighbour_relinked(now, to_id);
        self.drain(from);
        self.drain(to);
        for (src, message) in buffer {
            let nb = if src == key.0 { lo_id } else { hi_id };
            self.send(src, nb, message);
        }
    }

    /// Stops node `i` (a crash or a restart): its links go down, its router is gone; what it
    /// stored (queued copies, channel records) stays.
    pub fn stop(&mut self, i: usize) {
        self.down[i] = true;
        for j in self.adjacency[i].clone() {
            // Its neighbours see the link go (and keep it as a sleeping neighbour); what
            // was on the way is lost.
            let key = (i.min(j), i.max(j));
            if let Some(link) = self.links.get_mut(&key) {
                if link.up {
                    link.epoch += 1;
                    link.buffer.clear();
                    let was_asleep = link.asleep;
                    link.asleep = true;
                    let j_id = if j == key.0 { link.ids.0 } else { link.ids.1 };
                    if !was_asleep && !self.down[j] {
                        self.routers[j].neighbour_asleep(j_id);
                    }
                }
            }
        }
        for e in 0..self.endpoints.len() {
            if self.endpoints[e].node == i {
                self.endpoints[e].up = false;
            }
        }
        self.timers[i] = None;
    }

    /// Restarts node `i` behind links that never look down to its neighbours (it came back
    /// before they noticed): its new router is fed what it stored and says HELLO over the
    /// same links, whose other ends still hold it as an identified neighbour.
    pub fn restart_unnoticed(&mut self, i: usize) {
        let seed: [u8; 32] = self.rng.gen();
        let now = self.now;
        let mut router =
            Router::new(self.identities[i].clone(), self.config.clone(), now, seed).unwrap();
        for record in self.channel_records[i].values() {
            router.restore_channel(now, record.clone()).unwrap();
        }
        for stored in self.persisted[i].values() {
            router.restore(now, stored.clone()).unwrap();
        }
        self.routers[i] = router;
        self.timers[i] = None;
        self.drain(i);
        for j in self.adjacency[i].clone() {
            let key = (i.min(j), i.max(j));
            let Some(link) = self.links.get_mut(&key) else {
                continue;
            };
            if !link.up {
                continue;
            }
            link.epoch += 1;
            let i_id = if i == key.0 { link.ids.0 } else { link.ids.1 };
            let agent = self.identities[j].agent_id();
            self.routers[i].neighbour_up(
                now,
                i_id,
                NeighbourInfo {
                    kind: NeighbourKind::Node { agent },
                    observed_ip: Some(Self::ip(j)),
                },
            );
            self.drain(i);
        }
    }

    /// Starts node `i` again with a new router fed what it stored, and links it to its
    /// neighbours that are up. Returns how many records it restored.
    pub fn start(&mut self, i: usize) -> usize {
        let seed: [u8; 32] = self.rng.gen();
        let now = self.now;
        let mut router =
            Router::new(self.identities[i].clone(), self.config.clone(), now, seed).unwrap();
        let mut restored = 0;
        for record in self.channel_records[i].values() {
            router.restore_channel(now, record.clone()).unwrap();
            restored += 1;
        }
        for stored in self.persisted[i].values() {
            router.restore(now, stored.clone()).unwrap();
            restored += 1;
        }
        self.routers[i] = router;
        self.down[i] = false;
        self.drain(i);
        // It dials its peers: a neighbour that kept it asleep wakes the same neighbour; one
        // that found it gone links afresh.
        for j in self.adjacency[i].clone() {
            if self.down[j] {
                continue;
            }
            let key = (i.min(j), i.max(j));
            let Some(link) = self.links.get_mut(&key) else {
                self.link(i, j);
                continue;
            };
            if !link.up {
                self.link(i, j);
                continue;
            }
            link.asleep = false;
            link.active = now;
            link.buffer.clear();
            let (i_id, j_id) = if i == key.0 {
                (link.ids.0, link.ids.1)
            } else {
                (link.ids.1, link.ids.0)
            };
            let agent = self.identities[j].agent_id();
            self.routers[i].neighbour_up(
                now,
                i_id,
                NeighbourInfo {
                    kind: NeighbourKind::Node { agent },
                    observed_ip: Some(Self::ip(j)),
                },
            );
            self.routers[j].neighbour_relinked(now, j_id);
            self.drain(i);
            self.drain(j);
        }
        restored
    }
}

impl Net {
    /// The HELLO endpoint `e`'s router sent it, if any.
    pub fn hello_from_router(&self, e: usize) -> Option<Hello> {
        self.endpoints[e]
            .inbox
            .iter()
            .find_map(|env| match &env.body {
                Body::Hello(h) => Some(h.clone()),
                _ => None,
            })
    }

    /// Endpoint `e` says HELLO as `id` (a client).
    pub fn say_hello(&mut self, e: usize, id: NodeId) {
        self.inject(e, hello(ChatId::new(id), None, Auth::default()));
    }

    /// Endpoint `e` answers its router's challenge with `key`'s proof for `id` (normally the
    /// id `key` derives; a test may claim another).
    pub fn prove(&mut self, e: usize, id: NodeId, key: &Identity) {
        self.run_for(Duration::from_millis(10));
        let router_id = self.ids[self.endpoints[e].node];
        let challenge = self
            .hello_from_router(e)
            .and_then(|h| h.challenge)
            .expect("the router's HELLO carries a challenge");
        let proof = auth::sign(key, &auth::hello_bytes(&challenge, &router_id, &id));
        self.inject(e, hello(ChatId::new(id), None, proof));
    }

    /// A chat-port client at `ip` on `node` that proves `key` (its own id).
    pub fn proven_client(&mut self, node: usize, ip: IpAddr, key: &Identity) -> usize {
        let e = self.attach_client(node, ip);
        self.say_hello(e, key.node_id());
        self.prove(e, key.node_id(), key);
        e
    }
}

/// A client's HELLO.
pub fn hello(id: ChatId, challenge: Option<String>, auth: Auth) -> Envelope {
    Envelope::new(
        1,
        Body::Hello(Hello {
            node_id: id,
            version: Some("test/1".into()),
            node_type: NodeType::Client,
            challenge,
            auth,
            later_revision: false,
        }),
    )
}

/// A signed MESSAGE by `author` (its key in `public_key` when `with_key`).
pub fn signed_message(
    author: &Identity,
    msg_id: &str,
    to: &[NodeId],
    channel: Option<(&str, &str)>,
    text: &str,
    with_key: bool,
) -> ChatMessage {
    let mut m = ChatMessage {
        msg_id: msg_id.into(),
        node_id: ChatId::new(author.node_id()),
        recipient: to.iter().map(|t| ChatId::new(*t)).collect(),
        timestamp: "t".into(),
        channel: channel.map(|c| c.0.to_string()).unwrap_or_default(),
        channel_id: channel.map(|c| c.1.to_string()).unwrap_or_default(),
        message: Vec::new(),
        attachments: Vec::new(),
        public_key: with_key.then(|| author.agent_public()),
        unsigned: false,
        plain_text: false,
    };
    kith_chat::crypto::sign_message(author, &mut m, text.as_bytes());
    m
}

/// A ROUTING from `key` to the router with GUID `receiver` claiming `claims` (GUID, hops),
/// signed as kith signs it (`challenge`: the one the receiver gave on this connection, empty
/// over a secure link; `seq` must grow on a connection).
pub fn signed_routing(
    key: &Identity,
    receiver: NodeId,
    challenge: &str,
    seq: u64,
    claims: &[(NodeId, u32)],
) -> Envelope {
    let msg_id = format!("routing-{seq}-{}", key.node_id());
    let bytes = auth::routing_bytes(&msg_id, &key.node_id(), &receiver, challenge, seq, claims);
    let mut env = Envelope::new(
        1,
        Body::Routing(kith_chat::message::Routing {
            node_id: ChatId::new(key.node_id()),
            nodes: claims
                .iter()
                .map(|(id, ttl)| kith_chat::message::RouteEntry {
                    node_id: ChatId::new(*id),
                    ttl: *ttl,
                })
                .collect(),
            seq: Some(seq),
            auth: auth::sign(key, &bytes),
        }),
    );
    env.msg_id = Some(msg_id);
    env
}

/// `body` as a flooded envelope (ttl 32).
pub fn flooded(body: Body) -> Envelope {
    let mut env = Envelope::new(32, body);
    env.flood = true;
    env
}

/// Latency between a router and its endpoints.
pub const ENDPOINT_LATENCY: Duration = Duration::from_millis(2);

fn body_acknowledged(body: &Body) -> bool {
    body.verb().acknowledged()
}

/// The configuration the simulations use: the defaults, with routing refreshes rare enough
/// not to dominate a run of a few virtual seconds.
pub fn sim_config() -> ChatConfig {
    ChatConfig::default()
}

/// What [`churn`] measured.
#[derive(Debug, Default)]
pub struct ChurnReport {
    pub nodes: usize,
    pub members: usize,
    pub channel_expected: usize,
    pub channel_delivered: usize,
    pub channel_duplicates: usize,
    pub direct_expected: usize,
    pub direct_delivered: usize,
    pub restarts: usize,
    pub idle_closed: u64,
    pub relinked: u64,
    pub transmitted: u64,
}

impl ChurnReport {
    /// Deliveries over what was owed (1.0: nothing lost).
    pub fn ratio(&self) -> f64 {
        (self.channel_delivered + self.direct_delivered) as f64
            / (self.channel_expected + self.direct_expected).max(1) as f64
    }
}

/// `n` nodes whose links close after 20 s of quiet (and are woken by what is sent), a tenth
/// of them in `lobby`; `rounds` times: a twentieth of the nodes restart (down for a minute),
/// members speak and random nodes send direct messages, then everyone goes quiet for two
/// minutes. Finally every message said is checked at every member (or recipient).
pub fn churn(n: usize, seed: u64, rounds: usize) -> ChurnReport {
    let mut net = Net::new(n, seed, sim_config());
    net.random_topology(4);
    net.run_for(Duration::from_secs(15));
    net.idle_links(Duration::from_secs(20));
    let members: Vec<usize> = (0..n).step_by(10).collect();
    for &m in &members {
        net.act(m, |r, now| r.join(now, "lobby", false)).unwrap();
    }
    net.run_for(Duration::from_secs(10));
    let mut report = ChurnReport {
        nodes: n,
        members: members.len(),
        ..ChurnReport::default()
    };
    let mut said: Vec<(usize, String)> = Vec::new();
    let mut direct: Vec<(usize, usize, String)> = Vec::new();
    for round in 0..rounds {
        // Some nodes go down (never the whole neighbourhood of anyone for long).
        let down: Vec<usize> = (0..n / 20).map(|_| net.rng().gen_range(0..n)).collect();
        let mut stopped = Vec::new();
        for &d in &down {
            if !net.down[d] {
                net.stop(d);
                stopped.push(d);
            }
        }
        report.restarts += stopped.len();
        net.run_for(Duration::from_secs(5));
        for k in 0..5 {
            let speaker = members[(round * 7 + k * 3) % members.len()];
            if net.down[speaker] {
                continue;
            }
            let text = format!("round {round} from {speaker}");
            let id = net
                .act(speaker, |r, now| {
                    r.say(now, "lobby", &text, Vec::new(), "t")
                })
                .unwrap();
            said.push((speaker, id));
        }
        for _ in 0..5 {
            let (a, b) = (net.rng().gen_range(0..n), net.rng().gen_range(0..n));
            if a == b || net.down[a] {
                continue;
            }
            let target = net.ids[b];
            let id = net
                .act(a, |r, now| {
                    r.send_direct(now, &[target], "dm", Vec::new(), "t")
                })
                .unwrap();
            direct.push((a, b, id));
        }
        net.run_for(Duration::from_secs(60));
        for d in stopped {
            net.start(d);
        }
        // Quiet: links close for idleness.
        net.run_for(Duration::from_secs(120));
    }
    net.run_for(Duration::from_secs(600));
    for (speaker, id) in &said {
        for &m in &members {
            if m == *speaker {
                continue;
            }
            report.channel_expected += 1;
            let got = net.deliveries(m, id);
            report.channel_delivered += usize::from(got >= 1);
            report.channel_duplicates += got.saturating_sub(1);
        }
    }
    for (_, b, id) in &direct {
        report.direct_expected += 1;
        report.direct_delivered += usize::from(net.deliveries(*b, id) >= 1);
    }
    report.idle_closed = net.idle_closed;
    report.relinked = net.relinked;
    report.transmitted = net.transmitted;
    report
}
