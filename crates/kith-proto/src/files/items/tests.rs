//! The scheduler and the server against each other on a simulated network: per-holder
//! latency and uplink rate, loss (a lost segment costs a retransmission timeout on a stream),
//! partitions, holders that die, stall, lie or send what nobody asked for. One virtual clock,
//! a seeded generator: every run is the same.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::files::ContentHash;

const MB: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Every n-th item it sends is wrong.
    Liar(u32),
    /// Answers nothing after this many items.
    StallAfter(u32),
    /// Its link goes down at this time.
    DieAt(Duration),
    /// Nothing it sends gets through between these times (then it all arrives).
    Partition(Duration, Duration),
    /// After this many items, sends one nobody asked for.
    Unsolicited(u32),
    /// Holds only the even-numbered items.
    EvenOnly,
}

#[derive(Debug, Clone, Copy)]
struct HolderSpec {
    one_way: Duration,
    /// Uplink, bytes per second.
    rate: f64,
    fault: Fault,
}

fn honest(one_way_ms: u64, mb_per_s: f64) -> HolderSpec {
    HolderSpec {
        one_way: Duration::from_millis(one_way_ms),
        rate: mb_per_s * MB as f64,
        fault: Fault::None,
    }
}

struct Holder {
    spec: HolderSpec,
    server: ItemServer,
    uplink_free: Instant,
    sent: u32,
    dead: bool,
}

#[derive(Debug)]
enum Ev {
    Request(usize, Request),
    Response(usize, Response, bool),
    Timer,
    Done(ContentHash),
    Die(usize),
}

struct Sim {
    start: Instant,
    now: Instant,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    slots: Vec<Option<Ev>>,
    seq: u64,
    holders: Vec<Holder>,
    sched: Scheduler<usize>,
    /// Sequential disk at the fetcher, bytes per second.
    disk_rate: f64,
    disk_free: Instant,
    loss: f64,
    rng: u64,
    item_len: u64,
    wanted: usize,
    done: HashSet<ContentHash>,
    events: Vec<SchedEvent<usize>>,
    wrong_seen: u64,
    unavailable: bool,
    peak_window: u64,
    timer: Option<Instant>,
}

fn item_hash(i: u32) -> ContentHash {
    let mut h = [0u8; 32];
    h[..4].copy_from_slice(&i.to_be_bytes());
    ContentHash(h)
}

fn index_of(hash: &ContentHash) -> u32 {
    u32::from_be_bytes([hash.0[0], hash.0[1], hash.0[2], hash.0[3]])
}

