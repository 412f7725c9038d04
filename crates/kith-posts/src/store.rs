//! The bounded post store. Each node keeps what its user follows plus what it chooses to
//! relay, within a count and a byte budget. Eviction: relayed posts (of communities the user
//! does not follow) go first, oldest arrival first; posts of followed communities go only
//! when nothing relayed is left, again oldest first. A post is never evicted to make room for
//! a relayed post larger than the whole budget (it is refused instead).

use crate::community::CommunityId;
use crate::post::{Post, PostHash};
use std::collections::{BTreeMap, HashMap};

/// One stored post.
#[derive(Debug, Clone)]
struct Entry {
    post: Post,
    followed: bool,
    seq: u64,
}

/// The store.
#[derive(Debug)]
pub struct PostStore {
    entries: HashMap<PostHash, Entry>,
    relayed: BTreeMap<u64, PostHash>,
    followed: BTreeMap<u64, PostHash>,
    /// Posts held per community (for listings, without a walk over the store).
    per_community: HashMap<CommunityId, usize>,
    bytes: usize,
    next: u64,
    max_posts: usize,
    max_bytes: usize,
    evicted: u64,
    /// Posts evicted since [`PostStore::take_evicted`] last ran (so a driver that mirrors the
    /// store on disk deletes them there too).
    evicted_log: Vec<PostHash>,
}

impl PostStore {
    /// An empty store of at most `max_posts` posts and `max_bytes` bytes of items.
    pub fn new(max_posts: usize, max_bytes: usize) -> PostStore {
        PostStore {
            entries: HashMap::new(),
            relayed: BTreeMap::new(),
            followed: BTreeMap::new(),
            per_community: HashMap::new(),
            bytes: 0,
            next: 0,
            max_posts: max_posts.max(1),
            max_bytes,
            evicted: 0,
            evicted_log: Vec::new(),
        }
    }

    /// Whether `hash` is here.
    pub fn contains(&self, hash: &PostHash) -> bool {
        self.entries.contains_key(hash)
    }

    /// The post `hash`.
    pub fn get(&self, hash: &PostHash) -> Option<&Post> {
        self.entries.get(hash).map(|e| &e.post)
    }

    /// Posts held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Posts evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Keeps `post` (`followed`: of a community the user follows), evicting as needed.
    /// Returns false when it was here already or can never fit.
    pub fn insert(&mut self, post: Post, followed: bool) -> bool {
        let size = post.item.len();
        if self.entries.contains_key(&post.hash) || size > self.max_bytes {
            return false;
        }
        while self.entries.len() >= self.max_posts || self.bytes + size > self.max_bytes {
            let victim = match self.relayed.first_key_value() {
                Some((_, hash)) => *hash,
                None if !followed => return false,
                None => match self.followed.first_key_value() {
                    Some((_, hash)) => *hash,
                    None => return false,
                },
            };
            self.remove(&victim);
            self.evicted += 1;
            self.evicted_log.push(victim);
        }
        let seq = self.next;
        self.next += 1;
        let index = if followed {
            &mut self.followed
        } else {
            &mut self.relayed
        };
        index.insert(seq, post.hash);
        *self.per_community.entry(post.community).or_default() += 1;
        self.bytes += size;
        self.entries.insert(
            post.hash,
            Entry {
                post,
                followed,
                seq,
            },
        );
        true
    }

    /// The posts evicted since the last call.
    pub fn take_evicted(&mut self) -> Vec<PostHash> {
        std::mem::take(&mut self.evicted_log)
    }

    /// Whether `hash` is kept as a post of a followed community.
    pub fn is_followed(&self, hash: &PostHash) -> bool {
        self.entries.get(hash).is_some_and(|e| e.followed)
    }

    /// The hashes of every post by `author`.
    pub fn by_author(&self, author: &[u8; 33]) -> Vec<PostHash> {
        self.entries
            .values()
            .filter(|e| &e.post.author == author)
            .map(|e| e.post.hash)
            .collect()
    }

    /// Removes `hash`.
    pub fn remove(&mut self, hash: &PostHash) -> bool {
        let Some(entry) = self.entries.remove(hash) else {
            return false;
        };
        self.bytes -= entry.post.item.len();
        if let Some(n) = self.per_community.get_mut(&entry.post.community) {
            *n -= 1;
            if *n == 0 {
                self.per_community.remove(&entry.post.community);
            }
        }
        if entry.followed {
            self.followed.remove(&entry.seq);
        } else {
            self.relayed.remove(&entry.seq);
        }
        true
    }

    /// The hashes of the newest `n` posts, newest first: the two arrival orders merged from
    /// their ends, so the cost is `n`, not the store's size (this runs on every link-up).
    pub fn newest(&self, n: usize) -> Vec<PostHash> {
        let mut relayed = self.relayed.iter().rev().peekable();
        let mut followed = self.followed.iter().rev().peekable();
        let mut out = Vec::with_capacity(n.min(self.entries.len()));
        while out.len() < n {
            let next = match (relayed.peek(), followed.peek()) {
                (Some((r, _)), Some((f, _))) if r > f => relayed.next(),
                (_, Some(_)) => followed.next(),
                (Some(_), None) => relayed.next(),
                (None, None) => break,
            };
            out.extend(next.map(|(_, hash)| *hash));
        }
        out
    }

    /// Posts of a community held.
    pub fn count_of(&self, community: &CommunityId) -> usize {
        self.per_community.get(community).copied().unwrap_or(0)
    }

    /// Every post of a community, in the authors' time order.
    pub fn of_community(&self, community: &CommunityId) -> Vec<&Post> {
        let mut posts: Vec<&Post> = self
            .entries
            .values()
            .filter(|e| &e.post.community == community)
            .map(|e| &e.post)
            .collect();
        posts.sort_by_key(|p| (p.time, p.hash));
        posts
    }
}
