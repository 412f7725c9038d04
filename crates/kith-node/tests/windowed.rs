//! Windowed item exchange between whole nodes on an in-memory network, tokio's clock paused:
//! windows across a long round trip, many sources at once, turn-taking peers, names and
//! output files, cancellation and resumption, and holders that lie, stall, send what nobody
//! asked for, or die mid-transfer.

mod support;

use kith_node::endpoint::{envelope, MemoryNet};
use kith_node::exchange::{ExchangeError, FetchOrder, OutputSpec};
use kith_proto::files::items::{Answer, Holding, Request, Response, CAPABILITY, ITEMS_COMMAND};
use kith_store::ContentHash;
use std::sync::Arc;
use std::time::Duration;
use support::{eventually, LaggyDialer, RawPeer, TestNode};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1] ^ seed)
        .collect()
}

/// Stores `bytes` on `node` under `name`; returns its address.
async fn put_named(node: &TestNode, bytes: Vec<u8>, name: &str) -> ContentHash {
    node.put_bytes(bytes, Some(name)).await
}

/// `fetcher` fetches `hash` from `holder` only; it must succeed.
async fn fetch_from(
    fetcher: &TestNode,
    hash: ContentHash,
    holder: &TestNode,
) -> kith_node::api::FetchReport {
    fetcher
        .node
        .exchange
        .fetch(hash, Some(holder.agent))
        .await
        .unwrap()
}

async fn stored(node: &TestNode, hash: ContentHash) -> Option<kith_store::FileRecord> {
    node.node.store.run(move |s| s.get(&hash)).await.unwrap()
}

/// A node whose links it dials hold every byte `one_way` each way at `rate` bytes a second.
async fn laggy(
    net: &MemoryNet,
    one_way_ms: u64,
    rate: Option<u64>,
    window: Option<u64>,
) -> TestNode {
    TestNode::start_configured(
        net,
        |config| {
            if let Some(window) = window {
                config.node_limits.fetch_window_bytes = window;
            }
        },
        |inner| {
            Arc::new(LaggyDialer {
                inner,
                one_way: Duration::from_millis(one_way_ms),
                bytes_per_sec: rate,
            })
        },
    )
    .await
}

