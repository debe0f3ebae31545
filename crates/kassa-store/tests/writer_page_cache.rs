//! sqlx's one SQLite writer connection (payments, payouts, players) gets the wallet
//! writer's page cache when the tuning is on (ADR 38): B-tree rebalancing in its
//! transactions parks pages under key 0, so its commits do not walk the whole cache.
//! With the tuning off, nothing parks. A test binary of its own: the parking counter is
//! process-wide, and no other test may write meanwhile.

use kassa_store::Store;
use sqlx::Executor;

/// Inserts rows with scattered keys into an indexed table through the store's writer, in
/// a few transactions: enough page splits for `balance_nonroot` to park pages.
async fn write_scattered_rows(store: &Store) {
    let mut tx = store.begin().await.unwrap();
    (&mut *tx)
        .execute("CREATE TABLE scattered (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB)")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for batch in 0..4 {
        let mut tx = store.begin().await.unwrap();
        for i in 0..500 {
            let reversed: String = format!("{:06}", batch * 500 + i).chars().rev().collect();
            sqlx::query("INSERT INTO scattered (k, v) VALUES (?, zeroblob(300))")
                .bind(format!("key-{reversed}"))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
}

async fn parked_by_writes_with(tuning: bool, dir: &std::path::Path) -> u64 {
    let url = format!("sqlite://{}/kassa-{tuning}.db", dir.display());
    let store = Store::connect_with_sqlite_tuning(&url, tuning)
        .await
        .unwrap();
    let before = kassa_wal_gather::parked_pages();
    write_scattered_rows(&store).await;
    kassa_wal_gather::parked_pages() - before
}

#[tokio::test]
async fn the_pooled_writer_parks_pages_only_with_the_tuning_on() {
    let dir = std::env::temp_dir().join(format!("kassa-writer-pcache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let parked_tuned = parked_by_writes_with(true, &dir).await;
    let parked_plain = parked_by_writes_with(false, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        parked_tuned > 0,
        "the pooled writer's rebalancing never went through the parking cache"
    );
    assert_eq!(parked_plain, 0, "a cache opened without the tuning parked");
}
