//! Nodes on the same LAN, found by mDNS (DNS-SD service `_kith._tcp.local.`).
//!
//! A node that listens on a LAN address announces itself (instance name and TXT `agent` = its
//! agent id, the listening port) and browses for others; `kith peers --nearby` lists what it
//! heard. Linking still needs a ticket or a known key: an announcement is a claim, so an entry
//! counts as `verified` only once an anonymous query handshake (NK) to its address proved the
//! key, as announced addresses are checked. The table is bounded ([`MAX_NEARBY`], the oldest
//! goes) and each entry keeps a few addresses; the mDNS daemon runs on its own thread, starts
//! after `ready`, and never on a node that listens only on loopback. A known peer whose
//! recorded address fails is dialled at its verified LAN address before anyone is asked to
//! introduce it (`crate::reach`).

use crate::endpoint::Endpoint;
use kith_crypto::identity::AgentId;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The DNS-SD service type.
pub const SERVICE: &str = "_kith._tcp.local.";
/// Nearby nodes remembered at once.
pub const MAX_NEARBY: usize = 256;
/// Addresses kept per nearby node.
const MAX_ADDRS: usize = 4;
/// Key checks running at once.
const MAX_CHECKS: usize = 4;

crate::counters! {
    /// What LAN discovery counts.
    pub struct NearbyCounters {
        /// Announcements heard from other nodes.
        nearby_heard,
        /// Announcements ignored: malformed (no agent id, a name that is not its agent).
        nearby_malformed,
        /// Entries dropped to make room.
        nearby_evicted,
        /// Nearby nodes whose key an NK query proved at their address.
        nearby_verified,
        /// Nearby nodes whose address did not prove their key.
        nearby_unproven,
    }
}

/// One node heard on the LAN.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NearbyNode {
    /// Its agent id (as announced).
    pub agent: String,
    /// Where it says it listens.
    pub addrs: Vec<String>,
    /// An NK query to one of `addrs` proved the key.
    pub verified: bool,
    /// Seconds since it was last heard.
    pub heard_secs_ago: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    addrs: Vec<SocketAddr>,
    verified: Option<SocketAddr>,
    checking: bool,
    heard: Instant,
}

/// LAN discovery (a handle).
#[derive(Clone, Default)]
pub struct Nearby {
    table: Arc<Mutex<HashMap<AgentId, Entry>>>,
    /// Key checks running (an evicted entry's check still runs to its end).
    running: Arc<std::sync::atomic::AtomicUsize>,
    counters: Arc<NearbyCounters>,
}

