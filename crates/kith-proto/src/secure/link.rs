//! An established secure link: sealing a byte stream into `T` frames and opening them.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use kith_crypto::AgentId;
use snow::TransportState;

use super::frame::{Frame, FrameKind, LEN_PREFIX, MAX_FRAME_LEN, MAX_NOISE_MESSAGE};
use super::{HandshakeKind, Mode, Role};
use crate::Limits;

/// The ChaCha20-Poly1305 tag added to every transport message.
const TAG_LEN: usize = 16;

/// What can go wrong on an established link. After any error the link is unusable: close it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// A frame other than `T` on an established link.
    #[error("unexpected {0:?} frame on an established link")]
    UnexpectedFrame(FrameKind),
    /// A `T` frame that does not decrypt (wrong key, forged, replayed, reordered, truncated).
    #[error("transport frame does not decrypt")]
    Decrypt,
    /// Encryption failed (in practice only nonce exhaustion after 2^64 messages).
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    /// An earlier error already broke this link.
    #[error("link is broken by an earlier error")]
    Broken,
}

enum Transport {
    Noise(Box<TransportState>),
    /// The reference library's order: the two `Split()` cipher states swapped.
    Reference {
        send: Cipher,
        recv: Cipher,
    },
    Raw,
}

/// The two keys of Noise's `Split()`, `(c1, c2)`: the specification gives `c1` to the
/// initiator for sending.
pub(crate) struct RawSplit(zeroize::Zeroizing<[u8; 32]>, zeroize::Zeroizing<[u8; 32]>);

impl RawSplit {
    pub(crate) fn new((c1, c2): ([u8; 32], [u8; 32])) -> RawSplit {
        RawSplit(zeroize::Zeroizing::new(c1), zeroize::Zeroizing::new(c2))
    }
}

/// One direction of Noise's ChaChaPoly cipher state: IETF ChaCha20-Poly1305, the nonce 32
/// zero bits then the message counter little-endian, no associated data.
struct Cipher {
    aead: chacha20poly1305::ChaCha20Poly1305,
    n: u64,
}

impl Cipher {
    fn new(key: &[u8; 32]) -> Cipher {
        use chacha20poly1305::KeyInit;
        Cipher {
            aead: chacha20poly1305::ChaCha20Poly1305::new(key.into()),
            n: 0,
        }
    }

    fn nonce(&mut self) -> Option<chacha20poly1305::Nonce> {
        // Noise forbids the last nonce (2^64 - 1).
        if self.n == u64::MAX {
            return None;
        }
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.n.to_le_bytes());
        self.n += 1;
        Some(nonce.into())
    }

    fn seal(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        use chacha20poly1305::aead::Aead;
        let nonce = self.nonce()?;
        self.aead.encrypt(&nonce, plaintext).ok()
    }

    fn open(&mut self, ciphertext: &[u8]) -> Option<Vec<u8>> {
        use chacha20poly1305::aead::Aead;
        let nonce = self.nonce()?;
        self.aead.decrypt(&nonce, ciphertext).ok()
    }
}

/// An established secure link: the transport cipher states, who is at the other end, and the
/// idle clock.
///
/// Most drivers do not use it directly but hand it to [`crate::link::LinkMachine`], which
/// speaks the link protocol on it. Calling contract: [`seal_into`](Self::seal_into) what you
/// want to send and write the bytes it appends; give every received frame to [`open`](Self::open), in order, with the time it
/// arrived. Any `Err` means close the connection. The responder closes the link when
/// [`idle_deadline`](Self::idle_deadline) passes with nothing received; the initiator never
/// closes for idleness (its `idle_deadline` is `None`).
pub struct Link {
    transport: Transport,
    role: Role,
    kind: HandshakeKind,
    peer: Option<AgentId>,
    handshake_hash: Vec<u8>,
    early_data: Option<Vec<u8>>,
    last_received: Instant,
    idle_timeout: Option<Duration>,
    max_plaintext: usize,
    broken: bool,
    /// The raw `Split()` keys, kept until the first transport message in case the peer wants
    /// the reference library's order.
    split: Option<RawSplit>,
    /// A transport message was sealed or opened: the order can no longer change.
    used: bool,
}

/// Everything a handshake hands over to build a link.
pub(crate) struct LinkParts {
    pub transport: Option<(TransportState, RawSplit)>,
    pub role: Role,
    pub kind: HandshakeKind,
    pub peer: Option<AgentId>,
    pub handshake_hash: Vec<u8>,
    pub early_data: Vec<u8>,
    pub now: Instant,
}

