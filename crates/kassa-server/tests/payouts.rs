//! Withdrawals through the real HTTP API, on SQLite and PostgreSQL alike.

mod common;

use std::time::Duration;

use common::{deliver, rfc3339_now_plus, TestApp};
use kassa_server::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn fast(config: &mut Config) {
    config.sandbox.webhook_delay_ms = 20;
    config.payouts.retry_interval_ms = 100;
    config.payouts.retry_backoff_ms = 100;
}

contract_tests_with!(
    checks_run_in_order_each_with_its_code => |c: &mut Config| { fast(c); c.sandbox.autopilot = false; },
    a_payout_holds_then_pays_through_the_sandbox => fast,
    a_failed_payout_gives_the_money_back => fast,
    duplicate_and_out_of_order_payout_webhooks_settle_once => |c: &mut Config| { fast(c); c.sandbox.autopilot = false; },
    cancel_follows_the_jurisdiction => |c: &mut Config| { fast(c); c.sandbox.autopilot = false; },
    the_review_queue_approves_and_rejects_with_reasons => fast,
    deferred_payouts_survive_a_restart => fast,
);

async fn verified_player(app: &TestApp, player_id: &str, jurisdiction: &str, funds: &str) {
    let body = json!({"currency": "EUR", "country": jurisdiction, "jurisdiction": jurisdiction, "kyc_status": "verified"});
    let answer = app.put(&format!("/v1/players/{player_id}"), body).await;
    assert!(answer.status.is_success(), "{}", answer.body);
    if funds != "0.00" {
        app.credit(&format!("fund-{player_id}"), player_id, funds)
            .await;
    }
}

async fn request_payout(
    app: &TestApp,
    player_id: &str,
    amount: &str,
    destination: Option<&str>,
) -> common::Answer {
    let mut body =
        json!({"amount": amount, "currency": "EUR", "method": "card", "player_id": player_id});
    if let Some(destination) = destination {
        body["destination"] = json!(destination);
    }
    let key = kassa_core::ids::generate("idem");
    app.send(
        Method::POST,
        "/v1/payouts/init",
        Some(&app.api_key),
        Some(&body),
        &[("Idempotency-Key", &key)],
    )
    .await
}

async fn payout(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/payouts/{id}")).await.body
}

