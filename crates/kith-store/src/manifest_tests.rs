use super::*;
use proptest::prelude::*;

fn entry(path: &str, n: u8, size: u64, exec: bool) -> FolderEntry {
    FolderEntry {
        exec,
        hash: ContentHash([n; 32]),
        path: path.to_owned(),
        size,
    }
}

fn sample() -> Manifest {
    let mut m = Manifest {
        dirs: vec!["empty".into(), "a/empty".into()],
        files: vec![
            entry("a/b.txt", 1, 5, false),
            entry("run.sh", 2, 10, true),
            entry("a/c/d", 3, 0, false),
        ],
    };
    m.sort();
    m
}

fn raw(json: &str) -> Vec<u8> {
    format!("{MAGIC}\n{json}\n").into_bytes()
}

fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    Manifest::decode(bytes, &ManifestLimits::default())
}

#[test]
fn a_manifest_round_trips_in_canonical_form() {
    let m = sample();
    let bytes = m.encode();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with("kith-folder/1\n{\"dirs\":[\"a/empty\",\"empty\"],\"files\":[{\"exec\":false,\"hash\":\"0101"));
    assert!(text.ends_with("}]}\n"));
    assert_eq!(decode(&bytes).unwrap(), m);
    assert_eq!(m.total_bytes(), 15);
    assert!(Manifest::looks_like(&bytes));
    assert!(!Manifest::looks_like(b"hello"));
}

#[test]
fn an_empty_folder_is_a_manifest_too() {
    let m = Manifest::default();
    assert_eq!(decode(&m.encode()).unwrap(), m);
}

#[test]
fn other_files_and_other_versions_are_told_apart() {
    assert_eq!(decode(b"just a file\n"), Err(ManifestError::NotAManifest));
    assert_eq!(decode(b""), Err(ManifestError::NotAManifest));
    assert!(matches!(
        decode(b"kith-folder/2\n{}\n"),
        Err(ManifestError::Version(v)) if v == "kith-folder/2"
    ));
    assert!(matches!(
        decode(b"kith-folder/1"),
        Err(ManifestError::Malformed(_))
    ));
}

#[test]
fn paths_that_leave_the_folder_are_refused() {
    let h = "00".repeat(32);
    for path in [
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "a//b",
        "./a",
        "a/.",
        "",
        "a/",
        "nul\u{0}byte",
        "back\\slash",
        "line\nbreak",
    ] {
        let json = serde_json::json!({"dirs": [], "files": [{"exec": false, "hash": h, "path": path, "size": 1}]});
        let got = decode(&raw(&json.to_string()));
        assert!(
            matches!(got, Err(ManifestError::BadPath { .. })),
            "{path:?}: {got:?}"
        );
        let json = serde_json::json!({"dirs": [path], "files": []});
        let got = decode(&raw(&json.to_string()));
        assert!(
            matches!(got, Err(ManifestError::BadPath { .. })),
            "dir {path:?}: {got:?}"
        );
    }
    let long = "x".repeat(256);
    let json = serde_json::json!({"dirs": [long], "files": []});
    assert!(matches!(
        decode(&raw(&json.to_string())),
        Err(ManifestError::BadPath { .. })
    ));
}

#[test]
fn duplicates_and_paths_under_files_are_refused() {
    let mut m = sample();
    m.files.push(entry("a/b.txt", 9, 1, false));
    m.sort();
    assert_eq!(
        decode(&m.encode()),
        Err(ManifestError::Duplicate("a/b.txt".into()))
    );
    let mut m = sample();
    m.dirs.push("run.sh".into());
    m.sort();
    assert_eq!(
        decode(&m.encode()),
        Err(ManifestError::Duplicate("run.sh".into()))
    );
    let mut m = sample();
    m.files.push(entry("run.sh/inside", 9, 1, false));
    m.sort();
    assert!(matches!(
        decode(&m.encode()),
        Err(ManifestError::UnderFile { file, .. }) if file == "run.sh"
    ));
    let mut m = sample();
    m.dirs.push("a/b.txt/x".into());
    m.sort();
    assert!(matches!(
        decode(&m.encode()),
        Err(ManifestError::UnderFile { .. })
    ));
}

