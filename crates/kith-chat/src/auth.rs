//! Who may speak for whom: the bytes kith signs beyond the seed (channel state, end-to-end
//! receipts, HELLO proofs), the form of ids that keys derive, and public channel ids.
//!
//! The layouts are written out for client authors in the crate documentation ([`crate`]).
//! Every signed text starts with its own domain line, so a signature made for one purpose
//! can never be replayed as another (a MESSAGE signature, [`crate::crypto::SIGNATURE_DOMAIN`],
//! included), and names the signer's GUID, so it cannot be replayed for another node.

use kith_crypto::{AgentId, Identity, NodeId};
use sha2::{Digest, Sha256};

use crate::message::{Ack, Auth, Body, ChatId};

/// First line of the signed bytes of JOIN, LEAVE, CHANNEL and KEY.
pub const STATE_DOMAIN: &str = "kith-chat-state-v1";
/// First line of the signed bytes of an end-to-end receipt.
pub const RECEIPT_DOMAIN: &str = "kith-chat-receipt-v1";
/// First line of the signed bytes of a HELLO proof.
pub const HELLO_DOMAIN: &str = "kith-chat-hello-v1";
/// First line of the signed bytes of a ROUTING.
pub const ROUTING_DOMAIN: &str = "kith-chat-routing-v1";
/// Prefix hashed with a name to make a public channel's id.
pub const PUBLIC_CHANNEL_DOMAIN: &[u8] = b"kith-chat public channel v1";

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The `public_key` is not a valid Ed25519 key, or does not derive the signer's id.
    #[error("the public key does not derive the signer's id")]
    WrongKey,
    /// No signature where one is required.
    #[error("unsigned")]
    Unsigned,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
}

pub use crate::message::key_form;

