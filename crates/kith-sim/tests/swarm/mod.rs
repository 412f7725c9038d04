//! The harness of `windowed_items.rs`: a fetcher node running the multi-source
//! [`Scheduler`] and holder nodes running the [`ItemServer`], their requests and items as
//! envelopes on kith-sim streams.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use kith_proto::files::items::{
    Answer, Arrival, DropReason, Holding, ItemServer, Request, Response, SchedEvent, Scheduler,
    SchedulerConfig, ServerConfig, ServerEvent,
};
use kith_proto::files::ContentHash;
use kith_proto::wire::{Envelope, EnvelopeDecoder};
use kith_sim::{Addr, ConnId, Input, LinkConfig, NetConfig, Output, Sim, SimNode};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

pub const MB: u64 = 1_000_000;
/// Item size: small enough for a quick simulation, large enough that windows matter.
pub const ITEM: usize = 250_000;
pub const FILE: ContentHash = ContentHash([7; 32]);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn item(i: u32) -> Bytes {
    let mut bytes = vec![0u8; ITEM];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    bytes[ITEM - 4..].copy_from_slice(&i.to_le_bytes());
    Bytes::from(bytes)
}

pub fn hash_of(bytes: &[u8]) -> ContentHash {
    ContentHash(Sha256::digest(bytes).into())
}

fn send_env(out: &mut VecDeque<Output>, conn: ConnId, env: &Envelope) {
    out.push_back(Output::Send {
        conn,
        bytes: env.to_bytes().unwrap(),
    });
}

fn decode_all(decoder: &EnvelopeDecoder, buf: &mut BytesMut, bytes: &[u8]) -> Vec<Envelope> {
    buf.extend_from_slice(bytes);
    let mut envs = Vec::new();
    while let Ok(Some(env)) = decoder.decode(buf) {
        envs.push(env);
    }
    envs
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    None,
    /// Every item it sends is garbage.
    Liar,
}

pub struct Holder {
    items: HashMap<ContentHash, Bytes>,
    fault: Fault,
    servers: HashMap<ConnId, (ItemServer, BytesMut)>,
    out: VecDeque<Output>,
}

pub struct Fetcher {
    sched: Scheduler<Addr>,
    pub wanted: usize,
    /// Verified items.
    pub done: HashSet<ContentHash>,
    conns: HashMap<ConnId, (Addr, BytesMut)>,
    by_addr: HashMap<Addr, ConnId>,
    out: VecDeque<Output>,
    pub events: Vec<SchedEvent<Addr>>,
    pub wrong: u64,
    unsolicited: u64,
    pub peak_window: u64,
    /// Holders that have not answered the query yet.
    unanswered: usize,
    /// When the transfer started (every holder answered), and when it ended.
    pub started_at: Option<Instant>,
    pub finished_at: Option<Instant>,
}

pub enum Node {
    Holder(Holder),
    Fetcher(Box<Fetcher>),
}

fn decoder() -> EnvelopeDecoder {
    EnvelopeDecoder::new(4 * MB as u32)
}

impl Holder {
    fn handle(&mut self, input: Input) {
        match input {
            Input::Accepted { conn, .. } => {
                let server = ItemServer::new(ServerConfig {
                    max_queued: 256,
                    read_ahead: 4,
                });
                self.servers.insert(conn, (server, BytesMut::new()));
            }
            Input::Data { conn, bytes } => {
                let Some((server, buf)) = self.servers.get_mut(&conn) else {
                    return;
                };
                for env in decode_all(&decoder(), buf, &bytes) {
                    if let Ok(request) = Request::decode(&env) {
                        server.handle(request);
                    }
                }
                while let Some(ServerEvent::Query(file)) = server.poll_event() {
                    server.answer_query(Answer {
                        file,
                        holding: Holding::Whole,
                        size: (self.items.len() * ITEM) as u64,
                        name: Some("sim.bin".into()),
                    });
                }
                while let Some(hash) = server.poll_read() {
                    server.read_done(hash, self.items.get(&hash).cloned());
                }
                while let Some(mut response) = server.poll_transmit() {
                    if let (Fault::Liar, Response::Item { item, .. }) = (self.fault, &mut response)
                    {
                        *item = Bytes::from(vec![0xEE; item.len()]);
                    }
                    send_env(&mut self.out, conn, &response.encode());
                }
            }
            Input::Closed { conn, .. } => {
                self.servers.remove(&conn);
            }
            _ => {}
        }
    }
}

