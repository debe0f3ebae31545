//! The PostgreSQL pool pings a connection before use only after it sat idle (ADR 89): one
//! the server closed while it sat in the pool (a restart, an administrator's
//! `pg_terminate_backend`, a proxy's idle timeout) is replaced, not handed to a request.

use std::time::Duration;

use kassa_store::testing::{fresh_database_url, postgres_server_url, TestBackend};
use kassa_store::{Store, StoreError};

/// The server process behind `store`'s next reader connection.
async fn backend_pid(store: &Store) -> Result<i32, sqlx::Error> {
    let mut conn = store.read_connection().await.unwrap();
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await
}

/// Terminates every server process of `database` but the caller's, waiting until each is
/// gone; answers how many there were.
async fn terminate_connections_to(database: &str) -> i64 {
    let admin = Store::connect(&postgres_server_url().unwrap())
        .await
        .unwrap();
    let mut conn = admin.read_connection().await.unwrap();
    let terminated = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
    )
    .bind(database)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    admin.close().await;
    terminated
}

#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_a_connection_closed_while_idle_is_replaced_before_use() {
    let url = fresh_database_url(TestBackend::Postgres).await.unwrap();
    let database = url.rsplit('/').next().unwrap().to_string();
    let store = Store::connect(&url).await.unwrap();
    let first_pid = backend_pid(&store).await.unwrap();
    assert!(terminate_connections_to(&database).await >= 1);

    // Idle for longer than the ping's threshold: pinged, found closed, replaced.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let pid = backend_pid(&store)
        .await
        .expect("a working connection, not the terminated one");
    assert_ne!(pid, first_pid);

    // Used again at once: not pinged, so the request fails, as one in flight during a
    // restart does, with an error the API answers as a retryable 503; the connection is
    // dropped when it goes back to the pool, and the next use gets a working one.
    assert!(terminate_connections_to(&database).await >= 1);
    let error = backend_pid(&store).await.unwrap_err();
    assert!(StoreError::from(error).is_unavailable());
    assert!(backend_pid(&store).await.is_ok());
    store.close().await;
}
