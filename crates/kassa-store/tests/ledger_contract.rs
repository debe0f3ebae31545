//! The ledger through real databases: the same histories on SQLite and PostgreSQL must keep
//! every invariant, and `verify_ledger` must agree with the stored balances.

use kassa_core::ledger::{
    AccountId, AccountKind, Command, EntryMeta, EntryStatus, Outcome, Request,
};
use kassa_core::status::{AccountStatus, KycStatus};
use kassa_core::Currency;
use kassa_store::directory::PlayerUpsert;
use kassa_store::testing::{fresh_database_url, TestBackend};
use kassa_store::Store;
use proptest::prelude::*;

async fn store(backend: TestBackend) -> Option<Store> {
    let url = fresh_database_url(backend).await?;
    let store = Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some(store)
}

struct Fixture {
    merchant: String,
    cash: [AccountId; 2],
    hold: AccountId,
    house: AccountId,
    clearing: AccountId,
}

async fn fixture(store: &Store) -> Fixture {
    let merchant = kassa_core::ids::generate("mch");
    store.create_merchant(&merchant, "test").await.unwrap();
    let eur = Currency::from_code("EUR").unwrap();
    let mut cash = [0; 2];
    let mut hold = 0;
    for (i, player) in ["alice", "bob"].iter().enumerate() {
        let (record, created) = store
            .upsert_player(&PlayerUpsert {
                merchant_id: merchant.clone(),
                player_id: player.to_string(),
                currency: eur,
                country: "MT".into(),
                jurisdiction: None,
                kyc_status: KycStatus::None,
                birth_date: None,
                account_status: AccountStatus::Active,
            })
            .await
            .unwrap();
        assert!(created);
        cash[i] = record.cash_account_id;
        if i == 0 {
            hold = record.hold_account_id;
        }
    }
    let house = store
        .account_id(&merchant, AccountKind::OperatorRevenue, "", eur)
        .await
        .unwrap();
    let clearing = store
        .account_id(&merchant, AccountKind::ProviderClearing, "sandbox", eur)
        .await
        .unwrap();
    Fixture {
        merchant,
        cash,
        hold,
        house,
        clearing,
    }
}

fn request(txn_id: &str, label: &str, command: Command, subject: AccountId) -> Request {
    Request {
        txn_id: txn_id.into(),
        label: label.into(),
        fingerprint: format!("{label}:{command:?}"),
        command,
        subject: Some(subject),
        meta: EntryMeta {
            player_id: Some("alice".into()),
            ..EntryMeta::default()
        },
    }
}

/// A win of `amount_minor` for the first player.
fn win_for_alice(f: &Fixture, id: &str, amount_minor: i64) -> Request {
    request(
        id,
        "credit",
        Command::Transfer {
            debit: f.house,
            credit: f.cash[0],
            amount_minor,
        },
        f.cash[0],
    )
}

/// A debit for the first player, by `txn_id`.
fn bet_for_alice(f: &Fixture, id: &str, amount_minor: i64) -> Request {
    request(
        id,
        "debit",
        Command::Transfer {
            debit: f.cash[0],
            credit: f.house,
            amount_minor,
        },
        f.cash[0],
    )
}

/// A rollback of the debit `original`.
fn rollback_of(f: &Fixture, id: &str, original: &str) -> Request {
    request(
        id,
        "rollback",
        Command::Reverse {
            original_txn_id: original.into(),
            original_label: Some("debit".into()),
        },
        f.cash[0],
    )
}

async fn apply(store: &Store, merchant: &str, requests: &[Request]) -> Vec<Outcome> {
    let mut tx = store.begin().await.unwrap();
    let outcomes = store
        .apply_ledger_requests(&mut tx, merchant, requests)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    outcomes
}

