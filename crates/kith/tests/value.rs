//! Tallies and chits between two real nodes, driven through the CLI: a tally opened from a
//! ticket, payments both ways, an invoice accepted and one refused, a payment over the credit
//! limit refused at once with nothing changed, both nodes restarted on their ports, and the
//! balance the same on both sides throughout. `kith tally verify` on the reference vector,
//! with no node and no data dir.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use support::{eventually, Node};

fn tally_of(node: &Node) -> Value {
    let list = node.json(&["tally", "ls", "--json"]);
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{list:?}");
    list[0].clone()
}

fn balance(node: &Node) -> i64 {
    tally_of(node)["balance"].as_i64().unwrap()
}

fn start_on(data: &Path, listen: &str) -> Node {
    Node::start_up(
        data,
        &[
            "--listen",
            listen,
            "--peer-listen",
            "off",
            "--chat-listen",
            "off",
        ],
    )
}

fn pending_invoice(node: &Node) -> String {
    let detail = node.json(&["tally", "show", "alice", "--json"]);
    detail["chit_list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "pend_in")
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn two_nodes_open_a_tally_pay_invoice_restart_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    // Users are added with no node running.
    let run = |data: &Path, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kith"))
            .arg("--data")
            .arg(data)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&a_dir, &["user", "add", "alice", "--name", "Alice Smith"]);
    run(&b_dir, &["user", "add", "bob", "--name", "Bob Jones"]);
    let users: Value = serde_json::from_str(&run(&a_dir, &["user", "ls", "--json"])).unwrap();
    assert_eq!(users[0]["cuid"], "alice");
    let mode = std::fs::metadata(a_dir.join("keys/user-alice.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let mut a = start_on(&a_dir, "127.0.0.1:0");
    let mut b = start_on(&b_dir, "127.0.0.1:0");
    let (a_listen, b_listen) = (a.listen(), b.listen());

    let out = a.ok(&["tally", "ticket", "--limit", "100"]);
    let ticket = out.lines().last().unwrap().to_owned();
    let opened = b.json(&["tally", "open", &ticket, "--limit", "50", "--json"]);
    assert_eq!(opened["state"], "open");
    assert_eq!(opened["user"], "bob");
    assert_eq!(opened["limit"], 50);
    assert_eq!(opened["partner_limit"], 100);
    let id = opened["tally"].as_str().unwrap().to_owned();
    // When `tally open` returns, both sides hold the tally open.
    assert_eq!(tally_of(&a)["state"], "open");
    assert_eq!(tally_of(&a)["tally"], id.as_str());
    // Opening again with the same ticket is the same tally (a retry), not a second one...
    let again = b.json(&["tally", "open", &ticket, "--limit", "50", "--json"]);
    assert_eq!(again["tally"], id.as_str());
    // ...and the ticket was for one use: another site cannot use it.
    let c_dir = dir.path().join("c");
    run(&c_dir, &["user", "add", "carol"]);
    {
        let c = start_on(&c_dir, "127.0.0.1:0");
        c.fails(&["tally", "open", &ticket]);
        assert_eq!(c.json(&["tally", "ls", "--json"])[0]["state"], "draft");
        assert!(a.counter("value_refused_ticket") + a.counter("refused_ticket") >= 1);
    }

    // Payments both ways; the payer's command returns once the payee acknowledged.
    b.ok(&["pay", "alice", "30", "--memo", "coffee"]);
    assert_eq!(balance(&b), -30);
    eventually("alice sees bob's payment", || balance(&a) == 30);
    a.ok(&["pay", "Bob Jones", "12"]);
    // An invoice, accepted; another, refused.
    a.ok(&["invoice", "bob", "5"]);
    eventually("bob has the invoice", || !pending_invoice(&b).is_empty());
    let invoice = pending_invoice(&b);
    b.ok(&["chit", "accept", &invoice]);
    a.ok(&["invoice", &id, "7"]);
    eventually("bob has the second invoice", || {
        !pending_invoice(&b).is_empty()
    });
    let refused = pending_invoice(&b);
    b.ok(&["chit", "refuse", &refused]);
    eventually("both agree", || balance(&a) == 23 && balance(&b) == -23);

    // Over the credit alice grants (100): refused at once, nothing changes on either side.
    let before = (tally_of(&a), tally_of(&b));
    let err = b.fails(&["pay", "alice", "78"]);
    assert!(err.contains("credit limit"), "{err}");
    let err = a.fails(&["pay", "bob", "100"]);
    assert!(err.contains("credit limit"), "{err}");
    assert_eq!((tally_of(&a), tally_of(&b)), before);

    // Restarts on the same ports: the same balance on both sides, and payments go on.
    a.stop();
    b.stop();
    let a = start_on(&a_dir, &a_listen);
    let b = start_on(&b_dir, &b_listen);
    assert_eq!(balance(&a), 23);
    assert_eq!(balance(&b), -23);
    b.ok(&["pay", &format!("alice:{}", a.agent()), "1"]);
    eventually("both agree after the restart", || {
        balance(&a) == 24 && balance(&b) == -24
    });
    let (ta, tb) = (tally_of(&a), tally_of(&b));
    assert_eq!(ta["chits"], tb["chits"]);
    assert_eq!(ta["chits"], 4);

    // Chits per second between the two nodes (each waits for the partner's ack), through
    // the control API, next to P-521 rates measured in the same run.
    let client = kith_node::control::ControlClient::new(
        &b_dir,
        b_dir.join("control.sock"),
        std::time::Duration::from_secs(60),
    );
    let n = 40;
    let start = Instant::now();
    for _ in 0..n {
        let _: Value = client
            .post(
                kith_node::api::value::PAY_PATH,
                &kith_node::api::value::PayBody {
                    partner: "alice".into(),
                    units: 1,
                    memo: None,
                    user: None,
                },
            )
            .unwrap();
    }
    let chits_per_sec = n as f64 / start.elapsed().as_secs_f64();
    eventually("both agree after the burst", || {
        balance(&a) == 24 + n && balance(&b) == -(24 + n)
    });
    // A backup of bob's node, restored onto a fresh data dir: the restored node carries on.
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let backup = dir.path().join("bob.kithbackup");
    b.ok(&[
        "backup",
        "-o",
        backup.to_str().unwrap(),
        "--password-file",
        pass.to_str().unwrap(),
    ]);
    let mut b = b;
    b.stop();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not it\n").unwrap();
    let b2_dir = dir.path().join("b2");
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data")
        .arg(&b2_dir)
        .args([
            "restore",
            backup.to_str().unwrap(),
            "--password-file",
            wrong.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !b2_dir.join("keys/agent.key").exists(),
        "a wrong passphrase restores nothing"
    );
    run(
        &b2_dir,
        &[
            "restore",
            backup.to_str().unwrap(),
            "--password-file",
            pass.to_str().unwrap(),
        ],
    );
    let b = start_on(&b2_dir, &b_listen);
    assert_eq!(balance(&b), -(24 + n));
    a.ok(&["pay", "bob", "4"]);
    b.ok(&["pay", "alice", "2"]);
    eventually("the restored node agrees", || {
        balance(&a) == 22 + n && balance(&b) == -(22 + n)
    });

    let (sign, verify) = p521_rates();
    let (chit_sign, chit_verify) = chit_rates();
    eprintln!(
        "figures: {chits_per_sec:.0} chits/s between two nodes (sequential, each acknowledged); \
         P-521/SHA-384 {sign:.0} signatures/s, {verify:.0} verifications/s on one core; \
         whole chits (canonical JSON, hash, chain digest, P-521) {chit_sign:.0} signed/s, \
         {chit_verify:.0} verified/s"
    );
}

/// Whole chits on this machine, this build: a payment made (canonical JSON of its core,
/// signature, its hash and chain digest) and checked (canonical JSON, verification, hash and
/// chain digest again), as each side of a payment does.
fn chit_rates() -> (f64, f64) {
    use kith_value::{new_uuid, Chit, Side, UserKey};
    let mut rng = rand::rngs::OsRng;
    let key = UserKey::generate(&mut rng);
    let public = key.public();
    let tally = new_uuid(&mut rng);
    let n = 50;
    let mut chits = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let memo = Some(format!("coffee {i}"));
        let mut chit = Chit::tran(&tally, new_uuid(&mut rng), Side::Foil, 5, 0, memo, None);
        chit.sign_with(&key, &mut rng).unwrap();
        std::hint::black_box((chit.hash(), chit.chain_digest(i as u64 + 1, "prior")));
        chits.push(chit);
    }
    let sign = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for (i, chit) in chits.iter().enumerate() {
        chit.verify(&public).unwrap();
        std::hint::black_box((chit.hash(), chit.chain_digest(i as u64 + 1, "prior")));
    }
    (sign, n as f64 / start.elapsed().as_secs_f64())
}

/// P-521 signing and verification rates on this machine, this build.
fn p521_rates() -> (f64, f64) {
    use kith_value::UserKey;
    let mut rng = rand::rngs::OsRng;
    let key = UserKey::generate(&mut rng);
    let public = key.public();
    let message = [7u8; 200];
    let n = 50;
    let start = Instant::now();
    let mut sig = String::new();
    for _ in 0..n {
        sig = key.sign(&message, &mut rng).unwrap();
    }
    let sign = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..n {
        public.verify(&message, &sig).unwrap();
    }
    (sign, n as f64 / start.elapsed().as_secs_f64())
}

#[test]
fn tally_verify_needs_no_node_and_no_data_dir() {
    let home = tempfile::tempdir().unwrap();
    let vector = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/mychips/validtally.json"
    );
    let verify = |file: &str| {
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["tally", "verify", file])
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env_remove("KITH_DATA")
            .output()
            .unwrap()
    };
    let out = verify(vector);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("stock: valid") && text.contains("foil: valid"),
        "{text}"
    );

    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(vector).unwrap()).unwrap();
    doc["sign"]["foil"] = doc["sign"]["stock"].clone();
    let bad = home.path().join("bad.json");
    std::fs::write(&bad, doc.to_string()).unwrap();
    let out = verify(bad.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("foil"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("stock: valid"));
    assert!(!home.path().join("data").exists(), "no data dir is created");
}

