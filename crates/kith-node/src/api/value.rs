//! The value routes' types: users, tally tickets, tallies and chits.
//!
//! Routes (under `/v1/value`): `POST ticket` [`TallyTicketOrder`] → [`IssuedTallyTicket`];
//! `POST open` [`TallyOpenBody`] → [`TallyView`]; `GET tallies` → [`TallyView`]s;
//! `POST show` [`TallyIdBody`] → [`TallyDetail`]; `POST close` [`TallyIdBody`] →
//! [`TallyView`]; `POST pay` and `POST invoice` [`PayBody`] → [`ChitView`];
//! `POST chit` [`ChitAnswerBody`] → [`ChitView`].

use serde::{Deserialize, Serialize};

/// Issue a tally ticket.
pub const TALLY_TICKET_PATH: &str = "/v1/value/ticket";
/// Open a tally with a ticket.
pub const TALLY_OPEN_PATH: &str = "/v1/value/open";
/// List tallies.
pub const TALLIES_PATH: &str = "/v1/value/tallies";
/// One tally and its chits.
pub const TALLY_SHOW_PATH: &str = "/v1/value/show";
/// Close a tally.
pub const TALLY_CLOSE_PATH: &str = "/v1/value/close";
/// Pay a partner.
pub const PAY_PATH: &str = "/v1/value/pay";
/// Invoice a partner.
pub const INVOICE_PATH: &str = "/v1/value/invoice";
/// Accept or refuse an invoice.
pub const CHIT_ANSWER_PATH: &str = "/v1/value/chit";

/// What `kith tally ticket` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TallyTicketOrder {
    /// The inviting user (`None`: the only one).
    pub user: Option<String>,
    /// The credit the user grants the partner, in units.
    pub limit: u64,
    /// Only this partner (`cuid:agent`) may use it.
    pub for_chad: Option<String>,
    /// Lifetime in seconds.
    pub ttl_secs: u64,
}

/// An issued tally ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedTallyTicket {
    /// The one-line form (a connection ticket that also invites a tally).
    pub line: String,
    /// The MyCHIPs JSON form.
    pub ticket: crate::ticket::Ticket,
    /// The inviting user.
    pub user: String,
    /// The credit granted.
    pub limit: u64,
    /// The only partner allowed, if any.
    pub for_chad: Option<String>,
}

/// What `kith tally open` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TallyOpenBody {
    /// The tally ticket, either form.
    pub ticket: String,
    /// Our user (`None`: the only one).
    pub user: Option<String>,
    /// The credit our user grants the partner.
    pub limit: u64,
}

/// A tally as users see it (`kith tally ls --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TallyView {
    /// The tally's UUID (the same on both sides).
    pub tally: String,
    /// Our user.
    pub user: String,
    /// The partner's CHAD.
    pub partner: String,
    /// The partner's name, from its certificate.
    pub partner_name: String,
    /// Our side: `stock` or `foil`.
    pub side: String,
    /// `open` once both signed; `offer`, `peer_offer`, `draft`, `void`, `closing`, `close`.
    pub state: String,
    /// The credit our user grants the partner, in units.
    pub limit: i64,
    /// The credit the partner grants our user.
    pub partner_limit: i64,
    /// What the partner owes our user (negative: what our user owes), in units.
    pub balance: i64,
    /// Chits chained.
    pub chits: i64,
    /// The last chain index both sides confirmed.
    pub conf: i64,
}

/// A tally named by UUID, partner name or CHAD.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TallyIdBody {
    /// The tally.
    pub tally: String,
    /// Our user, when several could match.
    #[serde(default)]
    pub user: Option<String>,
}

/// A tally with its chits and document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TallyDetail {
    /// The tally.
    #[serde(flatten)]
    pub view: TallyView,
    /// Its chits, chained ones in chain order.
    pub chit_list: Vec<ChitView>,
    /// The signed tally document.
    pub document: serde_json::Value,
}

/// What `kith pay` and `kith invoice` ask for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayBody {
    /// A partner's name, CHAD or tally UUID.
    pub partner: String,
    /// Units.
    pub units: u64,
    /// A note.
    pub memo: Option<String>,
    /// Our user, when several could match.
    #[serde(default)]
    pub user: Option<String>,
}

/// A chit as its holder sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChitView {
    /// The chit's UUID.
    pub id: String,
    /// The tally.
    pub tally: String,
    /// `chained`, `pend_in` (an invoice for us to answer), `pend_out` (ours, unanswered),
    /// `void`.
    pub status: String,
    /// Units from our user's side: negative when our user gives them.
    pub units: i64,
    /// Its chain index, once chained.
    pub index: Option<i64>,
    /// Its note.
    pub memo: Option<String>,
    /// Its date.
    pub date: String,
    /// What it refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<serde_json::Value>,
}

/// Accept or refuse an invoice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChitAnswerBody {
    /// The invoice's chit UUID.
    pub id: String,
    /// Accept (pay it) or refuse.
    pub accept: bool,
}
