//! What the endpoint asks about peers and tickets, and where it records what it learned.
//!
//! The handshake machines ask questions (is this ticket good? is this agent a known peer?);
//! the endpoint answers them from a [`PeerDirectory`]. The node's directory is its metadata
//! database ([`StoreDirectory`]); tests may bring their own.

use crate::store::{Store, StoreFailure};
use kith_crypto::identity::AgentId;
use kith_store::meta::{PeerRecord, PeerUpsert, TicketVerdict};
use std::future::Future;
use std::pin::Pin;

/// How often a peer seen again from the same address has its `last_seen` written.
const TOUCH_EVERY_SECS: i64 = 60;

/// A boxed future, as the directory's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a peer can be dialled, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// What the directory knows of a peer the endpoint is about to dial.
#[derive(Debug, Clone)]
pub enum DialTarget {
    /// Not a recorded peer.
    Unknown,
    /// Recorded but blocked.
    Blocked,
    /// Recorded, with no address to dial.
    NoAddress,
    /// Recorded, at this address.
    At(PeerAddress),
}

/// How links with one peer are run, as the user set it for that peer (protocol-agnostic:
/// options of the secure link itself, never of what it carries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkOptions {
    /// The MyCHIPs reference library's transport cipher order (its two `Split()` cipher
    /// states swapped) instead of the Noise specification's, to talk to an encrypted
    /// reference site. Both ends must agree: a link where only one end uses it fails on its
    /// first transport frame (`links_undecryptable`).
    pub reference_order: bool,
}

/// The endpoint's questions about peers and tickets. Every answer is durable before it is
/// returned (a redeemed ticket stays redeemed).
pub trait PeerDirectory: Send + Sync + 'static {
    /// Redeems `token` for `agent` at `now` (unix seconds): accepted at most once for a
    /// one-time ticket, whoever asks, whichever process.
    fn redeem_ticket(
        &self,
        token: String,
        agent: AgentId,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreFailure>>;

    /// True when `agent` is a recorded peer and not blocked.
    fn is_known(&self, agent: AgentId) -> BoxFuture<'_, Result<bool, StoreFailure>>;

    /// Where to dial `agent`.
    fn dial_target(&self, agent: AgentId) -> BoxFuture<'_, Result<DialTarget, StoreFailure>>;

    /// Records a peer met through a ticket (either side) with the address it claims and,
    /// once known, the address it was seen at.
    fn record_first_contact(
        &self,
        agent: AgentId,
        claimed: Option<PeerAddress>,
        seen_at: Option<String>,
        now: i64,
    ) -> BoxFuture<'_, Result<PeerRecord, StoreFailure>>;

    /// Notes that a known peer was seen at `seen_at`.
    fn touch(
        &self,
        agent: AgentId,
        seen_at: String,
        now: i64,
    ) -> BoxFuture<'_, Result<(), StoreFailure>>;

    /// Records where a known peer listens now (checked by the caller). `false` when nothing
    /// changed or the agent is not a known peer.
    fn set_address(
        &self,
        agent: AgentId,
        address: PeerAddress,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreFailure>>;

    /// Every known, unblocked peer with an address (to re-link at start-up).
    fn dialable_peers(&self) -> BoxFuture<'_, Result<Vec<AgentId>, StoreFailure>>;

    /// How to run a link with `agent` (asked once per link, after the handshake and before
    /// its first transport frame). The default: the specification's everything.
    fn link_options(&self, agent: AgentId) -> BoxFuture<'_, Result<LinkOptions, StoreFailure>> {
        let _ = agent;
        Box::pin(async { Ok(LinkOptions::default()) })
    }
}

/// The node's directory: its metadata database.
#[derive(Debug, Clone)]
pub struct StoreDirectory {
    store: Store,
}

impl StoreDirectory {
    /// A directory over `store`.
    pub fn new(store: Store) -> StoreDirectory {
        StoreDirectory { store }
    }
}

