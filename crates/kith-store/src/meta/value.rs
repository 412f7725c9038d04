//! Value: the site's users (their MyCHIPs certificates; keys are files), tally tickets,
//! tallies and chits.
//!
//! The store knows the rows, not the rules: the tally and chit documents are kept as the JSON
//! they were signed as, and the chain's consensus is computed by the caller (`kith-value`)
//! inside [`MetaDb::value_tally_tx`](super::MetaDb::value_tally_tx): one transaction that
//! holds the tally's lock (PostgreSQL: an advisory lock on the tally; SQLite: `BEGIN
//! IMMEDIATE`) from reading the balance to writing the chit, so two node processes sharing a
//! database can never both spend the same credit.

use super::sql::{args, lock, Row, Sql};
use super::MetaError;
use serde::{Deserialize, Serialize};

/// SQL for the migration that adds value (SQLite).
pub(crate) const SQLITE_MIGRATION: &str = "CREATE TABLE value_users (
        cuid TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        cert TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE tally_tickets (
        token TEXT PRIMARY KEY NOT NULL,
        cuid TEXT NOT NULL,
        credit_limit INTEGER NOT NULL,
        for_chad TEXT,
        tally_uuid TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE tallies (
        uuid TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('stock', 'foil')),
        cuid TEXT NOT NULL,
        partner TEXT NOT NULL,
        partner_agent TEXT NOT NULL,
        state TEXT NOT NULL,
        doc TEXT NOT NULL,
        our_limit INTEGER NOT NULL,
        their_limit INTEGER NOT NULL,
        conf_index INTEGER NOT NULL,
        conf_digest TEXT NOT NULL,
        balance INTEGER NOT NULL,
        chits INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (uuid, side)
    );
    CREATE TABLE chits (
        tally TEXT NOT NULL,
        side TEXT NOT NULL,
        uuid TEXT NOT NULL,
        doc TEXT NOT NULL,
        by_side TEXT NOT NULL,
        units INTEGER NOT NULL,
        status TEXT NOT NULL,
        chain_idx INTEGER,
        chain_digest TEXT,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (tally, side, uuid)
    );
    CREATE INDEX chits_chain ON chits(tally, side, chain_idx);
    CREATE INDEX chits_status ON chits(status);";

/// SQL for the migration that adds value (PostgreSQL).
pub(crate) const POSTGRES_MIGRATION: &str = "CREATE TABLE value_users (
        cuid TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        cert TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE tally_tickets (
        token TEXT PRIMARY KEY NOT NULL,
        cuid TEXT NOT NULL,
        credit_limit BIGINT NOT NULL,
        for_chad TEXT,
        tally_uuid TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE tallies (
        uuid TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('stock', 'foil')),
        cuid TEXT NOT NULL,
        partner TEXT NOT NULL,
        partner_agent TEXT NOT NULL,
        state TEXT NOT NULL,
        doc TEXT NOT NULL,
        our_limit BIGINT NOT NULL,
        their_limit BIGINT NOT NULL,
        conf_index BIGINT NOT NULL,
        conf_digest TEXT NOT NULL,
        balance BIGINT NOT NULL,
        chits BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (uuid, side)
    );
    CREATE TABLE chits (
        tally TEXT NOT NULL,
        side TEXT NOT NULL,
        uuid TEXT NOT NULL,
        doc TEXT NOT NULL,
        by_side TEXT NOT NULL,
        units BIGINT NOT NULL,
        status TEXT NOT NULL,
        chain_idx BIGINT,
        chain_digest TEXT,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (tally, side, uuid)
    );
    CREATE INDEX chits_chain ON chits(tally, side, chain_idx);
    CREATE INDEX chits_status ON chits(status);";

/// A user hosted by this site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueUser {
    /// The user's id at this site.
    pub cuid: String,
    /// The name people see.
    pub name: String,
    /// The MyCHIPs certificate, as JSON.
    pub cert: String,
    /// When it was added, unix seconds.
    pub created_at: i64,
}

