//! Two and three secure nodes: ticket handshakes, pings, one-time tickets, raw mode.

mod common;

use common::*;
use kith_proto::secure::{HandshakeKind, Mode, RefuseReason, Role};
use kith_proto::wire::{Command, Envelope};
use kith_sim::secure::{NodeEvent, SecureNodeConfig, SecureSimNode};
use kith_sim::{CloseReason, LinkConfig, NetConfig, Sim};

#[test]
fn two_nodes_link_by_ticket_and_ping() {
    let latency = ms(35);
    let config = NetConfig {
        default_link: LinkConfig::with_latency(latency),
        ..NetConfig::default()
    };
    let (mut sim, n) = secure_sim(1, 2, config);
    let (a, b) = (n[0], n[1]);
    dial_by_ticket(&mut sim, a, b);
    sim.run_for(ms(1_000));
    assert!(linked(&sim, a, b));
    // SYN, SYN-ACK, `I`, `A`: the initiator is established after two round trips.
    let est = sim.node(a).events().iter().find_map(|(t, e)| match e {
        NodeEvent::Established { kind, role, .. } => Some((*t, *kind, *role)),
        _ => None,
    });
    let (at, kind, role) = est.unwrap();
    assert_eq!(sim.offset_of(at), latency * 4);
    assert_eq!((kind, role), (HandshakeKind::Ticket, Role::Initiator));
    let link = &sim.node(b).links()[0];
    assert_eq!(
        (link.kind, link.role),
        (HandshakeKind::Ticket, Role::Responder)
    );
    assert_eq!(link.peer, sim.node(a).agent());
    assert_eq!(link.mode, Mode::Noise);
    assert_eq!(
        link.handshake_hash.len(),
        64,
        "a BLAKE2b Noise handshake hash"
    );
    assert_eq!(link.handshake_hash, sim.node(a).links()[0].handshake_hash);
    // Both ends now know each other.
    let agent_a = sim.node(a).agent();
    let agent_b = sim.node(b).agent();
    assert!(sim.node(b).is_known(&agent_a) && sim.node(a).is_known(&agent_b));

    assert!(sim.act(a, |node, now| node.ping(now, agent_b)));
    assert!(sim.act(b, |node, now| node.ping(now, agent_a)));
    sim.run_for(ms(1_000));
    assert_eq!(sim.node(a).rtts(), &[(agent_b, latency * 2)]);
    assert_eq!(sim.node(b).rtts(), &[(agent_a, latency * 2)]);

    // Application envelopes land in the inbox, in order, split across chunks when large.
    let big = Envelope::new(Command::new("file").unwrap(), vec![7u8; 100_000]);
    let small = Envelope::new(Command::new("chat").unwrap(), b"hello".to_vec());
    sim.act(a, |node, now| {
        assert!(node.send_envelope(now, agent_b, &big));
        assert!(node.send_envelope(now, agent_b, &small));
    });
    sim.run_for(ms(1_000));
    let inbox = sim.act(b, |node, _| node.take_inbox());
    assert_eq!(inbox, vec![(agent_a, big), (agent_a, small)]);
}

#[test]
fn reused_one_time_ticket_is_refused_and_third_node_sees_silent_close() {
    let (mut sim, n) = secure_sim(2, 3, NetConfig::default());
    let (owner, first, third) = (n[0], n[1], n[2]);
    let ticket = sim.act(owner, |node, _| node.issue_ticket(true));
    sim.act(first, |node, _| node.connect_ticket(&ticket));
    sim.run_for(ms(1_000));
    assert!(linked(&sim, owner, first));

    sim.act(third, |node, _| node.connect_ticket(&ticket));
    sim.run_for(ms(1_000));
    let third_agent = sim.node(third).agent();
    assert!(!sim.node(owner).is_linked(third_agent));
    assert!(sim.node(third).links().is_empty());
    // The owner refused the ticket...
    assert!(sim.node(owner).events().iter().any(|(_, e)| matches!(
        e,
        NodeEvent::Refused {
            reason: RefuseReason::TicketRefused,
            ..
        }
    )));
    // ...and the third node got a close with not one byte before it.
    let closes: Vec<_> = sim
        .node(third)
        .events()
        .iter()
        .filter_map(|(_, e)| match e {
            NodeEvent::ClosedInHandshake {
                reason,
                bytes_received,
                ..
            } => Some((*reason, *bytes_received)),
            _ => None,
        })
        .collect();
    assert_eq!(closes, vec![(CloseReason::PeerClosed, 0)]);
    assert!(!sim.node(owner).is_known(&third_agent));

    // A multi-use ticket admits both.
    let multi = sim.act(owner, |node, _| node.issue_ticket(false));
    sim.act(third, |node, _| node.connect_ticket(&multi));
    sim.run_for(ms(1_000));
    assert!(linked(&sim, owner, third));
}

#[test]
fn unknown_peer_is_refused_for_n_kk() {
    let (mut sim, n) = secure_sim(3, 2, NetConfig::default());
    let (a, b) = (n[0], n[1]);
    let agent_b = sim.node(b).agent();
    sim.act(a, |node, _| node.add_known_peer(agent_b, b));
    assert!(sim.act(a, |node, _| node.connect_known(agent_b)));
    sim.run_for(ms(1_000));
    assert!(!linked(&sim, a, b));
    assert_eq!(sim.node(b).stats().refused, 1);
    assert_eq!(sim.node(a).stats().closed_in_handshake, 1);
}

#[test]
fn raw_mode_links_and_pings() {
    let mut sim: Sim<SecureSimNode> = Sim::new(4);
    let raw = SecureNodeConfig {
        mode: Mode::Raw,
        ..options()
    };
    let a = sim.add_node_with(|addr, rng| SecureSimNode::new(addr, rng, raw.clone()));
    let b = sim.add_node_with(|addr, rng| SecureSimNode::new(addr, rng, raw.clone()));
    dial_by_ticket(&mut sim, a, b);
    sim.run_for(ms(500));
    assert!(linked(&sim, a, b));
    let link = &sim.node(a).links()[0];
    assert_eq!(link.mode, Mode::Raw);
    assert!(link.handshake_hash.is_empty());
    let agent_b = sim.node(b).agent();
    sim.act(a, |node, now| node.ping(now, agent_b));
    sim.run_for(ms(500));
    assert_eq!(sim.node(a).rtts(), &[(agent_b, ms(40))]);
}
