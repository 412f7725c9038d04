//! The chit chain driven by a small simulator: both holders pay at random (simultaneous
//! payments included), and the network loses, duplicates and reorders messages; every
//! message goes through its wire JSON. Whatever happens, once the network is quiet and each
//! side has resynchronised, both hold the same chain, `conf` never went back, no confirmed
//! index ever differed between them, and no balance passed a credit limit.

use kith_value::cert::{Certificate, Chad};
use kith_value::chain::{ChainMsg, Confirmed, Keys, Link, Out};
use kith_value::message::{Body, Message};
use kith_value::tally::{terms_with_limit, Side, Tally, TallyDraft};
use kith_value::{new_uuid, Chit, Ledger, UserKey};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};

struct Holder {
    key: UserKey,
    chad: Chad,
    ledger: Ledger,
    confirmed: Store,
    paid: Vec<String>,
}

#[derive(Default, Clone)]
struct Store {
    by_uuid: HashMap<String, Link>,
    by_index: BTreeMap<u64, (String, String)>,
    chits: HashMap<String, Chit>,
}

impl Confirmed for Store {
    fn confirmed(&self, uuid: &str) -> Option<Link> {
        self.by_uuid.get(uuid).cloned()
    }
    fn at(&self, index: u64) -> Option<Link> {
        self.by_index.get(&index).map(|(_, digest)| Link {
            index,
            digest: digest.clone(),
        })
    }

    fn entries_after(&self, index: u64, limit: usize) -> Vec<kith_value::chain::Entry> {
        self.by_index
            .range(index + 1..)
            .take(limit)
            .filter_map(|(i, (uuid, digest))| {
                Some(kith_value::chain::Entry {
                    chit: self.chits.get(uuid)?.clone(),
                    index: *i,
                    digest: digest.clone(),
                })
            })
            .collect()
    }
}

impl Holder {
    fn take_settled(&mut self) {
        for entry in self.ledger.settled.drain(..) {
            let link = Link {
                index: entry.index,
                digest: entry.digest.clone(),
            };
            self.confirmed.by_uuid.insert(entry.chit.uuid.clone(), link);
            self.confirmed
                .chits
                .insert(entry.chit.uuid.clone(), entry.chit.clone());
            self.confirmed
                .by_index
                .insert(entry.index, (entry.chit.uuid.clone(), entry.digest));
        }
    }
}

fn setup(rng: &mut StdRng, stock_limit: u64, foil_limit: u64) -> (Tally, Holder, Holder, Keys) {
    let keys = [UserKey::generate(rng), UserKey::generate(rng)];
    let chads = [
        Chad::parse("stocky:AGENT_S@127.0.0.1:1").unwrap(),
        Chad::parse("foily:AGENT_F@127.0.0.1:2").unwrap(),
    ];
    let date = "2025-01-01T00:00:00.000Z";
    let mut tally = Tally::new(TallyDraft {
        uuid: new_uuid(rng),
        date: date.into(),
        stock: Certificate::new(&chads[0], "Stock Holder", &keys[0].public(), date),
        stock_terms: terms_with_limit(stock_limit),
        foil: Certificate::new(&chads[1], "Foil Holder", &keys[1].public(), date),
        foil_terms: terms_with_limit(foil_limit),
        memo: None,
    });
    tally.sign(Side::Stock, &keys[0], rng).unwrap();
    tally.sign(Side::Foil, &keys[1], rng).unwrap();
    tally.verify_both().unwrap();
    let pub_keys = Keys {
        stock: keys[0].public(),
        foil: keys[1].public(),
    };
    let [sk, fk] = keys;
    let [sc, fc] = chads;
    let hash = tally.hash();
    let stock = Holder {
        key: sk,
        chad: sc,
        ledger: Ledger::new(Side::Stock, hash.clone(), stock_limit, foil_limit),
        confirmed: Store::default(),
        paid: Vec::new(),
    };
    let foil = Holder {
        key: fk,
        chad: fc,
        ledger: Ledger::new(Side::Foil, hash, foil_limit, stock_limit),
        confirmed: Store::default(),
        paid: Vec::new(),
    };
    (tally, stock, foil, pub_keys)
}

/// Turns a ledger output into the bytes of a wire message.
fn wire(out: Out, tally: &str, from: &Chad, to: &Chad) -> Vec<u8> {
    let body = match out {
        Out::Good { chit, at, conf } => Body::Good {
            chit,
            at: Some(at),
            conf: Some(conf),
        },
        Out::Chain(msg) => Body::Chain {
            tally: tally.to_owned(),
            msg,
        },
        Out::Refuse { uuid, reason } => Body::Void {
            tally: tally.to_owned(),
            uuid,
            reason: Some(reason.to_string()),
        },
    };
    Message {
        to: to.clone(),
        from: from.clone(),
        body,
    }
    .to_bytes()
}

