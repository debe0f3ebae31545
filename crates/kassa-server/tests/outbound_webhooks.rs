//! Outbound webhooks through the real HTTP API, on SQLite and PostgreSQL alike: endpoints,
//! Standard Webhooks signatures (checked here and by the `standardwebhooks` PyPI package),
//! retries against a local receiver that fails, answers 429 with Retry-After or 410, filters,
//! secret rotation, replay, recovery and the SSRF refusal.

mod common;

use std::collections::VecDeque;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use base64::Engine;
use common::TestApp;
use hmac::{Hmac, Mac};
use kassa_server::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Fast retries, private URLs allowed (the receiver is on 127.0.0.1), the sandbox pays at once.
fn fast(config: &mut Config) {
    common::fast_background(config);
    config.webhooks.allow_private_urls = true;
    config.webhooks.outbound.retry_schedule_ms = vec![50, 50, 50];
    config.webhooks.outbound.timeout_ms = 3000;
}

contract_tests_with!(
    failures_are_retried_until_delivered_signed_and_logged => fast,
    retry_after_is_honoured => fast,
    a_410_disables_the_endpoint_and_an_event_says_so => fast,
    rotation_signs_with_both_secrets_during_the_grace_only => |c: &mut Config| {
        fast(c);
        c.webhooks.outbound.secret_grace_ms = 1500;
    },
    endpoints_crud_replay_and_recover => |c: &mut Config| {
        fast(c);
        c.webhooks.outbound.retry_schedule_ms = vec![50];
    },
    private_urls_are_refused_unless_allowed => |c: &mut Config| {
        fast(c);
        c.webhooks.allow_private_urls = false;
    },
    standardwebhooks_verifies_a_delivery => fast,
    delivery_checks_the_address_again => fast,
    a_slow_endpoint_gets_one_delivery_at_a_time_and_starves_no_other => |c: &mut Config| {
        fast(c);
        c.webhooks.outbound.concurrency_per_endpoint_max = 1;
    },
    attempts_past_their_retention_are_purged => |c: &mut Config| {
        fast(c);
        c.webhooks.outbound.attempts_retention_days = 0;
        c.webhooks.delivery_log_purge_interval_ms = 100;
    },
    an_endpoint_failing_too_long_is_disabled => |c: &mut Config| {
        fast(c);
        c.webhooks.outbound.retry_schedule_ms = vec![200, 200, 200, 200];
        c.webhooks.outbound.disable_after_failing_ms = 300;
    },
);

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: String,
    at: Instant,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// How the receiver answers one request.
#[derive(Clone)]
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    delay_ms: u64,
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        retry_after: None,
        delay_ms: 0,
    }
}

/// An operator's backend on 127.0.0.1:0: answers from its script, then `fallback`.
#[derive(Clone)]
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    fallback: Arc<Mutex<Reply>>,
    /// Requests being answered now, and the most there ever were.
    in_flight: Arc<Mutex<(usize, usize)>>,
}

impl Receiver {
    async fn start(script: Vec<Reply>) -> Receiver {
        let receiver = Receiver {
            url: String::new(),
            seen: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            fallback: Arc::new(Mutex::new(reply(200))),
            in_flight: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let state = state.clone();
                async move { state.answer(headers, body).await }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, ..receiver }
    }

