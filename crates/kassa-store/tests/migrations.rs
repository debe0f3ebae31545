//! Migrations that rewrite the journal keep every row: a database with money on it at the
//! previous schema is migrated and must still verify, with the same balances.

use kassa_store::risk::{VelocityAsk, VelocitySubject};
use kassa_store::testing::{fresh_database_url, TestBackend};
use kassa_store::Store;
use sqlx::AnyPool;

/// A pool on `url` migrated with the migrations whose names sort before `first_left_out`
/// (`"0004"`: the journal before transfers were keyed by entry).
async fn migrate_before(backend: TestBackend, url: &str, first_left_out: &str) -> AnyPool {
    let folder = match backend {
        TestBackend::Sqlite => "sqlite",
        TestBackend::Postgres => "postgres",
    };
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(folder);
    let partial = std::env::temp_dir().join(format!(
        "kassa_migrations_{}",
        kassa_core::ids::generate("m").to_lowercase()
    ));
    std::fs::create_dir_all(&partial).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let name = entry.unwrap().file_name();
        if name.to_string_lossy().as_ref() < first_left_out {
            std::fs::copy(source.join(&name), partial.join(&name)).unwrap();
        }
    }
    sqlx::any::install_default_drivers();
    let url = match backend {
        TestBackend::Sqlite => format!("{url}?mode=rwc"),
        TestBackend::Postgres => url.to_string(),
    };
    let pool = AnyPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(partial.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    std::fs::remove_dir_all(&partial).ok();
    pool
}

async fn transfers_keep_their_entries_through_0004(backend: TestBackend) {
    let Some(url) = fresh_database_url(backend).await else {
        return;
    };
    let old = migrate_before(backend, &url, "0004").await;
    // A merchant, a player's cash account (id 1) and the house (id 2), two wins and a bet,
    // written as the code before 0004 wrote them.
    for sql in [
        "INSERT INTO merchants (id, name, created_at_ms) VALUES ('m1', 'old', 0)",
        "INSERT INTO ledger_accounts (merchant_id, kind, owner, currency, floor, balance_minor) \
         VALUES ('m1', 'player_cash', 'alice', 'EUR', 'non_negative', 450)",
        "INSERT INTO ledger_accounts (merchant_id, kind, owner, currency, floor, balance_minor) \
         VALUES ('m1', 'operator_revenue', '', 'EUR', 'unbounded', -450)",
        "INSERT INTO ledger_entries (merchant_id, txn_id, label, operation, status, currency, \
         amount_minor, debit_account_id, credit_account_id, created_at_ms) \
         VALUES ('m1', 'win-1', 'credit', 'transfer', 'posted', 'EUR', 1000, 2, 1, 0)",
        "INSERT INTO ledger_entries (merchant_id, txn_id, label, operation, status, currency, \
         amount_minor, debit_account_id, credit_account_id, created_at_ms) \
         VALUES ('m1', 'bet-1', 'debit', 'transfer', 'posted', 'EUR', 700, 1, 2, 0)",
        "INSERT INTO ledger_entries (merchant_id, txn_id, label, operation, status, currency, \
         amount_minor, debit_account_id, credit_account_id, created_at_ms) \
         VALUES ('m1', 'win-2', 'credit', 'transfer', 'posted', 'EUR', 150, 2, 1, 0)",
        "INSERT INTO ledger_transfers (merchant_id, txn_id, seq, debit_account_id, \
         credit_account_id, amount_minor, currency, created_at_ms) \
         VALUES ('m1', 'win-1', 0, 2, 1, 1000, 'EUR', 0)",
        "INSERT INTO ledger_transfers (merchant_id, txn_id, seq, debit_account_id, \
         credit_account_id, amount_minor, currency, created_at_ms) \
         VALUES ('m1', 'bet-1', 0, 1, 2, 700, 'EUR', 0)",
        "INSERT INTO ledger_transfers (merchant_id, txn_id, seq, debit_account_id, \
         credit_account_id, amount_minor, currency, created_at_ms) \
         VALUES ('m1', 'win-2', 0, 2, 1, 150, 'EUR', 0)",
    ] {
        sqlx::query(sql).execute(&old).await.unwrap();
    }
    old.close().await;

    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let report = store.verify_ledger().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.transfers_checked, 3);
    assert_eq!(
        store.balances(&[1, 2]).await.unwrap(),
        [(1, 450), (2, -450)].into_iter().collect()
    );
    // Each transfer now names its own entry, and the journal is still append-only.
    let mut tx = store.begin().await.unwrap();
    let pairs: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.txn_id, e.txn_id FROM ledger_transfers t \
         JOIN ledger_entries e ON e.id = t.entry_id ORDER BY t.id",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(
        pairs,
        [("win-1", "win-1"), ("bet-1", "bet-1"), ("win-2", "win-2")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let edit = sqlx::query("UPDATE ledger_transfers SET amount_minor = 1")
        .execute(&mut *tx)
        .await;
    assert!(edit.is_err(), "the journal must stay append-only");
    drop(tx);
    // A second transfer row for an entry and sequence number already written is refused.
    let mut tx = store.begin().await.unwrap();
    let twice = sqlx::query(
        "INSERT INTO ledger_transfers (entry_id, merchant_id, txn_id, seq, debit_account_id, \
         credit_account_id, amount_minor, currency, created_at_ms) \
         SELECT id, merchant_id, txn_id, 0, 2, 1, 1000, 'EUR', 0 FROM ledger_entries \
         WHERE txn_id = 'win-1'",
    )
    .execute(&mut *tx)
    .await;
    assert!(twice.is_err(), "one entry's transfer was written twice");
}

