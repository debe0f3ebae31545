//! The Adyen connector against the Adyen simulator over real HTTP, on both backends: hosted
//! page and 3-D Secure deposits, soft declines cascading to the sandbox and hard ones not,
//! refunds, chargebacks and their reversal, payouts, a timeout after the authorisation
//! settled without a second charge, and a notification batch with a forged item. The money:
//! the ledger verifies after each.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::risk_rules::{fired, never, read, rule, set_rules};
use common::{pay_with_card, set_routing, TestApp};
use kassa_server::config::Config;
use kassa_sim::adyen::cards;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ACCOUNT: &str = "adyen";
const MERCHANT_ACCOUNT: &str = "KassaECOM";
const HMAC_KEY: &str = "9F3C1A2B4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8";

contract_tests_with!(
    a_hosted_page_deposit_is_captured_by_notification_and_refunded => adyen_first,
    a_three_ds_challenge_is_answered_by_form_posts => adyen_first,
    soft_declines_cascade_to_the_sandbox_and_hard_ones_do_not => adyen_first,
    a_chargeback_and_its_reversal_move_the_money_back_and_forth => adyen_first,
    a_payout_is_paid_by_the_payout_notification => adyen_first,
    a_card_issued_abroad_counts_in_the_players_next_decision => adyen_first,
    a_timeout_after_the_authorisation_never_charges_twice => |c: &mut Config| {
        adyen_first(c);
        let adyen = &mut c.providers.accounts[0];
        adyen.settings.insert("timeout_ms".into(), 500.into());
        adyen.settings.insert("attempts_max".into(), 1.into());
    },
    a_batch_with_a_forged_item_applies_the_good_one_and_answers_accepted => silent_simulator,
    a_notification_signed_by_adyens_sdk_is_accepted => silent_simulator,
    a_soft_decline_at_stripe_cascades_to_adyen_in_the_same_payment => |c: &mut Config| {
        adyen_first(c);
        let soft = common::stripe_account("stripe_soft", "pm_card_chargeDeclinedProcessingError");
        c.providers.accounts.push(soft);
    },
    an_abandoned_hosted_page_payment_expires_without_a_status_lookup => |c: &mut Config| {
        adyen_first(c);
        c.payments.status_sync_after_ms = 200;
        c.payments.status_sync_interval_ms = 100;
        c.payments.expire_after_ms = 1_000;
    },
);

/// [`adyen_first`] with the simulator's own notifications late enough not to matter: the
/// test sends them.
fn silent_simulator(config: &mut Config) {
    adyen_first(config);
    config.sandbox.webhook_delay_ms = 60_000;
}

/// An Adyen account (embedded simulator) before the default sandbox account.
fn adyen_first(config: &mut Config) {
    common::fast_background(config);
    let adyen = common::adyen_account(ACCOUNT, HMAC_KEY);
    config.providers.accounts.insert(0, adyen);
}

async fn route_to(app: &TestApp, accounts: &[&str]) {
    set_routing(
        app,
        json!({"rules": [{"id": "cards", "when": {"methods": ["card"]},
            "pick": {"strategy": "priority", "accounts": accounts}}]}),
    )
    .await;
}

