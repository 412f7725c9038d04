//! `kith bench transfer`: a file moved from one node to another over a secure link on
//! loopback, read against ceilings measured on this machine in the same run.
//!
//! Machines are noisy, so the figures that matter are ratios: the transfer's throughput over
//! raw TCP loopback (the network ceiling), over SHA-256 (every item is hashed when the source
//! reads it and again when the fetcher receives it) and over ChaCha20-Poly1305 (the link seals
//! and opens every frame). The nodes are real `kith up` processes (this executable) in fresh
//! data dirs, driven through the control API the CLI uses; their peak RSS is read from
//! `/proc/PID/status` before they are stopped.

mod ceilings;
mod floor;
mod handshakes;
mod nodes;
mod probe;
mod relay;
mod report;
mod transfer;

pub use crate::cli::bench::{BenchCommand, TransferArgs};
use crate::output::print_json;
use anyhow::{bail, Context, Result};
use kith_node::{NodeConfig, Overrides};
use kith_store::ContentHash;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Runs `kith bench ...`; `json` is the global `--json`. No data dir of the user's is touched.
pub fn run(command: BenchCommand, json: bool) -> Result<()> {
    match command {
        BenchCommand::Transfer(args) => {
            let result = transfer::run(&args, json)?;
            if json {
                print_json(&result)
            } else {
                report::print_table(&result);
                Ok(())
            }
        }
        BenchCommand::Handshakes(args) => {
            let result = handshakes::run(&args, json)?;
            if json {
                print_json(&result)
            } else {
                handshakes::print(&result);
                Ok(())
            }
        }
    }
}

/// Bytes moved in some seconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Measured {
    /// Bytes processed.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl Measured {
    /// Decimal gigabytes per second.
    pub fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e9 / self.seconds.max(1e-9)
    }
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct TransferResult {
    /// The file size.
    pub bytes: u64,
    /// Its content address.
    pub hash: String,
    /// The output file and the fetcher's stored copy had the source file's SHA-256.
    pub verified: bool,
    /// The round trip the relays added, ms (0: none).
    pub rtt_ms: u64,
    /// Each source's uplink, MB/s (`None`: unlimited).
    pub rate_mb_s: Option<f64>,
    /// Nodes that held the file.
    pub sources: u64,
    /// Files: 1 for a file, more for a folder of that many.
    pub files: u64,
    /// One TCP stream, same byte count: over loopback, or through a relay shaped as the
    /// transfer's (with a rate, the one-uplink figure).
    pub raw_tcp: Figure,
    /// SHA-256 (sha2) on one core.
    pub sha256: Figure,
    /// The file written to disk and synced (the store's file system), same byte count.
    pub disk_write: Figure,
    /// ChaCha20-Poly1305 (ring) sealing on one core.
    pub chacha20_poly1305: Figure,
    /// min(SHA-256, one TCP stream, half the durable disk write rate), decimal GB/s: the bytes
    /// are hashed, cross the network, and land on disk twice (store and output).
    pub ceiling_gb_per_s: f64,
    /// The essential work alone (one source only): the same bytes read, verified, sealed,
    /// sent, opened, verified, written twice and synced by a tight pipeline with no protocol
    /// (`floor.rs`). The ceilings each measure one resource on an idle machine; this needs
    /// them all at once on the same cores, so it shows how much of the ceiling this machine
    /// can give a transfer at all.
    pub essential: Option<Figure>,
    /// `kith file put` on a source node's data dir.
    pub put: Figure,
    /// `kith file get HASH [--from SOURCE] -o FILE` on the fetching node, start to exit.
    pub transfer: Figure,
    /// Items of the file's tree.
    pub items: u64,
    /// Items received by the fetch.
    pub items_fetched: u64,
    /// What each source delivered.
    pub shares: Vec<kith_node::api::SourceShare>,
    /// The transfer's throughput over each ceiling's.
    pub ratios: Ratios,
    /// Peak resident set size (VmHWM) of the source node that used the most, bytes.
    pub peak_rss_source: u64,
    /// Peak resident set size (VmHWM) of the fetching node, bytes.
    pub peak_rss_fetcher: u64,
    /// The file-backed part of a source node's resident set after the transfer, bytes (the
    /// largest over the sources): the executable's code and the shared libraries, shared
    /// and clean, which the peaks include.
    pub rss_file_source: u64,
    /// The same for the fetching node.
    pub rss_file_fetcher: u64,
    /// CPU time (user + system) the source nodes spent during the transfer, seconds.
    pub cpu_seconds_source: f64,
    /// CPU time (user + system) the fetching node spent during the transfer, seconds.
    pub cpu_seconds_fetcher: f64,
    /// How the fetching node answered a status request and a chat message with no transfer
    /// running.
    pub idle: probe::Responsiveness,
    /// The same, while the transfer ran.
    pub during_transfer: probe::Responsiveness,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    /// Bytes.
    pub bytes: u64,
    /// Seconds.
    pub seconds: f64,
    /// Decimal GB/s.
    pub gb_per_s: f64,
}

