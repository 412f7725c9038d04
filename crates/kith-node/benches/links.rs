//! Secure links over loopback: bulk throughput and the memory of idle links, each next to the
//! ceiling (or floor) it is read against, measured in the same run.
//!
//! `cargo bench -p kith-node --bench links` prints two small tables.
//!
//! Throughput, in this process, `KITH_BENCH_ROUNDS` rounds (default 3), best of each kept:
//! - `raw tcp`: one tokio `TcpStream` pair on 127.0.0.1 pushing `KITH_BENCH_BYTES` (default
//!   1 GiB) in 64 KiB writes;
//! - `aead seal` / `aead open`: ring's ChaCha20-Poly1305 sealing (opening) the same bytes in
//!   64 KiB messages, in place, on one thread;
//! - `secure link`: one link established over that kind of stream pair (N then KK through the
//!   public `kith_proto::secure` machines), then the sender `Link::seal_into`s 64 KiB at a
//!   time and writes, the receiver `FrameDecoder::decode`s and `Link::open`s every frame.
//!
//! The link seals on one core and opens on the other, so its ceiling is the slower of the two
//! AEAD directions on one core, and raw TCP bounds it from the other side.
//!
//! Memory: a child process per figure (a fresh heap each time) opens `KITH_BENCH_LINKS`
//! (default 5,000) connections on loopback, both ends in that process, and reads VmRSS from
//! /proc/self/status before and after:
//! - `secure link`: each connection is a secure link (N then KK), and each end parks in a task
//!   shaped like the node's link task (stream, link, frame and envelope decoders, buffers, a
//!   256-slot queue, the responder's idle timer) after both ends have exchanged one `version`
//!   envelope;
//! - `raw tcp`: the same tasks, queue and envelope, with no handshake, link, frames or idle
//!   timer: the floor the link layer adds to.
//!
//! Each connection is two link ends; one node pays for one end per link, which is the per-end
//! figure. The fd soft limit is raised (via setrlimit) to 2 x links + 1024 if the hard limit
//! allows.

use std::io::Write;
use std::process::Command as Process;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kith_crypto::Identity;
use kith_proto::secure::{
    Event, Frame, FrameDecoder, HandshakeError, Initiator, Link, Responder, SecureConfig,
};
use kith_proto::wire::{Command, Envelope, EnvelopeDecoder};
use kith_proto::Limits;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

