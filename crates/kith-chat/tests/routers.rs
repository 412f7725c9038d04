//! ptpchat routers as neighbours and signed routes, with the bad input the issue names:
//! a router on the chat port is taken as a router (HELLO, ROUTING) but believed last and
//! capped, so one that poisons a route does not black-hole honest traffic; ROUTING from kith
//! nodes is signed, bound to its receiver and ordered; a replayed message is never shown
//! twice; a flood of unique message ids is refused past the rates with the memory held
//! bounded; a blocked node is not heard.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use kith_chat::message::{Body, ChatId, Envelope, Hello, NodeType, RouteEntry, Routing};
use kith_chat::router::{ChatEvent, NeighbourInfo, NeighbourKind};
use kith_crypto::{Identity, NodeId};
use rand::rngs::StdRng;
use rand::SeedableRng;
use support::{sim_config, Net};

fn plain(n: u128) -> NodeId {
    // A uuid4: no key derives it.
    let mut b = n.to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    NodeId::from_bytes(b)
}

fn server_hello(id: NodeId) -> Envelope {
    Envelope::new(
        1,
        Body::Hello(Hello {
            node_id: ChatId::named(id, Some("server".into())),
            version: Some("ptpchat-server; 0.2".into()),
            node_type: NodeType::Server,
            challenge: None,
            auth: Default::default(),
            later_revision: true,
        }),
    )
}

fn unsigned_routing(from: NodeId, claims: &[(NodeId, u32)]) -> Envelope {
    Envelope::new(
        1,
        Body::Routing(Routing {
            node_id: ChatId::new(from),
            nodes: claims
                .iter()
                .map(|(id, ttl)| RouteEntry {
                    node_id: ChatId::new(*id),
                    ttl: *ttl,
                })
                .collect(),
            seq: None,
            auth: Default::default(),
        }),
    )
}

fn messages_in(net: &Net, e: usize) -> usize {
    net.endpoints[e]
        .inbox
        .iter()
        .filter(|m| matches!(m.body, Body::Message(_)))
        .count()
}

/// A - B - C - D in a line, converged.
fn line4() -> Net {
    let mut net = Net::new(4, 31, sim_config());
    for i in 0..3 {
        net.link(i, i + 1);
    }
    net.run_for(Duration::from_secs(3));
    net
}

#[test]
fn a_ptpchat_router_is_a_neighbour_whose_poisoned_route_does_not_black_hole_honest_traffic() {
    let mut net = line4();
    let router_id = plain(0xabc);
    let r = net.attach_client(0, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)));
    net.inject(r, server_hello(router_id));
    net.run_for(Duration::from_millis(50));
    assert!(
        net.hello_from_router(r).is_some(),
        "the node answers the router's HELLO"
    );
    // Behind it: a plain client it carries. And a lie: node D, 1 hop from it (2 from A, a
    // shorter path than the honest 3).
    let behind = plain(0xdef);
    let d = net.ids[3];
    net.inject(r, unsigned_routing(router_id, &[(behind, 1), (d, 1)]));
    net.run_for(Duration::from_millis(50));
    let via_router = net.routers[0].route_to(&behind).expect("a route behind it");
    assert_eq!(via_router.hops, 2);
    let to_d = net.routers[0].route_to(&d).unwrap();
    assert_eq!(
        to_d.hops, 3,
        "the honest path stays, however short the claim"
    );
    assert_ne!(to_d.next_hop, via_router.next_hop);
    // Twenty messages from A to D all arrive, none through the router.
    let mut sent = Vec::new();
    for k in 0..20 {
        let text = format!("to D {k}");
        sent.push(
            net.act(0, |r, now| r.send_direct(now, &[d], &text, Vec::new(), "t"))
                .unwrap(),
        );
    }
    net.run_for(Duration::from_secs(5));
    let delivered = sent.iter().filter(|m| net.deliveries(3, m) == 1).count();
    assert_eq!(delivered, 20);
    assert_eq!(messages_in(&net, r), 0, "nothing went to the poisoner");
    // What it alone reaches, it carries.
    net.act(0, |r, now| {
        r.send_direct(now, &[behind], "via the router", Vec::new(), "t")
    })
    .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(messages_in(&net, r), 1);
    // It may announce at most 256 destinations.
    let many: Vec<(NodeId, u32)> = (0..5_000u128).map(|n| (plain(0x10000 + n), 3)).collect();
    let before = net.routers[0].counters().routes_refused;
    for part in many.chunks(1_000) {
        net.inject(r, unsigned_routing(router_id, part));
    }
    let refused = net.routers[0].counters().routes_refused - before;
    let routes = net.routers[0].route_count();
    println!("poisoning router: 20/20 delivered on the honest path, 0 through it; 5,000 routes announced, {refused} refused, table holds {routes}");
    assert!(refused >= 5_000 - 256);
    assert!(routes <= 3 + 256 + 1);
}

