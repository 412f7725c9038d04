use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use super::*;
use crate::identity::ContentKey;

/// test.jpg's content hash (from the seed).
const TEST_JPG: &str = "a5ab1c26e5253fb7316b51e7f40687183714e0d683034954e1e8fc67bca42753";

fn h32(hex_str: &str) -> [u8; 32] {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

fn key(seed: u64) -> ContentKey {
    ContentKey::generate(&mut StdRng::seed_from_u64(seed))
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

// ---------------------------------------------------------------- check values

#[test]
fn ciyam_compat_dummy_reproduces_seed() {
    let hash = h32(TEST_JPG);
    let owner = derive_owner_key_ciyam_compat(b"dummy", &hash);
    let sha_dummy: [u8; 32] = Sha256::digest(b"dummy").into();
    assert_eq!(owner.secret_bytes(), sha_dummy);
    assert_eq!(
        STANDARD.encode(owner.public_key()),
        "Aj4XW1jZbIENUUW8Q0dWWoEPoWliHngyNgvZDe+Eyu9o"
    );
    let push = PushRequest {
        owner_key: owner.public_key(),
        content_hash: hash,
    };
    assert_eq!(
        push.to_bytes(),
        b"md:raw\npk:Aj4XW1jZbIENUUW8Q0dWWoEPoWliHngyNgvZDe+Eyu9o\n\
          sh:pascJuUlP7cxa1Hn9AaHGDcU4NaDA0lU4ej8Z7ykJ1M="
    );
    assert_eq!(
        hex::encode(push.file_hash()),
        "52326e48bde0bf6bb78fe965728c8679a5594e42d9cb0f95b9df41b391903282"
    );
    let mut stored = vec![0x01];
    stored.extend_from_slice(&push.to_bytes());
    assert_eq!(push.file_hash(), <[u8; 32]>::from(Sha256::digest(&stored)));
    assert_eq!(PushRequest::parse(&push.to_bytes()).unwrap(), push);
}

#[test]
fn seed_pull_request_hash() {
    // The seed's third session: the pull request it `put`s hashes to 2698f28d...
    let text = b"md:raw\npk:Aj4XW1jZbIENUUW8Q0dWWoEPoWliHngyNgvZDe+Eyu9o\n\
                 sh:x+4s7dlT2vJFMgp9yfrEqdYGXIO42+WXQhgw4jf6vaY=\n\
                 th:pascJuUlP7cxa1Hn9AaHGDcU4NaDA0lU4ej8Z7ykJ1M=";
    let pull = PullRequest::parse(text).unwrap();
    assert_eq!(pull.owner_key, None);
    assert_eq!(
        pull.encrypted_hash,
        h32("c7ee2cedd953daf245320a7dc9fac4a9d6065c83b8dbe597421830e237fabda6")
    );
    assert_eq!(pull.original_hash, h32(TEST_JPG));
    assert_eq!(pull.to_bytes(), text);
    assert_eq!(
        hex::encode(pull.file_hash()),
        "2698f28dd389bb6e2d13f8daaedcc625b642359b7055654022dd2553f83455fc"
    );
}

#[test]
fn ciyam_general_derivation() {
    let hash = h32(TEST_JPG);
    let general = derive_owner_key_ciyam_general(b"dummy", &hash);
    let b64 = STANDARD.encode(general.public_key());
    assert!(b64.starts_with("AoJATtJ4"), "{b64}");
    assert_ne!(
        general.public_key(),
        derive_owner_key_ciyam_compat(b"dummy", &hash).public_key()
    );
    // Spelled out: "0" + sha256_hex(hash_hex || password)[1..].
    let digest = hex::encode(Sha256::digest(format!("{TEST_JPG}secret").as_bytes()));
    let expected = format!("0{}", &digest[1..]);
    let k = derive_owner_key_ciyam_compat(b"secret", &hash);
    assert_eq!(hex::encode(k.secret_bytes()), expected);
    assert_eq!(
        k.public_key(),
        derive_owner_key_ciyam_general(b"secret", &hash).public_key()
    );
}

#[test]
fn argon2_derivation() {
    let hash = h32(TEST_JPG);
    let p = Argon2Params::INSECURE_FOR_TESTS;
    let a = derive_owner_key_argon2(b"dummy", &hash, &p).unwrap();
    assert_eq!(
        a.public_key(),
        derive_owner_key_argon2(b"dummy", &hash, &p)
            .unwrap()
            .public_key()
    );
    assert_ne!(
        a.public_key(),
        derive_owner_key_argon2(b"dummy2", &hash, &p)
            .unwrap()
            .public_key()
    );
    let mut other = hash;
    other[31] ^= 1;
    assert_ne!(
        a.public_key(),
        derive_owner_key_argon2(b"dummy", &other, &p)
            .unwrap()
            .public_key()
    );
    assert_ne!(
        a.public_key(),
        derive_owner_key_ciyam_compat(b"dummy", &hash).public_key()
    );
    // The documented construction, recomputed with argon2 directly.
    let salt: [u8; 32] = Sha256::new()
        .chain_update(b"kith custody owner key v1")
        .chain_update(hash)
        .finalize()
        .into();
    let mut out = [0u8; 32];
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(8, 1, 1, Some(32)).unwrap(),
    )
    .hash_password_into(b"dummy", &salt, &mut out)
    .unwrap();
    assert_eq!(a.secret_bytes(), out);
    // Different cost, different key.
    let p2 = Argon2Params {
        memory_kib: 16,
        ..p
    };
    assert_ne!(
        a.public_key(),
        derive_owner_key_argon2(b"dummy", &hash, &p2)
            .unwrap()
            .public_key()
    );
}

#[test]
fn argon2_default_params() {
    assert_eq!(Argon2Params::default(), Argon2Params::DEFAULT);
    assert_eq!(Argon2Params::DEFAULT.memory_kib, 65536);
    let hash = h32(TEST_JPG);
    let k = derive_owner_key_argon2(b"correct horse", &hash, &Argon2Params::default()).unwrap();
    assert_ne!(
        k.public_key(),
        derive_owner_key_argon2(b"correct horse", &hash, &Argon2Params::INSECURE_FOR_TESTS)
            .unwrap()
            .public_key()
    );
}

#[test]
fn argon2_bad_params() {
    let hash = [7u8; 32];
    for p in [
        Argon2Params {
            memory_kib: 7,
            iterations: 1,
            parallelism: 1,
        },
        Argon2Params {
            memory_kib: 64,
            iterations: 0,
            parallelism: 1,
        },
        Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 0,
        },
    ] {
        assert!(matches!(
            derive_owner_key_argon2(b"x", &hash, &p),
            Err(CustodyError::KdfParams(_))
        ));
    }
}

