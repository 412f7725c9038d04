//! The node's own limits, and the reading of the one `[limits]` table into the three structs
//! that share it (this crate's, `kith_proto::Limits` and `kith_chat::ChatLimits`).

use serde::{Deserialize, Serialize};

/// The node's own bounds (the control API, admission, sessions, custody, replication,
/// retention, the chat task's queues), read from the `[limits]` table of `kith.toml` with the
/// protocol's and chat's; a missing key keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeLimits {
    /// Largest file `kith content sign|verify|seal|open` will read, in bytes (the Datt layouts
    /// carry a `u32` length, and the whole content is held in memory to sign it).
    pub max_content_file: u64,
    /// How long a CLI command waits for the local control API to answer, in milliseconds.
    pub control_timeout_ms: u64,
    /// Largest request body the control API accepts, in bytes. A request that declares more
    /// (`Content-Length`) is answered 413 at once, before any of its body is read.
    pub max_control_body: usize,
    /// How long a control connection may take to send a request's headers, in ms; also how
    /// long an idle keep-alive connection is kept. Past it the node closes the connection, so
    /// half-sent requests cannot pile up.
    pub control_header_timeout_ms: u64,
    /// How long a control request may take to send its body once its headers are in, in ms
    /// (answered 408 past it). The handler's own work is not bounded by this: a long-poll
    /// (`chat read --follow`, a fetch) keeps its own deadline.
    pub control_body_timeout_ms: u64,
    /// Control connections open at once. When full, a new connection evicts the oldest one
    /// that has no request in progress; when every one has, the newcomer is answered 503.
    pub max_control_connections: usize,
    /// Handshakes in progress at once, from all addresses. When full, the oldest pending
    /// handshake is evicted so that one address cannot lock the others out.
    pub max_pending_handshakes: usize,
    /// Handshakes in progress at once from one IP address.
    pub max_pending_handshakes_per_addr: usize,
    /// Established links at once, in all.
    pub max_links: usize,
    /// Established links at once with one IP address.
    pub max_links_per_addr: usize,
    /// New connections accepted from one IP address per minute.
    pub max_connects_per_addr_per_minute: usize,
    /// Failed handshakes from one address within `failure_window_secs` that get it blocked.
    pub max_failures_per_addr: usize,
    /// The window in which failures are counted, in seconds.
    pub failure_window_secs: u64,
    /// How long a failing address stays blocked, in seconds.
    pub block_secs: u64,
    /// Addresses the admission guard remembers at once (rate and failure history); the
    /// least recently seen is forgotten first.
    pub max_tracked_addrs: usize,
    /// Sessions on the CIYAM peer port at once; more are closed on accept.
    pub max_peer_sessions: usize,
    /// Sessions on the CIYAM peer port at once from one address (an IPv4 address, an IPv6
    /// /64); more from it are closed on accept, so one address cannot hold every slot.
    pub max_peer_sessions_per_addr: usize,
    /// Bytes that strangers on the CIYAM peer port may keep stored, all together (each item
    /// charged its size rounded up to 4 KiB). Kept apart from the user's files; when full, the
    /// address holding the most loses its oldest item. Never more than 16 MiB, whatever is
    /// set; 0 stores nothing a stranger `put`s.
    pub max_anonymous_bytes: u64,
    /// How long a stranger's item is kept, in seconds; then it is deleted (unless a file of
    /// the user's uses the same bytes).
    pub anonymous_item_secs: u64,
    /// Circuits this node relays at once, in all (when it relays: `relay = true`).
    pub relay_max_circuits: usize,
    /// Circuits this node relays at once for one pair of peers.
    pub relay_max_circuits_per_pair: usize,
    /// Bytes one relayed circuit may carry (both ways together) before it is closed.
    pub relay_max_bytes: u64,
    /// How long one relayed circuit may last, in seconds, before it is closed.
    pub relay_max_secs: u64,
    /// Bytes this node keeps in encrypted custody for other people; 0 refuses custody.
    pub max_custody_bytes: u64,
    /// File-exchange sessions over secure links at once (one per linked peer at most, either
    /// end); a session opened by a peer beyond this is refused with an `(error)` line.
    pub max_exchange_sessions: usize,
    /// How long `kith file get --from` may take as a whole (the control call's deadline), in
    /// ms. Each step of the transfer has the session's own, much shorter, deadlines.
    pub exchange_fetch_timeout_ms: u64,
    /// Bytes of replicas this node keeps for peers (files fetched because a peer offered them
    /// with `kith file share`), without its user asking; 0 declines every offer. Modest by
    /// default (256 MiB): a linked peer should not fill the disk unasked. `kith status` shows
    /// what is held against it.
    pub max_replica_bytes: u64,
    /// Offered files waiting to be fetched; offers beyond this are dropped (and offered again
    /// when the peer next links).
    pub max_pending_replications: usize,
    /// Shared files offered to a peer when it links (the most recently shared first).
    pub max_offers_per_link: usize,
    /// Items this node uploads at once across all peers. When more are asked for, peers that
    /// gave this node the most lately go first (choking, as BitTorrent's).
    pub upload_slots: usize,
    /// Under contention every this-many-th free upload slot goes to the peer that has waited
    /// longest, whatever it gave (the optimistic unchoke): nobody is ever stalled for want of
    /// a return.
    pub upload_optimistic_every: usize,
    /// Half-life of what a peer gave, for ranking uploads, in seconds: recent giving counts.
    pub reciprocity_half_life_secs: u64,
    /// How long a background replication waits before trying again after it gave way to a
    /// user's transfer, or failed, in ms.
    pub replication_retry_ms: u64,
    /// How often the node checks that peers still hold the files they fetched from it (proof
    /// of retention: `chk HASH NONCE`), in milliseconds; default 600,000 (10 minutes). Each
    /// placement is checked at most once per interval. 0 turns the background checks off
    /// (`kith peers --check AGENT` still works).
    pub retention_check_interval_ms: u64,
    /// Placements checked per round of the background checks (and per `kith peers --check`),
    /// the longest unchecked first; default 16.
    pub retention_checks_per_round: usize,
    /// Placements (files of ours a peer says it holds) recorded per peer; a peer's notices
    /// beyond that are ignored. Default 10,000.
    pub max_placements_per_peer: u64,
    /// Chat messages kept in the node's log for `kith chat read` (the oldest go first).
    pub chat_log_messages: usize,
    /// Clients on the chat port at once; more are closed on accept.
    pub max_chat_clients: usize,
    /// Posts a node keeps (followed and relayed; relayed ones are evicted first).
    pub posts_max: usize,
    /// Bytes of post items a node keeps.
    pub posts_max_bytes: usize,
    /// The largest post item taken or written, bytes.
    pub posts_max_item: usize,
    /// Inputs waiting for the chat task (frames from links and clients, user actions); a
    /// frame from a link beyond this is dropped (ACKs and retries recover it), a client's
    /// reader waits.
    pub chat_input_queue: usize,
    /// Frames waiting to be written to one chat-port client; a client that falls this far
    /// behind loses what does not fit.
    pub chat_client_queue: usize,
    /// Owners whose copies of one file a custodian keeps (each has its own copy and pull
    /// request); a further owner's push request is refused. Also bounds the pull requests a
    /// `chk` of that file makes the custodian `put`.
    pub max_custody_owners: usize,
    /// Bytes one fetch has requested or holds at once, all its sources together (windowed
    /// item exchange): enough to fill the bandwidth-delay product of the path (24 MiB keep
    /// about 400 MB/s going across a 50 ms round trip), and the most a fetch holds in memory
    /// whatever its sources send. 0 turns windowed exchange off: the node neither lists nor
    /// serves it, and fetches take turns in the CIYAM session.
    pub fetch_window_bytes: u64,
    /// A source with requests out that sends nothing for this long, in ms, is stalled: its
    /// requests go to the others and it gets no new work until it delivers.
    pub fetch_stall_ms: u64,
    /// Bytes of fetched items written before they are synced together (group commit): one
    /// sync per group instead of one per item. A crash loses at most the group in progress
    /// (fetched again on the next run), never an item's integrity.
    pub fetch_commit_bytes: u64,
    /// Files of one folder fetched at once (`kith file get` of a folder): a folder of many
    /// small files is bound by round trips, not bytes. Files run together only while their
    /// sizes fit in one fetch window, so memory stays that of one fetch. At least 1.
    pub folder_parallel_files: usize,
    /// Item requests a peer may have queued with this node at once; more are answered
    /// "busy".
    pub items_max_queued: usize,
    /// Items read ahead from the store for one peer at once.
    pub items_read_ahead: usize,
    /// What this node sends of items to all peers together, bytes per second; 0: no limit.
    pub upload_bytes_per_sec: u64,
    /// What one fetch receives, bytes per second, unless the command says otherwise; 0: no
    /// limit.
    pub download_bytes_per_sec: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            max_content_file: 256 * 1024 * 1024,
            control_timeout_ms: 10_000,
            max_control_body: 64 * 1024,
            control_header_timeout_ms: 5_000,
            control_body_timeout_ms: 5_000,
            max_control_connections: 64,
            max_pending_handshakes: 256,
            max_pending_handshakes_per_addr: 8,
            max_links: 10_000,
            max_links_per_addr: 64,
            max_connects_per_addr_per_minute: 60,
            max_failures_per_addr: 5,
            failure_window_secs: 60,
            block_secs: 300,
            max_tracked_addrs: 65_536,
            max_peer_sessions: 64,
            max_peer_sessions_per_addr: 4,
            max_anonymous_bytes: 4 * 1024 * 1024,
            anonymous_item_secs: 3_600,
            relay_max_circuits: 64,
            relay_max_circuits_per_pair: 1,
            relay_max_bytes: 1024 * 1024 * 1024,
            relay_max_secs: 3_600,
            max_custody_bytes: 1024 * 1024 * 1024,
            max_exchange_sessions: 64,
            exchange_fetch_timeout_ms: 3_600_000,
            max_replica_bytes: 256 * 1024 * 1024,
            max_pending_replications: 256,
            max_offers_per_link: 1_000,
            upload_slots: 4,
            upload_optimistic_every: 4,
            reciprocity_half_life_secs: 60,
            replication_retry_ms: 2_000,
            retention_check_interval_ms: 600_000,
            retention_checks_per_round: 16,
            max_placements_per_peer: 10_000,
            chat_log_messages: 10_000,
            max_chat_clients: 256,
            posts_max: 10_000,
            posts_max_bytes: 64 * 1024 * 1024,
            posts_max_item: 64 * 1024,
            chat_input_queue: 1_024,
            chat_client_queue: 256,
            max_custody_owners: 16,
            fetch_window_bytes: 24 * 1024 * 1024,
            fetch_stall_ms: 5_000,
            fetch_commit_bytes: 32 * 1024 * 1024,
            folder_parallel_files: 32,
            items_max_queued: 128,
            items_read_ahead: 2,
            upload_bytes_per_sec: 0,
            download_bytes_per_sec: 0,
        }
    }
}

