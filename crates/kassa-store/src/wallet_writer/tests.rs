//! The writer's connections below [`WalletWriter`](super::WalletWriter), tested where
//! their internals are visible: the held fallback connection, the SQLite writer's write
//! turn, and the PostgreSQL writer's failed and dropped batches. The contract tests
//! (`tests/ledger_contract.rs`) hold every path to the same answers through the public
//! interface.

use kassa_core::ledger::Outcome;

use super::{TurnKeeper, WRITE_TURN_HOLD_MAX};
use crate::testing::{
    ledger_fixture as fixture, migrated_store as store, win_for_alice, TestBackend,
};

async fn session(backend: TestBackend, conn: &mut crate::Conn) -> i64 {
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

#[tokio::test]
async fn sqlite_held_connection_between_batches() {
    held_connection_between_batches(TestBackend::Sqlite).await;
}

#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_held_connection_between_batches() {
    held_connection_between_batches(TestBackend::Postgres).await;
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
            matches!(refused, Err(crate::StoreError::Sqlite(_))),
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

/// Under load the SQLite writer keeps its write turn between batches, for at most
/// [`WRITE_TURN_HOLD_MAX`]; with nothing waiting it gives the turn back at once.
#[tokio::test]
async fn the_write_turn_is_kept_only_while_calls_wait() {
    let store = store(TestBackend::Sqlite).await.unwrap();
    let mut turn = TurnKeeper::default();
    turn.take(&store).await.unwrap();
    turn.after_batch(false);
    assert!(turn.is_held(), "calls are waiting and the turn is young");
    turn.after_batch(true);
    assert!(!turn.is_held(), "nothing waits: the turn goes back");
    turn.take(&store).await.unwrap();
    tokio::time::sleep(WRITE_TURN_HOLD_MAX).await;
    turn.after_batch(false);
    assert!(
        !turn.is_held(),
        "kept long enough: the other writers get it"
    );
    let other = tokio::time::timeout(std::time::Duration::from_secs(2), store.begin())
        .await
        .expect("the store's writers get the turn back")
        .unwrap();
    other.rollback().await.unwrap();
}
