//! The posts tables on both backends: posts kept and evicted in one transaction, communities
//! (a closed one's secret included) and authors' flags kept across reopening.

use kith_store::meta::{MetaDb, PostCommunityRow, PostRow, PostgresMeta, SqliteMeta};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn post(n: u8, followed: bool) -> PostRow {
    PostRow {
        hash: format!("{n:064x}"),
        community: "c".repeat(64),
        followed,
        item: vec![n; 40],
    }
}

fn posts_round_trip(open: &dyn Fn() -> Box<dyn MetaDb>) {
    let db = open();
    db.posts_apply(&[post(1, true), post(2, false), post(3, false)], &[], 10)
        .unwrap();
    // Stored again (a duplicate) changes nothing; evicted goes.
    db.posts_apply(&[post(1, true)], &[post(2, false).hash], 11)
        .unwrap();
    db.posts_set_community(
        &PostCommunityRow {
            id: "a".repeat(64),
            name: "science".into(),
            secret: None,
            followed: true,
        },
        10,
    )
    .unwrap();
    db.posts_set_community(
        &PostCommunityRow {
            id: "b".repeat(64),
            name: "club".into(),
            secret: Some(vec![7; 32]),
            followed: false,
        },
        11,
    )
    .unwrap();
    db.posts_set_author(&"d".repeat(66), Some(true), None)
        .unwrap();
    db.posts_set_author(&"d".repeat(66), None, Some(true))
        .unwrap();
    drop(db);

    let db = open();
    let kept = db.posts_all().unwrap();
    assert_eq!(kept, vec![post(1, true), post(3, false)]);
    let communities = db.posts_communities().unwrap();
    assert_eq!(communities.len(), 2);
    assert_eq!(communities[0].name, "science");
    assert!(communities[0].followed && communities[0].secret.is_none());
    assert_eq!(communities[1].secret.as_deref(), Some(&[7u8; 32][..]));
    let authors = db.posts_authors().unwrap();
    assert_eq!(authors.len(), 1);
    assert!(authors[0].blocked && authors[0].muted);
    db.posts_set_author(&"d".repeat(66), Some(false), None)
        .unwrap();
    assert!(!db.posts_authors().unwrap()[0].blocked);
}

#[test]
fn sqlite_posts_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kith.db");
    posts_round_trip(&|| Box::new(SqliteMeta::open(&path).unwrap()));
}

#[test]
#[cfg_attr(
    not(kith_test_postgres),
    ignore = "needs PostgreSQL: set KITH_TEST_POSTGRES=postgres://user:pass@host/db (.ci/run does)"
)]
fn postgres_posts_round_trip() {
    let url = std::env::var("KITH_TEST_POSTGRES").expect("KITH_TEST_POSTGRES");
    let schema = format!(
        "kith_posts_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    posts_round_trip(&|| Box::new(PostgresMeta::connect(&url, Some(&schema)).unwrap()));
}
