//! The holder's side of windowed item exchange: one task per peer that asks, driving a
//! [`kith_proto::files::items::ItemServer`].
//!
//! Requests arrive on the link task and are queued for the peer's task (a bounded queue of
//! envelopes; beyond it they are dropped and counted, and the fetcher's stall detection asks
//! elsewhere). The task reads ahead a few items at a time on the blocking pool, each read
//! straight into the envelope that carries it and verified by the store as every read is,
//! and takes an upload slot for each (choking: under contention the peers that give back go
//! first). Sending waits on the link's byte budget, so a slow link holds at most that much of
//! ours in memory, plus the items being read. The task ends when the peer has been idle a
//! while, or its link goes down.

use super::{Exchange, UploadPermit};
use bytes::Bytes;
use kith_crypto::identity::AgentId;
use kith_proto::files::items::{
    item_envelope, item_prefix, Answer, Holding, ItemServer, Request, ServerConfig, ServerEvent,
};
use kith_proto::wire::Envelope;
use kith_store::{ContentHash, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Request envelopes queued for one peer's task.
const REQUEST_QUEUE: usize = 64;
/// A peer's task ends after this long with nothing to do.
const IDLE: Duration = Duration::from_secs(30);

/// The holders' tasks, one per peer at most.
#[derive(Debug, Clone, Default)]
pub(super) struct Servers {
    tasks: Arc<Mutex<HashMap<AgentId, mpsc::Sender<Request>>>>,
}

impl Servers {
    fn lock(&self) -> MutexGuard<'_, HashMap<AgentId, mpsc::Sender<Request>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer's link went down: its task ends once its reads are done.
    pub(super) fn link_down(&self, peer: &AgentId) {
        self.lock().remove(peer);
    }
}

/// Routes one `items` envelope from `peer` to its task, starting one if needed. Never
/// blocks: a full queue drops the envelope (counted).
pub(super) fn dispatch(ex: &Exchange, peer: AgentId, envelope: &Envelope) {
    if !ex.items_enabled() {
        ex.counters.ciyam_envelopes_dropped.bump();
        return;
    }
    let request = match Request::decode(envelope) {
        Ok(request) => request,
        Err(e) => {
            ex.counters.items_malformed.bump();
            tracing::debug!(peer = %peer, "bad items envelope: {e}");
            return;
        }
    };
    let mut tasks = ex.servers.lock();
    if let Some(tx) = tasks.get(&peer) {
        match tx.try_send(request) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => {
                ex.counters.items_requests_dropped.bump();
                return;
            }
            // The task is ending: start another.
            Err(mpsc::error::TrySendError::Closed(request)) => {
                tasks.remove(&peer);
                start(ex, &mut tasks, peer, request);
            }
        }
        return;
    }
    start(ex, &mut tasks, peer, request);
}

fn start(
    ex: &Exchange,
    tasks: &mut HashMap<AgentId, mpsc::Sender<Request>>,
    peer: AgentId,
    first: Request,
) {
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    let _ = tx.try_send(first);
    tasks.insert(peer, tx);
    let ex = ex.clone();
    tokio::spawn(async move {
        serve(&ex, peer, rx).await;
    });
}

/// What a finished read gives back.
type Read = (
    ContentHash,
    Result<Option<Vec<u8>>, StoreError>,
    UploadPermit,
);

async fn serve(ex: &Exchange, peer: AgentId, mut rx: mpsc::Receiver<Request>) {
    let limits = ex.node_limits();
    let mut server = ItemServer::new(ServerConfig {
        max_queued: limits.items_max_queued,
        read_ahead: limits.items_read_ahead,
    });
    let mut reads: JoinSet<Read> = JoinSet::new();
    loop {
        while let Some(ServerEvent::Query(file)) = server.poll_event() {
            server.answer_query(query(ex, file).await);
        }
        while let Some(hash) = server.poll_read() {
            // An upload slot per item (choking); the read waits for it in its own task so
            // that requests keep being taken meanwhile.
            let (ex, store) = (ex.clone(), ex.store.clone());
            reads.spawn(async move {
                let permit = ex.uploads.acquire(peer).await;
                // Priced serving: an item goes out only within what the peer paid for (the
                // value service's gate, as on the turn-taking session); beyond it the peer
                // is told we lack the item.
                if ex.gate().is_some_and(|gate| !gate.may_send(&peer)) {
                    return (hash, Ok(None), permit);
                }
                let read = store
                    .run(move |s| {
                        match s.blobs().get_item_with_prefix(&hash, &item_prefix(&hash)) {
                            Ok(bytes) => Ok(Some(bytes)),
                            Err(StoreError::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        }
                    })
                    .await
                    .map_err(|e| StoreError::Config(e.to_string()));
                (hash, read, permit)
            });
        }
        while let Some(response) = server.poll_transmit() {
            if ex
                .endpoint
                .send_linked(peer, response.encode())
                .await
                .is_err()
            {
                return; // the link is gone
            }
        }
        tokio::select! {
            request = rx.recv() => match request {
                Some(request) => server.handle(request),
                None if reads.is_empty() => return,
                None => {}
            },
            Some(done) = reads.join_next(), if !reads.is_empty() => {
                let Ok((hash, read, permit)) = done else { continue };
                match read {
                    Ok(Some(data)) => {
                        let len = data.len() - item_prefix(&hash).len();
                        server.read_sent(hash);
                        ex.uploads.throttle(len as u64).await;
                        let sent = ex.endpoint.send_linked(peer, item_envelope(Bytes::from(data))).await;
                        drop(permit);
                        if sent.is_err() {
                            return;
                        }
                        ex.counters.exchange_items_sent.bump();
                        ex.uploads.sent(peer, len as u64);
                        if let Some(gate) = ex.gate() {
                            gate.sent(&peer, len as u64);
                        }
                    }
                    Ok(None) => server.read_done(hash, None),
                    Err(e) => {
                        tracing::warn!(peer = %peer, "cannot serve item {hash}: {e}");
                        server.read_done(hash, None);
                    }
                }
            },
            _ = tokio::time::sleep(IDLE), if server.is_idle() && reads.is_empty() => {
                // Idle: leave, unless a request slipped in meanwhile.
                let mut tasks = ex.servers.lock();
                match rx.try_recv() {
                    Ok(request) => server.handle(request),
                    Err(_) => {
                        tasks.remove(&peer);
                        return;
                    }
                }
            }
        }
    }
}

/// What we hold of `file`: a recorded file whole (with its size and name), its root item
/// only, or nothing. Linked peers may fetch any file we store, as over the CIYAM session.
async fn query(ex: &Exchange, file: ContentHash) -> Answer {
    let found = ex
        .store
        .run(move |s| {
            if let Some(record) = s.get(&file)? {
                return Ok::<_, StoreError>((Holding::Whole, record.size, record.name));
            }
            let holding = if s.blobs().contains(&file)? {
                Holding::Partial
            } else {
                Holding::None
            };
            Ok((holding, 0, None))
        })
        .await;
    let (holding, size, name) = found.unwrap_or((Holding::None, 0, None));
    Answer {
        file,
        holding,
        size,
        name,
    }
}
