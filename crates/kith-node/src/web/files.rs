//! Files from and to the browser, streamed through the store: an upload is cut into items as
//! it arrives (never held whole), a download is read and verified item by item as it goes.
//! Both bridge the async body and the store's synchronous reader or writer with a channel of
//! a few chunks, so memory stays a few chunks whatever the file's size.

use super::page::WebState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyper::body::{Body as _, Frame, SizeHint};
use kith_store::meta::FileRecord;
use kith_store::ContentHash;
use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Chunks in flight between the socket and the store, either way.
const CHANNEL_CHUNKS: usize = 4;
/// The size of a chunk a download sends.
const CHUNK: usize = 64 * 1024;
/// The longest file name kept from an upload (bytes, cut at a character boundary).
pub const MAX_NAME: usize = 255;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message.to_string() })),
    )
        .into_response()
}

/// `GET /files`: every stored file, newest first.
pub async fn list(State(state): State<WebState>) -> Response {
    match state.services.store.run(|s| s.list()).await {
        Ok(mut files) => {
            files.sort_by_key(|f| std::cmp::Reverse(f.added_at));
            Json(files).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// What `POST /upload` takes.
#[derive(Debug, serde::Deserialize)]
pub struct UploadQuery {
    /// The file's name.
    pub name: Option<String>,
}

/// A file name as kept: no path, no control characters, bounded.
pub fn clean_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out = String::new();
    for c in base.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_NAME {
            break;
        }
        out.push(c);
    }
    let out = out.trim().to_owned();
    (!out.is_empty() && out != "." && out != "..").then_some(out)
}

/// `POST /upload?name=NAME`, the file as the body: stored as `kith file put` stores it.
pub async fn upload(
    State(state): State<WebState>,
    Query(query): Query<UploadQuery>,
    body: Body,
) -> Response {
    let name = query.name.as_deref().and_then(clean_name);
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(CHANNEL_CHUNKS);
    let put = state.services.store.run(move |s| {
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        s.put_reader(&mut reader, name.as_deref())
    });
    let feed = async move {
        let mut body = std::pin::pin!(body);
        loop {
            match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                None => return,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if tx.send(Ok(data)).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Err(e)) => {
                    // A cut connection must not become a shorter file.
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            }
        }
    };
    let ((), put) = tokio::join!(feed, put);
    match put {
        Ok(record) => Json(record).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, format!("upload failed: {e}")),
    }
}

/// The store's reader over the upload's chunks (on the blocking pool).
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => self.current = chunk?,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// `GET /files/HASH`: the file, as an attachment (never shown inline: a stored HTML file must
/// not run as this page).
pub async fn download(State(state): State<WebState>, Path(hash): Path<String>) -> Response {
    let Ok(hash) = hash.trim().parse::<ContentHash>() else {
        return error(StatusCode::BAD_REQUEST, "not a content address");
    };
    let record = match state.services.store.run(move |s| s.get(&hash)).await {
        Ok(Some(record)) => record,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no such file here"),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let store = state.services.store.clone();
    tokio::spawn(async move {
        let failed = tx.clone();
        let result = store
            .run(move |s| {
                let mut out = ChannelWriter {
                    tx,
                    buf: Vec::with_capacity(CHUNK),
                };
                let n = s.get_to_writer(&hash, &mut out)?;
                out.flush()
                    .map_err(|source| kith_store::StoreError::Stream { op: "send", source })?;
                Ok::<_, kith_store::StoreError>(n)
            })
            .await;
        if let Err(e) = result {
            let _ = failed.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
    let mut response = Body::new(ChannelBody {
        rx,
        remaining: record.size,
    })
    .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(record.size));
    if let Ok(value) = HeaderValue::from_str(&disposition(&record)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    response
}

/// `attachment` with an ASCII fallback name and the exact name percent-encoded (RFC 6266).
fn disposition(record: &FileRecord) -> String {
    let name = record
        .name
        .clone()
        .unwrap_or_else(|| record.hash.to_string());
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The store's writer into the download's chunks (on the blocking pool).
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// A response body fed by a channel.
struct ChannelBody {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    remaining: u64,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(clean_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(clean_name("C:\\x\\a.txt").as_deref(), Some("a.txt"));
        assert_eq!(clean_name("a\u{0}b\nc").as_deref(), Some("abc"));
        assert_eq!(clean_name(".."), None);
        assert_eq!(clean_name("  "), None);
        assert!(clean_name(&"é".repeat(300)).unwrap().len() <= MAX_NAME);
        // Markup is kept as the user's text; the page writes it as text.
        assert_eq!(
            clean_name("<img src=x onerror=alert(1)>.txt").as_deref(),
            Some("<img src=x onerror=alert(1)>.txt")
        );
    }

    #[test]
    fn a_download_is_an_attachment_with_a_safe_name() {
        let record = FileRecord {
            hash: ContentHash::of(b"x"),
            kind: kith_store::ItemKind::Blob,
            size: 1,
            name: Some("a\"b;<x>é.html".into()),
            added_at: 0,
        };
        let d = disposition(&record);
        assert!(
            d.starts_with("attachment; filename=\"a_b__x__.html\""),
            "{d}"
        );
        assert!(
            d.ends_with("filename*=UTF-8''a%22b%3B%3Cx%3E%C3%A9.html"),
            "{d}"
        );
    }
}
