//! `kith file get HASH|TICKET|NAME [--from AGENT] [-o PATH] [--force] [--rate RATE]`.
//!
//! - What: a content address; a file ticket (`kith-file:…`, which links to its node first);
//!   or the name of a file stored here.
//! - Where: `-o PATH` (never replacing a file without `--force`; `-o -` is stdout); without
//!   `-o`, the file's own name in the current directory when stdout is a terminal, stdout
//!   when it is a pipe (scripts keep `kith file get HASH > out`).
//! - How: a file stored here is written out at once ("already present"). Otherwise the
//!   running node fetches it (from `--from` only, or from every linked peer that has it) and
//!   writes the output itself as the items arrive; the CLI shows the node's progress, and
//!   Ctrl-C cancels the transfer in the node (the items that arrived are kept: running the
//!   same command again resumes).

use super::ticket::FileTicket;
use crate::commands::Env;
use crate::output::print_json;
use crate::progress::{human_bytes, TransferBar};
use anyhow::{bail, Context, Result};
use kith_node::api::{
    Changed, ConnectBody, FetchBody, FetchReport, HashBody, CANCEL_PATH, CONNECT_PATH, FETCH_PATH,
};
use kith_node::control::{ControlClient, ControlError};
use kith_store::{ContentHash, FileStore};
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The flags of `file get`.
pub struct GetArgs {
    /// HASH, TICKET or NAME.
    pub target: String,
    /// `-o`.
    pub output: Option<PathBuf>,
    /// `--from`.
    pub from: Option<String>,
    /// `--force`.
    pub force: bool,
    /// `--rate`, bytes per second.
    pub rate: Option<u64>,
    /// `--max-price`: the most units to pay a priced source (with `--from`).
    pub max_price: Option<u64>,
}

/// Where the file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Stdout,
    File(PathBuf),
    /// The current directory, under the file's own name.
    Dir(PathBuf),
}

/// Runs `file get`.
pub fn run(env: &Env, store: &FileStore, args: GetArgs) -> Result<()> {
    let control = ControlClient::new(
        env.config.data_dir.root(),
        env.config.data_dir.control_socket(),
        Duration::from_millis(env.config.node_limits.exchange_fetch_timeout_ms),
    );
    let (hash, ticket) = resolve(store, &args.target)?;
    let mut from = args.from.clone();
    if let Some(ticket) = &ticket {
        from = Some(link(env, &control, store, ticket)?);
    }
    let out = match &args.output {
        Some(path) if path.as_os_str() == "-" => Out::Stdout,
        Some(path) => Out::File(absolute(path)?),
        None if std::io::stdout().is_terminal() => Out::Dir(std::env::current_dir()?),
        None => Out::Stdout,
    };
    if let Out::File(path) = &out {
        if path.exists() && !args.force {
            bail!("{} exists; pass --force to replace it", path.display());
        }
    }
    // Where a folder goes when the file would go to stdout: a folder cannot, so without -o
    // it takes its name in the current directory, as on a terminal.
    let folder_into = match (&out, &args.output) {
        (Out::Stdout, None) => Some(std::env::current_dir()?),
        _ => None,
    };
    let start = Instant::now();
    if from.is_none() {
        if let Some(record) = store.get(&hash)? {
            match super::folder::stored_folder(store, &record)? {
                Some(true) => {
                    let report = local_folder(store, &record, &out, folder_into, args.force)?;
                    let path = report.path.as_ref().map(PathBuf::from);
                    return finish(env, &report, path.as_deref(), start);
                }
                // A manifest whose files are not all here: the node fetches the rest.
                Some(false) => {
                    return fetch(env, &control, store, &hash, from, &out, folder_into, &args)
                }
                None => {}
            }
            let path = write_local(store, &hash, record.name.as_deref(), &out, args.force)?;
            let report = FetchReport {
                hash: hash.to_hex(),
                size: record.size,
                kind: record.kind.as_str().to_owned(),
                name: record.name.clone(),
                path: path.as_ref().map(|p| p.display().to_string()),
                written: path.as_ref().map(|_| record.size),
                already_present: true,
                ..FetchReport::default()
            };
            return finish(env, &report, path.as_deref(), start);
        }
    }
    fetch(env, &control, store, &hash, from, &out, folder_into, &args)
}

