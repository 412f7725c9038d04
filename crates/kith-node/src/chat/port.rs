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

async fn serve(state: &Chat, stream: TcpStream, ip: std::net::IpAddr, tls: bool) {
    let _ = stream.set_nodelay(true);
    if !tls {
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

/// Runs one chat-port connection, accepted or (`dialled`) made by this node to a router,
/// until either side ends it.
pub(super) async fn client<S>(state: &Chat, stream: S, ip: std::net::IpAddr, dialled: bool)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = state.next_client_id();
    let (tx, mut rx) =
        mpsc::channel::<Bytes>(state.settings().node_limits.chat_client_queue.max(1));
    if !state
        .send(ChatInput::ClientUp {
            id,
            ip,
            tx,
            dialled,
        })
        .await
    {
        return;
    }
    if !dialled {
        state.counters().chat_clients.bump();
    }
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
