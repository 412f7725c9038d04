//! Store throughput next to plain SHA-256 over the same bytes, so ratios can be stated.
//!
//! Size: 1 GiB, or `KITH_BENCH_BYTES` for quick runs. `put` stores the file from a temp file
//! into a fresh store (items fsync'd, SQLite record committed); `get` writes it back to a path
//! (every item verified, output fsync'd and renamed); `verify` reads and checks without output;
//! `sha256` streams the source file through sha2 once.

use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use kith_store::{BlobStore, FileStore, SqliteMeta};
use sha2::{Digest, Sha256};

fn bench_bytes() -> u64 {
    std::env::var("KITH_BENCH_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1 << 30)
}

/// Writes `len` pseudo-random bytes (xorshift; distinct chunks, so nothing deduplicates).
fn write_source(path: &Path, len: u64) {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    out.flush().unwrap();
}

fn open_store(dir: &Path) -> FileStore {
    let blobs = BlobStore::open(dir.join("files")).unwrap();
    let meta = SqliteMeta::open(&dir.join("kith.db")).unwrap();
    FileStore::new(blobs, Box::new(meta))
}

fn store_benches(c: &mut Criterion) {
    let bytes = bench_bytes();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source.bin");
    write_source(&source, bytes);

    let mut group = c.benchmark_group("store");
    group
        .throughput(Throughput::Bytes(bytes))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));

    group.bench_function("sha256", |b| {
        b.iter(|| {
            let mut file = File::open(&source).unwrap();
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            black_box(hasher.finalize())
        })
    });

    group.bench_function("hash_path", |b| {
        let scratch = tempfile::tempdir_in(work.path()).unwrap();
        let store = open_store(scratch.path());
        b.iter(|| black_box(store.hash_path(&source).unwrap()))
    });

    group.bench_function("put", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir_in(work.path()).unwrap();
                let store = open_store(dir.path());
                (dir, store)
            },
            |(dir, store)| {
                black_box(store.put_path(&source, None).unwrap());
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });

    let stored_dir = tempfile::tempdir_in(work.path()).unwrap();
    let store = open_store(stored_dir.path());
    let record = store.put_path(&source, None).unwrap();
    let target = work.path().join("out.bin");

    group.bench_function("get", |b| {
        b.iter(|| black_box(store.get_to_path(&record.hash, &target).unwrap()))
    });
    group.bench_function("verify", |b| {
        b.iter(|| black_box(store.verify(&record.hash).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, store_benches);
criterion_main!(benches);