/// Delivers one message to `holder`; returns its answers.
fn deliver(holder: &mut Holder, bytes: &[u8], tally: &str, keys: &Keys) -> Vec<Out> {
    let msg = Message::parse(bytes).expect("our own messages parse");
    let before = holder.ledger.conf.index;
    let result = match msg.body {
        Body::Good { chit, at, .. } => {
            holder
                .ledger
                .remote_good(chit, at, tally, keys, &holder.confirmed)
        }
        Body::Chain { msg, .. } => holder
            .ledger
            .remote_chain(msg, tally, keys, &holder.confirmed),
        Body::Void { uuid, .. } => Ok(holder.ledger.refused(&uuid)),
        other => panic!("unexpected {other:?}"),
    };
    holder.take_settled();
    assert!(holder.ledger.conf.index >= before, "conf went back");
    match result {
        Ok(outcome) => outcome.out,
        // Honest partners never make the other refuse.
        Err(refusal) => panic!("{:?} refused: {refusal}", holder.ledger.side),
    }
}

fn pay(holder: &mut Holder, rng: &mut StdRng, tally: &str, keys: &Keys, units: u64) -> Vec<Out> {
    let side = holder.ledger.side;
    if holder.ledger.can_pay(units).is_err() {
        return Vec::new();
    }
    let mut chit = Chit::tran(
        tally,
        new_uuid(rng),
        side,
        units,
        1_700_000_000_000,
        None,
        None,
    );
    chit.sign_with(&holder.key, rng).unwrap();
    holder.paid.push(chit.uuid.clone());
    let outcome = holder.ledger.local(chit, keys).expect("within the limit");
    holder.take_settled();
    outcome.out
}

fn run(seed: u64, steps: usize, loss: f64, dup: f64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (tally, mut stock, mut foil, keys) = setup(&mut rng, 40, 25);
    let uuid = tally.uuid().to_owned();
    // In flight: (to_foil, bytes).
    let mut net: Vec<(bool, Vec<u8>)> = Vec::new();
    let send =
        |net: &mut Vec<(bool, Vec<u8>)>, to_foil: bool, outs: Vec<Out>, from: &Chad, to: &Chad| {
            for out in outs {
                net.push((to_foil, wire(out, &uuid, from, to)));
            }
        };
    for _ in 0..steps {
        match rng.gen_range(0..10) {
            0 | 1 => {
                let units = rng.gen_range(1..12);
                let outs = pay(&mut stock, &mut rng, &uuid, &keys, units);
                send(&mut net, true, outs, &stock.chad, &foil.chad);
            }
            2 | 3 => {
                let units = rng.gen_range(1..12);
                let outs = pay(&mut foil, &mut rng, &uuid, &keys, units);
                send(&mut net, false, outs, &foil.chad, &stock.chad);
            }
            4 => {
                let outs = stock.ledger.resync();
                send(&mut net, true, outs, &stock.chad, &foil.chad);
            }
            5 => {
                let outs = foil.ledger.resync();
                send(&mut net, false, outs, &foil.chad, &stock.chad);
            }
            _ if !net.is_empty() => {
                let i = rng.gen_range(0..net.len());
                let (to_foil, bytes) = if rng.gen_bool(dup) {
                    net[i].clone()
                } else {
                    net.swap_remove(i)
                };
                if rng.gen_bool(loss) {
                    continue;
                }
                if to_foil {
                    let outs = deliver(&mut foil, &bytes, &uuid, &keys);
                    send(&mut net, false, outs, &foil.chad, &stock.chad);
                } else {
                    let outs = deliver(&mut stock, &bytes, &uuid, &keys);
                    send(&mut net, true, outs, &stock.chad, &foil.chad);
                }
            }
            _ => {}
        }
        check_agreement(&stock, &foil);
    }
    // Quiet network: deliver everything in order, resync until nothing is left.
    for round in 0.. {
        assert!(round < 50, "no convergence after 50 rounds (seed {seed})");
        while !net.is_empty() {
            let (to_foil, bytes) = net.remove(0);
            if to_foil {
                let outs = deliver(&mut foil, &bytes, &uuid, &keys);
                send(&mut net, false, outs, &foil.chad, &stock.chad);
            } else {
                let outs = deliver(&mut stock, &bytes, &uuid, &keys);
                send(&mut net, true, outs, &stock.chad, &foil.chad);
            }
            check_agreement(&stock, &foil);
        }
        if !stock.ledger.unsettled()
            && !foil.ledger.unsettled()
            && stock.ledger.conf == foil.ledger.conf
        {
            break;
        }
        let outs = stock.ledger.resync();
        send(&mut net, true, outs, &stock.chad, &foil.chad);
        let outs = foil.ledger.resync();
        send(&mut net, false, outs, &foil.chad, &stock.chad);
    }
    assert_eq!(stock.confirmed.by_index, foil.confirmed.by_index);
    assert_eq!(stock.ledger.balance, -foil.ledger.balance);
    let chained = stock.confirmed.by_uuid.len();
    assert_eq!(
        chained,
        stock.paid.len() + foil.paid.len(),
        "every payment chained once"
    );
    assert!(
        stock.ledger.balance >= -25 && stock.ledger.balance <= 40,
        "{}",
        stock.ledger.balance
    );
}

