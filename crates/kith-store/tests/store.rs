//! Store scenarios, written once and run against every metadata backend: SQLite always,
//! PostgreSQL when `KITH_TEST_POSTGRES` holds a URL (each test in its own schema; otherwise
//! the PostgreSQL tests are listed as ignored, with the reason). Files and
//! blobs first, then the key store of peers and the issued tickets.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;

use kith_crypto::{AgentId, Identity};
use kith_store::meta::{
    ChatChannelRow, ChatChannelStateRow, ChatMessageRow, ChatQueueRow, CheckResult, CustodyRecord,
    MetaDb, PlacementOutcome, PostgresMeta, SqliteMeta, MAX_FAILURE_TEXT, POSTGRES_MIGRATIONS,
    SQLITE_MIGRATIONS,
};
use kith_store::{
    BlobStore, ContentHash, FileStore, ItemKind, ItemType, MetaError, PeerUpsert, RefusalReason,
    RemoveOutcome, StoreError, TicketRecord, TicketVerdict,
};

/// Tiny items keep trees cheap: 199 content bytes per chunk, 3 hashes per list.
const MAX: usize = 200;
const CAP: usize = MAX - 1;
const NOW: i64 = 1_700_000_000;

enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    fn postgres() -> Backend {
        Backend::Postgres(
            std::env::var("KITH_TEST_POSTGRES").expect("KITH_TEST_POSTGRES, set at build time"),
        )
    }
}

/// A data dir plus a way to open (again) its metadata database.
struct Fixture<'a> {
    dir: tempfile::TempDir,
    backend: &'a Backend,
    schema: Option<String>,
}

static SCHEMA_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl<'a> Fixture<'a> {
    fn new(backend: &'a Backend) -> Fixture<'a> {
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres(_) => Some(format!(
                "kith_test_{}_{}_{}",
                std::process::id(),
                SCHEMA_COUNTER.fetch_add(1, Ordering::SeqCst),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0)
            )),
        };
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            backend,
            schema,
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

    fn store(&self) -> FileStore {
        self.store_with_max(MAX)
    }

    /// Overwrites a recorded peer's key behind the store's back, as a database written by
    /// something other than kith might hold it.
    fn overwrite_stored_key(&self, agent: &str, key: &[u8; 32]) {
        let sql_sqlite = "UPDATE peers SET agent_key = ?1 WHERE agent = ?2";
        match self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.dir.path().join("kith.db")).unwrap();
                let n = conn
                    .execute(sql_sqlite, rusqlite::params![&key[..], agent])
                    .unwrap();
                assert_eq!(n, 1);
            }
            Backend::Postgres(url) => {
                let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
                let schema = self.schema.as_deref().unwrap();
                client
                    .batch_execute(&format!("SET search_path TO \"{schema}\""))
                    .unwrap();
                let n = client
                    .execute(
                        "UPDATE peers SET agent_key = $1 WHERE agent = $2",
                        &[&&key[..], &agent],
                    )
                    .unwrap();
                assert_eq!(n, 1);
            }
        }
    }

    fn store_with_max(&self, max: usize) -> FileStore {
        let blobs = BlobStore::with_max_item_size(self.root(), max).unwrap();
        FileStore::new(blobs, self.meta()).with_clock(|| NOW)
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

/// Deterministic, non-repeating test bytes (so chunks differ).
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

fn stored_items(store: &FileStore) -> Vec<ContentHash> {
    let mut items: Vec<_> = store.blobs().iter().unwrap().map(Result::unwrap).collect();
    items.sort();
    items
}

fn chunk_hash(bytes: &[u8]) -> ContentHash {
    ContentHash::compute(ItemType::BLOB, bytes)
}

// ---- scenarios (each runs once per backend) ----

fn round_trip_at_boundary_sizes(backend: &Backend) {
    let fx = Fixture::new(backend);
    let store = fx.store();
    let out_dir = tempfile::tempdir().unwrap();
    let sizes = [
        0,
        1,
        CAP - 1,
        CAP,
        CAP + 1,
        3 * CAP,
        3 * CAP + 1,
        10 * CAP + 7,
        40 * CAP,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        let bytes = data(size, i as u64);
        let record = store
            .put_reader(&mut Cursor::new(&bytes), Some("f"))
            .unwrap();
        assert_eq!(record.size, size as u64, "size {size}");
        let expected_kind = if size <= CAP {
            ItemKind::Blob
        } else {
            ItemKind::List
        };
        assert_eq!(record.kind, expected_kind, "size {size}");
        assert_eq!(record.added_at, NOW);
        assert_eq!(
            store.blobs().hash_file(&mut Cursor::new(&bytes)).unwrap(),
            record.hash,
            "hash and put agree at size {size}"
        );
        if size <= CAP {
            assert_eq!(record.hash, chunk_hash(&bytes));
        }
        let mut out = Vec::new();
        assert_eq!(
            store.get_to_writer(&record.hash, &mut out).unwrap(),
            size as u64
        );
        assert_eq!(out, bytes, "size {size}");
        let path = out_dir.path().join(format!("out-{size}"));
        assert_eq!(store.get_to_path(&record.hash, &path).unwrap(), size as u64);
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert_eq!(store.verify(&record.hash).unwrap(), size as u64);
    }
    assert_eq!(store.list().unwrap().len(), sizes.len());
}

fn deep_tree_round_trips_with_smallest_items(backend: &Backend) {
    let fx = Fixture::new(backend);
    // 130-byte items: 129-byte chunks, 2 hashes per list, so 100 chunks make a 7-level tree.
    let store = fx.store_with_max(130);
    let bytes = data(129 * 100 + 3, 7);
    let record = store.put_reader(&mut Cursor::new(&bytes), None).unwrap();
    let mut out = Vec::new();
    store.get_to_writer(&record.hash, &mut out).unwrap();
    assert_eq!(out, bytes);
    assert_eq!(
        store.blobs().hash_file(&mut Cursor::new(&bytes)).unwrap(),
        record.hash
    );
    // The record's size counts content bytes, not items.
    assert_eq!(record.size, bytes.len() as u64);
}

fn check_values_through_the_store(backend: &Backend) {
    let fx = Fixture::new(backend);
    let store = fx.store_with_max(kith_store::DEFAULT_MAX_ITEM_SIZE);
    let jpg = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/test.jpg"
    ));
    let record = store.put_path(jpg, None).unwrap();
    assert_eq!(
        record.hash.to_string(),
        "a5ab1c26e5253fb7316b51e7f40687183714e0d683034954e1e8fc67bca42753"
    );
    assert_eq!(record.kind, ItemKind::Blob);
    assert_eq!(record.size, 6708);
    assert_eq!(record.name.as_deref(), Some("test.jpg"));
    assert_eq!(store.hash_path(jpg).unwrap(), record.hash);
    let hello = store.put_reader(&mut &b"hello"[..], Some("hello")).unwrap();
    assert_eq!(
        hello.hash.to_string(),
        "cceeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef"
    );
    // On disk exactly as the reference keeps it: files/<2 hex>/<62 hex> = type byte ‖ content.
    let on_disk = fx
        .root()
        .join("cc")
        .join("eeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef");
    assert_eq!(fs::read(on_disk).unwrap(), b"\x01hello");
}

