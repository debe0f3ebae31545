//! The ledger through real databases: the same histories on SQLite and PostgreSQL must keep
//! every invariant, and `verify_ledger` must agree with the stored balances.

use kassa_core::ledger::{Command, EntryStatus, Outcome, Request};
use kassa_store::idempotency::Claim;
use kassa_store::testing::{
    alice_request as request, ledger_fixture as fixture, migrated_store as store, win_for_alice,
    LedgerFixture as Fixture, TestBackend,
};
use kassa_store::wallet_writer::{
    ClaimedKey, WalletCall, WalletQueue, WalletQueueOptions, WalletWriter, WriterPath,
};
use kassa_store::Store;
use proptest::prelude::*;

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
/// `verify_ledger` reads the balances and the journal from one snapshot: money moving while
/// it runs is never reported as drift. At PostgreSQL's default `READ COMMITTED`, a win
/// committed between its two reads was.
async fn verify_sees_one_snapshot_while_money_moves(backend: TestBackend) {
    let store = store(backend).await.unwrap();
    let f = fixture(&store).await;
    let wins = {
        let (store, f) = (store.clone(), f.clone());
        tokio::spawn(async move {
            for n in 0..300 {
                apply(
                    &store,
                    &f.merchant,
                    &[win_for_alice(&f, &format!("w{n}"), 100)],
                )
                .await;
            }
        })
    };
    let mut verified = 0;
    while !wins.is_finished() {
        let report = store.verify_ledger().await.unwrap();
        assert!(report.is_ok(), "after {verified} clean reports: {report:?}");
        verified += 1;
    }
    wins.await.unwrap();
    assert!(
        verified > 10,
        "the reports ran while money moved ({verified})"
    );
    assert!(store.verify_ledger().await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_verify_sees_one_snapshot_while_money_moves() {
    verify_sees_one_snapshot_while_money_moves(TestBackend::Sqlite).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_verify_sees_one_snapshot_while_money_moves() {
    verify_sees_one_snapshot_while_money_moves(TestBackend::Postgres).await;
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

/// One committed batch of `writer`, every call of `merchant`, without claimed keys.
async fn commit(writer: &mut WalletWriter, merchant: &str, requests: &[Request]) -> Vec<Outcome> {
    let calls: Vec<WalletCall> = requests
        .iter()
        .map(|request| WalletCall {
            merchant_id: merchant.to_string(),
            request: request.clone(),
            claimed_key: None,
        })
        .collect();
    let outcomes = writer.commit(&calls).await;
    writer.finish_batch(false);
    outcomes.into_iter().map(Result::unwrap).collect()
}

/// The writer on `path`, checked to be on it.
async fn writer_on(store: &Store, path: WriterPath) -> WalletWriter {
    let writer = match path {
        WriterPath::Shared => WalletWriter::open_shared(store).await,
        WriterPath::OwnSqlite | WriterPath::OwnPostgres => WalletWriter::open(store).await,
    };
    assert_eq!(writer.path(), path);
    writer
}

/// The writer's own connection for `backend`.
fn own_path(backend: TestBackend) -> WriterPath {
    match backend {
        TestBackend::Sqlite => WriterPath::OwnSqlite,
        TestBackend::Postgres => WriterPath::OwnPostgres,
    }
}

/// Gives the player of `cash` month wager and loss limits (ADR 77) that random histories
/// reach: their bets go through the play limits' gate.
async fn limit_player(store: &Store, cash: kassa_core::ledger::AccountId) {
    use kassa_core::limits::{LimitPeriod, PeriodLimit};
    use kassa_core::play_limits::{PlayLimits, PlayState};
    let month = |amount| PeriodLimit {
        period: LimitPeriod::Month,
        amount_minor: Some(amount),
        pending: None,
    };
    let state = PlayState {
        limits: PlayLimits {
            wager: vec![month(1_500)],
            loss: vec![month(1_000)],
            ..PlayLimits::default()
        },
        ..PlayState::default()
    };
    let mut tx = store.begin().await.unwrap();
    store
        .put_play_state(&mut tx, cash, Some(&state))
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Each of the wallet writer's paths (its own connection, ADR 13 and 15, and the shared
/// fallback) is a second path to the journal. Random histories, in random batches (up to 63
/// calls over 128 txn ids, so that every size of the SQLite writer's multi-row INSERTs is
/// used), each batch sent twice, go through [`WalletWriter::commit`] on one database and
/// through [`Store::apply_ledger_requests`] on another with the same accounts: every
/// outcome, every balance and the verify report must be the same, and a replayed batch must
/// move nothing. The first player has play limits, so the paths must also refuse the same
/// bets (the month window's buckets are days: the two paths' times differ by
/// milliseconds, which matters only across midnight UTC).
fn writer_agrees_with_the_shared_path(backend: TestBackend, path: WriterPath) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some((shared, own)) =
        runtime.block_on(async { Some((store(backend).await?, store(backend).await?)) })
    else {
        return;
    };
    // proptest's closure is `Fn`: the writer is borrowed mutably through a lock.
    let writer = tokio::sync::Mutex::new(runtime.block_on(writer_on(&own, path)));
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
            limit_player(&shared, f.cash[0]).await;
            limit_player(&own, g.cash[0]).await;
            let requests: Vec<Request> = steps.iter().map(|s| to_request(&f, s)).collect();
            let mut writer = writer.lock().await;
            for chunk in requests.chunks(batch) {
                for _ in 0..2 {
                    let expected = apply(&shared, &f.merchant, chunk).await;
                    let before = own.balances(&ids(&g)).await.unwrap();
                    let outcomes = commit(&mut writer, &g.merchant, chunk).await;
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
    // A held pool connection goes back to its pool on the runtime.
    runtime.block_on(async move { drop(writer) });
}

#[test]
fn sqlite_writer_agrees_with_the_shared_path() {
    writer_agrees_with_the_shared_path(TestBackend::Sqlite, WriterPath::OwnSqlite);
}

#[test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
fn postgres_writer_agrees_with_the_shared_path() {
    writer_agrees_with_the_shared_path(TestBackend::Postgres, WriterPath::OwnPostgres);
}

#[test]
fn sqlite_fallback_writer_agrees_with_the_shared_path() {
    writer_agrees_with_the_shared_path(TestBackend::Sqlite, WriterPath::Shared);
}

#[test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
fn postgres_fallback_writer_agrees_with_the_shared_path() {
    writer_agrees_with_the_shared_path(TestBackend::Postgres, WriterPath::Shared);
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
    let mut first = writer_on(&store, WriterPath::OwnPostgres).await;
    let mut second = writer_on(&store, WriterPath::OwnPostgres).await;
    for round in 0..20 {
        let win = format!("win-{round}");
        let bet = format!("bet-{round}");
        commit(
            &mut first,
            &f.merchant,
            &[win_for_alice(&f, &win, 1_000), bet_for_alice(&f, &bet, 300)],
        )
        .await;
        let before = store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]];
        let rollback_a = [rollback_of(&f, &format!("rb-a-{round}"), &bet)];
        let rollback_b = [rollback_of(&f, &format!("rb-b-{round}"), &bet)];
        let (a, b) = tokio::join!(
            commit(&mut first, &f.merchant, &rollback_a),
            commit(&mut second, &f.merchant, &rollback_b),
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
        &[bet_for_alice(&f, "bet-late", 200)],
    )
    .await;
    let before = store.balances(&[f.cash[0], f.house]).await.unwrap();
    let outcomes = commit(
        &mut second,
        &f.merchant,
        &[rollback_of(&f, "rb-late", "bet-late")],
    )
    .await;
    assert!(matches!(outcomes[0], Outcome::Recorded(_)), "{outcomes:?}");
    let after = store.balances(&[f.cash[0], f.house]).await.unwrap();
    assert_eq!(after[&f.cash[0]] - before[&f.cash[0]], 200);
    assert_eq!(after[&f.house] - before[&f.house], -200);
    assert!(store.verify_ledger().await.unwrap().is_ok());
}

/// A wallet call with a claimed `Idempotency-Key` whose stored answer names its outcome.
fn claimed_call(merchant: &str, key: &str, request: Request) -> WalletCall {
    WalletCall {
        merchant_id: merchant.to_string(),
        claimed_key: Some(ClaimedKey {
            merchant_id: merchant.to_string(),
            key: key.to_string(),
            render: Box::new(|outcome| match outcome {
                Outcome::Recorded(entry) => (201, format!("recorded {}", entry.txn_id)),
                other => (409, format!("{other:?}")),
            }),
        }),
        request,
    }
}

/// A call the database refuses though the ledger accepts it: on SQLite its merchant does
/// not exist (a foreign key), on PostgreSQL its txn id holds a NUL byte, which no text
/// column takes.
fn refused_call(backend: TestBackend, f: &Fixture) -> WalletCall {
    let (merchant, txn_id) = match backend {
        TestBackend::Sqlite => ("mch_nobody".to_string(), "bad".to_string()),
        TestBackend::Postgres => (f.merchant.clone(), "bad\0id".to_string()),
    };
    claimed_call(&merchant, "key-bad", win_for_alice(f, &txn_id, 300))
}

/// One batch on each path of the writer: the claimed keys of its calls are completed with
/// their answers in the batch's transaction; a call the database refuses fails alone (the
/// batch is split), its key stays unanswered, and the other calls commit once.
async fn a_refused_call_fails_alone_and_keys_complete_with_their_batch(
    backend: TestBackend,
    path: WriterPath,
) {
    let Some(store) = store(backend).await else {
        return;
    };
    let f = fixture(&store).await;
    let mut writer = writer_on(&store, path).await;
    for key in ["key-1", "key-bad", "key-2"] {
        let claimed = store.claim_idempotency_key(&f.merchant, key, "h", 60_000);
        assert_eq!(claimed.await.unwrap(), Claim::Claimed);
    }
    let calls = [
        claimed_call(&f.merchant, "key-1", win_for_alice(&f, "w1", 500)),
        refused_call(backend, &f),
        claimed_call(&f.merchant, "key-2", bet_for_alice(&f, "b1", 200)),
    ];
    let results = writer.commit(&calls).await;
    writer.finish_batch(false);
    assert!(
        matches!(&results[0], Ok(Outcome::Recorded(_))),
        "{results:?}"
    );
    assert!(results[1].is_err(), "{results:?}");
    assert!(
        matches!(&results[2], Ok(Outcome::Recorded(_))),
        "{results:?}"
    );
    assert_eq!(store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]], 300);
    let replay = |key: &'static str| store.claim_idempotency_key(&f.merchant, key, "h", 60_000);
    assert_eq!(
        replay("key-1").await.unwrap(),
        Claim::Replay {
            status: 201,
            body: "recorded w1".into()
        }
    );
    assert_eq!(
        replay("key-2").await.unwrap(),
        Claim::Replay {
            status: 201,
            body: "recorded b1".into()
        }
    );
    assert_eq!(replay("key-bad").await.unwrap(), Claim::InUse);
    // Sent again, the batch replays what committed and moves nothing.
    let again = writer.commit(&calls[..1]).await;
    writer.finish_batch(false);
    assert!(matches!(&again[0], Ok(Outcome::Replayed(_))), "{again:?}");
    assert_eq!(store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]], 300);
    assert!(store.verify_ledger().await.unwrap().is_ok());
}

#[tokio::test]
async fn sqlite_writer_a_refused_call_fails_alone() {
    let backend = TestBackend::Sqlite;
    a_refused_call_fails_alone_and_keys_complete_with_their_batch(backend, own_path(backend)).await;
}

#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_writer_a_refused_call_fails_alone() {
    let backend = TestBackend::Postgres;
    a_refused_call_fails_alone_and_keys_complete_with_their_batch(backend, own_path(backend)).await;
}

