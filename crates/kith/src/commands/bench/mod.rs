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
mod handshakes;
mod nodes;
mod probe;
mod report;

use crate::output::print_json;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kith_node::api::{
    ConnectBody, FetchBody, FetchReport, IssuedTicket, TicketOrder, CONNECT_PATH, FETCH_PATH,
    TICKETS_PATH,
};
use kith_node::{NodeConfig, Overrides};
use kith_store::meta::PeerRecord;
use kith_store::ContentHash;
use nodes::{BenchNode, ScratchDir};
use rand::{RngCore, SeedableRng};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `kith bench ...`: measurements of this machine and this build.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Move a file from one node to another over a secure link on loopback (two `kith up`
    /// processes in temporary data dirs), next to raw TCP loopback, SHA-256 and
    /// ChaCha20-Poly1305 measured in the same run; reports throughput, ratios and the peak
    /// memory of both nodes.
    Transfer(TransferArgs),
    /// Secure-link handshakes per second against a node (N + KK over TCP loopback, many at a
    /// time), next to X25519 on one core measured in the same run.
    Handshakes(handshakes::HandshakesArgs),
}

/// `kith bench transfer` flags.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// File size: bytes, or a number with a unit (KiB, MiB, GiB; KB, MB, GB)
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Keep the temporary data dirs, node logs and file (the path is printed on stderr)
    #[arg(long)]
    pub keep: bool,
    /// Where the temporary directory is made (it needs about 3 x the size free) [default: the
    /// system temp dir]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Runs `kith bench ...`; `json` is the global `--json`. No data dir of the user's is touched.
