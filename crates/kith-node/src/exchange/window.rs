//! A windowed fetch: one file from every peer that holds it, many items in flight.
//!
//! 1. **Who holds it.** Every candidate (a linked peer whose `version` lists
//!    [`kith_proto::files::items::CAPABILITY`]) is asked `Q HASH`; those that hold the file
//!    whole or in part become sources, and the name and size they give are the file's.
//! 2. **The transfer.** A [`Scheduler`] plans the requests (windows in bytes, the faster
//!    sources getting more, stalls and lies dropping a source), a [`TreeWalk`] says what to
//!    ask for next and in which order the contents make up the file. Each item that arrives
//!    is hashed and staged in the store on the blocking pool ([`BlobStore::stage_received`]:
//!    a wrong item is never written), and its content goes to the output file in file order.
//! 3. **Durability.** Staged items are committed in groups of `fetch_commit_bytes` (one
//!    sync for the group, [`kith_store::batch`]); the last group is committed, and the output
//!    file synced and renamed, before the file is recorded and before the `have` notices go
//!    out, so nothing is acknowledged that a crash could take back.
//!
//! Memory: the scheduler's window bounds the items requested and held (arrived, not yet
//! written out); the output's and the commits' queues are small and bounded.
//!
//! [`BlobStore::stage_received`]: kith_store::BlobStore::stage_received

use super::output::OutputFile;
use super::pulls::{Offence, PullInput};
use super::tree::{Step, TreeWalk};
use super::{Exchange, ExchangeError, Priority};
use crate::api::FetchReport;
use crate::clock::mono_now;
use bytes::Bytes;
use kith_crypto::identity::AgentId;
use kith_proto::files::items::{
    Answer, Arrival, DropReason, Holding, Request, Response, SchedEvent, Scheduler, SchedulerConfig,
};
use kith_store::{ContentHash, ItemBatch, ItemKind, StagedItem, StoreError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Once one source has said it holds the whole file, how long the others still have to
/// answer before the fetch starts without them.
const LATE_ANSWERS: Duration = Duration::from_secs(1);

/// What a windowed fetch is asked to do.
#[derive(Debug)]
pub(super) struct PullOrder {
    pub hash: ContentHash,
    /// Linked peers that speak windowed item exchange.
    pub candidates: Vec<AgentId>,
    pub priority: Priority,
    /// Where to write the file.
    pub output: Option<super::fetch::OutputSpec>,
    pub cancel: CancellationToken,
    /// Bytes per second at most (0: no limit): requests are paced to it.
    pub rate: u64,
    /// A folder manifest is not written out as a file (see `FetchOrder::folders`).
    pub folders: bool,
    /// Record the file when it is whole.
    pub record: bool,
}

/// A finished verify-and-stage job.
type Staged = (
    AgentId,
    ContentHash,
    Bytes,
    Result<Option<StagedItem>, ExchangeError>,
);

/// Runs a windowed fetch. `Err(NoPeerHas)` (or `NotFound` for a single candidate) when no
/// candidate holds the file, so the caller can try the turn-taking session with others.
pub(super) async fn pull(ex: &Exchange, order: PullOrder) -> Result<FetchReport, ExchangeError> {
    let (handle, mut rx) = ex.pulls.register();
    let id = handle.id;
    let hash = order.hash;
    let answers = query(ex, id, &order, &mut rx).await?;
    let holders: Vec<(AgentId, Answer)> = answers
        .into_iter()
        .filter(|(_, a)| a.holding != Holding::None)
        .collect();
    for peer in &order.candidates {
        if !holders.iter().any(|(p, _)| p == peer) {
            ex.pulls.drop_source(id, peer);
        }
    }
    if holders.is_empty() {
        return Err(match order.candidates.as_slice() {
            [peer] => ExchangeError::NotFound {
                peer: peer.to_string(),
                hash: hash.to_hex(),
            },
            _ => ExchangeError::NoPeerHas(hash.to_hex()),
        });
    }
    let whole = holders.iter().filter(|(_, a)| a.holding == Holding::Whole);
    // For the progress bar, the name most holders give; the file is recorded under the name
    // of the source that delivered the most (one dropped for lying never names it).
    let name = most_common(whole.clone().filter_map(|(_, a)| a.name.clone()));
    let size = whole.map(|(_, a)| a.size).max();
    ex.progress.describe(hash, size, name.clone());
    let target = order
        .output
        .as_ref()
        .map(|o| (o.resolve(name.as_deref(), &hash), o.force));
    let mut output = match &target {
        Some((path, force)) => {
            let journal = ex.store.files().output_journal();
            Some(OutputFile::create(path, *force, Some(&journal))?)
        }
        None => None,
    };
    let mut run = Run::new(ex, id, &order, &holders);
    let walked = run.transfer(&mut rx, &mut output).await?;
    let name = run
        .main_source()
        .and_then(|main| holders.iter().find(|(p, _)| *p == main))
        .and_then(|(_, a)| a.name.clone())
        .or(name);
    // A folder's manifest is not the output: the folder is (`super::folder`), so the
    // manifest's temporary output is dropped unfinished, which removes it.
    let folder = order.folders && super::fetch::is_folder(ex, hash).await?;
    let target = order
        .output
        .as_ref()
        .filter(|_| !folder)
        .map(|o| (o.resolve(name.as_deref(), &hash), o.force));
    let written = match (output, &target) {
        (Some(out), Some((path, _))) => Some(out.finish_as(path).await?),
        _ => None,
    };
    let (size, kind, name) = if order.record {
        let r = ex
            .store
            .run(move |s| s.record_walked(walked, name.as_deref()))
            .await?;
        (r.size, r.kind, r.name)
    } else {
        (walked.size, walked.kind, name)
    };
    // The file is durable and recorded: the sources may learn that we hold it.
    for (peer, answer) in &holders {
        if answer.holding == Holding::Whole {
            let notice = crate::endpoint::envelope(super::HAVE_COMMAND, hash.0.to_vec());
            if ex.endpoint.try_send(*peer, notice).is_ok() {
                ex.counters.retention_notices_sent.bump();
            }
        }
    }
    drop(handle);
    let from = run.main_source();
    Ok(FetchReport {
        hash: hash.to_hex(),
        from: from.map(|p| p.to_string()).unwrap_or_default(),
        sources: run.shares(),
        size,
        kind: kind.as_str().to_owned(),
        items: run.items_seen,
        items_fetched: run.fetched,
        name,
        path: target.map(|(p, _)| p.display().to_string()),
        written,
        already_present: false,
        wrong_items: run.wrong,
        folder,
        ..FetchReport::default()
    })
}

impl Drop for Run<'_> {
    /// A fetch that ends early (cancelled, failed, gave way) tells its sources to forget what
    /// it asked for and they have not sent yet (best effort: a full link skips it).
    fn drop(&mut self) {
        let mut cancels: Vec<(AgentId, Vec<ContentHash>)> = Vec::new();
        for (peer, hash) in self.sched.in_flight_requests() {
            match cancels.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, hashes)) => hashes.push(hash),
                None => cancels.push((peer, vec![hash])),
            }
        }
        for (peer, hashes) in cancels {
            for env in Request::Cancel(hashes).encode() {
                let _ = self.ex.endpoint.try_send(peer, env);
            }
        }
    }
}

