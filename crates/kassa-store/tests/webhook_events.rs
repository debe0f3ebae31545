//! The provider-event dedupe key, on SQLite and (when `KASSA_TEST_POSTGRES_URL` is set)
//! PostgreSQL: a second answer for one event id is reported as a duplicate, never as a
//! database error, also while the first is still uncommitted (issue #21).

use std::time::Duration;

use kassa_store::Store;

kassa_store::store_contract_tests!(
    a_second_answer_for_one_event_is_a_duplicate,
    a_racing_answer_waits_for_the_first_and_is_a_duplicate,
);

async fn a_second_answer_for_one_event_is_a_duplicate(store: Store) {
    let mut tx = store.begin().await.unwrap();
    let first = store
        .insert_webhook_event(&mut tx, "sandbox", "evt_1", 200, "first")
        .await
        .expect("the first answer is stored");
    tx.commit().await.unwrap();
    assert!(first);
    let mut tx = store.begin().await.unwrap();
    let second = store
        .insert_webhook_event(&mut tx, "sandbox", "evt_1", 200, "second")
        .await
        .expect("a duplicate is not a database error");
    assert!(!second);
    // The transaction is still usable: nothing failed in it.
    let other = store
        .insert_webhook_event(&mut tx, "other-provider", "evt_1", 200, "other")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(other, "the key is per provider");
    assert_eq!(
        store
            .processed_webhook_event("sandbox", "evt_1")
            .await
            .unwrap(),
        Some((200, "first".to_string()))
    );
}

async fn a_racing_answer_waits_for_the_first_and_is_a_duplicate(store: Store) {
    let mut first = store.begin().await.unwrap();
    assert!(store
        .insert_webhook_event(&mut first, "sandbox", "evt_race", 200, "first")
        .await
        .unwrap());
    let racing = {
        let store = store.clone();
        tokio::spawn(async move {
            // SQLite waits at BEGIN IMMEDIATE, PostgreSQL at the INSERT.
            let mut tx = store.begin().await?;
            let inserted = store
                .insert_webhook_event(&mut tx, "sandbox", "evt_race", 200, "second")
                .await?;
            tx.rollback().await?;
            Ok::<bool, kassa_store::StoreError>(inserted)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.commit().await.unwrap();
    let inserted = racing
        .await
        .unwrap()
        .expect("the loser of the race is told it lost, not failed");
    assert!(!inserted);
}
