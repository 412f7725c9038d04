//! Fair replication: files offered to peers, and fetched in the background.
//!
//! **Offers.** `kith file share HASH` marks a stored file as shared (a row in the database, so
//! it survives restarts) and sends every linked peer an `offer` envelope
//! ([`kith_proto::files::offer`]: the file's 32-byte address, then its size). A peer that
//! links later gets offers for the most recently shared files when its link comes up (at most
//! [`crate::limits::NodeLimits::max_offers_per_link`]).
//!
//! **Replication.** A node that receives an offer queues it and one background task works
//! through the queue ([`queue`]): a file already held is skipped, one that would take the
//! node past [`crate::limits::NodeLimits::max_replica_bytes`] (small by default, 0 declines every
//! offer; `kith status` shows the bytes held and the quota) is declined, and otherwise the
//! file is fetched from the peer that offered it with the ordinary fetch
//! ([`crate::exchange`]): resuming, item by item, with a byte budget set by the offered size
//! so a peer cannot push more than it announced. The fetched file is recorded as a replica.
//!
//! **Fairness.** Offers are queued per peer, each peer's queue bounded, and the replicator
//! takes one offer from each peer in turn, so one peer's flood of offers cannot starve the
//! others. A peer whose offers fail (it offers what it never serves) waits longer and longer
//! between turns; a success resets its wait.
//!
//! **Turns.** A background fetch gives way to the user: when `kith file get` or a custody
//! command needs the same peer, the background session ends at its next turn with `bye` and
//! is queued again (the items it already has are not fetched again). So replication never
//! stalls a transfer the user asked for.
//!
//! Uploads are ranked by what each peer gives back (choking): see [`crate::exchange::choke`].

pub mod queue;
mod replicator;

pub use kith_proto::files::offer::OFFER_COMMAND;

use crate::api::ShareReport;
use crate::clock::SharedClock;
use crate::endpoint::{envelope, Endpoint, Payload};
use crate::exchange::Exchange;
use crate::limits::NodeLimits;
use crate::protocol::{LinkEvent, ProtocolHandler};
use crate::store::{Store, StoreFailure};
use kith_crypto::identity::AgentId;
use kith_proto::files::offer::Offer;
use kith_store::ContentHash;
use queue::ReplicationQueue;
use std::sync::Arc;

/// Why sharing failed.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The file is not stored here.
    #[error("no stored file has the hash {0}; store it first with `kith file put PATH`")]
    NotStored(String),
    /// The database or store failed.
    #[error(transparent)]
    Store(#[from] StoreFailure),
}

crate::counters! {
    /// What sharing and replication count.
    pub struct SharingCounters {
        /// Offers sent to peers.
        offers_sent,
        /// Offers received.
        offers_received,
        /// Offers that did not parse.
        offers_malformed,
        /// Offers declined: over the replica quota.
        offers_declined_quota,
        /// Offers dropped: the offering peer's queue was full.
        offers_dropped_queue_full,
        /// Offers of files already held here.
        offers_already_held,
        /// Files replicated.
        replications_completed,
        /// Replications that failed (and were dropped).
        replications_failed,
        /// Replications put back in the queue (gave way, or failed for now).
        replications_retried,
    }
}

/// The sharing service: a handle, cheap to clone.
#[derive(Debug, Clone)]
pub struct Sharing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Endpoint,
    store: Store,
    exchange: Exchange,
    limits: NodeLimits,
    clock: SharedClock,
    queue: ReplicationQueue,
    counters: SharingCounters,
}

impl Sharing {
    /// The service: offers over `endpoint`, replicas fetched through `exchange` into `store`.
    pub fn new(
        endpoint: Endpoint,
        store: Store,
        exchange: Exchange,
        limits: NodeLimits,
        clock: SharedClock,
    ) -> Sharing {
        let queue = ReplicationQueue::new(
            limits.max_pending_replications,
            queue::per_peer_share(limits.max_pending_replications),
        );
        Sharing {
            inner: Arc::new(Inner {
                endpoint,
                store,
                exchange,
                limits,
                clock,
                queue,
                counters: SharingCounters::default(),
            }),
        }
    }

    /// What this service counts.
    pub fn counters(&self) -> &SharingCounters {
        &self.inner.counters
    }

    /// Offers waiting for the replicator.
    pub fn queued(&self) -> usize {
        self.inner.queue.len()
    }

