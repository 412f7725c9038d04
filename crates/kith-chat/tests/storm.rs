//! Storms on one chat port must not partition the honest network (issue 10, item 5),
//! performed as a deterministic simulation on a virtual clock.
//!
//! H (node 0) is linked to N1 and N2, which both reach N3; everyone is in `lobby`. 40
//! clients on H's chat port flood signed channel messages, 100 a second each, for 3 s.
//! Before: H forwarded everything, N1 and N2 counted H as junk and cut it off within the
//! first second: 119.4 link-seconds down out of 120 in the next minute (no redial). Now: H
//! forwards what its clients' rates allow, N1 and N2 charge relayed traffic to its authors
//! and never to H: 0 link-seconds down, and the honest users keep talking through the storm.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use kith_chat::message::{Body, Envelope};
use kith_crypto::Identity;
use rand::rngs::StdRng;
use rand::SeedableRng;
use support::{signed_message, sim_config, Net};

const CLIENTS: usize = 40;
const PER_SECOND: u32 = 100;
const STORM: Duration = Duration::from_secs(3);

fn ident(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + n))
}

/// H - N1, H - N2, N1 - N3, N2 - N3; all four in `lobby`. Returns the lobby's id.
fn diamond() -> (Net, String) {
    let mut net = Net::new(4, 5, sim_config());
    net.link(0, 1);
    net.link(0, 2);
    net.link(1, 3);
    net.link(2, 3);
    net.run_for(Duration::from_secs(2));
    let cid = net.act(3, |r, now| r.join(now, "lobby", false)).unwrap();
    net.run_for(Duration::from_secs(1));
    for i in 0..3 {
        net.act(i, |r, now| r.join(now, "lobby", false)).unwrap();
    }
    net.run_for(Duration::from_secs(1));
    (net, cid)
}

/// Link-seconds the honest links of H were down from `from` to the end of the run.
fn link_seconds_down(net: &Net, end: std::time::Instant) -> f64 {
    [(0usize, 1usize), (0, 2)]
        .iter()
        .map(|&(a, b)| {
            net.cut_offs
                .iter()
                .filter(|(x, y, _)| (*x.min(y), *x.max(y)) == (a, b))
                .map(|(_, _, at)| (end - *at).as_secs_f64())
                .fold(0.0, f64::max)
        })
        .sum()
}

/// Every client sends `PER_SECOND` channel messages a second for `STORM`, signed by `sign`
/// (its own key, or another to forge); returns how many were sent.
fn storm(net: &mut Net, clients: &[(usize, Identity)], cid: &str, forge: bool) -> usize {
    let tick = Duration::from_millis(10);
    let ticks = STORM.as_millis() / tick.as_millis();
    let every = (1000 / PER_SECOND) as u128 / tick.as_millis();
    let mut sent = 0;
    for t in 0..ticks {
        if t % every.max(1) == 0 {
            for (k, (e, key)) in clients.iter().enumerate() {
                sent += 1;
                let mut m = signed_message(
                    key,
                    &format!("s{k}-{t}"),
                    &[],
                    Some(("lobby", cid)),
                    "storm",
                    true,
                );
                if forge {
                    m.message[0] ^= 1;
                }
                let mut env = Envelope::new(32, Body::Message(m));
                env.flood = true;
                net.inject(*e, env);
            }
        }
        net.run_for(tick);
    }
    sent
}