#[tokio::test]
async fn sqlite_fallback_writer_a_refused_call_fails_alone() {
    a_refused_call_fails_alone_and_keys_complete_with_their_batch(
        TestBackend::Sqlite,
        WriterPath::Shared,
    )
    .await;
}

#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_fallback_writer_a_refused_call_fails_alone() {
    a_refused_call_fails_alone_and_keys_complete_with_their_batch(
        TestBackend::Postgres,
        WriterPath::Shared,
    )
    .await;
}

/// The queue in front of the writer: concurrent calls are answered once each, durably,
/// in batches no larger than allowed, and the writer's thread stops when the last handle
/// goes.
async fn the_queue_answers_every_call_once(backend: TestBackend) {
    let Some(store) = store(backend).await else {
        return;
    };
    let f = fixture(&store).await;
    let queue = WalletQueue::start(
        store.clone(),
        &WalletQueueOptions {
            batch_size_max: 4,
            queue_len_max: 256,
            writer_nice: 0,
            session_break_ms: kassa_core::play_limits::SESSION_BREAK_MS_DEFAULT,
        },
    );
    let call = |txn_id: String| WalletCall {
        merchant_id: f.merchant.clone(),
        request: win_for_alice(&f, &txn_id, 10),
        claimed_key: None,
    };
    // 40 distinct wins and each sent twice: 40 recorded, 40 replayed, in whatever order.
    let calls = (0..80).map(|i| queue.submit(call(format!("q{}", i % 40))));
    let outcomes = futures::future::join_all(calls).await;
    let recorded = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Outcome::Recorded(_))))
        .count();
    let replayed = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Outcome::Replayed(_))))
        .count();
    assert_eq!((recorded, replayed), (40, 40), "{outcomes:?}");
    assert_eq!(store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]], 400);
    assert!(store.verify_ledger().await.unwrap().is_ok());
    drop(queue);
}

#[tokio::test]
async fn sqlite_the_queue_answers_every_call_once() {
    the_queue_answers_every_call_once(TestBackend::Sqlite).await;
}

#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_the_queue_answers_every_call_once() {
    the_queue_answers_every_call_once(TestBackend::Postgres).await;
}
