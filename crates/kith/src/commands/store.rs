//! `kith store gc`: reclaim what crashes left in the store. Works on the data dir directly,
//! with or without a node running: the store's write lease keeps it away from every writer
//! (in the node or another command), so it waits for them rather than racing them.

use super::Env;
use crate::cli::StoreCommand;
use crate::output::print_json;
use anyhow::{Context, Result};
use kith_store::gc::{GcOptions, GcReport};
use kith_store::StoreError;

/// Runs one `kith store` subcommand.
pub fn run(env: &Env, command: StoreCommand) -> Result<()> {
    let StoreCommand::Gc { grace } = command;
    let grace = humantime::parse_duration(&grace)
        .with_context(|| format!("--grace {grace:?} is not a duration like 24h, 30m or 0s"))?;
    let store = env
        .config
        .open_file_store()
        .context("cannot open the file store")?;
    let mut options = GcOptions {
        grace_secs: grace.as_secs(),
        wait: false,
    };
    let report: GcReport = match store.gc(&options) {
        Err(StoreError::Busy) => {
            eprintln!(
                "waiting: a put, fetch or custody copy is writing to the store; \
                 gc runs when it has finished (Ctrl-C to give up)"
            );
            options.wait = true;
            store.gc(&options)?
        }
        other => other?,
    };
    if env.json {
        print_json(&report)
    } else {
        println!("{report}");
        Ok(())
    }
}
