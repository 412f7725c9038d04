//! The port mapper: asks the home router (the default gateway) to forward our listening TCP
//! port, by PCP or NAT-PMP ([`super::portmap`]), keeps the mapping renewed, and deletes it
//! when the node stops. The mapped public address goes into tickets (`addrs`, and the CHIP
//! address while no peer has observed a public one: [`Endpoint::set_mapped`]).
//!
//! It runs on its own task after `ready` and never delays anything; with no gateway, or a
//! gateway that speaks neither protocol, it says so once at debug level and stays quiet
//! (asking again every half hour). UPnP-IGD is not spoken.

use super::portmap::{self, Mapping, PortmapError, MAX_DATAGRAM, RETRIES};
use crate::counters::Counter;
use crate::endpoint::Endpoint;
use rand::RngCore;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

crate::counters! {
    /// What the port mapper counts.
    pub struct PortMapCounters {
        /// Mappings the gateway granted (the first and each one after a lapse).
        port_mappings_granted,
        /// Mappings renewed.
        port_mappings_renewed,
        /// Requests that got no mapping (refused, or no answer).
        port_mapping_failures,
        /// Datagrams from the gateway that were not an answer to our request.
        port_mapping_answers_invalid,
    }
}

/// Where and how often to ask.
#[derive(Debug, Clone)]
pub struct PortMapSettings {
    /// The PCP/NAT-PMP server; `None`: the default gateway's port 5351.
    pub gateway: Option<SocketAddrV4>,
    /// A mapping is renewed at half its lifetime, never sooner than this after it was granted.
    pub renew_floor: Duration,
    /// After a refusal, ask again this much later.
    pub retry_refused: Duration,
    /// After no answer at all (no such server), ask again this much later.
    pub retry_silent: Duration,
}

impl Default for PortMapSettings {
    fn default() -> Self {
        PortMapSettings {
            gateway: None,
            renew_floor: Duration::from_secs(30),
            retry_refused: Duration::from_secs(300),
            retry_silent: Duration::from_secs(1800),
        }
    }
}

/// The port mapper's handle (its counters; [`PortMap::spawn`] starts it).
#[derive(Debug, Clone, Default)]
pub struct PortMap {
    counters: Arc<PortMapCounters>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Pcp,
    NatPmp,
}

impl PortMap {
    /// Its counters.
    pub fn counters(&self) -> &PortMapCounters {
        &self.counters
    }

    /// Starts asking for a mapping of the endpoint's listening port (an IPv4 or dual-stack
    /// listener that is not on loopback), on the node's tracker, until `cancel`.
    pub fn spawn(
        &self,
        endpoint: Endpoint,
        settings: PortMapSettings,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) {
        let Some(listen) = endpoint.local_addr() else {
            return;
        };
        let ipv4 = listen.is_ipv4() || listen.ip().is_unspecified();
        if listen.ip().is_loopback() || !ipv4 {
            return;
        }
        let counters = Arc::clone(&self.counters);
        tracker.spawn(async move {
            if let Err(e) = run(&counters, &endpoint, listen.port(), settings, cancel).await {
                tracing::debug!("no port mapping: {e}");
            }
        });
    }
}

