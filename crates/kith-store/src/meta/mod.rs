//! The metadata database: what the node knows *about* stored items and about its peers, behind
//! one trait.
//!
//! - **Files.** Items themselves live in the blob store; the database records which of them are
//!   user-visible files and which items each file uses, so that removing a file can delete
//!   exactly the items nobody else needs.
//! - **Key store** (`peers`, modelled on the MyCHIPs `agents` table). One row per known peer:
//!   its agent id (43 characters of unpadded base64url) and the 32-byte Ed25519 key it encodes,
//!   the host and port it advertises, the address it was last seen at, when it was first and
//!   last seen. An agent id *is* its key, so [`MetaDb::upsert_peer`] refuses a key that does
//!   not match the id, and refuses to replace a recorded key ([`MetaError::PeerKeyMismatch`]).
//! - **Blocks** (`blocked_agents`). A block is a row of its own, not a column of `peers`, so an
//!   agent can be blocked before it is ever recorded as a peer (the key store never holds a
//!   row without a key), and removing a peer does not lift its block. [`PeerRecord::blocked`]
//!   is read from this table.
//! - **Tickets** (`tickets`). First-contact tokens the site issued. [`MetaDb::redeem_ticket`]
//!   checks and records a use in one transaction (SQLite `BEGIN IMMEDIATE`, PostgreSQL an
//!   advisory lock on the token), so when several node processes share one database a
//!   one-time ticket is accepted exactly once, even if two connections redeem it at once.
//!
//! - **Placements** (`placements`, [`Placement`]). Which peers hold which of our
//!   files, and what proof-of-retention checks of them showed; bounded per peer by the caller.
//! - **Anonymous items** (`anonymous_items`, [`AnonymousItem`]). What strangers stored on the
//!   CIYAM peer port: apart from the user's files, within a small quota, each with a deadline
//!   (`anonymous.rs` has the rules).
//!
//! Methods never read the clock: the caller passes the time (unix seconds) where one is needed.
//! Later features (the chat queue) add tables here.
//!
//! Two backends implement [`MetaDb`]: SQLite (embedded, the default, one file in the data dir in
//! WAL mode with a busy timeout so a CLI process and a running node can share it; a writing and
//! a read-only connection) and PostgreSQL (for big sites). Each keeps its connections behind
//! its own mutexes, held for one statement or transaction, so a `&dyn MetaDb` is shared by
//! threads. Both are synchronous: the node calls them from `spawn_blocking`. This matters
//! for PostgreSQL in particular: the sync `postgres` client runs its own small tokio runtime
//! and panics if called on a tokio worker thread, so never call a [`MetaDb`] from async code
//! directly.
//!
//! Schema changes are versioned migrations: each backend has an ordered list of SQL scripts
//! ([`SQLITE_MIGRATIONS`], [`POSTGRES_MIGRATIONS`]) and a `schema_version` table recording how
//! many have run. Opening a database applies the missing ones in one transaction, under a
//! lock, so two processes opening the same database at once do not race. To add a table, append
//! a script to *both* lists (never edit a released one) and add methods to the trait.
//!
//! Every other statement is written once for both backends (`sql.rs` is the thin adapter:
//! placeholders, parameter and row types, transactions) in the module of its table group
//! (`files`, `peers`, `tickets`, `custody`, `placements`, `sharing`, `chat`, `anonymous`,
//! `posts`); `db.rs` is the
//! one implementation of [`MetaDb`], which says for each method whether it reads, writes or
//! runs a transaction.
//!
//! All SQL is static text with bound parameters; nothing from input is spliced into a query
//! (the exceptions: generated lists of placeholders, and a PostgreSQL schema name, validated as
//! a plain identifier first).

mod anonymous;
mod chat;
mod chat_state;
mod custody;
mod db;
mod error;
mod files;
mod folders;
mod peers;
mod pg;
mod placements;
mod posts;
mod schema;
mod sharing;
mod sql;
mod sqlite;
mod tickets;
mod value;

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::address::{ContentHash, ItemKind};

