//! Signatures both ways with an independent P-521 implementation (Python `cryptography`):
//! kith's verify under SHA-384 (and not under SHA-512) there, and Python's verify here.

use kith_value::keys::{PublicKey, UserKey};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use std::io::Write as _;
use std::process::{Command, Stdio};

#[test]
#[cfg_attr(
    not(kith_test_python),
    ignore = "needs Python 3 with cryptography: set KITH_TEST_PYTHON=1 (.ci/run does)"
)]
fn p521_sha384_signatures_both_ways_with_python() {
    let python = std::env::var("KITH_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/p521_interop.py");
    let mut rng = StdRng::seed_from_u64(521);
    let mut cases = Vec::new();
    for message in ["hello", "{\"a\":1,\"é\":\"ü\"}", ""] {
        let key = UserKey::generate(&mut rng);
        let signature = key.sign(message.as_bytes(), &mut rng).unwrap();
        cases.push(
            json!({"jwk": key.public().to_jwk(), "message": message, "signature": signature}),
        );
    }
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json!({ "kith": cases }).to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python refused kith's signatures");
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    let cases = doc["python"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let key = PublicKey::from_jwk(&case["jwk"]).unwrap();
        let message = case["message"].as_str().unwrap().as_bytes();
        let signature = case["signature"].as_str().unwrap();
        key.verify(message, signature)
            .expect("python's signature verifies");
        assert!(key.verify(b"something else", signature).is_err());
    }
}
