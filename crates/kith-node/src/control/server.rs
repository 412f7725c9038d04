//! The control API server: an axum router served on the data dir's Unix socket (the accept
//! path, with its deadlines and bounds, is [`super::accept`]).

use super::Services;
use crate::api::value;
use crate::api::*;
use crate::endpoint::EndpointError;
use crate::ticket::Ticket;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kith_crypto::identity::AgentId;
use kith_store::meta::{PeerRecord, TicketRecord};
use std::time::Duration;

pub(super) type Api<T> = Result<Json<T>, ApiError>;

/// What the control API counts (the accept path's refusals).
#[derive(Debug, Default)]
pub struct ControlCounters {
    /// Connections closed because their headers did not arrive in time (or they idled).
    pub control_header_timeouts: crate::counters::Counter,
    /// Requests whose body did not arrive in time (408).
    pub control_body_timeouts: crate::counters::Counter,
    /// Requests whose body was over the cap (413).
    pub control_too_large: crate::counters::Counter,
    /// Idle connections closed to make room.
    pub control_evicted: crate::counters::Counter,
    /// Connections refused because every slot was busy (503).
    pub control_refused_busy: crate::counters::Counter,
}

impl ControlCounters {
    fn bump_named(&self, name: &str) {
        use super::accept::counter;
        match name {
            counter::HEADER_TIMEOUT => self.control_header_timeouts.bump(),
            counter::BODY_TIMEOUT => self.control_body_timeouts.bump(),
            counter::TOO_LARGE => self.control_too_large.bump(),
            counter::EVICTED => self.control_evicted.bump(),
            counter::REFUSED => self.control_refused_busy.bump(),
            _ => {}
        }
    }
}

impl crate::counters::CounterSet for ControlCounters {
    fn snapshot_into(&self, out: &mut std::collections::BTreeMap<String, u64>) {
        for (name, counter) in [
            ("control_header_timeouts", &self.control_header_timeouts),
            ("control_body_timeouts", &self.control_body_timeouts),
            ("control_too_large", &self.control_too_large),
            ("control_evicted", &self.control_evicted),
            ("control_refused_busy", &self.control_refused_busy),
        ] {
            out.insert(name.to_owned(), counter.get());
        }
    }
}

/// Serves the API on the control socket until `shutdown` resolves, then waits for requests in
/// progress (see [`super::accept`] for the deadlines and bounds).
pub async fn serve(
    listener: tokio::net::UnixListener,
    state: Services,
    limits: &crate::limits::NodeLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = super::accept::ServeLimits::from_limits(limits);
    let counters = std::sync::Arc::clone(&state.control_counters);
    super::accept::serve(
        listener,
        router(state),
        limits,
        move |name| counters.bump_named(name),
        shutdown,
    )
    .await
}

/// The router with every route of the API, bound to the node's services.
pub fn router(state: Services) -> Router {
    Router::new()
        .route(STATUS_PATH, get(status))
        .route(WEB_PATH, get(web))
        .route(TICKETS_PATH, post(issue_ticket).get(list_tickets))
        .route(REVOKE_PATH, post(revoke_ticket))
        .route(CONNECT_PATH, post(connect))
        .route(PEERS_PATH, get(peers))
        .route(NEARBY_PATH, get(nearby))
        .route(REMOVE_PEER_PATH, post(remove_peer))
        .route(BLOCK_PEER_PATH, post(block_peer))
        .route(REFERENCE_ORDER_PATH, post(reference_order))
        .route(CHECK_PEER_PATH, post(check_peer))
        .route(PING_PATH, post(ping))
        .route(FETCH_PATH, post(super::files::fetch))
        .route(FILE_TICKET_PATH, post(super::files::file_ticket))
        .route(SHARE_PATH, post(share))
        .route(UNSHARE_PATH, post(unshare))
        .route(TRANSFERS_PATH, get(transfers))
        .route(CANCEL_PATH, post(cancel_fetch))
        .route(CHAT_PATH, post(chat))
        .route(CHAT_READ_PATH, post(chat_read))
        .route(POSTS_PATH, post(posts))
        .route(PERSIST_PATH, post(persist))
        .route(RETRIEVE_PATH, post(retrieve))
        .route(value::TALLY_TICKET_PATH, post(tally_ticket))
        .route(value::TALLY_OPEN_PATH, post(tally_open))
        .route(value::TALLIES_PATH, get(tallies))
        .route(value::TALLY_SHOW_PATH, post(tally_show))
        .route(value::TALLY_CLOSE_PATH, post(tally_close))
        .route(value::PAY_PATH, post(pay))
        .route(value::INVOICE_PATH, post(invoice))
        .route(value::CHIT_ANSWER_PATH, post(chit_answer))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.node.max_control_body(),
        ))
        .with_state(state)
}