// ---------------------------------------------------------------- requests

fn sample_pull(owner: bool) -> PullRequest {
    PullRequest {
        peer_key: key(1).public_key(),
        owner_key: owner.then(|| key(2).public_key()),
        encrypted_hash: [0xab; 32],
        original_hash: [0xcd; 32],
    }
}

#[test]
fn pull_round_trip_with_owner_key() {
    let pull = sample_pull(true);
    let bytes = pull.to_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let pk_line = text.lines().nth(1).unwrap();
    assert_eq!(pk_line.len(), 3 + 44 + 1 + 44);
    assert_eq!(pk_line.as_bytes()[3 + 44], b'-');
    assert_eq!(PullRequest::parse(&bytes).unwrap(), pull);
    assert_eq!(
        PullRequest::parse(&sample_pull(false).to_bytes()).unwrap(),
        sample_pull(false)
    );
}

fn replace(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .replacen(from, to, 1)
        .into_bytes()
}

#[test]
fn request_parse_errors() {
    let push = PushRequest {
        owner_key: key(3).public_key(),
        content_hash: [9; 32],
    }
    .to_bytes();
    let pull = sample_pull(true).to_bytes();
    let pk = STANDARD.encode(key(3).public_key());
    let sh = STANDARD.encode([9u8; 32]);

    let mut trailing = push.clone();
    trailing.push(b'\n');
    assert_eq!(
        PushRequest::parse(&trailing).unwrap_err(),
        CustodyError::RequestLineCount {
            kind: "push",
            expected: 3,
            got: 4
        }
    );
    assert_eq!(
        PushRequest::parse(&pull).unwrap_err(),
        CustodyError::RequestLineCount {
            kind: "push",
            expected: 3,
            got: 4
        }
    );
    assert_eq!(
        PullRequest::parse(&push).unwrap_err(),
        CustodyError::RequestLineCount {
            kind: "pull",
            expected: 4,
            got: 3
        }
    );
    assert_eq!(
        PushRequest::parse(b"").unwrap_err(),
        CustodyError::RequestLineCount {
            kind: "push",
            expected: 3,
            got: 1
        }
    );
    assert_eq!(
        PushRequest::parse(&replace(&push, "md:raw", "md:RAW")).unwrap_err(),
        CustodyError::RequestPrefix {
            kind: "push",
            line: 1,
            expected: "md:raw"
        }
    );
    assert_eq!(
        PushRequest::parse(&replace(&push, "md:raw\n", "md:raw\r\n")).unwrap_err(),
        CustodyError::RequestPrefix {
            kind: "push",
            line: 1,
            expected: "md:raw"
        }
    );
    // Lines out of order.
    let swapped = format!("md:raw\nsh:{sh}\npk:{pk}").into_bytes();
    assert_eq!(
        PushRequest::parse(&swapped).unwrap_err(),
        CustodyError::RequestPrefix {
            kind: "push",
            line: 2,
            expected: "pk:"
        }
    );
    assert_eq!(
        PushRequest::parse(&replace(&push, "\nsh:", "\nsh: ")).unwrap_err(),
        CustodyError::RequestBase64 { field: "sh" }
    );
    assert_eq!(
        PullRequest::parse(&replace(&pull, "\nth:", "\nTH:")).unwrap_err(),
        CustodyError::RequestPrefix {
            kind: "pull",
            line: 4,
            expected: "th:"
        }
    );
    // Missing padding, and CR at the end of a value.
    let unpadded = replace(&push, &sh, sh.trim_end_matches('='));
    assert_eq!(
        PushRequest::parse(&unpadded).unwrap_err(),
        CustodyError::RequestBase64 { field: "sh" }
    );
    let cr = replace(&push, &format!("{pk}\n"), &format!("{pk}\r\n"));
    assert_eq!(
        PushRequest::parse(&cr).unwrap_err(),
        CustodyError::RequestBase64 { field: "pk" }
    );
    // Non-canonical trailing bits: the last character before '=' of a 32-byte value carries
    // two unused bits.
    let mut nc = sh.clone().into_bytes();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let i = nc.len() - 2;
    let idx = alphabet.iter().position(|&c| c == nc[i]).unwrap();
    nc[i] = alphabet[idx ^ 1];
    let nc = replace(&push, &sh, std::str::from_utf8(&nc).unwrap());
    assert_eq!(
        PushRequest::parse(&nc).unwrap_err(),
        CustodyError::RequestBase64 { field: "sh" }
    );
    // Wrong lengths.
    let short = replace(&push, &sh, &STANDARD.encode([9u8; 31]));
    assert_eq!(
        PushRequest::parse(&short).unwrap_err(),
        CustodyError::RequestFieldLength {
            field: "sh",
            expected: 32,
            got: 31
        }
    );
    let long_pk = replace(&push, &pk, &STANDARD.encode([2u8; 34]));
    assert_eq!(
        PushRequest::parse(&long_pk).unwrap_err(),
        CustodyError::RequestFieldLength {
            field: "pk",
            expected: 33,
            got: 34
        }
    );
    // Not curve points: bad prefix; x with no point (x = 5 has none on secp256k1).
    let mut bad = [0u8; 33];
    bad[0] = 0x04;
    bad[32] = 1;
    let bad_prefix = replace(&push, &pk, &STANDARD.encode(bad));
    assert_eq!(
        PushRequest::parse(&bad_prefix).unwrap_err(),
        CustodyError::InvalidPublicKey { field: "pk" }
    );
    let mut off_curve = [0u8; 33];
    off_curve[0] = 0x02;
    off_curve[32] = 5;
    let off = replace(&push, &pk, &STANDARD.encode(off_curve));
    assert_eq!(
        PushRequest::parse(&off).unwrap_err(),
        CustodyError::InvalidPublicKey { field: "pk" }
    );
    // Pull pk field: empty owner part, second '-', invalid owner key.
    let peer = STANDARD.encode(sample_pull(true).peer_key);
    let owner = STANDARD.encode(sample_pull(true).owner_key.unwrap());
    let pk_field = format!("{peer}-{owner}");
    assert_eq!(
        PullRequest::parse(&replace(&pull, &pk_field, &format!("{peer}-"))).unwrap_err(),
        CustodyError::RequestFieldLength {
            field: "pk owner",
            expected: 33,
            got: 0
        }
    );
    assert_eq!(
        PullRequest::parse(&replace(&pull, &pk_field, &format!("{pk_field}-{owner}"))).unwrap_err(),
        CustodyError::RequestBase64 { field: "pk owner" }
    );
    assert_eq!(
        PullRequest::parse(&replace(
            &pull,
            &pk_field,
            &format!("{peer}-{}", STANDARD.encode(off_curve))
        ))
        .unwrap_err(),
        CustodyError::InvalidPublicKey { field: "pk owner" }
    );
    assert_eq!(
        PullRequest::parse(&replace(&pull, &pk_field, &format!("-{owner}"))).unwrap_err(),
        CustodyError::RequestFieldLength {
            field: "pk peer",
            expected: 33,
            got: 0
        }
    );
}