impl Sim {
    fn new(specs: &[HolderSpec], config: SchedulerConfig) -> Sim {
        let start = Instant::now();
        let mut sched = Scheduler::new(config);
        let holders = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                sched.add_source(i, start);
                Holder {
                    spec: *spec,
                    server: ItemServer::new(ServerConfig {
                        max_queued: 256,
                        read_ahead: 4,
                    }),
                    uplink_free: start,
                    sent: 0,
                    dead: false,
                }
            })
            .collect();
        let mut sim = Sim {
            start,
            now: start,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            seq: 0,
            holders,
            sched,
            disk_rate: 2_000.0 * MB as f64,
            disk_free: start,
            loss: 0.0,
            rng: 0x9e37_79b9_7f4a_7c15,
            item_len: MB,
            wanted: 0,
            done: HashSet::new(),
            events: Vec::new(),
            wrong_seen: 0,
            unavailable: false,
            peak_window: 0,
            timer: None,
        };
        for (i, spec) in specs.iter().enumerate() {
            if let Fault::DieAt(at) = spec.fault {
                sim.at(start + at, Ev::Die(i));
            }
        }
        sim
    }

    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn at(&mut self, when: Instant, ev: Ev) {
        self.seq += 1;
        self.slots.push(Some(ev));
        self.queue
            .push(Reverse((when, self.seq, self.slots.len() - 1)));
    }

    /// Fetches `n` items of `item_len` bytes; returns the virtual seconds it took.
    fn fetch(&mut self, n: u32) -> f64 {
        for i in 0..n {
            self.sched.want(item_hash(i));
        }
        self.wanted = n as usize;
        self.pump();
        while let Some(Reverse((when, _, slot))) = self.queue.pop() {
            if self.done.len() == self.wanted || self.unavailable {
                break;
            }
            self.now = when;
            let ev = self.slots[slot].take().unwrap();
            self.step(ev);
            self.pump();
        }
        (self.now - self.start).as_secs_f64()
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Request(h, request) => self.serve(h, request),
            Ev::Response(h, response, lie) => self.receive(h, response, lie),
            Ev::Timer => {
                if self.timer.is_some_and(|t| t <= self.now) {
                    self.timer = None;
                    self.sched.handle_timeout(self.now);
                }
            }
            Ev::Done(hash) => {
                self.sched.done(&hash);
                self.done.insert(hash);
            }
            Ev::Die(h) => {
                self.holders[h].dead = true;
                self.sched.remove_source(&h, self.now);
            }
        }
    }

    fn serve(&mut self, h: usize, request: Request) {
        if self.holders[h].dead {
            return;
        }
        self.holders[h].server.handle(request);
        while let Some(hash) = self.holders[h].server.poll_read() {
            let holds = match self.holders[h].spec.fault {
                Fault::EvenOnly => index_of(&hash).is_multiple_of(2),
                _ => true,
            };
            let item = holds.then(|| Bytes::from(vec![1u8; self.item_len as usize]));
            self.holders[h].server.read_done(hash, item);
        }
        while let Some(response) = self.holders[h].server.poll_transmit() {
            self.transmit(h, response);
        }
    }

    fn transmit(&mut self, h: usize, response: Response) {
        let holder = &mut self.holders[h];
        let mut lie = false;
        if let Response::Item { .. } = response {
            holder.sent += 1;
            match holder.spec.fault {
                Fault::StallAfter(n) if holder.sent > n => return,
                Fault::Liar(every) if holder.sent.is_multiple_of(every) => lie = true,
                Fault::Unsolicited(n) if holder.sent == n => {
                    let stray = Response::Item {
                        hash: item_hash(999_999),
                        item: Bytes::from_static(b"\x01stray"),
                    };
                    let when = self.now + holder.spec.one_way;
                    self.at(when, Ev::Response(h, stray, false));
                }
                _ => {}
            }
        }
        let holder = &mut self.holders[h];
        let len = match &response {
            Response::Item { item, .. } => item.len() as f64 + 33.0,
            _ => 40.0,
        };
        let depart =
            holder.uplink_free.max(self.now) + Duration::from_secs_f64(len / holder.spec.rate);
        holder.uplink_free = depart;
        let mut arrive = depart + holder.spec.one_way;
        if let Fault::Partition(from, until) = holder.spec.fault {
            if depart >= self.start + from && depart < self.start + until {
                arrive = self.start + until + holder.spec.one_way;
            }
        }
        if self.random() < self.loss {
            arrive += Duration::from_millis(200); // a retransmission timeout
        }
        self.at(arrive, Ev::Response(h, response, lie));
    }

    fn receive(&mut self, h: usize, response: Response, lie: bool) {
        if self.holders[h].dead {
            return;
        }
        match response {
            Response::Item { hash, item } => {
                match self.sched.arrived(&h, hash, item.len() as u64, self.now) {
                    Arrival::Expected if lie => {
                        self.wrong_seen += 1;
                        self.sched.wrong(hash, self.now);
                    }
                    Arrival::Expected => {
                        let write = Duration::from_secs_f64(item.len() as f64 / self.disk_rate);
                        self.disk_free = self.disk_free.max(self.now) + write;
                        let at = self.disk_free;
                        self.at(at, Ev::Done(hash));
                    }
                    Arrival::Late | Arrival::Unsolicited => {}
                }
            }
            Response::Missing(hash) => self.sched.missing(&h, hash, self.now),
            Response::Busy(hash) => self.sched.busy(&h, hash, self.now),
            Response::Answer(_) => {}
        }
    }

    /// Sends what the scheduler asks for and re-arms its timer.
    fn pump(&mut self) {
        let mut gets: Vec<Vec<ContentHash>> = vec![Vec::new(); self.holders.len()];
        while let Some((h, hash)) = self.sched.poll_request(self.now) {
            gets[h].push(hash);
        }
        let used = self.sched.window_used();
        assert!(
            used <= self.sched.config().max_window,
            "window {used} over its bound"
        );
        self.peak_window = self.peak_window.max(used);
        for (h, hashes) in gets.into_iter().enumerate() {
            if !hashes.is_empty() {
                let when = self.now + self.holders[h].spec.one_way;
                self.at(when, Ev::Request(h, Request::Get(hashes)));
            }
        }
        while let Some((h, hash)) = self.sched.poll_cancel() {
            let when = self.now + self.holders[h].spec.one_way;
            self.at(when, Ev::Request(h, Request::Cancel(vec![hash])));
        }
        while let Some(ev) = self.sched.poll_event() {
            if matches!(ev, SchedEvent::Unavailable(_)) {
                self.unavailable = true;
            }
            self.events.push(ev);
        }
        if let Some(t) = self.sched.poll_timeout() {
            if self.timer.is_none_or(|old| t < old) {
                self.timer = Some(t);
                self.at(t.max(self.now), Ev::Timer);
            }
        }
    }

    fn delivered_by(&self, h: usize) -> u64 {
        self.sched.report()[h].items
    }
}

