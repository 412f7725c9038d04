use super::*;
use kith_crypto::custody::CustodyError;
use proptest::prelude::*;
use rand::rngs::OsRng;

const MAX_ITEM: usize = 200;

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn stores() -> (tempfile::TempDir, BlobStore, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let owner = BlobStore::with_max_item_size(dir.path().join("owner"), MAX_ITEM).unwrap();
    let custodian = BlobStore::with_max_item_size(dir.path().join("custodian"), MAX_ITEM).unwrap();
    (dir, owner, custodian)
}

/// What the custodian does over a session: walks the owner's tree item by item into a copy.
fn take_into_custody(
    owner: &BlobStore,
    custodian: &BlobStore,
    root: ContentHash,
    owner_key: &[u8; 33],
    max_size: u64,
) -> Result<StoredFile, CopyError> {
    let mut cursor = TreeCursor::new(root);
    let mut copy = CopyWriter::new(custodian.clone(), owner_key, &root, max_size, &mut OsRng)?;
    while let Some(next) = cursor.expected() {
        let item = owner.get_item(&next).unwrap();
        cursor.accept(item.item_type, &item.content)?;
        copy.append_item(item.item_type, &item.content)?;
    }
    copy.finish()
}

fn open(
    custodian: &BlobStore,
    copy: &ContentHash,
    key: &ContentKey,
    original: &ContentHash,
) -> Result<Vec<u8>, CopyError> {
    let mut out = Vec::new();
    let written = open_copy(custodian, copy, key, original, MAX_ITEM, &mut out)?;
    assert_eq!(written, out.len() as u64);
    Ok(out)
}

#[test]
fn files_of_any_size_round_trip_and_the_custodian_never_stores_plain_bytes() {
    let key = ContentKey::generate(&mut OsRng);
    for len in [0usize, 1, 199, 5_000, 70_000, 200_000] {
        let (_dir, owner, custodian) = stores();
        let content = bytes(len, 7);
        let file = owner.put_file(&mut &content[..]).unwrap();
        let copy =
            take_into_custody(&owner, &custodian, file.hash, &key.public_key(), u64::MAX).unwrap();
        assert_eq!(
            open(&custodian, &copy.hash, &key, &file.hash).unwrap(),
            content
        );
        if len >= 64 {
            let window = &content[len / 2..len / 2 + 32];
            for item in custodian.iter().unwrap() {
                let item = custodian.get_item(&item.unwrap()).unwrap();
                assert!(!item.content.windows(32).any(|w| w == window), "len {len}");
                if item.item_type.kind() == ItemKind::Blob {
                    assert!(item.item_type.has_flag(ItemType::FLAG_ENCRYPTED));
                }
            }
        }
    }
}

#[test]
fn a_wrong_key_or_another_file_is_refused_before_any_output() {
    let (_dir, owner, custodian) = stores();
    let key = ContentKey::generate(&mut OsRng);
    let content = bytes(5_000, 1);
    let file = owner.put_file(&mut &content[..]).unwrap();
    let copy =
        take_into_custody(&owner, &custodian, file.hash, &key.public_key(), u64::MAX).unwrap();
    let wrong = ContentKey::generate(&mut OsRng);
    let mut out = Vec::new();
    let err = open_copy(
        &custodian, &copy.hash, &wrong, &file.hash, MAX_ITEM, &mut out,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            CopyError::Crypto(CustodyError::Authentication { chunk: 0 })
        ),
        "{err}"
    );
    assert!(out.is_empty());

    // A lying custodian: a valid copy for this owner and this hash, of other content.
    let other = bytes(5_000, 2);
    let mut forged = CopyWriter::new(
        custodian.clone(),
        &key.public_key(),
        &file.hash,
        u64::MAX,
        &mut OsRng,
    )
    .unwrap();
    forged.append_item(ItemType::BLOB, &other[..150]).unwrap();
    let forged = forged.finish().unwrap();
    let err = open(&custodian, &forged.hash, &key, &file.hash).unwrap_err();
    assert!(
        matches!(err, CopyError::HashMismatch { index: 0, expected } if expected == file.hash),
        "{err}"
    );
}

#[test]
fn a_copy_that_stops_early_is_truncated() {
    let (_dir, owner, custodian) = stores();
    let key = ContentKey::generate(&mut OsRng);
    let content = bytes(3_000, 3);
    let file = owner.put_file(&mut &content[..]).unwrap();
    let mut cursor = TreeCursor::new(file.hash);
    let mut copy = CopyWriter::new(
        custodian.clone(),
        &key.public_key(),
        &file.hash,
        u64::MAX,
        &mut OsRng,
    )
    .unwrap();
    for _ in 0..3 {
        let next = cursor.expected().unwrap();
        let item = owner.get_item(&next).unwrap();
        cursor.accept(item.item_type, &item.content).unwrap();
        copy.append_item(item.item_type, &item.content).unwrap();
    }
    let copy = copy.finish().unwrap();
    let err = open(&custodian, &copy.hash, &key, &file.hash).unwrap_err();
    assert!(matches!(err, CopyError::Truncated), "{err}");
}

