//! The CIYAM peer port: the text protocol of `../shared/spec/ciyam-peer.md` for `kith shell`
//! and plain clients.
//!
//! Each connection gets a responder [`TextPort`] in interactive-test mode, whose own commands
//! follow the reference's rule ([`InteractiveTestPolicy`]), so the seed's sessions replay line
//! for line. This module only moves bytes, answers the session's questions from the store, and
//! switches the socket to TLS when a client starts with `tls`. Sessions are capped
//! ([`crate::limits::NodeLimits::max_peer_sessions`]) and every wait has the session's deadline.

use crate::clock::mono_now;
use crate::exchange::answer::{answer_from_store, split_item};
use crate::exchange::custodian::{Custodian, CustodianPolicy};
use crate::exchange::Exchange;
use crate::store::StoreFailure;
use bytes::Bytes;
use kith_proto::files::{
    Command, Event, InteractiveTestPolicy, Policy, Role, Session, SessionConfig, State, Target,
    TextPort,
};
use kith_store::ItemType;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

crate::counters! {
    /// What the peer port counts.
    pub struct PeerPortCounters {
        /// Sessions served.
        peer_sessions,
        /// Sessions that switched to TLS.
        peer_sessions_tls,
        /// Connections refused: too many sessions.
        refused_peer_sessions,
        /// Items stored from peer-port clients.
        peer_items_received,
    }
}

/// The CIYAM peer port: a handle, cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerPort {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    exchange: Exchange,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Clients connected now (session id, address), for `pip` and the cap.
    clients: Mutex<Vec<(u64, IpAddr)>>,
    next_session: AtomicU64,
    counters: PeerPortCounters,
}

impl PeerPort {
    /// The port's service: sessions answered from `exchange`'s store, custody included;
    /// `tls` for clients that start with `tls`.
    pub fn new(exchange: Exchange, tls: Option<Arc<rustls::ServerConfig>>) -> PeerPort {
        PeerPort {
            inner: Arc::new(Inner {
                exchange,
                tls,
                clients: Mutex::default(),
                next_session: AtomicU64::new(1),
                counters: PeerPortCounters::default(),
            }),
        }
    }

    /// What the port counts.
    pub fn counters(&self) -> &PeerPortCounters {
        &self.inner.counters
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, Vec<(u64, IpAddr)>> {
        self.inner.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts peer-port connections until `cancel`.
pub async fn accept_loop(port: PeerPort, listener: TcpListener, cancel: CancellationToken) {
    let state = &port;
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("peer port accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => return,
        };
        let id = state.inner.next_session.fetch_add(1, Ordering::Relaxed);
        {
            let mut clients = state.clients();
            if clients.len() >= state.inner.exchange.node_limits().max_peer_sessions {
                state.inner.counters.refused_peer_sessions.bump();
                continue; // dropping the stream closes it
            }
            clients.push((id, remote.ip()));
        }
        let task_state = state.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = serve(&task_state, stream, remote, id) => {
                    if let Err(e) = result {
                        tracing::debug!(%remote, "peer session ended: {e}");
                    }
                }
                _ = cancel.cancelled() => {}
            }
            task_state.clients().retain(|(other, _)| *other != id);
        });
    }
}

/// Another client of this listener, chosen at random, or loopback when there is none.
fn other_client(state: &PeerPort, id: u64) -> String {
    let clients = state.clients();
    let others: Vec<IpAddr> = clients
        .iter()
        .filter(|(o, _)| *o != id)
        .map(|(_, ip)| *ip)
        .collect();
    if others.is_empty() {
        return "127.0.0.1".to_owned();
    }
    let pick = rand::random::<usize>() % others.len();
    others[pick].to_string()
}

/// How one pass over a stream ended.
enum Pass {
    /// The session is over.
    Finished,
    /// The client asked for TLS: switch the socket, then continue.
    StartTls,
}

async fn serve(
    state: &PeerPort,
    mut stream: TcpStream,
    remote: SocketAddr,
    id: u64,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    state.inner.counters.peer_sessions.bump();
    let limits = state.inner.exchange.limits();
    let session = Session::new(
        Role::Responder,
        SessionConfig::interactive(limits),
        mono_now(),
    );
    let mut port = TextPort::new(session, limits);
    let others: Vec<String> = state
        .clients()
        .iter()
        .filter(|(o, _)| *o != id)
        .map(|(_, ip)| ip.to_string())
        .collect();
    let mut policy = InteractiveTestPolicy::new(rand::random(), others);
    let mut custodian = Custodian::default();
    let mut roles = Roles {
        policy: &mut policy,
        custodian: &mut custodian,
    };
    match drive(state, &mut port, &mut roles, &mut stream, id).await? {
        Pass::Finished => Ok(()),
        Pass::StartTls => {
            let Some(tls) = state.inner.tls.clone() else {
                return Err("TLS requested but the node has no TLS configuration".into());
            };
            let mut stream = tokio_rustls::TlsAcceptor::from(tls)
                .accept(stream)
                .await
                .map_err(|e| format!("TLS handshake with {remote}: {e}"))?;
            state.inner.counters.peer_sessions_tls.bump();
            port.session_mut()
                .tls_started(mono_now())
                .map_err(|e| e.to_string())?;
            port.process(mono_now());
            match drive(state, &mut port, &mut roles, &mut stream, id).await? {
                Pass::Finished => Ok(()),
                Pass::StartTls => Err("a second tls".into()),
            }
        }
    }
}

