//! `kith file hash|put|get|ls|rm|share`: the local content store (files and [`folder`]s), usable with or without a running
//! node (the store takes a lock, so both can share one data dir). `file get` of a file that
//! is not here has the node fetch it from its linked peers ([`get`]); `file share --ticket`
//! prints a file ticket ([`ticket`]).

mod folder;
mod get;
pub mod ticket;

use super::Env;
use crate::cli::FileCommand;
use crate::output::{print_json, report};
use anyhow::{Context, Result};
use kith_node::api::ShareReport;
use kith_node::api::{Changed, HashBody, SHARE_PATH, UNSHARE_PATH};
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
        FileCommand::Put { path } if path.is_dir() => {
            let put = folder::put(&store, &path, env.json)?;
            if env.json {
                print_json(&put)
            } else {
                println!("{}", put["hash"].as_str().unwrap_or_default());
                Ok(())
            }
        }
        FileCommand::Put { path } => {
            let record = put(&store, &path, env.json)?;
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
            force,
            rate,
            max_price,
        } => get::run(
            env,
            &store,
            get::GetArgs {
                target: hash,
                output,
                from,
                force,
                rate,
                max_price,
            },
        ),
        FileCommand::Ls => folder::list(&store, env.json),
        FileCommand::Share {
            hash,
            ticket: true,
            ttl,
            ..
        } => file_ticket(env, &store, &parse_hash(&hash)?, &ttl),
        FileCommand::Share { hash, stop, .. } => share(env, &mut store, &parse_hash(&hash)?, stop),
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

/// `kith file put PATH`, with a progress bar on a terminal.
pub(crate) fn put(
    store: &FileStore,
    path: &std::path::Path,
    json: bool,
) -> Result<kith_store::FileRecord> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).ok();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let bar = crate::progress::bar(
        size,
        &format!("storing {}", name.as_deref().unwrap_or("")),
        json,
    );
    let mut reader = bar.wrap_read(file);
    let record = match store.put_reader(&mut reader, name.as_deref()) {
        // A remove in another process took an item meanwhile: the plain put retries.
        Err(kith_store::StoreError::ItemVanished { .. }) => store.put_path(path, None)?,
        other => other?,
    };
    bar.finish_and_clear();
    Ok(record)
}

/// `kith file share HASH --ticket`: a one-line file ticket, with a fresh one-time ticket for
/// this node inside.
fn file_ticket(env: &Env, store: &FileStore, hash: &ContentHash, ttl: &str) -> Result<()> {
    let Some(record) = store.get(hash)? else {
        anyhow::bail!(
            "no stored file has the hash {hash}; store it first with `kith file put PATH`"
        );
    };
    let ttl = humantime::parse_duration(ttl)
        .with_context(|| format!("--ttl {ttl:?} is not a duration like 45m, 2h or 7d"))?;
    let issued = super::links::issue_ticket(
        env,
        kith_node::api::TicketOrder {
            reusable: false,
            ttl_secs: ttl.as_secs(),
            cuid: None,
            code: false,
        },
    )?;
    let ticket = ticket::FileTicket {
        hash: hash.to_hex(),
        name: record.name,
        size: Some(record.size),
        ticket: issued.ticket,
    };
    let line = ticket.to_line();
    if env.json {
        return print_json(&json!({"hash": hash.to_hex(), "ticket": line}));
    }
    println!("{line}");
    eprintln!(
        "one use, expires {}; whoever holds it can link to this node and fetch the file: \
         `kith file get TICKET`",
        ticket.ticket.expires
    );
    Ok(())
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
