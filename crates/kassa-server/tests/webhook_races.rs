//! Concurrent deliveries of one provider event (issue #21): every delivery gets a 2xx, the
//! money moves once, the delivery log marks all but one as duplicates, and a duplicate is
//! not an error: nothing is logged at ERROR level. Its own test binary, because it installs
//! the process-wide log subscriber that records ERROR events.

mod common;

use std::sync::{Mutex, OnceLock};

use common::{rfc3339_now_plus, TestApp};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

contract_tests_with!(
    concurrent_duplicate_captures_are_answered_once_and_logged_as_duplicates => quiet,
    concurrent_duplicate_payout_events_settle_once_and_are_logged_as_duplicates => quiet,
);

/// The test plays the provider: the sandbox sends no webhook by itself; the background jobs
/// are far apart, so the only write transactions are the requests'.
fn quiet(config: &mut kassa_server::config::Config) {
    config.sandbox.autopilot = false;
    config.jobs.poll_interval_ms = 3_600_000;
    config.jobs.outbox_interval_ms = 3_600_000;
    config.payments.status_sync_interval_ms = 3_600_000;
    // Every delivery comes from 127.0.0.1: no per-address limit here.
    config.webhooks.requests_per_second_per_address = 0;
    install_error_recorder();
}

/// Deliveries of one event at once, per round.
const DELIVERIES_AT_ONCE: usize = 24;

/// Rounds, each on a payment or payout of its own.
const ROUNDS: usize = 4;

async fn concurrent_duplicate_captures_are_answered_once_and_logged_as_duplicates(app: TestApp) {
    app.player("p1").await;
    for round in 0..ROUNDS {
        let payment_id = new_payment(&app, "10.00").await;
        let event = json!({
            "event_id": format!("evt_race_{round}"), "payment_id": payment_id,
            "status": "captured", "amount": "10.00", "currency": "EUR",
            "timestamp": rfc3339_now_plus(0),
        });
        let answers = race(&app, &event, &payment_id).await;
        for body in &answers {
            assert_eq!(
                (body["outcome"].as_str(), body["payment_status"].as_str()),
                (Some("processed"), Some("captured")),
                "round {round}: every answer is the first one: {body}"
            );
        }
        let expected = format!("{}.00", 10 * (round + 1));
        assert_eq!(app.balance("p1").await.0, expected, "credited once");
    }
    app.assert_ledger_verifies().await;
    app.stop().await;
    assert_no_error_logged();
}

async fn concurrent_duplicate_payout_events_settle_once_and_are_logged_as_duplicates(app: TestApp) {
    common::verified_player(&app, "p1", "100.00").await;
    for round in 0..ROUNDS {
        let payout_id = common::request_payout(&app, "p1", "10.00").await;
        let event = json!({
            "event_id": format!("evt_paid_{round}"), "payout_id": payout_id,
            "status": "paid", "amount": "10.00", "currency": "EUR",
            "timestamp": rfc3339_now_plus(0),
        });
        let answers = race(&app, &event, &payout_id).await;
        for body in &answers {
            assert_eq!(
                (body["outcome"].as_str(), body["payout_status"].as_str()),
                (Some("processed"), Some("paid")),
                "round {round}: every answer is the first one: {body}"
            );
        }
        let expected = (format!("{}.00", 90 - 10 * round), "0.00".to_string());
        assert_eq!(app.balance("p1").await, expected, "paid out once");
    }
    app.assert_ledger_verifies().await;
    app.stop().await;
    assert_no_error_logged();
}

/// Delivers `event` [`DELIVERIES_AT_ONCE`] times at once, half to each of the sandbox's
/// webhook URLs (one pipeline, one dedupe), and checks what every race must give: all
/// answered 200 alike, one delivery logged as processed and the rest as duplicates, and a
/// duplicate costing at most its own (rolled back) transaction and its log row.
async fn race(app: &TestApp, event: &Value, subject_id: &str) -> Vec<Value> {
    let raw = serde_json::to_vec(event).unwrap();
    let before = app.write_transactions();
    let answers = join_all((0..DELIVERIES_AT_ONCE).map(|i| {
        let path = if i % 2 == 0 {
            "/v1/payments/webhook"
        } else {
            "/v1/providers/sandbox/webhook"
        };
        deliver_raw(app, path, raw.clone())
    }))
    .await;
    let transactions = app.write_transactions() - before;
    let mut bodies = Vec::with_capacity(answers.len());
    for (status, body) in answers {
        assert_eq!(status, StatusCode::OK, "{body}");
        bodies.push(body);
    }
    let outcomes = logged_outcomes(app, subject_id).await;
    assert_eq!(
        (
            outcomes.iter().filter(|o| *o == "processed").count(),
            outcomes.iter().filter(|o| *o == "duplicate").count(),
            outcomes.len(),
        ),
        (1, DELIVERIES_AT_ONCE - 1, DELIVERIES_AT_ONCE),
        "{outcomes:?}"
    );
    // A lost race is recognised as a duplicate at once, not retried as a failure.
    assert!(
        transactions <= 2 * DELIVERIES_AT_ONCE as u64,
        "{transactions} write transactions for {DELIVERIES_AT_ONCE} deliveries of one event"
    );
    bodies
}

async fn new_payment(app: &TestApp, amount: &str) -> String {
    let answer = common::start_deposit(app, amount).await;
    answer.body["payment_id"].as_str().unwrap().to_string()
}

/// Posts `raw`, signed as the sandbox signs, to `path`.
async fn deliver_raw(app: &TestApp, path: &str, raw: Vec<u8>) -> (StatusCode, Value) {
    let signature = kassa_connectors::sign_webhook(common::SANDBOX_WEBHOOK_SECRET.as_bytes(), &raw);
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .header("x-signature", signature)
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The delivery log's outcomes for a payment.
async fn logged_outcomes(app: &TestApp, payment_id: &str) -> Vec<String> {
    let log = app
        .send(
            Method::GET,
            &format!("/v1/admin/webhook-deliveries?payment_id={payment_id}&limit=500"),
            Some(&app.admin_key),
            None,
            &[],
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    log.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap().to_string())
        .collect()
}

/// ERROR events logged anywhere in this process since it started.
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every ERROR event in [`ERRORS`]; installed once per process, before any server.
fn install_error_recorder() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(ErrorRecorder);
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
    });
}

fn assert_no_error_logged() {
    let errors = recorded().clone();
    assert!(errors.is_empty(), "logged at ERROR: {errors:#?}");
}

/// The recorded errors; a test that failed while holding them does not hide the others'.
fn recorded() -> std::sync::MutexGuard<'static, Vec<String>> {
    ERRORS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct ErrorRecorder;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorRecorder {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() == tracing::Level::ERROR {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            recorded().push(format!("{}:{}", event.metadata().target(), fields.0));
        }
    }
}

/// An event's fields as `name=value` text.
struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}