/// A tally ticket: a connection ticket (same token) that also invites a tally with a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyTicketRow {
    /// The connection ticket's token.
    pub token: String,
    /// The inviting user.
    pub cuid: String,
    /// The credit the inviting user grants.
    pub limit: i64,
    /// The only partner (`cuid:agent`) who may use it, if restricted.
    pub for_chad: Option<String>,
    /// The tally opened with it, once used.
    pub tally_uuid: Option<String>,
    /// When it was issued, unix seconds.
    pub created_at: i64,
}

/// What claiming a tally ticket gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketClaim {
    /// The ticket is good for this tally (claimed now, or before by the same tally).
    Claimed(TallyTicketRow),
    /// Refused, and why.
    Refused(&'static str),
}

/// One holder's tally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallyRow {
    /// The tally's UUID (the same on both sides).
    pub uuid: String,
    /// Our side: `stock` or `foil`.
    pub side: String,
    /// Our user.
    pub cuid: String,
    /// The partner's CHAD (`cuid:agent@host:port`).
    pub partner: String,
    /// The partner's site (agent id).
    pub partner_agent: String,
    /// The dialog state (`open` once both signed).
    pub state: String,
    /// The tally document, as JSON.
    pub doc: String,
    /// The credit we grant.
    pub our_limit: i64,
    /// The credit the partner grants us.
    pub their_limit: i64,
    /// The last index both sides confirmed.
    pub conf_index: i64,
    /// The chain digest there.
    pub conf_digest: String,
    /// Our balance over every chained chit.
    pub balance: i64,
    /// Chained chits.
    pub chits: i64,
    /// When it was created, unix seconds.
    pub created_at: i64,
    /// When it last changed, unix seconds.
    pub updated_at: i64,
}

/// A chit as one holder keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChitRow {
    /// The tally's UUID.
    pub tally: String,
    /// Our side of that tally.
    pub side: String,
    /// The chit's UUID.
    pub uuid: String,
    /// The chit, as JSON.
    pub doc: String,
    /// The side that gives value.
    pub by_side: String,
    /// Units.
    pub units: i64,
    /// `chained`, `pend_in` (an invoice for our user), `pend_out` (our invoice), `void`.
    pub status: String,
    /// Its chain index, once chained.
    pub chain_idx: Option<i64>,
    /// Its chain digest, once chained.
    pub chain_digest: Option<String>,
    /// When it was recorded, unix seconds.
    pub created_at: i64,
}

const TALLY_COLUMNS: &str = "uuid, side, cuid, partner, partner_agent, state, doc, our_limit, \
     their_limit, conf_index, conf_digest, balance, chits, created_at, updated_at";
const CHIT_COLUMNS: &str =
    "tally, side, uuid, doc, by_side, units, status, chain_idx, chain_digest, created_at";

fn tally(row: Row) -> Result<TallyRow, MetaError> {
    let mut c = row.cols();
    Ok(TallyRow {
        uuid: c.text()?,
        side: c.text()?,
        cuid: c.text()?,
        partner: c.text()?,
        partner_agent: c.text()?,
        state: c.text()?,
        doc: c.text()?,
        our_limit: c.int()?,
        their_limit: c.int()?,
        conf_index: c.int()?,
        conf_digest: c.text()?,
        balance: c.int()?,
        chits: c.int()?,
        created_at: c.int()?,
        updated_at: c.int()?,
    })
}

fn chit(row: Row) -> Result<ChitRow, MetaError> {
    let mut c = row.cols();
    Ok(ChitRow {
        tally: c.text()?,
        side: c.text()?,
        uuid: c.text()?,
        doc: c.text()?,
        by_side: c.text()?,
        units: c.int()?,
        status: c.text()?,
        chain_idx: c.opt_int()?,
        chain_digest: c.opt_text()?,
        created_at: c.int()?,
    })
}

pub(super) fn insert_user(c: &mut dyn Sql, user: &ValueUser) -> Result<bool, MetaError> {
    Ok(c.execute(
        "adding a user",
        "INSERT INTO value_users (cuid, name, cert, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (cuid) DO NOTHING",
        args![&user.cuid, &user.name, &user.cert, user.created_at],
    )? > 0)
}

