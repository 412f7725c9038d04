//! The demo's three nodes: `kith up` child processes of this very binary, each in its own
//! data dir under the demo's temporary directory, driven through their control API (and, for
//! what the CLI itself does, such as deriving a password's key, through `kith` child
//! processes on the same data dir).

use super::cleanup::Cleanup;
use anyhow::{anyhow, bail, Context, Result};
use kith_node::api::{StatusReport, STATUS_PATH};
use kith_node::control::ControlClient;
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a node may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a control call may take (a fetch or a custody session included: files are small).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping node may take to say goodbye before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the demo waits for something the network does by itself (a re-link, a message).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// One node of the demo.
pub struct DemoNode {
    /// `A`, `B` or `C`.
    pub name: &'static str,
    /// Its data dir.
    pub data: PathBuf,
    /// Its agent id (secure links).
    pub agent: String,
    /// Its chat node id.
    pub node_id: String,
    /// Its secure-link listener.
    pub listen: String,
    /// Its CIYAM peer port.
    pub peer_listen: String,
    /// Its chat port.
    pub chat_listen: String,
    child: Option<Child>,
    /// Kept open so the node never writes to a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
    control: ControlClient,
}

impl DemoNode {
    /// Starts `kith up` on `data` with all three listeners on free loopback ports, and waits
    /// for its ready line. Its log goes to `node.log` in the data dir.
    pub fn start(name: &'static str, data: &Path, cleanup: &Cleanup) -> Result<DemoNode> {
        let any = "127.0.0.1:0";
        DemoNode::start_on(name, data, [any, any, any], cleanup)
    }

    /// Starts it again on the same data dir and ports, as a node with a fixed address would
    /// come back: its peers know it by the address in the ticket it issued.
    pub fn restart(&mut self, cleanup: &Cleanup) -> Result<()> {
        self.stop(cleanup);
        let ports = [
            self.listen.clone(),
            self.peer_listen.clone(),
            self.chat_listen.clone(),
        ];
        let ports = [ports[0].as_str(), ports[1].as_str(), ports[2].as_str()];
        *self = DemoNode::start_on(self.name, &self.data.clone(), ports, cleanup)?;
        Ok(())
    }

    /// Starts `kith up` with the secure-link, peer and chat listeners on `ports`.
    fn start_on(
        name: &'static str,
        data: &Path,
        ports: [&str; 3],
        cleanup: &Cleanup,
    ) -> Result<DemoNode> {
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create {}", data.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("node.log"))
            .context("cannot create the node's log file")?;
        let mut child = Command::new(kith_exe()?)
            .arg("--data")
            .arg(data)
            .args(["up", "--json"])
            .args(["--listen", ports[0]])
            .args(["--peer-listen", ports[1]])
            .args(["--chat-listen", ports[2]])
            .env_remove("KITH_DATA")
            .env("KITH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start node {name}"))?;
        cleanup.track(child.id());
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        // Read the ready line on a thread, so a node that never gets ready cannot hang us.
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            let read = stdout.read_line(&mut line);
            let _ = tx.send(read.map(|_| line));
            stdout
        });
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(line)) if !line.is_empty() => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "node {name} did not start (see {}): {}",
                    data.join("node.log").display(),
                    last_log_line(data)
                );
            }
        };
        let stdout = reader.join().ok();
        let ready: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("node {name} printed {line:?} instead of its ready line"))?;
        let field = |key: &str| -> Result<String> {
            ready[key]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("node {name}'s ready line has no {key}: {line}"))
        };
        let control = ControlClient::new(data, data.join("control.sock"), CONTROL_TIMEOUT);
        Ok(DemoNode {
            name,
            data: data.to_owned(),
            agent: field("agent")?,
            node_id: field("node_id")?,
            listen: field("listen")?,
            peer_listen: field("peer_listen")?,
            chat_listen: field("chat_listen")?,
            child: Some(child),
            _stdout: stdout,
            control,
        })
    }

    /// Stops the node as a user would (SIGTERM: it closes its links with `bye`) and waits.
    pub fn stop(&mut self, cleanup: &Cleanup) {
        if let Some(child) = self.child.take() {
            cleanup.untrack(child.id());
            terminate(child);
        }
    }

    /// `GET path` on its control API.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.control
            .get(path)
            .with_context(|| format!("node {}", self.name))
    }

    /// `POST path` on its control API.
    pub fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.control
            .post(path, body)
            .with_context(|| format!("node {}", self.name))
    }

    /// Its control client (for the progress line).
    pub fn control(&self) -> &ControlClient {
        &self.control
    }

    /// `kith status`.
    pub fn status(&self) -> Result<StatusReport> {
        self.get(STATUS_PATH)
    }

    /// A counter of `kith status`.
    pub fn counter(&self, name: &str) -> Result<u64> {
        Ok(self.status()?.counters.get(name).copied().unwrap_or(0))
    }

    /// Runs `kith --data <its dir> ARGS` (with `input` on stdin) and returns what it did.
    pub fn kith(&self, args: &[&str], input: Option<&str>) -> Result<Output> {
        run_kith(&self.data, args, input)
    }

    /// Runs a `kith` command on its data dir that must succeed; returns its stdout.
    pub fn kith_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kith(args, None)?;
        if !out.status.success() {
            bail!(
                "`kith {}` on {} failed: {}",
                args.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for DemoNode {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }
}

/// Runs `kith --data DATA ARGS` (this binary), with `input` on stdin if given.
pub fn run_kith(data: &Path, args: &[&str], input: Option<&str>) -> Result<Output> {
    let mut child = Command::new(kith_exe()?)
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("KITH_DATA")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `kith {}`", args.join(" ")))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// This binary: the nodes and helper commands are the same `kith` that runs the demo.
fn kith_exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the kith binary that runs the demo")
}

/// SIGTERM, then a bounded wait, then SIGKILL.
fn terminate(mut child: Child) {
    send_sigterm(child.id());
    let deadline = Instant::now() + STOP_TIMEOUT;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.wait();
}

/// Asks process `pid` to stop as Ctrl-C would.
pub fn send_sigterm(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only fails (ESRCH).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// The last line of a node's log, to say why it did not start.
fn last_log_line(data: &Path) -> String {
    std::fs::read_to_string(data.join("node.log"))
        .ok()
        .and_then(|log| log.lines().last().map(str::to_owned))
        .unwrap_or_else(|| "no log".into())
}

/// Polls `check` every 50 ms until it holds, for at most [`SETTLE_TIMEOUT`]; an error from
/// `check` ends the wait at once.
pub fn wait_for(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !check()? {
        if Instant::now() > deadline {
            bail!("gave up after {SETTLE_TIMEOUT:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