/// An error turned into a JSON body with a status code.
pub(super) struct ApiError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<EndpointError> for ApiError {
    fn from(e: EndpointError) -> ApiError {
        let code = match e {
            EndpointError::UnknownPeer(_)
            | EndpointError::Ticket(_)
            | EndpointError::OwnTicket
            | EndpointError::Blocked(_) => StatusCode::BAD_REQUEST,
            EndpointError::Directory(_) => StatusCode::INTERNAL_SERVER_ERROR,
            // The peer did not answer: the client tells this apart from its own node not
            // answering (`ControlError::PeerTimeout`).
            EndpointError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError(code, e.to_string())
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub(super) fn bad_request(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e.to_string())
}

/// Runs a store operation.
pub(super) async fn store<R, E, F>(state: &Services, f: F) -> Result<R, ApiError>
where
    R: Send + 'static,
    E: Into<crate::store::StoreFailure> + Send + 'static,
    F: FnOnce(&kith_store::FileStore) -> Result<R, E> + Send + 'static,
{
    state.store.run(f).await.map_err(internal)
}

pub(super) fn parse_agent(text: &str) -> Result<AgentId, ApiError> {
    text.trim()
        .parse()
        .map_err(|e| bad_request(format!("{text:?} is not an agent id: {e}")))
}

async fn status(State(state): State<Services>) -> Api<StatusReport> {
    let files = store(&state, |s| s.list().map(|files| files.len() as u64)).await?;
    let mut report = state.node.status(files);
    crate::counters::CounterSet::snapshot_into(&*state.control_counters, &mut report.counters);
    report.replication = Some(ReplicationStatus {
        bytes: state.sharing.replica_bytes().await.map_err(internal)?,
        quota: state.sharing.quota(),
        queued: state.sharing.queued() as u64,
    });
    Ok(Json(report))
}

async fn web(State(state): State<Services>) -> Json<WebAddress> {
    Json(WebAddress {
        web: state.node.web_url(),
    })
}

async fn issue_ticket(
    State(state): State<Services>,
    Json(order): Json<TicketOrder>,
) -> Api<IssuedTicket> {
    issue(&state, order).await.map(Json)
}

/// Issues a ticket for this node (also the one inside a file ticket).
pub(super) async fn issue(state: &Services, order: TicketOrder) -> Result<IssuedTicket, ApiError> {
    if order.ttl_secs == 0 || order.ttl_secs > 366 * 24 * 3600 {
        return Err(bad_request(
            "ticket lifetime must be between 1 second and a year",
        ));
    }
    if !state.node.listens() {
        return Err(bad_request(
            "this node does not listen for secure links (--listen off), so nobody can use a ticket",
        ));
    }
    let mut chad = state.endpoint.own_chad();
    chad.cuid = order.cuid;
    let (ticket, record) = crate::ticket::issue(
        chad,
        state.node.clock().system_now(),
        Duration::from_secs(order.ttl_secs),
        order.reusable,
        &mut rand::rngs::OsRng,
    );
    let mut ticket = ticket;
    let warnings = crate::reach::advertise(&state.endpoint, &mut ticket);
    store(state, move |s| s.meta().insert_ticket(&record)).await?;
    let line = ticket.to_line();
    let code = if order.code {
        let code = state
            .reach
            .issue_code(line.clone(), ticket.token.clone())
            .await
            .map_err(bad_request)?;
        Some(code)
    } else {
        None
    };
    Ok(IssuedTicket {
        ticket,
        line,
        reusable: order.reusable,
        warnings,
        code,
    })
}

async fn list_tickets(State(state): State<Services>) -> Api<Vec<TicketRecord>> {
    Ok(Json(store(&state, |s| s.meta().list_tickets()).await?))
}

async fn revoke_ticket(State(state): State<Services>, Json(body): Json<TokenBody>) -> Api<Changed> {
    let token = body.token.trim().to_ascii_lowercase();
    let changed = store(&state, move |s| s.meta().revoke_ticket(&token)).await?;
    Ok(Json(Changed { changed }))
}

async fn connect(State(state): State<Services>, Json(body): Json<ConnectBody>) -> Api<PeerRecord> {
    let ticket = if crate::reach::code::looks_like_code(&body.ticket) {
        state
            .reach
            .redeem_code(&body.ticket)
            .await
            .map_err(bad_request)?
    } else {
        Ticket::parse(&body.ticket).map_err(bad_request)?
    };
    Ok(Json(state.endpoint.connect_ticket(ticket).await?))
}

async fn nearby(State(state): State<Services>) -> Api<Vec<crate::nearby::NearbyNode>> {
    Ok(Json(state.nearby.list()))
}

async fn peers(State(state): State<Services>) -> Api<Vec<PeerView>> {
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
                .and_then(|agent| state.endpoint.link_view(&agent));
            let link_state = if record.blocked {
                "blocked"
            } else if link.is_some() {
                "linked"
            } else {
                "idle"
            };
            let exchanged = record
                .agent
                .parse::<AgentId>()
                .map(|agent| {
                    let ledger = state.exchange.uploads.ledger(&agent);
                    Exchanged {
                        bytes_received: ledger.bytes_received,
                        bytes_sent: ledger.bytes_sent,
                    }
                })
                .unwrap_or_default();
            PeerView {
                retention: retention.remove(&record.agent),
                record,
                state: link_state.to_owned(),
                link: link.and_then(|l| serde_json::to_value(l).ok()),
                exchanged,
            }
        })
        .collect();
    Ok(Json(views))
}

