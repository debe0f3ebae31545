//! The list of players who may not bet (ADR 41): exactly the players whose status is not
//! `active`, no status outside the known names can be stored (the list names them), and on
//! PostgreSQL the read uses its small partial index on a fresh database without statistics.

use kassa_core::status::{AccountStatus, KycStatus};
use kassa_core::Currency;
use kassa_store::directory::{restricted_players_sql, PlayerUpsert};
use kassa_store::testing::{fresh_database_url, migrated_store, TestBackend};
use kassa_store::Store;

fn upsert(merchant: &str, player: &str, account_status: AccountStatus) -> PlayerUpsert {
    PlayerUpsert {
        merchant_id: merchant.parse().unwrap(),
        player_id: player.parse().unwrap(),
        currency: Currency::from_code("EUR").unwrap(),
        country: "MT".into(),
        jurisdiction: None,
        kyc_status: KycStatus::None,
        birth_date: None,
        account_status,
        email: None,
    }
}

async fn listed(store: &Store) -> Vec<(String, String, AccountStatus)> {
    let mut listed: Vec<_> = store
        .restricted_players()
        .await
        .unwrap()
        .into_iter()
        .map(|p| {
            let key = (p.merchant_id.to_string(), p.player_id.to_string());
            (key.0, key.1, p.account_status)
        })
        .collect();
    listed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    listed
}

async fn the_list_holds_exactly_the_players_who_are_not_active(backend: TestBackend) {
    let store = migrated_store(backend).await.unwrap();
    for merchant in ["mch_m1", "mch_m2"] {
        store.create_merchant(merchant, merchant).await.unwrap();
    }
    use AccountStatus::*;
    for (merchant, player, status) in [
        ("mch_m1", "active", Active),
        ("mch_m1", "se", SelfExcluded),
        ("mch_m1", "bl", Blocked),
        ("mch_m2", "se", SelfExcluded),
        ("mch_m2", "back", Blocked),
    ] {
        store
            .upsert_player(&upsert(merchant, player, status))
            .await
            .unwrap();
    }
    // One comes back: the list follows the status both ways.
    store
        .upsert_player(&upsert("mch_m2", "back", Active))
        .await
        .unwrap();
    assert_eq!(
        listed(&store).await,
        vec![
            ("mch_m1".into(), "bl".into(), Blocked),
            ("mch_m1".into(), "se".into(), SelfExcluded),
            ("mch_m2".into(), "se".into(), SelfExcluded),
        ]
    );
}

async fn a_status_kassa_does_not_know_cannot_be_stored(backend: TestBackend) {
    let store = migrated_store(backend).await.unwrap();
    store.create_merchant("mch_m1", "mch_m1").await.unwrap();
    store
        .upsert_player(&upsert("mch_m1", "p1", AccountStatus::Active))
        .await
        .unwrap();
    // A status the list does not name would let the player bet: refused by the database.
    let mut tx = store.begin().await.unwrap();
    let refused = sqlx::query("UPDATE players SET account_status = 'Blocked'")
        .execute(&mut *tx)
        .await;
    assert!(refused.is_err(), "an unknown status was stored");
}

#[tokio::test]
async fn sqlite_the_list_holds_exactly_the_players_who_are_not_active() {
    the_list_holds_exactly_the_players_who_are_not_active(TestBackend::Sqlite).await;
}
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_the_list_holds_exactly_the_players_who_are_not_active() {
    the_list_holds_exactly_the_players_who_are_not_active(TestBackend::Postgres).await;
}
#[tokio::test]
async fn sqlite_a_status_kassa_does_not_know_cannot_be_stored() {
    a_status_kassa_does_not_know_cannot_be_stored(TestBackend::Sqlite).await;
}
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_a_status_kassa_does_not_know_cannot_be_stored() {
    a_status_kassa_does_not_know_cannot_be_stored(TestBackend::Postgres).await;
}

/// Players in the table, of whom one in a thousand is restricted.
const PLAYERS: i64 = 20_000;

/// On a fresh PostgreSQL database that has never been analyzed, `<> 'active'` alone is
/// estimated to match nearly every row and the table is scanned once a second per node;
/// the read as written must take the partial index instead.
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_the_list_is_read_from_its_index_without_statistics() {
    let url = fresh_database_url(TestBackend::Postgres).await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    store.create_merchant("mch_m1", "mch_m1").await.unwrap();
    let mut tx = store.begin().await.unwrap();
    for sql in [
        "ALTER TABLE players SET (autovacuum_enabled = false)".to_string(),
        "INSERT INTO ledger_accounts (merchant_id, kind, owner, currency, floor, balance_minor) \
         VALUES ('mch_m1', 'player_cash', 'shared', 'EUR', 'non_negative', 0)"
            .to_string(),
        format!(
            "INSERT INTO players (merchant_id, player_id, currency, country, kyc_status, \
             cash_account_id, hold_account_id, created_at_ms, updated_at_ms, account_status) \
             SELECT 'mch_m1', 'p' || n, 'EUR', 'MT', 'none', a.id, a.id, 0, 0, \
             CASE WHEN n % 1000 = 0 THEN 'self_excluded' ELSE 'active' END \
             FROM generate_series(1, {PLAYERS}) AS n, ledger_accounts a"
        ),
    ] {
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();

    let explainer = sqlx::AnyPool::connect(&url).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {}", restricted_players_sql()))
        .fetch_all(&explainer)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("players_restricted"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert_eq!(
        store.restricted_players().await.unwrap().len() as i64,
        PLAYERS / 1000
    );
}