pub use anonymous::{
    anonymous_charge, AnonymousItem, AnonymousOutcome, AnonymousRecord, AnonymousUsage,
    ANONYMOUS_BLOCK,
};
pub use chat::{ChatChannelRow, ChatMessageRow, ChatQueueRow};
pub use chat_state::{ChatChannelStateRow, ChatNodeRow};
pub use custody::CustodyRecord;
pub use error::{DriverError, MetaError};
pub use folders::FolderRow;
pub use peers::{BlockedAgent, PeerRecord, PeerUpsert};
pub use pg::PostgresMeta;
pub use placements::{CheckResult, PeerRetention, Placement, PlacementOutcome, MAX_FAILURE_TEXT};
pub use posts::{PostAuthorRow, PostCommunityRow, PostRow};
pub use schema::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
pub use sqlite::SqliteMeta;
pub use tickets::{RefusalReason, TicketRecord, TicketVerdict};
pub use value::{ChitRow, TallyRow, TallyTicketRow, TallyTx, TicketClaim, ValueUser};

/// How long a database call waits for a lock held by another process before failing.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A user-visible stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file's address.
    pub hash: ContentHash,
    /// Blob (fits one item) or list (a tree of items).
    pub kind: ItemKind,
    /// Content bytes of the whole file.
    pub size: u64,
    /// A name given when it was added, if any.
    pub name: Option<String>,
    /// When it was added, in unix seconds.
    pub added_at: i64,
}

/// The metadata database. Every method is synchronous and may block on I/O or on a lock held by
/// another process (up to [`BUSY_TIMEOUT`]); call it from a blocking thread, never from async code.
///
/// Methods take `&self` and the database may be shared between threads: each backend keeps
/// its connection(s) behind its own lock, held for one statement or transaction only.
pub trait MetaDb: Send + Sync {
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;

    /// The schema version (number of migrations applied).
    fn schema_version(&self) -> Result<u32, MetaError>;

    /// Records a file and the items it uses, in one transaction. If the file is already
    /// recorded, the existing record is kept (and returned) and only missing item rows are added.
    fn insert_file(
        &self,
        record: &FileRecord,
        items: &[ContentHash],
    ) -> Result<FileRecord, MetaError>;

    /// The record of a file, if recorded.
    fn get_file(&self, hash: &ContentHash) -> Result<Option<FileRecord>, MetaError>;

    /// All recorded files, oldest first (then by hash).
    fn list_files(&self) -> Result<Vec<FileRecord>, MetaError>;

    /// Forgets a file, in one transaction. Returns `None` if it was not recorded, otherwise the
    /// items it used that no other recorded file uses (and that are neither files themselves
    /// nor a stranger's anonymous items): the items the caller may now delete.
    fn remove_file(&self, hash: &ContentHash) -> Result<Option<Vec<ContentHash>>, MetaError>;

    /// Records a folder in one transaction: its manifest as a file (as [`MetaDb::insert_file`]
    /// does, `items` being the manifest's and every one of its files' items) and the folder's
    /// description. A manifest already recorded as a file keeps its record and gains the rows.
    fn insert_folder(
        &self,
        record: &FileRecord,
        items: &[ContentHash],
        folder: &FolderRow,
    ) -> Result<FileRecord, MetaError>;

    /// The folder whose manifest is `hash`, if it is recorded as one.
    fn get_folder(&self, hash: &ContentHash) -> Result<Option<FolderRow>, MetaError>;

    /// Every recorded folder, by hash.
    fn list_folders(&self) -> Result<Vec<FolderRow>, MetaError>;

    // ---- the key store ----

    /// Records a peer, or updates a recorded one, in one transaction, and returns the row.
    ///
    /// A new peer gets `first_seen = last_seen = now`. A recorded one keeps `first_seen`, gets
    /// `last_seen = now`, and takes `host`, `port`, `last_addr` and `notes` from `peer` where
    /// those are `Some` (a `None` keeps the recorded value). Refused with
    /// [`MetaError::BadAgent`] if `peer.agent` is not the agent id of a valid `peer.agent_key`,
    /// and with [`MetaError::PeerKeyMismatch`] if the peer is recorded with another key.
    /// Recording a peer does not lift a block.
    fn upsert_peer(&self, peer: &PeerUpsert, now: i64) -> Result<PeerRecord, MetaError>;

