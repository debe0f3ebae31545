//! Deposits, refunds, chargebacks and payouts through Stripe-kind accounts, end to end over
//! real HTTP: Kassa's Stripe connector against the Stripe simulator, its signed events back
//! to Kassa's webhook endpoint, on SQLite and PostgreSQL alike. Each account confirms with
//! its own test payment method (ADR 59), so the routing document picks the card.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::risk_rules::{fired, gte, never, read, rule, set_rules};
use common::{request_payout, set_routing, start_deposit, verified_player, TestApp};
use kassa_server::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The Stripe accounts of these tests and the test payment method each confirms with.
const STRIPE_ACCOUNTS: [(&str, &str); 6] = [
    ("stripe", "pm_card_visa"),
    ("stripe_de", "pm_card_de"),
    ("stripe_3ds", "pm_card_threeDSecure2Required"),
    ("stripe_soft", "pm_card_chargeDeclinedProcessingError"),
    ("stripe_hard", "pm_card_chargeDeclinedInsufficientFunds"),
    ("stripe_slow", "pm_card_kassaTimeout"),
];
/// A call timeout short enough for the time-out card to exceed it quickly.
const SLOW_TIMEOUT_MS: u64 = 600;

/// The demo merchant keeps its sandbox account and gains the Stripe accounts, each served
/// by its own embedded simulator; events come quickly, status sync looks often.
fn stripe_accounts(config: &mut Config) {
    for (id, payment_method) in STRIPE_ACCOUNTS {
        let mut account = common::stripe_account(id, payment_method);
        if id == "stripe_slow" {
            let timeout_ms = SLOW_TIMEOUT_MS as i64;
            account
                .settings
                .insert("timeout_ms".into(), timeout_ms.into());
        }
        config.providers.accounts.push(account);
    }
    common::fast_background(config);
    config.payments.status_sync_interval_ms = 100;
    config.payments.status_sync_after_ms = 300;
}

/// As [`stripe_accounts`], with events held back a minute: only status sync can settle.
fn silent_stripe(config: &mut Config) {
    stripe_accounts(config);
    config.sandbox.webhook_delay_ms = 60_000;
}

contract_tests_with!(
    a_deposit_without_3ds_is_captured_by_stripes_event => stripe_accounts,
    a_3ds_deposit_is_captured_after_the_challenge_page => stripe_accounts,
    a_soft_decline_cascades_to_the_next_account => stripe_accounts,
    a_hard_decline_does_not_cascade => stripe_accounts,
    a_refund_settles_on_charge_refunded => stripe_accounts,
    a_chargeback_and_its_reversal_follow_the_dispute => stripe_accounts,
    a_payout_is_paid_on_payout_paid => stripe_accounts,
    a_timeout_after_charging_is_settled_by_status_sync_without_a_second_charge => silent_stripe,
    the_official_stripe_sdk_agrees_with_the_simulator_and_with_kassa => stripe_accounts,
    the_card_that_paid_is_shown_and_read_by_the_players_next_decision => stripe_accounts,
);

/// Cards go to `account` first, then to the sandbox.
async fn route_cards_to(app: &TestApp, account: &str) {
    set_routing(
        app,
        json!({"rules": [{"id": "cards", "when": {"methods": ["card"]},
            "pick": {"strategy": "priority", "accounts": [account]},
            "fallbacks": ["sandbox"]}]}),
    )
    .await;
}

async fn payment(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/payments/{id}")).await.body
}

