//! TCP with address and port reuse: outgoing links leave from the listening port.
//!
//! A node behind a NAT learns its public address from what its peers observe (`version`'s
//! `observed`). That address is only worth handing out, and only punchable, if it is the
//! NAT's mapping of the *listening* port: so the listener and every outgoing socket set
//! `SO_REUSEADDR` and `SO_REUSEPORT` and the dialler binds the listening address before it
//! connects (as libp2p's TCP port reuse does). Two sockets that share a local port still need
//! distinct remote ends: when the kernel refuses the bind or the connect for that reason
//! (`EADDRINUSE`, `EADDRNOTAVAIL`: a link with the same remote already leaves from that port),
//! the dial falls back to an ephemeral port, which is how plain TCP dials anyway.
//!
//! Two reusing nodes that dial each other at the very same moment meet in one TCP connection
//! (a simultaneous open) with both believing they initiated it; their Noise handshake then
//! fails and the redial's jittered backoff separates them. Hole punching relies on exactly
//! that simultaneous open, with the roles agreed beforehand (`crate::reach`).

use super::directory::BoxFuture;
use super::transport::{Conn, Dialer, TcpAcceptor, Via};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// Dials from the listening address (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct ReuseTcp {
    local: SocketAddr,
}

/// Binds `addr` for listening with address and port reuse, and returns the acceptor and a
/// dialler whose connections leave from the port it got (`addr`'s port may be 0).
pub fn bind(addr: SocketAddr) -> std::io::Result<(TcpAcceptor, ReuseTcp)> {
    // SO_REUSEPORT would let a second node (same user) listen on a port already taken and
    // share its connections: a plain bind first says whether the port is free.
    if addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr)?);
    }
    let socket = reusable(addr)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    let local = listener.local_addr()?;
    Ok((TcpAcceptor::from_listener(listener), ReuseTcp { local }))
}

fn reusable(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    Ok(socket)
}

impl ReuseTcp {
    /// The address outgoing connections leave from.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Connects to `to` from the listening port when the families allow it, else (or when the
    /// kernel refuses the shared port) from an ephemeral one.
    async fn connect(&self, to: SocketAddr) -> std::io::Result<TcpStream> {
        let target = match (self.local, to) {
            (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
                Some(to)
            }
            // A dual-stack listener on `[::]` reaches IPv4 peers through mapped addresses.
            (SocketAddr::V6(l), SocketAddr::V4(v4)) if l.ip().is_unspecified() => Some(
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
            ),
            _ => None,
        };
        if let Some(target) = target {
            let shared = async {
                let socket = reusable(self.local)?;
                socket.bind(self.local)?;
                socket.connect(target).await
            };
            match shared.await {
                Ok(stream) => return Ok(stream),
                Err(e)
                    if matches!(e.kind(), ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable) =>
                {
                    tracing::debug!(%to, "listening port busy towards this peer: {e}; dialling from another port");
                }
                Err(e) => return Err(e),
            }
        }
        let stream = TcpStream::connect(to).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Dialer for ReuseTcp {
    fn dial<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: Duration,
    ) -> BoxFuture<'a, std::io::Result<Conn>> {
        Box::pin(async move {
            let attempt = async {
                let mut last = std::io::Error::new(ErrorKind::NotFound, "no address");
                for to in tokio::net::lookup_host((host, port)).await? {
                    match self.connect(to).await {
                        Ok(stream) => return Ok(stream),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            };
            let stream = tokio::time::timeout(timeout, attempt).await.map_err(|_| {
                std::io::Error::new(ErrorKind::TimedOut, format!("no answer within {timeout:?}"))
            })??;
            let remote = canonical(stream.peer_addr()?);
            Ok(Conn {
                stream: Box::new(stream),
                remote,
                via: Via::Direct,
            })
        })
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// True for an address that may be reachable from the internet: not loopback, private,
/// link-local, shared (CGNAT), unspecified, multicast or broadcast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link-local
                && v6 != Ipv6Addr::LOCALHOST
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_are_told_from_private_ones() {
        for (ip, public) in [
            ("203.0.113.7", true),
            ("8.8.8.8", true),
            ("192.168.1.2", false),
            ("10.0.0.1", false),
            ("172.20.0.1", false),
            ("100.64.1.1", false),
            ("127.0.0.1", false),
            ("169.254.3.3", false),
            ("2001:db8::1", true),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::1", false),
            ("::ffff:192.168.1.1", false),
        ] {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
    }

    #[tokio::test]
    async fn a_port_in_use_is_refused_even_with_port_reuse() {
        let (first, _) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = super::super::Acceptor::local_addr(&first).unwrap();
        let second = bind(taken).map(|_| ()).unwrap_err();
        assert_eq!(second.kind(), ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn outgoing_links_leave_from_the_listening_port() {
        let (acceptor, dialer) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (other, _) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = super::super::Acceptor::local_addr(&other).unwrap();
        let conn = dialer
            .dial("127.0.0.1", to.port(), Duration::from_secs(5))
            .await
            .unwrap();
        let seen = super::super::Acceptor::accept(&other).await.unwrap();
        assert_eq!(
            seen.remote,
            dialer.local_addr(),
            "the peer sees our listening port"
        );
        assert_eq!(conn.remote, to);
        // A second link to the same peer cannot share the port: it still connects.
        let again = dialer
            .dial("127.0.0.1", to.port(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(again.remote, to);
        drop(acceptor);
    }
}
