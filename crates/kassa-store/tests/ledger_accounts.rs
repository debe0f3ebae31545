//! `Store::ledger_account` remembers only account ids it has seen committed: an account
//! created by a transaction that rolls back must not be handed out afterwards.

use kassa_core::ledger::AccountKind;
use kassa_core::Currency;
use kassa_store::testing::{migrated_store, TestBackend};

async fn an_account_of_a_rolled_back_transaction_is_not_remembered(backend: TestBackend) {
    let store = migrated_store(backend).await.unwrap();
    store.create_merchant("mch_a", "a").await.unwrap();
    let eur = Currency::from_code("EUR").unwrap();
    let kind = AccountKind::ProviderClearing;

    let mut tx = store.begin().await.unwrap();
    // Asked for twice: the second time the account exists, but only inside `tx`.
    for _ in 0..2 {
        store
            .ledger_account(&mut tx, "mch_a", kind, "psp#3", eur)
            .await
            .unwrap();
    }
    tx.rollback().await.unwrap();
    assert_eq!(
        store
            .find_account_id("mch_a", kind, "psp#3", eur)
            .await
            .unwrap(),
        None
    );

    let mut tx = store.begin().await.unwrap();
    let created = store
        .ledger_account(&mut tx, "mch_a", kind, "psp#3", eur)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let found = store
        .find_account_id("mch_a", kind, "psp#3", eur)
        .await
        .unwrap();
    assert_eq!(found, Some(created));
    // Remembered now: the same id from memory, in later transactions.
    for _ in 0..2 {
        let mut tx = store.begin().await.unwrap();
        let again = store
            .ledger_account(&mut tx, "mch_a", kind, "psp#3", eur)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(again, created);
    }
}

#[tokio::test]
async fn sqlite_an_account_of_a_rolled_back_transaction_is_not_remembered() {
    an_account_of_a_rolled_back_transaction_is_not_remembered(TestBackend::Sqlite).await;
}
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_an_account_of_a_rolled_back_transaction_is_not_remembered() {
    an_account_of_a_rolled_back_transaction_is_not_remembered(TestBackend::Postgres).await;
}
