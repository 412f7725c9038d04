//! The collector's rules, and a put on a full disk (a store whose writes fail with ENOSPC
//! after a number of bytes: the test hook `BlobStore::space_left`).

use std::io::Cursor;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::address::ItemType;
use crate::blobs::BlobStore;
use crate::files::system_clock;
use crate::meta::{CustodyRecord, SqliteMeta};
use crate::writer::FileWriter;

/// Small items keep trees cheap: 199 content bytes per chunk.
const MAX: usize = 200;
const DAY: i64 = 24 * 60 * 60;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn blobs(&self) -> BlobStore {
        BlobStore::with_max_item_size(self.dir.path().join("store"), MAX).unwrap()
    }

    fn store_with(&self, blobs: BlobStore, clock_offset: i64) -> FileStore {
        let meta = SqliteMeta::open(&self.dir.path().join("kith.db")).unwrap();
        FileStore::new(blobs, Box::new(meta)).with_clock(move || system_clock() + clock_offset)
    }

    /// A store whose clock runs `clock_offset` seconds ahead of the files' times.
    fn store(&self, clock_offset: i64) -> FileStore {
        self.store_with(self.blobs(), clock_offset)
    }

    fn temp_files(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("store").join(crate::blobs::TMP_DIR))
            .unwrap()
            .count()
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + u64::from(seed) * 7 + i as u64 / 251) as u8)
        .collect()
}

fn items(store: &FileStore) -> Vec<ContentHash> {
    let mut all: Vec<_> = store.blobs().iter().unwrap().map(Result::unwrap).collect();
    all.sort_by_key(|h| h.0);
    all
}

fn now_options(grace_secs: u64) -> GcOptions {
    GcOptions {
        grace_secs,
        wait: false,
    }
}

#[test]
fn a_put_on_a_full_disk_removes_what_it_wrote_and_says_so() {
    let fx = Fixture::new();
    let store = fx.store(0);
    let kept = store
        .put_reader(&mut Cursor::new(data(1_000, 1)), Some("kept"))
        .unwrap();
    let before = items(&store);

    let mut full = fx.blobs();
    full.space_left = Some(Arc::new(AtomicU64::new(5_000)));
    let store = fx.store_with(full, 0);
    // Shares its first five chunks with `kept`, then needs ~100 more items than fit.
    let big = [data(1_000, 1), data(20_000, 2)].concat();
    let err = store
        .put_reader(&mut Cursor::new(&big), Some("big"))
        .unwrap_err();
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains("nothing was recorded"), "{text}");

    assert_eq!(
        items(&store),
        before,
        "only the earlier file's items remain"
    );
    assert_eq!(fx.temp_files(), 0, "no temp file is left");
    assert_eq!(store.list().unwrap(), vec![kept.clone()]);
    assert_eq!(
        store.verify(&kept.hash).unwrap(),
        1_000,
        "shared chunks intact"
    );
}

#[test]
fn orphans_and_temp_files_go_past_the_grace_period_and_files_stay() {
    let fx = Fixture::new();
    let store = fx.store(0);
    let file = store
        .put_reader(&mut Cursor::new(data(5_000, 3)), Some("file"))
        .unwrap();
    let used = items(&store);
    // What a killed put leaves: items no record names, and a half-written temp file.
    let orphans = store
        .blobs()
        .put_file(&mut Cursor::new(data(3_000, 4)))
        .unwrap();
    let tmp = fx.dir.path().join("store/tmp/item-abandoned");
    std::fs::write(&tmp, [0u8; 123]).unwrap();

    let young = store.gc(&now_options(DEFAULT_GRACE_SECS)).unwrap();
    assert_eq!(young.items_removed, 0, "young orphans are kept: {young:?}");
    assert_eq!(young.items_kept_young, orphans.items.len() as u64);
    assert_eq!(young.items_in_use, used.len() as u64);
    assert_eq!(
        young.temp_files_removed, 1,
        "no writer owns a temp file now"
    );
    assert_eq!(young.bytes_freed, 123);

    let later = fx.store(DEFAULT_GRACE_SECS as i64 + 1);
    let report = later.gc(&now_options(DEFAULT_GRACE_SECS)).unwrap();
    assert_eq!(
        report.items_removed,
        orphans.items.len() as u64,
        "{report:?}"
    );
    assert!(report.bytes_freed > 3_000, "{report:?}");
    assert_eq!(report.items_kept_young, 0);
    assert_eq!(items(&later), used, "exactly the file's items are left");
    assert_eq!(later.verify(&file.hash).unwrap(), 5_000);

    let again = later.gc(&now_options(0)).unwrap();
    assert_eq!((again.items_removed, again.temp_files_removed), (0, 0));
}