async fn two_phase_and_reversal(backend: TestBackend) {
    let Some(store) = store(backend).await else {
        return;
    };
    let f = fixture(&store).await;
    let win = |id: &str, amount_minor| win_for_alice(&f, id, amount_minor);
    let bet = |id: &str, amount_minor| bet_for_alice(&f, id, amount_minor);
    let out = apply(
        &store,
        &f.merchant,
        &[win("w1", 10_000), bet("b1", 2_500), bet("b1", 2_500)],
    )
    .await;
    assert!(
        matches!(&out[2], Outcome::Replayed(e) if e.subject_balance_after_minor == Some(7_500))
    );
    let rollback = rollback_of(&f, "r1", "b1");
    let reserve = request(
        "po1",
        "payout",
        Command::Reserve {
            debit: f.cash[0],
            hold: f.hold,
            credit: f.clearing,
            amount_minor: 4_000,
        },
        f.cash[0],
    );
    let out = apply(&store, &f.merchant, &[rollback, reserve]).await;
    assert!(matches!(&out[1], Outcome::Recorded(e) if e.status == EntryStatus::Pending));
    let balances = store.balances(&[f.cash[0], f.hold, f.house]).await.unwrap();
    assert_eq!(
        (balances[&f.cash[0]], balances[&f.hold], balances[&f.house]),
        (6_000, 4_000, -10_000)
    );
    let post = request(
        "po1:paid",
        "payout_paid",
        Command::Post {
            pending_txn_id: "po1".into(),
            amount_minor: None,
        },
        f.cash[0],
    );
    apply(&store, &f.merchant, &[post]).await;
    let balances = store.balances(&[f.hold, f.clearing]).await.unwrap();
    assert_eq!((balances[&f.hold], balances[&f.clearing]), (0, 4_000));
    let history = store
        .player_entries(&f.merchant, "alice", None, 100)
        .await
        .unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(history[0].entry.txn_id, "po1:paid", "newest first");
    let page = store
        .player_entries(&f.merchant, "alice", Some(history[1].id), 2)
        .await
        .unwrap();
    assert_eq!(
        page.iter()
            .map(|e| e.entry.txn_id.as_str())
            .collect::<Vec<_>>(),
        ["r1", "b1"]
    );
    let report = store.verify_ledger().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.transfers_checked, 5);
}

/// The fixture, with a win of 1.00 on the first player's cash.
async fn fixture_with_a_win(store: &Store) -> Fixture {
    let f = fixture(store).await;
    apply(
        store,
        &f.merchant,
        &[request(
            "w",
            "credit",
            Command::Transfer {
                debit: f.house,
                credit: f.cash[0],
                amount_minor: 100,
            },
            f.cash[0],
        )],
    )
    .await;
    f
}

async fn database_refuses_what_the_ledger_refuses(backend: TestBackend) {
    let Some(store) = store(backend).await else {
        return;
    };
    let f = fixture_with_a_win(&store).await;
    let mut tx = store.begin().await.unwrap();
    let negative = sqlx::query("UPDATE ledger_accounts SET balance_minor = -1 WHERE id = $1")
        .bind(f.cash[0])
        .execute(&mut *tx)
        .await;
    assert!(
        negative.is_err(),
        "a player balance below zero must violate a constraint"
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    let edit = sqlx::query("UPDATE ledger_transfers SET amount_minor = 1")
        .execute(&mut *tx)
        .await;
    assert!(edit.is_err(), "the journal must be append-only");
    drop(tx);
    // A hand edit of a balance is caught by verify.
    let mut tx = store.begin().await.unwrap();
    sqlx::query("UPDATE ledger_accounts SET balance_minor = balance_minor + 1 WHERE id = $1")
        .bind(f.cash[0])
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let report = store.verify_ledger().await.unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.drifted_accounts, vec![(f.cash[0], 101, 100)]);
    assert_eq!(report.unbalanced_currencies, vec![("EUR".to_string(), 1)]);
}

