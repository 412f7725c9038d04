//! Strangers' anonymous items (the CIYAM peer port's `put`s), against every metadata backend:
//! SQLite always, PostgreSQL when `KITH_TEST_POSTGRES` holds a URL (each test in its own
//! schema). The quota, charged in disk blocks, with the heaviest address evicted first; the
//! deadline; the garbage collector and `kith file rm` meeting the table; shared items.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use kith_store::meta::{AnonymousOutcome, MetaDb, PostgresMeta, SqliteMeta, ANONYMOUS_BLOCK};
use kith_store::{AnonymousPut, BlobStore, ContentHash, FileStore, GcOptions, ItemType};

const MAX: usize = 10_000;
const NOW: i64 = 1_700_000_000;
const HOUR: u64 = 3600;

enum Backend {
    Sqlite,
    Postgres(String),
}

struct Fixture<'a> {
    dir: tempfile::TempDir,
    backend: &'a Backend,
    schema: Option<String>,
    clock: Arc<AtomicI64>,
}

static SCHEMA_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl<'a> Fixture<'a> {
    fn new(backend: &'a Backend) -> Fixture<'a> {
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres(_) => Some(format!(
                "kith_anon_{}_{}",
                std::process::id(),
                SCHEMA_COUNTER.fetch_add(1, Ordering::SeqCst)
            )),
        };
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            backend,
            schema,
            clock: Arc::new(AtomicI64::new(NOW)),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    fn meta(&self) -> Box<dyn MetaDb> {
        match self.backend {
            Backend::Sqlite => {
                Box::new(SqliteMeta::open(&self.dir.path().join("kith.db")).unwrap())
            }
            Backend::Postgres(url) => {
                Box::new(PostgresMeta::connect(url, self.schema.as_deref()).unwrap())
            }
        }
    }

    /// A store whose clock is the fixture's (moved with `set_now`).
    fn store(&self) -> FileStore {
        let blobs = BlobStore::with_max_item_size(self.root(), MAX).unwrap();
        let clock = Arc::clone(&self.clock);
        FileStore::new(blobs, self.meta()).with_clock(move || clock.load(Ordering::SeqCst))
    }

    fn set_now(&self, now: i64) {
        self.clock.store(now, Ordering::SeqCst);
    }
}

impl Drop for Fixture<'_> {
    fn drop(&mut self) {
        if let (Backend::Postgres(url), Some(schema)) = (self.backend, &self.schema) {
            if let Ok(mut client) = ::postgres::Client::connect(url, ::postgres::NoTls) {
                let _ =
                    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
            }
        }
    }
}

fn put(client: &str, quota: u64, now: i64) -> AnonymousPut<'_> {
    AnonymousPut {
        client,
        quota,
        ttl_secs: HOUR,
        now,
    }
}

