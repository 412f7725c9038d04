//! Posts: bad input refused and counted, eviction, and a 50-node simulation that measures how
//! many posts a second spread to every node (signature checks included).

use kith_crypto::identity::ContentKey;
use kith_posts::message::Message;
use kith_posts::post::{self, PostError};
use kith_posts::{Community, PostsLimits, PostsNode};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::VecDeque;

fn author(rng: &mut StdRng) -> ContentKey {
    ContentKey::generate(rng)
}

/// Hands a post to `node` the way the exchange does (announce, getdata, postdata).
fn deliver(node: &mut PostsNode<u32>, from: u32, item: Vec<u8>) {
    use sha2::Digest;
    let hash: [u8; 32] = sha2::Sha256::digest(&item).into();
    node.handle(0, from, Message::Announce(vec![hash]));
    while node.poll_transmit().is_some() {}
    node.handle(0, from, Message::PostData(item));
}

#[test]
fn bad_posts_are_refused_and_counted() {
    let mut rng = StdRng::seed_from_u64(1);
    let science = Community::open("science").unwrap();
    let secret = Community::closed("club", &[7; 32]).unwrap();
    let me = author(&mut rng);
    let mut node = PostsNode::<u32>::new(PostsLimits::default());
    node.know(science.clone(), true);
    node.neighbour_up(9);

    // A bad signature: one bit of the body flipped.
    let mut item = post::create(&me, &science, 1, "hello", false, &mut rng).unwrap();
    let last = item.len() - 1;
    item[last] ^= 1;
    deliver(&mut node, 9, item);
    assert_eq!(node.counters().refused_bad_signature, 1);

    // Sealed to a community this node does not know: refused, not relayed.
    let sealed = post::create(&me, &secret, 1, "members only", true, &mut rng).unwrap();
    deliver(&mut node, 9, sealed.clone());
    assert_eq!(node.counters().refused_unknown_community, 1);
    assert_eq!(
        post::check(&sealed, 65536, |_| None).unwrap_err(),
        PostError::UnknownCommunity
    );
    // ... and readable by one that knows it.
    let opened = post::check(&sealed, 65536, |id| (id == &secret.id()).then_some(&secret)).unwrap();
    assert_eq!(opened.body, "members only");

    // Moved to another community: the one inside the signature differs.
    let mut moved = post::create(&me, &science, 1, "x", false, &mut rng).unwrap();
    moved[2..34].copy_from_slice(&secret.id());
    deliver(&mut node, 9, moved);
    assert_eq!(node.counters().refused_malformed, 1);

    // Unsolicited, oversized, truncated.
    let good = post::create(
        &me,
        &science,
        2,
        "<script>alert(1)</script>",
        false,
        &mut rng,
    )
    .unwrap();
    node.handle(0, 9, Message::PostData(good.clone()));
    assert_eq!(node.counters().refused_unsolicited, 1);
    deliver(&mut node, 9, vec![1u8; 70_000]);
    deliver(&mut node, 9, good[..20].to_vec());
    assert_eq!(node.counters().refused_malformed, 3);

    // A blocked author.
    let troll = author(&mut rng);
    node.block(troll.public_key(), true);
    deliver(
        &mut node,
        9,
        post::create(&troll, &science, 3, "spam", false, &mut rng).unwrap(),
    );
    assert_eq!(node.counters().refused_blocked, 1);

    // The good one is kept as its author wrote it (markup is the reader's to escape).
    deliver(&mut node, 9, good);
    let posts = node.posts(&science.id());
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body, "<script>alert(1)</script>");
    assert_eq!(posts[0].author, me.public_key());
}

#[test]
fn relayed_posts_are_evicted_before_followed_ones() {
    let mut rng = StdRng::seed_from_u64(2);
    let (followed, other) = (
        Community::open("mine").unwrap(),
        Community::open("theirs").unwrap(),
    );
    let me = author(&mut rng);
    let limits = PostsLimits {
        max_posts: 3,
        ..PostsLimits::default()
    };
    let mut node = PostsNode::<u32>::new(limits);
    node.know(followed.clone(), true);
    node.know(other.clone(), false);
    node.neighbour_up(1);
    let mine: Vec<_> = (0..2)
        .map(|i| post::create(&me, &followed, i, "keep", false, &mut rng).unwrap())
        .collect();
    for item in &mine {
        deliver(&mut node, 1, item.clone());
    }
    for i in 0..5 {
        deliver(
            &mut node,
            1,
            post::create(&me, &other, i, "relay", false, &mut rng).unwrap(),
        );
    }
    assert_eq!(node.store().len(), 3);
    assert_eq!(node.posts(&followed.id()).len(), 2, "followed posts stay");
    assert_eq!(node.post_count(&followed.id()), 2);
    assert_eq!(node.post_count(&other.id()), 1, "evictions counted out");
    assert_eq!(
        node.posts(&other.id()).len(),
        1,
        "only the newest relayed post is left"
    );
    assert_eq!(node.store().evicted(), 4);
}

