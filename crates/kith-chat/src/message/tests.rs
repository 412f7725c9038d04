//! One test group per verb: a valid message round-trips, each required field missing or
//! mistyped is refused naming the field, and the ttl/flood rules hold.

use base64::Engine as _;
use serde_json::{json, Value};

use super::*;

const A: &str = "123e4567-e89b-42d3-a456-426614174000";
const B: &str = "alice@00000000-0000-4000-8000-000000000001";
/// A GUID of the key-derived form (version 8).
const KEYED: &str = "00000000-0000-8000-8000-000000000002";

fn limits() -> MessageLimits {
    MessageLimits::default()
}

fn msg(verb: &str, data: Value, ttl: u64, flood: bool) -> Value {
    json!({ "msg_type": verb, "msg_data": data, "ttl": ttl, "flood": flood })
}

fn decode(v: &Value) -> Result<Envelope, MessageError> {
    Envelope::decode(&serde_json::to_vec(v).unwrap(), &limits())
}

/// Decodes `v`, re-encodes it and decodes again: both decodings agree.
fn round_trip(v: &Value) -> Envelope {
    let env = decode(v).unwrap_or_else(|e| panic!("{v}: {e}"));
    let again = Envelope::decode(&env.encode(), &limits()).unwrap();
    assert_eq!(env, again);
    env
}

fn field_of(err: MessageError) -> String {
    match err {
        MessageError::Missing { field }
        | MessageError::WrongType { field, .. }
        | MessageError::Invalid { field, .. }
        | MessageError::TooLong { field, .. }
        | MessageError::TooMany { field, .. } => field,
        other => panic!("not a field error: {other:?}"),
    }
}

/// For every key of `msg_data` in `required`: removing it reports it missing, and replacing it
/// with a number (or a string where `numeric` lists it) reports it by name.
fn check_required(verb: &str, data: Value, ttl: u64, flood: bool, required: &[&str]) {
    round_trip(&msg(verb, data.clone(), ttl, flood));
    for key in required {
        let mut d = data.clone();
        d.as_object_mut().unwrap().remove(*key);
        let err = decode(&msg(verb, d, ttl, flood)).unwrap_err();
        assert_eq!(
            err,
            MessageError::Missing {
                field: format!("msg_data.{key}")
            },
            "{verb} without {key}"
        );
        let mut d = data.clone();
        d[*key] = json!(true);
        let err = decode(&msg(verb, d, ttl, flood)).unwrap_err();
        assert_eq!(
            field_of(err),
            format!("msg_data.{key}"),
            "{verb} mistyped {key}"
        );
    }
}

#[test]
fn hello_valid_missing_fields_and_ttl_rules() {
    let data = json!({ "node_id": B, "version": "py/1", "attributes": { "node_type": "client" },
                       "extra": [1, 2] });
    let env = round_trip(&msg("HELLO", data.clone(), 1, false));
    let Body::Hello(h) = env.body else { panic!() };
    assert_eq!(h.node_id.name.as_deref(), Some("alice"));
    assert_eq!(h.node_type, NodeType::Client);
    assert_eq!(h.version.as_deref(), Some("py/1"));
    check_required("HELLO", data.clone(), 1, false, &["node_id", "attributes"]);
    let err = decode(&msg("HELLO", data.clone(), 2, false)).unwrap_err();
    assert_eq!(
        err,
        MessageError::TtlMustBeOne {
            verb: Verb::Hello,
            ttl: 2
        }
    );
    let err = decode(&msg("HELLO", data.clone(), 1, true)).unwrap_err();
    assert_eq!(err, MessageError::MustNotFlood { verb: Verb::Hello });
    let mut bad = data.clone();
    bad["attributes"]["node_type"] = json!("robot");
    assert_eq!(
        field_of(decode(&msg("HELLO", bad, 1, false)).unwrap_err()),
        "msg_data.attributes.node_type"
    );
    let mut bad = data;
    bad["node_id"] = json!("not-a-guid");
    assert_eq!(
        field_of(decode(&msg("HELLO", bad, 1, false)).unwrap_err()),
        "msg_data.node_id"
    );
}

