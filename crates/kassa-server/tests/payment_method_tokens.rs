//! Live-shaped aggregator deposits, on both backends over real HTTP against the Stripe and
//! Adyen simulators: a payment method the cashier tokenized in the browser (Stripe.js
//! `pm_…`, Adyen Drop-in's `paymentMethod`) is sent to the account that made it, first; a
//! token of an account off the route is refused before anything starts; Adyen's `Received`
//! without an action is a deposit under way, settled by notification; a refund Adyen
//! received and then refused gives its hold back. The ledger verifies after each.

mod common;

use std::time::Duration;

use common::{set_routing, TestApp};
use kassa_server::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ADYEN: &str = "adyen";
const STRIPE: &str = "stripe";
const HMAC_KEY: &str = "9F3C1A2B4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8";

contract_tests_with!(
    a_stripe_token_goes_first_and_is_confirmed_instead_of_the_accounts_method => accounts,
    a_token_of_an_account_off_the_route_is_refused_and_starts_nothing => accounts,
    a_malformed_token_is_a_validation_error => accounts,
    an_adyen_drop_in_card_is_authorised_without_the_hosted_page => accounts,
    a_sepa_debit_received_by_adyen_is_under_way_until_its_notification => accounts,
    a_refund_adyen_refuses_after_receiving_it_gives_the_hold_back => accounts,
);

/// The sandbox (default), a Stripe account whose own test method approves, and an Adyen
/// account, all served by embedded simulators.
fn accounts(config: &mut Config) {
    common::fast_background(config);
    config
        .providers
        .accounts
        .push(common::stripe_account(STRIPE, "pm_card_visa"));
    config
        .providers
        .accounts
        .push(common::adyen_account(ADYEN, HMAC_KEY));
}

/// Cards and debits go to `accounts` in this order.
async fn route_to(app: &TestApp, accounts: &[&str]) {
    set_routing(
        app,
        json!({"rules": [{"id": "all", "when": {"methods": ["card", "sepa_direct_debit"]},
            "pick": {"strategy": "priority", "accounts": accounts}}]}),
    )
    .await;
}

async fn deposit_with(app: &TestApp, method: &str, token: Option<Value>) -> common::Answer {
    let mut body = json!({
        "amount": "50.00", "currency": "EUR", "method": method, "player_id": "p1",
        "return_url": format!("{}/cashier/return", app.base), "meta": {"country": "MT"}
    });
    if let Some(token) = token {
        body["payment_method_token"] = token;
    }
    common::post_deposit(app, &body).await
}

