//! A repeat of every money-moving POST gets the first answer byte for byte, on SQLite and
//! PostgreSQL alike: the stored answer is the one the first request was sent.

mod common;

use common::{deliver, pay_with_card, rfc3339_now_plus, TestApp};
use kassa_server::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn quiet(config: &mut Config) {
    config.sandbox.autopilot = false;
}

fn fast(config: &mut Config) {
    config.sandbox.webhook_delay_ms = 20;
    config.payouts.retry_interval_ms = 100;
    config.payouts.retry_backoff_ms = 100;
}

contract_tests_with!(
    payment_init_replays_its_first_answer => quiet,
    a_refund_replays_its_first_answer_and_holds_once => quiet,
    a_payout_init_replays_the_status_it_first_answered => fast,
    a_payout_sent_to_review_replays_its_first_answer => fast,
    wallet_calls_with_a_key_replay_their_first_answer => |_: &mut Config| {},
    a_refused_wallet_call_replays_its_first_answer => |_: &mut Config| {},
    a_repeated_cancel_answers_the_same_200 => |c: &mut Config| { fast(c); c.sandbox.autopilot = false; },
    a_staged_answer_is_final_once_its_request_stopped => |_: &mut Config| {},
    review_decisions_replay_their_first_answer_and_repeat_as_200 => fast,
);

