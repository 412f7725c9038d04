//! Posts over links, in process on paused time: a post spreads A → B → C; a sealed post is
//! read by those who know the community and refused (and counted) by those who do not; a
//! badly signed post is refused and counted; a peer that links late catches up; the store
//! stays within its bound, relayed posts going first, on disk as in memory.

mod support;

use kith_node::api::{PostList, PostsReply, PostsRequest};
use kith_node::endpoint::{envelope, MemoryNet};
use kith_posts::message::{Message, ANNOUNCE, POSTDATA};
use kith_posts::{post, Community};
use sha2::{Digest, Sha256};
use support::{eventually, RawPeer, TestNode};

async fn ask(node: &TestNode, request: PostsRequest) -> PostsReply {
    node.node.posts.request(request).await.unwrap()
}

async fn write(node: &TestNode, community: &str, text: &str, sealed: bool) -> String {
    match ask(
        node,
        PostsRequest::Post {
            community: community.into(),
            text: text.into(),
            sealed,
        },
    )
    .await
    {
        PostsReply::Posted { hash, .. } => hash,
        other => panic!("not posted: {other:?}"),
    }
}

fn list(node: &TestNode, community: &str) -> PostList {
    node.node.posts.list(community, false).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_post_on_a_reaches_c_through_b_signed_and_timed() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, |_| {}).await;
    let b = TestNode::start(&net, |_| {}).await;
    let c = TestNode::start(&net, |_| {}).await;
    b.link_to(&a).await;
    c.link_to(&b).await;
    let text = "<script>alert(1)</script> & hello";
    let hash = write(&a, "Science", text, false).await;
    eventually("C holds A's post", || {
        list(&c, "science").posts.iter().any(|p| p.hash == hash)
    })
    .await;
    let seen = &list(&c, "science").posts[0];
    assert_eq!(seen.text, text, "kept as written; the page escapes it");
    assert_eq!(seen.author, hex::encode(a.identity.content_public()));
    assert_eq!(seen.signature, "verified");
    assert!(!seen.mine && !seen.sealed);
    assert!(seen.time.ends_with('Z'), "RFC 3339: {}", seen.time);
    assert!(list(&a, "science").posts[0].mine);
    // B relayed it without following the community.
    assert_eq!(list(&b, "science").posts.len(), 1);
    assert!(!list(&b, "science").followed);
    // Once: nobody stored it twice.
    assert_eq!(c.counter("posts_stored"), 1);
    for n in [&a, &b, &c] {
        n.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_sealed_post_is_read_by_those_who_know_the_community_only() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, |_| {}).await;
    let knows = TestNode::start(&net, |_| {}).await;
    let stranger = TestNode::start(&net, |_| {}).await;
    knows.link_to(&a).await;
    stranger.link_to(&a).await;
    ask(
        &knows,
        PostsRequest::Follow {
            community: "club".into(),
            secret: None,
        },
    )
    .await;
    let hash = write(&a, "club", "only for the club", true).await;
    eventually("the member reads it", || {
        list(&knows, "club").posts.iter().any(|p| p.hash == hash)
    })
    .await;
    assert!(list(&knows, "club").posts[0].sealed);
    assert_eq!(list(&knows, "club").posts[0].text, "only for the club");
    eventually("the stranger refuses it", || {
        stranger.counter("posts_refused_unknown_community") == 1
    })
    .await;
    assert!(list(&stranger, "club").posts.is_empty());
    // A closed community of the same name is another community: its members do not see it.
    let secret = hex::encode([7u8; 32]);
    ask(
        &stranger,
        PostsRequest::Follow {
            community: "club".into(),
            secret: Some(secret),
        },
    )
    .await;
    assert!(list(&stranger, "club").posts.is_empty());
    for n in [&a, &knows, &stranger] {
        n.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_badly_signed_post_and_malformed_messages_are_refused_and_counted() {
    let net = MemoryNet::new();
    let victim = TestNode::start(&net, |_| {}).await;
    let mut raw = RawPeer::known_to(&victim, net.host()).await;
    let key = kith_crypto::identity::ContentKey::generate(&mut rand::rngs::OsRng);
    let community = Community::open("science").unwrap();
    let mut item =
        post::create(&key, &community, 1, "forged", false, &mut rand::rngs::OsRng).unwrap();
    let last = item.len() - 1;
    item[last] ^= 1; // the body changed after signing
    let hash: [u8; 32] = Sha256::digest(&item).into();
    let announce = Message::Announce(vec![hash]);
    raw.send(&envelope(ANNOUNCE, announce.encode())).await;
    // The victim asks for it by hash.
    loop {
        let asked = raw.recv().await.expect("a getdata");
        if asked.command.as_str() == "getdata" {
            break;
        }
    }
    raw.send(&envelope(POSTDATA, item)).await;
    // Junk: a list whose count lies, and an oversized post nobody asked for.
    raw.send(&envelope(ANNOUNCE, vec![0xff, 0xff, 1, 2, 3]))
        .await;
    raw.send(&envelope(POSTDATA, vec![1u8; 70_000])).await;
    eventually("all three refused", || {
        victim.counter("posts_refused_bad_signature") == 1
            && victim.counter("posts_refused_malformed_message") == 2
    })
    .await;
    assert!(list(&victim, "science").posts.is_empty());
    victim.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_links_late_catches_up() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, |_| {}).await;
    for i in 0..5 {
        write(&a, "news", &format!("post {i}"), false).await;
    }
    let late = TestNode::start(&net, |_| {}).await;
    late.link_to(&a).await;
    eventually("the late peer holds all five", || {
        list(&late, "news").posts.len() == 5
    })
    .await;
    a.stop().await;
    late.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_store_is_bounded_relayed_posts_going_first_on_disk_too() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, |_| {}).await;
    let small = TestNode::start_configured(
        &net,
        |config| config.node_limits.posts_max = 3,
        |d| std::sync::Arc::new(d),
    )
    .await;
    small.link_to(&a).await;
    ask(
        &small,
        PostsRequest::Follow {
            community: "mine".into(),
            secret: None,
        },
    )
    .await;
    write(&a, "mine", "followed", false).await;
    eventually("the followed post arrives", || {
        list(&small, "mine").posts.len() == 1
    })
    .await;
    for i in 0..4 {
        write(&a, "relay", &format!("relayed {i}"), false).await;
    }
    eventually("two relayed posts evicted", || {
        small.counter("posts_stored") == 5 && small.counter("posts_evicted") == 2
    })
    .await;
    // The followed post stayed; the newest relayed ones are kept.
    assert_eq!(list(&small, "mine").posts.len(), 1);
    let mut relayed: Vec<String> = list(&small, "relay")
        .posts
        .into_iter()
        .map(|p| p.text)
        .collect();
    relayed.sort();
    assert_eq!(relayed, ["relayed 2", "relayed 3"]);
    // The database holds what memory holds.
    let rows = small
        .node
        .store
        .run(|s| s.meta().posts_all())
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    a.stop().await;
    small.stop().await;
}
