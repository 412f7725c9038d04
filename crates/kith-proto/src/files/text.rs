//! The CIYAM text wire format: CRLF lines and the base64 transfer framing.
//!
//! ```text
//! <total>:<chunk>.b64!<2 hex digits: first byte><base64 of the rest>   items of ≤ 1,000 bytes
//! <total>:<chunk>.b64                                                   larger items, then
//! <base64 of ≤ 74,998 bytes, padded with '.' to exactly <chunk> chars>  per chunk, each a line
//! ```
//!
//! `chunk` is min(100,000, base64 length of `total`). For a large item the receiver answers the
//! header with `(okay more)` (or `(okay skip)` when it holds the item already: the sender then
//! stops) and `(okay more)` after every chunk but the last. These functions are pure; the
//! conversation around them lives in [`super::TextPort`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Buf, BytesMut};

use super::hash::hex_val;

/// Items of at most this many bytes travel inside the header line.
pub const INLINE_MAX: usize = 1_000;
/// The most item bytes one chunk line carries.
pub const CHUNK_BYTES: usize = 74_998;
/// The longest chunk line, in characters (the reference's maximum transfer line).
pub const MAX_CHUNK_CHARS: usize = 100_000;
/// The longest header line: an inline header for a 1,000-byte item.
pub const MAX_HEADER_LINE: usize = 32 + 1_332;

/// What is wrong with the bytes on the peer port. Each ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// No CRLF within the longest line acceptable here.
    #[error("line too long (more than {0} characters)")]
    LineTooLong(usize),
    /// A transfer header that does not parse or does not fit the limits.
    #[error("invalid file transfer header '{0}'")]
    BadHeader(String),
    /// An item larger than this receiver accepts.
    #[error("file of {declared} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The header's total.
        declared: usize,
        /// Our limit.
        limit: usize,
    },
    /// A chunk line of the wrong length or with bad base64.
    #[error("invalid file transfer chunk")]
    BadChunk,
    /// A line where a transfer acknowledgement was due.
    #[error("unexpected file transfer response")]
    BadAck,
}

/// Length of the padded base64 form of `n` bytes.
pub fn b64_len(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4)
}

/// The `<chunk>` of a transfer of `total` bytes.
pub fn chunk_chars(total: usize) -> usize {
    b64_len(total).min(MAX_CHUNK_CHARS)
}

/// A parsed transfer header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The item's length in bytes.
    pub total: usize,
    /// The length of every chunk line.
    pub chunk: usize,
    /// The whole item, when it came inline.
    pub inline: Option<Vec<u8>>,
}

/// The header line for `item` (inline when it has at most [`INLINE_MAX`] bytes).
pub fn encode_header(item: &[u8]) -> String {
    let total = item.len();
    let mut line = format!("{total}:{}.b64", chunk_chars(total));
    if let (true, Some((first, rest))) = (total <= INLINE_MAX, item.split_first()) {
        line.push_str(&format!("!{first:02x}"));
        line.push_str(&STANDARD.encode(rest));
    }
    line
}

/// Parses a header line, refusing a total above `max_item` before anything is allocated.
pub fn parse_header(line: &str, max_item: usize) -> Result<Header, TextError> {
    let bad = || TextError::BadHeader(line.chars().take(80).collect());
    let (sizes, inline) = match line.split_once('!') {
        Some((s, rest)) => (s, Some(rest)),
        None => (line, None),
    };
    let sizes = sizes.strip_suffix(".b64").ok_or_else(bad)?;
    let (total, chunk) = sizes.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(total) || !digits(chunk) {
        return Err(bad());
    }
    let total: usize = total.parse().map_err(|_| bad())?;
    let chunk: usize = chunk.parse().map_err(|_| bad())?;
    if total == 0 || chunk != chunk_chars(total) {
        return Err(bad());
    }
    if total > max_item {
        return Err(TextError::TooLarge {
            declared: total,
            limit: max_item,
        });
    }
    let inline = match inline {
        None => None,
        Some(_) if total > INLINE_MAX => return Err(bad()),
        Some(rest) => {
            let b = rest.as_bytes();
            if b.len() < 2 {
                return Err(bad());
            }
            let first = match (hex_val(b[0]), hex_val(b[1])) {
                (Some(h), Some(l)) => (h << 4) | l,
                _ => return Err(bad()),
            };
            let mut item = Vec::with_capacity(total);
            item.push(first);
            let tail = STANDARD.decode(&b[2..]).map_err(|_| bad())?;
            item.extend_from_slice(&tail);
            if item.len() != total {
                return Err(bad());
            }
            Some(item)
        }
    };
    Ok(Header {
        total,
        chunk,
        inline,
    })
}

/// One chunk line: base64 of `bytes` (at most [`CHUNK_BYTES`]) padded with `.` to `chunk`.
pub fn encode_chunk(bytes: &[u8], chunk: usize) -> String {
    let mut line = STANDARD.encode(bytes);
    while line.len() < chunk {
        line.push('.');
    }
    line
}

