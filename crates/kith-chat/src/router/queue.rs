//! Store-and-forward: routed copies waiting for a route, and copies waiting for their next
//! hop's ACK. Both bounded; both ordered by time so the earliest deadline is at the front.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use kith_crypto::NodeId;

use super::NeighbourId;
use crate::message::Envelope;

/// A copy waiting for a route to its target.
#[derive(Debug, Clone)]
pub(crate) struct Waiting {
    pub envelope: Envelope,
    pub target: NodeId,
    pub expires: Instant,
    seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StoreQueue {
    entries: HashMap<String, Waiting>,
    by_target: HashMap<NodeId, Vec<String>>,
    expiry: BTreeMap<(Instant, u64), String>,
    seq: u64,
}

impl StoreQueue {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds (or replaces) an entry; returns the key of an entry evicted to stay within `max`.
    pub(crate) fn push(
        &mut self,
        key: String,
        envelope: Envelope,
        target: NodeId,
        expires: Instant,
        max: usize,
    ) -> Option<String> {
        self.remove(&key);
        let mut evicted = None;
        if self.entries.len() >= max.max(1) {
            if let Some((_, oldest)) = self.expiry.first_key_value() {
                let oldest = oldest.clone();
                self.remove(&oldest);
                evicted = Some(oldest);
            }
        }
        self.seq += 1;
        self.expiry.insert((expires, self.seq), key.clone());
        self.by_target.entry(target).or_default().push(key.clone());
        self.entries.insert(
            key,
            Waiting {
                envelope,
                target,
                expires,
                seq: self.seq,
            },
        );
        evicted
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<Waiting> {
        let w = self.entries.remove(key)?;
        self.expiry.remove(&(w.expires, w.seq));
        if let Some(keys) = self.by_target.get_mut(&w.target) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_target.remove(&w.target);
            }
        }
        Some(w)
    }

    /// Takes every entry for `target`, oldest first.
    pub(crate) fn take_for(&mut self, target: &NodeId) -> Vec<(String, Waiting)> {
        let keys = self.by_target.remove(target).unwrap_or_default();
        keys.into_iter()
            .filter_map(|k| {
                let w = self.entries.remove(&k)?;
                self.expiry.remove(&(w.expires, w.seq));
                Some((k, w))
            })
            .collect()
    }

    /// Every target something waits for, in a stable order.
    pub(crate) fn targets(&self) -> Vec<NodeId> {
        let mut t: Vec<NodeId> = self.by_target.keys().copied().collect();
        t.sort();
        t
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first_key_value().map(|((at, _), _)| *at)
    }

    /// Removes and returns the expired entries.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(String, Waiting)> {
        let mut gone = Vec::new();
        while let Some(((at, _), key)) = self.expiry.first_key_value() {
            if *at > now {
                break;
            }
            let key = key.clone();
            if let Some(w) = self.remove(&key) {
                gone.push((key, w));
            }
        }
        gone
    }
}

/// A copy sent to a next hop, not yet acknowledged.
#[derive(Debug, Clone)]
pub(crate) struct Unacked {
    pub envelope: Envelope,
    pub target: NodeId,
    /// Whether the driver holds it durably (Forget it once acknowledged).
    pub persisted: bool,
    deadline: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// (next hop, msg_id) to the copies (one per target).
    entries: HashMap<(NeighbourId, String), Vec<Unacked>>,
    order: VecDeque<(Instant, NeighbourId, String)>,
    count: usize,
}

impl InFlight {
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn add(
        &mut self,
        to: NeighbourId,
        envelope: Envelope,
        target: NodeId,
        persisted: bool,
        deadline: Instant,
    ) {
        let msg_id = envelope.msg_id().unwrap_or_default().to_string();
        self.order.push_back((deadline, to, msg_id.clone()));
        self.entries.entry((to, msg_id)).or_default().push(Unacked {
            envelope,
            target,
            persisted,
            deadline,
        });
        self.count += 1;
    }

    /// An ACK from `from` for `msg_id` (and this target, if it says): the copies it covers.
    pub(crate) fn ack(
        &mut self,
        from: NeighbourId,
        msg_id: &str,
        target: Option<NodeId>,
    ) -> Vec<Unacked> {
        let key = (from, msg_id.to_string());
        let Some(copies) = self.entries.get_mut(&key) else {
            return Vec::new();
        };
        let acked: Vec<Unacked> = match target {
            Some(t) => {
                let (hit, keep): (Vec<_>, Vec<_>) = copies.drain(..).partition(|c| c.target == t);
                *copies = keep;
                hit
            }
            None => std::mem::take(copies),
        };
        if copies.is_empty() {
            self.entries.remove(&key);
        }
        self.count -= acked.len();
        acked
    }

    /// Everything sent to `neighbour` (it went away): to be re-routed.
    pub(crate) fn take_neighbour(&mut self, neighbour: NeighbourId) -> Vec<Unacked> {
        let mut keys: Vec<(NeighbourId, String)> = self
            .entries
            .keys()
            .filter(|(n, _)| *n == neighbour)
            .cloned()
            .collect();
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            out.extend(self.entries.remove(&key).unwrap_or_default());
        }
        self.count -= out.len();
        out
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(at, _, _)| *at)
    }

    /// Copies whose ACK is overdue, with the next hop that did not ACK them.
    pub(crate) fn overdue(&mut self, now: Instant) -> Vec<(NeighbourId, Unacked)> {
        let mut out = Vec::new();
        while let Some((at, _, _)) = self.order.front() {
            if *at > now {
                break;
            }
            let Some((at, to, msg_id)) = self.order.pop_front() else {
                break;
            };
            let key = (to, msg_id);
            if let Some(copies) = self.entries.get_mut(&key) {
                let (due, keep): (Vec<_>, Vec<_>) =
                    copies.drain(..).partition(|c| c.deadline <= at);
                *copies = keep;
                if copies.is_empty() {
                    self.entries.remove(&key);
                }
                self.count -= due.len();
                out.extend(due.into_iter().map(|c| (to, c)));
            }
        }
        out
    }

    /// Drops the copy closest to its deadline (to stay within the bound).
    pub(crate) fn evict_oldest(&mut self) -> Option<Unacked> {
        while let Some((_, to, msg_id)) = self.order.pop_front() {
            let key = (to, msg_id);
            if let Some(copies) = self.entries.get_mut(&key) {
                if !copies.is_empty() {
                    let c = copies.remove(0);
                    if copies.is_empty() {
                        self.entries.remove(&key);
                    }
                    self.count -= 1;
                    return Some(c);
                }
            }
        }
        None
    }
}
