//! What the end-to-end tests share: a real `kith up` process in a temporary data dir, driven
//! through the CLI as a user would, and a way to wait for something to become true.
//!
//! Each test file uses only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod lab;
pub mod ws;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running node; stopped with SIGTERM when dropped.
pub struct Node {
    /// Its data dir.
    pub data: PathBuf,
    child: Option<Child>,
    /// The `kith up --json` ready line.
    pub ready: Value,
}

impl Node {
    /// Starts a node on free loopback ports, with whatever `kith.toml` the data dir holds.
    pub fn start(data: &Path) -> Node {
        Node::start_listening(data, "127.0.0.1:0")
    }

    /// Writes `settings` as the data dir's `kith.toml`, then starts the node.
    pub fn start_with(data: &Path, settings: &str) -> Node {
        write_settings(data, settings);
        Node::start(data)
    }

    /// Starts a node whose secure-link listener is `listen` (the peer port picks a free port).
    pub fn start_listening(data: &Path, listen: &str) -> Node {
        Node::start_up(data, &["--listen", listen])
    }

    /// Starts `kith up` with `extra` flags after the defaults (free loopback ports for every
    /// listener; a later flag wins).
    pub fn start_up(data: &Path, extra: &[&str]) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
            .arg("--data")
            .arg(data)
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--peer-listen",
                "127.0.0.1:0",
                "--chat-listen",
                "127.0.0.1:0",
                "--json",
            ])
            .args(extra)
            .env("KITH_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kith up");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("ready line: {line:?}"));
        Node {
            data: data.to_owned(),
            child: Some(child),
            ready,
        }
    }

    /// A node started some other way (in a namespace: [`lab`]).
    pub fn from_child(data: &Path, child: Child, ready: Value) -> Node {
        Node {
            data: data.to_owned(),
            child: Some(child),
            ready,
        }
    }

    /// Its agent id.
    pub fn agent(&self) -> String {
        self.ready["agent"].as_str().unwrap().to_owned()
    }

    /// Its secure-link listener.
    pub fn listen(&self) -> String {
        self.ready["listen"].as_str().unwrap().to_owned()
    }

    /// Runs `kith --data <its dir> ARGS`.
    pub fn kith(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .arg("--data")
            .arg(&self.data)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kith(args);
        assert!(
            out.status.success(),
            "kith {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kith(args);
        assert!(!out.status.success(), "kith {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs a command that must succeed and print JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let printed = self.ok(args);
        serde_json::from_str(&printed).unwrap_or_else(|_| panic!("json: {printed:?}"))
    }

    /// A counter of `kith status --json`.
    /// Every counter is present in `status --json`, zero included: a name that is not is a
    /// mistake in the test.
    pub fn counter(&self, name: &str) -> u64 {
        self.json(&["status", "--json"])["counters"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter named {name}"))
    }

    /// Established links.
    pub fn links(&self) -> u64 {
        self.json(&["status", "--json"])["links"].as_u64().unwrap()
    }

    /// The state `kith peers` shows for `agent` (`unknown` when it is not listed).
    pub fn peer_state(&self, agent: &str) -> String {
        let peers = self.json(&["peers", "--json"]);
        peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["agent"] == agent)
            .map(|p| p["state"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| "unknown".into())
    }

    /// Puts `bytes` as a file named `name` in `dir`; returns its hash.
    pub fn put(&self, dir: &Path, name: &str, bytes: &[u8]) -> String {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        self.ok(&["file", "put", path.to_str().unwrap()])
            .trim()
            .to_owned()
    }

    /// Kills the node without letting it say goodbye (a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the node with SIGTERM, as a user would, and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a data dir's `kith.toml`.
pub fn write_settings(data: &Path, settings: &str) {
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(data.join("kith.toml"), settings).unwrap();
}

/// Waits up to 15 s for `check` to hold.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deterministic, non-repeating bytes (so chunks differ).
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
