//! Fresh databases for tests: a new SQLite file, or a new database on the PostgreSQL server
//! named by `KASSA_TEST_POSTGRES_URL`. Used by this crate's and the server's test suites.

use std::path::PathBuf;

use sqlx::Connection;

/// The backends a contract test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestBackend {
    /// Always available.
    Sqlite,
    /// Only when `KASSA_TEST_POSTGRES_URL` is set.
    Postgres,
}

/// Environment variable naming a PostgreSQL server where tests may create databases.
pub const POSTGRES_URL_VAR: &str = "KASSA_TEST_POSTGRES_URL";

/// Prefix of every database the tests create, so CI can drop leftovers.
pub const TEST_DATABASE_PREFIX: &str = "kassa_test_";

/// A URL of a new, empty database, or `None` when the backend is not configured here.
pub async fn fresh_database_url(backend: TestBackend) -> Option<String> {
    let name = format!(
        "{TEST_DATABASE_PREFIX}{}",
        kassa_core::ids::generate("db").to_lowercase()
    );
    match backend {
        TestBackend::Sqlite => {
            let dir: PathBuf = std::env::temp_dir().join(name);
            std::fs::create_dir_all(&dir).expect("temp dir");
            Some(format!("sqlite://{}/kassa.db", dir.display()))
        }
        TestBackend::Postgres => {
            let server = std::env::var(POSTGRES_URL_VAR)
                .ok()
                .filter(|v| !v.is_empty())?;
            let mut admin = sqlx::PgConnection::connect(&server)
                .await
                .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}={server} is unreachable: {e}"));
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .expect("create test database");
            Some(crate::postgres_url_with_database(&server, &name))
        }
    }
}