    /// The recorded peer with this agent id, if any.
    fn get_peer(&self, agent: &str) -> Result<Option<PeerRecord>, MetaError>;

    /// All recorded peers, by agent id.
    fn list_peers(&self) -> Result<Vec<PeerRecord>, MetaError>;

    /// Forgets a peer; returns whether it was recorded. A block on the agent stays.
    fn remove_peer(&self, agent: &str) -> Result<bool, MetaError>;

    /// Notes that a recorded peer was seen at `now`, at `addr` if given (`None` keeps the
    /// recorded address). Returns whether the peer is recorded; an unknown agent is not added.
    fn touch_peer(&self, agent: &str, addr: Option<&str>, now: i64) -> Result<bool, MetaError>;

    /// Sets whether links with a recorded peer use the MyCHIPs reference library's transport
    /// cipher order (an opt-in for talking to a reference site; the default is the Noise
    /// specification's). Returns whether the agent is a recorded peer (nothing is recorded
    /// for an unknown agent: the option is not a way to make one known).
    fn set_peer_reference_order(&self, agent: &str, on: bool) -> Result<bool, MetaError>;

    /// Blocks (`blocked = true`, recording `now` as the time of the block) or unblocks an agent,
    /// whether or not it is a recorded peer. Returns whether this changed anything (`false`
    /// when the agent was already in that state). Blocking refuses a malformed agent id
    /// ([`MetaError::BadAgent`]); unblocking accepts any string.
    fn set_peer_blocked(&self, agent: &str, blocked: bool, now: i64) -> Result<bool, MetaError>;

    /// Whether the agent is blocked (known as a peer or not).
    fn is_agent_blocked(&self, agent: &str) -> Result<bool, MetaError>;

    /// All blocked agents, by agent id.
    fn list_blocked_agents(&self) -> Result<Vec<BlockedAgent>, MetaError>;

    // ---- tickets ----

    /// Records an issued ticket exactly as given. Refused with [`MetaError::BadToken`] if the
    /// token is not 32 lowercase hex digits and [`MetaError::DuplicateTicket`] if it exists.
    fn insert_ticket(&self, ticket: &TicketRecord) -> Result<(), MetaError>;

    /// The ticket with this token, if recorded.
    fn get_ticket(&self, token: &str) -> Result<Option<TicketRecord>, MetaError>;

    /// All recorded tickets, oldest first (then by token).
    fn list_tickets(&self) -> Result<Vec<TicketRecord>, MetaError>;

    /// Revokes a ticket so it is never accepted again; returns whether it exists.
    fn revoke_ticket(&self, token: &str) -> Result<bool, MetaError>;

    /// Checks a presented ticket and, if it is valid, records its use by `agent` at `now`, all in
    /// one transaction: when several connections (or processes) redeem one one-time ticket at
    /// once, exactly one gets [`TicketVerdict::Accepted`].
    ///
    /// A ticket is valid if it exists, is not revoked, `now < expires_at`, and it is reusable
    /// or unused. A reusable ticket records its last use. A refusal changes nothing and names
    /// the first reason that applies of revoked, already used, expired (or unknown).
    fn redeem_ticket(&self, token: &str, agent: &str, now: i64)
        -> Result<TicketVerdict, MetaError>;

    /// Deletes the tickets that expired at least `keep_for_secs` seconds before `now`
    /// (`expires_at + keep_for_secs <= now`), used or not; returns how many.
    fn purge_expired_tickets(&self, now: i64, keep_for_secs: i64) -> Result<u64, MetaError>;

    /// Records a file taken into custody. Taking the same content from the same owner again
    /// keeps the first record (the owner already has a copy here) and returns it.
    fn insert_custody(&self, record: &CustodyRecord) -> Result<CustodyRecord, MetaError>;

    /// The custody records of `original` (one per owner), most recent first.
    fn custody_of(&self, original: &ContentHash) -> Result<Vec<CustodyRecord>, MetaError>;

