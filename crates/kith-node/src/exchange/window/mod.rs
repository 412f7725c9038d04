//! A windowed fetch: one file from every peer that holds it, many items in flight.
//!
//! 1. **Who holds it.** Every candidate (a linked peer whose `version` lists
//!    [`kith_proto::files::items::CAPABILITY`]) is asked `Q HASH`; those that hold the file
//!    whole or in part become sources, and the name and size they give are the file's. With
//!    one candidate (`--from`), the file's root item is asked for with the question, not a
//!    round trip after its answer: a small file then costs one round trip, not two.
//! 2. **The transfer.** A [`Scheduler`] plans the requests (windows in bytes, the faster
//!    sources getting more, stalls and lies dropping a source), a [`TreeWalk`](super::tree::TreeWalk) says what to
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

mod arrivals;
mod run;

use run::Run;

use super::output::OutputFile;
use super::pulls::PullInput;
use super::{Exchange, ExchangeError, Priority};
use crate::api::FetchReport;
use kith_crypto::identity::AgentId;
use kith_proto::files::items::{Answer, Holding, Request, Response};
use kith_store::ContentHash;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
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
    /// A window below the node's (see `FetchOrder::window`).
    pub window: Option<u64>,
    /// The temporary output is noted in the output journal (for a crash's clean-up); not
    /// for a file written into a folder's tree, which is noted whole.
    pub journaled: bool,
}

/// Runs a windowed fetch. `Err(NoPeerHas)` (or `NotFound` for a single candidate) when no
/// candidate holds the file, so the caller can try the turn-taking session with others.
pub(super) async fn pull(ex: &Exchange, order: PullOrder) -> Result<FetchReport, ExchangeError> {
    let (handle, mut rx) = ex.pulls.register();
    let id = handle.id;
    let hash = order.hash;
    let Queried { answers, early } = query(ex, id, &order, &mut rx).await?;
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
            let journal = order.journaled.then(|| ex.store.files().output_journal());
            Some(OutputFile::create(path, *force, journal.as_ref())?)
        }
        None => None,
    };
    let mut run = Run::new(ex, id, &order, &holders);
    if let Some(peer) = early.root_from {
        run.asked_root(peer);
    }
    for input in early.inputs {
        run.on_input(input);
    }
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

/// What [`query`] learnt.
struct Queried {
    /// Each candidate's answer.
    answers: HashMap<AgentId, Answer>,
    early: Early,
}

/// The root item asked for with the question, and what arrived for it meanwhile (for the
/// transfer, in order).
#[derive(Default)]
struct Early {
    root_from: Option<AgentId>,
    inputs: Vec<PullInput>,
}

/// Asks every candidate whether it holds the file; a lone candidate is asked for the root
/// item too, at once (unless the store has it).
async fn query(
    ex: &Exchange,
    id: u64,
    order: &PullOrder,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<PullInput>,
) -> Result<Queried, ExchangeError> {
    let mut waiting = HashSet::new();
    let mut early = Early::default();
    let root = order.hash;
    let lone = match order.candidates.as_slice() {
        [peer] if !ex.store.run(move |s| s.blobs().contains(&root)).await? => Some(*peer),
        _ => None,
    };
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
        if lone == Some(*peer) && ex.pulls.route_item(id, *peer, root) {
            for env in Request::Get(vec![root]).encode() {
                if ex.endpoint.send_linked(*peer, env).await.is_ok() {
                    early.root_from = Some(*peer);
                }
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
                // The root item (or its "missing"), before the answer: kept for the run.
                Some(input @ PullInput::Response(..)) if early.root_from.is_some() => {
                    if early.inputs.len() < MAX_EARLY {
                        early.inputs.push(input);
                    }
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = order.cancel.cancelled() => return Err(ExchangeError::Cancelled),
        }
    }
    Ok(Queried { answers, early })
}

/// Inputs kept from before the answers at most: one item was asked for, so one answer to it
/// (an item routed to us is one we asked for; the bound is for safety).
const MAX_EARLY: usize = 4;

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
