//! KYC step-up through the sandbox ID provider (issue 19 item 5, docs/kyc.md): a refused
//! payout names a hosted verification page, the page is filled in as a browser would, the
//! provider's signed webhook applies the result once, and the payout then goes through (or,
//! rejected, still does not). Forged and replayed webhooks change nothing; a risk step-up and
//! the CDD threshold ask for the enhanced level; time to verify is recorded.

mod common;

use std::time::Duration;

use common::{rfc3339_now_plus, Answer, TestApp};
use kassa_connectors::idv_sandbox::{sign_idv_webhook, SIGNATURE_HEADER};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The sandbox ID provider's webhook secret in the default configuration.
const IDV_WEBHOOK_SECRET: &str = "idv_sandbox_webhook_secret_not_for_production";
/// The default configuration's ID provider account.
const IDV_ACCOUNT: &str = "idv-sandbox";

/// Quick webhooks from the simulators, metrics on (for the TTV histogram).
fn fast(config: &mut kassa_server::config::Config) {
    common::fast_background(config);
    config.sandbox.autopilot = false;
    config.metrics.listen = "127.0.0.1:0".into();
}

contract_tests_with!(
    an_approved_check_lets_the_payout_through_and_records_its_ttv => fast,
    a_rejected_check_keeps_payouts_refused => fast,
    a_resubmission_request_opens_a_new_page => fast,
    forged_and_replayed_webhooks_change_nothing_and_a_duplicate_applies_once => fast,
    the_view_never_shows_a_level_and_a_kyc_status_from_different_moments => fast,
    a_risk_step_up_opens_an_enhanced_check => fast,
    linked_gb_deposits_lock_withdrawals_until_enhanced_is_verified => fast,
);

/// A EUR player of `jurisdiction` (unverified unless `kyc_status` says) holding `funds`.
async fn player(app: &TestApp, player_id: &str, jurisdiction: &str, kyc_status: &str, funds: &str) {
    let body = json!({
        "currency": "EUR", "country": jurisdiction, "jurisdiction": jurisdiction,
        "kyc_status": kyc_status,
    });
    let answer = app.put(&format!("/v1/players/{player_id}"), body).await;
    assert!(answer.status.is_success(), "{}", answer.body);
    if funds != "0" {
        app.credit(&format!("fund-{player_id}"), player_id, funds)
            .await;
    }
}

async fn payout(app: &TestApp, player_id: &str, amount: &str) -> Answer {
    let body =
        json!({"amount": amount, "currency": "EUR", "method": "card", "player_id": player_id});
    app.post_idempotent("/v1/payouts/init", body).await
}

async fn kyc(app: &TestApp, player_id: &str) -> Value {
    let answer = app.get(&format!("/v1/players/{player_id}/kyc")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

/// Fills in the hosted page as a browser would: the form, then its post.
async fn verify_on_page(url: &str, last_name: &str, document_number: &str) {
    let browser = reqwest::Client::new();
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"verification-form\""), "{html}");
    let mut form = vec![
        ("first_name", "Ada"),
        ("last_name", last_name),
        ("birth_date", "1990-12-10"),
        ("document_number", document_number),
        // A Swedish passport: not the Maltese players' registration country.
        ("document_country", "SE"),
        ("document_file", "passport.jpg"),
    ];
    if html.contains("source_of_funds") {
        form.push(("source_of_funds", "salary"));
    }
    let submitted = browser.post(url).form(&form).send().await.unwrap();
    assert_eq!(submitted.status(), StatusCode::OK);
    assert!(submitted.text().await.unwrap().contains("id=\"submitted\""));
}