const CHUNK: usize = 64 * 1024;
const GB: f64 = 1e9;
/// Handshakes in flight at once while opening the idle links.
const DIAL_CONCURRENCY: usize = 64;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn main() {
    match std::env::var("KITH_BENCH_CHILD").as_deref() {
        Ok("mem-link") => memory_child(true),
        Ok("mem-raw") => memory_child(false),
        _ => {
            let bytes = env_u64("KITH_BENCH_BYTES", 1 << 30);
            let rounds = env_u64("KITH_BENCH_ROUNDS", 3).max(1);
            let links = env_u64("KITH_BENCH_LINKS", 5_000).max(1);
            if env_u64("KITH_BENCH_SKIP_THROUGHPUT", 0) == 0 {
                throughput(bytes, rounds);
            }
            if env_u64("KITH_BENCH_SKIP_MEMORY", 0) == 0 {
                memory(links);
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn identity(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

fn pattern(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    StdRng::seed_from_u64(0x6b17).fill_bytes(&mut data);
    data
}

// ---------------------------------------------------------------------------------------------
// Handshakes over a TcpStream (the node's loop, without the database).

enum Machine {
    Initiator(Box<Initiator>),
    Responder(Box<Responder>),
}

impl Machine {
    fn poll_transmit(&mut self) -> Option<Frame> {
        match self {
            Machine::Initiator(m) => m.poll_transmit(),
            Machine::Responder(m) => m.poll_transmit(),
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        match self {
            Machine::Initiator(m) => m.poll_event(),
            Machine::Responder(m) => m.poll_event(),
        }
    }

    fn handle_frame(&mut self, frame: Frame) -> Result<(), HandshakeError> {
        match self {
            Machine::Initiator(m) => m.handle_frame(Instant::now(), frame),
            Machine::Responder(m) => m.handle_frame(Instant::now(), frame),
        }
    }
}

/// Runs `machine` over `stream` until the link is up; returns it with any bytes read past the
/// handshake. The responder accepts every ticket and every declared agent.
async fn handshake(
    stream: &mut TcpStream,
    mut machine: Machine,
    decoder: &FrameDecoder,
) -> Result<(Link, BytesMut), String> {
    let mut buf = BytesMut::with_capacity(1024);
    let mut out = BytesMut::new();
    loop {
        out.clear();
        while let Some(frame) = machine.poll_transmit() {
            frame.encode(&mut out).map_err(|e| e.to_string())?;
        }
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        if let Some(event) = machine.poll_event() {
            let Machine::Responder(r) = &mut machine else {
                return match event {
                    Event::Established(link) => Ok((link, buf)),
                    other => Err(format!("initiator: {other:?}")),
                };
            };
            match event {
                Event::Established(link) => return Ok((link, buf)),
                Event::CheckTicket { .. } => r.answer_ticket(Instant::now(), true),
                Event::LookupPeer { agent } => {
                    r.answer_peer(Instant::now(), Some(agent.noise_public()))
                }
                Event::Refused { reason } => return Err(format!("refused: {reason:?}")),
            }
            .map_err(|e| e.to_string())?;
            continue;
        }
        if let Some(frame) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
            machine.handle_frame(frame).map_err(|e| e.to_string())?;
            continue;
        }
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_buf(&mut buf));
        match read.await {
            Ok(Ok(0)) => return Err("closed during the handshake".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("handshake took over 30 s".into()),
        }
    }
}

/// Keys and the limits for both ends; `alice` dials, `bob` listens.
struct Ends {
    alice: SecureConfig,
    bob: SecureConfig,
    bob_agent: kith_crypto::AgentId,
    limits: Limits,
}

impl Ends {
    fn new() -> Ends {
        // The idle links must outlive the measurement; the timer is still armed.
        let limits = Limits {
            idle_timeout_ms: 3_600_000,
            ..Limits::default()
        };
        let (a, b) = (identity(1), identity(2));
        Ends {
            alice: SecureConfig::new(&a, &limits),
            bob: SecureConfig::new(&b, &limits),
            bob_agent: b.agent_id(),
            limits,
        }
    }

    async fn dial(&self, stream: &mut TcpStream) -> Result<(Link, BytesMut), String> {
        let init = Initiator::known(
            &self.alice,
            self.bob_agent,
            b"",
            Instant::now(),
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| e.to_string())?;
        let decoder = FrameDecoder::new(&self.limits);
        handshake(stream, Machine::Initiator(Box::new(init)), &decoder).await
    }

    async fn answer(&self, stream: &mut TcpStream) -> Result<(Link, BytesMut), String> {
        let resp = Responder::new(&self.bob, Instant::now(), &mut rand::rngs::OsRng);
        let decoder = FrameDecoder::new(&self.limits);
        handshake(stream, Machine::Responder(Box::new(resp)), &decoder).await
    }
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (dialled, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (a, b) = (dialled.expect("connect"), accepted.expect("accept").0);
    // As the node does.
    a.set_nodelay(true).expect("nodelay");
    b.set_nodelay(true).expect("nodelay");
    (a, b)
}

// ---------------------------------------------------------------------------------------------
// Throughput.

async fn raw_tcp(total: u64) -> f64 {
    let (mut tx, mut rx) = tcp_pair().await;
    let data = pattern(CHUNK);
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let mut left = total;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            tx.write_all(&data[..n]).await.expect("write");
            left -= n as u64;
        }
        tx.shutdown().await.expect("shutdown");
    });
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < total {
            let n = rx.read(&mut buf).await.expect("read");
            assert!(n > 0, "raw tcp: early EOF");
            got += n as u64;
        }
    });
    writer.await.expect("writer");
    reader.await.expect("reader");
    total as f64 / start.elapsed().as_secs_f64()
}

async fn secure_link(total: u64) -> f64 {
    let ends = Arc::new(Ends::new());
    let (mut a, mut b) = tcp_pair().await;
    let other = Arc::clone(&ends);
    let responder = tokio::spawn(async move {
        let (link, rest) = other.answer(&mut b).await.expect("responder handshake");
        (b, link, rest)
    });
    let (mut tx_link, _) = ends.dial(&mut a).await.expect("initiator handshake");
    let (mut b, mut rx_link, mut inbuf) = responder.await.expect("responder");
    let decoder = FrameDecoder::new(&ends.limits);
    let data = pattern(CHUNK);

    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let mut out = BytesMut::with_capacity(2 * CHUNK);
        let mut left = total;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            out.clear();
            tx_link.seal_into(&data[..n], &mut out).expect("seal");
            a.write_all(&out).await.expect("write");
            left -= n as u64;
        }
        a.shutdown().await.expect("shutdown");
    });
    let reader = tokio::spawn(async move {
        let mut got = 0u64;
        loop {
            while let Some(frame) = decoder.decode(&mut inbuf).expect("frame") {
                got += rx_link.open(Instant::now(), &frame).expect("open").len() as u64;
            }
            if got >= total {
                break;
            }
            if inbuf.capacity() - inbuf.len() < CHUNK {
                inbuf.reserve(2 * CHUNK);
            }
            let n = b.read_buf(&mut inbuf).await.expect("read");
            assert!(n > 0, "secure link: early EOF");
        }
    });
    writer.await.expect("writer");
    reader.await.expect("reader");
    total as f64 / start.elapsed().as_secs_f64()
}

