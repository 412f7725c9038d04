//! Datt posts and communities over links, as a protocol handler (`Posts`, the handler of
//! `announce`, `getdata` and `postdata`). The exchange itself is `kith_posts::PostsNode`
//! (sans-IO): a node announces what it holds to each peer that links, asks for what it lacks
//! by hash, serves what it is asked for and announces what it newly kept onward, so posts
//! spread over links without a DHT or consensus, as far as nodes choose to keep them.
//!
//! Rules kept here:
//! - **Links never wait on us**: payloads are decoded (bounded) on the link task and queued
//!   (bounded) for one worker; a full queue drops and counts. Messages out go to a bounded
//!   outbox per linked peer, drained by that peer's sender task (which waits on the link's
//!   backpressure, never the worker); a full outbox drops and counts (the peer's request
//!   times out, and the post comes again with the next announce).
//! - **Durable before announced**: what the machine kept and evicted is written (one
//!   transaction) before the messages produced with it leave, and before `kith post`
//!   answers.
//! - **Bounded**: the machine's store (`[limits]` `posts_max`, `posts_max_bytes`) evicts
//!   relayed posts before followed ones, and the database mirrors it; communities, blocks and
//!   mutes are kept across restarts (migration 11).
//!
//! `actions.rs` carries the control API's requests.

mod actions;
mod at_rest;

use crate::clock::SharedClock;
use crate::endpoint::{envelope, Endpoint, Payload};
use crate::protocol::{LinkEvent, ProtocolHandler};
use crate::store::{Store, StoreFailure};
use kith_crypto::identity::{AgentId, ContentKey};
use kith_posts::message::{Message, ANNOUNCE, GETDATA, POSTDATA};
use kith_posts::node::PostsCounters;
use kith_posts::{Community, PostsLimits, PostsNode};
use kith_store::meta::PostRow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use actions::PostsError;

/// Messages queued for the worker before new ones are dropped.
const QUEUE: usize = 1024;
/// Messages queued for one peer before new ones are dropped.
const OUTBOX: usize = 1024;
/// How often requests that got no answer are forgotten.
const TICK: Duration = Duration::from_secs(5);

crate::counters! {
    /// What the posts service counts (beside the exchange machine's `posts_*` counters).
    pub struct PostsServiceCounters {
        /// Posts messages received.
        posts_messages,
        /// Messages that did not decode (unknown layout, over the bounds).
        posts_refused_malformed_message,
        /// Messages dropped: the worker's queue was full.
        posts_queue_full,
        /// Messages not sent: a peer's outbox was full or its link had gone.
        posts_send_dropped,
        /// Writes of kept posts that failed (the posts stay in memory).
        posts_store_failures,
    }
}

/// What the posts service is built with.
#[derive(Debug, Clone)]
pub struct PostsSettings {
    /// The exchange machine's bounds.
    pub limits: PostsLimits,
    /// Wall-clock time (the author's time on posts).
    pub clock: SharedClock,
    /// The key posts are signed with (the node's content key).
    pub author: ContentKey,
}

struct Inner {
    endpoint: Endpoint,
    store: Store,
    settings: PostsSettings,
    counters: PostsServiceCounters,
    machine: Mutex<PostsNode<AgentId>>,
    /// Muted authors (shown only on request).
    muted: Mutex<HashSet<[u8; 33]>>,
    queue: mpsc::Sender<(AgentId, Message)>,
    outboxes: Mutex<HashMap<AgentId, mpsc::Sender<Message>>>,
    /// Wakes the worker to send what link events queued.
    nudge: Notify,
    /// Serialises taking the machine's changes with writing them, so writes land in order.
    persist: tokio::sync::Mutex<()>,
    /// True once the kept posts and settings are loaded.
    ready: watch::Sender<bool>,
    /// Bumped after each change, so the page and waiters look again.
    changed: watch::Sender<u64>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    start: tokio::time::Instant,
}

/// The posts service (a cheap handle).
#[derive(Clone)]
pub struct Posts {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Posts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Posts").finish_non_exhaustive()
    }
}

/// The worker's end of the queue.
pub struct PostsQueue(mpsc::Receiver<(AgentId, Message)>);

