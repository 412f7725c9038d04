//! WebSocket as a transport value: secure links whose bytes travel in WebSocket binary
//! messages, so a node can be reached through HTTP infrastructure (proxies, load balancers
//! that pass upgrades). Noise authenticates the link inside, exactly as over TCP, so the
//! WebSocket layer asks for no token and trusts nothing.
//!
//! Both values wrap another transport, so WebSocket runs over TCP in a node and over
//! [`super::MemoryNet`] in tests:
//! - [`WsDialer`]: a host written `ws://HOST` (in a ticket or a recorded address) is dialled
//!   through the inner dialer and upgraded with a client handshake; any other host goes to the
//!   inner dialer untouched;
//! - [`WsAcceptor`]: every connection the inner acceptor yields is returned at once, before a
//!   byte is read, and its HTTP upgrade runs inside its first reads and writes
//!   ([`LazyWs`]). So the endpoint's admission (per-address rate, pending-handshake caps)
//!   judges it before the upgrade, and the handshake deadline covers the upgrade too: a slow
//!   client holds one pending-handshake slot, as over TCP, and never the accept loop.
//!
//! Limits as on TCP: a message (and a frame) may be at most [`ws_max_message`] bytes (one
//! secure-link frame with its length prefix), refused from its header before it is read;
//! text messages are refused (links are binary). Each write is sent as one binary message;
//! reads join messages into the byte stream the frame codec splits again, so message
//! boundaries carry no meaning and a peer gains nothing by choosing them.

use super::directory::BoxFuture;
use super::transport::{Acceptor, ByteStream, Conn, Dialer, Via};
use bytes::Bytes;
use futures_util::{Sink, Stream};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The scheme prefix that marks a WebSocket address.
pub const WS_PREFIX: &str = "ws://";
/// The path a dialler asks for (an acceptor takes any: a proxy may rewrite it).
pub const WS_PATH: &str = "/kith";

/// The largest WebSocket message (and frame) a link accepts: one secure-link frame
/// (`max_secure_frame`) with its 4-byte length prefix.
pub fn ws_max_message(limits: &kith_proto::Limits) -> usize {
    limits.max_secure_frame as usize + 4
}

fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Dials `ws://HOST` addresses over WebSocket through `inner`; other hosts as `inner` does.
#[derive(Debug)]
pub struct WsDialer<D> {
    inner: D,
    max_message: usize,
}

impl<D: Dialer> WsDialer<D> {
    /// Wraps `inner`.
    pub fn new(inner: D, max_message: usize) -> WsDialer<D> {
        WsDialer { inner, max_message }
    }
}

impl<D: Dialer> Dialer for WsDialer<D> {
    fn dial<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        timeout: Duration,
    ) -> BoxFuture<'a, std::io::Result<Conn>> {
        let Some(bare) = host.strip_prefix(WS_PREFIX) else {
            return self.inner.dial(host, port, timeout);
        };
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let conn = self.inner.dial(bare, port, timeout).await?;
            let url = format!("{WS_PREFIX}{bare}:{port}{WS_PATH}");
            let handshake = tokio_tungstenite::client_async_with_config(
                url,
                conn.stream,
                Some(config(self.max_message)),
            );
            let (ws, _response) = tokio::time::timeout_at(deadline, handshake)
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no WebSocket upgrade within {timeout:?}"),
                    )
                })?
                .map_err(std::io::Error::other)?;
            Ok(Conn {
                stream: Box::new(WsStream::new(ws, self.max_message)),
                remote: conn.remote,
                via: Via::WebSocket,
            })
        })
    }
}

/// Upgrades every connection of `inner` to WebSocket, lazily (see the module docs).
pub struct WsAcceptor {
    inner: Box<dyn Acceptor>,
    max_message: usize,
}

impl std::fmt::Debug for WsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsAcceptor")
            .field("local_addr", &self.inner.local_addr())
            .finish_non_exhaustive()
    }
}