/// The deposit `id` is captured and credited once, and the books balance.
async fn credited_once(app: TestApp, id: &str) {
    until_status(&app, id, "captured").await;
    until_balance(&app, ("50.00", "0.00")).await;
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn until_status(app: &TestApp, id: &str, wanted: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = app.get(&format!("/v1/payments/{id}")).await.body;
        if view["status"] == wanted || tokio::time::Instant::now() > deadline {
            assert_eq!(view["status"], wanted, "{view}");
            return view;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn until_balance(app: &TestApp, wanted: (&str, &str)) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (cash, held) = app.balance("p1").await;
        if (cash.as_str(), held.as_str()) == wanted || tokio::time::Instant::now() > deadline {
            assert_eq!((cash.as_str(), held.as_str()), wanted);
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The payment intents the Stripe simulator holds for Kassa's payment `id`.
async fn intents_of(app: &TestApp, id: &str) -> Vec<Value> {
    let url = format!(
        "{}/_sim/payment_intents?kassa_payment_id={id}",
        app.simulator_url(STRIPE)
    );
    let answer: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    answer["data"].as_array().unwrap().clone()
}

async fn a_stripe_token_goes_first_and_is_confirmed_instead_of_the_accounts_method(app: TestApp) {
    app.player("p1").await;
    // The rules put the sandbox first; the token's account goes before it.
    route_to(&app, &["sandbox", ADYEN, STRIPE]).await;
    let token = json!({"account": STRIPE, "token": "pm_card_chargeDeclinedInsufficientFunds"});
    let declined = deposit_with(&app, "card", Some(token)).await;
    assert_eq!(declined.status, StatusCode::CREATED, "{}", declined.body);
    assert_eq!(declined.body["provider"], STRIPE, "{}", declined.body);
    // The player's own card was used (the account's method approves): a hard decline,
    // which does not cascade.
    let id = declined.body["payment_id"].as_str().unwrap();
    let view = until_status(&app, id, "declined").await;
    assert_eq!(view["failure_reason"], "insufficient_funds", "{view}");
    let reasons = view["routing"]["decision"]["reasons"].to_string();
    assert!(reasons.contains("stripe first"), "{view}");
    let intents = intents_of(&app, id).await;
    assert_eq!(intents.len(), 1, "{intents:?}");

    let token = json!({"account": STRIPE, "token": "pm_card_mastercard"});
    let paid = deposit_with(&app, "card", Some(token)).await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    let id = paid.body["payment_id"].as_str().unwrap();
    until_status(&app, id, "captured").await;
    until_balance(&app, ("50.00", "0.00")).await;
    let intents = intents_of(&app, id).await;
    assert_eq!(
        intents[0]["payment_method"], "pm_card_mastercard",
        "{intents:?}"
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_token_of_an_account_off_the_route_is_refused_and_starts_nothing(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &["sandbox", ADYEN]).await;
    let token = json!({"account": STRIPE, "token": "pm_card_visa"});
    let refused = deposit_with(&app, "card", Some(token)).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["error"], "payment_method_token_unusable");
    assert_eq!(refused.body["details"]["account"], STRIPE);
    let listed = app.get("/v1/payments?player_id=p1").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(
        listed.body["data"].as_array().map(Vec::len),
        Some(0),
        "{}",
        listed.body
    );
    app.stop().await;
}

async fn a_malformed_token_is_a_validation_error(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &[STRIPE]).await;
    for (token, field) in [
        (
            json!({"account": STRIPE, "token": ""}),
            "payment_method_token.token",
        ),
        // Control characters are refused by the body's extractor, before any field check.
        (
            json!({"account": STRIPE, "token": "pm_\u{0}x"}),
            "/payment_method_token/token",
        ),
        (
            json!({"account": STRIPE, "token": "x".repeat(8 * 1024 + 1)}),
            "payment_method_token.token",
        ),
        (
            json!({"account": "", "token": "pm_card_visa"}),
            "payment_method_token.account",
        ),
    ] {
        let refused = deposit_with(&app, "card", Some(token)).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.body
        );
        assert_eq!(
            refused.body["error"], "validation_failed",
            "{}",
            refused.body
        );
        assert_eq!(refused.body["details"]["field"], field, "{}", refused.body);
    }
    app.stop().await;
}

async fn an_adyen_drop_in_card_is_authorised_without_the_hosted_page(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &[ADYEN]).await;
    let drop_in = json!({"type": "scheme", "encryptedCardNumber": "test_4111111111111111",
        "encryptedExpiryMonth": "test_03", "encryptedExpiryYear": "test_2030",
        "encryptedSecurityCode": "test_737"});
    let token = json!({"account": ADYEN, "token": drop_in.to_string()});
    let started = deposit_with(&app, "card", Some(token)).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    assert!(started.body["redirect_url"].is_null(), "{}", started.body);
    let id = started.body["payment_id"].as_str().unwrap().to_string();
    credited_once(app, &id).await;
}

async fn a_sepa_debit_received_by_adyen_is_under_way_until_its_notification(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &[ADYEN]).await;
    // Without the Drop-in's IBAN there is nothing to debit: refused, no other account.
    let bare = deposit_with(&app, "sepa_direct_debit", None).await;
    assert_ne!(bare.status, StatusCode::CREATED, "{}", bare.body);
    let debit = json!({"type": "sepadirectdebit", "sepa.ownerName": "A Player",
        "sepa.ibanNumber": "NL13TEST0123456789"});
    let token = json!({"account": ADYEN, "token": debit.to_string()});
    let started = deposit_with(&app, "sepa_direct_debit", Some(token)).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    assert_eq!(
        started.body["next_action"]["type"], "processing",
        "{}",
        started.body
    );
    assert!(started.body["redirect_url"].is_null(), "{}", started.body);
    let id = started.body["payment_id"].as_str().unwrap().to_string();
    credited_once(app, &id).await;
}

async fn a_refund_adyen_refuses_after_receiving_it_gives_the_hold_back(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &[ADYEN]).await;
    let drop_in = json!({"type": "scheme", "encryptedCardNumber": "test_4111111111111111"});
    let token = json!({"account": ADYEN, "token": drop_in.to_string()});
    let started = deposit_with(&app, "card", Some(token)).await;
    let id = started.body["payment_id"].as_str().unwrap().to_string();
    until_status(&app, &id, "captured").await;
    let refusal = app
        .client
        .put(format!("{}/_sim/refund-refusal", app.simulator_url(ADYEN)))
        .json(&json!({"reason": "Insufficient balance on payment"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal.status(), StatusCode::NO_CONTENT);
    let refund = |key: &'static str, amount: &'static str| {
        let app = &app;
        let path = format!("/v1/payments/{id}/refunds");
        async move {
            app.send(
                Method::POST,
                &path,
                Some(&app.api_key),
                Some(&json!({ "amount": amount })),
                &[("Idempotency-Key", key)],
            )
            .await
        }
    };
    let first = refund("refund-1", "50.00").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["status"], "pending", "{}", first.body);
    // Held while Adyen decides, then back in cash when it refuses.
    until_balance(&app, ("50.00", "0.00")).await;
    let view = until_status(&app, &id, "captured").await;
    assert_eq!(view["refunded"], "0.00", "{view}");
    // The refund no longer holds anything: the whole amount can be refunded again.
    app.client
        .put(format!("{}/_sim/refund-refusal", app.simulator_url(ADYEN)))
        .json(&json!({"reason": null}))
        .send()
        .await
        .unwrap();
    let second = refund("refund-2", "50.00").await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    until_status(&app, &id, "refunded").await;
    until_balance(&app, ("0.00", "0.00")).await;
    app.assert_ledger_verifies().await;
    app.stop().await;
}
