//! The responder's side of a file-exchange session over a link: answers from the store, own
//! commands from [`NodePolicy`] with custody's first, one upload slot per item sent.

use super::answer::{answer_from_store, store_raw_item};
use super::custodian::{Custodian, CustodianPolicy};
use super::{flush, link_config, wait_input, Exchange, ExchangeError, NodePolicy, SlotGuard};
use crate::clock::mono_now;
use kith_crypto::identity::AgentId;
use kith_proto::files::{Command, EnvelopePort, Event, Policy, Role, Session, Target};
use kith_proto::wire::Envelope;
use tokio::sync::mpsc;

/// A responder session, from the first envelope to its end.
pub(super) async fn respond(
    ex: &Exchange,
    peer: AgentId,
    id: u64,
    mut rx: mpsc::Receiver<Envelope>,
) -> Result<(), ExchangeError> {
    let _slot = SlotGuard { ex, peer, id };
    ex.counters.exchange_sessions_served.bump();
    let session = Session::new(Role::Responder, link_config(ex), mono_now());
    let mut port = EnvelopePort::new(session);
    let mut policy = NodePolicy;
    let mut custodian = Custodian::for_peer(peer);
    // What this node chose to send by its own commands (a pull request it `put`s, a
    // retention check): never priced, unlike what the peer `get`s.
    let mut own_read: Option<kith_store::ContentHash> = None;
    let mut upload: Option<super::UploadPermit> = None;
    loop {
        flush(ex, peer, &mut port).await?;
        // The item that held an upload slot is on the link now.
        drop(upload.take());
        if let Some(event) = port.poll_event() {
            if matches!(event, Event::ReadItem { .. }) {
                // An item to send waits for an upload slot (choking: the peers that give
                // back go first under contention).
                let _ = upload.insert(ex.uploads.acquire(peer).await);
            }
            let session = port.session_mut();
            let now = mono_now();
            // Priced serving: an item goes out only within what the peer paid for.
            let event = match (event, ex.gate()) {
                (Event::ReadItem { hash }, Some(gate)) => {
                    let ours = own_read.take() == Some(hash);
                    let item = if ours || gate.may_send(&peer) {
                        super::answer::read_item(&ex.store, hash).await?
                    } else {
                        None
                    };
                    if let (Some(item), false) = (&item, ours) {
                        gate.sent(&peer, item.len() as u64);
                    }
                    session.supply_verified_item(now, item).map_err(|e| {
                        ExchangeError::Session {
                            peer: peer.to_string(),
                            reason: e.to_string(),
                        }
                    })?;
                    port.process(mono_now());
                    continue;
                }
                (event, _) => event,
            };
            let result = match answer_from_store(&ex.store, session, event).await? {
                None => Ok(()),
                Some(Event::ChooseCommand(ctx)) => {
                    let mut policy = CustodianPolicy {
                        custodian: &mut custodian,
                        inner: &mut policy,
                    };
                    let command = policy.choose(&ctx);
                    own_read = match &command {
                        Command::Put { hash }
                        | Command::Chk {
                            target: Target::Hash(hash),
                            nonce: Some(_),
                        } => Some(*hash),
                        _ => None,
                    };
                    session.answer_command(now, command)
                }
                Some(Event::PeerCommand(Command::Chk {
                    target: Target::Hash(hash),
                    nonce: None,
                })) => {
                    custodian.on_chk(ex, hash).await;
                    Ok(())
                }
                Some(Event::PeerCommand(Command::Put { hash })) => {
                    custodian.on_put(ex, hash).await;
                    Ok(())
                }
                Some(Event::StoreItem { hash, item }) => {
                    // Content we asked for under custody is encrypted at once and never
                    // stored plain; anything else is stored, and a push request in it may
                    // make us ask for its content.
                    let ok = match custodian.take_into_custody(ex, hash, item.clone()).await {
                        Some(custody) => {
                            if let Err(e) = &custody {
                                tracing::info!(peer = %peer, "custody of {hash} failed: {e}");
                            }
                            custody.is_ok()
                        }
                        None => {
                            let ok = store_raw_item(&ex.store, item.clone()).await.is_ok();
                            if ok {
                                custodian.on_item_stored(ex, &item).await;
                            }
                            ok
                        }
                    };
                    if ok {
                        ex.counters.items_received.bump();
                        ex.uploads.received(peer, item.len() as u64);
                    }
                    session.stored(now, ok)
                }
                Some(Event::PipAddress) => session.answer_pip(now, &policy.pip_address()),
                Some(Event::Closed(reason)) => {
                    flush(ex, peer, &mut port).await?;
                    tracing::debug!(peer = %peer, ?reason, "file-exchange session closed");
                    return Ok(());
                }
                Some(_) => Ok(()),
            };
            result.map_err(|e| ExchangeError::Session {
                peer: peer.to_string(),
                reason: e.to_string(),
            })?;
            port.process(mono_now());
            continue;
        }
        if port.is_finished() {
            return flush(ex, peer, &mut port).await;
        }
        if !wait_input(&mut port, &mut rx).await {
            return Err(ExchangeError::LinkLost(peer.to_string()));
        }
    }
}
