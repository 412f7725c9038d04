//! kith-store: the content-addressed blob store on disk and the metadata database.
//!
//! - [`datadir`]: the data dir layout and the node identity's key files ([`keyfile`]).
//! - [`address`]: content hashes and type bytes, identical to the CIYAM reference's.
//! - [`blobs`]: one verified, durably written file per item ([`BlobStore`]); [`batch`]: group
//!   commit, items staged and made durable together.
//! - [`tree`]: files larger than one item, as chunk blobs under lists (streamed both ways).
//! - [`meta`]: the metadata database behind one trait ([`MetaDb`]), SQLite or PostgreSQL: file
//!   records, the key store of peers ([`PeerRecord`]) and issued tickets ([`TicketRecord`]).
//! - [`files`]: [`FileStore`], which keeps blobs and records consistent, across processes too.
//! - [`folder`]: folders (`kith file put DIR`): a [`manifest`] of files, each a file as above.
//! - [`anonymous`]: what strangers store on the CIYAM peer port, apart from the user's files,
//!   within a quota and with a deadline ([`FileStore::put_anonymous`]).
//! - [`gc`]: the garbage collector ([`FileStore::gc`]) for what crashes leave behind, and the
//!   [`lock`] files that keep it away from live writers.
//!
//! The API is synchronous on purpose: storage is blocking I/O (files, fsync, a database
//! client), and the node calls it from `spawn_blocking`. Nothing here knows tokio.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod address;
pub mod anonymous;
pub mod batch;
pub mod blobs;
pub mod custody_copy;
pub mod datadir;
pub mod error;
pub mod files;
pub mod folder;
pub mod gc;
pub mod keyfile;
pub mod lock;
pub mod manifest;
pub mod meta;
pub mod outputs;
pub mod tree;
pub mod writer;

pub use address::{ContentHash, ItemKind, ItemType, ParseHashError};
pub use anonymous::{AnonymousPut, AnonymousStored};
pub use batch::{ItemBatch, StagedItem};
pub use blobs::{BlobStore, Item, DEFAULT_MAX_ITEM_SIZE};
pub use error::StoreError;
pub use files::{FileStore, RemoveOutcome};
pub use gc::{GcOptions, GcReport, StartupGc};
pub use lock::WriteLease;
pub use meta::{
    open_meta_db, BlockedAgent, CheckResult, FileRecord, FolderRow, MetaDb, MetaError, PeerRecord,
    PeerRetention, PeerUpsert, Placement, PlacementOutcome, PostgresMeta, RefusalReason,
    SqliteMeta, TicketRecord, TicketVerdict,
};
pub use outputs::OutputJournal;
pub use tree::{hash_file, StoredFile};
pub use writer::FileWriter;