/// The player's check `check_id` once it is no longer pending (the webhook applied).
async fn completed_check(app: &TestApp, player_id: &str, check_id: &str) -> Value {
    for _ in 0..200 {
        let view = kyc(app, player_id).await;
        let check = view["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == check_id)
            .cloned()
            .unwrap_or_else(|| panic!("no check {check_id}: {view}"));
        if check["status"] != "pending" {
            return check;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("check {check_id} never completed")
}

/// A refusal's verification page and check id.
fn verification(refused: &Answer) -> (String, String) {
    let details = &refused.body["details"];
    let url = details["verification_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no verification_url: {}", refused.body));
    (
        url.to_string(),
        details["kyc_check_id"].as_str().unwrap().to_string(),
    )
}

async fn an_approved_check_lets_the_payout_through_and_records_its_ttv(app: TestApp) {
    player(&app, "k1", "MT", "none", "100.00").await;
    let refused = payout(&app, "k1", "20.00").await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (StatusCode::FORBIDDEN, "kyc_required"),
        "{}",
        refused.body
    );
    assert_eq!(refused.body["details"]["kyc_level"], "basic");
    let (url, check_id) = verification(&refused);
    // One open check per player and level: asking again names the same page.
    let again = payout(&app, "k1", "20.00").await;
    assert_eq!(verification(&again), (url.clone(), check_id.clone()));
    let view = kyc(&app, "k1").await;
    assert_eq!(view["levels"]["basic"], "pending", "{view}");
    assert_eq!(
        view["kyc_status"], "none",
        "kyc_status moves with results only"
    );
    assert_eq!(view["open_checks"].as_array().unwrap().len(), 1, "{view}");
    assert_eq!(view["open_checks"][0]["reason"], "first_withdrawal");

    verify_on_page(&url, "Lovelace", "P1234567").await;
    let check = completed_check(&app, "k1", &check_id).await;
    assert_eq!(check["status"], "verified", "{check}");
    assert!(check["time_to_verify_ms"].as_i64().unwrap() >= 0, "{check}");
    assert_eq!(check["document_checks"][0]["result"], "clear", "{check}");
    let view = kyc(&app, "k1").await;
    assert_eq!(
        (&view["levels"]["basic"], &view["kyc_status"]),
        (&json!("verified"), &json!("verified")),
        "{view}"
    );
    let player = app.get("/v1/players/k1").await;
    assert_eq!(player.body["kyc_status"], "verified", "{}", player.body);
    // The verified document's country is the KYC country from now on (ADR 86).
    assert_eq!(check["document_country"], "SE", "{check}");
    assert_eq!(view["kyc_country"], "SE", "{view}");

    let paid = payout(&app, "k1", "20.00").await;
    assert!(paid.status.is_success(), "{}", paid.body);

    let metrics = app.metrics_text().await;
    for series in [
        "kassa_kyc_time_to_verify_seconds_count{level=\"basic\",outcome=\"approved\"}",
        "kassa_kyc_checks_total{level=\"basic\",outcome=\"approved\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
}

async fn a_rejected_check_keeps_payouts_refused(app: TestApp) {
    player(&app, "k2", "MT", "none", "100.00").await;
    let (url, check_id) = verification(&payout(&app, "k2", "20.00").await);
    verify_on_page(&url, "Lovelace", "EXP0042").await;
    let check = completed_check(&app, "k2", &check_id).await;
    assert_eq!(
        (&check["status"], &check["result_reason"]),
        (&json!("rejected"), &json!("document_expired")),
        "{check}"
    );
    assert_eq!(check["document_checks"][0]["check"], "expiry");
    assert_eq!(check["document_checks"][0]["result"], "consider");
    // A rejected document's country is kept on its check, never as the KYC country.
    assert_eq!(check["document_country"], "SE", "{check}");
    assert!(kyc(&app, "k2").await["kyc_country"].is_null());
    let refused = payout(&app, "k2", "20.00").await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (StatusCode::FORBIDDEN, "kyc_required"),
        "{}",
        refused.body
    );
    assert_eq!(refused.body["details"]["kyc_status"], "rejected");
    assert!(
        refused.body["details"].get("verification_url").is_none(),
        "a rejected player cannot retry by asking for a payout: {}",
        refused.body
    );
    assert_eq!(app.balance("k2").await.0, "100.00", "nothing held");
    // The operator may open a new check.
    let opened = app
        .post("/v1/players/k2/kyc", json!({"level": "basic"}))
        .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    assert_eq!(opened.body["reason"], "operator");
    let same = app
        .post("/v1/players/k2/kyc", json!({"level": "basic"}))
        .await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.body);
    assert_eq!(same.body["id"], opened.body["id"]);
}

async fn a_resubmission_request_opens_a_new_page(app: TestApp) {
    player(&app, "k5", "MT", "none", "100.00").await;
    let (url, check_id) = verification(&payout(&app, "k5", "20.00").await);
    verify_on_page(&url, "Lovelace", "BLUR-1").await;
    let check = completed_check(&app, "k5", &check_id).await;
    assert_eq!(
        (&check["status"], &check["result_reason"]),
        (
            &json!("resubmission_requested"),
            &json!("document_unreadable")
        ),
        "{check}"
    );
    let view = kyc(&app, "k5").await;
    assert_eq!(
        (&view["levels"]["basic"], &view["kyc_status"]),
        (&json!("resubmission_requested"), &json!("pending")),
        "{view}"
    );
    // The next refusal opens a new check with its own page; submitted again, it verifies.
    let refused = payout(&app, "k5", "20.00").await;
    assert_eq!(refused.error_code(), "kyc_required", "{}", refused.body);
    let (again_url, again_id) = verification(&refused);
    assert_ne!(again_id, check_id);
    verify_on_page(&again_url, "Lovelace", "P1234567").await;
    let again = completed_check(&app, "k5", &again_id).await;
    assert_eq!(again["status"], "verified", "{again}");
    let paid = payout(&app, "k5", "20.00").await;
    assert!(paid.status.is_success(), "{}", paid.body);
}

