//! The control API client the CLI uses: blocking HTTP/1.1 over the data dir's Unix socket.
//!
//! The CLI is synchronous, so the client is too: a std `UnixStream`, one request per
//! connection (`Connection: close`, so the node never holds an idle connection for us), the
//! response head parsed with `httparse`. No async runtime is built, and a clone can be used
//! from another thread (the progress bar polls while the main thread waits on a fetch).
//!
//! Every call has one deadline for the whole exchange ([`crate::limits::NodeLimits::control_timeout_ms`],
//! plus what the node itself may legitimately take: [`ControlClient::allowing`]), so a wedged
//! node cannot hang the CLI, and a slow peer is never reported as the local node not answering.

use crate::api::ErrorBody;
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The largest response body accepted (a long chat log is the biggest answer there is).
const MAX_RESPONSE: u64 = 256 * 1024 * 1024;

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing is listening on the data dir's socket.
    #[error(
        "no node is running on data dir {data_dir}: start one in another terminal with \
         `kith up --data {data_dir}`, or, if a node already runs on another data dir, pass that \
         dir with --data (or KITH_DATA)"
    )]
    NotRunning {
        /// The data dir whose socket was tried.
        data_dir: String,
    },
    /// The local node did not answer in time.
    #[error("the node on {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The node answered, in time, that a peer did not answer in time (HTTP 504); the message
    /// names the peer and the wait.
    #[error("{0}")]
    PeerTimeout(String),
    /// The node answered with an error (its message says what and why, for a person).
    #[error("{0}")]
    Refused(String),
    /// Transport or decoding failure.
    #[error("control API: {0}")]
    Protocol(String),
}

/// A client bound to one data dir's control socket.
#[derive(Debug, Clone)]
pub struct ControlClient {
    socket: PathBuf,
    data_dir: PathBuf,
    timeout: Duration,
}

impl ControlClient {
    /// A client for the node whose data dir is `data_dir`, waiting up to `timeout` per call.
    pub fn new(data_dir: &Path, socket: PathBuf, timeout: Duration) -> ControlClient {
        ControlClient {
            socket,
            data_dir: data_dir.to_owned(),
            timeout,
        }
    }

    /// A copy for calls the node itself may take up to `node_work` to answer (a ping's own
    /// deadline, a dial): it waits that long plus this client's timeout, so the node's answer
    /// (for instance "the peer did not answer") always arrives before the client gives up.
    pub fn allowing(&self, node_work: Duration) -> ControlClient {
        ControlClient {
            timeout: self.timeout.saturating_add(node_work),
            ..self.clone()
        }
    }

    /// True when a node answers on the socket (a quick connect, no request).
    pub fn is_running(&self) -> bool {
        UnixStream::connect(&self.socket).is_ok()
    }

    /// `GET path`, decoding the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ControlError> {
        self.call("GET", path, &[])
    }

    /// `POST path` with a JSON body, decoding the JSON answer.
    pub fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ControlError> {
        let body = serde_json::to_vec(body).map_err(|e| ControlError::Protocol(e.to_string()))?;
        self.call("POST", path, &body)
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<T, ControlError> {
        let deadline = Instant::now() + self.timeout;
        let stream = connect(&self.socket).map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => ControlError::NotRunning {
                data_dir: self.data_dir.display().to_string(),
            },
            _ => ControlError::Protocol(format!("cannot open {}: {e}", self.socket.display())),
        })?;
        let mut io = Deadlined {
            stream: &stream,
            deadline,
        };
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: kith\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        if let Err(e) = io.write_all(&request) {
            // A node that refuses at once (503, or 413) may close before reading all we
            // send: its answer can still be read.
            if !matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) {
                return Err(self.io_error(e));
            }
        }
        let (status, bytes) = read_response(&mut io).map_err(|e| self.io_error(e))?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(if status == 504 {
                ControlError::PeerTimeout(message)
            } else {
                ControlError::Refused(message)
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ControlError::Protocol(e.to_string()))
    }

    fn io_error(&self, e: std::io::Error) -> ControlError {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                ControlError::Timeout(self.data_dir.display().to_string(), self.timeout)
            }
            _ => ControlError::Protocol(e.to_string()),
        }
    }
}