/// The card the simulator decides payments started without card details with (`None`: the
/// hosted page).
async fn card_on_file(app: &TestApp, card: Option<&str>) {
    let url = format!("{}/_sim/card-on-file", app.simulator_url(ACCOUNT));
    let answer = app
        .client
        .put(url)
        .json(&json!({ "card_number": card }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
}

async fn payment(app: &TestApp, id: &str) -> Value {
    let answer = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

async fn until_status(app: &TestApp, id: &str, wanted: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = payment(app, id).await;
        if view["status"] == wanted || tokio::time::Instant::now() > deadline {
            assert_eq!(view["status"], wanted, "{view}");
            return view;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The payments the simulator holds for Kassa's payment `id`.
async fn held_by_simulator(app: &TestApp, id: &str) -> Vec<Value> {
    let url = format!(
        "{}/_sim/payments?reference={id}",
        app.simulator_url(ACCOUNT)
    );
    let answer: Value = app
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["payments"].as_array().unwrap().clone()
}

/// Adyen's pspReference of Kassa's payment `id`.
async fn psp_reference(app: &TestApp, id: &str) -> String {
    let stored = payment(app, id).await;
    stored["provider_reference"].as_str().unwrap().to_string()
}

async fn deposit(app: &TestApp, amount: &str) -> Value {
    common::start_deposit(app, amount).await.body
}

async fn a_hosted_page_deposit_is_captured_by_notification_and_refunded(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &[ACCOUNT]).await;
    let started = deposit(&app, "50.00").await;
    let id = started["payment_id"].as_str().unwrap();
    assert_eq!(started["provider"], ACCOUNT);
    let page = started["redirect_url"].as_str().unwrap();
    assert!(page.contains("/hpp/"), "{started}");
    let landed = pay_with_card(page, cards::APPROVE_VISA, "").await;
    assert!(
        landed.contains(&format!("/cashier/return?payment_id={id}&redirectResult=")),
        "{landed}"
    );
    let captured = until_status(&app, id, "captured").await;
    // The authorisation's additionalData names the card (ADR 84), never its number.
    assert_eq!(
        captured["card"],
        json!({"country": "NL", "brand": "visa", "last4": "1111"}),
        "{captured}"
    );
    assert_eq!(app.balance("p1").await.0, "50.00");
    let reference = captured["provider_reference"].as_str().unwrap();
    let refund = app
        .send(
            Method::POST,
            &format!("/v1/payments/{id}/refunds"),
            Some(&app.api_key),
            Some(&json!({"amount": "20.00"})),
            &[("Idempotency-Key", "refund-1")],
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.body);
    assert_eq!(
        refund.body["status"], "pending",
        "the outcome comes by notification"
    );
    until_status(&app, id, "partially_refunded").await;
    assert_eq!(app.balance("p1").await, ("30.00".into(), "0.00".into()));
    let held = held_by_simulator(&app, id).await;
    assert_eq!(held.len(), 1);
    assert_eq!(
        (
            held[0]["pspReference"].as_str(),
            held[0]["refunded"].as_i64()
        ),
        (Some(reference), Some(2000))
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

/// A card the authorisation says Germany issued: shown on the payment, and read by the
/// Maltese player's next decision (ADR 84).
async fn a_card_issued_abroad_counts_in_the_players_next_decision(app: TestApp) {
    let player = json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT"});
    assert!(app.put("/v1/players/p1", player).await.status.is_success());
    let rules = json!({"thresholds": never(), "rules": [
        rule("card-not-kyc", json!({"flag": "card_country_mismatch_kyc_30d"}), 2),
    ]});
    set_rules(&app, "", rules).await;
    route_to(&app, &[ACCOUNT]).await;
    card_on_file(&app, Some(cards::APPROVE_VISA_DE)).await;
    let first = deposit(&app, "30.00").await;
    let first = until_status(&app, first["payment_id"].as_str().unwrap(), "captured").await;
    assert_eq!(first["card"]["country"], "DE", "{first}");
    assert!(fired(&first["risk"]).is_empty(), "{}", first["risk"]);
    let second = deposit(&app, "10.00").await;
    let second = payment(&app, second["payment_id"].as_str().unwrap()).await;
    assert_eq!(
        read(
            &second["risk"],
            "card-not-kyc",
            "card_country_mismatch_kyc_30d"
        ),
        true,
        "{}",
        second["risk"]
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_three_ds_challenge_is_answered_by_form_posts(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &[ACCOUNT]).await;
    // On the hosted page: the 3DS2 card leads to the challenge, its password authorises.
    let hosted = deposit(&app, "25.00").await;
    let page = hosted["redirect_url"].as_str().unwrap();
    let landed = pay_with_card(page, cards::THREE_DS2, cards::CHALLENGE_PASSWORD).await;
    assert!(landed.contains("redirectResult="), "{landed}");
    until_status(&app, hosted["payment_id"].as_str().unwrap(), "captured").await;
    // With the card on file: the start itself answers ChallengeShopper; a wrong password
    // refuses.
    card_on_file(&app, Some(cards::THREE_DS2)).await;
    let challenged = deposit(&app, "10.00").await;
    let challenge = challenged["redirect_url"].as_str().unwrap();
    assert!(challenge.contains("/3ds/"), "{challenged}");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser
        .get(challenge)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"otp\""), "{page}");
    let answer = browser
        .post(challenge)
        .form(&[("otp", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let refused = until_status(&app, challenged["payment_id"].as_str().unwrap(), "declined").await;
    assert_eq!(refused["failure_reason"], "authentication_failed");
    assert_eq!(app.balance("p1").await.0, "25.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn soft_declines_cascade_to_the_sandbox_and_hard_ones_do_not(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &[ACCOUNT, "sandbox"]).await;
    card_on_file(&app, Some(cards::ACQUIRER_ERROR)).await;
    let soft = deposit(&app, "10.00").await;
    assert_eq!(soft["provider"], "sandbox", "{soft}");
    let stored = payment(&app, soft["payment_id"].as_str().unwrap()).await;
    let attempts = stored["routing"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{stored}");
    assert_eq!(
        (
            &attempts[0]["provider"],
            &attempts[0]["outcome"],
            &attempts[0]["reason"],
            &attempts[0]["cascaded"]
        ),
        (
            &json!(ACCOUNT),
            &json!("declined"),
            &json!("acquirer_unavailable"),
            &json!(true)
        )
    );
    for (card, reason) in [
        (cards::NOT_ENOUGH_BALANCE, "insufficient_funds"),
        (cards::STOLEN_CARD, "stolen_card"),
    ] {
        card_on_file(&app, Some(card)).await;
        let hard = common::try_deposit(&app, "10.00").await;
        let id = hard.body["payment_id"].as_str().unwrap().to_string();
        let stored = payment(&app, &id).await;
        assert_eq!(
            (stored["status"].as_str(), stored["provider"].as_str()),
            (Some("declined"), Some(ACCOUNT)),
            "{stored}"
        );
        assert_eq!(stored["failure_reason"], reason);
        assert_eq!(
            stored["routing"]["attempts"].as_array().unwrap().len(),
            1,
            "{stored}"
        );
    }
    assert_eq!(app.balance("p1").await.0, "0.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_chargeback_and_its_reversal_move_the_money_back_and_forth(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &[ACCOUNT]).await;
    card_on_file(&app, Some(cards::APPROVE_MASTERCARD)).await;
    let started = deposit(&app, "40.00").await;
    assert_eq!(
        started["status"], "authorized",
        "Authorised at once: {started}"
    );
    let id = started["payment_id"].as_str().unwrap();
    let captured = until_status(&app, id, "captured").await;
    let reference = captured["provider_reference"].as_str().unwrap();
    let dispute = |step: &'static str| {
        let url = format!(
            "{}/_sim/payments/{reference}/{step}",
            app.simulator_url(ACCOUNT)
        );
        let client = app.client.clone();
        async move {
            let answer = client.post(url).send().await.unwrap();
            assert_eq!(answer.status(), StatusCode::ACCEPTED);
        }
    };
    dispute("chargeback").await;
    until_status(&app, id, "charged_back").await;
    assert_eq!(app.balance("p1").await.0, "0.00");
    dispute("chargeback_reversed").await;
    until_status(&app, id, "captured").await;
    assert_eq!(app.balance("p1").await.0, "40.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_payout_is_paid_by_the_payout_notification(app: TestApp) {
    common::verified_player(&app, "p1", "100.00").await;
    let id = common::request_payout(&app, "p1", "40.00").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let paid = loop {
        let view = app.get(&format!("/v1/payouts/{id}")).await.body;
        if view["status"] == "paid" || tokio::time::Instant::now() > deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert_eq!(
        (paid["status"].as_str(), paid["provider"].as_str()),
        (Some("paid"), Some(ACCOUNT)),
        "{paid}"
    );
    assert_eq!(app.balance("p1").await, ("60.00".into(), "0.00".into()));
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_timeout_after_the_authorisation_never_charges_twice(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &[ACCOUNT]).await;
    // Adyen authorises at once and answers after 1.5 s; Kassa gives up after 0.5 s.
    card_on_file(&app, Some(cards::SLOW_ANSWER)).await;
    let body = json!({"amount": "30.00", "currency": "EUR", "method": "card", "player_id": "p1",
        "return_url": format!("{}/cashier/return", app.base), "meta": {"country": "MT"}});
    let key = [("Idempotency-Key", "slow-deposit")];
    let first = app
        .send(
            Method::POST,
            "/v1/payments/init",
            Some(&app.api_key),
            Some(&body),
            &key,
        )
        .await;
    assert!(
        first.status.is_server_error(),
        "{} {}",
        first.status,
        first.body
    );
    // The merchant retries with its key: the same payment id, so the same Idempotency-Key
    // at Adyen, which answers its first result instead of charging again.
    let again = app
        .send(
            Method::POST,
            "/v1/payments/init",
            Some(&app.api_key),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    let id = again.body["payment_id"].as_str().unwrap();
    // The AUTHORISATION notification, refused while Kassa held no payment, is sent again
    // until Kassa answers [accepted].
    until_status(&app, id, "captured").await;
    assert_eq!(
        held_by_simulator(&app, id).await.len(),
        1,
        "one charge at Adyen"
    );
    assert_eq!(app.balance("p1").await.0, "30.00", "credited once");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn an_abandoned_hosted_page_payment_expires_without_a_status_lookup(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &[ACCOUNT]).await;
    let started = deposit(&app, "15.00").await;
    let id = started["payment_id"].as_str().unwrap();
    assert_eq!(started["status"], "pending");
    // Adyen has no payment lookup: status sync cannot ask, yet the payment ends in time.
    let expired = until_status(&app, id, "expired").await;
    assert_eq!(expired["failure_reason"], "no_answer_from_provider");
    assert_eq!(app.balance("p1").await.0, "0.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

/// An unsigned AUTHORISATION notification item for Kassa's payment.
fn unsigned_item(psp_reference: &str, merchant_reference: &str, value: i64) -> Value {
    json!({
        "pspReference": psp_reference, "merchantAccountCode": MERCHANT_ACCOUNT,
        "merchantReference": merchant_reference, "amount": {"value": value, "currency": "EUR"},
        "eventCode": "AUTHORISATION", "success": "true", "eventDate": "2026-12-06T12:00:00+00:00"
    })
}

/// `item` with its `hmacSignature`.
fn signed(mut item: Value, signature: String) -> Value {
    item["additionalData"] = json!({ "hmacSignature": signature });
    item
}

/// A notification item for Kassa's payment, signed with `key` as Adyen signs it.
fn item(psp_reference: &str, merchant_reference: &str, value: i64, key: &str) -> Value {
    let item = unsigned_item(psp_reference, merchant_reference, value);
    let signature = kassa_sim::adyen::hmac_signature(key, &item).unwrap();
    signed(item, signature)
}

/// Posts a notification batch to the Adyen account's webhook; answers the body.
async fn notify(app: &TestApp, items: Vec<Value>) -> String {
    let batch = kassa_sim::adyen::notifications::batch(items);
    let answer = app
        .client
        .post(format!("{}/v1/providers/{ACCOUNT}/webhook", app.base))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    answer.text().await.unwrap()
}

async fn a_batch_with_a_forged_item_applies_the_good_one_and_answers_accepted(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &[ACCOUNT]).await;
    card_on_file(&app, Some(cards::APPROVE_VISA)).await;
    let good = deposit(&app, "20.00").await;
    let other = deposit(&app, "70.00").await;
    let reference = |p: &Value| p["payment_id"].as_str().unwrap().to_string();
    let good_psp = psp_reference(&app, &reference(&good)).await;
    let other_psp = psp_reference(&app, &reference(&other)).await;
    let forged = item(&other_psp, &reference(&other), 7000, &"00".repeat(32));
    let good_item = item(&good_psp, &reference(&good), 2000, HMAC_KEY);
    assert_eq!(notify(&app, vec![good_item, forged]).await, "[accepted]");
    assert_eq!(payment(&app, &reference(&good)).await["status"], "captured");
    assert_eq!(
        payment(&app, &reference(&other)).await["status"],
        "authorized"
    );
    assert_eq!(app.balance("p1").await.0, "20.00");
    let log = app
        .send(
            Method::GET,
            "/v1/admin/webhook-deliveries?limit=10",
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
    assert!(
        outcomes.contains(&"invalid_signature") && outcomes.contains(&"processed"),
        "{outcomes:?}"
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

const SIGNER: &str = r#"
import json, sys
from Adyen.util import generate_notification_sig
case = json.load(sys.stdin)
print(generate_notification_sig(case["item"], case["key"]).decode("utf-8"))
"#;

/// `item`'s hmacSignature as Adyen's own Python package computes it.
fn sign_with_sdk(python: &str, item: &Value, key: &str) -> String {
    let mut child = Command::new(python)
        .args(["-c", SIGNER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(&json!({"item": item, "key": key})).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

async fn a_notification_signed_by_adyens_sdk_is_accepted(app: TestApp) {
    let Some(python) = common::interop_python("KASSA_ADYEN_PYTHON", "Adyen==16.0.0") else {
        return app.stop().await;
    };
    app.player("p1").await;
    route_to(&app, &[ACCOUNT]).await;
    card_on_file(&app, Some(cards::APPROVE_VISA)).await;
    let started = deposit(&app, "12.34").await;
    let id = started["payment_id"].as_str().unwrap();
    let psp_reference = psp_reference(&app, id).await;
    let item = unsigned_item(&psp_reference, id, 1234);
    let signature = sign_with_sdk(&python, &item, HMAC_KEY);
    assert_eq!(
        notify(&app, vec![signed(item, signature)]).await,
        "[accepted]"
    );
    assert_eq!(payment(&app, id).await["status"], "captured");
    assert_eq!(app.balance("p1").await.0, "12.34");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

/// The two real-shaped aggregators together: Stripe declines softly (`processing_error`) at
/// the start, the same payment goes on to Adyen, the player pays on Adyen's hosted page, and
/// Adyen's notification credits the player once. Stripe holds one declined intent.
async fn a_soft_decline_at_stripe_cascades_to_adyen_in_the_same_payment(app: TestApp) {
    app.player("p1").await;
    route_to(&app, &["stripe_soft", ACCOUNT]).await;
    let started = deposit(&app, "40.00").await;
    let id = started["payment_id"].as_str().unwrap();
    assert_eq!(started["provider"], ACCOUNT, "{started}");
    let view = payment(&app, id).await;
    let attempts = view["routing"]["attempts"].as_array().unwrap();
    let summary: Vec<_> = attempts
        .iter()
        .map(|a| {
            (
                a["provider"].as_str(),
                a["outcome"].as_str(),
                a["cascaded"].as_bool(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Some("stripe_soft"), Some("declined"), Some(true)),
            (Some(ACCOUNT), Some("started"), Some(false)),
        ],
        "{view}"
    );
    let page = started["redirect_url"].as_str().unwrap();
    pay_with_card(page, cards::APPROVE_VISA, "").await;
    until_status(&app, id, "captured").await;
    assert_eq!(app.balance("p1").await.0, "40.00");
    let intents_url = format!(
        "{}/_sim/payment_intents?kassa_payment_id={id}",
        app.simulator_url("stripe_soft")
    );
    let intents: Value = reqwest::get(intents_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let intents = intents["data"].as_array().unwrap();
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["status"], "requires_payment_method");
    assert_eq!(held_by_simulator(&app, id).await.len(), 1);
    app.assert_ledger_verifies().await;
    app.stop().await;
}
