//! Kassa's Stripe connector against the Stripe simulator over real HTTP, and the simulator's
//! own wire rules: authentication, idempotency replays and conflicts, error objects.

use kassa_connectors::stripe::{self, StripeConnector};
use kassa_connectors::{
    Credentials, PaymentProvider, PaymentRequest, PaymentStart, ProviderAccount, ProviderError,
    ProviderPaymentStatus, SecretString,
};
use kassa_core::Currency;
use kassa_sim::stripe::{StripeSimConfig, StripeSimHandle};
use reqwest::StatusCode;
use serde_json::Value;

async fn simulator() -> StripeSimHandle {
    kassa_sim::stripe::start(StripeSimConfig {
        listen: "127.0.0.1:0".into(),
        slow_answer_ms: 800,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn connector(base_url: &str, payment_method: &str) -> StripeConnector {
    let mut credentials = Credentials::new();
    credentials.insert("secret_key", SecretString::from("sk_test_sim"));
    credentials.insert("webhook_secret", SecretString::from("whsec_sim"));
    let settings = serde_json::json!({"base_url": base_url, "payment_method": payment_method,
        "timeout_ms": 400, "attempts_max": 2});
    stripe::from_account(&ProviderAccount {
        id: "stripe".into(),
        merchant_id: "mch".into(),
        kind: stripe::KIND.into(),
        display_name: "Stripe".into(),
        credentials,
        settings: settings.as_object().unwrap().clone(),
    })
    .unwrap()
}

fn deposit(payment_id: &str) -> PaymentRequest {
    PaymentRequest {
        payment_id: payment_id.into(),
        amount_minor: 5000,
        currency: Currency::from_code("EUR").unwrap(),
        method: "card".into(),
        country: Some("MT".into()),
        return_url: "http://shop/return".into(),
        payment_method_token: None,
    }
}

async fn intents_of(sim: &StripeSimHandle, payment_id: &str) -> Vec<Value> {
    let url = format!(
        "{}/_sim/payment_intents?kassa_payment_id={payment_id}",
        sim.base_url()
    );
    let list: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    list["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn each_test_card_starts_as_documented_and_status_sync_reads_it_back() {
    let sim = simulator().await;
    let cases = [
        (
            "pm_card_visa",
            PaymentStart::Authorized,
            ProviderPaymentStatus::Captured,
        ),
        (
            "pm_card_chargeDeclinedStolenCard",
            PaymentStart::Declined {
                reason: Some("stolen_card".into()),
            },
            ProviderPaymentStatus::Declined,
        ),
        (
            "4000000000000119",
            PaymentStart::Declined {
                reason: Some("processing_error".into()),
            },
            ProviderPaymentStatus::Declined,
        ),
    ];
    for (index, (method, start, status)) in cases.into_iter().enumerate() {
        let payment_id = format!("pay_{index}");
        let started = connector(sim.base_url(), method)
            .start_payment(&deposit(&payment_id))
            .await
            .unwrap();
        assert_eq!(started.start, start, "{method}");
        let report = connector(sim.base_url(), method)
            .get_status(&started.provider_reference)
            .await
            .unwrap();
        assert_eq!(
            (report.status, report.payment_id.as_str()),
            (status, payment_id.as_str())
        );
        assert_eq!(report.amount_minor, 5000);
    }
    let challenged = connector(sim.base_url(), "pm_card_threeDSecure2Required")
        .start_payment(&deposit("pay_3ds"))
        .await
        .unwrap();
    let PaymentStart::Challenge { url } = challenged.start else {
        panic!("{challenged:?}")
    };
    assert_eq!(
        url,
        format!("{}/3ds/{}", sim.base_url(), challenged.provider_reference)
    );
    let cancelled = connector(sim.base_url(), "pm_card_visa")
        .cancel(&challenged.provider_reference)
        .await
        .unwrap();
    assert_eq!(cancelled, ProviderPaymentStatus::Cancelled);
    let failing = connector(sim.base_url(), "pm_card_kassaServerError")
        .start_payment(&deposit("pay_500"))
        .await;
    assert!(
        matches!(failing, Err(ProviderError::Unavailable(_))),
        "{failing:?}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_timed_out_charge_is_answered_again_not_charged_again() {
    let sim = simulator().await;
    let started = connector(sim.base_url(), "pm_card_kassaTimeout")
        .start_payment(&deposit("pay_slow"))
        .await
        .unwrap();
    assert_eq!(started.start, PaymentStart::Authorized);
    let intents = intents_of(&sim, "pay_slow").await;
    assert_eq!(intents.len(), 1, "one intent for two attempts: {intents:?}");
    assert_eq!(
        intents[0]["id"].as_str(),
        Some(started.provider_reference.as_str())
    );
    sim.stop().await;
}

#[tokio::test]
async fn keys_replays_and_errors_follow_stripes_wire_rules() {
    let sim = simulator().await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/payment_intents", sim.base_url());
    let post = |key: Option<&str>, body: &'static str, idempotency: &'static str| {
        let mut request = client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("idempotency-key", idempotency)
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    let body = "amount=100&currency=eur&confirm=true&payment_method=pm_card_visa&metadata[kassa_payment_id]=pay_k";
    let first = post(Some("sk_test_a"), body, "k1").await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        (first["object"].as_str(), first["status"].as_str()),
        (Some("payment_intent"), Some("succeeded"))
    );
    assert_eq!(first["metadata"]["kassa_payment_id"], "pay_k");
    let replay = post(Some("sk_test_a"), body, "k1").await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay, first);
    let conflict = post(Some("sk_test_a"), "amount=101&currency=eur", "k1")
        .await
        .unwrap();
    assert_eq!(conflict.status(), StatusCode::BAD_REQUEST);
    let conflict: Value = conflict.json().await.unwrap();
    assert_eq!(conflict["error"]["type"], "idempotency_error");
    // Basic auth with the key as user name, as `curl -u sk_test_…:` sends it.
    let basic = client
        .get(format!(
            "{}/v1/payment_intents/{}",
            sim.base_url(),
            first["id"].as_str().unwrap()
        ))
        .basic_auth("sk_test_a", Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
    let unauthenticated = post(None, body, "k2").await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let live_key = post(Some("sk_live_a"), body, "k3").await.unwrap();
    assert_eq!(live_key.status(), StatusCode::UNAUTHORIZED);
    let live_key: Value = live_key.json().await.unwrap();
    assert_eq!(live_key["error"]["code"], "api_key_invalid");
    let declined = post(
        Some("sk_test_a"),
        "amount=100&currency=eur&confirm=true&payment_method=pm_card_chargeDeclinedInsufficientFunds",
        "k4",
    )
    .await
    .unwrap();
    assert_eq!(declined.status(), StatusCode::PAYMENT_REQUIRED);
    let declined: Value = declined.json().await.unwrap();
    assert_eq!(declined["error"]["decline_code"], "insufficient_funds");
    assert_eq!(
        declined["error"]["payment_intent"]["status"],
        "requires_payment_method"
    );
    let unknown = post(
        Some("sk_test_a"),
        "amount=1&currency=eur&confirm=true&payment_method=pm_nope",
        "k5",
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(unknown["error"]["code"], "resource_missing");
    let missing: Value = client
        .get(format!("{}/v1/payment_intents/pi_nope", sim.base_url()))
        .bearer_auth("sk_test_a")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(missing["error"]["code"], "resource_missing");
    sim.stop().await;
}
