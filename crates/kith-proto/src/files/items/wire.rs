//! The envelopes of windowed item exchange: `items` (fetcher to holder) and `items-r` (back).
//!
//! The data of each is one kind byte and a body; hashes are the 32 raw bytes of a content
//! address:
//!
//! | command | kind | body | meaning |
//! |---|---|---|---|
//! | `items` | `Q` | file hash | do you hold this file? |
//! | `items` | `G` | 1 to [`MAX_BATCH`] hashes | send me these items |
//! | `items` | `C` | 1 to [`MAX_BATCH`] hashes | forget these requests if not sent yet |
//! | `items-r` | `A` | file hash, holding byte, size u64, name | the answer to `Q` |
//! | `items-r` | `I` | hash, then the item (type byte first) | one requested item |
//! | `items-r` | `N` | hash | I do not hold this item |
//! | `items-r` | `B` | hash | not now (too many requests queued): ask elsewhere or later |
//!
//! Every `G` hash gets exactly one answer (`I`, `N` or `B`) unless it is cancelled first. A
//! name is UTF-8 of at most [`MAX_NAME_LEN`] bytes without `/`, NUL or control characters,
//! or empty. Decoding checks every length before it allocates; the item's hash is *not*
//! checked here (the receiver hashes it before it counts).

use bytes::{BufMut, Bytes, BytesMut};

use super::super::hash::ContentHash;
use crate::wire::{Command, Envelope};

/// The envelope command of requests (fetcher to holder).
pub const ITEMS_COMMAND: &str = "items";
/// The envelope command of answers (holder to fetcher).
pub const ITEMS_REPLY_COMMAND: &str = "items-r";
/// The capability a node lists in its link `version` when it serves and speaks windowed item
/// exchange; a peer that does not list it gets the turn-taking CIYAM session instead.
pub const CAPABILITY: &str = "items/1";
/// Hashes in one `G` or `C` envelope, at most.
pub const MAX_BATCH: usize = 256;
/// Longest file name carried in an answer, in bytes.
pub const MAX_NAME_LEN: usize = 255;

const HASH: usize = 32;

/// What a holder says it holds of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Nothing of it.
    None,
    /// The whole file, recorded.
    Whole,
    /// Its root item at least, not the whole file (an interrupted fetch): ask, and take `N`
    /// for what it lacks.
    Partial,
}

impl Holding {
    fn byte(self) -> u8 {
        match self {
            Holding::None => 0,
            Holding::Whole => 1,
            Holding::Partial => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Holding> {
        match b {
            0 => Some(Holding::None),
            1 => Some(Holding::Whole),
            2 => Some(Holding::Partial),
            _ => None,
        }
    }
}

/// The answer to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The file asked about.
    pub file: ContentHash,
    /// What the holder has of it.
    pub holding: Holding,
    /// The file's content bytes (0 when not known: not held whole).
    pub size: u64,
    /// The name the holder gave the file, if any.
    pub name: Option<String>,
}

/// A request from a fetcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `Q`: do you hold this file?
    Query(ContentHash),
    /// `G`: send these items.
    Get(Vec<ContentHash>),
    /// `C`: forget these requests.
    Cancel(Vec<ContentHash>),
}

/// An answer from a holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `A`: the answer to a query.
    Answer(Answer),
    /// `I`: an item (not yet verified against `hash`).
    Item {
        /// The hash it was asked for by.
        hash: ContentHash,
        /// Type byte, then content.
        item: Bytes,
    },
    /// `N`: the holder does not have this item.
    Missing(ContentHash),
    /// `B`: not now.
    Busy(ContentHash),
}

/// What is wrong with a received `items` or `items-r` envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not the command this side receives.
    #[error("unexpected envelope command '{0}'")]
    WrongCommand(String),
    /// An unknown kind byte, or none.
    #[error("unknown items envelope kind")]
    BadKind,
    /// A body whose length does not fit its kind.
    #[error("items envelope of the wrong length")]
    BadLength,
    /// An item larger than the receiver accepts.
    #[error("item of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Its length, type byte included.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An answer with an unknown holding byte or a name that is not a plain file name.
    #[error("malformed query answer")]
    BadAnswer,
}

fn envelope(command: &'static str, data: Bytes) -> Envelope {
    // Both names are fixed, valid command names.
    let cmd = Command::new(command).unwrap_or_else(|_| unreachable!());
    Envelope::new(cmd, data)
}

fn hashes_envelope(kind: u8, hashes: &[ContentHash]) -> Envelope {
    let mut data = BytesMut::with_capacity(1 + HASH * hashes.len());
    data.put_u8(kind);
    for h in hashes {
        data.put_slice(&h.0);
    }
    envelope(ITEMS_COMMAND, data.freeze())
}

