//! The web page's bad input, over a real socket (no browser needed): requests without the
//! token or with a wrong one, another Host, another origin, markup in file names, an upload
//! cut short, WebSocket upgrades from nowhere, oversized and malformed WebSocket frames, damaged
//! file tickets. Each is refused or served safely, and the node goes on serving. And a file
//! ticket pasted on a page links to its node and fetches the file.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::{ws, Node};

struct Page {
    host: String,
    token: String,
}

impl Page {
    fn of(node: &Node) -> Page {
        let url = node.ready["web"].as_str().expect("web address");
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        Page {
            host: host.to_owned(),
            token: path.trim_end_matches('/').to_owned(),
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// One request on a fresh connection; returns (status, headers, body).
    fn request(&self, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        let mut stream = self.connect();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        parse(&out)
    }

    fn get(&self, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
        self.request(
            &format!(
                "GET {path} HTTP/1.1\r\nhost: {}\r\n{extra}connection: close\r\n\r\n",
                self.host
            ),
            b"",
        )
    }

    fn post(&self, path: &str, extra: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        self.request(
            &format!(
                "POST {path} HTTP/1.1\r\nhost: {}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n",
                self.host,
                body.len()
            ),
            body,
        )
    }

    fn origin(&self) -> String {
        format!("origin: http://{}\r\n", self.host)
    }
}

fn parse(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let len =
            usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap(), 16).unwrap();
        if len == 0 {
            return out;
        }
        out.extend_from_slice(&raw[line_end + 2..line_end + 2 + len]);
        raw = &raw[line_end + 4 + len..];
    }
}

fn node_with_page(dir: &std::path::Path) -> Node {
    Node::start_up(dir, &["--web", "127.0.0.1:0"])
}

#[test]
fn without_the_token_from_another_host_or_origin_nothing_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_page(dir.path());
    let page = Page::of(&node);
    let t = &page.token;
    let (status, _, body) = page.get(&format!("/{t}/"), "");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("<label for=\"message\">Message</label>"));

    let mut wrong = t.clone();
    wrong.replace_range(0..1, if t.starts_with('0') { "1" } else { "0" });
    for path in [
        "/".to_owned(),
        format!("/{wrong}/"),
        format!("/{wrong}/api/v1/peers"),
        "/api/v1/peers".to_owned(),
        format!("/{}/", &t[..t.len() - 1]),
        format!("/{t}x/"),
        format!("/%2e%2e/{t}/"),
    ] {
        let (status, _, body) = page.get(&path, "");
        assert_eq!((status, body.len()), (404, 0), "{path}");
    }
    // DNS rebinding: the right token under another host name.
    let (status, _, _) = page.request(
        &format!("GET /{t}/ HTTP/1.1\r\nhost: evil.example:80\r\nconnection: close\r\n\r\n"),
        b"",
    );
    assert_eq!(status, 403);
    // Another site's form or fetch, and a state change that does not say where it is from.
    let chat = format!("/{t}/api/v1/chat");
    let json = "content-type: application/json\r\n";
    let body = br#"{"action":"join","name":"x","closed":false}"#;
    let (status, head, _) = page.post(
        &chat,
        &format!("{json}origin: http://evil.example\r\n"),
        body,
    );
    assert_eq!(status, 403);
    assert!(!head.to_ascii_lowercase().contains("access-control-allow"));
    assert_eq!(page.post(&chat, json, body).0, 403);
    assert_eq!(
        page.post(
            &chat,
            &format!("{json}{}sec-fetch-site: cross-site\r\n", page.origin()),
            body
        )
        .0,
        403
    );
    // None of that joined anything.
    let channels = node.json(&["chat", "channels", "--json"]);
    assert_eq!(channels.as_array().unwrap().len(), 0, "{channels}");
    // The right request does.
    assert_eq!(
        page.post(&chat, &format!("{json}{}", page.origin()), body)
            .0,
        200
    );
    assert!(node.counter("web_refused_token") >= 7);
    assert!(node.counter("web_refused_origin") >= 4);
}

