//! One node's post exchange, as a machine: messages in (`handle`), messages out
//! (`poll_transmit`), time passed in. No DHT and no consensus: a node announces what it has
//! to its neighbours, asks for what it lacks by hash, serves what it is asked for, and
//! announces what it newly stored onward, so a post spreads as far as nodes choose to keep
//! and relay it.
//!
//! Bounds: every list is capped ([`crate::message::MAX_HASHES`]); posts asked for and not yet
//! received are at most `max_in_flight` and forgotten after `request_timeout_ms`; a post
//! nobody asked for is refused (so a neighbour cannot push junk into the store); the store is
//! bounded ([`crate::store`]). Every refusal is counted, none is fatal.

use crate::community::{Community, CommunityId};
use crate::message::{Message, MAX_HASHES};
use crate::post::{self, Post, PostError, PostHash};
use crate::store::PostStore;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// The machine's bounds.
#[derive(Debug, Clone)]
pub struct PostsLimits {
    /// Largest post item, bytes.
    pub max_post: usize,
    /// Posts kept.
    pub max_posts: usize,
    /// Bytes of post items kept.
    pub max_bytes: usize,
    /// Posts asked for and not yet received.
    pub max_in_flight: usize,
    /// How long a request waits for its post.
    pub request_timeout_ms: u64,
    /// Hashes announced to a neighbour that comes up (the newest).
    pub announce_on_link: usize,
}

impl Default for PostsLimits {
    fn default() -> PostsLimits {
        PostsLimits {
            max_post: 64 * 1024,
            max_posts: 10_000,
            max_bytes: 64 * 1024 * 1024,
            max_in_flight: 4096,
            request_timeout_ms: 30_000,
            announce_on_link: MAX_HASHES,
        }
    }
}

/// What the machine counts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PostsCounters {
    /// Posts stored (own and received).
    pub stored: u64,
    /// Posts received that were here already.
    pub duplicates: u64,
    /// Posts refused: bad signature or seal.
    pub refused_bad_signature: u64,
    /// Sealed posts of communities this node does not know.
    pub refused_unknown_community: u64,
    /// Posts refused: malformed or too large.
    pub refused_malformed: u64,
    /// Posts of blocked authors.
    pub refused_blocked: u64,
    /// Posts nobody asked for.
    pub refused_unsolicited: u64,
    /// Announced hashes not asked for because too many requests were in flight.
    pub announce_skipped: u64,
}

/// One node's exchange state (`P`: how the driver names a neighbour).
#[derive(Debug)]
pub struct PostsNode<P> {
    limits: PostsLimits,
    store: PostStore,
    communities: HashMap<CommunityId, Community>,
    follows: HashSet<CommunityId>,
    blocked: HashSet<[u8; 33]>,
    neighbours: BTreeSet<P>,
    requested: HashMap<PostHash, (P, u64)>,
    out: VecDeque<(P, Message)>,
    counters: PostsCounters,
    /// Posts stored since [`PostsNode::take_stored`] last ran.
    stored_log: Vec<PostHash>,
}

impl<P: Copy + Eq + Ord + Hash> PostsNode<P> {
    /// A node with nothing yet.
    pub fn new(limits: PostsLimits) -> PostsNode<P> {
        PostsNode {
            store: PostStore::new(limits.max_posts, limits.max_bytes),
            limits,
            communities: HashMap::new(),
            follows: HashSet::new(),
            blocked: HashSet::new(),
            neighbours: BTreeSet::new(),
            requested: HashMap::new(),
            out: VecDeque::new(),
            counters: PostsCounters::default(),
            stored_log: Vec::new(),
        }
    }

    /// Learns a community's key; `follow`: keep its posts before relayed ones.
    pub fn know(&mut self, community: Community, follow: bool) {
        if follow {
            self.follows.insert(community.id());
        }
        self.communities.insert(community.id(), community);
    }

    /// Stops following a community (its key stays known, so its sealed posts can still be
    /// read and checked; posts already kept keep their class).
    pub fn unfollow(&mut self, community: &CommunityId) {
        self.follows.remove(community);
    }

    /// Whether the user follows `community`.
    pub fn follows(&self, community: &CommunityId) -> bool {
        self.follows.contains(community)
    }

    /// The community `id`, if its key is known.
    pub fn community(&self, id: &CommunityId) -> Option<&Community> {
        self.communities.get(id)
    }

    /// Every community whose key is known.
    pub fn communities(&self) -> impl Iterator<Item = &Community> {
        self.communities.values()
    }

    /// The neighbours up now.
    pub fn neighbours(&self) -> usize {
        self.neighbours.len()
    }

    /// Puts back a post kept before a restart: checked again, stored without announcing
    /// (neighbours hear of it when they come up).
    pub fn restore(&mut self, item: &[u8], followed: bool) -> Result<PostHash, PostError> {
        let communities = &self.communities;
        let post = post::check(item, self.limits.max_post, |id| communities.get(id))?;
        let hash = post.hash;
        if self.blocked.contains(&post.author) {
            return Err(PostError::Malformed("by a blocked author"));
        }
        self.store.insert(post, followed);
        Ok(hash)
    }

