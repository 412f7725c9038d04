//! Nothing said is lost, and a channel is one channel: messages said while a member's link
//! is idle or down, or while either side restarts, arrive later; a restart keeps the
//! channels (ids, members, closed keys) and makes no new one; two nodes creating one public
//! name at once end in one channel; a channel is joined by id, and an unknown id makes
//! nothing.

mod support;

use std::time::Duration;

use kith_chat::router::{ChannelStanding, ChatEvent};
use kith_chat::ChatError;
use support::{sim_config, Net};

fn posted(net: &Net, i: usize, msg: &str) -> Option<(usize, usize)> {
    net.events[i].iter().find_map(|e| match e {
        ChatEvent::Posted {
            msg_id,
            recipients,
            queued,
        } if msg_id == msg => Some((*recipients, *queued)),
        _ => None,
    })
}

fn delivered_to(net: &Net, i: usize, msg: &str) -> usize {
    net.events[i]
        .iter()
        .filter(|e| matches!(e, ChatEvent::Delivered { msg_id, .. } if msg_id == msg))
        .count()
}

/// A - B - C in a line, all in `lobby`.
fn line_in_lobby() -> Net {
    let mut net = Net::new(3, 5, sim_config());
    net.link(0, 1);
    net.link(1, 2);
    net.run_for(Duration::from_secs(2));
    for i in 0..3 {
        net.act(i, |r, now| r.join(now, "lobby", false)).unwrap();
        net.run_for(Duration::from_secs(1));
    }
    net.run_for(Duration::from_secs(2));
    net
}

#[test]
fn a_channel_message_to_members_behind_idle_links_is_kept_and_delivered_when_they_link_again() {
    let mut net = line_in_lobby();
    // Links close after 20 s of quiet (less than the ROUTING refresh, which would otherwise
    // keep them open); the nodes keep each other as sleeping neighbours.
    net.idle_links(Duration::from_secs(20));
    net.run_for(Duration::from_secs(600));
    assert_eq!(net.idle_closed, 2, "both links closed for idleness");
    let before = net.relinked;
    let msg = net
        .act(0, |r, now| {
            r.say(now, "lobby", "after ten quiet minutes", Vec::new(), "t")
        })
        .unwrap();
    // Kept, one stored copy per member, until each member's receipt.
    assert_eq!(posted(&net, 0, &msg), Some((2, 0)));
    assert_eq!(net.persisted[0].len(), 2, "one stored copy per member");
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.deliveries(1, &msg), 1);
    assert_eq!(net.deliveries(2, &msg), 1, "B woke its link to C for it");
    assert_eq!(
        delivered_to(&net, 0, &msg),
        2,
        "both members signed receipts"
    );
    assert!(net.persisted[0].is_empty(), "forgotten once receipted");
    assert_eq!(net.relinked - before, 2, "each sleeping link woken once");
}

#[test]
fn messages_said_while_a_member_is_down_arrive_after_it_restarts_and_the_author_restarts_too() {
    let mut net = line_in_lobby();
    let lobby = net.routers[2].channels()[0].channel_id.clone();
    net.stop(2);
    net.run_for(Duration::from_secs(5));
    let msg = net
        .act(0, |r, now| {
            r.say(now, "lobby", "while C was away", Vec::new(), "t")
        })
        .unwrap();
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.deliveries(1, &msg), 1, "B had it at once");
    assert_eq!(net.deliveries(2, &msg), 0);
    assert_eq!(net.persisted[0].len(), 1, "C's copy waits at A");
    let dm_target = net.ids[2];
    let dm = net
        .act(0, |r, now| {
            r.send_direct(now, &[dm_target], "psst", Vec::new(), "t")
        })
        .unwrap();
    // Hours pass (far longer than every receipt retry put together): nothing is given up
    // while there is no route.
    net.run_for(Duration::from_secs(3 * 3600));
    assert!(!net.events[0]
        .iter()
        .any(|e| matches!(e, ChatEvent::Unconfirmed { .. })));
    // The author restarts: its stored copies come back with it.
    net.stop(0);
    net.run_for(Duration::from_secs(5));
    assert!(net.start(0) >= 2);
    net.run_for(Duration::from_secs(5));
    // C restarts: same channel, same id, no new one, and everything arrives.
    assert_eq!(net.start(2), 1, "one channel record");
    net.run_for(Duration::from_secs(30));
    assert_eq!(net.deliveries(2, &msg), 1);
    assert_eq!(net.deliveries(2, &dm), 1);
    let channels = net.routers[2].channels();
    assert_eq!(channels.len(), 1, "no new channel: {channels:?}");
    assert_eq!(channels[0].channel_id, lobby);
    assert!(channels[0].joined);
    assert_eq!(channels[0].members.len(), 3);
    assert!(net.persisted[0].is_empty());
    // And C's answer reaches both.
    let reply = net
        .act(2, |r, now| r.say(now, "lobby", "back", Vec::new(), "t"))
        .unwrap();
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.deliveries(0, &reply), 1);
    assert_eq!(net.deliveries(1, &reply), 1);
}

