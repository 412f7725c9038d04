//! The chat-port framing of the reference implementations.
//!
//! ```text
//! [length u32 BE][JSON text: length bytes]
//! ```
//!
//! No newline, no header byte. A frame of length 0 is a keep-alive (the reference client sends
//! one every 5 s); it carries no message but tells the receiver the peer is alive.
//!
//! Decoding splits checking from parsing, as [`kith_proto::secure::FrameDecoder`] does:
//! [`ChatFrameDecoder::check`] refuses a declared length over the cap from the 4-byte prefix
//! alone, before anything is buffered for it.

use crate::ChatLimits;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Length of the big-endian length prefix.
pub const LEN_PREFIX: usize = 4;

/// The keep-alive frame: a zero length and nothing else.
pub const KEEP_ALIVE: [u8; LEN_PREFIX] = [0; LEN_PREFIX];

/// What can be wrong with a chat frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatFrameError {
    /// The prefix declares more than this receiver accepts.
    #[error("chat frame declares {declared} bytes, over the limit of {limit}")]
    TooLarge {
        /// The length in the prefix.
        declared: u32,
        /// The cap ([`ChatLimits::chat_max_frame`]).
        limit: u32,
    },
    /// A payload too long to describe in the prefix (only when encoding).
    #[error("chat payload of {0} bytes does not fit a frame")]
    PayloadTooLong(usize),
}

/// One decoded chat frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatFrame {
    /// A zero-length frame.
    KeepAlive,
    /// A frame's JSON text (not yet parsed; see [`crate::message::Envelope::decode`]).
    Message(Bytes),
}

/// Appends one frame around `payload` to `dst`.
pub fn encode_frame(payload: &[u8], dst: &mut BytesMut) -> Result<(), ChatFrameError> {
    let len =
        u32::try_from(payload.len()).map_err(|_| ChatFrameError::PayloadTooLong(payload.len()))?;
    dst.reserve(LEN_PREFIX + payload.len());
    dst.put_u32(len);
    dst.put_slice(payload);
    Ok(())
}

/// One frame around `payload`, as a new buffer.
pub fn frame_bytes(payload: &[u8]) -> Result<Bytes, ChatFrameError> {
    let mut out = BytesMut::with_capacity(LEN_PREFIX + payload.len());
    encode_frame(payload, &mut out)?;
    Ok(out.freeze())
}

/// Incremental chat-frame decoder with a cap on the declared length.
///
/// Calling contract: append whatever bytes arrive to one `BytesMut`, then call
/// [`decode`](Self::decode) until it returns `Ok(None)` (more input needed). An `Err` means the
/// stream is unusable and the connection should be closed; the decoder does not resynchronise.
#[derive(Debug, Clone)]
pub struct ChatFrameDecoder {
    max_len: u32,
}

impl ChatFrameDecoder {
    /// A decoder bounded by [`ChatLimits::chat_max_frame`].
    pub fn new(limits: &ChatLimits) -> ChatFrameDecoder {
        ChatFrameDecoder::with_max_len(limits.chat_max_frame)
    }

    /// A decoder refusing frames that declare more than `max_len` bytes.
    pub fn with_max_len(max_len: u32) -> ChatFrameDecoder {
        ChatFrameDecoder { max_len }
    }

    /// The cap on a frame's declared length.
    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// Checks whether `buf` starts with a whole, acceptable frame, without consuming or
    /// allocating: its total length (prefix included), `None` if more bytes are needed, or an
    /// error as soon as the prefix shows the frame is too large.
    pub fn check(&self, buf: &[u8]) -> Result<Option<usize>, ChatFrameError> {
        let Some(prefix) = buf.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        let declared = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if declared > self.max_len {
            return Err(ChatFrameError::TooLarge {
                declared,
                limit: self.max_len,
            });
        }
        let total = LEN_PREFIX + declared as usize;
        Ok((buf.len() >= total).then_some(total))
    }

