//! The control socket's accept path: hyper connections served by hand, with the deadlines and
//! bounds that `axum::serve` does not give.
//!
//! Only the node's owner can reach the socket, but a buggy or hostile local program could still
//! wedge the node through it: thousands of half-sent requests each holding buffers, or a
//! `Content-Length` of 10 GB that the node waits on forever. So:
//! - request headers must arrive within `control_header_timeout_ms` (hyper's header timeout,
//!   driven by tokio's timer); the same deadline closes an idle keep-alive connection, since
//!   hyper starts it whenever it waits for the next request's headers;
//! - a body must arrive within `control_body_timeout_ms` (408 past it) and be at most
//!   `max_control_body` bytes: a larger declared `Content-Length` is answered 413 before any
//!   body byte is read, and a chunked body that grows past the cap gets 413 too;
//! - at most `max_control_connections` connections are open at once. A newcomer beyond that
//!   closes the oldest connection with no request in progress (an idle or half-sent one: the
//!   owner's next command must not be locked out by junk), and when every connection is busy
//!   with a request, the newcomer gets a 503 at once.
//!
//! The handler's own work has no deadline here: a long-poll (`chat read --follow`) or a fetch
//! keeps the deadline of its own, and its connection is never evicted while it runs.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tower_service::Service;

/// The bounds the control socket keeps (from [`crate::limits::NodeLimits`]).
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Deadline for a request's headers, and for an idle keep-alive connection.
    pub header_timeout: Duration,
    /// Deadline for a request's body once its headers are in.
    pub body_timeout: Duration,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Connections open at once.
    pub max_connections: usize,
}

