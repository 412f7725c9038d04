//! The namespace lab: a public segment and private segments behind masquerading NATs that
//! drop unsolicited inbound traffic, as home routers do, built from network namespaces, veth
//! pairs and nftables (root only: the tests that use it are gated by `KITH_TEST_NETNS`).
//!
//! ```text
//!   helper 203.0.113.10 ──┐   d 203.0.113.20 (a node with a public address)
//!                         ├── br0 (namespace "pub", 203.0.113.0/24)
//!   natA  203.0.113.1 ────┤            natB 203.0.113.2 ──┘
//!     └ lan 192.168.1.1/24                 └ lan 192.168.2.1/24
//!        ├ a 192.168.1.2                      └ b 192.168.2.2
//!        └ c 192.168.1.3   (A's LAN neighbour)
//! ```
//! A NAT forwards what its inside sent out and the answers to it, and drops everything else
//! that comes in from outside, to itself or to the inside (no reset: stealth, as home
//! routers are). It is `Cone` (masquerade, ports kept: what a peer observes for our listening port is
//! the mapping anyone else meets) or `Symmetric` (a random port per connection, so nobody can
//! punch through it). Namespaces are named `k15-<pid>-<n>-<role>`; dropping the [`Lab`]
//! stops every process it started and deletes every namespace, a panic included, and a new lab
//! first removes the namespaces of labs whose process is gone.

use super::Node;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// How a NAT maps ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Ports kept (endpoint-independent mapping): punchable.
    Cone,
    /// A random port per connection: not punchable.
    Symmetric,
}

/// A built lab (see the module docs).
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    /// Nodes started in it, stopped before the namespaces go.
    pub nodes: Vec<Node>,
}

static LABS: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_in(ns: &str, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all);
}

/// Deletes the namespaces of labs whose test process is no longer running.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("k15-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "delete", name]).status();
        }
    }
}

