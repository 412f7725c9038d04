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
//! all keys lower-case, unknown keys ignored. HELLO and ROUTING must have `ttl` 1 and `flood`
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
//! - `challenge`, `public_key`, `signature` in HELLO (see *Saying hello*);
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
//!   at once. The node sends ROUTING (which it may ignore) and a CHANNEL (ttl 1) for every
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
//! on with `"unsigned": true`. Its `message` is still `signature slot (64 bytes, zero) ‖
//! text`. Other nodes show such messages as unsigned; a plain id cannot be a member of a
//! closed channel, send keys, certificates or receipts.
//!
//! # Receipts
//!
//! A route claim is only a claim. The recipient of a direct MESSAGE (or a KEY) with a
//! key-derived id signs a receipt and routes it back to the author:
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
//! is one, waiting twice as long each time. A client with a key should send receipts for the
//! direct messages it gets (a duplicate is a retry whose receipt was lost: answer it again).
//! Messages to plain ids are acknowledged hop by hop only, as in the seed.
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
//! dishonest node can speak for the plain clients it carries (never for a key-derived id).
//! ROUTING is believed as a claim and corrected end to end by receipts; it is not signed.
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