async fn remove_peer(State(state): State<Services>, Json(body): Json<AgentBody>) -> Api<Changed> {
    let agent = parse_agent(&body.agent)?;
    let name = agent.to_string();
    let changed = store(&state, move |s| s.meta().remove_peer(&name)).await?;
    state.endpoint.close(&agent);
    Ok(Json(Changed { changed }))
}

async fn block_peer(State(state): State<Services>, Json(body): Json<BlockBody>) -> Api<Changed> {
    let agent = parse_agent(&body.agent)?;
    let (name, blocked, now) = (
        agent.to_string(),
        body.blocked,
        state.node.clock().unix_secs(),
    );
    let changed = store(&state, move |s| {
        s.meta().set_peer_blocked(&name, blocked, now)
    })
    .await?;
    if body.blocked {
        state.endpoint.close(&agent);
    }
    Ok(Json(Changed { changed }))
}

async fn reference_order(
    State(state): State<Services>,
    Json(body): Json<ReferenceOrderBody>,
) -> Api<Changed> {
    let agent = parse_agent(&body.agent)?;
    let (name, on) = (agent.to_string(), body.on);
    let changed = store(&state, move |s| {
        s.meta().set_peer_reference_order(&name, on)
    })
    .await?;
    // A link up now runs in the order it was opened with: the next one takes the option.
    state.endpoint.close(&agent);
    Ok(Json(Changed { changed }))
}

async fn check_peer(
    State(state): State<Services>,
    Json(body): Json<AgentBody>,
) -> Api<Vec<CheckReport>> {
    let agent = parse_agent(&body.agent)?;
    state
        .retention
        .check_peer(agent)
        .await
        .map(Json)
        .map_err(exchange_error)
}

async fn ping(State(state): State<Services>, Json(body): Json<AgentBody>) -> Api<PingReport> {
    let agent = parse_agent(&body.agent)?;
    let rtt = state.endpoint.ping(agent).await?;
    Ok(Json(PingReport {
        agent: agent.to_string(),
        rtt_ms: rtt.as_secs_f64() * 1000.0,
    }))
}

async fn cancel_fetch(State(state): State<Services>, Json(body): Json<HashBody>) -> Api<Changed> {
    let hash = parse_hash(&body.hash)?;
    Ok(Json(Changed {
        changed: state.exchange.cancel_fetch(&hash),
    }))
}