    /// The most this node keeps of other peers' files.
    pub fn quota(&self) -> u64 {
        self.inner.limits.max_replica_bytes
    }

    /// Bytes of replicas held now.
    pub async fn replica_bytes(&self) -> Result<u64, StoreFailure> {
        self.inner.store.run(|s| s.meta().replica_bytes()).await
    }

    /// Marks `hash` as shared and offers it to every linked peer now.
    pub async fn share(&self, hash: ContentHash) -> Result<ShareReport, ShareError> {
        let now = self.inner.clock.unix_secs();
        let (offer, newly_shared) = self
            .inner
            .store
            .run(move |s| {
                let Some(offer) = offer_of(s.meta(), hash)? else {
                    return Ok(None);
                };
                let newly = s.meta().share_file(&hash, now)?;
                Ok::<_, kith_store::StoreError>(Some((offer, newly)))
            })
            .await?
            .ok_or_else(|| ShareError::NotStored(hash.to_hex()))?;
        let mut offered_to = Vec::new();
        for peer in self.inner.endpoint.linked() {
            if self.send_offer(peer, offer).await {
                offered_to.push(peer.to_string());
            }
        }
        Ok(ShareReport {
            hash: hash.to_hex(),
            size: offer.size,
            newly_shared,
            offered_to,
        })
    }

    /// Stops offering `hash`; `false` when it was not shared.
    pub async fn unshare(&self, hash: ContentHash) -> Result<bool, ShareError> {
        Ok(self
            .inner
            .store
            .run(move |s| s.meta().unshare_file(&hash))
            .await?)
    }

    /// Starts the background replicator.
    pub fn spawn_replicator(
        &self,
        tracker: &tokio_util::task::TaskTracker,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        tracker.spawn(replicator::replicate(self.clone(), cancel));
    }

    async fn send_offer(&self, peer: AgentId, offer: Offer) -> bool {
        let sent = self
            .inner
            .endpoint
            .send_linked(peer, envelope(OFFER_COMMAND, offer.encode()))
            .await
            .is_ok();
        if sent {
            self.inner.counters.offers_sent.bump();
        }
        sent
    }

    /// A link with `peer` came up: offer it our shared files (in the background).
    fn offer_shared_files(&self, peer: AgentId) {
        let limit = self.inner.limits.max_offers_per_link;
        if limit == 0 {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let offers = this
                .inner
                .store
                .run(move |s| {
                    let mut offers = Vec::new();
                    for hash in s.meta().shared_files(limit)? {
                        offers.extend(offer_of(s.meta(), hash)?);
                    }
                    Ok::<_, kith_store::MetaError>(offers)
                })
                .await;
            match offers {
                Ok(offers) => {
                    for offer in offers {
                        if !this.send_offer(peer, offer).await {
                            break;
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot list shared files: {e}"),
            }
        });
    }
}

/// The offer of the stored file `hash`: its size, and for a folder its files' too (what a
/// replica of it stores: the replicator fetches a folder whole). `None` when not stored.
fn offer_of(
    meta: &dyn kith_store::meta::MetaDb,
    hash: ContentHash,
) -> Result<Option<Offer>, kith_store::MetaError> {
    let Some(record) = meta.get_file(&hash)? else {
        return Ok(None);
    };
    let files = meta.get_folder(&hash)?.map_or(0, |folder| folder.bytes);
    Ok(Some(Offer {
        hash,
        size: record.size.saturating_add(files),
    }))
}

impl ProtocolHandler for Sharing {
    fn commands(&self) -> &'static [&'static str] {
        &[OFFER_COMMAND]
    }

    /// An `offer` from `peer`: queued for the replicator, or dropped and counted.
    fn on_payload(&self, peer: AgentId, payload: Payload) {
        let counters = &self.inner.counters;
        let offer = match &payload {
            Payload::Envelope(envelope) => Offer::decode(&envelope.data),
            Payload::Json(_) => None,
        };
        let Some(offer) = offer else {
            counters.offers_malformed.bump();
            return;
        };
        counters.offers_received.bump();
        if offer.size > self.inner.limits.max_replica_bytes {
            counters.offers_declined_quota.bump();
            return;
        }
        if !self.inner.queue.push(peer, offer) {
            counters.offers_dropped_queue_full.bump();
        }
    }

    fn on_link(&self, event: LinkEvent) {
        if let LinkEvent::Up { peer, .. } = event {
            self.offer_shared_files(peer);
        }
    }
}
