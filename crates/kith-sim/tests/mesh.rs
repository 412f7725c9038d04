//! Thirty nodes link by tickets, lose every connection, and come back as known peers.

mod common;

use common::*;
use kith_proto::secure::{HandshakeKind, Role};
use kith_sim::secure::NodeEvent;
use kith_sim::{LinkConfig, NetConfig};

#[test]
fn thirty_nodes_link_by_tickets_then_relink_as_known_peers_after_reset() {
    let config = NetConfig {
        default_link: LinkConfig {
            latency: ms(15),
            jitter: ms(10),
            ..LinkConfig::default()
        },
        ..NetConfig::default()
    };
    let (mut sim, n) = secure_sim(30, 30, config);
    // A ring plus chords: 36 links, every one by its own one-time ticket.
    let mut pairs: Vec<(usize, usize)> = (0..30).map(|i| (i, (i + 1) % 30)).collect();
    pairs.extend((0..30).step_by(5).map(|i| (i, (i + 10) % 30)));
    for &(i, j) in &pairs {
        dial_by_ticket(&mut sim, n[i], n[j]);
    }
    sim.run_for(ms(2_000));
    for &(i, j) in &pairs {
        assert!(linked(&sim, n[i], n[j]), "{i}-{j} not linked by ticket");
    }
    let ticket_links: usize = n.iter().map(|&a| sim.node(a).links().len()).sum();
    assert_eq!(ticket_links, 2 * pairs.len());
    assert!(n
        .iter()
        .flat_map(|&a| sim.node(a).links())
        .all(|l| l.kind == HandshakeKind::Ticket));

    let before = sim.elapsed();
    sim.reset_all();
    assert_eq!(sim.stats().resets, pairs.len() as u64);
    sim.run_for(ms(5_000));
    for &(i, j) in &pairs {
        assert!(linked(&sim, n[i], n[j]), "{i}-{j} did not relink");
    }
    for &a in &n {
        let node = sim.node(a);
        assert!(node.links().iter().all(|l| l.kind == HandshakeKind::Known));
        // Every link made after the reset is N+KK, and the initiators of the ticket links
        // are the ones that redialled.
        for (t, e) in node.events() {
            if let NodeEvent::Established { kind, .. } = e {
                if sim.offset_of(*t) > before {
                    assert_eq!(*kind, HandshakeKind::Known);
                }
            }
        }
        let dialled = node
            .links()
            .iter()
            .filter(|l| l.role == Role::Initiator)
            .count();
        assert_eq!(node.stats().redials as usize, dialled);
    }
    let total: usize = n.iter().map(|&a| sim.node(a).links().len()).sum();
    assert_eq!(total, 2 * pairs.len());
}
