//! The one implementation of [`MetaDb`], for every backend: each method says whether it reads,
//! writes (one statement) or runs a transaction, and hands over to its table group's module.

use std::collections::HashSet;

use super::anonymous::{self, AnonymousItem, AnonymousRecord, AnonymousUsage};
use super::chat::{self, ChatChannelRow, ChatMessageRow, ChatQueueRow};
use super::chat_state::{self, ChatChannelStateRow, ChatNodeRow};
use super::custody::{self, CustodyRecord};
use super::placements::{self, CheckResult, PeerRetention, Placement, PlacementOutcome};
use super::posts::{self, PostAuthorRow, PostCommunityRow, PostRow};
use super::sql::Backend;
use super::value::{self, ChitRow, TallyRow, TallyTicketRow, TallyTx, TicketClaim, ValueUser};
use super::{files, folders, peers, schema, sharing, tickets};
use super::{
    BlockedAgent, FileRecord, FolderRow, MetaDb, MetaError, PeerRecord, PeerUpsert, TicketRecord,
    TicketVerdict,
};
use crate::address::ContentHash;

impl<B: Backend> MetaDb for B {
    fn backend(&self) -> &'static str {
        B::NAME
    }

    fn schema_version(&self) -> Result<u32, MetaError> {
        self.read(schema::version)
    }

    fn insert_file(
        &self,
        record: &FileRecord,
        items: &[ContentHash],
    ) -> Result<FileRecord, MetaError> {
        self.transaction("inserting file", |tx| files::insert(tx, record, items))
    }

    fn get_file(&self, hash: &ContentHash) -> Result<Option<FileRecord>, MetaError> {
        self.read(|c| files::get(c, hash))
    }

    fn list_files(&self) -> Result<Vec<FileRecord>, MetaError> {
        self.read(files::list)
    }

    fn remove_file(&self, hash: &ContentHash) -> Result<Option<Vec<ContentHash>>, MetaError> {
        self.transaction("removing file", |tx| files::remove(tx, hash))
    }

    fn insert_folder(
        &self,
        record: &FileRecord,
        items: &[ContentHash],
        folder: &FolderRow,
    ) -> Result<FileRecord, MetaError> {
        self.transaction("recording folder", |tx| {
            folders::insert(tx, record, items, folder)
        })
    }

    fn get_folder(&self, hash: &ContentHash) -> Result<Option<FolderRow>, MetaError> {
        self.read(|c| folders::get(c, hash))
    }

    fn list_folders(&self) -> Result<Vec<FolderRow>, MetaError> {
        self.read(folders::list)
    }

    fn upsert_peer(&self, peer: &PeerUpsert, now: i64) -> Result<PeerRecord, MetaError> {
        self.transaction("recording peer", |tx| peers::upsert(tx, peer, now))
    }

    fn get_peer(&self, agent: &str) -> Result<Option<PeerRecord>, MetaError> {
        self.read(|c| peers::get(c, agent))
    }

    fn list_peers(&self) -> Result<Vec<PeerRecord>, MetaError> {
        self.read(peers::list)
    }

    fn remove_peer(&self, agent: &str) -> Result<bool, MetaError> {
        self.write(|c| peers::remove(c, agent))
    }

    fn touch_peer(&self, agent: &str, addr: Option<&str>, now: i64) -> Result<bool, MetaError> {
        self.write(|c| peers::touch(c, agent, addr, now))
    }

    fn set_peer_reference_order(&self, agent: &str, on: bool) -> Result<bool, MetaError> {
        self.write(|c| peers::set_reference_order(c, agent, on))
    }

    fn set_peer_blocked(&self, agent: &str, blocked: bool, now: i64) -> Result<bool, MetaError> {
        self.write(|c| peers::set_blocked(c, agent, blocked, now))
    }

    fn is_agent_blocked(&self, agent: &str) -> Result<bool, MetaError> {
        self.read(|c| peers::is_blocked(c, agent))
    }

    fn list_blocked_agents(&self) -> Result<Vec<BlockedAgent>, MetaError> {
        self.read(peers::blocked)
    }

    fn insert_ticket(&self, ticket: &TicketRecord) -> Result<(), MetaError> {
        self.write(|c| tickets::insert(c, ticket))
    }

    fn get_ticket(&self, token: &str) -> Result<Option<TicketRecord>, MetaError> {
        self.read(|c| tickets::get(c, token))
    }

    fn list_tickets(&self) -> Result<Vec<TicketRecord>, MetaError> {
        self.read(tickets::list)
    }

    fn revoke_ticket(&self, token: &str) -> Result<bool, MetaError> {
        self.write(|c| tickets::revoke(c, token))
    }

    fn redeem_ticket(
        &self,
        token: &str,
        agent: &str,
        now: i64,
    ) -> Result<TicketVerdict, MetaError> {
        self.transaction("redeeming ticket", |tx| {
            tickets::redeem(tx, token, agent, now)
        })
    }

    fn purge_expired_tickets(&self, now: i64, keep_for_secs: i64) -> Result<u64, MetaError> {
        self.write(|c| tickets::purge_expired(c, now, keep_for_secs))
    }

    fn insert_custody(&self, record: &CustodyRecord) -> Result<CustodyRecord, MetaError> {
        self.transaction("recording custody", |tx| custody::insert(tx, record))
    }

    fn custody_of(&self, original: &ContentHash) -> Result<Vec<CustodyRecord>, MetaError> {
        self.read(|c| custody::of(c, original))
    }

    fn custody_bytes(&self) -> Result<u64, MetaError> {
        self.read(custody::bytes)
    }

    fn insert_placement(
        &self,
        agent: &str,
        hash: &ContentHash,
        now: i64,
        max_per_agent: u64,
    ) -> Result<PlacementOutcome, MetaError> {
        self.transaction("recording placement", |tx| {
            placements::insert(tx, agent, hash, now, max_per_agent)
        })
    }

    fn due_placements(
        &self,
        agents: &[String],
        checked_before: i64,
        limit: usize,
    ) -> Result<Vec<Placement>, MetaError> {
        self.read(|c| placements::due(c, agents, checked_before, limit))
    }

    fn placements_of(&self, agent: &str) -> Result<Vec<Placement>, MetaError> {
        self.read(|c| placements::of_agent(c, agent))
    }

    fn record_check(
        &self,
        agent: &str,
        hash: &ContentHash,
        now: i64,
        result: &CheckResult,
    ) -> Result<bool, MetaError> {
        self.transaction("recording check", |tx| {
            placements::record_check(tx, agent, hash, now, result)
        })
    }

    fn remove_placement(&self, agent: &str, hash: &ContentHash) -> Result<bool, MetaError> {
        self.write(|c| placements::remove(c, agent, hash))
    }

    fn retention_by_peer(&self) -> Result<Vec<PeerRetention>, MetaError> {
        self.read(placements::by_peer)
    }

    fn share_file(&self, hash: &ContentHash, now: i64) -> Result<bool, MetaError> {
        self.write(|c| sharing::share(c, hash, now))
    }

    fn unshare_file(&self, hash: &ContentHash) -> Result<bool, MetaError> {
        self.write(|c| sharing::unshare(c, hash))
    }

    fn shared_files(&self, limit: usize) -> Result<Vec<ContentHash>, MetaError> {
        self.read(|c| sharing::shared(c, limit))
    }

    fn record_replica(
        &self,
        hash: &ContentHash,
        from: &str,
        size: u64,
        now: i64,
    ) -> Result<(), MetaError> {
        self.write(|c| sharing::record_replica(c, hash, from, size, now))
    }

    fn replica_bytes(&self) -> Result<u64, MetaError> {
        self.read(sharing::replica_bytes)
    }

    fn chat_persist(&self, row: &ChatQueueRow, now: i64) -> Result<(), MetaError> {
        self.write(|c| chat::persist(c, row, now))
    }

    fn chat_forget(&self, key: &str) -> Result<(), MetaError> {
        self.write(|c| chat::forget(c, key))
    }

    fn chat_queued(&self, limit: usize) -> Result<Vec<ChatQueueRow>, MetaError> {
        self.read(|c| chat::queued(c, limit))
    }

    fn chat_append(&self, row: &ChatMessageRow, keep: usize) -> Result<i64, MetaError> {
        self.transaction("storing a chat message", |tx| chat::append(tx, row, keep))
    }

    fn chat_read(
        &self,
        after: i64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChatMessageRow>, MetaError> {
        self.read(|c| chat::read(c, after, channel, limit))
    }

    fn chat_set_joined(
        &self,
        channel: &ChatChannelRow,
        joined: bool,
        now: i64,
    ) -> Result<(), MetaError> {
        self.write(|c| chat::set_joined(c, channel, joined, now))
    }

    fn chat_joined(&self) -> Result<Vec<ChatChannelRow>, MetaError> {
        self.read(chat::joined)
    }

    fn item_shared(&self, item: &ContentHash) -> Result<bool, MetaError> {
        self.read(|c| sharing::item_shared(c, item))
    }

    fn record_anonymous(
        &self,
        item: &AnonymousItem,
        quota: u64,
    ) -> Result<AnonymousRecord, MetaError> {
        self.transaction("recording an anonymous item", |tx| {
            anonymous::record(tx, item, quota)
        })
    }

    fn expire_anonymous(&self, now: i64) -> Result<Vec<ContentHash>, MetaError> {
        self.write(|c| anonymous::expire(c, now))
    }

    fn anonymous_usage(&self) -> Result<AnonymousUsage, MetaError> {
        self.read(anonymous::usage)
    }

    fn list_anonymous(&self) -> Result<Vec<AnonymousItem>, MetaError> {
        self.read(anonymous::list)
    }

    fn chat_set_posted(
        &self,
        msg_id: &str,
        recipients: i64,
        queued: bool,
    ) -> Result<(), MetaError> {
        self.write(|c| chat::set_posted(c, msg_id, recipients, queued))
    }

    fn chat_mark_delivered(
        &self,
        msg_id: &str,
        at: i64,
    ) -> Result<Option<ChatMessageRow>, MetaError> {
        self.transaction("recording a chat receipt", |tx| {
            chat::mark_delivered(tx, msg_id, at)
        })
    }

    fn chat_mark_unconfirmed(&self, msg_id: &str) -> Result<(), MetaError> {
        self.write(|c| chat::mark_unconfirmed(c, msg_id))
    }

    fn chat_save_channel(&self, row: &ChatChannelStateRow, now: i64) -> Result<(), MetaError> {
        self.write(|c| chat_state::save_channel(c, row, now))
    }

    fn chat_drop_channel(&self, channel_id: &str) -> Result<(), MetaError> {
        self.write(|c| chat_state::drop_channel(c, channel_id))
    }

    fn chat_channels(&self) -> Result<Vec<ChatChannelStateRow>, MetaError> {
        self.read(chat_state::channels)
    }

    fn chat_node_seen(&self, guid: &str, name: Option<&str>, at: i64) -> Result<(), MetaError> {
        self.write(|c| chat_state::node_seen(c, guid, name, at))
    }

    fn chat_set_node_flags(
        &self,
        guid: &str,
        blocked: Option<bool>,
        muted: Option<bool>,
    ) -> Result<(), MetaError> {
        self.transaction("recording a chat node", |tx| {
            chat_state::set_node_flags(tx, guid, blocked, muted)
        })
    }

    fn chat_nodes(&self, limit: usize) -> Result<Vec<ChatNodeRow>, MetaError> {
        self.read(|c| chat_state::nodes(c, limit))
    }

    fn chat_set_peer(&self, address: &str, keep: bool, now: i64) -> Result<bool, MetaError> {
        self.write(|c| chat_state::set_peer(c, address, keep, now))
    }

    fn chat_peers(&self) -> Result<Vec<String>, MetaError> {
        self.read(chat_state::peers)
    }

    fn chat_set_setting(&self, key: &str, value: Option<&str>) -> Result<(), MetaError> {
        self.write(|c| chat_state::set_setting(c, key, value))
    }

    fn chat_setting(&self, key: &str) -> Result<Option<String>, MetaError> {
        self.read(|c| chat_state::setting(c, key))
    }

    fn posts_apply(
        &self,
        stored: &[PostRow],
        evicted: &[String],
        now: i64,
    ) -> Result<(), MetaError> {
        if stored.is_empty() && evicted.is_empty() {
            return Ok(());
        }
        self.transaction("keeping posts", |tx| posts::apply(tx, stored, evicted, now))
    }

    fn posts_all(&self) -> Result<Vec<PostRow>, MetaError> {
        self.read(posts::all)
    }

    fn posts_set_community(&self, row: &PostCommunityRow, now: i64) -> Result<(), MetaError> {
        self.write(|c| posts::set_community(c, row, now))
    }

    fn posts_communities(&self) -> Result<Vec<PostCommunityRow>, MetaError> {
        self.read(posts::communities)
    }

    fn posts_set_author(
        &self,
        author: &str,
        blocked: Option<bool>,
        muted: Option<bool>,
    ) -> Result<(), MetaError> {
        self.transaction("recording a post author", |tx| {
            posts::set_author(tx, author, blocked, muted)
        })
    }

    fn posts_authors(&self) -> Result<Vec<PostAuthorRow>, MetaError> {
        self.read(posts::authors)
    }

    fn item_in_use(&self, item: &ContentHash) -> Result<bool, MetaError> {
        Ok(!self.items_in_use(std::slice::from_ref(item))?.is_empty())
    }

    fn items_in_use(&self, items: &[ContentHash]) -> Result<HashSet<ContentHash>, MetaError> {
        self.read(|c| files::items_in_use(c, items))
    }

    fn list_custody(&self) -> Result<Vec<CustodyRecord>, MetaError> {
        self.read(custody::all)
    }

    fn value_add_user(&self, user: &ValueUser) -> Result<bool, MetaError> {
        self.write(|c| value::insert_user(c, user))
    }

    fn value_users(&self) -> Result<Vec<ValueUser>, MetaError> {
        self.read(value::users)
    }

    fn value_insert_tally_ticket(&self, ticket: &TallyTicketRow) -> Result<(), MetaError> {
        self.write(|c| value::insert_tally_ticket(c, ticket))
    }

    fn value_tally_tickets(&self) -> Result<Vec<TallyTicketRow>, MetaError> {
        self.read(value::all_tally_tickets)
    }

    fn value_claim_tally_ticket(
        &self,
        token: &str,
        agent: &str,
        tally_uuid: &str,
        now: i64,
    ) -> Result<TicketClaim, MetaError> {
        self.transaction("claiming a tally ticket", |tx| {
            value::claim_tally_ticket(tx, token, agent, tally_uuid, now)
        })
    }

    fn value_put_tally(&self, tally: &TallyRow) -> Result<(), MetaError> {
        self.write(|c| value::upsert_tally(c, tally))
    }

    fn value_tally(&self, uuid: &str, side: &str) -> Result<Option<TallyRow>, MetaError> {
        self.read(|c| value::get_tally(c, uuid, side))
    }

    fn value_tallies(&self) -> Result<Vec<TallyRow>, MetaError> {
        self.read(value::tallies)
    }

    fn value_tally_tx(
        &self,
        uuid: &str,
        side: &str,
        f: &mut dyn FnMut(&mut TallyTx<'_>) -> Result<(), MetaError>,
    ) -> Result<Option<TallyRow>, MetaError> {
        self.transaction("changing a tally", |tx| value::tally_tx(tx, uuid, side, f))
    }

    fn value_put_chit(&self, chit: &ChitRow) -> Result<(), MetaError> {
        self.write(|c| value::upsert_chit(c, chit))
    }

    fn value_chits(
        &self,
        tally: &str,
        side: &str,
        limit: usize,
    ) -> Result<Vec<ChitRow>, MetaError> {
        self.read(|c| value::chits_of(c, tally, side, limit))
    }

    fn value_chit(&self, uuid: &str) -> Result<Vec<ChitRow>, MetaError> {
        self.read(|c| value::chits_by_uuid(c, uuid))
    }

    fn value_chits_with_status(
        &self,
        status: &str,
        limit: usize,
    ) -> Result<Vec<ChitRow>, MetaError> {
        self.read(|c| value::chits_with_status(c, status, limit))
    }

    fn value_all_chits(&self) -> Result<Vec<ChitRow>, MetaError> {
        self.read(value::all_chits)
    }

    fn value_restore(
        &self,
        users: &[ValueUser],
        tickets: &[TallyTicketRow],
        tallies: &[TallyRow],
        chits: &[ChitRow],
    ) -> Result<(), MetaError> {
        self.transaction("restoring value", |tx| {
            value::restore(tx, users, tickets, tallies, chits)
        })
    }
}
