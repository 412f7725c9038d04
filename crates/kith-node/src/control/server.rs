//! The control API server: an axum router served on the data dir's Unix socket.

use super::{ErrorBody, StatusReport, STATUS_PATH};
use crate::node::NodeState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The router with every route of the API, bound to the node's shared state.
pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route(STATUS_PATH, get(status))
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

async fn status(State(state): State<Arc<NodeState>>) -> Result<Json<StatusReport>, ApiError> {
    state
        .counters
        .control_requests
        .fetch_add(1, Ordering::Relaxed);
    let files = state
        .with_store(|store| store.list().map(|files| files.len() as u64))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(state.status(files)))
}
