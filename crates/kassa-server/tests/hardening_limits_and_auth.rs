//! Hardening issue 21 through the real HTTP API, on SQLite and PostgreSQL alike: amounts the
//! ledger can always hold, strict decimals, the bearer scheme in any case, keyed key hashes.

mod common;

use common::{deliver, rfc3339_now_plus, TestApp};
use kassa_server::config::Config;
use kassa_server::Server;
use kassa_store::testing::{fresh_database_url, TestBackend};
use kassa_store::Store;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

contract_tests!(
    the_issue_sequence_is_refused_and_verify_stays_clean,
    every_money_moving_call_refuses_amounts_above_the_maximum,
    more_decimals_than_the_currency_has_are_refused_everywhere,
    the_bearer_scheme_is_case_insensitive,
    keys_are_stored_under_a_keyed_hash_and_old_hashes_are_upgraded,
);

fn assert_too_large(answer: &common::Answer, max: &str, what: &str) {
    assert_eq!(
        (answer.status, answer.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "amount_too_large"),
        "{what}: {}",
        answer.body
    );
    assert_eq!(
        answer.body["details"],
        json!({"field": "amount", "max": max}),
        "{what}"
    );
}

/// Credit i64::MAX minor units, debit them, credit again: used to succeed and then break
/// `ledger verify` (500) for every merchant, and block the merchant's other credits.
async fn the_issue_sequence_is_refused_and_verify_stays_clean(app: TestApp) {
    app.player("p1").await;
    app.player("p2").await;
    let top = "92233720368547758.07";
    assert_too_large(
        &app.credit("c1", "p1", top).await,
        "1000000000.00",
        "credit",
    );
    assert_too_large(&app.debit("d1", "p1", top).await, "1000000000.00", "debit");
    assert_too_large(
        &app.credit("c2", "p1", top).await,
        "1000000000.00",
        "credit",
    );
    assert_too_large(
        &app.credit("c3", "p1", "92233720368547758.08").await,
        "1000000000.00",
        "past i64",
    );
    assert_too_large(
        &app.credit("c4", "p1", "1000000000.01").await,
        "1000000000.00",
        "one cent over",
    );
    let at_max = app.credit("c5", "p1", "1000000000.00").await;
    assert_eq!(at_max.status, StatusCode::OK, "{}", at_max.body);
    let other = app.credit("c6", "p2", "10.00").await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "other players still get credits"
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn every_money_moving_call_refuses_amounts_above_the_maximum(app: TestApp) {
    let answer = app
        .put(
            "/v1/players/p1",
            json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT", "kyc_status": "verified"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let over = "1000000000.01";
    let payment = app
        .send(
            Method::POST,
            "/v1/payments/init",
            Some(&app.api_key),
            Some(
                &json!({"amount": over, "currency": "EUR", "method": "card", "player_id": "p1",
                "return_url": "http://127.0.0.1/back", "meta": {"country": "MT"}}),
            ),
            &[("Idempotency-Key", "dep-1")],
        )
        .await;
    assert_too_large(&payment, "1000000000.00", "payments/init");
    let payout = app
        .send(
            Method::POST,
            "/v1/payouts/init",
            Some(&app.api_key),
            Some(&json!({"amount": over, "currency": "EUR", "method": "card", "player_id": "p1"})),
            &[("Idempotency-Key", "po-1")],
        )
        .await;
    assert_too_large(&payout, "1000000000.00", "payouts/init");
    let payment = app
        .send(
            Method::POST,
            "/v1/payments/init",
            Some(&app.api_key),
            Some(
                &json!({"amount": "50.00", "currency": "EUR", "method": "card", "player_id": "p1",
                "return_url": "http://127.0.0.1/back", "meta": {"country": "MT"}}),
            ),
            &[("Idempotency-Key", "dep-2")],
        )
        .await;
    assert!(payment.status.is_success(), "{}", payment.body);
    let payment_id = payment.body["payment_id"].as_str().unwrap().to_string();
    let refund = app
        .send(
            Method::POST,
            &format!("/v1/payments/{payment_id}/refunds"),
            Some(&app.api_key),
            Some(&json!({"amount": "92233720368547758.07"})),
            &[("Idempotency-Key", "ref-1")],
        )
        .await;
    assert_too_large(&refund, "1000000000.00", "refund");
    // A provider's signed webhook is held to the same maximum before anything else.
    let webhook = deliver(
        &app,
        &json!({"event_id": "evt_big", "payment_id": payment_id, "status": "captured",
            "amount": "92233720368547758.07", "currency": "EUR", "timestamp": rfc3339_now_plus(0)}),
    )
    .await;
    assert_too_large(&webhook, "1000000000.00", "webhook");
    assert_eq!(app.balance("p1").await, ("0.00".into(), "0.00".into()));
    app.assert_ledger_verifies().await;
    app.stop().await;
}

/// The README: more decimals than the currency has is a 422 — trailing zeros included — and
/// so is a non-canonical spelling like "01.00".
async fn more_decimals_than_the_currency_has_are_refused_everywhere(app: TestApp) {
    app.player("p1").await;
    for amount in ["1.000", "50.000", "01.00", "00.50", "-0.00"] {
        let refused = app.credit(&format!("c-{amount}"), "p1", amount).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{amount:?}: {}",
            refused.body
        );
        assert_eq!(refused.body["details"]["field"], "amount");
        let payment = app
            .send(
                Method::POST,
                "/v1/payments/init",
                Some(&app.api_key),
                Some(
                    &json!({"amount": amount, "currency": "EUR", "method": "card",
                    "player_id": "p1", "return_url": "http://127.0.0.1/back", "meta": {"country": "MT"}}),
                ),
                &[("Idempotency-Key", &format!("dep-{amount}"))],
            )
            .await;
        assert_eq!(
            payment.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{amount:?}"
        );
        let webhook = deliver(
            &app,
            &json!({"event_id": format!("evt-{amount}"), "payment_id": "pay_x", "status": "captured",
                "amount": amount, "currency": "EUR", "timestamp": rfc3339_now_plus(0)}),
        )
        .await;
        assert_eq!(
            (webhook.status, webhook.body["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("malformed_webhook")),
            "webhook {amount:?}: {}",
            webhook.body
        );
    }
    let fine = app.credit("c-ok", "p1", "0.5").await;
    assert_eq!(fine.status, StatusCode::OK, "fewer decimals are fine");
    assert_eq!(fine.body["balance"], "0.50");
    app.stop().await;
}

async fn the_bearer_scheme_is_case_insensitive(app: TestApp) {
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let answer = app
            .send(
                Method::GET,
                "/v1/players/nobody",
                None,
                None,
                &[("Authorization", &format!("{scheme} {}", app.api_key))],
            )
            .await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (StatusCode::NOT_FOUND, "player_not_found"),
            "{scheme}: authenticated, then not found"
        );
    }
    for value in [
        format!("Basic {}", app.api_key),
        format!("Bearer{}", app.api_key),
    ] {
        let answer = app
            .send(
                Method::GET,
                "/v1/players/nobody",
                None,
                None,
                &[("Authorization", &value)],
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{value}");
    }
    app.stop().await;
}

fn sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// No unsalted SHA-256 of a key is stored; a key stored the old way (a database from before)
/// keeps working and is rewritten in place at the next start.
async fn keys_are_stored_under_a_keyed_hash_and_old_hashes_are_upgraded(app: TestApp) {
    let store = Store::connect(&app.database_url).await.unwrap();
    let stored_hashes = || async {
        let mut tx = store.begin().await.unwrap();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, key_hash FROM api_keys ORDER BY id")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        tx.rollback().await.unwrap();
        rows
    };
    let hashes = stored_hashes().await;
    assert_eq!(hashes.len(), 2, "the demo merchant and admin keys");
    for (_, hash) in &hashes {
        assert!(hash.starts_with("hmac-sha256:"), "{hash}");
        assert_ne!(hash, &sha256_hex(&app.api_key));
        assert_ne!(hash, &sha256_hex(&app.admin_key));
        assert!(!hash.contains(&sha256_hex(&app.api_key)));
    }
    // A key as an older Kassa stored it: the bare SHA-256.
    let legacy_key = "sk_test_legacy_key_from_before_0001";
    let mut tx = store.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO api_keys (id, merchant_id, key_hash, key_prefix, roles, created_at_ms) \
         VALUES ('key_legacy', 'mch_demo', $1, 'sk_test_lega', '', 0)",
    )
    .bind(sha256_hex(legacy_key))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let app = app.restart(|_| {}).await;
    let answer = app
        .send(
            Method::GET,
            "/v1/players/nobody",
            Some(legacy_key),
            None,
            &[],
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::NOT_FOUND,
        "the old key still works"
    );
    let hashes = stored_hashes().await;
    assert_eq!(hashes.len(), 3);
    for (id, hash) in &hashes {
        assert!(
            hash.starts_with("hmac-sha256:"),
            "{id}: {hash} was not upgraded"
        );
    }
    assert!(!hashes.iter().any(|(_, h)| h == &sha256_hex(legacy_key)));
    assert_eq!(
        app.get("/v1/players/nobody").await.status,
        StatusCode::NOT_FOUND
    );
    // Another secret cannot check the same database's keys.
    let app = app
        .restart(|config| config.auth.key_hash_secret = "z".repeat(40))
        .await;
    let answer = app
        .send(
            Method::GET,
            "/v1/players/nobody",
            Some(legacy_key),
            None,
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    store.close().await;
    app.stop().await;
}

/// PostgreSQL is a production database: it refuses to start with the public demo secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_to_start_with_the_demo_key_hash_secret() {
    let Some(database_url) = fresh_database_url(TestBackend::Postgres).await else {
        eprintln!("KASSA_TEST_POSTGRES_URL is not set; skipping");
        return;
    };
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.database_url = database_url;
    let refused = Server::start(config).await.err().expect("refused");
    assert!(refused.to_string().contains("key_hash_secret"), "{refused}");
}

/// The embedded SQLite demo starts with the built-in secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_starts_with_the_demo_key_hash_secret() {
    let app = common::spawn_with(TestBackend::Sqlite, |config| {
        config.auth.key_hash_secret = String::new();
    })
    .await
    .unwrap();
    assert_eq!(
        app.get("/v1/players/nobody").await.status,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}
