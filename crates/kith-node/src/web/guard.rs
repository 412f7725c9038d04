//! Who may use the web page: plain checks on a request's head, before any route sees it.
//!
//! The page listens on a TCP port, where any program on the machine (and any web site the
//! user visits, through the browser) can reach it, so the Unix socket's protection is gone and
//! these take its place:
//! - **the token**: the first path segment must be the random token `kith up` printed
//!   (compared in constant time); anything else is a 404 with an empty body, so a guess
//!   learns nothing, not even that a kith node listens here;
//! - **the Host header** must name the address the page listens on (or `localhost` with its
//!   port, on loopback): a DNS-rebinding site, whose requests carry its own host name, is
//!   refused even though the browser thinks it is same-origin;
//! - **same origin only**: an `Origin` header, when present, must be this page's; a request
//!   that changes state (anything but GET and HEAD) and every WebSocket upgrade must carry
//!   one; a browser's `Sec-Fetch-Site`, when present, must be `same-origin` or `none` (the
//!   user typed or pasted the address). No CORS header is ever sent, so no other site can
//!   read an answer either.

use axum::http::{header, HeaderMap, Method};

/// Why a request was refused (the counters' names, and nothing more goes back to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or a wrong one: 404, empty.
    Token,
    /// The Host header does not name this page's address: 403.
    Host,
    /// Another origin, or a state change without an Origin header: 403.
    Origin,
}

/// The page's address and token, against which requests are checked.
#[derive(Debug, Clone)]
pub struct Gate {
    token: String,
    hosts: Vec<String>,
}

impl Gate {
    /// A gate for the page at `addr` with `token`.
    pub fn new(addr: std::net::SocketAddr, token: String) -> Gate {
        let mut hosts = vec![addr.to_string()];
        if addr.ip().is_loopback() {
            hosts.push(format!("localhost:{}", addr.port()));
        }
        Gate { token, hosts }
    }

    /// The token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Checks one request's head. On success, returns the path with the token segment taken
    /// off (always starting with `/`, empty rest as `/`), and whether the token segment ended
    /// the path without a slash (the page then redirects to `/TOKEN/`).
    pub fn check<'a>(
        &self,
        method: &Method,
        path: &'a str,
        headers: &HeaderMap,
    ) -> Result<(&'a str, bool), Refusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or(Refusal::Host)?;
        if !self.hosts.iter().any(|allowed| allowed == host) {
            return Err(Refusal::Host);
        }
        let rest = path.strip_prefix('/').ok_or(Refusal::Token)?;
        let (segment, rest, bare) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..], false),
            None => (rest, "/", true),
        };
        if !constant_time_eq(segment.as_bytes(), self.token.as_bytes()) {
            return Err(Refusal::Token);
        }
        let origin = headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or(""));
        match origin {
            Some(origin) if origin != format!("http://{host}") => return Err(Refusal::Origin),
            Some(_) => {}
            None => {
                let upgrade = headers.contains_key(header::UPGRADE);
                if upgrade || !(method == Method::GET || method == Method::HEAD) {
                    return Err(Refusal::Origin);
                }
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            if !matches!(site.to_str(), Ok("same-origin") | Ok("none")) {
                return Err(Refusal::Origin);
            }
        }
        Ok((rest, bare))
    }
}

/// Equality that takes as long whatever the first differing byte (the length is no secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh token: 128 random bits, lowercase hex.
pub fn new_token(rng: &mut impl rand::RngCore) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn gate() -> Gate {
        Gate::new("127.0.0.1:8080".parse().unwrap(), "secret".into())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_token_opens_the_page_and_strips_itself() {
        let h = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(gate().check(&Method::GET, "/secret/", &h), Ok(("/", false)));
        assert_eq!(
            gate().check(&Method::GET, "/secret/api/v1/peers", &h),
            Ok(("/api/v1/peers", false))
        );
        assert_eq!(gate().check(&Method::GET, "/secret", &h), Ok(("/", true)));
        let local = headers(&[("host", "localhost:8080")]);
        assert!(gate().check(&Method::GET, "/secret/", &local).is_ok());
    }

    #[test]
    fn no_token_or_a_wrong_one_gets_nothing() {
        let h = headers(&[("host", "127.0.0.1:8080")]);
        for path in [
            "/",
            "/secreT/",
            "/secret2/",
            "/secre/",
            "/api/v1/peers",
            "",
            "/x/secret/",
        ] {
            assert_eq!(
                gate().check(&Method::GET, path, &h),
                Err(Refusal::Token),
                "{path}"
            );
        }
    }

    #[test]
    fn a_foreign_host_is_refused_dns_rebinding() {
        for host in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "localhost",
            "0.0.0.0:8080",
        ] {
            let h = headers(&[("host", host)]);
            assert_eq!(
                gate().check(&Method::GET, "/secret/", &h),
                Err(Refusal::Host),
                "{host}"
            );
        }
        assert_eq!(
            gate().check(&Method::GET, "/secret/", &HeaderMap::new()),
            Err(Refusal::Host)
        );
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let post = |pairs: &[(&'static str, &str)]| {
            gate().check(&Method::POST, "/secret/api/v1/chat", &headers(pairs))
        };
        assert_eq!(
            post(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example")
            ]),
            Err(Refusal::Origin)
        );
        assert_eq!(
            post(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            Err(Refusal::Origin)
        );
        // A state change must say where it comes from.
        assert_eq!(post(&[("host", "127.0.0.1:8080")]), Err(Refusal::Origin));
        assert_eq!(
            post(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "cross-site")
            ]),
            Err(Refusal::Origin)
        );
        assert!(post(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin")
        ])
        .is_ok());
        // A WebSocket needs an Origin even though it is a GET.
        let ws = headers(&[("host", "127.0.0.1:8080"), ("upgrade", "websocket")]);
        assert_eq!(
            gate().check(&Method::GET, "/secret/live", &ws),
            Err(Refusal::Origin)
        );
        // A cross-site GET (a link or an image on another site) is refused too.
        let get = headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(
            gate().check(&Method::GET, "/secret/", &get),
            Err(Refusal::Origin)
        );
    }

    #[test]
    fn tokens_are_fresh() {
        let mut rng = rand::rngs::OsRng;
        let (a, b) = (new_token(&mut rng), new_token(&mut rng));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
