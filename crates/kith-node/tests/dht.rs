//! The mainline DHT on a private test network of three nodes on loopback (mainline's
//! `Testnet`): a node publishes its addresses under its agent key and another finds them; a
//! forged record (someone else's signature) is never returned, and one a lying DHT node could
//! hand us (another key's signature, another key, no salt, bad addresses) is refused and
//! counted, as is a genuinely signed record naming unusable addresses; a flood of lookups is held to
//! the bounds.

use kith_crypto::identity::AgentId;
use kith_crypto::Identity;
use kith_node::dht::{record_value, signable, Dht, DhtSettings, InvalidRecord, MAX_ADDRS, SALT};
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
    let forged = signed_by(
        &forger,
        c,
        &record_value(&["198.51.100.66:7420".parse().unwrap()]),
    );
    assert!(writer(&net).put_mutable(forged, None).await.is_err());
    assert_eq!(a.lookup(c).await, None);
    assert_eq!(
        a.counters().dht_records_invalid.get(),
        0,
        "nothing was found"
    );
}

/// A BEP 44 item under `key` with kith's salt, signed by `signer` (who may not own `key`).
fn signed_by(signer: &Identity, key: AgentId, value: &[u8]) -> mainline::MutableItem {
    mainline::MutableItem::new_signed_unchecked(
        *key.as_bytes(),
        signer.sign_agent(&signable(1, value)),
        value,
        1,
        Some(SALT),
    )
}

fn writer(net: &mainline::Testnet) -> mainline::async_dht::AsyncDht {
    mainline::Dht::builder()
        .bootstrap(&net.bootstrap)
        .build()
        .unwrap()
        .as_async()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_record_with_bad_addresses_is_refused_and_counted() {
    let net = testnet();
    let (a, _) = node(&net.bootstrap, false);
    // B signs its record properly, but it names unusable addresses: the DHT stores it (the
    // signature is good), and the node refuses what it names.
    let b = Identity::generate(&mut rand::rngs::OsRng);
    let bad = br#"{"addrs":["0.0.0.0:7420","198.51.100.7:0"]}"#;
    writer(&net)
        .put_mutable(signed_by(&b, b.agent_id(), bad), None)
        .await
        .unwrap();
    assert_eq!(a.lookup(b.agent_id()).await, None);
    assert_eq!(a.counters().dht_records_invalid.get(), 1);
    assert_eq!(a.counters().dht_found.get(), 0);
}

#[test]
fn a_forged_record_handed_to_the_node_is_refused_and_counted() {
    // What a lying DHT node could return, checked by the node itself.
    let (a, _) = node(&[], false);
    let b = Identity::generate(&mut rand::rngs::OsRng);
    let c = Identity::generate(&mut rand::rngs::OsRng).agent_id();
    let value = record_value(&["198.51.100.66:7420".parse().unwrap()]);
    // Under C's key, signed by B.
    assert_eq!(
        a.accept(c, &signed_by(&b, c, &value)),
        Err(InvalidRecord::Signature)
    );
    // B's genuine record, returned for a lookup of C.
    assert_eq!(
        a.accept(c, &signed_by(&b, b.agent_id(), &value)),
        Err(InvalidRecord::OtherKey)
    );
    // B's key and signature, without kith's salt.
    let unsalted = mainline::MutableItem::new_signed_unchecked(
        *b.agent_id().as_bytes(),
        b.sign_agent(&signable(1, &value)),
        &value,
        1,
        None,
    );
    assert_eq!(a.accept(b.agent_id(), &unsalted), Err(InvalidRecord::Salt));
    // Signed by B but naming more addresses than a record may.
    let many: Vec<SocketAddr> = (1..=MAX_ADDRS as u16 + 1)
        .map(|p| SocketAddr::from(([198, 51, 100, 7], 7000 + p)))
        .collect();
    let many = serde_json::to_vec(&serde_json::json!({ "addrs": many })).unwrap();
    assert_eq!(
        a.accept(b.agent_id(), &signed_by(&b, b.agent_id(), &many)),
        Err(InvalidRecord::Value)
    );
    assert_eq!(a.counters().dht_records_invalid.get(), 4);
    assert_eq!(a.counters().dht_found.get(), 0);
    // The same record, well signed and well formed, is accepted.
    assert_eq!(
        a.accept(b.agent_id(), &signed_by(&b, b.agent_id(), &value)),
        Ok(vec!["198.51.100.66:7420".parse().unwrap()])
    );
    assert_eq!(a.counters().dht_found.get(), 1);
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
