//! The fetcher's side of windowed item exchange: which item to ask which source for, and when
//! to give up on a source. Plain state, time passed in.
//!
//! - **Windows.** Every request reserves [`SchedulerConfig::item_size`] bytes (an item's most)
//!   until its item arrives; an arrived item holds its own length until the driver says it is
//!   [`done`](Scheduler::done) (stored, and written out). The sum of both never exceeds
//!   [`SchedulerConfig::max_window`], whatever the number of sources, so the fetcher's memory
//!   is bounded by it. Each source has its own window, starting at
//!   [`SchedulerConfig::initial_window`] and growing by each item it delivers while it was
//!   full (slow start: doubling every round trip) up to
//!   [`SchedulerConfig::max_source_window`], so a distant source gets the bandwidth-delay
//!   product it needs and a near one no more than it uses.
//! - **Choice.** The next item goes to the source that would deliver it first: the least
//!   bytes in flight over its measured rate (a source not measured yet is tried first). Work
//!   shifts to the faster sources by itself: they free their windows sooner.
//! - **Rescue and endgame.** When the oldest request is overdue (three times its source's
//!   usual latency) or nothing is left to ask for, it is asked of another source too; the
//!   first copy to arrive wins and the other request is cancelled. So one slow source cannot
//!   hold the head of the file.
//! - **Stalls.** A source with requests out and nothing delivered for
//!   [`SchedulerConfig::stall_timeout`] has its requests given to others, its window cut to
//!   one item and no new work until it delivers or the timeout passes again; after
//!   [`SchedulerConfig::max_stalls`] it is dropped.
//! - **Lies.** An item nobody asked that source for ([`Arrival::Unsolicited`]) or one that does
//!   not hash to its name ([`Scheduler::wrong`]) drops the source at once: its share goes to
//!   the others and the driver is told ([`SchedEvent::Dropped`]) to count it.
//! - **Missing items.** A source that answers `N` is not asked for that item again; an item no
//!   remaining source can give is reported ([`SchedEvent::Unavailable`]).
//!
//! Calling contract: add sources, [`want`](Scheduler::want) items (in file order; a list
//! [`want_first`](Scheduler::want_first), since its children follow), then after every call
//! drain [`poll_request`](Scheduler::poll_request) (send each), [`poll_cancel`], and
//! [`poll_event`]; arm a timer at [`poll_timeout`] and call
//! [`handle_timeout`](Scheduler::handle_timeout).
//!
//! [`poll_cancel`]: Scheduler::poll_cancel
//! [`poll_event`]: Scheduler::poll_event
//! [`poll_timeout`]: Scheduler::poll_timeout

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::time::{Duration, Instant};

use super::super::hash::ContentHash;
use super::source::{DropReason, Source, MAX_LACKS};

/// A request is overdue after this many times its source's usual latency.
const RESCUE_FACTOR: f64 = 3.0;
/// ... and never before this.
const MIN_RESCUE: Duration = Duration::from_millis(50);

/// The scheduler's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Bytes requested or held at once, all sources together.
    pub max_window: u64,
    /// Bytes in flight at one source, at most.
    pub max_source_window: u64,
    /// A new source's window.
    pub initial_window: u64,
    /// Bytes each request reserves until its item arrives (the largest item).
    pub item_size: u64,
    /// A source with requests out that delivers nothing for this long is stalled.
    pub stall_timeout: Duration,
    /// Stalls after which a source is dropped.
    pub max_stalls: u32,
}

impl SchedulerConfig {
    fn clamped(mut self) -> SchedulerConfig {
        self.item_size = self.item_size.max(1);
        self.max_window = self.max_window.max(self.item_size);
        self.max_source_window = self
            .max_source_window
            .clamp(self.item_size, self.max_window);
        self.initial_window = self
            .initial_window
            .clamp(self.item_size, self.max_source_window);
        self
    }
}

/// How an item that arrived from a source was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Asked for: verify it and store it; call [`Scheduler::wrong`] if it did not hash to
    /// its name, else [`Scheduler::done`] once it is stored (and written out).
    Expected,
    /// A copy of an item that came from elsewhere first, or one whose request was given up:
    /// drop it, no harm meant.
    Late,
    /// Nobody asked this source for it: drop it; the source is dropped too.
    Unsolicited,
}

/// What the driver should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedEvent<S> {
    /// The source delivered nothing for the stall timeout: its requests went elsewhere.
    Stalled(S),
    /// The source is out of this fetch.
    Dropped {
        /// The source.
        source: S,
        /// Why.
        reason: DropReason,
    },
    /// No source left can give this item: the fetch cannot complete.
    Unavailable(ContentHash),
}