    async fn answer(&self, headers: HeaderMap, body: String) -> axum::response::Response {
        let next = self.script.lock().unwrap().pop_front();
        let reply = next.unwrap_or_else(|| self.fallback.lock().unwrap().clone());
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            in_flight.0 += 1;
            in_flight.1 = in_flight.1.max(in_flight.0);
        }
        tokio::time::sleep(Duration::from_millis(reply.delay_ms)).await;
        self.in_flight.lock().unwrap().0 -= 1;
        self.seen.lock().unwrap().push(Received {
            headers,
            body,
            at: Instant::now(),
        });
        let status = AxumStatus::from_u16(reply.status).unwrap();
        let mut response = (status, "{\"ok\":true}").into_response();
        if let Some(after) = reply.retry_after {
            response
                .headers_mut()
                .insert("retry-after", after.parse().unwrap());
        }
        response
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `count` requests came in (10 s at most).
    async fn until(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen();
            if seen.len() >= count {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} requests came: {seen:?}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn create_endpoint(app: &TestApp, url: &str, event_types: Value) -> Value {
    let answer = app
        .post(
            "/v1/webhook-endpoints",
            json!({"url": url, "event_types": event_types, "description": "test"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body
}

/// A payout that the sandbox pays: events payout.approved, payout.processing, payout.paid.
async fn pay_out(app: &TestApp, player_id: &str) {
    let body =
        json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT", "kyc_status": "verified"});
    let answer = app.put(&format!("/v1/players/{player_id}"), body).await;
    assert!(answer.status.is_success(), "{}", answer.body);
    app.credit(&format!("fund-{player_id}"), player_id, "100.00")
        .await;
    let body =
        json!({"amount": "40.00", "currency": "EUR", "method": "card", "player_id": player_id});
    let answer = app.post_idempotent("/v1/payouts/init", body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}

/// The base64 HMAC-SHA256 of a Standard Webhooks message, computed here from the spec.
fn expected_signature(secret: &str, received: &Received) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    let signed = format!(
        "{}.{}.{}",
        received.header("webhook-id"),
        received.header("webhook-timestamp"),
        received.body
    );
    mac.update(signed.as_bytes());
    format!("v1,{}", engine.encode(mac.finalize().into_bytes()))
}

async fn attempts(app: &TestApp, endpoint_id: &str) -> Vec<Value> {
    let answer = app
        .get(&format!("/v1/webhook-endpoints/{endpoint_id}/attempts"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["data"].as_array().unwrap().clone()
}

async fn until_attempts(app: &TestApp, endpoint_id: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logged = attempts(app, endpoint_id).await;
        if logged.len() >= count {
            return logged;
        }
        assert!(Instant::now() < deadline, "attempts: {logged:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn failures_are_retried_until_delivered_signed_and_logged(app: TestApp) {
    let receiver = Receiver::start(vec![reply(500), reply(503)]).await;
    let endpoint = create_endpoint(&app, &receiver.url, json!(["payout.paid"])).await;
    let secret = endpoint["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{endpoint}");
    let others = Receiver::start(vec![]).await;
    create_endpoint(&app, &others.url, json!(["payment.*"])).await;

    pay_out(&app, "p1").await;
    let seen = receiver.until(3).await;
    let ids: Vec<&str> = seen.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids[0].starts_with("evt_"), "{ids:?}");
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one event, retried: {ids:?}"
    );
    for received in &seen {
        assert_eq!(
            received.header("webhook-signature"),
            expected_signature(&secret, received)
        );
        assert_eq!(received.json()["type"], "payout.paid", "the filter holds");
        assert_eq!(received.json()["id"], ids[0]);
        assert_eq!(received.json()["data"]["status"], "paid");
    }
    let logged = until_attempts(&app, endpoint["endpoint_id"].as_str().unwrap(), 3).await;
    let statuses: Vec<i64> = logged
        .iter()
        .map(|a| a["http_status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 503, 500], "newest first");
    let numbers: Vec<i64> = logged
        .iter()
        .map(|a| a["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert_eq!(logged[0]["response_excerpt"], "{\"ok\":true}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.seen().len(), 3, "delivered: no more attempts");
    assert!(
        others.seen().is_empty(),
        "payout events do not match payment.*"
    );
    app.stop().await;
}

async fn retry_after_is_honoured(app: TestApp) {
    let too_many = Reply {
        status: 429,
        retry_after: Some("1"),
        delay_ms: 0,
    };
    let receiver = Receiver::start(vec![too_many]).await;
    create_endpoint(&app, &receiver.url, json!(["payout.paid"])).await;
    pay_out(&app, "p1").await;
    let seen = receiver.until(2).await;
    let waited = seen[1].at.duration_since(seen[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "the retry waited {waited:?}, not the second Retry-After asked (the schedule says 50 ms)"
    );
    app.stop().await;
}

async fn attempts_past_their_retention_are_purged(app: TestApp) {
    let receiver = Receiver::start(vec![]).await;
    let endpoint = create_endpoint(&app, &receiver.url, json!(["payout.*"])).await;
    let endpoint_id = endpoint["endpoint_id"].as_str().unwrap();
    pay_out(&app, "purged-p1").await;
    receiver.until(3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logged = attempts(&app, endpoint_id).await;
        if logged.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "attempts never purged: {logged:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

async fn a_410_disables_the_endpoint_and_an_event_says_so(app: TestApp) {
    let gone = Receiver::start(vec![reply(410)]).await;
    let endpoint = create_endpoint(&app, &gone.url, json!(["payout.paid"])).await;
    let endpoint_id = endpoint["endpoint_id"].as_str().unwrap();
    let watcher = Receiver::start(vec![]).await;
    create_endpoint(&app, &watcher.url, json!(["webhook_endpoint.*"])).await;

    pay_out(&app, "p1").await;
    let notice = watcher.until(1).await;
    let event = notice[0].json();
    assert_eq!(event["type"], "webhook_endpoint.disabled");
    assert_eq!(event["data"]["endpoint_id"], endpoint_id);
    assert_eq!(event["data"]["reason"], "gone");
    let view = app
        .get(&format!("/v1/webhook-endpoints/{endpoint_id}"))
        .await;
    assert_eq!(view.body["enabled"], false, "{}", view.body);
    assert_eq!(view.body["disabled_reason"], "gone");
    assert!(
        view.body.get("secret").is_none(),
        "the secret is shown only once"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        gone.seen().len(),
        1,
        "nothing more goes to a disabled endpoint"
    );
    app.stop().await;
}

async fn rotation_signs_with_both_secrets_during_the_grace_only(app: TestApp) {
    let receiver = Receiver::start(vec![]).await;
    let endpoint = create_endpoint(&app, &receiver.url, json!(["payout.paid"])).await;
    let endpoint_id = endpoint["endpoint_id"].as_str().unwrap();
    let old = endpoint["secret"].as_str().unwrap().to_string();
    let rotated = app
        .post(
            &format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret"),
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    assert!(rotated.body["previous_secret_expires_at"].is_string());

    pay_out(&app, "p1").await;
    let first = receiver.until(1).await[0].clone();
    let signatures: Vec<&str> = first.header("webhook-signature").split(' ').collect();
    assert_eq!(
        signatures,
        [
            expected_signature(&new, &first),
            expected_signature(&old, &first)
        ],
        "the new secret and the old one both sign during the grace"
    );

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let event_id = first.header("webhook-id");
    let replay = app
        .post(
            &format!("/v1/webhook-endpoints/{endpoint_id}/messages/{event_id}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.body);
    let second = receiver.until(2).await[1].clone();
    assert_eq!(
        second.header("webhook-id"),
        event_id,
        "a replay keeps the event id"
    );
    assert_eq!(
        second.header("webhook-signature"),
        expected_signature(&new, &second),
        "after the grace only the new secret signs"
    );
    app.stop().await;
}

async fn a_slow_endpoint_gets_one_delivery_at_a_time_and_starves_no_other(app: TestApp) {
    let slow = Receiver::start(vec![]).await;
    *slow.fallback.lock().unwrap() = Reply {
        delay_ms: 400,
        ..reply(200)
    };
    let slow_endpoint = create_endpoint(&app, &slow.url, json!(["payout.*"])).await;
    let quick = Receiver::start(vec![]).await;
    create_endpoint(&app, &quick.url, json!(["payout.*"])).await;

    pay_out(&app, "p1").await;
    pay_out(&app, "p2").await;
    let quick_seen = quick.until(6).await;
    let slow_seen = slow.until(6).await;
    assert_eq!(
        slow.in_flight.lock().unwrap().1,
        1,
        "one delivery at a time to the slow endpoint"
    );
    let quick_done = quick_seen.iter().map(|r| r.at).max().unwrap();
    let slow_done = slow_seen.iter().map(|r| r.at).max().unwrap();
    assert!(
        quick_done < slow_done,
        "the quick endpoint did not wait for the slow one"
    );
    // Waiting for a slot is not an attempt.
    let logged = until_attempts(&app, slow_endpoint["endpoint_id"].as_str().unwrap(), 6).await;
    assert!(logged.iter().all(|a| a["attempt"] == 1), "{logged:?}");
    app.stop().await;
}

async fn an_endpoint_failing_too_long_is_disabled(app: TestApp) {
    let failing = Receiver::start(vec![]).await;
    *failing.fallback.lock().unwrap() = reply(502);
    let endpoint = create_endpoint(&app, &failing.url, json!(["payout.paid"])).await;
    let endpoint_id = endpoint["endpoint_id"].as_str().unwrap();
    let watcher = Receiver::start(vec![]).await;
    create_endpoint(&app, &watcher.url, json!(["webhook_endpoint.disabled"])).await;

    pay_out(&app, "p1").await;
    let notice = watcher.until(1).await[0].json();
    assert_eq!(notice["data"]["reason"], "failing", "{notice}");
    let tries = failing.seen().len();
    assert!(
        (2..=4).contains(&tries),
        "disabled after about 300 ms of failures: {tries} tries"
    );
    let view = app
        .get(&format!("/v1/webhook-endpoints/{endpoint_id}"))
        .await;
    assert_eq!(
        (&view.body["enabled"], &view.body["disabled_reason"]),
        (&json!(false), &json!("failing"))
    );
    let replay = app
        .post(
            &format!(
                "/v1/webhook-endpoints/{endpoint_id}/messages/{}/replay",
                failing.seen()[0].header("webhook-id")
            ),
            json!({}),
        )
        .await;
    assert_eq!(
        (replay.status, replay.error_code()),
        (StatusCode::CONFLICT, "webhook_endpoint_disabled")
    );
    let enabled = app
        .send(
            Method::PATCH,
            &format!("/v1/webhook-endpoints/{endpoint_id}"),
            Some(&app.api_key),
            Some(&json!({"enabled": true})),
            &[],
        )
        .await;
    assert_eq!(
        (&enabled.body["enabled"], &enabled.body["disabled_reason"]),
        (&json!(true), &Value::Null)
    );
    app.stop().await;
}

async fn endpoints_crud_replay_and_recover(app: TestApp) {
    let receiver = Receiver::start(vec![]).await;
    *receiver.fallback.lock().unwrap() = reply(500);
    let endpoint = create_endpoint(&app, &receiver.url, json!(["payout.paid"])).await;
    let id = endpoint["endpoint_id"].as_str().unwrap();
    let path = format!("/v1/webhook-endpoints/{id}");

    let listed = app.get("/v1/webhook-endpoints").await;
    assert_eq!(listed.body["data"][0]["endpoint_id"], id, "{}", listed.body);
    assert!(listed.body["data"][0].get("secret").is_none());
    let patched = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.api_key),
            Some(&json!({"description": "ops"})),
            &[],
        )
        .await;
    assert_eq!(
        (patched.status, &patched.body["description"]),
        (StatusCode::OK, &json!("ops"))
    );
    let bad = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.api_key),
            Some(&json!({"event_types": ["Pay*"]})),
            &[],
        )
        .await;
    assert_eq!(
        (bad.status, bad.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );

    // Two attempts (the schedule has one wait), both 500: the message fails.
    pay_out(&app, "p1").await;
    receiver.until(2).await;
    until_attempts(&app, id, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.seen().len(), 2, "the schedule ran out");

    *receiver.fallback.lock().unwrap() = reply(200);
    let recovered = app
        .post(
            &format!("{path}/recover"),
            json!({"since": common::rfc3339_now_plus(-60)}),
        )
        .await;
    assert_eq!(
        (recovered.status, &recovered.body["queued"]),
        (StatusCode::ACCEPTED, &json!(1)),
        "{}",
        recovered.body
    );
    let seen = receiver.until(3).await;
    assert_eq!(seen[2].header("webhook-id"), seen[0].header("webhook-id"));
    let again = app
        .post(
            &format!("{path}/recover"),
            json!({"since": common::rfc3339_now_plus(-60)}),
        )
        .await;
    assert_eq!(
        again.body["queued"], 0,
        "nothing failed any more: {}",
        again.body
    );

    let unknown = app
        .post(&format!("{path}/messages/evt_nope/replay"), json!({}))
        .await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (StatusCode::NOT_FOUND, "event_not_found")
    );
    let deleted = app
        .send(Method::DELETE, &path, Some(&app.api_key), None, &[])
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app.get(&path).await;
    assert_eq!(
        (gone.status, gone.error_code()),
        (StatusCode::NOT_FOUND, "webhook_endpoint_not_found")
    );
    app.stop().await;
}

async fn private_urls_are_refused_unless_allowed(app: TestApp) {
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/hook",
        "http://[::1]/hook",
        "http://localhost/hook",
    ] {
        let answer = app.post("/v1/webhook-endpoints", json!({"url": url})).await;
        assert_eq!(
            (answer.status, answer.error_code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "url_not_allowed"),
            "{url}: {}",
            answer.body
        );
    }
    let public = create_endpoint(&app, "https://93.184.215.14/hook", json!(["*"])).await;
    let path = format!(
        "/v1/webhook-endpoints/{}",
        public["endpoint_id"].as_str().unwrap()
    );
    let moved = app
        .send(
            Method::PATCH,
            &path,
            Some(&app.api_key),
            Some(&json!({"url": "http://192.168.1.1/x"})),
            &[],
        )
        .await;
    assert_eq!(
        (moved.status, moved.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "url_not_allowed")
    );
    let ftp = app
        .post(
            "/v1/webhook-endpoints",
            json!({"url": "ftp://93.184.215.14/"}),
        )
        .await;
    assert_eq!(
        (ftp.status, ftp.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    app.stop().await;
}

/// An endpoint accepted while private URLs were allowed gets nothing once they are not: the
/// delivery client refuses the address when it connects, and the attempt says why.
async fn delivery_checks_the_address_again(app: TestApp) {
    let receiver = Receiver::start(vec![]).await;
    let endpoint = create_endpoint(&app, &receiver.url, json!(["payout.paid"])).await;
    let local_name = receiver.url.replace("127.0.0.1", "localhost");
    let by_name = create_endpoint(&app, &local_name, json!(["payout.paid"])).await;
    let app = app
        .restart(|c| {
            fast(c);
            c.webhooks.allow_private_urls = false;
        })
        .await;
    pay_out(&app, "p1").await;
    for endpoint in [&endpoint, &by_name] {
        let logged = until_attempts(&app, endpoint["endpoint_id"].as_str().unwrap(), 1).await;
        assert!(logged[0]["http_status"].is_null(), "{logged:?}");
        let error = logged[0]["error"].as_str().unwrap();
        assert!(error.contains("non-public address"), "{error}");
    }
    assert!(
        receiver.seen().is_empty(),
        "nothing reached the private address"
    );
    app.stop().await;
}

/// The `standardwebhooks` package (PyPI), an independent implementation of the spec, verifies
/// a delivered request with the endpoint's secret.
async fn standardwebhooks_verifies_a_delivery(app: TestApp) {
    let Some(python) =
        common::interop_python("KASSA_STANDARDWEBHOOKS_PYTHON", "standardwebhooks==1.3.0")
    else {
        app.stop().await;
        return;
    };
    let receiver = Receiver::start(vec![]).await;
    let endpoint = create_endpoint(&app, &receiver.url, json!(["payout.paid"])).await;
    pay_out(&app, "p1").await;
    let received = receiver.until(1).await[0].clone();
    let headers: serde_json::Map<String, Value> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .iter()
            .map(|name| (name.to_string(), json!(received.header(name))))
            .collect();
    let input = json!({"secret": endpoint["secret"], "headers": headers, "body": received.body});
    assert_eq!(run_verifier(&python, &input), "verified");
    let mut tampered = input.clone();
    tampered["body"] = json!(received.body.replace("paid", "paix"));
    assert_eq!(
        run_verifier(&python, &tampered),
        "refused",
        "a changed body does not verify"
    );
    app.stop().await;
}

const VERIFIER: &str = r#"
import json, sys
from standardwebhooks import Webhook
case = json.load(sys.stdin)
try:
    Webhook(case["secret"]).verify(case["body"], case["headers"])
    print("verified")
except Exception as error:
    print("refused")
"#;

fn run_verifier(python: &str, input: &Value) -> String {
    let mut child = Command::new(python)
        .args(["-c", VERIFIER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {python}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
