//! Files: a file shared by A and fetched by B, then fetched by C from B; encrypted custody on C
//! (persisted, the original deleted, retrieved with the password); the seed's first CIYAM
//! session replayed on A's peer port.

use super::nodes::{run_kith, DemoNode};
use super::{Demo, Step};
use crate::progress::TransferBar;
use anyhow::{bail, Context, Result};
use kith_node::api::ShareReport;
use kith_node::api::{
    FetchBody, FetchReport, HashBody, PeerView, FETCH_PATH, PEERS_PATH, SHARE_PATH,
};
use std::path::Path;

/// The shared file's size: a few store items, so the fetch walks a tree, and quick.
const SHARED_BYTES: usize = 2_500_000;
/// The password of the custody step.
const PASSWORD: &str = "correct horse battery staple";
/// A sentence that must not appear in the custodian's store.
const LETTER_LINE: &str = "Dear C, keep this for me, but do not read it.";

/// A shares, B fetches.
pub const SHARE_AND_FETCH: Step = Step {
    title: "A stores a file and shares it; B fetches it from A",
    proves: "files move over the secure link item by item, each checked against its hash (CIYAM exchange)",
    run: |demo| {
        let bytes = pattern(SHARED_BYTES);
        let path = demo.work.join("shared.bin");
        std::fs::write(&path, &bytes).context("cannot write the demo's file")?;
        let hash = demo.a.kith_ok(&["file", "put", path_str(&path)?])?.trim().to_owned();
        let shared: ShareReport = demo.a.post(SHARE_PATH, &HashBody { hash: hash.clone() })?;
        if !shared.offered_to.contains(&demo.b.agent) {
            bail!("A offered the file to {:?}, not to B", shared.offered_to);
        }
        let report = fetch(demo, Node::B, &hash)?;
        check_copy(&demo.b, &hash, &bytes, &demo.work.join("b-copy.bin"))?;
        demo.shared = Some((hash.clone(), bytes));
        Ok(format!(
            "{} ({} bytes) offered to B; B got {} of its {} items from A (the rest, if any, had already come by background replication), identical bytes",
            super::short(&hash), report.size, report.items_fetched, report.items
        ))
    },
};

/// C fetches from B.
pub const FETCH_FROM_B: Step = Step {
    title: "C fetches the same file from B",
    proves: "a node that fetched a file serves it on: C never talked to A, and B's ledger counts what it gave",
    run: |demo| {
        let (hash, bytes) = demo.shared.clone().context("no shared file from the step before")?;
        let report = fetch(demo, Node::C, &hash)?;
        check_copy(&demo.c, &hash, &bytes, &demo.work.join("c-copy.bin"))?;
        let peers: Vec<PeerView> = demo.b.get(PEERS_PATH)?;
        let sent = peers
            .iter()
            .find(|p| p.record.agent == demo.c.agent)
            .map_or(0, |p| p.exchanged.bytes_sent);
        if sent == 0 {
            bail!("B's ledger shows no bytes sent to C");
        }
        Ok(format!(
            "{} of {} items from B, identical bytes; B's ledger: {sent} bytes given to C",
            report.items_fetched, report.items
        ))
    },
};

/// B persists a letter on C.
pub const PERSIST: Step = Step {
    title: "B has C keep an encrypted copy of a letter, then deletes its own",
    proves: "encrypted custody: C holds the letter's bytes only encrypted under a key that only B's password gives",
    run: |demo| {
        let letter = letter();
        let path = demo.work.join("letter.txt");
        std::fs::write(&path, &letter).context("cannot write the letter")?;
        let password = password_file(&demo.work, "password.txt", PASSWORD)?;
        let args = [
            "--json", "persist", path_str(&path)?, "--password-file", path_str(&password)?,
            "--to", &demo.c.agent,
        ];
        let persisted: serde_json::Value = serde_json::from_str(&demo.b.kith_ok(&args)?)
            .context("`kith persist --json` printed something else")?;
        let hash = persisted["content"].as_str().context("no content hash")?.to_owned();
        demo.b.kith_ok(&["file", "rm", &hash])?;
        std::fs::remove_file(&path)?;
        let accepted = demo.c.counter("custody_accepted")?;
        if accepted != 1 {
            bail!("C accepted {accepted} custodies, expected 1");
        }
        if store_contains(&demo.c.data.join("store"), LETTER_LINE.as_bytes())? {
            bail!("C's store holds the letter in the clear");
        }
        demo.custody = Some((hash.clone(), letter));
        Ok(format!(
            "letter {} kept by C (custody_accepted 1), none of C's stored items contains its text; B's copy and the original file deleted",
            super::short(&hash)
        ))
    },
};

