//! The 1,000-node report (ignored by default; run with
//! `cargo test -p kith-chat --release --test report -- --ignored --nocapture`): delivery
//! ratio of flooded messages, duplicates each node receives against its degree, hops taken
//! by routed messages against the shortest path, and delivery with links that close when
//! quiet and nodes that restart.

mod support;

use std::time::Duration;

use support::{sim_config, Net};

#[test]
#[ignore = "a report, not a check: prints figures for the benchmark notes"]
fn report_1000_nodes() {
    const N: usize = 1000;
    let mut net = Net::new(N, 2024, sim_config());
    net.random_topology(4);
    net.run_for(Duration::from_secs(15));
    let routes: usize = net.routers.iter().map(|r| r.route_count()).sum();
    println!("routes known: {routes} of {}", N * (N - 1));

    // Flooding: ten channels announced from random nodes.
    let dup_before: Vec<u64> = net
        .routers
        .iter()
        .map(|r| r.counters().duplicates)
        .collect();
    let flood_before: u64 = net.routers.iter().map(|r| r.counters().flooded).sum();
    let floods = 10u64;
    for k in 0..floods as usize {
        let name = format!("room-{k}");
        net.act((k * 97) % N, |r, now| r.join(now, &name, false))
            .unwrap();
        net.run_for(Duration::from_secs(3));
    }
    let acted: u64 = net
        .routers
        .iter()
        .map(|r| r.counters().flooded)
        .sum::<u64>()
        - flood_before;
    println!(
        "flood delivery ratio: {:.4} ({} node-deliveries of {} floods to {} nodes)",
        acted as f64 / (floods as f64 * N as f64),
        acted,
        floods,
        N
    );
    let mut by_degree: std::collections::BTreeMap<usize, (u64, u64)> = Default::default();
    for (i, before) in dup_before.iter().enumerate() {
        let dups = net.routers[i].counters().duplicates - before;
        let e = by_degree.entry(net.adjacency[i].len()).or_default();
        e.0 += dups;
        e.1 += 1;
    }
    println!("duplicates per node per flood, by degree (degree: mean duplicates, nodes):");
    for (degree, (dups, nodes)) in &by_degree {
        println!(
            "  {degree:2}: {:.2} ({nodes})",
            *dups as f64 / (*nodes as f64 * floods as f64)
        );
    }

    // Routing: 200 random pairs.
    let mut stretch_sum = 0.0;
    let mut exact = 0;
    let mut delivered = 0;
    let mut sent = Vec::new();
    for k in 0..200usize {
        let src = (k * 7919) % N;
        let dst = (k * 104_729 + 13) % N;
        if src == dst {
            continue;
        }
        let target = net.ids[dst];
        let msg = net
            .act(src, |r, now| {
                r.send_direct(now, &[target], "x", Vec::new(), "t")
            })
            .unwrap();
        let d = net.distances(src)[dst].unwrap();
        sent.push((dst, d, msg));
    }
    net.run_for(Duration::from_secs(20));
    for (dst, d, msg) in &sent {
        if net.deliveries(*dst, msg) == 1 {
            delivered += 1;
        }
        let hops = net.message_hops.get(msg).copied().unwrap_or(0);
        stretch_sum += hops as f64 / f64::from(*d);
        if hops == u64::from(*d) {
            exact += 1;
        }
    }
    let mean_d: f64 = sent.iter().map(|(_, d, _)| f64::from(*d)).sum::<f64>() / sent.len() as f64;
    println!(
        "routed: {delivered}/{} delivered; mean shortest path {mean_d:.2} hops; \
         mean hops/shortest {:.3}; {exact} on a shortest path",
        sent.len(),
        stretch_sum / sent.len() as f64
    );
    println!("messages moved in the whole run: {}", net.transmitted);
}

