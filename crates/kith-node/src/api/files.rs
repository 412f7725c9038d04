//! Files, sharing, custody and retention: request and response bodies.

use serde::{Deserialize, Serialize};

/// What `POST /v1/files/fetch` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchBody {
    /// The file's content address (64 hex).
    pub hash: String,
    /// The peer to ask (agent id); `None` tries every linked peer in turn.
    pub from: Option<String>,
    /// The most units to pay the peer for it (Datt payment request); `None`: the node's
    /// `[value] max_price`.
    #[serde(default)]
    pub max_price: Option<u64>,
}

/// What a fetch did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FetchReport {
    /// The file.
    pub hash: String,
    /// The peer it came from.
    pub from: String,
    /// Content bytes of the whole file.
    pub size: u64,
    /// `blob` or `list`.
    pub kind: String,
    /// Items of the file's tree (root, lists, chunks; a repeated chunk counts each time).
    pub items: u64,
    /// Items received in this fetch (the others were already here).
    pub items_fetched: u64,
}

/// What a persist (custody) did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PersistReport {
    /// The push request's hash.
    pub push_request: String,
    /// The content's hash.
    pub content: String,
    /// The custodian (agent id).
    pub custodian: String,
    /// True when the custodian held the file in custody for this key already.
    pub already: bool,
    /// Items of the file the custodian took (0 when `already`).
    #[serde(default)]
    pub items_sent: u64,
}

/// What a retrieve (custody) did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetrieveReport {
    /// The original content's hash.
    pub hash: String,
    /// The pull request's hash (stored locally).
    pub pull_request: String,
    /// The encrypted copy's hash (stored locally, with every item of its tree).
    pub encrypted: String,
    /// The custodian (agent id).
    pub custodian: String,
}

/// What `kith file share` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareReport {
    /// The file.
    pub hash: String,
    /// Its size.
    pub size: u64,
    /// False when it was shared already (it is offered again anyway).
    pub newly_shared: bool,
    /// The linked peers it was offered to now.
    pub offered_to: Vec<String>,
}

/// What one check of a placement showed, as `kith peers --check` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckReport {
    /// The peer.
    pub agent: String,
    /// The file.
    pub hash: String,
    /// The item of the file asked about.
    pub item: String,
    /// `passed`, `failed`, `inconclusive`, or `forgotten` (we no longer hold the file).
    pub result: String,
    /// Why it failed or was inconclusive.
    pub reason: Option<String>,
}

/// One transfer as the CLI sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferProgress {
    /// The file being fetched.
    pub hash: String,
    /// Bytes of items stored so far in this transfer (lists included).
    pub bytes: u64,
    /// Items stored so far in this transfer.
    pub items: u64,
    /// A background replication rather than the user's fetch.
    pub background: bool,
    /// Milliseconds since it started.
    pub elapsed_ms: u64,
}