// ---------------------------------------------------------------- encryption

#[test]
fn round_trips_one_shot() {
    let owner =
        derive_owner_key_argon2(b"pw", &[1; 32], &Argon2Params::INSECURE_FOR_TESTS).unwrap();
    for len in [
        0,
        1,
        100,
        DEFAULT_CHUNK_LEN - 1,
        DEFAULT_CHUNK_LEN,
        DEFAULT_CHUNK_LEN + 1,
        3 * DEFAULT_CHUNK_LEN + 17,
    ] {
        let data = content(len);
        let hash = blob_hash(&data);
        // The custodian sees only the owner's public key.
        let copy = encrypt(&owner.public_key(), &hash, &data, &mut rng(len as u64)).unwrap();
        let frames = len.div_ceil(DEFAULT_CHUNK_LEN).max(1);
        assert_eq!(
            copy.len(),
            HEADER_LEN + len + frames * (FRAME_HEADER_LEN + TAG_LEN)
        );
        assert_eq!(&copy[..3], b"KC1");
        assert_eq!(decrypt(&owner, &hash, &copy).unwrap(), data);
        assert_eq!(decrypt_blob(&owner, &hash, &copy).unwrap(), data);
        // Fresh key pair and nonce every time.
        let again = encrypt(
            &owner.public_key(),
            &hash,
            &data,
            &mut rng(1000 + len as u64),
        )
        .unwrap();
        assert_ne!(copy[3..36], again[3..36]);
        assert_ne!(copy[36..60], again[36..60]);
    }
}

