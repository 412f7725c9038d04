//! The mainline DHT on a private test network of three nodes on loopback (mainline's
//! `Testnet`): a node publishes its addresses under its agent key and another finds them; a
//! forged record (someone else's signature) is never returned; a flood of lookups is held to
//! the bounds.

use kith_crypto::Identity;
use kith_node::dht::{Dht, DhtSettings, MAX_ADDRS, SALT};
use std::net::SocketAddr;

fn node(bootstrap: &[String], publish: bool) -> (Dht, Identity) {
    let identity = Identity::generate(&mut rand::rngs::OsRng);
    let settings = DhtSettings {
        lookup: true,
        publish,
        server: false,
        bootstrap: bootstrap.to_vec(),
        port: 0,
    };
    (Dht::new(settings, identity.clone()), identity)
}

fn testnet() -> mainline::Testnet {
    mainline::Testnet::builder(3)
        .bind_address(std::net::Ipv4Addr::LOCALHOST)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_found_at_the_addresses_it_published_and_forgeries_are_not() {
    let net = testnet();
    let (b, b_id) = node(&net.bootstrap, true);
    let (a, _) = node(&net.bootstrap, false);
    let addrs: Vec<SocketAddr> = vec![
        "203.0.113.21:7420".parse().unwrap(),
        "[2001:db8::21]:7420".parse().unwrap(),
    ];
    assert!(b.publish(&addrs).await);
    assert_eq!(a.lookup(b_id.agent_id()).await, Some(addrs));
    assert_eq!(a.counters().dht_found.get(), 1);

    // A record for C's key signed by someone else: no DHT node stores it, nobody finds it.
    let c = Identity::generate(&mut rand::rngs::OsRng).agent_id();
    let forger = Identity::generate(&mut rand::rngs::OsRng);
    let value = kith_node::dht::record_value(&["198.51.100.66:7420".parse().unwrap()]);
    let signable = {
        let mut out = format!("4:salt{}:", SALT.len()).into_bytes();
        out.extend_from_slice(SALT);
        out.extend_from_slice(format!("3:seqi1e1:v{}:", value.len()).as_bytes());
        out.extend_from_slice(&value);
        out
    };
    let forged = mainline::MutableItem::new_signed_unchecked(
        *c.as_bytes(),
        forger.sign_agent(&signable),
        &value,
        1,
        Some(SALT),
    );
    let writer = mainline::Dht::builder()
        .bootstrap(&net.bootstrap)
        .build()
        .unwrap()
        .as_async();
    assert!(writer.put_mutable(forged, None).await.is_err());
    assert_eq!(a.lookup(c).await, None);
    assert_eq!(MAX_ADDRS, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_lookups_is_held_to_the_bounds() {
    let net = testnet();
    let (a, _) = node(&net.bootstrap, false);
    let wanted = Identity::generate(&mut rand::rngs::OsRng).agent_id();
    // The same peer again and again: one lookup.
    for _ in 0..20 {
        let _ = a.lookup(wanted).await;
    }
    assert_eq!(a.counters().dht_lookups.get(), 1);
    assert_eq!(a.counters().dht_lookups_limited.get(), 19);
    // Many peers: at most the per-minute share.
    for _ in 0..30 {
        let _ = a
            .lookup(Identity::generate(&mut rand::rngs::OsRng).agent_id())
            .await;
    }
    assert_eq!(
        a.counters().dht_lookups.get(),
        kith_node::dht::LOOKUPS_PER_MINUTE as u64
    );
}