/// The name a fetched file is written under in a directory: the name its source gave it if
/// that is a plain name, else its address in hex.
pub fn output_name(name: Option<&str>, hash: &ContentHash) -> String {
    name.filter(|n| is_plain_name(n))
        .map_or_else(|| hash.to_hex(), str::to_owned)
}

/// True for a name an answer may carry (and a fetcher may write a file under).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

impl Request {
    /// The envelopes of this request (a long `G` or `C` is split into batches).
    pub fn encode(&self) -> Vec<Envelope> {
        match self {
            Request::Query(file) => vec![hashes_envelope(b'Q', std::slice::from_ref(file))],
            Request::Get(hashes) => hashes
                .chunks(MAX_BATCH)
                .map(|c| hashes_envelope(b'G', c))
                .collect(),
            Request::Cancel(hashes) => hashes
                .chunks(MAX_BATCH)
                .map(|c| hashes_envelope(b'C', c))
                .collect(),
        }
    }

    /// Decodes a received `items` envelope.
    pub fn decode(env: &Envelope) -> Result<Request, WireError> {
        if env.command.as_str() != ITEMS_COMMAND {
            return Err(WireError::WrongCommand(env.command.as_str().to_owned()));
        }
        let (&kind, body) = env.data.split_first().ok_or(WireError::BadKind)?;
        let hashes = || -> Result<Vec<ContentHash>, WireError> {
            if body.is_empty() || body.len() % HASH != 0 || body.len() / HASH > MAX_BATCH {
                return Err(WireError::BadLength);
            }
            Ok(body.chunks_exact(HASH).map(hash_of).collect())
        };
        match kind {
            b'Q' if body.len() == HASH => Ok(Request::Query(hash_of(body))),
            b'Q' => Err(WireError::BadLength),
            b'G' => Ok(Request::Get(hashes()?)),
            b'C' => Ok(Request::Cancel(hashes()?)),
            _ => Err(WireError::BadKind),
        }
    }
}

fn hash_of(bytes: &[u8]) -> ContentHash {
    let mut h = [0u8; HASH];
    h.copy_from_slice(&bytes[..HASH]);
    ContentHash(h)
}

/// The `I` envelope's data for `hash`, with room for an item of `item_len` bytes: the caller
/// appends the item (type byte first). Lets a holder read an item straight into the
/// envelope's buffer.
pub fn item_prefix(hash: &ContentHash) -> [u8; 1 + HASH] {
    let mut prefix = [0u8; 1 + HASH];
    prefix[0] = b'I';
    prefix[1..].copy_from_slice(&hash.0);
    prefix
}

/// An `I` envelope from data built as [`item_prefix`] followed by the item.
pub fn item_envelope(data: Bytes) -> Envelope {
    envelope(ITEMS_REPLY_COMMAND, data)
}

impl Response {
    /// The envelope of this answer.
    pub fn encode(&self) -> Envelope {
        let data = match self {
            Response::Answer(a) => {
                let name = a.name.as_deref().filter(|n| is_plain_name(n)).unwrap_or("");
                let mut data = BytesMut::with_capacity(1 + HASH + 9 + name.len());
                data.put_u8(b'A');
                data.put_slice(&a.file.0);
                data.put_u8(a.holding.byte());
                data.put_u64(a.size);
                data.put_slice(name.as_bytes());
                data.freeze()
            }
            Response::Item { hash, item } => {
                let mut data = BytesMut::with_capacity(1 + HASH + item.len());
                data.put_slice(&item_prefix(hash));
                data.put_slice(item);
                data.freeze()
            }
            Response::Missing(hash) | Response::Busy(hash) => {
                let mut data = BytesMut::with_capacity(1 + HASH);
                data.put_u8(if matches!(self, Response::Missing(_)) {
                    b'N'
                } else {
                    b'B'
                });
                data.put_slice(&hash.0);
                data.freeze()
            }
        };
        envelope(ITEMS_REPLY_COMMAND, data)
    }

