//! Tickets on a wall clock the test moves: nothing waits for a ticket to expire.

mod support;

use kith_node::endpoint::{EndpointError, MemoryNet};
use std::time::Duration;
use support::TestNode;

#[tokio::test(start_paused = true)]
async fn an_expired_ticket_is_refused_by_its_issuer_even_if_its_text_is_doctored() {
    let net = MemoryNet::new();
    let a = TestNode::start(&net, |_| {}).await;
    let c = TestNode::start(&net, |_| {}).await;
    let ticket = a.ticket().await; // valid for 10 minutes
                                   // An hour passes on both nodes' wall clocks.
    a.clock.advance(Duration::from_secs(3600));
    c.clock.advance(Duration::from_secs(3600));

    // The holder's own check names it.
    let err = c
        .node
        .endpoint
        .connect_ticket(ticket.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, EndpointError::Ticket(_)), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");

    // A ticket whose text says it lasts forever: the issuer's record decides, silently.
    let mut doctored = ticket;
    doctored.expires = "2999-01-01T00:00:00Z".to_owned();
    let err = c.node.endpoint.connect_ticket(doctored).await.unwrap_err();
    assert!(
        err.to_string().contains("without answering"),
        "refused without a word: {err}"
    );
    assert_eq!(a.counter("refused_ticket"), 1);

    // A fresh ticket on the moved clock works.
    let fresh = a.ticket().await;
    c.node.endpoint.connect_ticket(fresh).await.unwrap();
}
