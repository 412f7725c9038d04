//! The control socket attacked as a local program could, against a real `kith up`: thousands
//! of half-sent requests, and a request that declares a 10 GB body. The node must close the
//! junk by itself, hold little memory for it, answer its owner meanwhile, and refuse the huge
//! body at once. (The accept path's finer cases are unit tests in
//! `kith-node/src/control/accept_tests.rs`.)

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use support::Node;

/// What a test waits at most for the node to close or answer before it fails (not a deadline
/// the node is given: those are set short in `kith.toml`).
const HANG_GUARD: Duration = Duration::from_secs(30);

fn rss_kib(pid: u64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 2,000 client sockets need more descriptors than the usual soft limit of 1,024.
fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < want {
            assert!(
                limit.rlim_max >= want,
                "this test needs {want} file descriptors; raise the hard limit (ulimit -Hn)"
            );
            limit.rlim_cur = want;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

/// Everything the node sends on `stream` until it closes it. A connection closed with part of
/// our request unread reads as reset, which is a close too.
fn until_closed(stream: &mut UnixStream) -> Vec<u8> {
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => got,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => got,
        Err(e) => panic!("the node did not close the connection within {HANG_GUARD:?}: {e}"),
    }
}

fn pid(node: &Node) -> u64 {
    node.json(&["status", "--json"])["pid"].as_u64().unwrap()
}

#[test]
fn two_thousand_half_sent_requests_are_closed_cost_little_and_do_not_lock_out_the_owner() {
    const JUNK: usize = 2_000;
    raise_fd_limit(4 * JUNK as u64);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let node = Node::start_with(&data, "[limits]\ncontrol_header_timeout_ms = 500\n");
    let pid = pid(&node);
    let before = rss_kib(pid);
    let socket = data.join("control.sock");
    let mut junk = Vec::with_capacity(JUNK);
    let mut peak = before;
    for i in 0..JUNK {
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream
            .write_all(
                b"POST /v1/ping HTTP/1.1\r\nhost: kith\r\ncontent-type: application/json\r\n",
            )
            .unwrap();
        junk.push(stream);
        if i % 250 == 0 {
            peak = peak.max(rss_kib(pid));
        }
    }
    // The owner's command gets its answer while the junk is still held.
    let status = node.json(&["status", "--json"]);
    assert_eq!(status["pid"].as_u64(), Some(pid));
    peak = peak.max(rss_kib(pid));
    // Every half-sent request is closed by the node, without an answer: evicted to make room
    // for newer connections, or at the header deadline.
    for stream in &mut junk {
        assert!(until_closed(stream).is_empty());
    }
    let after = rss_kib(pid);
    let counters = &node.json(&["status", "--json"])["counters"];
    let closed = counters["control_evicted"].as_u64().unwrap_or(0)
        + counters["control_header_timeouts"].as_u64().unwrap_or(0);
    eprintln!(
        "RSS {} MB before, {} MB at the peak of {JUNK} half-sent requests, {} MB after; \
         {closed} closed by the node",
        before / 1024,
        peak / 1024,
        after / 1024
    );
    assert_eq!(closed, JUNK as u64, "{counters}");
    // Before the accept path kept its bounds: 13 -> 68 MB, held for as long as the client
    // liked. Now at most `max_control_connections` (64) are held at once.
    assert!(
        peak.saturating_sub(before) < 16 * 1024,
        "RSS grew from {before} KiB to {peak} KiB"
    );
}

#[test]
fn a_ten_gigabyte_content_length_is_answered_413_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    // Both deadlines long: the answer cannot come from a timeout.
    let node = Node::start_with(
        &data,
        "[limits]\ncontrol_header_timeout_ms = 600000\ncontrol_body_timeout_ms = 600000\n",
    );
    let answer = huge_request(&data);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("at most 65536 bytes"), "{answer}");
    assert_eq!(
        node.json(&["status", "--json"])["counters"]["control_too_large"].as_u64(),
        Some(1)
    );
}

fn huge_request(data: &Path) -> String {
    let mut stream = UnixStream::connect(data.join("control.sock")).unwrap();
    stream
        .write_all(
            b"POST /v1/ping HTTP/1.1\r\nhost: kith\r\ncontent-type: application/json\r\n\
              content-length: 10000000000\r\n\r\n{\"agent\":",
        )
        .unwrap();
    String::from_utf8_lossy(&until_closed(&mut stream)).into_owned()
}
