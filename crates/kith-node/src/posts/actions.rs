//! The control API's posts actions (`PostsRequest`), on the service.

use super::Posts;
use crate::api::{CommunityView, PostList, PostView, PostsReply, PostsRequest};
use crate::store::StoreFailure;
use kith_posts::community::CommunityError;
use kith_posts::{post, Community, PostError};
use kith_store::meta::PostCommunityRow;
use std::time::{Duration, UNIX_EPOCH};

/// Why a posts action failed (shown to the user as is).
#[derive(Debug, thiserror::Error)]
pub enum PostsError {
    /// A bad community name or secret.
    #[error(transparent)]
    Community(#[from] CommunityError),
    /// The post was refused.
    #[error(transparent)]
    Post(#[from] PostError),
    /// Bad input.
    #[error("{0}")]
    BadInput(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreFailure),
}

impl From<kith_store::MetaError> for PostsError {
    fn from(e: kith_store::MetaError) -> PostsError {
        PostsError::Store(StoreFailure::Meta(e))
    }
}

impl PostsError {
    /// Whether the caller's input is at fault (a 400, not a 500).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, PostsError::Store(_))
    }
}

/// An author's content key from its 66 hex digits.
pub(crate) fn parse_author(text: &str) -> Result<[u8; 33], PostsError> {
    let bad = || PostsError::BadInput(format!("not an author key (66 hex digits): {text:.80}"));
    let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

fn parse_secret(text: &str) -> Result<[u8; 32], PostsError> {
    let bad = || PostsError::BadInput("a community secret is 64 hex digits".into());
    let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

fn rfc3339(secs: u64) -> String {
    // Clamped: an author's claim far in the future must not overflow the formatter.
    let secs = secs.min(253_402_300_799);
    crate::ticket::format_time(UNIX_EPOCH + Duration::from_secs(secs))
}

impl Posts {
    /// Carries out one control API action.
    pub async fn request(&self, request: PostsRequest) -> Result<PostsReply, PostsError> {
        self.wait_ready().await;
        match request {
            PostsRequest::Post {
                community,
                text,
                sealed,
            } => self.post(&community, &text, sealed).await,
            PostsRequest::List {
                community,
                include_muted,
            } => Ok(PostsReply::Posts(self.list(&community, include_muted)?)),
            PostsRequest::Follow { community, secret } => {
                let community = match secret {
                    Some(secret) => Community::closed(&community, &parse_secret(&secret)?)?,
                    None => self.community(&community)?,
                };
                self.follow(community, true).await?;
                Ok(PostsReply::Done)
            }
            PostsRequest::Unfollow { community } => {
                let community = self.community(&community)?;
                self.follow(community, false).await?;
                Ok(PostsReply::Done)
            }
            PostsRequest::Communities => Ok(PostsReply::Communities(self.communities())),
            PostsRequest::Block { author, blocked } => {
                self.block(parse_author(&author)?, blocked).await?;
                Ok(PostsReply::Done)
            }
            PostsRequest::Mute { author, muted } => {
                let key = parse_author(&author)?;
                let hex = hex::encode(key);
                self.inner
                    .store
                    .run(move |s| s.meta().posts_set_author(&hex, None, Some(muted)))
                    .await?;
                if muted {
                    self.muted_set().insert(key);
                } else {
                    self.muted_set().remove(&key);
                }
                self.inner.changed.send_modify(|n| *n += 1);
                Ok(PostsReply::Done)
            }
            PostsRequest::Authors => Ok(PostsReply::Authors(
                self.inner.store.run(|s| s.meta().posts_authors()).await?,
            )),
        }
    }

    /// The community `name`: a known closed one of that name, else the open one.
    fn community(&self, name: &str) -> Result<Community, PostsError> {
        let normal = kith_posts::community::normalise(name)?;
        let m = self.machine();
        if let Some(c) = m.communities().find(|c| c.name == normal && c.is_closed()) {
            return Ok(c.clone());
        }
        Ok(Community::open(&normal)?)
    }

    async fn follow(&self, community: Community, follow: bool) -> Result<(), PostsError> {
        let closed = community.is_closed();
        let row = PostCommunityRow {
            id: hex::encode(community.id()),
            name: community.name.clone(),
            secret: closed.then(|| {
                super::at_rest::seal(
                    &mut rand::rngs::OsRng,
                    &self.inner.settings.author,
                    &community.id(),
                    &community.key().secret_bytes(),
                )
            }),
            followed: follow,
        };
        let now = self.inner.settings.clock.unix_secs();
        self.inner
            .store
            .run(move |s| s.meta().posts_set_community(&row, now))
            .await?;
        let mut m = self.machine();
        if follow {
            m.know(community, true);
        } else {
            let id = community.id();
            m.know(community, false);
            m.unfollow(&id);
        }
        Ok(())
    }

    async fn block(&self, author: [u8; 33], blocked: bool) -> Result<(), PostsError> {
        let hex = hex::encode(author);
        self.inner
            .store
            .run(move |s| s.meta().posts_set_author(&hex, Some(blocked), None))
            .await?;
        let dropped = {
            let mut m = self.machine();
            m.block(author, blocked);
            if blocked {
                m.remove_author(&author)
            } else {
                Vec::new()
            }
        };
        if !dropped.is_empty() {
            let dropped: Vec<String> = dropped.iter().map(hex::encode).collect();
            self.inner
                .store
                .run(move |s| s.meta().posts_apply(&[], &dropped, 0))
                .await?;
            self.inner.changed.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    async fn post(&self, name: &str, text: &str, sealed: bool) -> Result<PostsReply, PostsError> {
        if text.trim().is_empty() {
            return Err(PostsError::BadInput("a post needs some text".into()));
        }
        let community = self.community(name)?;
        let limit = self.inner.settings.limits.max_post;
        if text.len() > limit {
            return Err(PostError::TooLarge {
                len: text.len(),
                max: limit,
            }
            .into());
        }
        let known = self.machine().follows(&community.id());
        if !known {
            self.follow(community.clone(), true).await?;
        }
        let time = u64::try_from(self.inner.settings.clock.unix_secs()).unwrap_or(0);
        let item = post::create(
            &self.inner.settings.author,
            &community,
            time,
            text,
            sealed,
            &mut rand::rngs::OsRng,
        )?;
        let (hash, announced_to) = {
            let mut m = self.machine();
            let hash = m.publish(&item)?;
            (hash, m.neighbours())
        };
        // Written before this answers and before the announces leave.
        self.flush().await;
        Ok(PostsReply::Posted {
            hash: hex::encode(hash),
            community_id: hex::encode(community.id()),
            announced_to,
        })
    }

    /// The posts of community `name` held here, oldest first.
    pub fn list(&self, name: &str, include_muted: bool) -> Result<PostList, PostsError> {
        let community = self.community(name)?;
        let me = self.inner.settings.author.public_key();
        let muted = self.muted_set().clone();
        let m = self.machine();
        let posts = m
            .posts(&community.id())
            .into_iter()
            .filter(|p| include_muted || !muted.contains(&p.author))
            .map(|p| PostView {
                hash: hex::encode(p.hash),
                author: hex::encode(p.author),
                mine: p.author == me,
                time: rfc3339(p.time),
                time_unix: p.time,
                text: p.body.clone(),
                sealed: p.sealed,
                signature: "verified".into(),
                muted: muted.contains(&p.author),
            })
            .collect();
        Ok(PostList {
            community: community.name.clone(),
            community_id: hex::encode(community.id()),
            followed: m.follows(&community.id()),
            posts,
        })
    }

    /// The communities this node knows.
    pub fn communities(&self) -> Vec<CommunityView> {
        let m = self.machine();
        let mut out: Vec<CommunityView> = m
            .communities()
            .map(|c| CommunityView {
                name: c.name.clone(),
                id: hex::encode(c.id()),
                closed: c.is_closed(),
                followed: m.follows(&c.id()),
                posts: m.post_count(&c.id()),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out
    }
}
