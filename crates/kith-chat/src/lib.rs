//! kith-chat: the sans-IO core of kith's ptpchat overlay.
//!
//! No sockets, no clock, no tokio: [`frame`] cuts a byte stream into messages, [`message`]
//! decodes and encodes the thirteen verbs, [`router::Router`] is one node's state machine
//! (flooding, routing, store-and-forward, certificates, channels), [`crypto`] holds the byte
//! layouts below. The node drives it (see the calling contract in [`router`]).
//!
//! What follows is the protocol as kith speaks it, written for the author of a third-party
//! client (a plain ptpchat client of about a hundred lines with standard libraries can join
//! the network through the chat port of any kith node).
//!
//! # Framing (chat port)
//!
//! Plain TCP (or TLS with the node's certificate if the node was started so). Each message is
//! a 4-byte unsigned big-endian length followed by that many bytes of UTF-8 JSON; no newline.
//! A frame of length 0 is a keep-alive: send one every 5 s or so; a neighbour silent for
//! `chat_neighbour_idle_ms` (120 s) is dropped. A frame over `chat_max_frame` (1 MiB) closes
//! the connection. Between kith nodes the same JSON rides the secure links.
//!
//! # Messages
//!
//! `{"msg_type": VERB, "msg_data": {...}, "ttl": N, "flood": BOOL}`: all four keys required,
//! all keys lower-case, unknown keys ignored.
//!
//! **Both revisions of the protocol.** The seed puts `node_id` (and `msg_id`) inside
//! `msg_data`; the later revision, which the reference programs follow, adds top-level
//! `msg_id` (a UUID), `sender_id` (the node the message speaks for) and `target_id` (where a
//! routed copy goes), ids written `name@GUID`, and often leaves `node_id` and `msg_id` out of
//! `msg_data`. kith reads both: the `msg_data` fields win, the top-level ones stand in when
//! they are absent, and a `sender_id` whose GUID differs from `msg_data.node_id` is refused.
//! kith writes both: every message carries the seed's fields and the top-level ones, ids as
//! `name@GUID` (`kith@GUID` when no name is known; the reference programs accept only letters
//! and digits before the `@`). HELLO and ROUTING carry a `msg_id` of their own, and ACK's
//! top-level `msg_id` is the ACK's own (its `msg_data.msg_id` names what it acknowledges).
//! A channel id of all zeros means "no channel", as the reference client writes it. HELLO and ROUTING must have `ttl` 1 and `flood`
//! false; ACK, NACK, GETCERTIFICATE, CERTIFICATE, GETKEY, KEY and CONNECT must not flood; any
//! `ttl` must be in `1..=chat_max_ttl` (64); send 32. No string field may contain a control
//! character (fields are lines of signed text). Fields are as in the seed, with these
//! additions (all optional, ignored by other implementations):
//!
//! - top-level `target_id`: the node a routed copy is for (a message to several recipients is
//!   split into one copy per recipient);
//! - `recipient_id` in GETCERTIFICATE, GETKEY and NACK: whom it is for (without it, the
//!   neighbour that receives it answers or takes it);
//! - `target_id` in ACK: which copy is acknowledged; `recipient_id` in ACK: an end-to-end
//!   receipt, routed to the message's author (see *Receipts*);
//! - `member` in LEAVE: the member removed (a kick), when not the sender;
//! - `challenge`, `public_key`, `signature` in HELLO (see *Saying hello*), and `name` in its
//!   `attributes`: the name the node goes by (also before the `@` of its id);
//! - `seq`, `public_key` and `signature` in ROUTING (see *Routers and signed routes*);
//! - `signature` and `public_key` in JOIN, LEAVE, CHANNEL, KEY and receipts (see *Signed
//!   state*); `public_key` and `unsigned` in MESSAGE; `members` in KEY.
//!
//! Binary fields are standard base64 with padding; `public_key` is the 32 raw bytes of an
//! Ed25519 key, `signature` 64 bytes.
//!
//! Node ids are GUIDs (`8-4-4-4-12` hex), alone or as `name@GUID`; only the GUID identifies.
//!
//! # Node ids are bound to keys
//!
//! A kith node's GUID is derived from its Ed25519 key: the first 16 bytes of
//! `sha256("kith node id v1" ‖ 32-byte public key)` with the UUID version nibble set to 8
//! (`b[6] = b[6] & 0x0f | 0x80`) and the variant bits to `10` (`b[8] = b[8] & 0x3f | 0x80`).
//! Anyone can recompute it from a key, so such an id can neither collide by accident nor be
//! claimed by another key. **An id of this form (version 8) counts only with a proof of the
//! key that derives it**; a certificate (or `public_key`) binds an id only to the key that
//! derives it, whoever sends it, asked for or not. Any other GUID (a uuid4, as plain clients
//! and the reference programs use) is derived from no key: it is a *plain* id, bound to the
//! connection of the client that uses it, never to a key.
//!
//! # Saying hello
//!
//! A client connects and sends
//! `{"msg_type":"HELLO","msg_data":{"node_id":"alice@GUID","version":"py/1","attributes":{"node_type":"client"}},"ttl":1,"flood":false}`.
//! The node answers with its own HELLO, which carries `challenge` (32 random bytes, base64).
//!
//! - **A plain client** (a GUID that is not version 8) ignores the challenge: it is a leaf
//!   at once (unless it says `node_type: server`: see *Routers and signed routes*). The node sends ROUTING (which it may ignore) and a CHANNEL (ttl 1) for every
//!   public channel it knows. Its GUID must not be the node's, another live client's or one
//!   reachable elsewhere. It speaks only for itself, on its own connection: anything it sends
//!   in another's name is refused, and what it says goes on marked unsigned (see *Plain
//!   clients*).
//! - **A client with a key** uses the GUID its key derives and proves it: it sends HELLO again
//!   with the same `node_id` plus `public_key` and `signature`, an Ed25519 signature over
//!   these lines, each ending in `\n`:
//!
//!   ```text
//!   kith-chat-hello-v1
//!   <challenge, exactly as the node sent it>
//!   <the node's GUID, lower-case>
//!   <the client's GUID, lower-case>
//!   ```
//!
//!   Until the proof checks out nothing is routed to it, nothing kept for its id is released,
//!   and anything but HELLO is refused; without a proof within 10 s (`proof_timeout`) the
//!   connection is closed. A bad proof closes it at once. Several connections may claim an id
//!   at once; the first to prove it takes it and the others are closed.
//!
//! A client may put its own `challenge` in its first HELLO: the node then adds `public_key`
//! and `signature` to its answer, signed over the same lines with the two GUIDs swapped (the
//! client's GUID as verifier, the node's as prover), so the client knows it reached the node
//! it meant. A kith node over a secure link is who its link key says; its HELLO must carry
//! the GUID that key derives.
//!
//! # Signed state
//!
//! JOIN, LEAVE, CHANNEL and KEY from a node with a key-derived id carry `signature` (and
//! should carry `public_key`, so that nobody needs to ask for a certificate) over these
//! lines, each ending in `\n`:
//!
//! ```text
//! kith-chat-state-v1
//! <verb: JOIN, LEAVE, CHANNEL or KEY>
//! <msg_id>
//! <node_id's GUID, lower-case>
//! <channel>
//! <channel_id>
//! LEAVE:   <member's GUID, or empty>
//! CHANNEL: <closed or open>, then <members' GUIDs, lower-case, sorted, no repeats, joined by ",">
//! KEY:     <recipient's GUID>, <cipher>, <hex sha256 of the key bytes>, <members as for CHANNEL>
//! ```
//!
//! Every node checks every signed message (these, MESSAGE and receipts) against the key that
//! derives its author's id **before** it acts on it or passes it on; a message speaking for a
//! key-derived id unsigned, or with a signature that does not verify, is dropped and counted
//! (`forged`), and the neighbour that passed it on is charged for it. What counts:
//!
//! - JOIN adds its sender, LEAVE removes its sender; a LEAVE naming another member (a kick)
//!   counts only in a closed channel, signed by one of its members.
//! - In a public channel a CHANNEL makes its sender a member if it lists itself; the others
//!   it lists are shown, never trusted. In a closed channel a CHANNEL signed by a member
//!   invites those it lists; from anyone else it changes nothing.
//! - A KEY counts only signed by its sender, and for a channel the receiver is in, only from a
//!   member. An unasked KEY is an invitation; its `members` tell the new member whom it joins.
//!   Keys are sent only to members whose key the sender holds from a certificate (or
//!   `public_key`) that derives their id.
//! - A channel is public or closed from the first time a node hears of it; a CHANNEL or KEY
//!   saying otherwise is refused by a node in the channel (an invitation, signed by a member,
//!   overrides what an outsider heard). A public channel's id is derived from its name: the first 16
//!   bytes of `sha256("kith-chat public channel v1" ‖ name)` as a version-8 UUID, so everyone
//!   who joins `lobby` by name joins the same channel; a CHANNEL may not bring a second
//!   channel of a known name (other than that public one).
//!
//! # Plain clients
//!
//! A plain client's JOIN, LEAVE, CHANNEL and MESSAGE are unsigned (they cannot be otherwise):
//! its node accepts them only when they speak for the client itself, and passes its MESSAGEs
//! on with `"unsigned": true`. Its `message` may be `signature slot (64 bytes, zero) ‖ text`
//! in base64, or, as the reference client sends it, the text itself: from an author whose id
//! no key derives, a `message` that is not base64 of at least 64 bytes followed by UTF-8 is
//! taken as the text. A client that writes text (or says HELLO the later revision's way,
//! without a key) is sent text back. Other nodes show such messages as unsigned; a plain id
//! cannot be a member of a closed channel, send keys, certificates or receipts. A signed
//! message (an author whose id a key derives) that fails verification is refused either way.
//!
//! # Receipts, and nothing said is lost
//!
//! A route claim is only a claim. The recipient of a direct MESSAGE (or a KEY) with a
//! key-derived id signs a receipt and routes it back to the author, and so does every member
//! of a channel for each channel MESSAGE it gets (flooded or routed) from an author whose id
//! a key derives:
//! `ACK {node_id: recipient, msg_id, recipient_id: author, public_key, signature}` with
//! `target_id` the author's GUID and `ttl` 32, the signature over
//!
//! ```text
//! kith-chat-receipt-v1
//! <msg_id>
//! <the recipient's GUID>
//! <the author's GUID>
//! ```
//!
//! A kith author keeps its message (stored) until the receipt comes; without one within
//! `receipt_timeout` it demotes the route it used and sends again, over another path if there
//! is one, waiting twice as long each time. While there is no route at all the copy waits
//! and its clock stops (a node away for days gets it when it is back; only the queue's own
//! lifetime, `chat_queue_ms`, ends the wait). A channel MESSAGE is flooded to whoever is
//! reachable and also kept, one stored copy per member whose id a key derives: a member whose
//! receipt does not come gets its copy routed (`target_id` set, `flood` false, `channel_id`
//! kept) or, without a route, when one appears. So what is said reaches every member after an
//! idle link, a partition or a restart of either side; a member sees each message once. A
//! client with a key should send receipts for the direct and channel messages it gets (a
//! duplicate is a retry whose receipt was lost: answer it again). Messages to plain ids are
//! acknowledged hop by hop only, as in the seed, and channel members with plain ids get the
//! flood only.
//!
//! # Routers and signed routes
//!
//! A neighbour on the chat port whose HELLO says `node_type: server` is a ptpchat router:
//! it relays for others and its ROUTING is taken. A router whose id is plain cannot sign: its
//! routes are untrusted, at most 256 of them are taken, and a route through it ranks below
//! any route through an authenticated neighbour, so a router that announces a node it
//! cannot reach does not black-hole traffic between nodes that have a path of their own. A
//! node or router whose id a key derives signs every ROUTING over these lines, each ending
//! in `\n`:
//!
//! ```text
//! kith-chat-routing-v1
//! <the message's top-level msg_id>
//! <sender's GUID>
//! <receiver's GUID>
//! <the challenge the receiver gave in its HELLO on this connection, or empty>
//! <seq, decimal>
//! <entries as GUID:hops, sorted, joined by ",">
//! ```
//!
//! with `seq` growing on each connection; unsigned, badly signed, for another receiver or
//! not newer than the last, it is refused. A kith node keeps a router dialled
//! (`kith chat peer`): it says HELLO first, with a challenge, and a router with a
//! key-derived id proves its key in its HELLO (over that challenge) as a client would.
//!
//! # Channels have one identity
//!
//! A public channel's id is derived from its name (see *Signed state*), so two nodes that
//! create `lobby` at the same moment create the same channel, and what is said meanwhile
//! reaches both. A client may join by id: an id it has not heard announced is not a channel
//! (kith never makes a channel named after an id). A node keeps its channels (id, name,
//! members, a closed channel's keys sealed under its own key) and finds the same ones after
//! a restart.
//!
//! # Rates
//!
//! A client pays for what it sends, per address (IPv6: per /64) and per id; all clients of a
//! node share a budget, and at most 8 connections come from one address. Over its rate a
//! client's messages are refused and count against it; keep to a few messages a second.
//!
//! # Answering GETCERTIFICATE
//!
//! A node that gets a signed message from an author whose key it lacks (no `public_key`)
//! sends `GETCERTIFICATE {msg_id, node_id: asker, recipient_id: author}`. Answer with
//! `CERTIFICATE {msg_id: the same, node_id: you, recipient_id: the asker,
//! certificate: base64}` where the certificate is either the 32 raw bytes of the Ed25519
//! public key or a DER X.509 certificate whose SubjectPublicKeyInfo is Ed25519 (kith nodes
//! send their self-signed certificate). Routed messages are acknowledged hop by hop with
//! `ACK {node_id, msg_id}` (ttl 1); a client may ignore the ACKs it receives.
//!
//! # Signing a MESSAGE
//!
//! `message` is base64 (standard alphabet, padded) of `signature (64 bytes) ‖ body`, where
//! body is the UTF-8 text (in a closed channel, the sealed text, see below) and the signature
//! is Ed25519 over the UTF-8 bytes of these lines, each ending in `\n`:
//!
//! ```text
//! kith-chat-message-v1
//! <msg_id>
//! <author GUID, lower-case, without any name@>
//! <timestamp, exactly as in the message>
//! <channel, or empty>
//! <channel_id, or empty>
//! <recipient GUIDs, lower-case, sorted, joined by ",", or empty>
//! <hex sha256 of body, lower-case>
//! then per attachment, in order:
//! <attachment_type>
//! <hex sha256 of the attachment's bytes (after base64 decoding)>
//! ```
//!
//! In Python: `lines = ["kith-chat-message-v1", msg_id, guid, ts, channel, channel_id,
//! ",".join(sorted(recipients)), sha256(body).hexdigest()]`, then
//! `sig = key.sign(("\n".join(lines) + "\n").encode())`; add `public_key`. A message that
//! fails verification is dropped and counted, never shown or passed on. Channel messages are
//! flooded (`flood` true, empty `recipient`); direct messages are routed (`flood` false,
//! `recipient` set, `channel_id` empty). Attachments: `[{"attachment": base64,
//! "attachment_type": MIME}]`, at most `chat_max_attachment_bytes` (512 KiB) in all.
//! `scripts/ptpchat_client.py` does all of the above in about 150 lines (and `--plain` is the
//! seed's plain client).
//!
//! # Closed channels
//!
//! KEY's `cipher` is [`crypto::KEY_CIPHER`], `x25519-hkdf-sha256-xchacha20poly1305`. Its
//! `key` is base64 of `ephemeral X25519 public key (32) ‖ nonce (24) ‖ ciphertext (48)`: the
//! 32-byte channel key encrypted with XChaCha20-Poly1305 under
//! `HKDF-SHA256(salt = ephemeral public ‖ recipient X25519 public, ikm = X25519(ephemeral,
//! recipient), info = "kith-chat-key-v1")`, AAD `"kith-chat-key-v1" ‖ channel_id ‖ "\n" ‖
//! recipient GUID`. The recipient's X25519 key is the Montgomery form of its Ed25519 key (and
//! its secret the clamped first half of sha512 of the Ed25519 seed, as libsodium's
//! `crypto_sign_ed25519_sk_to_curve25519`). A closed channel's text and each attachment are
//! sealed as `key id (8) ‖ nonce (24) ‖ XChaCha20-Poly1305 ciphertext`, AAD
//! `"kith-chat-channel-v1" ‖ channel_id`, where key id is the first 8 bytes of
//! `sha256("kith-chat-key-id" ‖ key)`; the signature covers the sealed bytes. Invitation is an
//! unasked KEY; a listed member without the key asks with GETKEY; leaving or removal makes
//! the remaining members switch to a new key.
//!
//! # What this crate does not do (yet)
//!
//! Direct messages are signed, not encrypted: a relay can read them (only closed channels are
//! sealed). What a plain client says cannot be verified by anyone but its own node, so a
//! dishonest node (or router) can speak for the plain clients it carries (never for a
//! key-derived id). A signed ROUTING proves who claims a route, not that the route works:
//! claims are still corrected end to end by receipts.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod auth;
pub mod config;
pub mod crypto;
pub mod frame;
pub mod limits;
pub mod message;
pub mod router;

pub use config::ChatConfig;
pub use limits::ChatLimits;
pub use router::{
    ChatError, ChatEvent, Footprint, NeighbourId, NeighbourInfo, NeighbourKind, Output, Router,
};
