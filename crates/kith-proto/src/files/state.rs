//! The spec's state table, as data.
//!
//! Both ends track the same state: which transfer the *initiator* may issue next. The
//! initiator's commands move it (`get` → waiting-for-put, `put` → waiting-for-get); the
//! responder's own commands are checked against it by the initiator but leave it unchanged
//! (the responder `get`s after the initiator's `put` and `put`s after its `get`, so files keep
//! flowing both ways).

use super::command::CommandKind;

/// Where a session is in the spec's state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Connected, nothing issued yet (the reference's "responder"/"initiator" states):
    /// `tls`, `chk`, `?` and `bye` only.
    Fresh,
    /// After `tls`: `chk` must come next (or `?`, `bye`).
    AfterTls,
    /// Waiting for get (WG): the initiator may `get` (or `chk`, `pip`).
    WaitingForGet,
    /// Waiting for put (WP): the initiator may `put` (or `chk`, `pip`).
    WaitingForPut,
    /// Waiting for get or put (WGP, blockchain sessions without strict alternation).
    WaitingForGetOrPut,
    /// Ended (the reference's "invalid"): nothing is accepted.
    Invalid,
}

impl State {
    /// Every state, for table-driven code.
    pub const ALL: [State; 6] = [
        State::Fresh,
        State::AfterTls,
        State::WaitingForGet,
        State::WaitingForPut,
        State::WaitingForGetOrPut,
        State::Invalid,
    ];

    /// Whether a command of this kind is accepted in this state (the spec table). `?` is also
    /// limited to once per session, which the session tracks separately.
    pub fn allows(self, kind: CommandKind) -> bool {
        use CommandKind as K;
        use State as S;
        match (self, kind) {
            (S::Invalid, _) => false,
            (_, K::Bye | K::Help) => true,
            (S::Fresh, K::Tls | K::Chk) => true,
            (S::AfterTls, K::Chk) => true,
            (S::Fresh | S::AfterTls, _) => false,
            (_, K::Tls) => false,
            (_, K::Chk | K::Pip) => true,
            (S::WaitingForGet | S::WaitingForGetOrPut, K::Get) => true,
            (S::WaitingForPut | S::WaitingForGetOrPut, K::Put) => true,
            (_, K::Get | K::Put) => false,
        }
    }

    /// Whether the responder may issue a command of this kind as its own (its turn after
    /// each of the initiator's): `chk`, `pip`, and the transfer the state allows.
    pub fn allows_from_responder(self, kind: CommandKind) -> bool {
        matches!(
            kind,
            CommandKind::Chk | CommandKind::Get | CommandKind::Put | CommandKind::Pip
        ) && self.is_transferring()
            && self.allows(kind)
    }

    /// True in WG, WP and WGP (after the opening `chk`).
    pub fn is_transferring(self) -> bool {
        matches!(
            self,
            State::WaitingForGet | State::WaitingForPut | State::WaitingForGetOrPut
        )
    }

    /// The state after the initiator's accepted `get` or `put` (others leave it alone).
    /// `alternate` false keeps WGP (no strict alternation).
    pub fn after_initiator(self, kind: CommandKind, alternate: bool) -> State {
        match (kind, alternate) {
            (CommandKind::Get | CommandKind::Put, false) => State::WaitingForGetOrPut,
            (CommandKind::Get, true) => State::WaitingForPut,
            (CommandKind::Put, true) => State::WaitingForGet,
            _ => self,
        }
    }
}