/// Every bound of a node, as the one `[limits]` table of `kith.toml` sets them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllLimits {
    /// The protocol cores' and the link layer's.
    pub link: kith_proto::Limits,
    /// The chat overlay's.
    pub chat: kith_chat::ChatLimits,
    /// The node's own.
    pub node: NodeLimits,
}

impl AllLimits {
    /// Reads a `[limits]` table: each key goes to the struct that owns it; a key that none
    /// owns is an error naming it (a typo must not fall back to a default silently).
    pub fn from_table(table: toml::Table) -> Result<AllLimits, String> {
        let keys = |value: toml::Table| -> std::collections::BTreeSet<String> {
            value.keys().cloned().collect()
        };
        let owned = [
            keys(toml::Table::try_from(kith_proto::Limits::default()).map_err(|e| e.to_string())?),
            keys(
                toml::Table::try_from(kith_chat::ChatLimits::default())
                    .map_err(|e| e.to_string())?,
            ),
            keys(toml::Table::try_from(NodeLimits::default()).map_err(|e| e.to_string())?),
        ];
        let mut parts = [toml::Table::new(), toml::Table::new(), toml::Table::new()];
        for (key, value) in table {
            let Some(at) = owned.iter().position(|keys| keys.contains(&key)) else {
                return Err(format!("unknown limit `{key}`"));
            };
            parts[at].insert(key, value);
        }
        let [link, chat, node] = parts;
        Ok(AllLimits {
            link: link
                .try_into()
                .map_err(|e: toml::de::Error| e.to_string())?,
            chat: chat
                .try_into()
                .map_err(|e: toml::de::Error| e.to_string())?,
            node: node
                .try_into()
                .map_err(|e: toml::de::Error| e.to_string())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_goes_to_its_own_struct_and_a_stranger_is_refused() {
        let table: toml::Table =
            toml::from_str("max_envelope_data = 4096\nchat_max_ttl = 9\nmax_replica_bytes = 7\n")
                .unwrap();
        let all = AllLimits::from_table(table).unwrap();
        assert_eq!(all.link.max_envelope_data, 4096);
        assert_eq!(all.chat.chat_max_ttl, 9);
        assert_eq!(all.node.max_replica_bytes, 7);
        assert_eq!(all.node.max_links, NodeLimits::default().max_links);
        let typo: toml::Table = toml::from_str("max_envelop_data = 1\n").unwrap();
        assert!(AllLimits::from_table(typo)
            .unwrap_err()
            .contains("max_envelop_data"));
    }

    #[test]
    fn no_key_is_owned_twice() {
        let keys = |t: toml::Table| t.keys().cloned().collect::<Vec<_>>();
        let mut all = keys(toml::Table::try_from(kith_proto::Limits::default()).unwrap());
        all.extend(keys(
            toml::Table::try_from(kith_chat::ChatLimits::default()).unwrap(),
        ));
        all.extend(keys(toml::Table::try_from(NodeLimits::default()).unwrap()));
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
