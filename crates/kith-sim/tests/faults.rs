//! Partitions, handshake deadlines and idle links, all on virtual time.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kith_proto::link::LinkEnd;
use kith_proto::secure::{HandshakeError, HandshakeKind};
use kith_sim::secure::{NodeEvent, SecureSimNode};
use kith_sim::{Addr, CloseReason, ConnId, Input, LinkConfig, NetConfig, Output, Sim, SimNode};

#[test]
fn short_partition_stalls_the_stream_and_heal_delivers_it_in_order() {
    let (mut sim, n) = secure_sim(10, 2, NetConfig::default());
    let (a, b) = (n[0], n[1]);
    dial_by_ticket(&mut sim, a, b);
    sim.run_for(ms(500));
    let agent_b = sim.node(b).agent();
    sim.partition(a, b);
    sim.act(a, |node, now| node.ping(now, agent_b));
    sim.act(a, |node, now| node.ping(now, agent_b));
    sim.run_for(ms(5_000));
    assert!(sim.node(a).rtts().is_empty());
    sim.heal(a, b);
    sim.run_for(ms(500));
    // Stalled at b's end until the heal, then one latency to b and one back.
    let want = ms(5_000) + 2 * LinkConfig::default().latency;
    assert_eq!(sim.node(a).rtts(), &[(agent_b, want), (agent_b, want)]);
    assert!(linked(&sim, a, b));
    assert_eq!(sim.node(a).stats().links_lost, 0);
}

#[test]
fn partition_breaks_links_and_nodes_relink_after_heal() {
    let config = NetConfig::default();
    let break_after = config.partition_break_after;
    let (mut sim, n) = secure_sim(11, 4, config);
    let (left, right) = ([n[0], n[1]], [n[2], n[3]]);
    for (&l, &r) in left.iter().zip(&right) {
        dial_by_ticket(&mut sim, l, r);
    }
    dial_by_ticket(&mut sim, n[0], n[1]);
    sim.run_for(ms(1_000));
    let t0 = sim.elapsed();
    sim.split(&left, &right);
    sim.run_until(t0 + break_after - ms(1));
    assert!(linked(&sim, n[0], n[2]), "broken before the break time");
    sim.run_until(t0 + break_after);
    for (&l, &r) in left.iter().zip(&right) {
        assert!(!sim.node(l).is_linked(sim.node(r).agent()));
        assert!(!sim.node(r).is_linked(sim.node(l).agent()));
        for x in [l, r] {
            assert!(sim.node(x).events().iter().any(|(_, e)| matches!(
                e,
                NodeEvent::LinkClosed {
                    reason: CloseReason::TimedOut,
                    ..
                }
            )));
        }
    }
    assert!(
        linked(&sim, n[0], n[1]),
        "the link inside one side survives"
    );
    // Redials fail while the partition stands.
    sim.run_for(ms(20_000));
    assert!(sim.node(n[0]).stats().connect_failures >= 2);
    assert!(!linked(&sim, n[0], n[2]));

    sim.heal_all();
    // The next redial is at most redial_max (4 s) away.
    sim.run_for(ms(5_000));
    for (&l, &r) in left.iter().zip(&right) {
        assert!(linked(&sim, l, r), "{l}-{r} did not relink after the heal");
        let to_r = sim.node(r).agent();
        let link = sim
            .node(l)
            .links()
            .into_iter()
            .find(|x| x.peer == to_r)
            .unwrap();
        assert_eq!(link.kind, HandshakeKind::Known);
    }
    assert_eq!(sim.stats().broken_by_partition, 2);
}

/// Connects and sends the start of an `I` frame one byte a second, forever.
struct Dripper {
    to: Addr,
    conn: Option<ConnId>,
    next: Option<Instant>,
    sent: usize,
    closed: Option<(Instant, CloseReason)>,
    out: Vec<Output>,
}

const DRIP: &[u8] = &[0, 0, 0, 100, b'I'];

impl SimNode for Dripper {
    fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connected { conn, .. } => {
                self.conn = Some(conn);
                self.next = Some(now);
            }
            Input::Closed { reason, .. } => {
                self.closed = Some((now, reason));
                self.next = None;
            }
            Input::Timeout => {
                let byte = DRIP.get(self.sent).copied().unwrap_or(0);
                if let Some(conn) = self.conn {
                    self.out.push(Output::Send {
                        conn,
                        bytes: vec![byte].into(),
                    });
                }
                self.sent += 1;
                self.next = Some(now + Duration::from_secs(1));
            }
            _ => {}
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
}

/// Secure nodes and adversaries in one simulation.
enum Mixed {
    Secure(Box<SecureSimNode>),
    Drip(Dripper),
}