fn corrupt_item_is_detected_and_no_output_file_is_left(backend: &Backend) {
    let fx = Fixture::new(backend);
    let store = fx.store();
    let bytes = data(5 * CAP, 3);
    let record = store.put_reader(&mut Cursor::new(&bytes), None).unwrap();
    let third_chunk = chunk_hash(&bytes[2 * CAP..3 * CAP]);
    let path = store.blobs().path_for(&third_chunk);
    let mut stored = fs::read(&path).unwrap();
    stored[50] ^= 0x01;
    fs::write(&path, stored).unwrap();

    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("out");
    match store.get_to_path(&record.hash, &target) {
        Err(StoreError::Corrupt { hash, .. }) => assert_eq!(hash, third_chunk),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(!target.exists(), "no half file under the target name");
    assert_eq!(
        fs::read_dir(out_dir.path()).unwrap().count(),
        0,
        "no temp file left"
    );
    assert!(
        matches!(store.verify(&record.hash), Err(StoreError::Corrupt { hash, .. }) if hash == third_chunk)
    );
    let err = store.blobs().get_item(&third_chunk).unwrap_err();
    assert!(err.to_string().contains(&third_chunk.to_string()), "{err}");

    // Putting the file again repairs the damaged item.
    store.put_reader(&mut Cursor::new(&bytes), None).unwrap();
    assert_eq!(store.verify(&record.hash).unwrap(), bytes.len() as u64);
}

fn missing_item_is_reported_by_hash(backend: &Backend) {
    let fx = Fixture::new(backend);
    let store = fx.store();
    let bytes = data(4 * CAP, 4);
    let record = store.put_reader(&mut Cursor::new(&bytes), None).unwrap();
    let last_chunk = chunk_hash(&bytes[3 * CAP..]);
    fs::remove_file(store.blobs().path_for(&last_chunk)).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("out");
    fs::write(&target, b"old contents").unwrap();
    match store.get_to_path(&record.hash, &target) {
        Err(StoreError::NotFound { hash }) => assert_eq!(hash, last_chunk),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(
        fs::read(&target).unwrap(),
        b"old contents",
        "target untouched"
    );
    let absent = chunk_hash(b"never stored");
    assert!(matches!(store.verify(&absent), Err(StoreError::NotFound { hash }) if hash == absent));
}

fn same_file_twice_is_stored_once(backend: &Backend) {
    let fx = Fixture::new(backend);
    let store = fx.store();
    let bytes = data(3 * CAP + 10, 5);
    let first = store
        .put_reader(&mut Cursor::new(&bytes), Some("a"))
        .unwrap();
    let items = stored_items(&store);
    let store = store.with_clock(|| NOW + 60);
    let second = store
        .put_reader(&mut Cursor::new(&bytes), Some("b"))
        .unwrap();
    assert_eq!(first, second, "the first record is kept");
    assert_eq!(stored_items(&store), items);
    assert_eq!(store.list().unwrap(), vec![first.clone()]);
    assert_eq!(
        store.remove(&first.hash).unwrap(),
        RemoveOutcome::Removed {
            items_deleted: items.len()
        }
    );
    assert!(stored_items(&store).is_empty());
    assert_eq!(store.remove(&first.hash).unwrap(), RemoveOutcome::NotFound);
}

fn items_copied_one_by_one_are_recorded_as_the_same_file(backend: &Backend) {
    let (from, to) = (Fixture::new(backend), Fixture::new(backend));
    let source = from.store();
    let bytes = data(7 * CAP + 3, 11);
    let put = source.put_reader(&mut Cursor::new(&bytes), None).unwrap();
    let dest = to.store();
    let items = stored_items(&source);
    // All but one item: the walk names the missing one and nothing is recorded.
    let missing = *items.last().unwrap();
    for hash in &items {
        if *hash != missing {
            let item = source.blobs().get_item(hash).unwrap();
            dest.blobs()
                .put_item(item.item_type, &item.content)
                .unwrap();
        }
    }
    assert!(matches!(
        dest.record_existing(&put.hash, None),
        Err(StoreError::NotFound { hash }) if hash == missing
    ));
    assert!(dest.list().unwrap().is_empty());
    let item = source.blobs().get_item(&missing).unwrap();
    dest.blobs()
        .put_item(item.item_type, &item.content)
        .unwrap();
    let recorded = dest.record_existing(&put.hash, None).unwrap();
    assert_eq!(recorded, put);
    let mut out = Vec::new();
    dest.get_to_writer(&put.hash, &mut out).unwrap();
    assert_eq!(out, bytes);
    // Reference counts are as a put would leave them: removing deletes every item.
    assert_eq!(
        dest.remove(&put.hash).unwrap(),
        RemoveOutcome::Removed {
            items_deleted: items.len()
        }
    );
}

fn shared_chunk_stays_until_its_last_file_is_removed(backend: &Backend) {
    let fx = Fixture::new(backend);
    let store = fx.store();
    let shared = data(CAP, 10);
    let a = [shared.clone(), data(CAP + 5, 11)].concat();
    let b = [shared.clone(), data(2 * CAP, 12)].concat();
    let ra = store.put_reader(&mut Cursor::new(&a), Some("a")).unwrap();
    let rb = store.put_reader(&mut Cursor::new(&b), Some("b")).unwrap();
    let shared_hash = chunk_hash(&shared);

    store.remove(&ra.hash).unwrap();
    assert!(store.blobs().contains(&shared_hash).unwrap());
    assert!(!store.blobs().contains(&ra.hash).unwrap());
    assert!(!store.blobs().contains(&chunk_hash(&a[CAP..])).unwrap());
    let mut out = Vec::new();
    store.get_to_writer(&rb.hash, &mut out).unwrap();
    assert_eq!(out, b);

    store.remove(&rb.hash).unwrap();
    assert!(stored_items(&store).is_empty());
    assert!(store.list().unwrap().is_empty());
}

fn file_that_is_a_chunk_of_another_keeps_its_item(backend: &Backend) {
    for remove_big_first in [true, false] {
        let fx = Fixture::new(backend);
        let store = fx.store();
        let small = data(CAP, 20);
        let big = [small.clone(), data(2 * CAP, 21)].concat();
        let rbig = store
            .put_reader(&mut Cursor::new(&big), Some("big"))
            .unwrap();
        let rsmall = store
            .put_reader(&mut Cursor::new(&small), Some("small"))
            .unwrap();
        assert_eq!(rsmall.hash, chunk_hash(&small));
        let (first, second) = if remove_big_first {
            (&rbig, &rsmall)
        } else {
            (&rsmall, &rbig)
        };
        store.remove(&first.hash).unwrap();
        assert!(store.blobs().contains(&rsmall.hash).unwrap(), "chunk kept");
        assert_eq!(store.verify(&second.hash).unwrap(), second.size);
        store.remove(&second.hash).unwrap();
        assert!(stored_items(&store).is_empty());
    }
}

fn records_list_and_serialize(backend: &Backend) {
    let fx = Fixture::new(backend);
    let store = fx.store();
    let r1 = store.put_reader(&mut &b"one"[..], Some("one.txt")).unwrap();
    let store = store.with_clock(|| NOW + 5);
    let r2 = store
        .put_reader(&mut Cursor::new(data(2 * CAP, 30)), None)
        .unwrap();
    assert_eq!(r2.name, None);
    assert_eq!(r2.added_at, NOW + 5);
    assert_eq!(store.list().unwrap(), vec![r1.clone(), r2.clone()]);
    assert_eq!(store.get(&r1.hash).unwrap(), Some(r1.clone()));
    let json = serde_json::to_value(&r1).unwrap();
    assert_eq!(json["hash"], r1.hash.to_string());
    assert_eq!(json["kind"], "blob");
    assert_eq!(json["size"], 3);
    assert_eq!(json["name"], "one.txt");
    assert_eq!(json["added_at"], NOW);
}

fn second_process_sees_the_same_store(backend: &Backend) {
    let fx = Fixture::new(backend);
    let node = fx.store();
    let cli = fx.store();
    let record = cli
        .put_reader(&mut Cursor::new(data(3 * CAP, 40)), Some("x"))
        .unwrap();
    assert_eq!(node.list().unwrap(), vec![record.clone()]);
    assert_eq!(node.verify(&record.hash).unwrap(), record.size);
    assert!(matches!(
        node.remove(&record.hash).unwrap(),
        RemoveOutcome::Removed { .. }
    ));
    assert!(cli.list().unwrap().is_empty());
}

fn migrations_run_once(backend: &Backend) {
    let fx = Fixture::new(backend);
    let expected = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS.len(),
        Backend::Postgres(_) => POSTGRES_MIGRATIONS.len(),
    } as u32;
    let first = fx.meta();
    assert_eq!(first.schema_version().unwrap(), expected);
    let again = fx.meta();
    assert_eq!(again.schema_version().unwrap(), expected);
}

fn concurrent_puts_and_removes_never_lose_a_referenced_item(backend: &Backend) {
    let fx = Fixture::new(backend);
    let shared = data(CAP, 50);
    std::thread::scope(|scope| {
        for worker in 0..2u64 {
            let store = fx.store();
            let shared = shared.clone();
            scope.spawn(move || {
                for round in 0..15u64 {
                    let bytes = [shared.clone(), data(CAP, 100 * worker + round)].concat();
                    let record = loop {
                        match store.put_reader(&mut Cursor::new(&bytes), None) {
                            Err(StoreError::ItemVanished { .. }) => continue,
                            other => break other.unwrap(),
                        }
                    };
                    if round % 2 == 0 {
                        store.remove(&record.hash).unwrap();
                    }
                }
            });
        }
    });
    let store = fx.store();
    let records = store.list().unwrap();
    assert_eq!(records.len(), 14);
    for record in records {
        assert_eq!(store.verify(&record.hash).unwrap(), record.size);
    }
}

// ---- the key store and tickets ----

fn new_agent() -> AgentId {
    Identity::generate(&mut rand::thread_rng()).agent_id()
}

fn token(n: u64) -> String {
    format!("{n:032x}")
}

fn ticket(n: u64, expires_at: i64) -> TicketRecord {
    TicketRecord::new(token(n), NOW, expires_at)
}

fn peers_are_recorded_updated_listed_and_removed(backend: &Backend) {
    let fx = Fixture::new(backend);
    let db = fx.meta();
    let (a, b) = (new_agent(), new_agent());
    let first = PeerUpsert {
        host: Some("a.example".into()),
        port: Some(65430),
        last_addr: Some("192.0.2.1:40000".into()),
        notes: Some("met at the market".into()),
        ..PeerUpsert::new(&a)
    };
    let record = db.upsert_peer(&first, NOW).unwrap();
    assert_eq!(record.agent, a.to_string());
    assert_eq!(&record.agent_key, a.as_bytes());
    assert_eq!(record.host.as_deref(), Some("a.example"));
    assert_eq!(record.port, Some(65430));
    assert_eq!(record.last_addr.as_deref(), Some("192.0.2.1:40000"));
    assert_eq!((record.first_seen, record.last_seen), (NOW, NOW));
    assert!(!record.blocked);
    assert_eq!(record.retention_failures, 0);
    assert_eq!(db.get_peer(&a.to_string()).unwrap(), Some(record.clone()));

    // A later upsert that knows less keeps what is recorded, and first_seen.
    let again = PeerUpsert {
        last_addr: Some("192.0.2.1:40001".into()),
        ..PeerUpsert::new(&a)
    };
    let updated = db.upsert_peer(&again, NOW + 10).unwrap();
    assert_eq!(updated.host.as_deref(), Some("a.example"));
    assert_eq!(updated.port, Some(65430));
    assert_eq!(updated.notes.as_deref(), Some("met at the market"));
    assert_eq!(updated.last_addr.as_deref(), Some("192.0.2.1:40001"));
    assert_eq!((updated.first_seen, updated.last_seen), (NOW, NOW + 10));

    // Seen again: last_seen moves, an address is kept unless a new one is given.
    assert!(db.touch_peer(&a.to_string(), None, NOW + 20).unwrap());
    let touched = db.get_peer(&a.to_string()).unwrap().unwrap();
    assert_eq!(touched.last_seen, NOW + 20);
    assert_eq!(touched.last_addr.as_deref(), Some("192.0.2.1:40001"));
    assert!(db
        .touch_peer(&a.to_string(), Some("198.51.100.7:5000"), NOW + 30)
        .unwrap());
    let touched = db.get_peer(&a.to_string()).unwrap().unwrap();
    assert_eq!(touched.last_addr.as_deref(), Some("198.51.100.7:5000"));
    // A stale time never moves last_seen back.
    assert!(db.touch_peer(&a.to_string(), None, NOW).unwrap());
    assert_eq!(
        db.get_peer(&a.to_string()).unwrap().unwrap().last_seen,
        NOW + 30
    );
    // Touching an unknown agent records nothing.
    assert!(!db.touch_peer(&b.to_string(), None, NOW).unwrap());
    assert_eq!(db.get_peer(&b.to_string()).unwrap(), None);

    let rb = db.upsert_peer(&PeerUpsert::new(&b), NOW + 40).unwrap();
    assert_eq!(rb.host, None);
    assert_eq!(rb.port, None);
    let mut expected = vec![db.get_peer(&a.to_string()).unwrap().unwrap(), rb];
    expected.sort_by(|x, y| x.agent.cmp(&y.agent));
    assert_eq!(db.list_peers().unwrap(), expected);

    let json = serde_json::to_value(&expected[0]).unwrap();
    assert_eq!(json["agent"], expected[0].agent);
    assert_eq!(json["agent_key"], hex::encode(expected[0].agent_key));
    let back: kith_store::PeerRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, expected[0]);

    assert!(db.remove_peer(&a.to_string()).unwrap());
    assert!(!db.remove_peer(&a.to_string()).unwrap());
    assert_eq!(db.get_peer(&a.to_string()).unwrap(), None);
    assert_eq!(db.list_peers().unwrap().len(), 1);
}