/// What decides the responder's own commands: the interactive-test rule, with custody's
/// commands taking precedence when there are any.
struct Roles<'a> {
    policy: &'a mut InteractiveTestPolicy,
    custodian: &'a mut Custodian,
}

/// Runs the session over `stream` until it ends or asks for TLS.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    state: &PeerPort,
    port: &mut TextPort,
    roles: &mut Roles<'_>,
    stream: &mut S,
    id: u64,
) -> Result<Pass, String> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut out = Vec::new();
        while let Some(bytes) = port.poll_transmit() {
            out.extend_from_slice(&bytes);
        }
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())?;
        }
        if let Some(event) = port.poll_event() {
            if let Some(pass) = answer(state, port, roles, event, id).await? {
                // Whatever the session still had to say goes out before we stop or switch.
                let mut out = Vec::new();
                while let Some(bytes) = port.poll_transmit() {
                    out.extend_from_slice(&bytes);
                }
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                return Ok(pass);
            }
            port.process(mono_now());
            continue;
        }
        if port.is_finished() {
            return Ok(Pass::Finished);
        }
        let deadline = port.poll_timeout().map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // Until the first command is in, read a byte at a time: if it is `tls`, the client's
        // TLS handshake follows it at once and must not be swallowed as text.
        let read_len = if port.session().state() == State::Fresh {
            1
        } else {
            buf.len()
        };
        tokio::select! {
            read = stream.read(&mut buf[..read_len]), if port.wants_bytes() => {
                let n = read.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Ok(Pass::Finished);
                }
                port.handle_bytes(mono_now(), &buf[..n]);
            }
            _ = sleep => port.handle_timeout(mono_now()),
        }
    }
}

/// Answers one session event. Returns `Some` when the pass must end.
async fn answer(
    state: &PeerPort,
    port: &mut TextPort,
    roles: &mut Roles<'_>,
    event: Event,
    id: u64,
) -> Result<Option<Pass>, String> {
    let now = mono_now;
    let session = port.session_mut();
    let ex = &state.inner.exchange;
    let Some(event) = answer_from_store(ex.store(), session, event)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let result = match event {
        Event::StoreItem { hash, item } => {
            let ok = match roles
                .custodian
                .take_into_custody(ex, hash, item.clone())
                .await
            {
                Some(custody) => custody.is_ok(),
                None => {
                    let ok = store_item(ex, item.clone()).await.is_ok();
                    if ok {
                        roles.custodian.on_item_stored(ex, &item).await;
                    }
                    ok
                }
            };
            if ok {
                state.inner.counters.peer_items_received.bump();
            }
            session.stored(now(), ok)
        }
        Event::PeerCommand(Command::Chk {
            target: Target::Hash(hash),
            nonce: None,
        }) => {
            roles.custodian.on_chk(ex, hash).await;
            Ok(())
        }
        Event::PeerCommand(Command::Put { hash }) => {
            roles.custodian.on_put(ex, hash).await;
            Ok(())
        }
        Event::PipAddress => session.answer_pip(now(), &other_client(state, id)),
        Event::ChooseCommand(ctx) => {
            let mut policy = CustodianPolicy {
                custodian: &mut *roles.custodian,
                inner: &mut *roles.policy,
            };
            session.answer_command(now(), policy.choose(&ctx))
        }
        Event::StartTls => return Ok(Some(Pass::StartTls)),
        Event::Closed(reason) => {
            tracing::debug!(?reason, "peer session closed");
            return Ok(Some(Pass::Finished));
        }
        Event::Ready
        | Event::PeerCommand(_)
        | Event::Reply { .. }
        | Event::ResolveTag { .. }
        | Event::HaveItem { .. }
        | Event::ReadItem { .. } => Ok(()),
    };
    result.map(|()| None).map_err(|e| e.to_string())
}

/// Stores a received item durably. A whole blob is also recorded as a file, so `kith file ls`
/// shows what arrived; other items (lists, encrypted copies) are kept as items.
async fn store_item(ex: &Exchange, item: Bytes) -> Result<(), StoreFailure> {
    ex.store()
        .run(move |s| {
            let (item_type, content) = split_item(&item)?;
            if item_type == ItemType::BLOB {
                s.put_reader(&mut &content[..], None).map(|_| ())
            } else {
                s.blobs().put_item(item_type, content).map(|_| ())
            }
        })
        .await
}