/// An answer as raw bytes.
struct Raw {
    status: StatusCode,
    replayed: Option<String>,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

async fn post_raw(app: &TestApp, path: &str, body: &Value, key: Option<&str>) -> Raw {
    post_raw_as(app, &app.api_key, path, body, key).await
}

/// [`post_raw`] with another API key (an admin's).
async fn post_raw_as(
    app: &TestApp,
    api_key: &str,
    path: &str,
    body: &Value,
    key: Option<&str>,
) -> Raw {
    let mut request = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(api_key)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.text().await.unwrap();
    Raw {
        status,
        replayed,
        body,
    }
}

/// Sends `body` twice with one key; asserts the second is a replay of the first, byte for
/// byte, and returns the first.
async fn twice(app: &TestApp, path: &str, body: &Value, key: &str) -> Raw {
    twice_as(app, &app.api_key, path, body, key).await
}

/// [`twice`] with another API key (an admin's).
async fn twice_as(app: &TestApp, api_key: &str, path: &str, body: &Value, key: &str) -> Raw {
    let first = post_raw_as(app, api_key, path, body, Some(key)).await;
    assert_eq!(first.replayed, None, "{}", first.body);
    let again = post_raw_as(app, api_key, path, body, Some(key)).await;
    assert_eq!(again.replayed.as_deref(), Some("true"), "{}", again.body);
    assert_eq!(again.status, first.status);
    assert_eq!(
        again.body, first.body,
        "the replay is the first answer's bytes"
    );
    first
}

fn init_body(app: &TestApp, amount: &str) -> Value {
    json!({
        "amount": amount, "currency": "EUR", "method": "card", "player_id": "p1",
        "return_url": format!("{}/cashier/return", app.base),
        "meta": {"country": "MT"}
    })
}

async fn payment_init_replays_its_first_answer(app: TestApp) {
    app.player("p1").await;
    let first = twice(&app, "/v1/payments/init", &init_body(&app, "50.00"), "pi-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let list = app.get("/v1/payments?player_id=p1").await;
    assert_eq!(
        list.body["data"].as_array().unwrap().len(),
        1,
        "one payment"
    );
    app.stop().await;
}

async fn captured_payment(app: &TestApp, amount: &str) -> String {
    let init = post_raw(
        app,
        "/v1/payments/init",
        &init_body(app, amount),
        Some("cap"),
    )
    .await;
    let id = init.json()["payment_id"].as_str().unwrap().to_string();
    let redirect = init.json()["redirect_url"].as_str().unwrap().to_string();
    pay_with_card(&redirect, "4242424242424242", "").await;
    let captured = json!({"event_id": "evt_cap", "payment_id": id, "status": "captured",
        "amount": amount, "currency": "EUR", "timestamp": rfc3339_now_plus(0)});
    assert_eq!(deliver(app, &captured).await.status, StatusCode::OK);
    id
}

async fn a_refund_replays_its_first_answer_and_holds_once(app: TestApp) {
    app.player("p1").await;
    let id = captured_payment(&app, "50.00").await;
    let path = format!("/v1/payments/{id}/refunds");
    let first = twice(&app, &path, &json!({"amount": "20.00"}), "rf-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.json()["status"], "pending");
    assert_eq!(
        app.balance("p1").await,
        ("30.00".to_string(), "20.00".to_string()),
        "held once"
    );
    // A refusal is replayed too: more than is left to refund is not a validation of the key.
    app.debit("bet", "p1", "25.00").await;
    let short = twice(&app, &path, &json!({}), "rf-2").await;
    assert_eq!(short.status, StatusCode::PAYMENT_REQUIRED, "{}", short.body);
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn verified_player(app: &TestApp, player_id: &str, funds: &str) {
    let body =
        json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT", "kyc_status": "verified"});
    let answer = app.put(&format!("/v1/players/{player_id}"), body).await;
    assert!(answer.status.is_success(), "{}", answer.body);
    app.credit(&format!("fund-{player_id}"), player_id, funds)
        .await;
}

fn payout_body(amount: &str) -> Value {
    json!({"amount": amount, "currency": "EUR", "method": "card", "player_id": "p1"})
}

async fn a_payout_init_replays_the_status_it_first_answered(app: TestApp) {
    verified_player(&app, "p1", "100.00").await;
    let first = twice(&app, "/v1/payouts/init", &payout_body("40.00"), "po-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.json()["status"], "processing");
    let id = first.json()["payout_id"].as_str().unwrap().to_string();
    // Once the provider has paid it, a repeat still answers what the first request did.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.get(&format!("/v1/payouts/{id}")).await.body["status"] != "paid" {
        assert!(tokio::time::Instant::now() < deadline, "the payout is paid");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let late = post_raw(
        &app,
        "/v1/payouts/init",
        &payout_body("40.00"),
        Some("po-1"),
    )
    .await;
    assert_eq!(late.body, first.body);
    assert_eq!(
        app.balance("p1").await,
        ("60.00".to_string(), "0.00".to_string()),
        "paid once"
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_payout_sent_to_review_replays_its_first_answer(app: TestApp) {
    verified_player(&app, "p1", "3000.00").await;
    let first = twice(&app, "/v1/payouts/init", &payout_body("2500.00"), "po-r").await;
    assert_eq!(first.json()["status"], "in_review", "{}", first.body);
    let refused = twice(&app, "/v1/payouts/init", &payout_body("900.00"), "po-x").await;
    assert_eq!(
        refused.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        refused.body
    );
    app.stop().await;
}

async fn wallet_calls_with_a_key_replay_their_first_answer(app: TestApp) {
    app.player("p1").await;
    let credit = json!({"txn_id": "c1", "player_id": "p1", "amount": "10.00", "currency": "EUR"});
    let first = twice(&app, "/v1/wallet/credit", &credit, "wc-1").await;
    assert_eq!(first.json()["status"], "posted");
    let debit = json!({"txn_id": "d1", "player_id": "p1", "amount": "4.00", "currency": "EUR"});
    twice(&app, "/v1/wallet/debit", &debit, "wd-1").await;
    let rollback = json!({"txn_id": "r1", "original_txn_id": "d1"});
    let undone = twice(&app, "/v1/wallet/rollback", &rollback, "wr-1").await;
    assert_eq!(undone.json()["status"], "rolled_back");
    assert_eq!(app.balance("p1").await.0, "10.00");
    app.stop().await;
}

async fn a_refused_wallet_call_replays_its_first_answer(app: TestApp) {
    app.player("p1").await;
    let debit = json!({"txn_id": "d1", "player_id": "p1", "amount": "4.00", "currency": "EUR"});
    let first = twice(&app, "/v1/wallet/debit", &debit, "wd-402").await;
    assert_eq!(first.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(first.json()["error"], "insufficient_funds");
    let unknown = json!({"txn_id": "r1", "original_txn_id": "never"});
    let missing = twice(&app, "/v1/wallet/rollback", &unknown, "wr-404").await;
    assert_eq!(missing.json()["error"], "original_txn_not_found");
    app.stop().await;
}

async fn a_repeated_cancel_answers_the_same_200(app: TestApp) {
    app.player("p1").await;
    let init = post_raw(
        &app,
        "/v1/payments/init",
        &init_body(&app, "5.00"),
        Some("c"),
    )
    .await;
    let id = init.json()["payment_id"].as_str().unwrap().to_string();
    let path = format!("/v1/payments/{id}/cancel");
    let first = post_raw(&app, &path, &json!({}), None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.json()["status"], "cancelled");
    let again = post_raw(&app, &path, &json!({}), None).await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));

    verified_player(&app, "p2", "3000.00").await;
    let body = json!({"amount": "2500.00", "currency": "EUR", "method": "card", "player_id": "p2"});
    let payout = post_raw(&app, "/v1/payouts/init", &body, Some("pc")).await;
    let id = payout.json()["payout_id"].as_str().unwrap().to_string();
    let path = format!("/v1/payouts/{id}/cancel");
    let first = post_raw(&app, &path, &json!({}), None).await;
    assert_eq!(first.json()["status"], "cancelled", "{}", first.body);
    let again = post_raw(&app, &path, &json!({}), None).await;
    assert_eq!((again.status, &again.body), (StatusCode::OK, &first.body));
    assert_eq!(
        app.balance("p2").await,
        ("3000.00".to_string(), "0.00".to_string()),
        "released once"
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

/// A node that stopped between a request's first effect (which staged its answer) and its
/// last: the repeat gets the staged answer and does not run the request again.
async fn a_staged_answer_is_final_once_its_request_stopped(app: TestApp) {
    let store = kassa_store::Store::connect(&app.database_url)
        .await
        .unwrap();
    let merchant = kassa_server::bootstrap::DEMO_MERCHANT_ID;
    let claimed = store
        .claim_idempotency_key(merchant, "staged", "hash", 60_000)
        .await
        .unwrap();
    assert_eq!(claimed, kassa_store::idempotency::Claim::Claimed);
    let mut tx = store.begin().await.unwrap();
    kassa_store::idempotency::stage_idempotency_answer(&mut tx, merchant, "staged", 201, "{}")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let running = store
        .claim_idempotency_key(merchant, "staged", "hash", 60_000)
        .await
        .unwrap();
    assert_eq!(running, kassa_store::idempotency::Claim::InUse);
    let stale = store
        .claim_idempotency_key(merchant, "staged", "hash", 0)
        .await
        .unwrap();
    let replay = kassa_store::idempotency::Claim::Replay {
        status: 201,
        body: "{}".into(),
    };
    assert_eq!(stale, replay);
    // A release (the request failed after staging) keeps the staged answer too.
    store
        .claim_idempotency_key(merchant, "other", "hash", 60_000)
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    kassa_store::idempotency::stage_idempotency_answer(&mut tx, merchant, "other", 201, "{}")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store
        .release_idempotency_key(merchant, "other")
        .await
        .unwrap();
    let after = store
        .claim_idempotency_key(merchant, "other", "hash", 60_000)
        .await
        .unwrap();
    assert_eq!(after, replay);
    store.close().await;
    app.stop().await;
}

/// An approval or rejection in the review queue (admin key) moves money: with a key, a
/// repeat gets the first answer byte for byte, also once the payout moved on; without one,
/// the same decision again answers 200 with the payout, the other decision 409. Keys are
/// scoped by the admin key (ADR 36): a merchant's key of the same name is another key.
async fn review_decisions_replay_their_first_answer_and_repeat_as_200(app: TestApp) {
    verified_player(&app, "p1", "6000.00").await;
    let in_review = |key: &'static str| {
        let app = &app;
        async move {
            let sent = post_raw(app, "/v1/payouts/init", &payout_body("2500.00"), Some(key)).await;
            assert_eq!(sent.json()["status"], "in_review", "{}", sent.body);
            sent.json()["payout_id"].as_str().unwrap().to_string()
        }
    };
    let (approved_id, rejected_id) = (in_review("rv-a").await, in_review("rv-b").await);
    let admin = app.admin_key.clone();
    let approve = format!("/v1/admin/payouts/{approved_id}/approve");
    let reason = json!({"reason": "documents checked"});
    let approved = twice_as(&app, &admin, &approve, &reason, "rv-a").await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.json()["status"], "processing");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.get(&format!("/v1/payouts/{approved_id}")).await.body["status"] != "paid" {
        assert!(tokio::time::Instant::now() < deadline, "the payout is paid");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let late = post_raw_as(&app, &admin, &approve, &reason, Some("rv-a")).await;
    assert_eq!((late.status, &late.body), (approved.status, &approved.body));
    let unkeyed = post_raw_as(&app, &admin, &approve, &reason, None).await;
    assert_eq!(unkeyed.status, StatusCode::OK, "{}", unkeyed.body);
    assert_eq!(unkeyed.json()["status"], "paid", "the payout as it is now");
    let elsewhere = json!({"reason": "another payout"});
    let reused = post_raw_as(&app, &admin, &approve, &elsewhere, Some("rv-a")).await;
    assert_eq!(reused.status, StatusCode::CONFLICT, "{}", reused.body);

    let reject = format!("/v1/admin/payouts/{rejected_id}/reject");
    let unclear = json!({"reason": "source of funds unclear"});
    let rejected = twice_as(&app, &admin, &reject, &unclear, "rv-b").await;
    assert_eq!(
        (rejected.status, rejected.json()["status"].as_str()),
        (StatusCode::OK, Some("rejected")),
        "{}",
        rejected.body
    );
    let unkeyed = post_raw_as(&app, &admin, &reject, &unclear, None).await;
    assert_eq!(unkeyed.status, StatusCode::OK, "{}", unkeyed.body);
    let decision = |raw: &Raw| {
        let view = raw.json();
        let fields = [
            "payout_id",
            "status",
            "failure_reason",
            "reviewed_by",
            "review_note",
        ];
        fields.map(|f| view[f].clone())
    };
    assert_eq!(decision(&unkeyed), decision(&rejected));
    let other = post_raw_as(
        &app,
        &admin,
        &approve.replace(&approved_id, &rejected_id),
        &reason,
        None,
    )
    .await;
    assert_eq!(
        (other.status, other.json()["error"].as_str()),
        (StatusCode::CONFLICT, Some("payout_not_in_review"))
    );
    assert_eq!(
        app.balance("p1").await,
        ("3500.00".to_string(), "0.00".to_string()),
        "paid once, released once"
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}