fn the_reference_cipher_order_is_kept_per_peer_and_never_makes_a_peer(backend: &Backend) {
    let fx = Fixture::new(backend);
    let db = fx.meta();
    let (a, stranger) = (new_agent(), new_agent());
    let record = db.upsert_peer(&PeerUpsert::new(&a), NOW).unwrap();
    assert!(
        !record.reference_order,
        "the specification's order by default"
    );
    assert!(db.set_peer_reference_order(&a.to_string(), true).unwrap());
    // A later upsert (a redial, a first contact again) keeps the option.
    let again = PeerUpsert {
        last_addr: Some("192.0.2.1:1".into()),
        ..PeerUpsert::new(&a)
    };
    assert!(db.upsert_peer(&again, NOW + 1).unwrap().reference_order);
    assert!(
        fx.meta()
            .get_peer(&a.to_string())
            .unwrap()
            .unwrap()
            .reference_order
    );
    assert!(db.set_peer_reference_order(&a.to_string(), false).unwrap());
    assert!(
        !db.get_peer(&a.to_string())
            .unwrap()
            .unwrap()
            .reference_order
    );
    // An unknown agent is not recorded by it.
    assert!(!db
        .set_peer_reference_order(&stranger.to_string(), true)
        .unwrap());
    assert_eq!(db.get_peer(&stranger.to_string()).unwrap(), None);
}

