//! Handshake replay (issue 10 item 6): a captured `N` + `K` replayed to the responder is
//! dropped by the replay cache before it is answered, and one the cache misses yields a link
//! that is never confirmed, so a driver that registers responder links on `Confirmed` never
//! lets it displace the real one.

use super::*;
use crate::secure::{FrameKind, ReplayCache};

fn responder(bob: &Identity, now: Instant, seed: u64) -> Responder {
    let config = SecureConfig::new(bob, &limits());
    Responder::new(&config, now, &mut StdRng::seed_from_u64(seed))
}

/// Feeds handshake bytes the way a driver with a replay cache does: after each step, the
/// first time the responder knows the initiator's ephemeral, ask the cache; a replay is
/// dropped before anything (the `A`) is written. Returns the link if the handshake was
/// answered.
fn drive_with_cache(
    resp: &mut Responder,
    cache: &mut ReplayCache,
    now: Instant,
    bytes: BytesMut,
) -> Result<Link, &'static str> {
    let mut checked = false;
    for f in frames_of(bytes) {
        resp.handle_frame(now, f).map_err(|_| "handshake failed")?;
        loop {
            if let (false, Some(e)) = (checked, resp.remote_ephemeral()) {
                checked = true;
                if !cache.check_and_insert(now, e) {
                    return Err("replay");
                }
            }
            match resp.poll_event() {
                Some(HsEvent::LookupPeer { agent }) => resp
                    .answer_peer(now, Some(agent.noise_public()))
                    .map_err(|_| "lookup failed")?,
                Some(HsEvent::Established(link)) => return Ok(link),
                Some(_) => return Err("refused"),
                None => break,
            }
        }
    }
    Err("incomplete")
}

#[test]
fn a_replayed_n_and_k_is_dropped_by_the_cache_before_it_is_answered() {
    let (alice, bob) = (ident(1), ident(2));
    let now = Instant::now();
    let real = handshake(&alice, &bob, Mode::Noise, now, 40);
    let frames = frames_of(real.nk.clone());
    assert_eq!(
        frames.iter().map(|f| f.kind).collect::<Vec<_>>(),
        vec![FrameKind::Declare, FrameKind::Known]
    );
    let mut cache = ReplayCache::new(1024, ms(600_000));

    // The real handshake passes the cache; its ephemeral is the K message's `e`.
    let mut first = responder(&bob, now, 41);
    let link = drive_with_cache(&mut first, &mut cache, now, real.nk.clone()).unwrap();
    assert_eq!(link.peer(), Some(alice.agent_id()));
    let k_ephemeral: [u8; 32] = frames[1].body[..32].try_into().unwrap();
    assert_eq!(first.remote_ephemeral(), Some(k_ephemeral));

    // Only N read: not known yet (it is K's that counts).
    let mut partial = responder(&bob, now, 42);
    partial.handle_frame(now, frames[0].clone()).unwrap();
    assert_eq!(partial.remote_ephemeral(), None);

    // The replay, a minute later, to a fresh responder with the same cache.
    let later = now + ms(60_000);
    let mut replayed = responder(&bob, later, 43);
    assert_eq!(
        drive_with_cache(&mut replayed, &mut cache, later, real.nk.clone()).unwrap_err(),
        "replay"
    );
    assert_eq!(replayed.remote_ephemeral(), Some(k_ephemeral));
}

#[test]
fn a_replay_the_cache_misses_is_never_confirmed() {
    let (alice, bob) = (ident(1), ident(2));
    let now = Instant::now();
    let real = handshake(&alice, &bob, Mode::Noise, now, 50);
    // What the eavesdropper also captured: the real initiator's first T frames.
    let mut real_a = LinkMachine::new(real.init, settings("a.example:1"), now);
    let mut captured_t = BytesMut::new();
    real_a
        .send(Payload::Envelope(env("chat", b"hello".to_vec())))
        .unwrap();
    assert!(real_a.poll_transmit(&mut captured_t));

    // The cache was cleared (restart, or the replay is older than its window).
    let mut cache = ReplayCache::new(1024, ms(600_000));
    // A fresh responder draws a fresh ephemeral (another seed than the real one's): that,
    // not the cache, is what keeps the replayer out of the session keys.
    let mut replayed = responder(&bob, now, 151);
    let fake = drive_with_cache(&mut replayed, &mut cache, now, real.nk.clone())
        .expect("without the cache the replay is answered");
    assert_eq!(fake.peer(), Some(alice.agent_id()), "it claims to be alice");
    let mut fake = LinkMachine::new(fake, settings("b.example:2"), now);
    // Replaying the captured T frames: they were sealed for another session's keys.
    fake.handle_bytes(now, &captured_t);
    let seen: Vec<_> = std::iter::from_fn(|| fake.poll_event()).collect();
    assert_eq!(
        seen,
        vec![Event::Ended(LinkEnd::Lost(LinkFailure::Transport(
            LinkError::Decrypt
        )))]
    );
    assert!(!fake.is_confirmed());

    // Saying nothing: the link ends at the confirmation deadline, never confirmed.
    let mut replayed = responder(&bob, now, 152);
    cache.clear();
    let fake = drive_with_cache(&mut replayed, &mut cache, now, real.nk).unwrap();
    let mut fake = LinkMachine::new(fake, settings("b.example:2"), now);
    let deadline = fake.poll_timeout().unwrap();
    assert_eq!(deadline, now + ms(limits().handshake_timeout_ms));
    fake.handle_timeout(deadline);
    let seen: Vec<_> = std::iter::from_fn(|| fake.poll_event()).collect();
    assert!(!seen.contains(&Event::Confirmed));
    assert!(matches!(
        seen.last(),
        Some(Event::Ended(LinkEnd::Lost(LinkFailure::NotConfirmed(_))))
    ));
}

#[test]
fn an_ik_ephemeral_is_known_before_the_ticket_is_checked() {
    use crate::secure::{Chad, TicketRequest};
    let (alice, bob) = (ident(1), ident(2));
    let now = Instant::now();
    let chad = |id: &Identity| Chad {
        cuid: None,
        agent: id.agent_id().to_string(),
        host: None,
        port: None,
    };
    let request = TicketRequest::new(chad(&bob), chad(&alice), "00ff");
    let config = SecureConfig::new(&alice, &limits());
    let mut init = Initiator::ik(
        &config,
        bob.agent_id(),
        &request,
        now,
        &mut StdRng::seed_from_u64(60),
    )
    .unwrap();
    let i = init.poll_transmit().unwrap();
    let mut resp = responder(&bob, now, 61);
    resp.handle_frame(now, i.clone()).unwrap();
    assert!(matches!(
        resp.poll_event(),
        Some(HsEvent::CheckTicket { .. })
    ));
    assert_eq!(resp.remote_ephemeral().unwrap()[..], i.body[..32]);
    // Raw mode proves nothing and has no ephemeral.
    let raw = SecureConfig::new(&bob, &limits()).with_mode(Mode::Raw);
    let mut raw_resp = Responder::new(&raw, now, &mut StdRng::seed_from_u64(62));
    let raw_cfg = SecureConfig::new(&alice, &limits()).with_mode(Mode::Raw);
    let mut raw_init = Initiator::ik(
        &raw_cfg,
        bob.agent_id(),
        &request,
        now,
        &mut StdRng::seed_from_u64(63),
    )
    .unwrap();
    raw_resp
        .handle_frame(now, raw_init.poll_transmit().unwrap())
        .unwrap();
    assert_eq!(raw_resp.remote_ephemeral(), None);
}