#[derive(Clone, Debug)]
enum Step {
    Win {
        id: u8,
        player: usize,
        amount_minor: i64,
    },
    Bet {
        id: u8,
        player: usize,
        amount_minor: i64,
    },
    Rollback {
        id: u8,
        original: u8,
    },
    Reserve {
        id: u8,
        amount_minor: i64,
    },
    Post {
        id: u8,
        pending: u8,
    },
    Void {
        id: u8,
        pending: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    step_among(16)
}

/// A step whose txn ids (and the ids it acts on) are among the first `txn_ids`.
fn step_among(txn_ids: u8) -> impl Strategy<Value = Step> {
    let id = 0u8..txn_ids;
    prop_oneof![
        (id.clone(), 0usize..2, 1i64..500).prop_map(|(id, player, amount_minor)| Step::Win {
            id,
            player,
            amount_minor
        }),
        (id.clone(), 0usize..2, 1i64..500).prop_map(|(id, player, amount_minor)| Step::Bet {
            id,
            player,
            amount_minor
        }),
        (id.clone(), id.clone()).prop_map(|(id, original)| Step::Rollback { id, original }),
        (id.clone(), 1i64..500).prop_map(|(id, amount_minor)| Step::Reserve { id, amount_minor }),
        (id.clone(), id.clone()).prop_map(|(id, pending)| Step::Post { id, pending }),
        (id.clone(), id).prop_map(|(id, pending)| Step::Void { id, pending }),
    ]
}

fn to_request(f: &Fixture, step: &Step) -> Request {
    let n = |id: &u8| format!("t{id}");
    match step {
        Step::Win {
            id,
            player,
            amount_minor,
        } => request(
            &n(id),
            "credit",
            Command::Transfer {
                debit: f.house,
                credit: f.cash[*player],
                amount_minor: *amount_minor,
            },
            f.cash[*player],
        ),
        Step::Bet {
            id,
            player,
            amount_minor,
        } => request(
            &n(id),
            "debit",
            Command::Transfer {
                debit: f.cash[*player],
                credit: f.house,
                amount_minor: *amount_minor,
            },
            f.cash[*player],
        ),
        Step::Rollback { id, original } => request(
            &n(id),
            "rollback",
            Command::Reverse {
                original_txn_id: n(original),
                original_label: Some("debit".into()),
            },
            f.cash[0],
        ),
        Step::Reserve { id, amount_minor } => request(
            &n(id),
            "payout",
            Command::Reserve {
                debit: f.cash[0],
                hold: f.hold,
                credit: f.clearing,
                amount_minor: *amount_minor,
            },
            f.cash[0],
        ),
        Step::Post { id, pending } => request(
            &n(id),
            "payout_paid",
            Command::Post {
                pending_txn_id: n(pending),
                amount_minor: None,
            },
            f.cash[0],
        ),
        Step::Void { id, pending } => request(
            &n(id),
            "payout_failed",
            Command::Void {
                pending_txn_id: n(pending),
            },
            f.cash[0],
        ),
    }
}

/// Random histories, in random batches, each batch sent twice, through the real database.
fn random_histories_verify(backend: TestBackend, cases: u32) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(store) = runtime.block_on(store(backend)) else {
        return;
    };
    let config = ProptestConfig {
        cases,
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in proptest::collection::vec(step(), 1..40), batch in 1usize..6)| {
        runtime.block_on(async {
            let f = fixture(&store).await;
            let requests: Vec<Request> = steps.iter().map(|s| to_request(&f, s)).collect();
            for chunk in requests.chunks(batch) {
                apply(&store, &f.merchant, chunk).await;
                let before = store.balances(&[f.cash[0], f.cash[1], f.hold, f.house, f.clearing]).await.unwrap();
                let replayed = apply(&store, &f.merchant, chunk).await;
                let after = store.balances(&[f.cash[0], f.cash[1], f.hold, f.house, f.clearing]).await.unwrap();
                if replayed.iter().all(|o| !matches!(o, Outcome::Recorded(_))) {
                    assert_eq!(before, after, "a replay moved money");
                }
            }
            let balances = store.balances(&[f.cash[0], f.cash[1], f.hold]).await.unwrap();
            assert!(balances.values().all(|b| *b >= 0));
            let report = store.verify_ledger().await.unwrap();
            assert!(report.is_ok(), "{report:?}");
        });
    });
}

