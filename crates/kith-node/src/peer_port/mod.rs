//! The CIYAM peer port: the text protocol of `../shared/spec/ciyam-peer.md` for `kith shell`
//! and plain clients.
//!
//! Each connection gets a responder [`TextPort`] in interactive-test mode, whose own commands
//! follow the reference's rule ([`InteractiveTestPolicy`]), so the seed's sessions replay line
//! for line. This module moves bytes, switches the socket to TLS when a client starts with
//! `tls`, and admits clients; `session.rs` answers a session's questions; `access.rs` says
//! what a client may be served.
//!
//! **Whoever connects here is a stranger**: nothing proves who it is (linked peers, whose keys
//! are proven, exchange files over secure links and may fetch any stored item by its hash).
//! So, unless `peer_port_open_store = true` opens the store as the reference's test port is
//! open:
//! - **What a stranger is served**: shared files (`kith file share`) and their items; custody
//!   copies, to the session the custodian handed their pull request to (the owner's `chk` of
//!   its content; the copy's items as the owner walks its lists); what the same client `put`
//!   in this session (so the seed's sessions replay); and the built-in hello file. Anything
//!   else is answered exactly as an item this node does not hold: `(not found)` to a `chk`,
//!   `(error)file '…' was not found` to a `get`, and a `put` of it is received again rather
//!   than skipped. Existence is not revealed.
//! - **What a stranger stores** is an *anonymous item* ([`kith_store::anonymous`]), never a
//!   file of the user's (`kith file ls` does not show it): within `[limits]
//!   max_anonymous_bytes` for all strangers together (4 MiB by default, never more than
//!   16 MiB), each item charged its size rounded up to 4 KiB; when it is full, the address
//!   holding the most gives up its oldest item (so a flood evicts its own items first); each
//!   item goes after `anonymous_item_secs` (an hour), checked by every anonymous put, by a
//!   sweep here every few minutes and by the garbage collector. The hello file is never
//!   stored: it is built in. Custody is unchanged: a push request is a small anonymous item,
//!   the content it names goes only into the encrypted copy, under its own quota.
//! - **Sessions** are capped in all ([`crate::limits::NodeLimits::max_peer_sessions`]) and per
//!   address (`max_peer_sessions_per_addr`, an IPv4 address or an IPv6 /64, 4 by default), so
//!   one address cannot hold every slot; a refused connection is closed at once. Every wait
//!   has the session's deadline.

mod access;
mod session;

use crate::clock::SharedClock;
use crate::config::MAX_ANONYMOUS_BYTES;
use crate::exchange::Exchange;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

crate::counters! {
    /// What the peer port counts.
    pub struct PeerPortCounters {
        /// Sessions served.
        peer_sessions,
        /// Sessions that switched to TLS.
        peer_sessions_tls,
        /// Connections refused: too many sessions.
        refused_peer_sessions,
        /// Connections refused: too many sessions from the same address.
        refused_peer_sessions_per_addr,
        /// Items stored from peer-port clients (anonymous items and custody copies' items).
        peer_items_received,
        /// Questions about an item a stranger may not see, answered as if it were not here.
        peer_items_hidden,
        /// Anonymous items recorded (a new row).
        anonymous_items_stored,
        /// Anonymous items deleted to make room for newer ones.
        anonymous_items_evicted,
        /// Anonymous items deleted because their time was up (by the sweep here).
        anonymous_items_expired,
        /// Anonymous `put`s refused (larger than the quota, or a store failure).
        anonymous_items_refused,
    }
}

/// What the peer port needs to know of the node's settings (limits come from the exchange).
#[derive(Debug, Clone)]
pub struct PeerPortSettings {
    /// Serve any stored item to strangers (`peer_port_open_store`).
    pub open_store: bool,
    /// Wall-clock time (anonymous items' deadlines).
    pub clock: SharedClock,
}

/// The CIYAM peer port: a handle, cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerPort {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    exchange: Exchange,
    tls: Option<Arc<rustls::ServerConfig>>,
    settings: PeerPortSettings,
    /// Clients connected now, for `pip` and the caps.
    clients: Mutex<Vec<Client>>,
    next_session: AtomicU64,
    counters: PeerPortCounters,
}

/// A client connected now.
#[derive(Debug, Clone)]
struct Client {
    id: u64,
    ip: IpAddr,
    /// The address it is charged to.
    key: String,
}

impl PeerPort {
    /// The port's service: sessions answered from `exchange`'s store, custody included;
    /// `tls` for clients that start with `tls`.
    pub fn new(
        exchange: Exchange,
        tls: Option<Arc<rustls::ServerConfig>>,
        settings: PeerPortSettings,
    ) -> PeerPort {
        PeerPort {
            inner: Arc::new(Inner {
                exchange,
                tls,
                settings,
                clients: Mutex::default(),
                next_session: AtomicU64::new(1),
                counters: PeerPortCounters::default(),
            }),
        }
    }

    /// What the port counts.
    pub fn counters(&self) -> &PeerPortCounters {
        &self.inner.counters
    }

    /// Bytes all strangers' items may be charged together: the setting, never above
    /// [`MAX_ANONYMOUS_BYTES`].
    pub fn anonymous_quota(&self) -> u64 {
        self.inner
            .exchange
            .node_limits()
            .max_anonymous_bytes
            .min(MAX_ANONYMOUS_BYTES)
    }

