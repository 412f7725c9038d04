//! The secure-link driver: the listener, dialling, and the per-link tasks.
//!
//! Everything protocol-shaped happens in `kith_proto::secure`; this module moves bytes between
//! sockets and those machines, asks the database the questions they ask, and applies the
//! admission guard. Every wait has a deadline from [`kith_proto::Limits`].

pub mod handshake;
pub mod link;

use crate::guard::Admission;
use crate::links::Side;
use crate::node::NodeState;
use crate::ticket::{unix_secs, Ticket};
use handshake::{Established, HandshakeOutcome, Machine};
use kith_crypto::identity::AgentId;
use kith_proto::secure::{Chad, HandshakeError, Initiator, Responder, TicketRequest};
use kith_proto::wire::Envelope;
use kith_store::meta::{PeerRecord, PeerUpsert};
use rand::RngCore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{TcpListener, TcpStream};

/// Why a dial, a first contact or a ping failed (shown to the user as is).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No peer with that agent id is recorded.
    #[error("{0} is not a known peer; connect to it first with a ticket (`kith connect TICKET`)")]
    UnknownPeer(String),
    /// The peer is blocked.
    #[error("{0} is blocked; `kith peers --unblock {0}` lifts the block")]
    Blocked(String),
    /// The peer has no recorded address.
    #[error("no address is recorded for {0}; it can still connect to us")]
    NoAddress(String),
    /// TCP connect failed or timed out.
    #[error(
        "cannot reach {addr} ({reason}): the node there is not running, or that address cannot \
         be reached from here; ask its owner to start it (`kith up`), or to give it an address \
         you can reach (`kith up --announce HOST:PORT`, then a new ticket). A known peer \
         re-links by itself once it is back"
    )]
    Unreachable {
        /// host:port.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The handshake did not complete.
    #[error("{0}")]
    Handshake(String),
    /// The ticket cannot be used.
    #[error("{0}")]
    Ticket(String),
    /// The peer did not answer a ping in time (dial included).
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The database failed.
    #[error("database: {0}")]
    Store(String),
}

/// Binds the secure-link listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts connections until the node stops; each admitted one gets its own task.
pub async fn accept_loop(state: Arc<NodeState>, listener: TcpListener) {
    let mut stopping = state.stopping();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopping.changed() => return,
        };
        let admission = state.guard().admit(remote.ip(), Instant::now());
        let (id, evict) = match admission {
            Admission::Refuse(refusal) => {
                state.counters.bump(refusal.counter());
                drop(stream); // silent close
                continue;
            }
            Admission::Admit { id, evict } => (id, evict),
        };
        if let Some(old) = evict {
            state.counters.bump("evicted_pending_handshake");
            if let Some(task) = state.pending_handshakes().remove(&old) {
                task.abort();
            }
        }
        // Hold the table while spawning: the task removes its own entry when its handshake
        // ends, and must not be able to do that before the entry exists.
        let mut pending = state.pending_handshakes();
        let task_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            respond(task_state, stream, remote, id).await;
        });
        pending.insert(id, task.abort_handle());
        drop(pending);
    }
}

async fn respond(state: Arc<NodeState>, mut stream: TcpStream, remote: SocketAddr, id: u64) {
    let _ = stream.set_nodelay(true);
    let machine = Machine::Responder(Box::new(Responder::new(
        &state.secure,
        Instant::now(),
        &mut rand::rngs::OsRng,
    )));
    let result = handshake::run(&state, &mut stream, machine).await;
    state.pending_handshakes().remove(&id);
    let established = match result {
        Ok(established) => established,
        Err(outcome) => {
            state.guard().handshake_finished(id, false, Instant::now());
            state.counters.bump(outcome.counter());
            tracing::debug!(%remote, ?outcome, "handshake refused or failed; closing silently");
            return;
        }
    };
    state.guard().handshake_finished(id, true, Instant::now());
    let Some(peer) = established.link.peer() else {
        state.counters.bump("queries_answered");
        return; // an anonymous query: nothing to register (queries arrive with later issues)
    };
    // Record who this is: a ticket holder becomes a peer; a known peer is touched.
    let now = unix_secs(SystemTime::now());
    let addr = remote.to_string();
    let from = established.ticket_from.clone();
    let recorded = state
        .with_store(move |s| match from {
            Some(from) => {
                let mut up = PeerUpsert::new(&peer);
                up.host = from.host;
                up.port = from.port;
                up.last_addr = Some(addr);
                s.meta().upsert_peer(&up, now).map(|_| ())
            }
            None => s
                .meta()
                .touch_peer(&peer.to_string(), Some(&addr), now)
                .map(|_| ()),
        })
        .await;
    if !matches!(recorded, Ok(Ok(()))) {
        tracing::warn!(peer = %peer, "could not record the peer: {recorded:?}");
    }
    link::start(&state, stream, established, Side::Responder, peer, remote);
}

