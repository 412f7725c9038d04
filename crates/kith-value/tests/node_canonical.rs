//! The canonical JSON against npm `json-stable-stringify` itself (the package the reference
//! signs with), on generated documents: nested objects and arrays, keys and strings with
//! escapes, non-ASCII and astral characters, integers and floats of every magnitude, nulls.
//! The package is installed into a scratch directory by the test (nothing is committed).

use kith_value::canonical;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Value};
use std::process::Command;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,6}",
        "[\\x00-\\x7f]{0,8}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
        Just("\u{1F600}\u{FF61}é\"\\\n".to_owned()),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..1 << 53).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        (-1e-5f64..1e-5).prop_map(Value::from),
        text().prop_map(Value::from),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

#[test]
#[cfg_attr(
    not(kith_test_node),
    ignore = "needs node and npm (installs json-stable-stringify into a scratch dir): set KITH_TEST_NODE=1"
)]
fn canonical_json_matches_npm_json_stable_stringify() {
    let dir = tempfile::tempdir().unwrap();
    let install = Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir.path())
        .arg("json-stable-stringify@1")
        .status()
        .expect("npm runs");
    assert!(
        install.success(),
        "npm install json-stable-stringify failed"
    );

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = document();
    let mut docs: Vec<Value> = (0..400)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let vector = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/mychips/validtally.json"
    );
    docs.push(serde_json::from_str(&std::fs::read_to_string(vector).unwrap()).unwrap());
    let input = dir.path().join("docs.json");
    std::fs::write(&input, serde_json::to_vec(&docs).unwrap()).unwrap();

    let script = "const S = require(process.argv[1] + '/node_modules/json-stable-stringify');\
        const docs = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));\
        process.stdout.write(JSON.stringify(docs.map(d => S(d))));";
    let output = Command::new("node")
        .args(["-e", script])
        .arg(dir.path())
        .arg(&input)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: Vec<String> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(theirs.len(), docs.len());
    for (doc, theirs) in docs.iter().zip(&theirs) {
        assert_eq!(&canonical::stable(doc), theirs, "for {doc}");
    }
}