fn check_agreement(stock: &Holder, foil: &Holder) {
    for (index, (uuid, digest)) in &stock.confirmed.by_index {
        if let Some((other_uuid, other_digest)) = foil.confirmed.by_index.get(index) {
            assert_eq!(
                (uuid, digest),
                (other_uuid, other_digest),
                "index {index} differs"
            );
        }
    }
}

#[test]
fn a_perfect_network_confirms_every_chit() {
    run(1, 120, 0.0, 0.0);
}

#[test]
fn simultaneous_payments_converge() {
    // Both sides pay before either hears of the other.
    let mut rng = StdRng::seed_from_u64(9);
    let (tally, mut stock, mut foil, keys) = setup(&mut rng, 100, 100);
    let uuid = tally.uuid().to_owned();
    let a = pay(&mut stock, &mut rng, &uuid, &keys, 5);
    let b = pay(&mut foil, &mut rng, &uuid, &keys, 7);
    let mut to_foil: Vec<Vec<u8>> = a
        .into_iter()
        .map(|o| wire(o, &uuid, &stock.chad, &foil.chad))
        .collect();
    let mut to_stock: Vec<Vec<u8>> = b
        .into_iter()
        .map(|o| wire(o, &uuid, &foil.chad, &stock.chad))
        .collect();
    for _ in 0..10 {
        let (f, s) = (std::mem::take(&mut to_foil), std::mem::take(&mut to_stock));
        for m in f {
            to_stock.extend(
                deliver(&mut foil, &m, &uuid, &keys)
                    .into_iter()
                    .map(|o| wire(o, &uuid, &foil.chad, &stock.chad)),
            );
        }
        for m in s {
            to_foil.extend(
                deliver(&mut stock, &m, &uuid, &keys)
                    .into_iter()
                    .map(|o| wire(o, &uuid, &stock.chad, &foil.chad)),
            );
        }
    }
    assert!(!stock.ledger.unsettled() && !foil.ledger.unsettled());
    assert_eq!(stock.ledger.conf, foil.ledger.conf);
    assert_eq!(stock.ledger.conf.index, 2);
    assert_eq!(stock.ledger.balance, 2);
    assert_eq!(foil.ledger.balance, -2);
}