    /// Deletes the strangers' items whose time is up; returns how many left the disk.
    pub async fn expire_anonymous(&self) -> usize {
        let now = self.inner.settings.clock.unix_secs();
        match self
            .inner
            .exchange
            .store()
            .run(move |s| s.expire_anonymous(now))
            .await
        {
            Ok(n) => {
                self.inner.counters.anonymous_items_expired.add(n as u64);
                n
            }
            Err(e) => {
                tracing::warn!("could not expire anonymous items: {e}");
                0
            }
        }
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, Vec<Client>> {
        self.inner.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new client from `ip` under session id `id`, or says which cap refuses it.
    fn admit(&self, id: u64, ip: IpAddr) -> Result<Client, &'static str> {
        let limits = self.inner.exchange.node_limits();
        let key = client_key(ip);
        let mut clients = self.clients();
        if clients.len() >= limits.max_peer_sessions {
            self.inner.counters.refused_peer_sessions.bump();
            return Err("too many sessions");
        }
        let same = clients.iter().filter(|c| c.key == key).count();
        if same >= limits.max_peer_sessions_per_addr.max(1) {
            self.inner.counters.refused_peer_sessions_per_addr.bump();
            return Err("too many sessions from this address");
        }
        let client = Client { id, ip, key };
        clients.push(client.clone());
        Ok(client)
    }
}

/// The address a client is charged to, as text: an IPv4 address (an IPv4-mapped IPv6 one
/// counts as IPv4), or the /64 of an IPv6 address (one host usually holds a whole /64), as
/// the chat port counts them.
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
    }
}

/// How often the strangers' items are checked for expiry while the port runs: a twelfth of
/// their time to live, between a second and ten minutes.
fn sweep_every(ttl_secs: u64) -> Duration {
    Duration::from_secs((ttl_secs / 12).clamp(1, 600))
}

/// Accepts peer-port connections until `cancel`, and sweeps expired anonymous items.
pub async fn accept_loop(port: PeerPort, listener: TcpListener, cancel: CancellationToken) {
    let mut sweep = tokio::time::interval(sweep_every(
        port.inner.exchange.node_limits().anonymous_item_secs,
    ));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("peer port accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = sweep.tick() => {
                let port = port.clone();
                tokio::spawn(async move { port.expire_anonymous().await });
                continue;
            }
            _ = cancel.cancelled() => return,
        };
        let id = port.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let client = match port.admit(id, remote.ip()) {
            Ok(client) => client,
            Err(why) => {
                tracing::debug!(%remote, "peer session refused: {why}");
                continue; // dropping the stream closes it
            }
        };
        let task_state = port.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = serve(&task_state, stream, remote, &client) => {
                    if let Err(e) = result {
                        tracing::debug!(%remote, "peer session ended: {e}");
                    }
                }
                _ = cancel.cancelled() => {}
            }
            task_state.clients().retain(|other| other.id != id);
        });
    }
}

/// The other clients' addresses (for the policy's `pip`).
fn other_clients(state: &PeerPort, id: u64) -> Vec<IpAddr> {
    state
        .clients()
        .iter()
        .filter(|c| c.id != id)
        .map(|c| c.ip)
        .collect()
}

/// Another client of this listener, chosen at random, or loopback when there is none.
fn other_client(state: &PeerPort, id: u64) -> String {
    let others = other_clients(state, id);
    if others.is_empty() {
        return "127.0.0.1".to_owned();
    }
    let pick = rand::random::<usize>() % others.len();
    others[pick].to_string()
}

async fn serve(
    state: &PeerPort,
    mut stream: TcpStream,
    remote: SocketAddr,
    client: &Client,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    state.inner.counters.peer_sessions.bump();
    let mut run = session::PeerSession::new(state, client);
    match run.drive(&mut stream).await? {
        session::Pass::Finished => Ok(()),
        session::Pass::StartTls => {
            let Some(tls) = state.inner.tls.clone() else {
                return Err("TLS requested but the node has no TLS configuration".into());
            };
            let mut stream = tokio_rustls::TlsAcceptor::from(tls)
                .accept(stream)
                .await
                .map_err(|e| format!("TLS handshake with {remote}: {e}"))?;
            state.inner.counters.peer_sessions_tls.bump();
            run.tls_started()?;
            match run.drive(&mut stream).await? {
                session::Pass::Finished => Ok(()),
                session::Pass::StartTls => Err("a second tls".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_charged_per_ipv4_address_and_per_ipv6_64() {
        assert_eq!(client_key("203.0.113.9".parse().unwrap()), "203.0.113.9");
        assert_eq!(
            client_key("::ffff:203.0.113.9".parse().unwrap()),
            "203.0.113.9"
        );
        assert_eq!(
            client_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_key("2001:db8:1:2:bbbb::7".parse().unwrap()),
            client_key("2001:db8:1:2:aaaa::1".parse().unwrap())
        );
    }

    #[test]
    fn the_sweep_runs_a_dozen_times_per_lifetime_within_bounds() {
        assert_eq!(sweep_every(3_600), Duration::from_secs(300));
        assert_eq!(sweep_every(0), Duration::from_secs(1));
        assert_eq!(sweep_every(86_400), Duration::from_secs(600));
    }
}
