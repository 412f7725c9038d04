//! Chat: a public channel, a closed channel C cannot read until invited, a direct message
//! routed A → C through B, and a message to a stopped node delivered when it restarts.

use super::nodes::{wait_for, DemoNode};
use super::Step;
use anyhow::{bail, Result};
use kith_node::api::{ChannelInfo, ChatReply, ChatRequest};
use kith_node::api::{ChatReadBody, CHAT_PATH, CHAT_READ_PATH};
use kith_store::meta::ChatMessageRow;

/// A public channel.
pub const PUBLIC_CHANNEL: Step = Step {
    title: "A opens the public channel #lobby, B and C join, A says hello",
    proves: "channels spread over the chat overlay: C, two hops away, hears of #lobby and reads A's signed message",
    run: |demo| {
        join(&demo.a, "lobby", false)?;
        wait_for("C to hear of #lobby", || {
            Ok(channels(&demo.c)?.iter().any(|c| c.name == "lobby"))
        })?;
        join(&demo.b, "lobby", false)?;
        join(&demo.c, "lobby", false)?;
        say(&demo.a, "lobby", "hello from A")?;
        wait_for("C to read A's message", || has(&demo.c, Some("lobby"), "hello from A"))?;
        wait_for("B to read A's message", || has(&demo.b, Some("lobby"), "hello from A"))?;
        let on_c = messages(&demo.c, Some("lobby"))?;
        let m = on_c.iter().find(|m| m.text == "hello from A");
        if m.is_none_or(|m| m.sender != demo.a.node_id) {
            bail!("C's copy of the message does not name A as its sender");
        }
        Ok("B and C read \"hello from A\", signed by A's node id".into())
    },
};

/// A closed channel.
pub const CLOSED_CHANNEL: Step = Step {
    title: "A opens the closed channel #attic; C cannot join until A invites it",
    proves: "closed channels are invitation-only and encrypted: the invitation carries the key, B relays without reading",
    run: |demo| {
        join(&demo.a, "attic", true)?;
        say(&demo.a, "attic", "before C was invited")?;
        wait_for("C to hear of #attic", || {
            Ok(channels(&demo.c)?.iter().any(|c| c.name == "attic"))
        })?;
        let refused = match join(&demo.c, "attic", false) {
            Ok(()) => bail!("C joined the closed channel without an invitation"),
            Err(e) => e.root_cause().to_string(),
        };
        if has(&demo.c, None, "before C was invited")? {
            bail!("C read the closed channel before it was invited");
        }
        ask(&demo.a, ChatRequest::Invite { name: "attic".into(), node_id: demo.c.node_id.clone() })?;
        wait_for("C to join #attic on the invitation", || {
            Ok(channels(&demo.c)?.iter().any(|c| c.name == "attic" && c.joined))
        })?;
        say(&demo.a, "attic", "for members only")?;
        wait_for("C to read #attic", || has(&demo.c, Some("attic"), "for members only"))?;
        if has(&demo.b, None, "for members only")? {
            bail!("B, not invited, shows the closed channel's message");
        }
        Ok(format!(
            "uninvited, C was refused ({refused}); invited, C reads \"for members only\", B does not"
        ))
    },
};

/// A direct message A → C.
pub const DIRECT_MESSAGE: Step = Step {
    title: "A sends C a direct message; A and C have no link, B passes it on",
    proves:
        "direct messages are routed hop by hop (distance-vector routes, per-hop acknowledgement)",
    run: |demo| {
        send(&demo.a, &demo.c, "psst, C: a direct message")?;
        wait_for("C to get the direct message", || {
            has(&demo.c, None, "psst, C: a direct message")
        })?;
        if has(&demo.b, None, "psst, C: a direct message")? {
            bail!("B shows a direct message meant for C");
        }
        Ok("C got it through B; B relayed it without showing it".into())
    },
};

/// A message to a stopped node.
pub const OFFLINE_DELIVERY: Step = Step {
    title: "C stops; A sends it a message; C starts again",
    proves: "store-and-forward: a message for an unreachable node is kept (durably) and delivered when it is back",
    run: |demo| {
        let cleanup = demo.cleanup.clone();
        demo.c.stop(&cleanup);
        wait_for("B to notice C is gone", || Ok(demo.b.status()?.links == 1))?;
        send(&demo.a, &demo.c, "while you were away")?;
        demo.c.restart(&demo.cleanup)?;
        wait_for("C to re-link with B", || Ok(demo.c.status()?.links == 1))?;
        wait_for("C to get the message sent while it was stopped", || {
            has(&demo.c, None, "while you were away")
        })?;
        Ok("C, restarted, read \"while you were away\"".into())
    },
};

fn ask(node: &DemoNode, request: ChatRequest) -> Result<ChatReply> {
    node.post(CHAT_PATH, &request)
}

fn join(node: &DemoNode, name: &str, closed: bool) -> Result<()> {
    ask(
        node,
        ChatRequest::Join {
            name: name.into(),
            closed,
        },
    )?;
    Ok(())
}

fn say(node: &DemoNode, name: &str, text: &str) -> Result<()> {
    let request = ChatRequest::Say {
        name: name.into(),
        text: text.into(),
        attachments: vec![],
    };
    ask(node, request)?;
    Ok(())
}

fn send(from: &DemoNode, to: &DemoNode, text: &str) -> Result<()> {
    let request = ChatRequest::Send {
        node_id: to.node_id.clone(),
        text: text.into(),
        attachments: vec![],
    };
    ask(from, request)?;
    Ok(())
}

fn channels(node: &DemoNode) -> Result<Vec<ChannelInfo>> {
    match ask(node, ChatRequest::Channels)? {
        ChatReply::Channels(channels) => Ok(channels),
        other => bail!("node {} answered {other:?} to a channel list", node.name),
    }
}

/// The message log of `node` (one channel, or everything).
fn messages(node: &DemoNode, channel: Option<&str>) -> Result<Vec<ChatMessageRow>> {
    let body = ChatReadBody {
        channel: channel.map(str::to_owned),
        after: 0,
        limit: 1000,
        wait_ms: 0,
    };
    node.post(CHAT_READ_PATH, &body)
}

fn has(node: &DemoNode, channel: Option<&str>, text: &str) -> Result<bool> {
    Ok(messages(node, channel)?.iter().any(|m| m.text == text))
}
