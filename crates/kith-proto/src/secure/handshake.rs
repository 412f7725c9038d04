//! The handshake machines, one per role. See the module docs of [`crate::secure`] for the
//! calling contract.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use kith_crypto::AgentId;
use rand::rngs::StdRng;
use rand::{CryptoRng, RngCore, SeedableRng};
use snow::HandshakeState;
use zeroize::Zeroizing;

use super::frame::{Frame, FrameKind, MAX_NOISE_MESSAGE};
use super::link::{Link, LinkParts};
use super::noise::{self, Side, IK_PARAMS, KK_PARAMS, NK_PARAMS, N_PARAMS};
use super::payload::TicketRequest;
use super::{Event, HandshakeError, HandshakeKind, Mode, RefuseReason, Role, SecureConfig};
use crate::Limits;

/// Bytes a Noise message adds to its payload, by message: `e` (32) plus the payload's tag
/// (16), plus for IK message 1 the encrypted static key (32 + 16).
const OVERHEAD_E: usize = 32 + 16;
const OVERHEAD_IK1: usize = OVERHEAD_E + 32 + 16;

/// What both machines share: the deadline, the output queues and the RNG.
struct Core {
    deadline: Option<Instant>,
    transmits: VecDeque<Frame>,
    events: VecDeque<Event>,
    rng: StdRng,
    limits: Limits,
    mode: Mode,
    finished: bool,
}

impl Core {
    fn new<R: RngCore + CryptoRng + ?Sized>(
        config: &SecureConfig,
        now: Instant,
        rng: &mut R,
    ) -> Core {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Core {
            deadline: now.checked_add(Duration::from_millis(config.limits.handshake_timeout_ms)),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng: StdRng::from_seed(*seed),
            limits: config.limits.clone(),
            mode: config.mode,
            finished: false,
        }
    }

    /// Refuses input once finished, and fails the handshake once the deadline has passed.
    fn admit(&mut self, now: Instant) -> Result<(), HandshakeError> {
        if self.finished {
            return Err(HandshakeError::Finished);
        }
        if self.deadline.is_some_and(|d| now >= d) {
            return Err(self.fail(HandshakeError::Timeout));
        }
        Ok(())
    }

    /// Ends the handshake with an error: nothing queued goes out.
    fn fail(&mut self, e: HandshakeError) -> HandshakeError {
        self.finished = true;
        self.transmits.clear();
        e
    }

    fn refuse(&mut self, reason: RefuseReason) {
        self.finished = true;
        self.transmits.clear();
        self.events.push_back(Event::Refused { reason });
    }

    fn establish(&mut self, parts: LinkParts) {
        self.finished = true;
        self.events
            .push_back(Event::Established(Link::new(parts, &self.limits)));
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        if self.finished {
            return Ok(());
        }
        self.admit(now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            None
        } else {
            self.deadline
        }
    }
}

