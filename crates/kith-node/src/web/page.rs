//! The page itself: HTML rendered here (with the node's identity, escaped), one script and
//! one style sheet compiled into the binary, and QR codes of tickets as SVG.

use crate::api::{ChatReply, ChatRequest};
use crate::control::Services;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use tokio_util::sync::CancellationToken;

/// What the page's own routes hold.
#[derive(Debug, Clone)]
pub struct WebState {
    /// The node's service handles (the control API's).
    pub services: Services,
    /// Stops live sockets when the node stops.
    pub cancel: CancellationToken,
}

const TEMPLATE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The longest text a QR code is drawn for (a ticket line is a few hundred bytes).
pub const MAX_QR_TEXT: usize = 1024;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /`: the page, with this node's agent id and chat id (the chat name is the user's
/// choice, so it is escaped like any text).
pub async fn index(State(state): State<WebState>) -> Html<String> {
    let agent = state.services.endpoint.agent().to_string();
    let node_id = match state.services.chat.request(ChatRequest::Status).await {
        Ok(ChatReply::Status { node_id, .. }) => node_id,
        _ => String::new(),
    };
    Html(
        TEMPLATE
            .replace("{{agent}}", &escape_html(&agent))
            .replace("{{node_id}}", &escape_html(&node_id)),
    )
}

/// `GET /app.js`.
pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// `GET /app.css`.
pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// What `GET /qr.svg` takes.
#[derive(Debug, serde::Deserialize)]
pub struct QrQuery {
    /// The text to encode (a ticket).
    pub text: String,
}

/// `GET /qr.svg?text=...`: a QR code of the text, as an SVG of squares only (the text itself
/// is never written into the image).
pub async fn qr(Query(query): Query<QrQuery>) -> Response {
    if query.text.len() > MAX_QR_TEXT {
        return (StatusCode::PAYLOAD_TOO_LARGE, "text too long for a QR code").into_response();
    }
    match qr_svg(query.text.as_bytes()) {
        Some(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        None => (StatusCode::BAD_REQUEST, "cannot encode that as a QR code").into_response(),
    }
}

/// The QR code of `data` as SVG: one path of unit squares, a four-module quiet zone.
pub fn qr_svg(data: &[u8]) -> Option<String> {
    let code = qrcode::QrCode::new(data).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 8;
    let mut path = String::new();
    for (i, color) in colors.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (x, y) = (i % width + 4, i / width + 4);
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn a_qr_code_holds_only_squares() {
        let svg = qr_svg(b"kith-ticket:<script>alert(1)</script>").unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(!svg.contains("script"));
    }

    #[test]
    fn the_script_never_writes_html_from_data() {
        // The page writes what others sent as text: innerHTML and friends are not used at all.
        for risky in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(risky), "app.js uses {risky}");
        }
    }
}
