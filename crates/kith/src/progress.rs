//! Progress bars (indicatif): the file's name, bytes so far of its total, percent, rate and
//! time left, on stderr, only when stderr is a terminal and `--json` is off, so scripts and
//! pipes see nothing of them.
//!
//! Two kinds: a bar the CLI advances itself (`file put` reading its input), and one for a
//! transfer the node runs on the CLI's behalf (`file get`, `persist`): the CLI waits on one
//! control call for the result while a second thread asks the node for the running
//! transfers (`GET /v1/files/transfers`) a few times a second. Until a source has said how
//! large the file is, that bar is a spinner with bytes and rate.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kith_node::api::TransferProgress;
use kith_node::api::TRANSFERS_PATH;
use kith_node::control::ControlClient;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the node is asked.
const POLL: Duration = Duration::from_millis(200);

const BAR: &str =
    "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {percent:>3}%  {bytes_per_sec}  ETA {eta}";
const SPINNER: &str = "{msg} {spinner} {bytes}  {bytes_per_sec}  {elapsed}";

/// A bar for `total` bytes (a spinner when unknown), labelled `msg`; hidden when `quiet` or
/// stderr is not a terminal.
pub fn bar(total: Option<u64>, msg: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    style(&bar, total.is_some());
    bar.set_message(msg.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn style(bar: &ProgressBar, known: bool) {
    let template = if known { BAR } else { SPINNER };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
}

/// The progress of a node's transfer of one file, drawn until dropped.
pub struct TransferBar {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TransferBar {
    /// Starts drawing the progress of the transfer of `hash` (64 hex), if stderr is a
    /// terminal and `quiet` is false.
    pub fn start(control: &ControlClient, hash: &str, label: &str, quiet: bool) -> TransferBar {
        let stop = Arc::new(AtomicBool::new(false));
        if quiet || !std::io::stderr().is_terminal() {
            return TransferBar { stop, thread: None };
        }
        let (control, hash, label) = (control.clone(), hash.to_owned(), label.to_owned());
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let bar = bar(None, &label, false);
            let mut known = None;
            while !flag.load(Ordering::Acquire) {
                let transfers: Vec<TransferProgress> =
                    control.get(TRANSFERS_PATH).unwrap_or_default();
                if let Some(t) = transfers.iter().find(|t| t.hash == hash) {
                    // A folder's total grows from its manifest's to the whole folder's.
                    if t.total.is_some() && t.total != known {
                        bar.set_length(t.total.unwrap_or_default());
                        if known.is_none() {
                            style(&bar, true);
                        }
                        known = t.total;
                    }
                    if let Some(name) = &t.name {
                        bar.set_message(format!("{label} {name}"));
                    }
                    bar.set_position(t.bytes);
                }
                std::thread::sleep(POLL);
            }
            bar.finish_and_clear();
        });
        TransferBar {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TransferBar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `1.5 MiB`-style sizes.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_parse_and_sizes_read_well() {
        assert!(ProgressStyle::with_template(BAR).is_ok());
        assert!(ProgressStyle::with_template(SPINNER).is_ok());
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        // Off a terminal (as under a test harness) the bar draws nothing.
        assert!(bar(Some(10), "x", false).is_hidden());
    }
}
