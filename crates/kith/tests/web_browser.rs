//! The web page in a real browser: two `kith up --web` nodes, each driven through its page in
//! headless Chromium by `tests/web_browser.py` (Selenium), as two people would: a ticket and
//! its QR code handed over, chat both ways with live updates and unread counts, script in chat
//! text and in file names shown as text, a file uploaded on one page fetched and downloaded on
//! the other, posts written in a community on one page shown on the other page (which follows
//! the community), script in a post body shown as text, and nothing for a missing or wrong
//! token, another origin or another Host.
//! Prints the figures: page load, page-to-page message time and page-to-page post time.

mod support;

use std::process::Command;
use support::Node;

#[test]
#[cfg_attr(
    not(kith_test_browser),
    ignore = "needs chromium, chromedriver and Python selenium: set KITH_TEST_BROWSER=1 (.ci/run does)"
)]
fn two_people_chat_and_send_a_file_through_their_pages() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start_up(&dir.path().join("a"), &["--web", "127.0.0.1:0"]);
    let b = Node::start_up(&dir.path().join("b"), &["--web", "127.0.0.1:0"]);
    let url = |node: &Node| node.ready["web"].as_str().expect("web address").to_owned();
    // `kith web` gives the same address as the ready document.
    assert_eq!(a.ok(&["web"]).trim(), url(&a));
    let work = dir.path().join("browser");
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/web_browser.py"))
        .args(["--a", &url(&a), "--b", &url(&b), "--work"])
        .arg(&work)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("figures: {stdout}");
    assert!(a.counter("web_refused_token") >= 5);
    assert!(a.counter("web_refused_origin") >= 3);
}
