//! Folders between whole nodes on an in-memory network, tokio's clock paused: the folder's
//! progress counts its files, cancelling the folder (Ctrl-C on `kith file get`) stops the file
//! being fetched and writes nothing, and the next fetch resumes without fetching again what
//! arrived; a folder's files are fetched several at once, also when they share items.

mod support;

use kith_node::endpoint::MemoryNet;
use kith_node::exchange::{ExchangeError, FetchOrder, OutputSpec};
use kith_store::ContentHash;
use support::{eventually, TestNode};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1] ^ seed)
        .collect()
}

/// The order `kith file get HASH --from HOLDER -o OUT` gives the node.
fn order(hash: ContentHash, holder: &TestNode, out: &std::path::Path) -> FetchOrder {
    let mut order = FetchOrder::new(hash, Some(holder.agent));
    order.folders = true;
    order.output = Some(OutputSpec {
        path: out.to_owned(),
        into_dir: false,
        force: false,
    });
    order
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_folder_writes_nothing_and_the_next_fetch_resumes() {
    let net = MemoryNet::new();
    let holder = TestNode::start(&net, |_| {}).await;
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("album");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for (i, name) in ["one.bin", "sub/two.bin", "three.bin"].iter().enumerate() {
        std::fs::write(dir.join(name), data(4_000_000, i as u8)).unwrap();
    }
    let hash = holder.put_folder(&dir, "album").await.hash;
    let fetcher = TestNode::start_slow(&net, 2_000_000).await;
    fetcher.link_to(&holder).await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("album");
    let ex = fetcher.node.exchange.clone();
    let first = order(hash, &holder, &out);
    let fetch = tokio::spawn(async move { ex.fetch_order(first).await });
    // The folder is one transfer, its total the folder's bytes, its bytes its files'.
    eventually("the second file is under way", || {
        fetcher
            .node
            .exchange
            .progress
            .list()
            .iter()
            .any(|t| t.hash == hash.to_hex() && t.bytes > 5_000_000)
    })
    .await;
    let shown = fetcher.node.exchange.progress.list();
    let folder = shown.iter().find(|t| t.hash == hash.to_hex()).unwrap();
    assert!(folder.total.unwrap() >= 12_000_000, "{folder:?}");
    assert_eq!(folder.name.as_deref(), Some("album"));
    assert!(fetcher.node.exchange.cancel_fetch(&hash));
    assert!(matches!(
        fetch.await.unwrap(),
        Err(ExchangeError::Cancelled)
    ));
    // Nothing written: no target, no temporary file or directory beside it.
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);
    assert!(fetcher.node.exchange.progress.list().is_empty());

    let received = fetcher.counter("items_received");
    let report = fetcher
        .node
        .exchange
        .fetch_order(order(hash, &holder, &out))
        .await
        .unwrap();
    assert!(report.folder);
    assert_eq!(report.files, Some(3));
    // Each file is a list and its chunks of 999,999 bytes, plus the manifest: every item
    // arrived once, what arrived before the cancel was not fetched again.
    let again = fetcher.counter("items_received") - received;
    let items = 3 * (1 + 4_000_000u64.div_ceil(999_999)) + 1;
    assert!(received > 1 && again < items, "{received} then {again}");
    assert_eq!(received + again, items);
    for (i, name) in ["one.bin", "sub/two.bin", "three.bin"].iter().enumerate() {
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            data(4_000_000, i as u8)
        );
    }
}

/// Files of one folder fetched at once that share a chunk ask the one holder for it at once:
/// the second request waits for the first (two fetches' requests for the same item from the
/// same peer cannot both be routed) instead of being asked again at once, for ever (a
/// fetch's request loop once spun on it).
#[tokio::test(start_paused = true)]
async fn files_fetched_at_once_that_share_chunks_all_arrive() {
    let net = MemoryNet::new();
    let holder = TestNode::start(&net, |_| {}).await;
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("shared");
    std::fs::create_dir_all(&dir).unwrap();
    // The same first chunks (999,999 bytes each), then each its own tail.
    let common = data(2_999_997, 7);
    let mut contents = Vec::new();
    for i in 0..6u8 {
        let mut content = common.clone();
        content.extend(data(10_000 + usize::from(i), i));
        std::fs::write(dir.join(format!("f{i}.bin")), &content).unwrap();
        contents.push(content);
    }
    let hash = holder.put_folder(&dir, "shared").await.hash;
    let fetcher = TestNode::start(&net, |_| {}).await;
    fetcher.link_to(&holder).await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("shared");
    let report = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        fetcher
            .node
            .exchange
            .fetch_order(order(hash, &holder, &out)),
    )
    .await
    .expect("the folder arrives")
    .unwrap();
    assert_eq!(report.files_fetched, Some(6));
    for (i, content) in contents.iter().enumerate() {
        assert_eq!(
            &std::fs::read(out.join(format!("f{i}.bin"))).unwrap(),
            content
        );
    }
}

/// A manifest that says its file is tiny when it is not: the file's fetch is held to a tiny
/// file's share of the window (one item), so however many such files run at once memory stays
/// within one window; the file arrives, its size gives the lie away, and nothing is written.
#[tokio::test(start_paused = true)]
async fn a_manifest_that_understates_a_size_is_fetched_in_a_small_window_and_refused() {
    use kith_store::folder::{FolderEntry, Manifest};
    let net = MemoryNet::new();
    let holder = TestNode::start(&net, |_| {}).await;
    let file = holder.put_bytes(data(6_000_000, 9), None).await;
    let manifest = Manifest {
        files: vec![FolderEntry {
            exec: false,
            hash: file,
            path: "small.txt".into(),
            size: 10,
        }],
        ..Manifest::default()
    }
    .encode();
    let hash = holder.put_bytes(manifest, Some("liar")).await;
    // 25 ms each way: a window of one item costs a round trip per item.
    let fetcher = TestNode::start_laggy(&net, std::time::Duration::from_millis(25)).await;
    fetcher.link_to(&holder).await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("liar");
    let start = tokio::time::Instant::now();
    let err = fetcher
        .node
        .exchange
        .fetch_order(order(hash, &holder, &out))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the folder says 10"), "{err}");
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);
    // One item at a time (the list, then its seven chunks one by one, after the manifest):
    // eight round trips at least, where a full window takes three.
    assert_eq!(fetcher.counter("items_received"), 9);
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
}