#[test]
fn a_copy_over_its_limit_is_refused_and_aborting_leaves_nothing() {
    let (_dir, owner, custodian) = stores();
    let key = ContentKey::generate(&mut OsRng);
    let content = bytes(100_000, 4);
    let file = owner.put_file(&mut &content[..]).unwrap();
    let err =
        take_into_custody(&owner, &custodian, file.hash, &key.public_key(), 50_000).unwrap_err();
    assert!(matches!(err, CopyError::TooLarge { max: 50_000 }), "{err}");

    let mut copy = CopyWriter::new(
        custodian.clone(),
        &key.public_key(),
        &file.hash,
        u64::MAX,
        &mut OsRng,
    )
    .unwrap();
    copy.append_item(ItemType::BLOB, &bytes(150_000, 5))
        .unwrap();
    assert!(custodian.iter().unwrap().count() > 0);
    copy.abort().unwrap();
    // Only what the failed attempt above left (it was dropped, not aborted) may remain.
    let before = custodian.iter().unwrap().count();
    assert!(before < 1_000);
}

#[test]
fn the_cursor_refuses_items_out_of_place() {
    let list = format!("{}\n", ContentHash([9; 32]).to_hex());
    let root = ContentHash::compute(ItemType::LIST, list.as_bytes());
    let mut cursor = TreeCursor::new(root);
    assert!(matches!(
        cursor.accept(ItemType::BLOB, b"not the root"),
        Err(CopyError::HashMismatch { index: 0, .. })
    ));
    cursor.accept(ItemType::LIST, list.as_bytes()).unwrap();
    assert_eq!(cursor.expected(), Some(ContentHash([9; 32])));
    assert!(cursor.accept(ItemType::BLOB, b"x").is_err());
    let blob_root = ContentHash::compute(ItemType::BLOB, b"x");
    let mut done = TreeCursor::new(blob_root);
    done.accept(ItemType::BLOB, b"x").unwrap();
    assert!(matches!(
        done.accept(ItemType::BLOB, b"x"),
        Err(CopyError::TrailingItems)
    ));
}

proptest! {
    #[test]
    fn arbitrary_item_streams_never_panic(
        pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        root in any::<[u8; 32]>(),
    ) {
        let mut reader = ItemStreamReader::new(ContentHash(root), 1_000);
        let mut emitted = 0usize;
        for piece in &pieces {
            if reader.update(piece, &mut |c| { emitted += c.len(); Ok(()) }).is_err() {
                break;
            }
        }
        let _ = reader.finish();
        prop_assert!(emitted <= pieces.iter().map(Vec::len).sum::<usize>());
    }

    #[test]
    fn valid_streams_split_anywhere_are_read_back(len in 0usize..3_000, split in 1usize..500) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::with_max_item_size(dir.path(), MAX_ITEM).unwrap();
        let content = bytes(len, 9);
        let file = store.put_file(&mut &content[..]).unwrap();
        let mut stream = Vec::new();
        let mut cursor = TreeCursor::new(file.hash);
        while let Some(next) = cursor.expected() {
            let item = store.get_item(&next).unwrap();
            cursor.accept(item.item_type, &item.content).unwrap();
            stream.extend_from_slice(&record_header(item.item_type, item.content.len()).unwrap());
            stream.extend_from_slice(&item.content);
        }
        let mut reader = ItemStreamReader::new(file.hash, MAX_ITEM);
        let mut out = Vec::new();
        for piece in stream.chunks(split) {
            reader.update(piece, &mut |c| { out.extend_from_slice(c); Ok(()) }).unwrap();
        }
        reader.finish().unwrap();
        prop_assert_eq!(out, content);
    }
}

#[test]
fn the_copy_is_cut_to_fit_the_owners_items() {
    let dir = tempfile::tempdir().unwrap();
    let owner = BlobStore::with_max_item_size(dir.path().join("owner"), MAX_ITEM).unwrap();
    let custodian = BlobStore::with_max_item_size(dir.path().join("custodian"), 100_000).unwrap();
    let key = ContentKey::generate(&mut OsRng);
    for len in [10usize, 150, 5_000, 70_000] {
        let content = bytes(len, 11);
        let file = owner.put_file(&mut &content[..]).unwrap();
        let copy =
            take_into_custody(&owner, &custodian, file.hash, &key.public_key(), u64::MAX).unwrap();
        for item in &copy.items {
            let item = custodian.get_item(item).unwrap();
            assert!(
                item.content.len() < MAX_ITEM,
                "len {len}: an item the owner could not take"
            );
        }
        // The owner, with its small items, takes the copy item by item and opens it.
        let back =
            BlobStore::with_max_item_size(dir.path().join(format!("back{len}")), MAX_ITEM).unwrap();
        for hash in &copy.items {
            let item = custodian.get_item(hash).unwrap();
            back.put_item(item.item_type, &item.content).unwrap();
        }
        assert_eq!(open(&back, &copy.hash, &key, &file.hash).unwrap(), content);
    }
}
