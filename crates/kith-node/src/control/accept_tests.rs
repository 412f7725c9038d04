//! The control socket's accept path under attack, over real Unix sockets: half-sent requests,
//! idle connections, huge or stalled bodies, more connections than the cap, and a long-poll
//! that must outlive every one of those deadlines. Nothing here sleeps to let a deadline pass:
//! each test waits for the server to close or answer, under a generous hang guard.

use super::*;
use axum::routing::{get, post};
use std::path::PathBuf;
use tokio::sync::oneshot;

/// Long enough that a test never sees it pass unless it waits for it.
const LONG: Duration = Duration::from_secs(60);
/// Short enough that waiting for it keeps the test quick.
const SHORT: Duration = Duration::from_millis(200);
/// The most any single wait in these tests may take before the test fails instead of hanging.
const HANG_GUARD: Duration = Duration::from_secs(20);

struct Server {
    socket: PathBuf,
    _dir: tempfile::TempDir,
    counted: Arc<Mutex<Vec<&'static str>>>,
    /// Set to true to let `/wait` requests finish.
    release: watch::Sender<bool>,
    /// One permit per `/wait` request that reached its handler.
    entered: Arc<Semaphore>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    fn start(limits: ServeLimits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("control.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (release, released) = watch::channel(false);
        let entered = Arc::new(Semaphore::new(0));
        let in_handler = Arc::clone(&entered);
        let router = Router::new()
            .route("/v1/status", get(|| async { "{}" }))
            .route(
                "/echo",
                post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/wait",
                post(move || {
                    let (mut released, entered) = (released.clone(), Arc::clone(&in_handler));
                    async move {
                        entered.add_permits(1);
                        let _ = released.wait_for(|r| *r).await;
                        "released"
                    }
                }),
            );
        let counted = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::clone(&counted);
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(serve(
            listener,
            router,
            limits,
            move |name| count.lock().unwrap().push(name),
            async move {
                let _ = stopped.await;
            },
        ));
        Server {
            socket,
            _dir: dir,
            counted,
            release,
            entered,
            stop: Some(stop),
            done,
        }
    }

    fn count(&self, name: &str) -> usize {
        self.counted
            .lock()
            .unwrap()
            .iter()
            .filter(|n| **n == name)
            .count()
    }

    async fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.socket).await.unwrap()
    }

    /// A connection that sent part of a request's headers and nothing more.
    async fn half_sent(&self) -> UnixStream {
        let mut stream = self.connect().await;
        stream
            .write_all(b"POST /v1/status HTTP/1.1\r\nhost: kith\r\ncontent-type: app")
            .await
            .unwrap();
        stream
    }

    /// Sends `request` on a new connection and reads until the server closes it.
    async fn exchange(&self, request: &[u8]) -> String {
        let mut stream = self.connect().await;
        stream.write_all(request).await.unwrap();
        until_closed(&mut stream).await
    }
}

fn limits(header: Duration, body: Duration, max_connections: usize) -> ServeLimits {
    ServeLimits {
        header_timeout: header,
        body_timeout: body,
        max_body: 1024,
        max_connections,
    }
}

/// Everything the server sends until it closes the connection (the test fails past
/// [`HANG_GUARD`]).
async fn until_closed(stream: &mut UnixStream) -> String {
    let mut got = Vec::new();
    match tokio::time::timeout(HANG_GUARD, stream.read_to_end(&mut got)).await {
        Ok(Ok(_)) => String::from_utf8_lossy(&got).into_owned(),
        Ok(Err(e)) => panic!("read failed: {e}"),
        Err(_) => panic!("the server did not close the connection"),
    }
}

/// True when the server has closed `stream` already (EOF waiting), false when it is open.
fn closed_now(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected bytes"),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

const STATUS: &[u8] = b"GET /v1/status HTTP/1.1\r\nhost: kith\r\nconnection: close\r\n\r\n";
const WAIT: &[u8] =
    b"POST /wait HTTP/1.1\r\nhost: kith\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

#[tokio::test]
async fn half_sent_requests_are_closed_at_the_header_deadline() {
    let server = Server::start(limits(SHORT, LONG, 64));
    let mut pending = Vec::new();
    for _ in 0..50 {
        pending.push(server.half_sent().await);
    }
    for stream in &mut pending {
        assert_eq!(until_closed(stream).await, "", "closed without an answer");
    }
    assert_eq!(server.count(counter::HEADER_TIMEOUT), 50);
    assert!(server.exchange(STATUS).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = Server::start(limits(SHORT, LONG, 64));
    let mut stream = server.connect().await;
    stream
        .write_all(b"GET /v1/status HTTP/1.1\r\nhost: kith\r\n\r\n")
        .await
        .unwrap();
    let got = until_closed(&mut stream).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("{}"),
        "{got}"
    );
}

#[tokio::test]
async fn a_huge_declared_body_is_refused_at_once_without_reading_it() {
    // Both deadlines are long: the 413 cannot come from a timeout.
    let server = Server::start(limits(LONG, LONG, 64));
    let got = server
        .exchange(b"POST /echo HTTP/1.1\r\nhost: kith\r\ncontent-length: 10000000000\r\n\r\n{")
        .await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains("at most 1024 bytes"), "{got}");
    assert_eq!(server.count(counter::TOO_LARGE), 1);
}

