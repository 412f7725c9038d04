//! The tally document: `{version, revision, uuid, date, memo, agree, stock: {cert, terms},
//! foil: {cert, terms}, sign: {hash, stock, foil}}`.
//!
//! Both parties sign the same bytes: the `json-stable-stringify` text of the tally without
//! `sign`. `sign.hash` is the SHA-256 (base64url) of the same document in the reference
//! database's serialisation (`mychips.j2h`, [`canonical::ascii`]), block 0 of the chit chain;
//! the two texts are the same for ASCII content.
//!
//! A tally is kept as the JSON object it is (unknown members included), so what a partner
//! signed is exactly what is verified; typed accessors read it.

use crate::canonical;
use crate::cert::{Certificate, Chad};
use crate::keys::{PublicKey, UserKey};
use crate::{is_uuid, sha256_b64, ValueError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The largest balance or limit, in units: JavaScript's largest exact integer.
pub const MAX_UNITS: u64 = (1 << 53) - 1;

/// A side of a tally. The stock holder is typically the vendor, the foil holder the client;
/// in kith the user who issued the tally ticket holds the stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The stock.
    Stock,
    /// The foil.
    Foil,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Stock => Side::Foil,
            Side::Foil => Side::Stock,
        }
    }

    /// `stock` or `foil`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Stock => "stock",
            Side::Foil => "foil",
        }
    }

    /// Parses `stock` or `foil`.
    pub fn parse(text: &str) -> Option<Side> {
        match text {
            "stock" => Some(Side::Stock),
            "foil" => Some(Side::Foil),
            _ => None,
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of checking one side's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignCheck {
    /// Present and valid.
    Valid,
    /// Not there.
    Missing,
    /// There, and wrong (or the key is).
    Invalid(String),
}

/// A tally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tally(Map<String, Value>);

/// What a new tally is made of.
#[derive(Debug, Clone)]
pub struct TallyDraft {
    /// Its id.
    pub uuid: String,
    /// Its date (`YYYY-MM-DDTHH:MM:SS.sssZ`).
    pub date: String,
    /// The stock holder's certificate.
    pub stock: Certificate,
    /// The credit the stock holder grants the foil holder.
    pub stock_terms: Value,
    /// The foil holder's certificate.
    pub foil: Certificate,
    /// The credit the foil holder grants the stock holder.
    pub foil_terms: Value,
    /// A comment, or `None` (kept as `null`, as the reference does).
    pub memo: Option<String>,
}

/// The contract kith's tallies refer to (the reference's default).
pub fn default_agreement() -> Value {
    json!({"domain": "mychips.org", "name": "deluxe", "version": 1})
}

/// Credit terms granting `limit` units.
pub fn terms_with_limit(limit: u64) -> Value {
    json!({ "limit": limit })
}

impl Tally {
    /// A new unsigned tally, revision 1.
    pub fn new(draft: TallyDraft) -> Tally {
        let value = json!({
            "version": 1,
            "revision": 1,
            "uuid": draft.uuid,
            "date": draft.date,
            "memo": draft.memo,
            "agree": default_agreement(),
            "stock": {"cert": draft.stock.0, "terms": draft.stock_terms},
            "foil": {"cert": draft.foil.0, "terms": draft.foil_terms},
        });
        match value {
            Value::Object(map) => Tally(map),
            _ => unreachable!("json! of an object is an object"),
        }
    }

    /// Checks a tally that arrived (or was read from a file): an object with a UUID, both
    /// certificates with their keys, and terms that are objects.
    pub fn from_json(value: Value) -> Result<Tally, ValueError> {
        let Value::Object(map) = value else {
            return Err(ValueError::field("tally", "not a JSON object"));
        };
        let tally = Tally(map);
        let uuid = tally.uuid();
        if !is_uuid(uuid) {
            return Err(ValueError::field("uuid", format!("{uuid:?} is not a UUID")));
        }
        for side in [Side::Stock, Side::Foil] {
            tally.cert(side)?.public()?;
            tally.cert(side)?.chad()?;
            if !tally.terms(side).is_object() {
                return Err(ValueError::field(
                    format!("{side}.terms"),
                    "not a JSON object",
                ));
            }
            tally.limit(side)?;
        }
        Ok(tally)
    }

    /// The JSON object.
    pub fn to_json(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// Its id (empty when missing).
    pub fn uuid(&self) -> &str {
        self.0.get("uuid").and_then(Value::as_str).unwrap_or("")
    }

    /// Its revision (1 when missing, as in the older format).
    pub fn revision(&self) -> u64 {
        self.0.get("revision").and_then(Value::as_u64).unwrap_or(1)
    }

    /// The tally without `sign`: what both parties sign.
    pub fn unsigned(&self) -> Value {
        let mut map = self.0.clone();
        map.remove("sign");
        Value::Object(map)
    }

    /// The bytes both parties sign.
    pub fn signed_bytes(&self) -> Vec<u8> {
        canonical::stable(&self.unsigned()).into_bytes()
    }

    /// The tally's hash (block 0 of the chit chain).
    pub fn hash(&self) -> String {
        sha256_b64(canonical::ascii(&self.unsigned()).as_bytes())
    }

    fn part(&self, side: Side) -> Option<&Map<String, Value>> {
        self.0.get(side.as_str()).and_then(Value::as_object)
    }

    /// A side's certificate.
    pub fn cert(&self, side: Side) -> Result<Certificate, ValueError> {
        self.part(side)
            .and_then(|p| p.get("cert"))
            .filter(|c| c.is_object())
            .cloned()
            .map(Certificate)
            .ok_or_else(|| ValueError::field(format!("{side}.cert"), "missing"))
    }

    /// A side's CHAD.
    pub fn chad(&self, side: Side) -> Result<Chad, ValueError> {
        self.cert(side)?.chad()
    }

    /// A side's public key.
    pub fn public(&self, side: Side) -> Result<PublicKey, ValueError> {
        self.cert(side)?.public()
    }

    /// A side's terms (`{}` when missing).
    pub fn terms(&self, side: Side) -> Value {
        self.part(side)
            .and_then(|p| p.get("terms"))
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    /// The credit `side` grants its partner (`terms.limit`, 0 when not given).
    pub fn limit(&self, side: Side) -> Result<u64, ValueError> {
        match self.terms(side).get("limit") {
            None | Some(Value::Null) => Ok(0),
            Some(limit) => limit.as_u64().filter(|l| *l <= MAX_UNITS).ok_or_else(|| {
                ValueError::field(
                    format!("{side}.terms.limit"),
                    "not a whole number of units between 0 and 2^53-1",
                )
            }),
        }
    }

    /// Which side a user (by CHAD) holds, if either.
    pub fn side_of(&self, user: &Chad) -> Option<Side> {
        [Side::Stock, Side::Foil]
            .into_iter()
            .find(|side| self.chad(*side).is_ok_and(|c| c.same_user(user)))
    }

    /// A side's signature, if present.
    pub fn signature(&self, side: Side) -> Option<&str> {
        self.0
            .get("sign")
            .and_then(|s| s.get(side.as_str()))
            .and_then(Value::as_str)
    }

    /// Signs for `side` with `key` (which must be that side's certificate key) and sets
    /// `sign.hash`.
    pub fn sign(
        &mut self,
        side: Side,
        key: &UserKey,
        rng: &mut (impl rand::RngCore + rand::CryptoRng),
    ) -> Result<(), ValueError> {
        if self.public(side)? != key.public() {
            return Err(ValueError::field(
                format!("{side}.cert.public"),
                "is not the signing user's key",
            ));
        }
        let signature = key.sign(&self.signed_bytes(), rng)?;
        let hash = self.hash();
        let sign = self
            .0
            .entry("sign")
            .or_insert_with(|| Value::Object(Map::new()));
        if !sign.is_object() {
            *sign = Value::Object(Map::new());
        }
        if let Value::Object(sign) = sign {
            sign.insert(side.as_str().to_owned(), Value::String(signature));
            sign.insert("hash".to_owned(), Value::String(hash));
        }
        Ok(())
    }

    /// Removes both signatures (a counter-offer clears them).
    pub fn clear_signatures(&mut self) {
        self.0.remove("sign");
    }

    /// Sets a member of the document (a counter-offer changes terms or the memo); signatures
    /// are cleared, since they no longer hold.
    pub fn set(&mut self, path: &[&str], value: Value) {
        self.clear_signatures();
        let mut map = &mut self.0;
        for (i, key) in path.iter().enumerate() {
            if i + 1 == path.len() {
                map.insert((*key).to_owned(), value);
                return;
            }
            let next = map
                .entry((*key).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            let Value::Object(next) = next else { return };
            map = next;
        }
    }

    /// Moves to the next revision (a counter-offer), clearing the signatures.
    pub fn next_revision(&mut self) {
        let next = self.revision() + 1;
        self.set(&["revision"], json!(next));
    }

    /// Checks `side`'s signature against its certificate's key.
    pub fn check(&self, side: Side) -> SignCheck {
        let Some(signature) = self.signature(side) else {
            return SignCheck::Missing;
        };
        match self
            .public(side)
            .and_then(|key| key.verify(&self.signed_bytes(), signature))
        {
            Ok(()) => SignCheck::Valid,
            Err(e) => SignCheck::Invalid(e.to_string()),
        }
    }

    /// Both signatures present and valid.
    pub fn verify_both(&self) -> Result<(), ValueError> {
        for side in [Side::Stock, Side::Foil] {
            match self.check(side) {
                SignCheck::Valid => {}
                SignCheck::Missing => {
                    return Err(ValueError::field(format!("sign.{side}"), "missing"))
                }
                SignCheck::Invalid(why) => {
                    return Err(ValueError::field(format!("sign.{side}"), why))
                }
            }
        }
        Ok(())
    }

    /// Whether the two tallies are the same agreement, signatures aside.
    pub fn same_terms(&self, other: &Tally) -> bool {
        self.unsigned() == other.unsigned()
    }
}