/// Asks every candidate whether it holds the file.
async fn query(
    ex: &Exchange,
    id: u64,
    order: &PullOrder,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<PullInput>,
) -> Result<HashMap<AgentId, Answer>, ExchangeError> {
    let mut waiting = HashSet::new();
    for peer in &order.candidates {
        ex.pulls.add_source(id, *peer);
        if !ex.pulls.route_query(id, *peer, order.hash) {
            continue;
        }
        for env in Request::Query(order.hash).encode() {
            if ex.endpoint.send_linked(*peer, env).await.is_ok() {
                waiting.insert(*peer);
            }
        }
    }
    let mut deadline =
        tokio::time::Instant::now() + Duration::from_millis(ex.limits().ciyam_request_timeout_ms);
    let mut answers = HashMap::new();
    while !waiting.is_empty() {
        tokio::select! {
            input = rx.recv() => match input {
                Some(PullInput::Response(peer, Response::Answer(a))) if a.file == order.hash => {
                    waiting.remove(&peer);
                    if a.holding == Holding::Whole {
                        // One holder is enough to start; the others get a moment more.
                        deadline = deadline.min(tokio::time::Instant::now() + LATE_ANSWERS);
                    }
                    answers.insert(peer, a);
                }
                Some(PullInput::Down(peer) | PullInput::Offence(peer, _)) => {
                    waiting.remove(&peer);
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = order.cancel.cancelled() => return Err(ExchangeError::Cancelled),
        }
    }
    Ok(answers)
}

/// One fetch's transfer state.
struct Run<'a> {
    ex: &'a Exchange,
    id: u64,
    hash: ContentHash,
    priority: Priority,
    cancel: CancellationToken,
    sched: Scheduler<AgentId>,
    walk: TreeWalk,
    batch: ItemBatch,
    /// The batch being committed, and what it holds.
    committing: Option<tokio::task::JoinHandle<Result<Vec<ContentHash>, StoreError>>>,
    committing_items: HashSet<ContentHash>,
    jobs: JoinSet<Staged>,
    /// Items arrived and waiting for a verify-and-stage job: at most [`Run::max_checks`] run
    /// at once (four per core). One job per arrival would put a whole window's worth of
    /// threads on the blocking pool; far fewer (one per core) keeps arrived items waiting,
    /// and since they count in the window until written out, the fetch then holds most of
    /// its window in memory (measured on 2 cores: peak RSS 65-69 MiB with 2 or 4 jobs,
    /// 55-58 with 8, for the same CPU time). Queued items are still inside the scheduler's
    /// window, so this queue is bounded with it.
    checks: VecDeque<(AgentId, ContentHash, Bytes)>,
    max_checks: usize,
    /// The last leaves written out, for a repeated chunk that follows at once.
    recent: Vec<(ContentHash, Bytes)>,
    budget: u64,
    /// The download rate limit: requests wait for it.
    rate: super::rate::RateLimit,
    /// When the rate limit lets the next request go.
    paced_until: Option<tokio::time::Instant>,
    /// Staged bytes committed together.
    commit_every: u64,
    items_seen: u64,
    fetched: u64,
    wrong: u64,
    lookahead: usize,
}

impl<'a> Run<'a> {
    fn new(ex: &'a Exchange, id: u64, order: &PullOrder, holders: &[(AgentId, Answer)]) -> Self {
        let limits = ex.node_limits();
        let item_size = ex.max_item() as u64;
        let config = SchedulerConfig {
            max_window: limits.fetch_window_bytes,
            max_source_window: limits.fetch_window_bytes,
            initial_window: 4 * item_size,
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
            rate: super::rate::RateLimit::new(order.rate),
            paced_until: None,
            commit_every: limits.fetch_commit_bytes.max(1),
            items_seen: 0,
            fetched: 0,
            wrong: 0,
            lookahead: window_items * 2 + 8,
        }
    }

    /// The source that delivered the most, of those not dropped for misbehaving.
    fn main_source(&self) -> Option<AgentId> {
        self.sched
            .report()
            .into_iter()
            .filter(|r| matches!(r.dropped, None | Some(DropReason::Gone)))
            .max_by_key(|r| r.bytes)
            .map(|r| r.source)
    }

    fn shares(&self) -> Vec<crate::api::SourceShare> {
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
    async fn transfer(
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

    /// After an early end: the items being verified are staged, and everything staged is
    /// committed (best effort: a store failure here loses only what a re-run fetches again).
    async fn keep_what_arrived(&mut self) {
        self.max_checks = usize::MAX;
        self.start_checks();
        while let Some(job) = self.jobs.join_next().await {
            if let Ok((peer, _, item, Ok(Some(staged)))) = job {
                // Kept, so counted as received like every other: the next run will not
                // fetch it again.
                self.batch.push(staged);
                self.fetched += 1;
                self.ex.counters.items_received.bump();
                self.ex.uploads.received(peer, item.len() as u64);
            }
        }
        if let Err(e) = self.finish_commits().await {
            tracing::warn!(
                "could not keep the items of {} fetched so far: {e}",
                self.hash
            );
        }
    }

    async fn transfer_inner(
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
            let timer = match (self.sched.poll_timeout(), self.paced_until) {
                (Some(a), Some(b)) => Some(tokio::time::Instant::from_std(a).min(b)),
                (a, b) => a.map(tokio::time::Instant::from_std).or(b),
            };
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
                _ = sleep_until(timer) => {
                    if self.paced_until.is_some_and(|at| at <= tokio::time::Instant::now()) {
                        self.paced_until = None;
                    }
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
    async fn advance(&mut self, output: &mut Option<OutputFile>) -> Result<bool, ExchangeError> {
        let mut progressed = false;
        while self.advance_once(output).await? {
            progressed = true;
        }
        Ok(progressed)
    }

    async fn advance_once(
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

    fn remember(&mut self, hash: ContentHash, content: Bytes) {
        if self.recent.len() >= 2 {
            self.recent.remove(0);
        }
        self.recent.push((hash, content));
    }

    /// An item for the output that is in the store, or staged by this fetch (then its batch
    /// is committed first), read and verified.
    async fn read_back(&mut self, hash: ContentHash) -> Result<Bytes, ExchangeError> {
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

    fn start_commit(&mut self) {
        let fresh = self.batch.empty_like();
        let batch = std::mem::replace(&mut self.batch, fresh);
        self.committing_items = batch.hashes().collect();
        let store = self.ex.store.clone();
        self.committing = Some(tokio::task::spawn_blocking(move || {
            batch.commit(store.files().blobs())
        }));
    }

    /// Waits for the commit in flight, then commits what is staged.
    async fn finish_commits(&mut self) -> Result<(), ExchangeError> {
        if let Some(job) = self.committing.take() {
            job.await
                .map_err(|e| ExchangeError::Store(e.to_string()))??;
        }
        self.committing_items.clear();
        if !self.batch.is_empty() {
            self.start_commit();
            if let Some(job) = self.committing.take() {
                job.await
                    .map_err(|e| ExchangeError::Store(e.to_string()))??;
            }
            self.committing_items.clear();
        }
        Ok(())
    }

    /// Sends what the scheduler plans, and acts on what it reports.
    async fn send_requests(&mut self) -> Result<(), ExchangeError> {
        let now = mono_now();
        let mut gets: Vec<(AgentId, Vec<ContentHash>)> = Vec::new();
        loop {
            if self
                .paced_until
                .is_some_and(|at| at > tokio::time::Instant::now())
            {
                break;
            }
            self.paced_until = None;
            let Some((peer, hash)) = self.sched.poll_request(now) else {
                break;
            };
            if let Some(at) = self.rate.take(self.sched.config().item_size, now) {
                self.paced_until = Some(at.into());
            }
            if !self.ex.pulls.route_item(self.id, peer, hash) {
                // Another fetch asked this peer for the same item: later, or elsewhere.
                self.sched.busy(&peer, hash, now);
                continue;
            }
            match gets.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, hashes)) => hashes.push(hash),
                None => gets.push((peer, vec![hash])),
            }
        }
        for (peer, hashes) in gets {
            for env in Request::Get(hashes).encode() {
                if self.ex.endpoint.send_linked(peer, env).await.is_err() {
                    self.sched.remove_source(&peer, mono_now());
                    break;
                }
            }
        }
        let mut cancels: Vec<(AgentId, Vec<ContentHash>)> = Vec::new();
        while let Some((peer, hash)) = self.sched.poll_cancel() {
            match cancels.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, hashes)) => hashes.push(hash),
                None => cancels.push((peer, vec![hash])),
            }
        }
        for (peer, hashes) in cancels {
            for env in Request::Cancel(hashes).encode() {
                let _ = self.ex.endpoint.try_send(peer, env);
            }
        }
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

    fn on_input(&mut self, input: PullInput) {
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

    /// Starts verify-and-stage jobs for queued items, up to [`Run::max_checks`] at once.
    fn start_checks(&mut self) {
        while self.jobs.len() < self.max_checks {
            let Some((peer, hash, item)) = self.checks.pop_front() else {
                return;
            };
            let store = self.ex.store.clone();
            self.jobs.spawn(async move {
                let check = item.clone();
                let staged = store
                    .run(move |s| s.blobs().stage_received(&hash, &check))
                    .await
                    .map_err(ExchangeError::from);
                (peer, hash, item, staged)
            });
        }
    }

    fn on_staged(&mut self, (peer, hash, item, staged): Staged) -> Result<(), ExchangeError> {
        let now = mono_now();
        let Some(staged) = staged? else {
            // It did not hash to its name: that source is out, the item asked of others.
            self.wrong += 1;
            self.ex.counters.items_rejected.bump();
            self.ex.uploads.penalize(peer);
            self.sched.wrong(hash, now);
            return Ok(());
        };
        self.sched.verified(&hash);
        let len = item.len() as u64;
        if len > self.budget {
            return Err(ExchangeError::OverBudget {
                peer: peer.to_string(),
                budget: self.priority.byte_budget(),
            });
        }
        self.budget -= len;
        self.batch.push(staged);
        self.fetched += 1;
        self.ex.counters.items_received.bump();
        self.ex.uploads.received(peer, len);
        self.ex.progress.advance(self.hash, len);
        let kind = self
            .walk
            .arrived(hash, item)
            .map_err(|e| ExchangeError::Store(e.to_string()))?;
        if kind == ItemKind::List {
            // Parsed into the walk: its bytes leave the window now.
            self.sched.done(&hash);
        }
        Ok(())
    }
}

/// The value given most often (the first of equals).
fn most_common(values: impl Iterator<Item = String>) -> Option<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for value in values {
        match counts.iter_mut().find(|(v, _)| *v == value) {
            Some((_, n)) => *n += 1,
            None => counts.push((value, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(v, _)| v)
}

/// The commit in flight (the caller checks there is one).
async fn wait_commit(
    job: &mut Option<tokio::task::JoinHandle<Result<Vec<ContentHash>, StoreError>>>,
) -> Result<Result<Vec<ContentHash>, StoreError>, tokio::task::JoinError> {
    match job.as_mut() {
        Some(job) => job.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
