//! Where `items-r` answers go: the windowed fetches running now, and which of them asked
//! which peer for which item.
//!
//! A fetch registers ([`Pulls::register`]) and gets a channel of [`PullInput`]s; before it
//! asks a peer for an item (or a file) it takes the route `(peer, hash)`
//! ([`Pulls::route_item`]), and the answer that matches a route is forwarded to it, the route
//! consumed. So what a fetch can be sent is bounded by what it asked for: every item that
//! reaches its channel was requested (the scheduler's window bounds those), and an item that
//! matches no route (nobody asked that peer for it) is dropped and counted here, on the link
//! task, before it costs anything more; the fetches that use that peer as a source are told
//! once, and drop it. A cancelled request keeps its route, so an item already on its way is
//! taken as late, not as an offence; so do the requests of a fetch that has ended (they are
//! cancelled, but items may be on their way): they stay as *retired* routes for
//! [`RETIRED_FOR`], at most [`MAX_RETIRED`] of them.

use super::ExchangeCounters;
use kith_crypto::identity::AgentId;
use kith_proto::files::items::{Response, WireError};
use kith_proto::wire::Envelope;
use kith_store::ContentHash;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long the requests of an ended fetch are remembered.
pub(super) const RETIRED_FOR: Duration = Duration::from_secs(120);
/// Requests of ended fetches remembered at most (the oldest is forgotten first).
pub(super) const MAX_RETIRED: usize = 4096;

/// What a windowed fetch hears from its sources.
#[derive(Debug)]
pub(super) enum PullInput {
    /// An answer it asked for.
    Response(AgentId, Response),
    /// The peer sent something unusable (malformed, or an item nobody asked for): it is out.
    Offence(AgentId, Offence),
    /// The peer's link went down.
    Down(AgentId),
}

/// What a source did wrong on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Offence {
    /// An envelope that does not decode (an item over the limit, a bad answer).
    Malformed,
    /// An item nobody asked it for.
    Unsolicited,
}

#[derive(Debug)]
struct Entry {
    tx: mpsc::UnboundedSender<PullInput>,
    sources: HashSet<AgentId>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    fetches: HashMap<u64, Entry>,
    /// Who asked `(peer, item)`, and how many answers it is owed (a request given up and
    /// asked again is owed twice: the first answer may already be on its way).
    routes: HashMap<(AgentId, ContentHash), (u64, u32)>,
    queries: HashMap<(AgentId, ContentHash), u64>,
    /// Requests of ended fetches, oldest first: an item for one is late, not unsolicited.
    retired: VecDeque<((AgentId, ContentHash), Instant)>,
    retired_set: HashSet<(AgentId, ContentHash)>,
}

impl Table {
    fn retire(&mut self, key: (AgentId, ContentHash), now: Instant) {
        if !self.retired_set.insert(key) {
            return;
        }
        self.retired.push_back((key, now));
        while self.retired.len() > MAX_RETIRED {
            if let Some((old, _)) = self.retired.pop_front() {
                self.retired_set.remove(&old);
            }
        }
    }

    /// Forgets retired routes older than [`RETIRED_FOR`].
    fn expire_retired(&mut self, now: Instant) {
        while let Some((old, at)) = self.retired.front() {
            if now.saturating_duration_since(*at) < RETIRED_FOR {
                break;
            }
            let old = *old;
            self.retired.pop_front();
            self.retired_set.remove(&old);
        }
    }
}

/// The routing table (see the module docs).
#[derive(Debug, Clone, Default)]
pub(super) struct Pulls {
    table: Arc<Mutex<Table>>,
}

/// A fetch's registration; removes it and its routes when dropped.
#[derive(Debug)]
pub(super) struct PullHandle {
    pulls: Pulls,
    pub(super) id: u64,
}

impl Drop for PullHandle {
    fn drop(&mut self) {
        let mut t = self.pulls.lock();
        let id = self.id;
        t.fetches.remove(&id);
        let mine: Vec<_> = t
            .routes
            .iter()
            .filter(|(_, (owner, _))| *owner == id)
            .map(|(key, _)| *key)
            .collect();
        let now = Instant::now();
        for key in mine {
            t.routes.remove(&key);
            t.retire(key, now);
        }
        t.queries.retain(|_, owner| *owner != id);
    }
}

impl Pulls {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a fetch.
    pub(super) fn register(&self) -> (PullHandle, mpsc::UnboundedReceiver<PullInput>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut t = self.lock();
        t.next_id += 1;
        let id = t.next_id;
        t.fetches.insert(
            id,
            Entry {
                tx,
                sources: HashSet::new(),
            },
        );
        (
            PullHandle {
                pulls: self.clone(),
                id,
            },
            rx,
        )
    }

