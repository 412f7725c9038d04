//! Folders in the CLI: `kith file put DIR` (stored here, no node needed) and the folder side of
//! `kith file ls` and `kith file get`. The format and the rules are kith-store's
//! ([`kith_store::folder`]); fetching a folder is the node's ([`super::get`] asks it).

use crate::progress::human_bytes;
use anyhow::{bail, Context, Result};
use kith_store::folder::{FolderScan, ManifestLimits};
use kith_store::{ContentHash, FileRecord, FileStore};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// `kith file put DIR`: stores the folder and returns what `--json` prints (a file's record
/// plus `folder`, `files`, `bytes` and `skipped`).
pub fn put(store: &FileStore, dir: &Path, quiet: bool) -> Result<Value> {
    let scan = FolderScan::of(dir, &ManifestLimits::default())
        .with_context(|| format!("cannot store the folder {}", dir.display()))?;
    for skipped in &scan.skipped {
        eprintln!(
            "warning: skipped {}: {}",
            skipped.path.display(),
            skipped.reason
        );
    }
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let bar = crate::progress::bar(
        Some(scan.bytes),
        &format!("storing {}/", name.as_deref().unwrap_or("")),
        quiet,
    );
    let put = store.put_folder(&scan, name.as_deref(), &mut |n| bar.inc(n))?;
    bar.finish_and_clear();
    let mut out = serde_json::to_value(&put.record)?;
    out["folder"] = json!(true);
    out["files"] = json!(put.folder.files);
    out["bytes"] = json!(put.folder.bytes);
    out["skipped"] = json!(scan
        .skipped
        .iter()
        .map(|s| json!({"path": s.path, "reason": s.reason}))
        .collect::<Vec<_>>());
    if !quiet {
        eprintln!(
            "stored folder {} ({} files, {})",
            name.as_deref().unwrap_or("?"),
            put.folder.files,
            human_bytes(put.folder.bytes as f64)
        );
    }
    Ok(out)
}

/// `kith file ls`: files and folders (a folder's size is its files' bytes).
pub fn list(store: &FileStore, json_out: bool) -> Result<()> {
    let files = store.list()?;
    let folders: HashMap<ContentHash, _> = store
        .meta()
        .list_folders()?
        .into_iter()
        .map(|f| (f.hash, f))
        .collect();
    if json_out {
        let rows: Vec<Value> = files
            .iter()
            .map(|f| {
                let mut row = serde_json::to_value(f)?;
                row["folder"] = json!(folders.contains_key(&f.hash));
                if let Some(folder) = folders.get(&f.hash) {
                    row["files"] = json!(folder.files);
                    row["bytes"] = json!(folder.bytes);
                }
                Ok(row)
            })
            .collect::<Result<_>>()?;
        return crate::output::print_json(&rows);
    }
    for file in &files {
        let name = file.name.as_deref().unwrap_or("-");
        match folders.get(&file.hash) {
            Some(folder) => println!(
                "{}  {:>12}  dir   {name}/ ({} file{})",
                file.hash,
                folder.bytes,
                folder.files,
                if folder.files == 1 { "" } else { "s" }
            ),
            None => println!(
                "{}  {:>12}  {:<4}  {name}",
                file.hash,
                file.size,
                file.kind.as_str()
            ),
        }
    }
    Ok(())
}

/// Whether the stored `record` is a folder: whole here (recorded as one), or a manifest whose
/// files may not all be here yet (`Some(false)`: the node must fetch them).
pub fn stored_folder(store: &FileStore, record: &FileRecord) -> Result<Option<bool>> {
    if store.meta().get_folder(&record.hash)?.is_some() {
        return Ok(Some(true));
    }
    Ok(store.is_folder_manifest(&record.hash)?.then_some(false))
}

/// Writes the folder `hash`, whole here, to `target`; returns its bytes.
pub fn write_local(
    store: &FileStore,
    hash: &ContentHash,
    target: &Path,
    force: bool,
) -> Result<u64> {
    let manifest = store.read_manifest(hash, &ManifestLimits::default())?;
    match store.write_folder(&manifest, target, force, &mut |_| {}) {
        Ok(n) => Ok(n),
        Err(e) if e.is_target_exists() => {
            bail!("{} exists; pass --force to replace it", target.display())
        }
        Err(e) => Err(e.into()),
    }
}