#[test]
fn empty_content_is_one_empty_last_frame() {
    let owner = key(10);
    let copy = encrypt(&owner.public_key(), &[0; 32], &[], &mut rng(1)).unwrap();
    assert_eq!(copy.len(), HEADER_LEN + FRAME_HEADER_LEN + TAG_LEN);
    assert_eq!(copy[HEADER_LEN], 0x01);
    assert_eq!(&copy[HEADER_LEN + 1..HEADER_LEN + 5], &[0, 0, 0, 16]);
    assert_eq!(decrypt(&owner, &[0; 32], &copy).unwrap(), Vec::<u8>::new());
}

/// Encrypts `data` with the streaming API in chunks of the given sizes (cycled).
fn stream_copy(
    owner: &ContentKey,
    hash: &[u8; 32],
    data: &[u8],
    sizes: &[usize],
    seed: u64,
) -> Vec<u8> {
    let (header, mut enc) =
        CustodyEncryptor::new(&owner.public_key(), hash, &mut rng(seed)).unwrap();
    assert_eq!(enc.header(), header);
    let mut out = header.to_bytes().to_vec();
    let mut rest = data;
    let mut i = 0;
    loop {
        let n = sizes[i % sizes.len()].min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        out.extend_from_slice(&enc.encrypt_chunk(chunk, rest.is_empty()).unwrap());
        i += 1;
        if rest.is_empty() {
            break;
        }
    }
    assert!(enc.is_finished());
    assert_eq!(enc.chunks(), i as u64);
    out
}

/// The frames of a copy (after its header).
fn frames(copy: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = &copy[HEADER_LEN..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        out.push(rest[..5 + len].to_vec());
        rest = &rest[5 + len..];
    }
    out
}

#[test]
fn streaming_round_trip_item_by_item() {
    let owner = key(11);
    let data = content(50_000);
    let hash = blob_hash(&data);
    let copy = stream_copy(&owner, &hash, &data, &[1000, 7, 0, 20_000], 5);
    let header = CustodyHeader::parse(&copy).unwrap();
    assert_eq!(CustodyHeader::parse(&header.to_bytes()).unwrap(), header);

    // Frame by frame.
    let mut dec = CustodyDecryptor::new(&owner, &hash, &header).unwrap();
    let mut plain = Vec::new();
    let all = frames(&copy);
    for (i, frame) in all.iter().enumerate() {
        let chunk = dec.decrypt_frame(frame).unwrap();
        assert_eq!(chunk.last, i + 1 == all.len());
        plain.extend_from_slice(&chunk.data);
    }
    dec.finish().unwrap();
    assert_eq!(dec.chunks(), all.len() as u64);
    assert_eq!(plain, data);

    // Split anywhere, down to single bytes.
    for piece in [1usize, 2, 5, 6, 4096, 1 << 20] {
        let mut dec = CustodyDecryptor::new(&owner, &hash, &header).unwrap();
        let mut plain = Vec::new();
        for part in copy[HEADER_LEN..].chunks(piece) {
            plain.extend_from_slice(&dec.update(part).unwrap());
        }
        dec.finish().unwrap();
        assert!(dec.is_finished());
        assert_eq!(plain, data, "piece {piece}");
    }
}

