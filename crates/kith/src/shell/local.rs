//! The shell's local `~` commands, the ones the seed's sessions use. ciyam_client passed them
//! to the operating system's shell; kith runs them itself against the data dir's store, so a
//! line typed at the prompt (or fed from a script) can never run a program.
//!
//! - `~rm HASH`: remove a file (or a lone item, such as one received from a peer) from the
//!   local store;
//! - `~cat HASH`: print a stored file (the custody requests are text);
//! - `~diff A B`: compare two files, each a path or a stored hash; prints nothing when they
//!   are the same, like diff.

use kith_store::{ContentHash, FileStore, RemoveOutcome};
use std::io::Write;
use std::path::Path;

/// Runs one `~` command (the line without its `~`). Its output goes to `out`; an error comes
/// back as one line of text, so the caller decides where it goes.
pub fn run(store: &mut FileStore, line: &str, out: &mut dyn Write) -> Result<(), String> {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or_default();
    let args: Vec<&str> = words.collect();
    match (command, args.as_slice()) {
        ("rm", [hash]) => {
            let hash = parse(hash)?;
            match store.remove(&hash).map_err(|e| e.to_string())? {
                RemoveOutcome::Removed { .. } => Ok(()),
                RemoveOutcome::NotFound => {
                    // An item received from a peer has no file record: it goes on its own.
                    if store
                        .blobs()
                        .remove_item(&hash)
                        .map_err(|e| e.to_string())?
                    {
                        Ok(())
                    } else {
                        Err(format!("{hash} is not in the local store"))
                    }
                }
            }
        }
        ("cat", [hash]) => {
            let hash = parse(hash)?;
            let mut bytes = Vec::new();
            store
                .get_to_writer(&hash, &mut bytes)
                .map_err(|e| e.to_string())?;
            // Like ciyam_client, end the output on a line end even when the file has none
            // (the custody requests do not).
            if bytes.last().is_some_and(|b| *b != b'\n') {
                bytes.push(b'\n');
            }
            out.write_all(&bytes).map_err(|e| e.to_string())
        }
        ("diff", [a, b]) => {
            let (a_bytes, b_bytes) = (read(store, a)?, read(store, b)?);
            if a_bytes != b_bytes {
                writeln!(out, "{a} and {b} differ").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        _ => Err(format!(
            "unknown local command ~{line}; try ~rm HASH, ~cat HASH or ~diff A B"
        )),
    }
}

fn parse(text: &str) -> Result<ContentHash, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a content hash (64 hex digits)"))
}

/// A path if one exists by that name, else a stored hash.
fn read(store: &FileStore, name: &str) -> Result<Vec<u8>, String> {
    if Path::new(name).exists() {
        return std::fs::read(name).map_err(|e| format!("{name}: {e}"));
    }
    let hash = parse(name)?;
    let mut bytes = Vec::new();
    store
        .get_to_writer(&hash, &mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_store::{BlobStore, ItemType};

    fn store(dir: &Path) -> FileStore {
        let blobs = BlobStore::open(dir.join("store")).unwrap();
        let meta = kith_store::open_meta_db(None, &dir.join("kith.db")).unwrap();
        FileStore::new(blobs, meta)
    }

    fn run_text(store: &mut FileStore, line: &str) -> Result<String, String> {
        let mut out = Vec::new();
        run(store, line, &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn cat_prints_a_received_item_with_a_final_line_end() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path());
        let text = b"md:raw\npk:abc\nsh:def";
        let hash = s.blobs().put_item(ItemType::BLOB, text).unwrap();
        assert_eq!(
            run_text(&mut s, &format!("cat {hash}")).unwrap(),
            "md:raw\npk:abc\nsh:def\n"
        );
    }

    #[test]
    fn rm_removes_recorded_files_and_lone_items() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path());
        let item = s.blobs().put_item(ItemType::BLOB, b"hello").unwrap();
        assert_eq!(
            item.to_hex(),
            "cceeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef"
        );
        assert_eq!(run_text(&mut s, &format!("rm {item}")).unwrap(), "");
        assert!(!s.blobs().contains(&item).unwrap());
        let err = run_text(&mut s, &format!("rm {item}")).unwrap_err();
        assert!(err.contains("not in the local store"), "{err}");

        let path = tmp.path().join("f");
        std::fs::write(&path, b"some file").unwrap();
        let record = s.put_path(&path, None).unwrap();
        run_text(&mut s, &format!("rm {}", record.hash)).unwrap();
        assert!(s.get(&record.hash).unwrap().is_none());
    }

    #[test]
    fn diff_compares_paths_and_stored_hashes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path());
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::write(&a, b"same").unwrap();
        std::fs::write(&b, b"other").unwrap();
        let hash = s.blobs().put_item(ItemType::BLOB, b"same").unwrap();
        let (a, b) = (a.display().to_string(), b.display().to_string());
        assert_eq!(run_text(&mut s, &format!("diff {a} {hash}")).unwrap(), "");
        assert_eq!(
            run_text(&mut s, &format!("diff {a} {b}")).unwrap(),
            format!("{a} and {b} differ\n")
        );
    }

    #[test]
    fn bad_lines_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path());
        assert!(run_text(&mut s, "ls")
            .unwrap_err()
            .contains("unknown local command"));
        assert!(run_text(&mut s, "rm nothex")
            .unwrap_err()
            .contains("not a content hash"));
        assert!(run_text(&mut s, "rm").is_err());
    }
}