impl From<Measured> for Figure {
    fn from(m: Measured) -> Figure {
        Figure {
            bytes: m.bytes,
            seconds: m.seconds,
            gb_per_s: m.gb_per_s(),
        }
    }
}

/// The transfer's throughput divided by each ceiling's.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratios {
    /// transfer / one TCP stream (through one relay: with a rate, one uplink).
    pub raw_tcp: f64,
    /// transfer / SHA-256.
    pub sha256: f64,
    /// transfer / half the durable disk write rate.
    pub half_disk: f64,
    /// transfer / ChaCha20-Poly1305.
    pub chacha20_poly1305: f64,
    /// transfer / min(SHA-256, TCP, half disk): the figure the issue asks for.
    pub ceiling: f64,
    /// transfer / the essential work alone (one source only).
    pub essential: Option<f64>,
}

/// `--limit KEY=VALUE` flags as lines of a `[limits]` table (the caller writes the header).
fn limit_lines(limits: &[String]) -> Result<String> {
    let mut lines = String::new();
    for limit in limits {
        let (key, value) = limit
            .split_once('=')
            .with_context(|| format!("--limit takes KEY=VALUE, not {limit:?}"))?;
        lines.push_str(&format!("{} = {}\n", key.trim(), value.trim()));
    }
    Ok(lines)
}

/// Writes `size` random bytes to `path`; returns their SHA-256.
fn write_random_file(path: &Path, size: u64, rng: &mut impl RngCore) -> Result<[u8; 32]> {
    let mut out =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut block = vec![0u8; 1 << 20];
    let mut hasher = Sha256::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        rng.fill_bytes(&mut block[..n]);
        hasher.update(&block[..n]);
        out.write_all(&block[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
    }
    Ok(hasher.finalize().into())
}

/// `kith --data DATA file put FILE --json` (this executable), timed; returns the hash.
fn put_file(data: &Path, file: &Path, size: u64) -> Result<(ContentHash, Measured)> {
    let exe = std::env::current_exe().context("cannot find the kith executable")?;
    let start = Instant::now();
    let output = Command::new(exe)
        .arg("--data")
        .arg(data)
        .args(["file", "put", "--json"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .context("cannot run kith file put")?;
    let seconds = start.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "kith file put failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let record: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("kith file put printed no JSON")?;
    let hash = record["hash"]
        .as_str()
        .unwrap_or_default()
        .parse::<ContentHash>()
        .context("kith file put printed no hash")?;
    Ok((
        hash,
        Measured {
            bytes: size,
            seconds,
        },
    ))
}

/// Streams the stored file `hash` out of the store in `data` (every item verified on the way)
/// into SHA-256.
fn stored_sha256(data: &Path, hash: &ContentHash) -> Result<[u8; 32]> {
    let config = NodeConfig::load(&Overrides {
        data_dir: Some(data.to_owned()),
        ..Overrides::default()
    })?;
    let store = config.open_file_store()?;
    let mut sink = HashingSink(Sha256::new());
    store
        .get_to_writer(hash, &mut sink)
        .with_context(|| format!("cannot read the fetched copy of {hash}"))?;
    Ok(sink.0.finalize().into())
}

/// A writer that only hashes.
struct HashingSink(Sha256);

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
