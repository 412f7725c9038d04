//! The custodian's side of encrypted custody (`../shared/spec/ciyam-peer.md`,
//! `peer_persist_file`), for one CIYAM session.
//!
//! - A peer `put`s a push request (`md:raw`, the owner's public key, the content hash). It is
//!   public, so it is stored like any item. If custody is accepted (within the quota), the
//!   custodian's next own command is `get <content hash>`.
//! - When that content arrives it is encrypted at once under a fresh key pair
//!   ([`kith_crypto::custody`]) and only the copy is stored; the plain bytes never reach the
//!   store, and the fresh secret is forgotten. A pull request naming the copy is stored for
//!   the owner, and the custody is recorded in the database.
//! - A peer that `chk`s a file held in custody gets `(not found)` (only the copy is here) and
//!   the custodian's next own command is `put <pull request>`; the owner then `get`s the copy
//!   and decrypts it locally.
//!
//! Custody currently holds files of one item (up to `max_item`); a list is refused.

use crate::node::NodeState;
use bytes::Bytes;
use kith_crypto::custody::{self, PullRequest, PushRequest};
use kith_proto::files::{Command, ItemHash, Policy, TurnContext};
use kith_store::meta::CustodyRecord;
use kith_store::{ContentHash, ItemType};
use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

/// Custody bookkeeping of one session, and the commands it wants to issue.
#[derive(Debug, Default)]
pub struct Custodian {
    /// Content we asked for, by hash, with its owner's key. Bounded by `MAX_PENDING`.
    pending: HashMap<ItemHash, [u8; 33]>,
    /// Own commands to issue, in order, when the state allows them.
    queued: VecDeque<Command>,
}

/// Push requests one session may have outstanding.
const MAX_PENDING: usize = 16;

impl Custodian {
    /// Looks at an item the peer `put` (already stored): a push request within the quota
    /// makes us `get` its content next.
    pub async fn on_item_stored(&mut self, state: &NodeState, item: &[u8]) {
        let Some((&type_byte, content)) = item.split_first() else {
            return;
        };
        let Ok(push) = PushRequest::parse(content) else {
            return;
        };
        if type_byte != ItemType::BLOB.byte() {
            return;
        }
        let quota = state.config.limits.max_custody_bytes;
        let used = state.with_store(|s| s.meta().custody_bytes()).await;
        let within = matches!(used, Ok(Ok(used)) if used < quota);
        if quota == 0 || !within || self.pending.len() >= MAX_PENDING {
            state.counters.bump("custody_refused");
            return;
        }
        let hash = ItemHash(push.content_hash);
        self.pending.insert(hash, push.owner_key);
        self.queued.push_back(Command::Get { hash });
    }

    /// If `hash` is content we asked for under custody, takes it into custody instead of
    /// storing it. Returns `None` when the item is not ours to encrypt (store it normally).
    pub async fn take_into_custody(
        &mut self,
        state: &NodeState,
        hash: ItemHash,
        item: Bytes,
    ) -> Option<Result<(), String>> {
        let owner = self.pending.remove(&hash)?;
        Some(encrypt_and_keep(state, owner, hash, item).await)
    }

    /// The peer `chk`ed `hash`: if we hold it only in custody, plan to `put` its pull request.
    pub async fn on_chk(&mut self, state: &NodeState, hash: ItemHash) {
        let content = ContentHash(hash.0);
        let found = state
            .with_store(move |s| {
                let have_plain = s.blobs().contains(&content)?;
                let custody = s.meta().custody_of(&content)?;
                Ok::<_, kith_store::StoreError>((have_plain, custody))
            })
            .await;
        if let Ok(Ok((false, records))) = found {
            if let Some(record) = records.first() {
                self.queued.push_back(Command::Put {
                    hash: ItemHash(record.pull_request_hash.0),
                });
            }
        }
    }
}

/// The session's policy on a custodian: custody commands first, when the state allows them,
/// otherwise the underlying policy.
pub struct CustodianPolicy<'a, P: Policy> {
    /// Planned custody commands.
    pub custodian: &'a mut Custodian,
    /// What decides otherwise.
    pub inner: &'a mut P,
}

impl<P: Policy> Policy for CustodianPolicy<'_, P> {
    fn choose(&mut self, ctx: &TurnContext) -> Command {
        if let Some(next) = self.custodian.queued.front() {
            if ctx.state.allows_from_responder(next.kind()) {
                if let Some(cmd) = self.custodian.queued.pop_front() {
                    return cmd;
                }
            }
        }
        self.inner.choose(ctx)
    }

    fn pip_address(&mut self) -> String {
        self.inner.pip_address()
    }
}

async fn encrypt_and_keep(
    state: &NodeState,
    owner: [u8; 33],
    hash: ItemHash,
    item: Bytes,
) -> Result<(), String> {
    let Some((&type_byte, content)) = item.split_first() else {
        return Err("empty item".into());
    };
    if type_byte != ItemType::BLOB.byte() {
        state.counters.bump("custody_refused");
        return Err("custody of multi-item files is not supported yet".into());
    }
    let copy = custody::encrypt(&owner, &hash.0, content, &mut rand::rngs::OsRng)
        .map_err(|e| e.to_string())?;
    let custodian_key = custody::CustodyHeader::parse(&copy)
        .map_err(|e| e.to_string())?
        .custodian_key();
    let received_at = crate::ticket::unix_secs(SystemTime::now());
    let size = copy.len() as u64;
    let encrypted_type = ItemType::BLOB
        .with_flags(ItemType::FLAG_ENCRYPTED)
        .map_err(|e| format!("type byte {}", e.0))?;
    state
        .with_store(move |s| {
            // The copy first, then the pull request naming it, then the record: a crash
            // leaves at worst unreferenced items, never a record without its copy.
            let encrypted = s.blobs().put_item(encrypted_type, &copy)?;
            let pull = PullRequest {
                peer_key: custodian_key,
                owner_key: Some(owner),
                encrypted_hash: encrypted.0,
                original_hash: hash.0,
            };
            let pull_request = s.blobs().put_item(ItemType::BLOB, &pull.to_bytes())?;
            s.meta().insert_custody(&CustodyRecord {
                original_hash: ContentHash(hash.0),
                owner_key: owner,
                encrypted_hash: encrypted,
                pull_request_hash: pull_request,
                size,
                received_at,
            })?;
            Ok::<_, kith_store::StoreError>(())
        })
        .await?
        .map_err(|e| e.to_string())?;
    state.counters.bump("custody_accepted");
    Ok(())
}
