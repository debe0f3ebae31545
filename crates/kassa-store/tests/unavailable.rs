//! A database that cannot take the work now (a full disk) is "unavailable": the API answers
//! 503 `database_unavailable` and the caller may retry, where a bug or a refused statement
//! stays an internal error.

use kassa_store::testing::{migrated_store, TestBackend};
use kassa_store::StoreError;

#[tokio::test]
async fn sqlite_a_full_database_is_unavailable_and_a_refused_statement_is_not() {
    let store = migrated_store(TestBackend::Sqlite).await.unwrap();
    store.create_merchant("mch_a", "a").await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let refused =
        sqlx::query("INSERT INTO merchants (id, name, created_at_ms) VALUES ('mch_a', 'a', 0)")
            .execute(&mut *tx)
            .await
            .unwrap_err();
    assert!(!StoreError::from(refused).is_unavailable());
    tx.rollback().await.unwrap();

    // SQLITE_FULL through sqlx's writer, as a full disk gives it: the file may not grow.
    let mut tx = store.begin().await.unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let full = sqlx::query(
        "INSERT INTO merchants (id, name, created_at_ms) VALUES ('mch_b', zeroblob(200000), 0)",
    )
    .execute(&mut *tx)
    .await
    .unwrap_err();
    let full = StoreError::from(full);
    assert!(full.is_unavailable(), "{full:?}");
}