#[test]
fn non_canonical_and_malformed_manifests_are_refused() {
    let m = sample();
    let text = String::from_utf8(m.encode()).unwrap();
    // Unsorted.
    let mut unsorted = m.clone();
    unsorted.files.reverse();
    assert_eq!(decode(&unsorted.encode()), Err(ManifestError::NotCanonical));
    // Whitespace, missing final newline, extra fields, bad hashes, wrong types.
    assert_eq!(
        decode(text.replace("\"dirs\":", "\"dirs\": ").as_bytes()),
        Err(ManifestError::NotCanonical)
    );
    assert!(decode(text.trim_end().as_bytes()).is_err());
    for json in [
        r#"{"dirs":[],"files":[],"extra":1}"#,
        r#"{"dirs":[],"files":[{"exec":false,"hash":"xyz","path":"a","size":1}]}"#,
        r#"{"dirs":[],"files":[{"exec":false,"hash":"AA","path":"a","size":-1}]}"#,
        r#"{"dirs":[1],"files":[]}"#,
        r#"[]"#,
        r#"{"dirs":[],"files":[]"#,
    ] {
        assert!(
            matches!(decode(&raw(json)), Err(ManifestError::Malformed(_))),
            "{json}"
        );
    }
}

#[test]
fn limits_hold_before_parsing() {
    let m = sample();
    let small = ManifestLimits {
        max_bytes: 20,
        ..ManifestLimits::default()
    };
    assert!(matches!(
        Manifest::decode(&m.encode(), &small),
        Err(ManifestError::TooLarge { .. })
    ));
    let few = ManifestLimits {
        max_entries: 2,
        ..ManifestLimits::default()
    };
    assert!(matches!(
        Manifest::decode(&m.encode(), &few),
        Err(ManifestError::TooManyEntries { max: 2 })
    ));
    // A flood of tiny entries is refused on its commas, before serde sees it.
    let flood = format!("{{\"dirs\":[{}\"a\"],\"files\":[]}}", "\"a\",".repeat(1000));
    assert!(matches!(
        Manifest::decode(&raw(&flood), &few),
        Err(ManifestError::TooManyEntries { .. })
    ));
    let short = ManifestLimits {
        max_path: 3,
        ..ManifestLimits::default()
    };
    assert!(matches!(
        Manifest::decode(&m.encode(), &short),
        Err(ManifestError::BadPath { .. })
    ));
    let mut huge = Manifest::default();
    huge.files.push(entry("a", 1, u64::MAX, false));
    huge.files.push(entry("b", 1, 1, false));
    assert_eq!(decode(&huge.encode()), Err(ManifestError::SizeOverflow));
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}",
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just(String::new()),
        "[ -~]{0,4}",
        "\\PC{1,3}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(component(), 1..4).prop_map(|c| c.join("/")),
        prop::collection::vec(component(), 1..3).prop_map(|c| format!("/{}", c.join("/"))),
    ]
}

proptest! {
    /// Whatever the paths, a manifest that decodes names only places inside the folder, each
    /// once, none under a file; and what decodes re-encodes to the same bytes.
    #[test]
    fn whatever_decodes_stays_inside(
        files in prop::collection::vec((path(), any::<u8>(), 0u64..1000, any::<bool>()), 0..6),
        dirs in prop::collection::vec(path(), 0..3),
    ) {
        let mut m = Manifest {
            dirs,
            files: files.iter().map(|(p, n, s, x)| entry(p, *n, *s, *x)).collect(),
        };
        m.sort();
        let bytes = m.encode();
        if let Ok(decoded) = decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes);
            let all: Vec<&str> = decoded.files.iter().map(|f| f.path.as_str())
                .chain(decoded.dirs.iter().map(String::as_str)).collect();
            let unique: HashSet<&str> = all.iter().copied().collect();
            prop_assert_eq!(unique.len(), all.len());
            for p in &all {
                let joined = std::path::Path::new("/base").join(p);
                prop_assert!(joined.starts_with("/base"));
                prop_assert!(joined.components().all(|c| matches!(c,
                    std::path::Component::RootDir | std::path::Component::Normal(_))));
                prop_assert!(!p.contains('\0'));
            }
            for f in &decoded.files {
                let under = format!("{}/", f.path);
                prop_assert!(!all.iter().any(|p| p.starts_with(&under)));
            }
        }
    }

    /// Arbitrary bytes after the magic line never panic the decoder.
    #[test]
    fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = format!("{MAGIC}\n").into_bytes();
        bytes.extend_from_slice(&body);
        let _ = decode(&bytes);
    }
}
