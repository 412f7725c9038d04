//! Value: MyCHIPs tallies and chits between this site's users and their partners, as a
//! protocol handler (`Tallies`, the handler of JSON payloads: the reference's messages, one
//! JSON object per frame).
//!
//! The formats, signatures and the chain's consensus are `kith_value`'s (sans-IO); this
//! module carries them: `dialog.rs` the tally dialog (a tally ticket's first contact, offer,
//! counter-offer, open, void), `chits.rs` payments, invoices, refusals and chain messages,
//! `ledger.rs` the chain as the database holds it, `users.rs` the users' keys and
//! certificates, `resolve.rs` what a user's PARTNER names.
//!
//! Rules kept here:
//! - **Only business with partners**: a message about a tally must come from the site that
//!   holds the other side of it (proven by the link, never by the message's `from`); anything
//!   else is refused and counted. First contact needs a tally ticket this site issued.
//! - **Durable before acknowledged**: every change is committed (one transaction, locked on
//!   the tally: `MetaDb::value_tally_tx`) before any message about it leaves.
//! - **Links never wait on us**: payloads are queued (bounded) for one worker; a full queue
//!   drops and counts, and the chain's resynchronisation (on link up, and every few seconds
//!   while anything is unconfirmed) recovers what was dropped or lost.

mod chits;
mod datt;
mod dialog;
mod ledger;
pub(crate) mod resolve;
pub mod users;

use crate::api::value::{ChitView, TallyView};
use crate::clock::SharedClock;
use crate::endpoint::{Endpoint, EndpointError, Payload};
use crate::protocol::{LinkEvent, ProtocolHandler, JSON_PAYLOADS};
use crate::store::{Store, StoreFailure};
use bytes::Bytes;
use kith_crypto::identity::AgentId;
use kith_store::meta::{ChitRow, TallyRow};
use kith_value::chain::Refusal;
use kith_value::message::Message;
use kith_value::{Chad, Side, ValueError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use users::UserError;

/// Messages queued for the worker before new ones are dropped.
const QUEUE: usize = 1024;
/// How often unconfirmed chains are resynchronised.
const RESYNC_EVERY: Duration = Duration::from_secs(5);
/// How long `pay` and `tally open` wait for the partner.
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);

crate::counters! {
    /// What the value service counts.
    pub struct TallyCounters {
        /// Value messages received.
        value_messages,
        /// Value messages dropped: the worker's queue was full.
        value_queue_full,
        /// Messages that did not parse.
        value_refused_malformed,
        /// Messages about a tally the sending site is not party to.
        value_refused_not_party,
        /// First contacts whose tally ticket was refused.
        value_refused_ticket,
        /// Tally offers refused (not ours, badly signed).
        value_refused_offer,
        /// Chits or chain messages refused (bad signature, over the limit, fork, conflict).
        value_refused_chit,
        /// Tallies opened.
        tallies_opened,
        /// Chits chained (ours and the partners').
        chits_chained,
        /// Invoices received.
        invoices_received,
        /// Datt: items not served because the peer had not paid for them.
        datt_unpaid_items_refused,
        /// Datt: priced requests from sites that share no tally with us.
        datt_no_tally,
        /// Datt: custody not taken because the owner had not paid for it.
        datt_unpaid_custody_refused,
        /// Datt: payments received for requested files and custody.
        datt_payments_received,
    }
}