    /// Removes every post of `author` (after a block); returns their hashes.
    pub fn remove_author(&mut self, author: &[u8; 33]) -> Vec<PostHash> {
        let hashes = self.store.by_author(author);
        for hash in &hashes {
            self.store.remove(hash);
        }
        hashes
    }

    /// The posts stored (own and received) and evicted since the last call, for a driver
    /// that mirrors the store on disk. A post both stored and evicted since is in both.
    pub fn take_changes(&mut self) -> (Vec<PostHash>, Vec<PostHash>) {
        (
            std::mem::take(&mut self.stored_log),
            self.store.take_evicted(),
        )
    }

    /// Blocks (or unblocks) an author: its posts are neither stored nor passed on.
    pub fn block(&mut self, author: [u8; 33], blocked: bool) {
        if blocked {
            self.blocked.insert(author);
        } else {
            self.blocked.remove(&author);
        }
    }

    /// The store.
    pub fn store(&self) -> &PostStore {
        &self.store
    }

    /// The counters.
    pub fn counters(&self) -> &PostsCounters {
        &self.counters
    }

    /// A neighbour came up: it is told what this node has (the newest).
    pub fn neighbour_up(&mut self, peer: P) {
        self.neighbours.insert(peer);
        let newest = self
            .store
            .newest(self.limits.announce_on_link.min(MAX_HASHES));
        if !newest.is_empty() {
            self.out.push_back((peer, Message::Announce(newest)));
        }
    }

    /// A neighbour went away: what was asked of it is forgotten (another may announce it).
    pub fn neighbour_down(&mut self, peer: P) {
        self.neighbours.remove(&peer);
        self.requested.retain(|_, (from, _)| *from != peer);
    }

    /// The user's own post: checked like any other, kept as followed, announced to everyone.
    pub fn publish(&mut self, item: &[u8]) -> Result<PostHash, PostError> {
        let communities = &self.communities;
        let post = post::check(item, self.limits.max_post, |id| communities.get(id))?;
        let hash = post.hash;
        if self.store.insert(post, true) {
            self.counters.stored += 1;
            self.stored_log.push(hash);
        }
        self.announce(hash, None);
        Ok(hash)
    }

    /// A message from a neighbour at `now_ms`.
    pub fn handle(&mut self, now_ms: u64, from: P, message: Message) {
        match message {
            Message::Announce(hashes) => {
                let mut wanted = Vec::new();
                for hash in hashes.into_iter().take(MAX_HASHES) {
                    if self.store.contains(&hash) || self.requested.contains_key(&hash) {
                        continue;
                    }
                    if self.requested.len() >= self.limits.max_in_flight {
                        self.counters.announce_skipped += 1;
                        continue;
                    }
                    self.requested
                        .insert(hash, (from, now_ms + self.limits.request_timeout_ms));
                    wanted.push(hash);
                }
                if !wanted.is_empty() {
                    self.out.push_back((from, Message::GetData(wanted)));
                }
            }
            Message::GetData(hashes) => {
                for hash in hashes.into_iter().take(MAX_HASHES) {
                    if let Some(post) = self.store.get(&hash) {
                        self.out
                            .push_back((from, Message::PostData(post.item.clone())));
                    }
                }
            }
            Message::PostData(item) => self.received(from, &item),
        }
    }

    fn received(&mut self, from: P, item: &[u8]) {
        if item.len() > self.limits.max_post {
            self.counters.refused_malformed += 1;
            return;
        }
        let hash: PostHash = Sha256::digest(item).into();
        match self.requested.get(&hash) {
            Some((asked, _)) if *asked == from => {
                self.requested.remove(&hash);
            }
            _ => {
                if self.store.contains(&hash) {
                    self.counters.duplicates += 1;
                } else {
                    self.counters.refused_unsolicited += 1;
                }
                return;
            }
        }
        let communities = &self.communities;
        let post = match post::check(item, self.limits.max_post, |id| communities.get(id)) {
            Ok(post) => post,
            Err(PostError::BadSignature) => {
                self.counters.refused_bad_signature += 1;
                return;
            }
            Err(PostError::UnknownCommunity) => {
                self.counters.refused_unknown_community += 1;
                return;
            }
            Err(_) => {
                self.counters.refused_malformed += 1;
                return;
            }
        };
        if self.blocked.contains(&post.author) {
            self.counters.refused_blocked += 1;
            return;
        }
        let followed = self.follows.contains(&post.community);
        if self.store.insert(post, followed) {
            self.counters.stored += 1;
            self.stored_log.push(hash);
            self.announce(hash, Some(from));
        }
    }

    fn announce(&mut self, hash: PostHash, except: Option<P>) {
        for peer in &self.neighbours {
            if Some(*peer) != except {
                self.out.push_back((*peer, Message::Announce(vec![hash])));
            }
        }
    }

    /// Forgets requests whose post did not come in time.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.requested.retain(|_, (_, deadline)| *deadline > now_ms);
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<(P, Message)> {
        self.out.pop_front()
    }

    /// Posts of a community this node holds, in time order.
    pub fn posts(&self, community: &CommunityId) -> Vec<&Post> {
        self.store.of_community(community)
    }

    /// How many posts of a community this node holds.
    pub fn post_count(&self, community: &CommunityId) -> usize {
        self.store.count_of(community)
    }
}