impl Link {
    pub(crate) fn new(parts: LinkParts, limits: &Limits) -> Link {
        let (transport, overhead, split) = match parts.transport {
            Some((ts, split)) => (Transport::Noise(Box::new(ts)), TAG_LEN, Some(split)),
            None => (Transport::Raw, 0, None),
        };
        // Frames we send respect our own frame limit too, so two nodes with the same limits
        // always accept each other's frames.
        let max_message = (limits.max_secure_frame.min(MAX_FRAME_LEN) as usize)
            .saturating_sub(1)
            .min(MAX_NOISE_MESSAGE);
        Link {
            transport,
            role: parts.role,
            kind: parts.kind,
            peer: parts.peer,
            handshake_hash: parts.handshake_hash,
            early_data: (!parts.early_data.is_empty()).then_some(parts.early_data),
            last_received: parts.now,
            idle_timeout: (parts.role == Role::Responder)
                .then(|| Duration::from_millis(limits.idle_timeout_ms)),
            max_plaintext: max_message.saturating_sub(overhead).max(1),
            broken: false,
            split,
            used: false,
        }
    }

    /// Switches to the reference library's cipher order for a peer that uses it (a MyCHIPs
    /// reference site): its `noise-protocol` library hands out the two transport cipher
    /// states of `Split()` swapped relative to the Noise specification, so a
    /// specification-following link and a reference one cannot read each other's transport
    /// messages (`../shared/spec/mychips-noise.md`). Opt-in per peer; the default stays the
    /// specification's order. Only before the first transport message; a raw link has no
    /// cipher and is unchanged.
    pub fn use_reference_order(&mut self) -> Result<(), LinkError> {
        if matches!(self.transport, Transport::Raw | Transport::Reference { .. }) {
            return Ok(());
        }
        if self.used || self.broken {
            return Err(LinkError::Broken);
        }
        let Some(RawSplit(c1, c2)) = self.split.take() else {
            return Err(LinkError::Broken);
        };
        // Specification: the initiator sends with c1, the responder with c2. Reference: the
        // other way round, on both sides.
        let (send, recv) = match self.role {
            Role::Initiator => (&c2, &c1),
            Role::Responder => (&c1, &c2),
        };
        self.transport = Transport::Reference {
            send: Cipher::new(send),
            recv: Cipher::new(recv),
        };
        Ok(())
    }

    /// Whether the link uses the reference library's cipher order.
    pub fn reference_order(&self) -> bool {
        matches!(self.transport, Transport::Reference { .. })
    }

    /// Our role on this link.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The handshake that opened it.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }

    /// Noise or raw.
    pub fn mode(&self) -> Mode {
        match self.transport {
            Transport::Noise(_) | Transport::Reference { .. } => Mode::Noise,
            Transport::Raw => Mode::Raw,
        }
    }

    /// The agent at the other end: proven by the handshake in Noise mode (claimed in raw
    /// mode); `None` for the responder of an anonymous query.
    pub fn peer(&self) -> Option<AgentId> {
        self.peer
    }

    /// The Noise handshake hash (empty in raw mode), for channel binding.
    pub fn handshake_hash(&self) -> &[u8] {
        &self.handshake_hash
    }

    /// The peer's last handshake payload, if it was not empty, once. On the responder: the
    /// whole `I` ticket request (JSON, with any fields beyond those in
    /// [`super::Event::CheckTicket`]), the `K` payload (the reference sends its first protocol
    /// message there) or the `Q` query. On the initiator: the `A` payload (empty from kith).
    pub fn take_early_data(&mut self) -> Option<Vec<u8>> {
        self.early_data.take()
    }

    /// The most plaintext one `T` frame carries (65,519 bytes with the default limits).
    pub fn max_plaintext(&self) -> usize {
        self.max_plaintext
    }

