//! `kith demo [--keep] [--json]`: every feature on one machine, narrated.
//!
//! Three `kith up` processes of this binary (A, B, C) run on loopback in a temporary
//! directory, each with its secure-link, CIYAM peer and chat listeners. The demo drives them
//! through their control API, and through `kith` child processes where the CLI itself does the
//! work (a password's key for custody, the shell). Each step prints one line saying what
//! happened and one saying what that proved, with its duration; the first step that fails
//! prints why, and the demo exits non-zero. The nodes are stopped and the directory removed
//! at the end, also on failure and on Ctrl-C ([`cleanup`]).
//!
//! The steps are split by subject: [`links`] (tickets, re-linking, ping), [`files`] (sharing,
//! fetching, custody, the CIYAM shell) and [`chat`].

mod chat;
mod cleanup;
mod files;
mod links;
mod narrate;
mod nodes;

use crate::cli::DemoArgs;
use anyhow::{Context, Result};
use cleanup::Cleanup;
use narrate::Narrator;
use nodes::DemoNode;
use std::path::{Path, PathBuf};

/// One step of the walk-through.
pub struct Step {
    /// What happens, in plain language.
    pub title: &'static str,
    /// What it shows when it works.
    pub proves: &'static str,
    /// Does it; returns the facts observed (one short line).
    pub run: fn(&mut Demo) -> Result<String>,
}

/// The steps after the nodes have started, in order.
const STEPS: &[Step] = &[
    links::TICKET_A_TO_B,
    links::TICKET_B_TO_C,
    links::USED_TICKET,
    links::RESTART_B,
    links::PING,
    files::SHARE_AND_FETCH,
    files::FETCH_FROM_B,
    files::PERSIST,
    files::RETRIEVE,
    chat::PUBLIC_CHANNEL,
    chat::CLOSED_CHANNEL,
    chat::DIRECT_MESSAGE,
    chat::OFFLINE_DELIVERY,
    files::SEED_SESSION,
];

/// The first step: starting the nodes.
const START: Step = Step {
    title: "A, B and C start on 127.0.0.1",
    proves: "a node is one process with three listeners: secure links (Noise), the CIYAM peer port and the chat port",
    run: |_| Ok(String::new()),
};

/// The three nodes and what the steps hand on to each other.
pub struct Demo {
    /// The node everything starts from.
    pub a: DemoNode,
    /// The node in the middle (A - B - C).
    pub b: DemoNode,
    /// The node at the far end.
    pub c: DemoNode,
    /// Scratch files (inputs, outputs, the shell's data dir).
    pub work: PathBuf,
    /// Stops nodes and removes the directory at the end.
    pub cleanup: Cleanup,
    /// The one-time ticket A gave B (used again in a later step).
    pub ticket_ab: Option<String>,
    /// The file A shared: its hash and bytes.
    pub shared: Option<(String, Vec<u8>)>,
    /// The file B put in custody on C: its hash and bytes.
    pub custody: Option<(String, Vec<u8>)>,
    /// `--json`: no progress line.
    pub json: bool,
}

impl Demo {
    fn start(dir: &Path, cleanup: &Cleanup, json: bool) -> Result<(Demo, String)> {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).context("cannot create the demo's scratch dir")?;
        let a = DemoNode::start("A", &dir.join("a"), cleanup)?;
        let b = DemoNode::start("B", &dir.join("b"), cleanup)?;
        let c = DemoNode::start("C", &dir.join("c"), cleanup)?;
        let said = format!(
            "A {}, B {}, C {}, each on three loopback ports",
            short(&a.agent),
            short(&b.agent),
            short(&c.agent)
        );
        let demo = Demo {
            a,
            b,
            c,
            work,
            cleanup: cleanup.clone(),
            ticket_ab: None,
            shared: None,
            custody: None,
            json,
        };
        Ok((demo, said))
    }
}

/// The first characters of an agent or node id, enough to tell the three apart.
pub fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// Runs the demo.
pub fn run(args: &DemoArgs, json: bool) -> Result<()> {
    let dir = make_temp_dir()?;
    let cleanup = Cleanup::new(&dir, args.keep);
    cleanup.on_signal();
    let mut out = Narrator::new(json, 1 + STEPS.len(), &cleanup);
    out.intro(&dir, args.keep);
    let walked = walk(&dir, &cleanup, &mut out, json);
    // The nodes were stopped when `walk` dropped them; the directory goes now.
    let kept = cleanup.finish();
    if cleanup.is_interrupted() {
        // The signal thread is cleaning up and exits the process; do not race it.
        loop {
            std::thread::park();
        }
    }
    out.summary(walked.is_ok(), kept.as_deref());
    walked.with_context(|| format!("the demo failed at step {}", out.number()))
}

fn walk(dir: &Path, cleanup: &Cleanup, out: &mut Narrator, json: bool) -> Result<()> {
    let mut demo = out.step(&START, || Demo::start(dir, cleanup, json))?;
    for step in STEPS {
        out.step(step, || Ok(((), (step.run)(&mut demo)?)))?;
    }
    Ok(())
}

/// A fresh private directory under the system's temporary dir (`TMPDIR`).
fn make_temp_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!(
            "kith-demo-{}-{nanos:08x}{attempt}",
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                    "cannot create a temporary directory in {}; set TMPDIR to a writable directory",
                    base.display()
                )
                })
            }
        }
    }
    anyhow::bail!(
        "cannot find a free temporary directory name in {}",
        base.display()
    )
}
