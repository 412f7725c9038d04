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
//! `ttl` must be in `1..=chat_max_ttl` (64); send 32. Fields are as in the seed, with these
//! additions (all optional, ignored by other implementations):
//!
//! - top-level `target_id`: the node a routed copy is for (a message to several recipients is
//!   split into one copy per recipient);
//! - `recipient_id` in GETCERTIFICATE, GETKEY and NACK: whom it is for (without it, the
//!   neighbour that receives it answers or takes it);
//! - `target_id` in ACK: which copy is acknowledged;
//! - `member` in LEAVE: the member removed (a kick), when not the sender.
//!
//! Node ids are GUIDs (`8-4-4-4-12` hex), alone or as `name@GUID`; only the GUID identifies.
//!
//! # Saying hello
//!
//! A client connects and sends
//! `{"msg_type":"HELLO","msg_data":{"node_id":"alice@GUID","version":"py/1","attributes":{"node_type":"client"}},"ttl":1,"flood":false}`.
//! The node answers with its own HELLO, then sends ROUTING (which a client may ignore) and a
//! CHANNEL (ttl 1) for every channel it knows. A client may use any GUID that is not in use:
//! not the node's own, not another neighbour's, not reachable elsewhere in the network. A
//! kith node over a secure link must use the GUID derived from its link key. A client that
//! only reads (joins public channels, receives) needs nothing more.
//!
//! # Node ids are bound to keys
//!
//! A kith node's GUID is derived from its Ed25519 key: the first 16 bytes of
//! `sha256("kith node id v1" ‖ 32-byte public key)` with the UUID version nibble set to 8
//! (`b[6] = b[6] & 0x0f | 0x80`) and the variant bits to `10` (`b[8] = b[8] & 0x3f | 0x80`).
//! Anyone can recompute it from a certificate, so such an id can neither collide by accident
//! nor be claimed by another key. A client that wants to send should derive its GUID the same
//! way from its own Ed25519 key. An id that is not derived from its key is bound, per node, to
//! the first key seen for it.
//!
//! # Answering GETCERTIFICATE
//!
//! A node that receives a signed MESSAGE from an author whose key it lacks sends
//! `GETCERTIFICATE {msg_id, node_id: asker, recipient_id: author}`. Answer with
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
//! `sig = key.sign(("\n".join(lines) + "\n").encode())`. A message that fails verification is
//! dropped and counted, never shown. Channel messages are flooded (`flood` true, empty
//! `recipient`); direct messages are routed (`flood` false, `recipient` set, `channel_id`
//! empty). Attachments: `[{"attachment": base64, "attachment_type": MIME}]`, at most
//! `chat_max_attachment_bytes` (512 KiB) in all.
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
//! CHANNEL, JOIN, LEAVE and KEY are not signed (the seed signs only MESSAGE), so a node on the
//! path could forge membership changes or hand a member a key of its own; relays and
//! non-members still cannot read what members encrypt with keys they received from members.
#![deny(missing_docs)]

pub mod auth;
pub mod config;
pub mod crypto;
pub mod frame;
pub mod message;
pub mod router;

pub use config::ChatConfig;
pub use router::{ChatError, ChatEvent, NeighbourId, NeighbourInfo, NeighbourKind, Output, Router};
