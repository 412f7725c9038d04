//! The Datt envelope: the binary message format every secure link carries.
//!
//! ```text
//! [version u32][cmd 12 bytes][datalen u32][checksum 4 bytes][data datalen bytes]
//! ```
//!
//! Integers are big-endian; `cmd` is ASCII, NUL-padded to 12 bytes; `checksum` is the first
//! four bytes of sha256(data). The version is carried but not interpreted: the seed says a
//! receiver ignores it, and later releases may use it to signal newer formats.
//!
//! Decoding follows mini-redis's split between *checking* and *parsing*:
//! [`EnvelopeDecoder::check`] looks at the bytes buffered so far and says whether a whole
//! envelope is there, without copying or allocating; only then does [`EnvelopeDecoder::decode`]
//! split the envelope off the buffer. The declared length is compared with the configured cap
//! as soon as the 24-byte header is in, so a peer that announces four gigabytes makes us
//! allocate nothing; and the checksum is verified before the envelope is handed on.
//!
//! Inside an authenticated (Noise) link the checksum proves nothing the AEAD tag has not
//! already proved, yet it costs a SHA-256 pass over every byte on each side. Two kith peers
//! that both list [`crate::link::UNSUMMED_CAPABILITY`] therefore leave it zero and unchecked
//! on such a link ([`Envelope::header_unsummed`], [`EnvelopeDecoder::set_verify_checksums`]);
//! with anyone else, and on raw links, the seed's checksum is written and checked as always.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};
use std::fmt;

/// Length of the fixed header that precedes `data`.
pub const HEADER_LEN: usize = 24;
/// Length of the command field.
pub const COMMAND_LEN: usize = 12;

/// What can be wrong with an envelope, on the way in or out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The header declares more data than this receiver accepts.
    #[error("envelope declares {declared} bytes of data, over the limit of {limit}")]
    TooLarge {
        /// The length in the header.
        declared: u32,
        /// The configured cap ([`crate::Limits::max_envelope_data`]).
        limit: u32,
    },
    /// The data does not hash to the checksum in the header.
    #[error("envelope checksum mismatch: header says {expected}, data hashes to {computed}")]
    BadChecksum {
        /// Hex of the checksum in the header.
        expected: String,
        /// Hex of the first four bytes of sha256(data).
        computed: String,
    },
    /// The command field is not 1-12 printable ASCII characters followed only by NULs.
    #[error("envelope command is not printable ASCII padded with NULs: {0}")]
    BadCommand(String),
    /// Data longer than a `u32` can describe (only when encoding).
    #[error("envelope data of {0} bytes does not fit the u32 length field")]
    DataTooLong(usize),
}

/// An envelope command: 1 to 12 printable ASCII characters (`ping`, `pong`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Command([u8; COMMAND_LEN]);

impl Command {
    /// Validates `name` and pads it with NULs.
    pub fn new(name: &str) -> Result<Command, EnvelopeError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > COMMAND_LEN || !bytes.iter().all(u8::is_ascii_graphic)
        {
            return Err(EnvelopeError::BadCommand(format!("{name:?}")));
        }
        let mut field = [0u8; COMMAND_LEN];
        field[..bytes.len()].copy_from_slice(bytes);
        Ok(Command(field))
    }

    /// Validates a raw 12-byte command field as read off the wire.
    pub fn from_field(field: [u8; COMMAND_LEN]) -> Result<Command, EnvelopeError> {
        let name_len = field.iter().position(|&b| b == 0).unwrap_or(COMMAND_LEN);
        let (name, padding) = field.split_at(name_len);
        if name.is_empty()
            || !name.iter().all(u8::is_ascii_graphic)
            || padding.iter().any(|&b| b != 0)
        {
            return Err(EnvelopeError::BadCommand(format!(
                "{:?}",
                field.escape_ascii().to_string()
            )));
        }
        Ok(Command(field))
    }

    /// The command name without its padding.
    pub fn as_str(&self) -> &str {
        let name_len = self.0.iter().position(|&b| b == 0).unwrap_or(COMMAND_LEN);
        // Construction guarantees printable ASCII, which is valid UTF-8.
        std::str::from_utf8(&self.0[..name_len]).unwrap_or("")
    }

    /// The padded 12-byte field as it goes on the wire.
    pub fn field(&self) -> &[u8; COMMAND_LEN] {
        &self.0
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({:?})", self.as_str())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Datt message: a command and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The version field: 0 for everything kith sends; carried, not interpreted.
    pub version: u32,
    /// What the data means.
    pub command: Command,
    /// The payload.
    pub data: Bytes,
}

/// The first four bytes of sha256(data).
pub fn checksum(data: &[u8]) -> [u8; 4] {
    let digest = Sha256::digest(data);
    [digest[0], digest[1], digest[2], digest[3]]
}

impl Envelope {
    /// A version-0 envelope.
    pub fn new(command: Command, data: impl Into<Bytes>) -> Envelope {
        Envelope {
            version: 0,
            command,
            data: data.into(),
        }
    }

    /// Bytes this envelope takes on the wire.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }

    /// The 24-byte header, for callers that send `data` separately (vectored writes of large
    /// payloads without copying them).
    pub fn header(&self) -> Result<[u8; HEADER_LEN], EnvelopeError> {
        let len = u32::try_from(self.data.len())
            .map_err(|_| EnvelopeError::DataTooLong(self.data.len()))?;
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&self.version.to_be_bytes());
        header[4..16].copy_from_slice(self.command.field());
        header[16..20].copy_from_slice(&len.to_be_bytes());
        header[20..24].copy_from_slice(&checksum(&self.data));
        Ok(header)
    }

    /// [`Envelope::header`] with a zero checksum, for a link whose peer has agreed not to
    /// check it (see the module docs): saves hashing the data.
    pub fn header_unsummed(&self) -> Result<[u8; HEADER_LEN], EnvelopeError> {
        let len = u32::try_from(self.data.len())
            .map_err(|_| EnvelopeError::DataTooLong(self.data.len()))?;
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&self.version.to_be_bytes());
        header[4..16].copy_from_slice(self.command.field());
        header[16..20].copy_from_slice(&len.to_be_bytes());
        Ok(header)
    }

    /// Appends the whole envelope to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EnvelopeError> {
        let header = self.header()?;
        dst.reserve(self.encoded_len());
        dst.put_slice(&header);
        dst.put_slice(&self.data);
        Ok(())
    }

    /// The whole envelope as one buffer.
    pub fn to_bytes(&self) -> Result<Bytes, EnvelopeError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

/// Incremental envelope decoder with a cap on the declared data length.
///
/// Calling contract: append whatever bytes arrive to one `BytesMut`, then call
/// [`decode`](Self::decode) until it returns `Ok(None)` (more input needed). An `Err` means the
/// stream is unusable (the framing is lost) and the connection should be closed; the decoder
/// does not try to resynchronise.
#[derive(Debug, Clone)]
pub struct EnvelopeDecoder {
    max_data_len: u32,
    verify_checksums: bool,
}

impl EnvelopeDecoder {
    /// A decoder that refuses envelopes declaring more than `max_data_len` bytes of data.
    pub fn new(max_data_len: u32) -> EnvelopeDecoder {
        EnvelopeDecoder {
            max_data_len,
            verify_checksums: true,
        }
    }

    /// Whether [`decode`](Self::decode) checks each envelope's checksum (the default). Only
    /// a link whose frames are authenticated, with a peer that agreed to leave checksums out,
    /// turns it off (see the module docs).
    pub fn set_verify_checksums(&mut self, verify: bool) {
        self.verify_checksums = verify;
    }

    /// Checks whether `buf` starts with a whole, acceptable envelope, without consuming or
    /// allocating. Returns its total encoded length, `None` if more bytes are needed, or an
    /// error as soon as the header alone shows the envelope is unacceptable.
    pub fn check(&self, buf: &[u8]) -> Result<Option<usize>, EnvelopeError> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut field = [0u8; COMMAND_LEN];
        field.copy_from_slice(&header[4..16]);
        Command::from_field(field)?;
        let declared = u32::from_be_bytes([header[16], header[17], header[18], header[19]]);
        if declared > self.max_data_len {
            return Err(EnvelopeError::TooLarge {
                declared,
                limit: self.max_data_len,
            });
        }
        let total = HEADER_LEN + declared as usize;
        Ok((buf.len() >= total).then_some(total))
    }

    /// Splits the next envelope off the front of `buf`, if a whole one is there.
    ///
    /// When only part of an envelope is buffered this reserves room for the rest (at most the
    /// declared length, which `check` has already bounded), so the caller's next read can fill
    /// it without repeated reallocation.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Envelope>, EnvelopeError> {
        let total = match self.check(buf)? {
            Some(total) => total,
            None => {
                if buf.len() >= HEADER_LEN {
                    let declared = u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]);
                    buf.reserve(HEADER_LEN + declared as usize - buf.len());
                }
                return Ok(None);
            }
        };
        let mut frame = buf.split_to(total);
        let version = frame.get_u32();
        let mut field = [0u8; COMMAND_LEN];
        frame.copy_to_slice(&mut field);
        let command = Command::from_field(field)?;
        let _declared = frame.get_u32();
        let mut expected = [0u8; 4];
        frame.copy_to_slice(&mut expected);
        let data = frame.freeze();
        if !self.verify_checksums {
            return Ok(Some(Envelope {
                version,
                command,
                data,
            }));
        }
        let computed = checksum(&data);
        if computed != expected {
            return Err(EnvelopeError::BadChecksum {
                expected: hex4(&expected),
                computed: hex4(&computed),
            });
        }
        Ok(Some(Envelope {
            version,
            command,
            data,
        }))
    }
}