fn a_peer_key_never_changes(backend: &Backend) {
    let fx = Fixture::new(backend);
    let db = fx.meta();
    let (a, b) = (new_agent(), new_agent());

    // The agent id must be the key's own id.
    let wrong_pair = PeerUpsert {
        agent_key: *b.as_bytes(),
        ..PeerUpsert::new(&a)
    };
    assert!(matches!(
        db.upsert_peer(&wrong_pair, NOW),
        Err(MetaError::BadAgent { agent, .. }) if agent == a.to_string()
    ));
    let malformed = PeerUpsert {
        agent: "not-an-agent-id".into(),
        ..PeerUpsert::new(&a)
    };
    assert!(matches!(
        db.upsert_peer(&malformed, NOW),
        Err(MetaError::BadAgent { .. })
    ));
    assert!(db.list_peers().unwrap().is_empty());

    // A row that holds another key is never overwritten.
    db.upsert_peer(&PeerUpsert::new(&a), NOW).unwrap();
    fx.overwrite_stored_key(&a.to_string(), b.as_bytes());
    let refreshed = PeerUpsert {
        host: Some("evil.example".into()),
        ..PeerUpsert::new(&a)
    };
    assert!(matches!(
        db.upsert_peer(&refreshed, NOW + 5),
        Err(MetaError::PeerKeyMismatch { agent }) if agent == a.to_string()
    ));
    let kept = db.get_peer(&a.to_string()).unwrap().unwrap();
    assert_eq!(&kept.agent_key, b.as_bytes());
    assert_eq!(kept.host, None);
    assert_eq!(kept.last_seen, NOW);
}

fn agents_can_be_blocked_before_and_after_they_are_peers(backend: &Backend) {
    let fx = Fixture::new(backend);
    let db = fx.meta();
    let (known, stranger) = (new_agent(), new_agent());
    db.upsert_peer(&PeerUpsert::new(&known), NOW).unwrap();

    // A stranger: the block is recorded although it is no peer.
    assert!(db
        .set_peer_blocked(&stranger.to_string(), true, NOW)
        .unwrap());
    assert!(!db
        .set_peer_blocked(&stranger.to_string(), true, NOW + 1)
        .unwrap());
    assert!(db.is_agent_blocked(&stranger.to_string()).unwrap());
    assert_eq!(db.get_peer(&stranger.to_string()).unwrap(), None);
    let blocked = db.list_blocked_agents().unwrap();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].agent, stranger.to_string());
    assert_eq!(blocked[0].since, NOW, "the first block's time is kept");
    // Recording it as a peer later does not lift the block.
    let record = db
        .upsert_peer(&PeerUpsert::new(&stranger), NOW + 2)
        .unwrap();
    assert!(record.blocked);

    // A known peer.
    assert!(!db.is_agent_blocked(&known.to_string()).unwrap());
    assert!(db
        .set_peer_blocked(&known.to_string(), true, NOW + 3)
        .unwrap());
    assert!(db.get_peer(&known.to_string()).unwrap().unwrap().blocked);
    // Removing the peer keeps the block.
    assert!(db.remove_peer(&known.to_string()).unwrap());
    assert!(db.is_agent_blocked(&known.to_string()).unwrap());
    assert_eq!(db.list_blocked_agents().unwrap().len(), 2);

    assert!(db
        .set_peer_blocked(&known.to_string(), false, NOW + 4)
        .unwrap());
    assert!(!db
        .set_peer_blocked(&known.to_string(), false, NOW + 4)
        .unwrap());
    assert!(!db.is_agent_blocked(&known.to_string()).unwrap());
    assert!(db
        .set_peer_blocked(&stranger.to_string(), false, NOW + 5)
        .unwrap());
    assert!(!db.get_peer(&stranger.to_string()).unwrap().unwrap().blocked);
    assert!(db.list_blocked_agents().unwrap().is_empty());

    assert!(matches!(
        db.set_peer_blocked("garbage", true, NOW),
        Err(MetaError::BadAgent { .. })
    ));
    assert!(!db.set_peer_blocked("garbage", false, NOW).unwrap());
}

fn one_time_ticket_is_accepted_once(backend: &Backend) {
    let fx = Fixture::new(backend);
    let db = fx.meta();
    let (a, b) = (new_agent().to_string(), new_agent().to_string());
    let issued = TicketRecord {
        cuid: Some("user_3".into()),
        ..ticket(1, NOW + 2700)
    };
    db.insert_ticket(&issued).unwrap();
    assert_eq!(db.get_ticket(&token(1)).unwrap(), Some(issued.clone()));

    assert_eq!(
        db.redeem_ticket(&token(1), &a, NOW + 60).unwrap(),
        TicketVerdict::Accepted
    );
    let used = db.get_ticket(&token(1)).unwrap().unwrap();
    assert_eq!(used.used_at, Some(NOW + 60));
    assert_eq!(used.used_by.as_deref(), Some(a.as_str()));
    assert_eq!(used.cuid.as_deref(), Some("user_3"));

    for agent in [&b, &a] {
        assert_eq!(
            db.redeem_ticket(&token(1), agent, NOW + 61).unwrap(),
            TicketVerdict::Refused(RefusalReason::AlreadyUsed)
        );
    }
    assert_eq!(
        db.get_ticket(&token(1)).unwrap().unwrap(),
        used,
        "a refusal changes nothing"
    );
}

fn expired_revoked_and_unknown_tickets_are_refused(backend: &Backend) {
    let fx = Fixture::new(backend);
    let db = fx.meta();
    let agent = new_agent().to_string();
    db.insert_ticket(&ticket(1, NOW + 100)).unwrap();
    db.insert_ticket(&ticket(2, NOW + 100)).unwrap();

    // Valid while now < expires_at.
    assert_eq!(
        db.redeem_ticket(&token(1), &agent, NOW + 100).unwrap(),
        TicketVerdict::Refused(RefusalReason::Expired)
    );
    assert_eq!(db.get_ticket(&token(1)).unwrap().unwrap().used_at, None);

    assert!(db.revoke_ticket(&token(2)).unwrap());
    assert!(db.get_ticket(&token(2)).unwrap().unwrap().revoked);
    assert_eq!(
        db.redeem_ticket(&token(2), &agent, NOW + 1).unwrap(),
        TicketVerdict::Refused(RefusalReason::Revoked)
    );
    assert!(!db.revoke_ticket(&token(3)).unwrap());
    assert_eq!(
        db.redeem_ticket(&token(3), &agent, NOW + 1).unwrap(),
        TicketVerdict::Refused(RefusalReason::Unknown)
    );
    assert_eq!(
        db.redeem_ticket("", &agent, NOW + 1).unwrap(),
        TicketVerdict::Refused(RefusalReason::Unknown)
    );
    assert_eq!(
        db.redeem_ticket("'; DROP TABLE tickets; --", &agent, NOW + 1)
            .unwrap(),
        TicketVerdict::Refused(RefusalReason::Unknown)
    );
    assert_eq!(db.list_tickets().unwrap().len(), 2);

    // Hex digits are compared without regard to case.
    let upper = "ABCDEF0123456789ABCDEF0123456789";
    db.insert_ticket(&TicketRecord::new(
        upper.to_ascii_lowercase(),
        NOW,
        NOW + 100,
    ))
    .unwrap();
    assert_eq!(
        db.redeem_ticket(upper, &agent, NOW + 1).unwrap(),
        TicketVerdict::Accepted
    );
}