#[test]
fn a_custody_copy_and_its_pull_request_are_in_use() {
    let fx = Fixture::new();
    let store = fx.store(2 * DAY);
    let encrypted = ItemType::BLOB.with_flags(ItemType::FLAG_ENCRYPTED).unwrap();
    let mut copy = FileWriter::new(store.blobs().clone(), encrypted).unwrap();
    copy.write(&data(4_000, 5)).unwrap();
    let copy = copy.finish().unwrap();
    let pull = store
        .blobs()
        .put_item(ItemType::BLOB, b"pull request")
        .unwrap();
    store
        .meta()
        .insert_custody(&CustodyRecord {
            original_hash: ContentHash([9; 32]),
            owner_key: [2; 33],
            encrypted_hash: copy.hash,
            pull_request_hash: pull,
            size: copy.size,
            received_at: 0,
        })
        .unwrap();
    let loose = store.blobs().put_item(ItemType::BLOB, b"loose").unwrap();

    let report = store.gc(&now_options(DEFAULT_GRACE_SECS)).unwrap();
    assert_eq!(report.items_removed, 1, "{report:?}");
    assert_eq!(report.items_in_use, copy.items.len() as u64 + 1);
    assert!(!store.blobs().contains(&loose).unwrap());
    assert!(store.blobs().contains(&pull).unwrap());
    let mut back = Vec::new();
    store.blobs().read_file(&copy.hash, &mut back).unwrap();
    assert_eq!(back.len(), 4_000);
}

#[test]
fn a_writer_at_work_keeps_the_collector_out() {
    let fx = Fixture::new();
    let store = fx.store(2 * DAY);
    let lease = store.write_lease().unwrap();
    store
        .blobs()
        .put_file(&mut Cursor::new(data(2_000, 6)))
        .unwrap();
    assert!(matches!(store.gc(&now_options(0)), Err(StoreError::Busy)));
    assert!(matches!(store.startup_gc(), StartupGc::Busy));
    assert!(!items(&store).is_empty());
    drop(lease);
    let StartupGc::Done(report) = store.startup_gc() else {
        panic!("the lease is gone")
    };
    assert!(report.items_removed > 0, "{report:?}");
    assert!(items(&store).is_empty());
}

#[test]
fn an_old_item_found_again_by_a_writer_is_young_again() {
    let fx = Fixture::new();
    let store = fx.store(0);
    let hash = store.blobs().put_item(ItemType::BLOB, b"resumed").unwrap();
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * DAY as u64);
    std::fs::File::options()
        .write(true)
        .open(store.blobs().path_for(&hash))
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    // A fetch resuming, say: it stores the same item again.
    store.blobs().put_item(ItemType::BLOB, b"resumed").unwrap();
    let report = store.gc(&now_options(DEFAULT_GRACE_SECS)).unwrap();
    assert_eq!(report.items_kept_young, 1, "{report:?}");
    assert!(store.blobs().contains(&hash).unwrap());
}

#[test]
fn reports_read_as_sentences() {
    let report = GcReport {
        items_removed: 3,
        temp_files_removed: 1,
        bytes_freed: 1_500_000,
        items_in_use: 7,
        grace_secs: 60,
        ..GcReport::default()
    };
    assert_eq!(
        report.to_string(),
        "removed 3 unreferenced items and 1 temp files, freeing 1.5 MB; 7 items in use"
    );
    assert_eq!(human_bytes(999), "999 B");
    assert_eq!(human_bytes(2_500_000_000), "2.5 GB");
}