impl ServeLimits {
    /// The control socket's bounds from the node's limits.
    pub fn from_limits(limits: &crate::limits::NodeLimits) -> ServeLimits {
        ServeLimits {
            header_timeout: Duration::from_millis(limits.control_header_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(limits.control_body_timeout_ms.max(1)),
            max_body: limits.max_control_body,
            max_connections: limits.max_control_connections.max(1),
        }
    }
}

/// What the accept path counts (names as in `kith status`).
pub mod counter {
    /// A connection closed because its headers did not arrive in time (or it idled too long).
    pub const HEADER_TIMEOUT: &str = "control_header_timeouts";
    /// A request whose body did not arrive in time (408).
    pub const BODY_TIMEOUT: &str = "control_body_timeouts";
    /// A request whose body was over the cap, declared or sent (413).
    pub const TOO_LARGE: &str = "control_too_large";
    /// An idle or half-sent connection closed to make room for a new one.
    pub const EVICTED: &str = "control_evicted";
    /// A connection refused (503) because every slot had a request in progress.
    pub const REFUSED: &str = "control_refused_busy";
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in progress
/// finish and returns once every connection has closed. `count` is told of each refusal by
/// one of the [`counter`] names.
pub async fn serve<C>(
    listener: UnixListener,
    router: Router,
    limits: ServeLimits,
    count: C,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    C: Fn(&'static str) + Send + Sync + 'static,
{
    let count: Arc<dyn Fn(&'static str) + Send + Sync> = Arc::new(count);
    let limits = Arc::new(limits);
    let slots = Arc::new(Slots::default());
    let lingering = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone; `recv` returns `None` once all have ended.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: wait a little rather than spin.
                    tracing::warn!("control socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = slots.admit(limits.max_connections, &*count) else {
            refuse_busy(stream, &lingering);
            continue;
        };
        tokio::spawn(connection(
            stream,
            slot,
            router.clone(),
            Arc::clone(&limits),
            Arc::clone(&count),
            stop_rx.clone(),
            alive_tx.clone(),
        ));
    }
    drop(listener);
    stop_tx.send_replace(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
    Ok(())
}

/// One connection, until it closes, is evicted, or the server stops and its request is done.
async fn connection(
    stream: UnixStream,
    slot: Slot,
    router: Router,
    limits: Arc<ServeLimits>,
    count: Arc<dyn Fn(&'static str) + Send + Sync>,
    mut stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let shared = Arc::clone(&slot.shared);
    let service = {
        let limits = Arc::clone(&limits);
        let count = Arc::clone(&count);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let busy = Busy::new(&shared);
            let (router, limits, count) = (router.clone(), Arc::clone(&limits), Arc::clone(&count));
            async move {
                let response = handle(request, router, &limits, &*count).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        // Chosen while it had no request in progress (one that began in that very instant
        // goes with it); dropping the connection closes it.
        _ = slot.shared.evict.notified() => return,
        _ = async { stop.wait_for(|stopped| *stopped).await.map(|_| ()) } => {
            // Lets a request in progress finish and closes an idle connection at once.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            count(counter::HEADER_TIMEOUT);
        } else {
            tracing::debug!("control connection: {e}");
        }
    }
}

/// One request: the body is read here, within its deadline and cap, before the router sees it
/// (every control request is small JSON, so holding it whole costs at most the cap).
async fn handle(
    request: Request<Incoming>,
    mut router: Router,
    limits: &ServeLimits,
    count: &(dyn Fn(&'static str) + Send + Sync),
) -> Response<Body> {
    let too_large = || {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "a control request body may have at most {} bytes",
                limits.max_body
            ),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        count(counter::TOO_LARGE);
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let collected = tokio::time::timeout(
        limits.body_timeout,
        Limited::new(body, limits.max_body).collect(),
    )
    .await;
    let bytes = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            count(counter::TOO_LARGE);
            return too_large();
        }
        Ok(Err(e)) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {e}"),
            )
        }
        Err(_) => {
            count(counter::BODY_TIMEOUT);
            return refusal(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body did not arrive within {:?}",
                    limits.body_timeout
                ),
            );
        }
    };
    match router
        .call(Request::from_parts(parts, Body::from(bytes)))
        .await
    {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// An error answer in the API's shape ([`super::ErrorBody`]), closing the connection: what is
/// left of the request is not read.
fn refusal(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::to_vec(&crate::api::ErrorBody {
        error: message.to_owned(),
    })
    .unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The 503 for a connection that found every slot busy: written without waiting (the socket's
/// buffer is empty, so a short answer fits), then the connection is closed. Closing a Unix
/// socket with the request unread resets it, and the client may lose the answer; so, within
/// `lingering` (a few at a time, and briefly), what the client sends is read and dropped until
/// it closes.
fn refuse_busy(stream: UnixStream, lingering: &Arc<Semaphore>) {
    let body = serde_json::to_vec(&crate::api::ErrorBody {
        error: "the node has too many control connections with requests in progress; try again"
            .to_owned(),
    })
    .unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    let _ = stream.try_write(&answer);
    let Ok(permit) = Arc::clone(lingering).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut budget = LINGER_BYTES;
        let _ = tokio::time::timeout(LINGER, async {
            while budget > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => budget = budget.saturating_sub(n),
                }
            }
        })
        .await;
    });
}

/// How long a refused connection is read from before it is closed.
const LINGER: Duration = Duration::from_secs(1);
/// How much of a refused connection's request is read and dropped, at most.
const LINGER_BYTES: usize = 64 * 1024;

/// The open connections, oldest first, and whether each has a request in progress.
#[derive(Default)]
struct Slots {
    open: Mutex<SlotsInner>,
}

#[derive(Default)]
struct SlotsInner {
    next: u64,
    by_age: BTreeMap<u64, Arc<SlotShared>>,
}

#[derive(Default)]
struct SlotShared {
    /// Requests in progress (0 or 1 on HTTP/1.1).
    busy: AtomicUsize,
    /// Told to close by a newcomer that needs the slot.
    evict: Notify,
}

/// A connection's place among the open ones; freed when the connection task ends.
struct Slot {
    id: u64,
    shared: Arc<SlotShared>,
    slots: Arc<Slots>,
}

impl Slots {
    /// A slot for a new connection: a free one, or the one of the oldest connection with no
    /// request in progress, which is told to close. `None` when every connection is busy.
    fn admit(
        self: &Arc<Self>,
        max: usize,
        count: &(dyn Fn(&'static str) + Send + Sync),
    ) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.by_age.len() >= max {
            let idle = open
                .by_age
                .iter()
                .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                .map(|(&id, _)| id);
            let Some(id) = idle else {
                count(counter::REFUSED);
                return None;
            };
            if let Some(victim) = open.by_age.remove(&id) {
                // `notify_one` keeps the permit if the task is not waiting yet.
                victim.evict.notify_one();
                count(counter::EVICTED);
            }
        }
        let id = open.next;
        open.next += 1;
        let shared = Arc::new(SlotShared::default());
        open.by_age.insert(id, Arc::clone(&shared));
        Some(Slot {
            id,
            shared,
            slots: Arc::clone(self),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.by_age.remove(&self.id);
    }
}

/// Marks a connection busy while one of its requests is in progress (also when the request
/// is dropped half-way).
struct Busy(Arc<SlotShared>);

impl Busy {
    fn new(shared: &Arc<SlotShared>) -> Busy {
        shared.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(shared))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[path = "accept_tests.rs"]
mod tests;
