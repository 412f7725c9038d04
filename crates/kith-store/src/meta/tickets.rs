//! Issued tickets (first-contact tokens): the record, the verdict rule, and the statements.
//! A redemption checks and records a use in one transaction that concurrent redemptions of the
//! same ticket wait for, so a one-time ticket is accepted exactly once even when several node
//! processes share the database.

use serde::{Deserialize, Serialize};

use super::sql::{args, lock, Row, Sql};
use super::MetaError;

/// An issued ticket (first-contact token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    /// The token: 32 lowercase hex digits.
    pub token: String,
    /// When it was issued, in unix seconds.
    pub issued_at: i64,
    /// When it stops being valid, in unix seconds: valid while `now < expires_at`.
    pub expires_at: i64,
    /// A reusable ticket may be redeemed any number of times until it expires or is revoked;
    /// otherwise it is accepted once.
    pub reusable: bool,
    /// The user (CHIP user id) the ticket grants access to, if any.
    pub cuid: Option<String>,
    /// When it was (last) redeemed, in unix seconds.
    pub used_at: Option<i64>,
    /// The agent that (last) redeemed it.
    pub used_by: Option<String>,
    /// Revoked by the operator: never accepted again.
    pub revoked: bool,
}

impl TicketRecord {
    /// A fresh, unused, unrevoked ticket.
    pub fn new(token: impl Into<String>, issued_at: i64, expires_at: i64) -> TicketRecord {
        TicketRecord {
            token: token.into(),
            issued_at,
            expires_at,
            reusable: false,
            cuid: None,
            used_at: None,
            used_by: None,
            revoked: false,
        }
    }
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// No ticket has this token (never issued, or purged).
    Unknown,
    /// The ticket has expired.
    Expired,
    /// A one-time ticket that was already redeemed.
    AlreadyUsed,
    /// The operator revoked the ticket.
    Revoked,
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefusalReason::Unknown => "unknown ticket",
            RefusalReason::Expired => "ticket expired",
            RefusalReason::AlreadyUsed => "ticket already used",
            RefusalReason::Revoked => "ticket revoked",
        })
    }
}

/// The outcome of [`MetaDb::redeem_ticket`].
///
/// [`MetaDb::redeem_ticket`]: super::MetaDb::redeem_ticket
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketVerdict {
    /// The ticket is valid; its use is recorded.
    Accepted,
    /// The ticket is not valid; nothing was changed.
    Refused(RefusalReason),
}

/// Why a ticket may not be redeemed at `now`, or `None` if it may. When several reasons apply,
/// the first of revoked, already used, expired is given.
pub(crate) fn judge_ticket(ticket: &TicketRecord, now: i64) -> Option<RefusalReason> {
    if ticket.revoked {
        Some(RefusalReason::Revoked)
    } else if !ticket.reusable && ticket.used_at.is_some() {
        Some(RefusalReason::AlreadyUsed)
    } else if now >= ticket.expires_at {
        Some(RefusalReason::Expired)
    } else {
        None
    }
}

/// Checks that a token to store is 32 lowercase hex digits (nothing else is ever issued).
pub(crate) fn check_token(token: &str) -> Result<(), MetaError> {
    if token.len() == 32
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(MetaError::BadToken {
            len: token.chars().count(),
        })
    }
}

/// The `expires_at` at or below which [`MetaDb::purge_expired_tickets`] deletes a ticket
/// (a negative `keep_for_secs` counts as 0).
///
/// [`MetaDb::purge_expired_tickets`]: super::MetaDb::purge_expired_tickets
pub(crate) fn purge_cutoff(now: i64, keep_for_secs: i64) -> i64 {
    now.saturating_sub(keep_for_secs.max(0))
}

const TICKET_COLUMNS: &str =
    "token, issued_at, expires_at, reusable, cuid, used_at, used_by, revoked";

fn ticket(row: Row) -> Result<TicketRecord, MetaError> {
    let mut c = row.cols();
    Ok(TicketRecord {
        token: c.text()?,
        issued_at: c.int()?,
        expires_at: c.int()?,
        reusable: c.boolean()?,
        cuid: c.opt_text()?,
        used_at: c.opt_int()?,
        used_by: c.opt_text()?,
        revoked: c.boolean()?,
    })
}