#[test]
fn routing_from_a_kith_node_is_signed_for_its_receiver_and_ordered() {
    let mut net = Net::new(2, 41, sim_config());
    net.link(0, 1);
    net.run_for(Duration::from_secs(2));
    let rogue = Identity::generate(&mut StdRng::seed_from_u64(99));
    let k = net.attach(
        0,
        NeighbourInfo {
            kind: NeighbourKind::Node {
                agent: rogue.agent_id(),
            },
            observed_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 7, 7, 7))),
        },
        true,
    );
    net.inject(
        k,
        support::hello(ChatId::new(rogue.node_id()), None, Default::default()),
    );
    let x = plain(0x77);
    let me = net.ids[0];
    let forged = |net: &Net| net.routers[0].counters().forged;
    // Unsigned: refused.
    let f0 = forged(&net);
    net.inject(k, unsigned_routing(rogue.node_id(), &[(x, 1)]));
    assert_eq!(forged(&net), f0 + 1);
    assert!(net.routers[0].route_to(&x).is_none());
    // Signed for another receiver: refused.
    net.inject(
        k,
        support::signed_routing(&rogue, net.ids[1], "", 5, &[(x, 1)]),
    );
    assert_eq!(forged(&net), f0 + 2);
    // Signed for us: taken.
    let good = support::signed_routing(&rogue, me, "", 5, &[(x, 1)]);
    net.inject(k, good.clone());
    assert_eq!(net.routers[0].route_to(&x).map(|r| r.hops), Some(2));
    // Replayed (same seq), or older: refused, and the route it would change stands.
    let withdraw = support::signed_routing(&rogue, me, "", 4, &[(x, 32)]);
    net.inject(k, good);
    net.inject(k, withdraw);
    assert_eq!(forged(&net), f0 + 4);
    assert_eq!(net.routers[0].route_to(&x).map(|r| r.hops), Some(2));
    net.inject(k, support::signed_routing(&rogue, me, "", 6, &[(x, 32)]));
    assert!(net.routers[0].route_to(&x).is_none(), "a newer one counts");
}

#[test]
fn a_replayed_message_is_never_shown_twice() {
    let mut net = Net::new(3, 51, sim_config());
    net.link(0, 1);
    net.link(1, 2);
    net.run_for(Duration::from_secs(2));
    for i in 0..3 {
        net.act(i, |r, now| r.join(now, "lobby", false)).unwrap();
    }
    net.run_for(Duration::from_secs(2));
    // A spy linked to node 2 records what it floods.
    let spy = Identity::generate(&mut StdRng::seed_from_u64(5));
    let s = net.attach(
        2,
        NeighbourInfo {
            kind: NeighbourKind::Node {
                agent: spy.agent_id(),
            },
            observed_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 5, 5, 5))),
        },
        false,
    );
    net.inject(
        s,
        support::hello(ChatId::new(spy.node_id()), None, Default::default()),
    );
    net.run_for(Duration::from_millis(100));
    let msg = net
        .act(0, |r, now| {
            r.say(now, "lobby", "only once", Vec::new(), "t")
        })
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.deliveries(2, &msg), 1);
    let captured: Envelope = net.endpoints[s]
        .inbox
        .iter()
        .find(|m| matches!(&m.body, Body::Message(x) if x.msg_id == msg))
        .unwrap()
        .clone();
    // Replayed at once, after the flood cache forgot it (10 min), and after an hour.
    let mut replays = 0;
    for wait in [0u64, 11 * 60, 3600] {
        net.run_for(Duration::from_secs(wait));
        net.inject(s, captured.clone());
        replays += 1;
        net.run_for(Duration::from_secs(1));
    }
    let shown: usize = (0..3).map(|i| net.deliveries(i, &msg)).sum();
    let dups = net.routers[2].counters().duplicates;
    println!("replayed message: {replays} replays, shown {shown} times in all (once to each of the 2 other members), {dups} duplicates counted where it was replayed");
    assert_eq!(net.deliveries(1, &msg), 1);
    assert_eq!(net.deliveries(2, &msg), 1);
    assert_eq!(net.deliveries(0, &msg), 0, "nor shown to its author");
}

