//! Persistence is a question the router asks: it emits [`Output::Persist`] and waits for the
//! driver's answer ([`Router::persisted`]) before it does what depends on the copy being
//! durable: ACK the previous hop of a relayed copy it keeps, or send the user's own message.
//! A failed store is never acknowledged: the previous hop keeps its copy and tries again
//! after its ACK deadline, and the user's message is reported not stored
//! ([`ChatEvent::NotStored`]) and not sent.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use kith_crypto::NodeId;

use super::{ChatEvent, NeighbourId, Output, QueuedMessage, Router};
use crate::message::Envelope;

/// What to do once a copy is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterStore {
    /// A relayed copy with no route: keep it and ACK its previous hop.
    Relay {
        /// The previous hop.
        ack_to: NeighbourId,
    },
    /// Our own KEY: send it, or keep it until a route appears.
    Local,
    /// A copy of one of the user's messages ([`Router::posted`]): a direct one is sent, or
    /// kept until a route appears; a channel member's waits for the flood's receipt (or for
    /// a route, without one).
    Post {
        /// A channel member's copy.
        channel: bool,
    },
    /// A copy already ACKed upstream whose next hop failed: keep it either way (in memory
    /// if the store failed).
    Requeue,
}

#[derive(Debug)]
struct Storing {
    envelope: Envelope,
    target: NodeId,
    after: AfterStore,
    seq: u64,
}

/// Copies waiting for the driver's answer, bounded.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    by_key: HashMap<String, Storing>,
    order: BTreeMap<u64, String>,
    seq: u64,
}

impl Pending {
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    fn insert(&mut self, key: String, s: Storing) {
        self.remove(&key);
        self.order.insert(s.seq, key.clone());
        self.by_key.insert(key, s);
    }

    fn remove(&mut self, key: &str) -> Option<Storing> {
        let s = self.by_key.remove(key)?;
        self.order.remove(&s.seq);
        Some(s)
    }

    fn oldest(&self) -> Option<String> {
        self.order.first_key_value().map(|(_, k)| k.clone())
    }
}

impl Router {
    /// Asks the driver to store `env` (the copy for `target`, under `key`), then does `after`
    /// when told it is stored.
    pub(crate) fn store_then(
        &mut self,
        now: Instant,
        key: String,
        env: Envelope,
        target: NodeId,
        after: AfterStore,
    ) {
        if self.storing.len() >= self.config.max_queued.max(1) {
            // A driver that never answers must not make us hold everything: the oldest
            // question is dropped as if it had failed.
            if let Some(oldest) = self.storing.oldest() {
                self.persisted(now, &oldest, false);
            }
        }
        self.outputs.push_back(Output::Persist(QueuedMessage {
            key: key.clone(),
            target,
            json: env.encode(),
        }));
        self.storing.seq += 1;
        let seq = self.storing.seq;
        self.storing.insert(
            key,
            Storing {
                envelope: env,
                target,
                after,
                seq,
            },
        );
    }

    /// The driver's answer to [`Output::Persist`] for `key`: `stored` is false when the copy
    /// could not be made durable. Unknown keys are ignored.
    pub fn persisted(&mut self, now: Instant, key: &str, stored: bool) {
        let Some(s) = self.storing.remove(key) else {
            return;
        };
        let msg_id = s.envelope.msg_id().unwrap_or_default().to_string();
        if !stored {
            self.counters.persist_failed += 1;
            match s.after {
                // No ACK: the previous hop still holds the copy and will try again.
                AfterStore::Relay { .. } => {}
                AfterStore::Local => self.deliver(ChatEvent::NotStored { msg_id }),
                AfterStore::Post { .. } => self.posted(now, &msg_id, false, false),
                AfterStore::Requeue => {
                    self.enqueue(now, key.to_string(), s.envelope, s.target);
                }
            }
            return;
        }
        match s.after {
            AfterStore::Relay { ack_to } => {
                self.enqueue(now, key.to_string(), s.envelope, s.target);
                self.send_ack(ack_to, msg_id, Some(s.target));
                self.flush_queue_for(now, s.target);
            }
            AfterStore::Local => {
                self.send_stored(now, s.envelope, s.target);
            }
            AfterStore::Post { channel: false } => {
                let queued = !self.send_stored(now, s.envelope, s.target);
                self.posted(now, &msg_id, true, queued);
            }
            AfterStore::Post { channel: true } => {
                let queued = !self.await_flood_receipt(now, key.to_string(), s.envelope, s.target);
                self.posted(now, &msg_id, true, queued);
            }
            AfterStore::Requeue => {
                self.enqueue(now, key.to_string(), s.envelope, s.target);
                self.flush_queue_for(now, s.target);
            }
        }
        self.after_table_change(now);
    }
}
