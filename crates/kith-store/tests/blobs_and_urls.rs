//! Blob store edge cases, database URL handling, and never-panic properties.

use std::fs;
use std::io::Cursor;

use kith_store::tree::parse_list;
use kith_store::{
    hash_file, open_meta_db, BlobStore, ContentHash, ItemKind, ItemType, MetaError, StoreError,
};
use proptest::prelude::*;

#[test]
fn put_item_is_idempotent_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let hash = store.put_item(ItemType::BLOB, b"hello").unwrap();
    assert_eq!(store.put_item(ItemType::BLOB, b"hello").unwrap(), hash);
    let item = store.get_item(&hash).unwrap();
    assert_eq!(item.item_type, ItemType::BLOB);
    assert_eq!(item.content, b"hello");
    assert!(store.contains(&hash).unwrap());
    let listed: Vec<_> = store.iter().unwrap().map(Result::unwrap).collect();
    assert_eq!(listed, vec![hash]);
    assert!(store.remove_item(&hash).unwrap());
    assert!(!store.remove_item(&hash).unwrap());
    assert!(matches!(store.get_item(&hash), Err(StoreError::NotFound { hash: h }) if h == hash));
}

#[test]
fn an_item_stored_under_its_known_hash_is_the_same_as_put_item_stores() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::with_max_item_size(dir.path(), 200).unwrap();
    let hash = ContentHash::compute(ItemType::LIST, b"known");
    store
        .put_hashed_item(hash, ItemType::LIST, b"known")
        .unwrap();
    let item = store.get_item(&hash).unwrap();
    assert_eq!(item.item_type, ItemType::LIST);
    assert_eq!(item.content, b"known");
    // Storing it again, by either door, changes nothing.
    store
        .put_hashed_item(hash, ItemType::LIST, b"known")
        .unwrap();
    assert_eq!(store.put_item(ItemType::LIST, b"known").unwrap(), hash);
    let listed: Vec<_> = store.iter().unwrap().map(Result::unwrap).collect();
    assert_eq!(listed, vec![hash]);
    // The same refusals as put_item.
    let big = [7u8; 200];
    assert!(matches!(
        store.put_hashed_item(
            ContentHash::compute(ItemType::BLOB, &big),
            ItemType::BLOB,
            &big
        ),
        Err(StoreError::ItemTooLarge { .. })
    ));
}

#[test]
fn item_over_the_maximum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::with_max_item_size(dir.path(), 200).unwrap();
    store.put_item(ItemType::BLOB, &[7; 199]).unwrap();
    assert!(matches!(
        store.put_item(ItemType::BLOB, &[7; 200]),
        Err(StoreError::ItemTooLarge {
            size: 201,
            max: 200
        })
    ));
    assert!(matches!(
        BlobStore::with_max_item_size(dir.path(), 129),
        Err(StoreError::Config(_))
    ));
}

#[test]
fn compressed_items_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let compressed = ItemType::BLOB
        .with_flags(ItemType::FLAG_COMPRESSED)
        .unwrap();
    assert!(matches!(
        store.put_item(compressed, b"x"),
        Err(StoreError::CompressedItem)
    ));
}

#[test]
fn oversized_empty_and_mistyped_files_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::with_max_item_size(dir.path(), 200).unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        ("oversized", vec![1; 201]),
        ("empty", vec![]),
        ("bad type", b"\x07abc".to_vec()),
        ("compressed", b"\x09abc".to_vec()),
    ];
    for (what, bytes) in cases {
        let hash = ContentHash::compute(ItemType::BLOB, what.as_bytes());
        let path = store.path_for(&hash);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        match store.get_item(&hash) {
            Err(StoreError::Corrupt { hash: h, .. }) => assert_eq!(h, hash, "{what}"),
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn iter_skips_what_is_not_an_item() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let a = store.put_item(ItemType::BLOB, b"a").unwrap();
    let b = store.put_item(ItemType::LIST, b"").unwrap();
    fs::write(dir.path().join("lock"), b"").unwrap();
    fs::write(dir.path().join("ab"), b"a file, not a dir").unwrap();
    fs::create_dir_all(dir.path().join("zz")).unwrap();
    fs::write(store.path_for(&a).with_file_name("short"), b"").unwrap();
    let mut listed: Vec<_> = store.iter().unwrap().map(Result::unwrap).collect();
    listed.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn hash_file_without_a_store_matches_the_check_value() {
    let jpg = fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/test.jpg"
    ))
    .unwrap();
    assert_eq!(
        hash_file(&mut Cursor::new(&jpg), kith_store::DEFAULT_MAX_ITEM_SIZE)
            .unwrap()
            .to_string(),
        "a5ab1c26e5253fb7316b51e7f40687183714e0d683034954e1e8fc67bca42753"
    );
}