#[test]
fn a_flood_of_unique_message_ids_is_refused_past_the_rates_and_the_memory_held_is_bounded() {
    let mut net = Net::new(2, 61, sim_config());
    net.link(0, 1);
    net.run_for(Duration::from_secs(2));
    let id = net.act(0, |r, now| r.join(now, "lobby", false)).unwrap();
    net.act(1, |r, now| r.join(now, "lobby", false)).unwrap();
    net.run_for(Duration::from_secs(2));
    // A linked rogue node relays 100,000 unsigned messages, each under a new msg_id and a
    // new plain author, over ten seconds.
    let rogue = Identity::generate(&mut StdRng::seed_from_u64(8));
    let k = net.attach(
        0,
        NeighbourInfo {
            kind: NeighbourKind::Node {
                agent: rogue.agent_id(),
            },
            observed_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 8, 8, 8))),
        },
        true,
    );
    net.inject(
        k,
        support::hello(ChatId::new(rogue.node_id()), None, Default::default()),
    );
    let received_before = net.routers[0].counters().received;
    let limited_before = net.routers[0].counters().rate_limited;
    let total = 100_000u128;
    for n in 0..total {
        let author = plain(0x100000 + n);
        let mut m = support::signed_message(
            &rogue,
            &format!("flood-{n}"),
            &[],
            Some(("lobby", &id)),
            "spam",
            false,
        );
        m.node_id = ChatId::new(author);
        m.message[..64].fill(0);
        m.unsigned = true;
        net.inject(k, support::flooded(Body::Message(m)));
        if n % 10_000 == 9_999 {
            net.run_for(Duration::from_secs(1));
        }
    }
    net.run_for(Duration::from_secs(2));
    let c = net.routers[0].counters();
    let handled = c.received - received_before;
    let limited = c.rate_limited - limited_before;
    let shown = net.events[1]
        .iter()
        .filter(|e| matches!(e, ChatEvent::Message(m) if m.text == "spam"))
        .count();
    let fp = net.routers[0].footprint();
    println!(
        "unique msg_id flood: {total} sent, {limited} refused by rate, {} acted on, {shown} shown one hop on; held: {} cache entries, {} people, {} queued",
        handled,
        fp.seen,
        fp.people,
        fp.queued
    );
    assert!(limited >= 95_000, "{limited}");
    assert!(fp.seen <= 2 * 65_536);
    assert!(fp.people <= net.config().max_routes.max(16));
    // The honest user is still heard.
    let ok = net
        .act(1, |r, now| {
            r.say(now, "lobby", "still here", Vec::new(), "t")
        })
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.deliveries(0, &ok), 1);
}