/// The Noise ChaChaPoly nonce: four zero bytes, then the counter little-endian.
fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// ChaCha20-Poly1305 on one thread: (seal, open) bytes per second over `total` bytes.
fn aead(total: u64) -> (f64, f64) {
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[0x42; 32]).expect("key"));
    let mut buf = pattern(CHUNK);
    let messages = total.div_ceil(CHUNK as u64);
    let start = Instant::now();
    let mut tags = Vec::with_capacity(messages as usize);
    for i in 0..messages {
        let tag = key
            .seal_in_place_separate_tag(nonce(i), Aad::empty(), &mut buf)
            .expect("seal");
        tags.push(tag);
        std::hint::black_box(&buf);
    }
    let seal = (messages * CHUNK as u64) as f64 / start.elapsed().as_secs_f64();
    // Open them back, newest first: each message sealed the previous one's ciphertext.
    let start = Instant::now();
    for (i, tag) in tags.into_iter().enumerate().rev() {
        key.open_in_place_separate_tag(nonce(i as u64), Aad::empty(), tag, &mut buf, 0..)
            .expect("open");
        std::hint::black_box(&buf);
    }
    assert!(buf == pattern(CHUNK), "aead round trip");
    let open = (messages * CHUNK as u64) as f64 / start.elapsed().as_secs_f64();
    (seal, open)
}

fn throughput(total: u64, rounds: u64) {
    let rt = runtime();
    println!(
        "throughput: {total} bytes ({:.2} GiB) per figure, 64 KiB writes, best of {rounds} rounds, 127.0.0.1",
        total as f64 / (1u64 << 30) as f64
    );
    println!(
        "{:>6} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "round", "raw tcp", "aead seal", "aead open", "secure link", "link/raw", "link/seal"
    );
    let (mut raw, mut seal, mut open, mut link) = (0f64, 0f64, 0f64, 0f64);
    let (mut vs_raw, mut vs_seal) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let r = rt.block_on(raw_tcp(total));
        let (s, o) = aead(total);
        let l = rt.block_on(secure_link(total));
        println!(
            "{round:>6} {:>7.3} GB/s {:>7.3} GB/s {:>7.3} GB/s {:>7.3} GB/s {:>9.3} {:>9.3}",
            r / GB,
            s / GB,
            o / GB,
            l / GB,
            l / r,
            l / s
        );
        raw = raw.max(r);
        seal = seal.max(s);
        open = open.max(o);
        link = link.max(l);
        vs_raw.push(l / r);
        vs_seal.push(l / s);
    }
    println!(
        "{:>6} {:>7.3} GB/s {:>7.3} GB/s {:>7.3} GB/s {:>7.3} GB/s {:>9.3} {:>9.3}",
        "best",
        raw / GB,
        seal / GB,
        open / GB,
        link / GB,
        link / raw,
        link / seal
    );
    println!(
        "ratios of the bests: link/raw-tcp {:.3}  link/aead-seal {:.3}  link/aead-open {:.3}",
        link / raw,
        link / seal,
        link / open,
    );
    println!(
        "median of the per-round ratios: link/raw-tcp {:.3}  link/aead-seal {:.3}",
        median(vs_raw),
        median(vs_seal)
    );
    println!();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// Memory.