pub(super) fn insert(c: &mut dyn Sql, t: &TicketRecord) -> Result<(), MetaError> {
    check_token(&t.token)?;
    let inserted = c.execute(
        "recording ticket",
        "INSERT INTO tickets (token, issued_at, expires_at, reusable, cuid, used_at, used_by,
                              revoked)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (token) DO NOTHING",
        args![
            &t.token,
            t.issued_at,
            t.expires_at,
            t.reusable,
            t.cuid.as_deref(),
            t.used_at,
            t.used_by.as_deref(),
            t.revoked
        ],
    )?;
    if inserted == 0 {
        return Err(MetaError::DuplicateTicket);
    }
    Ok(())
}

pub(super) fn get(c: &mut dyn Sql, token: &str) -> Result<Option<TicketRecord>, MetaError> {
    c.query_opt(
        "reading ticket",
        &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE token = $1"),
        args![&token.to_ascii_lowercase()],
    )?
    .map(ticket)
    .transpose()
}

pub(super) fn list(c: &mut dyn Sql) -> Result<Vec<TicketRecord>, MetaError> {
    c.query(
        "listing tickets",
        &format!("SELECT {TICKET_COLUMNS} FROM tickets ORDER BY issued_at, token"),
        args![],
    )?
    .into_iter()
    .map(ticket)
    .collect()
}

pub(super) fn revoke(c: &mut dyn Sql, token: &str) -> Result<bool, MetaError> {
    let found = c.execute(
        "revoking ticket",
        "UPDATE tickets SET revoked = TRUE WHERE token = $1",
        args![&token.to_ascii_lowercase()],
    )?;
    Ok(found > 0)
}

pub(super) fn redeem(
    tx: &mut dyn Sql,
    token: &str,
    agent: &str,
    now: i64,
) -> Result<TicketVerdict, MetaError> {
    let token = token.to_ascii_lowercase();
    // A concurrent redemption of the same ticket waits here until this transaction ends, then
    // reads the row as this one left it.
    tx.serialize("locking ticket", lock::TICKET, &token)?;
    let Some(ticket) = get(tx, &token)? else {
        return Ok(TicketVerdict::Refused(RefusalReason::Unknown));
    };
    if let Some(reason) = judge_ticket(&ticket, now) {
        return Ok(TicketVerdict::Refused(reason));
    }
    tx.execute(
        "recording ticket use",
        "UPDATE tickets SET used_at = $2, used_by = $3 WHERE token = $1",
        args![&token, now, agent],
    )?;
    Ok(TicketVerdict::Accepted)
}

pub(super) fn purge_expired(
    c: &mut dyn Sql,
    now: i64,
    keep_for_secs: i64,
) -> Result<u64, MetaError> {
    c.execute(
        "purging expired tickets",
        "DELETE FROM tickets WHERE expires_at <= $1",
        args![purge_cutoff(now, keep_for_secs)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_refusal_reasons_are_given_in_order() {
        let mut t = TicketRecord::new("0".repeat(32), 100, 200);
        assert_eq!(judge_ticket(&t, 150), None);
        assert_eq!(judge_ticket(&t, 200), Some(RefusalReason::Expired));
        t.used_at = Some(150);
        assert_eq!(judge_ticket(&t, 200), Some(RefusalReason::AlreadyUsed));
        t.reusable = true;
        assert_eq!(judge_ticket(&t, 199), None);
        t.revoked = true;
        assert_eq!(judge_ticket(&t, 150), Some(RefusalReason::Revoked));
    }

    #[test]
    fn only_32_lowercase_hex_tokens_are_stored() {
        assert!(check_token(&"a1".repeat(16)).is_ok());
        assert!(check_token(&"A1".repeat(16)).is_err());
        assert!(check_token(&"a1".repeat(15)).is_err());
        assert!(check_token(&"g1".repeat(16)).is_err());
    }
}
