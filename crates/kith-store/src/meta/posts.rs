//! Posts and communities (Datt posts, `kith_posts`): the post items this node keeps (what its
//! user follows plus what it relays; the node bounds them and deletes what it evicts), the
//! communities it knows (a closed community's secret included: see the README, the database
//! is the data dir's and as private as the key files), and what the user decided about post
//! authors (blocked, muted). Items are checked by the node before they are written here and
//! again when they are read back.

use super::sql::{args, Sql};
use super::MetaError;
use serde::{Deserialize, Serialize};

/// SQL for migration 11 (SQLite).
pub(crate) const SQLITE_MIGRATION: &str = "CREATE TABLE posts (
        hash TEXT PRIMARY KEY NOT NULL,
        community TEXT NOT NULL,
        followed INTEGER NOT NULL,
        item BLOB NOT NULL,
        received_at INTEGER NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE INDEX posts_seq ON posts(seq);
    CREATE TABLE post_communities (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        secret BLOB,
        followed INTEGER NOT NULL,
        added_at INTEGER NOT NULL
    );
    CREATE TABLE post_authors (
        author TEXT PRIMARY KEY NOT NULL,
        blocked INTEGER NOT NULL DEFAULT 0,
        muted INTEGER NOT NULL DEFAULT 0
    );";

/// SQL for migration 11 (PostgreSQL), as [`SQLITE_MIGRATION`].
pub(crate) const POSTGRES_MIGRATION: &str = "CREATE TABLE posts (
        hash TEXT PRIMARY KEY NOT NULL,
        community TEXT NOT NULL,
        followed BOOLEAN NOT NULL,
        item BYTEA NOT NULL,
        received_at BIGINT NOT NULL,
        seq BIGINT NOT NULL
    );
    CREATE INDEX posts_seq ON posts(seq);
    CREATE TABLE post_communities (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        secret BYTEA,
        followed BOOLEAN NOT NULL,
        added_at BIGINT NOT NULL
    );
    CREATE TABLE post_authors (
        author TEXT PRIMARY KEY NOT NULL,
        blocked BOOLEAN NOT NULL DEFAULT false,
        muted BOOLEAN NOT NULL DEFAULT false
    );";

/// A kept post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostRow {
    /// Its address (sha256 of the item), lowercase hex.
    pub hash: String,
    /// Its community id, lowercase hex.
    pub community: String,
    /// Kept as a post of a followed community (evicted after relayed ones).
    pub followed: bool,
    /// The item as it travels.
    pub item: Vec<u8>,
}

/// A community this node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostCommunityRow {
    /// Its id, lowercase hex.
    pub id: String,
    /// Its name.
    pub name: String,
    /// A closed community's secret (none for an open one, whose key comes from its name).
    pub secret: Option<Vec<u8>>,
    /// The user follows it.
    pub followed: bool,
}

/// What the user decided about a post author.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostAuthorRow {
    /// The author's content key, lowercase hex.
    pub author: String,
    /// Nothing of it is kept or passed on.
    pub blocked: bool,
    /// Its posts are kept and passed on, not shown.
    pub muted: bool,
}

/// Writes `stored` (new rows, in arrival order) and deletes `evicted`, in one transaction.
pub(super) fn apply(
    c: &mut dyn Sql,
    stored: &[PostRow],
    evicted: &[String],
    now: i64,
) -> Result<(), MetaError> {
    for row in stored {
        c.execute(
            "keeping a post",
            "INSERT INTO posts (hash, community, followed, item, received_at, seq)
             VALUES ($1, $2, $3, $4, $5, (SELECT COALESCE(MAX(seq), 0) + 1 FROM posts))
             ON CONFLICT (hash) DO NOTHING",
            args![&row.hash, &row.community, row.followed, &row.item[..], now],
        )?;
    }
    for hash in evicted {
        c.execute(
            "dropping a post",
            "DELETE FROM posts WHERE hash = $1",
            args![hash],
        )?;
    }
    Ok(())
}

/// Every kept post, oldest arrival first.
pub(super) fn all(c: &mut dyn Sql) -> Result<Vec<PostRow>, MetaError> {
    c.query(
        "reading posts",
        "SELECT hash, community, followed, item FROM posts ORDER BY seq",
        args![],
    )?
    .into_iter()
    .map(|row| {
        let mut c = row.cols();
        Ok(PostRow {
            hash: c.text()?,
            community: c.text()?,
            followed: c.boolean()?,
            item: c.bytes()?,
        })
    })
    .collect()
}

/// Records (or updates) a community.
pub(super) fn set_community(
    c: &mut dyn Sql,
    row: &PostCommunityRow,
    now: i64,
) -> Result<(), MetaError> {
    c.execute(
        "recording a community",
        "INSERT INTO post_communities (id, name, secret, followed, added_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, secret = excluded.secret,
            followed = excluded.followed",
        args![&row.id, &row.name, row.secret.as_deref(), row.followed, now],
    )?;
    Ok(())
}

/// Every known community, oldest first.
pub(super) fn communities(c: &mut dyn Sql) -> Result<Vec<PostCommunityRow>, MetaError> {
    c.query(
        "reading communities",
        "SELECT id, name, secret, followed FROM post_communities ORDER BY added_at, id",
        args![],
    )?
    .into_iter()
    .map(|row| {
        let mut c = row.cols();
        Ok(PostCommunityRow {
            id: c.text()?,
            name: c.text()?,
            secret: c.opt_bytes()?,
            followed: c.boolean()?,
        })
    })
    .collect()
}

/// Sets what the user decided about `author` (a flag left `None` stays as it was).
pub(super) fn set_author(
    c: &mut dyn Sql,
    author: &str,
    blocked: Option<bool>,
    muted: Option<bool>,
) -> Result<(), MetaError> {
    c.execute(
        "recording a post author",
        "INSERT INTO post_authors (author, blocked, muted) VALUES ($1, $2, $3)
         ON CONFLICT (author) DO NOTHING",
        args![author, blocked.unwrap_or(false), muted.unwrap_or(false)],
    )?;
    if let Some(b) = blocked {
        c.execute(
            "blocking a post author",
            "UPDATE post_authors SET blocked = $1 WHERE author = $2",
            args![b, author],
        )?;
    }
    if let Some(m) = muted {
        c.execute(
            "muting a post author",
            "UPDATE post_authors SET muted = $1 WHERE author = $2",
            args![m, author],
        )?;
    }
    Ok(())
}

/// Every author the user blocked or muted.
pub(super) fn authors(c: &mut dyn Sql) -> Result<Vec<PostAuthorRow>, MetaError> {
    c.query(
        "reading post authors",
        "SELECT author, blocked, muted FROM post_authors ORDER BY author",
        args![],
    )?
    .into_iter()
    .map(|row| {
        let mut c = row.cols();
        Ok(PostAuthorRow {
            author: c.text()?,
            blocked: c.boolean()?,
            muted: c.boolean()?,
        })
    })
    .collect()
}