async fn run(
    counters: &PortMapCounters,
    endpoint: &Endpoint,
    port: u16,
    settings: PortMapSettings,
    cancel: CancellationToken,
) -> Result<(), PortmapError> {
    let no_gateway = |e: std::io::Error| PortmapError::NoGateway(e.to_string());
    let gateway = match settings.gateway {
        Some(g) => g,
        None => {
            let table = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
            let gw = portmap::default_gateway(&table)
                .ok_or_else(|| PortmapError::NoGateway("no default IPv4 route".into()))?;
            SocketAddrV4::new(gw, portmap::SERVER_PORT)
        }
    };
    let socket = UdpSocket::bind("0.0.0.0:0").await.map_err(no_gateway)?;
    socket.connect(gateway).await.map_err(no_gateway)?;
    let IpAddr::V4(ours) = socket.local_addr().map_err(no_gateway)?.ip() else {
        return Err(PortmapError::NoGateway("no IPv4 address towards it".into()));
    };
    let client = SocketAddrV4::new(ours, port);
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut proto = Proto::Pcp;
    let mut held: Option<(Mapping, Instant)> = None;
    let started = Instant::now();
    loop {
        let asked = tokio::select! {
            _ = cancel.cancelled() => break,
            r = map(&socket, client, nonce, &mut proto, counters) => r,
        };
        let wait = match asked {
            Ok(mapping) => {
                let now = Instant::now();
                if held.is_some_and(|(m, at)| m.expires_at(at.into_std()) > now.into_std()) {
                    counters.port_mappings_renewed.bump();
                } else {
                    counters.port_mappings_granted.bump();
                    tracing::info!(
                        external = %mapping.external,
                        ?proto,
                        after_ms = started.elapsed().as_millis() as u64,
                        "the router forwards our listening port"
                    );
                }
                if held.map(|(m, _)| m.external) != Some(mapping.external) {
                    endpoint.set_mapped(Some(SocketAddr::V4(mapping.external)));
                }
                held = Some((mapping, now));
                let at = mapping.renew_at(now.into_std(), settings.renew_floor);
                at.saturating_duration_since(now.into_std())
            }
            Err(e) => {
                counters.port_mapping_failures.bump();
                tracing::debug!(%gateway, "no port mapping: {e}");
                let now = Instant::now();
                if held.is_some_and(|(m, at)| m.expires_at(at.into_std()) <= now.into_std()) {
                    held = None;
                    endpoint.set_mapped(None);
                }
                // Until the held one lapses, try again sooner.
                let retry = match e {
                    PortmapError::NoAnswer | PortmapError::NoGateway(_) => settings.retry_silent,
                    _ => settings.retry_refused,
                };
                match held {
                    Some((m, at)) => retry.min(
                        (m.expires_at(at.into_std())
                            .saturating_duration_since(now.into_std())
                            / 2)
                        .max(settings.renew_floor),
                    ),
                    None => retry,
                }
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if held.is_some() {
        // Delete it: the router should not keep forwarding to a node that is gone. One try,
        // a short wait for the answer (shutdown waits for us).
        endpoint.set_mapped(None);
        let delete = match proto {
            Proto::Pcp => portmap::pcp_map_request(client, nonce, 0).to_vec(),
            Proto::NatPmp => portmap::pmp_map_request(port, 0).to_vec(),
        };
        let _ = socket.send(&delete).await;
        let mut buf = [0u8; MAX_DATAGRAM];
        let _ = tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await;
        tracing::info!("port mapping deleted");
    }
    Ok(())
}

/// One mapping request (or renewal): PCP, else NAT-PMP when the gateway speaks only that.
async fn map(
    socket: &UdpSocket,
    client: SocketAddrV4,
    nonce: [u8; 12],
    proto: &mut Proto,
    counters: &PortMapCounters,
) -> Result<Mapping, PortmapError> {
    let invalid = &counters.port_mapping_answers_invalid;
    let port = client.port();
    if *proto == Proto::Pcp {
        let request = portmap::pcp_map_request(client, nonce, portmap::LIFETIME_SECS);
        match exchange(socket, &request, invalid, |d| {
            portmap::parse_pcp_map(d, port, &nonce)
        })
        .await
        {
            Err(PortmapError::UnsupportedVersion) => *proto = Proto::NatPmp,
            other => return other,
        }
    }
    let ip = exchange(
        socket,
        &portmap::pmp_address_request(),
        invalid,
        portmap::parse_pmp_address,
    )
    .await?;
    let request = portmap::pmp_map_request(port, portmap::LIFETIME_SECS);
    exchange(socket, &request, invalid, |d| {
        portmap::parse_pmp_map(d, port, ip)
    })
    .await
}

/// Sends `request` and waits for an answer that `parse` accepts, retrying after each of
/// [`RETRIES`]; datagrams that are no answer are counted and ignored.
async fn exchange<T>(
    socket: &UdpSocket,
    request: &[u8],
    invalid: &Counter,
    parse: impl Fn(&[u8]) -> Result<T, PortmapError>,
) -> Result<T, PortmapError> {
    let mut buf = [0u8; MAX_DATAGRAM];
    for wait in RETRIES {
        if let Err(e) = socket.send(request).await {
            return Err(PortmapError::NoGateway(e.to_string()));
        }
        let deadline = Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                // An ICMP "port unreachable": nothing listens there.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(PortmapError::NoAnswer)
                }
                Ok(Err(_)) => break,
                Ok(Ok(n)) => match parse(&buf[..n]) {
                    Err(PortmapError::Malformed(why)) => {
                        invalid.bump();
                        tracing::debug!("not an answer from the gateway: {why}");
                    }
                    other => return other,
                },
            }
        }
    }
    Err(PortmapError::NoAnswer)
}
