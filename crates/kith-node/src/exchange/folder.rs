//! Fetching a folder: `kith file get` of a folder manifest ([`kith_store::folder`]).
//!
//! The manifest is fetched as any file is (same sources, windowed or turn-taking, verified),
//! and recognised by its first line before it would be written out as a file. It is then
//! decoded within [`ManifestLimits`] (it came from the network: a path that would leave the
//! folder, or any other malformation, refuses the whole folder before anything is fetched or
//! written). Each of its files not already here whole is fetched as any file is (windowed,
//! multi-source), unrecorded on its own: once all are here the manifest's record names every
//! item of the folder. So a re-run resumes: files already here are not fetched again, and a
//! file fetched in part resumes as a file does.
//!
//! The folder is written out whole or not at all, but as its files arrive
//! ([`kith_store::folder::FolderWriter`]): a temporary tree beside the target from the start,
//! each fetched file written into it by its own fetch as its items come, a file already here
//! (and every further copy of a file) from the store; the tree is renamed into place once the
//! folder is recorded. (Written after the transfer, a 1 GiB folder of 4 files took 5.2 s over
//! loopback; as it arrives, 2.9 s, as long as a 1 GiB file.)
//!
//! Several files are fetched at once (`folder_parallel_files`, 32): a folder of many small
//! files is bound by round trips (each file's holders are asked, then its root item, then
//! its chunks), not by bytes, so one at a time costs a few round trips per file (256 files of
//! 256 KiB across a 50 ms round trip: 27.4 s one at a time, 1.5 s 32 at once, 0.83 s since
//! each file's root item is asked with the question of who holds it). Memory stays
//! that of one fetch: each file gets a share of the window (its declared size, at least one
//! item, at most the window), files run together only while their shares fit in one window
//! (a large file runs alone), and each file's fetch is held to its share, so a manifest that
//! understates its sizes cannot make the files together hold more.
//!
//! Progress and cancellation are the folder's: every file's fetch counts its bytes towards
//! the folder's transfer and is cancelled with it (Ctrl-C on `kith file get`).