#[test]
fn a_forged_chit_changes_nothing() {
    let mut rng = StdRng::seed_from_u64(3);
    let (tally, mut stock, foil, keys) = setup(&mut rng, 100, 100);
    let uuid = tally.uuid().to_owned();
    // Signed by the stock's own key but claiming to be the foil's pledge.
    let mut chit = Chit::tran(&uuid, new_uuid(&mut rng), Side::Foil, 10, 0, None, None);
    chit.sign_with(&stock.key, &mut rng).unwrap();
    let before = stock.ledger.clone();
    let got = stock
        .ledger
        .remote_good(chit, None, &uuid, &keys, &stock.confirmed);
    assert_eq!(got.unwrap_err(), kith_value::chain::Refusal::BadSignature);
    assert_eq!(stock.ledger, before);
    // Over the limit the stock grants.
    let mut chit = Chit::tran(&uuid, new_uuid(&mut rng), Side::Foil, 101, 0, None, None);
    chit.sign_with(&foil.key, &mut rng).unwrap();
    let got = stock
        .ledger
        .remote_good(chit, None, &uuid, &keys, &stock.confirmed);
    assert!(matches!(
        got,
        Err(kith_value::chain::Refusal::OverLimit { .. })
    ));
    assert_eq!(stock.ledger, before);
    // A fork: a new chit placed at an index both confirmed.
    let outs = pay(&mut stock, &mut rng, &uuid, &keys, 1);
    let mut foil = foil;
    for o in outs {
        let m = wire(o, &uuid, &stock.chad, &foil.chad);
        for back in deliver(&mut foil, &m, &uuid, &keys) {
            let m = wire(back, &uuid, &foil.chad, &stock.chad);
            deliver(&mut stock, &m, &uuid, &keys);
        }
    }
    assert_eq!(stock.ledger.conf.index, 1);
    let mut chit = Chit::tran(&uuid, new_uuid(&mut rng), Side::Foil, 1, 0, None, None);
    chit.sign_with(&foil.key, &mut rng).unwrap();
    let before = stock.ledger.clone();
    let fork = Link {
        index: 1,
        digest: "x".into(),
    };
    let got = stock
        .ledger
        .remote_good(chit, Some(fork), &uuid, &keys, &stock.confirmed);
    assert_eq!(got.unwrap_err(), kith_value::chain::Refusal::Fork(1));
    assert_eq!(stock.ledger, before);
    let _ = ChainMsg::Nak {
        index: 0,
        hash: None,
        conf: 0,
    };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn lost_duplicated_and_reordered_messages_converge(seed in any::<u64>(), loss in 0.0f64..0.4, dup in 0.0f64..0.3) {
        run(seed, 80, loss, dup);
    }
}

#[test]
fn a_stock_restored_from_an_older_backup_catches_up() {
    let mut rng = StdRng::seed_from_u64(11);
    let (tally, mut stock, mut foil, keys) = setup(&mut rng, 100, 100);
    let uuid = tally.uuid().to_owned();
    let exchange = |stock: &mut Holder, foil: &mut Holder, mut to_foil: Vec<Vec<u8>>| {
        let mut to_stock: Vec<Vec<u8>> = Vec::new();
        for _ in 0..20 {
            for m in std::mem::take(&mut to_foil) {
                to_stock.extend(
                    deliver(foil, &m, &uuid, &keys)
                        .into_iter()
                        .map(|o| wire(o, &uuid, &foil.chad, &stock.chad)),
                );
            }
            for m in std::mem::take(&mut to_stock) {
                to_foil.extend(
                    deliver(stock, &m, &uuid, &keys)
                        .into_iter()
                        .map(|o| wire(o, &uuid, &stock.chad, &foil.chad)),
                );
            }
        }
    };
    let outs = pay(&mut stock, &mut rng, &uuid, &keys, 3);
    let msgs = outs
        .into_iter()
        .map(|o| wire(o, &uuid, &stock.chad, &foil.chad))
        .collect();
    exchange(&mut stock, &mut foil, msgs);
    // The backup.
    let (ledger, store) = (stock.ledger.clone(), stock.confirmed.clone());
    for units in [4, 5] {
        let outs = pay(&mut stock, &mut rng, &uuid, &keys, units);
        let msgs = outs
            .into_iter()
            .map(|o| wire(o, &uuid, &stock.chad, &foil.chad))
            .collect();
        exchange(&mut stock, &mut foil, msgs);
    }
    let outs = pay(&mut foil, &mut rng, &uuid, &keys, 1);
    let msgs: Vec<Vec<u8>> = outs
        .into_iter()
        .map(|o| wire(o, &uuid, &foil.chad, &stock.chad))
        .collect();
    for m in msgs {
        let back: Vec<Vec<u8>> = deliver(&mut stock, &m, &uuid, &keys)
            .into_iter()
            .map(|o| wire(o, &uuid, &stock.chad, &foil.chad))
            .collect();
        exchange(&mut stock, &mut foil, back);
    }
    assert_eq!(foil.ledger.conf.index, 4);
    // Restore the stock from the backup: two of its chits and one of the foil's are gone.
    stock.ledger = ledger;
    stock.confirmed = store;
    assert_eq!(stock.ledger.conf.index, 1);
    // It asks; the foil answers with its chain from the stock's conf.
    let msgs = stock
        .ledger
        .resync()
        .into_iter()
        .map(|o| wire(o, &uuid, &stock.chad, &foil.chad))
        .collect();
    exchange(&mut stock, &mut foil, msgs);
    assert_eq!(stock.ledger.conf, foil.ledger.conf);
    assert_eq!(stock.confirmed.by_index, foil.confirmed.by_index);
    assert_eq!(stock.ledger.balance, -foil.ledger.balance);
    assert_eq!(stock.ledger.balance, -11);
}