impl Fetcher {
    fn new(wanted: &[ContentHash], window: u64, holders: usize) -> Fetcher {
        let mut sched = Scheduler::new(SchedulerConfig {
            max_window: window,
            max_source_window: window,
            initial_window: 4 * ITEM as u64,
            item_size: ITEM as u64,
            stall_timeout: Duration::from_secs(2),
            max_stalls: 3,
        });
        for hash in wanted {
            sched.want(*hash);
        }
        Fetcher {
            sched,
            wanted: wanted.len(),
            done: HashSet::new(),
            conns: HashMap::new(),
            by_addr: HashMap::new(),
            out: VecDeque::new(),
            events: Vec::new(),
            wrong: 0,
            unsolicited: 0,
            peak_window: 0,
            unanswered: holders,
            started_at: None,
            finished_at: None,
        }
    }

    fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connected { conn, peer, .. } => {
                self.conns.insert(conn, (peer, BytesMut::new()));
                self.by_addr.insert(peer, conn);
                send_env(&mut self.out, conn, &Request::Query(FILE).encode()[0]);
            }
            Input::Data { conn, bytes } => {
                let Some((peer, buf)) = self.conns.get_mut(&conn) else {
                    return;
                };
                let peer = *peer;
                for env in decode_all(&decoder(), buf, &bytes) {
                    match Response::decode(&env, 2 * ITEM) {
                        Ok(response) => self.on_response(now, peer, response),
                        Err(_) => self.sched.drop_source(&peer, DropReason::Malformed, now),
                    }
                }
            }
            Input::Closed { conn, .. } => {
                if let Some((peer, _)) = self.conns.remove(&conn) {
                    self.by_addr.remove(&peer);
                    self.sched.remove_source(&peer, now);
                }
            }
            Input::Timeout => self.sched.handle_timeout(now),
            _ => {}
        }
        self.pump(now);
    }

    fn on_response(&mut self, now: Instant, peer: Addr, response: Response) {
        match response {
            Response::Answer(a) => {
                self.unanswered = self.unanswered.saturating_sub(1);
                if a.file == FILE && a.holding != Holding::None {
                    self.sched.add_source(peer, now);
                }
            }
            Response::Item { hash, item } => {
                match self.sched.arrived(&peer, hash, item.len() as u64, now) {
                    Arrival::Expected if hash_of(&item) == hash => {
                        // Stored at once: this fetcher's disk is not what is measured.
                        self.sched.done(&hash);
                        self.done.insert(hash);
                    }
                    Arrival::Expected => {
                        self.wrong += 1;
                        self.sched.wrong(hash, now);
                    }
                    Arrival::Late => {}
                    Arrival::Unsolicited => self.unsolicited += 1,
                }
            }
            Response::Missing(hash) => self.sched.missing(&peer, hash, now),
            Response::Busy(hash) => self.sched.busy(&peer, hash, now),
        }
    }

    fn pump(&mut self, now: Instant) {
        if self.unanswered > 0 {
            // As in a node, the transfer starts once every holder has answered (asking a
            // scheduler with no source yet gives its items up).
            return;
        }
        self.started_at.get_or_insert(now);
        let mut gets: HashMap<Addr, Vec<ContentHash>> = HashMap::new();
        while let Some((peer, hash)) = self.sched.poll_request(now) {
            gets.entry(peer).or_default().push(hash);
        }
        let used = self.sched.window_used();
        assert!(
            used <= self.sched.config().max_window,
            "window over its bound"
        );
        self.peak_window = self.peak_window.max(used);
        let mut cancels: HashMap<Addr, Vec<ContentHash>> = HashMap::new();
        while let Some((peer, hash)) = self.sched.poll_cancel() {
            cancels.entry(peer).or_default().push(hash);
        }
        let mut sends: Vec<_> = gets
            .into_iter()
            .map(|(p, h)| (p, Request::Get(h)))
            .chain(cancels.into_iter().map(|(p, h)| (p, Request::Cancel(h))))
            .collect();
        // HashMap order is not deterministic; the simulation must be.
        sends.sort_by_key(|(p, r)| (*p, matches!(r, Request::Cancel(_))));
        for (peer, request) in sends {
            if let Some(conn) = self.by_addr.get(&peer) {
                for env in request.encode() {
                    send_env(&mut self.out, *conn, &env);
                }
            }
        }
        while let Some(event) = self.sched.poll_event() {
            self.events.push(event);
        }
        if self.finished_at.is_none() && self.done.len() == self.wanted {
            self.finished_at = Some(now);
        }
    }

    pub fn dropped(&self, peer: Addr) -> Option<DropReason> {
        self.sched
            .report()
            .into_iter()
            .find(|r| r.source == peer)
            .and_then(|r| r.dropped)
    }

    pub fn items_from(&self, peer: Addr) -> u64 {
        self.sched
            .report()
            .into_iter()
            .find(|r| r.source == peer)
            .map_or(0, |r| r.items)
    }
}