    /// Encrypts `plaintext` as a stream of bytes into as many `T` frames as needed (none for
    /// empty input) and appends them, encoded for the wire, to `out`. Returns the number of
    /// frames.
    pub fn seal_into(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<usize, LinkError> {
        if self.broken {
            return Err(LinkError::Broken);
        }
        let mut frames = 0;
        if !plaintext.is_empty() {
            self.used = true;
            self.split = None;
        }
        for chunk in plaintext.chunks(self.max_plaintext) {
            let start = out.len();
            match &mut self.transport {
                Transport::Reference { send, .. } => {
                    let Some(body) = send.seal(chunk) else {
                        self.broken = true;
                        return Err(LinkError::Encrypt("nonces exhausted".into()));
                    };
                    out.reserve(LEN_PREFIX + 1 + body.len());
                    out.put_u32(body.len() as u32 + 1);
                    out.put_u8(FrameKind::Transport.header_byte());
                    out.put_slice(&body);
                }
                Transport::Noise(ts) => {
                    let body_start = start + LEN_PREFIX + 1;
                    out.resize(body_start + chunk.len() + TAG_LEN, 0);
                    let written = match ts.write_message(chunk, &mut out[body_start..]) {
                        Ok(n) => n,
                        Err(e) => {
                            out.truncate(start);
                            self.broken = true;
                            return Err(LinkError::Encrypt(e.to_string()));
                        }
                    };
                    out.truncate(body_start + written);
                    // At most MAX_NOISE_MESSAGE + 1: fits.
                    let len = (written as u32 + 1).to_be_bytes();
                    out[start..start + LEN_PREFIX].copy_from_slice(&len);
                    out[start + LEN_PREFIX] = FrameKind::Transport.header_byte();
                }
                Transport::Raw => {
                    out.reserve(LEN_PREFIX + 1 + chunk.len());
                    out.put_u32(chunk.len() as u32 + 1);
                    out.put_u8(FrameKind::Transport.header_byte());
                    out.put_slice(chunk);
                }
            }
            frames += 1;
        }
        Ok(frames)
    }

    /// Decrypts a received `T` frame that arrived at `now`, and restarts the idle clock.
    pub fn open(&mut self, now: Instant, frame: &Frame) -> Result<Vec<u8>, LinkError> {
        if self.broken {
            return Err(LinkError::Broken);
        }
        if frame.kind != FrameKind::Transport {
            self.broken = true;
            return Err(LinkError::UnexpectedFrame(frame.kind));
        }
        self.used = true;
        self.split = None;
        let plaintext = match &mut self.transport {
            Transport::Reference { recv, .. } => match recv.open(&frame.body) {
                Some(plaintext) => plaintext,
                None => {
                    self.broken = true;
                    return Err(LinkError::Decrypt);
                }
            },
            Transport::Noise(ts) => {
                let mut buf = vec![0u8; frame.body.len()];
                match ts.read_message(&frame.body, &mut buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        buf
                    }
                    Err(_) => {
                        self.broken = true;
                        return Err(LinkError::Decrypt);
                    }
                }
            }
            Transport::Raw => frame.body.to_vec(),
        };
        if now > self.last_received {
            self.last_received = now;
        }
        Ok(plaintext)
    }

    /// [`Link::open`] appending the plaintext to `out` instead of returning it: the bytes
    /// are decrypted straight into the buffer that collects them, with no buffer of their
    /// own and no copy after. Returns how many bytes were appended; on an error `out` is as
    /// it was.
    pub fn open_into(
        &mut self,
        now: Instant,
        frame: &Frame,
        out: &mut BytesMut,
    ) -> Result<usize, LinkError> {
        if !matches!(self.transport, Transport::Noise(_)) || self.broken {
            let plain = self.open(now, frame)?;
            out.extend_from_slice(&plain);
            return Ok(plain.len());
        }
        if frame.kind != FrameKind::Transport {
            self.broken = true;
            return Err(LinkError::UnexpectedFrame(frame.kind));
        }
        self.used = true;
        self.split = None;
        let start = out.len();
        out.resize(start + frame.body.len(), 0);
        let read = match &mut self.transport {
            Transport::Noise(ts) => ts.read_message(&frame.body, &mut out[start..]),
            _ => unreachable!("checked above: a Noise transport"),
        };
        let Ok(n) = read else {
            out.truncate(start);
            self.broken = true;
            return Err(LinkError::Decrypt);
        };
        out.truncate(start + n);
        if now > self.last_received {
            self.last_received = now;
        }
        Ok(n)
    }

    /// When the responder should close this link if nothing arrives before then: the last
    /// frame received (or the handshake's end) plus [`Limits::idle_timeout_ms`]. `None` on the
    /// initiator (only the responder closes idle links) or if the deadline is beyond what an
    /// `Instant` can hold.
    pub fn idle_deadline(&self) -> Option<Instant> {
        self.last_received.checked_add(self.idle_timeout?)
    }

    /// True when [`idle_deadline`](Self::idle_deadline) has passed at `now`.
    pub fn is_idle(&self, now: Instant) -> bool {
        self.idle_deadline().is_some_and(|d| now >= d)
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("role", &self.role)
            .field("kind", &self.kind)
            .field("mode", &self.mode())
            .field("peer", &self.peer)
            .field("last_received", &self.last_received)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}
