//! What a user's PARTNER names: a tally UUID, a CHAD (`cuid:agent[@host:port]`), or a
//! partner's name (from its certificate) or user id, among the tallies that carry chits.

use super::TallyError;
use kith_store::meta::TallyRow;
use kith_value::Chad;

/// The one tally `partner` names among `rows` (of `user`, if given).
pub(crate) fn resolve(
    rows: Vec<TallyRow>,
    user: Option<&str>,
    partner: &str,
    name_of: impl Fn(&TallyRow) -> String,
) -> Result<TallyRow, TallyError> {
    let partner = partner.trim();
    let rows: Vec<TallyRow> = rows
        .into_iter()
        .filter(|r| user.is_none_or(|u| r.cuid == u))
        .collect();
    if let Some(row) = rows.iter().find(|r| r.uuid == partner) {
        return Ok(row.clone());
    }
    let usable: Vec<&TallyRow> = rows
        .iter()
        .filter(|r| r.state == "open" || r.state == "closing")
        .collect();
    let by_chad = Chad::parse(partner).ok();
    let matches: Vec<&TallyRow> = usable
        .iter()
        .copied()
        .filter(|r| {
            let theirs = Chad::parse(&r.partner).ok();
            match (&by_chad, &theirs) {
                (Some(wanted), Some(theirs)) => wanted.same_user(theirs),
                _ => {
                    let name = name_of(r);
                    theirs.is_some_and(|t| t.cuid.eq_ignore_ascii_case(partner))
                        || (!name.is_empty() && name.eq_ignore_ascii_case(partner))
                }
            }
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(TallyError::NotFound(format!(
            "no open tally with {partner:?}: `kith tally ls` lists them (a partner is named by \
             its name, its CHAD or the tally's id)"
        ))),
        many => Err(TallyError::BadInput(format!(
            "{partner:?} names {} tallies ({}); name one by its tally id",
            many.len(),
            many.iter()
                .map(|r| r.uuid.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