/// A result for `check` as the sandbox ID provider words it.
fn result_body(check: &Value, event_id: &str, review_result: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event_id": event_id, "type": "applicant.reviewed",
        "applicant_id": check["applicant_id"], "external_user_id": check["id"],
        "level": check["level"], "review_result": review_result, "reason": null,
        "checks": [{"document": "identity_document", "check": "expiry", "result": "clear"}],
    }))
    .unwrap()
}

async fn send_result(app: &TestApp, body: &[u8], signature: &str) -> (StatusCode, String) {
    let response = app
        .client
        .post(format!("{}/v1/providers/{IDV_ACCOUNT}/webhook", app.base))
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn forged_and_replayed_webhooks_change_nothing_and_a_duplicate_applies_once(app: TestApp) {
    player(&app, "k3", "MT", "none", "100.00").await;
    verification(&payout(&app, "k3", "20.00").await);
    let check = kyc(&app, "k3").await["open_checks"][0].clone();
    let body = result_body(&check, "idvevt_test_1", "approved");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    let forged = sign_idv_webhook(b"not the secret", now, &body);
    let (status, text) = send_result(&app, &body, &forged).await;
    assert!(status.is_client_error(), "{status} {text}");
    // Replayed after the window: signed, but its signed timestamp is stale.
    let replayed = sign_idv_webhook(IDV_WEBHOOK_SECRET.as_bytes(), now - 3_600, &body);
    let (status, text) = send_result(&app, &body, &replayed).await;
    assert!(status.is_client_error(), "{status} {text}");
    let view = kyc(&app, "k3").await;
    assert_eq!(
        view["levels"]["basic"], "pending",
        "nothing applied: {view}"
    );

    let signed = sign_idv_webhook(IDV_WEBHOOK_SECRET.as_bytes(), now, &body);
    let (status, first) = send_result(&app, &body, &signed).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        (&first["outcome"], &first["kyc_check_status"]),
        (&json!("processed"), &json!("verified"))
    );
    // The same event again (a provider's retry within the window): the first answer.
    let (status, again) = send_result(&app, &body, &signed).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), first);
    // A second result for the closed check is recorded and ignored.
    let late = result_body(&check, "idvevt_test_2", "rejected");
    let late_signed = sign_idv_webhook(IDV_WEBHOOK_SECRET.as_bytes(), now, &late);
    let (status, ignored) = send_result(&app, &late, &late_signed).await;
    assert_eq!(status, StatusCode::OK, "{ignored}");
    assert_eq!(
        serde_json::from_str::<Value>(&ignored).unwrap()["outcome"],
        "ignored"
    );

    let view = kyc(&app, "k3").await;
    let history = view["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{view}");
    assert_eq!(history[0]["status"], "verified");
    assert_eq!(view["kyc_status"], "verified");
}

/// A result stores the basic level and the player's `kyc_status` in one transaction; the
/// view must read them as one too. Read apart, a view read while the result commits showed
/// `basic: verified` beside `kyc_status: none` (seen once in the browser suite). Views are
/// read back to back while each of several results commits, and every one must agree.
async fn the_view_never_shows_a_level_and_a_kyc_status_from_different_moments(app: TestApp) {
    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        let player_id = format!("k-race-{round}");
        player(&app, &player_id, "MT", "none", "100.00").await;
        verification(&payout(&app, &player_id, "20.00").await);
        let check = kyc(&app, &player_id).await["open_checks"][0].clone();
        let body = result_body(&check, &format!("idvevt_race_{round}"), "approved");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let signed = sign_idv_webhook(IDV_WEBHOOK_SECRET.as_bytes(), now, &body);

        let done = std::cell::Cell::new(false);
        let read_until_done = || async {
            let mut views = 0;
            while !done.get() || views == 0 {
                let view = kyc(&app, &player_id).await;
                let pair = (view["levels"]["basic"].clone(), view["kyc_status"].clone());
                assert!(
                    pair == (json!("pending"), json!("none"))
                        || pair == (json!("verified"), json!("verified")),
                    "a view from two moments: {view}"
                );
                views += 1;
            }
        };
        let apply = async {
            let (status, text) = send_result(&app, &body, &signed).await;
            assert_eq!(status, StatusCode::OK, "{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
            done.set(true);
        };
        tokio::join!(read_until_done(), read_until_done(), apply);
        assert_eq!(kyc(&app, &player_id).await["kyc_status"], "verified");
    }
}