fn reusable_ticket_is_accepted_until_it_expires_or_is_revoked(backend: &Backend) {
    let fx = Fixture::new(backend);
    let db = fx.meta();
    let (a, b) = (new_agent().to_string(), new_agent().to_string());
    let reusable = |n| TicketRecord {
        reusable: true,
        ..ticket(n, NOW + 100)
    };
    db.insert_ticket(&reusable(1)).unwrap();
    db.insert_ticket(&reusable(2)).unwrap();

    assert_eq!(
        db.redeem_ticket(&token(1), &a, NOW + 1).unwrap(),
        TicketVerdict::Accepted
    );
    assert_eq!(
        db.redeem_ticket(&token(1), &b, NOW + 2).unwrap(),
        TicketVerdict::Accepted
    );
    let last = db.get_ticket(&token(1)).unwrap().unwrap();
    assert_eq!(last.used_at, Some(NOW + 2), "the last use is recorded");
    assert_eq!(last.used_by.as_deref(), Some(b.as_str()));
    assert_eq!(
        db.redeem_ticket(&token(1), &a, NOW + 100).unwrap(),
        TicketVerdict::Refused(RefusalReason::Expired)
    );

    assert_eq!(
        db.redeem_ticket(&token(2), &a, NOW + 1).unwrap(),
        TicketVerdict::Accepted
    );
    assert!(db.revoke_ticket(&token(2)).unwrap());
    assert_eq!(
        db.redeem_ticket(&token(2), &a, NOW + 2).unwrap(),
        TicketVerdict::Refused(RefusalReason::Revoked)
    );
}

fn tickets_are_validated_listed_and_purged(backend: &Backend) {
    let fx = Fixture::new(backend);
    let db = fx.meta();
    for bad in ["", "abc", &"A".repeat(32), &"0".repeat(33), &"z".repeat(32)] {
        assert!(
            matches!(
                db.insert_ticket(&TicketRecord::new(bad, NOW, NOW + 1)),
                Err(MetaError::BadToken { .. })
            ),
            "{bad:?}"
        );
    }
    let old = TicketRecord {
        issued_at: NOW - 1000,
        ..ticket(2, NOW - 500)
    };
    let recent = TicketRecord {
        issued_at: NOW - 100,
        ..ticket(1, NOW - 50)
    };
    let live = ticket(3, NOW + 500);
    for t in [&live, &recent, &old] {
        db.insert_ticket(t).unwrap();
    }
    assert!(matches!(
        db.insert_ticket(&ticket(3, NOW + 9)),
        Err(MetaError::DuplicateTicket)
    ));
    assert_eq!(
        db.list_tickets().unwrap(),
        vec![old.clone(), recent.clone(), live.clone()],
        "oldest first"
    );
    let json = serde_json::to_value(&live).unwrap();
    assert_eq!(json["token"], token(3));
    assert_eq!(json["reusable"], false);
    assert_eq!(json["used_at"], serde_json::Value::Null);

    // Expired tickets are kept for keep_for_secs after expiry (for the record), then purged.
    assert_eq!(db.purge_expired_tickets(NOW, 500).unwrap(), 1);
    assert_eq!(db.list_tickets().unwrap(), vec![recent, live.clone()]);
    assert_eq!(db.purge_expired_tickets(NOW, 51).unwrap(), 0);
    assert_eq!(db.purge_expired_tickets(NOW, 0).unwrap(), 1);
    assert_eq!(db.list_tickets().unwrap(), vec![live]);
}

fn racing_redemptions_accept_each_one_time_ticket_exactly_once(backend: &Backend) {
    const TICKETS: u64 = 40;
    let fx = Fixture::new(backend);
    let issuer = fx.meta();
    for n in 0..TICKETS {
        issuer.insert_ticket(&ticket(n, NOW + 100)).unwrap();
    }
    let barrier = Barrier::new(2);
    let agents = [new_agent().to_string(), new_agent().to_string()];
    let wins: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = agents
            .iter()
            .map(|agent| {
                // Each node process has its own connection.
                let db = fx.meta();
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut won = Vec::new();
                    for n in 0..TICKETS {
                        barrier.wait();
                        match db.redeem_ticket(&token(n), agent, NOW + 1).unwrap() {
                            TicketVerdict::Accepted => won.push(n),
                            TicketVerdict::Refused(reason) => {
                                assert_eq!(reason, RefusalReason::AlreadyUsed)
                            }
                        }
                    }
                    won
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = wins.concat();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..TICKETS).collect::<Vec<_>>(),
        "each ticket won exactly once"
    );
    for (winner, won) in agents.iter().zip(&wins) {
        for n in won {
            let t = issuer.get_ticket(&token(*n)).unwrap().unwrap();
            assert_eq!(t.used_by.as_deref(), Some(winner.as_str()));
        }
    }
}

fn two_processes_of_one_site_share_peers_and_tickets(backend: &Backend) {
    let fx = Fixture::new(backend);
    let node = fx.meta();
    let other = fx.meta();
    let peer = new_agent();

    let recorded = node
        .upsert_peer(
            &PeerUpsert {
                host: Some("peer.example".into()),
                port: Some(65430),
                ..PeerUpsert::new(&peer)
            },
            NOW,
        )
        .unwrap();
    assert_eq!(other.get_peer(&peer.to_string()).unwrap(), Some(recorded));
    assert!(other
        .set_peer_blocked(&peer.to_string(), true, NOW)
        .unwrap());
    assert!(node.get_peer(&peer.to_string()).unwrap().unwrap().blocked);

    other.insert_ticket(&ticket(7, NOW + 100)).unwrap();
    assert_eq!(
        node.redeem_ticket(&token(7), &peer.to_string(), NOW + 1)
            .unwrap(),
        TicketVerdict::Accepted
    );
    assert_eq!(
        other
            .redeem_ticket(&token(7), &peer.to_string(), NOW + 2)
            .unwrap(),
        TicketVerdict::Refused(RefusalReason::AlreadyUsed)
    );
    assert_eq!(
        other.get_ticket(&token(7)).unwrap().unwrap().used_at,
        Some(NOW + 1)
    );
}

