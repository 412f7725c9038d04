//! The CIYAM peer port: the text protocol of `../shared/spec/ciyam-peer.md` for `kith shell`
//! and plain clients.
//!
//! Each connection gets a responder [`TextPort`] in interactive-test mode, whose own commands
//! follow the reference's rule ([`InteractiveTestPolicy`]), so the seed's sessions replay line
//! for line. This module only moves bytes, answers the session's questions from the store, and
//! switches the socket to TLS when a client starts with `tls`. Sessions are capped
//! ([`kith_proto::Limits::max_peer_sessions`]) and every wait has the session's deadline.

use crate::custodian::{Custodian, CustodianPolicy};
use crate::exchange::answer::{answer_from_store, split_item, with_blobs};
use crate::node::NodeState;
use bytes::Bytes;
use kith_proto::files::{
    Command, Event, InteractiveTestPolicy, Policy, Role, Session, SessionConfig, State, Target,
    TextPort,
};
use kith_store::ItemType;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Accepts peer-port connections until the node stops.
pub async fn accept_loop(state: Arc<NodeState>, listener: TcpListener) {
    let mut stopping = state.stopping();
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
            _ = stopping.changed() => return,
        };
        let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        {
            let mut clients = state.peer_clients();
            if clients.len() >= state.config.limits.max_peer_sessions {
                state.counters.bump("refused_peer_sessions");
                continue; // dropping the stream closes it
            }
            clients.push((id, remote.ip()));
        }
        let task_state = Arc::clone(&state);
        tokio::spawn(async move {
            if let Err(e) = serve(&task_state, stream, remote, id).await {
                tracing::debug!(%remote, "peer session ended: {e}");
            }
            task_state.peer_clients().retain(|(other, _)| *other != id);
        });
    }
}

/// Another client of this listener, chosen at random, or loopback when there is none.
fn other_client(state: &NodeState, id: u64) -> String {
    let clients = state.peer_clients();
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
    state: &Arc<NodeState>,
    mut stream: TcpStream,
    remote: SocketAddr,
    id: u64,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    state.counters.bump("peer_sessions");
    let limits = &state.config.limits;
    let session = Session::new(
        Role::Responder,
        SessionConfig::interactive(limits),
        Instant::now(),
    );
    let mut port = TextPort::new(session, limits);
    let others: Vec<String> = state
        .peer_clients()
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
            let Some(tls) = state.tls.clone() else {
                return Err("TLS requested but the node has no TLS configuration".into());
            };
            let mut stream = tokio_rustls::TlsAcceptor::from(tls)
                .accept(stream)
                .await
                .map_err(|e| format!("TLS handshake with {remote}: {e}"))?;
            state.counters.bump("peer_sessions_tls");
            port.session_mut()
                .tls_started(Instant::now())
                .map_err(|e| e.to_string())?;
            port.process(Instant::now());
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
    state: &Arc<NodeState>,
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
            port.process(Instant::now());
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
                port.handle_bytes(Instant::now(), &buf[..n]);
            }
            _ = sleep => port.handle_timeout(Instant::now()),
        }
    }
}

/// Answers one session event. Returns `Some` when the pass must end.
async fn answer(
    state: &Arc<NodeState>,
    port: &mut TextPort,
    roles: &mut Roles<'_>,
    event: Event,
    id: u64,
) -> Result<Option<Pass>, String> {
    let now = Instant::now;
    let session = port.session_mut();
    let Some(event) = answer_from_store(state, session, event).await? else {
        return Ok(None);
    };
    let result = match event {
        Event::StoreItem { hash, item } => {
            let ok = match roles
                .custodian
                .take_into_custody(state, hash, item.clone())
                .await
            {
                Some(custody) => custody.is_ok(),
                None => {
                    let ok = store_item(state, item.clone()).await.is_ok();
                    if ok {
                        roles.custodian.on_item_stored(state, &item).await;
                    }
                    ok
                }
            };
            if ok {
                state.counters.bump("peer_items_received");
            }
            session.stored(now(), ok)
        }
        Event::PeerCommand(Command::Chk {
            target: Target::Hash(hash),
            nonce: None,
        }) => {
            roles.custodian.on_chk(state, hash).await;
            Ok(())
        }
        Event::PeerCommand(Command::Put { hash }) => {
            roles.custodian.on_put(state, hash).await;
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
async fn store_item(state: &NodeState, item: Bytes) -> Result<(), String> {
    with_blobs(state, move |s| {
        let (item_type, content) = split_item(&item)?;
        if item_type == ItemType::BLOB {
            s.put_reader(&mut &content[..], None).map(|_| ())
        } else {
            s.blobs().put_item(item_type, content).map(|_| ())
        }
    })
    .await
}
