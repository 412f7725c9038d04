//! What every session this node initiates over a link has in common, whatever it is for
//! (fetching a file, persisting or retrieving one in custody): the peer's session slot, the
//! `bye` owed to the peer if the session ends early, the port, and the loop that sends what
//! the port queued, waits for the peer, and answers the store's questions. Callers see only
//! the events that are theirs to decide.

use super::answer::{self, answer_from_store};
use super::{
    flush, flush_opening, link_config, wait_input, ByeOnDrop, Exchange, ExchangeError, SlotFlags,
    SlotGuard,
};
use crate::clock::mono_now;
use bytes::Bytes;
use kith_crypto::identity::AgentId;
use kith_proto::files::{CloseReason, ContentHash, EnvelopePort, Event, Role, Session};
use kith_proto::wire::Envelope;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// An initiator session over the link with one peer.
pub(super) struct InitiatorSession<'a> {
    ex: &'a Exchange,
    peer: AgentId,
    id: u64,
    rx: mpsc::Receiver<Envelope>,
    flags: Arc<SlotFlags>,
    /// The session and its envelope codec.
    pub(super) port: EnvelopePort,
    // Dropped in this order: the `bye` goes out before the slot is freed for the next session.
    bye: ByeOnDrop<'a>,
    _slot: SlotGuard<'a>,
}

impl<'a> InitiatorSession<'a> {
    /// Takes the peer's initiator slot (waiting while another of our sessions with it runs)
    /// and starts a session.
    pub(super) async fn open(
        ex: &'a Exchange,
        peer: AgentId,
    ) -> Result<InitiatorSession<'a>, ExchangeError> {
        Self::open_with(ex, peer, false).await
    }

    /// [`InitiatorSession::open`] for a background session (which a user's session with the
    /// same peer preempts) or a user's one.
    pub(super) async fn open_with(
        ex: &'a Exchange,
        peer: AgentId,
        background: bool,
    ) -> Result<InitiatorSession<'a>, ExchangeError> {
        let wait = Duration::from_millis(ex.limits().ciyam_request_timeout_ms);
        let (id, rx, flags) = ex.sessions.acquire(peer, wait, background).await?;
        let session = Session::new(Role::Initiator, link_config(ex), mono_now());
        Ok(InitiatorSession {
            ex,
            peer,
            id,
            rx,
            flags,
            port: EnvelopePort::new(session),
            bye: ByeOnDrop {
                ex,
                peer,
                armed: true,
            },
            _slot: SlotGuard { ex, peer, id },
        })
    }

    /// Sends what the session queued, then returns its next event that the caller must
    /// decide. Store questions are answered here. `None` once the session has finished.
    pub(super) async fn next_event(&mut self) -> Result<Option<Event>, ExchangeError> {
        loop {
            if self.flags.opening.load(Ordering::Acquire) {
                if let Err(e) = flush_opening(self.ex, self.peer, self.id, &mut self.port) {
                    self.bye.armed = false;
                    return Err(e);
                }
            } else {
                flush(self.ex, self.peer, &mut self.port).await?;
            }
            if let Some(event) = self.port.poll_event() {
                let session = self.port.session_mut();
                match answer_from_store(&self.ex.store, session, event).await? {
                    Some(event) => return Ok(Some(event)),
                    None => {
                        self.port.process(mono_now());
                        continue;
                    }
                }
            }
            if self.port.is_finished() {
                return Ok(None);
            }
            if !wait_input(&mut self.port, &mut self.rx).await {
                self.bye.armed = false;
                return Err(ExchangeError::LinkLost(self.peer.to_string()));
            }
        }
    }

    /// A user's session with the same peer is waiting: a background session ends at its
    /// next turn.
    pub(super) fn preempted(&self) -> bool {
        self.flags.preempt.load(Ordering::Acquire)
    }

    /// The reply to our opening `chk` has come: later envelopes go out the ordinary way.
    pub(super) fn opened(&self) {
        self.flags.opening.store(false, Ordering::Release);
    }

    /// The session closed for `reason`: the peer is owed a `bye` only if it does not already
    /// know the session is over. Sends what is left.
    pub(super) async fn closed(&mut self, reason: &CloseReason) -> Result<(), ExchangeError> {
        self.bye.armed = !matches!(reason, CloseReason::Bye { .. } | CloseReason::PeerError(_));
        flush(self.ex, self.peer, &mut self.port).await
    }

    /// The error for a session that failed for `reason`.
    pub(super) fn failed(&self, reason: String) -> ExchangeError {
        ExchangeError::Session {
            peer: self.peer.to_string(),
            reason,
        }
    }

    /// Stores an item the peer sent, counting it, and tells the session whether that worked.
    pub(super) async fn store_received(
        &mut self,
        got: ContentHash,
        item: Bytes,
    ) -> Result<bool, ExchangeError> {
        let item_len = item.len() as u64;
        let stored = answer::store_received_item(&self.ex.store, got, item).await;
        match &stored {
            Err(e) => tracing::warn!(peer = %self.peer, "could not store item {got}: {e}"),
            Ok(()) => {
                self.ex.counters.items_received.bump();
                self.ex.uploads.received(self.peer, item_len);
            }
        }
        self.port
            .session_mut()
            .stored(mono_now(), stored.is_ok())
            .map_err(|e| self.failed(e.to_string()))?;
        Ok(stored.is_ok())
    }
}