fn write(
    hs: &mut HandshakeState,
    payload: &[u8],
    overhead: usize,
) -> Result<Vec<u8>, HandshakeError> {
    let max = MAX_NOISE_MESSAGE - overhead;
    if payload.len() > max {
        return Err(HandshakeError::PayloadTooLarge {
            len: payload.len(),
            max,
        });
    }
    let mut buf = vec![0u8; payload.len() + overhead];
    let n = hs.write_message(payload, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn read(hs: &mut HandshakeState, body: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    let mut buf = vec![0u8; body.len()];
    let n = hs.read_message(body, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Turns a finished handshake state into (transport, handshake hash), keeping the raw
/// `Split()` keys for a peer that wants the reference library's cipher order
/// ([`Link::use_reference_order`]).
fn finish(
    mut hs: HandshakeState,
) -> Result<((snow::TransportState, super::link::RawSplit), Vec<u8>), HandshakeError> {
    let hash = hs.get_handshake_hash().to_vec();
    let split = super::link::RawSplit::new(hs.dangerously_get_raw_split());
    Ok(((hs.into_transport_mode()?, split), hash))
}

/// The first 32 bytes of a handshake message: its `e` token, the sender's ephemeral public
/// key in clear, in every first message kith reads (IK, KK and NK all start with `e`).
fn leading_key(body: &[u8]) -> Option<[u8; 32]> {
    body.get(..32)?.try_into().ok()
}

fn agent_json(agent: &AgentId) -> Vec<u8> {
    serde_json::to_vec(&agent.to_string()).unwrap_or_default()
}

/// The connecting side of a handshake.
pub struct Initiator {
    core: Core,
    kind: HandshakeKind,
    responder: AgentId,
    /// The handshake waiting for `A` (`None` in raw mode).
    hs: Option<Box<HandshakeState>>,
}

impl Initiator {
    /// First contact (IK): sends `I` carrying `request`, whose `from.agent` is set to our
    /// agent id. `responder` is the agent named by the ticket; its key is the IK responder
    /// static key.
    pub fn ik<R: RngCore + CryptoRng + ?Sized>(
        config: &SecureConfig,
        responder: AgentId,
        request: &TicketRequest,
        now: Instant,
        rng: &mut R,
    ) -> Result<Initiator, HandshakeError> {
        let mut core = Core::new(config, now, rng);
        let mut request = request.clone();
        request.from.agent = config.agent.to_string();
        let payload = request.to_json();
        let (hs, body) = match config.mode {
            Mode::Noise => {
                let mut hs = noise::build(
                    IK_PARAMS,
                    Side::Initiator,
                    Some(&config.noise_secret),
                    Some(&responder.noise_public()),
                    &mut core.rng,
                )?;
                let body = write(&mut hs, &payload, OVERHEAD_IK1)?;
                (Some(Box::new(hs)), body)
            }
            Mode::Raw => (None, raw_payload(payload)?),
        };
        core.transmits
            .push_back(Frame::new(FrameKind::Ticket, body));
        Ok(Initiator {
            core,
            kind: HandshakeKind::Ticket,
            responder,
            hs,
        })
    }

    /// A known peer (N then KK): sends `N` declaring our agent id, then `K` carrying
    /// `payload` (may be empty; the responder's link surfaces it as early data).
    pub fn known<R: RngCore + CryptoRng + ?Sized>(
        config: &SecureConfig,
        responder: AgentId,
        payload: &[u8],
        now: Instant,
        rng: &mut R,
    ) -> Result<Initiator, HandshakeError> {
        let mut core = Core::new(config, now, rng);
        let declare = agent_json(&config.agent);
        let peer_key = responder.noise_public();
        let (hs, n_body, k_body) = match config.mode {
            Mode::Noise => {
                let mut n = noise::build(
                    N_PARAMS,
                    Side::Initiator,
                    None,
                    Some(&peer_key),
                    &mut core.rng,
                )?;
                let n_body = write(&mut n, &declare, OVERHEAD_E)?;
                let mut kk = noise::build(
                    KK_PARAMS,
                    Side::Initiator,
                    Some(&config.noise_secret),
                    Some(&peer_key),
                    &mut core.rng,
                )?;
                let k_body = write(&mut kk, payload, OVERHEAD_E)?;
                (Some(Box::new(kk)), n_body, k_body)
            }
            Mode::Raw => (None, declare, raw_payload(payload.to_vec())?),
        };
        core.transmits
            .push_back(Frame::new(FrameKind::Declare, n_body));
        core.transmits
            .push_back(Frame::new(FrameKind::Known, k_body));
        Ok(Initiator {
            core,
            kind: HandshakeKind::Known,
            responder,
            hs,
        })
    }

    /// An anonymous query (NK): sends `Q` carrying `payload`; our own key is not used.
    pub fn query<R: RngCore + CryptoRng + ?Sized>(
        config: &SecureConfig,
        responder: AgentId,
        payload: &[u8],
        now: Instant,
        rng: &mut R,
    ) -> Result<Initiator, HandshakeError> {
        let mut core = Core::new(config, now, rng);
        let (hs, body) = match config.mode {
            Mode::Noise => {
                let mut hs = noise::build(
                    NK_PARAMS,
                    Side::Initiator,
                    None,
                    Some(&responder.noise_public()),
                    &mut core.rng,
                )?;
                let body = write(&mut hs, payload, OVERHEAD_E)?;
                (Some(Box::new(hs)), body)
            }
            Mode::Raw => (None, raw_payload(payload.to_vec())?),
        };
        core.transmits.push_back(Frame::new(FrameKind::Query, body));
        Ok(Initiator {
            core,
            kind: HandshakeKind::Query,
            responder,
            hs,
        })
    }

    /// Which handshake this is.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }

    /// The agent we are connecting to.
    pub fn responder(&self) -> AgentId {
        self.responder
    }

    /// Feeds one received frame. Only `A` is valid (once); anything else fails the handshake.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), HandshakeError> {
        self.core.admit(now)?;
        if frame.kind != FrameKind::Accept {
            return Err(self.core.fail(HandshakeError::UnexpectedFrame {
                got: frame.kind,
                state: "waiting for A",
            }));
        }
        match self.accept(now, &frame) {
            Ok(parts) => {
                self.core.establish(parts);
                Ok(())
            }
            Err(e) => Err(self.core.fail(e)),
        }
    }

    fn accept(&mut self, now: Instant, frame: &Frame) -> Result<LinkParts, HandshakeError> {
        let (transport, handshake_hash, early_data) = match self.hs.take() {
            Some(mut hs) => {
                let payload = read(&mut hs, &frame.body)?;
                let (ts, hash) = finish(*hs)?;
                (Some(ts), hash, payload)
            }
            None => (None, Vec::new(), frame.body.to_vec()),
        };
        Ok(LinkParts {
            transport,
            role: Role::Initiator,
            kind: self.kind,
            peer: Some(self.responder),
            handshake_hash,
            early_data,
            now,
        })
    }

    /// Tells the machine the time; fails the handshake once its deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        self.core.handle_timeout(now)
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.core.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.events.pop_front()
    }

    /// The handshake deadline, while the handshake is in progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// True once established or failed.
    pub fn is_finished(&self) -> bool {
        self.core.finished
    }
}

fn raw_payload(payload: Vec<u8>) -> Result<Vec<u8>, HandshakeError> {
    if payload.len() > MAX_NOISE_MESSAGE {
        return Err(HandshakeError::PayloadTooLarge {
            len: payload.len(),
            max: MAX_NOISE_MESSAGE,
        });
    }
    Ok(payload)
}

/// Where a responder is.
enum State {
    /// Nothing received yet: `I`, `N` or `Q` may come.
    AwaitFirst,
    /// `I` read and checked; the driver is asked about the ticket.
    AwaitTicket {
        hs: Option<Box<HandshakeState>>,
        from_agent: AgentId,
        request: Vec<u8>,
    },
    /// `N` read; the driver is asked about the agent. The `K` that follows may arrive before
    /// the answer and waits here.
    AwaitPeer {
        agent: AgentId,
        pending_k: Option<Frame>,
    },
    /// The peer's key is known; waiting for `K`.
    AwaitKnown {
        hs: Option<Box<HandshakeState>>,
        agent: AgentId,
    },
    /// Established, refused or failed.
    Done,
}

impl State {
    fn describe(&self) -> &'static str {
        match self {
            State::AwaitFirst => "waiting for I, N or Q",
            State::AwaitTicket { .. } => "checking a ticket",
            State::AwaitPeer { .. } => "looking up a peer (one K may wait)",
            State::AwaitKnown { .. } => "waiting for K",
            State::Done => "finished",
        }
    }
}

/// The accepting side of a handshake: one per accepted connection, whatever handshake the
/// peer starts.
pub struct Responder {
    core: Core,
    agent: AgentId,
    noise_secret: Zeroizing<[u8; 32]>,
    accept_queries: bool,
    state: State,
    remote_ephemeral: Option<[u8; 32]>,
}

impl Responder {
    /// A responder for a connection accepted at `now`; the handshake deadline starts now.
    pub fn new<R: RngCore + CryptoRng + ?Sized>(
        config: &SecureConfig,
        now: Instant,
        rng: &mut R,
    ) -> Responder {
        Responder {
            core: Core::new(config, now, rng),
            agent: config.agent,
            noise_secret: config.noise_secret.clone(),
            accept_queries: config.accept_queries,
            state: State::AwaitFirst,
            remote_ephemeral: None,
        }
    }

    /// Our agent id.
    pub fn agent(&self) -> AgentId {
        self.agent
    }

    /// The initiator's ephemeral public key from the handshake message this responder
    /// answers, for [`ReplayCache`](super::ReplayCache): known once `I` or `Q` (or, for N+KK,
    /// `K`, not `N`) has been read and decrypted; `None` before, and always in raw mode.
    pub fn remote_ephemeral(&self) -> Option<[u8; 32]> {
        self.remote_ephemeral
    }

    /// Feeds one received frame. Only a frame valid for the current state is accepted
    /// (`I`/`N`/`Q` first; after `N`, one `K`); anything else fails the handshake.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<(), HandshakeError> {
        self.core.admit(now)?;
        let result = match (&mut self.state, frame.kind) {
            (State::AwaitFirst, FrameKind::Ticket) => self.on_ticket(&frame),
            (State::AwaitFirst, FrameKind::Declare) => self.on_declare(&frame),
            (State::AwaitFirst, FrameKind::Query) => self.on_query(now, &frame),
            (State::AwaitPeer { pending_k, .. }, FrameKind::Known) if pending_k.is_none() => {
                *pending_k = Some(frame);
                Ok(())
            }
            (State::AwaitKnown { .. }, FrameKind::Known) => self.on_known(now, &frame),
            (state, got) => Err(HandshakeError::UnexpectedFrame {
                got,
                state: state.describe(),
            }),
        };
        self.settle(result)
    }

    /// Answers [`Event::CheckTicket`]: `true` sends `A` and establishes the link, `false`
    /// refuses ([`RefuseReason::TicketRefused`]) without a word.
    pub fn answer_ticket(&mut self, now: Instant, accepted: bool) -> Result<(), HandshakeError> {
        self.core.admit(now)?;
        let State::AwaitTicket { .. } = self.state else {
            return Err(HandshakeError::NoQuestion);
        };
        let State::AwaitTicket {
            hs,
            from_agent,
            request,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(HandshakeError::NoQuestion);
        };
        if !accepted {
            self.core.refuse(RefuseReason::TicketRefused);
            return Ok(());
        }
        let result = self.send_accept(now, hs, HandshakeKind::Ticket, Some(from_agent), request);
        self.settle(result)
    }

    /// Answers [`Event::LookupPeer`] with the agent's Noise static key, or `None` if the agent
    /// is unknown (refused: [`RefuseReason::UnknownPeer`]). A key that is not the declared
    /// agent's own Noise key is refused too ([`RefuseReason::PeerKeyMismatch`]), so a link's
    /// peer is always the key it proved.
    pub fn answer_peer(
        &mut self,
        now: Instant,
        key: Option<[u8; 32]>,
    ) -> Result<(), HandshakeError> {
        self.core.admit(now)?;
        let State::AwaitPeer { .. } = self.state else {
            return Err(HandshakeError::NoQuestion);
        };
        let State::AwaitPeer { agent, pending_k } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(HandshakeError::NoQuestion);
        };
        let Some(key) = key else {
            self.core.refuse(RefuseReason::UnknownPeer);
            return Ok(());
        };
        if key != agent.noise_public() {
            self.core.refuse(RefuseReason::PeerKeyMismatch);
            return Ok(());
        }
        let hs = match self.core.mode {
            Mode::Noise => match noise::build(
                KK_PARAMS,
                Side::Responder,
                Some(&self.noise_secret),
                Some(&key),
                &mut self.core.rng,
            ) {
                Ok(hs) => Some(Box::new(hs)),
                Err(e) => return self.settle(Err(e)),
            },
            Mode::Raw => None,
        };
        self.state = State::AwaitKnown { hs, agent };
        match pending_k {
            Some(frame) => {
                let result = self.on_known(now, &frame);
                self.settle(result)
            }
            None => Ok(()),
        }
    }

    /// Tells the machine the time; fails the handshake once its deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), HandshakeError> {
        let result = self.core.handle_timeout(now);
        if self.core.finished {
            self.state = State::Done;
        }
        result
    }

    /// The next frame to send (only ever `A`).
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.core.transmits.pop_front()
    }

    /// The next event: a question, the link, or a refusal.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.core.events.pop_front()
    }

    /// The handshake deadline, while the handshake is in progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// True once established, refused or failed.
    pub fn is_finished(&self) -> bool {
        self.core.finished
    }

    /// Records the outcome of a step: an error ends the handshake.
    fn settle(&mut self, result: Result<(), HandshakeError>) -> Result<(), HandshakeError> {
        if self.core.finished {
            self.state = State::Done;
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                self.state = State::Done;
                Err(self.core.fail(e))
            }
        }
    }

    fn on_ticket(&mut self, frame: &Frame) -> Result<(), HandshakeError> {
        let (hs, payload, proven) = match self.core.mode {
            Mode::Noise => {
                let mut hs = noise::build(
                    IK_PARAMS,
                    Side::Responder,
                    Some(&self.noise_secret),
                    None,
                    &mut self.core.rng,
                )?;
                let payload = read(&mut hs, &frame.body)?;
                self.remote_ephemeral = leading_key(&frame.body);
                let proven: [u8; 32] = hs
                    .get_remote_static()
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| HandshakeError::Noise("IK gave no remote static key".into()))?;
                (Some(Box::new(hs)), payload, Some(proven))
            }
            Mode::Raw => (None, frame.body.to_vec(), None),
        };
        let request = TicketRequest::from_json(&payload).map_err(HandshakeError::BadPayload)?;
        let from_agent: AgentId = request
            .from
            .agent
            .parse()
            .map_err(|e| HandshakeError::BadPayload(format!("from.agent: {e}")))?;
        if let Some(proven) = proven {
            if from_agent.noise_public() != proven {
                self.core.refuse(RefuseReason::AgentKeyMismatch);
                return Ok(());
            }
        }
        self.core.events.push_back(Event::CheckTicket {
            token: request.ticket.token,
            from_agent,
            claimed_from: request.from,
            to: request.to,
            proven_static_key: proven,
        });
        self.state = State::AwaitTicket {
            hs,
            from_agent,
            request: payload,
        };
        Ok(())
    }

    fn on_declare(&mut self, frame: &Frame) -> Result<(), HandshakeError> {
        let payload = match self.core.mode {
            Mode::Noise => {
                let mut hs = noise::build(
                    N_PARAMS,
                    Side::Responder,
                    Some(&self.noise_secret),
                    None,
                    &mut self.core.rng,
                )?;
                read(&mut hs, &frame.body)?
            }
            Mode::Raw => frame.body.to_vec(),
        };
        let text: String = serde_json::from_slice(&payload)
            .map_err(|e| HandshakeError::BadPayload(format!("N payload: {e}")))?;
        let agent: AgentId = text
            .parse()
            .map_err(|e| HandshakeError::BadPayload(format!("N agent id: {e}")))?;
        self.core.events.push_back(Event::LookupPeer { agent });
        self.state = State::AwaitPeer {
            agent,
            pending_k: None,
        };
        Ok(())
    }

    fn on_known(&mut self, now: Instant, frame: &Frame) -> Result<(), HandshakeError> {
        let State::AwaitKnown { hs, agent } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(HandshakeError::UnexpectedFrame {
                got: frame.kind,
                state: "not waiting for K",
            });
        };
        let (hs, payload) = match hs {
            Some(mut hs) => {
                let payload = read(&mut hs, &frame.body)?;
                self.remote_ephemeral = leading_key(&frame.body);
                (Some(hs), payload)
            }
            None => (None, frame.body.to_vec()),
        };
        self.send_accept(now, hs, HandshakeKind::Known, Some(agent), payload)
    }

    fn on_query(&mut self, now: Instant, frame: &Frame) -> Result<(), HandshakeError> {
        if !self.accept_queries {
            self.core.refuse(RefuseReason::QueriesDisabled);
            return Ok(());
        }
        let (hs, payload) = match self.core.mode {
            Mode::Noise => {
                let mut hs = noise::build(
                    NK_PARAMS,
                    Side::Responder,
                    Some(&self.noise_secret),
                    None,
                    &mut self.core.rng,
                )?;
                let payload = read(&mut hs, &frame.body)?;
                self.remote_ephemeral = leading_key(&frame.body);
                (Some(Box::new(hs)), payload)
            }
            Mode::Raw => (None, frame.body.to_vec()),
        };
        self.send_accept(now, hs, HandshakeKind::Query, None, payload)
    }

    /// Writes `A` (empty payload), queues it and establishes the link.
    fn send_accept(
        &mut self,
        now: Instant,
        hs: Option<Box<HandshakeState>>,
        kind: HandshakeKind,
        peer: Option<AgentId>,
        early_data: Vec<u8>,
    ) -> Result<(), HandshakeError> {
        let (transport, handshake_hash, body) = match hs {
            Some(mut hs) => {
                let body = write(&mut hs, &[], OVERHEAD_E)?;
                let (ts, hash) = finish(*hs)?;
                (Some(ts), hash, body)
            }
            None => (None, Vec::new(), Vec::new()),
        };
        self.core
            .transmits
            .push_back(Frame::new(FrameKind::Accept, body));
        self.core.establish(LinkParts {
            transport,
            role: Role::Responder,
            kind,
            peer,
            handshake_hash,
            early_data,
            now,
        });
        Ok(())
    }
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("kind", &self.kind)
            .field("responder", &self.responder)
            .field("mode", &self.core.mode)
            .field("finished", &self.core.finished)
            .field("deadline", &self.core.deadline)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("agent", &self.agent)
            .field("state", &self.state.describe())
            .field("mode", &self.core.mode)
            .field("finished", &self.core.finished)
            .field("deadline", &self.core.deadline)
            .finish_non_exhaustive()
    }
}
