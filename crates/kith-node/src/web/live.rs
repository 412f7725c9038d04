//! `GET /live?after=SEQ`: the page's WebSocket. The server speaks, the page listens: chat log
//! rows as they are logged (`{"type":"chat","rows":[...]}`, the rows `kith chat read --json`
//! prints), and every two seconds a tick with the link count and the fetches in progress
//! (`{"type":"tick","links":N,"transfers":[...]}`) for the peers view and progress bars, and a
//! note when the kept posts changed (`{"type":"posts","version":N}`: a post written, received
//! or dropped), on which the Posts view lists its community again through the API. The page
//! sends nothing but pings and a close, so what it may send is capped small.

use super::page::WebState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use std::time::Duration;

/// Rows per message to the page.
const ROWS_PER_MESSAGE: usize = 200;
/// The largest message the page may send (it sends none that matter).
const MAX_INCOMING: usize = 4 * 1024;
/// How often the tick goes out.
const TICK: Duration = Duration::from_secs(2);

/// What `GET /live` takes.
#[derive(Debug, serde::Deserialize)]
pub struct LiveQuery {
    /// The last chat row the page has (0: from the oldest kept).
    #[serde(default)]
    pub after: i64,
}

/// The upgrade.
pub async fn socket(
    State(state): State<WebState>,
    Query(query): Query<LiveQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |socket| run(state, socket, query.after.max(0)))
}

async fn run(state: WebState, mut socket: WebSocket, mut after: i64) {
    let chat = &state.services.chat;
    // Subscribed before the first read, so a row logged in between still wakes us.
    let mut changed = chat.log_changed();
    let mut posts_changed = state.services.posts.changed();
    let mut tick = tokio::time::interval(TICK);
    loop {
        let rows = match chat.read(after, None, ROWS_PER_MESSAGE).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("web page: cannot read the chat log: {e}");
                return;
            }
        };
        if let Some(last) = rows.last() {
            after = last.seq;
            let full = rows.len() == ROWS_PER_MESSAGE;
            let text = serde_json::json!({ "type": "chat", "rows": rows }).to_string();
            if socket.send(Message::Text(text.into())).await.is_err() {
                return;
            }
            if full {
                continue;
            }
        }
        loop {
            tokio::select! {
                _ = state.cancel.cancelled() => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                result = changed.changed() => {
                    if result.is_err() {
                        return;
                    }
                    break;
                }
                result = posts_changed.changed() => {
                    if result.is_err() {
                        return;
                    }
                    // Only the version: a burst of changes is one note, and what the page
                    // shows comes through the API, as when the user picks a community.
                    let version = *posts_changed.borrow_and_update();
                    let text = serde_json::json!({ "type": "posts", "version": version }).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                _ = tick.tick() => {
                    let text = serde_json::json!({
                        "type": "tick",
                        "links": state.services.endpoint.linked().len(),
                        "transfers": state.services.exchange.progress.list(),
                    })
                    .to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                incoming = socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}
