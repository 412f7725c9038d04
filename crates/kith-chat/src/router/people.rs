//! The people this node has heard of: display names, when each was last heard from, and the
//! ones the user blocked.
//!
//! Names are display only (an id is its GUID): a name comes from a node's own HELLO (its id's
//! `name@` part or the `name` attribute), from the ids in the messages it authored, or, weakest,
//! from ROUTING entries (the later revision lists `name@GUID`). The later revision needs a name
//! for every id it writes (`target_id`), so what was learned is what goes there (`kith` when
//! nothing was). The table is bounded: the entry heard from longest ago goes first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use kith_crypto::NodeId;

use super::{NeighbourKind, Router};
use crate::message::ChatId;

/// How much a name is to be believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Source {
    /// Someone else's ROUTING listed it.
    Hearsay,
    /// The node's own message (verified or from its own connection).
    Own,
}

#[derive(Debug, Clone)]
struct Person {
    name: Option<String>,
    source: Source,
    last_seen: Instant,
    seq: u64,
}

/// A person as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonView {
    /// The id, with the name last learned.
    pub id: ChatId,
    /// A neighbour now (linked, or on the chat port).
    pub neighbour: bool,
    /// Hops away, when there is a route.
    pub hops: Option<u8>,
    /// When something of it was last heard (virtual time of the router's clock).
    pub last_seen: Instant,
    /// The user blocked it.
    pub blocked: bool,
}

#[derive(Debug)]
pub(crate) struct People {
    by_id: HashMap<NodeId, Person>,
    /// (seq of last refresh) to id, oldest first.
    order: BTreeMap<u64, NodeId>,
    seq: u64,
    max: usize,
    blocked: HashSet<NodeId>,
}

impl People {
    pub(crate) fn new(max: usize) -> People {
        People {
            by_id: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
            max: max.max(1),
            blocked: HashSet::new(),
        }
    }

    /// Records that `id` was heard of now (with its name, if it gave one).
    pub(crate) fn heard(&mut self, now: Instant, id: &ChatId, source: Source) {
        self.seq += 1;
        let seq = self.seq;
        let name = id.name.clone().filter(|n| !n.is_empty());
        if let Some(p) = self.by_id.get_mut(&id.guid) {
            self.order.remove(&p.seq);
            p.seq = seq;
            self.order.insert(seq, id.guid);
            if source == Source::Own {
                p.last_seen = p.last_seen.max(now);
            }
            if name.is_some() && source >= p.source {
                p.name = name;
                p.source = source;
            }
            return;
        }
        while self.by_id.len() >= self.max {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            self.by_id.remove(&old);
        }
        self.order.insert(seq, id.guid);
        self.by_id.insert(
            id.guid,
            Person {
                name,
                source,
                last_seen: now,
                seq,
            },
        );
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn name(&self, id: &NodeId) -> Option<&str> {
        self.by_id.get(id).and_then(|p| p.name.as_deref())
    }

    pub(crate) fn knows(&self, id: &NodeId) -> bool {
        self.by_id.contains_key(id)
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = &NodeId> {
        self.by_id.keys()
    }

    fn last_seen(&self, id: &NodeId) -> Option<Instant> {
        self.by_id.get(id).map(|p| p.last_seen)
    }

    pub(crate) fn is_blocked(&self, id: &NodeId) -> bool {
        self.blocked.contains(id)
    }

    /// Blocks or unblocks; bounded by the table's size (a user blocks a few, not millions).
    pub(crate) fn set_blocked(&mut self, id: NodeId, blocked: bool) -> bool {
        if !blocked {
            return self.blocked.remove(&id);
        }
        if self.blocked.len() >= self.max {
            return false;
        }
        self.blocked.insert(id)
    }
}

impl Router {
    /// `guid` with the name this node knows for it.
    pub(crate) fn chat_id(&self, guid: NodeId) -> ChatId {
        if guid == self.me.guid {
            return self.me.clone();
        }
        ChatId::named(guid, self.people.name(&guid).map(str::to_string))
    }

    /// Everyone this node has heard of, with presence.
    pub fn people(&self) -> Vec<PersonView> {
        let neighbours: HashSet<NodeId> = self
            .neighbours
            .values()
            .filter_map(|n| n.node_id.as_ref().map(|i| i.guid))
            .collect();
        let mut all: Vec<PersonView> = self
            .people
            .ids()
            .filter(|id| **id != self.me.guid)
            .map(|id| PersonView {
                id: self.chat_id(*id),
                neighbour: neighbours.contains(id),
                hops: self.table.route(id).map(|r| r.hops),
                last_seen: self.people.last_seen(id).unwrap_or(self.started),
                blocked: self.people.is_blocked(id),
            })
            .collect();
        all.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then(a.id.guid.cmp(&b.id.guid))
        });
        all
    }

    /// Whether this node has any knowledge of `id`: a route, a key, or having heard of it.
    pub fn knows(&self, id: &NodeId) -> bool {
        *id == self.me.guid
            || self.table.route(id).is_some()
            || self.certs.get(id).is_some()
            || self.people.knows(id)
    }

    /// Every id this node has heard called `name` (case-insensitive), for resolving what
    /// the user typed.
    pub fn ids_named(&self, name: &str) -> Vec<ChatId> {
        let mut ids: Vec<ChatId> = self
            .people
            .ids()
            .filter(|id| {
                self.people
                    .name(id)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .map(|id| self.chat_id(*id))
            .collect();
        ids.sort_by_key(|i| i.guid);
        ids
    }

    /// Blocks (or unblocks) `id`: nothing it authors is acted on, shown or passed on. A
    /// neighbour with that id stays connected (it may carry others' messages); only its own
    /// are dropped. False when nothing changed.
    pub fn block(&mut self, _now: Instant, id: NodeId, blocked: bool) -> bool {
        if id == self.me.guid {
            return false;
        }
        self.people.set_blocked(id, blocked)
    }

    /// Whether `id` is blocked.
    pub fn is_blocked(&self, id: &NodeId) -> bool {
        self.people.is_blocked(id)
    }

    /// This node's display name from now on (`None`: none); said again to every neighbour
    /// in a HELLO (its `name` attribute and `name@` id), and used in every id it writes.
    pub fn set_name(&mut self, name: Option<String>) {
        self.me.name = name.clone();
        self.config.name = name;
        let ids: Vec<_> = self.neighbours.keys().copied().collect();
        for nb in ids {
            if let Some(n) = self.neighbours.get_mut(&nb) {
                n.hello_sent = false;
            }
            self.send_hello(nb);
        }
    }

    /// Whether `nb` is a kith node over a secure link.
    pub(crate) fn is_node(&self, nb: super::NeighbourId) -> bool {
        self.neighbours
            .get(&nb)
            .is_some_and(|n| matches!(n.info.kind, NeighbourKind::Node { .. }))
    }
}