impl std::fmt::Debug for Nearby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nearby").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Nearby {
    /// Its counters.
    pub fn counters(&self) -> &NearbyCounters {
        &self.counters
    }

    /// What was heard, most recent first.
    pub fn list(&self) -> Vec<NearbyNode> {
        let table = lock(&self.table);
        let mut out: Vec<(Instant, NearbyNode)> = table
            .iter()
            .map(|(agent, e)| {
                (
                    e.heard,
                    NearbyNode {
                        agent: agent.to_string(),
                        addrs: e.addrs.iter().map(SocketAddr::to_string).collect(),
                        verified: e.verified.is_some(),
                        heard_secs_ago: e.heard.elapsed().as_secs(),
                    },
                )
            })
            .collect();
        out.sort_by_key(|b| std::cmp::Reverse(b.0));
        out.into_iter().map(|(_, n)| n).collect()
    }

    /// `agent`'s LAN address, if an NK query proved its key there.
    pub fn verified_addr(&self, agent: &AgentId) -> Option<SocketAddr> {
        lock(&self.table).get(agent).and_then(|e| e.verified)
    }

    /// Records an announcement; returns the addresses to check when the entry needs a check.
    fn heard(
        &self,
        agent: AgentId,
        addrs: Vec<SocketAddr>,
        now: Instant,
    ) -> Option<Vec<SocketAddr>> {
        self.counters.nearby_heard.bump();
        let mut table = lock(&self.table);
        if !table.contains_key(&agent) && table.len() >= MAX_NEARBY {
            if let Some(oldest) = table.iter().min_by_key(|(_, e)| e.heard).map(|(a, _)| *a) {
                table.remove(&oldest);
                self.counters.nearby_evicted.bump();
            }
        }
        let entry = table.entry(agent).or_insert(Entry {
            addrs: Vec::new(),
            verified: None,
            checking: false,
            heard: now,
        });
        entry.heard = now;
        if entry.addrs != addrs {
            entry.addrs = addrs;
            if entry.verified.is_some_and(|v| !entry.addrs.contains(&v)) {
                entry.verified = None;
            }
        }
        let entry = table.get_mut(&agent)?;
        if entry.verified.is_some() || entry.checking {
            return None;
        }
        use std::sync::atomic::Ordering::SeqCst;
        let started = self
            .running
            .fetch_update(SeqCst, SeqCst, |n| (n < MAX_CHECKS).then_some(n + 1));
        if started.is_err() {
            return None;
        }
        entry.checking = true;
        Some(entry.addrs.clone())
    }

    fn checked(&self, agent: AgentId, proven: Option<SocketAddr>) {
        self.running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(e) = lock(&self.table).get_mut(&agent) {
            e.checking = false;
            e.verified = proven;
        }
        match proven {
            Some(_) => self.counters.nearby_verified.bump(),
            None => self.counters.nearby_unproven.bump(),
        }
    }

    /// Announces this node and browses for others on the LAN until `cancel`, on its own
    /// thread; does nothing when the node listens only on loopback (or not at all).
    pub fn spawn(&self, endpoint: Endpoint, tracker: &TaskTracker, cancel: CancellationToken) {
        let Some(listen) = endpoint.local_addr() else {
            return;
        };
        if listen.ip().is_loopback() {
            return;
        }
        let this = self.clone();
        let runtime = tokio::runtime::Handle::current();
        let checks = tracker.clone();
        tracker.spawn_blocking(move || {
            if let Err(e) = this.run(endpoint, listen, runtime, checks, cancel) {
                tracing::info!("LAN discovery (mDNS) is off: {e}");
            }
        });
    }

    fn run(
        &self,
        endpoint: Endpoint,
        listen: SocketAddr,
        runtime: tokio::runtime::Handle,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Result<(), mdns_sd::Error> {
        use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
        let daemon = ServiceDaemon::new()?;
        let _ = daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6]);
        let me = endpoint.agent();
        let name = me.to_string();
        let host = format!(
            "kith-{}.local.",
            &name[..12].to_ascii_lowercase().replace('_', "-")
        );
        let ip: &[IpAddr] = if listen.ip().is_unspecified() {
            &[]
        } else {
            &[listen.ip()]
        };
        let mut info = ServiceInfo::new(
            SERVICE,
            &name,
            &host,
            ip,
            listen.port(),
            &[("agent", name.as_str()), ("v", "1")][..],
        )?;
        if listen.ip().is_unspecified() {
            info = info.enable_addr_auto();
        }
        daemon.register(info)?;
        let events = daemon.browse(SERVICE)?;
        tracing::info!(port = listen.port(), "LAN discovery (mDNS) on");
        while !cancel.is_cancelled() {
            let Ok(event) = events.recv_timeout(Duration::from_millis(500)) else {
                continue;
            };
            tracing::debug!(?event, "mDNS");
            let ServiceEvent::ServiceResolved(service) = event else {
                continue;
            };
            let agent = service.txt_properties.get_property_val_str("agent");
            let instance = service.fullname.strip_suffix(&format!(".{SERVICE}"));
            let Some(agent) = agent
                .filter(|a| Some(*a) == instance)
                .and_then(|a| a.parse::<AgentId>().ok())
            else {
                self.counters.nearby_malformed.bump();
                continue;
            };
            if agent == me {
                continue;
            }
            let addrs: Vec<SocketAddr> = service
                .addresses
                .iter()
                .map(|ip| SocketAddr::new(ip.to_ip_addr(), service.port))
                .filter(|a| !a.ip().is_loopback() && !a.ip().is_unspecified())
                .take(MAX_ADDRS)
                .collect();
            if addrs.is_empty() {
                continue;
            }
            if let Some(to_check) = self.heard(agent, addrs, Instant::now()) {
                let this = self.clone();
                let endpoint = endpoint.clone();
                let _guard = runtime.enter();
                tracker.spawn(async move {
                    let mut proven = None;
                    for addr in to_check {
                        if endpoint.query(agent, addr).await {
                            proven = Some(addr);
                            break;
                        }
                    }
                    this.checked(agent, proven);
                });
            }
        }
        let _ = daemon.shutdown();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_crypto::identity::Identity;

    fn agent() -> AgentId {
        Identity::generate(&mut rand::rngs::OsRng).agent_id()
    }

    #[test]
    fn the_table_is_bounded_and_checks_are_few_at_once() {
        let n = Nearby::default();
        let now = Instant::now();
        let addr: SocketAddr = "192.168.1.5:7420".parse().unwrap();
        let mut checks = 0;
        for i in 0..(MAX_NEARBY + 10) {
            if n.heard(agent(), vec![addr], now + Duration::from_millis(i as u64))
                .is_some()
            {
                checks += 1;
            }
        }
        assert_eq!(n.list().len(), MAX_NEARBY);
        assert_eq!(n.counters().nearby_evicted.get(), 10);
        assert_eq!(checks, MAX_CHECKS, "no more checks than allowed at once");
    }
}
