//! The local web page (`kith up --web ADDR`): chat, files, peers, for a person with a browser.
//!
//! It is one more client of the node, like the CLI: it holds the same [`Services`] (the
//! service handles) that the control API holds, and its JSON API *is* the control API's
//! router, nested under `api/`, so the page can do nothing the CLI cannot, and the two never
//! drift apart. What only a browser needs is here: the page itself (server-rendered HTML, one
//! script and one style sheet, no build step: [`page`]), uploads and downloads streamed
//! through the store ([`files`]), a QR code of a ticket, and live updates of the chat log over
//! a WebSocket ([`live`]).
//!
//! Protection ([`guard`]): a random token as the first path segment (the address `kith up`
//! prints), the Host header checked against the listen address, same origin only, no CORS;
//! every answer forbids framing, caching and referrers and confines scripts to the page's own
//! (`Content-Security-Policy`), and the page writes every text it did not make (chat, file
//! names, names of people) as text, never as HTML. The server listens only where told.
//! Connections are capped, and headers must arrive within a deadline.

pub mod files;
pub mod guard;
pub mod live;
pub mod page;

use crate::control::Services;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use guard::{Gate, Refusal};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// Connections the page serves at once (a browser opens about six, plus the live socket).
pub const MAX_WEB_CONNECTIONS: usize = 64;
/// Deadline for a request's headers.
pub const WEB_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

crate::counters! {
    /// What the web page counts.
    pub struct WebCounters {
        /// Requests without the token, or with a wrong one.
        web_refused_token,
        /// Requests naming another host (DNS rebinding) or from another origin.
        web_refused_origin,
        /// Connections refused because every slot was taken.
        web_refused_busy,
    }
}

/// The web page's server: bound, with its token.
#[derive(Debug)]
pub struct WebServer {
    listener: TcpListener,
    addr: SocketAddr,
    gate: Gate,
}

impl WebServer {
    /// Binds `addr` (exactly there) and draws a fresh token.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<WebServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let token = guard::new_token(&mut rand::rngs::OsRng);
        Ok(WebServer {
            listener,
            addr,
            gate: Gate::new(addr, token),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's full address, token included (what `kith up` prints).
    pub fn url(&self) -> String {
        page_url(self.addr, self.gate.token())
    }

    /// Serves until `cancel`; requests in progress are dropped with it (the page reconnects).
    pub async fn serve(
        self,
        services: Services,
        counters: Arc<WebCounters>,
        cancel: CancellationToken,
    ) {
        let router = router(services, cancel.clone());
        let gate = Arc::new(self.gate);
        let slots = Arc::new(Semaphore::new(MAX_WEB_CONNECTIONS));
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("web page: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                counters.web_refused_busy.bump();
                continue;
            };
            let (router, gate, counters, cancel) = (
                router.clone(),
                Arc::clone(&gate),
                Arc::clone(&counters),
                cancel.clone(),
            );
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (router, gate, counters) =
                        (router.clone(), Arc::clone(&gate), Arc::clone(&counters));
                    async move { Ok::<_, Infallible>(handle(request, router, &gate, &counters).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(WEB_HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                tokio::select! {
                    result = conn => if let Err(e) = result {
                        tracing::debug!("web connection: {e}");
                    },
                    _ = cancel.cancelled() => {}
                }
                drop(permit);
            });
        }
    }
}

/// `http://ADDR/TOKEN/`.
pub fn page_url(addr: SocketAddr, token: &str) -> String {
    format!("http://{addr}/{token}/")
}

/// The routes behind the token.
fn router(services: Services, cancel: CancellationToken) -> axum::Router {
    use axum::routing::{get, post};
    let api = crate::control::server::router(services.clone());
    axum::Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .route("/qr.svg", get(page::qr))
        .route("/files", get(files::list))
        .route("/files/{hash}", get(files::download))
        .route("/upload", post(files::upload))
        .route("/live", get(live::socket))
        .with_state(page::WebState { services, cancel })
        .nest("/api", api)
}

/// One request: the gate first, then the routes with the token taken off the path, then the
/// headers every answer carries.
async fn handle(
    request: Request<Incoming>,
    mut router: axum::Router,
    gate: &Gate,
    counters: &WebCounters,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let checked = gate
        .check(&parts.method, parts.uri.path(), &parts.headers)
        .map(|(rest, bare)| (rest.to_owned(), bare));
    let mut response = match checked {
        Err(refusal) => {
            let status = match refusal {
                Refusal::Token => {
                    counters.web_refused_token.bump();
                    StatusCode::NOT_FOUND
                }
                Refusal::Host | Refusal::Origin => {
                    counters.web_refused_origin.bump();
                    StatusCode::FORBIDDEN
                }
            };
            empty(status)
        }
        Ok((_, true)) => {
            let mut response = empty(StatusCode::PERMANENT_REDIRECT);
            let location = format!("/{}/", gate.token());
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Ok((rest, false)) => {
            let rest = match parts.uri.query() {
                Some(query) => format!("{rest}?{query}"),
                None => rest,
            };
            match rest.parse::<Uri>() {
                Ok(uri) => {
                    parts.uri = uri;
                    match router
                        .call(Request::from_parts(parts, Body::new(body)))
                        .await
                    {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                }
                Err(_) => empty(StatusCode::BAD_REQUEST),
            }
        }
    };
    secure_headers(response.headers_mut());
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// What every answer carries: scripts and styles only from the page itself, no framing, no
/// referrer (the token is in the address), no caching, no MIME sniffing.
fn secure_headers(headers: &mut axum::http::HeaderMap) {
    const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
        img-src 'self' data: blob:; connect-src 'self'; form-action 'none'; \
        frame-ancestors 'none'; base-uri 'none'";
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}