/// Has the running node fetch `hash` (and write it out, or the folder it is).
#[allow(clippy::too_many_arguments)]
fn fetch(
    env: &Env,
    control: &ControlClient,
    store: &FileStore,
    hash: &ContentHash,
    from: Option<String>,
    out: &Out,
    folder_into: Option<PathBuf>,
    args: &GetArgs,
) -> Result<()> {
    let start = Instant::now();
    if !control.is_running() {
        if from.is_none() {
            bail!(
                "no stored file has the hash {hash}, and no node is running to fetch it: start \
                 one (`kith up`) and link a peer that has it"
            );
        }
        return Err(ControlError::NotRunning {
            data_dir: env.config.data_dir.root().display().to_string(),
        }
        .into());
    }
    let (output, into_dir) = match out {
        Out::Stdout => (None, false),
        Out::File(path) => (Some(path.display().to_string()), false),
        Out::Dir(dir) => (Some(dir.display().to_string()), true),
    };
    let body = FetchBody {
        hash: hash.to_hex(),
        from,
        output,
        into_dir,
        force: args.force,
        rate: args.rate,
        max_price: args.max_price,
        folder_into: folder_into.map(|d| d.display().to_string()),
    };
    cancel_on_ctrl_c(control, &body.hash);
    let report: FetchReport = {
        let _bar = TransferBar::start(control, &body.hash, "fetching", env.json);
        control.post(FETCH_PATH, &body)?
    };
    if *out == Out::Stdout && report.folder && report.path.is_none() {
        bail!(
            "{hash} is a folder, now stored here; a folder cannot go to stdout: \
             `kith file get {hash} -o DIR`"
        );
    }
    if *out == Out::Stdout && !report.folder {
        let mut stdout = std::io::stdout().lock();
        store.get_to_writer(hash, &mut stdout)?;
    }
    let path = report.path.as_ref().map(PathBuf::from);
    finish(env, &report, path.as_deref(), start)
}

/// The address `target` names, and the file ticket it was.
fn resolve(store: &FileStore, target: &str) -> Result<(ContentHash, Option<FileTicket>)> {
    let target = target.trim();
    if FileTicket::looks_like(target) {
        let ticket = FileTicket::parse(target)?;
        return Ok((ticket.content_hash()?, Some(ticket)));
    }
    if let Ok(hash) = target.parse::<ContentHash>() {
        return Ok((hash, None));
    }
    let named: Vec<_> = store
        .list()?
        .into_iter()
        .filter(|f| f.name.as_deref() == Some(target))
        .collect();
    match named.as_slice() {
        [one] => Ok((one.hash, None)),
        [] => bail!(
            "{target:?} is not a content address (64 lowercase hex digits), a file ticket \
             ({}…), or the name of a file stored here (`kith file ls`)",
            super::ticket::PREFIX
        ),
        many => {
            let hashes: Vec<String> = many.iter().map(|f| f.hash.to_hex()).collect();
            bail!(
                "{} stored files are called {target:?}; name one by its hash: {}",
                many.len(),
                hashes.join(", ")
            )
        }
    }
}

/// Links to the node that issued the file ticket, unless it is a peer already; returns its
/// agent id.
fn link(
    env: &Env,
    control: &ControlClient,
    store: &FileStore,
    ticket: &FileTicket,
) -> Result<String> {
    let node = &ticket.ticket;
    let agent = node.agent()?;
    if store.meta().get_peer(&agent.to_string())?.is_some() {
        return Ok(agent.to_string());
    }
    node.check_unexpired(SystemTime::now())?;
    if !control.is_running() {
        return Err(ControlError::NotRunning {
            data_dir: env.config.data_dir.root().display().to_string(),
        }
        .into());
    }
    let limits = &env.config.limits;
    let dial = Duration::from_millis(limits.connect_timeout_ms + limits.handshake_timeout_ms);
    let _: kith_store::PeerRecord = control.allowing(dial).post(
        CONNECT_PATH,
        &ConnectBody {
            ticket: node.to_line(),
        },
    )?;
    if !env.json {
        eprintln!("linked with {agent}");
    }
    Ok(agent.to_string())
}

