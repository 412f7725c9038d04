//! Both revisions of the protocol: a client shaped like the reference programs (the later
//! revision: top-level msg_id, sender_id and target_id, no node_id in msg_data, plain text,
//! no signatures) talks both ways with a kith user two hops away, in a channel and directly;
//! its messages are shown unsigned, while a signed message that fails verification is still
//! refused. Everything travels as JSON.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use kith_chat::router::ChatEvent;
use kith_crypto::Identity;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use support::{sim_config, Net};

const CAROL: &str = "carol@7c9e6679-7425-40de-944b-e07fc1f90ae7";
const CAROL_GUID: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

fn later(verb: &str, data: Value, ttl: u64, flood: bool, id: &str, target: Option<&str>) -> Value {
    json!({ "msg_type": verb, "msg_data": data, "ttl": ttl, "flood": flood,
            "msg_id": id, "sender_id": CAROL, "target_id": target })
}

fn received(net: &Net, i: usize) -> Vec<kith_chat::router::ReceivedMessage> {
    net.events[i]
        .iter()
        .filter_map(|e| match e {
            ChatEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_later_revision_client_talks_both_ways_with_a_kith_user_two_hops_away() {
    let mut net = Net::new(3, 4, sim_config());
    net.json = true;
    net.link(0, 1);
    net.link(1, 2);
    net.run_for(Duration::from_secs(2));
    let lobby = net.act(2, |r, now| r.join(now, "lobby", false)).unwrap();
    net.run_for(Duration::from_secs(2));

    // Carol connects to node 0's chat port and says HELLO the later revision's way.
    let carol = net.attach_client(0, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    assert!(net.inject_json(
        carol,
        &later(
            "HELLO",
            json!({ "version": "PtpChat 1.0", "attributes": { "node_type": "client" } }),
            1,
            false,
            "0c1d2e3f-0000-4000-8000-000000000001",
            None,
        ),
    ));
    net.run_for(Duration::from_millis(50));
    let inbox = net.inbox_json(carol);
    let hello = inbox.iter().find(|m| m["msg_type"] == "HELLO").unwrap();
    // What the node writes is readable by the reference programs: top-level fields, ids as
    // name@GUID, a msg_id of its own.
    assert!(hello["sender_id"].as_str().unwrap().contains('@'));
    assert!(hello["msg_id"].is_string());
    let channel = inbox
        .iter()
        .find(|m| m["msg_type"] == "CHANNEL" && m["msg_data"]["channel"] == "lobby")
        .expect("the node announces the lobby");
    assert_eq!(channel["msg_data"]["channel_id"], json!(lobby));
    assert!(channel["sender_id"].is_string());

    // She joins and speaks, in plain text, signing nothing.
    assert!(net.inject_json(
        carol,
        &later(
            "JOIN",
            json!({ "channel": "lobby", "channel_id": lobby,
                    "msg_id": "0c1d2e3f-0000-4000-8000-000000000002" }),
            32,
            true,
            "0c1d2e3f-0000-4000-8000-000000000002",
            None,
        ),
    ));
    net.run_for(Duration::from_secs(1));
    assert!(net.inject_json(
        carol,
        &later(
            "MESSAGE",
            json!({ "msg_id": "0c1d2e3f-0000-4000-8000-000000000003", "channel": "lobby",
                    "channel_id": lobby, "message": "hi from carol", "recipient": [],
                    "timestamp": "2016-03-12T10:00:00" }),
            32,
            true,
            "0c1d2e3f-0000-4000-8000-000000000003",
            None,
        ),
    ));
    net.run_for(Duration::from_secs(2));
    let got = received(&net, 2);
    let m = got
        .iter()
        .find(|m| m.text == "hi from carol")
        .expect("node 2 reads her");
    assert!(!m.signed, "shown as unsigned");
    assert_eq!(m.from.to_string(), CAROL);
    assert_eq!(m.channel.as_ref().unwrap().1, lobby);

    // Node 2's user answers in the channel and directly: she reads both as plain text.
    net.act(2, |r, now| r.say(now, "lobby", "hi carol", Vec::new(), "t"))
        .unwrap();
    let carol_guid = CAROL_GUID.parse().unwrap();
    net.act(2, |r, now| {
        r.send_direct(now, &[carol_guid], "just for you", Vec::new(), "t")
    })
    .unwrap();
    net.run_for(Duration::from_secs(2));
    let texts: Vec<(String, Value)> = net
        .inbox_json(carol)
        .into_iter()
        .filter(|m| m["msg_type"] == "MESSAGE")
        .map(|m| (m["msg_data"]["message"].as_str().unwrap().to_string(), m))
        .collect();
    assert!(texts.iter().any(|(t, _)| t == "hi carol"), "{texts:?}");
    let (_, direct) = texts.iter().find(|(t, _)| t == "just for you").unwrap();
    assert_eq!(direct["target_id"], json!(CAROL), "target_id as name@GUID");
    assert!(direct["sender_id"]
        .as_str()
        .unwrap()
        .ends_with(&net.ids[2].to_string()));

    // And she answers directly, the later revision's way (target_id, no channel).
    let node2 = format!("kith@{}", net.ids[2]);
    assert!(net.inject_json(
        carol,
        &later(
            "MESSAGE",
            json!({ "msg_id": "0c1d2e3f-0000-4000-8000-000000000004",
                    "channel_id": "00000000-0000-0000-0000-000000000000",
                    "message": "thanks", "recipient": [{ "node_id": node2 }],
                    "timestamp": "2016-03-12T10:01:00" }),
            32,
            false,
            "0c1d2e3f-0000-4000-8000-000000000004",
            Some(&node2),
        ),
    ));
    net.run_for(Duration::from_secs(2));
    let m = received(&net, 2)
        .into_iter()
        .find(|m| m.text == "thanks")
        .expect("the direct answer arrives");
    assert!(!m.signed && m.channel.is_none());
}

#[test]
fn a_signed_message_that_fails_verification_is_refused_while_unsigned_ones_pass() {
    let mut net = Net::new(2, 6, sim_config());
    net.json = true;
    net.link(0, 1);
    net.run_for(Duration::from_secs(2));
    net.act(1, |r, now| r.join(now, "lobby", false)).unwrap();
    net.run_for(Duration::from_secs(2));
    let lobby = net.routers[1].channels()[0].channel_id.clone();
    // A client with a key proves it, then sends a MESSAGE whose signature is wrong.
    let key = Identity::generate(&mut StdRng::seed_from_u64(77));
    let client = net.proven_client(0, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8)), &key);
    net.run_for(Duration::from_millis(50));
    let mut bad = support::signed_message(&key, "bad-1", &[], Some(("lobby", &lobby)), "x", true);
    let last = bad.message.len() - 1;
    bad.message[last] ^= 1;
    let mut env = support::flooded(kith_chat::message::Body::Message(bad));
    env.ttl = 32;
    let forged_before = net.routers[0].counters().forged;
    net.inject(client, env);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.routers[0].counters().forged, forged_before + 1);
    assert!(received(&net, 1).is_empty(), "never shown");
    // The same text correctly signed passes, signed.
    let good = support::signed_message(&key, "good-1", &[], Some(("lobby", &lobby)), "x", true);
    net.inject(
        client,
        support::flooded(kith_chat::message::Body::Message(good)),
    );
    net.run_for(Duration::from_secs(1));
    let got = received(&net, 1);
    assert_eq!(got.len(), 1);
    assert!(got[0].signed);
}