pub(super) fn users(c: &mut dyn Sql) -> Result<Vec<ValueUser>, MetaError> {
    c.query(
        "listing users",
        "SELECT cuid, name, cert, created_at FROM value_users ORDER BY cuid",
        args![],
    )?
    .into_iter()
    .map(|row| {
        let mut c = row.cols();
        Ok(ValueUser {
            cuid: c.text()?,
            name: c.text()?,
            cert: c.text()?,
            created_at: c.int()?,
        })
    })
    .collect()
}

pub(super) fn insert_tally_ticket(c: &mut dyn Sql, t: &TallyTicketRow) -> Result<(), MetaError> {
    c.execute(
        "recording a tally ticket",
        "INSERT INTO tally_tickets (token, cuid, credit_limit, for_chad, tally_uuid, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        args![
            &t.token,
            &t.cuid,
            t.limit,
            t.for_chad.as_deref(),
            t.tally_uuid.as_deref(),
            t.created_at
        ],
    )?;
    Ok(())
}

/// Claims a tally ticket for `tally_uuid`, presented by `agent` at `now`, in one transaction
/// (locked on the token): the connection ticket must exist, be unrevoked and unexpired, and
/// be unused or used by this same agent (its first contact); the tally ticket must be unused,
/// or already claimed by this same tally (a retry).
pub(super) fn claim_tally_ticket(
    tx: &mut dyn Sql,
    token: &str,
    agent: &str,
    tally_uuid: &str,
    now: i64,
) -> Result<TicketClaim, MetaError> {
    let token = token.to_ascii_lowercase();
    tx.serialize("locking ticket", lock::TICKET, &token)?;
    let Some(ticket) = super::tickets::get(tx, &token)? else {
        return Ok(TicketClaim::Refused("unknown ticket"));
    };
    if ticket.revoked {
        return Ok(TicketClaim::Refused("ticket revoked"));
    }
    if now >= ticket.expires_at {
        return Ok(TicketClaim::Refused("ticket expired"));
    }
    match ticket.used_by.as_deref() {
        Some(user) if user != agent => return Ok(TicketClaim::Refused("ticket already used")),
        _ => {}
    }
    let Some(row) = tx.query_opt(
        "reading a tally ticket",
        "SELECT token, cuid, credit_limit, for_chad, tally_uuid, created_at
         FROM tally_tickets WHERE token = $1",
        args![&token],
    )?
    else {
        return Ok(TicketClaim::Refused("not a tally ticket"));
    };
    let mut c = row.cols();
    let mut claimed = TallyTicketRow {
        token: c.text()?,
        cuid: c.text()?,
        limit: c.int()?,
        for_chad: c.opt_text()?,
        tally_uuid: c.opt_text()?,
        created_at: c.int()?,
    };
    match claimed.tally_uuid.as_deref() {
        Some(uuid) if uuid != tally_uuid => {
            return Ok(TicketClaim::Refused("tally ticket already used"))
        }
        Some(_) => return Ok(TicketClaim::Claimed(claimed)),
        None => {}
    }
    tx.execute(
        "recording ticket use",
        "UPDATE tickets SET used_at = $2, used_by = $3 WHERE token = $1",
        args![&token, now, agent],
    )?;
    tx.execute(
        "claiming a tally ticket",
        "UPDATE tally_tickets SET tally_uuid = $2 WHERE token = $1",
        args![&token, tally_uuid],
    )?;
    claimed.tally_uuid = Some(tally_uuid.to_owned());
    Ok(TicketClaim::Claimed(claimed))
}

pub(super) fn upsert_tally(c: &mut dyn Sql, t: &TallyRow) -> Result<(), MetaError> {
    c.execute(
        "recording a tally",
        &format!(
            "INSERT INTO tallies ({TALLY_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (uuid, side) DO UPDATE SET cuid = excluded.cuid,
               partner = excluded.partner, partner_agent = excluded.partner_agent,
               state = excluded.state, doc = excluded.doc, our_limit = excluded.our_limit,
               their_limit = excluded.their_limit, conf_index = excluded.conf_index,
               conf_digest = excluded.conf_digest, balance = excluded.balance,
               chits = excluded.chits, updated_at = excluded.updated_at"
        ),
        args![
            &t.uuid,
            &t.side,
            &t.cuid,
            &t.partner,
            &t.partner_agent,
            &t.state,
            &t.doc,
            t.our_limit,
            t.their_limit,
            t.conf_index,
            &t.conf_digest,
            t.balance,
            t.chits,
            t.created_at,
            t.updated_at
        ],
    )?;
    Ok(())
}