fn custody_is_recorded_once_per_owner_and_counted(backend: &Backend) {
    let fx = Fixture::new(backend);
    let meta = fx.meta();
    let original = ContentHash::compute(ItemType::BLOB, b"someone's file");
    let record = |owner: u8, copy: &[u8], at: i64| CustodyRecord {
        original_hash: original,
        owner_key: [owner; 33],
        encrypted_hash: ContentHash::compute(ItemType::BLOB, copy),
        pull_request_hash: ContentHash::compute(ItemType::BLOB, &[copy, b"pull"].concat()),
        size: copy.len() as u64,
        received_at: at,
    };
    assert!(meta.custody_of(&original).unwrap().is_empty());
    let first = meta.insert_custody(&record(2, b"copy one", NOW)).unwrap();
    // The same owner persisting the same content again keeps the copy it already has.
    let again = meta
        .insert_custody(&record(2, b"another copy", NOW + 5))
        .unwrap();
    assert_eq!(again, first);
    meta.insert_custody(&record(3, b"copy for owner three", NOW + 10))
        .unwrap();
    let all = meta.custody_of(&original).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].owner_key, [3; 33], "most recent first");
    assert_eq!(meta.custody_bytes().unwrap(), (8 + 20) as u64);
    let other = fx.meta().custody_of(&original).unwrap();
    assert_eq!(other.len(), 2, "another connection sees the same custody");
}

fn shared_files_and_replicas_follow_the_file(backend: &Backend) {
    let fx = Fixture::new(backend);
    let store = fx.store();
    let path = fx.dir.path().join("shared.txt");
    fs::write(&path, b"a file to share").unwrap();
    let record = store.put_path(&path, None).unwrap();
    let missing = ContentHash::compute(ItemType::BLOB, b"never stored");
    let meta = store.meta();
    assert!(
        !meta.share_file(&missing, NOW).unwrap(),
        "only stored files can be shared"
    );
    assert!(meta.share_file(&record.hash, NOW).unwrap());
    assert!(
        !meta.share_file(&record.hash, NOW + 1).unwrap(),
        "sharing twice is one share"
    );
    assert_eq!(meta.shared_files(10).unwrap(), vec![record.hash]);
    assert_eq!(meta.shared_files(0).unwrap(), Vec::<ContentHash>::new());
    meta.record_replica(&record.hash, "peer", record.size, NOW)
        .unwrap();
    meta.record_replica(&record.hash, "peer", record.size, NOW)
        .unwrap();
    assert_eq!(meta.replica_bytes().unwrap(), record.size);
    assert_eq!(fx.meta().shared_files(10).unwrap(), vec![record.hash]);
    // Removing the file removes its share and replica rows with it.
    store.remove(&record.hash).unwrap();
    let meta = store.meta();
    assert!(meta.shared_files(10).unwrap().is_empty());
    assert_eq!(meta.replica_bytes().unwrap(), 0);
    assert!(!meta.unshare_file(&record.hash).unwrap());
}

// ---- placements (proof of retention) ----

fn file_hash(n: u8) -> ContentHash {
    ContentHash::compute(ItemType::BLOB, &[n; 10])
}

fn placements_are_bounded_per_peer_and_kept_once(backend: &Backend) {
    let fx = Fixture::new(backend);
    let db = fx.meta();
    let (a, b) = (new_agent().to_string(), new_agent().to_string());
    assert_eq!(
        db.insert_placement(&a, &file_hash(1), NOW, 2).unwrap(),
        PlacementOutcome::Recorded
    );
    assert_eq!(
        db.insert_placement(&a, &file_hash(1), NOW + 1, 2).unwrap(),
        PlacementOutcome::AlreadyRecorded
    );
    assert_eq!(
        db.insert_placement(&a, &file_hash(2), NOW, 2).unwrap(),
        PlacementOutcome::Recorded
    );
    // The bound is per peer: a third file of A is refused, B's first is not.
    assert_eq!(
        db.insert_placement(&a, &file_hash(3), NOW, 2).unwrap(),
        PlacementOutcome::Full
    );
    assert_eq!(
        db.insert_placement(&b, &file_hash(3), NOW, 2).unwrap(),
        PlacementOutcome::Recorded
    );
    let held = db.placements_of(&a).unwrap();
    assert_eq!(held.len(), 2);
    let first = held.iter().find(|p| p.hash == file_hash(1)).unwrap();
    assert_eq!(first.placed_at, NOW, "the first record is kept");
    assert_eq!(first.last_check_at, None);
    assert_eq!(first.checks_passed + first.checks_failed, 0);

    assert!(db.remove_placement(&a, &file_hash(2)).unwrap());
    assert!(!db.remove_placement(&a, &file_hash(2)).unwrap());
    assert_eq!(
        db.insert_placement(&a, &file_hash(3), NOW, 2).unwrap(),
        PlacementOutcome::Recorded,
        "room again after a removal"
    );
    assert_eq!(fx.meta().placements_of(&a).unwrap().len(), 2);
}

fn due_placements_come_never_checked_first_then_oldest_and_only_for_the_agents_asked(
    backend: &Backend,
) {
    let fx = Fixture::new(backend);
    let db = fx.meta();
    let (a, b, c) = (
        new_agent().to_string(),
        new_agent().to_string(),
        new_agent().to_string(),
    );
    for (agent, n, at) in [
        (&a, 1, NOW),
        (&a, 2, NOW + 1),
        (&b, 3, NOW + 2),
        (&c, 4, NOW),
    ] {
        db.insert_placement(agent, &file_hash(n), at, 100).unwrap();
    }
    let passed = CheckResult::Passed;
    db.record_check(&a, &file_hash(1), NOW + 50, &passed)
        .unwrap();
    db.record_check(&b, &file_hash(3), NOW + 40, &passed)
        .unwrap();
    let linked = [a.clone(), b.clone()];
    let due = db.due_placements(&linked, NOW + 100, 10).unwrap();
    let order: Vec<ContentHash> = due.iter().map(|p| p.hash).collect();
    // Never checked (2), then the oldest check (3 at +40, 1 at +50); C is not asked for.
    assert_eq!(order, vec![file_hash(2), file_hash(3), file_hash(1)]);
    assert_eq!(db.due_placements(&linked, NOW + 100, 2).unwrap().len(), 2);
    // Checked at or after the cut-off: not due.
    let due = db.due_placements(&linked, NOW + 45, 10).unwrap();
    let order: Vec<ContentHash> = due.iter().map(|p| p.hash).collect();
    assert_eq!(order, vec![file_hash(2), file_hash(3)]);
    assert!(db.due_placements(&[], NOW + 100, 10).unwrap().is_empty());
}

