//! What the demo prints: per step one line saying what happened (with its duration) and one
//! saying what it proved; on a terminal with check marks, otherwise plain ASCII (`[ok]`,
//! `[FAIL]`) so logs and tests read the same everywhere; with `--json` one JSON document a
//! line instead (one per step, then a summary).

use super::cleanup::Cleanup;
use super::Step;
use crate::output::print_json;
use anyhow::Result;
use serde_json::json;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

/// Prints the walk-through.
pub struct Narrator {
    json: bool,
    fancy: bool,
    total: usize,
    number: usize,
    started: Instant,
    cleanup: Cleanup,
}

impl Narrator {
    /// `total` steps to come.
    pub fn new(json: bool, total: usize, cleanup: &Cleanup) -> Narrator {
        Narrator {
            json,
            fancy: !json && std::io::stdout().is_terminal(),
            total,
            number: 0,
            started: Instant::now(),
            cleanup: cleanup.clone(),
        }
    }

    /// The opening lines.
    pub fn intro(&self, dir: &Path, keep: bool) {
        if self.json {
            let _ = print_json(&json!({"demo": "started", "dir": dir, "steps": self.total}));
            return;
        }
        let fate = if keep {
            "kept at the end (--keep)"
        } else {
            "removed at the end"
        };
        println!("kith demo: three nodes on this machine, every feature, step by step");
        println!(
            "working in {} ({fate}; Ctrl-C stops the demo and cleans up)",
            dir.display()
        );
        println!();
    }

    /// Runs one step and reports it. `run` returns its result and the facts it observed.
    pub fn step<T>(&mut self, step: &Step, run: impl FnOnce() -> Result<(T, String)>) -> Result<T> {
        self.number += 1;
        let started = Instant::now();
        let result = run();
        let secs = started.elapsed().as_secs_f64();
        if result.is_err() && self.cleanup.is_interrupted() {
            // The step failed because its nodes were stopped under it: the signal thread is
            // cleaning up and ends the process; say nothing more.
            loop {
                std::thread::park();
            }
        }
        let (mark, indent) = match (&result, self.fancy) {
            (Ok(_), true) => ("\u{2713}", "  "),
            (Err(_), true) => ("\u{2717}", "  "),
            (Ok(_), false) => ("[ok]", "     "),
            (Err(_), false) => ("[FAIL]", "       "),
        };
        let counter = format!("{}/{}", self.number, self.total);
        let pad = " ".repeat(counter.len() + 1);
        match &result {
            Ok((_, facts)) if self.json => {
                let _ = print_json(&json!({
                    "step": self.number, "of": self.total, "title": step.title, "ok": true,
                    "facts": facts, "proves": step.proves, "seconds": round(secs),
                }));
            }
            Err(error) if self.json => {
                let _ = print_json(&json!({
                    "step": self.number, "of": self.total, "title": step.title, "ok": false,
                    "error": crate::one_line(error), "seconds": round(secs),
                }));
            }
            Ok((_, facts)) => {
                let facts = if facts.is_empty() {
                    String::new()
                } else {
                    format!(": {facts}")
                };
                println!("{mark} {counter} {}{facts} ({secs:.2} s)", step.title);
                println!("{indent}{pad}proves {}", step.proves);
            }
            Err(error) => {
                println!("{mark} {counter} {} ({secs:.2} s)", step.title);
                println!("{indent}{pad}why: {}", crate::one_line(error));
            }
        }
        result.map(|(value, _)| value)
    }

    /// The number of the step run last.
    pub fn number(&self) -> usize {
        self.number
    }

    /// The closing line.
    pub fn summary(&self, passed: bool, kept: Option<&Path>) {
        let secs = self.started.elapsed().as_secs_f64();
        if self.json {
            let _ = print_json(&json!({
                "demo": if passed { "passed" } else { "failed" },
                "steps_passed": if passed { self.number } else { self.number.saturating_sub(1) },
                "steps": self.total, "seconds": round(secs), "kept": kept,
            }));
            return;
        }
        println!();
        if passed {
            println!(
                "all {} steps passed in {secs:.1} s; the nodes are stopped",
                self.total
            );
        } else {
            println!(
                "the demo stopped at step {} of {} after {secs:.1} s; the nodes are stopped",
                self.number, self.total
            );
        }
        match kept {
            Some(dir) => println!(
                "their data dirs and logs (node.log) are kept in {}",
                dir.display()
            ),
            None => println!("and their temporary data is removed"),
        }
    }
}

fn round(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}
