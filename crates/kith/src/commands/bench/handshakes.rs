//! `kith bench handshakes`: how many secure-link handshakes a node completes per second.
//!
//! A `kith up` process (this executable, or `--node-bin`, so two builds can be compared on one
//! machine) takes a client as a peer with a ticket (IK), then `--concurrency` connections at a
//! time each run the known-peer handshake (`N`, `K`, `A`: N + KK) against it, `--count` in
//! all, over TCP loopback. Each link is then confirmed with a `version` and closed with `bye`,
//! as a real peer's would be, so the node does all its work per link. The ceiling, measured in
//! the same run, is X25519 on one core: the responder does six scalar multiplications per
//! handshake (its ephemeral key, `es` for `N`, then `es`, `ss`, `ee`, `se` for KK).

use super::nodes::{BenchNode, ScratchDir};
use crate::cli::bench::HandshakesArgs;
use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use kith_crypto::Identity;
use kith_node::api::{IssuedTicket, TicketOrder, TICKETS_PATH};
use kith_proto::secure::{Chad, Event, FrameDecoder, Initiator, Link, SecureConfig, TicketRequest};
use kith_proto::wire::{Command, Envelope};
use kith_proto::Limits;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct HandshakesResult {
    /// Handshakes completed.
    pub handshakes: usize,
    /// Handshakes refused or failed (0 on a healthy run).
    pub failed: usize,
    /// Wall-clock seconds for all of them.
    pub seconds: f64,
    /// Completed handshakes per second.
    pub per_second: f64,
    /// Median time from connect to the link, milliseconds.
    pub median_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// X25519 (key generation and agreement) per second on one core: the ceiling.
    pub x25519_per_second: f64,
    /// Handshakes per second over what one core's X25519 allows (six per handshake).
    pub of_one_core_ceiling: f64,
    /// CPU seconds the node used during the run.
    pub node_cpu_seconds: f64,
}

