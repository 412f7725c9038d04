//! The custodian's side of encrypted custody (`../shared/spec/ciyam-peer.md`,
//! `peer_persist_file`), for one CIYAM session (peer port or secure link).
//!
//! - A peer `put`s a push request (`md:raw`, the owner's public key, the content hash). It is
//!   public, so it is stored like any item. Then, by owner:
//!   - this owner already has a copy of that content here: the custodian's next own command
//!     `put`s that owner's pull request (persisting twice succeeds and changes nothing);
//!   - otherwise, within the quota (`[limits] max_custody_bytes`, 0 refuses custody) and the
//!     owners allowed per file (`max_custody_owners`), the custodian takes custody: its own
//!     commands `get` the content's items one per turn, depth first in file order (a file of
//!     one item takes one `get`, a large file one per item of its tree), and each item is
//!     encrypted into ONE copy as it arrives ([`kith_store::custody_copy`]: the design, and
//!     why the custodian never writes or keeps the plain content). When the last item is in,
//!     the copy is durable, the pull request is stored and the custody recorded; only then
//!     does the custodian `put` the pull request, which tells the owner its file is safe.
//!     Another owner of the same content gets a copy and a pull request of its own.
//! - A peer that `chk`s a file held here only in custody gets `(not found)` (only copies are
//!   here) and the custodian's next own commands `put` the pull request of every owner of
//!   that file (at most `max_custody_owners`, most recent first). Each names its owner's key
//!   (`pk:<custodian key>-<owner key>`), so an owner takes its own and ignores the others;
//!   none of them opens without its owner's password.
//! - Anything else the custodian would say comes from the session's usual policy, so a
//!   custody that is refused (or stops over the quota partway) shows as the absence of
//!   the pull request.

use super::Exchange;
use bytes::Bytes;
use kith_crypto::custody::{PullRequest, PushRequest};
use kith_crypto::identity::AgentId;
use kith_proto::files::{Command, Policy, State, TurnContext};
use kith_store::custody_copy::{CopyError, CopyWriter, TreeCursor};
use kith_store::meta::CustodyRecord;
use kith_store::{ContentHash, ItemType};
use std::collections::VecDeque;

/// Push requests one session may have waiting while another custody is being taken.
const MAX_WAITING: usize = 16;

/// Own commands one session may have queued (pull requests to `put`).
const MAX_QUEUED: usize = 256;

/// Custody bookkeeping of one session, and the commands it wants to issue.
#[derive(Debug, Default)]
pub struct Custodian {
    /// Who pays for custody in this session: the linked peer (`None` on the peer port).
    payer: Option<AgentId>,
    /// Push requests accepted, waiting for the custody being taken now, each with the bytes
    /// of copy paid for when custody is priced.
    waiting: VecDeque<(PushRequest, Option<u64>)>,
    /// The custody being taken now.
    active: Option<Active>,
    /// Own commands to issue, in order, when the state allows them.
    queued: VecDeque<Command>,
}

/// A custody being taken: the walk over the owner's tree and the copy being written.
#[derive(Debug)]
struct Active {
    owner: [u8; 33],
    original: ContentHash,
    cursor: TreeCursor,
    /// The item we asked for and wait for.
    asked: Option<ContentHash>,
    /// `None` only while a blocking task holds it, or once finished.
    copy: Option<CopyWriter>,
}

