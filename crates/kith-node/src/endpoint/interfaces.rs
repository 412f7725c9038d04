//! This machine's own addresses, for tickets of a node that listens on every interface.
//!
//! A node listening on `0.0.0.0` or `[::]` does not know which of its addresses a peer can
//! reach. Behind a NAT its peers tell it (`observed`); but a host with a global IPv6 address
//! (IPv6 needs no NAT) or a public IPv4 one is reachable at that address as it is, before any
//! peer has seen it. So tickets list the interface addresses that may be reachable from the
//! internet, of the families the listener takes (`[::]` takes both: Linux listeners are
//! dual-stack unless `net.ipv6.bindv6only` says otherwise). LAN addresses are left to mDNS
//! (`crate::nearby`), and link-local ones need a scope a ticket cannot carry.

use super::reuse::is_public;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The addresses a ticket of a node listening on `listen` should list from the interfaces:
/// public ones of the families `listen` takes, IPv4 first, at most `max`. Empty unless
/// `listen` is unspecified (a listener on one address is listed as itself).
pub(super) fn listed(listen: SocketAddr, max: usize) -> Vec<SocketAddr> {
    if !listen.ip().is_unspecified() {
        return Vec::new();
    }
    let ips = match if_addrs::get_if_addrs() {
        Ok(ifs) => ifs.into_iter().map(|i| i.ip()).collect(),
        Err(e) => {
            tracing::debug!("cannot list the interfaces' addresses: {e}");
            Vec::new()
        }
    };
    pick(listen, &ips, max)
}

/// [`listed`] over given interface addresses.
fn pick(listen: SocketAddr, ips: &[IpAddr], max: usize) -> Vec<SocketAddr> {
    let takes = |ip: &IpAddr| match (listen.ip(), ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) => true,
        (IpAddr::V6(_), IpAddr::V6(_)) => true,
        (IpAddr::V6(_), IpAddr::V4(_)) => dual_stack(),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    };
    let mut out: Vec<SocketAddr> = ips
        .iter()
        .filter(|ip| takes(ip) && is_public(**ip))
        .map(|ip| SocketAddr::new(*ip, listen.port()))
        .collect();
    out.sort_by_key(|a| a.is_ipv6());
    out.dedup();
    out.truncate(max);
    out
}

/// True when a `[::]` listener also takes IPv4 (the kernel's default for new sockets).
fn dual_stack() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
        .map(|s| s.trim() == "0")
        .unwrap_or(true)
}

/// The IPv6 loopback address on `port`: what a dual-stack `[::]` listener is reachable at on
/// this machine next to `127.0.0.1`.
pub(super) fn loopback_v6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn public_addresses_of_the_listeners_families_are_listed_ipv4_first() {
        let all = ips(&[
            "2001:db8::5",
            "127.0.0.1",
            "::1",
            "192.168.1.5",
            "fe80::1",
            "fd00::2",
            "198.51.100.7",
        ]);
        let v4: SocketAddr = "0.0.0.0:7420".parse().unwrap();
        assert_eq!(pick(v4, &all, 8), ["198.51.100.7:7420".parse().unwrap()]);
        let both: SocketAddr = "[::]:7420".parse().unwrap();
        let listed = pick(both, &all, 8);
        assert_eq!(listed.last(), Some(&"[2001:db8::5]:7420".parse().unwrap()));
        if dual_stack() {
            assert_eq!(listed[0], "198.51.100.7:7420".parse().unwrap());
        }
        assert_eq!(pick(both, &all, 1).len(), 1, "bounded");
        let one: SocketAddr = "127.0.0.1:7420".parse().unwrap();
        assert!(listed.len() <= 2 && super::listed(one, 8).is_empty());
    }
}
