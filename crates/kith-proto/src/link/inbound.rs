//! The receiving half of [`LinkMachine`]: a frame's plaintext split into JSON frames and
//! envelopes, and the link-level envelopes acted on.

use std::time::Instant;

use super::machine::LinkMachine;
use super::version::bye_reason;
use super::{Event, LinkEnd, LinkFailure, Payload, VersionError, VersionInfo};
use crate::wire::{Command, Envelope};

fn pong() -> Command {
    // A fixed, valid name.
    Command::new("pong").unwrap_or_else(|_| unreachable!("pong is a valid command"))
}

impl LinkMachine {
    /// A frame's plaintext, just appended to `self.plain` at `start`: a JSON frame (a frame
    /// that starts with `{` where no envelope is half-read), or more of the envelope stream.
    pub(super) fn on_plaintext(&mut self, now: Instant, start: usize) {
        if start == 0 && self.plain.first() == Some(&b'{') {
            let json = self.plain.split().freeze();
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&json) {
                return self.lose(LinkFailure::Json(e.to_string()));
            }
            self.stats.json_in += 1;
            return self.events.push_back(Event::Payload(Payload::Json(json)));
        }
        while self.ended.is_none() && !self.heard_bye {
            // `check` first: `decode` of a partial envelope reserves its whole declared
            // length, so a 24-byte header would make a link hold `max_envelope_data` (2 MiB)
            // for nothing. The buffer grows with what actually arrives instead.
            match self.envelopes.check(&self.plain) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return self.lose(e.into()),
            }
            match self.envelopes.decode(&mut self.plain) {
                Ok(Some(env)) => self.on_envelope(now, env),
                Ok(None) => break,
                Err(e) => return self.lose(e.into()),
            }
        }
    }

    fn on_envelope(&mut self, _now: Instant, env: Envelope) {
        self.stats.envelopes_in += 1;
        match env.command.as_str() {
            "version" => self.on_version(&env.data),
            "ping" if env.data.len() == 8 => {
                if self.said_bye || self.transmit.len() >= self.settings.max_pending_transmit {
                    self.stats.pings_unanswered += 1;
                } else {
                    self.seal_envelope(&Envelope::new(pong(), env.data));
                    self.stats.pings_answered += 1;
                }
            }
            "pong" if env.data.len() == 8 => {
                let mut nonce = [0u8; 8];
                nonce.copy_from_slice(&env.data);
                match self.pings.iter().position(|n| *n == nonce) {
                    Some(i) => {
                        self.pings.remove(i);
                        self.events.push_back(Event::Pong { nonce });
                    }
                    None => self.stats.pongs_unmatched += 1,
                }
            }
            "ping" | "pong" => self.stats.malformed_ignored += 1,
            "bye" => self.on_bye(&env.data),
            _ => self
                .events
                .push_back(Event::Payload(Payload::Envelope(env))),
        }
    }

    fn on_version(&mut self, data: &[u8]) {
        if self.peer_version.is_some() {
            // Only the first counts: a flood of versions costs the layers above nothing.
            self.stats.versions_ignored += 1;
            return;
        }
        let info = match VersionInfo::from_json(data) {
            Ok(info) => info,
            Err(e) => return self.end(LinkEnd::Incompatible(e)),
        };
        if info.common_protocols(&self.settings.protocols).is_empty() {
            let e = VersionError::NoCommonProtocol {
                ours: self.settings.protocols.clone(),
                theirs: info.protocols,
            };
            return self.end(LinkEnd::Incompatible(e));
        }
        // Both sides list it on an authenticated link: from here on (the peer's version
        // precedes whatever it sends unsummed, ours precedes what we do) checksums are out.
        let listed = |caps: &[String]| caps.iter().any(|c| c == super::UNSUMMED_CAPABILITY);
        if self.link.mode() == crate::secure::Mode::Noise
            && listed(&self.settings.capabilities)
            && listed(&info.capabilities)
        {
            self.unsummed = true;
            self.envelopes.set_verify_checksums(false);
        }
        self.peer_version = Some(info.clone());
        self.events.push_back(Event::Version(info));
    }

    fn on_bye(&mut self, data: &[u8]) {
        self.heard_bye = true;
        self.peer_bye_reason = bye_reason(data);
        if self.said_bye {
            self.end(LinkEnd::Orderly);
        } else {
            self.events.push_back(Event::PeerDone);
        }
    }
}
