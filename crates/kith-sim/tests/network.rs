//! The stream model on its own: order under jitter, bandwidth, chunking, connect failures,
//! close after data, resets.

mod common;

use bytes::Bytes;
use common::*;
use kith_sim::{Addr, CloseReason, ConnId, Input, LinkConfig, NetConfig, Output, Sim};

fn pair(config: NetConfig) -> (Sim<Probe>, Addr, Addr) {
    let mut sim = Sim::with_config(40, config);
    let a = sim.add_node(Probe::default());
    let b = sim.add_node(Probe::default());
    (sim, a, b)
}

fn connect(sim: &mut Sim<Probe>, a: Addr, b: Addr) -> ConnId {
    sim.act(a, |p, _| p.out.push_back(Output::Connect { to: b, tag: 9 }));
    sim.run_for(ms(1_000));
    match sim.node(a).seen.last() {
        Some((_, Input::Connected { conn, peer, tag: 9 })) if *peer == b => *conn,
        other => panic!("not connected: {other:?}"),
    }
}

fn send(sim: &mut Sim<Probe>, from: Addr, conn: ConnId, bytes: Vec<u8>) {
    sim.act(from, |p, _| {
        p.out.push_back(Output::Send {
            conn,
            bytes: bytes.into(),
        })
    });
}

fn received(sim: &Sim<Probe>, at: Addr) -> Vec<u8> {
    sim.node(at)
        .seen
        .iter()
        .filter_map(|(_, i)| match i {
            Input::Data { bytes, .. } => Some(bytes.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn jitter_never_reorders_a_stream() {
    let config = NetConfig {
        default_link: LinkConfig {
            latency: ms(10),
            jitter: ms(30),
            mss: 7,
            ..LinkConfig::default()
        },
        ..NetConfig::default()
    };
    let (mut sim, a, b) = pair(config);
    let conn = connect(&mut sim, a, b);
    let mut sent = Vec::new();
    for i in 0..500u32 {
        let chunk: Vec<u8> = (0..13).map(|j| (i * 13 + j) as u8).collect();
        sent.extend_from_slice(&chunk);
        send(&mut sim, a, conn, chunk);
        sim.run_for(ms(1));
    }
    sim.run_until_idle().unwrap();
    assert_eq!(received(&sim, b), sent);
    let chunks = sim
        .node(b)
        .seen
        .iter()
        .filter(|(_, i)| matches!(i, Input::Data { .. }))
        .count();
    assert_eq!(chunks, 500 * 2, "13-byte writes cut at the 7-byte mss");
}

#[test]
fn bandwidth_spaces_the_chunks() {
    let config = NetConfig {
        default_link: LinkConfig {
            latency: ms(20),
            bandwidth: Some(1_000_000),
            mss: 1_000,
            ..LinkConfig::default()
        },
        ..NetConfig::default()
    };
    let (mut sim, a, b) = pair(config);
    let conn = connect(&mut sim, a, b);
    let start = sim.elapsed();
    send(&mut sim, a, conn, vec![1; 100_000]);
    sim.run_until_idle().unwrap();
    let (last, _) = sim.node(b).seen.last().unwrap();
    // 100 kB at 1 MB/s is 100 ms on the wire, plus the latency.
    assert_eq!(sim.offset_of(*last) - start, ms(120));
}

#[test]
fn connect_to_nobody_fails_and_close_follows_the_data() {
    let (mut sim, a, b) = pair(NetConfig::default());
    sim.act(a, |p, _| {
        p.out.push_back(Output::Connect {
            to: Addr(7),
            tag: 1,
        })
    });
    sim.run_for(ms(100));
    assert!(matches!(
        sim.node(a).seen.last(),
        Some((
            _,
            Input::ConnectFailed {
                peer: Addr(7),
                tag: 1
            }
        ))
    ));
    let conn = connect(&mut sim, a, b);
    send(&mut sim, a, conn, b"last words".to_vec());
    sim.act(a, |p, _| p.out.push_back(Output::Close { conn }));
    sim.run_until_idle().unwrap();
    assert_eq!(received(&sim, b), b"last words");
    assert!(matches!(
        sim.node(b).seen.last(),
        Some((
            _,
            Input::Closed {
                reason: CloseReason::PeerClosed,
                ..
            }
        ))
    ));
    assert!(sim.connections().is_empty());
}

#[test]
fn connect_into_a_partition_times_out() {
    let config = NetConfig::default();
    let timeout = config.connect_timeout;
    let (mut sim, a, b) = pair(config);
    sim.partition(a, b);
    sim.act(a, |p, _| p.out.push_back(Output::Connect { to: b, tag: 3 }));
    sim.run_until_idle().unwrap();
    let (at, input) = sim.node(a).seen.last().unwrap();
    assert_eq!(input, &Input::ConnectFailed { peer: b, tag: 3 });
    assert_eq!(sim.offset_of(*at), timeout);
    assert!(sim.node(b).seen.is_empty());
}

#[test]
fn reset_loses_bytes_in_flight_and_tells_both_ends() {
    let (mut sim, a, b) = pair(NetConfig::default());
    let conn = connect(&mut sim, a, b);
    send(&mut sim, a, conn, vec![5; 10]);
    sim.reset(conn);
    sim.run_until_idle().unwrap();
    assert!(received(&sim, b).is_empty());
    for x in [a, b] {
        let (_, last) = sim.node(x).seen.last().unwrap();
        assert_eq!(
            last,
            &Input::Closed {
                conn,
                reason: CloseReason::Reset
            }
        );
    }
    // Sends on a dead connection go nowhere.
    sim.act(a, |p, _| {
        p.out.push_back(Output::Send {
            conn,
            bytes: Bytes::from_static(b"late"),
        })
    });
    sim.run_until_idle().unwrap();
    assert!(received(&sim, b).is_empty());
}