    /// Bytes held in custody in all (for the quota).
    fn custody_bytes(&self) -> Result<u64, MetaError>;

    // ---- placements (proof of retention) ----

    /// Records that `agent` holds our file `hash`, placed at `now`, in one transaction: kept
    /// as it is if recorded already, refused ([`PlacementOutcome::Full`]) if the agent has
    /// `max_per_agent` placements already.
    fn insert_placement(
        &self,
        agent: &str,
        hash: &ContentHash,
        now: i64,
        max_per_agent: u64,
    ) -> Result<PlacementOutcome, MetaError>;

    /// The placements of the agents in `agents` not checked at or after `checked_before`:
    /// never-checked ones first, then the longest unchecked, at most `limit`.
    fn due_placements(
        &self,
        agents: &[String],
        checked_before: i64,
        limit: usize,
    ) -> Result<Vec<Placement>, MetaError>;

    /// Every placement of `agent`, by hash.
    fn placements_of(&self, agent: &str) -> Result<Vec<Placement>, MetaError>;

    /// Records the result of a check of `agent`'s placement of `hash` made at `now`; a failure
    /// also adds one to the peer's `retention_failures` (if it is a recorded peer). One
    /// transaction. Returns whether the placement exists (nothing is recorded otherwise).
    fn record_check(
        &self,
        agent: &str,
        hash: &ContentHash,
        now: i64,
        result: &CheckResult,
    ) -> Result<bool, MetaError>;

    /// Forgets a placement; returns whether it was recorded.
    fn remove_placement(&self, agent: &str, hash: &ContentHash) -> Result<bool, MetaError>;

    /// Retention results of every peer with a placement, by agent id.
    fn retention_by_peer(&self) -> Result<Vec<PeerRetention>, MetaError>;

    // ---- sharing (replication) ----

    /// Marks a stored file as shared (offered to peers). `false` when it already was, or when
    /// no file has that hash.
    fn share_file(&self, hash: &ContentHash, now: i64) -> Result<bool, MetaError>;

    /// Stops offering a file; `false` when it was not shared.
    fn unshare_file(&self, hash: &ContentHash) -> Result<bool, MetaError>;

    /// Shared files, most recently shared first, at most `limit`.
    fn shared_files(&self, limit: usize) -> Result<Vec<ContentHash>, MetaError>;

    /// Records that the stored file `hash` is a replica fetched because `from` offered it
    /// (kept once: a second record of the same file changes nothing).
    fn record_replica(
        &self,
        hash: &ContentHash,
        from: &str,
        size: u64,
        now: i64,
    ) -> Result<(), MetaError>;

    /// Bytes of replicas kept for peers (for the replica quota).
    fn replica_bytes(&self) -> Result<u64, MetaError>;

    // ---- chat ----

    /// Keeps (or replaces, by key) a routed chat message until it is delivered.
    fn chat_persist(&self, row: &ChatQueueRow, now: i64) -> Result<(), MetaError>;

    /// Drops a queued chat message (an unknown key is not an error).
    fn chat_forget(&self, key: &str) -> Result<(), MetaError>;

    /// Queued chat messages, oldest first, at most `limit`.
    fn chat_queued(&self, limit: usize) -> Result<Vec<ChatQueueRow>, MetaError>;

    /// Appends a message to the log, keeping only the newest `keep`; returns its sequence
    /// number.
    fn chat_append(&self, row: &ChatMessageRow, keep: usize) -> Result<i64, MetaError>;

