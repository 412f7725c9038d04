//! The dialling side: first contact with a ticket, re-linking known peers, redials.

use super::directory::DialTarget;
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

/// Dials `host:port` and runs the initiator machine that `start` builds over the new
/// connection: what both first contact and reconnection do before they differ.
async fn dial(
    shared: &Shared,
    host: &str,
    port: u16,
    what: &'static str,
    start: impl FnOnce(Instant) -> Result<Initiator, HandshakeError>,
) -> Result<(Conn, Established), EndpointError> {
    let timeout = Duration::from_millis(shared.limits.connect_timeout_ms);
    let mut conn =
        shared
            .dialer
            .dial(host, port, timeout)
            .await
            .map_err(|e| EndpointError::Unreachable {
                addr: format!("{host}:{port}"),
                reason: e.to_string(),
            })?;
    let handshake = |outcome| EndpointError::Handshake { what, outcome };
    let machine = start(mono_now())
        .map_err(|e| handshake(HandshakeOutcome::Failed(HandshakeFailure::Protocol(e))))?;
    let established = handshake::run(
        shared,
        conn.stream.as_mut(),
        Machine::Initiator(Box::new(machine)),
    )
    .await
    .map_err(handshake)?;
    Ok((conn, established))
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
    let (conn, established) = dial(shared, &host, port, FIRST_CONTACT, |now| {
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
    );
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
    let address = match shared.directory.dial_target(peer).await? {
        DialTarget::Unknown => return Err(EndpointError::UnknownPeer(peer.to_string())),
        DialTarget::Blocked => return Err(EndpointError::Blocked(peer.to_string())),
        DialTarget::NoAddress => return Err(EndpointError::NoAddress(peer.to_string())),
        DialTarget::At(address) => address,
    };
    let (conn, established) = dial(shared, &address.host, address.port, RECONNECT, |now| {
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
    );
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