#[tokio::test]
async fn a_chunked_body_past_the_cap_is_refused() {
    let server = Server::start(limits(LONG, LONG, 64));
    let mut stream = server.connect().await;
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nhost: kith\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    // 2 KiB in chunks, then nothing: the cap is hit before the body ends.
    for _ in 0..4 {
        let _ = stream.write_all(b"200\r\n").await;
        let _ = stream.write_all(&[b'x'; 512]).await;
        let _ = stream.write_all(b"\r\n").await;
    }
    let got = until_closed(&mut stream).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
}

#[tokio::test]
async fn a_stalled_body_gets_408_at_the_body_deadline() {
    let server = Server::start(limits(LONG, SHORT, 64));
    let got = server
        .exchange(b"POST /echo HTTP/1.1\r\nhost: kith\r\ncontent-length: 10\r\n\r\n{\"")
        .await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert_eq!(server.count(counter::BODY_TIMEOUT), 1);
    // A whole body within the cap still goes through.
    let got = server
        .exchange(b"POST /echo HTTP/1.1\r\nhost: kith\r\ncontent-length: 3\r\nconnection: close\r\n\r\n{1}")
        .await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with('3'),
        "{got}"
    );
}

#[tokio::test]
async fn a_long_poll_outlives_the_header_and_body_deadlines() {
    let server = Server::start(limits(SHORT, SHORT, 64));
    let mut poll = server.connect().await;
    poll.write_all(WAIT).await.unwrap();
    server.entered.acquire().await.unwrap().forget();
    // A witness connection opened now is closed by the header deadline: once it is, both
    // deadlines have passed for the long-poll too.
    let mut witness = server.half_sent().await;
    assert_eq!(until_closed(&mut witness).await, "");
    assert!(!closed_now(&poll), "the long-poll is still open");
    server.release.send_replace(true);
    let got = until_closed(&mut poll).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("released"),
        "{got}"
    );
}

#[tokio::test]
async fn beyond_the_cap_the_oldest_idle_connection_makes_room() {
    let server = Server::start(limits(LONG, LONG, 4));
    let mut junk = Vec::new();
    for _ in 0..4 {
        junk.push(server.half_sent().await);
    }
    // The owner's request still gets an answer; the oldest half-sent one was closed for it.
    assert!(server.exchange(STATUS).await.starts_with("HTTP/1.1 200"));
    assert_eq!(until_closed(&mut junk[0]).await, "");
    assert!(
        junk[1..].iter().all(|s| !closed_now(s)),
        "only the oldest goes"
    );
    assert_eq!(server.count(counter::EVICTED), 1);
}

#[tokio::test]
async fn when_every_connection_is_busy_a_newcomer_gets_503_at_once() {
    let server = Server::start(limits(LONG, LONG, 2));
    let mut polls = Vec::new();
    for _ in 0..2 {
        let mut poll = server.connect().await;
        poll.write_all(WAIT).await.unwrap();
        polls.push(poll);
    }
    server.entered.acquire_many(2).await.unwrap().forget();
    let got = server.exchange(STATUS).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert_eq!(server.count(counter::REFUSED), 1);
    // The busy ones were not touched.
    server.release.send_replace(true);
    for poll in &mut polls {
        assert!(until_closed(poll).await.ends_with("released"));
    }
}

#[tokio::test]
async fn shutdown_lets_a_request_in_progress_finish() {
    let mut server = Server::start(limits(LONG, LONG, 64));
    let mut poll = server.connect().await;
    poll.write_all(WAIT).await.unwrap();
    server.entered.acquire().await.unwrap().forget();
    let idle = server.connect().await;
    let _ = server.stop.take().unwrap().send(());
    server.release.send_replace(true);
    let got = until_closed(&mut poll).await;
    assert!(got.ends_with("released"), "{got}");
    tokio::time::timeout(HANG_GUARD, &mut server.done)
        .await
        .expect("serve returns once its connections are closed")
        .unwrap()
        .unwrap();
    drop(idle);
}