#[test]
fn forty_flooding_clients_do_not_cut_the_honest_links() {
    let (mut net, cid) = diamond();
    let clients: Vec<(usize, Identity)> = (0..CLIENTS)
        .map(|k| {
            let key = ident(1000 + k as u64);
            (net.proven_client(0, ip(k as u32 + 1), &key), key)
        })
        .collect();
    let start = net.now;
    // Honest users talk during the storm, both ways across it.
    let before = net
        .act(3, |r, now| {
            r.say(now, "lobby", "from N3 before", Vec::new(), "t")
        })
        .unwrap();
    let sent = storm(&mut net, &clients, &cid, false);
    let during = net
        .act(3, |r, now| {
            r.say(now, "lobby", "from N3 during", Vec::new(), "t")
        })
        .unwrap();
    let from_h = net
        .act(0, |r, now| r.say(now, "lobby", "from H", Vec::new(), "t"))
        .unwrap();
    let h = net.ids[0];
    let dm = net
        .act(3, |r, now| {
            r.send_direct(now, &[h], "psst", Vec::new(), "t")
        })
        .unwrap();
    net.run_for(Duration::from_secs(60) - (net.now - start));
    let down = link_seconds_down(&net, net.now);
    assert_eq!(down, 0.0, "cut-offs: {:?}", net.cut_offs);
    assert!(net.link_up(0, 1) && net.link_up(0, 2));
    for (node, msg) in [(0, &before), (0, &during), (3, &from_h), (0, &dm)] {
        assert_eq!(net.deliveries(node, msg), 1, "node {node} got {msg}");
    }
    for n in 1..4 {
        assert_eq!(
            net.routers[n].counters().cut_off,
            0,
            "node {n} cut nobody off"
        );
    }
    let relayed = net.routers[1].counters().flooded + net.routers[2].counters().flooded;
    let limited = net.routers[0].counters().rate_limited;
    println!(
        "FIGURE storm: honest link-seconds down in the next 60 s 119.4 -> {down}; storm messages sent {sent}, refused by H's rates {limited}, flooded by N1+N2 {relayed}"
    );
}

#[test]
fn clients_per_address_are_capped_and_forged_floods_stop_at_the_port() {
    let (mut net, cid) = diamond();
    // 40 clients from one address: only `max_clients_per_address` get in.
    let one_address: Vec<usize> = (0..CLIENTS).map(|_| net.attach_client(0, ip(1))).collect();
    let crowded = one_address
        .iter()
        .filter(|e| net.endpoints[**e].cut_at.is_some())
        .count();
    assert_eq!(crowded, CLIENTS - sim_config().max_clients_per_address);
    assert_eq!(net.routers[0].counters().clients_refused, crowded as u64);
    for e in one_address {
        net.detach(e);
    }
    // Forged messages (bad signatures) from proven clients: verified at H, never forwarded,
    // and the clients that send them are cut off as junk.
    let clients: Vec<(usize, Identity)> = (0..CLIENTS)
        .map(|k| {
            let key = ident(2000 + k as u64);
            (net.proven_client(0, ip(100 + k as u32), &key), key)
        })
        .collect();
    storm(&mut net, &clients, &cid, true);
    net.run_for(Duration::from_secs(5));
    let forged_seen_by_neighbours =
        net.routers[1].counters().forged + net.routers[2].counters().forged;
    assert_eq!(forged_seen_by_neighbours, 0);
    assert!(net.routers[0].counters().forged > 0);
    let cut = clients
        .iter()
        .filter(|(e, _)| net.endpoints[*e].cut_at.is_some())
        .count();
    assert_eq!(cut, CLIENTS);
    assert!(net.link_up(0, 1) && net.link_up(0, 2));
    println!(
        "FIGURE storm: clients admitted from one address 40 -> {}; forged messages that left H 0",
        CLIENTS - crowded
    );
}

#[test]
fn forgeries_in_an_honest_authors_name_do_not_spend_its_rate() {
    let (mut net, cid) = diamond();
    // A rogue linked node sends H many forged messages in N3's name (bad signatures); N3's
    // genuine messages, which reach H relayed by N1 and N2, still pass H's rate for N3.
    let rogue = ident(90);
    let e = net.attach(
        0,
        kith_chat::router::NeighbourInfo {
            kind: kith_chat::router::NeighbourKind::Node {
                agent: rogue.agent_id(),
            },
            observed_ip: Some(ip(250)),
        },
        false,
    );
    net.inject(
        e,
        support::hello(
            kith_chat::message::ChatId::new(rogue.node_id()),
            None,
            Default::default(),
        ),
    );
    let n3 = net.identities[3].clone();
    for k in 0..90 {
        let mut m = signed_message(&n3, &format!("f{k}"), &[], Some(("lobby", &cid)), "x", true);
        m.message[0] ^= 1;
        let mut env = Envelope::new(32, Body::Message(m));
        env.flood = true;
        net.inject(e, env);
    }
    assert_eq!(net.routers[0].counters().forged, 90);
    let said: Vec<String> = (0..50)
        .map(|k| {
            net.act(3, |r, now| {
                r.say(now, "lobby", &format!("real {k}"), Vec::new(), "t")
            })
            .unwrap()
        })
        .collect();
    net.run_for(Duration::from_secs(2));
    for m in &said {
        assert_eq!(net.deliveries(0, m), 1, "{m}");
    }
    assert_eq!(net.routers[0].counters().rate_limited, 0);
}