#[test]
fn ack_and_nack() {
    let env = round_trip(&msg(
        "ACK",
        json!({ "node_id": "", "msg_id": "m1" }),
        1,
        false,
    ));
    assert!(matches!(env.body, Body::Ack(Ack { node_id: None, .. })));
    check_required(
        "ACK",
        json!({ "node_id": A, "msg_id": "m1" }),
        1,
        false,
        &["msg_id"],
    );
    assert_eq!(
        decode(&msg("ACK", json!({ "msg_id": "m1" }), 1, true)).unwrap_err(),
        MessageError::MustNotFlood { verb: Verb::Ack }
    );
    check_required(
        "NACK",
        json!({ "node_id": A, "msg_id": "m1", "recipient_id": B }),
        32,
        false,
        &["node_id", "msg_id"],
    );
}

#[test]
fn join_leave_channel() {
    let data = json!({ "msg_id": "m", "node_id": A, "channel": "general", "channel_id": "c1" });
    for verb in ["JOIN", "LEAVE"] {
        check_required(
            verb,
            data.clone(),
            32,
            true,
            &["msg_id", "node_id", "channel", "channel_id"],
        );
    }
    let mut kick = data.clone();
    kick["member"] = json!(B);
    let Body::Leave(m) = round_trip(&msg("LEAVE", kick, 32, true)).body else {
        panic!()
    };
    assert_eq!(m.member.unwrap().guid, B.parse::<ChatId>().unwrap().guid);
    let mut ch = data.clone();
    ch["members"] = json!([{ "node_id": A }, { "node_id": B }]);
    ch["closed"] = json!("true");
    let Body::Channel(c) = round_trip(&msg("CHANNEL", ch.clone(), 32, true)).body else {
        panic!()
    };
    assert!(c.closed);
    assert_eq!(c.members.len(), 2);
    check_required(
        "CHANNEL",
        ch.clone(),
        32,
        true,
        &["msg_id", "node_id", "channel", "channel_id", "members"],
    );
    ch["members"][1] = json!({ "node_id": 7 });
    assert_eq!(
        field_of(decode(&msg("CHANNEL", ch.clone(), 32, true)).unwrap_err()),
        "msg_data.members[1].node_id"
    );
    ch["members"] = json!((0..2000)
        .map(|_| json!({ "node_id": A }))
        .collect::<Vec<_>>());
    assert!(matches!(
        decode(&msg("CHANNEL", ch, 32, true)).unwrap_err(),
        MessageError::TooMany { .. }
    ));
    let mut empty = data;
    empty["channel"] = json!("");
    assert_eq!(
        field_of(decode(&msg("JOIN", empty, 32, true)).unwrap_err()),
        "msg_data.channel"
    );
}

#[test]
fn certificates_and_keys() {
    check_required(
        "GETCERTIFICATE",
        json!({ "msg_id": "m", "node_id": A }),
        32,
        false,
        &["msg_id", "node_id"],
    );
    check_required(
        "CERTIFICATE",
        json!({ "msg_id": "m", "node_id": A, "recipient_id": B,
        "certificate": "AAEC" }),
        32,
        false,
        &["msg_id", "node_id", "recipient_id", "certificate"],
    );
    let bad = json!({ "msg_id": "m", "node_id": A, "recipient_id": B, "certificate": "*&" });
    assert_eq!(
        field_of(decode(&msg("CERTIFICATE", bad, 32, false)).unwrap_err()),
        "msg_data.certificate"
    );
    check_required(
        "GETKEY",
        json!({ "msg_id": "m", "node_id": A, "channel": "c",
        "channel_id": "i" }),
        32,
        false,
        &["msg_id", "node_id", "channel", "channel_id"],
    );
    check_required(
        "KEY",
        json!({ "msg_id": "m", "node_id": A, "recipient_id": B, "channel": "c",
        "channel_id": "i", "cipher": "x", "key": "AAAA" }),
        32,
        false,
        &[
            "msg_id",
            "node_id",
            "recipient_id",
            "channel",
            "channel_id",
            "cipher",
            "key",
        ],
    );
    assert_eq!(
        decode(&msg("KEY", json!({}), 32, true)).unwrap_err(),
        MessageError::MustNotFlood { verb: Verb::Key }
    );
}

