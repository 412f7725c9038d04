//! One run of `kith bench transfer`: ceilings, nodes (each source behind its own relay),
//! the file, the timed `kith file get`, and the checks.

use super::ceilings;
use super::floor;
use super::nodes::{BenchNode, ScratchDir};
use super::probe;
use super::relay::{Relay, Shape};
use super::{
    put_file, stored_sha256, write_random_file, Figure, Measured, Ratios, TransferArgs,
    TransferResult,
};
use anyhow::{bail, Context, Result};
use kith_node::api::{
    ConnectBody, FetchReport, IssuedTicket, TicketOrder, CONNECT_PATH, TICKETS_PATH,
};
use kith_store::meta::PeerRecord;
use kith_store::ContentHash;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the benchmark.
pub fn run(args: &TransferArgs, json: bool) -> Result<TransferResult> {
    let progress = |what: &str| {
        if !json {
            eprintln!("{what}");
        }
    };
    let size = args.size;
    if size == 0 {
        bail!("--size must be at least one byte");
    }
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be a positive number of MB/s");
    }
    let shape = Shape {
        one_way: Duration::from_millis(args.rtt) / 2,
        rate: args.rate.map(|r| r * 1e6),
    };
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut pattern = vec![0u8; 1 << 20];
    rng.fill_bytes(&mut pattern);
    let parent = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    // Declared before the nodes, so it is dropped (removed) after they have stopped.
    let scratch = ScratchDir::create(&parent, args.keep)?;

    progress(&format!(
        "measuring the ceilings, best of {}: one TCP stream, SHA-256, the disk, ChaCha20-Poly1305",
        ceilings::TRIES
    ));
    let tcp = ceilings::best_of(|| ceilings::tcp_stream(size, &pattern, shape))?;
    let sha256 = ceilings::best_of(|| Ok(ceilings::sha256(size, &pattern)))?;
    let disk = ceilings::best_of(|| ceilings::disk_write(scratch.path(), size, &pattern))?;
    let chacha = ceilings::best_of(|| ceilings::chacha20_poly1305(size, &pattern))?;
    let ceiling = tcp
        .gb_per_s()
        .min(sha256.gb_per_s())
        .min(disk.gb_per_s() / 2.0);
    // The floor is one holder's pipeline: read against a fetch from one source.
    let essential = if args.sources == 1 {
        progress(&format!(
            "measuring the essential work alone, best of {}: read, verify, seal, send; open, verify, write twice, sync",
            ceilings::TRIES
        ));
        let holder = floor::Holder::write(scratch.path(), size, &pattern)?;
        Some(ceilings::best_of(|| holder.run(scratch.path(), shape))?)
    } else {
        None
    };

    if args.files > size {
        bail!("--files must be at most --size (every file has a byte at least)");
    }
    let folder = args.files > 1;
    let file = scratch
        .path()
        .join(if folder { "folder" } else { "file.bin" });
    progress(&format!(
        "writing {size} random bytes to {}{}",
        file.display(),
        if folder {
            format!(", {} files", args.files)
        } else {
            String::new()
        }
    ));
    let written = write_random_files(&file, size, args.files, &mut rng)?;

    progress(&format!(
        "starting {} source node(s){} and the fetching node",
        args.sources,
        if shape.is_none() {
            String::new()
        } else {
            format!(
                " behind relays ({} ms round trip{})",
                args.rtt,
                args.rate
                    .map_or(String::new(), |r| format!(", {r} MB/s each way"))
            )
        }
    ));
    let mut relays = Vec::new();
    let mut sources = Vec::new();
    let settings = super::limit_lines(&args.limits)?;
    let configure = |data: &std::path::Path| -> Result<()> {
        if !settings.is_empty() {
            std::fs::create_dir_all(data)?;
            std::fs::write(data.join("kith.toml"), format!("[limits]\n{settings}"))?;
        }
        Ok(())
    };
    for i in 0..args.sources {
        let data = scratch.path().join(format!("source{i}"));
        configure(&data)?;
        if shape.is_none() {
            sources.push(BenchNode::start(&data)?);
            continue;
        }
        let (listener, relay_addr) = Relay::bind()?;
        let node = BenchNode::start_announcing(&data, Some(relay_addr))?;
        let listen: SocketAddr = node
            .listen
            .as_deref()
            .context("a source node has no listener")?
            .parse()
            .context("a source node's listener is not an address")?;
        relays.push(Relay::start(listener, listen, shape)?);
        sources.push(node);
    }
    configure(&scratch.path().join("fetcher"))?;
    let mut fetcher = BenchNode::start(&scratch.path().join("fetcher"))?;
    let node_limits = kith_node::limits::NodeLimits::default();
    let quick = Duration::from_millis(node_limits.control_timeout_ms);

    progress("file put on each source node, and linking the fetching node to each");
    let mut put = None;
    let mut hash = None;
    for source in &sources {
        let (h, m) = put_file(&source.data, &file, size)?;
        put.get_or_insert(m);
        hash = Some(h);
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
                ticket: through_relay_only(&ticket.line, !shape.is_none())?,
            },
        )?;
    }
    let (hash, put) = (
        hash.context("no source node")?,
        put.context("no source node")?,
    );

    progress("timing status and chat on the fetching node, idle");
    let probing = fetcher.control(quick);
    probe::prepare(&probing)?;
    let idle_probe = probe::Probe::start(probing.clone());
    std::thread::sleep(probe::EVERY * 20);
    let idle = idle_probe.finish();

    let from = (args.sources == 1).then(|| sources[0].agent.clone());
    progress(&format!(
        "kith file get {}-o FILE on the fetching node (status and chat timed meanwhile)",
        if from.is_some() { "--from SOURCE " } else { "" }
    ));
    let out = scratch
        .path()
        .join(if folder { "copy" } else { "copy.bin" });
    let cpu_before = (cpu_of(&sources)?, fetcher.cpu_seconds()?);
    let busy_probe = probe::Probe::start(probing);
    let fetched = get_file(&fetcher.data, &hash, from.as_deref(), &out, size);
    let during_transfer = busy_probe.finish();
    let (transfer, fetched) = fetched?;
    let cpu_source = cpu_of(&sources)? - cpu_before.0;
    let cpu_fetcher = fetcher.cpu_seconds()? - cpu_before.1;
    let (mut peak_rss_source, mut rss_file_source) = (0, 0);
    for source in &sources {
        peak_rss_source = peak_rss_source.max(source.peak_rss()?);
        rss_file_source = rss_file_source.max(source.rss_file()?);
    }
    let peak_rss_fetcher = fetcher.peak_rss()?;
    let rss_file_fetcher = fetcher.rss_file()?;

    progress("verifying the output file and the fetched copy in the store");
    if fetched.size != size {
        bail!(
            "the fetch reported {} bytes, the file has {size}",
            fetched.size
        );
    }
    for (name, sha) in &written {
        let path = if folder { out.join(name) } else { out.clone() };
        if file_sha256(&path)? != *sha {
            bail!(
                "{} (of {hash}) differs from the source file",
                path.display()
            );
        }
    }
    if !folder && stored_sha256(&fetcher.data, &hash)? != written[0].1 {
        bail!("the fetched copy of {hash} differs from the source file");
    }
    for source in &mut sources {
        source.stop();
    }
    fetcher.stop();
    drop(relays);

    let rate = transfer.gb_per_s();
    Ok(TransferResult {
        bytes: size,
        hash: hash.to_hex(),
        verified: true,
        rtt_ms: args.rtt,
        rate_mb_s: args.rate,
        sources: args.sources,
        files: args.files,
        raw_tcp: tcp.into(),
        sha256: sha256.into(),
        disk_write: disk.into(),
        chacha20_poly1305: chacha.into(),
        ceiling_gb_per_s: ceiling,
        essential: essential.map(Figure::from),
        put: put.into(),
        transfer: Figure::from(transfer),
        items: fetched.items,
        items_fetched: fetched.items_fetched,
        shares: fetched.sources,
        ratios: Ratios {
            raw_tcp: rate / tcp.gb_per_s(),
            sha256: rate / sha256.gb_per_s(),
            half_disk: rate / (disk.gb_per_s() / 2.0),
            chacha20_poly1305: rate / chacha.gb_per_s(),
            ceiling: rate / ceiling,
            essential: essential.map(|e| rate / e.gb_per_s()),
        },
        peak_rss_source,
        peak_rss_fetcher,
        rss_file_source,
        rss_file_fetcher,
        cpu_seconds_source: cpu_source,
        cpu_seconds_fetcher: cpu_fetcher,
        idle,
        during_transfer,
    })
}

