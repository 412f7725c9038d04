//! The chain's ledger as the database holds it: loading a [`Ledger`] from a tally's row and
//! its unconfirmed chits inside the tally's transaction, answering for confirmed chits from
//! the same transaction, and writing back what an operation changed.

use kith_store::meta::{ChitRow, MetaError, TallyRow, TallyTx};
use kith_value::chain::{Confirmed, Entry, Link, Outcome};
use kith_value::{Chit, Ledger, Side};
use std::cell::RefCell;

/// A chit row's document as a chit.
pub(crate) fn chit_of(row: &ChitRow) -> Result<Chit, MetaError> {
    let value: serde_json::Value = serde_json::from_str(&row.doc)
        .map_err(|e| MetaError::BadRow(format!("chit {}: {e}", row.uuid)))?;
    Chit::from_json(&value).map_err(|e| MetaError::BadRow(format!("chit {}: {e}", row.uuid)))
}

/// The side of a row.
/// The database row of `chit` on the tally `row`: `status` is `chained` (with its chain
/// position), `pend_in`, `pend_out` or `void`.
pub(crate) fn row_of(
    row: &TallyRow,
    chit: &Chit,
    status: &str,
    chain: Option<(i64, String)>,
    now: i64,
) -> ChitRow {
    let (chain_idx, chain_digest) = chain.unzip();
    ChitRow {
        tally: row.uuid.clone(),
        side: row.side.clone(),
        uuid: chit.uuid.clone(),
        doc: chit.to_json().to_string(),
        by_side: chit.by.as_str().to_owned(),
        units: chit.units as i64,
        status: status.to_owned(),
        chain_idx,
        chain_digest,
        created_at: now,
    }
}

pub(crate) fn side_of(row: &TallyRow) -> Side {
    Side::parse(&row.side).unwrap_or(Side::Foil)
}

/// Loads the ledger of the tally in `tx`.
pub(crate) fn load(tx: &mut TallyTx<'_>) -> Result<Ledger, MetaError> {
    let row = tx.row.clone();
    let mut ledger = Ledger::new(
        side_of(&row),
        row.conf_digest.clone(),
        u64::try_from(row.our_limit).unwrap_or(0),
        u64::try_from(row.their_limit).unwrap_or(0),
    );
    ledger.conf = Link {
        index: u64::try_from(row.conf_index).unwrap_or(0),
        digest: row.conf_digest.clone(),
    };
    ledger.balance = row.balance;
    for chit in tx.chained_after(row.conf_index)? {
        ledger.tail.push(Entry {
            chit: chit_of(&chit)?,
            index: chit
                .chain_idx
                .and_then(|i| u64::try_from(i).ok())
                .unwrap_or(0),
            digest: chit.chain_digest.clone().unwrap_or_default(),
        });
    }
    Ok(ledger)
}

/// Confirmed chits, read through the tally's transaction.
pub(crate) struct TxConfirmed<'t, 'a> {
    tx: RefCell<&'t mut TallyTx<'a>>,
    conf: i64,
    /// A database error met while answering (the caller aborts on it).
    pub(crate) error: RefCell<Option<MetaError>>,
}

impl<'t, 'a> TxConfirmed<'t, 'a> {
    pub(crate) fn new(tx: &'t mut TallyTx<'a>) -> TxConfirmed<'t, 'a> {
        let conf = tx.row.conf_index;
        TxConfirmed {
            tx: RefCell::new(tx),
            conf,
            error: RefCell::new(None),
        }
    }

    pub(crate) fn into_inner(self) -> (&'t mut TallyTx<'a>, Option<MetaError>) {
        (self.tx.into_inner(), self.error.into_inner())
    }

    fn note<T>(&self, result: Result<Option<T>, MetaError>) -> Option<T> {
        result.unwrap_or_else(|e| {
            *self.error.borrow_mut() = Some(e);
            None
        })
    }
}

impl Confirmed for TxConfirmed<'_, '_> {
    fn confirmed(&self, uuid: &str) -> Option<Link> {
        let row = self.note(self.tx.borrow_mut().chit(uuid))?;
        let index = row
            .chain_idx
            .filter(|i| *i <= self.conf && row.status == "chained")?;
        Some(Link {
            index: u64::try_from(index).ok()?,
            digest: row.chain_digest?,
        })
    }

    fn at(&self, index: u64) -> Option<Link> {
        let row = self.note(self.tx.borrow_mut().chit_at(i64::try_from(index).ok()?))?;
        Some(Link {
            index,
            digest: row.chain_digest?,
        })
    }

    fn entries_after(&self, index: u64, limit: usize) -> Vec<Entry> {
        let Ok(after) = i64::try_from(index) else {
            return Vec::new();
        };
        let rows = self
            .note(self.tx.borrow_mut().chained_after(after).map(Some))
            .unwrap_or_default();
        rows.into_iter()
            .filter(|r| r.chain_idx.is_some_and(|i| i <= self.conf))
            .take(limit)
            .filter_map(|r| {
                Some(Entry {
                    chit: chit_of(&r).ok()?,
                    index: u64::try_from(r.chain_idx?).ok()?,
                    digest: r.chain_digest?,
                })
            })
            .collect()
    }
}

/// Writes back the ledger after `outcome`: every unconfirmed and newly confirmed chit with
/// its position, removed chits as void, and the row's chain state and balance.
pub(crate) fn save(
    tx: &mut TallyTx<'_>,
    ledger: &mut Ledger,
    outcome: &Outcome,
    now: i64,
) -> Result<(), MetaError> {
    let row = tx.row.clone();
    let settled = std::mem::take(&mut ledger.settled);
    for entry in settled.iter().chain(ledger.tail.iter()) {
        tx.put_chit(&row_of(
            &row,
            &entry.chit,
            "chained",
            Some((entry.index as i64, entry.digest.clone())),
            now,
        ))?;
    }
    for uuid in &outcome.removed {
        if let Some(mut chit) = tx.chit(uuid)? {
            chit.status = "void".into();
            chit.chain_idx = None;
            chit.chain_digest = None;
            tx.put_chit(&chit)?;
        }
    }
    let mut row = row;
    row.conf_index = ledger.conf.index as i64;
    row.conf_digest = ledger.conf.digest.clone();
    row.balance = ledger.balance;
    row.chits = ledger.head().index as i64;
    row.updated_at = now;
    tx.set_row(row);
    Ok(())
}