impl Lab {
    /// Builds the lab with NATs of the given kinds for A's and B's segments.
    pub fn new(nat_a: Nat, nat_b: Nat) -> Lab {
        sweep_stale();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("k15-{}-{n}", std::process::id());
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            nodes: Vec::new(),
        };
        for role in ["pub", "helper", "nata", "natb", "a", "b", "c", "d"] {
            let ns = lab.ns(role);
            run(&["ip", "netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            run_in(&ns, &["ip", "link", "set", "lo", "up"]);
        }
        let (public, helper, nata, natb, a, b, c) = (
            lab.ns("pub"),
            lab.ns("helper"),
            lab.ns("nata"),
            lab.ns("natb"),
            lab.ns("a"),
            lab.ns("b"),
            lab.ns("c"),
        );
        run_in(&public, &["ip", "link", "add", "br0", "type", "bridge"]);
        run_in(&public, &["ip", "link", "set", "br0", "up"]);
        // The public segment: helper and both NATs' outside ends on one bridge.
        let d = lab.ns("d");
        for (ns, port, ifname, addr) in [
            (&helper, "ph", "eth0", "203.0.113.10/24"),
            (&d, "pd", "eth0", "203.0.113.20/24"),
            (&nata, "pa", "wan", "203.0.113.1/24"),
            (&natb, "pb", "wan", "203.0.113.2/24"),
        ] {
            run(&[
                "ip", "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", port,
                "netns", &public,
            ]);
            run_in(&public, &["ip", "link", "set", port, "master", "br0", "up"]);
            run_in(ns, &["ip", "addr", "add", addr, "dev", ifname]);
            run_in(ns, &["ip", "link", "set", ifname, "up"]);
        }
        // The private segments behind each NAT.
        // The private segments behind each NAT: a bridge `lan` on the NAT, its hosts on it
        // (traffic between them stays on the LAN, even where bridged frames meet nftables).
        for (nat, hosts, gw, kind) in [
            (
                &nata,
                vec![(&a, "192.168.1.2/24"), (&c, "192.168.1.3/24")],
                "192.168.1.1",
                nat_a,
            ),
            (&natb, vec![(&b, "192.168.2.2/24")], "192.168.2.1", nat_b),
        ] {
            run_in(nat, &["ip", "link", "add", "lan", "type", "bridge"]);
            run_in(
                nat,
                &["ip", "addr", "add", &format!("{gw}/24"), "dev", "lan"],
            );
            run_in(nat, &["ip", "link", "set", "lan", "up"]);
            for (i, (host, addr)) in hosts.into_iter().enumerate() {
                let port = format!("h{i}");
                run(&[
                    "ip", "link", "add", "eth0", "netns", host, "type", "veth", "peer", "name",
                    &port, "netns", nat,
                ]);
                run_in(nat, &["ip", "link", "set", &port, "master", "lan", "up"]);
                run_in(host, &["ip", "addr", "add", addr, "dev", "eth0"]);
                run_in(host, &["ip", "link", "set", "eth0", "up"]);
                run_in(host, &["ip", "route", "add", "default", "via", gw]);
            }
            run_in(nat, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            let masquerade = match kind {
                Nat::Cone => "masquerade",
                Nat::Symmetric => "masquerade fully-random",
            };
            let rules = format!(
                "table ip nat {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"wan\" {masquerade}\n  }}\n}}\n\
                 table inet filter {{\n  chain forward {{\n    type filter hook forward priority filter; policy drop;\n    ct state established,related accept\n    iifname \"lan\" oifname \"wan\" accept\n    iifname \"lan\" oifname \"lan\" accept\n  }}\n  chain input {{\n    type filter hook input priority filter; policy accept;\n    iifname \"wan\" ct state established,related accept\n    iifname \"wan\" drop\n  }}\n}}\n"
            );
            let mut nft = Command::new("ip")
                .args(["netns", "exec", nat, "nft", "-f", "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("nft (install the nftables package)");
            nft.stdin
                .take()
                .unwrap()
                .write_all(rules.as_bytes())
                .unwrap();
            let out = nft.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "nft: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        lab
    }

    /// The namespace of `role` (`pub`, `helper`, `nata`, `natb`, `a`, `b`, `c`, `d`).
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Moves `role`'s host from address `old` to `new` (CIDR forms), as an ISP renumbering
    /// a line does.
    pub fn readdress(&self, role: &str, old: &str, new: &str) {
        let ns = self.ns(role);
        run_in(&ns, &["ip", "addr", "del", old, "dev", "eth0"]);
        run_in(&ns, &["ip", "addr", "add", new, "dev", "eth0"]);
    }

    /// Starts `kith up` in `role`'s namespace on `data`, listening on 0.0.0.0:7420, with
    /// `extra` flags; returns its index in [`Lab::nodes`].
    pub fn start(&mut self, role: &str, data: &Path, extra: &[&str]) -> usize {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .arg(env!("CARGO_BIN_EXE_kith"))
            .arg("--data")
            .arg(data)
            .args([
                "up",
                "--listen",
                "0.0.0.0:7420",
                "--peer-listen",
                "127.0.0.1:0",
                "--chat-listen",
                "127.0.0.1:0",
                "--json",
            ])
            .args(extra)
            .env(
                "KITH_LOG",
                std::env::var("KITH_LAB_LOG_LEVEL").unwrap_or("info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(data.with_extension("log")).unwrap(),
            ))
            .spawn()
            .expect("start kith up in a namespace");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready = serde_json::from_str(&line).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "ready line: {line:?}; log: {}",
                std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
            )
        });
        self.nodes.push(Node::from_child(data, child, ready));
        self.nodes.len() - 1
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
            if std::thread::panicking() || std::env::var_os("KITH_LAB_LOGS").is_some() {
                // What each node logged, to see why.
                let log =
                    std::fs::read_to_string(node.data.with_extension("log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- {} ---", node.data.display());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        self.nodes.clear();
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}