    /// `peer` is a source of fetch `id` (told of its offences and its link going down).
    pub(super) fn add_source(&self, id: u64, peer: AgentId) {
        if let Some(entry) = self.lock().fetches.get_mut(&id) {
            entry.sources.insert(peer);
        }
    }

    /// `peer` is out of fetch `id`: its routes go, so whatever it sends later is unsolicited.
    pub(super) fn drop_source(&self, id: u64, peer: &AgentId) {
        let mut t = self.lock();
        if let Some(entry) = t.fetches.get_mut(&id) {
            entry.sources.remove(peer);
        }
        t.routes
            .retain(|(p, _), (owner, _)| !(*owner == id && p == peer));
        t.queries
            .retain(|(p, _), owner| !(*owner == id && p == peer));
    }

    /// Takes the route for fetch `id` asking `peer` for `hash`; false when another fetch
    /// has asked `peer` for it already (then ask later, or elsewhere).
    pub(super) fn route_item(&self, id: u64, peer: AgentId, hash: ContentHash) -> bool {
        let mut t = self.lock();
        let route = t.routes.entry((peer, hash)).or_insert((id, 0));
        if route.0 != id {
            return false;
        }
        route.1 += 1;
        true
    }

    /// Takes the route for fetch `id` asking `peer` about the file `file`.
    pub(super) fn route_query(&self, id: u64, peer: AgentId, file: ContentHash) -> bool {
        let mut t = self.lock();
        match t.queries.get(&(peer, file)) {
            Some(owner) => *owner == id,
            None => {
                t.queries.insert((peer, file), id);
                true
            }
        }
    }

    /// Routes one `items-r` envelope from `peer`. Never blocks.
    pub(super) fn dispatch(
        &self,
        peer: AgentId,
        envelope: &Envelope,
        max_item: usize,
        counters: &ExchangeCounters,
    ) {
        let response = match Response::decode(envelope, max_item) {
            Ok(response) => response,
            Err(e) => {
                counters.items_malformed.bump();
                tracing::debug!(peer = %peer, "bad items-r envelope: {e}");
                return self.offence(peer, offence_of(&e));
            }
        };
        let mut t = self.lock();
        let key = (peer, response.hash());
        let owner = match &response {
            Response::Answer(_) => t.queries.remove(&key),
            _ => match t.routes.get_mut(&key) {
                Some((owner, owed)) => {
                    let owner = *owner;
                    *owed -= 1;
                    if *owed == 0 {
                        t.routes.remove(&key);
                    }
                    Some(owner)
                }
                None => None,
            },
        };
        match (owner, &response) {
            (Some(id), _) => {
                if let Some(entry) = t.fetches.get(&id) {
                    let _ = entry.tx.send(PullInput::Response(peer, response));
                }
            }
            (None, Response::Item { .. }) => {
                let now = Instant::now();
                t.expire_retired(now);
                if t.retired_set.remove(&key) {
                    // Asked for by a fetch that has ended: late, no offence.
                    counters.items_late.bump();
                    return;
                }
                counters.items_unsolicited.bump();
                drop(t);
                self.offence(peer, Offence::Unsolicited);
            }
            // An answer nobody waits for (its fetch ended): harmless.
            (None, _) => counters.ciyam_envelopes_dropped.bump(),
        }
    }

    /// Tells every fetch that uses `peer` as a source, once: each drops it.
    fn offence(&self, peer: AgentId, offence: Offence) {
        let mut t = self.lock();
        let mut told = Vec::new();
        for (id, entry) in t.fetches.iter_mut() {
            if entry.sources.remove(&peer) {
                let _ = entry.tx.send(PullInput::Offence(peer, offence));
                told.push(*id);
            }
        }
        t.routes
            .retain(|(p, _), (owner, _)| !(p == &peer && told.contains(owner)));
        t.queries
            .retain(|(p, _), owner| !(p == &peer && told.contains(owner)));
    }

    /// `peer`'s last link went down.
    pub(super) fn link_down(&self, peer: &AgentId) {
        let mut t = self.lock();
        for entry in t.fetches.values_mut() {
            if entry.sources.remove(peer) {
                let _ = entry.tx.send(PullInput::Down(*peer));
            }
        }
        t.routes.retain(|(p, _), _| p != peer);
        t.queries.retain(|(p, _), _| p != peer);
    }
}

fn offence_of(_error: &WireError) -> Offence {
    Offence::Malformed
}
