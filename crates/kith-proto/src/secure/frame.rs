//! The secure-link frame: what travels on the node port.
//!
//! ```text
//! [length u32 BE][header byte][body: length - 1 bytes]
//! ```
//!
//! `length` counts the header byte and the body, not the four bytes of the length itself: the
//! MyCHIPs reference writes each packet (header byte, then the Noise message) through the npm
//! package `frame-stream`, whose prefix is the byte length of the packet it is given. A frame
//! therefore always declares at least 1 (a frame with no header byte is refused), and at most
//! [`MAX_FRAME_LEN`] = 65,536: the header byte plus the largest Noise message (65,535 bytes).
//!
//! The header byte says what the body is ([`FrameKind`]): `I`, `N`, `K`, `A` and `T` as in the
//! reference, and `Q` for the anonymous NK query, which the reference never built (kith's pick:
//! the first letter of "query", and not one the reference uses). In raw mode (simulations, no
//! encryption) the body is the plaintext that would otherwise have been encrypted.
//!
//! Decoding splits checking from parsing, as [`crate::wire::envelope`] does:
//! [`FrameDecoder::check`] refuses a declared length over the limit from the 4-byte prefix
//! alone, before anything is buffered for it, and refuses an unknown header byte as soon as it
//! is in.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::Limits;

/// Length of the big-endian length prefix.
pub const LEN_PREFIX: usize = 4;
/// The largest Noise message (handshake or transport), per the Noise specification.
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// The largest length a frame can declare: the header byte plus the largest Noise message.
pub const MAX_FRAME_LEN: u32 = MAX_NOISE_MESSAGE as u32 + 1;
/// The largest body a frame can carry.
pub const MAX_BODY: usize = MAX_NOISE_MESSAGE;

/// What a frame's body is, from its header byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// `I`: first contact, IK message 1 whose payload is the ticket request (JSON).
    Ticket,
    /// `N`: one-way Noise N message whose payload is the initiator's agent id as a JSON string.
    Declare,
    /// `K`: KK message 1, sent right after `N`.
    Known,
    /// `A`: the responder's final handshake message (IK, KK or NK message 2).
    Accept,
    /// `T`: a transport message on an established link.
    Transport,
    /// `Q`: NK message 1, an anonymous query (kith's addition).
    Query,
}

impl FrameKind {
    /// Every kind, in header-byte order of the reference (`I N K A T`) then `Q`.
    pub const ALL: [FrameKind; 6] = [
        FrameKind::Ticket,
        FrameKind::Declare,
        FrameKind::Known,
        FrameKind::Accept,
        FrameKind::Transport,
        FrameKind::Query,
    ];

    /// The ASCII header byte on the wire.
    pub fn header_byte(self) -> u8 {
        match self {
            FrameKind::Ticket => b'I',
            FrameKind::Declare => b'N',
            FrameKind::Known => b'K',
            FrameKind::Accept => b'A',
            FrameKind::Transport => b'T',
            FrameKind::Query => b'Q',
        }
    }

    /// The kind a header byte stands for, if any.
    pub fn from_header_byte(byte: u8) -> Option<FrameKind> {
        FrameKind::ALL.into_iter().find(|k| k.header_byte() == byte)
    }
}

/// What can be wrong with a frame, on the way in or out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The prefix declares a frame longer than this receiver accepts.
    #[error("secure frame declares {declared} bytes, over the limit of {limit}")]
    TooLarge {
        /// The length in the prefix.
        declared: u32,
        /// The effective cap (the smaller of [`crate::Limits::max_secure_frame`] and
        /// [`MAX_FRAME_LEN`]).
        limit: u32,
    },
    /// The prefix declares 0 bytes: a frame must at least carry its header byte.
    #[error("secure frame declares no bytes, not even a header byte")]
    Empty,
    /// The header byte is none of `I N K A T Q`.
    #[error("unknown secure frame header byte {0:#04x}")]
    UnknownHeader(u8),
    /// A body longer than [`MAX_BODY`] (only when encoding).
    #[error("secure frame body of {0} bytes is over the maximum of {MAX_BODY}")]
    BodyTooLong(usize),
}

/// One secure-link frame: a kind and its body (Noise bytes, or plaintext in raw mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the body is.
    pub kind: FrameKind,
    /// The Noise message (or raw-mode plaintext).
    pub body: Bytes,
}

impl Frame {
    /// A frame of `kind` around `body`.
    pub fn new(kind: FrameKind, body: impl Into<Bytes>) -> Frame {
        Frame {
            kind,
            body: body.into(),
        }
    }