impl Posts {
    /// The service, and the queue its worker ([`run`]) reads.
    pub fn new(
        endpoint: Endpoint,
        store: Store,
        settings: PostsSettings,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> (Posts, PostsQueue) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let machine = PostsNode::new(settings.limits.clone());
        (
            Posts {
                inner: Arc::new(Inner {
                    endpoint,
                    store,
                    settings,
                    counters: PostsServiceCounters::default(),
                    machine: Mutex::new(machine),
                    muted: Mutex::default(),
                    queue,
                    outboxes: Mutex::default(),
                    nudge: Notify::new(),
                    persist: tokio::sync::Mutex::new(()),
                    ready: watch::channel(false).0,
                    changed: watch::channel(0).0,
                    tracker,
                    cancel,
                    start: tokio::time::Instant::now(),
                }),
            },
            PostsQueue(rx),
        )
    }

    /// What it counts: the service's counters and the exchange machine's.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let mut out = crate::counters::snapshot(&[&self.inner.counters]);
        let (c, evicted): (PostsCounters, _) = {
            let machine = self.machine();
            (machine.counters().clone(), machine.store().evicted())
        };
        for (name, value) in [
            ("posts_stored", c.stored),
            ("posts_duplicates", c.duplicates),
            ("posts_refused_bad_signature", c.refused_bad_signature),
            (
                "posts_refused_unknown_community",
                c.refused_unknown_community,
            ),
            ("posts_refused_malformed", c.refused_malformed),
            ("posts_refused_blocked", c.refused_blocked),
            ("posts_refused_unsolicited", c.refused_unsolicited),
            ("posts_announce_skipped", c.announce_skipped),
            ("posts_evicted", evicted),
        ] {
            out.insert(name.to_owned(), value);
        }
        out
    }

    /// A receiver that changes after every change of the kept posts.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    fn machine(&self) -> std::sync::MutexGuard<'_, PostsNode<AgentId>> {
        // A panic while holding the lock leaves plain data behind; go on with it.
        self.inner.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.inner.start.elapsed().as_millis() as u64
    }

    async fn wait_ready(&self) {
        let mut ready = self.inner.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Writes what the machine kept and evicted, then sends what it produced: nothing is
    /// announced before it is durable.
    async fn flush(&self) {
        let _order = self.inner.persist.lock().await;
        let (stored, evicted, out) = {
            let mut m = self.machine();
            let (stored, evicted) = m.take_changes();
            let rows: Vec<PostRow> = stored
                .iter()
                .filter_map(|h| {
                    m.store().get(h).map(|p| PostRow {
                        hash: hex::encode(p.hash),
                        community: hex::encode(p.community),
                        followed: m.store().is_followed(h),
                        item: p.item.clone(),
                    })
                })
                .collect();
            let mut out = Vec::new();
            while let Some(next) = m.poll_transmit() {
                out.push(next);
            }
            (rows, evicted, out)
        };
        if !stored.is_empty() || !evicted.is_empty() {
            let evicted: Vec<String> = evicted.iter().map(hex::encode).collect();
            let now = self.inner.settings.clock.unix_secs();
            let result = self
                .inner
                .store
                .run(move |s| s.meta().posts_apply(&stored, &evicted, now))
                .await;
            if let Err(e) = result {
                self.inner.counters.posts_store_failures.bump();
                tracing::warn!("posts not written: {e}");
            }
            self.inner.changed.send_modify(|n| *n += 1);
        }
        let outboxes = self
            .inner
            .outboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (peer, message) in out {
            let sent = outboxes
                .get(&peer)
                .is_some_and(|tx| tx.try_send(message).is_ok());
            if !sent {
                self.inner.counters.posts_send_dropped.bump();
            }
        }
    }

    /// Loads the kept communities, authors and posts into the machine.
    async fn load(&self) -> Result<(), StoreFailure> {
        let (communities, authors, posts) = self
            .inner
            .store
            .run(|s| {
                let m = s.meta();
                Ok::<_, kith_store::MetaError>((
                    m.posts_communities()?,
                    m.posts_authors()?,
                    m.posts_all()?,
                ))
            })
            .await?;
        let dropped = {
            let mut m = self.machine();
            for row in communities {
                let community = match &row.secret {
                    // Sealed at rest under this node's key (`at_rest`).
                    Some(sealed) => hex::decode(&row.id)
                        .ok()
                        .and_then(|id| <[u8; 32]>::try_from(id).ok())
                        .and_then(|id| at_rest::open(&self.inner.settings.author, &id, sealed))
                        .and_then(|s| Community::closed(&row.name, &s).ok()),
                    None => Community::open(&row.name).ok(),
                };
                if let Some(community) = community {
                    m.know(community, row.followed);
                }
            }
            for row in authors {
                let Some(author) = actions::parse_author(&row.author).ok() else {
                    continue;
                };
                m.block(author, row.blocked);
                if row.muted {
                    self.muted_set().insert(author);
                }
            }
            let mut dropped = Vec::new();
            for row in posts {
                if m.restore(&row.item, row.followed).is_err() {
                    dropped.push(row.hash);
                }
            }
            // Restored posts are not new; what the restore evicted (a smaller bound now) goes.
            let (_, evicted) = m.take_changes();
            dropped.extend(evicted.iter().map(hex::encode));
            dropped
        };
        if !dropped.is_empty() {
            let now = self.inner.settings.clock.unix_secs();
            self.inner
                .store
                .run(move |s| s.meta().posts_apply(&[], &dropped, now))
                .await?;
        }
        Ok(())
    }

    /// Marks the service ready, and has the peers that linked while it loaded hear of what
    /// it holds now. Under the machine's lock, as `on_link` checks readiness, so a peer that
    /// comes up meanwhile is told once or twice, never not at all.
    fn mark_ready(&self) {
        let mut m = self.machine();
        let peers: Vec<AgentId> = self
            .inner
            .outboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for peer in peers {
            m.neighbour_up(peer);
        }
        self.inner.ready.send_replace(true);
    }

    fn muted_set(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 33]>> {
        self.inner.muted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the sender task of a peer that came up.
    fn open_outbox(&self, peer: AgentId) {
        let (tx, mut rx) = mpsc::channel::<Message>(OUTBOX);
        self.inner
            .outboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, tx);
        let (endpoint, cancel) = (self.inner.endpoint.clone(), self.inner.cancel.clone());
        let counters = Arc::clone(&self.inner);
        self.inner.tracker.spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = cancel.cancelled() => return,
                    m = rx.recv() => match m { Some(m) => m, None => return },
                };
                let payload = Payload::Envelope(envelope(message.command(), message.encode()));
                if endpoint.send_linked(peer, payload).await.is_err() {
                    counters.counters.posts_send_dropped.bump();
                }
            }
        });
    }
}

