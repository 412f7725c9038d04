//! Store scenarios, written once and run against every metadata backend: SQLite always,
//! PostgreSQL when `KITH_TEST_POSTGRES` holds a URL (each test in its own schema).

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use kith_store::meta::{MetaDb, PostgresMeta, SqliteMeta, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
use kith_store::{
    BlobStore, ContentHash, FileStore, ItemKind, ItemType, RemoveOutcome, StoreError,
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
    fn postgres() -> Option<Backend> {
        match std::env::var("KITH_TEST_POSTGRES") {
            Ok(url) if !url.trim().is_empty() => Some(Backend::Postgres(url)),
            _ => {
                eprintln!("KITH_TEST_POSTGRES not set: PostgreSQL store test skipped");
                None
            }
        }
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
    let mut store = fx.store();
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
    let mut store = fx.store_with_max(130);
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
    let mut store = fx.store_with_max(kith_store::DEFAULT_MAX_ITEM_SIZE);
    let jpg = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/test.jpg"
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
    let mut store = fx.store();
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
    let mut store = fx.store();
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
    let mut store = fx.store();
    let bytes = data(3 * CAP + 10, 5);
    let first = store
        .put_reader(&mut Cursor::new(&bytes), Some("a"))
        .unwrap();
    let items = stored_items(&store);
    let mut store = store.with_clock(|| NOW + 60);
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

fn shared_chunk_stays_until_its_last_file_is_removed(backend: &Backend) {
    let fx = Fixture::new(backend);
    let mut store = fx.store();
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
        let mut store = fx.store();
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
    let mut store = fx.store();
    let r1 = store.put_reader(&mut &b"one"[..], Some("one.txt")).unwrap();
    let mut store = store.with_clock(|| NOW + 5);
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
    let mut node = fx.store();
    let mut cli = fx.store();
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
    let mut first = fx.meta();
    assert_eq!(first.schema_version().unwrap(), expected);
    let mut again = fx.meta();
    assert_eq!(again.schema_version().unwrap(), expected);
}

fn concurrent_puts_and_removes_never_lose_a_referenced_item(backend: &Backend) {
    let fx = Fixture::new(backend);
    let shared = data(CAP, 50);
    std::thread::scope(|scope| {
        for worker in 0..2u64 {
            let mut store = fx.store();
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
    let mut store = fx.store();
    let records = store.list().unwrap();
    assert_eq!(records.len(), 14);
    for record in records {
        assert_eq!(store.verify(&record.hash).unwrap(), record.size);
    }
}

macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $scenario() { super::$scenario(&super::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $scenario() {
                if let Some(backend) = super::Backend::postgres() {
                    super::$scenario(&backend)
                }
            })*
        }
    };
}

suite!(
    round_trip_at_boundary_sizes,
    deep_tree_round_trips_with_smallest_items,
    check_values_through_the_store,
    corrupt_item_is_detected_and_no_output_file_is_left,
    missing_item_is_reported_by_hash,
    same_file_twice_is_stored_once,
    shared_chunk_stays_until_its_last_file_is_removed,
    file_that_is_a_chunk_of_another_keeps_its_item,
    records_list_and_serialize,
    second_process_sees_the_same_store,
    migrations_run_once,
    concurrent_puts_and_removes_never_lose_a_referenced_item,
);
