//! The essential work of a transfer, alone: what any implementation has to do to move a file
//! from one store to another over a secure link, done by a tight pipeline with no protocol,
//! no scheduler, no database and no runtime. It is the floor a node's transfer is read
//! against, next to the ceilings: the ceilings each measure one resource on an idle machine,
//! while a transfer needs all of them at once on the same cores.
//!
//! The holder reads each item from a file of its own (written, synced and dropped from the
//! page cache beforehand, as `kith file put` leaves a store), verifies it (SHA-256, as the
//! store verifies every read), seals it in secure-link-sized frames (ChaCha20-Poly1305, ring)
//! and sends it over one TCP stream (through a relay shaped as the transfer's, if any). The
//! fetcher opens the frames on one thread; another verifies each item, writes it to a file of
//! its own and to the output file, and syncs them all at the end. Two threads on the
//! fetcher's side and one on the holder's: as much parallelism as the machine's cores give a
//! transfer.

use super::ceilings::Aead;
use super::relay::{Relay, Shape};
use super::Measured;
use anyhow::{anyhow, bail, Context, Result};
use kith_store::batch::start_writeback_range;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

/// Bytes of one item: the store's.
const ITEM: usize = kith_store::DEFAULT_MAX_ITEM_SIZE;
/// Plaintext bytes per frame: a Noise transport message is at most 65,535 bytes, tag included.
const FRAME: usize = 65_535 - 16;
/// Items in flight between the fetcher's two threads.
const QUEUE: usize = 4;

/// The holder's items, written once and read by every run.
pub struct Holder {
    dir: PathBuf,
    /// Each item's SHA-256 and length, in order.
    items: Vec<([u8; 32], usize)>,
    bytes: u64,
}

impl Holder {
    /// Writes `bytes` (from `pattern`, each item made distinct) as items of their own in a
    /// new directory `floor-holder` under `dir`, syncs them and drops them from the page
    /// cache (the store's [`start_writeback_range`] after the sync).
    pub fn write(dir: &Path, bytes: u64, pattern: &[u8]) -> Result<Holder> {
        let dir = dir.join("floor-holder");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut items = Vec::new();
        let mut item = vec![0u8; ITEM];
        let mut left = bytes;
        while left > 0 {
            let len = left.min(ITEM as u64) as usize;
            let index = items.len();
            for (i, byte) in item[..len].iter_mut().enumerate() {
                *byte = pattern[(i + index) % pattern.len()];
            }
            let mut file = File::create(dir.join(index.to_string()))?;
            file.write_all(&item[..len])?;
            file.sync_all()?;
            start_writeback_range(&file, 0, len as u64);
            items.push((Sha256::digest(&item[..len]).into(), len));
            left -= len as u64;
        }
        Ok(Holder { dir, items, bytes })
    }

    /// One timed run into a fresh directory `floor-fetched` under `dir` (removed after),
    /// through a relay shaped by `shape` unless that is no shaping: from the connect to the
    /// last sync.
    pub fn run(&self, dir: &Path, shape: Shape) -> Result<Measured> {
        let fetched = dir.join("floor-fetched");
        std::fs::create_dir_all(&fetched)?;
        let sink = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
        let (connect, _relay) = Relay::route(sink.local_addr()?, shape)?;
        let start = Instant::now();
        // Connected here, so that a failure to connect is reported rather than waited for
        // at the accept.
        let stream = TcpStream::connect(connect).context("cannot connect to the floor's sink")?;
        let sender = self.send(stream);
        let received = receive(sink, &fetched, &self.items);
        let seconds = start.elapsed().as_secs_f64();
        let sent = sender
            .join()
            .map_err(|_| anyhow!("the floor's holder thread panicked"))?;
        std::fs::remove_dir_all(&fetched)?;
        sent.context("the floor's holder")?;
        received.context("the floor's fetcher")?;
        Ok(Measured {
            bytes: self.bytes,
            seconds,
        })
    }

