//! Fair replication in process, on a slow link and tokio's paused clock, so that what runs
//! first is decided by the test and not by how fast the machine is.

mod support;

use kith_node::endpoint::MemoryNet;
use kith_store::ContentHash;
use support::{eventually, TestNode};

async fn put(node: &TestNode, len: usize, seed: u8) -> (ContentHash, Vec<u8>) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1] ^ seed)
        .collect();
    (node.put_bytes(bytes.clone(), None).await, bytes)
}

async fn holds(node: &TestNode, hash: ContentHash) -> bool {
    node.node
        .store
        .run(move |s| s.get(&hash))
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(start_paused = true)]
async fn a_users_fetch_goes_first_while_a_replication_from_the_same_peer_runs() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, |_| {}).await;
    // B reads what A sends at 1 MB/s: the 20 MB replication takes about 20 s of tokio's clock.
    let b = TestNode::start_slow(&net, 1_000_000).await;
    b.link_to(&a).await;
    let (big, _) = put(&a, 20_000_000, 4).await;
    let (small, wanted) = put(&a, 20_000, 5).await;
    a.node.sharing.share(big).await.unwrap();
    eventually("B's background replication is under way", || {
        b.counter("items_received") > 2
    })
    .await;
    assert!(!holds(&b, big).await, "the replication is still running");
    let report = b.node.exchange.fetch(small, Some(a.agent)).await.unwrap();
    assert_eq!(report.size, wanted.len() as u64);
    assert!(
        !holds(&b, big).await,
        "the user's file came first, before the background one finished"
    );
    assert!(
        b.counter("replications_retried") >= 1,
        "the replication gave way"
    );
    // And the replication then finishes by itself, without fetching anything twice.
    eventually("the replication finishes", || {
        b.counter("replications_completed") == 1
    })
    .await;
    assert!(holds(&b, big).await);
    let items = 1 + 20_000_000_u64.div_ceil(999_999);
    assert!(
        b.counter("items_received") <= items + 1,
        "{} items received for a file of {items}",
        b.counter("items_received")
    );
}

/// A shared folder is offered with its files' bytes and replicated whole: the manifest and
/// every file, recorded as a folder (before, only the manifest came, and the replica could
/// serve none of the files).
#[tokio::test(start_paused = true)]
async fn a_shared_folder_is_replicated_whole() {
    use kith_store::folder::ManifestLimits;
    let net = MemoryNet::new();
    let a = TestNode::start(&net, |_| {}).await;
    let b = TestNode::start(&net, |_| {}).await;
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("album");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("one.bin"), vec![1u8; 1_500_000]).unwrap();
    std::fs::write(dir.join("sub/two.bin"), vec![2u8; 300_000]).unwrap();
    let record = a.put_folder(&dir, "album").await;
    let hash = record.hash;
    b.link_to(&a).await;
    let shared = a.node.sharing.share(hash).await.unwrap();
    assert_eq!(shared.size, record.size + 1_800_000, "the files count");
    eventually("the replication finishes", || {
        b.counter("replications_completed") == 1
    })
    .await;
    let folder = b
        .node
        .store
        .run(move |s| {
            let folder = s.read_manifest(&hash, &ManifestLimits::default())?;
            let mut whole = true;
            for file in &folder.files {
                whole &= s.has_whole(&file.hash)?;
            }
            Ok::<_, kith_store::StoreError>((s.meta().get_folder(&hash)?, whole))
        })
        .await
        .unwrap();
    assert_eq!(folder.0.map(|f| (f.files, f.bytes)), Some((2, 1_800_000)));
    assert!(folder.1, "every file of the folder is here whole");
}
