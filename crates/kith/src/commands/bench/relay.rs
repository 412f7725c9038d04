//! A delaying, pacing TCP relay, so windowing and swarming can be measured on one machine
//! (netem is not available here): every byte that crosses it waits `one_way` (half the round
//! trip) and, with a rate, leaves no faster than that many bytes per second, in each
//! direction.
//!
//! Each direction of a connection is a reader thread and a writer thread. The reader takes
//! chunks off the socket and stamps them; the writer delivers each at
//! `max(arrival, previous departure) + len / rate + one_way`, as a link with that bandwidth
//! and that propagation delay would. The queue between them holds what is in flight on the
//! "wire" plus a router's buffer: at most [`QUEUE_SLACK`] beyond the bandwidth-delay
//! product, after which the reader stops reading and TCP's own flow control pushes back on
//! the sender, so a sender cannot pile more into the path than a real one would hold.

use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes a direction may queue beyond its bandwidth-delay product (a router's buffer).
pub const QUEUE_SLACK: usize = 4 * 1024 * 1024;
/// Bytes queued at most when the rate is unlimited.
const UNLIMITED_QUEUE: usize = 64 * 1024 * 1024;
/// Bytes read at a time.
const CHUNK: usize = 64 * 1024;

/// How the relay shapes traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Delay each way (half the round trip).
    pub one_way: Duration,
    /// Bytes per second each way; `None`: as fast as the machine goes.
    pub rate: Option<f64>,
}

impl Shape {
    /// True when the relay changes nothing.
    pub fn is_none(&self) -> bool {
        self.one_way.is_zero() && self.rate.is_none()
    }

    fn queue_cap(&self) -> usize {
        match self.rate {
            Some(rate) => (rate * self.one_way.as_secs_f64()) as usize + QUEUE_SLACK,
            None => UNLIMITED_QUEUE,
        }
    }
}

/// A running relay: connections to its address are relayed to its target.
pub struct Relay {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    /// Binds a relay on a free loopback port, not yet relaying (so its address can be
    /// handed out before its target exists).
    pub fn bind() -> Result<(TcpListener, SocketAddr)> {
        let listener = TcpListener::bind("127.0.0.1:0").context("relay: cannot listen")?;
        let addr = listener.local_addr()?;
        Ok((listener, addr))
    }

    /// Where to connect to reach `target` shaped by `shape`: `target` itself when that is
    /// no shaping at all, else a new relay's address (the relay runs while it is kept).
    pub fn route(target: SocketAddr, shape: Shape) -> Result<(SocketAddr, Option<Relay>)> {
        if shape.is_none() {
            return Ok((target, None));
        }
        let (listener, addr) = Relay::bind()?;
        Ok((addr, Some(Relay::start(listener, target, shape)?)))
    }

    /// Relays every connection to `listener` (bound by [`Relay::bind`]) to `target`, shaped by
    /// `shape`.
    pub fn start(listener: TcpListener, target: SocketAddr, shape: Shape) -> Result<Relay> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let accept = std::thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        let _ = inbound.set_nonblocking(false);
                        if let Ok(outbound) = TcpStream::connect(target) {
                            connect(inbound, outbound, shape);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Relay {
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Relays both directions of one connection.
fn connect(a: TcpStream, b: TcpStream, shape: Shape) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    for (from, to) in [(&a, &b), (&b, &a)] {
        if let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) {
            direction(from, to, shape);
        }
    }
}

struct Queue {
    chunks: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
    closed: bool,
}

/// One direction: a reader and a writer thread with a bounded queue between them.
fn direction(mut from: TcpStream, mut to: TcpStream, shape: Shape) {
    let queue = Arc::new((
        Mutex::new(Queue {
            chunks: VecDeque::new(),
            bytes: 0,
            closed: false,
        }),
        Condvar::new(),
    ));
    let cap = shape.queue_cap();
    let reader_queue = Arc::clone(&queue);
    std::thread::spawn(move || {
        let (lock, cvar) = &*reader_queue;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
            if n == 0 {
                q.closed = true;
                cvar.notify_all();
                return;
            }
            while q.bytes + n > cap && !q.chunks.is_empty() {
                q = cvar.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            q.chunks.push_back((Instant::now(), buf[..n].to_vec()));
            q.bytes += n;
            cvar.notify_all();
        }
    });
    std::thread::spawn(move || {
        let (lock, cvar) = &*queue;
        let mut departed = Instant::now();
        loop {
            let (arrived, chunk) = {
                let mut q = lock.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if let Some(front) = q.chunks.pop_front() {
                        q.bytes -= front.1.len();
                        cvar.notify_all();
                        break front;
                    }
                    if q.closed {
                        let _ = to.shutdown(Shutdown::Write);
                        return;
                    }
                    q = cvar.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            let serialise = shape.rate.map_or(Duration::ZERO, |r| {
                Duration::from_secs_f64(chunk.len() as f64 / r)
            });
            departed = departed.max(arrived) + serialise;
            let deliver = departed + shape.one_way;
            let now = Instant::now();
            if deliver > now {
                std::thread::sleep(deliver - now);
            }
            if to.write_all(&chunk).is_err() {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_delays_and_paces_what_crosses_it() {
        let sink = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = sink.local_addr().unwrap();
        let (listener, addr) = Relay::bind().unwrap();
        let shape = Shape {
            one_way: Duration::from_millis(20),
            rate: Some(10_000_000.0),
        };
        let _relay = Relay::start(listener, target, shape).unwrap();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = sink.accept().unwrap();
            let mut total = 0;
            let mut buf = [0u8; 65536];
            loop {
                match s.read(&mut buf).unwrap() {
                    0 => return total,
                    n => total += n,
                }
            }
        });
        let start = Instant::now();
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(&vec![7u8; 1_000_000]).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.join().unwrap(), 1_000_000);
        // 1 MB at 10 MB/s, plus 20 ms on the way.
        let took = start.elapsed().as_secs_f64();
        assert!((0.11..0.5).contains(&took), "{took:.3} s");
    }
}