/// Dials `host:port` and runs the initiator machine that `start` builds over the new
/// connection: what both first contact and reconnection do before they differ.
async fn dial(
    state: &Arc<NodeState>,
    host: &str,
    port: u16,
    what: &str,
    start: impl FnOnce(Instant) -> Result<Initiator, HandshakeError>,
) -> Result<(TcpStream, SocketAddr, Established), NetError> {
    let addr = format!("{host}:{port}");
    let unreachable = |reason: String| NetError::Unreachable {
        addr: addr.clone(),
        reason,
    };
    let timeout = Duration::from_millis(state.config.limits.connect_timeout_ms);
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let remote = stream.peer_addr().map_err(|e| unreachable(e.to_string()))?;
    let machine = start(Instant::now()).map_err(|e| NetError::Handshake(e.to_string()))?;
    let established = handshake::run(state, &mut stream, Machine::Initiator(Box::new(machine)))
        .await
        .map_err(|outcome| describe(outcome, what))?;
    Ok((stream, remote, established))
}

fn describe(outcome: HandshakeOutcome, what: &str) -> NetError {
    // A site refuses without a word (so strangers learn nothing); the likely reason depends on
    // whether we came with a ticket or as a known peer, and the user needs the way out.
    let why = if what == FIRST_CONTACT {
        "that is how a node refuses a ticket that is already used, expired, revoked or not its \
         own: ask whoever gave you the ticket for a new one (`kith ticket` on their node) and \
         `kith connect` with that"
    } else {
        "it no longer accepts this node as a peer (it forgot or blocked it): ask its owner for \
         a new ticket and `kith connect` with that"
    };
    NetError::Handshake(match outcome {
        HandshakeOutcome::Failed(reason) if reason.contains("closed") => {
            format!("{what}: the site closed the connection without answering; {why}")
        }
        HandshakeOutcome::Failed(reason) => format!("{what}: {reason}"),
        HandshakeOutcome::Refused(reason) => format!("{what}: refused ({reason:?})"),
    })
}

/// How a failed first contact (IK with a ticket) begins its message.
const FIRST_CONTACT: &str = "first contact failed";

/// First contact: opens an IK link to the ticket's site and records it as a peer.
pub async fn connect_ticket(
    state: &Arc<NodeState>,
    ticket: Ticket,
) -> Result<PeerRecord, NetError> {
    let ticket_error = |e: crate::ticket::TicketError| NetError::Ticket(e.to_string());
    ticket
        .check_unexpired(SystemTime::now())
        .map_err(ticket_error)?;
    let site = ticket.agent().map_err(ticket_error)?;
    if site == state.agent {
        return Err(NetError::Ticket(
            "this ticket was issued by this node itself".into(),
        ));
    }
    let (host, port) = ticket.site_address().map_err(ticket_error)?;
    let to = Chad {
        cuid: ticket.chad.cuid.clone(),
        agent: site.to_string(),
        host: Some(host.clone()),
        port: Some(port),
    };
    let request = TicketRequest::new(to, state.own_chad(), ticket.token.clone());
    let (stream, remote, established) = dial(state, &host, port, FIRST_CONTACT, |now| {
        Initiator::ik(&state.secure, site, &request, now, &mut rand::rngs::OsRng)
    })
    .await?;
    let now = unix_secs(SystemTime::now());
    let mut up = PeerUpsert::new(&site);
    up.host = Some(host);
    up.port = Some(port);
    up.last_addr = Some(remote.to_string());
    let record = state
        .with_store(move |s| s.meta().upsert_peer(&up, now))
        .await
        .map_err(NetError::Store)?
        .map_err(|e| NetError::Store(e.to_string()))?;
    link::start(state, stream, established, Side::Initiator, site, remote);
    Ok(record)
}

