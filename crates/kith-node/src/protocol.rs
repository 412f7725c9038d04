//! Protocols on links: the handler trait, and the router that hands each payload to the
//! protocol that registered its command.
//!
//! Shaped like iroh's `Router::builder(endpoint).accept(alpn, handler)`: a service
//! implements [`ProtocolHandler`], lists the envelope commands it handles, and is registered
//! once at start-up; the endpoint calls the router, the router calls handlers, and handlers
//! talk back only through their own endpoint handle (never the reverse: the endpoint knows no
//! service, as rust-libp2p's swarm calls its behaviours).

use crate::endpoint::{Endpoint, Inbound, Payload};
use kith_crypto::identity::AgentId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The pseudo-command under which a handler takes the JSON payloads (one JSON object per
/// frame, as the MyCHIPs reference sends them).
pub const JSON_PAYLOADS: &str = "{json}";

/// A link event, per peer and in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The peer's first link is up: before any of its payloads.
    Up {
        /// The peer.
        peer: AgentId,
        /// Where its link comes from.
        remote: SocketAddr,
    },
    /// The peer's last link has ended: after the last of its payloads.
    Down {
        /// The peer.
        peer: AgentId,
    },
}

/// A protocol that rides secure links.
pub trait ProtocolHandler: Send + Sync + 'static {
    /// The envelope commands it handles ([`JSON_PAYLOADS`] for JSON frames).
    fn commands(&self) -> &'static [&'static str];

    /// A payload from `peer`. Runs on the link's task: it must not wait (queue with a bound,
    /// or drop and count).
    fn on_payload(&self, peer: AgentId, payload: Payload);

    /// A peer came up or went down. Runs on a link's task, in order per peer: it must not
    /// wait, and must not call back into the endpoint synchronously.
    fn on_link(&self, _event: LinkEvent) {}
}

/// Hands payloads to the handler of their command, and link events to every handler.
pub struct Router {
    by_command: HashMap<&'static str, Arc<dyn ProtocolHandler>>,
    handlers: Vec<Arc<dyn ProtocolHandler>>,
    unhandled: crate::counters::Counter,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut commands: Vec<_> = self.by_command.keys().collect();
        commands.sort();
        f.debug_struct("Router")
            .field("commands", &commands)
            .finish()
    }
}

/// Registers handlers, then starts the endpoint with the router.
#[derive(Debug)]
pub struct RouterBuilder {
    endpoint: Endpoint,
    router: Router,
}

impl Router {
    /// A router for `endpoint`'s payloads.
    pub fn builder(endpoint: Endpoint) -> RouterBuilder {
        RouterBuilder {
            endpoint,
            router: Router {
                by_command: HashMap::new(),
                handlers: Vec::new(),
                unhandled: Default::default(),
            },
        }
    }

    /// Payloads that no handler took.
    pub fn unhandled(&self) -> u64 {
        self.unhandled.get()
    }
}

impl RouterBuilder {
    /// Registers `handler` for its commands. A command registered twice is a programming
    /// error, caught here.
    pub fn accept(mut self, handler: Arc<dyn ProtocolHandler>) -> RouterBuilder {
        for command in handler.commands() {
            let previous = self.router.by_command.insert(command, Arc::clone(&handler));
            assert!(
                previous.is_none(),
                "two handlers for the command {command:?}"
            );
        }
        self.router.handlers.push(handler);
        self
    }

    /// Starts the endpoint (accepting, re-linking) with this router receiving what arrives.
    pub fn spawn(self) -> Arc<Router> {
        let router = Arc::new(self.router);
        self.endpoint.start(Arc::clone(&router) as Arc<dyn Inbound>);
        router
    }
}

impl Inbound for Router {
    fn payload(&self, peer: AgentId, payload: Payload) {
        let command = match &payload {
            Payload::Envelope(envelope) => envelope.command.as_str(),
            Payload::Json(_) => JSON_PAYLOADS,
        };
        match self.by_command.get(command) {
            Some(handler) => handler.on_payload(peer, payload),
            None => {
                self.unhandled.bump();
                tracing::debug!(peer = %peer, command, "no handler for payload");
            }
        }
    }

    fn link_up(&self, peer: AgentId, remote: SocketAddr) {
        for handler in &self.handlers {
            handler.on_link(LinkEvent::Up { peer, remote });
        }
    }

    fn link_down(&self, peer: AgentId) {
        for handler in &self.handlers {
            handler.on_link(LinkEvent::Down { peer });
        }
    }
}
