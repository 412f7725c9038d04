//! The control API server: an axum router served on the data dir's Unix socket (the accept
//! path, with its deadlines and bounds, is [`super::accept`]).

use super::*;
use crate::net::{self, NetError};
use crate::node::NodeState;
use crate::ticket::{unix_secs, Ticket};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kith_crypto::identity::AgentId;
use kith_store::meta::{PeerRecord, TicketRecord};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

type Api<T> = Result<Json<T>, ApiError>;

/// Serves the API on the control socket until `shutdown` resolves, then waits for requests in
/// progress (see [`super::accept`] for the deadlines and bounds).
pub async fn serve(
    listener: tokio::net::UnixListener,
    state: Arc<NodeState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = super::accept::ServeLimits::from_limits(&state.config.limits);
    let counted = Arc::clone(&state);
    super::accept::serve(
        listener,
        router(state),
        limits,
        move |name| counted.counters.bump(name),
        shutdown,
    )
    .await
}

/// The router with every route of the API, bound to the node's shared state.
pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route(STATUS_PATH, get(status))
        .route(TICKETS_PATH, post(issue_ticket).get(list_tickets))
        .route(REVOKE_PATH, post(revoke_ticket))
        .route(CONNECT_PATH, post(connect))
        .route(PEERS_PATH, get(peers))
        .route(REMOVE_PEER_PATH, post(remove_peer))
        .route(BLOCK_PEER_PATH, post(block_peer))
        .route(CHECK_PEER_PATH, post(check_peer))
        .route(PING_PATH, post(ping))
        .route(FETCH_PATH, post(fetch))
        .route(SHARE_PATH, post(share))
        .route(UNSHARE_PATH, post(unshare))
        .route(TRANSFERS_PATH, get(transfers))
        .route(CHAT_PATH, post(chat))
        .route(CHAT_READ_PATH, post(chat_read))
        .route(PERSIST_PATH, post(persist))
        .route(RETRIEVE_PATH, post(retrieve))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.limits.max_control_body,
        ))
        .with_state(state)
}

