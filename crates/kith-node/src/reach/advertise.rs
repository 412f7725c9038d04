//! What a ticket tells about reaching us: our other addresses, the peers that broker for us,
//! and a warning when that is not enough to be reached from the internet.

use crate::endpoint::registry::Side;
use crate::endpoint::reuse::is_public;
use crate::endpoint::{Endpoint, Via};
use crate::ticket::{Ticket, MAX_VIA};
use kith_crypto::identity::AgentId;
use std::net::{IpAddr, SocketAddr};

/// Fills `ticket.addrs` (observed addresses, the listening one) and `ticket.via` (linked
/// peers that can broker a punch to us, [`brokers`]), and returns the warnings for the user.
pub fn advertise(endpoint: &Endpoint, ticket: &mut Ticket) -> Vec<String> {
    ticket.addrs = endpoint
        .other_addresses()
        .iter()
        .map(SocketAddr::to_string)
        .collect();
    ticket.via = brokers(endpoint, true)
        .iter()
        .map(ToString::to_string)
        .collect();
    warnings(endpoint, ticket)
}

/// The linked peers that can broker a punch to us, best first, at most [`MAX_VIA`]: links we
/// opened (so we reached them, and keep them up) with a public address before any other;
/// without `private`, only those.
pub(crate) fn brokers(endpoint: &Endpoint, private: bool) -> Vec<AgentId> {
    let mut brokers: Vec<(bool, AgentId)> = endpoint
        .linked()
        .into_iter()
        .filter_map(|peer| {
            let view = endpoint.link_view(&peer)?;
            if view.via == Via::Relayed || view.side != Side::Initiator {
                return None;
            }
            let public = view
                .remote
                .parse::<SocketAddr>()
                .is_ok_and(|a| is_public(a.ip()));
            (public || private).then_some((public, peer))
        })
        .collect();
    brokers.sort_by_key(|(public, _)| !*public);
    brokers
        .into_iter()
        .take(MAX_VIA)
        .map(|(_, peer)| peer)
        .collect()
}

fn warnings(endpoint: &Endpoint, ticket: &Ticket) -> Vec<String> {
    let mut out = Vec::new();
    let chad: Option<IpAddr> = ticket.chad.host.as_deref().and_then(|h| h.parse().ok());
    let all: Vec<IpAddr> = chad
        .into_iter()
        .chain(
            ticket
                .addrs
                .iter()
                .filter_map(|a| a.parse::<SocketAddr>().ok().map(|a| a.ip())),
        )
        .collect();
    if !all.iter().any(|ip| is_public(*ip)) {
        out.push(format!(
            "no address in this ticket can be reached from the internet ({}): it works from \
             this machine or its LAN. A node behind a NAT learns its public address from its \
             peers: link to a node with a public address first (`kith connect` with its \
             ticket), or give this node's public address with `kith up --announce HOST:PORT`",
            ticket
                .addresses()
                .iter()
                .map(|(h, p)| crate::ticket::join_host_port(h, *p))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return out;
    }
    let listen = endpoint.local_addr();
    let observed = endpoint.observed();
    // Behind a NAT: the public address peers see is not one of this machine's, or its port
    // is not the listening one. A node listening on `0.0.0.0` behind a port-keeping NAT
    // shows only the first, so the address itself is asked.
    let natted = observed
        .iter()
        .find(|o| is_public(o.ip()))
        .is_some_and(|o| listen.is_some_and(|l| l.port() != o.port()) || !is_local(o.ip()));
    if natted && ticket.via.is_empty() {
        out.push(
            "this node is behind a NAT and no linked peer can broker a hole punch to it: a \
             node outside may be unable to connect. Link to a node with a public address \
             first (`kith connect` with its ticket), then issue the ticket again"
                .to_owned(),
        );
    }
    out
}

/// True when `ip` is an address of this machine (a socket can be bound to it).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machines_addresses_are_local() {
        assert!(is_local(IpAddr::from([127, 0, 0, 1])));
        // TEST-NET-3 is nobody's address.
        assert!(!is_local(IpAddr::from([203, 0, 113, 77])));
    }
}
