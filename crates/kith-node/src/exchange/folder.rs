//! Fetching a folder: `kith file get` of a folder manifest ([`kith_store::folder`]).
//!
//! The manifest is fetched as any file is (same sources, windowed or turn-taking, verified),
//! and recognised by its first line before it would be written out as a file. It is then
//! decoded within [`ManifestLimits`] (it came from the network: a path that would leave the
//! folder, or any other malformation, refuses the whole folder before anything is fetched or
//! written). Each of its files not already here whole is fetched in turn by the same fetch
//! (windowed, multi-source), unrecorded on its own: once all are here the manifest's record
//! names every item of the folder. So a re-run resumes: files already here are not fetched
//! again, and a file fetched in part resumes as a file does. Finally the folder is written
//! out whole or not at all ([`kith_store::FileStore::write_folder`]).
//!
//! Progress and cancellation are the folder's: every file's fetch counts its bytes towards
//! the folder's transfer and is cancelled with it (Ctrl-C on `kith file get`).

use super::fetch::{fetch_order, OutputSpec};
use super::output::OutputError;
use super::{Exchange, ExchangeError, FetchOrder};
use crate::api::{FetchReport, SourceShare};
use kith_store::folder::ManifestLimits;
use kith_store::StoreError;
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
    for entry in &folder.files {
        if cancel.is_cancelled() {
            return Err(ExchangeError::Cancelled);
        }
        if !seen.insert(entry.hash) {
            continue;
        }
        let file = entry.hash;
        if ex.store.run(move |s| s.has_whole(&file)).await? {
            ex.progress.advance(hash, entry.size);
            continue;
        }
        let mut one = FetchOrder::new(file, order.from);
        one.priority = order.priority;
        one.rate = order.rate;
        one.parent = Some(hash);
        one.record = false;
        let got = fetch_order(ex, one).await?;
        fetched += 1;
        report.items += got.items;
        report.items_fetched += got.items_fetched;
        report.wrong_items += got.wrong_items;
        merge(&mut report.sources, got.sources);
        if report.from.is_empty() {
            report.from = got.from;
        }
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
            Err(StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                return Err(OutputError::Exists(path).into())
            }
            Err(e) => return Err(e.into()),
        });
        report.path = Some(path.display().to_string());
    }
    report.already_present = manifest.already_present && fetched == 0;
    report.files_fetched = Some(fetched);
    Ok(report)
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