/// An item of `len` content bytes, different for each `seed`.
fn item(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

fn store_anon(store: &FileStore, content: &[u8], put: &AnonymousPut<'_>) -> ContentHash {
    let stored = store
        .put_anonymous(None, ItemType::BLOB, content, put)
        .unwrap();
    assert!(stored.is_stored(), "{stored:?}");
    stored.hash.unwrap()
}

fn quota_is_charged_in_blocks_and_the_heaviest_address_makes_room(backend: &Backend) {
    let f = Fixture::new(backend);
    let store = f.store();
    let quota = 4 * ANONYMOUS_BLOCK;
    // One byte costs a block; a block's worth plus the type byte costs two.
    let small = store_anon(&store, b"x", &put("198.51.100.7", quota, NOW));
    let usage = store.meta().anonymous_usage().unwrap();
    assert_eq!((usage.items, usage.bytes), (1, ANONYMOUS_BLOCK));
    // An attacker fills the rest, item after item, each a block.
    let mut flood = Vec::new();
    for i in 0..10u8 {
        let put = put("203.0.113.9", quota, NOW + i64::from(i) + 1);
        flood.push(store_anon(&store, &item(100, i), &put));
        let usage = store.meta().anonymous_usage().unwrap();
        assert!(usage.bytes <= quota, "{usage:?}");
    }
    // The flood evicted its own oldest items, never the other address's.
    assert!(store.blobs().contains(&small).unwrap());
    let held: Vec<ContentHash> = store
        .meta()
        .list_anonymous()
        .unwrap()
        .into_iter()
        .map(|a| a.hash)
        .collect();
    assert_eq!(held, [&[small][..], &flood[7..]].concat());
    for gone in &flood[..7] {
        assert!(
            !store.blobs().contains(gone).unwrap(),
            "evicted items leave the disk"
        );
    }
    // None of it is a file of the user's.
    assert!(store.list().unwrap().is_empty());

    // An item larger than the whole quota is refused before anything is written.
    let big = item(4 * ANONYMOUS_BLOCK as usize, 1);
    let refused = store
        .put_anonymous(
            None,
            ItemType::BLOB,
            &big,
            &put("192.0.2.1", quota, NOW + 20),
        )
        .unwrap();
    assert_eq!(refused.outcome, AnonymousOutcome::Refused);
    let big_hash = ContentHash::compute(ItemType::BLOB, &big);
    assert!(!store.blobs().contains(&big_hash).unwrap());

    // A two-block item from the flooding address: it pays for the room itself again.
    let two_blocks = item(ANONYMOUS_BLOCK as usize, 2);
    let stored = store
        .put_anonymous(
            None,
            ItemType::BLOB,
            &two_blocks,
            &put("203.0.113.9", quota, NOW + 30),
        )
        .unwrap();
    assert_eq!(stored.outcome, AnonymousOutcome::Recorded { evicted: 2 });
    assert!(store.blobs().contains(&small).unwrap());
}

fn items_expire_and_the_same_item_again_is_charged_once(backend: &Backend) {
    let f = Fixture::new(backend);
    let store = f.store();
    let quota = 16 * ANONYMOUS_BLOCK;
    let a = store_anon(&store, b"first", &put("198.51.100.7", quota, NOW));
    let again = store
        .put_anonymous(
            None,
            ItemType::BLOB,
            b"first",
            &put("192.0.2.1", quota, NOW + 10),
        )
        .unwrap();
    assert_eq!(again.outcome, AnonymousOutcome::AlreadyHeld);
    let rows = store.meta().list_anonymous().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].expires_at, NOW + HOUR as i64, "not extended");
    assert_eq!(rows[0].client, "198.51.100.7");

    // Nothing is due a second before the deadline; at it, row and item go.
    assert_eq!(store.expire_anonymous(NOW + HOUR as i64 - 1).unwrap(), 0);
    assert!(store.blobs().contains(&a).unwrap());
    assert_eq!(store.expire_anonymous(NOW + HOUR as i64).unwrap(), 1);
    assert!(!store.blobs().contains(&a).unwrap());
    assert_eq!(store.meta().anonymous_usage().unwrap().items, 0);

    // A later put expires what is due on its way.
    let b = store_anon(&store, b"second", &put("198.51.100.7", quota, NOW));
    let c = store_anon(
        &store,
        b"third",
        &put("198.51.100.7", quota, NOW + 2 * HOUR as i64),
    );
    assert!(!store.blobs().contains(&b).unwrap());
    assert!(store.blobs().contains(&c).unwrap());
}

