//! Leaving nothing behind: the demo's node processes are stopped and its temporary directory
//! removed when it ends, whether it passed, failed, or was interrupted (Ctrl-C or SIGTERM).
//!
//! Why a signal thread: on Ctrl-C the terminal sends SIGINT to the whole foreground process
//! group, so the nodes stop by themselves, but a SIGINT or SIGTERM sent to the demo alone
//! (`kill`, a test harness) would leave them running. A small tokio runtime on its own thread
//! waits for either signal, stops every node still tracked, removes the directory and exits
//! with 130, the shell's code for "interrupted".

use super::nodes::send_sigterm;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the interrupted demo waits for its nodes to stop before removing their dirs.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Tracked {
    pids: Vec<u32>,
    dir: Option<PathBuf>,
    keep: bool,
    done: bool,
    interrupted: bool,
}

/// What must be undone, shared by the demo and its signal thread.
#[derive(Debug, Clone, Default)]
pub struct Cleanup {
    inner: Arc<Mutex<Tracked>>,
}

impl Cleanup {
    /// Cleans up `dir` at the end (unless `keep`).
    pub fn new(dir: &Path, keep: bool) -> Cleanup {
        Cleanup {
            inner: Arc::new(Mutex::new(Tracked {
                dir: Some(dir.to_owned()),
                keep,
                ..Tracked::default()
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A node process to stop if the demo is interrupted.
    pub fn track(&self, pid: u32) {
        self.lock().pids.push(pid);
    }

    /// The process has been stopped by its owner.
    pub fn untrack(&self, pid: u32) {
        self.lock().pids.retain(|p| *p != pid);
    }

    /// True once a signal arrived: the signal thread is cleaning up and will exit.
    pub fn is_interrupted(&self) -> bool {
        self.lock().interrupted
    }

    /// Removes the directory (the nodes must be stopped already), once. Returns the
    /// directory when it was kept.
    pub fn finish(&self) -> Option<PathBuf> {
        let mut tracked = self.lock();
        if tracked.done {
            return None;
        }
        tracked.done = true;
        let dir = tracked.dir.take()?;
        if tracked.keep {
            return Some(dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
        None
    }

    /// Stops every tracked node (SIGTERM, then waits for them to go), then [`Self::finish`].
    fn interrupted(&self) -> Option<PathBuf> {
        let pids = {
            let mut tracked = self.lock();
            tracked.interrupted = true;
            std::mem::take(&mut tracked.pids)
        };
        for pid in &pids {
            send_sigterm(*pid);
        }
        let deadline = Instant::now() + INTERRUPT_GRACE;
        while pids.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.finish()
    }

    /// Installs the Ctrl-C / SIGTERM handler: clean up, say so on stderr, exit 130.
    pub fn on_signal(&self) {
        let cleanup = self.clone();
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("kith demo: cannot watch for Ctrl-C ({e}); interrupting it may leave nodes running");
                return;
            }
        };
        // Registered here, before the demo starts anything, so no signal slips through.
        let signals = {
            use tokio::signal::unix::{signal, SignalKind};
            let _context = runtime.enter();
            (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            )
        };
        let (Ok(mut int), Ok(mut term)) = signals else {
            eprintln!(
                "kith demo: cannot watch for Ctrl-C; interrupting it may leave nodes running"
            );
            return;
        };
        std::thread::spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
            });
            eprintln!("\nkith demo: interrupted; stopping the nodes and removing their data");
            if let Some(kept) = cleanup.interrupted() {
                eprintln!("kith demo: kept {}", kept.display());
            }
            std::process::exit(130);
        });
    }
}

/// True while process `pid` exists and is not a zombie we reaped.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name; Z is a zombie.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