/// Writes `size` random bytes to `path`: one file, or with `files` above 1 a folder of that
/// many (`f00000.bin`, ...; the first ones a byte longer when `size` does not divide).
/// Returns each file's name in the folder and SHA-256.
fn write_random_files(
    path: &Path,
    size: u64,
    files: u64,
    rng: &mut impl RngCore,
) -> Result<Vec<(String, [u8; 32])>> {
    if files <= 1 {
        return Ok(vec![(String::new(), write_random_file(path, size, rng)?)]);
    }
    std::fs::create_dir_all(path)?;
    (0..files)
        .map(|i| {
            let name = format!("f{i:05}.bin");
            let len = size / files + u64::from(i < size % files);
            Ok((
                name.clone(),
                write_random_file(&path.join(&name), len, rng)?,
            ))
        })
        .collect()
}

fn cpu_of(nodes: &[BenchNode]) -> Result<f64> {
    nodes.iter().map(BenchNode::cpu_seconds).sum()
}

/// `kith --data DATA file get HASH [--from AGENT] -o OUT --json` (this executable), timed
/// from start to exit; returns the fetch report.
fn get_file(
    data: &Path,
    hash: &ContentHash,
    from: Option<&str>,
    out: &Path,
    size: u64,
) -> Result<(Measured, FetchReport)> {
    let exe = std::env::current_exe().context("cannot find the kith executable")?;
    let mut command = Command::new(exe);
    command
        .arg("--data")
        .arg(data)
        .args(["file", "get", &hash.to_hex(), "--json", "-o"])
        .arg(out);
    if let Some(from) = from {
        command.args(["--from", from]);
    }
    let start = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .context("cannot run kith file get")?;
    let seconds = start.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "kith file get failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let printed: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("kith file get printed no JSON")?;
    let report: FetchReport = serde_json::from_value(printed["fetched"].clone())
        .context("kith file get printed no fetch report")?;
    Ok((
        Measured {
            bytes: size,
            seconds,
        },
        report,
    ))
}

/// SHA-256 of a file, streamed.
fn file_sha256(path: &Path) -> Result<[u8; 32]> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// The ticket a source behind a relay hands the fetching node: only its announced address
/// (the relay's). A ticket also lists the node's other addresses (its real listening port,
/// here on the same machine), and the fetching node, dialling them all, took the direct one
/// now and then: one source then bypassed its relay's delay and pacing (one run measured
/// 5.7 times one uplink from three sources, one of them at 180 MB/s).
fn through_relay_only(line: &str, behind_relay: bool) -> Result<String> {
    if !behind_relay {
        return Ok(line.to_owned());
    }
    let mut ticket = kith_node::ticket::Ticket::parse(line)
        .map_err(|e| anyhow::anyhow!("a source's ticket does not parse: {e}"))?;
    ticket.addrs.clear();
    ticket.via.clear();
    Ok(ticket.to_line())
}
