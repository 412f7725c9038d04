//! Secure-link handshakes and transport next to the primitives they are made of.
//!
//! - `handshake/ik` and `handshake/n_kk`: one iteration is one whole in-memory handshake, both
//!   sides (initiator built, frames handed to the responder, the ticket or peer question
//!   answered, `A` handed back, both links out), so iterations per second are handshakes per
//!   second on one core. `handshake/x25519` is one X25519 Diffie-Hellman (a variable-base
//!   Montgomery ladder, the same curve25519-dalek code snow uses) on the same core: the ceiling
//!   to read them against. Across both sides an IK handshake does 8 of them and N then KK 10;
//!   on top come fixed-base multiplications for the ephemeral and static public keys (a few
//!   times cheaper), Ed25519 to X25519 key conversions, BLAKE2b and ChaCha20-Poly1305, so
//!   `x25519 time x 8 (or 10) / handshake time` is the fraction of the DH ceiling reached.
//! - `link_64k`: 64 KiB of plaintext sealed (`seal`) or sealed and opened (`seal_open`) through
//!   [`Link`], next to ring's ChaCha20-Poly1305 doing the same messages (the link splits 64 KiB
//!   into frames of at most [`Link::max_plaintext`] bytes; the AEAD rows seal the same pieces
//!   with the same 12-byte Noise nonces). The ratio to read is `link / aead`.

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kith_crypto::Identity;
use kith_proto::secure::{
    Chad, Event, Frame, FrameDecoder, Initiator, Link, Responder, SecureConfig, TicketRequest,
};
use kith_proto::Limits;
use rand::rngs::StdRng;
use rand::SeedableRng;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

const CHUNK: usize = 64 * 1024;

fn drain_i(m: &mut Initiator) -> Vec<Frame> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

fn drain_r(m: &mut Responder) -> Vec<Frame> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

fn link_of(event: Option<Event>) -> Link {
    match event {
        Some(Event::Established(link)) => link,
        other => panic!("expected Established, got {other:?}"),
    }
}

struct Pair {
    alice: SecureConfig,
    bob: SecureConfig,
    bob_id: Identity,
    alice_id: Identity,
}

impl Pair {
    fn new() -> Pair {
        let alice_id = Identity::generate(&mut StdRng::seed_from_u64(1));
        let bob_id = Identity::generate(&mut StdRng::seed_from_u64(2));
        Pair {
            alice: SecureConfig::new(&alice_id, &Limits::default()),
            bob: SecureConfig::new(&bob_id, &Limits::default()),
            alice_id,
            bob_id,
        }
    }

    fn chad(id: &Identity) -> Chad {
        Chad {
            cuid: Some("user".into()),
            agent: id.agent_id().to_string(),
            host: Some("127.0.0.1".into()),
            port: Some(56_000),
        }
    }

    /// One IK handshake with a ticket the responder accepts; returns (initiator, responder).
    fn ik(&self, request: &TicketRequest, rng: &mut StdRng) -> (Link, Link) {
        let now = Instant::now();
        let mut init = Initiator::ik(&self.alice, self.bob_id.agent_id(), request, now, rng)
            .expect("initiator");
        let mut resp = Responder::new(&self.bob, now, rng);
        for f in drain_i(&mut init) {
            resp.handle_frame(now, f).expect("I");
        }
        match resp.poll_event() {
            Some(Event::CheckTicket { .. }) => resp.answer_ticket(now, true).expect("answer"),
            other => panic!("expected CheckTicket, got {other:?}"),
        }
        let r_link = link_of(resp.poll_event());
        for f in drain_r(&mut resp) {
            init.handle_frame(now, f).expect("A");
        }
        (link_of(init.poll_event()), r_link)
    }