impl ProtocolHandler for Posts {
    fn commands(&self) -> &'static [&'static str] {
        &[ANNOUNCE, GETDATA, POSTDATA]
    }

    fn on_payload(&self, peer: AgentId, payload: Payload) {
        let Payload::Envelope(envelope) = payload else {
            return;
        };
        self.inner.counters.posts_messages.bump();
        // A post larger than any we keep is not even copied.
        if envelope.command.as_str() == POSTDATA
            && envelope.data.len() > self.inner.settings.limits.max_post
        {
            self.inner.counters.posts_refused_malformed_message.bump();
            return;
        }
        let message = match Message::decode(envelope.command.as_str(), &envelope.data) {
            Ok(m) => m,
            Err(e) => {
                self.inner.counters.posts_refused_malformed_message.bump();
                tracing::debug!(peer = %peer, "posts message refused: {e}");
                return;
            }
        };
        if self.inner.queue.try_send((peer, message)).is_err() {
            self.inner.counters.posts_queue_full.bump();
        }
    }

    fn on_link(&self, event: LinkEvent) {
        match event {
            LinkEvent::Up { peer, .. } => {
                self.open_outbox(peer);
                // Before loading ends, `mark_ready` announces to the peers up by then.
                let mut m = self.machine();
                if *self.inner.ready.borrow() {
                    m.neighbour_up(peer);
                }
            }
            LinkEvent::Down { peer } => {
                self.inner
                    .outboxes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&peer);
                self.machine().neighbour_down(peer);
            }
        }
        self.inner.nudge.notify_one();
    }
}

/// The worker: loads what was kept, then handles queued messages one at a time, forgets
/// requests that got no answer, and writes and sends what each produced, until `cancel`.
pub async fn run(posts: Posts, queue: PostsQueue, cancel: CancellationToken) {
    if let Err(e) = posts.load().await {
        tracing::warn!("kept posts not loaded: {e}");
    }
    posts.mark_ready();
    posts.flush().await;
    let mut rx = queue.0;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                let now = posts.now_ms();
                posts.machine().handle_timeout(now);
            }
            _ = posts.inner.nudge.notified() => {}
            job = rx.recv() => match job {
                Some((peer, message)) => {
                    let now = posts.now_ms();
                    posts.machine().handle(now, peer, message);
                }
                None => return,
            },
        }
        posts.flush().await;
    }
}

/// Spawns the worker on `tracker`.
pub fn spawn(posts: &Posts, queue: PostsQueue, tracker: &TaskTracker, cancel: CancellationToken) {
    tracker.spawn(run(posts.clone(), queue, cancel));
}
