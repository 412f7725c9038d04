//! Folders in the store: put a directory, write it out elsewhere, compare the trees; a
//! manifest that tries to leave its folder writes nothing anywhere.

use kith_store::folder::{FolderScan, Manifest, ManifestError, ManifestLimits};
use kith_store::{BlobStore, FileStore, GcOptions, RemoveOutcome, SqliteMeta, StoreError};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn store(dir: &Path) -> FileStore {
    let blobs = BlobStore::with_max_item_size(dir.join("files"), 4096).unwrap();
    let meta = SqliteMeta::open(&dir.join("kith.db")).unwrap();
    FileStore::new(blobs, Box::new(meta))
}

/// A folder with nested directories, an empty file, an empty directory, an executable, a
/// multi-item file, and a symbolic link and a FIFO that must be skipped.
fn sample(root: &Path) -> PathBuf {
    let dir = root.join("photos");
    fs::create_dir_all(dir.join("a/b/c")).unwrap();
    fs::create_dir_all(dir.join("empty/inner")).unwrap();
    fs::write(dir.join("top.txt"), b"top").unwrap();
    fs::write(dir.join("a/empty.txt"), b"").unwrap();
    fs::write(dir.join("a/b/c/deep.bin"), vec![7u8; 10_000]).unwrap();
    fs::write(dir.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["top.txt", "a/empty.txt", "a/b/c/deep.bin"] {
        fs::set_permissions(dir.join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::os::unix::fs::symlink("/etc/passwd", dir.join("a/link")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("dirlink")).unwrap();
    rustix_mkfifo(&dir.join("fifo"));
    dir
}

fn rustix_mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status();
    assert!(status.is_ok_and(|s| s.success()), "mkfifo");
}

/// Every regular file and directory under `dir` (links and special files left out): its
/// bytes and mode.
fn tree(dir: &Path) -> BTreeMap<String, (Option<Vec<u8>>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                out.insert(rel, (None, mode));
                stack.push(e.path());
            } else if meta.is_file() {
                out.insert(rel, (Some(fs::read(e.path()).unwrap()), mode));
            }
        }
    }
    out
}

#[test]
fn a_folder_is_put_and_written_out_alike() {
    let work = tempfile::tempdir().unwrap();
    let src = sample(work.path());
    let s = store(&work.path().join("data"));
    let scan = FolderScan::of(&src, &ManifestLimits::default()).unwrap();
    assert_eq!(scan.file_count(), 4);
    let skipped: Vec<_> = scan.skipped.iter().map(|s| s.reason).collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    let mut seen = 0;
    let put = s
        .put_folder(&scan, Some("photos"), &mut |n| seen += n)
        .unwrap();
    assert_eq!(seen, 3 + 10_000 + 18);
    assert_eq!((put.folder.files, put.folder.bytes), (4, 10_021));
    assert_eq!(put.record.name.as_deref(), Some("photos"));
    // One entry for the folder: its files are not listed on their own.
    assert_eq!(s.list().unwrap().len(), 1);
    assert_eq!(s.meta().list_folders().unwrap(), vec![put.folder]);
    assert!(s.is_folder_manifest(&put.record.hash).unwrap());

    let manifest = s
        .read_manifest(&put.record.hash, &ManifestLimits::default())
        .unwrap();
    assert_eq!(manifest.dirs, vec!["empty/inner".to_owned()]);
    let out = work.path().join("copy");
    let written = s.write_folder(&manifest, &out, false, &mut |_| {}).unwrap();
    assert_eq!(written, 10_021);
    let mut expected = tree(&src);
    // The bytes and modes match; the source's directories may have other modes than the
    // 0755 a folder is written with.
    for (_, (bytes, mode)) in expected.iter_mut() {
        if bytes.is_none() {
            *mode = 0o755;
        }
    }
    assert_eq!(tree(&out), expected);
    // Nothing else beside the target (no temporary directory left).
    let names: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".kith"))
        .collect();
    assert!(names.is_empty(), "{names:?}");

    // Not over an existing target without force; with force, replaced whole.
    let refused = s.write_folder(&manifest, &out, false, &mut |_| {});
    assert!(matches!(refused, Err(StoreError::Io { ref source, .. })
        if source.kind() == std::io::ErrorKind::AlreadyExists));
    fs::write(out.join("stray"), b"x").unwrap();
    s.write_folder(&manifest, &out, true, &mut |_| {}).unwrap();
    assert_eq!(tree(&out), expected);
    let file_target = work.path().join("was-a-file");
    fs::write(&file_target, b"old").unwrap();
    s.write_folder(&manifest, &file_target, true, &mut |_| {})
        .unwrap();
    assert_eq!(tree(&file_target), expected);

    // Put again: the same folder, the same record.
    let again = s.put_folder(&scan, Some("photos"), &mut |_| {}).unwrap();
    assert_eq!(again.record.hash, put.record.hash);
    // The collector keeps every item of the folder; removing it takes them all.
    s.gc(&GcOptions {
        grace_secs: 0,
        wait: true,
    })
    .unwrap();
    s.write_folder(&manifest, &work.path().join("after-gc"), false, &mut |_| {})
        .unwrap();
    match s.remove(&put.record.hash).unwrap() {
        RemoveOutcome::Removed { items_deleted } => assert!(items_deleted >= 6),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.blobs().iter().unwrap().count(), 0);
    assert!(s.meta().list_folders().unwrap().is_empty());
}

