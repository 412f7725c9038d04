//! The simulated network: stream connections as two FIFO directions of chunks, the datagram
//! channel, partitions and resets. It schedules events and turns arriving events into node
//! inputs; it never calls a node itself (that is [`crate::Sim`]'s job).
//!
//! A stream direction keeps two clocks: `busy_until` (when the sender's side is free again,
//! for bandwidth) and `last_arrival` (so that jitter can delay a chunk but never let it
//! overtake the one before). While a partition stands, arriving chunks are held in order in
//! `stalled`; a heal flushes them one latency later; a partition that outlives
//! [`NetConfig::partition_break_after`] breaks every connection across it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;

use crate::config::{LinkConfig, NetConfig};
use crate::node::{Addr, CloseReason, ConnId, Input, Output};
use crate::queue::EventQueue;
use crate::stats::NetStats;

/// What can be scheduled.
pub(crate) enum Ev {
    /// A stream item reaches the far end of direction `dir` (0: initiator to acceptor).
    Arrive {
        conn: ConnId,
        dir: usize,
        item: Item,
    },
    /// After a heal: deliver what a partition held back on this direction.
    Flush { conn: ConnId, dir: usize },
    /// A connect that met a partition gives up.
    ConnectTimeout { conn: ConnId },
    /// A partition's break time; acts only if the same partition (epoch) still stands.
    Break { pair: (Addr, Addr), epoch: u64 },
    /// A datagram arrives.
    Datagram { from: Addr, to: Addr, bytes: Bytes },
    /// Deliver this input as is (resets, refused connects).
    Notify { to: Addr, input: Input },
    /// A node's timer.
    Timer { node: Addr },
}

/// What travels on a stream direction, in order.
pub(crate) enum Item {
    Syn,
    SynAck,
    Data(Bytes),
    Fin,
}

#[derive(Default)]
struct Dir {
    busy_until: Duration,
    last_arrival: Duration,
    stalled: VecDeque<Item>,
}

struct Conn {
    /// `[initiator, acceptor]`.
    ends: [Addr; 2],
    tag: u64,
    /// Whether each end may still send and receive.
    open: [bool; 2],
    /// The acceptor has seen the connection.
    accepted: bool,
    /// The initiator has seen [`Input::Connected`].
    connected: bool,
    started: Duration,
    dirs: [Dir; 2],
}

fn pair(a: Addr, b: Addr) -> (Addr, Addr) {
    (a.min(b), a.max(b))
}

/// The network between the nodes.
pub(crate) struct Network {
    pub config: NetConfig,
    overrides: BTreeMap<(Addr, Addr), LinkConfig>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    partitions: BTreeMap<(Addr, Addr), u64>,
    next_epoch: u64,
    pub node_count: u32,
    rng: StdRng,
    pub stats: NetStats,
}

type Deliveries = Vec<(Addr, Input)>;

impl Network {
    pub(crate) fn new(config: NetConfig, rng: StdRng) -> Network {
        Network {
            config,
            overrides: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            partitions: BTreeMap::new(),
            next_epoch: 0,
            node_count: 0,
            rng,
            stats: NetStats::default(),
        }
    }

    pub(crate) fn link(&self, a: Addr, b: Addr) -> &LinkConfig {
        self.overrides
            .get(&pair(a, b))
            .unwrap_or(&self.config.default_link)
    }

    pub(crate) fn set_link(&mut self, a: Addr, b: Addr, link: LinkConfig) {
        self.overrides.insert(pair(a, b), link);
    }

    pub(crate) fn is_partitioned(&self, a: Addr, b: Addr) -> bool {
        self.partitions.contains_key(&pair(a, b))
    }

    /// Open connections (both ends not yet closed), in id order.
    pub(crate) fn conn_ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    /// The two ends of a live connection: `[initiator, acceptor]`.
    pub(crate) fn conn_ends(&self, conn: ConnId) -> Option<[Addr; 2]> {
        self.conns.get(&conn).map(|c| c.ends)
    }

    fn exists(&self, a: Addr) -> bool {
        a.0 < self.node_count
    }