fn config(window_mb: u64) -> SchedulerConfig {
    SchedulerConfig {
        max_window: window_mb * MB,
        max_source_window: window_mb * MB,
        initial_window: 4 * MB,
        item_size: MB,
        stall_timeout: Duration::from_secs(2),
        max_stalls: 2,
    }
}

fn mb_per_s(items: u32, secs: f64) -> f64 {
    items as f64 / secs
}

#[test]
fn one_source_across_fifty_milliseconds_runs_at_line_rate() {
    // Taking turns, each 1 MB item costs two round trips plus its own time on the wire.
    let turn_taking = 256.0 * (2.0 * 0.05 + 0.01);
    let mut sim = Sim::new(&[honest(25, 100.0)], config(24));
    let secs = sim.fetch(256);
    assert_eq!(sim.done.len(), 256);
    let rate = mb_per_s(256, secs);
    assert!(
        rate > 90.0,
        "{rate:.1} MB/s (turn-taking: {:.1})",
        256.0 / turn_taking
    );
    assert!(sim.peak_window <= 24 * MB);
}

#[test]
fn a_window_too_small_for_the_path_is_the_only_limit() {
    // 4 MB in flight across 100 ms: at most 40 MB/s, whatever the uplink.
    let mut cfg = config(4);
    cfg.max_source_window = 4 * MB;
    let mut sim = Sim::new(&[honest(50, 500.0)], cfg);
    let secs = sim.fetch(200);
    let rate = mb_per_s(200, secs);
    assert!((30.0..=41.0).contains(&rate), "{rate:.1} MB/s");
}

#[test]
fn three_uplinks_add_up() {
    let mut sim = Sim::new(
        &[honest(25, 40.0), honest(25, 40.0), honest(25, 40.0)],
        config(24),
    );
    let secs = sim.fetch(384);
    let rate = mb_per_s(384, secs);
    assert!(
        rate >= 2.7 * 40.0,
        "{rate:.1} MB/s from three 40 MB/s uplinks"
    );
    for h in 0..3 {
        assert!(sim.delivered_by(h) > 100, "each source did its part");
    }
}

#[test]
fn work_shifts_to_the_fast_source_and_the_slow_one_does_not_hold_the_head() {
    let mut sim = Sim::new(&[honest(25, 100.0), honest(25, 2.0)], config(24));
    let secs = sim.fetch(300);
    assert_eq!(sim.done.len(), 300);
    let rate = mb_per_s(300, secs);
    assert!(
        rate > 85.0,
        "{rate:.1} MB/s: the 2 MB/s source must not slow the fetch"
    );
    assert!(sim.delivered_by(1) < 20, "the slow source got little work");
}

#[test]
fn a_lying_source_is_dropped_and_counted_and_the_fetch_goes_on() {
    let mut liar = honest(25, 100.0);
    liar.fault = Fault::Liar(3);
    let mut sim = Sim::new(&[liar, honest(25, 50.0)], config(24));
    sim.fetch(200);
    assert_eq!(sim.done.len(), 200);
    assert_eq!(sim.wrong_seen, 1, "one wrong item is all it takes");
    assert!(sim.events.contains(&SchedEvent::Dropped {
        source: 0,
        reason: DropReason::WrongItem
    }));
    assert_eq!(sim.sched.report()[0].wrong_items, 1);
}

#[test]
fn a_source_that_sends_what_nobody_asked_for_is_dropped() {
    let mut stray = honest(25, 100.0);
    stray.fault = Fault::Unsolicited(5);
    let mut sim = Sim::new(&[stray, honest(25, 50.0)], config(24));
    sim.fetch(100);
    assert_eq!(sim.done.len(), 100);
    assert!(sim.events.contains(&SchedEvent::Dropped {
        source: 0,
        reason: DropReason::Unsolicited
    }));
}

#[test]
fn a_source_that_stalls_mid_window_loses_its_share() {
    let mut staller = honest(25, 100.0);
    staller.fault = Fault::StallAfter(30);
    let mut sim = Sim::new(&[staller, honest(25, 50.0)], config(24));
    let secs = sim.fetch(200);
    assert_eq!(sim.done.len(), 200);
    assert!(sim.events.contains(&SchedEvent::Stalled(0)));
    // Without the stall: about 200 / 150 s; the rescue takes over long before the 2 s
    // stall timeout.
    assert!(secs < 200.0 / 50.0 + 1.0, "{secs:.2} s");
}

