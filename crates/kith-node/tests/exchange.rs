//! File exchange, sharing and retention against a linked peer that misbehaves (someone you
//! gave a ticket, or a fake site you connected to), in process.

mod support;

use kith_node::endpoint::{envelope, MemoryNet};
use kith_node::exchange::HAVE_COMMAND;
use kith_proto::files::offer::{Offer, OFFER_COMMAND};
use kith_store::ContentHash;
use std::time::Duration;
use support::{eventually, RawPeer, TestNode};

/// Stores `len` pseudo-random bytes on `node` as a file; returns its address.
async fn put(node: &TestNode, len: usize, seed: u8) -> ContentHash {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect();
    node.put_bytes(bytes, None).await
}

fn offer(hash: ContentHash, size: u64) -> kith_proto::wire::Envelope {
    let offer = Offer { hash, size };
    envelope(OFFER_COMMAND, offer.encode())
}

async fn holds(node: &TestNode, hash: ContentHash) -> bool {
    node.node
        .store
        .run(move |s| s.get(&hash))
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_serves_more_than_it_offered_gets_nothing_stored_as_a_replica() {
    let net = MemoryNet::new();
    let victim = TestNode::start(&net, |_| {}).await;
    let liar = TestNode::start(&net, |_| {}).await;
    liar.link_to(&victim).await;
    let hash = put(&liar, 3_500_000, 1).await;
    // It offers 3.5 MB as 10 bytes: the offered size is the fetch's byte budget.
    liar.node
        .endpoint
        .send(victim.agent, offer(hash, 10))
        .await
        .unwrap();
    eventually("the replication gives up", || {
        victim.counter("replications_failed") == 1
    })
    .await;
    assert_eq!(victim.counter("replications_completed"), 0);
    assert!(!holds(&victim, hash).await);
    assert_eq!(victim.node.sharing.replica_bytes().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn floods_of_have_and_offer_notices_stay_within_their_bounds() {
    let net = MemoryNet::new();
    let victim = TestNode::start(&net, |_| {}).await;
    let mut raw = RawPeer::known_to(&victim, net.host()).await;
    let n = 100_000u32;
    let hash = |i: u32| {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&i.to_be_bytes());
        ContentHash(h)
    };
    for batch in 0..100 {
        raw.send_many(
            (0..n / 100).map(|i| envelope(HAVE_COMMAND, hash(batch * 1_000 + i).0.to_vec())),
        )
        .await;
        raw.send_many((0..n / 100).map(|i| offer(hash(batch * 1_000 + i), 1_000)))
            .await;
    }
    eventually("every notice and offer was looked at", || {
        victim.counter("retention_notices_received") == u64::from(n)
            && victim.counter("offers_received") == u64::from(n)
    })
    .await;
    // None of the files is ours: every notice was refused or dropped, none recorded.
    assert_eq!(victim.counter("retention_placements_recorded"), 0);
    assert_eq!(
        victim.counter("retention_notices_refused") + victim.counter("retention_notices_dropped"),
        u64::from(n)
    );
    // One peer's share of the replication queue, and no more.
    let share =
        kith_node::sharing::queue::per_peer_share(victim.node_limits.max_pending_replications);
    assert!(
        victim.node.sharing.queued() <= share,
        "{}",
        victim.node.sharing.queued()
    );
    assert!(victim.counter("offers_dropped_queue_full") >= u64::from(n) - share as u64 - 1);
    assert!(
        victim.node.tracker.len() < 20,
        "{} tasks",
        victim.node.tracker.len()
    );
}

#[tokio::test(start_paused = true)]
async fn envelopes_for_sessions_that_do_not_exist_are_dropped_and_counted() {
    let net = MemoryNet::new();
    let victim = TestNode::start(&net, |_| {}).await;
    let mut raw = RawPeer::known_to(&victim, net.host()).await;
    let line = |text: &str| {
        let mut data = vec![kith_proto::files::binary::KIND_LINE];
        data.extend_from_slice(text.as_bytes());
        data
    };
    // Answers for sessions the victim never opened, and a session that starts mid-way.
    let mut junk = Vec::new();
    for _ in 0..500 {
        junk.push(envelope("ciyam-r", line("(okay)")));
        junk.push(envelope("ciyam", line("get 00")));
    }
    raw.send_many(junk).await;
    eventually("all dropped", || {
        victim.counter("ciyam_envelopes_dropped") == 1_000
    })
    .await;
    assert_eq!(victim.counter("exchange_sessions_served"), 0);

    // The node still serves an honest peer.
    let honest = TestNode::start(&net, |_| {}).await;
    honest.link_to(&victim).await;
    let hash = put(&victim, 2_500_000, 3).await;
    let report = honest
        .node
        .exchange
        .fetch(hash, Some(victim.agent))
        .await
        .unwrap();
    assert_eq!(report.size, 2_500_000);
}

#[tokio::test(start_paused = true)]
async fn a_peer_flooding_offers_it_never_serves_does_not_starve_an_honest_sharer() {
    let net = MemoryNet::new();
    let short_sessions = |l: &mut kith_proto::Limits| l.ciyam_request_timeout_ms = 10_000;
    let victim = TestNode::start(&net, short_sessions).await;
    let honest = TestNode::start(&net, short_sessions).await;
    honest.link_to(&victim).await;
    let mut flooder = RawPeer::known_to(&victim, net.host()).await;
    let started = tokio::time::Instant::now();
    let flood = tokio::spawn(async move {
        let mut next = 0u32;
        loop {
            let offers = (0..300).map(|_| {
                next += 1;
                let mut h = [0xee; 32];
                h[..4].copy_from_slice(&next.to_be_bytes());
                offer(ContentHash(h), 1_000)
            });
            flooder.send_many(offers).await;
            // It never answers a session: each fetch from it waits for its deadline.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let shared = put(&honest, 1_500_000, 9).await;
    honest.node.sharing.share(shared).await.unwrap();
    eventually("the honest share is replicated", || {
        victim.counter("replications_completed") == 1
    })
    .await;
    let took = started.elapsed();
    flood.abort();
    assert!(holds(&victim, shared).await);
    // Before the fair queue, the honest file never came in 90 s of this flood. Now it waits
    // for at most the flooder's one fetch in progress.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    println!("honest share replicated after {took:?} of flooding");
}
