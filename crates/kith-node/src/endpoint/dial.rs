//! The dialling side: first contact with a ticket, re-linking known peers, redials.

use super::directory::DialTarget;
use super::fallback::Introduction;
use super::handshake::{self, Established, HandshakeFailure, HandshakeOutcome, Machine};
use super::link_task::{self, NewLink};
use super::transport::Conn;
use super::{EndpointError, PeerAddress, Shared, Side};
use crate::clock::mono_now;
use crate::ticket::Ticket;
use kith_crypto::identity::AgentId;
use kith_proto::secure::{Chad, HandshakeError, Initiator, TicketRequest};
use kith_store::meta::PeerRecord;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a failed first contact (IK with a ticket) begins its message.
pub(super) const FIRST_CONTACT: &str = "first contact failed";
/// How a failed dial to a known peer begins its message.
const RECONNECT: &str = "reconnect failed";

/// How long direct dials have to themselves before the reacher (a punch or relay through a
/// mutual peer) is asked too.
const REACH_HEAD_START: Duration = Duration::from_secs(1);

/// Opens a connection to `peer`: every address at once; and when none has answered within
/// [`REACH_HEAD_START`] (or all failed sooner), through the reacher too, if one is installed.
/// The first connection wins.
async fn open(
    shared: &Arc<Shared>,
    peer: AgentId,
    addrs: Vec<(String, u16)>,
    intro: Introduction,
) -> Result<Conn, EndpointError> {
    let reacher = shared.reacher.get().cloned();
    let Some(first) = addrs
        .first()
        .map(|(h, p)| crate::ticket::join_host_port(h, *p))
    else {
        if reacher.is_none() {
            return Err(EndpointError::NoAddress(peer.to_string()));
        }
        return reach(reacher, peer, intro, None).await;
    };
    let timeout = Duration::from_millis(shared.limits.connect_timeout_ms);
    let mut direct = tokio::task::JoinSet::new();
    for (host, port) in addrs {
        let dialer = Arc::clone(&shared.dialer);
        direct.spawn(async move { dialer.dial(&host, port, timeout).await });
    }
    let mut reason: Option<String> = None;
    let head_start = tokio::time::sleep(REACH_HEAD_START);
    tokio::pin!(head_start);
    while !direct.is_empty() {
        tokio::select! {
            Some(done) = direct.join_next() => match done {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => { reason.get_or_insert(e.to_string()); }
                Err(e) => { reason.get_or_insert(e.to_string()); }
            },
            _ = &mut head_start, if reacher.is_some() => {
                // Race the rest of the direct dials against the reacher.
                let mut why = reason.take();
                let remaining = async move {
                    while let Some(done) = direct.join_next().await {
                        match done {
                            Ok(Ok(conn)) => return Ok(conn),
                            Ok(Err(e)) => { why.get_or_insert(e.to_string()); }
                            Err(e) => { why.get_or_insert(e.to_string()); }
                        }
                    }
                    Err(why.unwrap_or_default())
                };
                tokio::pin!(remaining);
                let indirect = reach(reacher.clone(), peer, intro.clone(), None);
                tokio::pin!(indirect);
                let (mut direct_failed, mut indirect_failed) = (None, None);
                while direct_failed.is_none() || indirect_failed.is_none() {
                    tokio::select! {
                        r = &mut remaining, if direct_failed.is_none() => match r {
                            Ok(conn) => {
                                let punched = reacher
                                    .as_ref()
                                    .is_some_and(|r| r.introduced(&peer, conn.remote));
                                let via = if punched { super::Via::Punched } else { conn.via };
                                return Ok(Conn { via, ..conn });
                            }
                            Err(why) => direct_failed = Some(why),
                        },
                        r = &mut indirect, if indirect_failed.is_none() => match r {
                            Ok(conn) => return Ok(conn),
                            Err(e) => indirect_failed = Some(e),
                        },
                    }
                }
                let why = direct_failed.unwrap_or_default();
                return Err(match indirect_failed {
                    Some(EndpointError::Unreachable { reason, .. }) => EndpointError::Unreachable {
                        addr: first,
                        reason: format!("{why}; {reason}"),
                    },
                    Some(e) => e,
                    None => EndpointError::Unreachable { addr: first, reason: why },
                });
            },
        }
    }
    let why = reason.unwrap_or_default();
    if reacher.is_none() {
        return Err(EndpointError::Unreachable {
            addr: first,
            reason: why,
        });
    }
    reach(reacher, peer, intro, Some(first))
        .await
        .map_err(|e| match e {
            EndpointError::Unreachable { addr, reason } => EndpointError::Unreachable {
                addr,
                reason: format!("{why}; {reason}"),
            },
            e => e,
        })
}