pub(super) fn get_tally(
    c: &mut dyn Sql,
    uuid: &str,
    side: &str,
) -> Result<Option<TallyRow>, MetaError> {
    c.query_opt(
        "reading a tally",
        &format!("SELECT {TALLY_COLUMNS} FROM tallies WHERE uuid = $1 AND side = $2"),
        args![uuid, side],
    )?
    .map(tally)
    .transpose()
}

pub(super) fn tallies(c: &mut dyn Sql) -> Result<Vec<TallyRow>, MetaError> {
    c.query(
        "listing tallies",
        &format!("SELECT {TALLY_COLUMNS} FROM tallies ORDER BY created_at, uuid, side"),
        args![],
    )?
    .into_iter()
    .map(tally)
    .collect()
}

pub(super) fn upsert_chit(c: &mut dyn Sql, ch: &ChitRow) -> Result<(), MetaError> {
    c.execute(
        "recording a chit",
        &format!(
            "INSERT INTO chits ({CHIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (tally, side, uuid) DO UPDATE SET doc = excluded.doc,
               by_side = excluded.by_side, units = excluded.units, status = excluded.status,
               chain_idx = excluded.chain_idx, chain_digest = excluded.chain_digest"
        ),
        args![
            &ch.tally,
            &ch.side,
            &ch.uuid,
            &ch.doc,
            &ch.by_side,
            ch.units,
            &ch.status,
            ch.chain_idx,
            ch.chain_digest.as_deref(),
            ch.created_at
        ],
    )?;
    Ok(())
}

pub(super) fn chits_of(
    c: &mut dyn Sql,
    tally: &str,
    side: &str,
    limit: usize,
) -> Result<Vec<ChitRow>, MetaError> {
    c.query(
        "listing chits",
        &format!(
            "SELECT {CHIT_COLUMNS} FROM chits WHERE tally = $1 AND side = $2
             ORDER BY chain_idx IS NULL, chain_idx, created_at, uuid LIMIT $3"
        ),
        args![tally, side, i64::try_from(limit).unwrap_or(i64::MAX)],
    )?
    .into_iter()
    .map(chit)
    .collect()
}

pub(super) fn chits_by_uuid(c: &mut dyn Sql, uuid: &str) -> Result<Vec<ChitRow>, MetaError> {
    c.query(
        "reading a chit",
        &format!("SELECT {CHIT_COLUMNS} FROM chits WHERE uuid = $1"),
        args![uuid],
    )?
    .into_iter()
    .map(chit)
    .collect()
}

pub(super) fn chits_with_status(
    c: &mut dyn Sql,
    status: &str,
    limit: usize,
) -> Result<Vec<ChitRow>, MetaError> {
    c.query(
        "listing chits by status",
        &format!(
            "SELECT {CHIT_COLUMNS} FROM chits WHERE status = $1 ORDER BY created_at, uuid LIMIT $2"
        ),
        args![status, i64::try_from(limit).unwrap_or(i64::MAX)],
    )?
    .into_iter()
    .map(chit)
    .collect()
}

pub(super) fn all_chits(c: &mut dyn Sql) -> Result<Vec<ChitRow>, MetaError> {
    c.query(
        "reading every chit",
        &format!("SELECT {CHIT_COLUMNS} FROM chits ORDER BY tally, side, chain_idx, uuid"),
        args![],
    )?
    .into_iter()
    .map(chit)
    .collect()
}

pub(super) fn all_tally_tickets(c: &mut dyn Sql) -> Result<Vec<TallyTicketRow>, MetaError> {
    c.query(
        "reading tally tickets",
        "SELECT token, cuid, credit_limit, for_chad, tally_uuid, created_at FROM tally_tickets
         ORDER BY created_at, token",
        args![],
    )?
    .into_iter()
    .map(|row| {
        let mut c = row.cols();
        Ok(TallyTicketRow {
            token: c.text()?,
            cuid: c.text()?,
            limit: c.int()?,
            for_chad: c.opt_text()?,
            tally_uuid: c.opt_text()?,
            created_at: c.int()?,
        })
    })
    .collect()
}

