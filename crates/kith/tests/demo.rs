//! `kith demo` end to end: every step passes and is reported, the JSON form says the same,
//! and nothing is left behind, also when the demo is interrupted.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Steps the demo runs (starting the nodes included).
const STEPS: usize = 15;

fn demo(tmp: &Path, json: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    if json {
        command.arg("--json");
    }
    command
        .arg("demo")
        .env("TMPDIR", tmp)
        .env_remove("KITH_DATA")
        .output()
        .expect("run kith demo")
}

/// Processes whose command line mentions `dir` (nodes the demo left running).
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|cmd| String::from_utf8_lossy(&cmd).replace('\0', " "))
        .filter(|cmd| cmd.contains(needle))
        .collect()
}

fn left_behind(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_demo_passes_every_step_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(tmp.path(), false);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    for n in 1..=STEPS {
        let tag = format!("[ok] {n}/{STEPS} ");
        let at = lines
            .iter()
            .position(|l| l.starts_with(&tag))
            .unwrap_or_else(|| panic!("no line for step {n}:\n{stdout}"));
        assert!(
            lines[at + 1].trim_start().starts_with("proves "),
            "step {n} says what it proved:\n{stdout}"
        );
    }
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
    assert!(
        stdout.contains(&format!("all {STEPS} steps passed")),
        "{stdout}"
    );
    assert!(stdout.is_ascii(), "plain ASCII off a terminal:\n{stdout}");
    assert_eq!(left_behind(tmp.path()), Vec::<String>::new());
    assert_eq!(processes_using(tmp.path()), Vec::<String>::new());
}

#[test]
fn the_demo_in_json_prints_one_document_per_step() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(tmp.path(), true);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    let docs: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert_eq!(docs.first().unwrap()["demo"], "started");
    let steps: Vec<&Value> = docs.iter().filter(|d| d.get("step").is_some()).collect();
    assert_eq!(steps.len(), STEPS, "{stdout}");
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["step"], i + 1);
        assert_eq!(step["ok"], true, "{step}");
        assert!(!step["proves"].as_str().unwrap().is_empty());
    }
    let last = docs.last().unwrap();
    assert_eq!(last["demo"], "passed");
    assert_eq!(last["steps_passed"], STEPS);
    assert_eq!(left_behind(tmp.path()), Vec::<String>::new());
}

#[test]
fn an_interrupted_demo_stops_its_nodes_and_removes_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("demo")
        .env("TMPDIR", tmp.path())
        .env_remove("KITH_DATA")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt it once the nodes are up and linked: the middle of a run.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "demo ended early");
        if line.starts_with(&format!("[ok] 2/{STEPS} ")) {
            break;
        }
    }
    assert!(
        !left_behind(tmp.path()).is_empty(),
        "the demo works in TMPDIR"
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{rest}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        !rest.contains("[FAIL]"),
        "no step reported as failed: {rest}"
    );
    assert_eq!(left_behind(tmp.path()), Vec::<String>::new());
    assert_eq!(processes_using(tmp.path()), Vec::<String>::new());
}
