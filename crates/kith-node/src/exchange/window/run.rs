//! One windowed fetch's transfer: the scheduler's requests out, the sources' answers in,
//! the walk over the tree and the output moved on as items are verified
//! ([`super::arrivals`]), until the file is whole.

use super::super::output::OutputFile;
use super::super::pulls::{Offence, PullInput};
use super::super::tree::{Step, TreeWalk};
use super::super::{Exchange, ExchangeError, Priority};
use super::arrivals::{wait_commit, Staged};
use super::PullOrder;
use crate::clock::mono_now;
use bytes::Bytes;
use kith_crypto::identity::AgentId;
use kith_proto::files::items::{
    Answer, Arrival, DropReason, Request, Response, SchedEvent, Scheduler, SchedulerConfig,
};
use kith_store::{ContentHash, ItemBatch, StoreError};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a request waits when another fetch of this node has the same item asked of the
/// same peer (its answer usually follows within a round trip).
const ROUTE_RETRY: Duration = Duration::from_millis(20);

/// One fetch's transfer state.
pub(super) struct Run<'a> {
    pub(super) ex: &'a Exchange,
    pub(super) id: u64,
    pub(super) hash: ContentHash,
    pub(super) priority: Priority,
    pub(super) cancel: CancellationToken,
    pub(super) sched: Scheduler<AgentId>,
    pub(super) walk: TreeWalk,
    pub(super) batch: ItemBatch,
    /// The batch being committed, and what it holds.
    pub(super) committing: Option<tokio::task::JoinHandle<Result<Vec<ContentHash>, StoreError>>>,
    pub(super) committing_items: HashSet<ContentHash>,
    pub(super) jobs: JoinSet<Staged>,
    /// Items arrived and waiting for a verify-and-stage job: at most [`Run::max_checks`] run
    /// at once (four per core). One job per arrival would put a whole window's worth of
    /// threads on the blocking pool; far fewer (one per core) keeps arrived items waiting,
    /// and since they count in the window until written out, the fetch then holds most of
    /// its window in memory (measured on 2 cores: peak RSS 65-69 MiB with 2 or 4 jobs,
    /// 55-58 with 8, for the same CPU time). Queued items are still inside the scheduler's
    /// window, so this queue is bounded with it.
    pub(super) checks: VecDeque<(AgentId, ContentHash, Bytes)>,
    pub(super) max_checks: usize,
    /// The last leaves written out, for a repeated chunk that follows at once.
    pub(super) recent: Vec<(ContentHash, Bytes)>,
    pub(super) budget: u64,
    /// The download rate limit: requests wait for it.
    pub(super) rate: super::super::rate::RateLimit,
    /// No request goes before this: the rate limit's pace, or a moment's wait for an item
    /// another fetch of ours has asked the same peer for.
    pub(super) hold_until: Option<tokio::time::Instant>,
    /// Staged bytes committed together.
    pub(super) commit_every: u64,
    pub(super) items_seen: u64,
    pub(super) fetched: u64,
    pub(super) wrong: u64,
    pub(super) lookahead: usize,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        ex: &'a Exchange,
        id: u64,
        order: &PullOrder,
        holders: &[(AgentId, Answer)],
    ) -> Self {
        let limits = ex.node_limits();
        let item_size = ex.max_item() as u64;
        let window = order.window.map_or(limits.fetch_window_bytes, |w| {
            w.min(limits.fetch_window_bytes)
        });
        let config = SchedulerConfig {
            max_window: window,
            max_source_window: window,
            // The window is shared out among the holders from the start: slow start cost a
            // 256 MiB fetch across 50 ms three round trips at 4, 8 and 16 items. The whole
            // window bounds memory whatever each source's share, and a source that stalls
            // or fails is cut down as before.
            initial_window: (window / holders.len().max(1) as u64).max(4 * item_size),
            item_size,
            stall_timeout: Duration::from_millis(limits.fetch_stall_ms),
            max_stalls: 3,
        };
        let mut sched = Scheduler::new(config);
        let now = mono_now();
        for (peer, _) in holders {
            sched.add_source(*peer, now);
        }
        let window_items = (sched.config().max_window / item_size) as usize;
        Run {
            ex,
            id,
            hash: order.hash,
            priority: order.priority,
            cancel: order.cancel.clone(),
            sched,
            walk: TreeWalk::new(order.hash),
            batch: ItemBatch::streaming(),
            committing: None,
            committing_items: HashSet::new(),
            jobs: JoinSet::new(),
            checks: VecDeque::new(),
            max_checks: std::thread::available_parallelism()
                .map_or(8, |n| (n.get() * 4).clamp(4, 16)),
            recent: Vec::new(),
            budget: order.priority.byte_budget(),
            rate: super::super::rate::RateLimit::new(order.rate),
            hold_until: None,
            commit_every: limits.fetch_commit_bytes.max(1),
            items_seen: 0,
            fetched: 0,
            wrong: 0,
            lookahead: window_items * 2 + 8,
        }
    }

    /// The file's root item was asked of `peer` with the question (see [`super::query`]):
    /// the walk and the scheduler count it as asked, so it is not asked again.
    pub(super) fn asked_root(&mut self, peer: AgentId) {
        let now = mono_now();
        if self.walk.next_unseen() != Some(self.hash) {
            return; // never: a new walk starts at the root
        }
        // Seen here, not by `advance`: a one-item file has nothing more to see.
        self.items_seen = self.walk.items_seen();
        self.sched.want(self.hash);
        match self.sched.poll_request(now) {
            Some((to, hash)) if to == peer && hash == self.hash => {}
            // Not as planned (never with one fresh source): take it back, to be asked anew.
            Some((to, hash)) => self.sched.unsend(&to, hash, now),
            None => {}
        }
    }

    /// The source that delivered the most, of those not dropped for misbehaving.
    pub(super) fn main_source(&self) -> Option<AgentId> {
        self.sched
            .report()
            .into_iter()
            .filter(|r| matches!(r.dropped, None | Some(DropReason::Gone)))
            .max_by_key(|r| r.bytes)
            .map(|r| r.source)
    }

    pub(super) fn shares(&self) -> Vec<crate::api::SourceShare> {
        self.sched
            .report()
            .into_iter()
            .map(|r| crate::api::SourceShare {
                agent: r.source.to_string(),
                items: r.items,
                bytes: r.bytes,
                wrong_items: r.wrong_items,
                dropped: r.dropped.map(|d| format!("{d:?}").to_lowercase()),
            })
            .collect()
    }

    /// Moves the whole file; returns what it is, every item committed. A transfer that ends
    /// early still commits the items it verified, so the next run resumes after them.
    pub(super) async fn transfer(
        &mut self,
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<PullInput>,
        output: &mut Option<OutputFile>,
    ) -> Result<kith_store::StoredFile, ExchangeError> {
        let result = self.transfer_inner(rx, output).await;
        if result.is_err() {
            self.keep_what_arrived().await;
        }
        result
    }

    pub(super) async fn transfer_inner(
        &mut self,
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<PullInput>,
        output: &mut Option<OutputFile>,
    ) -> Result<kith_store::StoredFile, ExchangeError> {
        let idle = Duration::from_millis(self.ex.limits().ciyam_request_timeout_ms);
        let mut last_progress = tokio::time::Instant::now();
        loop {
            if self.cancel.is_cancelled() {
                return Err(ExchangeError::Cancelled);
            }
            if matches!(self.priority, Priority::Background { .. }) && self.ex.user_waiting() {
                return Err(ExchangeError::Yielded(self.hash.to_hex()));
            }
            let progressed = self.advance(output).await?;
            if progressed {
                last_progress = tokio::time::Instant::now();
            }
            self.send_requests().await?;
            if self.walk.is_complete() && self.jobs.is_empty() && self.checks.is_empty() {
                break;
            }
            if self.batch.bytes() >= self.commit_every && self.committing.is_none() {
                self.start_commit();
            }
            let timer = [
                self.sched
                    .poll_timeout()
                    .map(tokio::time::Instant::from_std),
                self.hold_until,
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => return Err(ExchangeError::Cancelled),
                },
                Some(job) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    let job = job.map_err(|e| ExchangeError::Store(e.to_string()))?;
                    self.start_checks();
                    self.on_staged(job)?;
                    last_progress = tokio::time::Instant::now();
                }
                done = wait_commit(&mut self.committing), if self.committing.is_some() => {
                    self.committing = None;
                    self.committing_items.clear();
                    done.map_err(|e| ExchangeError::Store(e.to_string()))??;
                }
                _ = crate::clock::sleep_until_opt(timer) => {
                    self.sched.handle_timeout(mono_now());
                }
                _ = tokio::time::sleep_until(last_progress + idle) => {
                    return Err(ExchangeError::Stalled(self.hash.to_hex()));
                }
                _ = self.cancel.cancelled() => return Err(ExchangeError::Cancelled),
            }
        }
        self.finish_commits().await?;
        let walk = std::mem::replace(&mut self.walk, TreeWalk::new(self.hash));
        walk.into_stored()
            .ok_or_else(|| ExchangeError::Store("the fetched tree is empty".into()))
    }

    /// Tops up the plan from the walk and moves the output on, until neither moves (reading
    /// a present list makes its children known). True if anything moved.
    pub(super) async fn advance(
        &mut self,
        output: &mut Option<OutputFile>,
    ) -> Result<bool, ExchangeError> {
        let mut progressed = false;
        while self.advance_once(output).await? {
            progressed = true;
        }
        Ok(progressed)
    }

    pub(super) async fn advance_once(
        &mut self,
        output: &mut Option<OutputFile>,
    ) -> Result<bool, ExchangeError> {
        let mut progressed = false;
        let mut fresh = Vec::new();
        while self.sched.queued() + fresh.len() < self.lookahead {
            match self.walk.next_unseen() {
                Some(hash) => fresh.push(hash),
                None => break,
            }
        }
        if !fresh.is_empty() {
            let check = fresh.clone();
            let present = self
                .ex
                .store
                .run(move |s| {
                    check
                        .iter()
                        .map(|h| s.blobs().contains(h))
                        .collect::<Result<Vec<bool>, StoreError>>()
                })
                .await?;
            progressed = true;
            for (hash, present) in fresh.into_iter().zip(present) {
                if present {
                    self.walk.mark_present(hash);
                } else {
                    self.sched.want(hash);
                }
            }
            self.items_seen = self.walk.items_seen();
        }
        while let Some(step) = self.walk.poll_output() {
            progressed = true;
            match step {
                Step::Write { hash, content } => {
                    self.sched.done(&hash);
                    self.remember(hash, content.clone());
                    if let Some(out) = output.as_mut() {
                        out.write(content).await?;
                    }
                }
                Step::Read(hash) => {
                    let item = self.read_back(hash).await?;
                    self.walk
                        .read_done(hash, item)
                        .map_err(|e| ExchangeError::Store(e.to_string()))?;
                }
            }
        }
        Ok(progressed)
    }

    pub(super) fn remember(&mut self, hash: ContentHash, content: Bytes) {
        if self.recent.len() >= 2 {
            self.recent.remove(0);
        }
        self.recent.push((hash, content));
    }

    /// An item for the output that is in the store, or staged by this fetch (then its batch
    /// is committed first), read and verified.
    pub(super) async fn read_back(&mut self, hash: ContentHash) -> Result<Bytes, ExchangeError> {
        if let Some((_, content)) = self.recent.iter().find(|(h, _)| *h == hash) {
            let mut item = vec![kith_store::ItemType::BLOB.byte()];
            item.extend_from_slice(content);
            return Ok(Bytes::from(item));
        }
        if self.committing_items.contains(&hash) || self.batch.contains(&hash) {
            self.finish_commits().await?;
        }
        let item = self
            .ex
            .store
            .run(move |s| s.blobs().get_item_bytes(&hash))
            .await?;
        Ok(Bytes::from(item))
    }

    /// Sends what the scheduler plans, and acts on what it reports.
    pub(super) async fn send_requests(&mut self) -> Result<(), ExchangeError> {
        let now = mono_now();
        let mut gets: Vec<(AgentId, ContentHash)> = Vec::new();
        loop {
            if self
                .hold_until
                .is_some_and(|at| at > tokio::time::Instant::now())
            {
                break;
            }
            self.hold_until = None;
            let Some((peer, hash)) = self.sched.poll_request(now) else {
                break;
            };
            if let Some(at) = self.rate.take(self.sched.config().item_size, now) {
                self.hold_until = Some(at.into());
            }
            if !self.ex.pulls.route_item(self.id, peer, hash) {
                // Another fetch of ours asked this peer for the same item: ask again once that
                // answer is in. Not at once (the scheduler gives the same request back: it
                // stays first), and not as the peer's "busy", which would shrink its window.
                self.sched.unsend(&peer, hash, now);
                let retry = tokio::time::Instant::now() + ROUTE_RETRY;
                self.hold_until = Some(self.hold_until.map_or(retry, |at| at.max(retry)));
                break;
            }
            gets.push((peer, hash));
        }
        for (peer, hashes) in by_peer(gets) {
            for env in Request::Get(hashes).encode() {
                if self.ex.endpoint.send_linked(peer, env).await.is_err() {
                    self.sched.remove_source(&peer, mono_now());
                    break;
                }
            }
        }
        let cancels: Vec<_> = std::iter::from_fn(|| self.sched.poll_cancel()).collect();
        self.cancel(cancels);
        while let Some(event) = self.sched.poll_event() {
            match event {
                SchedEvent::Stalled(peer) => {
                    self.ex.counters.fetch_sources_stalled.bump();
                    tracing::info!(peer = %peer, "fetch of {}: source stalled", self.hash);
                }
                SchedEvent::Dropped { source, reason } => {
                    self.ex.pulls.drop_source(self.id, &source);
                    if reason != DropReason::Gone {
                        self.ex.counters.fetch_sources_dropped.bump();
                        tracing::warn!(peer = %source, ?reason, "fetch of {}: source dropped", self.hash);
                    }
                }
                // With no source left, every item is "unavailable": the cause is the sources
                // going away, and running the command again (once one is back) resumes.
                SchedEvent::Unavailable(_) if self.sched.live_sources() == 0 => {
                    return Err(ExchangeError::SourcesLost(self.hash.to_hex()));
                }
                SchedEvent::Unavailable(item) => {
                    return Err(ExchangeError::Unavailable {
                        file: self.hash.to_hex(),
                        item: item.to_hex(),
                    });
                }
            }
        }
        if self.sched.live_sources() == 0 {
            return Err(ExchangeError::SourcesLost(self.hash.to_hex()));
        }
        Ok(())
    }

    pub(super) fn on_input(&mut self, input: PullInput) {
        let now = mono_now();
        match input {
            PullInput::Response(peer, Response::Item { hash, item }) => {
                match self.sched.arrived(&peer, hash, item.len() as u64, now) {
                    Arrival::Expected => {
                        self.checks.push_back((peer, hash, item));
                        self.start_checks();
                    }
                    Arrival::Late => self.ex.counters.items_late.bump(),
                    Arrival::Unsolicited => self.ex.counters.items_unsolicited.bump(),
                }
            }
            PullInput::Response(peer, Response::Missing(hash)) => {
                self.sched.missing(&peer, hash, now)
            }
            PullInput::Response(peer, Response::Busy(hash)) => self.sched.busy(&peer, hash, now),
            PullInput::Response(_, Response::Answer(_)) => {}
            PullInput::Offence(peer, offence) => {
                let reason = match offence {
                    Offence::Malformed => DropReason::Malformed,
                    Offence::Unsolicited => DropReason::Unsolicited,
                };
                self.sched.drop_source(&peer, reason, now);
                self.ex.uploads.penalize(peer);
            }
            PullInput::Down(peer) => self.sched.remove_source(&peer, now),
        }
    }
}

impl Drop for Run<'_> {
    /// A fetch that ends early (cancelled, failed, gave way) tells its sources to forget what
    /// it asked for and they have not sent yet (best effort: a full link skips it).
    fn drop(&mut self) {
        self.cancel(self.sched.in_flight_requests());
    }
}

impl Run<'_> {
    /// Tells each peer to forget these requests of ours (best effort: a full link skips it).
    fn cancel(&self, requests: Vec<(AgentId, ContentHash)>) {
        for (peer, hashes) in by_peer(requests) {
            for env in Request::Cancel(hashes).encode() {
                let _ = self.ex.endpoint.try_send(peer, env);
            }
        }
    }
}

/// `(peer, item)` pairs grouped by peer, in the order the peers first appear.
fn by_peer(pairs: Vec<(AgentId, ContentHash)>) -> Vec<(AgentId, Vec<ContentHash>)> {
    let mut grouped: Vec<(AgentId, Vec<ContentHash>)> = Vec::new();
    for (peer, hash) in pairs {
        match grouped.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, hashes)) => hashes.push(hash),
            None => grouped.push((peer, vec![hash])),
        }
    }
    grouped
}