    /// Logged messages after sequence number `after` (of one channel, by name, if given),
    /// oldest first, at most `limit`.
    fn chat_read(
        &self,
        after: i64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessageRow>, MetaError>;

    /// Records that this node joined (or left) a channel.
    fn chat_set_joined(
        &self,
        channel: &ChatChannelRow,
        joined: bool,
        now: i64,
    ) -> Result<(), MetaError>;

    /// The channels this node is a member of, in the order it joined them (the record
    /// before migration 7, by name only; read once to carry it over).
    fn chat_joined(&self) -> Result<Vec<ChatChannelRow>, MetaError>;

    /// Whether `item` is a shared file or an item of one (what a stranger on the peer port
    /// may be served).
    fn item_shared(&self, item: &ContentHash) -> Result<bool, MetaError>;

    // ---- anonymous items (strangers on the peer port) ----

    /// In one transaction: deletes the anonymous rows whose deadline is at or before
    /// `item.stored_at`, then records `item` within `quota` bytes, evicting the oldest item of
    /// the address holding the most until it fits. Returns what happened and every item whose
    /// row went, for the caller to delete unless another record names it.
    fn record_anonymous(
        &self,
        item: &AnonymousItem,
        quota: u64,
    ) -> Result<AnonymousRecord, MetaError>;

    /// Deletes the anonymous rows whose deadline is at or before `now`; returns their items.
    fn expire_anonymous(&self, now: i64) -> Result<Vec<ContentHash>, MetaError>;

    /// Anonymous items held now, and the bytes charged for them.
    fn anonymous_usage(&self) -> Result<AnonymousUsage, MetaError>;

    /// Every anonymous item, oldest first.
    fn list_anonymous(&self) -> Result<Vec<AnonymousItem>, MetaError>;

    /// Where one of the user's own messages stands once the router has it (`recipients`
    /// expected receipts; `queued`: some have no route yet).
    fn chat_set_posted(&self, msg_id: &str, recipients: i64, queued: bool)
        -> Result<(), MetaError>;

    /// A receipt for one of the user's messages came at `at`; returns its row, if logged.
    fn chat_mark_delivered(
        &self,
        msg_id: &str,
        at: i64,
    ) -> Result<Option<ChatMessageRow>, MetaError>;

    /// One of the user's messages was given up without every receipt.
    fn chat_mark_unconfirmed(&self, msg_id: &str) -> Result<(), MetaError>;

    /// Keeps (or replaces, by id) what this node keeps of a channel it is in.
    fn chat_save_channel(&self, row: &ChatChannelStateRow, now: i64) -> Result<(), MetaError>;

    /// Drops the record of a channel this node left (an unknown id is not an error).
    fn chat_drop_channel(&self, channel_id: &str) -> Result<(), MetaError>;

    /// Every channel record, oldest change first.
    fn chat_channels(&self) -> Result<Vec<ChatChannelStateRow>, MetaError>;

    /// Records that the chat heard from `guid` at `at` (with its name, if it gave one).
    fn chat_node_seen(&self, guid: &str, name: Option<&str>, at: i64) -> Result<(), MetaError>;

    /// Blocks or unblocks, mutes or unmutes `guid` (a `None` flag stays as it was).
    fn chat_set_node_flags(
        &self,
        guid: &str,
        blocked: Option<bool>,
        muted: Option<bool>,
    ) -> Result<(), MetaError>;

    /// People the chat heard of (blocked and muted ones first), at most `limit`.
    fn chat_nodes(&self, limit: usize) -> Result<Vec<ChatNodeRow>, MetaError>;

    /// Keeps (`keep`) or forgets a ptpchat router to dial (`HOST:PORT`); true if it changed.
    fn chat_set_peer(&self, address: &str, keep: bool, now: i64) -> Result<bool, MetaError>;

    /// The ptpchat routers to keep dialled.
    fn chat_peers(&self) -> Result<Vec<String>, MetaError>;

    /// Sets (or with `None` clears) a chat setting.
    fn chat_set_setting(&self, key: &str, value: Option<&str>) -> Result<(), MetaError>;

    /// A chat setting.
    fn chat_setting(&self, key: &str) -> Result<Option<String>, MetaError>;

    // ---- posts and communities ----

    /// Keeps the posts `stored` (in arrival order) and deletes the `evicted` ones (hex
    /// hashes), in one transaction.
    fn posts_apply(
        &self,
        stored: &[PostRow],
        evicted: &[String],
        now: i64,
    ) -> Result<(), MetaError>;

    /// Every kept post, oldest arrival first.
    fn posts_all(&self) -> Result<Vec<PostRow>, MetaError>;

    /// Records (or updates) a community this node knows.
    fn posts_set_community(&self, row: &PostCommunityRow, now: i64) -> Result<(), MetaError>;

    /// Every community this node knows.
    fn posts_communities(&self) -> Result<Vec<PostCommunityRow>, MetaError>;

    /// Blocks or unblocks, mutes or unmutes a post author (a `None` flag stays as it was).
    fn posts_set_author(
        &self,
        author: &str,
        blocked: Option<bool>,
        muted: Option<bool>,
    ) -> Result<(), MetaError>;

    /// Every post author the user decided about.
    fn posts_authors(&self) -> Result<Vec<PostAuthorRow>, MetaError>;

    // ---- what items are in use (removal, garbage collection) ----

    /// Whether a record names `item`: a recorded file is it or uses it, it is the root or
    /// the pull request of a custody copy, or a stranger's anonymous item. Loose items (a
    /// custody copy fetched for decryption, a pull request) may be deleted only when this is
    /// false.
    fn item_in_use(&self, item: &ContentHash) -> Result<bool, MetaError>;

    /// The items of `items` that [`MetaDb::item_in_use`] would call in use, in a few queries.
    fn items_in_use(&self, items: &[ContentHash]) -> Result<HashSet<ContentHash>, MetaError>;

    /// Every custody record (the garbage collector keeps each copy's whole tree).
    fn list_custody(&self) -> Result<Vec<CustodyRecord>, MetaError>;

    // ---- value: users, tally tickets, tallies, chits ----

    /// Adds a user; `false` when one with that id exists (nothing changes).
    fn value_add_user(&self, user: &ValueUser) -> Result<bool, MetaError>;

    /// Every user, by id.
    fn value_users(&self) -> Result<Vec<ValueUser>, MetaError>;

    /// Records a tally ticket (its connection ticket is recorded with `insert_ticket`).
    fn value_insert_tally_ticket(&self, ticket: &TallyTicketRow) -> Result<(), MetaError>;

    /// Every tally ticket.
    fn value_tally_tickets(&self) -> Result<Vec<TallyTicketRow>, MetaError>;

    /// Claims the tally ticket `token` for the tally `tally_uuid`, presented by `agent` at
    /// `now`, in one transaction locked on the token (so two processes cannot both use it):
    /// see [`TicketClaim`].
    fn value_claim_tally_ticket(
        &self,
        token: &str,
        agent: &str,
        tally_uuid: &str,
        now: i64,
    ) -> Result<TicketClaim, MetaError>;

    /// Records a tally, or replaces the row of `(uuid, side)`.
    fn value_put_tally(&self, tally: &TallyRow) -> Result<(), MetaError>;

    /// One holder's tally.
    fn value_tally(&self, uuid: &str, side: &str) -> Result<Option<TallyRow>, MetaError>;

    /// Every tally, oldest first.
    fn value_tallies(&self) -> Result<Vec<TallyRow>, MetaError>;

    /// Runs `f` on the tally `(uuid, side)` inside one transaction that holds the tally's lock
    /// (PostgreSQL: an advisory lock; SQLite: `BEGIN IMMEDIATE`) and writes its row back when
    /// `f` succeeds; an error from `f` rolls everything back. `Ok(None)`: no such tally.
    fn value_tally_tx(
        &self,
        uuid: &str,
        side: &str,
        f: &mut dyn FnMut(&mut TallyTx<'_>) -> Result<(), MetaError>,
    ) -> Result<Option<TallyRow>, MetaError>;

    /// Records (or updates) a chit outside a chain change (an invoice, a refusal).
    fn value_put_chit(&self, chit: &ChitRow) -> Result<(), MetaError>;

    /// A tally's chits, chained ones in chain order first, at most `limit`.
    fn value_chits(&self, tally: &str, side: &str, limit: usize)
        -> Result<Vec<ChitRow>, MetaError>;

    /// The chits with this UUID (one per holder on this site).
    fn value_chit(&self, uuid: &str) -> Result<Vec<ChitRow>, MetaError>;

    /// Chits with a status (`pend_in`, `pend_out`), oldest first, at most `limit`.
    fn value_chits_with_status(
        &self,
        status: &str,
        limit: usize,
    ) -> Result<Vec<ChitRow>, MetaError>;

    /// Every chit (for a backup).
    fn value_all_chits(&self) -> Result<Vec<ChitRow>, MetaError>;

    /// Restores users, tally tickets, tallies and chits from a backup, in one transaction.
    fn value_restore(
        &self,
        users: &[ValueUser],
        tickets: &[TallyTicketRow],
        tallies: &[TallyRow],
        chits: &[ChitRow],
    ) -> Result<(), MetaError>;
}

impl std::fmt::Debug for dyn MetaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MetaDb({})", self.backend())
    }
}

