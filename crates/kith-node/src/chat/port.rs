//! The chat port: plain ptpchat clients, framed the reference's way (4-byte big-endian length +
//! JSON; an empty frame is a keep-alive), over plain TCP or, with `--chat-tls`, TLS only with
//! the node certificate.
//!
//! Each connection is one neighbour of the router ([`kith_chat::NeighbourKind::Client`]). The
//! reader checks every frame's declared length against `chat_max_frame` before reading it and
//! waits for room in the chat task's queue (so a fast client is slowed, not buffered); the
//! writer sends what the router transmits from a bounded queue, and a client that does not
//! read is dropped when that queue is full. At most `max_chat_clients` connections at once;
//! the router (which gets each client's address) cuts off more than a few from one address,
//! charges each client's rate to its address and id, and cuts off a silent client after
//! `chat_neighbour_idle_ms`.
//!
//! **WebSocket** (for web chat clients): on the plain port, a connection whose first bytes are
//! `GET ` is an HTTP upgrade (a ptpchat frame cannot start so: its length would be about a
//! gigabyte, far over any `chat_max_frame`). After the upgrade each WebSocket message is one
//! frame's JSON, without the length prefix (an empty message is a keep-alive), both ways; a
//! message over `chat_max_frame` is refused from its header. Everything else (one neighbour per
//! connection, the queues, the caps, rates per address) is as above. Only clients that speak
//! first are told apart this way, which every WebSocket client does; a plain client that waits
//! for the node is served after [`SNIFF`] at most.

use super::{Chat, ChatInput};
use bytes::{Bytes, BytesMut};
use kith_chat::frame::{ChatFrame, ChatFrameDecoder};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Accepts chat clients until `cancel`.
pub async fn accept_loop(chat: Chat, listener: TcpListener, tls: bool, cancel: CancellationToken) {
    let state = &chat;
    let clients = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!("chat port accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => return,
        };
        if clients.load(Ordering::Acquire) >= state.settings().node_limits.max_chat_clients {
            state.counters().chat_clients_refused.bump();
            continue; // dropped: closed without a word
        }
        clients.fetch_add(1, Ordering::AcqRel);
        let (state, clients, cancel) = (state.clone(), Arc::clone(&clients), cancel.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = serve(&state, stream, remote.ip(), tls) => {}
                _ = cancel.cancelled() => {}
            }
            clients.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// How long the plain port waits for a client's first bytes to tell WebSocket from ptpchat.
pub const SNIFF: Duration = Duration::from_millis(250);

async fn serve(state: &Chat, stream: TcpStream, ip: std::net::IpAddr, tls: bool) {
    let _ = stream.set_nodelay(true);
    if !tls {
        let mut first = [0u8; 4];
        let peeked = tokio::time::timeout(SNIFF, async {
            // `peek` may return fewer bytes than are coming: wait until four are there (or the
            // client stops sending).
            loop {
                match stream.peek(&mut first).await {
                    Ok(n) if n >= 4 || n == 0 => return n,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    Err(_) => return 0,
                }
            }
        })
        .await;
        if matches!(peeked, Ok(4)) && &first == b"GET " {
            return websocket(state, stream, ip).await;
        }
        return client(state, stream, ip, false).await;
    }
    let Some(config) = state.settings().tls.clone() else {
        return;
    };
    let timeout = Duration::from_millis(state.settings().link_limits.handshake_timeout_ms);
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(stream)) => {
            state.counters().chat_clients_tls.bump();
            client(state, stream, ip, false).await
        }
        _ => state.counters().chat_tls_failed.bump(),
    }
}

/// Upgrades a chat-port connection to WebSocket and runs it as a client: one message, one
/// frame's JSON.
async fn websocket(state: &Chat, stream: TcpStream, ip: std::net::IpAddr) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    use tokio_tungstenite::tungstenite::Message;
    let max = state.settings().limits.chat_max_frame as usize;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let timeout = Duration::from_millis(state.settings().link_limits.handshake_timeout_ms);
    let upgrade = tokio_tungstenite::accept_async_with_config(stream, Some(config));
    let ws = match tokio::time::timeout(timeout, upgrade).await {
        Ok(Ok(ws)) => ws,
        _ => {
            state.counters().chat_frames_refused.bump();
            return;
        }
    };
    let Some((id, mut rx)) = register(state, ip, false).await else {
        return;
    };
    state.counters().chat_clients_websocket.bump();
    let (mut sink, mut source) = ws.split();
    let read = async {
        while let Some(message) = source.next().await {
            let data = match message {
                Ok(Message::Text(text)) => Bytes::from(text),
                Ok(Message::Binary(data)) => data,
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Close(_)) => return,
                Err(e) => {
                    state.counters().chat_frames_refused.bump();
                    tracing::debug!(client = id, "chat port (WebSocket): {e}");
                    return;
                }
            };
            if data.is_empty() {
                state.send(ChatInput::ClientKeepAlive(id)).await;
            } else {
                state.send(ChatInput::ClientFrame(id, data)).await;
            }
        }
    };
    let write = async {
        while let Some(frame) = rx.recv().await {
            // The router hands framed bytes (4-byte length + JSON): the message is the JSON.
            let json = frame.slice(4.min(frame.len())..);
            let message = match std::str::from_utf8(&json) {
                Ok(text) => Message::text(text),
                Err(_) => Message::Binary(json),
            };
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    };
    tokio::select! {
        _ = read => {},
        _ = write => {},
    }
    state.send(ChatInput::ClientDown(id)).await;
}

/// Runs one chat-port connection, accepted or (`dialled`) made by this node to a router,
/// until either side ends it.
pub(super) async fn client<S>(state: &Chat, stream: S, ip: std::net::IpAddr, dialled: bool)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some((id, mut rx)) = register(state, ip, dialled).await else {
        return;
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let decoder = ChatFrameDecoder::new(&state.settings().limits);
    let read = async {
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(ChatFrame::KeepAlive)) => {
                        state.send(ChatInput::ClientKeepAlive(id)).await;
                    }
                    Ok(Some(ChatFrame::Message(json))) => {
                        state.send(ChatInput::ClientFrame(id, json)).await;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        state.counters().chat_frames_refused.bump();
                        tracing::debug!(client = id, "chat port: {e}");
                        return;
                    }
                }
            }
            match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let write = async {
        // Ends when the router forgets the client (its sender is dropped) or writing fails.
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    };
    tokio::select! {
        _ = read => {},
        _ = write => {},
    }
    state.send(ChatInput::ClientDown(id)).await;
}

/// Tells the router a client connection is up (plain or WebSocket, accepted or `dialled`):
/// its id and the queue of frames to write to it; `None` when the router has stopped.
async fn register(
    state: &Chat,
    ip: std::net::IpAddr,
    dialled: bool,
) -> Option<(u64, mpsc::Receiver<Bytes>)> {
    let id = state.next_client_id();
    let (tx, rx) = mpsc::channel::<Bytes>(state.settings().node_limits.chat_client_queue.max(1));
    let up = ChatInput::ClientUp {
        id,
        ip,
        tx,
        dialled,
    };
    if !state.send(up).await {
        return None;
    }
    if !dialled {
        state.counters().chat_clients.bump();
    }
    Some((id, rx))
}