impl SimNode for Mixed {
    fn handle(&mut self, now: Instant, input: Input) {
        match self {
            Mixed::Secure(n) => n.handle(now, input),
            Mixed::Drip(n) => n.handle(now, input),
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        match self {
            Mixed::Secure(n) => n.poll_output(),
            Mixed::Drip(n) => n.poll_output(),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Mixed::Secure(n) => n.poll_timeout(),
            Mixed::Drip(n) => n.poll_timeout(),
        }
    }
}

#[test]
fn dripping_peer_hits_the_handshake_deadline_on_virtual_time() {
    let mut sim: Sim<Mixed> = Sim::new(12);
    let target = sim.add_node_with(|addr, rng| {
        Mixed::Secure(Box::new(SecureSimNode::new(addr, rng, options())))
    });
    let drip = sim.add_node(Mixed::Drip(Dripper {
        to: target,
        conn: None,
        next: None,
        sent: 0,
        closed: None,
        out: vec![Output::Connect { to: target, tag: 0 }],
    }));
    let latency = LinkConfig::default().latency;
    let deadline = Duration::from_millis(test_limits().handshake_timeout_ms);
    sim.run_for(ms(60_000));
    let Mixed::Secure(t) = sim.node(target) else {
        unreachable!()
    };
    assert_eq!(t.stats().handshake_timeouts, 1);
    let (at, err) = t
        .events()
        .iter()
        .find_map(|(at, e)| match e {
            NodeEvent::HandshakeFailed { error, .. } => Some((*at, error.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(err, HandshakeError::Timeout);
    // Accepted one latency after the connect; the deadline runs from the accept.
    assert_eq!(sim.offset_of(at), latency + deadline);
    let Mixed::Drip(d) = sim.node(drip) else {
        unreachable!()
    };
    let (closed_at, reason) = d.closed.unwrap();
    assert_eq!(reason, CloseReason::PeerClosed);
    assert_eq!(sim.offset_of(closed_at), 2 * latency + deadline);
    // One byte a second from the connect (one latency before the accept) until the close,
    // both ends of the ten seconds included.
    assert_eq!(d.sent, 11);
    assert_eq!(d.to, target);
    // Nothing is left running: the run is idle.
    assert_eq!(sim.run_until_idle(), Ok(0));
}

#[test]
fn idle_links_are_closed_by_the_responder_on_virtual_time() {
    let (mut sim, n) = secure_sim(13, 2, NetConfig::default());
    let (a, b) = (n[0], n[1]);
    let latency = LinkConfig::default().latency;
    let idle = Duration::from_millis(test_limits().idle_timeout_ms);
    dial_by_ticket(&mut sim, a, b);
    let agent_b = sim.node(b).agent();
    // Pings from the initiator keep the link alive past the idle timeout.
    let mut last_ping = Duration::ZERO;
    for _ in 0..3 {
        sim.run_for(idle / 2);
        last_ping = sim.elapsed();
        assert!(sim.act(a, |node, now| node.ping(now, agent_b)));
    }
    sim.run_for(idle / 2);
    assert!(linked(&sim, a, b), "closed although pinged");
    assert_eq!(sim.node(a).rtts().len(), 3);
    let closed = sim.run_until_with(last_ping + idle + ms(1_000), |s| !linked(s, a, b));
    assert!(closed);
    sim.run_for(ms(1_000));
    let idle_close = sim.node(b).events().iter().find_map(|(t, e)| match e {
        NodeEvent::IdleClosed { .. } => Some(*t),
        _ => None,
    });
    // The responder's clock restarts when the last ping arrives.
    assert_eq!(
        sim.offset_of(idle_close.unwrap()),
        last_ping + latency + idle
    );
    assert_eq!(sim.node(b).stats().idle_closes, 1);
    assert_eq!(
        sim.node(a).stats().idle_closes,
        0,
        "the initiator never closes for idleness"
    );
    assert_eq!(sim.node(a).stats().links_closed_by_peer, 1);
    assert_eq!(
        sim.node(a).stats().redials,
        0,
        "an orderly close is not redialled"
    );
    // Both ends ran the bye/drain protocol: b said `bye` (idle), a answered, both in order.
    for x in [a, b] {
        let ends: Vec<_> = sim
            .node(x)
            .events()
            .iter()
            .filter_map(|(_, e)| match e {
                NodeEvent::LinkEnded { end, .. } => Some(end.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(ends, vec![LinkEnd::Orderly]);
        assert_eq!(sim.node(x).stats().links_ended_orderly, 1);
    }
    // Nothing is left running (a timer disarmed when the link ended may still be queued,
    // but it delivers nothing).
    let before = sim.deliveries();
    assert!(sim.run_until_idle().is_ok());
    assert_eq!(sim.deliveries(), before);
}