    /// One N then KK handshake between known peers; returns (initiator, responder).
    fn known(&self, rng: &mut StdRng) -> (Link, Link) {
        let now = Instant::now();
        let mut init = Initiator::known(&self.alice, self.bob_id.agent_id(), b"", now, rng)
            .expect("initiator");
        let mut resp = Responder::new(&self.bob, now, rng);
        // N and K arrive together (one write); the question is answered after both.
        for f in drain_i(&mut init) {
            resp.handle_frame(now, f).expect("N/K");
        }
        match resp.poll_event() {
            Some(Event::LookupPeer { agent }) => resp
                .answer_peer(now, Some(agent.noise_public()))
                .expect("answer"),
            other => panic!("expected LookupPeer, got {other:?}"),
        }
        let r_link = link_of(resp.poll_event());
        for f in drain_r(&mut resp) {
            init.handle_frame(now, f).expect("A");
        }
        (link_of(init.poll_event()), r_link)
    }
}

fn handshakes(c: &mut Criterion) {
    let pair = Pair::new();
    let request = TicketRequest::new(
        Pair::chad(&pair.bob_id),
        Pair::chad(&pair.alice_id),
        "00112233445566778899aabbccddeeff",
    );
    let mut rng = StdRng::seed_from_u64(7);
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    group.bench_function("x25519", |b| {
        let secret = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
        let public =
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(&mut rng));
        b.iter(|| secret.diffie_hellman(black_box(&public)))
    });
    group.bench_function("ik", |b| b.iter(|| pair.ik(&request, &mut rng)));
    group.bench_function("n_kk", |b| b.iter(|| pair.known(&mut rng)));
    group.finish();
}

/// The Noise ChaChaPoly nonce: four zero bytes, then the 64-bit counter little-endian.
fn noise_nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn transport(c: &mut Criterion) {
    let pair = Pair::new();
    let mut rng = StdRng::seed_from_u64(8);
    let data: Vec<u8> = (0..CHUNK).map(|i| (i * 31) as u8).collect();
    let (mut tx, _) = pair.known(&mut rng);
    let piece = tx.max_plaintext();
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[0x42; 32]).unwrap());
    let decoder = FrameDecoder::new(&Limits::default());

    let mut group = c.benchmark_group("link_64k");
    group.throughput(Throughput::Bytes(CHUNK as u64));

    // Seal only: the same pieces, each copied into a wire buffer with room for its tag.
    let mut counter = 0u64;
    let mut buf = Vec::with_capacity(CHUNK + 64);
    group.bench_function("aead_seal", |b| {
        b.iter(|| {
            for chunk in data.chunks(piece) {
                buf.clear();
                buf.extend_from_slice(chunk);
                key.seal_in_place_append_tag(noise_nonce(counter), Aad::empty(), &mut buf)
                    .unwrap();
                counter += 1;
                black_box(&buf);
            }
        })
    });
    let mut out = BytesMut::with_capacity(2 * CHUNK);
    group.bench_function("link_seal", |b| {
        b.iter(|| {
            out.clear();
            black_box(tx.seal_into(black_box(&data), &mut out).unwrap());
        })
    });

    // Seal then open: through the wire encoding on the link side, in place for the AEAD.
    let mut counter = 0u64;
    group.bench_function("aead_seal_open", |b| {
        b.iter(|| {
            for chunk in data.chunks(piece) {
                buf.clear();
                buf.extend_from_slice(chunk);
                key.seal_in_place_append_tag(noise_nonce(counter), Aad::empty(), &mut buf)
                    .unwrap();
                let plain = key
                    .open_in_place(noise_nonce(counter), Aad::empty(), &mut buf)
                    .unwrap();
                black_box(plain);
                counter += 1;
            }
        })
    });
    // A fresh pair: the seal-only rows above advanced `tx` past anything a peer could open.
    let (mut tx, mut rx) = pair.known(&mut rng);
    let now = Instant::now();
    group.bench_function("link_seal_open", |b| {
        b.iter(|| {
            out.clear();
            tx.seal_into(black_box(&data), &mut out).unwrap();
            while let Some(frame) = decoder.decode(&mut out).unwrap() {
                black_box(rx.open(now, &frame).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, handshakes, transport);
criterion_main!(benches);