/// Waits (bounded) until the payment's status is `status`; returns its view.
async fn until_status(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = payment(app, id).await;
        if view["status"] == status || tokio::time::Instant::now() > deadline {
            assert_eq!(view["status"], status, "payment {view}");
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The payment intents the account's simulator holds for Kassa's payment `id`.
async fn intents_of(app: &TestApp, account: &str, id: &str) -> Vec<Value> {
    let url = format!(
        "{}/_sim/payment_intents?kassa_payment_id={id}",
        app.simulator_url(account)
    );
    let list: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    list["data"].as_array().unwrap().clone()
}

/// A EUR deposit of `amount` through `account`, captured; returns the payment id.
async fn captured_deposit(app: &TestApp, account: &str, amount: &str) -> String {
    route_cards_to(app, account).await;
    let answer = start_deposit(app, amount).await;
    assert_eq!(answer.body["status"], "authorized", "{}", answer.body);
    let id = answer.body["payment_id"].as_str().unwrap().to_string();
    until_status(app, &id, "captured").await;
    id
}

async fn a_deposit_without_3ds_is_captured_by_stripes_event(app: TestApp) {
    app.player("p1").await;
    let id = captured_deposit(&app, "stripe", "50.00").await;
    let view = payment(&app, &id).await;
    assert_eq!(view["provider"], "stripe");
    let intents = intents_of(&app, "stripe", &id).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(view["provider_reference"], intents[0]["id"]);
    assert_eq!(
        (
            intents[0]["amount"].as_i64(),
            intents[0]["currency"].as_str()
        ),
        (Some(5000), Some("eur"))
    );
    assert_eq!(
        app.balance("p1").await,
        ("50.00".to_string(), "0.00".to_string())
    );
    // An event type Kassa does not act on is acknowledged, not refused (ADR 58).
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ignored = json!({"id": "evt_ignored_1", "object": "event", "type": "charge.succeeded",
        "created": now, "data": {"object": {"id": "ch_1", "object": "charge"}}})
    .to_string();
    let header =
        kassa_connectors::stripe::signature_header(b"whsec_kassa_stripe", now, ignored.as_bytes());
    let answer = app
        .client
        .post(format!("{}/v1/providers/stripe/webhook", app.base))
        .header("stripe-signature", header)
        .body(ignored)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body, json!({"received": true, "ignored": true}));
    app.assert_ledger_verifies().await;
    app.stop().await;
}

/// Waits (bounded) until the payment shows the card Stripe reported: `charge.succeeded` may
/// be applied before or after `payment_intent.succeeded`.
async fn until_card(app: &TestApp, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = payment(app, id).await;
        if !view["card"].is_null() || tokio::time::Instant::now() > deadline {
            assert!(!view["card"].is_null(), "no card reported: {view}");
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stripe's `charge.succeeded` names the card that paid (ADR 84): the payment shows its
/// country, scheme and last four digits, and the player's next decision counts the
/// country. The deposit's own decision came before Stripe saw the card.
async fn the_card_that_paid_is_shown_and_read_by_the_players_next_decision(app: TestApp) {
    // A Maltese player under Malta's licence: the KYC country is MT before verification.
    let player = json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT"});
    let answer = app.put("/v1/players/p1", player).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let rules = json!({"thresholds": never(), "rules": [
        rule("card-countries", gte("card_countries_30d", 1), 1),
        rule("card-not-kyc", json!({"flag": "card_country_mismatch_kyc_30d"}), 2),
    ]});
    set_rules(&app, "", rules).await;
    let german = captured_deposit(&app, "stripe_de", "50.00").await;
    let view = until_card(&app, &german).await;
    assert_eq!(
        view["card"],
        json!({"country": "DE", "brand": "visa", "last4": "0016"})
    );
    assert!(fired(&view["risk"]).is_empty(), "{}", view["risk"]);
    assert!(
        !view.to_string().contains("4000002760000016"),
        "never the number: {view}"
    );

    let american = captured_deposit(&app, "stripe", "20.00").await;
    let view = until_card(&app, &american).await;
    assert_eq!(view["card"]["country"], "US", "{view}");
    let risk = &view["risk"];
    assert_eq!(fired(risk), ["card-countries", "card-not-kyc"], "{risk}");
    assert_eq!(read(risk, "card-countries", "card_countries_30d"), 1);
    assert_eq!(
        read(risk, "card-not-kyc", "card_country_mismatch_kyc_30d"),
        true
    );

    let third = captured_deposit(&app, "stripe", "10.00").await;
    let risk = &payment(&app, &third).await["risk"];
    assert_eq!(
        read(risk, "card-countries", "card_countries_30d"),
        2,
        "{risk}"
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_3ds_deposit_is_captured_after_the_challenge_page(app: TestApp) {
    app.player("p1").await;
    route_cards_to(&app, "stripe_3ds").await;
    let answer = start_deposit(&app, "20.00").await;
    let id = answer.body["payment_id"].as_str().unwrap().to_string();
    let challenge = answer.body["redirect_url"].as_str().unwrap().to_string();
    assert!(challenge.contains("/3ds/pi_"), "{}", answer.body);
    assert_eq!(payment(&app, &id).await["status"], "pending");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser
        .get(&challenge)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"complete\""), "{page}");
    let answered = browser
        .post(&challenge)
        .form(&[("result", "complete")])
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), StatusCode::SEE_OTHER);
    let landed = answered.headers()["location"].to_str().unwrap();
    assert!(
        landed.starts_with(&format!("{}/cashier/return?payment_id={id}&", app.base))
            && landed.contains("redirect_status=succeeded"),
        "{landed}"
    );
    until_status(&app, &id, "captured").await;
    assert_eq!(app.balance("p1").await.0, "20.00");
    // A failed challenge declines the next deposit, nothing credited.
    let answer = start_deposit(&app, "5.00").await;
    let failing = answer.body["payment_id"].as_str().unwrap().to_string();
    let challenge = answer.body["redirect_url"].as_str().unwrap();
    let answered = browser
        .post(challenge)
        .form(&[("result", "fail")])
        .send()
        .await
        .unwrap();
    let landed = answered.headers()["location"].to_str().unwrap();
    assert!(landed.contains("redirect_status=failed"), "{landed}");
    let view = until_status(&app, &failing, "declined").await;
    assert_eq!(view["failure_reason"], "authentication_failed");
    assert_eq!(app.balance("p1").await.0, "20.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_soft_decline_cascades_to_the_next_account(app: TestApp) {
    app.player("p1").await;
    route_cards_to(&app, "stripe_soft").await;
    let answer = start_deposit(&app, "30.00").await;
    let id = answer.body["payment_id"].as_str().unwrap();
    let view = payment(&app, id).await;
    let attempts = view["routing"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{view}");
    assert_eq!(
        (
            attempts[0]["provider"].as_str(),
            attempts[0]["outcome"].as_str(),
            attempts[0]["reason"].as_str(),
            attempts[0]["cascaded"].as_bool()
        ),
        (
            Some("stripe_soft"),
            Some("declined"),
            Some("processing_error"),
            Some(true)
        )
    );
    assert_eq!(view["provider"], "sandbox");
    assert_eq!(view["status"], "pending", "the sandbox's card page is next");
    // Stripe holds the declined intent; nothing was charged there.
    let intents = intents_of(&app, "stripe_soft", id).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["status"], "requires_payment_method");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_hard_decline_does_not_cascade(app: TestApp) {
    app.player("p1").await;
    route_cards_to(&app, "stripe_hard").await;
    let answer = start_deposit(&app, "30.00").await;
    let id = answer.body["payment_id"].as_str().unwrap();
    let view = payment(&app, id).await;
    assert_eq!(
        (
            view["status"].as_str(),
            view["provider"].as_str(),
            view["failure_reason"].as_str()
        ),
        (
            Some("declined"),
            Some("stripe_hard"),
            Some("insufficient_funds")
        ),
        "{view}"
    );
    assert_eq!(view["routing"]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(app.balance("p1").await.0, "0.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_refund_settles_on_charge_refunded(app: TestApp) {
    app.player("p1").await;
    let id = captured_deposit(&app, "stripe", "50.00").await;
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
    let view = until_status(&app, &id, "partially_refunded").await;
    assert_eq!(view["refunded"], "15.00");
    assert_eq!(
        app.balance("p1").await,
        ("35.00".to_string(), "0.00".to_string())
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_chargeback_and_its_reversal_follow_the_dispute(app: TestApp) {
    app.player("p1").await;
    let id = captured_deposit(&app, "stripe", "40.00").await;
    let reference = payment(&app, &id).await["provider_reference"]
        .as_str()
        .unwrap()
        .to_string();
    let control = app.simulator_url("stripe");
    let client = reqwest::Client::new();
    let dispute: Value = client
        .post(format!(
            "{control}/_sim/payment_intents/{reference}/dispute"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dispute["object"], "dispute", "{dispute}");
    until_status(&app, &id, "charged_back").await;
    assert_eq!(app.balance("p1").await.0, "0.00");
    app.assert_ledger_verifies().await;
    let closed = client
        .post(format!(
            "{control}/_sim/disputes/{}/close",
            dispute["id"].as_str().unwrap()
        ))
        .form(&[("status", "won")])
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), StatusCode::OK);
    until_status(&app, &id, "captured").await;
    assert_eq!(app.balance("p1").await.0, "40.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_payout_is_paid_on_payout_paid(app: TestApp) {
    verified_player(&app, "p1", "100.00").await;
    // Payouts go where the player's last deposit was captured.
    captured_deposit(&app, "stripe", "10.00").await;
    // Wagered once over, so the payout needs no review.
    app.debit("bet-1", "p1", "10.00").await;
    let id = request_payout(&app, "p1", "40.00").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let view = loop {
        let view = app.get(&format!("/v1/payouts/{id}")).await.body;
        if view["status"] == "paid" || tokio::time::Instant::now() > deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (view["status"].as_str(), view["provider"].as_str()),
        (Some("paid"), Some("stripe")),
        "{view}"
    );
    assert_eq!(
        app.balance("p1").await,
        ("60.00".to_string(), "0.00".to_string())
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_timeout_after_charging_is_settled_by_status_sync_without_a_second_charge(app: TestApp) {
    app.player("p1").await;
    route_cards_to(&app, "stripe_slow").await;
    // The first attempt times out after Stripe charged; the retry carries the same
    // Idempotency-Key and gets Stripe's saved answer instead of a second charge.
    let answer = start_deposit(&app, "25.00").await;
    let id = answer.body["payment_id"].as_str().unwrap().to_string();
    assert_eq!(answer.body["status"], "authorized", "{}", answer.body);
    // Events are held back a minute: only status sync can tell Kassa the intent succeeded.
    let view = until_status(&app, &id, "captured").await;
    let intents = intents_of(&app, "stripe_slow", &id).await;
    assert_eq!(
        intents.len(),
        1,
        "exactly one charge at Stripe: {intents:?}"
    );
    assert_eq!(intents[0]["status"], "succeeded");
    assert_eq!(view["provider_reference"], intents[0]["id"]);
    assert_eq!(app.balance("p1").await.0, "25.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

/// Runs `tests/stripe_sdk.py` with `request` on stdin; its JSON answer.
fn run_sdk(python: &str, request: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/stripe_sdk.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {python}: {e}"));
    let input = serde_json::to_vec(request).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "stripe_sdk.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// An HTTP endpoint collecting what is POSTed to it: (Stripe-Signature, raw body).
async fn capture_endpoint() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let router = axum::Router::new().route(
        "/",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: String| async move {
                let signature = headers
                    .get("stripe-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let _ = sender.send((signature, body));
                StatusCode::OK
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, receiver)
}

async fn the_official_stripe_sdk_agrees_with_the_simulator_and_with_kassa(app: TestApp) {
    let Some(python) = common::interop_python("KASSA_STRIPE_PYTHON", "stripe==16.1.0") else {
        return app.stop().await;
    };
    // The SDK creates, confirms and retrieves an intent on the simulator.
    let (capture_url, mut captured) = capture_endpoint().await;
    let simulator_secret = "whsec_sdk_interop";
    let simulator = kassa_sim::stripe::start(kassa_sim::stripe::StripeSimConfig {
        listen: "127.0.0.1:0".into(),
        webhook_secret: simulator_secret.into(),
        webhook_url: Some(capture_url),
        webhook_delay_ms: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let sdk = run_sdk(
        &python,
        &json!({"do": "intent", "api_base": simulator.base_url(), "api_key": "sk_test_sdk_interop",
                "payment_method": "pm_card_visa", "return_url": "http://shop/return"}),
    );
    assert_eq!(sdk["created"]["object"], "payment_intent", "{sdk}");
    assert_eq!(sdk["created"]["status"], "requires_confirmation");
    assert_eq!(
        sdk["created"]["metadata"]["kassa_payment_id"],
        "pay_sdk_interop"
    );
    assert_eq!(sdk["confirmed"]["status"], "succeeded");
    assert_eq!(
        (
            sdk["retrieved"]["status"].as_str(),
            sdk["retrieved"]["amount_received"].as_i64()
        ),
        (Some("succeeded"), Some(1234))
    );
    assert_eq!(
        sdk["declined"],
        json!({"code": "card_declined", "decline_code": "insufficient_funds", "http_status": 402})
    );
    // stripe.Webhook.construct_event accepts what the simulator signed, and nothing altered.
    let mut kinds = Vec::new();
    while !kinds.contains(&"payment_intent.succeeded".to_string()) {
        let (header, payload) = tokio::time::timeout(Duration::from_secs(10), captured.recv())
            .await
            .expect("the simulator sends its events")
            .unwrap();
        let verified = run_sdk(
            &python,
            &json!({"do": "construct_event", "payload": payload, "header": header, "secret": simulator_secret}),
        );
        assert_eq!(verified["verified"], true, "{verified} for {payload}");
        let tampered = payload.replacen("\"livemode\":false", "\"livemode\":true", 1);
        let refused = run_sdk(
            &python,
            &json!({"do": "construct_event", "payload": tampered, "header": header, "secret": simulator_secret}),
        );
        assert_eq!(refused["verified"], false);
        kinds.push(verified["type"].as_str().unwrap().to_string());
    }
    simulator.stop().await;

    // Kassa accepts an event signed the SDK's way, for a payment waiting on 3-D Secure.
    app.player("p1").await;
    route_cards_to(&app, "stripe_3ds").await;
    let answer = start_deposit(&app, "20.00").await;
    let id = answer.body["payment_id"].as_str().unwrap().to_string();
    let reference = payment(&app, &id).await["provider_reference"].clone();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let payload = json!({"id": "evt_sdk_signed_1", "object": "event", "type": "payment_intent.succeeded",
        "created": now, "livemode": false, "data": {"object": {"id": reference, "object": "payment_intent",
        "status": "succeeded", "amount": 2000, "currency": "eur", "metadata": {"kassa_payment_id": id}}}})
    .to_string();
    let signed = run_sdk(
        &python,
        &json!({"do": "sign", "payload": payload, "secret": "whsec_kassa_stripe_3ds", "timestamp": now}),
    );
    let deliver = |body: String| {
        app.client
            .post(format!("{}/v1/providers/stripe_3ds/webhook", app.base))
            .header("content-type", "application/json")
            .header("stripe-signature", signed["header"].as_str().unwrap())
            .body(body)
            .send()
    };
    let forged = deliver(payload.replace("2000", "2001")).await.unwrap();
    assert!(forged.status().is_client_error(), "{}", forged.status());
    let accepted = deliver(payload.clone()).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    until_status(&app, &id, "captured").await;
    assert_eq!(app.balance("p1").await.0, "20.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}
