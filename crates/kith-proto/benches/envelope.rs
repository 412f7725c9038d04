//! Envelope encode/decode throughput next to the raw SHA-256 speed of this machine.
//!
//! Both directions hash the whole payload (the checksum), so SHA-256 is the ceiling; the
//! report to read is `envelope / sha256`, which stays meaningful on a noisy machine.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kith_proto::wire::{Command, Envelope, EnvelopeDecoder};
use sha2::{Digest, Sha256};
use std::hint::black_box;

fn envelopes(c: &mut Criterion) {
    for size in [1024usize, 64 * 1024, 1024 * 1024] {
        let data = vec![0x5au8; size];
        let env = Envelope::new(Command::new("file").unwrap(), data.clone());
        let encoded = env.to_bytes().unwrap();
        let decoder = EnvelopeDecoder::new(2 * 1024 * 1024);
        let mut group = c.benchmark_group(format!("envelope_{}k", size / 1024));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("sha256", |b| b.iter(|| Sha256::digest(black_box(&data))));
        let mut out = BytesMut::with_capacity(encoded.len());
        group.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                black_box(&env).encode(&mut out).unwrap();
            })
        });
        group.bench_function("decode", |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(black_box(&encoded[..]));
                decoder.decode(&mut buf).unwrap().unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, envelopes);
criterion_main!(benches);