#[test]
fn a_hostile_manifest_writes_nothing_anywhere() {
    let work = tempfile::tempdir().unwrap();
    let s = store(&work.path().join("data"));
    let inner = s.put_reader(&mut &b"owned"[..], Some("x")).unwrap();
    let h = inner.hash.to_hex();
    let hostile = [
        format!(
            r#"{{"dirs":[],"files":[{{"exec":false,"hash":"{h}","path":"../escape","size":5}}]}}"#
        ),
        format!(
            r#"{{"dirs":[],"files":[{{"exec":false,"hash":"{h}","path":"/tmp/escape","size":5}}]}}"#
        ),
        r#"{"dirs":["a/../../escape"],"files":[]}"#.to_owned(),
        format!(
            r#"{{"dirs":[],"files":[{{"exec":false,"hash":"{h}","path":"a","size":5}},{{"exec":false,"hash":"{h}","path":"a/b","size":5}}]}}"#
        ),
    ];
    let out = work.path().join("sub").join("target");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    for json in hostile {
        let bytes = format!("kith-folder/1\n{json}\n");
        let put = s.put_reader(&mut bytes.as_bytes(), Some("evil")).unwrap();
        assert!(s.is_folder_manifest(&put.hash).unwrap());
        let err = s
            .read_manifest(&put.hash, &ManifestLimits::default())
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Manifest {
                    source: ManifestError::BadPath { .. } | ManifestError::UnderFile { .. },
                    ..
                }
            ),
            "{err}"
        );
    }
    // Nothing was written: no target, nothing escaped beside it or above it.
    assert!(!out.exists());
    assert_eq!(fs::read_dir(out.parent().unwrap()).unwrap().count(), 0);
    assert!(!work.path().join("escape").exists());
    assert!(!work.path().join("sub/escape").exists());
    // A file that is not a manifest is told apart; one too large is refused unread.
    assert!(!s.is_folder_manifest(&inner.hash).unwrap());
    let big = Manifest::default().encode();
    let put = s.put_reader(&mut &big[..], None).unwrap();
    let tiny = ManifestLimits {
        max_bytes: 5,
        ..ManifestLimits::default()
    };
    assert!(matches!(
        s.read_manifest(&put.hash, &tiny),
        Err(StoreError::Manifest {
            source: ManifestError::TooLarge { .. },
            ..
        })
    ));
}

#[test]
fn put_of_a_file_or_nothing_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("f");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        FolderScan::of(&file, &ManifestLimits::default()),
        Err(StoreError::NotADirectory { .. })
    ));
    let few = ManifestLimits {
        max_entries: 1,
        ..ManifestLimits::default()
    };
    fs::write(work.path().join("g"), b"y").unwrap();
    assert!(matches!(
        FolderScan::of(work.path(), &few),
        Err(StoreError::FolderRefused(
            ManifestError::TooManyEntries { .. }
        ))
    ));
}