/// Which server process answers on `conn` (PostgreSQL; 0 on SQLite).
async fn session(backend: TestBackend, conn: &mut kassa_store::Conn) -> i64 {
    let sql = match backend {
        TestBackend::Postgres => "SELECT CAST(pg_backend_pid() AS BIGINT)",
        TestBackend::Sqlite => "SELECT 0",
    };
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// The wallet writer's connection: kept between batches on PostgreSQL (the same server
/// process answers both), given back after each batch on SQLite (whose one writer connection
/// the other writers need), and given back after an error so that the next batch starts on
/// a tested connection. Money moved through it verifies like any other.
async fn held_connection_between_batches(backend: TestBackend) {
    let Some(store) = store(backend).await else {
        return;
    };
    let store = store.with_dedicated_writer().await.unwrap();
    let f = fixture(&store).await;
    let win = |id: &str| win_for_alice(&f, id, 250);
    let mut held = store.held_connection();

    let mut tx = held.begin().await.unwrap();
    store
        .apply_ledger_requests(&mut tx, &f.merchant, &[win("held-1")])
        .await
        .unwrap();
    let first_session = session(backend, &mut tx).await;
    tx.commit().await.unwrap();
    held.finish_batch();

    // Another writer gets a transaction now. On SQLite the pool has one writer connection:
    // had the held connection not been given back, this would wait for the acquire timeout.
    let other = tokio::time::timeout(std::time::Duration::from_secs(2), store.begin())
        .await
        .expect("the writer connection is free after finish_batch")
        .unwrap();
    other.rollback().await.unwrap();

    let mut tx = held.begin().await.unwrap();
    store
        .apply_ledger_requests(&mut tx, &f.merchant, &[win("held-2")])
        .await
        .unwrap();
    let second_session = session(backend, &mut tx).await;
    tx.commit().await.unwrap();
    held.finish_batch();
    if backend == TestBackend::Postgres {
        assert_eq!(first_session, second_session, "the connection was kept");
    }

    // A failed batch: nothing of it lands, and the next batch runs on a fresh connection.
    let mut tx = held.begin().await.unwrap();
    store
        .apply_ledger_requests(&mut tx, &f.merchant, &[win("held-lost")])
        .await
        .unwrap();
    assert!(sqlx::query("SELECT no_such_column FROM ledger_accounts")
        .execute(&mut *tx)
        .await
        .is_err());
    drop(tx);
    held.release();
    let mut tx = held.begin().await.unwrap();
    let outcomes = store
        .apply_ledger_requests(&mut tx, &f.merchant, &[win("held-3"), win("held-2")])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    held.finish_batch();
    assert!(matches!(outcomes[0], Outcome::Recorded(_)));
    assert!(
        matches!(outcomes[1], Outcome::Replayed(_)),
        "held-2 committed once"
    );
    assert!(store
        .get_entry(&f.merchant, "held-lost")
        .await
        .unwrap()
        .is_none());

    let balances = store.balances(&[f.cash[0]]).await.unwrap();
    assert_eq!(balances[&f.cash[0]], 750);
    let report = store.verify_ledger().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
}

/// A journal row naming an account or entry that does not exist: SQLite's foreign keys
/// refuse it; PostgreSQL's journal has no foreign-key triggers (ADR 12), so verify must
/// catch it.
async fn verify_catches_orphan_journal_rows(backend: TestBackend) {
    let Some(store) = store(backend).await else {
        return;
    };
    let f = fixture_with_a_win(&store).await;
    assert!(store.verify_ledger().await.unwrap().is_ok());
    let orphans = [
        // A transfer from an account that was never created, of an entry that does not exist.
        "INSERT INTO ledger_transfers (entry_id, merchant_id, txn_id, seq, debit_account_id, \
         credit_account_id, amount_minor, currency, created_at_ms) \
         VALUES (999997, $1, 'ghost', 1, 999999, 999998, 5, 'EUR', 0)",
        // An entry naming a missing account.
        "INSERT INTO ledger_entries (merchant_id, txn_id, label, operation, status, \
         amount_minor, debit_account_id, created_at_ms) \
         VALUES ($1, 'ghost-entry', 'debit', 'transfer', 'rejected', 5, 999999, 0)",
    ];
    for (i, sql) in orphans.iter().enumerate() {
        let mut tx = store.begin().await.unwrap();
        let inserted = sqlx::query(sql).bind(&f.merchant).execute(&mut *tx).await;
        match backend {
            TestBackend::Sqlite => {
                assert!(inserted.is_err(), "SQLite's foreign keys must refuse {sql}");
                continue;
            }
            TestBackend::Postgres => inserted.unwrap(),
        };
        tx.commit().await.unwrap();
        let report = store.verify_ledger().await.unwrap();
        assert!(!report.is_ok(), "{report:?}");
        assert_eq!(report.orphan_references, i as u64 + 1, "{report:?}");
    }
}

#[tokio::test]
async fn sqlite_verify_catches_orphan_journal_rows() {
    verify_catches_orphan_journal_rows(TestBackend::Sqlite).await;
}
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_verify_catches_orphan_journal_rows() {
    verify_catches_orphan_journal_rows(TestBackend::Postgres).await;
}
#[tokio::test]
async fn sqlite_held_connection_between_batches() {
    held_connection_between_batches(TestBackend::Sqlite).await;
}
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_held_connection_between_batches() {
    held_connection_between_batches(TestBackend::Postgres).await;
}
#[tokio::test]
async fn sqlite_two_phase_and_reversal() {
    two_phase_and_reversal(TestBackend::Sqlite).await;
}
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_two_phase_and_reversal() {
    two_phase_and_reversal(TestBackend::Postgres).await;
}
#[tokio::test]
async fn sqlite_database_refuses_what_the_ledger_refuses() {
    database_refuses_what_the_ledger_refuses(TestBackend::Sqlite).await;
}
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_database_refuses_what_the_ledger_refuses() {
    database_refuses_what_the_ledger_refuses(TestBackend::Postgres).await;
}
#[test]
fn sqlite_random_histories_verify() {
    random_histories_verify(TestBackend::Sqlite, 32);
}
#[test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
fn postgres_random_histories_verify() {
    random_histories_verify(TestBackend::Postgres, 16);
}

async fn expired_idempotency_keys_are_purged(backend: TestBackend) {
    let Some(store) = store(backend).await else {
        return;
    };
    let merchant = kassa_core::ids::generate("mch");
    store.create_merchant(&merchant, "test").await.unwrap();
    use kassa_store::idempotency::Claim;
    assert_eq!(
        store
            .claim_idempotency_key(&merchant, "done", "h", 60_000)
            .await
            .unwrap(),
        Claim::Claimed
    );
    store
        .complete_idempotency_key(&merchant, "done", 200, "{}")
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_idempotency_key(&merchant, "running", "h", 60_000)
            .await
            .unwrap(),
        Claim::Claimed
    );
    assert_eq!(
        store
            .purge_idempotency_keys(kassa_store::now_ms() - 60_000)
            .await
            .unwrap(),
        0,
        "young keys stay"
    );
    assert_eq!(
        store
            .purge_idempotency_keys(kassa_store::now_ms() + 1)
            .await
            .unwrap(),
        1,
        "only the finished one goes"
    );
    assert_eq!(
        store
            .claim_idempotency_key(&merchant, "running", "h", 60_000)
            .await
            .unwrap(),
        Claim::InUse
    );
    assert_eq!(
        store
            .claim_idempotency_key(&merchant, "done", "other", 60_000)
            .await
            .unwrap(),
        Claim::Claimed,
        "a purged key is free again"
    );
}