/// Opens the metadata database named by `url`, or the SQLite file `default_sqlite_path` when
/// `url` is `None`, and applies pending migrations.
///
/// Accepted: `sqlite://PATH` (so `sqlite:///abs/path` or `sqlite://relative/path`), `sqlite:PATH`,
/// a bare path, and `postgres://...` / `postgresql://...` (libpq URL syntax, no TLS). Errors say
/// what is wrong: an unknown scheme, a malformed URL, or which server could not be reached.
pub fn open_meta_db(
    url: Option<&str>,
    default_sqlite_path: &Path,
) -> Result<Box<dyn MetaDb>, MetaError> {
    let Some(url) = url else {
        return Ok(Box::new(SqliteMeta::open(default_sqlite_path)?));
    };
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(MetaError::BadUrl {
            url: String::new(),
            reason: "empty".into(),
        });
    }
    if let Some((scheme, rest)) = trimmed.split_once("://") {
        return match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                if rest.is_empty() {
                    return Err(MetaError::BadUrl {
                        url: trimmed.into(),
                        reason: "no file path after sqlite://".into(),
                    });
                }
                Ok(Box::new(SqliteMeta::open(Path::new(rest))?))
            }
            "postgres" | "postgresql" => Ok(Box::new(PostgresMeta::connect(trimmed, None)?)),
            other => Err(MetaError::UnsupportedScheme {
                scheme: other.to_string(),
            }),
        };
    }
    if let Some(rest) = trimmed.strip_prefix("sqlite:") {
        if rest.is_empty() {
            return Err(MetaError::BadUrl {
                url: trimmed.into(),
                reason: "no file path after sqlite:".into(),
            });
        }
        return Ok(Box::new(SqliteMeta::open(Path::new(rest))?));
    }
    Ok(Box::new(SqliteMeta::open(Path::new(trimmed))?))
}