#[test]
fn message_fields_attachments_and_destination() {
    let sig_and_text =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 70]);
    let data = json!({ "msg_id": "m", "node_id": A, "recipient": [{ "node_id": B }],
        "timestamp": "2024-01-01T00:00:00Z", "message": sig_and_text,
        "attachment": [{ "attachment": "aGk=", "attachment_type": "text/plain" }] });
    let Body::Message(m) = round_trip(&msg("MESSAGE", data.clone(), 32, false)).body else {
        panic!()
    };
    assert_eq!(m.attachments[0].data, b"hi");
    assert!(!m.is_channel());
    check_required(
        "MESSAGE",
        data.clone(),
        32,
        false,
        &["msg_id", "node_id", "timestamp", "message"],
    );
    let mut numeric_time = data.clone();
    numeric_time["timestamp"] = json!(1700000000);
    let Body::Message(m) = decode(&msg("MESSAGE", numeric_time, 32, false))
        .unwrap()
        .body
    else {
        panic!()
    };
    assert_eq!(m.timestamp, "1700000000");
    let mut nowhere = data.clone();
    nowhere.as_object_mut().unwrap().remove("recipient");
    assert_eq!(
        field_of(decode(&msg("MESSAGE", nowhere, 32, false)).unwrap_err()),
        "msg_data.recipient"
    );
    // From a plain author, what is not `signature ‖ text` in base64 is the text itself (the
    // reference client's form); from a key-derived author it is refused.
    let mut short = data.clone();
    short["message"] = json!("AAAA");
    let Body::Message(m) = decode(&msg("MESSAGE", short.clone(), 32, false))
        .unwrap()
        .body
    else {
        panic!()
    };
    assert!(m.plain_text);
    assert_eq!(&m.message[64..], b"AAAA");
    short["node_id"] = json!(KEYED);
    assert_eq!(
        field_of(decode(&msg("MESSAGE", short, 32, false)).unwrap_err()),
        "msg_data.message"
    );
    let mut no_type = data.clone();
    no_type["attachment"][0]
        .as_object_mut()
        .unwrap()
        .remove("attachment_type");
    assert_eq!(
        field_of(decode(&msg("MESSAGE", no_type, 32, false)).unwrap_err()),
        "msg_data.attachment[0].attachment_type"
    );
    let big = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        vec![0u8; limits().max_attachment_bytes + 100],
    );
    let mut too_big = data;
    too_big["attachment"][0]["attachment"] = json!(big);
    assert!(matches!(
        decode(&msg("MESSAGE", too_big, 32, false)).unwrap_err(),
        MessageError::TooLong { .. }
    ));
}

#[test]
fn routing_and_connect() {
    let data = json!({ "node_id": A, "nodes": [{ "node_id": B, "ttl": 2 },
        { "node_id": A, "ttl": "3" }] });
    let Body::Routing(r) = round_trip(&msg("ROUTING", data.clone(), 1, false)).body else {
        panic!()
    };
    assert_eq!(r.nodes[1].ttl, 3);
    check_required("ROUTING", data.clone(), 1, false, &["node_id", "nodes"]);
    assert_eq!(
        decode(&msg("ROUTING", data.clone(), 32, false)).unwrap_err(),
        MessageError::TtlMustBeOne {
            verb: Verb::Routing,
            ttl: 32
        }
    );
    let mut bad = data;
    bad["nodes"][0]["ttl"] = json!(-1);
    assert_eq!(
        field_of(decode(&msg("ROUTING", bad, 1, false)).unwrap_err()),
        "msg_data.nodes[0].ttl"
    );
    check_required(
        "CONNECT",
        json!({ "src_node_id": A, "dst_node_id": B, "dst": "",
        "src": "4000" }),
        32,
        false,
        &["src_node_id", "dst_node_id"],
    );
}