fn memory(links: u64) {
    println!("idle links: {links} connections on 127.0.0.1, both ends in one (child) process");
    println!(
        "{:>12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "kind", "rss before", "rss after", "KiB/conn", "KiB/end", "open (s)"
    );
    let mut per_end = Vec::new();
    for (label, child) in [("raw tcp", "mem-raw"), ("secure link", "mem-link")] {
        let out = Process::new(std::env::current_exe().expect("current exe"))
            .env("KITH_BENCH_CHILD", child)
            .env("KITH_BENCH_LINKS", links.to_string())
            .output()
            .expect("run the memory child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let Some(line) = stdout.lines().find(|l| l.starts_with("MEM ")) else {
            println!(
                "{label:>12}  failed: {}{}",
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        };
        let f: Vec<f64> = line[4..]
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        let (before, after, secs) = (f[0], f[1], f[2]);
        let conn = (after - before) / links as f64;
        println!(
            "{label:>12} {:>6.1} MiB {:>6.1} MiB {conn:>10.2} {:>10.2} {secs:>10.2}",
            before / 1024.0,
            after / 1024.0,
            conn / 2.0,
        );
        per_end.push(conn / 2.0);
    }
    println!(
        "ratio: secure link / raw tcp per end {:.2} (the link layer adds {:.1} KiB per end)",
        per_end[1] / per_end[0],
        per_end[1] - per_end[0]
    );
    println!("(RSS only: the kernel's socket structures are not counted)");
}

fn rss_kib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn raise_fd_limit(want: u64) {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        if lim.rlim_cur < want {
            eprintln!(
                "fd limit {} is below the {want} this needs: raise the hard limit (ulimit -Hn)",
                lim.rlim_cur
            );
        }
    }
}

/// What one end of an idle connection keeps, shaped like the node's link task.
struct IdleEnd {
    stream: TcpStream,
    link: Option<Link>,
    frames: FrameDecoder,
    envelopes: EnvelopeDecoder,
    inbuf: BytesMut,
    plain: BytesMut,
    out: BytesMut,
}

impl IdleEnd {
    fn new(stream: TcpStream, link: Option<Link>, inbuf: BytesMut, limits: &Limits) -> IdleEnd {
        IdleEnd {
            stream,
            link,
            frames: FrameDecoder::new(limits),
            envelopes: EnvelopeDecoder::new(limits.max_envelope_data),
            inbuf,
            plain: BytesMut::new(),
            out: BytesMut::new(),
        }
    }

    async fn send(&mut self, envelope: &Envelope) -> Result<(), String> {
        let bytes = envelope.to_bytes().map_err(|e| e.to_string())?;
        self.out.clear();
        match &mut self.link {
            Some(link) => {
                link.seal_into(&bytes, &mut self.out)
                    .map_err(|e| e.to_string())?;
            }
            None => self.out.extend_from_slice(&bytes),
        }
        self.stream
            .write_all(&self.out)
            .await
            .map_err(|e| e.to_string())
    }