#[test]
#[ignore = "a report, not a check: prints figures for the benchmark notes"]
fn report_1000_nodes_with_sleeping_links_and_restarts() {
    let started = std::time::Instant::now();
    let r = support::churn(1000, 2025, 5);
    println!(
        "1,000 nodes, {} in the channel, links closing after 20 s quiet, {} restarts: \
         channel {}/{} delivered ({} duplicates shown), direct {}/{}; delivery ratio {:.4}; \
         {} idle closes, {} links woken; {} messages moved ({:.1} s of CPU)",
        r.members,
        r.restarts,
        r.channel_delivered,
        r.channel_expected,
        r.channel_duplicates,
        r.direct_delivered,
        r.direct_expected,
        r.ratio(),
        r.idle_closed,
        r.relinked,
        r.transmitted,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(r.ratio(), 1.0);
}

/// Relay rate with signatures checked, next to the Ed25519 verify rate, measured in turns in
/// the same run (a loaded machine slows both alike): a channel MESSAGE from one of 8 linked
/// neighbours, verified and passed to the other 7.
#[test]
#[ignore = "a report, not a check: prints figures for the benchmark notes"]
fn report_relay_rate_next_to_ed25519() {
    use kith_chat::message::{Body, ChatId, Envelope, Hello, NodeType};
    use kith_chat::router::{NeighbourInfo, NeighbourKind};
    use kith_chat::{ChatConfig, NeighbourId, Router};
    use kith_crypto::Identity;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::Instant;

    let ident = |s: u64| Identity::generate(&mut StdRng::seed_from_u64(s));
    let now = Instant::now();
    let config = ChatConfig {
        rate_per_sec: u32::MAX / 2,
        rate_burst: u32::MAX / 2,
        origin_rate_per_sec: u32::MAX / 2,
        origin_rate_burst: u32::MAX / 2,
        ..ChatConfig::default()
    };
    let mut r = Router::new(ident(1), config, now, [1; 32]).unwrap();
    for i in 1..=8u64 {
        let peer = ident(100 + i);
        r.neighbour_up(
            now,
            NeighbourId(i),
            NeighbourInfo {
                kind: NeighbourKind::Node {
                    agent: peer.agent_id(),
                },
                observed_ip: None,
            },
        );
        let hello = Hello {
            node_id: ChatId::new(peer.node_id()),
            version: None,
            node_type: NodeType::Server,
            challenge: None,
            auth: Default::default(),
            later_revision: false,
        };
        r.handle_input(now, NeighbourId(i), Envelope::new(1, Body::Hello(hello)));
    }
    while r.poll_output().is_some() {}
    let author = ident(9);
    const BATCH: usize = 2_000;
    let mut relay_rates = Vec::new();
    let mut verify_rates = Vec::new();
    for round in 0..5 {
        let batch: Vec<_> = (0..BATCH)
            .map(|i| {
                support::signed_message(
                    &author,
                    &format!("m{round}-{i}"),
                    &[],
                    Some(("lobby", "c0ffee")),
                    "hello, a line of chat of ordinary length",
                    true,
                )
            })
            .collect();
        let key = author.agent_id();
        let started = Instant::now();
        for m in &batch {
            assert!(kith_chat::crypto::verify_message(&key, m).is_some());
        }
        verify_rates.push(BATCH as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        for m in batch {
            r.handle_input(now, NeighbourId(1), support::flooded(Body::Message(m)));
            while r.poll_output().is_some() {}
        }
        relay_rates.push(BATCH as f64 / started.elapsed().as_secs_f64());
    }
    assert_eq!(r.counters().forged + r.counters().cut_off, 0);
    assert_eq!(r.counters().flooded, 5 * BATCH as u64);
    relay_rates.sort_by(f64::total_cmp);
    verify_rates.sort_by(f64::total_cmp);
    println!(
        "relay with signatures checked: {:.0} messages/s per node (median of 5 x {BATCH}; 1 in, 7 out); Ed25519 verify in the same run: {:.0}/s; ratio {:.2}",
        relay_rates[2],
        verify_rates[2],
        relay_rates[2] / verify_rates[2]
    );
}
