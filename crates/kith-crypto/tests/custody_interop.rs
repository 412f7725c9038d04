//! Interoperability of the encrypted-custody formats (`kith_crypto::custody`) with an
//! independent Python implementation written from the documented format (coincurve for
//! secp256k1; cryptography for ECDH, HKDF-SHA256, ChaCha20-Poly1305 and Argon2id).
//!
//! Runs only when `KITH_TEST_PYTHON=1` (Python from `KITH_PYTHON`, default `python3`, with
//! `pip install coincurve cryptography`); otherwise it is listed as ignored, with the reason.

use std::collections::HashMap;
use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use kith_crypto::custody::{self, Argon2Params, CustodyEncryptor, PullRequest, PushRequest};
use kith_crypto::ContentKey;
use rand::rngs::StdRng;
use rand::SeedableRng;

type TestResult = Result<(), Box<dyn Error>>;

const TEST_JPG: &str = "a5ab1c26e5253fb7316b51e7f40687183714e0d683034954e1e8fc67bca42753";

fn read_kv(path: &Path) -> Result<HashMap<String, Vec<u8>>, Box<dyn Error>> {
    let mut out = HashMap::new();
    for line in std::fs::read_to_string(path)?.lines() {
        if let Some((name, value)) = line.trim().split_once(' ') {
            out.insert(name.to_string(), hex::decode(value)?);
        }
    }
    Ok(out)
}

#[test]
#[cfg_attr(
    not(kith_test_python),
    ignore = "needs Python 3 with coincurve and cryptography: set KITH_TEST_PYTHON=1 (.ci/run does)"
)]
fn custody_python_interop() -> TestResult {
    let python = std::env::var("KITH_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/custody_interop.py");
    let mut rng = StdRng::seed_from_u64(0x6b757374);

    // A multi-chunk copy made with the streaming API, chunks of uneven sizes.
    let owner = ContentKey::generate(&mut rng);
    let plaintext: Vec<u8> = (0..10_000u32).map(|i| (i * 13 + i / 7) as u8).collect();
    let original_hash = custody::blob_hash(&plaintext);
    let (header, mut enc) = CustodyEncryptor::new(&owner.public_key(), &original_hash, &mut rng)?;
    let mut copy = header.to_bytes().to_vec();
    let pieces = [
        &plaintext[..1],
        &plaintext[1..4000],
        &plaintext[4000..4000],
        &plaintext[4000..],
    ];
    for (i, piece) in pieces.iter().enumerate() {
        copy.extend_from_slice(&enc.encrypt_chunk(piece, i + 1 == pieces.len())?);
    }
    assert_eq!(
        custody::decrypt_blob(&owner, &original_hash, &copy)?,
        plaintext
    );

    let test_jpg: [u8; 32] = hex::decode(TEST_JPG)?.as_slice().try_into()?;
    let dummy = custody::derive_owner_key_ciyam_compat(b"dummy", &test_jpg);
    let push = PushRequest {
        owner_key: dummy.public_key(),
        content_hash: test_jpg,
    };
    let pull = PullRequest {
        peer_key: custody::derive_owner_key_ciyam_general(b"dummy", &test_jpg).public_key(),
        owner_key: Some(dummy.public_key()),
        encrypted_hash: [0; 32],
        original_hash: test_jpg,
    };
    let argon = custody::derive_owner_key_argon2(
        b"argon password",
        &test_jpg,
        &Argon2Params::INSECURE_FOR_TESTS,
    )?;

    let kith_owner = ContentKey::generate(&mut rng);
    let py_plaintext: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
    let py_original_hash = custody::blob_hash(&py_plaintext);

    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    let mut text = String::new();
    for (name, value) in [
        ("owner_secret", &owner.secret_bytes()[..]),
        ("original_hash", &original_hash),
        ("copy", &copy),
        ("plaintext", &plaintext),
        ("push", &push.to_bytes()),
        ("push_hash", &push.file_hash()),
        ("pull", &pull.to_bytes()),
        ("test_jpg_hash", &test_jpg),
        ("argon_password", b"argon password"),
        ("argon_secret", &argon.secret_bytes()),
        ("kith_owner_pub", &kith_owner.public_key()),
        ("py_plaintext", &py_plaintext),
        ("py_original_hash", &py_original_hash),
    ] {
        writeln!(text, "{name} {}", hex::encode(value))?;
    }
    std::fs::write(&input, text)?;

    let run = Command::new(&python)
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    if !run.status.success() {
        return Err(format!(
            "custody_interop.py failed ({}):\n{stdout}\n{stderr}",
            run.status
        )
        .into());
    }
    eprint!("{stdout}");

    // Python → kith: a copy Python encrypted for kith_owner, three chunks.
    let kv = read_kv(&output)?;
    let py_copy = kv.get("py_copy").ok_or("python output lacks py_copy")?;
    assert_eq!(
        custody::decrypt_blob(&kith_owner, &py_original_hash, py_copy)?,
        py_plaintext
    );
    assert!(custody::decrypt(&owner, &py_original_hash, py_copy).is_err());
    Ok(())
}