/// An error turned into a JSON body with a status code.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<NetError> for ApiError {
    fn from(e: NetError) -> ApiError {
        let code = match e {
            NetError::UnknownPeer(_) | NetError::Ticket(_) | NetError::Blocked(_) => {
                StatusCode::BAD_REQUEST
            }
            // The peer did not answer: the client tells this apart from its own node not
            // answering (`ControlError::PeerTimeout`).
            NetError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError(code, e.to_string())
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn bad_request(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e.to_string())
}

/// Runs a store operation, flattening both error layers.
async fn store<R, E, F>(state: &NodeState, f: F) -> Result<R, ApiError>
where
    R: Send + 'static,
    E: std::fmt::Display + Send + 'static,
    F: FnOnce(&mut kith_store::FileStore) -> Result<R, E> + Send + 'static,
{
    state
        .with_store(f)
        .await
        .map_err(internal)?
        .map_err(internal)
}

fn parse_agent(text: &str) -> Result<AgentId, ApiError> {
    text.trim()
        .parse()
        .map_err(|e| bad_request(format!("{text:?} is not an agent id: {e}")))
}

async fn status(State(state): State<Arc<NodeState>>) -> Api<StatusReport> {
    state.counters.bump("control_requests");
    let files = store(&state, |s| s.list().map(|files| files.len() as u64)).await?;
    Ok(Json(state.status(files)))
}

async fn issue_ticket(
    State(state): State<Arc<NodeState>>,
    Json(order): Json<TicketOrder>,
) -> Api<IssuedTicket> {
    if order.ttl_secs == 0 || order.ttl_secs > 366 * 24 * 3600 {
        return Err(bad_request(
            "ticket lifetime must be between 1 second and a year",
        ));
    }
    if state.config.listen.is_none() {
        return Err(bad_request(
            "this node does not listen for secure links (--listen off), so nobody can use a ticket",
        ));
    }
    let mut chad = state.own_chad();
    chad.cuid = order.cuid;
    let (ticket, record) = crate::ticket::issue(
        chad,
        SystemTime::now(),
        Duration::from_secs(order.ttl_secs),
        order.reusable,
        &mut rand::rngs::OsRng,
    );
    store(&state, move |s| s.meta().insert_ticket(&record)).await?;
    state.counters.bump("tickets_issued");
    let line = ticket.to_line();
    Ok(Json(IssuedTicket {
        ticket,
        line,
        reusable: order.reusable,
    }))
}

async fn list_tickets(State(state): State<Arc<NodeState>>) -> Api<Vec<TicketRecord>> {
    Ok(Json(store(&state, |s| s.meta().list_tickets()).await?))
}

async fn revoke_ticket(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<TokenBody>,
) -> Api<Changed> {
    let token = body.token.trim().to_ascii_lowercase();
    let changed = store(&state, move |s| s.meta().revoke_ticket(&token)).await?;
    Ok(Json(Changed { changed }))
}

async fn connect(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<ConnectBody>,
) -> Api<PeerRecord> {
    let ticket = Ticket::parse(&body.ticket).map_err(bad_request)?;
    Ok(Json(net::connect_ticket(&state, ticket).await?))
}

async fn peers(State(state): State<Arc<NodeState>>) -> Api<Vec<PeerView>> {
    let state_ref = &state;
    let (records, mut retention) = store(&state, |s| {
        let records = s.meta().list_peers()?;
        let retention: std::collections::HashMap<String, _> = s
            .meta()
            .retention_by_peer()?
            .into_iter()
            .map(|r| (r.agent.clone(), r))
            .collect();
        Ok::<_, kith_store::MetaError>((records, retention))
    })
    .await?;
    let views = records
        .into_iter()
        .map(|record| {
            let link = record
                .agent
                .parse::<AgentId>()
                .ok()
                .and_then(|agent| state.links.view(&agent));
            let state = if record.blocked {
                "blocked"
            } else if link.is_some() {
                "linked"
            } else {
                "idle"
            };
            let exchanged = record
                .agent
                .parse::<AgentId>()
                .map(|agent| state_ref.uploads.ledger(&agent))
                .unwrap_or_default();
            PeerView {
                retention: retention.remove(&record.agent),
                record,
                state: state.to_owned(),
                link: link.and_then(|l| serde_json::to_value(l).ok()),
                exchanged,
            }
        })
        .collect();
    Ok(Json(views))
}

async fn remove_peer(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<AgentBody>,
) -> Api<Changed> {
    let agent = parse_agent(&body.agent)?;
    let name = agent.to_string();
    let changed = store(&state, move |s| s.meta().remove_peer(&name)).await?;
    state.links.close(&agent);
    Ok(Json(Changed { changed }))
}

async fn block_peer(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<BlockBody>,
) -> Api<Changed> {
    let agent = parse_agent(&body.agent)?;
    let (name, blocked, now) = (
        agent.to_string(),
        body.blocked,
        unix_secs(SystemTime::now()),
    );
    let changed = store(&state, move |s| {
        s.meta().set_peer_blocked(&name, blocked, now)
    })
    .await?;
    if body.blocked {
        state.links.close(&agent);
    }
    Ok(Json(Changed { changed }))
}

async fn check_peer(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<AgentBody>,
) -> Api<Vec<crate::retention::CheckReport>> {
    let agent = parse_agent(&body.agent)?;
    crate::retention::check_peer(&state, agent)
        .await
        .map(Json)
        .map_err(exchange_error)
}

async fn ping(State(state): State<Arc<NodeState>>, Json(body): Json<AgentBody>) -> Api<PingReport> {
    let agent = parse_agent(&body.agent)?;
    let rtt = net::ping(&state, agent).await?;
    Ok(Json(PingReport {
        agent: agent.to_string(),
        rtt_ms: rtt.as_secs_f64() * 1000.0,
    }))
}

async fn fetch(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<FetchBody>,
) -> Api<FetchReport> {
    let hash: kith_store::ContentHash = body.hash.trim().parse().map_err(|_| {
        bad_request(format!(
            "{:?} is not a content address (64 lowercase hex digits)",
            body.hash
        ))
    })?;
    let from = body.from.as_deref().map(parse_agent).transpose()?;
    crate::exchange::fetch(&state, hash, from)
        .await
        .map(Json)
        .map_err(exchange_error)
}

async fn share(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<HashBody>,
) -> Api<crate::sharing::ShareReport> {
    let hash = parse_hash(&body.hash)?;
    crate::sharing::share(&state, hash)
        .await
        .map(Json)
        .map_err(share_error)
}

async fn unshare(State(state): State<Arc<NodeState>>, Json(body): Json<HashBody>) -> Api<Changed> {
    let hash = parse_hash(&body.hash)?;
    let changed = crate::sharing::unshare(&state, hash)
        .await
        .map_err(share_error)?;
    Ok(Json(Changed { changed }))
}

fn share_error(e: crate::sharing::ShareError) -> ApiError {
    let code = match e {
        crate::sharing::ShareError::NotStored(_) => StatusCode::NOT_FOUND,
        crate::sharing::ShareError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(code, e.to_string())
}

async fn transfers(
    State(state): State<Arc<NodeState>>,
) -> Api<Vec<crate::exchange::progress::TransferProgress>> {
    Ok(Json(state.progress.list()))
}

async fn chat(
    State(state): State<Arc<NodeState>>,
    Json(request): Json<crate::chat::ChatRequest>,
) -> Api<crate::chat::ChatReply> {
    state
        .chat
        .request(request)
        .await
        .map(Json)
        .map_err(bad_request)
}

async fn chat_read(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<ChatReadBody>,
) -> Api<Vec<kith_store::meta::ChatMessageRow>> {
    let wait = Duration::from_millis(body.wait_ms.min(MAX_CHAT_WAIT_MS));
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the first read, so a message logged in between still wakes us.
    let mut changed = state.chat.log_changed();
    let limit = body
        .limit
        .clamp(1, state.config.limits.chat_log_messages.max(1));
    loop {
        let (after, channel) = (body.after, body.channel.clone());
        let rows = store(&state, move |s| {
            s.meta().chat_read(after, channel.as_deref(), limit)
        })
        .await?;
        if !rows.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(rows));
        }
        if tokio::time::timeout_at(deadline, changed.changed())
            .await
            .is_err()
        {
            return Ok(Json(rows));
        }
    }
}

