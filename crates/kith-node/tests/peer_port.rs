//! The CIYAM peer port in process, on a real TCP listener: a stranger's item is an anonymous
//! item, never a file, and goes when its time is up by the node's own (injected) clock.

mod support;

use kith_node::endpoint::MemoryNet;
use kith_node::peer_port::accept_loop;
use kith_proto::files::text::encode_header;
use kith_proto::files::{ContentHash, HELLO_ITEM};
use std::time::Duration;
use support::TestNode;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A plain client's lines: what it sends, and what it expects back.
struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        Client {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    async fn say(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }

    async fn hear(&mut self, expected: &str) {
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("an answer in time")
            .unwrap()
            .expect("a line");
        assert_eq!(line, expected);
    }
}

#[tokio::test]
async fn a_strangers_item_is_no_file_and_goes_when_its_time_is_up_by_the_nodes_clock() {
    let net = MemoryNet::new();
    let node = TestNode::start(&net, |_| {}).await;
    let ttl = node.node_limits.anonymous_item_secs;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(accept_loop(
        node.node.peer_port.clone(),
        listener,
        cancel.clone(),
    ));

    let hello = ContentHash::hello();
    let hello_header = encode_header(HELLO_ITEM);
    let item = b"\x01a stranger's note".to_vec();
    let hash = ContentHash::of(&item);
    let mut client = Client::connect(addr).await;
    client.say("chk hello").await;
    client.hear("(not found)").await;
    client.hear(&format!("put {hello}")).await;
    client.hear(&hello_header).await;
    client.say(&hello_header).await;
    client.hear("(okay)").await;
    client.say(&format!("put {hash}")).await;
    client.say(&encode_header(&item)).await;
    // The reference's rule: after the client's `put`, the node `get`s the hello file.
    client.hear(&format!("get {hello}")).await;
    client.say(&hello_header).await;
    client.hear("(okay)").await;
    client.say("bye").await;

    let store = node.node.store.clone();
    let rows = store.run(|s| s.meta().list_anonymous()).await.unwrap();
    assert_eq!(
        rows.len(),
        1,
        "the hello file is built in, never stored: {rows:?}"
    );
    assert_eq!(rows[0].hash.0, hash.0);
    assert_eq!(rows[0].client, "127.0.0.1");
    assert_eq!(rows[0].expires_at, rows[0].stored_at + ttl as i64);
    assert!(store.run(|s| s.list()).await.unwrap().is_empty(), "no file");
    assert_eq!(node.counter("anonymous_items_stored"), 1);

    // A second before its time, nothing goes; at its time, the row and the item go.
    let peer_port = &node.node.peer_port;
    node.clock.advance(Duration::from_secs(ttl - 1));
    assert_eq!(peer_port.expire_anonymous().await, 0);
    node.clock.advance(Duration::from_secs(1));
    assert_eq!(peer_port.expire_anonymous().await, 1);
    let item_hash = hash;
    assert!(!store
        .run(move |s| s.blobs().contains(&item_hash))
        .await
        .unwrap());
    assert!(store
        .run(|s| s.meta().list_anonymous())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(node.counter("anonymous_items_expired"), 1);
    cancel.cancel();
    node.stop().await;
}