/// Runs the benchmark.
pub fn run(args: &HandshakesArgs, json: bool) -> Result<HandshakesResult> {
    let progress = |what: &str| {
        if !json {
            eprintln!("{what}");
        }
    };
    if args.count == 0 || args.concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    progress("measuring the ceiling: X25519 on one core");
    let x25519_per_second = x25519_per_second()?;
    let scratch = ScratchDir::create(&std::env::temp_dir(), args.keep)?;
    let data = scratch.path().join("node");
    std::fs::create_dir_all(&data)?;
    // Nothing of the admission guard's per-address pacing: every connection comes from
    // 127.0.0.1, and the point is the handshake's own cost.
    let mut settings = "[limits]\nmax_connects_per_addr_per_minute = 100000000\n\
        max_links_per_addr = 100000\nmax_links = 100000\nmax_pending_handshakes_per_addr = 4096\n\
        max_pending_handshakes = 4096\nmax_failures_per_addr = 100000000\n"
        .to_owned();
    settings.push_str(&super::limit_lines(&args.limits)?);
    std::fs::write(data.join("kith.toml"), settings)?;
    progress("starting a node");
    let mut node = BenchNode::start_with(args.node_bin.as_deref(), &data)?;
    let listen: SocketAddr = node
        .listen
        .clone()
        .ok_or_else(|| anyhow!("the node has no secure-link listener"))?
        .parse()?;
    let limits = Limits::default();
    let ticket: IssuedTicket = node
        .control(Duration::from_millis(
            kith_node::limits::NodeLimits::default().control_timeout_ms,
        ))
        .post(
            TICKETS_PATH,
            &TicketOrder {
                reusable: false,
                ttl_secs: 600,
                cuid: None,
                code: false,
            },
        )?;
    let site = ticket.ticket.agent()?;
    let identity = Identity::generate(&mut rand::rngs::OsRng);
    let secure = Arc::new(SecureConfig::new(&identity, &limits));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    progress("first contact with a ticket (IK)");
    runtime.block_on(async {
        let request = TicketRequest::new(
            ticket.ticket.chad.clone(),
            Chad {
                cuid: None,
                agent: identity.agent_id().to_string(),
                host: None,
                port: None,
            },
            ticket.ticket.token.clone(),
        );
        let machine = Initiator::ik(
            &secure,
            site,
            &request,
            Instant::now(),
            &mut rand::rngs::OsRng,
        )?;
        let (mut stream, link) = handshake(listen, machine, &limits).await?;
        confirm_and_close(&mut stream, link).await;
        // An older node records a ticket's holder just after its handshake.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok::<_, anyhow::Error>(())
    })?;
    progress(&format!(
        "{} known-peer handshakes (N + KK), {} at a time",
        args.count, args.concurrency
    ));
    let cpu_before = node.cpu_seconds()?;
    let started = Instant::now();
    let (times, failed) = runtime.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency {
            let (next, secure, count) = (Arc::clone(&next), Arc::clone(&secure), args.count);
            let limits = limits.clone();
            tasks.push(tokio::spawn(async move {
                let (mut times, mut failed) = (Vec::new(), 0usize);
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let t0 = Instant::now();
                    let result = async {
                        let machine = Initiator::known(
                            &secure,
                            site,
                            b"",
                            Instant::now(),
                            &mut rand::rngs::OsRng,
                        )?;
                        handshake(listen, machine, &limits).await
                    }
                    .await;
                    match result {
                        Ok((mut stream, link)) => {
                            times.push(t0.elapsed().as_secs_f64() * 1e3);
                            confirm_and_close(&mut stream, link).await;
                        }
                        Err(_) => failed += 1,
                    }
                }
                (times, failed)
            }));
        }
        let (mut times, mut failed) = (Vec::new(), 0);
        for task in tasks {
            let (t, f) = task.await?;
            times.extend(t);
            failed += f;
        }
        Ok::<_, anyhow::Error>((times, failed))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let node_cpu_seconds = node.cpu_seconds()? - cpu_before;
    node.stop();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        sorted
            .get(((sorted.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let per_second = times.len() as f64 / seconds;
    Ok(HandshakesResult {
        handshakes: times.len(),
        failed,
        seconds,
        per_second,
        median_ms: at(0.5),
        p99_ms: at(0.99),
        x25519_per_second,
        of_one_core_ceiling: per_second / (x25519_per_second / 6.0),
        node_cpu_seconds,
    })
}

/// Prints a run as text.
pub fn print(r: &HandshakesResult) {
    println!(
        "kith bench handshakes: {} known-peer handshakes (N + KK) over TCP loopback, {} failed",
        r.handshakes, r.failed
    );
    println!(
        "{:.0} handshakes/s ({:.2} s); connect to link: median {:.2} ms, p99 {:.2} ms",
        r.per_second, r.seconds, r.median_ms, r.p99_ms
    );
    println!(
        "ceiling: X25519 {:.0}/s on one core = {:.0} handshakes/s (6 each); this run: {:.2} of one core's, node CPU {:.2} s",
        r.x25519_per_second,
        r.x25519_per_second / 6.0,
        r.of_one_core_ceiling,
        r.node_cpu_seconds
    );
}

/// Connects and runs `machine` to the link.
async fn handshake(
    to: SocketAddr,
    mut machine: Initiator,
    limits: &Limits,
) -> Result<(TcpStream, Link)> {
    let mut stream = TcpStream::connect(to).await?;
    let _ = stream.set_nodelay(true);
    let decoder = FrameDecoder::new(limits);
    let mut buf = BytesMut::new();
    loop {
        let mut out = BytesMut::new();
        while let Some(frame) = machine.poll_transmit() {
            frame.encode(&mut out)?;
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if let Some(Event::Established(link)) = machine.poll_event() {
            return Ok((stream, link));
        }
        if let Some(frame) = decoder.decode(&mut buf)? {
            machine.handle_frame(Instant::now(), frame)?;
            continue;
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut buf))
            .await
            .context("the handshake timed out")??;
        if read == 0 {
            bail!("the node closed the connection during the handshake");
        }
    }
}

/// What a peer does with a link: `version` (which confirms it), then `bye`, then close.
async fn confirm_and_close(stream: &mut TcpStream, mut link: Link) {
    let envelope = |command: &str, data: &[u8]| {
        Envelope::new(
            Command::new(command).expect("a valid command"),
            data.to_vec(),
        )
        .to_bytes()
        .unwrap_or_default()
    };
    let mut plain = envelope("version", br#"{"protocols":[1],"software":"kith-bench"}"#).to_vec();
    plain.extend_from_slice(&envelope("bye", br#"{"reason":"closing"}"#));
    let mut out = BytesMut::new();
    if link.seal_into(&plain, &mut out).is_ok() {
        let _ = stream.write_all(&out).await;
    }
    let _ = stream.shutdown().await;
}

/// X25519 key generation and agreement per second on one core (ring).
fn x25519_per_second() -> Result<f64> {
    use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
    let rng = ring::rand::SystemRandom::new();
    let peer = EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| anyhow!("ring"))?;
    let peer_public = peer.compute_public_key().map_err(|_| anyhow!("ring"))?;
    let rounds = 4_000;
    let started = Instant::now();
    for _ in 0..rounds {
        let key = EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| anyhow!("ring"))?;
        let _ = key.compute_public_key();
        agree_ephemeral(
            key,
            &UnparsedPublicKey::new(&X25519, peer_public.as_ref()),
            |k| k.len(),
        )
        .map_err(|_| anyhow!("ring"))?;
    }
    // Each round is two scalar multiplications (the public key, then the agreement).
    Ok(2.0 * rounds as f64 / started.elapsed().as_secs_f64())
}