#[test]
fn top_level_rules() {
    let data = json!({ "msg_id": "m", "node_id": A });
    assert_eq!(
        decode(&json!({ "msg_data": data, "ttl": 3, "flood": false })).unwrap_err(),
        MessageError::Missing {
            field: "msg_type".into()
        }
    );
    assert_eq!(
        decode(&json!({ "msg_type": "GETCERTIFICATE", "ttl": 3, "flood": false })).unwrap_err(),
        MessageError::Missing {
            field: "msg_data".into()
        }
    );
    assert_eq!(
        decode(&json!({ "msg_type": "GETCERTIFICATE", "msg_data": data, "flood": false }))
            .unwrap_err(),
        MessageError::Missing {
            field: "ttl".into()
        }
    );
    assert_eq!(
        decode(
            &json!({ "msg_type": "GETCERTIFICATE", "msg_data": data, "ttl": 1,
        "flood": "no" })
        )
        .unwrap_err(),
        MessageError::WrongType {
            field: "flood".into(),
            expected: "a boolean"
        }
    );
    assert_eq!(
        decode(&msg("PING", data.clone(), 1, false)).unwrap_err(),
        MessageError::UnknownVerb("PING".into())
    );
    assert_eq!(
        decode(&msg("getcertificate", data.clone(), 1, false)).unwrap_err(),
        MessageError::UnknownVerb("getcertificate".into())
    );
    assert_eq!(
        decode(&msg("GETCERTIFICATE", data.clone(), 0, false)).unwrap_err(),
        MessageError::TtlOutOfRange { ttl: 0, max: 64 }
    );
    assert_eq!(
        decode(&msg("GETCERTIFICATE", data.clone(), 65, false)).unwrap_err(),
        MessageError::TtlOutOfRange { ttl: 65, max: 64 }
    );
    // Upper-case keys are unknown keys: the lower-case field is then missing.
    assert_eq!(
        decode(&msg(
            "GETCERTIFICATE",
            json!({ "MSG_ID": "m", "node_id": A }),
            3,
            false
        ))
        .unwrap_err(),
        MessageError::Missing {
            field: "msg_data.msg_id".into()
        }
    );
    // Unknown top-level keys are ignored, target_id is read.
    let mut v = msg("GETCERTIFICATE", data, 5, false);
    v["sender_id"] = json!("whoever");
    v["target_id"] = json!(B);
    let env = decode(&v).unwrap();
    assert_eq!(env.target(), Some(B.parse::<ChatId>().unwrap().guid));
    assert_eq!(
        decode(&json!([1])).unwrap_err(),
        MessageError::NotJson("top level is not an object".into())
    );
    let huge = vec![b' '; limits().max_frame as usize + 1];
    assert!(matches!(
        Envelope::decode(&huge, &limits()).unwrap_err(),
        MessageError::TooLarge { .. }
    ));
}

#[test]
fn kiths_signature_fields_round_trip_and_are_checked() {
    let sig = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let data = json!({ "msg_id": "m", "node_id": A, "channel": "general", "channel_id": "c1",
                       "signature": sig, "public_key": key });
    let Body::Join(m) = round_trip(&msg("JOIN", data.clone(), 32, true)).body else {
        panic!()
    };
    assert_eq!(m.auth.signature, Some([7u8; 64]));
    assert_eq!(m.auth.public_key, Some([9u8; 32]));
    let mut short = data.clone();
    short["signature"] = json!(base64::engine::general_purpose::STANDARD.encode([7u8; 63]));
    assert_eq!(
        field_of(decode(&msg("JOIN", short, 32, true)).unwrap_err()),
        "msg_data.signature"
    );
    let hello = json!({ "node_id": B, "attributes": { "node_type": "client" },
                        "challenge": "abc", "signature": sig, "public_key": key });
    let Body::Hello(h) = round_trip(&msg("HELLO", hello, 1, false)).body else {
        panic!()
    };
    assert_eq!(h.challenge.as_deref(), Some("abc"));
    assert!(h.auth.signature.is_some());
    let receipt = json!({ "node_id": A, "msg_id": "m", "recipient_id": B, "signature": sig });
    let Body::Ack(a) = round_trip(&msg("ACK", receipt, 32, false)).body else {
        panic!()
    };
    assert!(a.recipient_id.is_some());
}

#[test]
fn a_control_character_in_a_field_is_refused() {
    // Fields are lines of signed bytes: a newline must not split one into two.
    let data = json!({ "msg_id": "m", "node_id": A, "channel": "gen\neral", "channel_id": "c1" });
    assert_eq!(
        field_of(decode(&msg("JOIN", data, 32, true)).unwrap_err()),
        "msg_data.channel"
    );
}