    /// Bytes this frame takes on the wire, prefix included.
    pub fn encoded_len(&self) -> usize {
        LEN_PREFIX + 1 + self.body.len()
    }

    /// Appends the whole frame to `dst`. Refuses a body over [`MAX_BODY`].
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        if self.body.len() > MAX_BODY {
            return Err(FrameError::BodyTooLong(self.body.len()));
        }
        dst.reserve(self.encoded_len());
        // Cannot truncate: the body is at most MAX_BODY.
        dst.put_u32(self.body.len() as u32 + 1);
        dst.put_u8(self.kind.header_byte());
        dst.put_slice(&self.body);
        Ok(())
    }

    /// The whole frame as one buffer.
    pub fn to_bytes(&self) -> Result<Bytes, FrameError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

/// Incremental secure-frame decoder with a cap on the declared length.
///
/// Calling contract: append whatever bytes arrive to one `BytesMut`, then call
/// [`decode`](Self::decode) until it returns `Ok(None)` (more input needed). An `Err` means the
/// stream is unusable and the connection should be closed; the decoder does not resynchronise.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_len: u32,
}

impl FrameDecoder {
    /// A decoder bounded by [`Limits::max_secure_frame`] (and never above [`MAX_FRAME_LEN`]).
    pub fn new(limits: &Limits) -> FrameDecoder {
        FrameDecoder::with_max_len(limits.max_secure_frame)
    }

    /// A decoder refusing frames that declare more than `max_len` bytes (header byte
    /// included); values over [`MAX_FRAME_LEN`] are lowered to it.
    pub fn with_max_len(max_len: u32) -> FrameDecoder {
        FrameDecoder {
            max_len: max_len.min(MAX_FRAME_LEN),
        }
    }

    /// The effective cap on a frame's declared length.
    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// Checks whether `buf` starts with a whole, acceptable frame, without consuming or
    /// allocating. Returns its total encoded length (prefix included), `None` if more bytes are
    /// needed, or an error as soon as the prefix (or the header byte) shows the frame is
    /// unacceptable.
    pub fn check(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        let declared = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if declared == 0 {
            return Err(FrameError::Empty);
        }
        if declared > self.max_len {
            return Err(FrameError::TooLarge {
                declared,
                limit: self.max_len,
            });
        }
        if let Some(&header) = buf.get(LEN_PREFIX) {
            if FrameKind::from_header_byte(header).is_none() {
                return Err(FrameError::UnknownHeader(header));
            }
        }
        let total = LEN_PREFIX + declared as usize;
        Ok((buf.len() >= total).then_some(total))
    }