#[tokio::test]
async fn sqlite_expired_idempotency_keys_are_purged() {
    expired_idempotency_keys_are_purged(TestBackend::Sqlite).await;
}
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_expired_idempotency_keys_are_purged() {
    expired_idempotency_keys_are_purged(TestBackend::Postgres).await;
}

/// A wallet writer with a connection of its own: [`kassa_store::SqliteWriter`] (ADR 13) or
/// [`kassa_store::PostgresWriter`] (ADR 15).
enum OwnWriter {
    Sqlite(kassa_store::SqliteWriter),
    Postgres(Box<kassa_store::PostgresWriter>),
}

impl OwnWriter {
    async fn open(store: &Store) -> OwnWriter {
        if let Some(writer) = store.sqlite_writer() {
            return OwnWriter::Sqlite(writer.expect("open the SQLite writer"));
        }
        let writer = store.postgres_writer().await.expect("a PostgreSQL writer");
        OwnWriter::Postgres(Box::new(writer.expect("connect the PostgreSQL writer")))
    }

    /// One batch of one merchant, committed.
    async fn apply(&mut self, store: &Store, merchant: &str, requests: &[Request]) -> Vec<Outcome> {
        match self {
            OwnWriter::Sqlite(writer) => {
                let _turn = store.write_turn().await.unwrap();
                let mut batch = writer.begin().unwrap();
                let outcomes = batch.apply_ledger_requests(merchant, requests).unwrap();
                batch.commit().unwrap();
                outcomes
            }
            OwnWriter::Postgres(writer) => {
                let mut batch = writer.begin().await.unwrap();
                let outcomes = batch
                    .apply_ledger_requests(merchant, requests)
                    .await
                    .unwrap();
                batch.commit().await.unwrap();
                outcomes
            }
        }
    }
}

