//! `kith init`, `kith id`, `kith up`, `kith status`.

use super::Env;
use crate::output::print_json;
use anyhow::Result;
use kith_crypto::identity::Identity;
use kith_node::api::{StatusReport, STATUS_PATH};
use kith_node::control::ControlClient;
use serde_json::json;
use std::time::Duration;

fn identity_json(env: &Env, identity: &Identity) -> serde_json::Value {
    json!({
        "agent": identity.agent_id().to_string(),
        "node_id": identity.node_id().to_string(),
        "content_key": hex::encode(identity.content_public()),
        "noise_key": hex::encode(identity.noise_public()),
        "data_dir": env.config.data_dir.root().display().to_string(),
    })
}

fn print_identity(env: &Env, identity: &Identity, created: Option<bool>) -> Result<()> {
    if env.json {
        let mut doc = identity_json(env, identity);
        if let Some(created) = created {
            doc["created"] = json!(created);
        }
        return print_json(&doc);
    }
    if let Some(created) = created {
        let what = if created {
            "created a new identity"
        } else {
            "identity already exists"
        };
        println!("{what} in {}", env.config.data_dir.root().display());
    }
    println!("agent:       {}", identity.agent_id());
    println!("node id:     {}", identity.node_id());
    println!("content key: {}", hex::encode(identity.content_public()));
    println!("noise key:   {}", hex::encode(identity.noise_public()));
    Ok(())
}

/// `kith init`: create the identity if missing; print it.
pub fn init(env: &Env) -> Result<()> {
    let loaded = env
        .config
        .data_dir
        .load_or_create_identity(&mut rand::rngs::OsRng)?;
    print_identity(env, &loaded.identity, Some(loaded.created))
}

/// `kith id`.
pub fn id(env: &Env) -> Result<()> {
    print_identity(env, &env.identity()?, None)
}

/// `kith up`: run the node in the foreground.
/// How much `kith up` logs (`-v`, `-q`).
#[derive(Debug, Clone, Copy)]
pub enum Verbosity {
    /// Errors only.
    Quiet,
    /// Info and above (the default).
    Normal,
    /// Debug.
    Verbose,
    /// Trace.
    Trace,
}

impl Verbosity {
    /// From the global flags.
    pub fn of(global: &crate::cli::GlobalArgs) -> Verbosity {
        match (global.quiet, global.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, 1) => Verbosity::Verbose,
            (false, _) => Verbosity::Trace,
        }
    }

    fn level(self) -> tracing::Level {
        match self {
            Verbosity::Quiet => tracing::Level::ERROR,
            Verbosity::Normal => tracing::Level::INFO,
            Verbosity::Verbose => tracing::Level::DEBUG,
            Verbosity::Trace => tracing::Level::TRACE,
        }
    }
}

pub fn up(env: Env, verbosity: Verbosity) -> Result<()> {
    init_logging(verbosity, &env.config.data_dir.root().join("kith.log"));
    let json = env.json;
    kith_node::node::run(env.config, |ready| {
        if json {
            let doc = json!({
                "ready": true,
                "control": ready.control.display().to_string(),
                "agent": ready.agent,
                "node_id": ready.node_id,
                "listen": ready.listen.map(|a| a.to_string()),
                "peer_listen": ready.peer_listen.map(|a| a.to_string()),
                "chat_listen": ready.chat_listen.map(|a| a.to_string()),
                "web": ready.web,
                "ws_listen": ready.ws_listen.map(|a| a.to_string()),
            });
            let _ = print_json(&doc);
        } else {
            println!(
                "kith node {} ready (node id {})",
                ready.agent, ready.node_id
            );
            println!(
                "control socket: {}; Ctrl-C stops it",
                ready.control.display()
            );
            if let Some(web) = &ready.web {
                println!("web page: {web}");
            }
        }
    })?;
    Ok(())
}

/// `kith status`: ask the running node (a summary; `--all` lists every counter).
pub fn status(env: &Env, all: bool) -> Result<()> {
    let report: StatusReport = client(env).get(STATUS_PATH)?;
    if env.json {
        return print_json(&report);
    }
    println!("node {} (node id {})", report.agent, report.node_id);
    println!(
        "running {}s, pid {}, kith {}",
        report.uptime_secs, report.pid, report.version
    );
    println!(
        "data dir {}, database {}, {} files stored",
        report.data_dir, report.db, report.files
    );
    for (name, addr) in &report.listeners {
        println!("{name}: {addr}");
    }
    if let Some(replication) = &report.replication {
        println!(
            "replicas kept for peers: {} of {} bytes allowed (max_replica_bytes), {} offers waiting",
            replication.bytes, replication.quota, replication.queued
        );
    }
    println!("links up: {}", report.links);
    if all {
        for (name, count) in &report.counters {
            println!("{name} = {count}");
        }
        return Ok(());
    }
    // Every counter is in --all and --json, zero included; a person wants a few that matter.
    let moved = report.counters.values().filter(|v| **v > 0).count();
    let refused: u64 = report
        .counters
        .iter()
        .filter(|(name, _)| name.starts_with("refused_"))
        .map(|(_, v)| *v)
        .sum();
    println!(
        "{moved} counters moved; {refused} connections or handshakes refused; `kith status --all` lists every counter"
    );
    Ok(())
}

/// `kith web [--open]`: the running node's web page address, token included.
pub fn web(env: &Env, open: bool) -> Result<()> {
    let address: kith_node::api::WebAddress = client(env).get(kith_node::api::WEB_PATH)?;
    let Some(url) = address.web else {
        anyhow::bail!(
            "the running node serves no web page; start it with kith up --web 127.0.0.1:7480"
        );
    };
    if env.json {
        print_json(&json!({ "web": url }))?;
    } else {
        println!("{url}");
    }
    if open {
        let browser = std::env::var("BROWSER").unwrap_or_else(|_| "xdg-open".to_owned());
        std::process::Command::new(&browser)
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {browser}: {e}; open the address above"))?;
    }
    Ok(())
}

/// A control API client for this data dir.
pub fn client(env: &Env) -> ControlClient {
    let dir = &env.config.data_dir;
    ControlClient::new(
        dir.root(),
        dir.control_socket(),
        Duration::from_millis(env.config.node_limits.control_timeout_ms),
    )
}

/// Logs to stderr and appends the same lines to `log_file` (`kith.log` in the data dir, so a
/// node started by a service manager leaves a record). `-v`/`-q` set the level; `KITH_LOG`
/// (or `RUST_LOG`) selects levels per target instead, e.g. `info,kith_node=debug`.
fn init_logging(verbosity: Verbosity, log_file: &std::path::Path) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let spec = std::env::var("KITH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let filter = match spec.parse::<Targets>() {
        Ok(targets) if !spec.is_empty() => targets,
        _ => Targets::new().with_default(verbosity.level()),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .ok()
        .map(|file| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
        });
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(file)
        .with(filter)
        .try_init();
}