impl PeerDirectory for StoreDirectory {
    fn redeem_ticket(
        &self,
        token: String,
        agent: AgentId,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreFailure>> {
        Box::pin(async move {
            let agent = agent.to_string();
            let verdict = self
                .store
                .run(move |s| s.meta().redeem_ticket(&token, &agent, now))
                .await?;
            Ok(verdict == TicketVerdict::Accepted)
        })
    }

    fn is_known(&self, agent: AgentId) -> BoxFuture<'_, Result<bool, StoreFailure>> {
        Box::pin(async move {
            let name = agent.to_string();
            self.store
                .run(move |s| {
                    let peer = s.meta().get_peer(&name)?;
                    let blocked = s.meta().is_agent_blocked(&name)?;
                    Ok::<_, kith_store::MetaError>(peer.is_some_and(|p| !p.blocked) && !blocked)
                })
                .await
        })
    }

    fn dial_target(&self, agent: AgentId) -> BoxFuture<'_, Result<DialTarget, StoreFailure>> {
        Box::pin(async move {
            let name = agent.to_string();
            let record = self.store.run(move |s| s.meta().get_peer(&name)).await?;
            Ok(match record {
                None => DialTarget::Unknown,
                Some(r) if r.blocked => DialTarget::Blocked,
                Some(PeerRecord {
                    host: Some(host),
                    port: Some(port),
                    ..
                }) => DialTarget::At(PeerAddress { host, port }),
                Some(_) => DialTarget::NoAddress,
            })
        })
    }

    fn record_first_contact(
        &self,
        agent: AgentId,
        claimed: Option<PeerAddress>,
        seen_at: Option<String>,
        now: i64,
    ) -> BoxFuture<'_, Result<PeerRecord, StoreFailure>> {
        Box::pin(async move {
            let mut up = PeerUpsert::new(&agent);
            if let Some(address) = claimed {
                up.host = Some(address.host);
                up.port = Some(address.port);
            }
            up.last_addr = seen_at;
            self.store
                .run(move |s| s.meta().upsert_peer(&up, now))
                .await
        })
    }

    fn touch(
        &self,
        agent: AgentId,
        seen_at: String,
        now: i64,
    ) -> BoxFuture<'_, Result<(), StoreFailure>> {
        Box::pin(async move {
            let name = agent.to_string();
            self.store
                .run(move |s| {
                    // Coalesced: a peer seen again from the same address within a minute is
                    // not worth a durable write on every link (a busy site opens many).
                    let fresh = s.meta().get_peer(&name)?.is_some_and(|p| {
                        p.last_addr.as_deref() == Some(seen_at.as_str())
                            && now.saturating_sub(p.last_seen) < TOUCH_EVERY_SECS
                    });
                    if fresh {
                        return Ok(());
                    }
                    s.meta().touch_peer(&name, Some(&seen_at), now).map(|_| ())
                })
                .await
        })
    }

    fn set_address(
        &self,
        agent: AgentId,
        address: PeerAddress,
        now: i64,
    ) -> BoxFuture<'_, Result<bool, StoreFailure>> {
        Box::pin(async move {
            let name = agent.to_string();
            self.store
                .run(move |s| {
                    let Some(known) = s.meta().get_peer(&name)? else {
                        return Ok(false);
                    };
                    if known.host.as_deref() == Some(address.host.as_str())
                        && known.port == Some(address.port)
                    {
                        return Ok(false);
                    }
                    let mut up = PeerUpsert::new(&agent);
                    up.host = Some(address.host);
                    up.port = Some(address.port);
                    s.meta().upsert_peer(&up, now).map(|_| true)
                })
                .await
        })
    }

    fn dialable_peers(&self) -> BoxFuture<'_, Result<Vec<AgentId>, StoreFailure>> {
        Box::pin(async move {
            let peers = self.store.run(|s| s.meta().list_peers()).await?;
            Ok(peers
                .into_iter()
                .filter(|p| !p.blocked && p.host.is_some() && p.port.is_some())
                .filter_map(|p| p.agent.parse().ok())
                .collect())
        })
    }

    fn link_options(&self, agent: AgentId) -> BoxFuture<'_, Result<LinkOptions, StoreFailure>> {
        Box::pin(async move {
            let name = agent.to_string();
            let record = self.store.run(move |s| s.meta().get_peer(&name)).await?;
            Ok(LinkOptions {
                reference_order: record.is_some_and(|r| r.reference_order),
            })
        })
    }
}
