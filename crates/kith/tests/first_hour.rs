//! The README's "First hour" walk-through works as written: `scripts/first-hour.sh` holds the
//! same commands (checked here line for line against the README) and runs to the end against
//! this build, printing what the README says it prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The script's walk-through: its command lines after the preamble (which ends with `trap`).
fn script_commands() -> Vec<String> {
    let script = std::fs::read_to_string(repo().join("scripts/first-hour.sh")).unwrap();
    script
        .lines()
        .skip_while(|l| !l.starts_with("trap "))
        .skip(1)
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The README's "First hour" section.
fn readme_first_hour() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("## First hour").expect("a First hour section");
    let rest = &readme[start + 3..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end].to_owned()
}

#[test]
fn every_command_of_the_script_is_in_the_readme_in_the_same_order() {
    let section = readme_first_hour();
    assert!(
        section.contains("scripts/first-hour.sh"),
        "the README points to the script"
    );
    let mut from = 0;
    for command in script_commands() {
        match section[from..].find(&command) {
            Some(at) => from += at + command.len(),
            None => panic!("not in the README's First hour (in this order): {command}"),
        }
    }
}

#[test]
fn the_first_hour_script_runs_to_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    // `-x` traces each command on stderr, so a failure shows which one.
    let mut child = Command::new("sh")
        .arg("-x")
        .arg(repo().join("scripts/first-hour.sh"))
        .env("KITH_BIN", env!("CARGO_BIN_EXE_kith"))
        .env("TMPDIR", tmp.path())
        .env_remove("KITH_DATA")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The script waits for the network with `until` loops; a broken step must not hang the
    // suite, so it gets a generous bound (it takes a few seconds).
    let give_up = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > give_up {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The script stops its nodes (step 5, and its exit trap): no `kith up` outlives it.
    let survivors = processes_in(tmp.path());
    for (pid, _) in &survivors {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    assert!(survivors.is_empty(), "left running: {survivors:?}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "linked with ",
        "pong from ",
        "Hello Bob, this is Alice.",
        "is now held in custody by ",
        "Bob: the key is under the mat.",
        "#lobby",
        "hi Alice, Bob here",
        "(direct)",
        "just between us, Bob",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    let dirs: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(dirs.len(), 1, "the script worked in one fresh directory");
}

/// Processes (pid, command line) working in `dir` or naming it: the script's nodes run in a
/// directory under it.
fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let dir = dir.canonicalize().unwrap();
    let needle = dir.to_str().unwrap().to_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let inside = cwd.is_some_and(|cwd| cwd.starts_with(&dir)) || cmdline.contains(&needle);
            inside.then_some((pid, cmdline))
        })
        .collect()
}
