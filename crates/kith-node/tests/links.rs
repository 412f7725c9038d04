//! The endpoint in process: links that stay virtually open, replayed handshakes, version
//! floods and announced addresses, on an in-memory network with tokio's clock paused (time
//! moves only when every task waits, so idle timeouts expire without waiting).

mod support;

use kith_node::endpoint::{envelope, MemoryNet};
use kith_node::exchange::HAVE_COMMAND;
use std::time::Duration;
use support::{eventually, RawPeer, TestNode};

fn short_idle(limits: &mut kith_proto::Limits) {
    limits.idle_timeout_ms = 1_000;
}

#[tokio::test(start_paused = true)]
async fn quiet_links_close_for_idleness_and_the_next_send_of_any_protocol_reopens_them() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, short_idle).await;
    let b = TestNode::start(&net, short_idle).await;
    b.link_to(&a).await;

    // Quiet for longer than the idle timeout: A (the responder) closes the link in order.
    tokio::time::sleep(Duration::from_secs(5)).await;
    eventually("the idle link is closed on both sides", || {
        !a.node.endpoint.is_linked(&b.agent) && !b.node.endpoint.is_linked(&a.agent)
    })
    .await;
    assert_eq!(a.counter("links_idle_closed"), 1);

    // Nobody runs `kith connect`: the next envelope, of any protocol, dials again.
    let notice = |n: u8| envelope(HAVE_COMMAND, vec![n; 32]);
    b.node.endpoint.send(a.agent, notice(1)).await.unwrap();
    eventually("A hears B's notice", || {
        a.counter("retention_notices_received") == 1
    })
    .await;

    // And the other way, from the node that only ever accepted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    eventually("closed again", || !a.node.endpoint.is_linked(&b.agent)).await;
    a.node.endpoint.send(b.agent, notice(2)).await.unwrap();
    eventually("B hears A's notice", || {
        b.counter("retention_notices_received") == 1
    })
    .await;
    assert_eq!(a.counter("links_idle_closed"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_version_envelopes_costs_one_counter_each() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, |_| {}).await;
    let mut raw = RawPeer::known_to(&a, net.host()).await;
    let version = |n: u32| {
        let port = 1 + n % 60_000;
        envelope(
            "version",
            format!(r#"{{"protocols":[1],"announce":"203.0.113.9:{port}"}}"#).into_bytes(),
        )
    };
    raw.send(&version(0)).await;
    // 100,000 more, each naming another address.
    for batch in 0..100u32 {
        raw.send_many((0..1_000u32).map(|i| version(1 + batch * 1_000 + i)))
            .await;
    }
    let agent = raw.agent();
    eventually("the link is up", || a.node.endpoint.is_linked(&agent)).await;
    drop(raw);
    eventually("the link is down", || !a.node.endpoint.is_linked(&agent)).await;
    eventually("counted", || a.counter("versions_ignored") == 100_000).await;
    // One announcement was looked at (and could not be proven: nobody listens there); no
    // task was started for the other 100,000.
    assert_eq!(a.counter("announcements_unproven"), 1);
    assert_eq!(a.counter("peer_addresses_updated"), 0);
    assert!(a.node.tracker.len() < 20, "{} tasks", a.node.tracker.len());
}

#[tokio::test(start_paused = true)]
async fn an_announced_address_counts_only_once_its_host_proves_the_key() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, |_| {}).await;
    let b = TestNode::start(&net, |_| {}).await;
    b.link_to(&a).await;
    let peer_addr = |node: &TestNode, agent: kith_crypto::identity::AgentId| {
        let node = node.node.clone();
        async move {
            let name = agent.to_string();
            let record = node
                .store
                .run(move |s| s.meta().get_peer(&name))
                .await
                .unwrap()
                .unwrap();
            (record.host.unwrap(), record.port.unwrap())
        }
    };
    // B announced where it listens, on the host its link comes from: recorded as it was.
    assert_eq!(
        peer_addr(&a, b.agent).await,
        (b.addr.ip().to_string(), b.addr.port())
    );

    // A raw peer on host H announces another host: never recorded.
    let host = net.host();
    let mut raw = RawPeer::known_to(&a, host).await;
    raw.send(&envelope(
        "version",
        br#"{"protocols":[1],"announce":"10.9.9.9:7420"}"#.to_vec(),
    ))
    .await;
    eventually("the claim is refused", || {
        a.counter("announcements_unproven") == 1
    })
    .await;
    assert_eq!(peer_addr(&a, raw.agent()).await, (host.to_string(), 9));
}
