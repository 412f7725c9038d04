//! The ceilings a transfer is read against, measured on this machine in the same run: one TCP
//! stream (over loopback, or through the same delaying relay as the transfer), SHA-256 (every
//! item is hashed when read and when received), the durable disk write rate (the file lands
//! twice: in the store and in the output) and ChaCha20-Poly1305 (ring, as the secure link
//! seals and opens every frame).

use super::relay::{Relay, Shape};
use super::Measured;
use anyhow::{anyhow, Context, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

/// Bytes per write on the raw TCP pair, and per hash update: large, so syscalls and call
/// overhead do not count.
const BLOCK: usize = 1 << 20;
/// Bytes per AEAD message: a secure-link frame carries at most 64 KiB, so the link seals at
/// most this much at a time.
const AEAD_MESSAGE: usize = 64 * 1024;

/// How many times each ceiling is measured; the fastest counts.
pub const TRIES: usize = 3;

/// The fastest of [`TRIES`] runs of `measure`: a ceiling is what the machine can do, and a
/// single run of it varies with what else the machine does at that moment (the disk most:
/// a write into memory the kernel has just taken back from the page cache, or that a virtual
/// machine's host has taken back, costs several times as much as one into memory in use).
pub fn best_of(mut measure: impl FnMut() -> Result<Measured>) -> Result<Measured> {
    let mut best = measure()?;
    for _ in 1..TRIES {
        let next = measure()?;
        if next.seconds < best.seconds {
            best = next;
        }
    }
    Ok(best)
}

/// Writes `bytes` to a new file in `dir`, 1 MiB at a time, and syncs it: the durable write
/// rate of the disk the store is on (the file is removed afterwards).
pub fn disk_write(dir: &Path, bytes: u64, pattern: &[u8]) -> Result<Measured> {
    let path = dir.join("disk-ceiling.bin");
    let block = &pattern[..BLOCK.min(pattern.len())];
    let start = Instant::now();
    {
        let mut file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            file.write_all(&block[..n])?;
            left -= n as u64;
        }
        file.sync_all()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(Measured { bytes, seconds })
}

/// Pushes `bytes` from one thread to another over one TCP connection on 127.0.0.1 (through a
/// relay shaped by `shape`, unless that is no shaping at all), in 1 MiB writes; timed from the
/// connect to the last byte read.
pub fn tcp_stream(bytes: u64, pattern: &[u8], shape: Shape) -> Result<Measured> {
    let sink = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
    let (connect, _relay) = Relay::route(sink.local_addr()?, shape)?;
    let what = if shape.is_none() {
        "raw TCP"
    } else {
        "TCP through the relay"
    };
    push(sink, connect, bytes, pattern, what)
}

/// Connects to `connect` (which leads to `sink`, directly or through a relay), writes `bytes`
/// of `pattern` in 1 MiB writes from another thread and reads them all from `sink`: the time
/// from the connect to the last byte read. `what` names the path in errors.
fn push(
    sink: TcpListener,
    connect: std::net::SocketAddr,
    bytes: u64,
    pattern: &[u8],
    what: &str,
) -> Result<Measured> {
    let block = pattern[..BLOCK.min(pattern.len())].to_vec();
    let start = Instant::now();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stream = TcpStream::connect(connect)?;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            stream.write_all(&block[..n])?;
            left -= n as u64;
        }
        stream.shutdown(std::net::Shutdown::Write)
    });
    let (mut stream, _) = sink.accept().with_context(|| format!("{what}: accept"))?;
    let mut buf = vec![0u8; BLOCK];
    let mut received = 0u64;
    loop {
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("{what}: read"))?;
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    sender
        .join()
        .map_err(|_| anyhow!("{what}: the sending thread panicked"))?
        .with_context(|| format!("{what}: write"))?;
    if received != bytes {
        anyhow::bail!("{what}: received {received} of {bytes} bytes");
    }
    Ok(Measured { bytes, seconds })
}

/// SHA-256 (the sha2 crate, as the store uses) over `bytes` bytes, fed 1 MiB at a time from
/// memory.
pub fn sha256(bytes: u64, pattern: &[u8]) -> Measured {
    let block = &pattern[..BLOCK.min(pattern.len())];
    let start = Instant::now();
    let mut hasher = Sha256::new();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    std::hint::black_box(hasher.finalize());
    Measured {
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// ring's ChaCha20-Poly1305 sealing `bytes` bytes in place, 64 KiB per message, on one thread.
pub fn chacha20_poly1305(bytes: u64, pattern: &[u8]) -> Result<Measured> {
    let mut aead = Aead::new()?;
    let mut message = pattern[..AEAD_MESSAGE.min(pattern.len())].to_vec();
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(message.len() as u64) as usize;
        std::hint::black_box(aead.seal(&mut message[..n])?);
        left -= n as u64;
    }
    Ok(Measured {
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// One direction of a secure link's cipher: ChaCha20-Poly1305 with a counter nonce.
pub struct Aead {
    key: LessSafeKey,
    counter: u64,
}

impl Aead {
    /// A fixed key, the counter at 0.
    pub fn new() -> Result<Aead> {
        let key =
            UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32]).map_err(|_| anyhow!("AEAD key"))?;
        Ok(Aead {
            key: LessSafeKey::new(key),
            counter: 0,
        })
    }

    /// The next nonce: the counter, little-endian, after four zero bytes (as Noise).
    fn nonce(&mut self) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter += 1;
        Nonce::assume_unique_for_key(nonce)
    }

    /// Seals `plain` in place; returns the tag.
    pub fn seal(&mut self, plain: &mut [u8]) -> Result<[u8; 16]> {
        let nonce = self.nonce();
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), plain)
            .map_err(|_| anyhow!("AEAD seal failed"))?;
        let mut out = [0u8; 16];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens `sealed` (ciphertext and tag) in place; returns the plaintext.
    pub fn open<'a>(&mut self, sealed: &'a mut [u8]) -> Result<&'a [u8]> {
        let nonce = self.nonce();
        self.key
            .open_in_place(nonce, Aad::empty(), sealed)
            .map(|plain| &*plain)
            .map_err(|_| anyhow!("AEAD open failed"))
    }
}