/// What a node announces to a neighbour that comes up: its newest posts, newest first,
/// whether kept as followed or relayed (the two arrival orders merged).
#[test]
fn the_newest_posts_are_the_last_arrived_followed_or_relayed() {
    use sha2::Digest;
    let mut rng = StdRng::seed_from_u64(11);
    let followed = Community::open("followed").unwrap();
    let other = Community::open("other").unwrap();
    let me = author(&mut rng);
    let mut node = PostsNode::<u32>::new(PostsLimits::default());
    node.know(followed.clone(), true);
    node.know(other.clone(), false);
    let mut arrived = Vec::new();
    for i in 0..12u64 {
        // An irregular mix: followed, followed, relayed, ...
        let community = if i % 3 == 2 || i == 7 {
            &other
        } else {
            &followed
        };
        let item = post::create(&me, community, i, "hello", false, &mut rng).unwrap();
        arrived.push(<[u8; 32]>::from(sha2::Sha256::digest(&item)));
        deliver(&mut node, 1, item);
    }
    assert_eq!(node.store().len(), 12);
    let newest: Vec<[u8; 32]> = arrived.iter().rev().copied().collect();
    assert_eq!(node.store().newest(5), newest[..5].to_vec());
    assert_eq!(node.store().newest(100), newest);
    assert!(node.store().newest(0).is_empty());
}

#[test]
fn posts_spread_across_fifty_nodes() {
    const NODES: u32 = 50;
    const POSTS: usize = 200;
    let mut rng = StdRng::seed_from_u64(3);
    let science = Community::open("science").unwrap();
    let mut nodes: Vec<PostsNode<u32>> = (0..NODES)
        .map(|_| {
            let mut n = PostsNode::new(PostsLimits::default());
            n.know(science.clone(), true);
            n
        })
        .collect();
    // A ring plus two random links per node: connected, a few hops across.
    let mut links = std::collections::BTreeSet::new();
    for i in 0..NODES {
        links.insert((i.min((i + 1) % NODES), i.max((i + 1) % NODES)));
        for _ in 0..2 {
            let j = rng.gen_range(0..NODES);
            if j != i {
                links.insert((i.min(j), i.max(j)));
            }
        }
    }
    for &(a, b) in &links {
        nodes[a as usize].neighbour_up(b);
        nodes[b as usize].neighbour_up(a);
    }
    let authors: Vec<ContentKey> = (0..10).map(|_| author(&mut rng)).collect();
    let items: Vec<Vec<u8>> = (0..POSTS)
        .map(|i| {
            post::create(
                &authors[i % 10],
                &science,
                i as u64,
                &format!("post {i}"),
                i % 4 == 0,
                &mut rng,
            )
            .unwrap()
        })
        .collect();
    let start = std::time::Instant::now();
    let mut queue: VecDeque<(u32, u32, Message)> = VecDeque::new();
    let mut messages = 0u64;
    for item in &items {
        let at = rng.gen_range(0..NODES);
        nodes[at as usize].publish(item).unwrap();
        // Drain everything each node wants to send into one FIFO (a network with equal delays).
        for (n, node) in nodes.iter_mut().enumerate() {
            while let Some((to, m)) = node.poll_transmit() {
                queue.push_back((n as u32, to, m));
            }
        }
        while let Some((from, to, m)) = queue.pop_front() {
            messages += 1;
            let node = &mut nodes[to as usize];
            node.handle(0, from, m);
            while let Some((next, m)) = node.poll_transmit() {
                queue.push_back((to, next, m));
            }
        }
    }
    let elapsed = start.elapsed();
    for node in &nodes {
        assert_eq!(
            node.posts(&science.id()).len(),
            POSTS,
            "every post reached every node"
        );
        assert_eq!(node.counters().refused_bad_signature, 0);
    }
    let deliveries = (POSTS as f64) * f64::from(NODES - 1);
    println!(
        "{NODES} nodes, {} links: {POSTS} posts (a quarter sealed) reached every node in {:.0} ms: \
         {:.0} posts/s spread to all {NODES} nodes, {:.0} post deliveries/s (each checked), {messages} messages",
        links.len(),
        elapsed.as_secs_f64() * 1000.0,
        POSTS as f64 / elapsed.as_secs_f64(),
        deliveries / elapsed.as_secs_f64(),
    );
}