    fn jitter(&mut self, jitter: Duration) -> Duration {
        if jitter.is_zero() {
            return Duration::ZERO;
        }
        let nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.gen_range(0..=nanos))
    }

    /// Puts `item` on direction `dir` of `conn`, timed by the link's bandwidth, latency and
    /// jitter, never before the previous item of that direction.
    fn send_item(
        &mut self,
        now: Duration,
        conn: ConnId,
        dir: usize,
        item: Item,
        q: &mut EventQueue<Ev>,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let link = self.link(c.ends[0], c.ends[1]).clone();
        let jitter = self.jitter(link.jitter);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let d = &mut c.dirs[dir];
        let len = match &item {
            Item::Data(b) => b.len() as u64,
            _ => 0,
        };
        let start = now.max(d.busy_until);
        let tx = match link.bandwidth {
            Some(bw) if bw > 0 => Duration::from_nanos(len.saturating_mul(1_000_000_000) / bw),
            _ => Duration::ZERO,
        };
        d.busy_until = start + tx;
        let arrive = (start + tx + link.latency + jitter).max(d.last_arrival);
        d.last_arrival = arrive;
        q.push(arrive, Ev::Arrive { conn, dir, item });
    }

    /// Carries out what node `from` asked for.
    pub(crate) fn on_output(
        &mut self,
        now: Duration,
        from: Addr,
        output: Output,
        q: &mut EventQueue<Ev>,
    ) {
        match output {
            Output::Connect { to, tag } => {
                self.stats.connects += 1;
                if !self.exists(to) || to == from {
                    self.stats.connect_failures += 1;
                    let at = now + 2 * self.config.default_link.latency;
                    let input = Input::ConnectFailed { peer: to, tag };
                    q.push(at, Ev::Notify { to: from, input });
                    return;
                }
                let conn = ConnId(self.next_conn);
                self.next_conn += 1;
                self.conns.insert(
                    conn,
                    Conn {
                        ends: [from, to],
                        tag,
                        open: [true, false],
                        accepted: false,
                        connected: false,
                        started: now,
                        dirs: Default::default(),
                    },
                );
                self.send_item(now, conn, 0, Item::Syn, q);
            }
            Output::Send { conn, bytes } => {
                let Some(dir) = self.sending_dir(conn, from) else {
                    return;
                };
                self.stats.bytes_sent += bytes.len() as u64;
                let mss = self
                    .conns
                    .get(&conn)
                    .map_or(1, |c| self.link(c.ends[0], c.ends[1]).mss.max(1));
                let mut rest = bytes;
                while !rest.is_empty() {
                    let chunk = rest.split_to(rest.len().min(mss));
                    self.send_item(now, conn, dir, Item::Data(chunk), q);
                }
            }
            Output::Close { conn } => {
                let Some(dir) = self.sending_dir(conn, from) else {
                    return;
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.open[dir] = false;
                    if c.accepted && !c.open[1 - dir] {
                        self.conns.remove(&conn);
                        return;
                    }
                }
                self.send_item(now, conn, dir, Item::Fin, q);
            }
            Output::Datagram { to, bytes } => self.send_datagram(now, from, to, bytes, q),
        }
    }

    /// The direction `from` sends on, if `from` is an open end of `conn`.
    fn sending_dir(&self, conn: ConnId, from: Addr) -> Option<usize> {
        let c = self.conns.get(&conn)?;
        let dir = c.ends.iter().position(|&e| e == from)?;
        c.open[dir].then_some(dir)
    }

    fn send_datagram(
        &mut self,
        now: Duration,
        from: Addr,
        to: Addr,
        bytes: Bytes,
        q: &mut EventQueue<Ev>,
    ) {
        self.stats.datagrams_sent += 1;
        if !self.exists(to) {
            self.stats.datagrams_lost += 1;
            return;
        }
        let link = self.link(from, to).clone();
        if link.loss > 0.0 && self.rng.gen_bool(link.loss.min(1.0)) {
            self.stats.datagrams_lost += 1;
            return;
        }
        let mut at = now + link.latency + self.jitter(link.jitter);
        if link.reorder > 0.0 && self.rng.gen_bool(link.reorder.min(1.0)) {
            self.stats.datagrams_delayed += 1;
            at += link.reorder_delay;
        }
        q.push(at, Ev::Datagram { from, to, bytes });
    }

    /// Handles a network event and returns the inputs it delivers, in order.
    pub(crate) fn on_event(&mut self, now: Duration, ev: Ev, q: &mut EventQueue<Ev>) -> Deliveries {
        match ev {
            Ev::Arrive { conn, dir, item } => self.arrive(now, conn, dir, item, q),
            Ev::Flush { conn, dir } => self.flush(conn, dir),
            Ev::ConnectTimeout { conn } => {
                let pending = self.conns.get(&conn).is_some_and(|c| !c.accepted);
                if !pending {
                    return Vec::new();
                }
                self.stats.connect_failures += 1;
                self.fail_conn(conn, CloseReason::TimedOut)
            }
            Ev::Break { pair, epoch } => {
                if self.partitions.get(&pair) != Some(&epoch) {
                    return Vec::new();
                }
                let doomed: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.accepted && self::pair(c.ends[0], c.ends[1]) == pair)
                    .map(|(&id, _)| id)
                    .collect();
                let mut out = Vec::new();
                for conn in doomed {
                    self.stats.broken_by_partition += 1;
                    out.extend(self.fail_conn(conn, CloseReason::TimedOut));
                }
                out
            }
            Ev::Datagram { from, to, bytes } => {
                if self.is_partitioned(from, to) {
                    self.stats.datagrams_partitioned += 1;
                    return Vec::new();
                }
                self.stats.datagrams_delivered += 1;
                vec![(to, Input::Datagram { from, bytes })]
            }
            Ev::Notify { to, input } => vec![(to, input)],
            Ev::Timer { .. } => Vec::new(),
        }
    }

    fn arrive(
        &mut self,
        now: Duration,
        conn: ConnId,
        dir: usize,
        item: Item,
        q: &mut EventQueue<Ev>,
    ) -> Deliveries {
        let connect_timeout = self.config.connect_timeout;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let (from, to) = (c.ends[dir], c.ends[1 - dir]);
        let partitioned = self.partitions.contains_key(&pair(from, to));
        if let Item::Syn = item {
            if !c.open[0] {
                // The initiator gave up before the SYN arrived.
                self.conns.remove(&conn);
                return Vec::new();
            }
            if partitioned {
                let at = now.max(c.started + connect_timeout);
                q.push(at, Ev::ConnectTimeout { conn });
                return Vec::new();
            }
            c.open[1] = true;
            c.accepted = true;
            self.stats.accepted += 1;
            self.send_item(now, conn, 1, Item::SynAck, q);
            return vec![(to, Input::Accepted { conn, peer: from })];
        }
        if !c.open[1 - dir] {
            return Vec::new();
        }
        if partitioned || !c.dirs[dir].stalled.is_empty() {
            self.stats.chunks_stalled += 1;
            c.dirs[dir].stalled.push_back(item);
            return Vec::new();
        }
        self.deliver(conn, dir, item).into_iter().collect()
    }

    /// Hands one in-order item to the receiving end of `dir`.
    fn deliver(&mut self, conn: ConnId, dir: usize, item: Item) -> Option<(Addr, Input)> {
        let c = self.conns.get_mut(&conn)?;
        let (from, to) = (c.ends[dir], c.ends[1 - dir]);
        if !c.open[1 - dir] {
            return None;
        }
        let input = match item {
            Item::Syn => return None,
            Item::SynAck => {
                c.connected = true;
                Input::Connected {
                    conn,
                    peer: from,
                    tag: c.tag,
                }
            }
            Item::Data(bytes) => {
                self.stats.bytes_delivered += bytes.len() as u64;
                Input::Data { conn, bytes }
            }
            Item::Fin => {
                c.open[1 - dir] = false;
                if !c.open[dir] {
                    self.conns.remove(&conn);
                }
                Input::Closed {
                    conn,
                    reason: CloseReason::PeerClosed,
                }
            }
        };
        Some((to, input))
    }

    fn flush(&mut self, conn: ConnId, dir: usize) -> Deliveries {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        if self.partitions.contains_key(&pair(c.ends[0], c.ends[1])) {
            return Vec::new();
        }
        let items: Vec<Item> = c.dirs[dir].stalled.drain(..).collect();
        items
            .into_iter()
            .filter_map(|item| self.deliver(conn, dir, item))
            .collect()
    }

    /// Ends `conn` at once on both ends: a `Closed` for each end that knew of it, a
    /// `ConnectFailed` for an initiator that had not yet seen it connect.
    fn fail_conn(&mut self, conn: ConnId, reason: CloseReason) -> Deliveries {
        let Some(c) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if c.open[0] {
            let input = if c.connected {
                Input::Closed { conn, reason }
            } else {
                Input::ConnectFailed {
                    peer: c.ends[1],
                    tag: c.tag,
                }
            };
            out.push((c.ends[0], input));
        }
        if c.open[1] {
            out.push((c.ends[1], Input::Closed { conn, reason }));
        }
        out
    }

    /// Resets `conn`: both ends learn it now; bytes in flight are lost.
    pub(crate) fn reset(&mut self, now: Duration, conn: ConnId, q: &mut EventQueue<Ev>) {
        if self.conns.contains_key(&conn) {
            self.stats.resets += 1;
        }
        for (to, input) in self.fail_conn(conn, CloseReason::Reset) {
            q.push(now, Ev::Notify { to, input });
        }
    }

    /// Cuts `a` from `b` (both ways) until [`heal`](Self::heal).
    pub(crate) fn partition(&mut self, now: Duration, a: Addr, b: Addr, q: &mut EventQueue<Ev>) {
        let key = pair(a, b);
        if a == b || self.partitions.contains_key(&key) {
            return;
        }
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.partitions.insert(key, epoch);
        q.push(
            now + self.config.partition_break_after,
            Ev::Break { pair: key, epoch },
        );
    }

    /// Ends the partition between `a` and `b`; what it held back arrives one latency later.
    pub(crate) fn heal(&mut self, now: Duration, a: Addr, b: Addr, q: &mut EventQueue<Ev>) {
        let key = pair(a, b);
        if self.partitions.remove(&key).is_none() {
            return;
        }
        let latency = self.link(a, b).latency;
        for (&conn, c) in &self.conns {
            if pair(c.ends[0], c.ends[1]) != key {
                continue;
            }
            for dir in 0..2 {
                if !c.dirs[dir].stalled.is_empty() {
                    q.push(now + latency, Ev::Flush { conn, dir });
                }
            }
        }
    }

    /// Every partitioned pair.
    pub(crate) fn partitions(&self) -> Vec<(Addr, Addr)> {
        self.partitions.keys().copied().collect()
    }
}
