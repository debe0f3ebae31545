//! Every sandbox test card end to end: the hosted card page and 3-D Secure step, the
//! sandbox's own signed webhooks, status sync, and the player's balance — on SQLite and
//! PostgreSQL alike.

mod common;

use std::time::Duration;

use common::{pay_with_card, TestApp};
use kassa_server::config::Config;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Fast timings so a whole card table runs in seconds.
fn fast(config: &mut Config) {
    config.sandbox.webhook_delay_ms = 20;
    config.sandbox.slow_approval_delay_ms = 400;
    config.payments.status_sync_interval_ms = 100;
    config.payments.status_sync_after_ms = 300;
    config.payments.expire_after_ms = 1_500;
}

contract_tests_with!(
    every_test_card_ends_as_documented => fast,
    duplicate_and_out_of_order_webhooks_credit_once => |c: &mut Config| { fast(c); c.sandbox.duplicate_webhooks = true; c.sandbox.out_of_order_webhooks = true; },
    status_sync_settles_what_no_webhook_reported => |c: &mut Config| { fast(c); c.sandbox.autopilot = false; },
    refunds_and_chargebacks_through_the_sandbox => fast,
);

async fn start_deposit(app: &TestApp, amount: &str) -> (String, String) {
    let answer = common::start_deposit(app, amount).await;
    (
        answer.body["payment_id"].as_str().unwrap().to_string(),
        answer.body["redirect_url"].as_str().unwrap().to_string(),
    )
}

async fn payment(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/payments/{id}")).await.body
}

/// Waits (bounded) until the payment leaves pending/authorized; returns its final view.
async fn settled(app: &TestApp, id: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let view = payment(app, id).await;
        let status = view["status"].as_str().unwrap_or_default().to_string();
        if !matches!(status.as_str(), "pending" | "authorized" | "initiated")
            || tokio::time::Instant::now() > deadline
        {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn every_test_card_ends_as_documented(app: TestApp) {
    app.player("p1").await;
    let cases = [
        ("4242424242424242", "", "captured", None, "10.00"),
        ("4000000000003220", "123456", "captured", None, "20.00"),
        (
            "4000000000003220",
            "000000",
            "declined",
            Some("authentication_failed"),
            "20.00",
        ),
        (
            "4000000000009995",
            "",
            "declined",
            Some("insufficient_funds"),
            "20.00",
        ),
        (
            "4100000000000019",
            "",
            "declined",
            Some("suspected_fraud"),
            "20.00",
        ),
        ("4000000000000077", "", "captured", None, "30.00"),
    ];
    for (card, otp, expected, reason, balance_after) in cases {
        let (id, redirect) = start_deposit(&app, "10.00").await;
        let landed = pay_with_card(&redirect, card, otp).await;
        assert!(
            landed.starts_with(&format!("{}/cashier/return?", app.base)) && landed.contains(&id),
            "{card}: {landed}"
        );
        let view = settled(&app, &id, Duration::from_secs(10)).await;
        assert_eq!(view["status"], expected, "card {card} otp {otp:?}: {view}");
        if let Some(reason) = reason {
            assert_eq!(view["failure_reason"], reason, "card {card}");
        }
        assert_eq!(
            app.balance("p1").await.0,
            balance_after,
            "after card {card}"
        );
    }
    // No answer: the sandbox never reports; status sync keeps asking, then the payment expires.
    let (id, redirect) = start_deposit(&app, "10.00").await;
    pay_with_card(&redirect, "4000000000000119", "").await;
    let view = settled(&app, &id, Duration::from_secs(10)).await;
    assert_eq!(
        (view["status"].as_str(), view["failure_reason"].as_str()),
        (Some("expired"), Some("no_answer_from_provider"))
    );
    assert_eq!(app.balance("p1").await.0, "30.00");
    // A Luhn-invalid number never leaves the page.
    let (id, redirect) = start_deposit(&app, "10.00").await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let refused = browser
        .post(&redirect)
        .form(&[
            ("card_number", "4242424242424241"),
            ("expiry", "12/34"),
            ("cvc", "123"),
            ("cardholder", "A"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("aria-invalid=\"true\""));
    assert_eq!(payment(&app, &id).await["status"], "pending");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn duplicate_and_out_of_order_webhooks_credit_once(app: TestApp) {
    app.player("p1").await;
    for _ in 0..3 {
        let (id, redirect) = start_deposit(&app, "25.00").await;
        pay_with_card(&redirect, "4242424242424242", "").await;
        assert_eq!(
            settled(&app, &id, Duration::from_secs(10)).await["status"],
            "captured"
        );
    }
    // Give the duplicates time to arrive too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.balance("p1").await.0, "75.00");
    let log = app
        .send(
            Method::GET,
            "/v1/admin/webhook-deliveries?limit=100",
            Some(&app.admin_key),
            None,
            &[],
        )
        .await;
    let outcomes: Vec<&str> = log.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert!(outcomes.contains(&"duplicate"), "{outcomes:?}");
    assert!(
        outcomes.contains(&"ignored"),
        "authorized after captured is ignored: {outcomes:?}"
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn status_sync_settles_what_no_webhook_reported(app: TestApp) {
    app.player("p1").await;
    let (approved, redirect) = start_deposit(&app, "30.00").await;
    pay_with_card(&redirect, "4242424242424242", "").await;
    let (declined, redirect) = start_deposit(&app, "30.00").await;
    pay_with_card(&redirect, "4000000000009995", "").await;
    assert_eq!(
        settled(&app, &approved, Duration::from_secs(10)).await["status"],
        "captured"
    );
    assert_eq!(
        settled(&app, &declined, Duration::from_secs(10)).await["status"],
        "declined"
    );
    assert_eq!(app.balance("p1").await.0, "30.00");
    let log = app
        .send(
            Method::GET,
            "/v1/admin/webhook-deliveries",
            Some(&app.admin_key),
            None,
            &[],
        )
        .await;
    assert_eq!(
        log.body["data"].as_array().unwrap().len(),
        0,
        "autopilot off: no webhook arrived"
    );
    app.stop().await;
}

async fn refunds_and_chargebacks_through_the_sandbox(app: TestApp) {
    app.player("p1").await;
    let (id, redirect) = start_deposit(&app, "50.00").await;
    pay_with_card(&redirect, "4000000000003220", "123456").await;
    assert_eq!(
        settled(&app, &id, Duration::from_secs(10)).await["status"],
        "captured"
    );
    let refund = app
        .send(
            Method::POST,
            &format!("/v1/payments/{id}/refunds"),
            Some(&app.api_key),
            Some(&json!({"amount": "15.00"})),
            &[("Idempotency-Key", "rf-1")],
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while payment(&app, &id).await["status"] != "partially_refunded"
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(payment(&app, &id).await["refunded"], "15.00");
    assert_eq!(
        app.balance("p1").await,
        ("35.00".to_string(), "0.00".to_string())
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}