pub fn run(command: BenchCommand, json: bool) -> Result<()> {
    match command {
        BenchCommand::Transfer(args) => {
            let result = transfer(&args, json)?;
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
    /// The fetcher's copy streamed out of its store had the source file's SHA-256.
    pub verified: bool,
    /// Raw TCP loopback, two threads, same byte count.
    pub raw_tcp: Figure,
    /// SHA-256 (sha2) on one core.
    pub sha256: Figure,
    /// ChaCha20-Poly1305 (ring) sealing on one core.
    pub chacha20_poly1305: Figure,
    /// `kith file put` on the source node's data dir.
    pub put: Figure,
    /// `file get HASH --from SOURCE` on the fetching node.
    pub transfer: Figure,
    /// Items of the file's tree, and how many were fetched.
    pub items: u64,
    /// Items received by the fetch.
    pub items_fetched: u64,
    /// The transfer's throughput over each ceiling's.
    pub ratios: Ratios,
    /// Peak resident set size (VmHWM) of the source node, bytes.
    pub peak_rss_source: u64,
    /// Peak resident set size (VmHWM) of the fetching node, bytes.
    pub peak_rss_fetcher: u64,
    /// CPU time (user + system) the source node spent during the transfer, seconds: next to
    /// the transfer's wall-clock seconds it says whether the transfer was busy or waiting.
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
    /// transfer / raw TCP loopback.
    pub raw_tcp: f64,
    /// transfer / SHA-256.
    pub sha256: f64,
    /// transfer / ChaCha20-Poly1305.
    pub chacha20_poly1305: f64,
}

fn transfer(args: &TransferArgs, json: bool) -> Result<TransferResult> {
    let progress = |what: &str| {
        if !json {
            eprintln!("{what}");
        }
    };
    let size = args.size;
    if size == 0 {
        bail!("--size must be at least one byte");
    }
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut pattern = vec![0u8; 1 << 20];
    rng.fill_bytes(&mut pattern);

    progress("measuring the ceilings: raw TCP loopback, SHA-256, ChaCha20-Poly1305");
    let raw_tcp = ceilings::raw_tcp(size, &pattern)?;
    let sha256 = ceilings::sha256(size, &pattern);
    let chacha = ceilings::chacha20_poly1305(size, &pattern)?;

    let parent = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    // Declared before the nodes, so it is dropped (removed) after they have stopped.
    let scratch = ScratchDir::create(&parent, args.keep)?;
    let file = scratch.path().join("file.bin");
    progress(&format!(
        "writing {size} random bytes to {}",
        file.display()
    ));
    let source_sha256 = write_random_file(&file, size, &mut rng)?;

    progress("starting two nodes and linking them");
    let mut source = BenchNode::start(&scratch.path().join("a"))?;
    let mut fetcher = BenchNode::start(&scratch.path().join("b"))?;
    let node_limits = kith_node::limits::NodeLimits::default();
    let quick = Duration::from_millis(node_limits.control_timeout_ms);
    let ticket: IssuedTicket = source.control(quick).post(
        TICKETS_PATH,
        &TicketOrder {
            reusable: false,
            ttl_secs: 600,
            cuid: None,
            code: false,
        },
    )?;
    let _: PeerRecord = fetcher.control(quick).post(
        CONNECT_PATH,
        &ConnectBody {
            ticket: ticket.line,
        },
    )?;

    progress("file put on the source node");
    let (hash, put) = put_file(&source.data, &file, size)?;

    progress("timing status and chat on the fetching node, idle");
    let probing = fetcher.control(quick);
    probe::prepare(&probing)?;
    let idle_probe = probe::Probe::start(probing.clone());
    std::thread::sleep(probe::EVERY * 20);
    let idle = idle_probe.finish();

    progress("file get --from the source on the fetching node (status and chat timed meanwhile)");
    let body = FetchBody {
        hash: hash.to_hex(),
        from: Some(source.agent.clone()),
        max_price: None,
    };
    let slow = Duration::from_millis(node_limits.exchange_fetch_timeout_ms);
    let cpu_before = (source.cpu_seconds()?, fetcher.cpu_seconds()?);
    let start = Instant::now();
    let busy_probe = probe::Probe::start(probing);
    let fetched = fetcher
        .control(slow)
        .post::<_, FetchReport>(FETCH_PATH, &body);
    let transfer = Measured {
        bytes: size,
        seconds: start.elapsed().as_secs_f64(),
    };
    let during_transfer = busy_probe.finish();
    let fetched = fetched?;
    let cpu_source = source.cpu_seconds()? - cpu_before.0;
    let cpu_fetcher = fetcher.cpu_seconds()? - cpu_before.1;
    let peak_rss_source = source.peak_rss()?;
    let peak_rss_fetcher = fetcher.peak_rss()?;

    progress("verifying the fetched copy");
    if fetched.size != size {
        bail!(
            "the fetch reported {} bytes, the file has {size}",
            fetched.size
        );
    }
    let copy_sha256 = stored_sha256(&fetcher.data, &hash)?;
    if copy_sha256 != source_sha256 {
        bail!("the fetched copy of {hash} differs from the source file");
    }
    source.stop();
    fetcher.stop();

    Ok(TransferResult {
        bytes: size,
        hash: hash.to_hex(),
        verified: true,
        raw_tcp: raw_tcp.into(),
        sha256: sha256.into(),
        chacha20_poly1305: chacha.into(),
        put: put.into(),
        transfer: transfer.into(),
        items: fetched.items,
        items_fetched: fetched.items_fetched,
        ratios: Ratios {
            raw_tcp: transfer.gb_per_s() / raw_tcp.gb_per_s(),
            sha256: transfer.gb_per_s() / sha256.gb_per_s(),
            chacha20_poly1305: transfer.gb_per_s() / chacha.gb_per_s(),
        },
        peak_rss_source,
        peak_rss_fetcher,
        cpu_seconds_source: cpu_source,
        cpu_seconds_fetcher: cpu_fetcher,
        idle,
        during_transfer,
    })
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

/// Parses `1073741824`, `1GiB`, `2MiB`, `64KiB`, `1GB`, `500MB`, `10KB` (also lower case and
/// with a space before the unit).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 1GiB, 2MiB or 1048576"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("1 GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("64kib"), Ok(64 << 10));
        assert!(parse_size("1TiB").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
