//! The BitTorrent mainline DHT: a node's current addresses under its agent key, so a known
//! peer that moved (new IP, new port) is found again without a new ticket.
//!
//! A record is a BEP 44 mutable item: the key is the agent's Ed25519 key (the same key links
//! prove), the salt [`SALT`], the value `{"addrs":["IP:PORT",...]}` (at most [`MAX_ADDRS`]),
//! the sequence number the publishing time, signed with the agent key. DHT nodes verify the
//! signature before they store or return an item, and we check it again through the key we
//! looked up, so a forged record cannot name an address for someone else's key; a record whose
//! value is not ours (malformed, too many addresses) is ignored and counted. Even a genuine
//! record is only a hint: the link's handshake proves the key at whatever address it names.
//!
//! Publishing tells the world where you are, so it is opt-in (`dht_publish = true`); looking up
//! is on (`dht_lookup`). The DHT client starts only when first needed (a lookup, a publish),
//! never delays `ready`, and with no bootstrap node answering it stays quiet. Lookups are
//! bounded: one per peer per [`LOOKUP_EVERY`] and [`LOOKUPS_PER_MINUTE`] in all, the rest
//! refused and counted, so a flood of failing dials cannot turn into a flood of DHT traffic.
//! A node run as a DHT server (`dht_server`, e.g. a lab's bootstrap) answers others.

use crate::clock::mono_now;
use crate::endpoint::Endpoint;
use kith_crypto::identity::AgentId;
use kith_crypto::Identity;
use mainline::async_dht::AsyncDht;
use mainline::MutableItem;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The BEP 44 salt of kith address records.
pub const SALT: &[u8] = b"kith-addrs-v1";
/// Addresses a record may name.
pub const MAX_ADDRS: usize = 8;
/// One lookup per peer this often at most.
pub const LOOKUP_EVERY: Duration = Duration::from_secs(15);
/// Lookups in all per minute.
pub const LOOKUPS_PER_MINUTE: usize = 10;
/// A published record is refreshed this often (and whenever our addresses change).
const REPUBLISH: Duration = Duration::from_secs(30 * 60);
/// How often our addresses are compared with the published ones.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The DHT settings.
#[derive(Debug, Clone)]
pub struct DhtSettings {
    /// Look known peers up when their recorded address fails.
    pub lookup: bool,
    /// Publish our addresses (opt-in).
    pub publish: bool,
    /// Answer other nodes (a DHT server, e.g. a bootstrap node).
    pub server: bool,
    /// Bootstrap nodes (`host:port`); empty with `server`: a network of its own.
    pub bootstrap: Vec<String>,
    /// The UDP port (0: any).
    pub port: u16,
}

impl Default for DhtSettings {
    fn default() -> DhtSettings {
        DhtSettings {
            lookup: true,
            publish: false,
            server: false,
            bootstrap: mainline::DEFAULT_BOOTSTRAP_NODES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            port: 0,
        }
    }
}

crate::counters! {
    /// What the DHT counts.
    pub struct DhtCounters {
        /// Lookups sent.
        dht_lookups,
        /// Lookups that found a valid record.
        dht_found,
        /// Lookups refused by the bounds (per peer, per minute).
        dht_lookups_limited,
        /// Records found that were not valid kith address records.
        dht_records_invalid,
        /// Records published.
        dht_published,
        /// Publishes that failed.
        dht_publish_failed,
    }
}

/// Why a record found in the DHT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRecord {
    /// It is under another key than the agent's.
    #[error("the record is under another key")]
    OtherKey,
    /// It does not carry kith's salt.
    #[error("the record is not a kith address record (salt)")]
    Salt,
    /// The agent's key did not sign it.
    #[error("the record is not signed by the agent's key")]
    Signature,
    /// Its value is not a list of 1 to [`MAX_ADDRS`] usable `IP:PORT` addresses.
    #[error("the record's value is not a list of usable addresses")]
    Value,
}

/// The node's DHT (a handle).
#[derive(Clone)]
pub struct Dht {
    inner: Arc<Inner>,
}

struct Inner {
    settings: DhtSettings,
    identity: Identity,
    client: tokio::sync::OnceCell<Option<AsyncDht>>,
    lookups: Mutex<Lookups>,
    counters: DhtCounters,
}

