//! Posts and communities: the actions the control API carries to the posts service, and
//! their replies (one route, [`POSTS_PATH`], as for chat).

use serde::{Deserialize, Serialize};

/// Every posts action.
pub const POSTS_PATH: &str = "/v1/posts";

/// A user action.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum PostsRequest {
    /// Write a post (signed; sealed to the community's key with `sealed`). The community is
    /// followed from then on.
    Post {
        /// The community's name.
        community: String,
        /// The text.
        text: String,
        /// Sealed to the community (only those who know its name, or a closed community's
        /// secret, can read it).
        #[serde(default)]
        sealed: bool,
    },
    /// The posts of a community this node holds, oldest first.
    List {
        /// The community's name.
        community: String,
        /// Muted authors' posts too.
        #[serde(default)]
        include_muted: bool,
    },
    /// Follow a community: keep its posts before relayed ones, open its sealed posts; kept
    /// across restarts.
    Follow {
        /// Its name.
        community: String,
        /// A closed community's secret (64 hex digits), handed over by invitation.
        #[serde(default)]
        secret: Option<String>,
    },
    /// Stop following a community (its key stays known, its kept posts stay until evicted).
    Unfollow {
        /// Its name.
        community: String,
    },
    /// The communities this node knows.
    Communities,
    /// Block (or unblock) a post author: its posts are neither kept nor passed on, and the
    /// ones held are dropped; kept across restarts.
    Block {
        /// The author's content key (66 hex digits).
        author: String,
        /// Block, or lift the block.
        blocked: bool,
    },
    /// Mute (or unmute) a post author: its posts are kept and passed on, not shown.
    Mute {
        /// The author's content key (66 hex digits).
        author: String,
        /// Mute, or unmute.
        muted: bool,
    },
    /// The authors the user blocked or muted.
    Authors,
}

/// What a [`PostsRequest`] produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostsReply {
    /// Done.
    Done,
    /// The post was kept (durably) and announced to linked peers.
    Posted {
        /// Its address (sha256 of the item), hex.
        hash: String,
        /// Its community's id, hex.
        community_id: String,
        /// Linked peers it was announced to.
        announced_to: usize,
    },
    /// A community's posts.
    Posts(PostList),
    /// Communities.
    Communities(Vec<CommunityView>),
    /// Blocked and muted authors.
    Authors(Vec<kith_store::meta::PostAuthorRow>),
}

/// A community's posts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostList {
    /// Its name.
    pub community: String,
    /// Its id, hex.
    pub community_id: String,
    /// The user follows it.
    pub followed: bool,
    /// Posts, oldest first.
    pub posts: Vec<PostView>,
}

/// A post as users see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostView {
    /// Its address, hex.
    pub hash: String,
    /// The author's content key, hex.
    pub author: String,
    /// Written by this node's user.
    pub mine: bool,
    /// The author's time (its claim), RFC 3339.
    pub time: String,
    /// The same, unix seconds.
    pub time_unix: u64,
    /// The text, as written (the page shows it with `textContent` only).
    pub text: String,
    /// Sealed to the community.
    pub sealed: bool,
    /// `verified`: every post a node keeps had its signature (and a sealed post its seal)
    /// checked before it was kept; a bad one is refused and counted, never listed.
    pub signature: String,
    /// The author is muted (listed only with `include_muted`).
    pub muted: bool,
}

/// A community this node knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommunityView {
    /// Its name.
    pub name: String,
    /// Its id, hex.
    pub id: String,
    /// Closed (a random key shared by invitation) rather than derived from its name.
    pub closed: bool,
    /// The user follows it.
    pub followed: bool,
    /// Posts of it held here.
    pub posts: usize,
}