#[test]
fn list_parsing_accepts_reference_lines_and_rejects_garbage() {
    let h1 = ContentHash::compute(ItemType::BLOB, b"1");
    let h2 = ContentHash::compute(ItemType::BLOB, b"2");
    let text = format!("{h1}\n{h2}");
    assert_eq!(parse_list(text.as_bytes()).unwrap(), vec![h1, h2]);
    let named = format!("{h1} some name\r\n{h2}\n");
    assert_eq!(parse_list(named.as_bytes()).unwrap(), vec![h1, h2]);
    assert_eq!(parse_list(b"").unwrap(), vec![]);
    assert_eq!(parse_list(b"abc").unwrap_err().line, 1);
    assert_eq!(
        parse_list(format!("{h1}\n{h2}x").as_bytes())
            .unwrap_err()
            .line,
        2
    );
}

#[test]
fn unknown_scheme_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_meta_db(Some("mysql://db/kith"), &dir.path().join("x.db")).unwrap_err();
    assert!(matches!(&err, MetaError::UnsupportedScheme { scheme } if scheme == "mysql"));
    assert!(err.to_string().contains("mysql://"), "{err}");
}

#[test]
fn empty_sqlite_url_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["sqlite://", "sqlite:", "  "] {
        let err = open_meta_db(Some(url), &dir.path().join("x.db")).unwrap_err();
        assert!(matches!(err, MetaError::BadUrl { .. }), "{url}: {err}");
    }
}

#[test]
fn malformed_postgres_url_is_a_bad_url_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_meta_db(
        Some("postgres://kith:secret@db:notaport/kith"),
        &dir.path().join("x.db"),
    )
    .unwrap_err();
    assert!(matches!(err, MetaError::BadUrl { .. }), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn unreachable_postgres_server_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let err = open_meta_db(
        Some("postgresql://kith:secret@127.0.0.1:1/kith"),
        &dir.path().join("x.db"),
    )
    .unwrap_err();
    assert!(matches!(err, MetaError::PostgresConnect { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[test]
fn sqlite_urls_and_bare_paths_open_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("kith.db");
    let default = dir.path().join("default.db");
    for url in [
        format!("sqlite://{}", path.display()),
        format!("sqlite:{}", path.display()),
        path.display().to_string(),
    ] {
        let db = open_meta_db(Some(&url), &default).unwrap();
        assert_eq!(db.backend(), "sqlite");
        assert_eq!(
            db.schema_version().unwrap(),
            kith_store::meta::SQLITE_MIGRATIONS.len() as u32
        );
    }
    assert!(path.exists());
    assert!(!default.exists());
    open_meta_db(None, &default).unwrap();
    assert!(default.exists());
}

proptest! {
    // Each case writes and fsyncs real files; 64 cases keep the suite quick on a busy disk.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn get_item_never_panics_on_arbitrary_stored_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        name in any::<[u8; 32]>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::with_max_item_size(dir.path(), 200).unwrap();
        let hash = ContentHash(name);
        let path = store.path_for(&hash);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &bytes).unwrap();
        let result = store.get_item(&hash);
        prop_assert!(result.is_err(), "an arbitrary name almost never matches");
        let _ = store.read_file(&hash, &mut std::io::sink());
    }

    #[test]
    fn arbitrary_list_content_never_panics_when_read(
        content in proptest::collection::vec(any::<u8>(), 0..199),
    ) {
        let _ = parse_list(&content);
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::with_max_item_size(dir.path(), 200).unwrap();
        let hash = store.put_item(ItemType::LIST, &content).unwrap();
        let _ = store.read_file(&hash, &mut std::io::sink());
    }

    #[test]
    fn hash_and_put_agree_and_round_trip(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::with_max_item_size(dir.path(), 150).unwrap();
        let stored = store.put_file(&mut Cursor::new(&bytes)).unwrap();
        prop_assert_eq!(stored.hash, store.hash_file(&mut Cursor::new(&bytes)).unwrap());
        prop_assert_eq!(stored.size, bytes.len() as u64);
        prop_assert_eq!(stored.kind == ItemKind::Blob, bytes.len() <= 149);
        let mut out = Vec::new();
        store.read_file(&stored.hash, &mut out).unwrap();
        prop_assert_eq!(out, bytes);
    }
}