/// A connection to `peer` through the reacher.
async fn reach(
    reacher: Option<Arc<dyn super::Reacher>>,
    peer: AgentId,
    intro: Introduction,
    addr: Option<String>,
) -> Result<Conn, EndpointError> {
    let Some(reacher) = reacher else {
        return Err(EndpointError::NoAddress(peer.to_string()));
    };
    reacher
        .open(peer, intro)
        .await
        .map_err(|e| EndpointError::Unreachable {
            addr: addr.unwrap_or_else(|| peer.to_string()),
            reason: format!("no mutual peer could punch or relay: {e}"),
        })
}

/// Runs the initiator machine that `start` builds over `conn`: what first contact and
/// reconnection do once a connection is open, however it was made.
async fn handshake_over(
    shared: &Shared,
    conn: &mut Conn,
    what: &'static str,
    start: impl FnOnce(Instant) -> Result<Initiator, HandshakeError>,
) -> Result<Established, EndpointError> {
    let handshake = |outcome| EndpointError::Handshake { what, outcome };
    let machine = start(mono_now())
        .map_err(|e| handshake(HandshakeOutcome::Failed(HandshakeFailure::Protocol(e))))?;
    handshake::run(
        shared,
        conn.stream.as_mut(),
        Machine::Initiator(Box::new(machine)),
    )
    .await
    .map_err(handshake)
}

/// First contact: opens an IK link to the ticket's site and records it as a peer.
pub(super) async fn connect_ticket(
    shared: &Arc<Shared>,
    ticket: Ticket,
) -> Result<PeerRecord, EndpointError> {
    ticket.check_unexpired(shared.clock.system_now())?;
    let site = ticket.agent()?;
    if site == shared.agent {
        return Err(EndpointError::OwnTicket);
    }
    let (host, port) = ticket.site_address()?;
    let to = Chad {
        cuid: ticket.chad.cuid.clone(),
        agent: site.to_string(),
        host: Some(host.clone()),
        port: Some(port),
    };
    let own = super::Endpoint {
        shared: Arc::clone(shared),
    }
    .own_chad();
    let request = TicketRequest::new(to, own, ticket.token.clone());
    let intro = Introduction::Ticket {
        token: ticket.token.clone(),
        brokers: ticket.brokers(),
    };
    let mut conn = open(shared, site, ticket.addresses(), intro).await?;
    if conn.via != super::Via::Direct {
        shared.counters.links_reached_indirectly.bump();
    }
    let established = handshake_over(shared, &mut conn, FIRST_CONTACT, |now| {
        Initiator::ik(&shared.secure, site, &request, now, &mut rand::rngs::OsRng)
    })
    .await?;
    let now = shared.clock.unix_secs();
    let record = shared
        .directory
        .record_first_contact(
            site,
            Some(PeerAddress { host, port }),
            Some(conn.remote.to_string()),
            now,
        )
        .await?;
    link_task::start(
        shared,
        NewLink {
            conn,
            established,
            side: Side::Initiator,
            peer: site,
        },
    )
    .await;
    // One round trip, so that when first contact returns both sides count the link (the
    // site registers it on our first frame, before it answers the ping).
    let endpoint = super::Endpoint {
        shared: Arc::clone(shared),
    };
    if let Err(e) = endpoint.ping(site).await {
        tracing::info!(peer = %site, "the new link did not answer a ping: {e}");
    }
    Ok(record)
}