/// A tally inside its transaction: the row, and the chits looked up and written through the
/// same transaction (see [`MetaDb::value_tally_tx`](super::MetaDb::value_tally_tx)).
pub struct TallyTx<'a> {
    tx: &'a mut dyn Sql,
    /// The tally as read under the lock; write it back with [`TallyTx::set_row`].
    pub row: TallyRow,
}

impl TallyTx<'_> {
    /// Replaces the tally row (written when the transaction commits).
    pub fn set_row(&mut self, row: TallyRow) {
        self.row = row;
    }

    /// The chit with this UUID on this tally, if recorded.
    pub fn chit(&mut self, uuid: &str) -> Result<Option<ChitRow>, MetaError> {
        self.tx
            .query_opt(
                "reading a chit",
                &format!(
                    "SELECT {CHIT_COLUMNS} FROM chits WHERE tally = $1 AND side = $2 AND uuid = $3"
                ),
                args![&self.row.uuid, &self.row.side, uuid],
            )?
            .map(chit)
            .transpose()
    }

    /// The chained chit at `index`, if any.
    pub fn chit_at(&mut self, index: i64) -> Result<Option<ChitRow>, MetaError> {
        self.tx
            .query_opt(
                "reading a chained chit",
                &format!(
                    "SELECT {CHIT_COLUMNS} FROM chits WHERE tally = $1 AND side = $2
                     AND chain_idx = $3 AND status = 'chained'"
                ),
                args![&self.row.uuid, &self.row.side, index],
            )?
            .map(chit)
            .transpose()
    }

    /// Chained chits after `index`, in chain order.
    pub fn chained_after(&mut self, index: i64) -> Result<Vec<ChitRow>, MetaError> {
        self.tx
            .query(
                "reading unconfirmed chits",
                &format!(
                    "SELECT {CHIT_COLUMNS} FROM chits WHERE tally = $1 AND side = $2
                     AND status = 'chained' AND chain_idx > $3 ORDER BY chain_idx"
                ),
                args![&self.row.uuid, &self.row.side, index],
            )?
            .into_iter()
            .map(chit)
            .collect()
    }

    /// Records (or updates) a chit of this tally.
    pub fn put_chit(&mut self, row: &ChitRow) -> Result<(), MetaError> {
        upsert_chit(self.tx, row)
    }
}

/// Runs `f` on the tally `(uuid, side)` in one transaction locked on it, and writes the row
/// back; `Ok(None)` when there is no such tally.
pub(super) fn tally_tx(
    tx: &mut dyn Sql,
    uuid: &str,
    side: &str,
    f: &mut dyn FnMut(&mut TallyTx<'_>) -> Result<(), MetaError>,
) -> Result<Option<TallyRow>, MetaError> {
    tx.serialize("locking a tally", lock::TALLY, &format!("{uuid}/{side}"))?;
    let Some(row) = get_tally(tx, uuid, side)? else {
        return Ok(None);
    };
    let mut handle = TallyTx { tx, row };
    f(&mut handle)?;
    let row = handle.row;
    upsert_tally(handle.tx, &row)?;
    Ok(Some(row))
}

/// Restores rows from a backup, in one transaction: rows already present are kept.
pub(super) fn restore(
    tx: &mut dyn Sql,
    users: &[ValueUser],
    tickets: &[TallyTicketRow],
    tallies: &[TallyRow],
    chits: &[ChitRow],
) -> Result<(), MetaError> {
    for user in users {
        insert_user(tx, user)?;
    }
    for t in tickets {
        tx.execute(
            "restoring a tally ticket",
            "INSERT INTO tally_tickets (token, cuid, credit_limit, for_chad, tally_uuid, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (token) DO NOTHING",
            args![
                &t.token,
                &t.cuid,
                t.limit,
                t.for_chad.as_deref(),
                t.tally_uuid.as_deref(),
                t.created_at
            ],
        )?;
    }
    for t in tallies {
        upsert_tally(tx, t)?;
    }
    for ch in chits {
        upsert_chit(tx, ch)?;
    }
    Ok(())
}