/// The wallet writer's own connection is a second path to the journal. Random histories,
/// in random batches (up to 63 calls over 128 txn ids, so that every size of the SQLite
/// writer's multi-row INSERTs is used), each batch sent twice, go through it on one
/// database and through [`Store::apply_ledger_requests`] on another with the same
/// accounts: every outcome, every balance and the verify report must be the same, and a
/// replayed batch must move nothing.
fn own_writer_agrees_with_the_shared_path(backend: TestBackend) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some((shared, own)) =
        runtime.block_on(async { Some((store(backend).await?, store(backend).await?)) })
    else {
        return;
    };
    // proptest's closure is `Fn`: the writer is borrowed mutably through a lock.
    let writer = tokio::sync::Mutex::new(runtime.block_on(OwnWriter::open(&own)));
    let config = ProptestConfig {
        cases: 32,
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in proptest::collection::vec(step_among(128), 1..120), batch in 1usize..64)| {
        runtime.block_on(async {
            let f = fixture(&shared).await;
            let g = fixture(&own).await;
            let ids = |f: &Fixture| [f.cash[0], f.cash[1], f.hold, f.house, f.clearing];
            assert_eq!(ids(&f), ids(&g), "both databases hand out the same account ids");
            let requests: Vec<Request> = steps.iter().map(|s| to_request(&f, s)).collect();
            let mut writer = writer.lock().await;
            for chunk in requests.chunks(batch) {
                for _ in 0..2 {
                    let expected = apply(&shared, &f.merchant, chunk).await;
                    let before = own.balances(&ids(&g)).await.unwrap();
                    let outcomes = writer.apply(&own, &g.merchant, chunk).await;
                    assert_eq!(outcomes, expected);
                    let after = own.balances(&ids(&g)).await.unwrap();
                    if outcomes.iter().all(|o| !matches!(o, Outcome::Recorded(_))) {
                        assert_eq!(before, after, "a replay moved money");
                    }
                }
            }
            assert_eq!(
                shared.balances(&ids(&f)).await.unwrap(),
                own.balances(&ids(&g)).await.unwrap()
            );
            let report = own.verify_ledger().await.unwrap();
            assert!(report.is_ok(), "{report:?}");
            assert_eq!(
                (report.entries_checked, report.transfers_checked),
                {
                    let r = shared.verify_ledger().await.unwrap();
                    (r.entries_checked, r.transfers_checked)
                }
            );
        });
    });
}

#[test]
fn sqlite_writer_agrees_with_the_shared_path() {
    own_writer_agrees_with_the_shared_path(TestBackend::Sqlite);
}

#[test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
fn postgres_writer_agrees_with_the_shared_path() {
    own_writer_agrees_with_the_shared_path(TestBackend::Postgres);
}

/// A batch of the SQLite writer that fails half-way (a statement the database refuses)
/// leaves nothing behind, and the store's other writers wait for the write turn instead of
/// failing on the file's lock.
#[tokio::test]
async fn sqlite_writer_batches_are_atomic_and_take_turns() {
    let store = store(TestBackend::Sqlite).await.unwrap();
    let f = fixture(&store).await;
    let mut writer = store.sqlite_writer().unwrap().unwrap();
    let win = |id: &str, amount_minor| win_for_alice(&f, id, amount_minor);
    {
        let _turn = store.write_turn().await.unwrap();
        let mut batch = writer.begin().unwrap();
        batch
            .apply_ledger_requests(&f.merchant, &[win("w1", 500)])
            .unwrap();
        // The second part of the batch names a merchant that does not exist: its entry
        // breaks a foreign key, and the database refuses it with a clear error.
        let refused = batch.apply_ledger_requests("mch_nobody", &[win("w2", 500)]);
        assert!(
            matches!(refused, Err(kassa_store::StoreError::Sqlite(_))),
            "{refused:?}"
        );
        // While the turn is held, a write through the store waits for it.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(300), store.begin());
        assert!(
            waiting.await.is_err(),
            "another writer got in during the turn"
        );
        // Dropped after the failure, without commit: rolled back, first part included.
    }
    assert_eq!(store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]], 0);
    assert!(store.get_entry(&f.merchant, "w1").await.unwrap().is_none());
    assert!(store.get_entry("mch_nobody", "w2").await.unwrap().is_none());
    // After the turn, the store's writers go on, and the writer commits once.
    let tx = store.begin().await.unwrap();
    tx.rollback().await.unwrap();
    let turn = store.write_turn().await.unwrap();
    let mut batch = writer.begin().unwrap();
    let first = batch
        .apply_ledger_requests(&f.merchant, &[win("w1", 500), win("w1", 500)])
        .unwrap();
    batch.commit().unwrap();
    drop(turn);
    assert!(matches!(first[0], Outcome::Recorded(_)));
    assert!(matches!(first[1], Outcome::Replayed(_)));
    assert_eq!(store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]], 500);
    assert!(store.verify_ledger().await.unwrap().is_ok());
}