#[test]
fn maximum_chunk() {
    let owner = key(12);
    let (_, mut enc) = CustodyEncryptor::new(&owner.public_key(), &[0; 32], &mut rng(1)).unwrap();
    assert_eq!(
        enc.encrypt_chunk(&vec![0; MAX_CHUNK_LEN + 1], false)
            .unwrap_err(),
        CustodyError::ChunkTooLong {
            len: MAX_CHUNK_LEN + 1,
            max: MAX_CHUNK_LEN
        }
    );
    let data = content(MAX_CHUNK_LEN);
    let copy = stream_copy(&owner, &[0; 32], &data, &[MAX_CHUNK_LEN], 2);
    assert_eq!(decrypt(&owner, &[0; 32], &copy).unwrap(), data);
}

#[test]
fn no_chunk_after_last() {
    let (_, mut enc) = CustodyEncryptor::new(&key(13).public_key(), &[0; 32], &mut rng(1)).unwrap();
    enc.encrypt_chunk(b"a", true).unwrap();
    assert_eq!(
        enc.encrypt_chunk(b"b", false).unwrap_err(),
        CustodyError::StreamFinished
    );
}

#[test]
fn invalid_owner_key_rejected() {
    let mut bad = [0u8; 33];
    bad[0] = 2;
    bad[32] = 5;
    assert_eq!(
        CustodyEncryptor::new(&bad, &[0; 32], &mut rng(1)).unwrap_err(),
        CustodyError::InvalidPublicKey {
            field: "owner public key"
        }
    );
}

fn multi_chunk_copy(owner: &ContentKey) -> (Vec<u8>, Vec<u8>, [u8; 32]) {
    let data = content(3000);
    let hash = blob_hash(&data);
    let copy = stream_copy(owner, &hash, &data, &[1000], 7);
    (copy, data, hash)
}

#[test]
fn wrong_password_or_original_hash() {
    let hash = h32(TEST_JPG);
    let p = Argon2Params::INSECURE_FOR_TESTS;
    let owner = derive_owner_key_argon2(b"right", &hash, &p).unwrap();
    let copy = encrypt(&owner.public_key(), &hash, b"secret file", &mut rng(1)).unwrap();
    let wrong = derive_owner_key_argon2(b"wrong", &hash, &p).unwrap();
    assert_eq!(
        decrypt(&wrong, &hash, &copy).unwrap_err(),
        CustodyError::Authentication { chunk: 0 }
    );
    let mut other = hash;
    other[0] ^= 1;
    assert_eq!(
        decrypt(&owner, &other, &copy).unwrap_err(),
        CustodyError::Authentication { chunk: 0 }
    );
    // Decrypts, but the content is not the blob the hash names.
    assert_eq!(
        decrypt_blob(&owner, &hash, &copy).unwrap_err(),
        CustodyError::OriginalHashMismatch
    );
    assert_eq!(decrypt(&owner, &hash, &copy).unwrap(), b"secret file");
}

#[test]
fn tampering_any_byte_fails() {
    let owner = key(14);
    let (copy, _, hash) = multi_chunk_copy(&owner);
    // Every byte of a copy with three chunks, flipped one at a time (sampled in the bodies).
    for i in (0..copy.len()).filter(|i| *i < 80 || i % 97 == 0 || *i >= copy.len() - 40) {
        for bit in [0x01u8, 0x80] {
            let mut bad = copy.clone();
            bad[i] ^= bit;
            assert!(
                decrypt(&owner, &hash, &bad).is_err(),
                "byte {i} bit {bit:#x}"
            );
        }
    }
    let mut bad = copy.clone();
    bad[0] = b'X';
    assert_eq!(
        decrypt(&owner, &hash, &bad).unwrap_err(),
        CustodyError::BadMagic
    );
    let mut bad = copy.clone();
    bad[HEADER_LEN] = 0x02;
    assert_eq!(
        decrypt(&owner, &hash, &bad).unwrap_err(),
        CustodyError::BadFrameFlag { chunk: 0, flag: 2 }
    );
    // A "more" frame marked "last" (flag is authenticated).
    let mut bad = copy.clone();
    bad[HEADER_LEN] = 0x01;
    assert_eq!(
        decrypt(&owner, &hash, &bad).unwrap_err(),
        CustodyError::Authentication { chunk: 0 }
    );
    let mut bad = copy.clone();
    bad[HEADER_LEN + 1] = 0xff;
    assert_eq!(
        decrypt(&owner, &hash, &bad).unwrap_err(),
        CustodyError::BadFrameLength {
            chunk: 0,
            len: u32::from_be_bytes([0xff, 0, 0x03, 0xf8])
        }
    );
    let mut bad = copy.clone();
    bad[HEADER_LEN + 1..HEADER_LEN + 5].copy_from_slice(&15u32.to_be_bytes());
    assert_eq!(
        decrypt(&owner, &hash, &bad).unwrap_err(),
        CustodyError::BadFrameLength { chunk: 0, len: 15 }
    );
    let mut bad = copy.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        decrypt(&owner, &hash, &bad).unwrap_err(),
        CustodyError::Authentication { chunk: 2 }
    );
}