fn hex4(bytes: &[u8; 4]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping_bytes() -> Vec<u8> {
        // Golden bytes worked out by hand from the layout: sha256 of the eight bytes
        // 01..08 begins 66840dda.
        let mut v = vec![0, 0, 0, 0];
        v.extend_from_slice(b"ping\0\0\0\0\0\0\0\0");
        v.extend_from_slice(&[0, 0, 0, 8]);
        v.extend_from_slice(&[0x66, 0x84, 0x0d, 0xda]);
        v.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        v
    }

    #[test]
    fn ping_encodes_to_golden_bytes() {
        let env = Envelope::new(
            Command::new("ping").unwrap(),
            vec![1u8, 2, 3, 4, 5, 6, 7, 8],
        );
        assert_eq!(env.to_bytes().unwrap().as_ref(), ping_bytes().as_slice());
    }

    #[test]
    fn empty_data_has_checksum_of_empty_string() {
        // sha256("") = e3b0c442...
        let env = Envelope::new(Command::new("verack").unwrap(), Bytes::new());
        let bytes = env.to_bytes().unwrap();
        assert_eq!(&bytes[20..24], &[0xe3, 0xb0, 0xc4, 0x42]);
        assert_eq!(bytes.len(), HEADER_LEN);
    }

    #[test]
    fn golden_bytes_decode_back() {
        let mut buf = BytesMut::from(&ping_bytes()[..]);
        let env = EnvelopeDecoder::new(100).decode(&mut buf).unwrap().unwrap();
        assert_eq!(env.command.as_str(), "ping");
        assert_eq!(env.version, 0);
        assert_eq!(env.data.as_ref(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(buf.is_empty());
    }

    #[test]
    fn byte_at_a_time_input_yields_one_envelope_at_the_end() {
        let bytes = ping_bytes();
        let decoder = EnvelopeDecoder::new(100);
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.put_u8(*b);
            let out = decoder.decode(&mut buf).unwrap();
            assert_eq!(out.is_some(), i == bytes.len() - 1);
        }
    }

    #[test]
    fn two_envelopes_in_one_read_come_out_in_order() {
        let mut buf = BytesMut::new();
        for name in ["a", "bb"] {
            Envelope::new(Command::new(name).unwrap(), name.as_bytes().to_vec())
                .encode(&mut buf)
                .unwrap();
        }
        let d = EnvelopeDecoder::new(10);
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().command.as_str(), "a");
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().command.as_str(), "bb");
        assert_eq!(d.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn oversized_length_is_refused_from_the_header_alone() {
        let mut header = ping_bytes()[..HEADER_LEN].to_vec();
        header[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut buf = BytesMut::from(&header[..]);
        let err = EnvelopeDecoder::new(1024).decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            EnvelopeError::TooLarge {
                declared: u32::MAX,
                limit: 1024
            }
        );
        assert!(
            buf.capacity() < 1 << 20,
            "no allocation for the declared length"
        );
    }

    #[test]
    fn corrupted_data_fails_the_checksum() {
        let mut bytes = ping_bytes();
        *bytes.last_mut().unwrap() ^= 1;
        let err = EnvelopeDecoder::new(100)
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap_err();
        assert!(matches!(err, EnvelopeError::BadChecksum { .. }), "{err}");
    }

    #[test]
    fn commands_must_be_printable_and_nul_padded() {
        assert!(Command::new("").is_err());
        assert!(Command::new("thirteen-char").is_err());
        assert!(Command::new("sp ace").is_err());
        assert!(Command::from_field(*b"ping\0x\0\0\0\0\0\0").is_err());
        assert!(Command::from_field([0; 12]).is_err());
        assert_eq!(
            Command::from_field(*b"twelve-chars").unwrap().as_str(),
            "twelve-chars"
        );
        let mut bytes = ping_bytes();
        bytes[8] = 0xff;
        assert!(matches!(
            EnvelopeDecoder::new(100).decode(&mut BytesMut::from(&bytes[..])),
            Err(EnvelopeError::BadCommand(_))
        ));
    }

    #[test]
    fn nonzero_version_is_carried_not_refused() {
        let mut bytes = ping_bytes();
        bytes[3] = 7;
        let env = EnvelopeDecoder::new(100)
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap()
            .unwrap();
        assert_eq!(env.version, 7);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
                let decoder = EnvelopeDecoder::new(256);
                let mut buf = BytesMut::new();
                for chunk in chunks {
                    buf.extend_from_slice(&chunk);
                    while let Ok(Some(_)) = decoder.decode(&mut buf) {}
                    prop_assert!(buf.capacity() <= 64 * 16 + HEADER_LEN + 256 + 64);
                }
            }

            #[test]
            fn encode_then_decode_round_trips_across_any_split(
                name in "[a-z]{1,12}", data in proptest::collection::vec(any::<u8>(), 0..300),
                split in 0usize..400) {
                let env = Envelope::new(Command::new(&name).unwrap(), data);
                let bytes = env.to_bytes().unwrap();
                let split = split.min(bytes.len());
                let decoder = EnvelopeDecoder::new(300);
                let mut buf = BytesMut::from(&bytes[..split]);
                let first = decoder.decode(&mut buf).unwrap();
                if split < bytes.len() {
                    prop_assert!(first.is_none());
                    buf.extend_from_slice(&bytes[split..]);
                    prop_assert_eq!(decoder.decode(&mut buf).unwrap(), Some(env));
                } else {
                    prop_assert_eq!(first, Some(env));
                }
            }
        }
    }
}