/// The URL with any password replaced by `***`, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

pub(crate) fn decode_record(
    hash: &str,
    kind: &str,
    size: i64,
    name: Option<String>,
    added_at: i64,
) -> Result<FileRecord, MetaError> {
    let hash = ContentHash::from_lower_hex(hash.as_bytes())
        .ok_or_else(|| MetaError::BadRow(format!("bad hash '{hash}'")))?;
    let kind = ItemKind::from_name(kind)
        .ok_or_else(|| MetaError::BadRow(format!("bad kind '{kind}' for {hash}")))?;
    let size = u64::try_from(size)
        .map_err(|_| MetaError::BadRow(format!("bad size {size} for {hash}")))?;
    Ok(FileRecord {
        hash,
        kind,
        size,
        name,
        added_at,
    })
}

pub(crate) fn decode_hash(text: &str) -> Result<ContentHash, MetaError> {
    ContentHash::from_lower_hex(text.as_bytes())
        .ok_or_else(|| MetaError::BadRow(format!("bad item hash '{text}'")))
}

pub(crate) fn size_to_db(size: u64) -> Result<i64, MetaError> {
    i64::try_from(size).map_err(|_| MetaError::BadRow(format!("size {size} too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_password_only() {
        assert_eq!(
            redact_url("postgres://kith:secret@db:5432/kith?x=1"),
            "postgres://kith:***@db:5432/kith?x=1"
        );
        assert_eq!(redact_url("postgres://db/kith"), "postgres://db/kith");
        assert_eq!(redact_url("/a/b"), "/a/b");
    }
}