#[test]
fn truncation_reordering_and_splicing_fail() {
    let owner = key(15);
    let (copy, _, hash) = multi_chunk_copy(&owner);
    let f = frames(&copy);
    assert_eq!(f.len(), 3);
    let header = copy[..HEADER_LEN].to_vec();
    let join = |parts: &[&Vec<u8>]| {
        let mut out = header.clone();
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    };
    // Last frame dropped; cut inside a frame; header only; cut inside the header.
    assert_eq!(
        decrypt(&owner, &hash, &join(&[&f[0], &f[1]])).unwrap_err(),
        CustodyError::Truncated
    );
    assert_eq!(
        decrypt(&owner, &hash, &copy[..copy.len() - 1]).unwrap_err(),
        CustodyError::Truncated
    );
    assert_eq!(
        decrypt(&owner, &hash, &header).unwrap_err(),
        CustodyError::Truncated
    );
    assert_eq!(
        decrypt(&owner, &hash, &copy[..HEADER_LEN - 1]).unwrap_err(),
        CustodyError::HeaderTruncated {
            expected: HEADER_LEN,
            got: HEADER_LEN - 1
        }
    );
    // Reordered, dropped, duplicated.
    assert_eq!(
        decrypt(&owner, &hash, &join(&[&f[1], &f[0], &f[2]])).unwrap_err(),
        CustodyError::Authentication { chunk: 0 }
    );
    assert_eq!(
        decrypt(&owner, &hash, &join(&[&f[0], &f[2]])).unwrap_err(),
        CustodyError::Authentication { chunk: 1 }
    );
    assert_eq!(
        decrypt(&owner, &hash, &join(&[&f[0], &f[0], &f[1], &f[2]])).unwrap_err(),
        CustodyError::Authentication { chunk: 1 }
    );
    // Trailing data after the last frame, and a whole extra frame.
    let mut extra = copy.clone();
    extra.push(0);
    assert_eq!(
        decrypt(&owner, &hash, &extra).unwrap_err(),
        CustodyError::TrailingData
    );
    assert_eq!(
        decrypt(&owner, &hash, &join(&[&f[0], &f[1], &f[2], &f[2]])).unwrap_err(),
        CustodyError::TrailingData
    );
    // A frame from another copy for the same owner and content.
    let other = stream_copy(&owner, &hash, &content(3000), &[1000], 8);
    let g = frames(&other);
    assert_eq!(
        decrypt(&owner, &hash, &join(&[&f[0], &g[1], &f[2]])).unwrap_err(),
        CustodyError::Authentication { chunk: 1 }
    );
    // Another copy's header on these frames.
    let mut swapped = other[..HEADER_LEN].to_vec();
    swapped.extend_from_slice(&copy[HEADER_LEN..]);
    assert_eq!(
        decrypt(&owner, &hash, &swapped).unwrap_err(),
        CustodyError::Authentication { chunk: 0 }
    );
}

