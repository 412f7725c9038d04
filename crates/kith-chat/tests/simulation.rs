//! Many-node simulations: flooding reaches every node exactly once, routed messages reach
//! distant nodes, a healed partition delivers what was queued, a closed channel stays
//! unreadable to non-members.

mod support;

use std::time::Duration;

use kith_chat::router::ChatEvent;
use support::{sim_config, Net};

const NODES: usize = 500;

fn converged(nodes: usize, seed: u64) -> Net {
    let mut net = Net::new(nodes, seed, sim_config());
    net.random_topology(4);
    net.run_for(Duration::from_secs(10));
    net
}

fn all_routes_known(net: &Net) {
    for (i, r) in net.routers.iter().enumerate() {
        assert_eq!(r.route_count(), net.routers.len() - 1, "node {i} routes");
    }
}

#[test]
fn small_network_json_round_trip_channel_and_direct() {
    let mut net = Net::new(12, 1, sim_config());
    net.json = true;
    net.random_topology(3);
    net.run_for(Duration::from_secs(5));
    all_routes_known(&net);
    let id = net.act(0, |r, now| r.join(now, "lobby", false)).unwrap();
    net.run_for(Duration::from_secs(2));
    for i in 1..12 {
        net.act(i, |r, now| r.join(now, "lobby", false)).unwrap();
    }
    net.run_for(Duration::from_secs(2));
    let msg = net
        .act(3, |r, now| {
            r.say(now, "lobby", "hello all", Vec::new(), "t1")
        })
        .unwrap();
    net.run_for(Duration::from_secs(5));
    for i in 0..12 {
        let expected = usize::from(i != 3);
        assert_eq!(net.deliveries(i, &msg), expected, "node {i}");
    }
    let view = net.routers[7].channels();
    assert_eq!(view[0].channel_id, id);
    assert_eq!(view[0].members.len(), 12);
    let target = net.ids[11];
    let dm = net
        .act(0, |r, now| {
            r.send_direct(now, &[target], "psst", Vec::new(), "t2")
        })
        .unwrap();
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.deliveries(11, &dm), 1);
    assert!(net.persisted[0].is_empty(), "forgotten once acknowledged");
}

#[test]
fn flooded_messages_reach_every_one_of_500_nodes_exactly_once() {
    let mut net = converged(NODES, 7);
    all_routes_known(&net);
    let before: u64 = net.routers.iter().map(|r| r.counters().flooded).sum();
    let id = net.act(0, |r, now| r.join(now, "lobby", false)).unwrap();
    net.run_for(Duration::from_secs(5));
    let flooded: u64 = net.routers.iter().map(|r| r.counters().flooded).sum();
    // Node 0's CHANNEL, acted on once by each node.
    assert_eq!(flooded - before, NODES as u64);
    for i in 1..NODES {
        let discovered = net.events[i]
            .iter()
            .filter(|e| matches!(e, ChatEvent::ChannelDiscovered { channel_id, .. } if *channel_id == id))
            .count();
        assert_eq!(discovered, 1, "node {i}");
    }
    // 100 members; a message from one of them is delivered to each other member exactly once
    // and to nobody else.
    let members: Vec<usize> = (0..NODES).step_by(5).collect();
    for &m in &members[1..] {
        net.act(m, |r, now| r.join(now, "lobby", false)).unwrap();
    }
    net.run_for(Duration::from_secs(5));
    let speaker = members[7];
    let msg = net
        .act(speaker, |r, now| r.say(now, "lobby", "hi", Vec::new(), "t"))
        .unwrap();
    net.run_for(Duration::from_secs(20));
    for i in 0..NODES {
        let expected = usize::from(members.contains(&i) && i != speaker);
        assert_eq!(net.deliveries(i, &msg), expected, "node {i}");
    }
    let members_seen = net.routers[members[3]].channels()[0].members.len();
    assert_eq!(members_seen, members.len(), "membership converged");
}

#[test]
fn routed_messages_reach_distant_nodes_of_500_exactly_once() {
    let mut net = converged(NODES, 11);
    all_routes_known(&net);
    let mut sent = Vec::new();
    for k in 0..20 {
        let src = (k * 37) % NODES;
        let dist = net.distances(src);
        // The farthest node from src.
        let (dst, d) = dist
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.map(|d| (i, d)))
            .max_by_key(|(i, d)| (*d, *i))
            .unwrap();
        assert!(d >= 4, "distant enough");
        let target = net.ids[dst];
        let text = format!("far {k}");
        let msg = net
            .act(src, |r, now| {
                r.send_direct(now, &[target], &text, Vec::new(), "t")
            })
            .unwrap();
        sent.push((src, dst, d, msg));
    }
    net.run_for(Duration::from_secs(20));
    for (src, dst, d, msg) in &sent {
        assert_eq!(net.deliveries(*dst, msg), 1, "{src} -> {dst}");
        let hops = net.message_hops[msg];
        assert_eq!(hops, u64::from(*d), "shortest path {src} -> {dst}");
        assert!(net.persisted[*src].is_empty());
    }
    let forged: u64 = net.routers.iter().map(|r| r.counters().forged).sum();
    assert_eq!(forged, 0);
}

