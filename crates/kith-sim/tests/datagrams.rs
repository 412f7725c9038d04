//! The datagram channel: loss and reordering at the configured rates, and nothing across a
//! partition.

mod common;

use bytes::Bytes;
use common::*;
use kith_sim::{Addr, Input, LinkConfig, NetConfig, NetStats, Output, Sim};

const SENT: u32 = 10_000;

/// Sends `SENT` numbered datagrams, one a millisecond; returns what arrived, in order.
fn run(seed: u64, loss: f64, reorder: f64) -> (Vec<u32>, NetStats) {
    let config = NetConfig {
        default_link: LinkConfig {
            latency: ms(20),
            loss,
            reorder,
            reorder_delay: ms(50),
            ..LinkConfig::default()
        },
        ..NetConfig::default()
    };
    let mut sim: Sim<Probe> = Sim::with_config(seed, config);
    let a = sim.add_node(Probe::default());
    let b = sim.add_node(Probe::default());
    for i in 0..SENT {
        sim.act(a, |p, _| {
            p.out.push_back(Output::Datagram {
                to: b,
                bytes: Bytes::copy_from_slice(&i.to_be_bytes()),
            })
        });
        sim.run_for(ms(1));
    }
    sim.run_until_idle().unwrap();
    let got = sim
        .node(b)
        .seen
        .iter()
        .map(|(_, input)| match input {
            Input::Datagram { from, bytes } => {
                assert_eq!(*from, Addr(0));
                u32::from_be_bytes(bytes[..].try_into().unwrap())
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    (got, sim.stats().clone())
}

/// Arrivals that come after a later-numbered datagram.
fn out_of_order(got: &[u32]) -> usize {
    let mut highest = None;
    let mut late = 0;
    for &n in got {
        match highest {
            Some(h) if n < h => late += 1,
            _ => highest = Some(n),
        }
    }
    late
}

#[test]
fn loss_and_reordering_match_the_configured_probabilities() {
    let (got, stats) = run(21, 0.10, 0.05);
    let delivered = got.len() as u64;
    assert_eq!(stats.datagrams_sent, SENT as u64);
    assert_eq!(
        stats.datagrams_lost + stats.datagrams_delivered,
        SENT as u64
    );
    assert_eq!(stats.datagrams_delivered, delivered);
    // 10% loss: 1,000 expected, standard deviation 30.
    assert!((850..=1_150).contains(&stats.datagrams_lost), "{stats:?}");
    // 5% of the survivors held back 50 ms, so overtaken by the next ~50: each arrives late.
    let late = out_of_order(&got) as u64;
    assert!((350..=550).contains(&late), "late {late}, {stats:?}");
    assert_eq!(late, stats.datagrams_delayed);
    // Nothing duplicated, every survivor once.
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len());
    // Seeded: the exact counts are the same on every run.
    let (again, stats_again) = run(21, 0.10, 0.05);
    assert_eq!((again, stats_again), (got, stats));
}

#[test]
fn clean_link_delivers_every_datagram_in_order() {
    let (got, stats) = run(22, 0.0, 0.0);
    assert_eq!(got, (0..SENT).collect::<Vec<_>>());
    assert_eq!(stats.datagrams_lost, 0);
}

#[test]
fn datagrams_do_not_cross_a_partition() {
    let mut sim: Sim<Probe> = Sim::new(23);
    let a = sim.add_node(Probe::default());
    let b = sim.add_node(Probe::default());
    sim.partition(a, b);
    for _ in 0..10 {
        sim.act(a, |p, _| {
            p.out.push_back(Output::Datagram {
                to: b,
                bytes: Bytes::from_static(b"x"),
            })
        });
    }
    sim.run_for(ms(100));
    sim.heal(a, b);
    sim.run_until_idle().unwrap();
    assert!(sim.node(b).seen.is_empty());
    assert_eq!(sim.stats().datagrams_partitioned, 10);
}
