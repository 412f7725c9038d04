//! What a user at a terminal sees while a file moves: `kith file get` and `kith persist` run
//! under a pseudo-terminal (util-linux `script`), so their progress bars draw as they do for a
//! person; the captured screen must name the file and show its size, the percentage, the rate
//! and the time left. (Without a terminal the bars stay hidden: every other test sees none.)

mod support;

use std::process::Command;
use support::{data, Node};

/// Small items, so a modest file is many of them; sent at a paced rate (`kith up
/// --upload-rate`), the transfer lasts long enough for the bar to be drawn several times.
const SETTINGS: &str = "max_item = 4097\n";

/// Runs `kith ARGS` for `node` on a pseudo-terminal; returns what was drawn on it.
fn on_a_terminal(node: &Node, args: &[&str]) -> String {
    let mut line = format!(
        "{} --data {}",
        env!("CARGO_BIN_EXE_kith"),
        node.data.display()
    );
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("TERM", "xterm")
        .env("COLUMNS", "160")
        .output()
        .expect("util-linux `script` runs");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "kith {args:?} failed: {screen}");
    screen
}

fn shows_a_whole_bar(screen: &str, label: &str) {
    assert!(screen.contains(label), "the file's name is shown: {screen}");
    assert!(screen.contains("KiB"), "sizes are shown: {screen}");
    assert!(screen.contains('%'), "the percentage is shown: {screen}");
    assert!(screen.contains("/s"), "the rate is shown: {screen}");
    assert!(screen.contains("ETA"), "the time left is shown: {screen}");
}

/// Two linked nodes, A and B, in a temporary dir; `None` (the test is skipped) without
/// util-linux `script`.
fn linked_pair() -> Option<(tempfile::TempDir, Node, Node)> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` is not installed");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        let data = tmp.path().join(name);
        support::write_settings(&data, SETTINGS);
        Node::start_up(&data, &["--upload-rate", "200KB"])
    };
    let (a, b) = (start("a"), start("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    Some((tmp, a, b))
}

#[test]
fn a_user_fetching_a_file_sees_its_name_size_rate_and_time_left() {
    let Some((tmp, a, b)) = linked_pair() else {
        return;
    };
    let bytes = data(600_000, 7);
    let hash = a.put(tmp.path(), "holiday-photos.tar", &bytes);
    let out = tmp.path().join("copy.tar");
    let screen = on_a_terminal(
        &b,
        &[
            "file",
            "get",
            &hash,
            "--from",
            &a.agent(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    shows_a_whole_bar(&screen, "fetching holiday-photos.tar");
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
}

#[test]
fn a_user_persisting_a_file_sees_its_progress_to_the_custodian() {
    let Some((tmp, a, b)) = linked_pair() else {
        return;
    };
    let file = tmp.path().join("tax-return.pdf");
    std::fs::write(&file, data(600_000, 8)).unwrap();
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "correct horse battery staple\n").unwrap();
    let screen = on_a_terminal(
        &b,
        &[
            "persist",
            file.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
            "--to",
            &a.agent(),
        ],
    );
    // The node's bar, not only the local `file put` one: the custodian taking the items.
    shows_a_whole_bar(&screen, "persisting tax-return.pdf");
    assert!(screen.contains("now held in custody"), "{screen}");
    assert_eq!(a.counter("custody_accepted"), 1);
}
