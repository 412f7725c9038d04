//! The reference's tally vector (`fixtures/mychips/validtally.json`, from the MyCHIPs
//! repository's `test/auto/unit/validtally.js`): both signatures verify over the canonical
//! text kith computes, and changing one byte of what was signed makes them fail.

use kith_value::tally::{Side, SignCheck, Tally};
use serde_json::Value;

fn vector() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/mychips/validtally.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

#[test]
fn reference_tally_signatures_verify() {
    let tally = Tally::from_json(vector()).expect("a tally");
    assert_eq!(tally.signed_bytes().len(), 2189);
    assert!(tally.signed_bytes().starts_with(
        br#"{"agree":{"domain":"mychips.org","name":"deluxe","version":1},"comment":null,"#
    ));
    assert_eq!(tally.check(Side::Stock), SignCheck::Valid);
    assert_eq!(tally.check(Side::Foil), SignCheck::Valid);
    tally.verify_both().expect("both verify");
}

#[test]
fn a_changed_byte_fails() {
    // One character of a signed member.
    let mut value = vector();
    value["foil"]["cert"]["name"]["first"] = Value::from("Jamez");
    let tally = Tally::from_json(value).expect("still a tally");
    assert!(matches!(tally.check(Side::Foil), SignCheck::Invalid(_)));
    assert!(matches!(tally.check(Side::Stock), SignCheck::Invalid(_)));

    // A number, and a null that becomes a string.
    let mut value = vector();
    value["stock"]["cert"]["chad"]["port"] = Value::from(65437);
    assert!(Tally::from_json(value).unwrap().verify_both().is_err());
    let mut value = vector();
    value["comment"] = Value::from("");
    assert!(Tally::from_json(value).unwrap().verify_both().is_err());

    // One bit of a signature.
    let mut value = vector();
    let sig = value["sign"]["stock"].as_str().unwrap().to_owned();
    let mut chars: Vec<char> = sig.chars().collect();
    chars[40] = if chars[40] == 'A' { 'B' } else { 'A' };
    value["sign"]["stock"] = Value::from(chars.into_iter().collect::<String>());
    let tally = Tally::from_json(value).unwrap();
    assert!(matches!(tally.check(Side::Stock), SignCheck::Invalid(_)));
    assert_eq!(tally.check(Side::Foil), SignCheck::Valid);
}

#[test]
fn the_reference_unit_tests_broken_keys_are_refused() {
    // What `test/auto/unit/tally.js` does to the vector: an invalid JWK and signature.
    let mut value = vector();
    value["foil"]["cert"]["public"]["x"] = Value::from("InvalidXValue");
    assert!(Tally::from_json(value).is_err());
}
