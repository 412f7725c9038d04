//! The simultaneous open: both sides dial each other's observed address from their listening
//! port until one connection is up or the window closes.
//!
//! Behind NATs that drop unsolicited inbound packets, the first SYN of each side opens its own
//! NAT for the other's address and is itself dropped by the other NAT; whichever SYN comes
//! second meets a socket in `SYN_SENT` and the kernels complete a simultaneous open (or it
//! reaches a listener, where it is an ordinary accept). The side that will be the Noise
//! initiator also claims a connection that arrives on its listener from an expected address
//! (`Endpoint::expect_inbound`), since the roles were agreed beforehand and the accept loop
//! would otherwise answer it as a responder. A dial that fails at once (a reset, no route) is
//! tried again after [`RETRY_PAUSE`]; one attempt at a time per address, so every SYN leaves
//! from the listening port.

use crate::endpoint::{Conn, Endpoint, Via};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinSet;

/// Pause between two dials of one address that failed at once.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Dials every address in `addrs` until one connects (or, with `claim`, until one of them
/// connects to our listener), for at most `window`. The connection comes back marked
/// [`Via::Punched`].
pub(crate) async fn punch(
    endpoint: &Endpoint,
    addrs: &[SocketAddr],
    claim: bool,
    window: Duration,
) -> std::io::Result<Conn> {
    let deadline = tokio::time::Instant::now() + window;
    let mut set = JoinSet::new();
    for &addr in addrs {
        if claim {
            if let Some(rx) = endpoint.expect_inbound(addr) {
                set.spawn(async move {
                    rx.await
                        .map_err(|_| std::io::Error::other("no longer expected"))
                });
            }
        }
        let endpoint = endpoint.clone();
        set.spawn(async move {
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the punch window closed",
                    ));
                }
                match endpoint.dial_addr(addr, left).await {
                    Ok(conn) => return Ok(conn),
                    Err(e) => {
                        tracing::debug!(%addr, "punch dial: {e}");
                        tokio::time::sleep(RETRY_PAUSE.min(left)).await;
                    }
                }
            }
        });
    }
    let first = async {
        let mut last = std::io::Error::other("no address to punch to");
        while let Some(done) = set.join_next().await {
            match done {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => last = e,
                Err(e) => last = std::io::Error::other(e),
            }
        }
        Err(last)
    };
    let conn = tokio::time::timeout_at(deadline, first)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the punch window closed")
        })??;
    Ok(Conn {
        via: Via::Punched,
        ..conn
    })
}

/// The target's side: dials `addrs` and claims connections from them on our listener until
/// the window closes or `done` says a link is up, handing each connection to `adopt` (marked
/// [`Via::Punched`]). Through real NATs the simultaneous open yields one connection that both
/// sides' dials return; where both a dial and a claim succeed, each is adopted and the
/// requester's handshake picks one.
pub(crate) async fn punch_target(
    endpoint: &Endpoint,
    addrs: &[SocketAddr],
    window: Duration,
    done: impl Fn() -> bool,
    adopt: impl Fn(Conn),
) -> usize {
    let deadline = tokio::time::Instant::now() + window;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Conn>(8);
    let mut set = JoinSet::new();
    for &addr in addrs {
        if let Some(claimed) = endpoint.expect_inbound(addr) {
            let tx = tx.clone();
            set.spawn(async move {
                if let Ok(conn) = claimed.await {
                    let _ = tx.send(conn).await;
                }
            });
        }
        let endpoint = endpoint.clone();
        let tx = tx.clone();
        set.spawn(async move {
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return;
                }
                match endpoint.dial_addr(addr, left).await {
                    Ok(conn) => {
                        let _ = tx.send(conn).await;
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(%addr, "punch dial: {e}");
                        tokio::time::sleep(RETRY_PAUSE.min(left)).await;
                    }
                }
            }
        });
    }
    drop(tx);
    let mut adopted = 0;
    loop {
        let next = tokio::time::timeout_at(deadline, rx.recv());
        match next.await {
            Ok(Some(conn)) => {
                adopted += 1;
                adopt(Conn {
                    via: Via::Punched,
                    ..conn
                });
            }
            Ok(None) | Err(_) => return adopted,
        }
        if done() {
            // Linked: a late duplicate would only be retired again.
            tokio::time::sleep(Duration::from_millis(500)).await;
            while let Ok(conn) = rx.try_recv() {
                adopted += 1;
                adopt(Conn {
                    via: Via::Punched,
                    ..conn
                });
            }
            return adopted;
        }
    }
}
