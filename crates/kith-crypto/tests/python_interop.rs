//! Interoperability of the Datt content formats with independent Python libraries
//! (coincurve for secp256k1, cryptography for AES-CBC/HMAC/SHA).
//!
//! Runs only when `KITH_TEST_PYTHON=1` (Python from `KITH_PYTHON`, default `python3`, with
//! `pip install coincurve cryptography`); otherwise it is listed as ignored, with the reason.

use std::collections::HashMap;
use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use kith_crypto::{content, ContentKey, Identity};
use rand::rngs::StdRng;
use rand::SeedableRng;

type TestResult = Result<(), Box<dyn Error>>;

fn read_kv(path: &Path) -> Result<HashMap<String, Vec<u8>>, Box<dyn Error>> {
    let mut out = HashMap::new();
    for line in std::fs::read_to_string(path)?.lines() {
        if let Some((name, value)) = line.trim().split_once(' ') {
            out.insert(name.to_string(), hex::decode(value)?);
        }
    }
    Ok(out)
}

fn get<'a>(kv: &'a HashMap<String, Vec<u8>>, name: &str) -> Result<&'a [u8], Box<dyn Error>> {
    kv.get(name)
        .map(Vec::as_slice)
        .ok_or_else(|| format!("python output lacks {name}").into())
}

#[test]
#[cfg_attr(
    not(kith_test_python),
    ignore = "needs Python 3 with coincurve and cryptography: set KITH_TEST_PYTHON=1 (.ci/run does)"
)]
fn python_interop() -> TestResult {
    let python = std::env::var("KITH_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop.py");

    let mut rng = StdRng::seed_from_u64(0x6b697468);
    let signer = ContentKey::generate(&mut rng);
    let receiver = ContentKey::generate(&mut rng);
    let kith_receiver = ContentKey::generate(&mut rng);

    // Long enough to need a multi-byte CompactSize (253+).
    let signed_data: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let signed = content::sign(&signer, &signed_data)?;
    let sealed_plaintext = b"sealed by kith for python; 16+ bytes so it spans blocks".to_vec();
    let sealed = content::seal(&signer, &receiver.public_key(), &sealed_plaintext, &mut rng)?;
    let py_data = b"signed by python".to_vec();
    let py_plaintext = vec![0xa5u8; 1000];
    let identity = Identity::generate(&mut rng);
    let cert = identity.self_signed_certificate()?;
    let agent_id = identity.agent_id().to_string();

    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    let mut text = String::new();
    for (name, value) in [
        ("signer_secret", &signer.secret_bytes()[..]),
        ("signed_data", &signed_data),
        ("signed", &signed),
        ("receiver_secret", &receiver.secret_bytes()),
        ("sender_pub", &signer.public_key()),
        ("sealed", &sealed),
        ("sealed_plaintext", &sealed_plaintext),
        ("kith_receiver_pub", &kith_receiver.public_key()),
        ("py_data", &py_data),
        ("py_plaintext", &py_plaintext),
        ("cert_der", &cert.der),
        ("agent_pub", &identity.agent_public()),
        ("agent_id", agent_id.as_bytes()),
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
        return Err(format!("interop.py failed ({}):\n{stdout}\n{stderr}", run.status).into());
    }
    eprint!("{stdout}");

    // Python → kith.
    let kv = read_kv(&output)?;
    let py_signed = get(&kv, "py_signed")?;
    let verified = content::verify(py_signed)?;
    assert_eq!(&verified.signer[..], get(&kv, "py_signer_pub")?);
    assert_eq!(verified.data, &py_data[..]);

    let opened = content::open(&kith_receiver, get(&kv, "py_sealed")?)?;
    assert_eq!(&opened.sender[..], get(&kv, "py_sender_pub")?);
    assert_eq!(opened.data, py_plaintext);
    // Addressed to kith_receiver only.
    assert_eq!(
        content::open(&receiver, get(&kv, "py_sealed")?).unwrap_err(),
        content::ContentError::NotForThisKey
    );
    Ok(())
}