async fn persist(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<PersistBody>,
) -> Api<crate::exchange::PersistReport> {
    let push = parse_hash(&body.push_request)?;
    let to = body.to.as_deref().map(parse_agent).transpose()?;
    crate::exchange::persist(&state, push, to)
        .await
        .map(Json)
        .map_err(exchange_error)
}

async fn retrieve(
    State(state): State<Arc<NodeState>>,
    Json(body): Json<RetrieveBody>,
) -> Api<crate::exchange::RetrieveReport> {
    let hash = parse_hash(&body.hash)?;
    let from = body.from.as_deref().map(parse_agent).transpose()?;
    let owner = body
        .owner_key
        .as_deref()
        .map(|key| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .ok()
                .and_then(|bytes| <[u8; 33]>::try_from(bytes).ok())
                .ok_or_else(|| {
                    bad_request(format!(
                        "{key:?} is not an owner key (33 bytes in standard base64)"
                    ))
                })
        })
        .transpose()?;
    crate::exchange::retrieve(&state, hash, owner, from)
        .await
        .map(Json)
        .map_err(exchange_error)
}

fn parse_hash(text: &str) -> Result<kith_store::ContentHash, ApiError> {
    text.trim().parse().map_err(|_| {
        bad_request(format!(
            "{text:?} is not a content address (64 lowercase hex digits)"
        ))
    })
}

fn exchange_error(e: crate::exchange::ExchangeError) -> ApiError {
    use crate::exchange::ExchangeError;
    let code = match &e {
        ExchangeError::Net(_) => StatusCode::BAD_GATEWAY,
        ExchangeError::NotFound { .. } | ExchangeError::NoPeerHas(_) => StatusCode::NOT_FOUND,
        ExchangeError::NoPeers => StatusCode::BAD_REQUEST,
        ExchangeError::Refused(_) => StatusCode::CONFLICT,
        ExchangeError::Busy(_)
        | ExchangeError::TooMany(_)
        | ExchangeError::GaveWay(_)
        | ExchangeError::Yielded(_) => StatusCode::CONFLICT,
        ExchangeError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ExchangeError::LinkLost(_) | ExchangeError::Session { .. } => StatusCode::BAD_GATEWAY,
    };
    match e {
        ExchangeError::Net(net) => ApiError::from(net),
        e => ApiError(code, e.to_string()),
    }
}