/// Writes a file stored here to `out`; returns the path written, if any.
fn write_local(
    store: &FileStore,
    hash: &ContentHash,
    name: Option<&str>,
    out: &Out,
    force: bool,
) -> Result<Option<PathBuf>> {
    let path = match out {
        Out::Stdout => {
            let mut stdout = std::io::stdout().lock();
            store.get_to_writer(hash, &mut stdout)?;
            return Ok(None);
        }
        Out::File(path) => path.clone(),
        Out::Dir(dir) => dir.join(kith_proto::files::items::output_name(name, hash)),
    };
    match store.write_out(hash, &path, force) {
        Ok(_) => Ok(Some(path)),
        Err(e) if e.is_target_exists() => {
            bail!("{} exists; pass --force to replace it", path.display())
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes a folder stored here whole (no node needed).
fn local_folder(
    store: &FileStore,
    record: &kith_store::FileRecord,
    out: &Out,
    folder_into: Option<PathBuf>,
    force: bool,
) -> Result<FetchReport> {
    let name = kith_proto::files::items::output_name(record.name.as_deref(), &record.hash);
    let target = match (out, folder_into.as_ref()) {
        (Out::File(path), _) => path.clone(),
        (Out::Dir(dir), _) | (Out::Stdout, Some(dir)) => dir.join(name),
        (Out::Stdout, None) => bail!(
            "{} is a folder; a folder cannot go to stdout: `kith file get {} -o DIR`",
            record.hash,
            record.hash
        ),
    };
    let written = super::folder::write_local(store, &record.hash, &target, force)?;
    let folder = store.meta().get_folder(&record.hash)?;
    Ok(FetchReport {
        hash: record.hash.to_hex(),
        size: written,
        kind: "folder".to_owned(),
        name: record.name.clone(),
        path: Some(target.display().to_string()),
        written: Some(written),
        already_present: true,
        folder: true,
        files: folder.map(|f| f.files),
        files_fetched: Some(0),
        ..FetchReport::default()
    })
}

fn finish(env: &Env, report: &FetchReport, path: Option<&Path>, start: Instant) -> Result<()> {
    if env.json {
        return print_json(&json!({
            "hash": report.hash,
            "path": path,
            "size": report.size,
            "name": report.name,
            "already_present": report.already_present,
            "folder": report.folder,
            "fetched": report,
        }));
    }
    let name = report.name.as_deref().unwrap_or(&report.hash);
    let size = match report.files {
        Some(n) if report.folder => format!(
            "{n} file{}, {}",
            if n == 1 { "" } else { "s" },
            human_bytes(report.size as f64)
        ),
        _ => human_bytes(report.size as f64),
    };
    let name = if report.folder {
        format!("folder {name}")
    } else {
        name.to_owned()
    };
    let to = path.map_or(String::new(), |p| format!(" -> {}", p.display()));
    if report.already_present {
        eprintln!("{name} ({size}) is already present{to}");
        return Ok(());
    }
    let secs = start.elapsed().as_secs_f64();
    let sources = report.sources.iter().filter(|s| s.items > 0).count().max(1);
    eprintln!(
        "fetched {name} ({size}) in {secs:.1} s ({}/s) from {sources} source{}, {} of {} items new{to}",
        human_bytes(report.size as f64 / secs.max(1e-3)),
        if sources == 1 { "" } else { "s" },
        report.items_fetched,
        report.items,
    );
    if report.wrong_items > 0 {
        eprintln!(
            "{} item(s) did not match their address; the peers that sent them were dropped",
            report.wrong_items
        );
    }
    Ok(())
}

/// An absolute form of `path` (the node does not share our working directory).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// On Ctrl-C (or SIGTERM), asks the node to cancel the fetch of `hash`, then exits 130.
fn cancel_on_ctrl_c(control: &ControlClient, hash: &str) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let _context = runtime.enter();
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    let (Ok(mut int), Ok(mut term)) = signals else {
        return;
    };
    let control = control.allowing(Duration::from_secs(5));
    let body = HashBody {
        hash: hash.to_owned(),
    };
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        });
        let cancelled = control
            .post::<_, Changed>(CANCEL_PATH, &body)
            .is_ok_and(|c| c.changed);
        if cancelled {
            eprintln!("\ncancelled; the items that arrived are kept (run the same command again to resume)");
        }
        std::process::exit(130);
    });
}