/// The later revision, as the reference programs send it: top-level `msg_id`, `sender_id`
/// and `target_id` (ids as name@GUID), no `node_id` (and often no `msg_id`) in `msg_data`,
/// a MESSAGE's text as is.
#[test]
fn the_later_revision_is_read_and_both_are_written() {
    let sender = "bob@5f715c17-4a41-482a-ab1f-45fa2cdd702b";
    let top = |verb: &str, data: Value, ttl: u64, flood: bool| {
        let mut v = msg(verb, data, ttl, flood);
        v["msg_id"] = json!("8e7a5b0e-9f1c-4a5b-8c3d-2e1f0a9b8c7d");
        v["sender_id"] = json!(sender);
        v["target_id"] = Value::Null;
        v
    };
    let hello = decode(&top(
        "HELLO",
        json!({ "version": "ptpchat-server; 0.2", "attributes": { "node_type": "server" } }),
        1,
        false,
    ))
    .unwrap();
    let Body::Hello(h) = &hello.body else {
        panic!()
    };
    assert_eq!(h.node_id.to_string(), sender);
    assert!(h.later_revision);
    assert_eq!(h.node_type, NodeType::Server);
    assert_eq!(
        hello.msg_id.as_deref(),
        Some("8e7a5b0e-9f1c-4a5b-8c3d-2e1f0a9b8c7d")
    );
    // Written back: the seed's fields and the later revision's.
    let out = hello.to_json();
    assert_eq!(out["msg_data"]["node_id"], json!(sender));
    assert_eq!(out["sender_id"], json!(sender));
    assert_eq!(out["msg_id"], json!("8e7a5b0e-9f1c-4a5b-8c3d-2e1f0a9b8c7d"));
    assert_eq!(out["msg_data"]["attributes"]["name"], json!("bob"));

    let join = decode(&top(
        "JOIN",
        json!({ "channel": "lobby", "channel_id": "c1" }),
        32,
        true,
    ))
    .unwrap();
    let Body::Join(j) = &join.body else { panic!() };
    assert_eq!(j.msg_id, "8e7a5b0e-9f1c-4a5b-8c3d-2e1f0a9b8c7d");
    assert_eq!(j.node_id.to_string(), sender);

    let routing = decode(&top(
        "ROUTING",
        json!({ "nodes": [{ "node_id": B, "ttl": 1 }] }),
        1,
        false,
    ))
    .unwrap();
    let Body::Routing(r) = &routing.body else {
        panic!()
    };
    assert_eq!(r.node_id.to_string(), sender);

    // A direct MESSAGE with plain text and the nil GUID for "no channel".
    let mut direct = top(
        "MESSAGE",
        json!({ "message": "hello there", "recipient": [{ "node_id": B }],
                "timestamp": "2016-03-12T10:00:00", "channel_id": "00000000-0000-0000-0000-000000000000",
                "channel": null }),
        32,
        false,
    );
    direct["target_id"] = json!(B);
    let env = decode(&direct).unwrap();
    let Body::Message(m) = &env.body else {
        panic!()
    };
    assert!(m.plain_text && !m.is_channel());
    assert_eq!(&m.message[64..], b"hello there");
    assert_eq!(
        env.target_id.as_ref().unwrap().name.as_deref(),
        Some("alice")
    );
    let out = env.to_json();
    assert_eq!(
        out["msg_data"]["message"],
        json!("hello there"),
        "text stays text"
    );
    assert_eq!(out["target_id"], json!(B));

    // An ACK's msg_data.msg_id is what it acknowledges; the top-level one is its own.
    let ack = decode(&top("ACK", json!({ "msg_id": "m1" }), 1, false)).unwrap();
    let Body::Ack(a) = &ack.body else { panic!() };
    assert_eq!(a.msg_id, "m1");
    assert_eq!(a.node_id.as_ref().unwrap().to_string(), sender);
    assert_eq!(
        ack.to_json()["msg_id"],
        json!("8e7a5b0e-9f1c-4a5b-8c3d-2e1f0a9b8c7d")
    );

    // Two authors in one message are refused; a missing one names msg_data.node_id.
    let mut two = top(
        "JOIN",
        json!({ "channel": "lobby", "channel_id": "c1", "node_id": A }),
        32,
        true,
    );
    assert_eq!(field_of(decode(&two).unwrap_err()), "sender_id");
    two.as_object_mut().unwrap().remove("sender_id");
    assert!(decode(&two).is_ok());
    let mut none = top(
        "JOIN",
        json!({ "channel": "lobby", "channel_id": "c1" }),
        32,
        true,
    );
    none.as_object_mut().unwrap().remove("sender_id");
    assert_eq!(field_of(decode(&none).unwrap_err()), "msg_data.node_id");
    none["sender_id"] = json!("garbage");
    assert_eq!(field_of(decode(&none).unwrap_err()), "sender_id");
}

#[test]
fn ids_are_written_as_name_at_guid_for_the_later_revision() {
    let bare: ChatId = A.parse().unwrap();
    assert_eq!(bare.wire(), format!("kith@{A}"));
    let named: ChatId = B.parse().unwrap();
    assert_eq!(named.wire(), B);
    // The reference programs accept only letters and digits before the @.
    let odd = ChatId::named(bare.guid, Some("a b".into()));
    assert_eq!(odd.wire(), format!("kith@{A}"));
}
