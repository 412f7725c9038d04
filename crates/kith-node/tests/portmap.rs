//! The port mapping asked of the home router, against a fake gateway in this process (a UDP
//! socket on loopback that answers as a router would): one that speaks only NAT-PMP and one
//! that speaks PCP. The node gets its mapping without waiting for it, lists the public
//! address in its tickets (and names it, having observed no other), renews it at half its
//! lifetime, ignores a datagram that is no answer (counted), and deletes the mapping when it
//! stops. The same against miniupnpd behind a real NAT: `crates/kith/tests/reach_lab.rs`.

mod support;

use kith_node::clock::Clock;
use kith_node::reach::PortMapSettings;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{eventually, start_tcp};
use tokio::net::UdpSocket;

const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// What the fake gateway was asked: (protocol version, requested lifetime).
type Asked = Arc<Mutex<Vec<(u8, u32)>>>;

/// A gateway granting `lifetime` seconds on the internal port + 1; PCP only if `pcp`.
async fn fake_gateway(pcp: bool, lifetime: u32) -> (SocketAddrV4, Asked) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let SocketAddr::V4(addr) = socket.local_addr().unwrap() else {
        unreachable!()
    };
    let asked: Asked = Arc::default();
    let log = Arc::clone(&asked);
    tokio::spawn(async move {
        let mut buf = [0u8; 1100];
        let mut first = true;
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let d = &buf[..n];
            if first {
                // Something that answers nothing, first: ignored and counted.
                first = false;
                socket.send_to(b"\x02\x81junk", from).await.unwrap();
            }
            let answer: Vec<u8> = match (d[0], d[1]) {
                (2, 1) if pcp => {
                    log.lock()
                        .unwrap()
                        .push((2, u32::from_be_bytes(d[4..8].try_into().unwrap())));
                    let mut a = d[..60].to_vec();
                    a[1] = 0x81;
                    a[3] = 0;
                    a[4..8].copy_from_slice(&lifetime.to_be_bytes());
                    a[8..24].fill(0);
                    let internal = u16::from_be_bytes([d[40], d[41]]);
                    a[42..44].copy_from_slice(&(internal + 1).to_be_bytes());
                    a[44..60].copy_from_slice(&PUBLIC.to_ipv6_mapped().octets());
                    a
                }
                // NAT-PMP only: "unsupported version", in NAT-PMP's own form.
                (2, _) => vec![0, 0x81, 0, 1, 0, 0, 0, 0],
                (0, 0) => {
                    let mut a = vec![0, 128, 0, 0, 0, 0, 0, 1];
                    a.extend_from_slice(&PUBLIC.octets());
                    a
                }
                (0, 2) => {
                    let asked_for = u32::from_be_bytes(d[8..12].try_into().unwrap());
                    log.lock().unwrap().push((0, asked_for));
                    let internal = u16::from_be_bytes([d[4], d[5]]);
                    let mut a = vec![0, 130, 0, 0, 0, 0, 0, 1];
                    a.extend_from_slice(&internal.to_be_bytes());
                    a.extend_from_slice(&(internal + 1).to_be_bytes());
                    a.extend_from_slice(&lifetime.to_be_bytes());
                    a
                }
                _ => continue,
            };
            let _ = socket.send_to(&answer, from).await;
        }
    });
    (addr, asked)
}

async fn maps_renews_and_deletes(pcp: bool) {
    let (gateway, asked) = fake_gateway(pcp, 2).await;
    let b = start_tcp("0.0.0.0:0", |d| Arc::new(d)).await;
    let started = Instant::now();
    b.node.portmap.spawn(
        b.node.endpoint.clone(),
        PortMapSettings {
            gateway: Some(gateway),
            renew_floor: Duration::ZERO,
            ..PortMapSettings::default()
        },
        &b.node.tracker,
        b.node.cancel.clone(),
    );
    let external = SocketAddr::new(PUBLIC.into(), b.listen.port() + 1);
    eventually("the gateway maps the port", || {
        b.node.endpoint.mapped() == Some(external)
    })
    .await;
    eprintln!("mapped in {:?} (pcp: {pcp})", started.elapsed());

    let (mut ticket, _) = kith_node::ticket::issue(
        b.node.endpoint.own_chad(),
        b.clock.system_now(),
        Duration::from_secs(600),
        false,
        &mut rand::rngs::OsRng,
    );
    kith_node::reach::advertise(&b.node.endpoint, &mut ticket);
    // No peer observed a public address: the mapping is the ticket's address.
    assert_eq!(ticket.chad.host.as_deref(), Some("203.0.113.1"));
    assert_eq!(ticket.chad.port, Some(external.port()));

    // A 2 s lifetime is renewed after 1 s.
    eventually("the mapping is renewed", || {
        b.node.counters()["port_mappings_renewed"] >= 1
    })
    .await;
    let counters = b.node.counters();
    assert_eq!(counters["port_mappings_granted"], 1);
    assert_eq!(counters["port_mapping_answers_invalid"], 1);

    b.node.shutdown().await;
    let asked = asked.lock().unwrap().clone();
    let version = if pcp { 2 } else { 0 };
    assert!(asked.len() >= 3, "{asked:?}");
    assert!(asked[..asked.len() - 1]
        .iter()
        .all(|a| *a == (version, 7200)));
    assert_eq!(asked.last(), Some(&(version, 0)), "deleted on shutdown");
    assert_eq!(b.node.endpoint.mapped(), None);
}

#[tokio::test]
async fn a_nat_pmp_gateway_maps_the_listening_port_which_is_renewed_and_deleted() {
    maps_renews_and_deletes(false).await;
}

#[tokio::test]
async fn a_pcp_gateway_maps_the_listening_port_which_is_renewed_and_deleted() {
    maps_renews_and_deletes(true).await;
}
