//! `kith file hash|put|get|ls|rm`: the local content store, usable with or without a running
//! node (the store takes a lock, so both can share one data dir). `file get --from AGENT`
//! (or a `file get` of a file that is not here, with a node running) has the node fetch the
//! file from a linked peer first.

use super::Env;
use crate::cli::FileCommand;
use crate::output::print_json;
use anyhow::{Context, Result};
use kith_node::control::{ControlClient, FetchBody, FetchReport, FETCH_PATH};
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
        FileCommand::Get { hash, output, from } => {
            let hash = parse_hash(&hash)?;
            let fetched = fetch_if_needed(env, &mut store, &hash, from)?;
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
) -> Result<Option<FetchReport>> {
    let dir = &env.config.data_dir;
    let control = ControlClient::new(
        dir.root(),
        dir.control_socket(),
        Duration::from_millis(env.config.limits.exchange_fetch_timeout_ms),
    );
    if from.is_none() && (store.get(hash)?.is_some() || !control.is_running()) {
        return Ok(None);
    }
    let body = FetchBody {
        hash: hash.to_hex(),
        from,
    };
    Ok(Some(control.post(FETCH_PATH, &body)?))
}

fn parse_hash(text: &str) -> Result<ContentHash> {
    text.parse::<ContentHash>()
        .with_context(|| format!("{text:?} is not a content address (64 lowercase hex digits)"))
}