/// One source's part in the fetch, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport<S> {
    /// The source.
    pub source: S,
    /// Items it delivered (verified or not yet).
    pub items: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Items it sent that did not hash to their name.
    pub wrong_items: u64,
    /// Why it was dropped, if it was.
    pub dropped: Option<DropReason>,
}

/// The request plan of one fetch (see the module docs).
#[derive(Debug)]
pub struct Scheduler<S> {
    config: SchedulerConfig,
    sources: Vec<Source<S>>,
    queue: VecDeque<ContentHash>,
    /// Arrived items not yet done, and their lengths.
    held: HashMap<ContentHash, (S, u64)>,
    held_bytes: u64,
    cancels: VecDeque<(S, ContentHash)>,
    events: VecDeque<SchedEvent<S>>,
    /// The last [`Scheduler::handle_timeout`]: a rescue deadline at or before it has been
    /// looked at, and is not armed again (no helper had room then; the next event retries).
    last_timeout: Option<Instant>,
}

impl<S: Copy + Eq + Debug> Scheduler<S> {
    /// A scheduler with no sources and nothing wanted.
    pub fn new(config: SchedulerConfig) -> Scheduler<S> {
        Scheduler {
            config: config.clamped(),
            sources: Vec::new(),
            queue: VecDeque::new(),
            held: HashMap::new(),
            held_bytes: 0,
            cancels: VecDeque::new(),
            events: VecDeque::new(),
            last_timeout: None,
        }
    }

    /// The bounds in force.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// A source that holds the file (or part of it).
    pub fn add_source(&mut self, key: S, now: Instant) {
        if self.source_index(&key).is_none() {
            self.sources
                .push(Source::new(key, self.config.initial_window, now));
        }
    }

    /// The source went away (its link went down): its requests go to the others.
    pub fn remove_source(&mut self, key: &S, now: Instant) {
        if let Some(i) = self.source_index(key) {
            self.drop_index(i, DropReason::Gone, now);
        }
    }

    /// Sources still in the fetch.
    pub fn live_sources(&self) -> usize {
        self.sources.iter().filter(|s| s.live()).count()
    }

    /// Asks for `hash` after everything already wanted.
    pub fn want(&mut self, hash: ContentHash) {
        self.queue.push_back(hash);
    }

    /// Asks for `hash` before everything already wanted (a list, whose children come next).
    pub fn want_first(&mut self, hash: ContentHash) {
        self.queue.push_front(hash);
    }

    /// Items wanted and not yet asked for.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Requests in flight, all sources.
    pub fn in_flight(&self) -> usize {
        self.sources.iter().map(|s| s.in_flight.len()).sum()
    }

    /// Bytes reserved now (requests in flight and items held).
    pub fn window_used(&self) -> u64 {
        self.in_flight() as u64 * self.config.item_size + self.held_bytes
    }

    fn source_index(&self, key: &S) -> Option<usize> {
        self.sources.iter().position(|s| s.key == *key)
    }

    fn room(&self) -> bool {
        self.window_used() + self.config.item_size <= self.config.max_window
    }

    /// Asked of some source now (in flight) or held.
    fn outstanding(&self, hash: &ContentHash) -> usize {
        self.sources
            .iter()
            .filter(|s| s.in_flight.iter().any(|r| r.hash == *hash))
            .count()
    }

    /// The next request to send: `(source, item)`.
    pub fn poll_request(&mut self, now: Instant) -> Option<(S, ContentHash)> {
        loop {
            if !self.room() {
                return None;
            }
            if let Some(rescue) = self.rescue(now) {
                return Some(rescue);
            }
            let hash = *self.queue.front()?;
            if self.held.contains_key(&hash) || self.outstanding(&hash) > 0 {
                // Wanted again while a copy is on its way (a repeated chunk): one will do.
                self.queue.pop_front();
                self.queue.push_back(hash);
                if self
                    .queue
                    .iter()
                    .all(|h| self.held.contains_key(h) || self.outstanding(h) > 0)
                {
                    return None;
                }
                continue;
            }
            match self.best_source(&hash, None, now) {
                Some(i) => {
                    self.queue.pop_front();
                    self.sources[i].send(hash, now);
                    return Some((self.sources[i].key, hash));
                }
                None => {
                    let anyone = self
                        .sources
                        .iter()
                        .any(|s| s.live() && !s.lacks.contains(&hash));
                    if anyone {
                        return None; // wait for room, or for probation to end
                    }
                    self.queue.pop_front();
                    self.events.push_back(SchedEvent::Unavailable(hash));
                }
            }
        }
    }