impl Drop for Active {
    /// A custody that did not finish (the session ended, the quota ran out) leaves nothing:
    /// the copy's items so far are removed, off the async threads when there are some.
    fn drop(&mut self) {
        let Some(copy) = self.copy.take() else {
            return;
        };
        let abort = move || {
            if let Err(e) = copy.abort() {
                tracing::warn!("could not remove an unfinished custody copy: {e}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(abort)),
            Err(_) => abort(),
        }
    }
}

impl Custodian {
    /// The custody of a session with a linked peer, who pays for it when custody is priced
    /// (the exchange's [`super::ServeGate`]).
    pub fn for_peer(peer: AgentId) -> Custodian {
        Custodian {
            payer: Some(peer),
            ..Custodian::default()
        }
    }

    /// Looks at an item the peer `put` (already stored): a push request makes us `put` the
    /// owner's pull request (custody held already) or take custody of its content.
    pub async fn on_item_stored(&mut self, ex: &Exchange, item: &[u8]) {
        let Some((&type_byte, content)) = item.split_first() else {
            return;
        };
        let Ok(push) = PushRequest::parse(content) else {
            return;
        };
        if type_byte != ItemType::BLOB.byte() {
            return;
        }
        let original = ContentHash(push.content_hash);
        let found = ex
            .store
            .run(move |s| {
                let used = s.meta().custody_bytes()?;
                let records = s.meta().custody_of(&original)?;
                Ok::<_, kith_store::MetaError>((used, records))
            })
            .await;
        let Ok((used, records)) = found else {
            ex.counters.custody_refused.bump();
            return;
        };
        if let Some(mine) = records.iter().find(|r| r.owner_key == push.owner_key) {
            ex.counters.custody_already.bump();
            self.queue(Command::Put {
                hash: mine.pull_request_hash,
            });
            return;
        }
        let limits = ex.node_limits();
        let busy =
            self.active
                .as_ref()
                .is_some_and(|a| a.original == original && a.owner == push.owner_key)
                || self.waiting.iter().any(|(w, _)| {
                    w.content_hash == push.content_hash && w.owner_key == push.owner_key
                });
        if busy {
            return;
        }
        if limits.max_custody_bytes == 0
            || used >= limits.max_custody_bytes
            || records.len() >= limits.max_custody_owners
            || self.waiting.len() >= MAX_WAITING
        {
            ex.counters.custody_refused.bump();
            return;
        }
        // Priced custody (Datt): only what the owner paid for, and no more bytes of copy.
        let paid = ex
            .gate()
            .and_then(|gate| gate.custody_allowance(self.payer.as_ref(), &original));
        if paid == Some(0) {
            ex.counters.custody_refused.bump();
            return;
        }
        self.waiting.push_back((push, paid));
        self.start_next(ex).await;
    }

    /// The peer `put`s `hash`. An item we hold already is not sent again (`(okay skip)`), so
    /// a push request repeated (persisting twice) is looked at here; one that is not here yet
    /// is looked at when it has been stored ([`Custodian::on_item_stored`]).
    pub async fn on_put(&mut self, ex: &Exchange, hash: ContentHash) {
        let held = super::answer::read_item(&ex.store, hash).await;
        if let Ok(Some(item)) = held {
            self.on_item_stored(ex, &item).await;
        }
    }

    /// Starts the next waiting custody when none is being taken.
    async fn start_next(&mut self, ex: &Exchange) {
        while self.active.is_none() {
            let Some((push, paid)) = self.waiting.pop_front() else {
                return;
            };
            let original = ContentHash(push.content_hash);
            let quota = ex.node_limits().max_custody_bytes;
            let setup = ex
                .store
                .run(move |s| {
                    let used = s.meta().custody_bytes()?;
                    Ok::<_, kith_store::MetaError>((s.blobs().clone(), used))
                })
                .await;
            let Ok((blobs, used)) = setup else {
                ex.counters.custody_refused.bump();
                continue;
            };
            let budget = quota.saturating_sub(used).min(paid.unwrap_or(u64::MAX));
            match CopyWriter::new(
                blobs,
                &push.owner_key,
                &original,
                budget,
                &mut rand::rngs::OsRng,
            ) {
                Ok(copy) => {
                    self.active = Some(Active {
                        owner: push.owner_key,
                        original,
                        cursor: TreeCursor::new(original),
                        asked: None,
                        copy: Some(copy),
                    })
                }
                Err(e) => {
                    tracing::info!("custody of {original} refused: {e}");
                    ex.counters.custody_refused.bump();
                }
            }
        }
    }

    fn queue(&mut self, command: Command) {
        if self.queued.len() < MAX_QUEUED && !self.queued.contains(&command) {
            self.queued.push_back(command);
        }
    }

    /// If `hash` is the item we asked for under custody, encrypts it into the copy instead
    /// of storing it. Returns `None` when the item is not ours to encrypt (store it
    /// normally). A custody that runs over the quota is dropped (and counted) without ending
    /// the session: the owner sees no pull request.
    pub async fn take_into_custody(
        &mut self,
        ex: &Exchange,
        hash: ContentHash,
        item: Bytes,
    ) -> Option<Result<(), String>> {
        let active = self.active.as_mut()?;
        if active.asked != Some(hash) {
            return None;
        }
        active.asked = None;
        let result = self.absorb(ex, item).await;
        let result = match result {
            Ok(()) => Ok(()),
            Err(CopyError::TooLarge { max }) => {
                tracing::info!("custody dropped: the copy would exceed the {max} bytes left");
                ex.counters.custody_refused.bump();
                self.active = None;
                Ok(())
            }
            Err(e) => {
                self.active = None;
                Err(e.to_string())
            }
        };
        if self.active.is_none() {
            self.start_next(ex).await;
        }
        Some(result)
    }

    /// Adds one received item to the active copy; finishes the custody after the last one.
    async fn absorb(&mut self, ex: &Exchange, item: Bytes) -> Result<(), CopyError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        let (item_type, _) = super::answer::split_item(&item)?;
        active.cursor.accept(item_type, &item[1..])?;
        let Some(mut copy) = active.copy.take() else {
            return Ok(());
        };
        let (copy, appended) = tokio::task::spawn_blocking(move || {
            let appended = copy.append_item(item_type, &item[1..]);
            (copy, appended)
        })
        .await
        .map_err(|e| CopyError::Output(std::io::Error::other(e.to_string())))?;
        active.copy = Some(copy);
        appended?;
        if active.cursor.expected().is_some() {
            return Ok(());
        }
        let copy = active.copy.take();
        let (owner, original) = (active.owner, active.original);
        self.active = None;
        let Some(copy) = copy else {
            return Ok(());
        };
        let pull = finish_custody(ex, copy, owner, original).await?;
        ex.counters.custody_accepted.bump();
        if let (Some(gate), Some(payer)) = (ex.gate(), &self.payer) {
            gate.custody_taken(payer, &original);
        }
        self.queue(Command::Put { hash: pull });
        Ok(())
    }

    /// The peer `chk`ed `hash`: if we hold it only in custody, plan to `put` the pull request
    /// of each of its owners.
    pub async fn on_chk(&mut self, ex: &Exchange, hash: ContentHash) {
        self.offer_pull_requests(ex, hash, true).await;
    }

    /// [`Custodian::on_chk`] for a peer that may not see the plain content even if it is here
    /// (a stranger on the peer port): its `chk` is `(not found)`, so the owners' pull
    /// requests are offered as when only copies are here.
    pub async fn on_chk_unseen(&mut self, ex: &Exchange, hash: ContentHash) {
        self.offer_pull_requests(ex, hash, false).await;
    }

    async fn offer_pull_requests(&mut self, ex: &Exchange, hash: ContentHash, plain_counts: bool) {
        let content = hash;
        let found = ex
            .store
            .run(move |s| {
                let have_plain = plain_counts && s.blobs().contains(&content)?;
                let custody = s.meta().custody_of(&content)?;
                Ok::<_, kith_store::StoreError>((have_plain, custody))
            })
            .await;
        if let Ok((false, records)) = found {
            for record in records.iter().take(ex.node_limits().max_custody_owners) {
                self.queue(Command::Put {
                    hash: record.pull_request_hash,
                });
            }
        }
    }

    /// Our next own command, if custody has one the state allows.
    fn next_command(&mut self, state: State) -> Option<Command> {
        if let Some(next) = self.queued.front() {
            if state.allows_from_responder(next.kind()) {
                return self.queued.pop_front();
            }
        }
        let active = self.active.as_mut()?;
        let next = active.cursor.expected()?;
        let get = Command::Get { hash: next };
        if active.asked.is_none() && state.allows_from_responder(get.kind()) {
            active.asked = Some(next);
            return Some(get);
        }
        None
    }
}

/// Seals and stores the copy, then the pull request naming it, then the record: a crash
/// leaves at worst unreferenced items, never a record without its copy. Returns the pull
/// request's address.
async fn finish_custody(
    ex: &Exchange,
    copy: CopyWriter,
    owner: [u8; 33],
    original: ContentHash,
) -> Result<ContentHash, CopyError> {
    let custodian_key = copy.custodian_key();
    let received_at = ex.settings.clock.unix_secs();
    let stored = ex
        .store
        .call(move |s| {
            let stored = copy.finish()?;
            let pull = PullRequest {
                peer_key: custodian_key,
                owner_key: Some(owner),
                encrypted_hash: stored.hash.0,
                original_hash: original.0,
            };
            let pull_request = s.blobs().put_item(ItemType::BLOB, &pull.to_bytes())?;
            let record = s
                .meta()
                .insert_custody(&CustodyRecord {
                    original_hash: original,
                    owner_key: owner,
                    encrypted_hash: stored.hash,
                    pull_request_hash: pull_request,
                    size: stored.size,
                    received_at,
                })
                .map_err(kith_store::StoreError::from)?;
            if record.encrypted_hash != stored.hash {
                // Another session took the same custody meanwhile: keep one copy.
                for item in &stored.items {
                    s.blobs().remove_item(item)?;
                }
            }
            Ok::<_, CopyError>(record.pull_request_hash)
        })
        .await
        .map_err(|e| CopyError::Output(std::io::Error::other(e)))??;
    Ok(stored)
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
        // The underlying policy sees every turn, custody's included: the reference's
        // interactive rule counts them all (the seed's third session: the pull request's `put`
        // is turn one, so turn three is a `pip`).
        let otherwise = self.inner.choose(ctx);
        self.custodian.next_command(ctx.state).unwrap_or(otherwise)
    }

    fn pip_address(&mut self) -> String {
        self.inner.pip_address()
    }
}