/// Connects, again if a signal interrupted the call.
fn connect(socket: &Path) -> std::io::Result<UnixStream> {
    loop {
        match UnixStream::connect(socket) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// A socket whose every read and write gets what is left of one deadline (std's socket
/// timeouts are per call, not per exchange).
struct Deadlined<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Deadlined<'_> {
    fn remaining(&self) -> std::io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

// A signal (the demo's Ctrl-C handler, a terminal resize) interrupts a blocking call: that is
// not the node's doing, so the call is made again with what is left of the deadline.
impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            self.stream.set_read_timeout(Some(self.remaining()?))?;
            let mut stream = self.stream;
            match stream.read(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            self.stream.set_write_timeout(Some(self.remaining()?))?;
            let mut stream = self.stream;
            match stream.write(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn invalid(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, what.into())
}

/// Reads one response: its status and whole body (by `Content-Length`, chunked, or to the end
/// of the connection), bounded by [`MAX_HEAD`] and [`MAX_RESPONSE`].
fn read_response(io: &mut impl Read) -> std::io::Result<(u16, Vec<u8>)> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 8192];
    let (status, length, chunked, head_len) = loop {
        let n = io.read(&mut chunk)?;
        if n == 0 {
            return Err(invalid("the node closed the connection without answering"));
        }
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&head) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &str| {
                    response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                };
                let length = match header("content-length") {
                    Some(v) => Some(
                        v.trim()
                            .parse::<u64>()
                            .map_err(|_| invalid("a bad Content-Length"))?,
                    ),
                    None => None,
                };
                let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
                break (response.code.unwrap_or(0), length, chunked, len);
            }
            Ok(httparse::Status::Partial) if head.len() <= MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err(invalid("a response head too long")),
            Err(e) => return Err(invalid(format!("a malformed response: {e}"))),
        }
    };
    let rest = std::io::Cursor::new(head.split_off(head_len));
    let mut reader = BufReader::new(rest.chain(io));
    let mut body = Vec::new();
    if chunked {
        read_chunked(&mut reader, &mut body)?;
    } else if let Some(length) = length {
        if length > MAX_RESPONSE {
            return Err(invalid(format!("a response of {length} bytes")));
        }
        reader.take(length).read_to_end(&mut body)?;
        if body.len() as u64 != length {
            return Err(invalid("the node closed the connection mid-answer"));
        }
    } else {
        reader.take(MAX_RESPONSE + 1).read_to_end(&mut body)?;
        if body.len() as u64 > MAX_RESPONSE {
            return Err(invalid("a response too large"));
        }
    }
    Ok((status, body))
}

/// Decodes a chunked body into `body`, trailers skipped.
fn read_chunked(reader: &mut impl BufRead, body: &mut Vec<u8>) -> std::io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        (&mut *reader).take(1024).read_line(&mut line)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| invalid("a bad chunk size line"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if (&mut *reader).take(MAX_HEAD as u64).read_line(&mut line)? == 0
                    || line.trim().is_empty()
                {
                    return Ok(());
                }
            }
        }
        if body.len() as u64 + size > MAX_RESPONSE {
            return Err(invalid("a response too large"));
        }
        let before = body.len();
        (&mut *reader).take(size).read_to_end(body)?;
        if (body.len() - before) as u64 != size {
            return Err(invalid("the node closed the connection mid-answer"));
        }
        line.clear();
        (&mut *reader).take(2).read_line(&mut line)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_length_delimited_chunked_and_close_delimited_answers() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n[1,2]extra";
        assert_eq!(
            read_response(&mut &plain[..]).unwrap(),
            (200, b"[1,2".to_vec())
        );
        let chunked = b"HTTP/1.1 504 Gateway Timeout\r\ntransfer-encoding: chunked\r\n\r\n\
                        3\r\n{\"e\r\n4;ext=1\r\nrr\":\r\n3\r\n\"x\"\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(
            read_response(&mut &chunked[..]).unwrap(),
            (504, br#"{"err":"x"}"#.to_vec())
        );
        let closed = b"HTTP/1.1 200 OK\r\n\r\n{}";
        assert_eq!(
            read_response(&mut &closed[..]).unwrap(),
            (200, b"{}".to_vec())
        );
    }

    #[test]
    fn refuses_truncated_oversized_and_malformed_answers() {
        for bad in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"NOT HTTP\r\n\r\n",
        ] {
            assert!(read_response(&mut &bad[..]).is_err(), "{bad:?}");
        }
        let endless_head = vec![b'x'; MAX_HEAD + 10];
        let mut answer = b"HTTP/1.1 200 OK\r\nx-long: ".to_vec();
        answer.extend_from_slice(&endless_head);
        assert!(read_response(&mut &answer[..]).is_err());
    }
}