/// Makes sure a link with the known peer `agent` is up, dialling it (N + KK) if needed.
pub async fn ensure_link(state: &Arc<NodeState>, agent: AgentId) -> Result<(), NetError> {
    if state.links.is_linked(&agent) {
        return Ok(());
    }
    // One dial per peer at a time; whoever waited finds the link up.
    let lock = state.dial_lock(agent);
    let _guard = lock.lock().await;
    if state.links.is_linked(&agent) {
        return Ok(());
    }
    let name = agent.to_string();
    let record = state
        .with_store(move |s| s.meta().get_peer(&name))
        .await
        .map_err(NetError::Store)?
        .map_err(|e| NetError::Store(e.to_string()))?
        .ok_or_else(|| NetError::UnknownPeer(agent.to_string()))?;
    if record.blocked {
        return Err(NetError::Blocked(agent.to_string()));
    }
    let (Some(host), Some(port)) = (record.host.clone(), record.port) else {
        return Err(NetError::NoAddress(agent.to_string()));
    };
    let (stream, remote, established) = dial(state, &host, port, "reconnect failed", |now| {
        Initiator::known(&state.secure, agent, b"", now, &mut rand::rngs::OsRng)
    })
    .await?;
    let now = unix_secs(SystemTime::now());
    let (name, addr) = (agent.to_string(), remote.to_string());
    let _ = state
        .with_store(move |s| s.meta().touch_peer(&name, Some(&addr), now))
        .await;
    link::start(state, stream, established, Side::Initiator, agent, remote);
    Ok(())
}

/// Sends an envelope to `agent`, dialling first if there is no link. Waits while the link's
/// queue is full (backpressure).
pub async fn send(
    state: &Arc<NodeState>,
    agent: AgentId,
    envelope: Envelope,
) -> Result<(), NetError> {
    for _ in 0..2 {
        ensure_link(state, agent).await?;
        if let Some(tx) = state.links.sender(&agent) {
            if tx
                .send(crate::links::Outgoing::Envelope(envelope.clone()))
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
    }
    Err(NetError::Handshake(format!(
        "the link with {agent} closed while sending"
    )))
}

/// Pings `agent` (dialling at once if needed) and returns the round-trip time.
pub async fn ping(state: &Arc<NodeState>, agent: AgentId) -> Result<Duration, NetError> {
    // One deadline for the whole ping, dial included: a peer that hangs mid-dial must be
    // reported as not answering, within the time `kith ping` waits for the node.
    let timeout = Duration::from_millis(state.config.limits.ping_timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    let no_answer = || NetError::Timeout(agent.to_string(), timeout);
    tokio::time::timeout_at(deadline, ensure_link(state, agent))
        .await
        .map_err(|_| no_answer())??;
    let mut nonce = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let waiter = state
        .links
        .expect_pong(agent, nonce)
        .ok_or_else(|| NetError::Handshake("too many pings outstanding".into()))?;
    let sent = Instant::now();
    let ping = link::envelope("ping", nonce.to_vec());
    let answered = tokio::time::timeout_at(deadline, async {
        send(state, agent, ping).await?;
        waiter.await.map_err(|_| no_answer())
    })
    .await;
    match answered {
        Ok(Ok(at)) => Ok(at.saturating_duration_since(sent)),
        Ok(Err(e)) => {
            state.links.forget_ping(&nonce);
            Err(e)
        }
        Err(_) => {
            state.links.forget_ping(&nonce);
            Err(no_answer())
        }
    }
}

/// Re-dials `peer` with exponential backoff until a link is up (by either side), the peer is
/// removed or blocked, or the node stops.
pub fn spawn_redial(state: Arc<NodeState>, peer: AgentId) {
    tokio::spawn(async move {
        let limits = &state.config.limits;
        let (min, max) = (
            Duration::from_millis(limits.redial_min_ms),
            Duration::from_millis(limits.redial_max_ms),
        );
        let mut stopping = state.stopping();
        loop {
            let delay = state.links.next_backoff(peer, min, max);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopping.changed() => return,
            }
            if state.links.is_linked(&peer) || state.is_stopping() {
                return;
            }
            match ensure_link(&state, peer).await {
                Ok(()) => return,
                Err(NetError::UnknownPeer(_) | NetError::Blocked(_) | NetError::NoAddress(_)) => {
                    return
                }
                Err(e) => {
                    state.counters.bump("redial_failures");
                    tracing::debug!(peer = %peer, "redial failed: {e}");
                }
            }
        }
    });
}

/// At start-up: re-link every known, unblocked peer that has an address.
pub fn relink_known_peers(state: Arc<NodeState>, peers: Vec<PeerRecord>) {
    for record in peers {
        if record.blocked || record.host.is_none() || record.port.is_none() {
            continue;
        }
        let Ok(agent) = record.agent.parse::<AgentId>() else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            if let Err(e) = ensure_link(&state, agent).await {
                tracing::info!(peer = %agent, "peer not reachable at start-up: {e}");
                spawn_redial(state, agent);
            }
        });
    }
}