    /// The usable source with room that would deliver `hash` first (not `except`).
    fn best_source(
        &self,
        hash: &ContentHash,
        except: Option<usize>,
        now: Instant,
    ) -> Option<usize> {
        let item = self.config.item_size;
        let mut best: Option<(usize, f64)> = None;
        for (i, s) in self.sources.iter().enumerate() {
            if Some(i) == except || !s.usable(now) || !s.has_room(item) || s.lacks.contains(hash) {
                continue;
            }
            let queued = (s.in_flight_bytes(item) + item) as f64;
            // Not measured yet: tried first, the emptiest first.
            let finish = match s.rate(now) {
                Some(rate) => queued / rate,
                None => -1.0 / queued,
            };
            if best.is_none_or(|(_, f)| finish < f) {
                best = Some((i, finish));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Asks another source for the oldest request if it is overdue, or if nothing is left to
    /// ask for and a source sits idle.
    fn rescue(&mut self, now: Instant) -> Option<(S, ContentHash)> {
        let (holder, hash, sent) = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.in_flight.first().map(|r| (i, r.hash, r.sent)))
            .min_by_key(|(_, _, sent)| *sent)?;
        if self.outstanding(&hash) > 1 {
            return None;
        }
        let overdue = now >= self.overdue_at(holder, sent);
        let endgame = self.queue.is_empty();
        if !overdue && !endgame {
            return None;
        }
        let helper = self.best_source(&hash, Some(holder), now)?;
        let helper_idle = self.sources[helper].in_flight.is_empty();
        let faster = match (
            self.sources[helper].rate(now),
            self.sources[holder].rate(now),
        ) {
            (Some(a), Some(b)) => a > b,
            _ => true,
        };
        if (overdue && faster) || (endgame && helper_idle) {
            self.sources[helper].send(hash, now);
            return Some((self.sources[helper].key, hash));
        }
        None
    }

    fn overdue_at(&self, holder: usize, sent: Instant) -> Instant {
        let usual = self.sources[holder]
            .latency
            .unwrap_or(self.config.stall_timeout / 4);
        sent + usual.mul_f64(RESCUE_FACTOR).max(MIN_RESCUE)
    }

    /// An item arrived from `key`, `len` bytes, said to be `hash`.
    pub fn arrived(&mut self, key: &S, hash: ContentHash, len: u64, now: Instant) -> Arrival {
        let Some(i) = self.source_index(key) else {
            return Arrival::Unsolicited;
        };
        let was_full = !self.sources[i].has_room(self.config.item_size);
        let Some(request) = self.sources[i].take(&hash, now) else {
            if self.sources[i].forget_abandoned(&hash) {
                self.sources[i].last_progress = now;
                self.sources[i].probation_until = None;
                return Arrival::Late;
            }
            if self.sources[i].live() {
                self.drop_index(i, DropReason::Unsolicited, now);
            }
            return Arrival::Unsolicited;
        };
        let source = &mut self.sources[i];
        source.delivered(&request, len, now);
        if was_full {
            source.window =
                (source.window + self.config.item_size).min(self.config.max_source_window);
        }
        if self.held.contains_key(&hash) {
            return Arrival::Late;
        }
        // The copies asked of others are not needed any more.
        for other in self.sources.iter_mut() {
            if other.take(&hash, now).is_some() {
                other.remember_abandoned(hash);
                self.cancels.push_back((other.key, hash));
            }
        }
        self.held.insert(hash, (*key, len));
        self.held_bytes += len;
        Arrival::Expected
    }

    /// The source holds no such item (`N`).
    pub fn missing(&mut self, key: &S, hash: ContentHash, now: Instant) {
        let Some(i) = self.source_index(key) else {
            return;
        };
        let source = &mut self.sources[i];
        if source.take(&hash, now).is_none() && !source.forget_abandoned(&hash) {
            return; // not asked: ignored
        }
        source.last_progress = now;
        source.lacks.insert(hash);
        if source.lacks.len() > MAX_LACKS {
            self.drop_index(i, DropReason::Lacks, now);
        }
        self.requeue_unless_covered(hash);
    }

    /// The source is too busy for this request (`B`): its window is halved.
    pub fn busy(&mut self, key: &S, hash: ContentHash, now: Instant) {
        let Some(i) = self.source_index(key) else {
            return;
        };
        let item = self.config.item_size;
        let source = &mut self.sources[i];
        if source.take(&hash, now).is_none() {
            source.forget_abandoned(&hash);
            return;
        }
        source.last_progress = now;
        source.window = (source.window / 2).max(item);
        self.requeue_unless_covered(hash);
    }

    /// The request for `hash` that [`poll_request`](Scheduler::poll_request) gave for `key`
    /// was not sent after all (the driver could not send it now, e.g. another fetch has the
    /// same item asked of that peer): taken back, not counted against the source, and wanted
    /// first again. The driver waits a moment before polling again: the same request comes
    /// back. It stays first on purpose: items after it, asked for meanwhile, would arrive and
    /// be held waiting for it (the output goes in file order) until they filled the window,
    /// and then it could never be asked for.
    pub fn unsend(&mut self, key: &S, hash: ContentHash, now: Instant) {
        let Some(i) = self.source_index(key) else {
            return;
        };
        if self.sources[i].take(&hash, now).is_some() {
            self.requeue_unless_covered(hash);
        }
    }

    /// Drops the source for `reason` (it broke the wire format, sent what nobody asked it
    /// for): its requests go to the others.
    pub fn drop_source(&mut self, key: &S, reason: DropReason, now: Instant) {
        if let Some(i) = self.source_index(key) {
            self.drop_index(i, reason, now);
        }
    }

    /// An [`Arrival::Expected`] item did not hash to its name: the source is dropped and the
    /// item asked of others.
    pub fn wrong(&mut self, hash: ContentHash, now: Instant) {
        let Some((key, len)) = self.held.remove(&hash) else {
            return;
        };
        self.held_bytes -= len;
        if let Some(i) = self.source_index(&key) {
            self.sources[i].wrong_items += 1;
            self.drop_index(i, DropReason::WrongItem, now);
        }
        self.queue.push_front(hash);
    }

    /// An [`Arrival::Expected`] item is stored (and written out): its bytes leave the window.
    pub fn done(&mut self, hash: &ContentHash) {
        if let Some((_, len)) = self.held.remove(hash) {
            self.held_bytes -= len;
        }
    }

    fn requeue_unless_covered(&mut self, hash: ContentHash) {
        if !self.held.contains_key(&hash) && self.outstanding(&hash) == 0 {
            self.queue.push_front(hash);
        }
    }

    fn drop_index(&mut self, i: usize, reason: DropReason, now: Instant) {
        if !self.sources[i].live() {
            return;
        }
        self.sources[i].dropped = Some(reason);
        let key = self.sources[i].key;
        let hashes = self.sources[i].abandon_all(now);
        for hash in hashes.into_iter().rev() {
            self.requeue_unless_covered(hash);
        }
        self.events.push_back(SchedEvent::Dropped {
            source: key,
            reason,
        });
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stall = self.config.stall_timeout;
        let stalls = self
            .sources
            .iter()
            .filter(|s| s.live())
            .filter_map(|s| s.stall_deadline(stall));
        let probations = self.sources.iter().filter_map(|s| s.probation_until);
        let rescue = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.in_flight.first().map(|r| self.overdue_at(i, r.sent)))
            .filter(|at| self.last_timeout.is_none_or(|last| *at > last))
            .min();
        stalls.chain(probations).chain(rescue).min()
    }

    /// Stalls sources that delivered nothing for the stall timeout; ends probations.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_timeout = Some(now);
        let stall = self.config.stall_timeout;
        for i in 0..self.sources.len() {
            let source = &mut self.sources[i];
            if source.probation_until.is_some_and(|until| now >= until) {
                source.probation_until = None;
            }
            if !source.live() || source.stall_deadline(stall).is_none_or(|d| now < d) {
                continue;
            }
            source.stalls += 1;
            source.window = self.config.item_size;
            source.probation_until = Some(now + stall);
            source.last_progress = now;
            let key = source.key;
            if source.stalls > self.config.max_stalls {
                self.drop_index(i, DropReason::Stalls, now);
                continue;
            }
            let hashes = self.sources[i].abandon_all(now);
            for hash in hashes.into_iter().rev() {
                self.requeue_unless_covered(hash);
            }
            self.events.push_back(SchedEvent::Stalled(key));
        }
    }

    /// The next request to cancel: `(source, item)`.
    pub fn poll_cancel(&mut self) -> Option<(S, ContentHash)> {
        self.cancels.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SchedEvent<S>> {
        self.events.pop_front()
    }

    /// Every request in flight: `(source, item)` (to cancel them when the fetch ends early).
    pub fn in_flight_requests(&self) -> Vec<(S, ContentHash)> {
        self.sources
            .iter()
            .flat_map(|s| s.in_flight.iter().map(move |r| (s.key, r.hash)))
            .collect()
    }

    /// Every source's part so far.
    pub fn report(&self) -> Vec<SourceReport<S>> {
        self.sources
            .iter()
            .map(|s| SourceReport {
                source: s.key,
                items: s.delivered_items,
                bytes: s.delivered_bytes,
                wrong_items: s.wrong_items,
                dropped: s.dropped,
            })
            .collect()
    }
}
