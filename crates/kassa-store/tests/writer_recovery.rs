//! The wallet writer's own SQLite connection after a failed WAL write (issue 22, ADR 35):
//! the batch that met it is refused as "database unavailable" and nothing of it is
//! applied; the next batch commits on a reopened connection, without a restart; the
//! balances and `verify_ledger` are right.
//!
//! SQLite only: the fault comes from the test VFS that `kassa-wal-gather` puts under its
//! shim (feature `test-vfs`), made the process's default VFS here, so this file is a test
//! binary of its own. The PostgreSQL writer has no WAL of its own to fail; its lost
//! connections are `is_unavailable` already. Runs with the tuning on and off
//! (`KASSA_SQLITE_TUNING`): through the shim a failed write sticks until the connection
//! is reopened; a plain connection recovers anyway, and must answer the same.

use kassa_core::ledger::Outcome;
use kassa_store::testing::{ledger_fixture, win_for_alice, LedgerFixture};
use kassa_store::wallet_writer::{WalletCall, WalletWriter, WriterPath};
use kassa_store::{Store, StoreError};
use kassa_wal_gather::test_vfs::{self, FaultDir};
use rusqlite::ffi;

const WIN_MINOR: i64 = 100;

fn calls(f: &LedgerFixture, ids: &[String]) -> Vec<WalletCall> {
    ids.iter()
        .map(|id| WalletCall {
            merchant_id: f.merchant.clone(),
            request: win_for_alice(f, id, WIN_MINOR),
            claimed_key: None,
        })
        .collect()
}

async fn commit(
    writer: &mut WalletWriter,
    f: &LedgerFixture,
    ids: &[String],
) -> Vec<Result<Outcome, StoreError>> {
    let results = writer.commit(&calls(f, ids)).await;
    writer.finish_batch(false);
    results
}

fn assert_recorded(results: Vec<Result<Outcome, StoreError>>, case: &str) {
    for result in results {
        match result {
            Ok(Outcome::Recorded(_)) => {}
            other => panic!("{case}: not recorded: {other:?}"),
        }
    }
}

fn ids(batch: &str) -> Vec<String> {
    (0..3).map(|i| format!("{batch}-{i}")).collect()
}

async fn alice_balance(store: &Store, f: &LedgerFixture) -> i64 {
    store.balances(&[f.cash[0]]).await.unwrap()[&f.cash[0]]
}

/// One history: a batch commits, the next meets a WAL write failing with `code` and is
/// refused, later batches (and the refused one, sent again) commit.
async fn failed_write_then_recovery(code: i32) {
    test_vfs::install();
    let dir = FaultDir::new("writer");
    let store = Store::connect(&format!("sqlite://{}", dir.db().display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let f = ledger_fixture(&store).await;
    let mut writer = WalletWriter::open(&store).await;
    assert_eq!(writer.path(), WriterPath::OwnSqlite);
    let case = format!("code {code}");

    assert_recorded(commit(&mut writer, &f, &ids("before")).await, &case);

    test_vfs::arm(dir.path(), 0, 1, code);
    let refused = commit(&mut writer, &f, &ids("refused")).await;
    test_vfs::disarm(dir.path());
    assert_eq!(test_vfs::failed_writes(dir.path()), 1, "{case}: the fault");
    assert_eq!(refused.len(), 3);
    for result in refused {
        let error = result.expect_err("a batch whose WAL write failed committed");
        assert!(
            error.is_unavailable(),
            "{case}: answered as unavailable (503), not {error:?}"
        );
    }
    assert_eq!(alice_balance(&store, &f).await, 3 * WIN_MINOR, "{case}");

    // No restart: the same writer commits the next batch, and the refused batch sent
    // again is recorded, not replayed, so nothing of it had been applied.
    assert_recorded(commit(&mut writer, &f, &ids("after")).await, &case);
    assert_recorded(commit(&mut writer, &f, &ids("refused")).await, &case);
    assert_eq!(alice_balance(&store, &f).await, 9 * WIN_MINOR, "{case}");
    let report = store.verify_ledger().await.unwrap();
    assert!(report.is_ok(), "{case}: {report:?}");
    assert_eq!(report.entries_checked, 9, "{case}");
}

#[tokio::test]
async fn a_disk_full_on_the_wal_refuses_one_batch_and_the_writer_recovers() {
    failed_write_then_recovery(ffi::SQLITE_FULL).await;
}

#[tokio::test]
async fn an_io_error_on_the_wal_refuses_one_batch_and_the_writer_recovers() {
    failed_write_then_recovery(ffi::SQLITE_IOERR_WRITE).await;
}

/// WAL writes the wallet writer makes for one batch of 30 calls, with the tuning on and
/// the WAL shim as given (`storage.sqlite_wal_gather`, ADR 40).
async fn wal_writes_of_a_batch(wal_gather: bool) -> u64 {
    test_vfs::install();
    let dir = FaultDir::new("switch");
    let store =
        Store::connect_with_sqlite_tuning(&format!("sqlite://{}", dir.db().display()), true)
            .await
            .unwrap()
            .with_sqlite_wal_gather(wal_gather);
    store.migrate().await.unwrap();
    let f = ledger_fixture(&store).await;
    let mut writer = WalletWriter::open(&store).await;
    let batch: Vec<String> = (0..30).map(|i| format!("switch-{i}")).collect();
    let before = test_vfs::wal_writes(dir.path());
    assert_recorded(commit(&mut writer, &f, &batch).await, "switch");
    test_vfs::wal_writes(dir.path()) - before
}

#[tokio::test]
async fn the_wal_gather_switch_decides_whether_the_writer_goes_through_the_shim() {
    let gathered = wal_writes_of_a_batch(true).await;
    let plain = wal_writes_of_a_batch(false).await;
    // SQLite writes each frame in two calls; the shim writes a commit's frames in one or
    // a few.
    assert!(
        gathered * 4 <= plain,
        "gathered {gathered} WAL writes, plain {plain}"
    );
}
