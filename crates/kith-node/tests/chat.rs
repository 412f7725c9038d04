//! Chat over links that close when quiet, in process with tokio's clock paused: a message
//! for a node whose link closed for idleness opens it again and arrives; when that node has
//! gone, the wake fails, it is given up, and what was said waits (queued) until it is back.

mod support;

use kith_node::api::{ChatReply, ChatRequest};
use kith_node::endpoint::MemoryNet;
use std::time::Duration;
use support::{eventually, TestNode};

fn short_idle(limits: &mut kith_proto::Limits) {
    limits.idle_timeout_ms = 1_000;
}

async fn ask(node: &TestNode, request: ChatRequest) -> ChatReply {
    node.node.chat.request(request).await.unwrap()
}

async fn texts(node: &TestNode) -> Vec<String> {
    node.node
        .chat
        .read(0, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_quiet_link_is_woken_for_a_chat_message_and_a_gone_node_is_given_up() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, short_idle).await;
    let b = TestNode::start(&net, short_idle).await;
    b.link_to(&a).await;
    for node in [&a, &b] {
        ask(
            node,
            ChatRequest::Join {
                name: "lobby".into(),
                closed: false,
            },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Quiet: the link closes; chat keeps the other node as a sleeping neighbour.
    tokio::time::sleep(Duration::from_secs(10)).await;
    eventually("the idle link is closed", || {
        !a.node.endpoint.is_linked(&b.agent) && !b.node.endpoint.is_linked(&a.agent)
    })
    .await;
    let ChatReply::Sent { state, .. } = ask(
        &a,
        ChatRequest::Say {
            name: "lobby".into(),
            text: "after the quiet".into(),
            attachments: Vec::new(),
        },
    )
    .await
    else {
        panic!("not sent")
    };
    assert_eq!(state, "sent", "a sleeping neighbour still has its route");
    let mut got = Vec::new();
    for _ in 0..500 {
        got = texts(&b).await;
        if got.iter().any(|t| t == "after the quiet") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(got.iter().any(|t| t == "after the quiet"), "{got:?}");
    assert!(a.counter("chat_links_woken") + b.counter("chat_links_woken") >= 1);

    // B goes away for good: the next message cannot wake it; it is given up and what was
    // said waits for it.
    b.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    ask(
        &a,
        ChatRequest::Say {
            name: "lobby".into(),
            text: "are you there?".into(),
            attachments: Vec::new(),
        },
    )
    .await;
    eventually("the wake fails and B is given up", || {
        a.counter("chat_wakes_failed") >= 1
    })
    .await;
    // The receipt never comes: the copy goes back to waiting for a route, which A's next
    // request reports.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let ChatReply::Status {
        queued,
        awaiting_receipts,
        ..
    } = ask(&a, ChatRequest::Status).await
    else {
        panic!()
    };
    assert!(awaiting_receipts >= 1, "kept for B");
    assert!(queued >= 1, "waiting for a route to B");
}
