//! IPv6 next to IPv4, on this machine's loopback with real TCP: a node listening on `[::]`
//! (dual-stack) names both `127.0.0.1` and `[::1]` in its tickets, and a peer whose IPv4 is
//! broken (its dialer refuses IPv4, as on an IPv6-only network) still links, over IPv6.

mod support;

use kith_node::clock::Clock;
use kith_node::endpoint::directory::BoxFuture;
use kith_node::endpoint::reuse::ReuseTcp;
use kith_node::endpoint::{Conn, Dialer};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use support::{eventually, start_tcp};

/// A dialer on a network without IPv4: IPv4 addresses are unreachable.
struct NoIpv4(ReuseTcp);

impl Dialer for NoIpv4 {
    fn dial<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: Duration,
    ) -> BoxFuture<'a, std::io::Result<Conn>> {
        if matches!(host.parse::<IpAddr>(), Ok(IpAddr::V4(_))) {
            return Box::pin(async {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NetworkUnreachable,
                    "no IPv4 here",
                ))
            });
        }
        self.0.dial(host, port, timeout)
    }
}

#[tokio::test]
async fn a_dual_stack_node_lists_both_families_and_an_ipv6_only_peer_links_over_ipv6() {
    let b = start_tcp("[::]:0", |d| Arc::new(d)).await;
    let a = start_tcp("[::1]:0", |d| Arc::new(NoIpv4(d))).await;
    let port = b.listen.port();

    let (mut ticket, record) = kith_node::ticket::issue(
        b.node.endpoint.own_chad(),
        b.clock.system_now(),
        Duration::from_secs(600),
        false,
        &mut rand::rngs::OsRng,
    );
    b.node
        .store
        .run(move |s| s.meta().insert_ticket(&record))
        .await
        .unwrap();
    kith_node::reach::advertise(&b.node.endpoint, &mut ticket);
    assert_eq!(ticket.chad.host.as_deref(), Some("127.0.0.1"));
    assert!(
        ticket.addrs.contains(&format!("[::1]:{port}")),
        "{:?}",
        ticket.addrs
    );
    // Through the one-line form and back, brackets and all.
    let ticket = kith_node::ticket::Ticket::parse(&ticket.to_line()).unwrap();
    assert!(ticket.addresses().contains(&("::1".to_owned(), port)));

    // A cannot reach 127.0.0.1: the ticket's IPv6 address carries the link.
    let b_agent = b.node.endpoint.agent();
    let record = a.node.endpoint.connect_ticket(ticket).await.unwrap();
    assert_eq!(record.agent, b_agent.to_string());
    let a_agent = a.node.endpoint.agent();
    eventually("both ends count the link", || {
        a.node.endpoint.is_linked(&b_agent) && b.node.endpoint.is_linked(&a_agent)
    })
    .await;
    let view = a.node.endpoint.link_view(&b_agent).unwrap();
    assert_eq!(view.remote, format!("[::1]:{port}"));
    // B sees A at its IPv6 address too, and from A's listening port (port reuse on IPv6).
    let back = b.node.endpoint.link_view(&a_agent).unwrap();
    assert_eq!(back.remote, a.listen.to_string());
    // Once the link stands, A knows where it is seen from: an IPv6 address, observed.
    eventually("A learns its observed IPv6 address", || {
        a.node.endpoint.observed().contains(&a.listen)
    })
    .await;

    a.node.shutdown().await;
    b.node.shutdown().await;
}
