//! Fresh databases for tests: a new SQLite file, or a new database on the PostgreSQL server
//! named by `KASSA_TEST_POSTGRES_URL`. Used by this crate's and the server's test suites.
//!
//! A PostgreSQL test never passes without running. The crates with such tests are compiled
//! with `--cfg kassa_postgres_tests` only when the variable is set (the shared build script
//! `build/postgres_tests.rs`); without it their PostgreSQL tests carry
//! `#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]`
//! and `cargo test` reports them as ignored. One that runs anyway (`--include-ignored`, or a
//! test binary started without the variable it was built with) panics. Under `CI=true` the
//! test [`tests::postgres_is_configured_and_reachable_under_ci`] fails the run when the
//! variable is unset or the server does not answer.

use std::path::PathBuf;

use kassa_core::ledger::{AccountId, AccountKind, Command, EntryMeta, Request};
use kassa_core::status::{AccountStatus, KycStatus};
use kassa_core::Currency;
use sqlx::Connection;

use crate::directory::PlayerUpsert;

/// The backends a contract test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestBackend {
    /// Always available.
    Sqlite,
    /// Only when `KASSA_TEST_POSTGRES_URL` is set; its tests are ignored otherwise.
    Postgres,
}

/// Environment variable naming a PostgreSQL server where tests may create databases.
pub const POSTGRES_URL_VAR: &str = "KASSA_TEST_POSTGRES_URL";

/// Prefix of every database the tests create, so CI can drop leftovers.
pub const TEST_DATABASE_PREFIX: &str = "kassa_test_";

/// The PostgreSQL server URL from `KASSA_TEST_POSTGRES_URL`, or `None` when it is unset or
/// empty.
pub fn postgres_server_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR)
        .ok()
        .filter(|url| !url.is_empty())
}

/// A URL of a new, empty database on `backend`.
///
/// Always `Some`: the `Option` lets callers keep their `let … else` from the time an
/// unconfigured PostgreSQL half returned `None` and passed without running. Now such a test
/// is ignored at compile time, and one that runs without the server configured panics here.
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
            let server = postgres_server_url().unwrap_or_else(|| {
                panic!(
                    "a PostgreSQL test ran but {POSTGRES_URL_VAR} is unset: set it (and rebuild) \
                     to run the PostgreSQL halves, or leave them ignored"
                )
            });
            let mut admin = connect_admin(&server).await;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .expect("create test database");
            Some(crate::postgres_url_with_database(&server, &name))
        }
    }
}

async fn connect_admin(server: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}={server} is unreachable: {e}"))
}

/// A migrated store on a fresh database of `backend`, or `None` when it is not configured.
pub async fn migrated_store(backend: TestBackend) -> Option<crate::Store> {
    let url = fresh_database_url(backend).await?;
    let store = crate::Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some(store)
}

/// A new merchant with two EUR players, `alice` and `bob`, and the house and sandbox
/// clearing accounts: the ledger tests' common ground.
#[derive(Clone)]
pub struct LedgerFixture {
    /// The merchant's id.
    pub merchant: String,
    /// Alice's and Bob's cash accounts.
    pub cash: [AccountId; 2],
    /// Alice's hold account.
    pub hold: AccountId,
    /// The operator's revenue account (the house side of bets and wins).
    pub house: AccountId,
    /// The sandbox provider's clearing account.
    pub clearing: AccountId,
}

/// Creates a [`LedgerFixture`] in `store`.
pub async fn ledger_fixture(store: &crate::Store) -> LedgerFixture {
    let merchant = kassa_core::ids::generate("mch");
    store.create_merchant(&merchant, "test").await.unwrap();
    let eur = Currency::from_code("EUR").unwrap();
    let mut cash = [0; 2];
    let mut hold = 0;
    for (i, player) in ["alice", "bob"].iter().enumerate() {
        let (record, created) = store
            .upsert_player(&PlayerUpsert {
                merchant_id: merchant.parse().unwrap(),
                player_id: player.parse().unwrap(),
                currency: eur,
                country: "MT".into(),
                jurisdiction: None,
                kyc_status: KycStatus::None,
                birth_date: None,
                account_status: AccountStatus::Active,
                email: None,
            })
            .await
            .unwrap();
        assert!(created);
        cash[i] = record.cash_account_id;
        if i == 0 {
            hold = record.hold_account_id;
        }
    }
    let house = store
        .account_id(&merchant, AccountKind::OperatorRevenue, "", eur)
        .await
        .unwrap();
    let clearing = store
        .account_id(&merchant, AccountKind::ProviderClearing, "sandbox", eur)
        .await
        .unwrap();
    LedgerFixture {
        merchant,
        cash,
        hold,
        house,
        clearing,
    }
}

/// A request for Alice with a fingerprint derived from its label and command.
pub fn alice_request(txn_id: &str, label: &str, command: Command, subject: AccountId) -> Request {
    Request {
        txn_id: txn_id.into(),
        label: label.into(),
        fingerprint: format!("{label}:{command:?}"),
        command,
        subject: Some(subject),
        meta: EntryMeta {
            player_id: Some("alice".into()),
            ..EntryMeta::default()
        },
    }
}

/// A win of `amount_minor` for Alice.
pub fn win_for_alice(f: &LedgerFixture, id: &str, amount_minor: i64) -> Request {
    alice_request(
        id,
        "credit",
        Command::Transfer {
            debit: f.house,
            credit: f.cash[0],
            amount_minor,
        },
        f.cash[0],
    )
}

/// Store contract tests: each named `async fn(Store)` becomes a test on a fresh migrated
/// SQLite store in `mod sqlite` and on PostgreSQL in `mod postgres`, which is ignored (and
/// says so) when the build did not find `KASSA_TEST_POSTGRES_URL`. Each runs on four worker
/// threads, so that tests racing two transactions race for real.
#[macro_export]
macro_rules! store_contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = $crate::testing::TestBackend::Sqlite;
                    let store = $crate::testing::migrated_store(backend).await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
                async fn $name() {
                    let backend = $crate::testing::TestBackend::Postgres;
                    let store = $crate::testing::migrated_store(backend).await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI must run both halves: under `CI=true` a missing or unreachable PostgreSQL, or a
    /// build without the `kassa_postgres_tests` cfg (the variable was unset at build time),
    /// fails the run instead of leaving the PostgreSQL tests ignored.
    #[tokio::test]
    async fn postgres_is_configured_and_reachable_under_ci() {
        if std::env::var("CI").as_deref() != Ok("true") {
            return;
        }
        let server = postgres_server_url()
            .unwrap_or_else(|| panic!("CI=true but {POSTGRES_URL_VAR} is unset"));
        if !cfg!(kassa_postgres_tests) {
            panic!(
                "CI=true but the tests were built without {POSTGRES_URL_VAR}, so the \
                 PostgreSQL halves would be ignored"
            );
        }
        let mut admin = connect_admin(&server).await;
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut admin)
            .await
            .expect("PostgreSQL answers");
        assert_eq!(one, 1);
    }
}
