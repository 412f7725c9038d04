//! Feeds arbitrary bytes to the folder manifest decoder (a manifest comes from the network):
//! it must never panic; what it accepts must re-encode to the same bytes and name only places
//! inside the folder, each once, none under a file; small limits must hold.
#![no_main]

use kith_store::folder::{Manifest, ManifestLimits};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::path::{Component, Path};

fuzz_target!(|data: &[u8]| {
    // Half the inputs get the magic line for free, so the fuzzer spends its time on the body.
    let mut bytes = Vec::with_capacity(data.len() + 14);
    if data.first().is_some_and(|b| b & 1 == 1) {
        bytes.extend_from_slice(b"kith-folder/1\n");
        bytes.extend_from_slice(&data[1..]);
    } else {
        bytes.extend_from_slice(data);
    }
    let limits = ManifestLimits {
        max_bytes: 64 * 1024,
        max_entries: 64,
        max_path: 512,
    };
    let Ok(manifest) = Manifest::decode(&bytes, &limits) else {
        return;
    };
    assert_eq!(manifest.encode(), bytes);
    assert!(manifest.files.len() + manifest.dirs.len() <= limits.max_entries);
    let paths: Vec<&str> = manifest
        .files
        .iter()
        .map(|f| f.path.as_str())
        .chain(manifest.dirs.iter().map(String::as_str))
        .collect();
    let unique: HashSet<&str> = paths.iter().copied().collect();
    assert_eq!(unique.len(), paths.len());
    for path in &paths {
        assert!(path.len() <= limits.max_path && !path.contains('\0'));
        assert!(Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_))));
    }
    for file in &manifest.files {
        let under = format!("{}/", file.path);
        assert!(!paths.iter().any(|p| p.starts_with(&under)));
    }
});
