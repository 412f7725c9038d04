//! NATs on the in-memory network: a dial to a host behind a NAT waits (as a SYN the NAT
//! drops would, until the dialler's retransmission) until that host has itself dialled the
//! dialler's host lately, i.e. until its NAT holds a mapping the dial matches, and then
//! connects; with no such dial it times out. Enough to drive a hole punch in process.

use kith_node::endpoint::directory::BoxFuture;
use kith_node::endpoint::{Conn, Dialer, MemoryDialer};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a NAT keeps a mapping.
const MAPPING: Duration = Duration::from_secs(30);

/// The hosts behind NATs, and every dial's mapping.
#[derive(Debug, Clone, Default)]
pub struct Nats {
    natted: Arc<Mutex<HashSet<IpAddr>>>,
    symmetric: Arc<Mutex<HashSet<IpAddr>>>,
    holes: Arc<Mutex<HashMap<(IpAddr, IpAddr), Instant>>>,
    /// Dials that reached a host behind a NAT through a hole.
    pub through: Arc<std::sync::atomic::AtomicU64>,
}

impl Nats {
    /// Puts `host` behind a NAT.
    pub fn hide(&self, host: IpAddr) {
        self.natted.lock().unwrap().insert(host);
    }

    /// Puts `host` behind a symmetric NAT (a new port per destination): nobody punches
    /// through to it, and it punches through to nobody behind a NAT.
    pub fn hide_symmetric(&self, host: IpAddr) {
        self.hide(host);
        self.symmetric.lock().unwrap().insert(host);
    }

    /// Makes `host`'s NAT an ordinary (port-keeping) one again.
    pub fn make_cone(&self, host: IpAddr) {
        self.symmetric.lock().unwrap().remove(&host);
    }

    /// `inner`'s dials, from the listening port `port`, obeying the NATs.
    pub fn dialer(&self, inner: MemoryDialer, port: u16) -> Arc<dyn Dialer> {
        let host = inner.host();
        Arc::new(NatDialer {
            inner: inner.from_port(port),
            host,
            nats: self.clone(),
        })
    }

    fn open(&self, from: IpAddr, to: IpAddr) -> bool {
        if !self.natted.lock().unwrap().contains(&to) {
            return true;
        }
        let symmetric = self.symmetric.lock().unwrap();
        if symmetric.contains(&to) || symmetric.contains(&from) {
            return false;
        }
        drop(symmetric);
        self.holes
            .lock()
            .unwrap()
            .get(&(to, from))
            .is_some_and(|at| at.elapsed() < MAPPING)
    }
}

struct NatDialer {
    inner: MemoryDialer,
    host: IpAddr,
    nats: Nats,
}

impl Dialer for NatDialer {
    fn dial<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: Duration,
    ) -> BoxFuture<'a, std::io::Result<Conn>> {
        Box::pin(async move {
            let to: IpAddr = host
                .parse()
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            // Our SYN leaves: our own NAT now maps us towards `to`.
            self.nats
                .holes
                .lock()
                .unwrap()
                .insert((self.host, to), Instant::now());
            let deadline = Instant::now() + timeout;
            let mut waited = false;
            while !self.nats.open(self.host, to) {
                if Instant::now() >= deadline {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "dropped by a NAT",
                    ));
                }
                waited = true;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if waited || self.nats.natted.lock().unwrap().contains(&to) {
                self.nats
                    .through
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.inner.dial(host, port, timeout).await
        })
    }
}