use super::fetch::{fetch_order, OutputSpec};
use super::output::OutputError;
use super::{Exchange, ExchangeError, FetchOrder, Priority};
use crate::api::{FetchReport, SourceShare};
use futures_util::stream::{FuturesUnordered, StreamExt};
use kith_store::folder::{adopt_entry, write_entry, FolderEntry, FolderWriter, ManifestLimits};
use kith_store::{ContentHash, StoreError};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Fetches the files of the folder whose manifest `manifest` fetched, and writes the folder
/// to the order's output (or `folder_into`).
pub(super) async fn complete(
    ex: &Exchange,
    order: &FetchOrder,
    manifest: FetchReport,
    cancel: CancellationToken,
) -> Result<FetchReport, ExchangeError> {
    let hash = order.hash;
    let limits = ManifestLimits::default();
    let folder = match ex
        .store
        .call(move |s| s.read_manifest(&hash, &limits))
        .await?
    {
        Ok(folder) => folder,
        Err(e @ StoreError::Manifest { .. }) => {
            return Err(ExchangeError::BadFolder(e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let name = manifest.name.clone();
    let spec: Option<&OutputSpec> = order.output.as_ref().or(order.folder_into.as_ref());
    let target = spec.map(|o| (o.resolve(name.as_deref(), &hash), o.force));
    if let Some((path, _)) = &target {
        // Refused before anything moves, not after the transfer.
        // (An existing `path` is refused by `begin_folder`, also before the transfer.)
        if !path.is_absolute() {
            return Err(OutputError::NotAbsolute(path.clone()).into());
        }
    }
    let total = folder.total_bytes();
    // Background work stores no more than it was offered: the files the manifest declares
    // must fit, and each file's fetch is held to its declared size (a user's has no bound).
    let budget = order.priority.byte_budget();
    if total.saturating_add(manifest.size) > budget {
        return Err(ExchangeError::OverBudget {
            peer: manifest.from.clone(),
            budget,
        });
    }
    let counted = if manifest.already_present {
        0
    } else {
        manifest.size
    };
    ex.progress
        .describe(hash, Some(total.saturating_add(counted)), name.clone());
    // The files arrive unrecorded until the folder is: no collection in between.
    let _lease = ex.store.run(|s| s.write_lease()).await?;
    let mut report = FetchReport {
        kind: "folder".to_owned(),
        size: total,
        folder: true,
        files: Some(folder.files.len() as u64),
        ..manifest.clone()
    };
    // The tree is built as the files arrive: a fetched file is written into it by its own
    // fetch as its items come (no second pass over the store afterwards), a file already
    // here is written from the store.
    // Shared with the writes from the store, so that the tree outlives any still running
    // when the folder ends early (it is removed when the last of them lets go).
    let mut writer = match &target {
        Some((path, force)) => {
            let (manifest, out, force) = (folder.clone(), path.clone(), *force);
            match ex
                .store
                .call(move |s| s.begin_folder(&manifest, &out, force))
                .await?
            {
                Ok(writer) => Some(Arc::new(writer)),
                Err(e) if e.is_target_exists() => {
                    return Err(OutputError::Exists(path.clone()).into())
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => None,
    };
    // Each distinct file once, with every place it takes in the folder (the first gives its
    // hash and size).
    let mut pending: VecDeque<Vec<FolderEntry>> = VecDeque::new();
    let mut index: HashMap<ContentHash, usize> = HashMap::new();
    for entry in &folder.files {
        match index.get(&entry.hash) {
            Some(&i) => pending[i].push(entry.clone()),
            None => {
                index.insert(entry.hash, pending.len());
                pending.push_back(vec![entry.clone()]);
            }
        }
    }
    let mut fetched = 0u64;
    let window = ex.node_limits().fetch_window_bytes.max(1);
    let parallel = ex.node_limits().folder_parallel_files.max(1);
    let mut running = FuturesUnordered::new();
    let mut running_bytes = 0u64;
    loop {
        while let Some((file, size)) = pending.front().map(|e| (e[0].hash, e[0].size)) {
            let share = share_of(size, ex.max_item() as u64, window);
            if !admit(running.len(), parallel, running_bytes, share, window) {
                break;
            }
            if cancel.is_cancelled() {
                return Err(ExchangeError::Cancelled);
            }
            let Some(entries) = pending.pop_front() else {
                break; // never: the front was just read
            };
            running_bytes += share;
            let out = writer.as_ref().map(|w| w.path_of(&entries[0]));
            let writer = writer.clone();
            // Each file's places in the tree are written in its own future: a long write
            // from the store must not keep the other fetches from being polled.
            running.push(async move {
                let got = fetch_file(ex, order, hash, file, (size, share), out).await;
                let got = match (got, writer) {
                    (Ok(got), Some(writer)) => place_copies(ex, writer, entries, got.is_some())
                        .await
                        .map(|()| got),
                    (got, _) => got,
                };
                (share, got)
            });
        }
        let Some((share, got)) = running.next().await else {
            break;
        };
        running_bytes -= share;
        // The first failure ends the folder: dropping the others cancels their requests,
        // and dropping the writer removes the tree.
        let Some(got) = got? else { continue };
        fetched += 1;
        report.items += got.items;
        report.items_fetched += got.items_fetched;
        report.wrong_items += got.wrong_items;
        merge(&mut report.sources, got.sources);
        if report.from.is_empty() {
            report.from = got.from;
        }
    }
    if cancel.is_cancelled() {
        return Err(ExchangeError::Cancelled);
    }
    let recorded = folder.clone();
    let named = name.clone();
    ex.store
        .run(move |s| s.record_folder(&hash, &recorded, named.as_deref()))
        .await?;
    if let (Some(writer), Some((path, _))) = (writer.take(), target) {
        // Every write into the tree has returned: ours is the only handle left.
        let writer = Arc::try_unwrap(writer)
            .map_err(|_| ExchangeError::Store("the folder's tree is still being written".into()))?;
        match ex.store.call(move |_| writer.finish()).await? {
            Ok(()) => {}
            Err(e) if e.is_target_exists() => return Err(OutputError::Exists(path).into()),
            Err(e) => return Err(e.into()),
        }
        report.written = Some(total);
        report.path = Some(path.display().to_string());
    }
    report.already_present = manifest.already_present && fetched == 0;
    report.files_fetched = Some(fetched);
    Ok(report)
}

/// Puts one file's places in the tree being built: the first was written by its fetch
/// (`fetched`: then it is checked and given its mode) or is written now from the store, as
/// is every other place the same file takes.
async fn place_copies(
    ex: &Exchange,
    writer: Arc<FolderWriter>,
    entries: Vec<FolderEntry>,
    fetched: bool,
) -> Result<(), ExchangeError> {
    for (n, entry) in entries.into_iter().enumerate() {
        // The blocking write holds the tree: if the folder ends meanwhile, the tree goes
        // when the write is done, not under it.
        let tree = Arc::clone(&writer);
        let placed = if n == 0 && fetched {
            ex.store
                .call(move |_| adopt_entry(&tree.path_of(&entry), &entry))
                .await?
        } else {
            ex.store
                .call(move |s| {
                    write_entry(s, &tree.path_of(&entry), &entry, &mut |_| {}).map(|_| ())
                })
                .await?
        };
        placed?;
    }
    Ok(())
}

/// The part of the folder's `window` a file of `size` declared bytes gets: its size, but at
/// least one item (a request reserves one whatever the item) and at most the window.
fn share_of(size: u64, item: u64, window: u64) -> u64 {
    size.clamp(item.min(window), window)
}

/// Whether a file whose fetch may hold `share` bytes starts now, with `running` fetches
/// holding up to `running_bytes`: always when none runs, else while the count stays under
/// `parallel` and the shares within one fetch `window`.
fn admit(running: usize, parallel: usize, running_bytes: u64, share: u64, window: u64) -> bool {
    running == 0 || (running < parallel && running_bytes + share <= window)
}

/// One file of the folder `folder`, written to `output` as it arrives if given: `None`
/// when it is here whole already (nothing is written then).
async fn fetch_file(
    ex: &Exchange,
    order: &FetchOrder,
    folder: ContentHash,
    file: ContentHash,
    (size, share): (u64, u64),
    output: Option<PathBuf>,
) -> Result<Option<FetchReport>, ExchangeError> {
    if ex.store.run(move |s| s.has_whole(&file)).await? {
        ex.progress.advance(folder, size);
        return Ok(None);
    }
    let mut one = FetchOrder::new(file, order.from);
    one.priority = match order.priority {
        Priority::User => Priority::User,
        Priority::Background { .. } => Priority::background_for(size, ex.max_item() as u64),
    };
    one.rate = order.rate;
    one.parent = Some(folder);
    one.record = false;
    // Held to its share of the folder's window, whatever it turns out to be (the manifest
    // that declared its size came from the network).
    one.window = Some(share);
    one.output = output.map(|path| OutputSpec {
        path,
        into_dir: false,
        force: false,
    });
    fetch_order(ex, one).await.map(Some)
}

/// Adds one file's sources to the folder's.
fn merge(into: &mut Vec<SourceShare>, from: Vec<SourceShare>) {
    for share in from {
        match into.iter_mut().find(|s| s.agent == share.agent) {
            Some(s) => {
                s.items += share.items;
                s.bytes += share.bytes;
                s.wrong_items += share.wrong_items;
                s.dropped = share.dropped.or(s.dropped.take());
            }
            None => into.push(share),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{admit, share_of};

    const WINDOW: u64 = 24 << 20;

    #[test]
    fn small_files_run_together_within_one_window_and_count() {
        assert!(admit(0, 8, 0, 1 << 20, WINDOW));
        assert!(admit(3, 8, 3 << 20, 1 << 20, WINDOW));
        assert!(!admit(8, 8, 8 << 10, 1 << 10, WINDOW));
        assert!(!admit(2, 8, 20 << 20, 8 << 20, WINDOW));
        assert!(
            !admit(1, 1, 1 << 10, 1 << 10, WINDOW),
            "one at a time when so set"
        );
    }

    #[test]
    fn a_file_s_share_is_at_least_an_item_and_at_most_the_window() {
        let item = 1_000_000;
        assert_eq!(
            share_of(1, item, WINDOW),
            item,
            "a tiny file, or one that says so"
        );
        assert_eq!(share_of(5_000_000, item, WINDOW), 5_000_000);
        assert_eq!(share_of(1 << 40, item, WINDOW), WINDOW);
        // So small files together never hold more than one window: 25 of them at most.
        let small = share_of(300, item, WINDOW);
        let mut running = (0usize, 0u64);
        while admit(running.0, 32, running.1, small, WINDOW) {
            running = (running.0 + 1, running.1 + small);
        }
        assert_eq!(running.0, 25);
        assert!(running.1 <= WINDOW);
    }

    #[test]
    fn a_large_file_runs_alone_but_always_runs() {
        assert!(admit(0, 8, 0, WINDOW, WINDOW));
        assert!(!admit(1, 8, 1, WINDOW, WINDOW));
    }
}