/// A batch of the PostgreSQL writer that is dropped half-way leaves nothing behind, its
/// row locks go when the writer rolls it back, and the writer's next batch works.
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_writer_batches_are_atomic() {
    let Some(store) = store(TestBackend::Postgres).await else {
        return;
    };
    let f = fixture(&store).await;
    let mut writer = store.postgres_writer().await.unwrap().unwrap();
    {
        let mut batch = writer.begin().await.unwrap();
        batch
            .apply_ledger_requests(&f.merchant, &[win_for_alice(&f, "w1", 500)])
            .await
            .unwrap();
        // Dropped without commit: the accounts were locked, nothing was written.
    }
    // Meanwhile the batch holds the account's row lock: another transaction waits for it.
    let mut other = store.begin().await.unwrap();
    let cash = [f.cash[0]];
    let waiting = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        store.lock_balances(&mut other, &cash),
    );
    assert!(waiting.await.is_err(), "the dropped batch's lock was gone");
    // The other transaction's SELECT … FOR UPDATE still waits on the server; it is
    // answered, and the other transaction can end, once the writer rolls back.
    writer.roll_back_failed_batch().await;
    tokio::time::timeout(std::time::Duration::from_secs(5), other.rollback())
        .await
        .expect("the lock is gone once the batch is rolled back")
        .unwrap();
    assert_eq!(store.balances(&cash).await.unwrap()[&f.cash[0]], 0);
    assert!(store.get_entry(&f.merchant, "w1").await.unwrap().is_none());

    // A batch dropped without a rollback: what it decided was never sent, and the next
    // batch rolls its transaction back (releasing its locks) before it begins; that one
    // commits once.
    drop(writer.begin().await.unwrap());
    {
        let mut batch = writer.begin().await.unwrap();
        batch
            .apply_ledger_requests(&f.merchant, &[win_for_alice(&f, "w2", 700)])
            .await
            .unwrap();
    }
    let mut batch = writer.begin().await.unwrap();
    let outcomes = batch
        .apply_ledger_requests(
            &f.merchant,
            &[win_for_alice(&f, "w1", 500), win_for_alice(&f, "w1", 500)],
        )
        .await
        .unwrap();
    batch.commit().await.unwrap();
    assert!(matches!(outcomes[0], Outcome::Recorded(_)));
    assert!(matches!(outcomes[1], Outcome::Replayed(_)));
    assert_eq!(store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]], 500);
    assert!(store.get_entry(&f.merchant, "w2").await.unwrap().is_none());
    assert!(store.verify_ledger().await.unwrap().is_ok());
}

