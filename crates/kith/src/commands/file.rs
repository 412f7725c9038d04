//! `kith file hash|put|get|ls|rm|share`: the local content store, usable with or without a running
//! node (the store takes a lock, so both can share one data dir). `file get --from AGENT`
//! (or a `file get` of a file that is not here, with a node running) has the node fetch the
//! file from a linked peer first.

use super::Env;
use crate::cli::FileCommand;
use crate::output::{print_json, report};
use crate::progress::TransferBar;
use anyhow::{Context, Result};
use kith_node::api::ShareReport;
use kith_node::api::{
    Changed, FetchBody, FetchReport, HashBody, FETCH_PATH, SHARE_PATH, UNSHARE_PATH,
};
use kith_node::control::ControlClient;
use kith_store::{ContentHash, FileStore, RemoveOutcome};
use serde_json::json;
use std::time::Duration;

/// Runs one `kith file` subcommand.
pub fn run(env: &Env, command: FileCommand) -> Result<()> {
    // Creating the identity here too keeps the promise that a fresh data dir is set up as
    // `kith init` would, whichever command touches it first.
    env.identity()?;
    let mut store = env
        .config
        .open_file_store()
        .context("cannot open the file store")?;
    match command {
        FileCommand::Hash { path } => {
            let hash = store.hash_path(&path)?;
            if env.json {
                print_json(&json!({"hash": hash.to_hex(), "path": path}))
            } else {
                println!("{hash}");
                Ok(())
            }
        }
        FileCommand::Put { path } => {
            let record = store.put_path(&path, None)?;
            if env.json {
                print_json(&record)
            } else {
                println!("{}", record.hash);
                Ok(())
            }
        }
        FileCommand::Get {
            hash,
            output,
            from,
            max_price,
        } => {
            let hash = parse_hash(&hash)?;
            let fetched = fetch_if_needed(env, &mut store, &hash, from, max_price)?;
            if let (Some(report), false) = (&fetched, env.json) {
                eprintln!(
                    "fetched {} of {} items ({} bytes) from {}",
                    report.items_fetched, report.items, report.size, report.from
                );
            }
            let bytes = match &output {
                Some(path) => store.get_to_path(&hash, path)?,
                None => {
                    let mut stdout = std::io::stdout().lock();
                    store.get_to_writer(&hash, &mut stdout)?
                }
            };
            if let (true, Some(path)) = (env.json, &output) {
                print_json(&json!({
                    "hash": hash.to_hex(),
                    "path": path,
                    "size": bytes,
                    "fetched": fetched,
                }))?;
            }
            Ok(())
        }
        FileCommand::Ls => {
            let files = store.list()?;
            if env.json {
                return print_json(&files);
            }
            for file in &files {
                let name = file.name.as_deref().unwrap_or("-");
                println!(
                    "{}  {:>12}  {:<4}  {name}",
                    file.hash,
                    file.size,
                    file.kind.as_str()
                );
            }
            Ok(())
        }
        FileCommand::Share { hash, stop } => share(env, &mut store, &parse_hash(&hash)?, stop),
        FileCommand::Rm { hash } => {
            let hash = parse_hash(&hash)?;
            match store.remove(&hash)? {
                RemoveOutcome::NotFound => anyhow::bail!("no stored file has the hash {hash}"),
                outcome @ RemoveOutcome::Removed { items_deleted } => {
                    if env.json {
                        print_json(&outcome)
                    } else {
                        println!("removed {hash} ({items_deleted} items deleted from disk)");
                        Ok(())
                    }
                }
            }
        }
    }
}

/// With `--from`, or when the file is not recorded here and a node runs, asks the node to
/// fetch it from a linked peer. With no node running and no `--from`, the local store alone
/// answers, as before.
fn fetch_if_needed(
    env: &Env,
    store: &mut FileStore,
    hash: &ContentHash,
    from: Option<String>,
    max_price: Option<u64>,
) -> Result<Option<FetchReport>> {
    let dir = &env.config.data_dir;
    let control = ControlClient::new(
        dir.root(),
        dir.control_socket(),
        Duration::from_millis(env.config.node_limits.exchange_fetch_timeout_ms),
    );
    if from.is_none() && (store.get(hash)?.is_some() || !control.is_running()) {
        return Ok(None);
    }
    let body = FetchBody {
        hash: hash.to_hex(),
        from,
        max_price,
    };
    let _bar = TransferBar::start(&control, &body.hash, "fetching", env.json);
    Ok(Some(control.post(FETCH_PATH, &body)?))
}

/// `kith file share HASH [--stop]`: through the running node, which offers the file to its
/// linked peers at once; with no node running, recorded here and offered when the node next
/// runs (to every peer that links).
fn share(env: &Env, store: &mut FileStore, hash: &ContentHash, stop: bool) -> Result<()> {
    let dir = &env.config.data_dir;
    let control = ControlClient::new(
        dir.root(),
        dir.control_socket(),
        Duration::from_millis(env.config.node_limits.control_timeout_ms),
    );
    let body = HashBody {
        hash: hash.to_hex(),
    };
    if stop {
        let changed = if control.is_running() {
            control.post::<_, Changed>(UNSHARE_PATH, &body)?.changed
        } else {
            store.meta().unshare_file(hash)?
        };
        let text = if changed {
            format!("{hash} is no longer offered to peers")
        } else {
            format!("{hash} was not shared")
        };
        return report(
            env.json,
            json!({"hash": hash.to_hex(), "changed": changed}),
            &text,
        );
    }
    if control.is_running() {
        let shared: ShareReport = control.post(SHARE_PATH, &body)?;
        let text = match shared.offered_to.len() {
            0 => format!(
                "shared {hash}; no peer is linked now: it is offered to each peer that links"
            ),
            n => format!(
                "shared {hash}; offered to {n} linked peer(s), and to each peer that links later"
            ),
        };
        return report(env.json, serde_json::to_value(&shared)?, &text);
    }
    let Some(record) = store.get(hash)? else {
        anyhow::bail!(
            "no stored file has the hash {hash}; store it first with `kith file put PATH`"
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let newly_shared = store.meta().share_file(hash, now)?;
    let shared = ShareReport {
        hash: hash.to_hex(),
        size: record.size,
        newly_shared,
        offered_to: Vec::new(),
    };
    let text =
        format!("shared {hash}; no node is running: it is offered to peers once `kith up` runs");
    report(env.json, serde_json::to_value(&shared)?, &text)
}

fn parse_hash(text: &str) -> Result<ContentHash> {
    text.parse::<ContentHash>()
        .with_context(|| format!("{text:?} is not a content address (64 lowercase hex digits)"))
}