impl WsAcceptor {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Acceptor>, max_message: usize) -> WsAcceptor {
        WsAcceptor { inner, max_message }
    }
}

impl Acceptor for WsAcceptor {
    fn accept(&self) -> BoxFuture<'_, std::io::Result<Conn>> {
        Box::pin(async move {
            let conn = self.inner.accept().await?;
            Ok(Conn {
                stream: Box::new(LazyWs::new(conn.stream, self.max_message)),
                remote: conn.remote,
                via: Via::WebSocket,
            })
        })
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.local_addr()
    }

    fn plain(&self) -> bool {
        false
    }
}

type Upgrade = Pin<
    Box<
        dyn Future<
                Output = Result<
                    WebSocketStream<Box<dyn ByteStream>>,
                    tokio_tungstenite::tungstenite::Error,
                >,
            > + Send,
    >,
>;

/// An accepted connection whose server handshake runs in its first reads or writes.
pub struct LazyWs {
    upgrade: Option<Upgrade>,
    open: Option<WsStream<Box<dyn ByteStream>>>,
    max_message: usize,
}

impl LazyWs {
    fn new(stream: Box<dyn ByteStream>, max_message: usize) -> LazyWs {
        let upgrade =
            tokio_tungstenite::accept_async_with_config(stream, Some(config(max_message)));
        LazyWs {
            upgrade: Some(Box::pin(upgrade)),
            open: None,
            max_message,
        }
    }

    fn poll_open(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<&mut WsStream<Box<dyn ByteStream>>>> {
        if let Some(upgrade) = self.upgrade.as_mut() {
            let ws = ready!(upgrade.as_mut().poll(cx)).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("WebSocket upgrade: {e}"),
                )
            });
            self.upgrade = None;
            self.open = Some(WsStream::new(ws?, self.max_message));
        }
        match self.open.as_mut() {
            Some(open) => Poll::Ready(Ok(open)),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncRead for LazyWs {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let open = ready!(self.get_mut().poll_open(cx))?;
        Pin::new(open).poll_read(cx, buf)
    }
}

impl AsyncWrite for LazyWs {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let open = ready!(self.get_mut().poll_open(cx))?;
        Pin::new(open).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let open = ready!(self.get_mut().poll_open(cx))?;
        Pin::new(open).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.upgrade.is_some() {
            // Never upgraded: nothing to close but the socket, which dropping closes.
            return Poll::Ready(Ok(()));
        }
        let open = ready!(this.poll_open(cx))?;
        Pin::new(open).poll_shutdown(cx)
    }
}

/// An open WebSocket as a byte stream: binary messages in, one binary message per write out.
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    read: Bytes,
    eof: bool,
    /// A write handed to the socket but not yet flushed: its length, reported once flushed
    /// (the caller retries the same bytes, as `AsyncWrite` requires, until it is).
    sent: Option<usize>,
    max_message: usize,
}

impl<S> WsStream<S> {
    /// Wraps an open WebSocket.
    pub fn new(ws: WebSocketStream<S>, max_message: usize) -> WsStream<S> {
        WsStream {
            ws,
            read: Bytes::new(),
            eof: false,
            sent: None,
            max_message,
        }
    }
}

fn io_error(e: tokio_tungstenite::tungstenite::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.read.is_empty() {
                let n = buf.remaining().min(self.read.len());
                let chunk = self.read.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => self.eof = true,
                Some(Ok(Message::Binary(data))) => self.read = data,
                // Answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Text(_) | Message::Frame(_))) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "a text message on a link (links are binary)",
                    )))
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.sent.is_none() {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
            let n = buf.len().min(self.max_message);
            let message = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
            Pin::new(&mut self.ws)
                .start_send(message)
                .map_err(io_error)?;
            self.sent = Some(n);
        }
        ready!(Pin::new(&mut self.ws).poll_flush(cx)).map_err(io_error)?;
        Poll::Ready(Ok(self.sent.take().unwrap_or(0)))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_error)
    }
}
