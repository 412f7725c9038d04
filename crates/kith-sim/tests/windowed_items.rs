//! Windowed item exchange (`kith_proto::files::items`) on kith-sim's network: a fetcher
//! running the multi-source [`Scheduler`] and holders running the [`ItemServer`], their
//! requests and items as envelopes on simulated streams with latency, bandwidth, partitions
//! (short ones as a stream's loss: a lost segment stalls it for a retransmission timeout;
//! long ones break the connection), holders that die, and a holder that lies. The fetcher
//! hashes every item before it counts, as a node does.

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

const MB: u64 = 1_000_000;
/// Item size: small enough for a quick simulation, large enough that windows matter.
const ITEM: usize = 250_000;
const FILE: ContentHash = ContentHash([7; 32]);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn item(i: u32) -> Bytes {
    let mut bytes = vec![0u8; ITEM];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    bytes[ITEM - 4..].copy_from_slice(&i.to_le_bytes());
    Bytes::from(bytes)
}

fn hash_of(bytes: &[u8]) -> ContentHash {
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
enum Fault {
    None,
    /// Every item it sends is garbage.
    Liar,
}

struct Holder {
    items: HashMap<ContentHash, Bytes>,
    fault: Fault,
    servers: HashMap<ConnId, (ItemServer, BytesMut)>,
    out: VecDeque<Output>,
}

struct Fetcher {
    sched: Scheduler<Addr>,
    wanted: usize,
    /// Verified items.
    done: HashSet<ContentHash>,
    conns: HashMap<ConnId, (Addr, BytesMut)>,
    by_addr: HashMap<Addr, ConnId>,
    out: VecDeque<Output>,
    events: Vec<SchedEvent<Addr>>,
    wrong: u64,
    unsolicited: u64,
    peak_window: u64,
    /// Holders that have not answered the query yet.
    unanswered: usize,
    /// When the transfer started (every holder answered), and when it ended.
    started_at: Option<Instant>,
    finished_at: Option<Instant>,
}

enum Node {
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
                        self.sched.verified(&hash);
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

    fn dropped(&self, peer: Addr) -> Option<DropReason> {
        self.sched
            .report()
            .into_iter()
            .find(|r| r.source == peer)
            .and_then(|r| r.dropped)
    }

    fn items_from(&self, peer: Addr) -> u64 {
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

struct Swarm {
    sim: Sim<Node>,
    fetcher: Addr,
    holders: Vec<Addr>,
}

impl Swarm {
    /// `n` items; one holder per `(one-way latency, bytes per second, fault)`.
    fn new(seed: u64, n: u32, holders: &[(Duration, u64, Fault)], window: u64) -> Swarm {
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

    fn fetcher(&self) -> &Fetcher {
        match self.sim.node(self.fetcher) {
            Node::Fetcher(f) => f,
            Node::Holder(_) => unreachable!(),
        }
    }

    fn finished(&self) -> bool {
        self.fetcher().finished_at.is_some()
    }

    /// Runs until the fetch is done (or `limit` passes); the virtual seconds the transfer
    /// took (from the answers to the last item: connecting and asking are not the window's).
    fn run(&mut self, limit: Duration) -> f64 {
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
    fn run_sliced(&mut self, offset: Duration, slice: Duration, mut each: impl FnMut(&mut Self)) {
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

fn mb_per_s(items: u32, secs: f64) -> f64 {
    items as f64 * ITEM as f64 / secs / MB as f64
}

#[test]
fn a_window_fills_a_fifty_millisecond_path() {
    // 40 MB across 25 ms each way at 50 MB/s: the bandwidth-delay product is 2.5 MB.
    let mut swarm = Swarm::new(1, 160, &[(ms(25), 50 * MB, Fault::None)], 16 * MB);
    let secs = swarm.run(Duration::from_secs(30));
    let rate = mb_per_s(160, secs);
    assert!(rate > 0.8 * 50.0, "{rate:.1} MB/s of 50");
    // A window of one item takes turns: one round trip per item at least.
    let mut turns = Swarm::new(1, 40, &[(ms(25), 50 * MB, Fault::None)], ITEM as u64);
    let slow = mb_per_s(40, turns.run(Duration::from_secs(30)));
    assert!(
        slow < 0.5 * rate,
        "one item at a time: {slow:.1} MB/s, windowed {rate:.1}"
    );
}

#[test]
fn three_uplinks_add_up_and_the_faster_source_carries_more() {
    let holders = [
        (ms(25), 40 * MB, Fault::None),
        (ms(25), 40 * MB, Fault::None),
        (ms(25), 40 * MB, Fault::None),
    ];
    let mut swarm = Swarm::new(2, 480, &holders, 24 * MB);
    let rate = mb_per_s(480, swarm.run(Duration::from_secs(30)));
    assert!(
        rate >= 2.7 * 40.0,
        "{rate:.1} MB/s from three 40 MB/s uplinks"
    );

    let holders = [
        (ms(25), 60 * MB, Fault::None),
        (ms(60), 10 * MB, Fault::None),
    ];
    let mut swarm = Swarm::new(3, 200, &holders, 24 * MB);
    swarm.run(Duration::from_secs(30));
    let (fast, slow) = (swarm.holders[0], swarm.holders[1]);
    let f = swarm.fetcher();
    assert!(
        f.items_from(fast) > 3 * f.items_from(slow),
        "fast {} slow {}",
        f.items_from(fast),
        f.items_from(slow)
    );
}

#[test]
fn loss_stalls_streams_but_the_fetch_completes() {
    let holders = [
        (ms(25), 40 * MB, Fault::None),
        (ms(25), 40 * MB, Fault::None),
    ];
    let mut clean = Swarm::new(4, 240, &holders, 24 * MB);
    let clean_secs = clean.run(Duration::from_secs(30));
    let mut lossy = Swarm::new(4, 240, &holders, 24 * MB);
    // Every 50 ms each link loses a segment with probability 0.2: a 200 ms stall (a
    // retransmission timeout), seeded so every run is the same.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut stalled: Vec<(Addr, Duration)> = Vec::new();
    let mut stalls = 0;
    lossy.run_sliced(Duration::from_secs(60), ms(50), |s| {
        let now = s.sim.elapsed();
        let fetcher = s.fetcher;
        stalled.retain(|(h, until)| {
            if *until <= now {
                s.sim.heal(fetcher, *h);
                false
            } else {
                true
            }
        });
        for h in s.holders.clone() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if rng.is_multiple_of(5) && !stalled.iter().any(|(x, _)| *x == h) {
                s.sim.partition(fetcher, h);
                stalled.push((h, now + ms(200)));
                stalls += 1;
            }
        }
    });
    assert!(lossy.finished(), "{:?}", lossy.fetcher().events.first());
    let f = lossy.fetcher();
    let lossy_secs = (f.finished_at.unwrap() - f.started_at.unwrap()).as_secs_f64();
    assert!(stalls > 5, "the loss happened: {stalls}");
    assert!(lossy_secs > clean_secs, "{lossy_secs} vs {clean_secs}");
    assert!(
        lossy_secs < 4.0 * clean_secs,
        "loss costs stalls, not the fetch: {lossy_secs:.2}s vs {clean_secs:.2}s"
    );
}

#[test]
fn a_short_partition_delays_a_source_and_a_long_one_has_its_work_moved() {
    let holders = [
        (ms(25), 20 * MB, Fault::None),
        (ms(25), 20 * MB, Fault::None),
    ];
    let mut swarm = Swarm::new(5, 240, &holders, 24 * MB);
    let (a, b) = (swarm.holders[0], swarm.holders[1]);
    let fetcher = swarm.fetcher;
    // A: cut for one second, then back (shorter than the 5 s after which streams break).
    swarm.sim.run_until(ms(300));
    swarm.sim.partition(fetcher, a);
    swarm.sim.run_until(ms(1_300));
    swarm.sim.heal(fetcher, a);
    // B: cut for good; its connection times out and the fetch goes on from A.
    swarm.sim.run_until(ms(1_500));
    swarm.sim.partition(fetcher, b);
    swarm.run(Duration::from_secs(60));
    let f = swarm.fetcher();
    assert_eq!(f.done.len(), 240);
    assert_eq!(f.dropped(a), None, "{:?}", f.events);
    // B stalled and its requests went to A: the fetch did not wait the 5 s until B's stream
    // broke.
    assert!(f.events.contains(&SchedEvent::Stalled(b)), "{:?}", f.events);
    assert!(
        swarm.sim.elapsed() < ms(1_500 + 5_000),
        "{:?}",
        swarm.sim.elapsed()
    );
    assert!(f.items_from(a) > f.items_from(b));
}

#[test]
fn a_lying_holder_is_dropped_and_every_item_still_verifies() {
    let holders = [
        (ms(10), 40 * MB, Fault::Liar),
        (ms(25), 20 * MB, Fault::None),
    ];
    let mut swarm = Swarm::new(6, 120, &holders, 16 * MB);
    swarm.run(Duration::from_secs(30));
    let (liar, honest) = (swarm.holders[0], swarm.holders[1]);
    let f = swarm.fetcher();
    assert_eq!(f.dropped(liar), Some(DropReason::WrongItem));
    assert_eq!(f.wrong, 1, "one wrong item and it is out");
    assert_eq!(f.done.len(), 120);
    assert_eq!(f.items_from(honest) as usize, 120);
    assert!(f.peak_window <= 16 * MB);
}

#[test]
fn a_holder_that_dies_mid_transfer_is_replaced() {
    let holders = [
        (ms(25), 30 * MB, Fault::None),
        (ms(25), 30 * MB, Fault::None),
    ];
    let mut swarm = Swarm::new(7, 240, &holders, 24 * MB);
    swarm.sim.run_until(ms(600));
    let dead = swarm.holders[0];
    swarm.sim.reset_node(dead);
    swarm.run(Duration::from_secs(30));
    let f = swarm.fetcher();
    assert_eq!(f.done.len(), 240);
    assert_eq!(f.dropped(dead), Some(DropReason::Gone));
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = || {
        let holders = [
            (ms(25), 40 * MB, Fault::None),
            (ms(40), 20 * MB, Fault::Liar),
        ];
        let mut swarm = Swarm::new(8, 80, &holders, 16 * MB);
        swarm.run(Duration::from_secs(30));
        (swarm.sim.trace_hash(), swarm.sim.elapsed())
    };
    assert_eq!(run(), run());
}