#[test]
fn a_priced_file_costs_what_it_says_within_budget_and_nothing_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir, c_dir) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    support::write_settings(&a_dir, "[value]\nprice_per_mib = 10\n");
    support::write_settings(&b_dir, "[value]\nauto_pay_max = 5\n");
    let a = start_on(&a_dir, "127.0.0.1:0");
    let b = start_on(&b_dir, "127.0.0.1:0");
    a.ok(&["user", "add", "alice"]);
    b.ok(&["user", "add", "bob"]);
    let out = a.ok(&["tally", "ticket", "--limit", "100"]);
    let ticket = out.lines().last().unwrap().to_owned();
    b.ok(&["tally", "open", &ticket]);
    eventually("alice's side is open", || tally_of(&a)["state"] == "open");

    // 3 MiB at 10 units per MiB: 30 units.
    let hash = a.put(dir.path(), "song.bin", &support::data(3 << 20, 7));
    let out_path = dir.path().join("got.bin");
    let out_arg = out_path.to_str().unwrap();
    let err = b.fails(&[
        "file",
        "get",
        &hash,
        "--from",
        &a.agent(),
        "--max-price",
        "20",
        "-o",
        out_arg,
    ]);
    assert!(err.contains("30 units") && err.contains("20"), "{err}");
    assert!(!out_path.exists());
    assert_eq!(
        (balance(&a), balance(&b)),
        (0, 0),
        "nothing paid over the budget"
    );
    // Without a budget, the site serves nothing unpaid.
    b.fails(&["file", "get", &hash, "--from", &a.agent(), "-o", out_arg]);
    assert!(a.counter("datt_unpaid_items_refused") >= 1);
    assert_eq!((balance(&a), balance(&b)), (0, 0));

    b.ok(&[
        "file",
        "get",
        &hash,
        "--from",
        &a.agent(),
        "--max-price",
        "40",
        "-o",
        out_arg,
    ]);
    assert_eq!(std::fs::read(&out_path).unwrap(), support::data(3 << 20, 7));
    eventually("the payment is agreed", || {
        balance(&a) == 30 && balance(&b) == -30
    });
    assert_eq!(a.counter("datt_payments_received"), 1);

    // Bob pays invoices up to 5 units without asking; a larger one waits for him.
    a.ok(&["invoice", "bob", "5"]);
    eventually("the small invoice is paid by itself", || balance(&a) == 35);
    a.ok(&["invoice", "bob", "6"]);
    eventually("the larger one waits", || !pending_invoice(&b).is_empty());
    assert_eq!(balance(&a), 35);

    // A site that shares no tally with alice's is told how to open one.
    let c = start_on(&c_dir, "127.0.0.1:0");
    let link = a.ok(&["ticket"]);
    c.ok(&["connect", link.trim()]);
    let err = c.fails(&[
        "file",
        "get",
        &hash,
        "--from",
        &a.agent(),
        "--max-price",
        "40",
    ]);
    assert!(err.contains("tally ticket"), "{err}");
}