    /// Splits the next frame off the front of `buf`, if a whole one is there.
    ///
    /// When only part of a frame is buffered this reserves room for the rest (at most the
    /// declared length, which `check` has already bounded).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let total = match self.check(buf)? {
            Some(total) => total,
            None => {
                if buf.len() >= LEN_PREFIX {
                    let declared = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    buf.reserve((LEN_PREFIX + declared as usize).saturating_sub(buf.len()));
                }
                return Ok(None);
            }
        };
        let mut frame = buf.split_to(total);
        frame.advance(LEN_PREFIX);
        let header = frame.get_u8();
        let kind = FrameKind::from_header_byte(header).ok_or(FrameError::UnknownHeader(header))?;
        Ok(Some(Frame {
            kind,
            body: frame.freeze(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_transport_frame() {
        let frame = Frame::new(FrameKind::Transport, vec![1u8, 2, 3]);
        let bytes = frame.to_bytes().unwrap();
        // The length counts the header byte: 1 + 3.
        assert_eq!(bytes.as_ref(), &[0, 0, 0, 4, b'T', 1, 2, 3]);
        let mut buf = BytesMut::from(bytes.as_ref());
        let decoder = FrameDecoder::new(&Limits::default());
        assert_eq!(decoder.decode(&mut buf).unwrap(), Some(frame));
        assert!(buf.is_empty());
    }

    #[test]
    fn golden_header_bytes() {
        let letters: Vec<u8> = FrameKind::ALL.iter().map(|k| k.header_byte()).collect();
        assert_eq!(letters, b"INKATQ");
        for kind in FrameKind::ALL {
            assert_eq!(FrameKind::from_header_byte(kind.header_byte()), Some(kind));
            let bytes = Frame::new(kind, Bytes::new()).to_bytes().unwrap();
            assert_eq!(bytes.as_ref(), &[0, 0, 0, 1, kind.header_byte()]);
        }
        assert_eq!(FrameKind::from_header_byte(b'X'), None);
    }

    #[test]
    fn largest_frame_round_trips_and_one_more_is_refused() {
        let body = vec![7u8; MAX_BODY];
        let bytes = Frame::new(FrameKind::Transport, body.clone())
            .to_bytes()
            .unwrap();
        assert_eq!(&bytes[..4], &MAX_FRAME_LEN.to_be_bytes());
        let decoder = FrameDecoder::with_max_len(u32::MAX);
        assert_eq!(decoder.max_len(), MAX_FRAME_LEN);
        let frame = decoder
            .decode(&mut BytesMut::from(bytes.as_ref()))
            .unwrap()
            .unwrap();
        assert_eq!(frame.body.len(), MAX_BODY);
        assert_eq!(
            Frame::new(FrameKind::Transport, vec![0u8; MAX_BODY + 1]).to_bytes(),
            Err(FrameError::BodyTooLong(MAX_BODY + 1))
        );
        let mut over = BytesMut::from(&(MAX_FRAME_LEN + 1).to_be_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut over),
            Err(FrameError::TooLarge {
                declared: MAX_FRAME_LEN + 1,
                limit: MAX_FRAME_LEN
            })
        );
    }

    #[test]
    fn oversized_length_is_refused_from_the_prefix_alone() {
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        let err = FrameDecoder::new(&Limits::default())
            .decode(&mut buf)
            .unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                declared: u32::MAX,
                limit: MAX_FRAME_LEN
            }
        );
        assert!(
            buf.capacity() < 1024,
            "nothing reserved for the declared length"
        );
        let small = FrameDecoder::new(&Limits {
            max_secure_frame: 10,
            ..Limits::default()
        });
        assert!(matches!(
            small.check(&[0, 0, 0, 11]),
            Err(FrameError::TooLarge { limit: 10, .. })
        ));
        assert_eq!(small.check(&[0, 0, 0, 10]), Ok(None));
    }

    #[test]
    fn empty_and_unknown_frames_are_refused() {
        let d = FrameDecoder::new(&Limits::default());
        assert_eq!(d.check(&[0, 0, 0, 0]), Err(FrameError::Empty));
        assert_eq!(
            d.check(&[0, 0, 0, 5, b'Z']),
            Err(FrameError::UnknownHeader(b'Z'))
        );
        assert_eq!(d.check(&[0, 0, 0]), Ok(None));
        assert_eq!(d.check(&[0, 0, 0, 2, b'T']), Ok(None));
        assert_eq!(d.check(&[0, 0, 0, 2, b'T', 9]), Ok(Some(6)));
    }

    #[test]
    fn byte_at_a_time_and_two_in_one_read() {
        let mut wire = BytesMut::new();
        Frame::new(FrameKind::Declare, &b"\"x\""[..])
            .encode(&mut wire)
            .unwrap();
        Frame::new(FrameKind::Known, &b"kk"[..])
            .encode(&mut wire)
            .unwrap();
        let d = FrameDecoder::new(&Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].kind, FrameKind::Declare);
        assert_eq!(out[1].body.as_ref(), b"kk");
        let mut all = wire.clone();
        assert_eq!(d.decode(&mut all).unwrap().unwrap(), out[0]);
        assert_eq!(d.decode(&mut all).unwrap().unwrap(), out[1]);
        assert_eq!(d.decode(&mut all).unwrap(), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
                let decoder = FrameDecoder::with_max_len(256);
                let mut buf = BytesMut::new();
                for chunk in chunks {
                    buf.extend_from_slice(&chunk);
                    loop {
                        match decoder.decode(&mut buf) {
                            Ok(Some(frame)) => prop_assert!(frame.body.len() < 256),
                            Ok(None) => break,
                            Err(_) => return Ok(()),
                        }
                    }
                    prop_assert!(buf.capacity() <= 64 * 16 + LEN_PREFIX + 256 + 64);
                }
            }

            #[test]
            fn encode_then_decode_round_trips_across_any_split(
                kind in 0usize..6, body in proptest::collection::vec(any::<u8>(), 0..300),
                split in 0usize..400) {
                let frame = Frame::new(FrameKind::ALL[kind], body);
                let bytes = frame.to_bytes().unwrap();
                let split = split.min(bytes.len());
                let decoder = FrameDecoder::new(&Limits::default());
                let mut buf = BytesMut::from(&bytes[..split]);
                let first = decoder.decode(&mut buf).unwrap();
                if split < bytes.len() {
                    prop_assert_eq!(first, None);
                    buf.extend_from_slice(&bytes[split..]);
                    prop_assert_eq!(decoder.decode(&mut buf).unwrap(), Some(frame));
                } else {
                    prop_assert_eq!(first, Some(frame));
                }
                prop_assert!(buf.is_empty());
            }
        }
    }
}