/// Why a value request failed (shown to the user as is).
#[derive(Debug, thiserror::Error)]
pub enum TallyError {
    /// A user problem.
    #[error(transparent)]
    User(#[from] UserError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreFailure),
    /// The partner's site could not be reached.
    #[error(transparent)]
    Net(#[from] EndpointError),
    /// A document is malformed.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// Nothing matches.
    #[error("{0}")]
    NotFound(String),
    /// Bad input.
    #[error("{0}")]
    BadInput(String),
    /// Refused here, before anything changed.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The partner refused.
    #[error("the partner refused: {0}")]
    PartnerRefused(String),
    /// The partner did not answer in time (what was done here stays, and is retried).
    #[error("{0}")]
    Timeout(String),
}

impl From<kith_store::MetaError> for TallyError {
    fn from(e: kith_store::MetaError) -> TallyError {
        TallyError::Store(StoreFailure::Meta(e))
    }
}

/// What the value service is built with.
#[derive(Debug, Clone)]
pub struct TallySettings {
    /// Where the users' keys are.
    pub keys_dir: PathBuf,
    /// Wall-clock time.
    pub clock: SharedClock,
    /// Prices and payment budgets.
    pub value: crate::config::ValueConfig,
}

enum Job {
    Message(AgentId, Bytes),
    Resync(Option<AgentId>),
}

struct Inner {
    endpoint: Endpoint,
    store: Store,
    settings: TallySettings,
    counters: TallyCounters,
    queue: mpsc::Sender<Job>,
    /// Bumped after each message handled, so that waiters look again.
    changed: watch::Sender<u64>,
    /// Datt: paid allowances and quotes awaited.
    datt: datt::Datt,
    /// Tallies whose issuer confirmed our `open` (its chain `ack` at index 0), so `tally
    /// open` returns when both sides hold the tally open. Bounded: cleared when it grows.
    opened: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// The value service (a cheap handle).
#[derive(Clone)]
pub struct Tallies {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tallies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tallies").finish_non_exhaustive()
    }
}

/// The worker's end of the queue.
pub struct TallyQueue(mpsc::Receiver<Job>);

impl Tallies {
    /// The service, and the queue its worker ([`run`]) reads.
    pub fn new(endpoint: Endpoint, store: Store, settings: TallySettings) -> (Tallies, TallyQueue) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let (changed, _) = watch::channel(0);
        (
            Tallies {
                inner: Arc::new(Inner {
                    endpoint,
                    store,
                    settings,
                    counters: TallyCounters::default(),
                    queue,
                    changed,
                    datt: datt::Datt::default(),
                    opened: Default::default(),
                }),
            },
            TallyQueue(rx),
        )
    }

    /// The budget a fetch pays without asking (`[value] max_price`).
    pub fn max_price(&self) -> u64 {
        self.inner.settings.value.max_price
    }

    /// What it counts.
    pub fn counters(&self) -> &TallyCounters {
        &self.inner.counters
    }

    fn now_millis(&self) -> i64 {
        self.inner
            .settings
            .clock
            .system_now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    fn now(&self) -> i64 {
        self.inner.settings.clock.unix_secs()
    }

    /// Our user's CHAD at this site now.
    fn chad_of(&self, cuid: &str) -> Chad {
        let own = self.inner.endpoint.own_chad();
        Chad {
            cuid: cuid.to_owned(),
            agent: own.agent,
            host: own.host,
            port: own.port,
        }
    }

    /// Sends `msg` to `peer` on its link (waiting on backpressure, never dialling): for
    /// answers to what the peer just sent; a lost answer is recovered by resynchronisation.
    async fn reply(&self, peer: AgentId, msg: &Message) {
        let payload = Payload::Json(Bytes::from(msg.to_bytes()));
        if let Err(e) = self.inner.endpoint.send_linked(peer, payload).await {
            tracing::debug!(peer = %peer, "value answer not sent: {e}");
        }
    }

    /// Sends `msg` to `peer`, dialling it if needed (what our user asked for).
    async fn send(&self, peer: AgentId, msg: &Message) -> Result<(), EndpointError> {
        self.inner
            .endpoint
            .send(peer, Payload::Json(Bytes::from(msg.to_bytes())))
            .await
    }

    /// Waits until `done` says yes (re-checked after every message handled), at most
    /// `wait`.
    async fn wait_for<T, F, Fut>(&self, wait: Duration, mut check: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changed = self.inner.changed.subscribe();
        loop {
            if let Some(found) = check().await {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return check().await,
            }
        }
    }

    /// Every tally, as users see them.
    pub async fn list(&self) -> Result<Vec<TallyView>, TallyError> {
        let rows = self.inner.store.run(|s| s.meta().value_tallies()).await?;
        Ok(rows.iter().map(view_of).collect())
    }

    /// One tally's view.
    pub(crate) async fn row(&self, uuid: &str, side: Side) -> Result<Option<TallyRow>, TallyError> {
        let (uuid, side) = (uuid.to_owned(), side.as_str());
        Ok(self
            .inner
            .store
            .run(move |s| s.meta().value_tally(&uuid, side))
            .await?)
    }
}

/// A tally row as users see it.
pub(crate) fn view_of(row: &TallyRow) -> TallyView {
    let doc: serde_json::Value = serde_json::from_str(&row.doc).unwrap_or_default();
    let partner_name = kith_value::Tally::from_json(doc)
        .ok()
        .and_then(|t| t.cert(ledger::side_of(row).other()).ok())
        .map(|c| c.display_name())
        .unwrap_or_default();
    TallyView {
        tally: row.uuid.clone(),
        user: row.cuid.clone(),
        partner: row.partner.clone(),
        partner_name,
        side: row.side.clone(),
        state: row.state.clone(),
        limit: row.our_limit,
        partner_limit: row.their_limit,
        balance: row.balance,
        chits: row.chits,
        conf: row.conf_index,
    }
}

/// A chit row as users see it, from its holder's side.
pub(crate) fn chit_view(row: &ChitRow) -> ChitView {
    let chit = ledger::chit_of(row).ok();
    let ours = row.by_side == row.side;
    ChitView {
        id: row.uuid.clone(),
        tally: row.tally.clone(),
        status: row.status.clone(),
        units: if ours { -row.units } else { row.units },
        index: row.chain_idx,
        memo: chit.as_ref().and_then(|c| c.memo.clone()),
        date: chit.as_ref().map(|c| c.date.clone()).unwrap_or_default(),
        reference: chit.and_then(|c| c.reference),
    }
}

impl ProtocolHandler for Tallies {
    fn commands(&self) -> &'static [&'static str] {
        &[JSON_PAYLOADS]
    }

    fn on_payload(&self, peer: AgentId, payload: Payload) {
        let Payload::Json(bytes) = payload else {
            return;
        };
        self.inner.counters.value_messages.bump();
        if self
            .inner
            .queue
            .try_send(Job::Message(peer, bytes))
            .is_err()
        {
            self.inner.counters.value_queue_full.bump();
        }
    }

    fn on_link(&self, event: LinkEvent) {
        if let LinkEvent::Up { peer, .. } = event {
            // Dropped when the queue is full: the periodic resync covers it.
            let _ = self.inner.queue.try_send(Job::Resync(Some(peer)));
        }
    }
}

/// The worker: handles queued messages one at a time, and resynchronises unconfirmed chains
/// every few seconds, until `cancel`.
pub async fn run(tallies: Tallies, queue: TallyQueue, cancel: CancellationToken) {
    let mut rx = queue.0;
    let mut tick = tokio::time::interval(RESYNC_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let job = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => Job::Resync(None),
            job = rx.recv() => match job {
                Some(job) => job,
                None => return,
            },
        };
        match job {
            Job::Message(peer, bytes) => {
                match Message::parse(&bytes) {
                    Ok(msg) => tallies.handle(peer, msg).await,
                    Err(e) => {
                        tallies.inner.counters.value_refused_malformed.bump();
                        tracing::debug!(peer = %peer, "value message refused: {e}");
                    }
                }
                tallies.inner.changed.send_modify(|n| *n += 1);
            }
            Job::Resync(peer) => tallies.resync(peer).await,
        }
    }
}

/// Spawns the worker on `tracker`.
pub fn spawn(
    tallies: &Tallies,
    queue: TallyQueue,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) {
    tracker.spawn(run(tallies.clone(), queue, cancel));
}