#[test]
fn uploads_and_downloads_keep_markup_in_names_inert_and_a_cut_upload_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_page(dir.path());
    let page = Page::of(&node);
    let t = &page.token;
    let content = support::data(200_000, 7);
    let name = "<img src=x onerror=alert(1)>\"x.html";
    let query: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (status, _, body) = page.post(
        &format!("/{t}/upload?name={query}"),
        &page.origin(),
        &content,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let record: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(record["name"], name);
    let hash = record["hash"].as_str().unwrap().to_owned();
    assert_eq!(
        hash,
        node.ok(&["file", "hash", &{
            let p = dir.path().join("same");
            std::fs::write(&p, &content).unwrap();
            p.to_str().unwrap().to_owned()
        }])
        .trim()
    );

    let (status, head, body) = page.get(&format!("/{t}/files/{hash}"), "");
    assert_eq!(status, 200);
    assert_eq!(body, content);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/octet-stream"),
        "{head}"
    );
    assert!(
        head.contains(
            "content-disposition: attachment; filename=\"_img src_x onerror_alert_1___x.html\""
        ),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"));
    // Not a file of ours, not an address.
    assert_eq!(
        page.get(&format!("/{t}/files/{}", "0".repeat(64)), "").0,
        404
    );
    assert_eq!(page.get(&format!("/{t}/files/..%2f..%2fkeys"), "").0, 400);

    // An upload that promises more than it sends, then hangs up: nothing is recorded.
    let before = node
        .json(&["file", "ls", "--json"])
        .as_array()
        .unwrap()
        .len();
    {
        let mut stream = page.connect();
        write!(
            stream,
            "POST /{t}/upload?name=cut HTTP/1.1\r\nhost: {}\r\n{}content-length: 500000\r\n\r\n",
            page.host,
            page.origin()
        )
        .unwrap();
        stream.write_all(&content[..100_000]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let files = node.json(&["file", "ls", "--json"]);
    assert_eq!(files.as_array().unwrap().len(), before, "{files}");
    // And the page still serves.
    assert_eq!(page.get(&format!("/{t}/files"), "").0, 200);
}

/// Opens the live socket; returns the stream after the 101.
fn upgrade(page: &Page, origin: bool) -> (u16, TcpStream) {
    let mut stream = page.connect();
    let origin = if origin { page.origin() } else { String::new() };
    ws::request_upgrade(
        &mut stream,
        &page.host,
        &format!("/{}/live", page.token),
        &origin,
    );
    let head = ws::response_head(&mut stream);
    let status = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, stream)
}

#[test]
fn the_live_socket_refuses_other_origins_oversized_and_malformed_frames() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_page(dir.path());
    let page = Page::of(&node);
    assert_eq!(upgrade(&page, false).0, 403);

    let (status, mut ws) = upgrade(&page, true);
    assert_eq!(status, 101);
    // Oversized: a text frame of 64 KiB (the page sends nothing that large).
    ws.write_all(&ws::masked_frame(0x80 | 0x1, &vec![b'a'; 65_536]))
        .unwrap();
    assert!(
        ws::closed(&mut ws),
        "an oversized frame must close the socket"
    );

    // A frame claiming 2^62 bytes: refused from its header, nothing allocated.
    let (_, mut ws) = upgrade(&page, true);
    let mut huge = vec![0x82, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&[0, 0, 0, 0]);
    ws.write_all(&huge).unwrap();
    assert!(ws::closed(&mut ws));

    // Reserved bits, an unknown opcode, and an unmasked client frame.
    for bad in [
        ws::masked_frame(0xF0 | 0x1, b"x"),
        ws::masked_frame(0x80 | 0x3, b"x"),
        vec![0x81, 0x01, b'x'],
    ] {
        let (_, mut ws) = upgrade(&page, true);
        ws.write_all(&bad).unwrap();
        assert!(ws::closed(&mut ws), "{bad:?}");
    }
    // The node is unharmed.
    assert_eq!(page.get(&format!("/{}/", page.token), "").0, 200);
    assert_eq!(upgrade(&page, true).0, 101);
}

