//! [`Sim`]: the nodes, the network and the virtual clock, driven one event at a time.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::config::{LinkConfig, NetConfig};
use crate::net::{Ev, Network};
use crate::node::{Addr, ConnId, Input, SimNode};
use crate::queue::EventQueue;
use crate::stats::NetStats;
use crate::trace::{Trace, TraceEntry};

/// Events [`Sim::run_until_idle`] processes before giving up on a run that never settles.
pub const DEFAULT_STEP_LIMIT: u64 = 10_000_000;

/// What can go wrong driving a simulation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// [`Sim::run_until_idle`] processed its step limit and events were still queued (some
    /// node re-arms a timer forever, or the scenario never settles).
    #[error("still busy after {0} events")]
    StepLimit(u64),
}

struct Slot<N> {
    node: N,
    /// The timer the queue holds for this node (virtual offset), if any.
    armed: Option<Duration>,
}

/// A deterministic simulation: nodes of type `N` (use `Box<dyn SimNode>` or an enum to mix
/// kinds) on a simulated network, with a virtual clock.
///
/// Time is an offset from a base [`Instant`] read once at construction (an `Instant` cannot be
/// made otherwise); nothing depends on the base, only on offsets, and the wall clock is never
/// read again. All randomness comes from the seed: the network draws from one RNG forked from
/// it, and each node may take its own fork ([`fork_rng`](Self::fork_rng),
/// [`add_node_with`](Self::add_node_with)), so the same seed and the same calls give the same
/// run, byte for byte ([`trace_hash`](Self::trace_hash)).
pub struct Sim<N> {
    base: Instant,
    now: Duration,
    queue: EventQueue<Ev>,
    net: Network,
    nodes: Vec<Slot<N>>,
    master: StdRng,
    trace: Trace,
    steps: u64,
}

impl<N: SimNode> Sim<N> {
    /// An empty simulation with the default network.
    pub fn new(seed: u64) -> Sim<N> {
        Sim::with_config(seed, NetConfig::default())
    }

    /// An empty simulation with this network configuration.
    pub fn with_config(seed: u64, config: NetConfig) -> Sim<N> {
        let mut master = StdRng::seed_from_u64(seed);
        let net_rng = StdRng::seed_from_u64(master.next_u64());
        Sim {
            base: Instant::now(),
            now: Duration::ZERO,
            queue: EventQueue::new(),
            net: Network::new(config, net_rng),
            nodes: Vec::new(),
            master,
            trace: Trace::default(),
            steps: 0,
        }
    }

    /// A new RNG seeded from the simulation's master RNG (deterministic per seed and call
    /// order): give one to each node, and to every handshake through it.
    pub fn fork_rng(&mut self) -> StdRng {
        StdRng::seed_from_u64(self.master.next_u64())
    }

    /// Adds a node; it gets the next address. Outputs it already holds are carried out now.
    pub fn add_node(&mut self, node: N) -> Addr {
        let addr = Addr(self.nodes.len() as u32);
        self.nodes.push(Slot { node, armed: None });
        self.net.node_count = self.nodes.len() as u32;
        self.drain(addr);
        addr
    }

