//! The holder's side of windowed item exchange with one peer, as plain state.
//!
//! Requests queue (at most [`ServerConfig::max_queued`]; beyond that each hash is answered
//! `B` at once, so a peer cannot make us hold more than that many requests however many it
//! sends); the driver reads ahead at most [`ServerConfig::read_ahead`] items at a time from
//! its store ([`ItemServer::poll_read`], answered by [`ItemServer::read_done`]); a `C` drops
//! queued requests that are not being read yet. Queries ask the driver
//! ([`ServerEvent::Query`], answered by [`ItemServer::answer_query`]). Answers come out of
//! [`ItemServer::poll_transmit`] in the order they are ready.
//!
//! Calling contract: after [`handle`](ItemServer::handle), [`read_done`](ItemServer::read_done)
//! or [`answer_query`](ItemServer::answer_query), drain `poll_event`, `poll_read` (start each
//! read) and `poll_transmit` (send each answer, waiting on the link's backpressure).

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;

use super::super::hash::ContentHash;
use super::wire::{Answer, Request, Response};

/// The holder's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Requests (items and queries) queued per peer; more are answered `B`.
    pub max_queued: usize,
    /// Items read from the store at once for this peer.
    pub read_ahead: usize,
}

/// A question for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// What do we hold of this file? Answer with [`ItemServer::answer_query`].
    Query(ContentHash),
}

/// What the server counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Items sent.
    pub items_sent: u64,
    /// Items asked for that we do not hold.
    pub items_missing: u64,
    /// Requests answered `B` because the queue was full.
    pub refused_busy: u64,
    /// Queued requests dropped by a `C`.
    pub cancelled: u64,
}

/// One peer's requests (see the module docs).
#[derive(Debug)]
pub struct ItemServer {
    config: ServerConfig,
    queue: VecDeque<ContentHash>,
    queries: usize,
    reading: HashSet<ContentHash>,
    events: VecDeque<ServerEvent>,
    out: VecDeque<Response>,
    stats: ServerStats,
}

impl ItemServer {
    /// An idle server.
    pub fn new(config: ServerConfig) -> ItemServer {
        ItemServer {
            config: ServerConfig {
                max_queued: config.max_queued.max(1),
                read_ahead: config.read_ahead.max(1),
            },
            queue: VecDeque::new(),
            queries: 0,
            reading: HashSet::new(),
            events: VecDeque::new(),
            out: VecDeque::new(),
            stats: ServerStats::default(),
        }
    }

    fn pending(&self) -> usize {
        self.queue.len() + self.reading.len() + self.queries
    }

    /// A request from the peer.
    pub fn handle(&mut self, request: Request) {
        match request {
            Request::Query(file) => {
                if self.pending() >= self.config.max_queued {
                    self.stats.refused_busy += 1;
                    self.out.push_back(Response::Busy(file));
                } else {
                    self.queries += 1;
                    self.events.push_back(ServerEvent::Query(file));
                }
            }
            Request::Get(hashes) => {
                for hash in hashes {
                    if self.pending() >= self.config.max_queued {
                        self.stats.refused_busy += 1;
                        self.out.push_back(Response::Busy(hash));
                    } else {
                        self.queue.push_back(hash);
                    }
                }
            }
            Request::Cancel(hashes) => {
                let cancel: HashSet<ContentHash> = hashes.into_iter().collect();
                let before = self.queue.len();
                self.queue.retain(|h| !cancel.contains(h));
                self.stats.cancelled += (before - self.queue.len()) as u64;
            }
        }
    }

    /// The next item to read from the store, while fewer than `read_ahead` are being read.
    pub fn poll_read(&mut self) -> Option<ContentHash> {
        while self.reading.len() < self.config.read_ahead {
            let hash = self.queue.pop_front()?;
            // A hash asked for twice while the first is being read is answered once.
            if self.reading.insert(hash) {
                return Some(hash);
            }
        }
        None
    }

    /// A read started by [`poll_read`](Self::poll_read) ended: the item (type byte first,
    /// verified by the store), or `None` when we do not hold it.
    pub fn read_done(&mut self, hash: ContentHash, item: Option<Bytes>) {
        if !self.reading.remove(&hash) {
            return;
        }
        match item {
            Some(item) => {
                self.stats.items_sent += 1;
                self.out.push_back(Response::Item { hash, item });
            }
            None => {
                self.stats.items_missing += 1;
                self.out.push_back(Response::Missing(hash));
            }
        }
    }

    /// A read finished and its item already went out (the driver built the `I` envelope
    /// itself, to read the item straight into it): only the bookkeeping.
    pub fn read_sent(&mut self, hash: ContentHash) {
        if self.reading.remove(&hash) {
            self.stats.items_sent += 1;
        }
    }

    /// Answers a [`ServerEvent::Query`].
    pub fn answer_query(&mut self, answer: Answer) {
        self.queries = self.queries.saturating_sub(1);
        self.out.push_back(Response::Answer(answer));
    }

    /// The next question for the driver.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The next answer to send.
    pub fn poll_transmit(&mut self) -> Option<Response> {
        self.out.pop_front()
    }

    /// Nothing queued, being read or waiting to be sent.
    pub fn is_idle(&self) -> bool {
        self.pending() == 0 && self.out.is_empty() && self.events.is_empty()
    }

    /// What it counted.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::items::wire::Holding;

    fn h(n: u8) -> ContentHash {
        ContentHash([n; 32])
    }

    #[test]
    fn reads_ahead_within_its_bound_and_answers_each_request_once() {
        let mut s = ItemServer::new(ServerConfig {
            max_queued: 8,
            read_ahead: 2,
        });
        s.handle(Request::Get(vec![h(1), h(2), h(3)]));
        assert_eq!(s.poll_read(), Some(h(1)));
        assert_eq!(s.poll_read(), Some(h(2)));
        assert_eq!(s.poll_read(), None, "two reads at a time");
        s.read_done(h(2), None);
        assert_eq!(s.poll_transmit(), Some(Response::Missing(h(2))));
        assert_eq!(s.poll_read(), Some(h(3)));
        s.read_done(h(1), Some(Bytes::from_static(b"\x01a")));
        s.read_done(h(1), Some(Bytes::from_static(b"\x01a"))); // not being read: ignored
        assert!(matches!(s.poll_transmit(), Some(Response::Item { .. })));
        assert_eq!(s.poll_transmit(), None);
        s.read_sent(h(3));
        assert!(s.is_idle());
        assert_eq!(s.stats().items_sent, 2);
    }

    #[test]
    fn a_flood_of_requests_is_answered_busy_beyond_the_queue() {
        let mut s = ItemServer::new(ServerConfig {
            max_queued: 3,
            read_ahead: 1,
        });
        s.handle(Request::Get((0..10).map(h).collect()));
        s.handle(Request::Query(h(50)));
        let busy: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
        assert_eq!(busy.len(), 8);
        assert!(busy.iter().all(|r| matches!(r, Response::Busy(_))));
        assert_eq!(s.stats().refused_busy, 8);
        // A cancel frees room.
        s.handle(Request::Cancel(vec![h(1), h(2)]));
        assert_eq!(s.stats().cancelled, 2);
        s.handle(Request::Query(h(50)));
        assert_eq!(s.poll_event(), Some(ServerEvent::Query(h(50))));
        s.answer_query(Answer {
            file: h(50),
            holding: Holding::None,
            size: 0,
            name: None,
        });
        assert!(matches!(s.poll_transmit(), Some(Response::Answer(_))));
    }
}