fn check_results_are_counted_per_placement_and_summed_per_peer(backend: &Backend) {
    let fx = Fixture::new(backend);
    let db = fx.meta();
    let agent = new_agent();
    let a = agent.to_string();
    let stranger = new_agent().to_string();
    db.upsert_peer(&PeerUpsert::new(&agent), NOW).unwrap();
    db.insert_placement(&a, &file_hash(1), NOW, 10).unwrap();
    db.insert_placement(&a, &file_hash(2), NOW, 10).unwrap();
    db.insert_placement(&stranger, &file_hash(1), NOW, 10)
        .unwrap();

    let failed = |why: &str| CheckResult::Failed(why.to_owned());
    assert!(db
        .record_check(&a, &file_hash(1), NOW + 10, &CheckResult::Passed)
        .unwrap());
    assert!(db
        .record_check(&a, &file_hash(1), NOW + 20, &failed("(not found)"))
        .unwrap());
    assert!(db
        .record_check(&a, &file_hash(2), NOW + 30, &failed("wrong answer"))
        .unwrap());
    let gone = CheckResult::Inconclusive("link lost".into());
    assert!(db.record_check(&a, &file_hash(2), NOW + 40, &gone).unwrap());
    // A placement that does not exist records nothing.
    assert!(!db
        .record_check(&a, &file_hash(9), NOW, &failed("x"))
        .unwrap());
    // A failure reason is kept within bounds.
    let long = "x".repeat(MAX_FAILURE_TEXT * 4);
    db.record_check(&stranger, &file_hash(1), NOW + 5, &failed(&long))
        .unwrap();

    let one = db
        .placements_of(&a)
        .unwrap()
        .into_iter()
        .find(|p| p.hash == file_hash(1))
        .unwrap();
    assert_eq!((one.checks_passed, one.checks_failed), (1, 1));
    assert_eq!(one.last_check_at, Some(NOW + 20));
    assert_eq!(one.last_failure.as_deref(), Some("(not found)"));
    assert_eq!(one.last_failure_at, Some(NOW + 20));

    let sums = fx.meta().retention_by_peer().unwrap();
    assert_eq!(sums.len(), 2);
    let mine = sums.iter().find(|s| s.agent == a).unwrap();
    assert_eq!(mine.files_held, 2);
    assert_eq!(
        (
            mine.checks_passed,
            mine.checks_failed,
            mine.checks_inconclusive
        ),
        (1, 2, 1)
    );
    assert_eq!(mine.last_check_at, Some(NOW + 40));
    assert_eq!(mine.last_failure.as_deref(), Some("wrong answer"));
    assert_eq!(mine.last_failure_hash, Some(file_hash(2)));
    assert_eq!(mine.last_failure_at, Some(NOW + 30));
    let theirs = sums.iter().find(|s| s.agent == stranger).unwrap();
    assert_eq!(
        theirs.last_failure.as_ref().map(String::len),
        Some(MAX_FAILURE_TEXT)
    );
    // Failures also count against the peer in the key store (a stranger has no row).
    assert_eq!(db.get_peer(&a).unwrap().unwrap().retention_failures, 2);
}

fn chat_queue_log_and_channels_survive_reopening(backend: &Backend) {
    let fx = Fixture::new(backend);
    let meta = fx.meta();
    let row = |key: &str, json: &[u8]| ChatQueueRow {
        key: key.to_owned(),
        target: "guid".to_owned(),
        json: json.to_vec(),
    };
    meta.chat_persist(&row("a", b"{1}"), NOW).unwrap();
    meta.chat_persist(&row("b", b"{2}"), NOW + 1).unwrap();
    meta.chat_persist(&row("a", b"{1 again}"), NOW + 2).unwrap();
    meta.chat_forget("b").unwrap();
    meta.chat_forget("never queued").unwrap();
    assert_eq!(
        fx.meta().chat_queued(10).unwrap(),
        vec![row("a", b"{1 again}")]
    );

    let message = |text: &str, channel: Option<&str>| ChatMessageRow {
        seq: 0,
        msg_id: format!("id-{text}"),
        channel: channel.map(str::to_owned),
        channel_id: channel.map(|c| format!("{c}-id")),
        sender: "someone".to_owned(),
        sent_at: "2026-11-22T00:00:00Z".to_owned(),
        text: text.to_owned(),
        attachments: "[]".to_owned(),
        received_at: NOW,
        ..ChatMessageRow::default()
    };
    let first = meta.chat_append(&message("one", Some("lobby")), 2).unwrap();
    meta.chat_append(&message("two", None), 2).unwrap();
    meta.chat_append(&message("three", Some("lobby")), 2)
        .unwrap();
    let all = fx.meta().chat_read(0, None, 10).unwrap();
    let texts: Vec<&str> = all.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["two", "three"], "only the newest two are kept");
    assert!(all[0].seq > first);
    let lobby = meta.chat_read(0, Some("lobby"), 10).unwrap();
    assert_eq!(lobby.len(), 1);
    assert_eq!(lobby[0].channel_id.as_deref(), Some("lobby-id"));
    assert!(meta.chat_read(all[1].seq, None, 10).unwrap().is_empty());

    let lobby = ChatChannelRow {
        name: "lobby".to_owned(),
        closed: false,
    };
    let secret = ChatChannelRow {
        name: "secret".to_owned(),
        closed: true,
    };
    meta.chat_set_joined(&lobby, true, NOW).unwrap();
    meta.chat_set_joined(&secret, true, NOW + 1).unwrap();
    meta.chat_set_joined(&lobby, true, NOW + 2).unwrap();
    assert_eq!(
        fx.meta().chat_joined().unwrap(),
        vec![lobby.clone(), secret]
    );
    meta.chat_set_joined(&lobby, false, NOW + 3).unwrap();
    assert_eq!(meta.chat_joined().unwrap().len(), 1);
}

fn chat_state_and_message_standing_survive_reopening(backend: &Backend) {
    let fx = Fixture::new(backend);
    let meta = fx.meta();
    // A channel record; its keys are stored as given (sealed by the chat, never in clear).
    let secret = ChatChannelStateRow {
        channel_id: "c-1".into(),
        name: "secret".into(),
        closed: true,
        standing: "member".into(),
        members: r#"["a@x","y"]"#.into(),
        sealed_keys: vec![9; 88],
    };
    meta.chat_save_channel(&secret, NOW).unwrap();
    let mut renamed = secret.clone();
    renamed.members = r#"["a@x"]"#.into();
    meta.chat_save_channel(&renamed, NOW + 1).unwrap();
    let lobby = ChatChannelStateRow {
        channel_id: "c-2".into(),
        name: "lobby".into(),
        closed: false,
        standing: "member".into(),
        members: "[]".into(),
        sealed_keys: Vec::new(),
    };
    meta.chat_save_channel(&lobby, NOW + 2).unwrap();
    assert_eq!(
        fx.meta().chat_channels().unwrap(),
        vec![renamed, lobby.clone()]
    );
    meta.chat_drop_channel("c-1").unwrap();
    meta.chat_drop_channel("never").unwrap();
    assert_eq!(meta.chat_channels().unwrap(), vec![lobby]);

    // People: names, last seen, blocks and mutes.
    meta.chat_node_seen("g1", Some("ann"), NOW).unwrap();
    meta.chat_node_seen("g1", None, NOW + 5).unwrap();
    meta.chat_set_node_flags("g2", Some(true), None).unwrap();
    meta.chat_set_node_flags("g1", None, Some(true)).unwrap();
    let nodes = fx.meta().chat_nodes(10).unwrap();
    assert_eq!(nodes[0].guid, "g2");
    assert!(nodes[0].blocked && !nodes[0].muted);
    assert_eq!(nodes[1].name.as_deref(), Some("ann"));
    assert_eq!(nodes[1].last_seen, Some(NOW + 5));
    assert!(nodes[1].muted && !nodes[1].blocked);

    // Routers to dial and settings.
    assert!(meta.chat_set_peer("10.0.0.1:9001", true, NOW).unwrap());
    assert!(!meta.chat_set_peer("10.0.0.1:9001", true, NOW).unwrap());
    assert_eq!(meta.chat_peers().unwrap(), ["10.0.0.1:9001"]);
    assert!(meta.chat_set_peer("10.0.0.1:9001", false, NOW).unwrap());
    assert!(meta.chat_peers().unwrap().is_empty());
    meta.chat_set_setting("nick", Some("zoe")).unwrap();
    assert_eq!(
        fx.meta().chat_setting("nick").unwrap().as_deref(),
        Some("zoe")
    );
    meta.chat_set_setting("nick", None).unwrap();
    assert_eq!(meta.chat_setting("nick").unwrap(), None);

    // A message comes twice: logged once. The user's own: queued, then delivered.
    let theirs = ChatMessageRow {
        msg_id: "m-1".into(),
        sender: "bob@g3".into(),
        sender_guid: Some("g3".into()),
        sent_at: "t".into(),
        text: "hi".into(),
        attachments: "[]".into(),
        received_at: NOW,
        ..ChatMessageRow::default()
    };
    let seq = meta.chat_append(&theirs, 10).unwrap();
    assert_eq!(meta.chat_append(&theirs, 10).unwrap(), seq);
    let mine = ChatMessageRow {
        msg_id: "m-2".into(),
        sender: "me@g0".into(),
        sender_guid: Some("g0".into()),
        recipient: Some("bob@g3".into()),
        state: Some("sent".into()),
        sent_at: "t".into(),
        text: "psst".into(),
        attachments: "[]".into(),
        received_at: NOW,
        ..ChatMessageRow::default()
    };
    meta.chat_append(&mine, 10).unwrap();
    meta.chat_set_posted("m-2", 2, true).unwrap();
    let row = meta.chat_mark_delivered("m-2", NOW + 60).unwrap().unwrap();
    assert_eq!((row.state.as_deref(), row.delivered), (Some("queued"), 1));
    let row = meta.chat_mark_delivered("m-2", NOW + 90).unwrap().unwrap();
    assert_eq!(row.state.as_deref(), Some("delivered"));
    assert_eq!(row.delivered_at, Some(NOW + 90));
    assert!(
        meta.chat_mark_delivered("m-1", NOW).unwrap().is_none(),
        "not ours"
    );
    let all = fx.meta().chat_read(0, None, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].recipient.as_deref(), Some("bob@g3"));
}