#[test]
fn a_source_that_dies_mid_transfer_is_replaced() {
    let mut dying = honest(25, 100.0);
    dying.fault = Fault::DieAt(Duration::from_millis(700));
    let mut sim = Sim::new(&[dying, honest(25, 100.0)], config(24));
    sim.fetch(300);
    assert_eq!(sim.done.len(), 300);
    assert!(sim.events.contains(&SchedEvent::Dropped {
        source: 0,
        reason: DropReason::Gone
    }));
}

#[test]
fn a_partition_delays_but_does_not_break_the_fetch() {
    let mut cut = honest(25, 100.0);
    cut.fault = Fault::Partition(Duration::from_millis(500), Duration::from_millis(1500));
    let mut sim = Sim::new(&[cut, honest(25, 30.0)], config(24));
    sim.fetch(200);
    assert_eq!(sim.done.len(), 200);
    // A single source behind a partition: the fetch waits it out.
    let mut alone = honest(25, 100.0);
    alone.fault = Fault::Partition(Duration::from_millis(500), Duration::from_millis(1500));
    let mut sim = Sim::new(&[alone], config(24));
    let secs = sim.fetch(200);
    assert_eq!(sim.done.len(), 200);
    assert!(secs > 1.5);
}

#[test]
fn loss_costs_retransmissions_not_the_fetch() {
    let mut sim = Sim::new(&[honest(25, 40.0), honest(25, 40.0)], config(24));
    sim.loss = 0.05;
    let secs = sim.fetch(300);
    assert_eq!(sim.done.len(), 300);
    assert!(
        mb_per_s(300, secs) > 60.0,
        "{:.1} MB/s",
        mb_per_s(300, secs)
    );
}

#[test]
fn items_only_some_sources_hold_come_from_those_and_none_is_reported() {
    let mut half = honest(25, 100.0);
    half.fault = Fault::EvenOnly;
    let mut sim = Sim::new(&[half, honest(25, 20.0)], config(24));
    sim.fetch(100);
    assert_eq!(sim.done.len(), 100);
    // Nobody holds the odd items: the fetch cannot complete and says which.
    let mut sim = Sim::new(&[half], config(24));
    sim.fetch(10);
    assert!(sim.unavailable);
    assert!(sim
        .events
        .iter()
        .any(|e| matches!(e, SchedEvent::Unavailable(h) if index_of(h) % 2 == 1)));
}

#[test]
fn a_slow_disk_keeps_the_window_full_of_held_items_but_never_over_its_bound() {
    let mut sim = Sim::new(&[honest(1, 500.0), honest(1, 500.0)], config(8));
    sim.disk_rate = 50.0 * MB as f64;
    let secs = sim.fetch(100);
    assert_eq!(sim.done.len(), 100);
    assert!(sim.peak_window <= 8 * MB);
    assert!(mb_per_s(100, secs) > 45.0);
}

#[test]
fn a_holder_under_a_flood_answers_busy_and_the_fetcher_backs_off() {
    let mut s = ItemServer::new(ServerConfig {
        max_queued: 2,
        read_ahead: 1,
    });
    let mut sched: Scheduler<u8> = Scheduler::new(config(24));
    let now = Instant::now();
    sched.add_source(0, now);
    for i in 0..4 {
        sched.want(item_hash(i));
    }
    let mut asked = Vec::new();
    while let Some((_, h)) = sched.poll_request(now) {
        asked.push(h);
    }
    assert_eq!(asked.len(), 4, "the initial window");
    s.handle(Request::Get(asked));
    while let Some(resp) = s.poll_transmit() {
        if let Response::Busy(h) = resp {
            sched.busy(&0, h, now);
        }
    }
    assert_eq!(sched.queued(), 2, "the refused two wait");
    assert_eq!(
        sched.poll_request(now),
        None,
        "the window was halved to two items"
    );
}

#[test]
fn a_request_taken_back_unsent_stays_first_and_costs_the_source_nothing() {
    let mut sched: Scheduler<u8> = Scheduler::new(config(24));
    let now = Instant::now();
    sched.add_source(0, now);
    for i in 0..3 {
        sched.want(item_hash(i));
    }
    let (peer, first) = sched.poll_request(now).unwrap();
    assert_eq!(first, item_hash(0));
    sched.unsend(&peer, first, now);
    assert_eq!(sched.in_flight(), 0);
    assert_eq!(sched.queued(), 3);
    // First again (later items asked meanwhile could fill the window while they wait for it),
    // and the window is as it was (four items): all three asked, in file order.
    let mut asked = Vec::new();
    while let Some((_, h)) = sched.poll_request(now) {
        asked.push(h);
    }
    assert_eq!(asked, vec![item_hash(0), item_hash(1), item_hash(2)]);
}