/// The id of the public channel called `name`: the first 16 bytes of
/// `sha256("kith-chat public channel v1" ‖ name)` as a version-8 UUID. Everyone who joins a
/// public channel by name computes the same id, so nobody can create a second one of that
/// name, and a restarted node finds its channel again.
pub fn public_channel_id(name: &str) -> String {
    let digest = Sha256::new()
        .chain_update(PUBLIC_CHANNEL_DOMAIN)
        .chain_update(name.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    NodeId::from_bytes(b).to_string()
}

fn lines(all: &[&str]) -> Vec<u8> {
    let mut out = String::with_capacity(all.iter().map(|l| l.len() + 1).sum());
    for line in all {
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

fn sorted_ids(ids: &[ChatId]) -> String {
    let mut all: Vec<String> = ids.iter().map(|i| i.guid.to_string()).collect();
    all.sort();
    all.dedup();
    all.join(",")
}

/// The bytes a JOIN, LEAVE, CHANNEL or KEY signature covers (`None` for other verbs): lines
/// `kith-chat-state-v1`, the verb, `msg_id`, the sender's GUID, `channel`, `channel_id`, then
/// for LEAVE the removed member's GUID (or empty), for CHANNEL `closed` or `open` and the
/// members' GUIDs (sorted, without repeats, joined by `,`), for KEY the recipient's GUID,
/// `cipher`, the hex SHA-256 of the wrapped key and the members' GUIDs as for CHANNEL.
pub fn state_bytes(body: &Body) -> Option<Vec<u8>> {
    let verb = body.verb().as_str();
    Some(match body {
        Body::Join(m) | Body::Leave(m) => {
            let node = m.node_id.guid.to_string();
            let member = m
                .member
                .as_ref()
                .map(|x| x.guid.to_string())
                .unwrap_or_default();
            let mut all = vec![
                STATE_DOMAIN,
                verb,
                &m.msg_id,
                &node,
                &m.channel,
                &m.channel_id,
            ];
            if matches!(body, Body::Leave(_)) {
                all.push(&member);
            }
            lines(&all)
        }
        Body::Channel(m) => {
            let node = m.node_id.guid.to_string();
            let members = sorted_ids(&m.members);
            let closed = if m.closed { "closed" } else { "open" };
            lines(&[
                STATE_DOMAIN,
                verb,
                &m.msg_id,
                &node,
                &m.channel,
                &m.channel_id,
                closed,
                &members,
            ])
        }
        Body::Key(m) => {
            let node = m.node_id.guid.to_string();
            let recipient = m.recipient_id.guid.to_string();
            let key = hex::encode(Sha256::digest(&m.key));
            let members = sorted_ids(&m.members);
            lines(&[
                STATE_DOMAIN,
                verb,
                &m.msg_id,
                &node,
                &m.channel,
                &m.channel_id,
                &recipient,
                &m.cipher,
                &key,
                &members,
            ])
        }
        _ => return None,
    })
}

/// The bytes an end-to-end receipt's signature covers: `kith-chat-receipt-v1`, the
/// acknowledged `msg_id`, the GUID of the node that received it (the signer), the GUID of its
/// author (where the receipt goes).
pub fn receipt_bytes(msg_id: &str, signer: &NodeId, author: &NodeId) -> Vec<u8> {
    lines(&[
        RECEIPT_DOMAIN,
        msg_id,
        &signer.to_string(),
        &author.to_string(),
    ])
}

/// The bytes a HELLO proof signs: `kith-chat-hello-v1`, the challenge exactly as the verifier
/// sent it, the verifier's GUID, the prover's GUID.
pub fn hello_bytes(challenge: &str, verifier: &NodeId, prover: &NodeId) -> Vec<u8> {
    lines(&[
        HELLO_DOMAIN,
        challenge,
        &verifier.to_string(),
        &prover.to_string(),
    ])
}

/// The bytes a ROUTING signature covers: `kith-chat-routing-v1`, the message's top-level
/// `msg_id`, the sender's GUID, the receiver's GUID, the challenge the receiver gave the
/// sender in its HELLO on this connection (empty over a secure link, which needs none), the
/// decimal `seq`, then the entries as `GUID:hops` (GUIDs lower-case, sorted, joined by `,`).
/// Bound to one receiver and one connection, and ordered by `seq`, a ROUTING cannot be
/// replayed elsewhere or later.
pub fn routing_bytes(
    msg_id: &str,
    sender: &NodeId,
    receiver: &NodeId,
    challenge: &str,
    seq: u64,
    entries: &[(NodeId, u32)],
) -> Vec<u8> {
    let mut all: Vec<String> = entries
        .iter()
        .map(|(id, hops)| format!("{id}:{hops}"))
        .collect();
    all.sort();
    lines(&[
        ROUTING_DOMAIN,
        msg_id,
        &sender.to_string(),
        &receiver.to_string(),
        challenge,
        &seq.to_string(),
        &all.join(","),
    ])
}

/// An [`Auth`] for `bytes`, signed by `identity`, carrying its public key.
pub fn sign(identity: &Identity, bytes: &[u8]) -> Auth {
    Auth {
        public_key: Some(identity.agent_public()),
        signature: Some(identity.sign_agent(bytes)),
    }
}

/// Signs a JOIN, LEAVE, CHANNEL or KEY body in place (other verbs are left alone).
pub fn sign_state(identity: &Identity, body: &mut Body) {
    let Some(bytes) = state_bytes(body) else {
        return;
    };
    let auth = sign(identity, &bytes);
    match body {
        Body::Join(m) | Body::Leave(m) => m.auth = auth,
        Body::Channel(m) => m.auth = auth,
        Body::Key(m) => m.auth = auth,
        _ => {}
    }
}

/// Signs an end-to-end receipt in place (its `node_id` must be `identity`'s).
pub fn sign_receipt(identity: &Identity, ack: &mut Ack) {
    let Some(author) = ack.recipient_id else {
        return;
    };
    let bytes = receipt_bytes(&ack.msg_id, &identity.node_id(), &author);
    ack.auth = sign(identity, &bytes);
}

/// The key an [`Auth`] names for `signer`: its `public_key` when present (refused unless it
/// derives `signer`), else `None` (the verifier must know the key otherwise).
pub fn named_key(auth: &Auth, signer: &NodeId) -> Result<Option<AgentId>, AuthError> {
    match &auth.public_key {
        None => Ok(None),
        Some(raw) => {
            let key = AgentId::from_bytes(raw).map_err(|_| AuthError::WrongKey)?;
            if !signer.is_derived_from(key.as_bytes()) {
                return Err(AuthError::WrongKey);
            }
            Ok(Some(key))
        }
    }
}

/// Checks `auth`'s signature over `bytes` with `key`.
pub fn check(key: &AgentId, auth: &Auth, bytes: &[u8]) -> Result<(), AuthError> {
    let signature = auth.signature.as_ref().ok_or(AuthError::Unsigned)?;
    if key.verify(bytes, signature) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// The [`Auth`] of a signed state body, if the verb carries one.
pub fn state_auth(body: &Body) -> Option<&Auth> {
    match body {
        Body::Join(m) | Body::Leave(m) => Some(&m.auth),
        Body::Channel(m) => Some(&m.auth),
        Body::Key(m) => Some(&m.auth),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ChannelInfo, Membership};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ident(seed: u64) -> Identity {
        Identity::generate(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn kith_ids_have_the_key_form_and_uuid4_does_not() {
        assert!(key_form(&ident(1).node_id()));
        let v4: NodeId = "123e4567-e89b-42d3-a456-426614174000".parse().unwrap();
        assert!(!key_form(&v4));
    }

    #[test]
    fn public_channel_ids_depend_only_on_the_name() {
        assert_eq!(public_channel_id("lobby"), public_channel_id("lobby"));
        assert_ne!(public_channel_id("lobby"), public_channel_id("Lobby"));
        let id: NodeId = public_channel_id("lobby").parse().unwrap();
        assert!(key_form(&id));
    }

    #[test]
    fn state_signatures_cover_the_fields_and_name_the_signer() {
        let alice = ident(1);
        let mut body = Body::Channel(ChannelInfo {
            msg_id: "m".into(),
            node_id: ChatId::new(alice.node_id()),
            channel: "c".into(),
            channel_id: "id".into(),
            members: vec![ChatId::new(ident(2).node_id())],
            closed: false,
            auth: Auth::default(),
        });
        sign_state(&alice, &mut body);
        let auth = state_auth(&body).unwrap().clone();
        let key = named_key(&auth, &alice.node_id()).unwrap().unwrap();
        check(&key, &auth, &state_bytes(&body).unwrap()).unwrap();
        assert_eq!(
            named_key(&auth, &ident(2).node_id()),
            Err(AuthError::WrongKey)
        );
        let Body::Channel(mut flipped) = body.clone() else {
            unreachable!()
        };
        flipped.closed = true;
        let flipped = Body::Channel(flipped);
        assert_eq!(
            check(&key, &auth, &state_bytes(&flipped).unwrap()),
            Err(AuthError::BadSignature)
        );
        let leave = Body::Leave(Membership {
            msg_id: "m".into(),
            node_id: ChatId::new(alice.node_id()),
            channel: "c".into(),
            channel_id: "id".into(),
            member: None,
            auth: Auth::default(),
        });
        let text = String::from_utf8(state_bytes(&leave).unwrap()).unwrap();
        assert_eq!(
            text,
            format!(
                "kith-chat-state-v1\nLEAVE\nm\n{}\nc\nid\n\n",
                alice.node_id()
            )
        );
    }

    #[test]
    fn a_hello_proof_is_bound_to_both_ends() {
        let (node, client) = (ident(1), ident(2));
        let bytes = hello_bytes("nonce", &node.node_id(), &client.node_id());
        let auth = sign(&client, &bytes);
        let key = named_key(&auth, &client.node_id()).unwrap().unwrap();
        assert!(check(&key, &auth, &bytes).is_ok());
        let elsewhere = hello_bytes("nonce", &ident(3).node_id(), &client.node_id());
        assert!(check(&key, &auth, &elsewhere).is_err());
    }
}