    /// The holder's side, on a thread of its own: read, verify, seal, send.
    fn send(&self, mut stream: TcpStream) -> std::thread::JoinHandle<Result<()>> {
        let dir = self.dir.clone();
        let items = self.items.clone();
        std::thread::spawn(move || {
            let mut seal = Aead::new()?;
            let mut item = Vec::with_capacity(ITEM);
            let mut frame = vec![0u8; 2 + FRAME + 16];
            for (index, (hash, _)) in items.iter().enumerate() {
                item.clear();
                File::open(dir.join(index.to_string()))?.read_to_end(&mut item)?;
                if Sha256::digest(&item).as_slice() != hash {
                    bail!("item {index} does not match its hash");
                }
                for chunk in item.chunks(FRAME) {
                    let len = chunk.len();
                    frame[2..2 + len].copy_from_slice(chunk);
                    let tag = seal.seal(&mut frame[2..2 + len])?;
                    frame[2 + len..2 + len + 16].copy_from_slice(&tag);
                    frame[..2].copy_from_slice(&((len + 16) as u16).to_be_bytes());
                    stream.write_all(&frame[..2 + len + 16])?;
                }
            }
            Ok(())
        })
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The fetcher's side: this thread accepts and opens the frames into items; a second one
/// verifies and writes them.
fn receive(sink: TcpListener, fetched: &Path, expected: &[([u8; 32], usize)]) -> Result<()> {
    let (mut stream, _) = sink.accept()?;
    let (items, queue) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
    let writer = {
        let fetched = fetched.to_owned();
        let expected = expected.to_vec();
        std::thread::spawn(move || write_items(&fetched, &expected, queue))
    };
    let mut open = Aead::new()?;
    let mut frame = vec![0u8; FRAME + 16];
    let mut opened = || -> Result<()> {
        for &(_, size) in expected {
            let mut item = Vec::with_capacity(size);
            while item.len() < size {
                let mut header = [0u8; 2];
                stream.read_exact(&mut header)?;
                let len = usize::from(u16::from_be_bytes(header));
                if !(16..=FRAME + 16).contains(&len) {
                    bail!("a frame of {len} bytes");
                }
                stream.read_exact(&mut frame[..len])?;
                item.extend_from_slice(open.open(&mut frame[..len])?);
            }
            if items.send(item).is_err() {
                break; // the writer failed: its error is the one to report
            }
        }
        Ok(())
    };
    let result = opened();
    drop(items);
    writer
        .join()
        .map_err(|_| anyhow!("the floor's writer thread panicked"))??;
    result
}

/// Verifies each item, writes it to a file of its own in `fetched` and to the output file,
/// starting their writeback as it goes (as the store and a fetch's output do); syncs
/// everything at the end.
fn write_items(
    fetched: &Path,
    expected: &[([u8; 32], usize)],
    queue: mpsc::Receiver<Vec<u8>>,
) -> Result<()> {
    let mut output = File::create(fetched.join("output"))?;
    let mut stored = Vec::with_capacity(expected.len());
    let mut offset = 0u64;
    for (index, item) in queue.into_iter().enumerate() {
        if expected
            .get(index)
            .is_none_or(|(hash, _)| Sha256::digest(&item).as_slice() != hash)
        {
            bail!("received item {index} does not match its hash");
        }
        let mut file = File::create(fetched.join(index.to_string()))?;
        file.write_all(&item)?;
        start_writeback_range(&file, 0, item.len() as u64);
        stored.push(file);
        output.write_all(&item)?;
        start_writeback_range(&output, offset, item.len() as u64);
        offset += item.len() as u64;
    }
    if stored.len() != expected.len() {
        bail!("received {} of {} items", stored.len(), expected.len());
    }
    for file in stored.iter().chain([&output]) {
        file.sync_all()?;
    }
    File::open(fetched)?.sync_all()?;
    Ok(())
}