/// Makes sure a link with the known peer `peer` is up, dialling it (N + KK) if needed. One
/// dial per peer at a time: whoever waited finds the link up.
pub(super) async fn ensure_link(shared: &Arc<Shared>, peer: AgentId) -> Result<(), EndpointError> {
    if shared.registry.is_linked(&peer) {
        return Ok(());
    }
    let lock = shared.registry.dial_lock(peer);
    let result = {
        let _dialling = lock.lock().await;
        if shared.registry.is_linked(&peer) {
            Ok(())
        } else {
            dial_known(shared, peer).await
        }
    };
    shared.registry.release_dial(peer, lock);
    result
}

async fn dial_known(shared: &Arc<Shared>, peer: AgentId) -> Result<(), EndpointError> {
    if shared.cancel.is_cancelled() {
        return Err(EndpointError::ShuttingDown);
    }
    let addrs = match shared.directory.dial_target(peer).await? {
        DialTarget::Unknown => return Err(EndpointError::UnknownPeer(peer.to_string())),
        DialTarget::Blocked => return Err(EndpointError::Blocked(peer.to_string())),
        DialTarget::NoAddress => Vec::new(),
        DialTarget::At(address) => vec![(address.host, address.port)],
    };
    let conn = open(shared, peer, addrs, Introduction::Known).await?;
    if conn.via != super::Via::Direct {
        shared.counters.links_reached_indirectly.bump();
    }
    link_over(shared, peer, conn).await
}

/// Runs a known peer's initiator handshake over `conn` (dialled, or punched by the reach
/// service to replace a relayed link), records the address it reached and starts the link.
pub(super) async fn link_over(
    shared: &Arc<Shared>,
    peer: AgentId,
    mut conn: Conn,
) -> Result<(), EndpointError> {
    let established = handshake_over(shared, &mut conn, RECONNECT, |now| {
        Initiator::known(&shared.secure, peer, b"", now, &mut rand::rngs::OsRng)
    })
    .await?;
    let now = shared.clock.unix_secs();
    if let Err(e) = shared
        .directory
        .touch(peer, conn.remote.to_string(), now)
        .await
    {
        tracing::warn!(peer = %peer, "could not record the peer's address: {e}");
    }
    link_task::start(
        shared,
        NewLink {
            conn,
            established,
            side: Side::Initiator,
            peer,
        },
    )
    .await;
    Ok(())
}

/// Re-dials `peer` with jittered exponential backoff until a link is up (by either side),
/// the peer is removed or blocked, or the node stops.
pub(super) fn spawn_redial(shared: &Arc<Shared>, peer: AgentId) {
    let task_shared = Arc::clone(shared);
    shared.tracker.spawn(async move {
        let shared = task_shared;
        let (min, max) = (
            Duration::from_millis(shared.limits.redial_min_ms),
            Duration::from_millis(shared.limits.redial_max_ms),
        );
        loop {
            let delay = shared
                .registry
                .next_backoff(peer, min, max, shared.jitter());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shared.cancel.cancelled() => return,
            }
            if shared.registry.is_linked(&peer) {
                return;
            }
            match ensure_link(&shared, peer).await {
                Ok(()) => return,
                Err(
                    EndpointError::UnknownPeer(_)
                    | EndpointError::Blocked(_)
                    | EndpointError::NoAddress(_)
                    | EndpointError::ShuttingDown,
                ) => return,
                Err(e) => {
                    shared.counters.redial_failures.bump();
                    tracing::debug!(peer = %peer, "redial failed: {e}");
                }
            }
        }
    });
}

/// At start-up: re-link every known, unblocked peer that has an address.
pub(super) fn relink_known_peers(shared: &Arc<Shared>) {
    let task_shared = Arc::clone(shared);
    shared.tracker.spawn(async move {
        let shared = task_shared;
        let peers = match shared.directory.dialable_peers().await {
            Ok(peers) => peers,
            Err(e) => return tracing::warn!("cannot list peers to re-link: {e}"),
        };
        for peer in peers {
            let shared_peer = Arc::clone(&shared);
            shared.tracker.spawn(async move {
                if let Err(e) = ensure_link(&shared_peer, peer).await {
                    tracing::info!(peer = %peer, "peer not reachable at start-up: {e}");
                    spawn_redial(&shared_peer, peer);
                }
            });
        }
    });
}