#[test]
fn a_blocked_node_is_not_heard() {
    let mut net = Net::new(3, 71, sim_config());
    net.link(0, 1);
    net.link(1, 2);
    net.run_for(Duration::from_secs(2));
    for i in 0..3 {
        net.act(i, |r, now| r.join(now, "lobby", false)).unwrap();
    }
    net.run_for(Duration::from_secs(2));
    let pest = net.ids[2];
    assert!(net.act(0, |r, now| r.block(now, pest, true)));
    let m = net
        .act(2, |r, now| r.say(now, "lobby", "hello?", Vec::new(), "t"))
        .unwrap();
    let zero = net.ids[0];
    let d = net
        .act(2, |r, now| {
            r.send_direct(now, &[zero], "psst", Vec::new(), "t")
        })
        .ok();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.deliveries(0, &m), 0);
    assert_eq!(net.deliveries(1, &m), 1);
    if let Some(d) = d {
        assert_eq!(net.deliveries(0, &d), 0);
    }
    assert!(net.routers[0].counters().blocked >= 1);
    assert!(net.act(0, |r, now| r.block(now, pest, false)));
    let again = net
        .act(2, |r, now| r.say(now, "lobby", "now?", Vec::new(), "t"))
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.deliveries(0, &again), 1);
}

/// Two routers joined by a chat-port connection one of them dialled (`kith chat peer`), the
/// frames carried as JSON: both prove their keys, sign their ROUTING, and route for each
/// other as trusted neighbours.
#[test]
fn a_kith_node_dialled_on_its_chat_port_proves_its_key_and_signs_its_routes() {
    use kith_chat::{ChatConfig, Output, Router};
    let t0 = std::time::Instant::now();
    let (ka, kb) = (
        Identity::generate(&mut StdRng::seed_from_u64(1)),
        Identity::generate(&mut StdRng::seed_from_u64(2)),
    );
    let mut a = Router::new(ka.clone(), ChatConfig::default(), t0, [1; 32]).unwrap();
    let mut b = Router::new(kb.clone(), ChatConfig::default(), t0, [2; 32]).unwrap();
    let (na, nb) = (kith_chat::NeighbourId(1), kith_chat::NeighbourId(2));
    let ip = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    // A dialled B's chat port.
    a.neighbour_up(
        t0,
        na,
        NeighbourInfo {
            kind: NeighbourKind::Router,
            observed_ip: ip,
        },
    );
    b.neighbour_up(
        t0,
        nb,
        NeighbourInfo {
            kind: NeighbourKind::Client,
            observed_ip: ip,
        },
    );
    let mut frames = 0;
    for _ in 0..10 {
        let mut quiet = true;
        for (from, to, to_nb) in [(0, 1, nb), (1, 0, na)] {
            let out: Vec<Output> = {
                let r = if from == 0 { &mut a } else { &mut b };
                std::iter::from_fn(|| r.poll_output()).collect()
            };
            for o in out {
                if let Output::Transmit { message, .. } = o {
                    quiet = false;
                    frames += 1;
                    let r = if to == 0 { &mut a } else { &mut b };
                    r.handle_frame(t0, to_nb, &message.encode()).unwrap();
                }
            }
        }
        if quiet {
            break;
        }
    }
    assert!(frames > 0);
    assert_eq!(a.route_to(&kb.node_id()).map(|r| r.hops), Some(1));
    assert_eq!(b.route_to(&ka.node_id()).map(|r| r.hops), Some(1));
    assert_eq!(a.key_of(&kb.node_id()), Some(kb.agent_id()), "proven");
    assert_eq!(b.key_of(&ka.node_id()), Some(ka.agent_id()), "proven");
    assert_eq!(a.counters().forged + b.counters().forged, 0);
    assert_eq!(a.counters().hello_refused + b.counters().hello_refused, 0);
}

/// Regression: every recipient's receipt for one message carries that message's id; the
/// second must not be taken for a duplicate of the first.
#[test]
fn each_recipient_of_one_direct_message_has_its_receipt_counted() {
    let mut net = Net::new(3, 81, sim_config());
    net.link(0, 1);
    net.link(0, 2);
    net.run_for(Duration::from_secs(2));
    let (b, c) = (net.ids[1], net.ids[2]);
    let m = net
        .act(0, |r, now| {
            r.send_direct(now, &[b, c], "both", Vec::new(), "t")
        })
        .unwrap();
    net.run_for(Duration::from_secs(2));
    let receipts = net.events[0]
        .iter()
        .filter(|e| matches!(e, ChatEvent::Delivered { msg_id, .. } if *msg_id == m))
        .count();
    assert_eq!(receipts, 2);
    assert!(net.persisted[0].is_empty());
}
