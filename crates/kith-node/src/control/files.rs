//! The control API's file routes that take or make file tickets: fetch (by hash, or by file
//! ticket: linked to its node first, as `kith file get TICKET` does) and file tickets.

use super::server::{
    bad_request, exchange_error, issue, parse_agent, parse_hash, store, tally_error, Api, ApiError,
};
use super::Services;
use crate::api::*;
use crate::file_ticket::FileTicket;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kith_crypto::identity::AgentId;
use kith_store::ContentHash;

/// `POST /v1/files/fetch`.
pub(super) async fn fetch(
    State(state): State<Services>,
    Json(body): Json<FetchBody>,
) -> Api<FetchReport> {
    let (hash, from) = if FileTicket::looks_like(&body.hash) {
        let ticket = FileTicket::parse(&body.hash).map_err(bad_request)?;
        let hash = ticket.content_hash().map_err(bad_request)?;
        (hash, Some(link(&state, &ticket).await?))
    } else {
        let hash: ContentHash = body.hash.trim().parse().map_err(|_| {
            bad_request(format!(
                "{:?} is not a content address (64 lowercase hex digits) or a file ticket \
                 ({}…)",
                body.hash,
                crate::file_ticket::PREFIX
            ))
        })?;
        (hash, body.from.as_deref().map(parse_agent).transpose()?)
    };
    // A priced file is paid for first (a Datt payment request), within the budget.
    let budget = body.max_price.unwrap_or_else(|| state.tallies.max_price());
    if let (Some(peer), true) = (from, budget > 0) {
        state
            .tallies
            .buy(hash, peer, budget)
            .await
            .map_err(tally_error)?;
    }
    let mut order = crate::exchange::FetchOrder::new(hash, from);
    order.output = body.output.map(|path| crate::exchange::OutputSpec {
        path: std::path::PathBuf::from(path),
        into_dir: body.into_dir,
        force: body.force,
    });
    order.rate = body.rate;
    order.folders = true;
    order.folder_into = body.folder_into.map(|dir| crate::exchange::OutputSpec {
        path: std::path::PathBuf::from(dir),
        into_dir: true,
        force: body.force,
    });
    state
        .exchange
        .fetch_order(order)
        .await
        .map(Json)
        .map_err(exchange_error)
}

/// Links to the node that issued a file ticket, unless it is a peer already (the ticket may
/// have been used, or have expired, since); returns its agent id. The same steps as
/// `kith file get TICKET`.
async fn link(state: &Services, ticket: &FileTicket) -> Result<AgentId, ApiError> {
    let node = &ticket.ticket;
    let agent = node.agent().map_err(bad_request)?;
    let name = agent.to_string();
    if store(state, move |s| s.meta().get_peer(&name))
        .await?
        .is_some()
    {
        return Ok(agent);
    }
    // `connect_ticket` refuses an expired ticket (a 400, as every bad ticket).
    state.endpoint.connect_ticket(node.clone()).await?;
    Ok(agent)
}

/// `POST /v1/files/ticket`: a file ticket for a stored file, with a fresh one-time ticket for
/// this node inside.
pub(super) async fn file_ticket(
    State(state): State<Services>,
    Json(order): Json<FileTicketOrder>,
) -> Api<IssuedFileTicket> {
    let hash = parse_hash(&order.hash)?;
    let Some(record) = store(&state, move |s| s.get(&hash)).await? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no stored file has the hash {hash}"),
        ));
    };
    let issued = issue(
        &state,
        TicketOrder {
            reusable: false,
            ttl_secs: order.ttl_secs,
            cuid: None,
            code: false,
        },
    )
    .await?;
    let expires = issued.ticket.expires.clone();
    let ticket = FileTicket {
        hash: hash.to_hex(),
        name: record.name,
        size: Some(record.size),
        ticket: issued.ticket,
    };
    Ok(Json(IssuedFileTicket {
        hash: hash.to_hex(),
        ticket: ticket.to_line(),
        expires,
        warnings: issued.warnings,
    }))
}
