//! The tally dialog as a state table: which step may follow which, from one holder's view.
//!
//! ```text
//!  (none) ──send offer──► offer ──got open──► open ──close chit──► closing ──settled──► close
//!    │                     │  ▲                 ▲
//!    │                     │  └─send offer──┐   │
//!    │                got draft──► draft ───┘   │
//!    │                got void ──► void         │
//!    └──got offer──► peer-offer ──send open─────┘
//!                         ├─send draft──► draft (waits for the partner's new offer)
//!                         └─send void───► void
//! ```
//! A step that does not fit the state is refused and changes nothing; a step repeated (the
//! same message again) leaves the state as it is, so retries are harmless. [`judge_offer`]
//! decides what a holder does with an offer it received, without asking anyone.

use crate::cert::Chad;
use crate::tally::{Side, SignCheck, Tally};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tally's state, from one holder's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TallyState {
    /// A proposal we are revising (after a counter-offer).
    Draft,
    /// We signed and sent an offer; waiting for the partner.
    Offer,
    /// The partner offered; waiting for our user.
    PeerOffer,
    /// Both signed.
    Open,
    /// Refused by one side.
    Void,
    /// A close was chained; waiting for a zero balance.
    Closing,
    /// Closed.
    Close,
}

impl TallyState {
    /// The name shown to users and scripts (`open` once both signed).
    pub fn as_str(self) -> &'static str {
        match self {
            TallyState::Draft => "draft",
            TallyState::Offer => "offer",
            TallyState::PeerOffer => "peer_offer",
            TallyState::Open => "open",
            TallyState::Void => "void",
            TallyState::Closing => "closing",
            TallyState::Close => "close",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s names.
    pub fn parse(text: &str) -> Option<TallyState> {
        Some(match text {
            "draft" => TallyState::Draft,
            "offer" => TallyState::Offer,
            "peer_offer" => TallyState::PeerOffer,
            "open" => TallyState::Open,
            "void" => TallyState::Void,
            "closing" => TallyState::Closing,
            "close" => TallyState::Close,
            _ => return None,
        })
    }

    /// Whether chits may move on it.
    pub fn carries_chits(self) -> bool {
        matches!(self, TallyState::Open | TallyState::Closing)
    }
}

/// A step of the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// We sent an offer (signed by us).
    SendOffer,
    /// We sent a counter-offer.
    SendDraft,
    /// We signed the partner's offer.
    SendOpen,
    /// We refused.
    SendVoid,
    /// The partner offered.
    GotOffer,
    /// The partner countered our offer.
    GotDraft,
    /// The partner signed our offer.
    GotOpen,
    /// The partner refused.
    GotVoid,
    /// A close setting was chained.
    CloseChained,
    /// The balance reached zero while closing.
    Settled,
}

/// The state after `step` from `state` (`None`: no tally yet), or `None` when the step does
/// not fit (refused, nothing changes).
pub fn next(state: Option<TallyState>, step: Step) -> Option<TallyState> {
    use Step::*;
    use TallyState::*;
    match (state, step) {
        (None | Some(Draft | Void), SendOffer) => Some(Offer),
        (Some(Offer), SendOffer) => Some(Offer),
        (None | Some(Void | PeerOffer), GotOffer) => Some(PeerOffer),
        (Some(PeerOffer), SendOpen) => Some(Open),
        (Some(PeerOffer), SendDraft) => Some(Draft),
        (Some(PeerOffer), SendVoid) => Some(Void),
        (Some(Offer), GotDraft) => Some(Draft),
        (Some(Offer), GotOpen) => Some(Open),
        (Some(Offer | Draft | PeerOffer), GotVoid) => Some(Void),
        // Retries: the same step again changes nothing.
        (Some(Open), GotOpen | SendOpen) => Some(Open),
        (Some(Void), GotVoid | SendVoid) => Some(Void),
        (Some(Draft), SendDraft) => Some(Draft),
        (Some(Open), CloseChained) => Some(Closing),
        (Some(Closing), CloseChained) => Some(Closing),
        (Some(Closing), Settled) => Some(Close),
        (Some(Close), Settled | CloseChained) => Some(Close),
        _ => None,
    }
}

/// What a holder expects of a tally it is negotiating.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// Our side.
    pub side: Side,
    /// Our user.
    pub user: Chad,
    /// The partner's site (its agent id, proven by the link).
    pub partner_agent: String,
    /// The terms we grant.
    pub terms: Value,
    /// The tally's UUID, if we already know it.
    pub uuid: Option<String>,
}

/// What to do with an offer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Sign it (send `open`).
    Accept,
    /// Counter with our terms (send `draft`).
    Counter(Tally),
    /// Refuse (send `void`), and why.
    Refuse(String),
}

/// What a holder does with an offer from its partner: refuse one that is not about our user
/// at our side, not from the partner's site, or not validly signed by the partner; counter one
/// whose terms for our side differ from ours; accept the rest.
pub fn judge_offer(offer: &Tally, expect: &Expectation) -> Decision {
    let ours = expect.side;
    if let Some(uuid) = &expect.uuid {
        if offer.uuid() != uuid {
            return Decision::Refuse("the offer is for another tally".into());
        }
    }
    match offer.chad(ours) {
        Ok(chad) if chad.same_user(&expect.user) => {}
        _ => return Decision::Refuse(format!("the offer's {ours} is not our user")),
    }
    match offer.chad(ours.other()) {
        Ok(chad) if chad.agent == expect.partner_agent => {}
        _ => return Decision::Refuse("the offer's partner is not the sending site".into()),
    }
    match offer.check(ours.other()) {
        SignCheck::Valid => {}
        SignCheck::Missing => return Decision::Refuse("the offer is not signed".into()),
        SignCheck::Invalid(why) => {
            return Decision::Refuse(format!("the partner's signature is invalid: {why}"))
        }
    }
    if offer.limit(ours).is_err() || offer.limit(ours.other()).is_err() {
        return Decision::Refuse("the offer's credit limits are not whole units".into());
    }
    if offer.terms(ours) != expect.terms {
        let mut draft = offer.clone();
        draft.set(&[ours.as_str(), "terms"], expect.terms.clone());
        draft.next_revision();
        return Decision::Counter(draft);
    }
    Decision::Accept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_only_fit_their_states_and_repeat_harmlessly() {
        use Step::*;
        use TallyState::*;
        assert_eq!(next(None, SendOffer), Some(Offer));
        assert_eq!(next(Some(Offer), GotOpen), Some(Open));
        assert_eq!(next(Some(Open), GotOpen), Some(Open));
        assert_eq!(next(Some(Open), GotOffer), None);
        assert_eq!(next(Some(Open), GotVoid), None);
        assert_eq!(next(None, GotOpen), None);
        assert_eq!(next(Some(Void), GotOpen), None);
        assert_eq!(next(Some(Close), GotOffer), None);
        assert_eq!(next(Some(PeerOffer), SendOpen), Some(Open));
        assert_eq!(next(Some(Open), CloseChained), Some(Closing));
        assert_eq!(next(Some(Closing), Settled), Some(Close));
    }
}
