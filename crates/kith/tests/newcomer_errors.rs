//! The errors a newcomer meets in the first hour, each of which must say what happened and
//! what to do next: no node running, a wrong data dir, a port in use, a ticket already used
//! or expired, a peer that cannot be reached, a wrong password.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::Node;

fn kith(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("KITH_DATA")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `kith up ARGS`, which must fail; returns its stderr. A node that starts after all is
/// stopped (and the test fails) instead of hanging the suite.
fn up_fails(data: &Path, args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(data)
        .arg("up")
        .args(args)
        .env_remove("KITH_DATA")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let give_up = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > give_up {
            let _ = child.kill();
            panic!("kith up {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8(out.stderr).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn no_node_running_says_how_to_start_one_and_where() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("alice");
    for args in [
        &["status"][..],
        &["ping", "AAAA"][..],
        &["chat", "channels"][..],
    ] {
        let out = kith(&data, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains("no node is running on data dir"), "{err}");
        assert!(
            err.contains(&format!("kith up --data {}", data.display())),
            "{err}"
        );
        assert!(err.contains("--data (or KITH_DATA)"), "{err}");
        assert!(
            !data.exists(),
            "{args:?}: a mistyped --data must not leave an empty data dir behind"
        );
    }
    // persist and retrieve used to say it their own way, with exit code 1.
    std::fs::write(tmp.path().join("pw"), "pw\n").unwrap();
    std::fs::write(tmp.path().join("f"), "f\n").unwrap();
    let pw = tmp.path().join("pw");
    let out = kith(
        &data,
        &[
            "persist",
            tmp.path().join("f").to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("kith up --data"), "{}", stderr(&out));
}

#[test]
fn a_data_dir_that_is_a_file_or_under_one_says_to_pass_another() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, "not a data dir").unwrap();
    let err = stderr(&kith(&file, &["id"]));
    assert!(err.contains("is not a directory"), "{err}");
    assert!(err.contains("pass another --data"), "{err}");

    let err = stderr(&kith(&file.join("kith"), &["id"]));
    assert!(err.contains("a part of that path is a file"), "{err}");
    assert!(err.contains("pass another --data"), "{err}");
}

#[test]
fn a_data_dir_that_cannot_be_written_says_to_pick_a_writable_one() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("skipped: permissions do not stop root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let locked = tmp.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    let err = stderr(&kith(&locked.join("kith"), &["id"]));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(err.contains("Permission denied"), "{err}");
    assert!(err.contains("a --data dir you can write to"), "{err}");
}

#[test]
fn a_port_in_use_names_the_flag_that_moves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let data = tmp.path().join("node");
    let off = ["--chat-listen", "off"];

    let err = up_fails(
        &data,
        &[&["--listen", &port, "--peer-listen", "off"][..], &off].concat(),
    );
    assert!(
        err.contains(&format!("secure-link listener {port}")),
        "{err}"
    );
    assert!(
        err.contains("another program (perhaps another kith node)"),
        "{err}"
    );
    assert!(
        err.contains("--listen ADDR:PORT (port 0 picks a free one"),
        "{err}"
    );

    let err = up_fails(
        &data,
        &[
            &["--listen", "127.0.0.1:0", "--peer-listen", &port][..],
            &off,
        ]
        .concat(),
    );
    assert!(err.contains(&format!("peer port {port}")), "{err}");
    assert!(err.contains("--peer-listen ADDR:PORT"), "{err}");
}

#[test]
fn a_used_or_expired_ticket_says_to_ask_for_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let b = Node::start(&tmp.path().join("b"));
    let c = Node::start(&tmp.path().join("c"));
    let ticket = a.ok(&["ticket"]);
    b.ok(&["connect", ticket.trim()]);

    // The site closes without a word; the client says what that probably means.
    let err = c.fails(&["connect", ticket.trim()]);
    assert!(err.contains("without answering"), "{err}");
    assert!(err.contains("already used, expired, revoked"), "{err}");
    assert!(
        err.contains("ask whoever gave you the ticket for a new one"),
        "{err}"
    );
    assert!(!err.contains("the node refused"), "{err}");

    // A ticket past its expiry (made so, rather than waited for).
    let mut expired: serde_json::Value =
        serde_json::from_str(&a.ok(&["ticket", "--json"])).unwrap();
    expired["expires"] = serde_json::Value::from("2000-01-01T00:00:00Z");
    let err = c.fails(&["connect", &expired.to_string()]);
    assert!(err.contains("ticket expired at"), "{err}");
    assert!(err.contains("ask its issuer for a new one"), "{err}");
}

#[test]
fn an_unreachable_peer_says_its_node_may_not_run_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::start(&tmp.path().join("a"));
    let b = Node::start(&tmp.path().join("b"));
    let spare_ticket = a.ok(&["ticket"]);
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    let agent = a.agent();
    a.stop();

    let err = b.fails(&["ping", &agent]);
    assert!(
        err.contains(&format!("cannot reach {}", a.listen())),
        "{err}"
    );
    assert!(err.contains("the node there is not running"), "{err}");
    assert!(
        err.contains("ask its owner to start it (`kith up`)"),
        "{err}"
    );
    assert!(err.contains("re-links by itself"), "{err}");

    let c = Node::start(&tmp.path().join("c"));
    let err = c.fails(&["connect", spare_ticket.trim()]);
    assert!(err.contains("cannot reach"), "{err}");
    assert!(err.contains("--announce HOST:PORT"), "{err}");
}

#[test]
fn a_wrong_password_says_so_and_to_try_again() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Node::start(&tmp.path().join("a"));
    let b = Node::start(&tmp.path().join("b"));
    b.ok(&["connect", a.ok(&["ticket"]).trim()]);
    let file = tmp.path().join("letter.txt");
    std::fs::write(&file, "dear A, keep this").unwrap();
    let right = tmp.path().join("right");
    let wrong = tmp.path().join("wrong");
    std::fs::write(&right, "correct horse\n").unwrap();
    std::fs::write(&wrong, "battery staple\n").unwrap();
    let hash = b.ok(&["file", "hash", file.to_str().unwrap()]);
    b.ok(&[
        "persist",
        file.to_str().unwrap(),
        "--password-file",
        right.to_str().unwrap(),
    ]);
    let out = tmp.path().join("back.txt");
    let err = b.fails(&[
        "retrieve",
        hash.trim(),
        "--password-file",
        wrong.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("wrong password"), "{err}");
    assert!(err.contains("check the password file"), "{err}");
    assert!(err.contains("try again"), "{err}");
    assert!(!out.exists());
}
