//! Files, sharing, custody and retention: request and response bodies.

use serde::{Deserialize, Serialize};

/// What `POST /v1/files/fetch` asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FetchBody {
    /// The file's content address (64 hex), or a file ticket (`kith-file:…`): the node links
    /// to the ticket's node first (unless it is a peer already) and fetches from it, as
    /// `kith file get TICKET` does.
    pub hash: String,
    /// The one peer to ask (agent id); `None` asks every linked peer that holds the file,
    /// and fetches from all of them at once.
    pub from: Option<String>,
    /// The most units to pay the peer for it (Datt payment request); `None`: the node's
    /// `[value] max_price`.
    #[serde(default)]
    pub max_price: Option<u64>,
    /// Where the node writes the file (an absolute path), as it arrives; `None` only stores
    /// it.
    #[serde(default)]
    pub output: Option<String>,
    /// `output` is a directory: the file goes in it under the name its source gave it (or
    /// its hash).
    #[serde(default)]
    pub into_dir: bool,
    /// Replace `output` if it exists.
    #[serde(default)]
    pub force: bool,
    /// Download rate limit for this fetch, bytes per second (0 or absent: the node's
    /// setting).
    #[serde(default)]
    pub rate: Option<u64>,
    /// Where a folder goes when `output` is `None` (the file would go to stdout): a directory,
    /// in which the folder takes its name.
    #[serde(default)]
    pub folder_into: Option<String>,
}

/// What `POST /v1/files/ticket` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileTicketOrder {
    /// The stored file (64 hex).
    pub hash: String,
    /// Lifetime of the one-time node ticket inside, in seconds.
    pub ttl_secs: u64,
}

/// A freshly issued file ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedFileTicket {
    /// The file (64 hex).
    pub hash: String,
    /// The one-line form (`kith-file:…`).
    pub ticket: String,
    /// When the node ticket inside expires (RFC 3339).
    pub expires: String,
    /// Why the ticket may not work from everywhere (as for node tickets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One source's part in a fetch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceShare {
    /// The peer.
    pub agent: String,
    /// Items it delivered.
    pub items: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Items it sent that did not match their name.
    pub wrong_items: u64,
    /// Why it was dropped from the fetch (`wrongitem`, `unsolicited`, `malformed`, `stalls`,
    /// `lacks`, `gone`), if it was.
    pub dropped: Option<String>,
}

/// What a fetch did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
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
    /// The name the file has here (the one its source gave it, if any).
    #[serde(default)]
    pub name: Option<String>,
    /// Every source and its part (windowed fetches).
    #[serde(default)]
    pub sources: Vec<SourceShare>,
    /// Where the node wrote the file, if it was asked to.
    #[serde(default)]
    pub path: Option<String>,
    /// Bytes written to `path`.
    #[serde(default)]
    pub written: Option<u64>,
    /// The file was here already: nothing was fetched.
    #[serde(default)]
    pub already_present: bool,
    /// Items that did not match their name (each dropped its source).
    #[serde(default)]
    pub wrong_items: u64,
    /// The file is a folder (its manifest's address): `size` is then the bytes of all its
    /// files, `path` the folder written, `items` and `items_fetched` those of every file.
    #[serde(default)]
    pub folder: bool,
    /// A folder's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// A folder's files that were fetched (the others were here already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_fetched: Option<u64>,
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
    /// The file's size, once a source has said it.
    #[serde(default)]
    pub total: Option<u64>,
    /// The file's name, once a source has said it.
    #[serde(default)]
    pub name: Option<String>,
}
