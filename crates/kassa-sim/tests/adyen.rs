//! The Adyen simulator over real HTTP: its API's answers (keys, idempotency, errors) and its
//! notifications, which the official `Adyen` Python package's HMAC validator must accept.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use kassa_sim::adyen::{cards, start, AdyenSimConfig, DEFAULT_HMAC_KEY_HEX};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Takes notifications, answering `[accepted]` from the second attempt of each on.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/notify",
        post(move |body: String| {
            let kept = kept.clone();
            async move {
                let mut kept = kept.lock().unwrap();
                kept.push(serde_json::from_str(&body).unwrap());
                // The first delivery is answered wrongly: the simulator must send it again.
                if kept.len() == 1 {
                    "ok"
                } else {
                    "[accepted]"
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/notify"), received)
}

async fn until(received: &Mutex<Vec<Value>>, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = received.lock().unwrap().clone();
        if now.len() >= count || tokio::time::Instant::now() > deadline {
            assert!(now.len() >= count, "{now:?}");
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn payment(card: &str, reference: &str) -> Value {
    json!({"merchantAccount": "KassaECOM", "amount": {"value": 1130, "currency": "EUR"},
           "reference": reference, "returnUrl": "https://shop/return",
           "paymentMethod": {"type": "scheme", "encryptedCardNumber": format!("test_{card}")}})
}

#[tokio::test]
async fn the_api_speaks_adyens_answers() {
    let sim = start(AdyenSimConfig {
        listen: "127.0.0.1:0".into(),
        api_key: Some("AQE_key".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/v71/payments", sim.base_url());
    let post = |key: &str, idempotency: &str, body: Value| {
        client
            .post(&url)
            .header("x-api-key", key)
            .header("idempotency-key", idempotency)
            .json(&body)
            .send()
    };
    let unauthorised = post("wrong", "k0", payment(cards::APPROVE_VISA, "pay_0"))
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), StatusCode::UNAUTHORIZED);
    let body: Value = unauthorised.json().await.unwrap();
    assert_eq!(
        (body["errorCode"].as_str(), body["errorType"].as_str()),
        (Some("000"), Some("security"))
    );
    let first: Value = post("AQE_key", "k1", payment(cards::APPROVE_VISA, "pay_1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["resultCode"], "Authorised");
    let again: Value = post("AQE_key", "k1", payment(cards::APPROVE_VISA, "pay_1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, first, "a replayed key gets the first answer");
    let refused: Value = post("AQE_key", "k2", payment(cards::STOLEN_CARD, "pay_2"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            refused["resultCode"].as_str(),
            refused["refusalReason"].as_str()
        ),
        (Some("Refused"), Some("Stolen Card"))
    );
    let challenge: Value = post("AQE_key", "k3", payment(cards::THREE_DS2, "pay_3"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            challenge["resultCode"].as_str(),
            challenge["action"]["type"].as_str()
        ),
        (Some("ChallengeShopper"), Some("threeDS2"))
    );
    let failing = post("AQE_key", "k4", payment(cards::SERVER_ERROR, "pay_4"))
        .await
        .unwrap();
    assert_eq!(failing.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let mut no_reference = payment(cards::APPROVE_VISA, "x");
    no_reference.as_object_mut().unwrap().remove("reference");
    let invalid = post("AQE_key", "k5", no_reference).await.unwrap();
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = invalid.json().await.unwrap();
    assert_eq!(
        (body["status"].as_i64(), body["errorCode"].as_str()),
        (Some(422), Some("130"))
    );
    let refund = client
        .post(format!("{}/v71/payments/{}/refunds", sim.base_url(), first["pspReference"].as_str().unwrap()))
        .header("x-api-key", "AQE_key")
        .json(&json!({"merchantAccount": "KassaECOM", "amount": {"value": 2000, "currency": "EUR"}, "reference": "rf_1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refund.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "more than was paid"
    );
    sim.stop().await;
}

/// The Python with the `Adyen` package, from `KASSA_ADYEN_PYTHON`; `None` after saying why
/// the test is skipped. Under `CI=true` its absence is a failure.
fn adyen_python() -> Option<String> {
    match std::env::var("KASSA_ADYEN_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but KASSA_ADYEN_PYTHON is unset; .ci/run makes that venv")
        }
        _ => {
            eprintln!("skipped: KASSA_ADYEN_PYTHON is unset (a python with Adyen==16.0.0; .ci/run makes one)");
            None
        }
    }
}

const VALIDATOR: &str = r#"
import json, sys
from Adyen.util import is_valid_hmac_notification
case = json.load(sys.stdin)
print(json.dumps([is_valid_hmac_notification(wrapper["NotificationRequestItem"], case["key"])
                  for wrapper in case["body"]["notificationItems"]]))
"#;

fn validate_with_sdk(python: &str, body: &Value, key: &str) -> Value {
    let mut child = Command::new(python)
        .args(["-c", VALIDATOR])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(&json!({"body": body, "key": key})).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn adyens_own_validator_accepts_the_simulators_notifications_sent_until_accepted() {
    let (webhook_url, received) = receiver().await;
    let sim = start(AdyenSimConfig {
        listen: "127.0.0.1:0".into(),
        webhook_url: Some(webhook_url),
        notification_delay_ms: 0,
        notification_retry_backoff_ms: 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    // Three deliveries: the first batch twice (its first answer was not [accepted]), then
    // the second.
    for (card, reference, deliveries) in [
        (cards::APPROVE_VISA, "pay_ok", 2),
        (cards::NOT_ENOUGH_BALANCE, "pay_no", 3),
    ] {
        let answer = client
            .post(format!("{}/v71/payments", sim.base_url()))
            .header("x-api-key", "any")
            .json(&payment(card, reference))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        until(&received, deliveries).await;
    }
    let batches = until(&received, 3).await;
    assert_eq!(batches[0], batches[1], "resent as it was");
    let item = |batch: &Value| batch["notificationItems"][0]["NotificationRequestItem"].clone();
    assert_eq!(
        (
            item(&batches[0])["success"].as_str(),
            item(&batches[2])["success"].as_str()
        ),
        (Some("true"), Some("false"))
    );
    assert_eq!(item(&batches[2])["reason"], "Not enough balance");
    let Some(python) = adyen_python() else {
        sim.stop().await;
        return;
    };
    for batch in [&batches[0], &batches[2]] {
        assert_eq!(
            validate_with_sdk(&python, batch, DEFAULT_HMAC_KEY_HEX),
            json!([true]),
            "{batch}"
        );
        assert_eq!(
            validate_with_sdk(&python, batch, &"AB".repeat(32)),
            json!([false])
        );
    }
    sim.stop().await;
}