#[test]
fn posts_through_the_page_keep_markup_inert_and_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_page(dir.path());
    let page = Page::of(&node);
    let t = &page.token;
    let markup = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let body = serde_json::json!({"action": "post", "community": "science", "text": markup});
    let body = body.to_string();
    // Without the token, or from another origin: nothing is posted.
    let (status, _, _) = page.post("/api/v1/posts", &page.origin(), body.as_bytes());
    assert_ne!(status, 200);
    let (status, _, _) = page.post(
        &format!("/{t}/api/v1/posts"),
        "origin: http://evil.example\r\n",
        body.as_bytes(),
    );
    assert_ne!(status, 200);
    let (status, _, reply) = page.post(
        &format!("/{t}/api/v1/posts"),
        &format!("{}content-type: application/json\r\n", page.origin()),
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    // Listed as JSON text (the page writes it with textContent only).
    let list = serde_json::json!({"action": "list", "community": "science"}).to_string();
    let (status, head, reply) = page.post(
        &format!("/{t}/api/v1/posts"),
        &format!("{}content-type: application/json\r\n", page.origin()),
        list.as_bytes(),
    );
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("application/json"),
        "{head}"
    );
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["posts"]["posts"][0]["text"], markup);
    // The page has the posts view.
    let (_, _, html) = page.get(&format!("/{t}/"), "");
    assert!(String::from_utf8_lossy(&html).contains("view-posts"));
}

#[test]
fn a_file_ticket_pasted_on_a_page_links_to_its_node_and_fetches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = node_with_page(&dir.path().join("a"));
    let b = node_with_page(&dir.path().join("b"));
    let (pa, pb) = (Page::of(&a), Page::of(&b));
    let json = |page: &Page| format!("{}content-type: application/json\r\n", page.origin());
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (status, _, record) = pa.post(
        &format!("/{}/upload?name=shared.bin", pa.token),
        &pa.origin(),
        &content,
    );
    assert_eq!(status, 200);
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    let hash = record["hash"].as_str().unwrap().to_owned();

    // A's page hands out a file ticket for it (and none for a file it does not have).
    let order = serde_json::json!({"hash": hash, "ttl_secs": 600}).to_string();
    let (status, _, issued) = pa.post(
        &format!("/{}/api/v1/files/ticket", pa.token),
        &json(&pa),
        order.as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&issued));
    let issued: serde_json::Value = serde_json::from_slice(&issued).unwrap();
    let ticket = issued["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.starts_with("kith-file:"), "{ticket}");
    let missing = serde_json::json!({"hash": "ab".repeat(32), "ttl_secs": 600}).to_string();
    let (status, _, _) = pa.post(
        &format!("/{}/api/v1/files/ticket", pa.token),
        &json(&pa),
        missing.as_bytes(),
    );
    assert_eq!(status, 404);

    // B is not linked to A: a damaged ticket is refused, and the node goes on serving.
    let fetch = |what: &str| {
        let body = serde_json::json!({"hash": what, "from": null}).to_string();
        pb.post(
            &format!("/{}/api/v1/files/fetch", pb.token),
            &json(&pb),
            body.as_bytes(),
        )
    };
    for bad in [&ticket[..ticket.len() - 7], "kith-file:", "kith-file:!!!"] {
        let (status, _, reply) = fetch(bad);
        assert_eq!(status, 400, "{bad}: {}", String::from_utf8_lossy(&reply));
    }
    // The ticket as pasted: B links to A first, then fetches from it.
    let (status, _, report) = fetch(&format!("  {ticket}\n"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&report));
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(report["hash"], hash);
    assert_eq!(report["size"], content.len());
    let (status, _, got) = pb.get(&format!("/{}/files/{hash}", pb.token), "");
    assert_eq!(status, 200);
    assert_eq!(got, content);
    let peers: serde_json::Value = b.json(&["peers", "--json"]);
    assert!(
        peers
            .to_string()
            .contains(a.ready["agent"].as_str().unwrap()),
        "{peers}"
    );
}
