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
            Some(with_database(&server, &name))
        }
    }
}

/// `server` with its database name replaced by `name`.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host = path_start.map(|i| &base[..i]).unwrap_or(base);
    match query {
        Some(query) => format!("{host}/{name}?{query}"),
        None => format!("{host}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_or_adds_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