#[test]
fn decryptor_state_errors() {
    let owner = key(16);
    let (copy, _, hash) = multi_chunk_copy(&owner);
    let header = CustodyHeader::parse(&copy).unwrap();
    let f = frames(&copy);

    let mut dec = CustodyDecryptor::new(&owner, &hash, &header).unwrap();
    assert_eq!(dec.update(&f[0][..3]).unwrap(), Vec::<u8>::new());
    assert_eq!(
        dec.decrypt_frame(&f[1]).unwrap_err(),
        CustodyError::PartialFrameBuffered
    );
    // Misuse does not end the stream: the buffered frame can still be completed.
    assert_eq!(dec.finish().unwrap_err(), CustodyError::Truncated);
    assert_eq!(dec.update(&f[0][3..]).unwrap().len(), 1000);

    let mut dec = CustodyDecryptor::new(&owner, &hash, &header).unwrap();
    let mut two = f[0].clone();
    two.extend_from_slice(&f[1]);
    assert_eq!(
        dec.decrypt_frame(&two).unwrap_err(),
        CustodyError::FrameSize {
            chunk: 0,
            declared: f[0].len(),
            got: two.len()
        }
    );
    assert_eq!(
        dec.decrypt_frame(&f[0]).unwrap_err(),
        CustodyError::StreamFailed
    );

    let mut dec = CustodyDecryptor::new(&owner, &hash, &header).unwrap();
    assert_eq!(
        dec.decrypt_frame(&f[0][..4]).unwrap_err(),
        CustodyError::FrameSize {
            chunk: 0,
            declared: FRAME_HEADER_LEN,
            got: 4
        }
    );

    let mut dec = CustodyDecryptor::new(&owner, &hash, &header).unwrap();
    assert!(dec.decrypt_frame(&f[1]).is_err());
    assert_eq!(dec.update(&f[0]).unwrap_err(), CustodyError::StreamFailed);

    let mut dec = CustodyDecryptor::new(&owner, &hash, &header).unwrap();
    for frame in &f {
        dec.decrypt_frame(frame).unwrap();
    }
    assert_eq!(
        dec.decrypt_frame(&f[2]).unwrap_err(),
        CustodyError::TrailingData
    );
}

#[test]
fn copy_hashes() {
    let owner = key(17);
    let copy = encrypt(&owner.public_key(), &[3; 32], b"abc", &mut rng(1)).unwrap();
    // The encrypted flag is left out of the hashed type byte, as for every CIYAM item.
    let mut hashed = vec![0x01];
    hashed.extend_from_slice(&copy);
    assert_eq!(
        encrypted_copy_hash(&copy),
        <[u8; 32]>::from(Sha256::digest(&hashed))
    );
    assert_eq!(
        hex::encode(blob_hash(b"hello")),
        "cceeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef"
    );
    // The pull request the custodian answers with.
    let header = CustodyHeader::parse(&copy).unwrap();
    let pull = PullRequest {
        peer_key: header.custodian_key(),
        owner_key: Some(owner.public_key()),
        encrypted_hash: encrypted_copy_hash(&copy),
        original_hash: [3; 32],
    };
    assert_eq!(PullRequest::parse(&pull.to_bytes()).unwrap(), pull);
}

#[test]
fn header_errors() {
    let owner = key(18);
    let copy = encrypt(&owner.public_key(), &[0; 32], b"x", &mut rng(1)).unwrap();
    let mut bad = copy.clone();
    bad[3] = 0x04;
    assert_eq!(
        CustodyHeader::parse(&bad).unwrap_err(),
        CustodyError::InvalidPublicKey {
            field: "custodian public key"
        }
    );
    assert_eq!(
        CustodyHeader::parse(b"KC2").unwrap_err(),
        CustodyError::HeaderTruncated {
            expected: HEADER_LEN,
            got: 3
        }
    );
    let mut bad = copy;
    bad[2] = b'2';
    assert_eq!(
        CustodyHeader::parse(&bad).unwrap_err(),
        CustodyError::BadMagic
    );
}

#[test]
fn debug_hides_secrets() {
    let owner = key(19);
    let (header, enc) = CustodyEncryptor::new(&owner.public_key(), &[0; 32], &mut rng(1)).unwrap();
    let dec = CustodyDecryptor::new(&owner, &[0; 32], &header).unwrap();
    let key_hex = hex::encode(enc.key_for_tests());
    assert_eq!(enc.key_for_tests(), dec.key_for_tests());
    let dbg = format!("{enc:?} {dec:?}");
    assert!(!dbg.contains(&key_hex));
    assert!(!dbg.contains(&format!("{:?}", enc.key_for_tests())));
    assert!(dbg.contains("redacted"));
    let chunk = DecryptedChunk {
        data: b"plaintext".to_vec(),
        last: true,
    };
    assert!(!format!("{chunk:?}").contains("112, 108"));
}

#[test]
fn custodian_and_owner_agree_on_the_key() {
    // ECDH(fresh secret, owner public) = ECDH(owner secret, fresh public), via the KDF.
    for seed in 0..4 {
        let owner = key(100 + seed);
        let (header, enc) =
            CustodyEncryptor::new(&owner.public_key(), &[seed as u8; 32], &mut rng(seed)).unwrap();
        let dec = CustodyDecryptor::new(&owner, &[seed as u8; 32], &header).unwrap();
        assert_eq!(enc.key_for_tests(), dec.key_for_tests());
        let other = CustodyDecryptor::new(&key(200 + seed), &[seed as u8; 32], &header).unwrap();
        assert_ne!(enc.key_for_tests(), other.key_for_tests());
    }
}