#[test]
fn a_healed_partition_delivers_the_queued_messages() {
    // Two clusters of 250 joined by three bridges.
    let mut net = Net::new(NODES, 13, sim_config());
    let half = NODES / 2;
    for i in 1..NODES {
        let lo = if i < half { 0 } else { half };
        if i == half {
            continue;
        }
        let j = lo + (i * 7919 + 3) % (i - lo);
        net.link(i, j);
    }
    for (a, b) in [(1, half + 1), (40, half + 90), (200, half + 200)] {
        net.link(a, b);
    }
    net.run_for(Duration::from_secs(10));
    all_routes_known(&net);
    for (a, b) in [(1, half + 1), (40, half + 90), (200, half + 200)] {
        net.cut(a, b);
    }
    // Withdrawals spread (and any count to infinity ends) within the partition.
    net.run_for(Duration::from_secs(30));
    assert!(net.routers[3].route_to(&net.ids[half + 3]).is_none());
    let mut sent = Vec::new();
    for k in 0..10 {
        let (src, dst) = (k * 13 + 2, half + k * 17 + 5);
        let target = net.ids[dst];
        let msg = net
            .act(src, |r, now| {
                r.send_direct(now, &[target], "across", Vec::new(), "t")
            })
            .unwrap();
        sent.push((src, dst, msg));
    }
    net.run_for(Duration::from_secs(5));
    for (src, dst, msg) in &sent {
        assert_eq!(net.deliveries(*dst, msg), 0);
        assert!(net.events[*src]
            .iter()
            .any(|e| matches!(e, ChatEvent::Queued { msg_id, .. } if msg_id == msg)));
        assert_eq!(net.persisted[*src].len(), 1, "kept durably at {src}");
    }
    net.link(40, half + 90);
    net.run_for(Duration::from_secs(20));
    for (src, dst, msg) in &sent {
        assert_eq!(
            net.deliveries(*dst, msg),
            1,
            "{src} -> {dst} after the heal"
        );
        assert!(net.persisted[*src].is_empty(), "forgotten once handed on");
    }
}

#[test]
fn a_closed_channel_is_unreadable_by_non_members() {
    let mut net = converged(NODES, 17);
    let (owner, friend, other) = (10, 321, 477);
    net.act(owner, |r, now| r.join(now, "secret", true))
        .unwrap();
    net.run_for(Duration::from_secs(5));
    let (f, o) = (net.ids[friend], net.ids[other]);
    net.act(owner, |r, now| r.invite(now, "secret", f)).unwrap();
    net.act(owner, |r, now| r.invite(now, "secret", o)).unwrap();
    net.run_for(Duration::from_secs(10));
    for n in [friend, other] {
        assert!(net.events[n]
            .iter()
            .any(|e| matches!(e, ChatEvent::Joined { name, .. } if name == "secret")));
    }
    // An outsider cannot join a closed channel it was not invited to.
    assert!(net.act(5, |r, now| r.join(now, "secret", false)).is_err());
    net.watch = Some(b"the eagle lands".to_vec());
    let msg = net
        .act(owner, |r, now| {
            r.say(now, "secret", "the eagle lands", Vec::new(), "t")
        })
        .unwrap();
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.watch_hits, 0, "the text never travels in clear");
    for i in 0..NODES {
        let expected = usize::from(i == friend || i == other);
        assert_eq!(net.deliveries(i, &msg), expected, "node {i}");
    }
    // Removing a member rotates the key: the rest still read, the removed one cannot.
    net.act(owner, |r, now| r.kick(now, "secret", o)).unwrap();
    net.run_for(Duration::from_secs(10));
    assert!(net.events[other]
        .iter()
        .any(|e| matches!(e, ChatEvent::Removed { .. })));
    let after = net
        .act(owner, |r, now| {
            r.say(now, "secret", "after the kick", Vec::new(), "t")
        })
        .unwrap();
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.deliveries(friend, &after), 1);
    assert_eq!(net.deliveries(other, &after), 0);
    let reply = net
        .act(friend, |r, now| {
            r.say(now, "secret", "roger", Vec::new(), "t")
        })
        .unwrap();
    net.run_for(Duration::from_secs(10));
    assert_eq!(
        net.deliveries(owner, &reply),
        1,
        "the friend has the new key"
    );
    assert_eq!(net.deliveries(other, &reply), 0);
}

/// Links that close when quiet and nodes that restart lose nothing: every channel message
/// reaches every member and every direct message its recipient (the 1,000-node run is in
/// `tests/report.rs`).
#[test]
fn with_sleeping_links_and_restarting_nodes_every_message_arrives() {
    let report = support::churn(120, 99, 3);
    println!("{report:?}");
    assert!(report.restarts > 0 && report.idle_closed > 0 && report.relinked > 0);
    assert_eq!(report.channel_delivered, report.channel_expected);
    assert_eq!(report.direct_delivered, report.direct_expected);
    assert_eq!(report.channel_duplicates, 0);
}
