//! Fetching a folder: `kith file get` of a folder manifest ([`kith_store::folder`]).
//!
//! The manifest is fetched as any file is (same sources, windowed or turn-taking, verified),
//! and recognised by its first line before it would be written out as a file. It is then
//! decoded within [`ManifestLimits`] (it came from the network: a path that would leave the
//! folder, or any other malformation, refuses the whole folder before anything is fetched or
//! written). Each of its files not already here whole is fetched as any file is (windowed,
//! multi-source), unrecorded on its own: once all are here the manifest's record names every
//! item of the folder. So a re-run resumes: files already here are not fetched again, and a
//! file fetched in part resumes as a file does. Finally the folder is written out whole or
//! not at all ([`kith_store::FileStore::write_folder`]).
//!
//! Several files are fetched at once (`folder_parallel_files`, 32): a folder of many small
//! files is bound by round trips (each file's holders are asked, then its root item, then
//! its chunks), not by bytes, so one at a time costs a few round trips per file (256 files of
//! 256 KiB across a 50 ms round trip: 27.4 s one at a time, 1.5 s 32 at once). Memory stays
//! that of one fetch: a file's fetch holds at most its size or the fetch window, and files
//! run together only while those shares fit in one window (a large file runs alone).
//!
//! Progress and cancellation are the folder's: every file's fetch counts its bytes towards
//! the folder's transfer and is cancelled with it (Ctrl-C on `kith file get`).

use super::fetch::{fetch_order, OutputSpec};
use super::output::OutputError;
use super::{Exchange, ExchangeError, FetchOrder, Priority};
use crate::api::{FetchReport, SourceShare};
use futures_util::stream::{FuturesUnordered, StreamExt};
use kith_store::folder::ManifestLimits;
use kith_store::{ContentHash, StoreError};
use std::collections::HashSet;
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
    if let Some((path, force)) = &target {
        // Refused before anything moves, not after the transfer.
        if !path.is_absolute() {
            return Err(OutputError::NotAbsolute(path.clone()).into());
        }
        if !force && std::fs::symlink_metadata(path).is_ok() {
            return Err(OutputError::Exists(path.clone()).into());
        }
    }
    let total = folder.total_bytes();
    if let Priority::Background { max_bytes } = order.priority {
        // Background work stores no more than it was offered: the files the manifest
        // declares must fit, and each file's fetch is held to its declared size.
        if total.saturating_add(manifest.size) > max_bytes {
            return Err(ExchangeError::OverBudget {
                peer: manifest.from.clone(),
                budget: max_bytes,
            });
        }
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
    let mut fetched = 0u64;
    let mut seen = HashSet::new();
    let mut pending: std::collections::VecDeque<(ContentHash, u64)> = folder
        .files
        .iter()
        .filter(|entry| seen.insert(entry.hash))
        .map(|entry| (entry.hash, entry.size))
        .collect();
    let window = ex.node_limits().fetch_window_bytes.max(1);
    let parallel = ex.node_limits().folder_parallel_files.max(1);
    let mut running = FuturesUnordered::new();
    let mut running_bytes = 0u64;
    loop {
        while let Some(&(file, size)) = pending.front() {
            let share = size.min(window);
            if !admit(running.len(), parallel, running_bytes, share, window) {
                break;
            }
            if cancel.is_cancelled() {
                return Err(ExchangeError::Cancelled);
            }
            pending.pop_front();
            running_bytes += share;
            running.push(async move { (share, fetch_file(ex, order, hash, file, size).await) });
        }
        let Some((share, got)) = running.next().await else {
            break;
        };
        running_bytes -= share;
        // The first failure ends the folder: dropping the others cancels their requests.
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
    if let Some((path, force)) = target {
        let out = path.clone();
        let written = ex
            .store
            .call(move |s| s.write_folder(&folder, &out, force, &mut |_| {}))
            .await?;
        report.written = Some(match written {
            Ok(n) => n,
            Err(e) if e.is_target_exists() => return Err(OutputError::Exists(path).into()),
            Err(e) => return Err(e.into()),
        });
        report.path = Some(path.display().to_string());
    }
    report.already_present = manifest.already_present && fetched == 0;
    report.files_fetched = Some(fetched);
    Ok(report)
}

/// Whether a file whose fetch may hold `share` bytes starts now, with `running` fetches
/// holding up to `running_bytes`: always when none runs, else while the count stays under
/// `parallel` and the shares within one fetch `window`.
fn admit(running: usize, parallel: usize, running_bytes: u64, share: u64, window: u64) -> bool {
    running == 0 || (running < parallel && running_bytes + share <= window)
}

/// One file of the folder `folder`: `None` when it is here whole already.
async fn fetch_file(
    ex: &Exchange,
    order: &FetchOrder,
    folder: ContentHash,
    file: ContentHash,
    size: u64,
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
    use super::admit;

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
    fn a_large_file_runs_alone_but_always_runs() {
        assert!(admit(0, 8, 0, WINDOW, WINDOW));
        assert!(!admit(1, 8, 1, WINDOW, WINDOW));
    }
}
