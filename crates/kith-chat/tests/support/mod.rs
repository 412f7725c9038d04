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

use kith_chat::message::{Body, Envelope, MessageLimits};
use kith_chat::router::{ChatEvent, NeighbourInfo, NeighbourKind, Output, QueuedMessage};
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
}

struct Link {
    /// The neighbour id each end uses for the other: (a's id for b, b's id for a).
    ids: (NeighbourId, NeighbourId),
    latency: Duration,
    epoch: u64,
    up: bool,
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
    /// Transmissions per msg_id of MESSAGE copies (hops taken), when counting is on.
    pub message_hops: HashMap<String, u64>,
    /// Every transmitted MESSAGE's JSON is searched for this, when set.
    pub watch: Option<Vec<u8>>,
    pub watch_hits: u64,
    pub transmitted: u64,
    pub adjacency: Vec<Vec<usize>>,
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
            message_hops: HashMap::new(),
            watch: None,
            watch_hits: 0,
            transmitted: 0,
            adjacency: vec![Vec::new(); n],
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
                    self.persisted[i].insert(q.key.clone(), q);
                }
                Output::Forget { key } => {
                    self.persisted[i].remove(&key);
                }
                Output::Disconnect { neighbour, .. } => {
                    if let Some(&peer) = self.nb[i].get(&neighbour) {
                        self.cut(i, peer);
                    }
                }
            }
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
            return;
        };
        let key = (from.min(peer), from.max(peer));
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
                Event::Timer { node } => {
                    if self.timers[node] != Some(at) {
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
}

/// The configuration the simulations use: the defaults, with routing refreshes rare enough
/// not to dominate a run of a few virtual seconds.
pub fn sim_config() -> ChatConfig {
    ChatConfig::default()
}