#[test]
fn priced_custody_is_paid_per_mib_and_day_and_its_copy_per_mib_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    // Alice's site keeps files at 2 units per MiB and day, and serves at 10 per MiB.
    support::write_settings(
        &a_dir,
        "[value]\ncustody_price_per_mib_day = 2\nprice_per_mib = 10\n",
    );
    let a = start_on(&a_dir, "127.0.0.1:0");
    let b = start_on(&b_dir, "127.0.0.1:0");
    a.ok(&["user", "add", "alice"]);
    b.ok(&["user", "add", "bob"]);
    let out = a.ok(&["tally", "ticket", "--limit", "100"]);
    b.ok(&["tally", "open", out.lines().last().unwrap()]);
    eventually("alice's side is open", || tally_of(&a)["state"] == "open");

    let letter = dir.path().join("letter.bin");
    std::fs::write(&letter, support::data(1 << 20, 3)).unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "secret\n").unwrap();
    let persist = |budget: Option<&str>| {
        let mut args = vec![
            "persist",
            letter.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
            "--days",
            "10",
        ];
        let to = a.agent();
        args.extend(["--to", to.as_str()]);
        if let Some(budget) = budget {
            args.extend(["--max-price", budget]);
        }
        b.kith(&args)
    };
    // 1 MiB for 10 days at 2 units: 20 units. Over the budget, nothing is paid or kept.
    let over = persist(Some("15"));
    assert!(!over.status.success());
    let err = String::from_utf8_lossy(&over.stderr);
    assert!(err.contains("20 units") && err.contains("15"), "{err}");
    // Without a budget the custodian keeps nothing unpaid.
    assert!(!persist(None).status.success());
    assert!(a.counter("datt_unpaid_custody_refused") >= 1);
    assert_eq!((balance(&a), balance(&b)), (0, 0), "nothing paid");

    let paid = persist(Some("25"));
    assert!(
        paid.status.success(),
        "{}",
        String::from_utf8_lossy(&paid.stderr)
    );
    eventually("the custody payment is agreed", || {
        balance(&a) == 20 && balance(&b) == -20
    });

    // Retrieving: the copy (a little over 1 MiB) costs 11 units at 10 per MiB.
    let hash = b.ok(&["file", "hash", letter.to_str().unwrap()]);
    let hash = hash.trim();
    let out_path = dir.path().join("back.bin");
    let retrieve = |budget: &str| {
        b.kith(&[
            "retrieve",
            hash,
            "--password-file",
            pw.to_str().unwrap(),
            "-o",
            out_path.to_str().unwrap(),
            "--from",
            &a.agent(),
            "--max-price",
            budget,
        ])
    };
    let over = retrieve("5");
    assert!(!over.status.success());
    assert!(String::from_utf8_lossy(&over.stderr).contains("11 units"));
    assert!(!out_path.exists());
    assert_eq!(balance(&a), 20, "nothing paid over the budget");
    let got = retrieve("20");
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(std::fs::read(&out_path).unwrap(), support::data(1 << 20, 3));
    eventually("the copy's payment is agreed", || {
        balance(&a) == 31 && balance(&b) == -31
    });
    assert_eq!(a.counter("datt_payments_received"), 2);
}
