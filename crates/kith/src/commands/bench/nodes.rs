//! The benchmark's scratch space and node processes: a temporary directory removed on drop
//! (unless kept), and `kith up` child processes stopped with SIGTERM on drop, so an error at
//! any step leaves nothing running and nothing behind.

use anyhow::{anyhow, bail, Context, Result};
use kith_node::control::ControlClient;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a node may take to print its ready line.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// A fresh directory under a parent; removed with everything in it on drop unless `keep`.
pub struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    /// Creates `kith-bench-<pid>-<random>` under `parent`.
    pub fn create(parent: &Path, keep: bool) -> Result<ScratchDir> {
        let name = format!(
            "kith-bench-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let path = parent.join(name);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir { path, keep })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else if let Err(error) = std::fs::remove_dir_all(&self.path) {
            eprintln!("kith: cannot remove {}: {error}", self.path.display());
        }
    }
}

/// A `kith up` child process on its own data dir, listening on free loopback ports.
pub struct BenchNode {
    /// Its data dir.
    pub data: PathBuf,
    /// Its agent id, from the ready line.
    pub agent: String,
    /// Its secure-link listener, from the ready line.
    pub listen: Option<String>,
    control: PathBuf,
    child: Option<Child>,
}

impl BenchNode {
    /// Starts `kith --data DATA up` (this same executable) and waits for its ready line. Its
    /// stderr (warnings and errors only, unless `KITH_LOG` says otherwise) goes to
    /// `DATA.log`.
    pub fn start(data: &Path) -> Result<BenchNode> {
        BenchNode::start_with(None, data)
    }

    /// [`BenchNode::start`] with another kith executable (to compare builds).
    pub fn start_with(exe: Option<&Path>, data: &Path) -> Result<BenchNode> {
        BenchNode::start_full(exe, data, None)
    }

    /// [`BenchNode::start`] for a node that tells peers to reach it at `announce` (a relay in
    /// front of it): its tickets and its link `version` name that address.
    pub fn start_announcing(
        data: &Path,
        announce: Option<std::net::SocketAddr>,
    ) -> Result<BenchNode> {
        BenchNode::start_full(None, data, announce)
    }

    fn start_full(
        exe: Option<&Path>,
        data: &Path,
        announce: Option<std::net::SocketAddr>,
    ) -> Result<BenchNode> {
        std::fs::create_dir_all(data)?;
        let log_path = data.with_extension("log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let exe = match exe {
            Some(exe) => exe.to_owned(),
            None => std::env::current_exe().context("cannot find the kith executable")?,
        };
        let mut command = Command::new(exe);
        if let Some(announce) = announce {
            // Before the subcommand's own flags is fine for clap: these are `up`'s.
            command.args(["up", "--announce", &announce.to_string()]);
        } else {
            command.arg("up");
        }
        let mut child = command
            .arg("--data")
            .arg(data)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--peer-listen",
                "off",
                "--chat-listen",
                "off",
                "--json",
            ])
            // Quiet unless the user asks for more (`KITH_LOG=debug kith bench transfer --keep`):
            // a node logging every item would measure its logging.
            .env(
                "KITH_LOG",
                std::env::var("KITH_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start a node (kith up)")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut node = BenchNode {
            data: data.to_owned(),
            agent: String::new(),
            listen: None,
            control: PathBuf::new(),
            child: Some(child),
        };
        // The ready line is read on a thread so that a node that hangs before it is ready
        // cannot hang the benchmark; the thread ends when the node's stdout closes.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(READY_DEADLINE).map_err(|_| {
            anyhow!(
                "the node in {} was not ready within {READY_DEADLINE:?}",
                data.display()
            )
        })?;
        let ready: serde_json::Value = serde_json::from_str(&line).map_err(|_| {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            anyhow!(
                "the node in {} did not start: {}",
                data.display(),
                log.lines().last().unwrap_or("no ready line and no error")
            )
        })?;
        let field = |name: &str| {
            ready[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("the ready line has no {name:?}: {line}"))
        };
        node.agent = field("agent")?;
        node.listen = ready["listen"].as_str().map(str::to_owned);
        node.control = PathBuf::from(field("control")?);
        Ok(node)
    }

    /// A control API client for this node whose calls may take up to `timeout`.
    pub fn control(&self, timeout: Duration) -> ControlClient {
        ControlClient::new(&self.data, self.control.clone(), timeout)
    }

    /// The process's peak resident set size in bytes (`VmHWM` in `/proc/PID/status`).
    pub fn peak_rss(&self) -> Result<u64> {
        let pid = self.pid().ok_or_else(|| anyhow!("the node has stopped"))?;
        status_bytes(pid, "VmHWM")
    }

    /// The file-backed part of the process's resident set now, in bytes (`RssFile`): mostly
    /// its own executable's code and the shared libraries', which count in [`peak_rss`]
    /// (`VmHWM`) too although they are shared and clean.
    ///
    /// [`peak_rss`]: BenchNode::peak_rss
    pub fn rss_file(&self) -> Result<u64> {
        let pid = self.pid().ok_or_else(|| anyhow!("the node has stopped"))?;
        status_bytes(pid, "RssFile")
    }

    /// CPU time the process has used so far (user + system), in seconds, from
    /// `/proc/PID/stat`.
    pub fn cpu_seconds(&self) -> Result<f64> {
        let pid = self.pid().ok_or_else(|| anyhow!("the node has stopped"))?;
        cpu_seconds_of(pid)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for the node to stop (kills it after a deadline).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) with a pid we spawned and have not reaped yet (so it cannot have
            // been reused); it touches no memory of ours.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `FIELD:   N kB` line of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let Some(value) = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
    else {
        bail!("{path} has no {field} line");
    };
    let kib: u64 = value
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("unexpected {field} line in {path}: {value:?}"))?;
    Ok(kib * 1024)
}

/// utime + stime of process `pid`, in seconds.
fn cpu_seconds_of(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the closing parenthesis.
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow!("unexpected {path}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("unexpected {path}: {stat}"))
    };
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = if per_second > 0 {
        per_second as f64
    } else {
        100.0
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / per_second)
}
