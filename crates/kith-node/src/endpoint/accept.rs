//! The accept side: admission before a byte is read, then the responder's handshake.

use super::guard::Admission;
use super::handshake::{self, HandshakeFailure, HandshakeOutcome, Machine};
use super::link_task::{self, NewLink};
use super::transport::{Acceptor, Conn};
use super::{lock, Shared};
use crate::clock::mono_now;
use kith_proto::secure::{RefuseReason, Responder};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accepts connections until the node stops; each admitted one gets its own task.
pub(super) async fn accept_loop(shared: Arc<Shared>, acceptor: Box<dyn Acceptor>) {
    loop {
        let conn = tokio::select! {
            accepted = acceptor.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shared.cancel.cancelled() => return,
        };
        // A simultaneous open that a punch under way expects: ours to answer as agreed.
        let Some(conn) = shared.diverts.claim(conn) else {
            continue;
        };
        admit(&shared, conn);
    }
}

/// Admission, then the responder's handshake on its own task (an accepted connection, or one
/// the reach service adopted).
pub(super) fn admit(shared: &Arc<Shared>, conn: Conn) {
    let admission = shared.guard().admit(conn.remote.ip(), Instant::now());
    let (id, evict) = match admission {
        Admission::Refuse(refusal) => {
            count_refusal(shared, refusal);
            drop(conn); // silent close
            return;
        }
        Admission::Admit { id, evict } => (id, evict),
    };
    if let Some(old) = evict {
        shared.counters.evicted_pending_handshake.bump();
        if let Some(task) = lock(&shared.pending).remove(&old) {
            task.abort();
        }
    }
    // Hold the table while spawning: the task removes its own entry when its handshake
    // ends, and must not be able to do that before the entry exists.
    let mut pending = lock(&shared.pending);
    let task_shared = Arc::clone(shared);
    let task = shared.tracker.spawn(async move {
        respond(task_shared, conn, id).await;
    });
    pending.insert(id, task.abort_handle());
}

fn count_refusal(shared: &Shared, refusal: super::guard::Refusal) {
    use super::guard::Refusal;
    let c = &shared.counters;
    match refusal {
        Refusal::AddrBlocked => c.refused_addr_blocked.bump(),
        Refusal::RateLimited => c.refused_rate_limited.bump(),
        Refusal::TooManyPendingFromAddr => c.refused_pending_per_addr.bump(),
        Refusal::TooManyLinksFromAddr => c.refused_links_per_addr.bump(),
        Refusal::TooManyLinks => c.refused_links_total.bump(),
    }
}

fn count_outcome(shared: &Shared, outcome: &HandshakeOutcome) {
    let c = &shared.counters;
    match outcome {
        HandshakeOutcome::Refused(RefuseReason::TicketRefused) => c.refused_ticket.bump(),
        HandshakeOutcome::Refused(RefuseReason::UnknownPeer) => c.refused_unknown_peer.bump(),
        HandshakeOutcome::Refused(RefuseReason::AgentKeyMismatch) => {
            c.refused_agent_key_mismatch.bump()
        }
        HandshakeOutcome::Refused(_) => c.refused_handshake_other.bump(),
        HandshakeOutcome::Failed(HandshakeFailure::Replayed) => c.refused_replayed_handshake.bump(),
        HandshakeOutcome::Failed(_) => c.handshake_failed.bump(),
    }
}

async fn respond(shared: Arc<Shared>, mut conn: Conn, id: u64) {
    let machine = Machine::Responder(Box::new(Responder::new(
        &shared.secure,
        mono_now(),
        &mut rand::rngs::OsRng,
    )));
    let result = handshake::run(&shared, conn.stream.as_mut(), machine).await;
    lock(&shared.pending).remove(&id);
    let established = match result {
        Ok(established) => established,
        Err(outcome) => {
            shared.guard().handshake_finished(id, false, Instant::now());
            count_outcome(&shared, &outcome);
            tracing::debug!(remote = %conn.remote, ?outcome, "handshake refused or failed; closing silently");
            return;
        }
    };
    shared.guard().handshake_finished(id, true, Instant::now());
    let Some(peer) = established.link.peer() else {
        // An anonymous query (also how a peer checks an address we announced): the
        // handshake itself was the answer.
        shared.counters.queries_answered.bump();
        shared.guard().link_closed(conn.remote.ip());
        return;
    };
    link_task::start(
        &shared,
        NewLink {
            conn,
            established,
            side: super::Side::Responder,
            peer,
        },
    )
    .await;
}