async fn until_status(app: &TestApp, id: &str, wanted: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = payout(app, id).await;
        if view["status"] == wanted || tokio::time::Instant::now() > deadline {
            assert_eq!(view["status"], wanted, "{view}");
            return view;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn payout_event(event_id: &str, payout_id: &str, status: &str, amount: &str) -> Value {
    json!({"event_id": event_id, "payout_id": payout_id, "status": status, "amount": amount, "currency": "EUR", "timestamp": rfc3339_now_plus(0)})
}

async fn checks_run_in_order_each_with_its_code(app: TestApp) {
    app.put(
        "/v1/players/newbie",
        json!({"currency": "EUR", "country": "MT"}),
    )
    .await;
    let kyc = request_payout(&app, "newbie", "10.00", None).await;
    assert_eq!(
        (kyc.status, kyc.error_code()),
        (StatusCode::FORBIDDEN, "kyc_required")
    );
    assert_eq!(
        kyc.body["details"]["required_step"],
        "identity_verification"
    );

    verified_player(&app, "blocked", "MT", "50.00").await;
    app.put("/v1/players/blocked", json!({"currency": "EUR", "country": "MT", "kyc_status": "verified", "account_status": "blocked"})).await;
    let blocked = request_payout(&app, "blocked", "10.00", None).await;
    assert_eq!(
        (blocked.status, blocked.error_code()),
        (StatusCode::FORBIDDEN, "account_blocked")
    );
    app.put("/v1/players/blocked", json!({"currency": "EUR", "country": "MT", "kyc_status": "verified", "account_status": "self_excluded"})).await;
    let excluded = request_payout(&app, "blocked", "10.00", None).await;
    assert_eq!(
        excluded.status,
        StatusCode::CREATED,
        "self-excluded players may take their money out: {}",
        excluded.body
    );

    verified_player(&app, "poor", "MT", "5.00").await;
    let poor = request_payout(&app, "poor", "10.00", None).await;
    assert_eq!(
        (poor.status, poor.error_code()),
        (StatusCode::PAYMENT_REQUIRED, "insufficient_funds")
    );
    assert_eq!(poor.body["details"]["available"], "5.00");

    verified_player(&app, "big", "MT", "5000.00").await;
    let big = request_payout(&app, "big", "2000.00", None).await;
    assert_eq!(
        (big.status, big.body["status"].as_str()),
        (StatusCode::CREATED, Some("in_review"))
    );
    assert_eq!(
        big.body["review_reasons"],
        json!(["amount_at_or_over_review_threshold"])
    );

    // Wagering: a 100.00 deposit with no bets since sends the payout to review, not refusal.
    verified_player(&app, "depositor", "MT", "0.00").await;
    let payment = app
        .send(Method::POST, "/v1/payments/init", Some(&app.api_key), Some(&json!({"amount": "100.00", "currency": "EUR", "method": "card", "player_id": "depositor", "return_url": "https://casino.example/back", "meta": {"country": "MT"}})), &[("Idempotency-Key", "dep-1")])
        .await;
    let payment_id = payment.body["payment_id"].as_str().unwrap().to_string();
    let captured = json!({"event_id": "evt_dep", "payment_id": payment_id, "status": "captured", "amount": "100.00", "currency": "EUR", "timestamp": rfc3339_now_plus(0)});
    assert_eq!(deliver(&app, &captured).await.body["outcome"], "processed");
    let unwagered = request_payout(&app, "depositor", "50.00", None).await;
    assert_eq!(unwagered.body["status"], "in_review");
    assert_eq!(
        unwagered.body["review_reasons"],
        json!(["low_turnover_since_last_deposit"])
    );
    app.debit("turnover", "depositor", "50.00").await;
    app.credit("win-back", "depositor", "200.00").await;
    let still_low = request_payout(&app, "depositor", "10.00", None).await;
    assert_eq!(
        still_low.body["status"], "in_review",
        "50.00 wagered is below 1x the 100.00 deposit"
    );
    app.debit("turnover-2", "depositor", "50.00").await;
    let wagered = request_payout(&app, "depositor", "10.00", None).await;
    assert_eq!(wagered.body["status"], "processing", "{}", wagered.body);

    // A chargeback on the player's deposits is a refusal.
    let chargeback = json!({"event_id": "evt_cb", "payment_id": payment_id, "status": "chargeback", "amount": "100.00", "currency": "EUR", "timestamp": rfc3339_now_plus(0), "dispute_id": "dp_1"});
    assert_eq!(deliver(&app, &chargeback).await.status, StatusCode::OK);
    app.credit("more", "depositor", "100.00").await;
    let risky = request_payout(&app, "depositor", "10.00", None).await;
    assert_eq!(
        (risky.status, risky.error_code()),
        (StatusCode::FORBIDDEN, "risk_rejected")
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_payout_holds_then_pays_through_the_sandbox(app: TestApp) {
    verified_player(&app, "p1", "MT", "100.00").await;
    let answer = request_payout(&app, "p1", "40.00", None).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let id = answer.body["payout_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("po_"));
    assert_eq!(
        (
            answer.body["status"].as_str(),
            answer.body["eta_hours"].as_i64()
        ),
        (Some("processing"), Some(48))
    );
    let (available, held) = app.balance("p1").await;
    if held != "0.00" {
        assert_eq!(
            (available.as_str(), held.as_str()),
            ("60.00", "40.00"),
            "available + held = the balance before"
        );
    }
    let paid = until_status(&app, &id, "paid").await;
    assert_eq!(paid["provider"], "sandbox");
    assert_eq!(
        app.balance("p1").await,
        ("60.00".to_string(), "0.00".to_string())
    );
    let list = app.get("/v1/payouts?player_id=p1").await;
    assert_eq!(list.body["data"][0]["payout_id"], id.as_str());
    let history = app.get("/v1/players/p1/transactions").await;
    let kinds: Vec<&str> = history.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(&kinds[..2], ["payout_paid", "payout"]);
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_failed_payout_gives_the_money_back(app: TestApp) {
    verified_player(&app, "p1", "MT", "100.00").await;
    let answer = request_payout(&app, "p1", "30.00", Some("acct-will-fail")).await;
    let id = answer.body["payout_id"].as_str().unwrap().to_string();
    let failed = until_status(&app, &id, "failed").await;
    assert_eq!(failed["failure_reason"], "account_closed");
    assert_eq!(
        app.balance("p1").await,
        ("100.00".to_string(), "0.00".to_string())
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn duplicate_and_out_of_order_payout_webhooks_settle_once(app: TestApp) {
    verified_player(&app, "p1", "MT", "100.00").await;
    let id = request_payout(&app, "p1", "25.00", None).await.body["payout_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(payout(&app, &id).await["status"], "processing");
    assert_eq!(
        app.balance("p1").await,
        ("75.00".to_string(), "25.00".to_string())
    );
    let mismatch = deliver(&app, &payout_event("e0", &id, "paid", "25.01")).await;
    assert_eq!(
        (mismatch.status, mismatch.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "webhook_mismatch")
    );
    let unknown = deliver(&app, &payout_event("e00", "po_nobody", "paid", "25.00")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let paid = deliver(&app, &payout_event("e1", &id, "paid", "25.00")).await;
    assert_eq!(
        (paid.status, paid.body["payout_status"].as_str()),
        (StatusCode::OK, Some("paid"))
    );
    let duplicate = deliver(&app, &payout_event("e1", &id, "paid", "25.00")).await;
    assert_eq!(duplicate.body, paid.body);
    let again = deliver(&app, &payout_event("e2", &id, "paid", "25.00")).await;
    assert_eq!(again.body["outcome"], "ignored");
    let late_failure = deliver(&app, &payout_event("e3", &id, "failed", "25.00")).await;
    assert_eq!(late_failure.body["outcome"], "ignored");
    assert_eq!(
        app.balance("p1").await,
        ("75.00".to_string(), "0.00".to_string())
    );
    // The other order: failed first, then a late paid changes nothing.
    let second = request_payout(&app, "p1", "10.00", None).await.body["payout_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut failed = payout_event("e4", &second, "failed", "10.00");
    failed["reason"] = json!("account_closed");
    assert_eq!(deliver(&app, &failed).await.body["payout_status"], "failed");
    assert_eq!(
        deliver(&app, &payout_event("e5", &second, "paid", "10.00"))
            .await
            .body["outcome"],
        "ignored"
    );
    assert_eq!(
        app.balance("p1").await,
        ("75.00".to_string(), "0.00".to_string())
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn cancel_follows_the_jurisdiction(app: TestApp) {
    verified_player(&app, "malta", "MT", "3000.00").await;
    verified_player(&app, "london", "GB", "3000.00").await;
    let mt = request_payout(&app, "malta", "2500.00", None).await.body["payout_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(payout(&app, &mt).await["status"], "in_review");
    assert_eq!(
        app.balance("malta").await,
        ("500.00".to_string(), "2500.00".to_string())
    );
    let cancelled = app
        .post(&format!("/v1/payouts/{mt}/cancel"), json!({}))
        .await;
    assert_eq!(
        (cancelled.status, cancelled.body["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{}",
        cancelled.body
    );
    assert_eq!(
        app.balance("malta").await,
        ("3000.00".to_string(), "0.00".to_string())
    );
    let twice = app
        .post(&format!("/v1/payouts/{mt}/cancel"), json!({}))
        .await;
    assert_eq!(
        (twice.status, &twice.body),
        (StatusCode::OK, &cancelled.body),
        "a repeated cancel answers the cancelled payout again"
    );

    let gb = request_payout(&app, "london", "2500.00", None).await.body["payout_id"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = app
        .post(&format!("/v1/payouts/{gb}/cancel"), json!({}))
        .await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (StatusCode::CONFLICT, "cancel_not_allowed")
    );
    assert_eq!(refused.body["details"]["jurisdiction"], "GB");
    assert_eq!(
        app.balance("london").await,
        ("500.00".to_string(), "2500.00".to_string())
    );

    let sent = request_payout(&app, "malta", "10.00", None).await.body["payout_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(payout(&app, &sent).await["status"], "processing");
    let too_late = app
        .post(&format!("/v1/payouts/{sent}/cancel"), json!({}))
        .await;
    assert_eq!(
        (too_late.status, too_late.error_code()),
        (StatusCode::CONFLICT, "payout_not_cancellable")
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn the_review_queue_approves_and_rejects_with_reasons(app: TestApp) {
    verified_player(&app, "p1", "MT", "10000.00").await;
    let first = request_payout(&app, "p1", "2000.00", None).await.body["payout_id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = request_payout(&app, "p1", "3000.00", None).await.body["payout_id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = |method: Method, path: String, body: Option<Value>| {
        let app = &app;
        async move {
            app.send(method, &path, Some(&app.admin_key), body.as_ref(), &[])
                .await
        }
    };
    let queue = admin(
        Method::GET,
        "/v1/admin/payouts?status=in_review".into(),
        None,
    )
    .await;
    let ids: Vec<&str> = queue.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["payout_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
    let merchant = app.get("/v1/admin/payouts").await;
    assert_eq!(merchant.status, StatusCode::FORBIDDEN);
    let no_reason = admin(
        Method::POST,
        format!("/v1/admin/payouts/{first}/approve"),
        Some(json!({"reason": "  "})),
    )
    .await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = admin(
        Method::POST,
        format!("/v1/admin/payouts/{first}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    let approved = admin(
        Method::POST,
        format!("/v1/admin/payouts/{first}/approve"),
        Some(json!({"reason": "documents checked"})),
    )
    .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["review_note"], "documents checked");
    assert!(approved.body["reviewed_by"]
        .as_str()
        .unwrap()
        .starts_with("key_"));
    until_status(&app, &first, "paid").await;
    let rejected = admin(
        Method::POST,
        format!("/v1/admin/payouts/{second}/reject"),
        Some(json!({"reason": "source of funds unclear"})),
    )
    .await;
    assert_eq!(
        (
            rejected.body["status"].as_str(),
            rejected.body["failure_reason"].as_str()
        ),
        (Some("rejected"), Some("rejected_in_review"))
    );
    let again = admin(
        Method::POST,
        format!("/v1/admin/payouts/{second}/approve"),
        Some(json!({"reason": "changed my mind"})),
    )
    .await;
    assert_eq!(
        (again.status, again.error_code()),
        (StatusCode::CONFLICT, "payout_not_in_review")
    );
    assert_eq!(
        app.balance("p1").await,
        ("8000.00".to_string(), "0.00".to_string())
    );
    let empty = admin(Method::GET, "/v1/admin/payouts".into(), None).await;
    assert_eq!(empty.body["data"].as_array().unwrap().len(), 0);
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn deferred_payouts_survive_a_restart(app: TestApp) {
    verified_player(&app, "p1", "MT", "100.00").await;
    let paused = app
        .send(
            Method::PUT,
            "/v1/admin/switches/payouts_paused",
            Some(&app.admin_key),
            Some(&json!({"enabled": true})),
            &[],
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    let id = request_payout(&app, "p1", "40.00", None).await.body["payout_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(payout(&app, &id).await["status"], "deferred");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        payout(&app, &id).await["status"],
        "deferred",
        "still paused: the worker keeps it waiting"
    );
    assert_eq!(
        app.balance("p1").await,
        ("60.00".to_string(), "40.00".to_string())
    );
    let app = app.restart(fast).await;
    assert_eq!(
        payout(&app, &id).await["status"],
        "deferred",
        "nothing is lost across a restart"
    );
    let resumed = app
        .send(
            Method::PUT,
            "/v1/admin/switches/payouts_paused",
            Some(&app.admin_key),
            Some(&json!({"enabled": false})),
            &[],
        )
        .await;
    assert_eq!(resumed.status, StatusCode::OK);
    until_status(&app, &id, "paid").await;
    assert_eq!(
        app.balance("p1").await,
        ("60.00".to_string(), "0.00".to_string())
    );
    let store = kassa_store::Store::connect(&app.database_url)
        .await
        .unwrap();
    let notices: Vec<String> = store
        .outbox_for(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, payload)| {
            serde_json::from_str::<Value>(&payload).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        notices,
        ["approved", "deferred", "processing", "paid"],
        "the player is told of every change"
    );
    store.close().await;
    app.assert_ledger_verifies().await;
    app.stop().await;
}
