//! Helpers shared by the scenario tests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use kith_proto::Limits;
use kith_sim::secure::{SecureNodeConfig, SecureSimNode};
use kith_sim::{Addr, Input, NetConfig, Output, Sim, SimNode};

/// Limits with a fast redial, so fault scenarios settle in a few virtual seconds.
pub fn test_limits() -> Limits {
    Limits {
        redial_min_ms: 500,
        redial_max_ms: 4_000,
        ..Limits::default()
    }
}

pub fn options() -> SecureNodeConfig {
    SecureNodeConfig {
        limits: test_limits(),
        ..SecureNodeConfig::default()
    }
}

/// A simulation of `n` secure nodes.
pub fn secure_sim(seed: u64, n: usize, config: NetConfig) -> (Sim<SecureSimNode>, Vec<Addr>) {
    let mut sim = Sim::with_config(seed, config);
    let addrs = (0..n)
        .map(|_| sim.add_node_with(|addr, rng| SecureSimNode::new(addr, rng, options())))
        .collect();
    (sim, addrs)
}

/// `from` dials `to` with a fresh one-time ticket from `to`.
pub fn dial_by_ticket(sim: &mut Sim<SecureSimNode>, from: Addr, to: Addr) {
    let ticket = sim.act(to, |n, _| n.issue_ticket(true));
    sim.act(from, |n, _| n.connect_ticket(&ticket));
}

pub fn linked(sim: &Sim<SecureSimNode>, a: Addr, b: Addr) -> bool {
    let (na, nb) = (sim.node(a), sim.node(b));
    na.is_linked(nb.agent()) && nb.is_linked(na.agent())
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A node that records every input with its time and sends what the test queues.
#[derive(Default)]
pub struct Probe {
    pub seen: Vec<(Instant, Input)>,
    pub out: VecDeque<Output>,
}

impl SimNode for Probe {
    fn handle(&mut self, now: Instant, input: Input) {
        self.seen.push((now, input));
    }
    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