/// B retrieves the letter.
pub const RETRIEVE: Step = Step {
    title: "B gets the letter back from C with its password (a wrong one first)",
    proves: "only the password opens the copy: a wrong one fetches nothing, the right one gives back the exact bytes",
    run: |demo| {
        let (hash, letter) = demo.custody.clone().context("no letter from the step before")?;
        let out = demo.work.join("letter-back.txt");
        let wrong = password_file(&demo.work, "wrong.txt", "Tr0ub4dor&3")?;
        let from = demo.c.agent.clone();
        let args = [
            "retrieve", &hash, "--password-file", path_str(&wrong)?, "-o", path_str(&out)?,
            "--from", &from,
        ];
        let attempt = demo.b.kith(&args, None)?;
        let refusal = String::from_utf8_lossy(&attempt.stderr).trim().to_owned();
        if attempt.status.success() || out.exists() {
            bail!("a wrong password retrieved the letter");
        }
        if !refusal.contains("wrong password") {
            bail!("the wrong password was not named as such: {refusal}");
        }
        let right = demo.work.join("password.txt");
        let args = [
            "retrieve", &hash, "--password-file", path_str(&right)?, "-o", path_str(&out)?,
            "--from", &from,
        ];
        demo.b.kith_ok(&args)?;
        if std::fs::read(&out)? != letter {
            bail!("the retrieved letter differs from the original");
        }
        Ok(format!(
            "the wrong password was refused and wrote nothing; the right one gave {} bytes back, identical",
            letter.len()
        ))
    },
};

/// The seed's first session on A's peer port.
pub const SEED_SESSION: Step = Step {
    title: "the seed's first CIYAM session, replayed with `kith shell` on A's peer port",
    proves: "the peer port speaks the CIYAM text protocol line for line as the reference does",
    run: |demo| {
        const H: &str = "cceeb7a985ecc3dabcb4c8f666cd637f16f008e3c963db6aa6f83a7b288c54ef";
        let input =
            format!("chk hello\nput {H}\n~rm {H}\nget {H}\nput {H}\npip 127.0.0.1\n~rm {H}\nbye\n");
        let expected =
            format!("(not found)\nput {H}\nget {H}\nput {H}\npip 127.0.0.1\n127.0.0.1\nget {H}\n");
        let shell_data = demo.work.join("shell");
        let out = run_kith(&shell_data, &["shell", &demo.a.peer_listen], Some(&input))?;
        let got = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "kith shell failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if got != expected {
            bail!("the session differs from the seed's:\n{got}");
        }
        Ok(format!(
            "{} commands, {} response lines, all as in the seed",
            input.lines().count(),
            expected.lines().count()
        ))
    },
};

/// Who fetches: B (from A) or C (from B).
enum Node {
    B,
    C,
}

/// B fetches `hash` from A, or C from B, through its node, with a progress line on a terminal
/// (not with `--json`).
fn fetch(demo: &Demo, who: Node, hash: &str) -> Result<FetchReport> {
    let (to, from, label) = match who {
        Node::B => (&demo.b, &demo.a, "B fetching from A"),
        Node::C => (&demo.c, &demo.b, "C fetching from B"),
    };
    let body = FetchBody {
        hash: hash.to_owned(),
        from: Some(from.agent.clone()),
        ..FetchBody::default()
    };
    let _bar = TransferBar::start(to.control(), hash, label, demo.json);
    to.post(FETCH_PATH, &body)
}

/// Writes `hash` out of `node`'s store with `kith file get` and compares it with `bytes`.
fn check_copy(node: &DemoNode, hash: &str, bytes: &[u8], out: &Path) -> Result<()> {
    node.kith_ok(&["file", "get", hash, "-o", path_str(out)?])?;
    if std::fs::read(out)? != bytes {
        bail!("{}'s copy differs from the original", node.name);
    }
    Ok(())
}

/// True when any file under `dir` contains `needle`.
fn store_contains(dir: &Path, needle: &[u8]) -> Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if store_contains(&path, needle)? {
                return Ok(true);
            }
        } else if std::fs::read(&path)?
            .windows(needle.len())
            .any(|w| w == needle)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A password file readable by its owner only.
fn password_file(dir: &Path, name: &str, password: &str) -> Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(file, "{password}")?;
    Ok(path)
}

/// The letter: a recognisable line, repeated to a few kilobytes.
fn letter() -> Vec<u8> {
    (1..=100)
        .map(|n| format!("{n:3}. {LETTER_LINE}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Deterministic bytes that do not repeat, so every chunk is a different item.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}