    /// Splits the next frame off the front of `buf`, if a whole one is there. When only part
    /// of a frame is buffered this reserves room for the rest (at most the declared length,
    /// which `check` has bounded).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<ChatFrame>, ChatFrameError> {
        let Some(total) = self.check(buf)? else {
            if buf.len() >= LEN_PREFIX {
                let declared = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                buf.reserve((LEN_PREFIX + declared as usize).saturating_sub(buf.len()));
            }
            return Ok(None);
        };
        let mut frame = buf.split_to(total);
        frame.advance(LEN_PREFIX);
        if frame.is_empty() {
            return Ok(Some(ChatFrame::KeepAlive));
        }
        Ok(Some(ChatFrame::Message(frame.freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_frame_and_keep_alive() {
        let bytes = frame_bytes(br#"{"a":1}"#).unwrap();
        assert_eq!(&bytes[..], b"\0\0\0\x07{\"a\":1}");
        let d = ChatFrameDecoder::new(&ChatLimits::default());
        let mut buf = BytesMut::from(&bytes[..]);
        buf.extend_from_slice(&KEEP_ALIVE);
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(ChatFrame::Message(Bytes::from_static(br#"{"a":1}"#)))
        );
        assert_eq!(d.decode(&mut buf).unwrap(), Some(ChatFrame::KeepAlive));
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_length_is_refused_from_the_prefix_alone() {
        let d = ChatFrameDecoder::with_max_len(100);
        assert_eq!(
            d.check(&[0, 0, 0, 101]),
            Err(ChatFrameError::TooLarge {
                declared: 101,
                limit: 100
            })
        );
        assert_eq!(d.check(&[0, 0, 0, 100]), Ok(None));
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert!(d.decode(&mut buf).is_err());
        assert!(
            buf.capacity() < 1024,
            "nothing reserved for a refused frame"
        );
    }

    #[test]
    fn byte_at_a_time_yields_the_same_frames() {
        let mut wire = BytesMut::new();
        encode_frame(b"{}", &mut wire).unwrap();
        wire.extend_from_slice(&KEEP_ALIVE);
        encode_frame(b"[1,2]", &mut wire).unwrap();
        let d = ChatFrameDecoder::new(&ChatLimits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(
            out,
            vec![
                ChatFrame::Message(Bytes::from_static(b"{}")),
                ChatFrame::KeepAlive,
                ChatFrame::Message(Bytes::from_static(b"[1,2]")),
            ]
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
                let decoder = ChatFrameDecoder::with_max_len(256);
                let mut buf = BytesMut::new();
                for chunk in chunks {
                    buf.extend_from_slice(&chunk);
                    loop {
                        match decoder.decode(&mut buf) {
                            Ok(Some(ChatFrame::Message(m))) => prop_assert!(m.len() <= 256),
                            Ok(Some(ChatFrame::KeepAlive)) => {}
                            Ok(None) => break,
                            Err(_) => return Ok(()),
                        }
                    }
                    prop_assert!(buf.capacity() <= 64 * 16 + LEN_PREFIX + 256 + 64);
                }
            }

            #[test]
            fn arbitrary_frames_never_panic_the_message_decoder(
                payload in proptest::collection::vec(any::<u8>(), 0..300)) {
                let limits = crate::message::MessageLimits::default();
                let _ = crate::message::Envelope::decode(&payload, &limits);
            }

            #[test]
            fn encode_then_decode_round_trips_across_any_split(
                body in proptest::collection::vec(any::<u8>(), 1..300), split in 0usize..400) {
                let bytes = frame_bytes(&body).unwrap();
                let split = split.min(bytes.len());
                let d = ChatFrameDecoder::new(&ChatLimits::default());
                let mut buf = BytesMut::from(&bytes[..split]);
                let first = d.decode(&mut buf).unwrap();
                if split < bytes.len() {
                    prop_assert_eq!(first, None);
                    buf.extend_from_slice(&bytes[split..]);
                    prop_assert_eq!(d.decode(&mut buf).unwrap(),
                        Some(ChatFrame::Message(Bytes::from(body))));
                } else {
                    prop_assert_eq!(first, Some(ChatFrame::Message(Bytes::from(body))));
                }
            }
        }
    }
}