/// The PostgreSQL writer sends its journal and COMMIT in one round trip. When the journal
/// statement fails there (here: another node recorded the same txn id after this batch read
/// it), the COMMIT behind it finds an aborted transaction: nothing of the batch stays, the
/// error is the journal's (a unique violation, which the wallet retries), and the writer's
/// next batch works.
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_writer_commit_after_a_failed_journal_keeps_nothing() {
    let Some(store) = store(TestBackend::Postgres).await else {
        return;
    };
    let f = fixture(&store).await;
    let mut writer = store.postgres_writer().await.unwrap().unwrap();
    let mut batch = writer.begin().await.unwrap();
    let decided = batch
        .apply_ledger_requests(
            &f.merchant,
            &[win_for_alice(&f, "w1", 500), win_for_alice(&f, "w2", 700)],
        )
        .await
        .unwrap();
    assert!(decided.iter().all(|o| matches!(o, Outcome::Recorded(_))));
    // Another node records "w2" without touching the batch's locked accounts.
    let mut other = store.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO ledger_entries (merchant_id, txn_id, label, operation, status, \
         amount_minor, created_at_ms) VALUES ($1, 'w2', 'credit', 'transfer', 'rejected', 0, 0)",
    )
    .bind(&f.merchant)
    .execute(&mut *other)
    .await
    .unwrap();
    other.commit().await.unwrap();
    let failed = batch.commit().await;
    assert!(
        matches!(&failed, Err(error) if error.is_retryable()),
        "{failed:?}"
    );
    writer.roll_back_failed_batch().await;
    assert_eq!(store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]], 0);
    assert!(store.get_entry(&f.merchant, "w1").await.unwrap().is_none());
    // Tried again, the batch sees the other node's entry and records only "w1".
    let mut batch = writer.begin().await.unwrap();
    let outcomes = batch
        .apply_ledger_requests(
            &f.merchant,
            &[win_for_alice(&f, "w1", 500), win_for_alice(&f, "w2", 700)],
        )
        .await
        .unwrap();
    batch.commit().await.unwrap();
    assert!(matches!(outcomes[0], Outcome::Recorded(_)));
    assert!(!matches!(outcomes[1], Outcome::Recorded(_)), "{outcomes:?}");
    assert_eq!(store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]], 500);
    assert!(store.verify_ledger().await.unwrap().is_ok());
}

/// Two nodes, each with its own PostgreSQL writer, roll back the same debit at the same
/// time under different txn ids: money comes back once. The node that recorded the debit
/// locks its accounts up front; the other learns them from the entry and reads it again
/// under the locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_writers_on_two_nodes_roll_back_a_debit_once() {
    let Some(store) = store(TestBackend::Postgres).await else {
        return;
    };
    let f = fixture(&store).await;
    let mut first = store.postgres_writer().await.unwrap().unwrap();
    let mut second = store.postgres_writer().await.unwrap().unwrap();
    for round in 0..20 {
        let win = format!("win-{round}");
        let bet = format!("bet-{round}");
        commit(
            &mut first,
            &f.merchant,
            vec![win_for_alice(&f, &win, 1_000), bet_for_alice(&f, &bet, 300)],
        )
        .await;
        let before = store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]];
        let (a, b) = tokio::join!(
            commit(
                &mut first,
                &f.merchant,
                vec![rollback_of(&f, &format!("rb-a-{round}"), &bet)]
            ),
            commit(
                &mut second,
                &f.merchant,
                vec![rollback_of(&f, &format!("rb-b-{round}"), &bet)]
            ),
        );
        let after = store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]];
        assert_eq!(after - before, 300, "round {round}: {a:?} {b:?}");
        let original = store.get_entry(&f.merchant, &bet).await.unwrap().unwrap();
        assert_eq!(original.status, EntryStatus::Reversed, "round {round}");
    }
    // A rollback on the node that did not record the debit, alone: it learns the debit's
    // accounts from the entry, locks them, and moves the money back.
    commit(
        &mut first,
        &f.merchant,
        vec![bet_for_alice(&f, "bet-late", 200)],
    )
    .await;
    let before = store.balances(&[f.cash[0], f.house]).await.unwrap();
    let outcomes = commit(
        &mut second,
        &f.merchant,
        vec![rollback_of(&f, "rb-late", "bet-late")],
    )
    .await;
    assert!(matches!(outcomes[0], Outcome::Recorded(_)), "{outcomes:?}");
    let after = store.balances(&[f.cash[0], f.house]).await.unwrap();
    assert_eq!(after[&f.cash[0]] - before[&f.cash[0]], 200);
    assert_eq!(after[&f.house] - before[&f.house], -200);
    assert!(store.verify_ledger().await.unwrap().is_ok());
}

/// One committed batch of `writer`.
async fn commit(
    writer: &mut kassa_store::PostgresWriter,
    merchant: &str,
    requests: Vec<Request>,
) -> Vec<Outcome> {
    let mut batch = writer.begin().await.unwrap();
    let outcomes = batch
        .apply_ledger_requests(merchant, &requests)
        .await
        .unwrap();
    batch.commit().await.unwrap();
    outcomes
}
