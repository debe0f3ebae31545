//! The foundation through the real HTTP API, on SQLite and PostgreSQL alike.

mod common;

use common::{assert_error_body, TestApp};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

contract_tests!(
    health_readiness_and_openapi,
    every_error_has_the_documented_body,
    keys_and_roles_are_enforced,
    players_are_created_updated_and_validated,
    debit_credit_and_balance,
    wallet_replays_and_refuses_reuse,
    wallet_validates_amounts_and_currencies,
    rollback_undoes_a_debit_once,
    rollback_of_an_unknown_debit_blocks_it_later,
    fifty_parallel_debits_never_overdraw,
    parallel_repeats_of_one_txn_move_money_once,
    other_writes_go_on_under_wallet_load,
    idempotency_key_header_replays_and_refuses,
    idempotency_key_in_use_is_refused,
    idempotency_key_body_field_is_honoured,
    transactions_are_paginated_newest_first,
    admin_creates_merchants_whose_keys_work,
    ids_that_cannot_be_of_their_kind_are_not_found,
);

async fn health_readiness_and_openapi(app: TestApp) {
    let health = app.send(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let ready = app.send(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(ready.status, StatusCode::OK);
    let openapi = app
        .send(Method::GET, "/v1/openapi.json", None, None, &[])
        .await;
    assert_eq!(openapi.status, StatusCode::OK);
    assert!(openapi.body["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/wallet/debit",
        "/v1/wallet/credit",
        "/v1/wallet/rollback",
        "/v1/players/{player_id}",
        "/v1/players/{player_id}/balance",
        "/v1/players/{player_id}/transactions",
    ] {
        assert!(
            openapi.body["paths"][path].is_object(),
            "{path} is missing from the OpenAPI document"
        );
    }
    assert!(openapi.body["components"]["schemas"]["ErrorBody"].is_object());
    assert!(openapi.body["components"]["securitySchemes"]["bearer"].is_object());
    // Every POST that moves money documents the key that makes a repeat a replay.
    for path in [
        "/v1/payments/init",
        "/v1/payments/{payment_id}/refunds",
        "/v1/payouts/init",
        "/v1/wallet/debit",
        "/v1/wallet/credit",
        "/v1/wallet/rollback",
        "/v1/admin/payouts/{payout_id}/approve",
        "/v1/admin/payouts/{payout_id}/reject",
    ] {
        let params = openapi.body["paths"][path]["post"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} has no parameters"));
        let key = params
            .iter()
            .find(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
            .unwrap_or_else(|| panic!("{path} does not document Idempotency-Key"));
        assert!(key["schema"]["pattern"].is_string(), "{path}: {key}");
    }
    app.stop().await;
}

async fn every_error_has_the_documented_body(app: TestApp) {
    app.player("p1").await;
    let unknown_route = app.get("/v1/nothing-here").await;
    assert_eq!(
        (unknown_route.status, unknown_route.error_code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let wrong_method = app
        .send(
            Method::DELETE,
            "/v1/wallet/debit",
            Some(&app.api_key),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (wrong_method.status, wrong_method.error_code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );

    let malformed = app
        .client
        .post(format!("{}/v1/wallet/debit", app.base))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .body("{\"txn_id\": ")
        .send()
        .await
        .unwrap();
    let headers = malformed.headers().clone();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let body: Value = malformed.json().await.unwrap();
    assert_error_body(&body, &headers);
    assert_eq!(body["error"], "invalid_json");

    let missing_field = app
        .post(
            "/v1/wallet/debit",
            json!({"txn_id": "t", "player_id": "p1", "currency": "EUR"}),
        )
        .await;
    assert_eq!(
        (missing_field.status, missing_field.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    assert!(missing_field.body["message"]
        .as_str()
        .unwrap()
        .contains("amount"));
    let unknown_field = app.post("/v1/wallet/debit", json!({"txn_id": "t", "player_id": "p1", "amount": "1.00", "currency": "EUR", "amont": 1})).await;
    assert_eq!(unknown_field.status, StatusCode::UNPROCESSABLE_ENTITY);

    let oversized = app.post("/v1/wallet/debit", json!({"txn_id": "x".repeat(70_000), "player_id": "p1", "amount": "1.00", "currency": "EUR"})).await;
    assert_eq!(
        (oversized.status, oversized.error_code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );

    let not_json = app
        .client
        .post(format!("{}/v1/wallet/debit", app.base))
        .bearer_auth(&app.api_key)
        .body("txn_id=1")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let headers = not_json.headers().clone();
    assert_error_body(&not_json.json().await.unwrap(), &headers);

    let bad_id = app.get(&format!("/v1/players/{}/balance", "é")).await;
    assert_eq!(bad_id.status, StatusCode::NOT_FOUND);
    bad_id.error_code();
    app.stop().await;
}

async fn keys_and_roles_are_enforced(app: TestApp) {
    let no_key = app
        .send(Method::GET, "/v1/players/p1", None, None, &[])
        .await;
    assert_eq!(
        (no_key.status, no_key.error_code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let wrong_key = app
        .send(
            Method::GET,
            "/v1/players/p1",
            Some("sk_test_not_a_real_key_at_all"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (wrong_key.status, wrong_key.error_code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let admin_on_merchant_route = app
        .send(
            Method::GET,
            "/v1/players/p1",
            Some(&app.admin_key),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (
            admin_on_merchant_route.status,
            admin_on_merchant_route.error_code()
        ),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let merchant_on_admin_route = app.get("/v1/admin/ledger/verify").await;
    assert_eq!(
        (
            merchant_on_admin_route.status,
            merchant_on_admin_route.error_code()
        ),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn players_are_created_updated_and_validated(app: TestApp) {
    let created = app.put("/v1/players/alice", json!({"currency": "EUR", "country": "GB", "jurisdiction": "GB", "birth_date": "1990-04-01"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["kyc_status"], "none");
    let updated = app
        .put(
            "/v1/players/alice",
            json!({"currency": "EUR", "country": "GB", "kyc_status": "verified"}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body["kyc_status"], "verified");
    let fetched = app.get("/v1/players/alice").await;
    assert_eq!(
        (
            fetched.body["kyc_status"].as_str(),
            fetched.body["country"].as_str()
        ),
        (Some("verified"), Some("GB"))
    );
    let currency_change = app
        .put(
            "/v1/players/alice",
            json!({"currency": "USD", "country": "GB"}),
        )
        .await;
    assert_eq!(
        (currency_change.status, currency_change.error_code()),
        (StatusCode::CONFLICT, "currency_immutable")
    );
    for (body, field) in [
        (json!({"currency": "EURO", "country": "GB"}), "currency"),
        (json!({"currency": "EUR", "country": "gb"}), "country"),
        (
            json!({"currency": "EUR", "country": "GB", "kyc_status": "maybe"}),
            "kyc_status",
        ),
        (
            json!({"currency": "EUR", "country": "GB", "birth_date": "1990-13-01"}),
            "birth_date",
        ),
    ] {
        let refused = app.put("/v1/players/bob", body).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        );
        assert_eq!(refused.body["details"]["field"], field);
    }
    let missing = app.get("/v1/players/bob").await;
    assert_eq!(
        (missing.status, missing.error_code()),
        (StatusCode::NOT_FOUND, "player_not_found")
    );
    let zero = app.balance("alice").await;
    assert_eq!(zero, ("0.00".to_string(), "0.00".to_string()));
    app.stop().await;
}

async fn debit_credit_and_balance(app: TestApp) {
    app.player("p1").await;
    let win = app.credit("w1", "p1", "100.00").await;
    assert_eq!(
        (
            win.status,
            win.body["status"].as_str(),
            win.body["balance"].as_str()
        ),
        (StatusCode::OK, Some("posted"), Some("100.00"))
    );
    let bet = app.debit("b1", "p1", "10.50").await;
    assert_eq!(
        (bet.status, bet.body["balance"].as_str()),
        (StatusCode::OK, Some("89.50"))
    );
    assert_eq!(bet.header("idempotent-replayed"), None);
    let too_much = app.debit("b2", "p1", "89.51").await;
    assert_eq!(
        (too_much.status, too_much.error_code()),
        (StatusCode::PAYMENT_REQUIRED, "insufficient_funds")
    );
    assert_eq!(too_much.body["details"]["balance"], "89.50");
    let exact = app.debit("b3", "p1", "89.50").await;
    assert_eq!(exact.body["balance"], "0.00");
    let enrolled = app.post("/v1/wallet/credit", json!({"txn_id": "dep-1", "player_id": "p1", "amount": "5", "currency": "EUR", "payment_id": "pay_external_1"})).await;
    // A credit may enrol only a deposit Kassa holds for this player (issue 21): an unknown
    // payment id is refused, not stored as a dangling reference.
    assert_eq!(
        (enrolled.status, enrolled.error_code()),
        (StatusCode::NOT_FOUND, "payment_not_found")
    );
    assert_eq!(
        app.balance("p1").await,
        ("0.00".to_string(), "0.00".to_string())
    );
    let unknown_player = app.debit("b4", "nobody", "1.00").await;
    assert_eq!(
        (unknown_player.status, unknown_player.error_code()),
        (StatusCode::NOT_FOUND, "player_not_found")
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn wallet_replays_and_refuses_reuse(app: TestApp) {
    app.player("p1").await;
    app.credit("w1", "p1", "50.00").await;
    let first = app.debit("b1", "p1", "20.00").await;
    app.debit("b2", "p1", "5.00").await;
    let again = app.debit("b1", "p1", "20.00").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.body, first.body,
        "a repeat answers exactly what the first call answered"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let reused = app.debit("b1", "p1", "20.01").await;
    assert_eq!(
        (reused.status, reused.error_code()),
        (StatusCode::CONFLICT, "txn_id_reused")
    );
    let refused_first = app.debit("big", "p1", "999.00").await;
    assert_eq!(refused_first.status, StatusCode::PAYMENT_REQUIRED);
    app.credit("w2", "p1", "1000.00").await;
    let refused_again = app.debit("big", "p1", "999.00").await;
    assert_eq!(
        refused_again.status,
        StatusCode::PAYMENT_REQUIRED,
        "a refused txn_id keeps its answer"
    );
    assert_eq!(app.balance("p1").await.0, "1025.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn wallet_validates_amounts_and_currencies(app: TestApp) {
    app.player("p1").await;
    for (amount, why) in [
        ("1.001", "more than 2 decimals"),
        ("0.00", "greater than zero"),
        ("-5.00", "greater than zero"),
        ("1e3", "decimal"),
        ("", "decimal"),
    ] {
        let refused = app.credit("c", "p1", amount).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{amount:?}"
        );
        assert!(
            refused.body["message"].as_str().unwrap().contains(why),
            "{amount:?}: {}",
            refused.body
        );
        assert_eq!(refused.body["details"]["field"], "amount");
    }
    let mismatch = app
        .post(
            "/v1/wallet/credit",
            json!({"txn_id": "c", "player_id": "p1", "amount": "1.00", "currency": "USD"}),
        )
        .await;
    assert_eq!(
        (mismatch.status, mismatch.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "currency_mismatch")
    );
    let unknown = app
        .post(
            "/v1/wallet/credit",
            json!({"txn_id": "c", "player_id": "p1", "amount": "1.00", "currency": "XYZ"}),
        )
        .await;
    assert_eq!(unknown.body["details"]["field"], "currency");
    let bad_txn = app
        .post(
            "/v1/wallet/credit",
            json!({"txn_id": "has space", "player_id": "p1", "amount": "1.00", "currency": "EUR"}),
        )
        .await;
    assert_eq!(bad_txn.body["details"]["field"], "txn_id");
    let payment_on_debit = app.post("/v1/wallet/debit", json!({"txn_id": "d", "player_id": "p1", "amount": "1.00", "currency": "EUR", "payment_id": "pay_1"})).await;
    assert_eq!(payment_on_debit.body["details"]["field"], "payment_id");
    let jpy = app
        .put(
            "/v1/players/tokyo",
            json!({"currency": "JPY", "country": "JP"}),
        )
        .await;
    assert_eq!(jpy.status, StatusCode::CREATED);
    let yen = app
        .post(
            "/v1/wallet/credit",
            json!({"txn_id": "y", "player_id": "tokyo", "amount": "1500", "currency": "JPY"}),
        )
        .await;
    assert_eq!(yen.body["balance"], "1500");
    let fractional_yen = app
        .post(
            "/v1/wallet/credit",
            json!({"txn_id": "y2", "player_id": "tokyo", "amount": "0.5", "currency": "JPY"}),
        )
        .await;
    assert_eq!(fractional_yen.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.balance("p1").await.0,
        "0.00",
        "nothing refused moved money"
    );
    app.stop().await;
}

async fn rollback_undoes_a_debit_once(app: TestApp) {
    app.player("p1").await;
    app.credit("w1", "p1", "100.00").await;
    app.debit("b1", "p1", "30.00").await;
    let undone = app.rollback("r1", "b1").await;
    assert_eq!(
        (
            undone.status,
            undone.body["status"].as_str(),
            undone.body["balance"].as_str()
        ),
        (StatusCode::OK, Some("rolled_back"), Some("100.00"))
    );
    let repeated = app.rollback("r1", "b1").await;
    assert_eq!(repeated.body, undone.body);
    assert_eq!(repeated.header("idempotent-replayed"), Some("true"));
    let second = app.rollback("r2", "b1").await;
    assert_eq!(
        (second.status, second.body["status"].as_str()),
        (StatusCode::OK, Some("no_effect"))
    );
    let of_credit = app.rollback("r3", "w1").await;
    assert_eq!(
        (of_credit.status, of_credit.error_code()),
        (StatusCode::CONFLICT, "rollback_not_allowed")
    );
    let replayed_bet = app.debit("b1", "p1", "30.00").await;
    assert_eq!(
        replayed_bet.body["balance"], "70.00",
        "the debit's own replay still answers its first answer"
    );
    assert_eq!(app.balance("p1").await.0, "100.00");
    let rejected = app.debit("b9", "p1", "500.00").await;
    assert_eq!(rejected.status, StatusCode::PAYMENT_REQUIRED);
    let of_rejected = app.rollback("r4", "b9").await;
    assert_eq!(of_rejected.body["status"], "no_effect");
    assert_eq!(app.balance("p1").await.0, "100.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn rollback_of_an_unknown_debit_blocks_it_later(app: TestApp) {
    app.player("p1").await;
    app.credit("w1", "p1", "100.00").await;
    let unknown = app.rollback("r1", "late-bet").await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (StatusCode::NOT_FOUND, "original_txn_not_found")
    );
    let again = app.rollback("r1", "late-bet").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let late = app.debit("late-bet", "p1", "10.00").await;
    assert_eq!(
        (late.status, late.error_code()),
        (StatusCode::CONFLICT, "txn_cancelled")
    );
    assert_eq!(app.balance("p1").await.0, "100.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn fifty_parallel_debits_never_overdraw(app: TestApp) {
    app.player("p1").await;
    app.credit("w1", "p1", "100.00").await;
    let debits = (0..50).map(|i| {
        let app = &app;
        async move { app.debit(&format!("bet-{i}"), "p1", "10.00").await }
    });
    let answers = join_all(debits).await;
    let accepted = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.status == StatusCode::PAYMENT_REQUIRED)
        .count();
    assert_eq!((accepted, refused), (10, 40));
    for answer in answers
        .iter()
        .filter(|a| a.status == StatusCode::PAYMENT_REQUIRED)
    {
        assert_eq!(answer.error_code(), "insufficient_funds");
    }
    assert_eq!(
        app.balance("p1").await,
        ("0.00".to_string(), "0.00".to_string())
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn parallel_repeats_of_one_txn_move_money_once(app: TestApp) {
    app.player("p1").await;
    app.credit("w1", "p1", "100.00").await;
    let answers = join_all((0..20).map(|_| app.debit("same-bet", "p1", "7.00"))).await;
    for answer in &answers {
        assert_eq!(
            (answer.status, answer.body["balance"].as_str()),
            (StatusCode::OK, Some("93.00"))
        );
    }
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.header("idempotent-replayed").is_none())
            .count(),
        1
    );
    assert_eq!(app.balance("p1").await.0, "93.00");
    app.stop().await;
}

/// Under a steady stream of wallet calls, the other writes (players here; payments and
/// payouts go the same way) still get their turn promptly: on SQLite the wallet writer
/// hands the write turn over at least every 10 ms (ADR 13) instead of starving them or
/// making them wait out the file's busy timeout.
async fn other_writes_go_on_under_wallet_load(app: TestApp) {
    app.player("p1").await;
    app.credit("seed", "p1", "100000.00").await;
    let load_until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let clients = (0..16).map(|client| {
        let app = &app;
        async move {
            let mut accepted = 0u32;
            let mut call = 0;
            while std::time::Instant::now() < load_until && call < 2_000 {
                call += 1;
                let answer = app
                    .debit(&format!("load-{client}-{call}"), "p1", "1.00")
                    .await;
                assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
                accepted += 1;
            }
            accepted
        }
    });
    let writes = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut slowest = std::time::Duration::ZERO;
        for i in 0..20 {
            let started = std::time::Instant::now();
            app.player(&format!("other-{i}")).await;
            slowest = slowest.max(started.elapsed());
        }
        slowest
    };
    let (accepted, slowest) = tokio::join!(join_all(clients), writes);
    let accepted: u32 = accepted.into_iter().sum();
    assert!(accepted > 100, "the wallet load ran ({accepted} debits)");
    assert!(
        slowest < std::time::Duration::from_secs(2),
        "a player write waited {slowest:?} under wallet load"
    );
    assert_eq!(
        app.balance("p1").await.0,
        format!("{}.00", 100_000 - accepted)
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn idempotency_key_header_replays_and_refuses(app: TestApp) {
    app.player("p1").await;
    let body = json!({"txn_id": "w1", "player_id": "p1", "amount": "10.00", "currency": "EUR"});
    let key = [("Idempotency-Key", "key-1")];
    let first = app
        .send(
            Method::POST,
            "/v1/wallet/credit",
            Some(&app.api_key),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let reordered =
        json!({"currency": "EUR", "amount": "10.00", "player_id": "p1", "txn_id": "w1"});
    let replay = app
        .send(
            Method::POST,
            "/v1/wallet/credit",
            Some(&app.api_key),
            Some(&reordered),
            &key,
        )
        .await;
    assert_eq!((replay.status, &replay.body), (StatusCode::OK, &first.body));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let other = json!({"txn_id": "w2", "player_id": "p1", "amount": "10.00", "currency": "EUR"});
    let reused = app
        .send(
            Method::POST,
            "/v1/wallet/credit",
            Some(&app.api_key),
            Some(&other),
            &key,
        )
        .await;
    assert_eq!(
        (reused.status, reused.error_code()),
        (StatusCode::CONFLICT, "idempotency_key_reused")
    );
    // A refusal (402) is remembered; a validation error releases the key for a corrected retry.
    let bet = json!({"txn_id": "b1", "player_id": "p1", "amount": "50.00", "currency": "EUR"});
    let refused = app
        .send(
            Method::POST,
            "/v1/wallet/debit",
            Some(&app.api_key),
            Some(&bet),
            &[("Idempotency-Key", "key-2")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED);
    let refused_again = app
        .send(
            Method::POST,
            "/v1/wallet/debit",
            Some(&app.api_key),
            Some(&bet),
            &[("Idempotency-Key", "key-2")],
        )
        .await;
    assert_eq!(
        (
            refused_again.status,
            refused_again.header("idempotent-replayed")
        ),
        (StatusCode::PAYMENT_REQUIRED, Some("true"))
    );
    let invalid = json!({"txn_id": "b2", "player_id": "p1", "amount": "1.001", "currency": "EUR"});
    let invalid = app
        .send(
            Method::POST,
            "/v1/wallet/debit",
            Some(&app.api_key),
            Some(&invalid),
            &[("Idempotency-Key", "key-3")],
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    let corrected = json!({"txn_id": "b2", "player_id": "p1", "amount": "1.00", "currency": "EUR"});
    let corrected = app
        .send(
            Method::POST,
            "/v1/wallet/debit",
            Some(&app.api_key),
            Some(&corrected),
            &[("Idempotency-Key", "key-3")],
        )
        .await;
    assert_eq!(corrected.status, StatusCode::OK, "{}", corrected.body);
    let bad_key = app
        .send(
            Method::POST,
            "/v1/wallet/debit",
            Some(&app.api_key),
            Some(&bet),
            &[("Idempotency-Key", "has space")],
        )
        .await;
    assert_eq!(bad_key.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.balance("p1").await.0, "9.00");
    app.stop().await;
}

async fn idempotency_key_in_use_is_refused(app: TestApp) {
    app.player("p1").await;
    // Another node holds the key while it runs the first request.
    let store = kassa_store::Store::connect(&app.database_url)
        .await
        .unwrap();
    let body = json!({"txn_id": "w1", "player_id": "p1", "amount": "10.00", "currency": "EUR"});
    let hash = kassa_server::idempotency::request_hash(
        "POST",
        "/v1/wallet/credit",
        &serde_json::to_vec(&body).unwrap().into(),
    );
    let claim = store
        .claim_idempotency_key(
            kassa_server::bootstrap::DEMO_MERCHANT_ID,
            "busy-key",
            &hash,
            60_000,
        )
        .await
        .unwrap();
    assert_eq!(claim, kassa_store::idempotency::Claim::Claimed);
    let busy = app
        .send(
            Method::POST,
            "/v1/wallet/credit",
            Some(&app.api_key),
            Some(&body),
            &[("Idempotency-Key", "busy-key")],
        )
        .await;
    assert_eq!(
        (busy.status, busy.error_code()),
        (StatusCode::CONFLICT, "idempotency_key_in_use")
    );
    assert_eq!(app.balance("p1").await.0, "0.00");
    store.close().await;
    app.stop().await;
}

async fn idempotency_key_body_field_is_honoured(app: TestApp) {
    app.player("p1").await;
    let first = app.post("/v1/wallet/credit", json!({"txn_id": "w1", "player_id": "p1", "amount": "10.00", "currency": "EUR", "idempotency_key": "field-key"})).await;
    assert_eq!(first.status, StatusCode::OK);
    let other = app.post("/v1/wallet/credit", json!({"txn_id": "w2", "player_id": "p1", "amount": "10.00", "currency": "EUR", "idempotency_key": "field-key"})).await;
    assert_eq!(
        (other.status, other.error_code()),
        (StatusCode::CONFLICT, "idempotency_key_reused")
    );
    let body = json!({"txn_id": "w3", "player_id": "p1", "amount": "1.00", "currency": "EUR", "idempotency_key": "a"});
    let disagree = app
        .send(
            Method::POST,
            "/v1/wallet/credit",
            Some(&app.api_key),
            Some(&body),
            &[("Idempotency-Key", "b")],
        )
        .await;
    assert_eq!(disagree.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.balance("p1").await.0, "10.00");
    app.stop().await;
}

async fn transactions_are_paginated_newest_first(app: TestApp) {
    app.player("p1").await;
    app.player("p2").await;
    app.credit("w0", "p1", "100.00").await;
    for i in 1..=24 {
        app.debit(&format!("b{i}"), "p1", "1.00").await;
    }
    app.credit("other", "p2", "1.00").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/v1/players/p1/transactions?limit=10&cursor={c}"),
            None => "/v1/players/p1/transactions?limit=10".to_string(),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for item in page.body["data"].as_array().unwrap() {
            seen.push(item["txn_id"].as_str().unwrap().to_string());
        }
        cursor = page.body["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    let mut expected: Vec<String> = (1..=24).rev().map(|i| format!("b{i}")).collect();
    expected.push("w0".into());
    assert_eq!(seen, expected);
    let first = app.get("/v1/players/p1/transactions?limit=1").await;
    let item = &first.body["data"][0];
    assert_eq!(
        (
            item["type"].as_str(),
            item["amount"].as_str(),
            item["balance_after"].as_str(),
            item["round_id"].as_str()
        ),
        (Some("debit"), Some("1.00"), Some("76.00"), Some("round-1"))
    );
    assert!(item["created_at"].as_str().unwrap().ends_with('Z'));
    for bad in ["limit=0", "limit=101", "cursor=nonsense"] {
        let refused = app.get(&format!("/v1/players/p1/transactions?{bad}")).await;
        assert_eq!(
            (refused.status, refused.error_code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{bad}"
        );
    }
    let unknown = app.get("/v1/players/ghost/transactions").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn admin_creates_merchants_whose_keys_work(app: TestApp) {
    let created = app
        .send(
            Method::POST,
            "/v1/admin/merchants",
            Some(&app.admin_key),
            Some(&json!({"name": "Lucky Star"})),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key = created.body["api_key"].as_str().unwrap().to_string();
    let put = app
        .send(
            Method::PUT,
            "/v1/players/p1",
            Some(&key),
            Some(&json!({"currency": "EUR", "country": "MT"})),
            &[],
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    // Merchants are isolated: the demo merchant does not see Lucky Star's player.
    assert_eq!(
        app.get("/v1/players/p1").await.status,
        StatusCode::NOT_FOUND
    );
    app.player("p1").await;
    let credit =
        json!({"txn_id": "same-id", "player_id": "p1", "amount": "5.00", "currency": "EUR"});
    let theirs = app
        .send(
            Method::POST,
            "/v1/wallet/credit",
            Some(&key),
            Some(&credit),
            &[],
        )
        .await;
    let ours = app.post("/v1/wallet/credit", credit).await;
    assert_eq!(
        (theirs.status, ours.status),
        (StatusCode::OK, StatusCode::OK),
        "txn ids are per merchant"
    );
    assert_eq!(ours.header("idempotent-replayed"), None);
    let empty_name = app
        .send(
            Method::POST,
            "/v1/admin/merchants",
            Some(&app.admin_key),
            Some(&json!({"name": " "})),
            &[],
        )
        .await;
    assert_eq!(empty_name.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.assert_ledger_verifies().await;
    app.stop().await;
}

mod rate_limit {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_over_its_rate_gets_429_with_retry_after() {
        let app = common::spawn_with(kassa_store::testing::TestBackend::Sqlite, |config| {
            config.rate_limit.requests_per_second = 1;
            config.rate_limit.burst = 3;
        })
        .await
        .unwrap();
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(app.get("/v1/players/nobody").await);
        }
        assert!(statuses[..3]
            .iter()
            .all(|a| a.status == StatusCode::NOT_FOUND));
        let limited = &statuses[4];
        assert_eq!(
            (limited.status, limited.error_code()),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        );
        assert_eq!(limited.header("retry-after"), Some("1"));
        let health = app.send(Method::GET, "/healthz", None, None, &[]).await;
        assert_eq!(
            health.status,
            StatusCode::OK,
            "public routes are not limited"
        );
        app.stop().await;
    }
}

/// The nice value of each live thread of this process named `comm` (Linux, from
/// `/proc/self/task/*/stat`: field 19, after the parenthesised name).
fn nice_values_of_threads_named(comm: &str) -> Vec<i64> {
    let mut nice_values = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended while we looked
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != comm {
            continue;
        }
        // After ") ": state is field 3, so nice (field 19) is the 17th.
        if let Some(nice) = stat[close + 2..].split(' ').nth(16) {
            nice_values.push(nice.parse().unwrap());
        }
    }
    nice_values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallet_writer_thread_takes_the_configured_nice_value() {
    // A positive value needs no privilege, and no other test asks for 7, so the thread with
    // it is this app's writer (other tests' writers run at the default -10, or 0 where
    // raising the priority is not allowed).
    let app = common::spawn_with(kassa_store::testing::TestBackend::Sqlite, |config| {
        config.wallet.writer_nice = 7;
    })
    .await
    .expect("SQLite always runs");
    let mut found = false;
    for _ in 0..100 {
        if nice_values_of_threads_named("kassa-wallet-wr").contains(&7) {
            found = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(found, "no wallet writer thread runs at nice 7");
    // And the writer still answers.
    app.player("p1").await;
    assert_eq!(app.credit("t1", "p1", "1.00").await.status, StatusCode::OK);
    app.stop().await;
}

/// Ids are parsed into their types at the edge (ADR 37): an id in a path or a reference that
/// cannot be of its kind answers exactly what an unknown id of that kind answers.
async fn ids_that_cannot_be_of_their_kind_are_not_found(app: TestApp) {
    app.player("p1").await;
    for (method, path, code) in [
        (Method::GET, "/v1/payments/po_abc", "payment_not_found"),
        (Method::GET, "/v1/payments/nonsense", "payment_not_found"),
        (Method::GET, "/v1/payments/pay_unknown", "payment_not_found"),
        (
            Method::POST,
            "/v1/payments/po_abc/cancel",
            "payment_not_found",
        ),
        (Method::GET, "/v1/payouts/pay_abc", "payout_not_found"),
        (
            Method::POST,
            "/v1/payouts/pay_abc/cancel",
            "payout_not_found",
        ),
        (Method::GET, "/v1/players/p!1", "player_not_found"),
        (Method::GET, "/v1/players/p!1/balance", "player_not_found"),
    ] {
        let body = (method == Method::POST).then(|| json!({}));
        let key = app.api_key.clone();
        let answer = app.send(method, path, Some(&key), body.as_ref(), &[]).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (StatusCode::NOT_FOUND, code),
            "{path}: {}",
            answer.body
        );
    }
    let enrolled = app
        .post(
            "/v1/wallet/credit",
            json!({"txn_id": "c1", "player_id": "p1", "amount": "5", "currency": "EUR",
                   "payment_id": "ext-1"}),
        )
        .await;
    assert_eq!(
        (enrolled.status, enrolled.error_code()),
        (StatusCode::NOT_FOUND, "payment_not_found")
    );
    app.stop().await;
}
