//! The value tables on both backends: users, tally tickets claimed exactly once, and no
//! double spend of a credit limit when two connections (as two node processes would) spend
//! on one tally at the same time.

use kith_store::meta::{
    ChitRow, MetaDb, MetaError, PostgresMeta, SqliteMeta, TallyRow, TallyTicketRow, TicketClaim,
    TicketRecord, ValueUser,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String, String),
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Backend {
        let url = std::env::var("KITH_TEST_POSTGRES").expect("KITH_TEST_POSTGRES");
        let schema = format!(
            "kith_value_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        Backend::Postgres(url, schema)
    }

    /// A new connection to the same database.
    fn open(&self) -> Box<dyn MetaDb> {
        match self {
            Backend::Sqlite(dir) => {
                Box::new(SqliteMeta::open(&dir.path().join("kith.db")).unwrap())
            }
            Backend::Postgres(url, schema) => {
                Box::new(PostgresMeta::connect(url, Some(schema)).unwrap())
            }
        }
    }
}

const UUID: &str = "0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b";

fn tally_row(their_limit: i64) -> TallyRow {
    TallyRow {
        uuid: UUID.into(),
        side: "foil".into(),
        cuid: "alice".into(),
        partner: "bob:AGENT@127.0.0.1:1".into(),
        partner_agent: "AGENT".into(),
        state: "open".into(),
        doc: "{}".into(),
        our_limit: 0,
        their_limit,
        conf_index: 0,
        conf_digest: "h0".into(),
        balance: 0,
        chits: 0,
        created_at: 1,
        updated_at: 1,
    }
}

fn users_and_tickets(backend: Backend) {
    let db = backend.open();
    let user = ValueUser {
        cuid: "alice".into(),
        name: "Alice".into(),
        cert: "{}".into(),
        created_at: 5,
    };
    assert!(db.value_add_user(&user).unwrap());
    assert!(!db.value_add_user(&user).unwrap());
    assert_eq!(db.value_users().unwrap(), vec![user]);

    let token = "ab".repeat(16);
    let mut ticket = TicketRecord::new(token.clone(), 100, 200);
    ticket.cuid = Some("alice".into());
    db.insert_ticket(&ticket).unwrap();
    db.value_insert_tally_ticket(&TallyTicketRow {
        token: token.clone(),
        cuid: "alice".into(),
        limit: 50,
        for_chad: None,
        tally_uuid: None,
        created_at: 100,
    })
    .unwrap();
    // The first contact redeemed the connection ticket for agent A.
    assert_eq!(
        db.redeem_ticket(&token, "A", 110).unwrap(),
        kith_store::TicketVerdict::Accepted
    );
    let claim = db.value_claim_tally_ticket(&token, "A", UUID, 120).unwrap();
    assert!(
        matches!(&claim, TicketClaim::Claimed(t) if t.limit == 50 && t.tally_uuid.as_deref() == Some(UUID))
    );
    // A retry of the same tally is the same claim; another tally or agent is refused.
    assert!(matches!(
        db.value_claim_tally_ticket(&token, "A", UUID, 121).unwrap(),
        TicketClaim::Claimed(_)
    ));
    assert_eq!(
        db.value_claim_tally_ticket(&token, "B", UUID, 121).unwrap(),
        TicketClaim::Refused("ticket already used")
    );
    assert_eq!(
        db.value_claim_tally_ticket(&token, "A", "another", 121)
            .unwrap(),
        TicketClaim::Refused("tally ticket already used")
    );
    assert_eq!(
        db.value_claim_tally_ticket(&token, "A", UUID, 200).unwrap(),
        TicketClaim::Refused("ticket expired")
    );
    assert_eq!(
        db.value_claim_tally_ticket(&"cd".repeat(16), "A", UUID, 120)
            .unwrap(),
        TicketClaim::Refused("unknown ticket")
    );
}

fn no_double_spend(backend: Backend) {
    let first = backend.open();
    first.value_put_tally(&tally_row(10)).unwrap();
    let spent = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for process in 0..2 {
            // Each thread has its own connection, as a node process would.
            let db = backend.open();
            let spent = Arc::clone(&spent);
            scope.spawn(move || {
                for attempt in 0..10 {
                    let mut ok = false;
                    db.value_tally_tx(UUID, "foil", &mut |tx| {
                        ok = false;
                        if tx.row.balance - 1 < -tx.row.their_limit {
                            return Err(MetaError::Aborted("over the limit".into()));
                        }
                        // Widen the window between the check and the write.
                        std::thread::sleep(std::time::Duration::from_millis(3));
                        let mut row = tx.row.clone();
                        row.balance -= 1;
                        row.chits += 1;
                        tx.put_chit(&ChitRow {
                            tally: UUID.into(),
                            side: "foil".into(),
                            uuid: format!("{process}-{attempt}"),
                            doc: "{}".into(),
                            by_side: "foil".into(),
                            units: 1,
                            status: "chained".into(),
                            chain_idx: Some(row.chits),
                            chain_digest: Some("d".into()),
                            created_at: 1,
                        })?;
                        tx.set_row(row);
                        ok = true;
                        Ok(())
                    })
                    .ok();
                    if ok {
                        spent.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let row = first.value_tally(UUID, "foil").unwrap().unwrap();
    assert_eq!(spent.load(Ordering::SeqCst), 10);
    assert_eq!(row.balance, -10);
    assert_eq!(row.chits, 10);
    assert_eq!(first.value_chits(UUID, "foil", 100).unwrap().len(), 10);
    // A transaction that fails writes nothing.
    let err = first.value_tally_tx(UUID, "foil", &mut |tx| {
        let mut row = tx.row.clone();
        row.balance = 999;
        tx.set_row(row);
        Err(MetaError::Aborted("no".into()))
    });
    assert!(err.is_err());
    assert_eq!(
        first.value_tally(UUID, "foil").unwrap().unwrap().balance,
        -10
    );
    assert!(first
        .value_tally_tx("missing", "foil", &mut |_| Ok(()))
        .unwrap()
        .is_none());
}

#[test]
fn sqlite_users_and_tally_tickets() {
    users_and_tickets(Backend::sqlite());
}

#[test]
fn sqlite_no_double_spend_across_connections() {
    no_double_spend(Backend::sqlite());
}

#[test]
#[cfg_attr(
    not(kith_test_postgres),
    ignore = "needs PostgreSQL: set KITH_TEST_POSTGRES=postgres://user:pass@host/db (.ci/run does)"
)]
fn postgres_users_and_tally_tickets() {
    users_and_tickets(Backend::postgres());
}

#[test]
#[cfg_attr(
    not(kith_test_postgres),
    ignore = "needs PostgreSQL: set KITH_TEST_POSTGRES=postgres://user:pass@host/db (.ci/run does)"
)]
fn postgres_no_double_spend_across_connections() {
    no_double_spend(Backend::postgres());
}