#[tokio::test]
async fn sqlite_transfers_keep_their_entries_through_0004() {
    transfers_keep_their_entries_through_0004(TestBackend::Sqlite).await;
}
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_transfers_keep_their_entries_through_0004() {
    transfers_keep_their_entries_through_0004(TestBackend::Postgres).await;
}

/// Decisions stored before 0043 tell the velocity count which players an IP, a device and a
/// card were seen with: the migration fills `risk_subject_players` from them (ADR 94).
async fn subject_players_are_filled_from_earlier_decisions_by_0043(backend: TestBackend) {
    let Some(url) = fresh_database_url(backend).await else {
        return;
    };
    let old = migrate_before(backend, &url, "0043").await;
    let now = kassa_store::now_ms();
    let day_ms = 86_400_000;
    // (player, kind, IP, card, days ago)
    let decisions = [
        ("p2", "deposit", Some("ip-1"), None, 3),
        ("p2", "deposit", Some("ip-1"), None, 40),
        ("p3", "deposit", Some("ip-1"), None, 35),
        ("p4", "payout", Some("ip-1"), None, 1),
        ("p5", "card", Some("ip-1"), Some("card-1"), 2),
        ("p6", "deposit", None, Some("card-1"), 2),
    ];
    for (n, (player, kind, ip, card, days_ago)) in decisions.into_iter().enumerate() {
        sqlx::query(
            "INSERT INTO risk_decisions (id, merchant_id, player_id, kind, subject_id, ip, \
             device, amount_minor, outcome, score, features, decision, created_at_ms, \
             card_fingerprint) VALUES ($1, 'm1', $2, $3, $4, $5, 'device-1', 100, 'approve', 0, \
             '{}', '{}', $6, $7)",
        )
        .bind(format!("rd_{n}"))
        .bind(player)
        .bind(kind)
        .bind(format!("pay_{n}"))
        .bind(ip)
        .bind(now - days_ago * day_ms)
        .bind(card)
        .execute(&old)
        .await
        .unwrap();
    }
    old.close().await;

    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let windows = [now - day_ms];
    let ask = VelocityAsk {
        merchant_id: "m1",
        player_id: "p1",
        subject_id: "pay_new",
        window_starts_ms: &windows,
    };
    let since = now - 30 * day_ms;
    let subjects = [
        (VelocitySubject::Ip("ip-1"), since),
        (VelocitySubject::Device("device-1"), since),
        (VelocitySubject::Card("card-1"), since),
    ];
    let mut conn = store.read_connection().await.unwrap();
    let counted = store
        .risk_velocity_in(&mut conn, &ask, &subjects)
        .await
        .unwrap();
    let others: Vec<i64> = counted.iter().map(|v| v.other_players).collect();
    // The IP's and the device's: p2 (3 days ago), and p6 for the device; not p3 (35 days),
    // the payout's p4 or the card's p5. The card's: p5, who submitted it.
    assert_eq!(others, [1, 2, 1], "{counted:?}");
}

#[tokio::test]
async fn sqlite_subject_players_are_filled_from_earlier_decisions_by_0043() {
    subject_players_are_filled_from_earlier_decisions_by_0043(TestBackend::Sqlite).await;
}
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_subject_players_are_filled_from_earlier_decisions_by_0043() {
    subject_players_are_filled_from_earlier_decisions_by_0043(TestBackend::Postgres).await;
}