#[derive(Default)]
struct Lookups {
    recent: VecDeque<Instant>,
    per_peer: HashMap<AgentId, Instant>,
}

impl std::fmt::Debug for Dht {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dht").finish_non_exhaustive()
    }
}

/// The bytes BEP 44 signs for a record of ours (salt [`SALT`]).
pub fn signable(seq: i64, value: &[u8]) -> Vec<u8> {
    let mut out = format!("4:salt{}:", SALT.len()).into_bytes();
    out.extend_from_slice(SALT);
    out.extend_from_slice(format!("3:seqi{seq}e1:v{}:", value.len()).as_bytes());
    out.extend_from_slice(value);
    out
}

/// A record's value for `addrs`.
pub fn record_value(addrs: &[SocketAddr]) -> Vec<u8> {
    let addrs: Vec<String> = addrs
        .iter()
        .take(MAX_ADDRS)
        .map(|a| a.to_string())
        .collect();
    serde_json::to_vec(&serde_json::json!({ "addrs": addrs })).unwrap_or_default()
}

/// The addresses of a record's value, if it is a valid kith record.
pub fn parse_value(value: &[u8]) -> Option<Vec<SocketAddr>> {
    #[derive(serde::Deserialize)]
    struct Record {
        addrs: Vec<String>,
    }
    let record: Record = serde_json::from_slice(value).ok()?;
    if record.addrs.is_empty() || record.addrs.len() > MAX_ADDRS {
        return None;
    }
    let addrs: Option<Vec<SocketAddr>> = record.addrs.iter().map(|a| a.parse().ok()).collect();
    addrs.filter(|a| a.iter().all(|a| a.port() != 0 && !a.ip().is_unspecified()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Dht {
    /// The DHT of the node with `identity` (nothing starts until it is needed).
    pub fn new(settings: DhtSettings, identity: Identity) -> Dht {
        Dht {
            inner: Arc::new(Inner {
                settings,
                identity,
                client: tokio::sync::OnceCell::new(),
                lookups: Mutex::default(),
                counters: DhtCounters::default(),
            }),
        }
    }

    /// Its counters.
    pub fn counters(&self) -> &DhtCounters {
        &self.inner.counters
    }

    /// The client, started on first use (`None`: no DHT, e.g. nothing to bootstrap from).
    async fn client(&self) -> Option<&AsyncDht> {
        let settings = &self.inner.settings;
        self.inner
            .client
            .get_or_init(|| async {
                if settings.bootstrap.is_empty() && !settings.server {
                    return None;
                }
                let mut builder = mainline::Dht::builder();
                if settings.bootstrap.is_empty() {
                    builder.no_bootstrap();
                } else {
                    builder.bootstrap(&settings.bootstrap);
                }
                if settings.port != 0 {
                    builder.port(settings.port);
                }
                if settings.server {
                    builder.server_mode();
                }
                match builder.build() {
                    Ok(dht) => Some(dht.as_async()),
                    Err(e) => {
                        tracing::info!("the DHT is off: {e}");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    /// Where `agent` says it is now, from its signed record; `None` when there is none, the
    /// lookup is off, or the bounds say not now.
    pub async fn lookup(&self, agent: AgentId) -> Option<Vec<SocketAddr>> {
        if !self.inner.settings.lookup {
            return None;
        }
        let now = mono_now();
        {
            let mut l = lock(&self.inner.lookups);
            let minute = Duration::from_secs(60);
            while l
                .recent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= minute)
            {
                l.recent.pop_front();
            }
            l.per_peer
                .retain(|_, at| now.duration_since(*at) < LOOKUP_EVERY);
            if l.recent.len() >= LOOKUPS_PER_MINUTE || l.per_peer.contains_key(&agent) {
                drop(l);
                self.inner.counters.dht_lookups_limited.bump();
                return None;
            }
            l.recent.push_back(now);
            l.per_peer.insert(agent, now);
        }
        let client = self.client().await?;
        self.inner.counters.dht_lookups.bump();
        let item = client
            .get_mutable_most_recent(agent.as_bytes(), Some(SALT))
            .await?;
        self.accept(agent, &item).ok()
    }

    /// The addresses of `item`, a record found under `agent`'s key, if it is a valid kith
    /// record of that agent's; else the reason, counted (`dht_records_invalid`). DHT nodes
    /// check signatures before they store or return an item, but one that lies could hand us
    /// anything: we check the key, the signature and the value ourselves.
    pub fn accept(
        &self,
        agent: AgentId,
        item: &MutableItem,
    ) -> Result<Vec<SocketAddr>, InvalidRecord> {
        let checked = if item.key() != agent.as_bytes() {
            Err(InvalidRecord::OtherKey)
        } else if item.salt() != Some(SALT) {
            Err(InvalidRecord::Salt)
        } else if !agent.verify(&signable(item.seq(), item.value()), item.signature()) {
            Err(InvalidRecord::Signature)
        } else {
            parse_value(item.value()).ok_or(InvalidRecord::Value)
        };
        match &checked {
            Ok(_) => self.inner.counters.dht_found.bump(),
            Err(_) => self.inner.counters.dht_records_invalid.bump(),
        }
        checked
    }

    /// Publishes `addrs` under our key now.
    pub async fn publish(&self, addrs: &[SocketAddr]) -> bool {
        let Some(client) = self.client().await else {
            return false;
        };
        let value = record_value(addrs);
        let seq = crate::ticket::unix_secs(std::time::SystemTime::now());
        let signature = self.inner.identity.sign_agent(&signable(seq, &value));
        let key = *self.inner.identity.agent_id().as_bytes();
        let item = MutableItem::new_signed_unchecked(key, signature, &value, seq, Some(SALT));
        match client.put_mutable(item, None).await {
            Ok(_) => {
                self.inner.counters.dht_published.bump();
                true
            }
            Err(e) => {
                self.inner.counters.dht_publish_failed.bump();
                tracing::info!("publishing our addresses in the DHT failed: {e}");
                false
            }
        }
    }

    /// Starts what the settings ask for: a server at once; publishing our addresses (when
    /// opted in) whenever they change and every half hour. Never blocks the caller.
    pub fn spawn(&self, endpoint: Endpoint, tracker: &TaskTracker, cancel: CancellationToken) {
        let settings = &self.inner.settings;
        if !settings.server && !settings.publish {
            return;
        }
        let this = self.clone();
        tracker.spawn(async move {
            if this.inner.settings.server {
                this.client().await;
            }
            if !this.inner.settings.publish {
                return;
            }
            let mut last: Option<(Vec<SocketAddr>, Instant)> = None;
            loop {
                let addrs = our_addresses(&endpoint);
                let due = match &last {
                    None => true,
                    Some((published, at)) => *published != addrs || at.elapsed() >= REPUBLISH,
                };
                if due && !addrs.is_empty() && this.publish(&addrs).await {
                    last = Some((addrs, Instant::now()));
                }
                tokio::select! {
                    _ = tokio::time::sleep(CHECK_EVERY) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        });
    }
}

/// The addresses we publish: the ticket's, when they are real ones.
fn our_addresses(endpoint: &Endpoint) -> Vec<SocketAddr> {
    let chad = endpoint.own_chad();
    let first = chad
        .host
        .as_deref()
        .and_then(|h| h.parse::<std::net::IpAddr>().ok())
        .zip(chad.port)
        .map(|(ip, port)| SocketAddr::new(ip, port));
    first
        .into_iter()
        .chain(endpoint.other_addresses())
        .filter(|a| !a.ip().is_loopback() && !a.ip().is_unspecified() && a.port() != 0)
        .take(MAX_ADDRS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kith_records_parse() {
        let addrs: Vec<SocketAddr> = vec!["203.0.113.5:7420".parse().unwrap()];
        assert_eq!(parse_value(&record_value(&addrs)), Some(addrs));
        assert_eq!(parse_value(b"junk"), None);
        assert_eq!(parse_value(br#"{"addrs":[]}"#), None);
        assert_eq!(parse_value(br#"{"addrs":["0.0.0.0:1"]}"#), None);
        let many: Vec<String> = (1..20).map(|p| format!("203.0.113.5:{p}")).collect();
        let many = serde_json::to_vec(&serde_json::json!({ "addrs": many })).unwrap();
        assert_eq!(parse_value(&many), None);
    }
}
