//! Chits: one payment (or setting) on a tally.
//!
//! Wire JSON: `{tally, uuid, by, type, date, units, ref, memo, hash, sign, chain?}`. The
//! *core* is `{by, date, memo, ref, tally, type, units, uuid}` with nulls removed; the party
//! giving value (`by`, the pledgor) signs the core's `json-stable-stringify` text, and `hash`
//! is the SHA-256 of the core as the reference database serialises it. In the chain, chit
//! `i`'s digest is the SHA-256 of the core with `{index: i, prior: <digest i-1>, sign}` added
//! (`mychips.chit_json_h`), so one digest commits to the whole ledger up to `i`.

use crate::canonical;
use crate::keys::{PublicKey, UserKey};
use crate::tally::{Side, MAX_UNITS};
use crate::{is_uuid, sha256_b64, time, ValueError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Longest memo kept, in bytes.
pub const MAX_MEMO: usize = 1024;
/// Largest `ref` kept, in bytes of JSON.
pub const MAX_REF: usize = 2048;

/// What a chit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChitType {
    /// A transaction: value moves.
    Tran,
    /// A setting: changes trading variables, or closes the tally (`ref: {"close": true}`).
    Set,
    /// Part of a lift (not made by kith yet).
    Lift,
}

impl ChitType {
    fn as_str(self) -> &'static str {
        match self {
            ChitType::Tran => "tran",
            ChitType::Set => "set",
            ChitType::Lift => "lift",
        }
    }
}

/// A chit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chit {
    /// The tally's UUID.
    pub tally: String,
    /// The chit's UUID.
    pub uuid: String,
    /// The side that gives value (and signs).
    pub by: Side,
    /// What it does.
    #[serde(rename = "type")]
    pub kind: ChitType,
    /// When it was made.
    pub date: String,
    /// Units of value (milliCHIPs), never negative.
    pub units: u64,
    /// What it refers to (an invoice, a request, a setting).
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Value>,
    /// A note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    /// The pledgor's signature over the core, once signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<String>,
}

impl Chit {
    /// An unsigned transaction chit.
    pub fn tran(
        tally: &str,
        uuid: String,
        by: Side,
        units: u64,
        millis: i64,
        memo: Option<String>,
        reference: Option<Value>,
    ) -> Chit {
        Chit {
            tally: tally.to_owned(),
            uuid,
            by,
            kind: ChitType::Tran,
            date: time::format_millis(millis),
            units,
            reference,
            memo,
            sign: None,
        }
    }

    /// Parses a chit from its wire JSON (extra members such as `hash` and `chain` are
    /// ignored here; the caller reads `chain`) and checks every field's bounds.
    pub fn from_json(value: &Value) -> Result<Chit, ValueError> {
        let chit: Chit = serde_json::from_value(value.clone())
            .map_err(|e| ValueError::field("chit", e.to_string()))?;
        chit.check()?;
        Ok(chit)
    }

    /// Checks bounds: UUIDs, units within 2^53-1, the date's form, memo and ref sizes.
    pub fn check(&self) -> Result<(), ValueError> {
        if !is_uuid(&self.tally) {
            return Err(ValueError::field("chit.tally", "not a UUID"));
        }
        if !is_uuid(&self.uuid) {
            return Err(ValueError::field("chit.uuid", "not a UUID"));
        }
        if self.units > MAX_UNITS {
            return Err(ValueError::field("chit.units", "over 2^53-1"));
        }
        if time::parse_millis(&self.date).is_none() {
            return Err(ValueError::field(
                "chit.date",
                "not YYYY-MM-DDTHH:MM:SS.sssZ",
            ));
        }
        if self.memo.as_ref().is_some_and(|m| m.len() > MAX_MEMO) {
            return Err(ValueError::field("chit.memo", "too long"));
        }
        if self
            .reference
            .as_ref()
            .is_some_and(|r| canonical::stable(r).len() > MAX_REF)
        {
            return Err(ValueError::field("chit.ref", "too large"));
        }
        Ok(())
    }

    /// The signed core, nulls removed.
    pub fn core(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("by".into(), json!(self.by.as_str()));
        map.insert("date".into(), json!(self.date));
        if let Some(memo) = &self.memo {
            map.insert("memo".into(), json!(memo));
        }
        if let Some(reference) = self.reference.as_ref().filter(|r| !r.is_null()) {
            map.insert("ref".into(), reference.clone());
        }
        map.insert("tally".into(), json!(self.tally));
        map.insert("type".into(), json!(self.kind.as_str()));
        map.insert("units".into(), json!(self.units));
        map.insert("uuid".into(), json!(self.uuid));
        map
    }

    /// The bytes the pledgor signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        canonical::stable(&Value::Object(self.core())).into_bytes()
    }

    /// The chit's own hash (of the core).
    pub fn hash(&self) -> String {
        sha256_b64(canonical::ascii(&Value::Object(self.core())).as_bytes())
    }

    /// Signs the chit with `key`, the pledgor's.
    pub fn sign_with(
        &mut self,
        key: &UserKey,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
    ) -> Result<(), ValueError> {
        self.sign = Some(key.sign(&self.signed_bytes(), rng)?);
        Ok(())
    }

    /// Checks the signature with the pledgor's key.
    pub fn verify(&self, pledgor: &PublicKey) -> Result<(), ValueError> {
        let sign = self
            .sign
            .as_deref()
            .ok_or(ValueError::BadSignature("missing"))?;
        pledgor.verify(&self.signed_bytes(), sign)
    }

    /// The chain digest of this chit at `index` after the digest `prior`.
    pub fn chain_digest(&self, index: u64, prior: &str) -> String {
        let mut map = self.core();
        map.insert("index".into(), json!(index));
        map.insert("prior".into(), json!(prior));
        if let Some(sign) = &self.sign {
            map.insert("sign".into(), json!(sign));
        }
        sha256_b64(canonical::ascii(&Value::Object(map)).as_bytes())
    }

    /// The wire JSON (`chit_json_r`: the core with `hash` and `sign`).
    pub fn to_json(&self) -> Value {
        let mut map = self.core();
        map.insert("hash".into(), json!(self.hash()));
        if let Some(sign) = &self.sign {
            map.insert("sign".into(), json!(sign));
        }
        Value::Object(map)
    }

    /// The units as seen from `side`: negative when `side` gives them.
    pub fn signed_units(&self, side: Side) -> i64 {
        let units = self.units as i64;
        if self.kind != ChitType::Tran && self.kind != ChitType::Lift {
            0
        } else if self.by == side {
            -units
        } else {
            units
        }
    }
}
