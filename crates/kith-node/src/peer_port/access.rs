//! What one peer-port session may be served (the rule is in the module above): shared files
//! and their items (asked of the database each time, so `kith file unshare` takes effect at
//! once), custody copies handed to this session, what this client `put` here, and the
//! built-in hello file; or everything, when the store is open.
//!
//! The session's own commands are not the client's questions: the custodian `put`s pull
//! requests and the reference's rule `put`s the hello file or `chk`s a prior put with a
//! nonce, and each of those reads an item the node chose. [`Access::note_own`] marks the one
//! read each such command makes, so only the client's own questions are filtered.

use crate::exchange::answer::split_item;
use crate::exchange::Exchange;
use crate::store::StoreFailure;
use kith_crypto::custody::PullRequest;
use kith_proto::files::{Command, ContentHash, Target};
use kith_store::ItemType;
use std::collections::HashSet;

/// Items one session remembers as its own (put here, or handed over by custody): bounded,
/// so a session cannot grow memory without end. 16,384 hashes are half a megabyte; the
/// anonymous quota holds at most 4,096 items, and a custody copy needs one entry per item of
/// its tree (a copy of 16 GB at 1 MB items). Past the bound nothing more is remembered, and
/// what was not remembered is not served.
pub(super) const MAX_REMEMBERED: usize = 16_384;

/// What one session may be served.
#[derive(Debug)]
pub(super) struct Access {
    /// The store is open to strangers (`peer_port_open_store`).
    open: bool,
    /// Items this client put here (received whole and stored, or the hello file).
    put: HashSet<ContentHash>,
    /// Items custody handed to this session: pull requests and their copies, and the items
    /// of a copy's lists as they are served.
    granted: HashSet<ContentHash>,
    /// The item our own command is about to read (not the client's question).
    own_read: Option<ContentHash>,
}

impl Access {
    pub(super) fn new(open: bool) -> Access {
        Access {
            open,
            put: HashSet::new(),
            granted: HashSet::new(),
            own_read: None,
        }
    }

    fn remembered(&self) -> usize {
        self.put.len() + self.granted.len()
    }

    /// Whether the client may learn that `hash` is here, and have it.
    pub(super) async fn may_see(
        &self,
        ex: &Exchange,
        hash: ContentHash,
    ) -> Result<bool, StoreFailure> {
        if self.open
            || hash == ContentHash::hello()
            || self.put.contains(&hash)
            || self.granted.contains(&hash)
        {
            return Ok(true);
        }
        let item = hash;
        ex.store().run(move |s| s.meta().item_shared(&item)).await
    }

    /// The client put `hash` in this session (it has been stored).
    pub(super) fn note_put(&mut self, hash: ContentHash) {
        if self.remembered() < MAX_REMEMBERED {
            self.put.insert(hash);
        }
    }

    /// We chose `cmd` as our own command: the read it makes, if any, is ours.
    pub(super) fn note_own(&mut self, cmd: &Command) {
        self.own_read = match cmd {
            Command::Put { hash }
            | Command::Chk {
                target: Target::Hash(hash),
                nonce: Some(_),
            } => Some(*hash),
            _ => None,
        };
    }

    /// Whether this read of `hash` is the one our own command makes (then it is not filtered).
    pub(super) fn take_own(&mut self, hash: ContentHash) -> bool {
        if self.own_read == Some(hash) {
            self.own_read = None;
            return true;
        }
        false
    }

    /// We are sending `item` by our own choice: a pull request grants this session the copy
    /// it names (the session is the owner's, as custody knows owners).
    pub(super) fn on_own_item(&mut self, hash: ContentHash, item: &[u8]) {
        let Ok((item_type, content)) = split_item(item) else {
            return;
        };
        if item_type != ItemType::BLOB {
            return;
        }
        if let Ok(pull) = PullRequest::parse(content) {
            self.grant(hash);
            self.grant(ContentHash(pull.encrypted_hash));
        }
    }

    /// We are serving the client `item`: the items a granted list names (a custody copy's
    /// tree, which no table lists) are granted in turn.
    pub(super) fn on_served(&mut self, hash: ContentHash, item: &[u8]) {
        if self.open || !self.granted.contains(&hash) {
            return;
        }
        let Ok((item_type, content)) = split_item(item) else {
            return;
        };
        if item_type != ItemType::LIST {
            return;
        }
        if let Ok(children) = kith_store::tree::parse_list(content) {
            for child in children {
                self.grant(child);
            }
        }
    }

    fn grant(&mut self, hash: ContentHash) {
        if self.remembered() < MAX_REMEMBERED {
            self.granted.insert(hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_read_our_own_command_makes_is_ours() {
        let mut access = Access::new(false);
        let h = ContentHash([7; 32]);
        assert!(!access.take_own(h));
        access.note_own(&Command::Put { hash: h });
        assert!(
            !access.take_own(ContentHash([8; 32])),
            "another item is the client's"
        );
        assert!(access.take_own(h));
        assert!(!access.take_own(h), "one read only");
        access.note_own(&Command::Get { hash: h });
        assert!(!access.take_own(h), "a get reads nothing of ours");
    }

    #[test]
    fn a_granted_list_grants_its_items_and_nothing_else_does() {
        let mut access = Access::new(false);
        let child = [3u8; 32];
        let mut list = vec![ItemType::LIST.byte()];
        list.extend(hex::encode(child).as_bytes());
        let list_hash = ContentHash([1; 32]);
        access.on_served(list_hash, &list);
        assert!(
            !access.granted.contains(&ContentHash(child)),
            "not granted: ignored"
        );
        access.grant(list_hash);
        access.on_served(list_hash, &list);
        assert!(access.granted.contains(&ContentHash(child)));
    }

    #[test]
    fn what_a_session_remembers_is_bounded() {
        let mut access = Access::new(false);
        for i in 0..(MAX_REMEMBERED as u32 + 10) {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            access.note_put(ContentHash(h));
        }
        assert_eq!(access.remembered(), MAX_REMEMBERED);
    }
}
