//! Fair replication: files offered to peers, fetched in the background, and uploads ranked by
//! what each peer gives back.
//!
//! **Offers.** `kith file share HASH` marks a stored file as shared (a row in the database, so
//! it survives restarts) and sends every linked peer an `offer` envelope
//! ([`kith_proto::files::offer`]: the file's 32-byte address, then its size). A peer that links later
//! gets offers for the most recently shared files when its link comes up (at most
//! [`kith_proto::Limits::max_offers_per_link`]).
//!
//! **Replication.** A node that receives an offer queues it (bounded:
//! [`kith_proto::Limits::max_pending_replications`]; duplicates are merged) and one background
//! task works through the queue: a file already held is skipped, one that would take the node
//! past [`kith_proto::Limits::max_replica_bytes`] (0 declines every offer) is declined, and
//! otherwise the file is fetched from the peer that offered it with the ordinary fetch
//! ([`crate::exchange`]): resuming, item by item, with a byte budget set by the offered size
//! so a peer cannot push more than it announced. The fetched file is recorded as a replica.
//!
//! **Turns.** A background fetch gives way to the user: when `kith file get` or a custody
//! command needs the same peer, the background session ends at its next turn with `bye` and
//! is queued again (the items it already has are not fetched again). So replication never
//! stalls a transfer the user asked for.
//!
//! **Choking.** Every item this node uploads takes one of
//! [`kith_proto::Limits::upload_slots`] ([`Uploads`]); under contention the peers that gave
//! this node the most lately are served first, and every few slots go to the peer that has
//! waited longest ([`choke`]). What each peer gave and took is shown by `kith peers`.

pub mod choke;
mod replicator;
pub mod uploads;

pub use kith_proto::files::offer::OFFER_COMMAND;
pub use replicator::{replicate, ReplicationQueue};
pub use uploads::{UploadPermit, Uploads};

use crate::links::Outgoing;
use crate::node::NodeState;
use kith_crypto::identity::AgentId;
use kith_proto::files::offer::Offer;
use kith_proto::files::ItemHash;
use kith_proto::wire::Envelope;
use kith_store::ContentHash;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What `kith file share` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareReport {
    /// The file.
    pub hash: String,
    /// Its size.
    pub size: u64,
    /// False when it was shared already (it is offered again anyway).
    pub newly_shared: bool,
    /// The linked peers it was offered to now.
    pub offered_to: Vec<String>,
}

/// Why sharing failed.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The file is not stored here.
    #[error("no stored file has the hash {0}; store it first with `kith file put PATH`")]
    NotStored(String),
    /// The database or store failed.
    #[error("{0}")]
    Store(String),
}

/// Marks `hash` as shared and offers it to every linked peer now.
pub async fn share(state: &Arc<NodeState>, hash: ContentHash) -> Result<ShareReport, ShareError> {
    let now = crate::ticket::unix_secs(std::time::SystemTime::now());
    let (record, newly_shared) = state
        .with_store(move |s| {
            let Some(record) = s.get(&hash)? else {
                return Ok(None);
            };
            let newly = s.meta().share_file(&hash, now)?;
            Ok::<_, kith_store::StoreError>(Some((record, newly)))
        })
        .await
        .map_err(ShareError::Store)?
        .map_err(|e| ShareError::Store(e.to_string()))?
        .ok_or_else(|| ShareError::NotStored(hash.to_hex()))?;
    let offer = Offer {
        hash: ItemHash(hash.0),
        size: record.size,
    };
    let mut offered_to = Vec::new();
    for peer in state.links.linked() {
        if send_offer(state, peer, offer).await {
            offered_to.push(peer.to_string());
        }
    }
    Ok(ShareReport {
        hash: hash.to_hex(),
        size: record.size,
        newly_shared,
        offered_to,
    })
}

/// Stops offering `hash`; `false` when it was not shared.
pub async fn unshare(state: &Arc<NodeState>, hash: ContentHash) -> Result<bool, ShareError> {
    state
        .with_store(move |s| s.meta().unshare_file(&hash))
        .await
        .map_err(ShareError::Store)?
        .map_err(|e| ShareError::Store(e.to_string()))
}

async fn send_offer(state: &NodeState, peer: AgentId, offer: Offer) -> bool {
    match state.links.sender(&peer) {
        Some(tx) => {
            let sent = tx
                .send(Outgoing::Envelope(crate::net::link::envelope(
                    OFFER_COMMAND,
                    offer.encode(),
                )))
                .await
                .is_ok();
            if sent {
                state.counters.bump("offers_sent");
            }
            sent
        }
        None => false,
    }
}

/// A link with `peer` came up: offer it our shared files (in the background).
pub fn link_up(state: &Arc<NodeState>, peer: AgentId) {
    let limit = state.config.limits.max_offers_per_link;
    if limit == 0 {
        return;
    }
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let offers = state
            .with_store(move |s| {
                let mut offers = Vec::new();
                for hash in s.meta().shared_files(limit)? {
                    if let Some(record) = s.meta().get_file(&hash)? {
                        offers.push(Offer {
                            hash: ItemHash(hash.0),
                            size: record.size,
                        });
                    }
                }
                Ok::<_, kith_store::MetaError>(offers)
            })
            .await;
        match offers {
            Ok(Ok(offers)) => {
                for offer in offers {
                    if !send_offer(&state, peer, offer).await {
                        break;
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!("cannot list shared files: {e}"),
            Err(e) => tracing::warn!("cannot list shared files: {e}"),
        }
    });
}

/// An `offer` envelope from `peer`: queued for the replicator, or dropped and counted.
pub fn on_offer(state: &Arc<NodeState>, peer: AgentId, envelope: &Envelope) {
    let Some(offer) = Offer::decode(&envelope.data) else {
        state.counters.bump("offers_malformed");
        return;
    };
    state.counters.bump("offers_received");
    let limits = &state.config.limits;
    if offer.size > limits.max_replica_bytes {
        state.counters.bump("offers_declined_quota");
        return;
    }
    if !state.replication.push(peer, offer) {
        state.counters.bump("offers_dropped_queue_full");
    }
}