    /// Decodes a received `items-r` envelope; an item over `max_item` bytes (type byte
    /// included) is refused.
    pub fn decode(env: &Envelope, max_item: usize) -> Result<Response, WireError> {
        if env.command.as_str() != ITEMS_REPLY_COMMAND {
            return Err(WireError::WrongCommand(env.command.as_str().to_owned()));
        }
        let (&kind, body) = env.data.split_first().ok_or(WireError::BadKind)?;
        match kind {
            b'I' => {
                if body.len() <= HASH {
                    return Err(WireError::BadLength);
                }
                let len = body.len() - HASH;
                if len > max_item {
                    return Err(WireError::TooLarge { len, max: max_item });
                }
                Ok(Response::Item {
                    hash: hash_of(body),
                    item: env.data.slice(1 + HASH..),
                })
            }
            b'N' | b'B' if body.len() == HASH => Ok(if kind == b'N' {
                Response::Missing(hash_of(body))
            } else {
                Response::Busy(hash_of(body))
            }),
            b'N' | b'B' => Err(WireError::BadLength),
            b'A' => {
                if body.len() < HASH + 9 || body.len() > HASH + 9 + MAX_NAME_LEN {
                    return Err(WireError::BadLength);
                }
                let holding = Holding::from_byte(body[HASH]).ok_or(WireError::BadAnswer)?;
                let mut size = [0u8; 8];
                size.copy_from_slice(&body[HASH + 1..HASH + 9]);
                let name = &body[HASH + 9..];
                let name = if name.is_empty() {
                    None
                } else {
                    let name = std::str::from_utf8(name).map_err(|_| WireError::BadAnswer)?;
                    if !is_plain_name(name) {
                        return Err(WireError::BadAnswer);
                    }
                    Some(name.to_owned())
                };
                Ok(Response::Answer(Answer {
                    file: hash_of(body),
                    holding,
                    size: u64::from_be_bytes(size),
                    name,
                }))
            }
            _ => Err(WireError::BadKind),
        }
    }

    /// The hash this answer is about.
    pub fn hash(&self) -> ContentHash {
        match self {
            Response::Answer(a) => a.file,
            Response::Item { hash, .. } | Response::Missing(hash) | Response::Busy(hash) => *hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> ContentHash {
        ContentHash([n; 32])
    }

    #[test]
    fn every_message_round_trips() {
        for req in [
            Request::Query(h(1)),
            Request::Get(vec![h(1), h(2)]),
            Request::Cancel(vec![h(3)]),
        ] {
            let envs = req.encode();
            assert_eq!(envs.len(), 1);
            assert_eq!(Request::decode(&envs[0]).unwrap(), req);
        }
        for resp in [
            Response::Answer(Answer {
                file: h(1),
                holding: Holding::Whole,
                size: 1 << 40,
                name: Some("holiday photos.tar".into()),
            }),
            Response::Answer(Answer {
                file: h(1),
                holding: Holding::None,
                size: 0,
                name: None,
            }),
            Response::Item {
                hash: h(2),
                item: Bytes::from_static(b"\x01hello"),
            },
            Response::Missing(h(3)),
            Response::Busy(h(4)),
        ] {
            assert_eq!(Response::decode(&resp.encode(), 100).unwrap(), resp);
        }
    }

    #[test]
    fn long_requests_are_split_into_batches() {
        let many: Vec<_> = (0..600u32).map(|i| h(i as u8)).collect();
        let envs = Request::Get(many.clone()).encode();
        assert_eq!(envs.len(), 3);
        let back: Vec<_> = envs
            .iter()
            .flat_map(|e| match Request::decode(e).unwrap() {
                Request::Get(v) => v,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(back, many);
    }

    #[test]
    fn bad_envelopes_are_refused_with_their_reason() {
        let raw = |cmd: &'static str, data: &[u8]| envelope(cmd, Bytes::copy_from_slice(data));
        assert_eq!(
            Request::decode(&raw(ITEMS_COMMAND, b"")),
            Err(WireError::BadKind)
        );
        assert_eq!(
            Request::decode(&raw(ITEMS_COMMAND, b"G123")),
            Err(WireError::BadLength)
        );
        let too_many = [&[b'G'][..], &[7u8; 32 * (MAX_BATCH + 1)][..]].concat();
        assert_eq!(
            Request::decode(&raw(ITEMS_COMMAND, &too_many)),
            Err(WireError::BadLength)
        );
        assert!(matches!(
            Request::decode(&raw(ITEMS_REPLY_COMMAND, b"Q")),
            Err(WireError::WrongCommand(_))
        ));
        let big = [&[b'I'][..], &[1u8; 32 + 101][..]].concat();
        assert_eq!(
            Response::decode(&raw(ITEMS_REPLY_COMMAND, &big), 100),
            Err(WireError::TooLarge { len: 101, max: 100 })
        );
        let mut answer = vec![b'A'];
        answer.extend_from_slice(&[0; 32]);
        answer.push(9); // no such holding
        answer.extend_from_slice(&[0; 8]);
        assert_eq!(
            Response::decode(&raw(ITEMS_REPLY_COMMAND, &answer), 100),
            Err(WireError::BadAnswer)
        );
        answer[33] = 1;
        answer.extend_from_slice(b"../../etc/passwd");
        assert_eq!(
            Response::decode(&raw(ITEMS_REPLY_COMMAND, &answer), 100),
            Err(WireError::BadAnswer)
        );
    }

    #[test]
    fn names_are_plain_file_names() {
        assert!(is_plain_name("report.pdf"));
        assert!(is_plain_name("with space é"));
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", &"x".repeat(256)] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