// ---------------------------------------------------------------- properties

fn request_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(seed, a, b, pull, with_owner)| {
            if pull {
                PullRequest {
                    peer_key: key(seed).public_key(),
                    owner_key: with_owner.then(|| key(seed ^ 1).public_key()),
                    encrypted_hash: a,
                    original_hash: b,
                }
                .to_bytes()
            } else {
                PushRequest {
                    owner_key: key(seed).public_key(),
                    content_hash: a,
                }
                .to_bytes()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = PushRequest::parse(&bytes);
        let _ = PullRequest::parse(&bytes);
        let _ = CustodyHeader::parse(&bytes);
    }

    #[test]
    fn requests_round_trip_and_mutations_never_panic(
        bytes in request_strategy(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let push = PushRequest::parse(&bytes);
        let pull = PullRequest::parse(&bytes);
        prop_assert!(push.is_ok() != pull.is_ok());
        let is_push = push.is_ok();
        if let Ok(p) = push { prop_assert_eq!(p.to_bytes(), bytes.clone()); }
        if let Ok(p) = pull { prop_assert_eq!(p.to_bytes(), bytes.clone()); }
        let mut m = bytes.clone();
        let i = pos.index(m.len());
        m[i] = byte;
        // Whatever parses must print back to the same bytes (the format is canonical).
        if let Ok(p) = PushRequest::parse(&m) { prop_assert_eq!(p.to_bytes(), m.clone()); }
        if let Ok(p) = PullRequest::parse(&m) { prop_assert_eq!(p.to_bytes(), m.clone()); }
        let short = &bytes[..cut.index(bytes.len())];
        // A proper prefix never parses as the same kind. (A pull request cut just before its
        // `\nth:` line is a well-formed push request: the formats nest.)
        if is_push {
            prop_assert!(PushRequest::parse(short).is_err());
        } else {
            prop_assert!(PullRequest::parse(short).is_err());
        }
    }

    #[test]
    fn decrypt_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        as_frames in any::<bool>(),
    ) {
        let owner = key(1);
        let _ = decrypt(&owner, &[0; 32], &bytes);
        // Past a valid header, arbitrary frame bytes.
        let mut copy = encrypt(&owner.public_key(), &[0; 32], b"", &mut rng(1)).unwrap();
        copy.truncate(HEADER_LEN);
        let header = CustodyHeader::parse(&copy).unwrap();
        let mut dec = CustodyDecryptor::new(&owner, &[0; 32], &header).unwrap();
        if as_frames {
            prop_assert!(dec.decrypt_frame(&bytes).is_err());
        } else {
            let _ = dec.update(&bytes);
            prop_assert!(dec.finish().is_err());
        }
    }

    #[test]
    fn mutated_copies_never_decrypt(
        len in 0usize..3000,
        chunk in 1usize..1500,
        pos in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let owner = key(2);
        let data = content(len);
        let copy = stream_copy(&owner, &[5; 32], &data, &[chunk], 3);
        prop_assert_eq!(decrypt(&owner, &[5; 32], &copy).unwrap(), data);
        let mut bad = copy.clone();
        let i = pos.index(bad.len());
        bad[i] ^= flip;
        prop_assert!(decrypt(&owner, &[5; 32], &bad).is_err());
    }

    #[test]
    fn any_split_decrypts(
        len in 0usize..5000,
        sizes in proptest::collection::vec(0usize..2000, 1..5),
        cuts in proptest::collection::vec(1usize..700, 1..20),
    ) {
        let sizes: Vec<usize> = sizes.into_iter().map(|s| s.max(1)).collect();
        let owner = key(3);
        let data = content(len);
        let copy = stream_copy(&owner, &[6; 32], &data, &sizes, 4);
        let header = CustodyHeader::parse(&copy).unwrap();
        let mut dec = CustodyDecryptor::new(&owner, &[6; 32], &header).unwrap();
        let mut rest = &copy[HEADER_LEN..];
        let mut plain = Vec::new();
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            plain.extend_from_slice(&dec.update(&rest[..n]).unwrap());
            rest = &rest[n..];
            i += 1;
        }
        dec.finish().unwrap();
        prop_assert_eq!(plain, data);
    }
}