async fn plain(net: &MemoryNet, window: Option<u64>) -> TestNode {
    TestNode::start_configured(
        net,
        |config| {
            if let Some(window) = window {
                config.node_limits.fetch_window_bytes = window;
            }
        },
        |inner| Arc::new(inner),
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn a_window_fills_a_long_path_where_turn_taking_crawls() {
    let net = MemoryNet::new();
    let holder = plain(&net, None).await;
    let hash = put_named(&holder, data(20_000_000, 1), "big.bin").await;
    // 50 ms round trip, 50 MB/s each way.
    let fetcher = laggy(&net, 25, Some(50_000_000), None).await;
    fetcher.link_to(&holder).await;
    let start = tokio::time::Instant::now();
    let report = fetch_from(&fetcher, hash, &holder).await;
    let windowed = start.elapsed();
    assert_eq!(report.size, 20_000_000);
    assert_eq!(report.sources.len(), 1, "the windowed path: {report:?}");
    // 20 MB at 50 MB/s is 0.4 s; a few round trips on top.
    assert!(windowed < Duration::from_millis(800), "{windowed:?}");

    // The same path to a holder that only takes turns: two round trips per item at least.
    let old = plain(&net, Some(0)).await;
    let hash = put_named(&old, data(20_000_000, 2), "big.bin").await;
    fetcher.link_to(&old).await;
    let start = tokio::time::Instant::now();
    let report = fetch_from(&fetcher, hash, &old).await;
    let turns = start.elapsed();
    assert_eq!(report.size, 20_000_000);
    assert!(report.sources.is_empty(), "the CIYAM session: {report:?}");
    assert!(
        turns > windowed * 3,
        "turn-taking {turns:?}, windowed {windowed:?}"
    );
}

/// `bytes`, stored as `name` by a holder 50 ms (a round trip) away, fetched from it alone:
/// the fetching node, its report, and how long the fetch took in virtual time.
async fn fetch_across_50ms(
    net: &MemoryNet,
    bytes: Vec<u8>,
    name: &str,
) -> (TestNode, kith_node::api::FetchReport, Duration) {
    let holder = plain(net, None).await;
    let hash = put_named(&holder, bytes, name).await;
    let fetcher = laggy(net, 25, None, None).await;
    fetcher.link_to(&holder).await;
    let start = tokio::time::Instant::now();
    let report = fetch_from(&fetcher, hash, &holder).await;
    let took = start.elapsed();
    (fetcher, report, took)
}

/// With one source, the file's root item is asked for with the question of who holds it:
/// a one-item file costs one round trip, not two (and a folder of small files, one per file).
#[tokio::test(start_paused = true)]
async fn a_small_file_from_one_source_takes_one_round_trip() {
    let net = MemoryNet::new();
    let (fetcher, report, took) = fetch_across_50ms(&net, data(200_000, 3), "small.bin").await;
    assert_eq!(report.size, 200_000);
    assert_eq!(report.items_fetched, 1);
    assert_eq!(
        report.items, 1,
        "the root asked with the question is counted as seen"
    );
    assert_eq!(report.name.as_deref(), Some("small.bin"));
    assert!(took >= Duration::from_millis(50), "{took:?}");
    assert!(
        took < Duration::from_millis(100),
        "two round trips: {took:?}"
    );
    assert_eq!(fetcher.counter("items_late"), 0);
}

/// One source gets the whole window from the start: the 13 leaves of a 12 MB file are
/// all asked for in the round trip after the root, not 4, then 8 (slow start), which took
/// one round trip more.
#[tokio::test(start_paused = true)]
async fn a_lone_source_is_asked_for_the_whole_window_at_once() {
    let net = MemoryNet::new();
    let (_, report, took) = fetch_across_50ms(&net, data(12_000_000, 5), "twelve.bin").await;
    assert_eq!(report.size, 12_000_000);
    assert_eq!(
        report.items_fetched, 14,
        "the root and 13 leaves: {report:?}"
    );
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(
        took < Duration::from_millis(150),
        "three round trips or more: {took:?}"
    );
}

/// The root item asked with the question of a source that does not hold the file: the fetch
/// says so after one round trip, the source's "missing" that follows is no offence, and the
/// next fetch from it works.
#[tokio::test(start_paused = true)]
async fn a_source_without_the_file_is_not_found_and_stays_usable() {
    let net = MemoryNet::new();
    let holder = plain(&net, None).await;
    let fetcher = laggy(&net, 25, None, None).await;
    fetcher.link_to(&holder).await;
    let absent = kith_store::ContentHash([9u8; 32]);
    let start = tokio::time::Instant::now();
    let err = fetcher
        .node
        .exchange
        .fetch(absent, Some(holder.agent))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kith_node::exchange::ExchangeError::NotFound { .. }),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    let hash = put_named(&holder, data(300_000, 4), "after.bin").await;
    let report = fetch_from(&fetcher, hash, &holder).await;
    assert_eq!(report.size, 300_000);
    assert_eq!(fetcher.counter("items_unsolicited"), 0);
    assert_eq!(fetcher.counter("fetch_sources_dropped"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_does_not_list_the_capability_still_fetches_by_turns() {
    let net = MemoryNet::new();
    let holder = plain(&net, None).await;
    let hash = put_named(&holder, data(3_000_000, 3), "x").await;
    let fetcher = plain(&net, Some(0)).await;
    fetcher.link_to(&holder).await;
    let report = fetcher.node.exchange.fetch(hash, None).await.unwrap();
    assert_eq!(report.size, 3_000_000);
    assert!(report.sources.is_empty());
    assert!(stored(&fetcher, hash).await.is_some());
}

#[tokio::test(start_paused = true)]
async fn three_holders_share_the_work_and_the_file_keeps_its_name() {
    let net = MemoryNet::new();
    let bytes = data(30_000_000, 4);
    let fetcher = TestNode::start_slow(&net, 10_000_000).await;
    let mut holders = Vec::new();
    let mut hash = None;
    for _ in 0..3 {
        let holder = plain(&net, None).await;
        hash = Some(put_named(&holder, bytes.clone(), "holiday.tar").await);
        fetcher.link_to(&holder).await;
        holders.push(holder);
    }
    let hash = hash.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut order = FetchOrder::new(hash, None);
    order.output = Some(OutputSpec {
        path: dir.path().to_owned(),
        into_dir: true,
        force: false,
    });
    let start = tokio::time::Instant::now();
    let report = fetcher.node.exchange.fetch_order(order).await.unwrap();
    let took = start.elapsed();
    assert_eq!(report.name.as_deref(), Some("holiday.tar"));
    assert_eq!(
        std::fs::read(dir.path().join("holiday.tar")).unwrap(),
        bytes
    );
    assert_eq!(
        stored(&fetcher, hash).await.unwrap().name.as_deref(),
        Some("holiday.tar")
    );
    assert_eq!(report.sources.len(), 3);
    for share in &report.sources {
        assert!(
            share.items >= 5,
            "every holder did its part: {:?}",
            report.sources
        );
    }
    // Three links at 10 MB/s: well under the 3 s one of them would take.
    assert!(took < Duration::from_millis(1600), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_source_that_dies_mid_transfer_is_replaced_by_the_others() {
    let net = MemoryNet::new();
    let bytes = data(20_000_000, 5);
    let fetcher = TestNode::start_slow(&net, 5_000_000).await;
    let (a, b) = (plain(&net, None).await, plain(&net, None).await);
    let hash = put_named(&a, bytes.clone(), "f").await;
    put_named(&b, bytes.clone(), "f").await;
    fetcher.link_to(&a).await;
    fetcher.link_to(&b).await;
    let ex = fetcher.node.exchange.clone();
    let fetch = tokio::spawn(async move { ex.fetch(hash, None).await });
    eventually("the transfer is under way", || {
        fetcher.counter("items_received") > 3
    })
    .await;
    a.stop().await;
    let report = fetch.await.unwrap().unwrap();
    assert_eq!(report.size, 20_000_000);
    let gone = report
        .sources
        .iter()
        .find(|s| s.agent == a.agent.to_string())
        .unwrap();
    assert_eq!(
        gone.dropped.as_deref(),
        Some("gone"),
        "{:?}",
        report.sources
    );
    let copy = fetcher
        .node
        .store
        .run(move |s| {
            let mut out = Vec::new();
            s.get_to_writer(&hash, &mut out).map(|_| out)
        })
        .await
        .unwrap();
    assert_eq!(copy, bytes);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_fetch_keeps_what_arrived_and_the_next_one_resumes() {
    let net = MemoryNet::new();
    let holder = plain(&net, None).await;
    let hash = put_named(&holder, data(20_000_000, 6), "f").await;
    let fetcher = TestNode::start_slow(&net, 2_000_000).await;
    fetcher.link_to(&holder).await;
    let ex = fetcher.node.exchange.clone();
    let fetch = tokio::spawn(async move { ex.fetch(hash, Some(holder.agent)).await });
    eventually("a few items arrived", || {
        fetcher.counter("items_received") >= 5
    })
    .await;
    assert!(fetcher.node.exchange.cancel_fetch(&hash));
    assert!(matches!(
        fetch.await.unwrap(),
        Err(ExchangeError::Cancelled)
    ));
    let before = fetcher.counter("items_received");
    let report = fetch_from(&fetcher, hash, &holder).await;
    assert_eq!(report.items, 1 + 20_000_000u64.div_ceil(999_999));
    assert!(
        report.items_fetched <= report.items - before + 1,
        "{} fetched again of {}; {before} were kept",
        report.items_fetched,
        report.items
    );
    // Nothing staged is left behind.
    let store = fetcher.node.store.clone();
    let tmp = store
        .run(|s| Ok::<_, kith_store::StoreError>(s.blobs().root().join("tmp")))
        .await
        .unwrap();
    // (Files: the output journal's directory lives there too.)
    let left = std::fs::read_dir(tmp).unwrap().flatten();
    assert_eq!(left.filter(|e| e.path().is_file()).count(), 0);
}

/// What a rogue holder does with the requests it gets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rogue {
    /// Sends garbage under each requested hash.
    Lies,
    /// Never answers a `G`.
    Stalls,
    /// Sends an item nobody asked for.
    Strays,
}

/// A peer that says it holds `file` whole (and speaks windowed exchange), then behaves as
/// `rogue`.
async fn rogue(victim: &TestNode, file: ContentHash, size: u64, rogue: Rogue) {
    let mut raw = RawPeer::known_to(victim, victim.net.host()).await;
    let version =
        format!(r#"{{"protocols":[1],"software":"rogue","capabilities":["{CAPABILITY}"]}}"#);
    raw.send(&envelope("version", version.into_bytes())).await;
    tokio::spawn(async move {
        while let Some(env) = raw.recv().await {
            if env.command.as_str() != ITEMS_COMMAND {
                continue;
            }
            let replies = match Request::decode(&env) {
                Ok(Request::Query(asked)) => vec![Response::Answer(Answer {
                    file: asked,
                    holding: if asked == file {
                        Holding::Whole
                    } else {
                        Holding::None
                    },
                    size,
                    name: Some("bait".into()),
                })],
                Ok(Request::Get(hashes)) => match rogue {
                    Rogue::Lies => hashes
                        .into_iter()
                        .map(|hash| Response::Item {
                            hash,
                            item: bytes::Bytes::from(vec![1u8; 1000]),
                        })
                        .collect(),
                    Rogue::Stalls => Vec::new(),
                    Rogue::Strays => vec![Response::Item {
                        hash: ContentHash([9; 32]),
                        item: bytes::Bytes::from_static(b"\\x01stray"),
                    }],
                },
                _ => Vec::new(),
            };
            for reply in replies {
                raw.send(&reply.encode()).await;
            }
        }
    });
}

async fn fetch_beside(
    rogue_kind: Rogue,
    rate: u64,
) -> (TestNode, kith_node::api::FetchReport, Vec<u8>, ContentHash) {
    let net = MemoryNet::new();
    let bytes = data(12_000_000, 7);
    let honest = plain(&net, None).await;
    let hash = put_named(&honest, bytes.clone(), "real.bin").await;
    let victim = TestNode::start_slow(&net, rate).await;
    victim.link_to(&honest).await;
    rogue(&victim, hash, bytes.len() as u64, rogue_kind).await;
    eventually("the rogue is linked", || {
        victim.node.endpoint.linked().len() == 2
    })
    .await;
    let report = victim.node.exchange.fetch(hash, None).await.unwrap();
    (victim, report, bytes, hash)
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_sends_wrong_items_is_dropped_counted_and_the_fetch_goes_on() {
    let (victim, report, bytes, hash) = fetch_beside(Rogue::Lies, 20_000_000).await;
    assert_eq!(report.size, bytes.len() as u64);
    assert!(report.wrong_items >= 1, "{report:?}");
    assert!(victim.counter("items_rejected") >= 1);
    let liar = report.sources.iter().find(|s| s.wrong_items > 0).unwrap();
    assert_eq!(liar.dropped.as_deref(), Some("wrongitem"));
    assert_eq!(liar.items, 1, "one wrong item is all it takes");
    let ledger = victim
        .node
        .exchange
        .uploads
        .ledger(&liar.agent.parse().unwrap());
    assert!(ledger.bad_items >= 1, "counted against it");
    assert_eq!(
        report.name.as_deref(),
        Some("real.bin"),
        "never named by a liar"
    );
    assert!(stored(&victim, hash).await.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_stalls_mid_window_loses_its_share() {
    // Slow enough for the stall timeout to pass while the honest holder carries on.
    let (victim, report, bytes, _) = fetch_beside(Rogue::Stalls, 2_000_000).await;
    assert_eq!(report.size, bytes.len() as u64);
    let staller = report.sources.iter().find(|s| s.items == 0).unwrap();
    assert!(victim.counter("fetch_sources_stalled") >= 1, "{report:?}");
    assert_ne!(staller.agent, report.from);
    assert_eq!(
        report.name.as_deref(),
        Some("real.bin"),
        "named by the source that delivered"
    );
}

#[tokio::test(start_paused = true)]
async fn an_item_nobody_asked_for_is_refused_and_its_sender_dropped() {
    let (victim, report, bytes, _) = fetch_beside(Rogue::Strays, 20_000_000).await;
    assert_eq!(report.size, bytes.len() as u64);
    assert!(victim.counter("items_unsolicited") >= 1);
    let stray = ContentHash([9; 32]);
    let kept = victim
        .node
        .store
        .run(move |s| s.blobs().contains(&stray))
        .await
        .unwrap();
    assert!(!kept, "nothing of it was stored");
}