#[test]
fn a_closed_channel_survives_a_restart_of_a_member_with_its_key_sealed_at_rest() {
    let mut net = Net::new(2, 9, sim_config());
    net.link(0, 1);
    net.run_for(Duration::from_secs(2));
    let id = net.act(0, |r, now| r.join(now, "secret", true)).unwrap();
    let b = net.ids[1];
    net.act(0, |r, now| r.invite(now, "secret", b)).unwrap();
    net.run_for(Duration::from_secs(5));
    let record = net.channel_records[1][&id].clone();
    assert!(record.closed);
    assert_eq!(record.standing, ChannelStanding::Member);
    assert!(!record.sealed_keys.is_empty());
    net.stop(1);
    net.run_for(Duration::from_secs(1));
    net.start(1);
    net.run_for(Duration::from_secs(3));
    // B reads what A says next, and A reads B, with no new invitation.
    let msg = net
        .act(0, |r, now| {
            r.say(now, "secret", "still ours", Vec::new(), "t")
        })
        .unwrap();
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.deliveries(1, &msg), 1);
    let back = net
        .act(1, |r, now| r.say(now, "secret", "yes", Vec::new(), "t"))
        .unwrap();
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.deliveries(0, &back), 1);
    // The key never sits in the record in clear.
    let views = net.routers[1].channels();
    assert_eq!(views.len(), 1);
    assert!(views[0].closed && views[0].joined);
}

#[test]
fn two_nodes_creating_one_public_name_at_once_end_in_one_channel_and_hear_each_other() {
    let mut net = Net::new(6, 21, sim_config());
    net.random_topology(2);
    net.run_for(Duration::from_secs(5));
    // Both create "lobby" at the same instant, and A speaks before anything has travelled.
    let a = net.act(0, |r, now| r.join(now, "lobby", false)).unwrap();
    let b = net.act(5, |r, now| r.join(now, "lobby", false)).unwrap();
    assert_eq!(a, b, "the public id comes from the name");
    let msg = net
        .act(0, |r, now| r.say(now, "lobby", "first!", Vec::new(), "t"))
        .unwrap();
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.deliveries(5, &msg), 1);
    for i in [0, 5] {
        let views = net.routers[i].channels();
        assert_eq!(views.len(), 1, "one channel on node {i}");
        assert_eq!(views[0].members.len(), 2);
    }
}

#[test]
fn a_channel_is_joined_by_id_and_an_unknown_id_makes_nothing() {
    let mut net = Net::new(2, 3, sim_config());
    net.link(0, 1);
    net.run_for(Duration::from_secs(2));
    let id = net.act(0, |r, now| r.join(now, "books", false)).unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.act(1, |r, now| r.join(now, &id, false)), Ok(id.clone()));
    net.run_for(Duration::from_secs(2));
    let views = net.routers[1].channels();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].name, "books");
    assert!(views[0].joined);
    let unknown = "0b6d5bd5-3a31-4c39-9a4b-7fd08d6b1c2e";
    assert!(matches!(
        net.act(1, |r, now| r.join(now, unknown, false)),
        Err(ChatError::UnknownChannelId(_))
    ));
    assert!(net.act(1, |r, now| r.join(now, unknown, true)).is_err());
    assert_eq!(
        net.routers[1].channels().len(),
        1,
        "no channel named after an id"
    );
    // Said by id too.
    let msg = net
        .act(1, |r, now| r.say(now, &id, "by id", Vec::new(), "t"))
        .unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.deliveries(0, &msg), 1);
}

#[test]
fn a_node_that_restarts_before_its_neighbours_notice_is_taken_back_at_its_hello() {
    let mut net = line_in_lobby();
    net.restart_unnoticed(1);
    net.run_for(Duration::from_secs(5));
    // B's new router knows A and C again (they answered its HELLO with theirs and their
    // tables, and took its ROUTING, whose seq started over).
    assert_eq!(net.routers[1].route_count(), 2);
    let c = net.ids[2];
    assert!(net.routers[0].route_to(&c).is_some());
    let msg = net
        .act(0, |r, now| {
            r.say(now, "lobby", "still one network", Vec::new(), "t")
        })
        .unwrap();
    let dm = net
        .act(0, |r, now| {
            r.send_direct(now, &[c], "via the restarted B", Vec::new(), "t")
        })
        .unwrap();
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.deliveries(1, &msg), 1);
    assert_eq!(net.deliveries(2, &msg), 1);
    assert_eq!(net.deliveries(2, &dm), 1);
    let forged: u64 = net.routers.iter().map(|r| r.counters().forged).sum();
    assert_eq!(forged, 0);
}
