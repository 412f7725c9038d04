//! Progress bars for transfers the node runs on the CLI's behalf.
//!
//! The node does the transfer; the CLI waits on one control call for the result. Meanwhile a
//! second thread asks the node for the running transfers (`GET /v1/files/transfers`) a few
//! times a second and redraws one line on stderr: bytes so far, the rate and a moving bar
//! (the total is not known until the whole tree of lists has arrived). It draws only when
//! stderr is a terminal and `--json` is off, so scripts and pipes see nothing of it.

use kith_node::api::TransferProgress;
use kith_node::api::TRANSFERS_PATH;
use kith_node::control::ControlClient;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the line is redrawn.
const REDRAW: Duration = Duration::from_millis(200);

/// A progress line for the fetch of one file, drawn until dropped.
pub struct TransferBar {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TransferBar {
    /// Starts drawing the progress of the fetch of `hash` (64 hex), if stderr is a terminal
    /// and `quiet` is false.
    pub fn start(control: &ControlClient, hash: &str, label: &str, quiet: bool) -> TransferBar {
        let stop = Arc::new(AtomicBool::new(false));
        if quiet || !std::io::stderr().is_terminal() {
            return TransferBar { stop, thread: None };
        }
        let (control, hash, label) = (control.clone(), hash.to_owned(), label.to_owned());
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut tick = 0usize;
            let mut drawn = false;
            while !flag.load(Ordering::Acquire) {
                let transfers: Vec<TransferProgress> =
                    control.get(TRANSFERS_PATH).unwrap_or_default();
                if let Some(t) = transfers.iter().find(|t| t.hash == hash) {
                    eprint!("\r{}", render(&label, t, tick));
                    let _ = std::io::stderr().flush();
                    drawn = true;
                }
                tick += 1;
                std::thread::sleep(REDRAW);
            }
            if drawn {
                eprint!("\r\x1b[2K");
                let _ = std::io::stderr().flush();
            }
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

/// One line: `label [   <=>    ] 12.3 MiB  45.6 MiB/s  13 items`.
pub fn render(label: &str, t: &TransferProgress, tick: usize) -> String {
    const WIDTH: usize = 20;
    let pos = tick % (2 * (WIDTH - 3));
    let pos = if pos < WIDTH - 3 {
        pos
    } else {
        2 * (WIDTH - 3) - pos
    };
    let mut bar = [' '; WIDTH];
    bar[pos..pos + 3].copy_from_slice(&['<', '=', '>']);
    let bar: String = bar.iter().collect();
    let secs = (t.elapsed_ms as f64 / 1000.0).max(0.001);
    format!(
        "{label} [{bar}] {}  {}/s  {} items",
        human_bytes(t.bytes as f64),
        human_bytes(t.bytes as f64 / secs),
        t.items
    )
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
    fn the_line_shows_bytes_rate_and_items() {
        let t = TransferProgress {
            hash: "ab".into(),
            bytes: 3 * 1024 * 1024,
            items: 3,
            background: false,
            elapsed_ms: 2000,
        };
        let line = render("fetching", &t, 0);
        assert!(line.starts_with("fetching [<=>"), "{line}");
        assert!(line.contains("3.0 MiB  1.5 MiB/s  3 items"), "{line}");
        // The marker bounces inside the bar whatever the tick.
        for tick in 0..100 {
            assert_eq!(
                render("x", &t, tick).len(),
                line.len() - "fetching".len() + 1
            );
        }
        assert_eq!(human_bytes(512.0), "512 B");
    }
}