    /// Adds a node built from its address and a forked RNG.
    pub fn add_node_with(&mut self, build: impl FnOnce(Addr, StdRng) -> N) -> Addr {
        let addr = Addr(self.nodes.len() as u32);
        let rng = self.fork_rng();
        self.add_node(build(addr, rng))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every address, in order.
    pub fn addrs(&self) -> impl Iterator<Item = Addr> {
        (0..self.nodes.len() as u32).map(Addr)
    }

    /// A node, to inspect. Panics on an unknown address.
    pub fn node(&self, addr: Addr) -> &N {
        &self.nodes[addr.0 as usize].node
    }

    /// Runs `f` on a node at the current virtual time, then carries out whatever it asked for
    /// and re-arms its timer. This is how a test tells a node to do something.
    pub fn act<R>(&mut self, addr: Addr, f: impl FnOnce(&mut N, Instant) -> R) -> R {
        let now = self.now();
        let r = f(&mut self.nodes[addr.0 as usize].node, now);
        self.drain(addr);
        r
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.base + self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// The virtual instant at `offset` from the start.
    pub fn at(&self, offset: Duration) -> Instant {
        self.base + offset
    }

    /// Turns a node's instant back into an offset from the start.
    pub fn offset_of(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.base)
    }

    /// Processes the next event, advancing the clock to it. False when nothing is queued.
    pub fn step(&mut self) -> bool {
        let Some((at, ev)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        self.steps += 1;
        if let Ev::Timer { node } = ev {
            let slot = &mut self.nodes[node.0 as usize];
            if slot.armed == Some(at) {
                slot.armed = None;
                self.deliver(node, Input::Timeout);
            }
            return true;
        }
        for (to, input) in self.net.on_event(self.now, ev, &mut self.queue) {
            self.deliver(to, input);
        }
        true
    }

    /// Processes every event due at or before `offset`, then sets the clock to `offset`.
    pub fn run_until(&mut self, offset: Duration) {
        while self.queue.peek_time().is_some_and(|t| t <= offset) {
            self.step();
        }
        self.now = self.now.max(offset);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `done` holds (checked after every event) or the clock would pass
    /// `deadline`; returns whether `done` held.
    pub fn run_until_with(
        &mut self,
        deadline: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.queue.peek_time().is_none_or(|t| t > deadline) {
                self.now = self.now.max(deadline);
                return done(self);
            }
            self.step();
        }
    }

    /// Runs until no event is queued (no bytes in flight, no timer armed), up to
    /// [`DEFAULT_STEP_LIMIT`] events. Returns the number of events processed.
    pub fn run_until_idle(&mut self) -> Result<u64, SimError> {
        let mut n = 0;
        while self.step() {
            n += 1;
            if n >= DEFAULT_STEP_LIMIT && !self.queue.is_empty() {
                return Err(SimError::StepLimit(n));
            }
        }
        Ok(n)
    }

    /// Events processed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn deliver(&mut self, to: Addr, input: Input) {
        self.trace.record(self.now, to, &input);
        let now = self.now();
        self.nodes[to.0 as usize].node.handle(now, input);
        self.drain(to);
    }

    /// Carries out a node's outputs and re-arms its timer.
    fn drain(&mut self, addr: Addr) {
        while let Some(out) = self.nodes[addr.0 as usize].node.poll_output() {
            self.net.on_output(self.now, addr, out, &mut self.queue);
        }
        self.rearm(addr);
    }

    fn rearm(&mut self, addr: Addr) {
        let base = self.base;
        let now = self.now;
        let slot = &mut self.nodes[addr.0 as usize];
        let want = slot
            .node
            .poll_timeout()
            .map(|t| t.saturating_duration_since(base).max(now));
        if want != slot.armed {
            slot.armed = want;
            if let Some(at) = want {
                self.queue.push(at, Ev::Timer { node: addr });
            }
        }
    }

    // ---- the network and its faults ----

    /// The link between `a` and `b`.
    pub fn link(&self, a: Addr, b: Addr) -> &LinkConfig {
        self.net.link(a, b)
    }

    /// Sets the link between `a` and `b` (both directions), for what is sent from now on.
    pub fn set_link(&mut self, a: Addr, b: Addr, link: LinkConfig) {
        self.net.set_link(a, b, link);
    }

    /// The network configuration (the default link applies to what is sent from now on).
    pub fn net_config_mut(&mut self) -> &mut NetConfig {
        &mut self.net.config
    }

    /// Cuts `a` from `b` both ways: stream chunks stall, datagrams and connects to the other
    /// side fail, and after [`NetConfig::partition_break_after`] every connection between
    /// them closes on both ends with [`crate::CloseReason::TimedOut`].
    pub fn partition(&mut self, a: Addr, b: Addr) {
        self.net.partition(self.now, a, b, &mut self.queue);
    }

    /// Partitions every node of `left` from every node of `right`.
    pub fn split(&mut self, left: &[Addr], right: &[Addr]) {
        for &a in left {
            for &b in right {
                self.partition(a, b);
            }
        }
    }

    /// Ends the partition between `a` and `b`; stalled chunks arrive one latency later.
    pub fn heal(&mut self, a: Addr, b: Addr) {
        self.net.heal(self.now, a, b, &mut self.queue);
    }

    /// Ends every partition.
    pub fn heal_all(&mut self) {
        for (a, b) in self.net.partitions() {
            self.heal(a, b);
        }
    }

    /// Whether `a` and `b` are partitioned.
    pub fn is_partitioned(&self, a: Addr, b: Addr) -> bool {
        self.net.is_partitioned(a, b)
    }

    /// Live connections, in id order.
    pub fn connections(&self) -> Vec<ConnId> {
        self.net.conn_ids()
    }

    /// `[initiator, acceptor]` of a live connection.
    pub fn connection_ends(&self, conn: ConnId) -> Option<[Addr; 2]> {
        self.net.conn_ends(conn)
    }

    /// Resets a connection: both ends see [`crate::CloseReason::Reset`] now; bytes in flight
    /// are lost.
    pub fn reset(&mut self, conn: ConnId) {
        self.net.reset(self.now, conn, &mut self.queue);
    }

    /// Resets every live connection.
    pub fn reset_all(&mut self) {
        for conn in self.net.conn_ids() {
            self.reset(conn);
        }
    }

    /// Resets every connection `addr` is an end of.
    pub fn reset_node(&mut self, addr: Addr) {
        for conn in self.net.conn_ids() {
            if self.net.conn_ends(conn).is_some_and(|e| e.contains(&addr)) {
                self.reset(conn);
            }
        }
    }

    /// The network's counters.
    pub fn stats(&self) -> &NetStats {
        &self.net.stats
    }

    // ---- the trace ----

    /// Starts or stops keeping every delivered input (the hash is always kept).
    pub fn record_trace(&mut self, on: bool) {
        self.trace.set_recording(on);
    }

    /// The recorded inputs (empty unless [`record_trace`](Self::record_trace) is on).
    pub fn trace_entries(&self) -> &[TraceEntry] {
        self.trace.entries()
    }

    /// SHA-256 over every input delivered so far, with its time and node.
    pub fn trace_hash(&self) -> [u8; 32] {
        self.trace.hash()
    }

    /// Inputs delivered so far.
    pub fn deliveries(&self) -> u64 {
        self.trace.deliveries()
    }
}
