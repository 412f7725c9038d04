//! Replayed handshakes: a responder drops a handshake whose initiator ephemeral key it has
//! seen before ([`kith_proto::secure::ReplayCache`], one per node).
//!
//! Key confirmation (a responder link counts only after an authenticated transport frame, see
//! the link task) already stops a replay from doing harm; this cache stops the responder from
//! even answering it, so a captured handshake costs the node no database lookup, no ticket
//! check and no `A`. The ephemeral key is the first 32 bytes of the `I`, `K` and `Q` messages
//! (IK, KK and NK all begin with `e`), in the clear. Fresh keys are random, so an honest
//! initiator never collides with the cache.

use kith_proto::secure::{Frame, FrameKind};

/// The initiator's ephemeral public key at the start of a handshake message that carries one.
pub(super) fn initiator_ephemeral(frame: &Frame) -> Option<[u8; 32]> {
    match frame.kind {
        FrameKind::Ticket | FrameKind::Known | FrameKind::Query => {
            frame.body.get(..32).and_then(|b| b.try_into().ok())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ephemeral_opens_i_k_and_q_only() {
        let body = bytes::Bytes::from(vec![7u8; 48]);
        for kind in [FrameKind::Ticket, FrameKind::Known, FrameKind::Query] {
            let frame = Frame::new(kind, body.clone());
            assert_eq!(initiator_ephemeral(&frame), Some([7; 32]));
        }
        for kind in [FrameKind::Declare, FrameKind::Accept, FrameKind::Transport] {
            assert_eq!(initiator_ephemeral(&Frame::new(kind, body.clone())), None);
        }
        let short = Frame::new(FrameKind::Known, bytes::Bytes::from(vec![7u8; 31]));
        assert_eq!(initiator_ephemeral(&short), None);
    }
}