impl SimNode for Node {
    fn handle(&mut self, now: Instant, input: Input) {
        match self {
            Node::Holder(h) => h.handle(input),
            Node::Fetcher(f) => f.handle(now, input),
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        match self {
            Node::Holder(h) => h.out.pop_front(),
            Node::Fetcher(f) => f.out.pop_front(),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Node::Holder(_) => None,
            Node::Fetcher(f) => f.sched.poll_timeout(),
        }
    }
}

pub struct Swarm {
    pub sim: Sim<Node>,
    pub fetcher: Addr,
    pub holders: Vec<Addr>,
}

impl Swarm {
    /// `n` items; one holder per `(one-way latency, bytes per second, fault)`.
    pub fn new(seed: u64, n: u32, holders: &[(Duration, u64, Fault)], window: u64) -> Swarm {
        let config = NetConfig {
            default_link: LinkConfig {
                mss: 16 * 1024,
                ..LinkConfig::default()
            },
            partition_break_after: Duration::from_secs(5),
            ..NetConfig::default()
        };
        let mut sim = Sim::with_config(seed, config);
        let items: HashMap<ContentHash, Bytes> = (0..n)
            .map(|i| {
                let bytes = item(i);
                (hash_of(&bytes), bytes)
            })
            .collect();
        let mut wanted: Vec<ContentHash> = (0..n).map(|i| hash_of(&item(i))).collect();
        wanted.dedup();
        let fetcher = sim.add_node(Node::Fetcher(Box::new(Fetcher::new(
            &wanted,
            window,
            holders.len(),
        ))));
        let mut addrs = Vec::new();
        for &(one_way, rate, fault) in holders {
            let addr = sim.add_node(Node::Holder(Holder {
                items: items.clone(),
                fault,
                servers: HashMap::new(),
                out: VecDeque::new(),
            }));
            sim.set_link(
                fetcher,
                addr,
                LinkConfig {
                    latency: one_way,
                    bandwidth: Some(rate),
                    mss: 16 * 1024,
                    ..LinkConfig::default()
                },
            );
            addrs.push(addr);
        }
        for (tag, addr) in addrs.iter().enumerate() {
            let to = *addr;
            sim.act(fetcher, |node, _| {
                if let Node::Fetcher(f) = node {
                    f.out.push_back(Output::Connect {
                        to,
                        tag: tag as u64,
                    });
                }
            });
        }
        Swarm {
            sim,
            fetcher,
            holders: addrs,
        }
    }

    pub fn fetcher(&self) -> &Fetcher {
        match self.sim.node(self.fetcher) {
            Node::Fetcher(f) => f,
            Node::Holder(_) => unreachable!(),
        }
    }

    pub fn finished(&self) -> bool {
        self.fetcher().finished_at.is_some()
    }

    /// Runs until the fetch is done (or `limit` passes); the virtual seconds the transfer
    /// took (from the answers to the last item: connecting and asking are not the window's).
    pub fn run(&mut self, limit: Duration) -> f64 {
        let fetcher = self.fetcher;
        let done = self
            .sim
            .run_until_with(limit, |sim| match sim.node(fetcher) {
                Node::Fetcher(f) => f.finished_at.is_some(),
                Node::Holder(_) => false,
            });
        let f = self.fetcher();
        assert!(
            done,
            "not done by {limit:?}: {} of {}; {:?}",
            f.done.len(),
            f.wanted,
            f.events.first()
        );
        (f.finished_at.unwrap() - f.started_at.unwrap()).as_secs_f64()
    }

    /// Runs to `offset`, in slices of `slice`, calling `each` between slices.
    pub fn run_sliced(
        &mut self,
        offset: Duration,
        slice: Duration,
        mut each: impl FnMut(&mut Self),
    ) {
        while self.sim.elapsed() < offset && !self.finished() {
            let next = (self.sim.elapsed() + slice).min(offset);
            let fetcher = self.fetcher;
            self.sim
                .run_until_with(next, |sim| match sim.node(fetcher) {
                    Node::Fetcher(f) => f.finished_at.is_some(),
                    Node::Holder(_) => false,
                });
            each(self);
        }
    }
}
