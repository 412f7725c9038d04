//! How the fetching node answers other work while a transfer runs: a probe thread asks it,
//! every [`EVERY`], for its status (which reads the database: the stored files are counted)
//! and to say something in a chat channel (which writes the message log), and times both.
//! The same probe runs for a moment before the transfer, so each figure has its idle baseline.

use anyhow::Result;
use kith_node::api::{ChatReply, ChatRequest, StatusReport, CHAT_PATH, STATUS_PATH};
use kith_node::control::ControlClient;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the probe asks.
pub const EVERY: Duration = Duration::from_millis(100);

/// The chat channel the probe speaks in.
const CHANNEL: &str = "bench-probe";

/// Latencies of one kind of request, in milliseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    /// Requests timed.
    pub count: usize,
    /// Median.
    pub median_ms: f64,
    /// 99th percentile (the largest when there are fewer than 100).
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    fn of(mut samples: Vec<f64>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Latency {
            count: samples.len(),
            median_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: samples[samples.len() - 1],
        }
    }
}

/// What the probe saw.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Responsiveness {
    /// `status` (a database read).
    pub status: Latency,
    /// `chat say` (a database write, and a message on every link).
    pub chat_say: Latency,
}

/// A probe running in its own thread until [`Probe::finish`].
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Responsiveness>,
}

/// Joins the probe's channel on `client`'s node (once, before probing).
pub fn prepare(client: &ControlClient) -> Result<()> {
    let _: ChatReply = client.post(
        CHAT_PATH,
        &ChatRequest::Join {
            name: CHANNEL.to_owned(),
            closed: false,
        },
    )?;
    Ok(())
}

impl Probe {
    /// Starts probing `client`'s node.
    pub fn start(client: ControlClient) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut status, mut say) = (Vec::new(), Vec::new());
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                if client.get::<StatusReport>(STATUS_PATH).is_ok() {
                    status.push(started.elapsed().as_secs_f64() * 1e3);
                }
                n += 1;
                let started = Instant::now();
                let said: Result<ChatReply, _> = client.post(
                    CHAT_PATH,
                    &ChatRequest::Say {
                        name: CHANNEL.to_owned(),
                        text: format!("probe {n}"),
                        attachments: Vec::new(),
                    },
                );
                if said.is_ok() {
                    say.push(started.elapsed().as_secs_f64() * 1e3);
                }
                std::thread::sleep(EVERY);
            }
            Responsiveness {
                status: Latency::of(status),
                chat_say: Latency::of(say),
            }
        });
        Probe { stop, thread }
    }

    /// Stops probing and returns what it saw.
    pub fn finish(self) -> Responsiveness {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