async fn a_risk_step_up_opens_an_enhanced_check(app: TestApp) {
    let rules = json!({
        "thresholds": {"review": 50, "step_up": 50, "decline": 1000},
        "step_up_refuses_deposits": true,
        "rules": [{
            "id": "payout", "description": "every payout and deposit steps up",
            "when": {"in": {"feature": "kind", "values": ["payout", "deposit"]}}, "score": 60,
        }],
    });
    let path = "/v1/admin/risk/rules";
    let current = app
        .send(Method::GET, path, Some(&app.admin_key), None, &[])
        .await;
    let change =
        json!({"rules": rules, "based_on_version": current.body["version"], "note": "kyc"});
    let stored = app
        .send(Method::PUT, path, Some(&app.admin_key), Some(&change), &[])
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);

    player(&app, "k4", "MT", "verified", "100.00").await;
    let refused = payout(&app, "k4", "20.00").await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (StatusCode::FORBIDDEN, "kyc_step_up_required"),
        "{}",
        refused.body
    );
    let details = &refused.body["details"];
    assert_eq!(details["reason"], "risk_step_up", "{details}");
    assert_eq!(details["kyc_level"], "enhanced", "{details}");
    assert_eq!(
        details["rules"][0], "payout",
        "the decision is still explained"
    );
    let (url, _) = verification(&refused);
    let view = kyc(&app, "k4").await;
    let open = &view["open_checks"][0];
    assert_eq!(
        (&open["level"], &open["reason"], &open["verification_url"]),
        (&json!("enhanced"), &json!("risk_step_up"), &json!(url)),
        "{view}"
    );
    assert_eq!(view["levels"]["basic"], "verified");
    // A deposit the rule set refuses for the step-up names the same open check's page.
    let body = json!({
        "amount": "10.00", "currency": "EUR", "method": "card", "player_id": "k4",
        "return_url": format!("{}/cashier/return", app.base), "meta": {"country": "MT"},
    });
    let deposit = app.post_idempotent("/v1/payments/init", body).await;
    assert_eq!(
        (deposit.status, deposit.error_code()),
        (StatusCode::FORBIDDEN, "kyc_step_up_required"),
        "{}",
        deposit.body
    );
    assert_eq!(deposit.body["details"]["verification_url"], json!(url));
    assert_eq!(deposit.body["details"]["reason"], "risk_step_up");
}

/// A captured EUR card deposit of `amount` for `player_id` (the test plays the PSP).
async fn captured_deposit(app: &TestApp, player_id: &str, amount: &str) {
    let body = json!({
        "amount": amount, "currency": "EUR", "method": "card", "player_id": player_id,
        "return_url": format!("{}/cashier/return", app.base), "meta": {"country": "GB"},
    });
    let started = app.post_idempotent("/v1/payments/init", body).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let event = json!({
        "event_id": kassa_core::ids::generate("evt"),
        "payment_id": started.body["payment_id"], "status": "captured", "amount": amount,
        "currency": "EUR", "timestamp": rfc3339_now_plus(0),
    });
    let answer = common::deliver(app, &event).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

async fn linked_gb_deposits_lock_withdrawals_until_enhanced_is_verified(app: TestApp) {
    // Under the threshold: not locked.
    player(&app, "g1", "GB", "verified", "0").await;
    captured_deposit(&app, "g1", "1500.00").await;
    assert_eq!(kyc(&app, "g1").await["cdd_locked"], false);
    let allowed = payout(&app, "g1", "10.00").await;
    assert!(allowed.status.is_success(), "{}", allowed.body);

    // Two deposits within 24 h reach EUR 2,000 together.
    player(&app, "g2", "GB", "verified", "0").await;
    captured_deposit(&app, "g2", "1500.00").await;
    captured_deposit(&app, "g2", "600.00").await;
    assert_eq!(kyc(&app, "g2").await["cdd_locked"], true);
    let locked = payout(&app, "g2", "10.00").await;
    assert_eq!(
        (locked.status, locked.error_code()),
        (StatusCode::FORBIDDEN, "kyc_step_up_required"),
        "{}",
        locked.body
    );
    assert_eq!(locked.body["details"]["reason"], "cdd_threshold");
    assert_eq!(app.balance("g2").await.0, "2100.00", "nothing held");
    let (url, check_id) = verification(&locked);
    verify_on_page(&url, "Lovelace", "P7654321").await;
    let check = completed_check(&app, "g2", &check_id).await;
    assert_eq!(
        (&check["level"], &check["status"]),
        (&json!("enhanced"), &json!("verified")),
        "{check}"
    );
    let funds = check["document_checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["document"] == "source_of_funds")
        .cloned();
    assert_eq!(funds.unwrap()["result"], "clear");
    let view = kyc(&app, "g2").await;
    assert_eq!(
        (&view["cdd_locked"], &view["levels"]["enhanced"]),
        (&json!(false), &json!("verified")),
        "{view}"
    );
    let unlocked = payout(&app, "g2", "10.00").await;
    assert!(unlocked.status.is_success(), "{}", unlocked.body);
}
