//! `kith bench transfer` end to end, on a file small enough for a debug build: it starts two
//! nodes, moves the file, verifies it, reports every figure, and leaves nothing behind.
//! (Speed itself is never asserted: that is what the command is for.)

use serde_json::Value;
use std::process::Command;

#[test]
fn bench_transfer_of_two_mib_reports_every_figure_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["bench", "transfer", "--size", "2MiB", "--json", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kith bench transfer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bytes"], 2 << 20);
    assert_eq!(report["verified"], true);
    assert_eq!(report["hash"].as_str().unwrap().len(), 64);
    // Three chunks (999,999 content bytes at most each) and the list that names them.
    assert_eq!(report["items"], 4, "{report}");
    assert_eq!(report["items_fetched"], 4, "{report}");
    for figure in [
        "raw_tcp",
        "sha256",
        "chacha20_poly1305",
        "essential",
        "put",
        "transfer",
    ] {
        assert_eq!(report[figure]["bytes"], 2 << 20, "{figure}: {report}");
        assert!(
            report[figure]["gb_per_s"].as_f64().unwrap() > 0.0,
            "{figure}"
        );
    }
    for ratio in ["raw_tcp", "sha256", "chacha20_poly1305", "essential"] {
        assert!(report["ratios"][ratio].as_f64().unwrap() > 0.0, "{ratio}");
    }
    assert!(report["peak_rss_source"].as_u64().unwrap() > 0);
    assert!(report["peak_rss_fetcher"].as_u64().unwrap() > 0);
    for node in ["source", "fetcher"] {
        let file = report[format!("rss_file_{node}")].as_u64().unwrap();
        let peak = report[format!("peak_rss_{node}")].as_u64().unwrap();
        assert!(file > 0 && file <= peak, "{node}: {report}");
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

#[test]
fn bench_transfer_refuses_a_size_it_cannot_read() {
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["bench", "transfer", "--size", "1TiB"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown size unit"));
}