    /// Decodes what is buffered; returns how many envelopes came out.
    fn process(&mut self) -> Result<usize, String> {
        match &mut self.link {
            Some(link) => {
                while let Some(frame) = self
                    .frames
                    .decode(&mut self.inbuf)
                    .map_err(|e| e.to_string())?
                {
                    let plain = link
                        .open(Instant::now(), &frame)
                        .map_err(|e| e.to_string())?;
                    self.plain.extend_from_slice(&plain);
                }
            }
            None => {
                let taken = self.inbuf.split();
                self.plain.extend_from_slice(&taken);
            }
        }
        let mut n = 0;
        while self
            .envelopes
            .decode(&mut self.plain)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            n += 1;
        }
        Ok(n)
    }

    /// Sends `version`, waits for the peer's, reports ready, then idles until the queue closes
    /// or the peer goes away.
    async fn run(mut self, mut rx: mpsc::Receiver<Bytes>, ready: mpsc::UnboundedSender<()>) {
        let version = serde_json::json!({ "protocols": [1], "software": "kith/bench" });
        let version = Envelope::new(
            Command::new("version").expect("command"),
            serde_json::to_vec(&version).expect("json"),
        );
        if self.send(&version).await.is_err() {
            return;
        }
        let mut greeted = false;
        loop {
            match self.process() {
                Ok(n) if n > 0 && !greeted => {
                    greeted = true;
                    let _ = ready.send(());
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("link end: {e}");
                    return;
                }
            }
            let idle_at = self.link.as_ref().and_then(|l| l.idle_deadline());
            tokio::select! {
                read = self.stream.read_buf(&mut self.inbuf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                item = rx.recv() => match item {
                    Some(data) => {
                        let env = Envelope::new(Command::new("data").expect("command"), data);
                        if self.send(&env).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                _ = sleep_until_opt(idle_at.map(tokio::time::Instant::from_std)) => {}
            }
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Spawns the idle task of one end; its queue's sender goes to `keep`.
fn park(
    end: IdleEnd,
    keep: &mpsc::UnboundedSender<mpsc::Sender<Bytes>>,
    ready: &mpsc::UnboundedSender<()>,
    queue: usize,
) {
    let (tx, rx) = mpsc::channel(queue);
    let _ = keep.send(tx);
    tokio::spawn(end.run(rx, ready.clone()));
}

/// Dials `n` idle connections (secure links if `secure`) and waits until every dialled end has
/// heard the other's `version`. Returns their queue senders, which keep the links open (the
/// accepting ends report to [`accept_idle`]'s channels).
async fn open_idle(
    ends: &Arc<Ends>,
    addr: std::net::SocketAddr,
    n: usize,
    secure: bool,
) -> Vec<mpsc::Sender<Bytes>> {
    let (keep_tx, mut keep_rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let queue = ends.limits.link_queue_envelopes.max(1);
    let mut dials = JoinSet::new();
    for _ in 0..n {
        while dials.len() >= DIAL_CONCURRENCY {
            dials.join_next().await.expect("a dial").expect("dial task");
        }
        let (ends, keep, ready) = (Arc::clone(ends), keep_tx.clone(), ready_tx.clone());
        dials.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (link, rest) = if secure {
                let (link, rest) = ends.dial(&mut stream).await.expect("initiator handshake");
                (Some(link), rest)
            } else {
                (None, BytesMut::with_capacity(1024))
            };
            park(
                IdleEnd::new(stream, link, rest, &ends.limits),
                &keep,
                &ready,
                queue,
            );
        });
    }
    while let Some(joined) = dials.join_next().await {
        joined.expect("dial task");
    }
    for _ in 0..n {
        ready_rx.recv().await.expect("ready");
    }
    let mut kept = Vec::with_capacity(n);
    while kept.len() < n {
        kept.push(keep_rx.recv().await.expect("dialled end"));
    }
    kept
}

/// Accepts connections forever; each becomes an idle responder end.
async fn accept_idle(
    listener: TcpListener,
    ends: Arc<Ends>,
    secure: bool,
    keep: mpsc::UnboundedSender<mpsc::Sender<Bytes>>,
    ready: mpsc::UnboundedSender<()>,
) {
    let queue = ends.limits.link_queue_envelopes.max(1);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (ends, keep, ready) = (Arc::clone(&ends), keep.clone(), ready.clone());
        tokio::spawn(async move {
            stream.set_nodelay(true).expect("nodelay");
            let (link, rest) = if secure {
                let (link, rest) = ends.answer(&mut stream).await.expect("responder handshake");
                (Some(link), rest)
            } else {
                (None, BytesMut::with_capacity(1024))
            };
            park(
                IdleEnd::new(stream, link, rest, &ends.limits),
                &keep,
                &ready,
                queue,
            );
        });
    }
}

fn memory_child(secure: bool) {
    let links = env_u64("KITH_BENCH_LINKS", 5_000) as usize;
    raise_fd_limit(2 * links as u64 + 1024);
    let rt = runtime();
    rt.block_on(async move {
        let ends = Arc::new(Ends::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (keep_tx, mut keep_rx) = mpsc::unbounded_channel();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        tokio::spawn(accept_idle(
            listener,
            Arc::clone(&ends),
            secure,
            keep_tx,
            ready_tx,
        ));
        // Warm up (worker threads, allocator arenas, lazy statics), then close again.
        let warm = open_idle(&ends, addr, 64, secure).await;
        drop(warm);
        for _ in 0..64 {
            ready_rx.recv().await.expect("warm-up ready");
        }
        while keep_rx.try_recv().is_ok() {}
        tokio::time::sleep(Duration::from_millis(500)).await;

        let rss0 = rss_kib();
        let start = Instant::now();
        let dialled = open_idle(&ends, addr, links, secure).await;
        for _ in 0..links {
            ready_rx.recv().await.expect("responder ready");
        }
        let secs = start.elapsed().as_secs_f64();
        let mut answered = Vec::with_capacity(links);
        while answered.len() < links {
            answered.push(keep_rx.recv().await.expect("responder end"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss1 = rss_kib();
        println!("MEM {rss0} {rss1} {secs:.3}");
        let _ = std::io::stdout().flush();
        drop((dialled, answered));
    });
    // Skip the teardown of thousands of sockets.
    std::process::exit(0);
}
