//! The link protocol machine in simulation: links that stay "virtually open" across the
//! responder's idle close, duplicates retired with `bye` and drain, and a replayed handshake
//! from a third party that leaves the real link alone.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use kith_proto::link::{LinkEnd, LinkFailure};
use kith_proto::secure::{FrameDecoder, FrameKind, HandshakeKind, Role};
use kith_proto::wire::{Command, Envelope};
use kith_proto::Limits;
use kith_sim::secure::{NodeEvent, SecureNodeConfig, SecureSimNode};
use kith_sim::{Addr, CloseReason, ConnId, Input, NetConfig, Output, Sim, SimNode};

fn chat(text: &str) -> Envelope {
    Envelope::new(Command::new("chat").unwrap(), text.as_bytes().to_vec())
}

fn ends(node: &SecureSimNode) -> Vec<LinkEnd> {
    node.events()
        .iter()
        .filter_map(|(_, e)| match e {
            NodeEvent::LinkEnded { end, .. } => Some(end.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_link_closed_for_idleness_is_reopened_by_the_next_send_from_either_side() {
    let (mut sim, n) = secure_sim(40, 2, NetConfig::default());
    let (a, b) = (n[0], n[1]);
    let (agent_a, agent_b) = (sim.node(a).agent(), sim.node(b).agent());
    let idle = ms(test_limits().idle_timeout_ms);
    dial_by_ticket(&mut sim, a, b);
    sim.run_for(ms(1_000));
    assert!(linked(&sim, a, b));

    // Quiet for longer than the idle timeout: the responder closes, in order.
    sim.run_for(idle + ms(1_000));
    assert!(!sim.node(a).is_linked(agent_b) && !sim.node(b).is_linked(agent_a));
    assert_eq!(sim.node(b).stats().idle_closes, 1);
    assert_eq!(ends(sim.node(a)), vec![LinkEnd::Orderly]);
    assert_eq!(ends(sim.node(b)), vec![LinkEnd::Orderly]);
    assert_eq!(sim.node(a).established_connections(), 0);

    // The next send from the initiator dials (N+KK) and delivers.
    assert!(sim.act(a, |node, now| node.send_envelope(
        now,
        agent_b,
        &chat("one")
    )));
    sim.run_for(ms(1_000));
    assert_eq!(
        sim.act(b, |node, _| node.take_inbox()),
        vec![(agent_a, chat("one"))]
    );
    let link = &sim.node(a).links()[0];
    assert_eq!(
        (link.kind, link.role),
        (HandshakeKind::Known, Role::Initiator)
    );

    // Quiet again, and this time the old responder sends first: it dials the other way.
    sim.run_for(idle + ms(1_000));
    assert!(!linked(&sim, a, b));
    assert!(sim.act(b, |node, now| node.send_envelope(
        now,
        agent_a,
        &chat("two")
    )));
    sim.run_for(ms(1_000));
    assert_eq!(
        sim.act(a, |node, _| node.take_inbox()),
        vec![(agent_b, chat("two"))]
    );
    let link = &sim.node(b).links()[0];
    assert_eq!(
        (link.kind, link.role),
        (HandshakeKind::Known, Role::Initiator)
    );

    // An envelope sent while the idle `bye` is on its way still arrives on the old link.
    let before = sim.node(a).stats().idle_closes;
    let closing = sim.run_until_with(sim.elapsed() + idle + ms(1_000), |s| {
        s.node(a).stats().idle_closes > before
    });
    assert!(closing);
    assert!(
        sim.node(b).is_linked(agent_a),
        "b has not heard the bye yet"
    );
    assert!(sim.act(b, |node, now| node.send_envelope(
        now,
        agent_a,
        &chat("crossing")
    )));
    sim.run_for(ms(1_000));
    assert_eq!(
        sim.act(a, |node, _| node.take_inbox()),
        vec![(agent_b, chat("crossing"))]
    );
    for x in [a, b] {
        let stats = sim.node(x).stats();
        assert_eq!((stats.links_lost, stats.redials), (0, 0), "{x}: {stats:?}");
        assert_eq!(stats.links_ended_orderly, 3);
    }
}

#[test]
fn simultaneous_dials_converge_on_one_link_and_lose_no_envelope() {
    let (mut sim, n) = secure_sim(41, 2, NetConfig::default());
    let (a, b) = (n[0], n[1]);
    let (agent_a, agent_b) = (sim.node(a).agent(), sim.node(b).agent());
    dial_by_ticket(&mut sim, a, b);
    sim.run_for(ms(1_000));
    sim.act(a, |node, now| node.close_link(now, agent_b));
    sim.run_for(ms(1_000));
    assert!(!linked(&sim, a, b));
    // Both send at the same instant: both dial, two links come up.
    let from_a: Vec<_> = (0..5).map(|i| chat(&format!("a{i}"))).collect();
    let from_b: Vec<_> = (0..5).map(|i| chat(&format!("b{i}"))).collect();
    for (x, y) in from_a.iter().zip(&from_b) {
        assert!(sim.act(a, |node, now| node.send_envelope(now, agent_b, x)));
        assert!(sim.act(b, |node, now| node.send_envelope(now, agent_a, y)));
    }
    sim.run_for(ms(2_000));
    let got_b: Vec<_> = sim.act(b, |node, _| node.take_inbox());
    let got_a: Vec<_> = sim.act(a, |node, _| node.take_inbox());
    assert_eq!(
        got_b,
        from_a
            .iter()
            .map(|e| (agent_a, e.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        got_a,
        from_b
            .iter()
            .map(|e| (agent_b, e.clone()))
            .collect::<Vec<_>>()
    );
    // One link survives, the same on both ends: the one dialled by the smaller agent id.
    assert!(linked(&sim, a, b));
    let (la, lb) = (sim.node(a).links(), sim.node(b).links());
    assert_eq!((la.len(), lb.len()), (1, 1));
    assert_eq!(la[0].conn, lb[0].conn);
    let winner_dialled_by_a = agent_a < agent_b;
    assert_eq!(la[0].role == Role::Initiator, winner_dialled_by_a);
    for x in [a, b] {
        assert_eq!(sim.node(x).stats().duplicates_retired, 1);
        assert_eq!(sim.node(x).established_connections(), 1);
        assert_eq!(sim.node(x).stats().links_lost, 0);
    }
}

/// Connects to `target` and writes `bytes` (a captured handshake), and records the answer.
#[derive(Default)]
struct Replayer {
    target: Option<Addr>,
    bytes: Bytes,
    received: usize,
    closed: Option<CloseReason>,
    out: Vec<Output>,
}

impl SimNode for Replayer {
    fn handle(&mut self, _now: Instant, input: Input) {
        match input {
            Input::Connected { conn, .. } => self.out.push(Output::Send {
                conn,
                bytes: self.bytes.clone(),
            }),
            Input::Data { bytes, .. } => self.received += bytes.len(),
            Input::Closed { reason, .. } => self.closed = Some(reason),
            _ => {}
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

enum Mixed {
    Secure(Box<SecureSimNode>),
    Replay(Replayer),
}

impl SimNode for Mixed {
    fn handle(&mut self, now: Instant, input: Input) {
        match self {
            Mixed::Secure(n) => n.handle(now, input),
            Mixed::Replay(n) => n.handle(now, input),
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        match self {
            Mixed::Secure(n) => n.poll_output(),
            Mixed::Replay(n) => n.poll_output(),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Mixed::Secure(n) => n.poll_timeout(),
            Mixed::Replay(n) => n.poll_timeout(),
        }
    }
}

fn secure(sim: &Sim<Mixed>, at: Addr) -> &SecureSimNode {
    match sim.node(at) {
        Mixed::Secure(n) => n,
        Mixed::Replay(_) => unreachable!(),
    }
}

fn act<R>(sim: &mut Sim<Mixed>, at: Addr, f: impl FnOnce(&mut SecureSimNode, Instant) -> R) -> R {
    sim.act(at, |node, now| match node {
        Mixed::Secure(n) => f(n, now),
        Mixed::Replay(_) => unreachable!(),
    })
}

/// What the eavesdropper on the a-b path saw arrive at b on the first N+KK connection: the
/// `N` and `K` frames, as bytes.
fn captured_n_and_k(sim: &Sim<Mixed>, b: Addr) -> (ConnId, Bytes) {
    let entries = sim.trace_entries();
    let conn = entries
        .iter()
        .find_map(|e| match &e.input {
            Input::Data { conn, bytes } if e.node == b && bytes.get(4) == Some(&b'N') => {
                Some(*conn)
            }
            _ => None,
        })
        .expect("an N+KK handshake reached b");
    let mut stream = BytesMut::new();
    for e in entries {
        if let Input::Data { conn: c, bytes } = &e.input {
            if *c == conn && e.node == b {
                stream.extend_from_slice(bytes);
            }
        }
    }
    let decoder = FrameDecoder::new(&Limits::default());
    let mut captured = BytesMut::new();
    for want in [FrameKind::Declare, FrameKind::Known] {
        let frame = decoder.decode(&mut stream).unwrap().unwrap();
        assert_eq!(frame.kind, want);
        frame.encode(&mut captured).unwrap();
    }
    (conn, captured.freeze())
}

fn replay_scenario(replay_cache_entries: usize) -> (Sim<Mixed>, [Addr; 3]) {
    let mut sim: Sim<Mixed> = Sim::with_config(42, NetConfig::default());
    sim.record_trace(true);
    let b_options = SecureNodeConfig {
        replay_cache_entries,
        ..options()
    };
    let a = sim.add_node_with(|addr, rng| {
        Mixed::Secure(Box::new(SecureSimNode::new(addr, rng, options())))
    });
    let b = sim.add_node_with(|addr, rng| {
        Mixed::Secure(Box::new(SecureSimNode::new(addr, rng, b_options)))
    });
    let e = sim.add_node(Mixed::Replay(Replayer::default()));
    let (agent_a, agent_b) = (secure(&sim, a).agent(), secure(&sim, b).agent());
    // Link by ticket, close, and link again as known peers (N+KK), which e records.
    let ticket = act(&mut sim, b, |n, _| n.issue_ticket(true));
    act(&mut sim, a, |n, _| n.connect_ticket(&ticket));
    sim.run_for(ms(1_000));
    act(&mut sim, a, |n, now| n.close_link(now, agent_b));
    sim.run_for(ms(1_000));
    assert!(act(&mut sim, a, |n, now| n.send_envelope(
        now,
        agent_b,
        &chat("hi")
    )));
    sim.run_for(ms(1_000));
    assert!(secure(&sim, b).is_linked(agent_a));
    let (_, captured) = captured_n_and_k(&sim, b);
    // A minute later e replays the captured N and K to b.
    sim.run_for(ms(30_000));
    sim.act(e, |node, _| {
        let Mixed::Replay(r) = node else {
            unreachable!()
        };
        r.target = Some(b);
        r.bytes = captured;
        r.out.push(Output::Connect { to: b, tag: 0 });
    });
    (sim, [a, b, e])
}

/// The real link is the same connection, carries traffic, and b still records a's address.
fn real_link_undisturbed(
    sim: &mut Sim<Mixed>,
    a: Addr,
    b: Addr,
    before: Vec<kith_sim::secure::LinkInfo>,
) {
    let (agent_a, agent_b) = (secure(sim, a).agent(), secure(sim, b).agent());
    assert_eq!(secure(sim, b).links(), before, "b's active link changed");
    assert!(secure(sim, a).is_linked(agent_b));
    assert!(act(sim, a, |n, now| n.ping(now, agent_b)));
    assert!(act(sim, b, |n, now| n.send_envelope(
        now,
        agent_a,
        &chat("still here")
    )));
    sim.run_for(ms(1_000));
    assert_eq!(secure(sim, a).rtts().len(), 1);
    let inbox = act(sim, a, |n, _| n.take_inbox());
    assert_eq!(inbox, vec![(agent_b, chat("still here"))]);
    let known: Vec<_> = secure(sim, b).known_peers().collect();
    assert_eq!(
        known,
        vec![(agent_a, a)],
        "the replayer's address was not recorded"
    );
    for x in [a, b] {
        let stats = secure(sim, x).stats();
        assert_eq!(stats.duplicates_retired, 0, "{x}");
        assert_eq!(
            stats.links_closed_by_peer,
            usize::from(x == b) as u64,
            "{x}"
        );
    }
}

#[test]
fn a_replayed_handshake_is_dropped_and_the_real_link_carries_on() {
    let (mut sim, [a, b, e]) = replay_scenario(4_096);
    let before = secure(&sim, b).links();
    sim.run_for(ms(1_000));
    let Mixed::Replay(r) = sim.node(e) else {
        unreachable!()
    };
    assert_eq!(r.received, 0, "not even the A went out");
    assert_eq!(r.closed, Some(CloseReason::PeerClosed));
    assert_eq!(secure(&sim, b).stats().replays_refused, 1);
    real_link_undisturbed(&mut sim, a, b, before);
}

#[test]
fn a_replay_the_cache_misses_is_never_confirmed_and_the_real_link_carries_on() {
    let (mut sim, [a, b, e]) = replay_scenario(0);
    let before = secure(&sim, b).links();
    sim.run_for(ms(1_000));
    // Answered (the `A` and b's `version` went out), but never confirmed nor registered.
    let Mixed::Replay(r) = sim.node(e) else {
        unreachable!()
    };
    assert!(r.received > 0);
    assert_eq!(secure(&sim, b).established_connections(), 2);
    real_link_undisturbed(&mut sim, a, b, before.clone());
    let confirm = Duration::from_millis(test_limits().handshake_timeout_ms);
    sim.run_for(confirm);
    let node_b = secure(&sim, b);
    assert_eq!(node_b.established_connections(), 1);
    assert!(node_b.events().iter().any(|(_, e)| matches!(
        e,
        NodeEvent::LinkEnded {
            end: LinkEnd::Lost(LinkFailure::NotConfirmed(_)),
            ..
        }
    )));
    assert_eq!(node_b.stats().replays_refused, 0);
    assert_eq!(node_b.links(), before);
    let Mixed::Replay(r) = sim.node(e) else {
        unreachable!()
    };
    assert_eq!(r.closed, Some(CloseReason::PeerClosed));
}