fn items_of_recorded_files_are_in_use_and_loose_items_are_not(backend: &Backend) {
    let fx = Fixture::new(backend);
    let store = fx.store();
    let big = data(2 * CAP + 7, 21);
    let file = store
        .put_reader(&mut Cursor::new(&big), Some("big"))
        .unwrap();
    let loose = store
        .blobs()
        .put_item(ItemType::BLOB, b"a loose item, no file uses it")
        .unwrap();
    assert!(store.meta().item_in_use(&file.hash).unwrap(), "the root");
    assert!(store.meta().item_in_use(&chunk_hash(&big[..CAP])).unwrap());
    assert!(!store.meta().item_in_use(&loose).unwrap());
    store.remove(&file.hash).unwrap();
    assert!(!store.meta().item_in_use(&file.hash).unwrap());
}

/// A reader that stops in the middle: after `gate_at` bytes it says so on `reached` and waits
/// for `release` before yielding the rest, so a put reading from it is caught mid-way.
struct GatedReader {
    data: Vec<u8>,
    pos: usize,
    gate_at: usize,
    reached: Option<std::sync::mpsc::Sender<()>>,
    release: std::sync::mpsc::Receiver<()>,
}

impl std::io::Read for GatedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.gate_at {
            if let Some(reached) = self.reached.take() {
                reached.send(()).unwrap();
                self.release.recv().unwrap();
            }
        }
        let end = if self.pos < self.gate_at {
            self.gate_at
        } else {
            self.data.len()
        };
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Issue 11: a long put in one thread must not make a `file ls`, a ticket check or a chat
/// message wait in another (the node used to queue every store call behind one mutex).
fn a_long_put_does_not_make_metadata_calls_wait(backend: &Backend) {
    use std::sync::mpsc;
    let fx = Fixture::new(backend);
    let store = fx.store();
    let first = store
        .put_reader(&mut Cursor::new(data(500, 70)), Some("first"))
        .unwrap();
    store.meta().insert_ticket(&ticket(1, NOW + 100)).unwrap();
    let (reached_tx, reached) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let mut reader = GatedReader {
        data: data(20 * CAP, 71),
        pos: 0,
        gate_at: 10 * CAP,
        reached: Some(reached_tx),
        release: release_rx,
    };
    std::thread::scope(|scope| {
        let store = &store;
        let put = scope.spawn(move || store.put_reader(&mut reader, Some("long")));
        reached.recv().unwrap();
        assert!(
            stored_items(store).len() > 10,
            "the put is mid-way, items written"
        );
        let (done_tx, done) = mpsc::channel();
        scope.spawn(move || {
            let listed = store.list().unwrap();
            let verdict = store
                .meta()
                .redeem_ticket(&token(1), &new_agent().to_string(), NOW)
                .unwrap();
            let row = ChatMessageRow {
                seq: 0,
                msg_id: "m1".into(),
                channel: None,
                channel_id: None,
                sender: "s".into(),
                sent_at: "2024-01-01T00:00:00Z".into(),
                text: "hi".into(),
                attachments: "[]".into(),
                received_at: NOW,
                ..ChatMessageRow::default()
            };
            let seq = store.meta().chat_append(&row, 10).unwrap();
            done_tx.send((listed, verdict, seq)).unwrap();
        });
        // A bound on a hang, not a timing assertion: the calls need nothing the put holds.
        let answered = done.recv_timeout(std::time::Duration::from_secs(120));
        release.send(()).unwrap();
        let long = put.join().unwrap().unwrap();
        let (listed, verdict, seq) = answered.expect("metadata calls waited behind the put");
        assert_eq!(
            listed,
            vec![first.clone()],
            "the long put is not recorded yet"
        );
        assert_eq!(verdict, TicketVerdict::Accepted);
        assert!(seq > 0);
        assert_eq!(store.verify(&long.hash).unwrap(), 20 * CAP as u64);
    });
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
                fn $scenario() { super::$scenario(&super::Backend::postgres()) }
            )*
        }
    };
}

suite!(
    a_long_put_does_not_make_metadata_calls_wait,
    chat_queue_log_and_channels_survive_reopening,
    chat_state_and_message_standing_survive_reopening,
    shared_files_and_replicas_follow_the_file,
    round_trip_at_boundary_sizes,
    deep_tree_round_trips_with_smallest_items,
    check_values_through_the_store,
    corrupt_item_is_detected_and_no_output_file_is_left,
    missing_item_is_reported_by_hash,
    same_file_twice_is_stored_once,
    items_copied_one_by_one_are_recorded_as_the_same_file,
    shared_chunk_stays_until_its_last_file_is_removed,
    file_that_is_a_chunk_of_another_keeps_its_item,
    records_list_and_serialize,
    second_process_sees_the_same_store,
    migrations_run_once,
    concurrent_puts_and_removes_never_lose_a_referenced_item,
    peers_are_recorded_updated_listed_and_removed,
    the_reference_cipher_order_is_kept_per_peer_and_never_makes_a_peer,
    a_peer_key_never_changes,
    agents_can_be_blocked_before_and_after_they_are_peers,
    one_time_ticket_is_accepted_once,
    expired_revoked_and_unknown_tickets_are_refused,
    reusable_ticket_is_accepted_until_it_expires_or_is_revoked,
    tickets_are_validated_listed_and_purged,
    racing_redemptions_accept_each_one_time_ticket_exactly_once,
    two_processes_of_one_site_share_peers_and_tickets,
    custody_is_recorded_once_per_owner_and_counted,
    placements_are_bounded_per_peer_and_kept_once,
    due_placements_come_never_checked_first_then_oldest_and_only_for_the_agents_asked,
    check_results_are_counted_per_placement_and_summed_per_peer,
    items_of_recorded_files_are_in_use_and_loose_items_are_not,
);