async fn share(State(state): State<Services>, Json(body): Json<HashBody>) -> Api<ShareReport> {
    let hash = parse_hash(&body.hash)?;
    state
        .sharing
        .share(hash)
        .await
        .map(Json)
        .map_err(share_error)
}

async fn unshare(State(state): State<Services>, Json(body): Json<HashBody>) -> Api<Changed> {
    let hash = parse_hash(&body.hash)?;
    let changed = state.sharing.unshare(hash).await.map_err(share_error)?;
    Ok(Json(Changed { changed }))
}

fn share_error(e: crate::sharing::ShareError) -> ApiError {
    let code = match e {
        crate::sharing::ShareError::NotStored(_) => StatusCode::NOT_FOUND,
        crate::sharing::ShareError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(code, e.to_string())
}

async fn transfers(State(state): State<Services>) -> Api<Vec<TransferProgress>> {
    Ok(Json(state.exchange.progress.list()))
}

async fn chat(State(state): State<Services>, Json(request): Json<ChatRequest>) -> Api<ChatReply> {
    state
        .chat
        .request(request)
        .await
        .map(Json)
        .map_err(bad_request)
}

async fn posts(
    State(state): State<Services>,
    Json(request): Json<PostsRequest>,
) -> Api<PostsReply> {
    state.posts.request(request).await.map(Json).map_err(|e| {
        let code = if e.is_bad_input() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError(code, e.to_string())
    })
}

async fn chat_read(
    State(state): State<Services>,
    Json(body): Json<ChatReadBody>,
) -> Api<Vec<kith_store::meta::ChatMessageRow>> {
    let wait = Duration::from_millis(body.wait_ms.min(MAX_CHAT_WAIT_MS));
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the first read, so a message logged in between still wakes us.
    let mut changed = state.chat.log_changed();
    let limit = body.limit.clamp(
        1,
        state.chat.settings().node_limits.chat_log_messages.max(1),
    );
    loop {
        let rows = state
            .chat
            .read(body.after, body.channel.clone(), limit)
            .await
            .map_err(internal)?;
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
    State(state): State<Services>,
    Json(body): Json<PersistBody>,
) -> Api<PersistReport> {
    let push = parse_hash(&body.push_request)?;
    let to = body.to.as_deref().map(parse_agent).transpose()?;
    // Priced custody is paid for first (a Datt payment request), within the budget.
    let budget = body.max_price.unwrap_or_else(|| state.tallies.max_price());
    let days = body.days.unwrap_or(DEFAULT_CUSTODY_DAYS);
    if !(1..=kith_value::message::MAX_KEEP_DAYS).contains(&days) {
        return Err(bad_request(format!("{days} days: ask for 1 to 36500")));
    }
    if let (Some(peer), true) = (
        to.or_else(|| state.endpoint.linked().first().copied()),
        budget > 0,
    ) {
        state
            .tallies
            .buy_custody(push, peer, days, budget)
            .await
            .map_err(tally_error)?;
    }
    state
        .exchange
        .persist(push, to)
        .await
        .map(Json)
        .map_err(exchange_error)
}

async fn retrieve(
    State(state): State<Services>,
    Json(body): Json<RetrieveBody>,
) -> Api<RetrieveReport> {
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
    // A custodian that prices what it serves is paid for the copy first, within the budget.
    let budget = body.max_price.unwrap_or_else(|| state.tallies.max_price());
    let custodian = from.or_else(|| state.endpoint.linked().first().copied());
    if let (Some(peer), true) = (custodian, budget > 0) {
        state
            .tallies
            .buy(hash, peer, budget)
            .await
            .map_err(tally_error)?;
    }
    state
        .exchange
        .retrieve(hash, owner, from)
        .await
        .map(Json)
        .map_err(exchange_error)
}

pub(super) fn parse_hash(text: &str) -> Result<kith_store::ContentHash, ApiError> {
    text.trim().parse().map_err(|_| {
        bad_request(format!(
            "{text:?} is not a content address (64 lowercase hex digits)"
        ))
    })
}

pub(super) fn exchange_error(e: crate::exchange::ExchangeError) -> ApiError {
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
        ExchangeError::Store(_) | ExchangeError::Local(_) | ExchangeError::Answer(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        ExchangeError::LinkLost(_)
        | ExchangeError::Session { .. }
        | ExchangeError::OverBudget { .. }
        | ExchangeError::Stalled(_)
        | ExchangeError::SourcesLost(_)
        | ExchangeError::BadFolder(_) => StatusCode::BAD_GATEWAY,
        ExchangeError::Unavailable { .. } => StatusCode::NOT_FOUND,
        ExchangeError::Output(crate::exchange::output::OutputError::Io { .. }) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        ExchangeError::Output(_) => StatusCode::BAD_REQUEST,
        // Nginx's "client closed request": the CLI asked for it.
        ExchangeError::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::CONFLICT),
    };
    match e {
        ExchangeError::Net(net) => ApiError::from(net),
        e => ApiError(code, e.to_string()),
    }
}

// ---- value: tallies and chits ----

pub(super) fn tally_error(e: crate::tally::TallyError) -> ApiError {
    use crate::tally::{TallyError, UserError};
    let code = match &e {
        TallyError::User(UserError::Meta(_) | UserError::Key(_) | UserError::MissingKey(..)) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        TallyError::User(_) | TallyError::BadInput(_) | TallyError::Value(_) => {
            StatusCode::BAD_REQUEST
        }
        TallyError::NotFound(_) => StatusCode::NOT_FOUND,
        TallyError::Refused(_) | TallyError::PartnerRefused(_) => StatusCode::CONFLICT,
        TallyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        TallyError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        TallyError::Net(_) => StatusCode::BAD_GATEWAY,
    };
    match e {
        TallyError::Net(net) => ApiError::from(net),
        e => ApiError(code, e.to_string()),
    }
}

async fn tally_ticket(
    State(state): State<Services>,
    Json(order): Json<value::TallyTicketOrder>,
) -> Api<value::IssuedTallyTicket> {
    if !state.node.listens() {
        return Err(bad_request(
            "this node does not listen for secure links (--listen off), so nobody can use a ticket",
        ));
    }
    let mut issued = state
        .tallies
        .issue_ticket(order)
        .await
        .map_err(tally_error)?;
    // Like a connection ticket, a tally ticket names every address and broker by which the
    // partner may reach this node behind a NAT (the warnings are for `kith ticket`).
    crate::reach::advertise(&state.endpoint, &mut issued.ticket);
    issued.line = issued.ticket.to_line();
    Ok(Json(issued))
}

async fn tally_open(
    State(state): State<Services>,
    Json(body): Json<value::TallyOpenBody>,
) -> Api<value::TallyView> {
    state
        .tallies
        .open(body)
        .await
        .map(Json)
        .map_err(tally_error)
}

async fn tallies(State(state): State<Services>) -> Api<Vec<value::TallyView>> {
    state.tallies.list().await.map(Json).map_err(tally_error)
}

async fn tally_show(
    State(state): State<Services>,
    Json(body): Json<value::TallyIdBody>,
) -> Api<value::TallyDetail> {
    state
        .tallies
        .show(body)
        .await
        .map(Json)
        .map_err(tally_error)
}

async fn tally_close(
    State(state): State<Services>,
    Json(body): Json<value::TallyIdBody>,
) -> Api<value::TallyView> {
    state
        .tallies
        .close(body)
        .await
        .map(Json)
        .map_err(tally_error)
}

async fn pay(
    State(state): State<Services>,
    Json(body): Json<value::PayBody>,
) -> Api<value::ChitView> {
    state.tallies.pay(body).await.map(Json).map_err(tally_error)
}

async fn invoice(
    State(state): State<Services>,
    Json(body): Json<value::PayBody>,
) -> Api<value::ChitView> {
    state
        .tallies
        .invoice(body)
        .await
        .map(Json)
        .map_err(tally_error)
}

async fn chit_answer(
    State(state): State<Services>,
    Json(body): Json<value::ChitAnswerBody>,
) -> Api<value::ChitView> {
    state
        .tallies
        .answer(body)
        .await
        .map(Json)
        .map_err(tally_error)
}