/// Decodes one chunk line of exactly `chunk` characters that must carry `expected` bytes.
pub fn decode_chunk(line: &str, chunk: usize, expected: usize) -> Result<Vec<u8>, TextError> {
    if line.len() != chunk {
        return Err(TextError::BadChunk);
    }
    let data = line.trim_end_matches('.');
    let bytes = STANDARD.decode(data).map_err(|_| TextError::BadChunk)?;
    if bytes.len() != expected {
        return Err(TextError::BadChunk);
    }
    Ok(bytes)
}

/// Splits CRLF-terminated lines off a buffer. A bare LF (or CR) is part of the line.
#[derive(Debug, Default, Clone)]
pub struct LineReader {
    scanned: usize,
}

impl LineReader {
    /// Takes the next whole line (without its CRLF) off the front of `buf`; `Ok(None)` when
    /// more bytes are needed. A line longer than `max` is an error as soon as `max + 2` bytes
    /// hold no CRLF. Bytes that are not UTF-8 are replaced (they never form a valid command).
    pub fn take_line(
        &mut self,
        buf: &mut BytesMut,
        max: usize,
    ) -> Result<Option<String>, TextError> {
        let limit = buf.len().min(max.saturating_add(2));
        let start = self.scanned.saturating_sub(1).min(limit);
        let found = buf[start..limit]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| p + start);
        match found {
            Some(end) => {
                let line = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.advance(end + 2);
                self.scanned = 0;
                Ok(Some(line))
            }
            None if buf.len() >= max.saturating_add(2) => Err(TextError::LineTooLong(max)),
            None => {
                self.scanned = limit;
                Ok(None)
            }
        }
    }

    /// Forgets the scan position (after the buffer was changed by someone else).
    pub fn reset(&mut self) {
        self.scanned = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::hash::HELLO_ITEM;

    #[test]
    fn hello_header_is_the_spec_value() {
        assert_eq!(encode_header(HELLO_ITEM), "6:8.b64!01aGVsbG8=");
        let h = parse_header("6:8.b64!01aGVsbG8=", 1_000_000).unwrap();
        assert_eq!(h.total, 6);
        assert_eq!(h.chunk, 8);
        assert_eq!(h.inline.as_deref(), Some(HELLO_ITEM));
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_chars(6), 8);
        assert_eq!(chunk_chars(1_001), 1_336);
        assert_eq!(chunk_chars(CHUNK_BYTES), 100_000);
        assert_eq!(chunk_chars(1_000_000), 100_000);
        assert_eq!(encode_chunk(&[0u8; CHUNK_BYTES], 100_000).len(), 100_000);
        let line = encode_chunk(&[1, 2], 12);
        assert_eq!(line, "AQI=........");
        assert_eq!(decode_chunk(&line, 12, 2).unwrap(), vec![1, 2]);
        assert!(decode_chunk(&line, 13, 2).is_err());
        assert!(decode_chunk(&line, 12, 3).is_err());
    }

    #[test]
    fn large_header() {
        let item = vec![1u8; 2_000];
        let line = encode_header(&item);
        assert_eq!(line, "2000:2668.b64");
        let h = parse_header(&line, 1_000_000).unwrap();
        assert_eq!((h.total, h.chunk, h.inline), (2_000, 2_668, None));
    }

    #[test]
    fn bad_headers() {
        for line in [
            "",
            "6:8",
            "6:9.b64!01aGVsbG8=",
            "6:8.b64!01aGVsbG8",
            "7:12.b64!01aGVsbG8=",
            "0:0.b64",
            "2000:2668.b64!01",
            "6:8.b64!zzaGVsbG8=",
            "-6:8.b64",
            "99999999999:100000.b64",
        ] {
            assert!(parse_header(line, 1_000_000).is_err(), "{line}");
        }
        assert_eq!(
            parse_header("1000001:100000.b64", 1_000_000),
            Err(TextError::TooLarge {
                declared: 1_000_001,
                limit: 1_000_000
            })
        );
    }

    #[test]
    fn lines_end_at_crlf_only() {
        let mut r = LineReader::default();
        let mut buf = BytesMut::from(&b"a\nb\r"[..]);
        assert_eq!(r.take_line(&mut buf, 10), Ok(None));
        buf.extend_from_slice(b"\nnext");
        assert_eq!(r.take_line(&mut buf, 10), Ok(Some("a\nb".into())));
        assert_eq!(r.take_line(&mut buf, 10), Ok(None));
        let mut long = BytesMut::from(&b"0123456789ab"[..]);
        assert_eq!(r.take_line(&mut long, 10), Err(TextError::LineTooLong(10)));
        let mut exact = BytesMut::from(&b"0123456789\r\n"[..]);
        let mut r = LineReader::default();
        assert_eq!(r.take_line(&mut exact, 10), Ok(Some("0123456789".into())));
    }
}