fn an_item_a_user_file_also_uses_outlives_its_row_and_the_row_outlives_file_rm(backend: &Backend) {
    let f = Fixture::new(backend);
    let store = f.store();
    let quota = 16 * ANONYMOUS_BLOCK;
    let content = b"both the user's and a stranger's".to_vec();
    let file = store
        .put_reader(&mut Cursor::new(content.clone()), Some("mine"))
        .unwrap();
    let anon = store_anon(&store, &content, &put("198.51.100.7", quota, NOW));
    assert_eq!(anon, file.hash);
    // The row expires: the user's file keeps the item.
    store.expire_anonymous(NOW + HOUR as i64).unwrap();
    assert_eq!(store.verify(&file.hash).unwrap(), content.len() as u64);

    // The other way round: the user removes the file while a stranger's row names the item.
    let anon = store_anon(&store, &content, &put("198.51.100.7", quota, NOW + 10));
    store.remove(&file.hash).unwrap();
    assert!(
        store.blobs().contains(&anon).unwrap(),
        "the row still names it"
    );
    assert!(store.list().unwrap().is_empty());
    store.expire_anonymous(NOW + 10 + HOUR as i64).unwrap();
    assert!(!store.blobs().contains(&anon).unwrap(), "gone with its row");
}

fn the_collector_keeps_live_anonymous_items_and_takes_expired_ones(backend: &Backend) {
    let f = Fixture::new(backend);
    let store = f.store();
    let quota = 16 * ANONYMOUS_BLOCK;
    let day = 24 * HOUR as i64;
    // The collector measures ages from the items' real modification times.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let put_long = AnonymousPut {
        ttl_secs: 3 * day as u64,
        ..put("198.51.100.7", quota, base)
    };
    let long = store_anon(&store, b"kept three days", &put_long);
    let short = store_anon(&store, b"kept an hour", &put("198.51.100.7", quota, base));
    // Two days on, past the grace period: the long one is in use, the short one is due.
    f.set_now(base + 2 * day);
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.anonymous_expired, 1, "{report:?}");
    assert_eq!(report.items_removed, 0, "{report:?}");
    assert!(store.blobs().contains(&long).unwrap());
    assert!(!store.blobs().contains(&short).unwrap());
    // Four days on: the long one's deadline has passed too; the table names nothing deleted.
    f.set_now(base + 4 * day);
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.anonymous_expired, 1, "{report:?}");
    assert!(!store.blobs().contains(&long).unwrap());
    assert!(store.meta().list_anonymous().unwrap().is_empty());
}

fn shared_files_and_their_items_are_shared_and_nothing_else_is(backend: &Backend) {
    let f = Fixture::new(backend);
    let store = f.store();
    let big = item(3 * MAX, 9);
    let shared = store
        .put_reader(&mut Cursor::new(big.clone()), Some("shared"))
        .unwrap();
    let private = store
        .put_reader(&mut Cursor::new(b"private".to_vec()), Some("private"))
        .unwrap();
    assert!(store.meta().share_file(&shared.hash, NOW).unwrap());
    assert!(store.meta().item_shared(&shared.hash).unwrap(), "the root");
    let chunk = ContentHash::compute(ItemType::BLOB, &big[..MAX - 1]);
    assert!(store.meta().item_shared(&chunk).unwrap(), "a chunk of it");
    assert!(!store.meta().item_shared(&private.hash).unwrap());
    assert!(store.meta().unshare_file(&shared.hash).unwrap());
    assert!(!store.meta().item_shared(&chunk).unwrap());
}

macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $scenario() { super::$scenario(&super::Backend::Sqlite) })*
        }
        mod postgres {
            $(
                #[test]
                #[cfg_attr(
                    not(kith_test_postgres),
                    ignore = "needs PostgreSQL: set KITH_TEST_POSTGRES=postgres://user:pass@host/db (.ci/run does)"
                )]
                fn $scenario() {
                    let url = std::env::var("KITH_TEST_POSTGRES")
                        .expect("KITH_TEST_POSTGRES, set at build time");
                    super::$scenario(&super::Backend::Postgres(url))
                }
            )*
        }
    };
}

suite!(
    quota_is_charged_in_blocks_and_the_heaviest_address_makes_room,
    items_expire_and_the_same_item_again_is_charged_once,
    an_item_a_user_file_also_uses_outlives_its_row_and_the_row_outlives_file_rm,
    the_collector_keeps_live_anonymous_items_and_takes_expired_ones,
    shared_files_and_their_items_are_shared_and_nothing_else_is,
);
