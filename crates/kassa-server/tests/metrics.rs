//! `/metrics` tells the story of what went through the API: deposits started and decided by
//! method, country and device class, a failed 3-D Secure, a refund, a payout, webhooks,
//! requests by route template; and no player, payment or payout id in any label. On SQLite
//! and PostgreSQL alike.
//!
//! The recorder is the process's, so both backends' tests add to the same counters: each
//! takes [`SERIAL`] and asserts what it added (after minus before).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{behave, pay_with_card, TestApp};
use kassa_server::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// One test at a time adds to the process's counters.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An id that must never show in a label.
const PLAYER: &str = "player-7c1e-metrics";
const PAYOUT_PLAYER: &str = "player-9d2f-payouts";

fn with_metrics(config: &mut Config) {
    config.metrics.listen = "127.0.0.1:0".into();
    config.sandbox.webhook_delay_ms = 20;
    config.payouts.retry_interval_ms = 100;
    config.payouts.retry_backoff_ms = 100;
}

/// Three sandbox accounts (no rule: tried in id order) whose circuits stay open for a minute.
fn three_accounts_with_metrics(config: &mut Config) {
    common::three_accounts(config);
    config.routing.breaker.open_for_ms = 60_000;
    config.metrics.listen = "127.0.0.1:0".into();
}

contract_tests_with!(
    metrics_tell_what_the_api_did => with_metrics,
    metrics_tell_the_story_of_a_provider_going_down => three_accounts_with_metrics,
);

/// One scrape: every sample by its name and labels.
struct Scrape {
    text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    async fn of(app: &TestApp) -> Scrape {
        let url = app.metrics_url().expect("the metrics listener is on");
        let answer = reqwest::get(&url).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let content_type = answer.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = answer.text().await.unwrap();
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(parse_sample)
            .collect();
        Scrape { text, samples }
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    fn label_values(&self) -> impl Iterator<Item = &str> {
        self.samples
            .iter()
            .flat_map(|(_, labels, _)| labels.values().map(String::as_str))
    }
}

/// `name{k="v",…} value`: our label values hold no quote or comma.
fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (series, value) = line.rsplit_once(' ').expect("a sample line");
    let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.trim_end_matches('}')),
        None => (series, ""),
    };
    let labels = labels
        .split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once("=\"").expect("k=\"v\"");
            (key.to_string(), value.trim_end_matches('"').to_string())
        })
        .collect();
    (name.to_string(), labels, value)
}

/// `after - before` of one series sum.
fn added(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.sum(name, labels) - before.sum(name, labels)
}

/// Starts a card deposit of 10.00 EUR; returns its id and the card page.
async fn start_deposit(app: &TestApp, country: &str, device: Option<&str>) -> (String, String) {
    let mut meta = json!({ "country": country });
    if let Some(device) = device {
        meta["device"] = json!(device);
    }
    let body = json!({
        "amount": "10.00", "currency": "EUR", "method": "card", "player_id": PLAYER,
        "return_url": format!("{}/cashier/return", app.base), "meta": meta,
    });
    let answer = app.post_idempotent("/v1/payments/init", body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let id = answer.body["payment_id"].as_str().unwrap().to_string();
    let page = answer.body["redirect_url"].as_str().unwrap().to_string();
    (id, page)
}

/// Waits (bounded) until `path`'s `status` is `wanted`.
async fn until_status(app: &TestApp, path: &str, wanted: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = app.get(path).await.body;
        if view["status"] == wanted || tokio::time::Instant::now() > deadline {
            assert_eq!(view["status"], wanted, "{path}: {view}");
            return view;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Five deposits, one of each story; returns their ids.
async fn drive_deposits(app: &TestApp) -> Vec<String> {
    let cards = [
        ("MT", Some("mobile"), "4242424242424242", "", "captured"),
        (
            "DE",
            Some("desktop"),
            "4000000000003220",
            "123456",
            "captured",
        ),
        (
            "DE",
            Some("tablet"),
            "4000000000003220",
            "000000",
            "declined",
        ),
        ("MT", None, "4000000000009995", "", "declined"),
    ];
    let mut ids = Vec::new();
    for (country, device, card, otp, wanted) in cards {
        let (id, page) = start_deposit(app, country, device).await;
        pay_with_card(&page, card, otp).await;
        until_status(app, &format!("/v1/payments/{id}"), wanted).await;
        ids.push(id);
    }
    // Free text in `meta.device` is no label: it counts as `unknown`.
    let (id, _) = start_deposit(app, "MT", Some("Smart fridge 9000 / fp 8f3a")).await;
    let cancelled = app
        .post(&format!("/v1/payments/{id}/cancel"), json!({}))
        .await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    ids.push(id);
    ids
}

/// A 5.00 refund of the approved deposit `id`, settled by the sandbox's webhook.
async fn refund(app: &TestApp, id: &str) -> String {
    let path = format!("/v1/payments/{id}/refunds");
    let refund = app.post_idempotent(&path, json!({"amount": "5.00"})).await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.body);
    until_status(app, &format!("/v1/payments/{id}"), "partially_refunded").await;
    refund.body["refund_id"].as_str().unwrap().to_string()
}

/// A 40.00 payout paid through the sandbox; returns its id.
async fn payout(app: &TestApp) -> String {
    let player =
        json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT", "kyc_status": "verified"});
    let answer = app
        .put(&format!("/v1/players/{PAYOUT_PLAYER}"), player)
        .await;
    assert!(answer.status.is_success(), "{}", answer.body);
    app.credit("fund-payout-player", PAYOUT_PLAYER, "100.00")
        .await;
    let body =
        json!({"amount": "40.00", "currency": "EUR", "method": "card", "player_id": PAYOUT_PLAYER});
    let requested = app.post_idempotent("/v1/payouts/init", body).await;
    assert_eq!(requested.status, StatusCode::CREATED, "{}", requested.body);
    let id = requested.body["payout_id"].as_str().unwrap().to_string();
    until_status(app, &format!("/v1/payouts/{id}"), "paid").await;
    id
}

async fn metrics_tell_what_the_api_did(app: TestApp) {
    let _serial = SERIAL.lock().await;
    let before = Scrape::of(&app).await;
    app.player(PLAYER).await;
    let mut ids = drive_deposits(&app).await;
    ids.push(refund(&app, &ids[0]).await);
    ids.push(payout(&app).await);
    let missing = app.get(&format!("/v1/no-such-route/{}", ids[0])).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let nobody = app
        .client
        .post(format!(
            "{}/v1/providers/made-up-psp-4711/webhook",
            app.base
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(nobody.status().is_client_error(), "{}", nobody.status());
    let after = Scrape::of(&app).await;
    let added = |name: &str, labels: &[(&str, &str)]| added(&before, &after, name, labels);

    let started = "kassa_payments_initiated_total";
    let card = [("provider", "sandbox"), ("method", "card")];
    assert_eq!(added(started, &card), 5.0);
    assert_eq!(added(started, &[("country", "MT")]), 3.0);
    assert_eq!(added(started, &[("country", "DE")]), 2.0);
    assert_eq!(added(started, &[("device_class", "unknown")]), 2.0);
    assert_eq!(added(started, &[("device_class", "tablet")]), 1.0);

    // Conversion by method, country and device class: initiated against approved.
    let decided = "kassa_payments_total";
    let approved = [("method", "card"), ("outcome", "approved")];
    assert_eq!(added(decided, &approved), 2.0);
    assert_eq!(
        added(decided, &[("country", "DE"), ("outcome", "approved")]),
        1.0
    );
    assert_eq!(
        added(
            decided,
            &[("device_class", "mobile"), ("outcome", "approved")]
        ),
        1.0
    );
    assert_eq!(
        added(
            decided,
            &[("device_class", "tablet"), ("outcome", "declined")]
        ),
        1.0
    );
    assert_eq!(added(decided, &[("outcome", "declined")]), 2.0);
    assert_eq!(added(decided, &[("outcome", "cancelled")]), 1.0);
    assert_eq!(added(decided, &[("outcome", "failed")]), 0.0);
    let durations = "kassa_payment_duration_seconds_count";
    assert_eq!(added(durations, &[("outcome", "approved")]), 2.0);
    let authorization = "kassa_provider_authorization_duration_seconds_count";
    assert_eq!(added(authorization, &card), 5.0);
    assert_eq!(added("kassa_threeds_total", &[("outcome", "failed")]), 1.0);
    // The hosted page's challenge passed once (its event says so); the failed one is above.
    assert_eq!(
        added("kassa_threeds_total", &[("outcome", "challenged")]),
        1.0
    );

    // One account, no rule: every start is routed to it by configuration order.
    let routed = [("rule", "none"), ("provider", "sandbox")];
    assert_eq!(added("kassa_routing_decisions_total", &routed), 5.0);
    assert_eq!(added("kassa_cascades_total", &[]), 0.0);

    let refunds = [("provider", "sandbox"), ("outcome", "succeeded")];
    assert_eq!(added("kassa_refunds_total", &refunds), 1.0);
    let paid = [
        ("provider", "sandbox"),
        ("method", "card"),
        ("outcome", "paid"),
    ];
    assert_eq!(added("kassa_payouts_total", &paid), 1.0);
    assert_eq!(added("kassa_payout_duration_seconds_count", &paid), 1.0);

    // Four deposits and the refund settled by the sandbox's webhooks, the payout's too.
    let processed = [("provider", "sandbox"), ("outcome", "processed")];
    assert!(added("kassa_webhooks_received_total", &processed) >= 6.0);

    // A provider name no account has is the sender's text: counted as `unknown`.
    let made_up = [("provider", "unknown"), ("outcome", "unknown_provider")];
    assert_eq!(added("kassa_webhooks_received_total", &made_up), 1.0);
    assert!(!after.text.contains("made-up-psp"));

    let get_payment = [
        ("route", "/v1/payments/{payment_id}"),
        ("status_class", "2xx"),
    ];
    assert!(added("kassa_http_requests_total", &get_payment) >= 5.0);
    let init = [("route", "/v1/payments/init"), ("status_class", "2xx")];
    assert_eq!(added("kassa_http_requests_total", &init), 5.0);
    let unmatched = [("route", "unmatched"), ("status_class", "4xx")];
    assert_eq!(added("kassa_http_requests_total", &unmatched), 1.0);
    assert!(
        after.sum(
            "kassa_http_request_duration_seconds_count",
            &[("route", "/v1/payments/init")]
        ) >= 5.0
    );

    let sandbox = [("provider", "sandbox")];
    assert_eq!(after.sum("kassa_provider_up", &sandbox), 1.0);
    assert_eq!(after.sum("kassa_provider_circuit_state", &sandbox), 0.0);
    assert!(
        after.text.contains("\nkassa_outbox_backlog "),
        "the backlog gauge is read at scrape"
    );
    assert!(after.text.contains("\nkassa_webhook_deliveries_queued "));
    // Two declines, one player: the approval-drop alert's "enough players" side.
    assert_eq!(after.sum("kassa_deposit_failed_players_15m", &[]), 1.0);

    // No id in any label, nor anywhere in the text.
    for id in ids
        .iter()
        .map(String::as_str)
        .chain([PLAYER, PAYOUT_PLAYER])
    {
        assert!(!after.text.contains(id), "{id} shows in /metrics");
    }
    for value in after.label_values() {
        let prefixed = ["pay_", "po_", "rf_", "txn_", "evt_", "whk_", "player"];
        assert!(
            !prefixed.iter().any(|p| value.starts_with(p)),
            "label value {value}"
        );
    }
    app.assert_ledger_verifies().await;
    app.stop().await;
}

/// The routing and circuit functions render as documented: a decision by its rule and first
/// choice, each cascade by from, to and outcome, circuits and cost.
#[tokio::test]
async fn routing_and_circuit_metrics_render_as_documented() {
    let app = common::spawn_with(kassa_store::testing::TestBackend::Sqlite, with_metrics)
        .await
        .unwrap();
    let _serial = SERIAL.lock().await;
    let before = Scrape::of(&app).await;
    use kassa_server::metrics::{self as m, CircuitState};
    use kassa_server::service::cascade::Attempt;
    m::record_routing_decision("eu-cards", "sandbox-b");
    m::record_routing_decision("eu-cards", "sandbox-b");
    m::record_cascade("sandbox-b", "sandbox-c", "soft_decline");
    m::record_cascade("sandbox-b", "sandbox-c", "Do Not Honour (05)");
    let decision = kassa_core::routing::Decision {
        rule: Some("eu-cards".into()),
        candidates: vec!["sandbox-b".into(), "sandbox-c".into()],
        split: None,
        reasons: vec![],
        cascade_after_3ds: false,
        arm: None,
    };
    let attempt = |provider: &str, outcome, cascaded| Attempt {
        provider: provider.into(),
        outcome,
        reason: Some("do_not_honour".into()),
        cascaded,
        elapsed_ms: 3,
    };
    let offers = [
        attempt("sandbox-b", "declined", true),
        attempt("sandbox-c", "unavailable", true),
        attempt("sandbox-d", "started", false),
    ];
    m::record_routing(&decision, &offers);
    m::record_routing(
        &kassa_core::routing::Decision {
            rule: None,
            ..decision
        },
        &offers[2..],
    );
    m::set_circuit_state("sandbox-b", CircuitState::Open);
    m::set_circuit_state("sandbox-c", CircuitState::HalfOpen);
    m::record_payment_cost("sandbox-c", "EUR", 35);
    let after = Scrape::of(&app).await;
    let added = |name: &str, labels: &[(&str, &str)]| added(&before, &after, name, labels);
    let rule = [("rule", "eu-cards"), ("provider", "sandbox-b")];
    assert_eq!(added("kassa_routing_decisions_total", &rule), 3.0);
    let no_rule = [("rule", "none"), ("provider", "sandbox-b")];
    assert_eq!(added("kassa_routing_decisions_total", &no_rule), 1.0);
    let soft = [
        ("from", "sandbox-b"),
        ("to", "sandbox-c"),
        ("reason", "soft_decline"),
    ];
    assert_eq!(added("kassa_cascades_total", &soft), 2.0);
    let down = [
        ("from", "sandbox-c"),
        ("to", "sandbox-d"),
        ("reason", "unavailable"),
    ];
    assert_eq!(added("kassa_cascades_total", &down), 1.0);
    // The last offer cascades nowhere; the provider's own reason is never a label.
    assert_eq!(added("kassa_cascades_total", &[("from", "sandbox-d")]), 0.0);
    assert!(!after.text.contains("do_not_honour"));
    // A reason that is free text is folded into `other`, not made a series.
    assert_eq!(added("kassa_cascades_total", &[("reason", "other")]), 1.0);
    let open = [("provider", "sandbox-b")];
    assert_eq!(after.sum("kassa_provider_circuit_state", &open), 2.0);
    assert_eq!(after.sum("kassa_provider_up", &open), 0.0);
    let half_open = [("provider", "sandbox-c")];
    assert_eq!(after.sum("kassa_provider_circuit_state", &half_open), 1.0);
    assert_eq!(after.sum("kassa_provider_up", &half_open), 1.0);
    let cost = [("provider", "sandbox-c"), ("currency", "EUR")];
    assert_eq!(added("kassa_payment_cost_minor_total", &cost), 35.0);
    app.stop().await;
}

/// psp_a goes down: the first deposits cascade from it to psp_b until its circuit opens, then
/// the router sends them to psp_b at once. `/metrics` counts exactly the decisions and
/// cascades the payments store, and shows psp_a's circuit open and psp_a down.
async fn metrics_tell_the_story_of_a_provider_going_down(app: TestApp) {
    let _serial = SERIAL.lock().await;
    app.player("p1").await;
    // psp_b charges 0.25 + 1.8% per approved deposit: 0.43 of 10.00.
    let fees = json!({"commissions": {"psp_b": {"fixed_minor": 25, "percent_bps": 180}}});
    common::set_routing(&app, fees).await;
    behave(&app, "psp_a", json!({"outage": true})).await;
    let before = Scrape::of(&app).await;
    let (mut payments, mut pages) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        let started = common::start_deposit(&app, "10.00").await;
        let id = started.body["payment_id"].as_str().unwrap().to_string();
        pages.push((
            id.clone(),
            started.body["redirect_url"].as_str().unwrap().to_string(),
        ));
        payments.push(app.get(&format!("/v1/payments/{id}")).await.body);
    }
    let after = Scrape::of(&app).await;
    let added = |name: &str, labels: &[(&str, &str)]| added(&before, &after, name, labels);

    let mut stored_cascades = 0.0;
    let mut first_choices = BTreeMap::<String, f64>::new();
    for payment in &payments {
        let routing = &payment["routing"];
        let first = routing["decision"]["candidates"][0].as_str().unwrap();
        *first_choices.entry(first.to_string()).or_default() += 1.0;
        let attempts = routing["attempts"].as_array().unwrap();
        for pair in attempts.windows(2) {
            assert_eq!(pair[0]["cascaded"], true, "{payment}");
            assert_eq!(
                (&pair[0]["provider"], &pair[1]["provider"]),
                (&json!("psp_a"), &json!("psp_b"))
            );
            stored_cascades += 1.0;
        }
    }
    assert!(
        stored_cascades >= 3.0,
        "psp_a was asked until its circuit opened"
    );
    assert!(
        stored_cascades < 8.0,
        "the open circuit kept deposits away from psp_a"
    );
    let unavailable = [
        ("from", "psp_a"),
        ("to", "psp_b"),
        ("reason", "unavailable"),
    ];
    assert_eq!(added("kassa_cascades_total", &unavailable), stored_cascades);
    assert_eq!(added("kassa_cascades_total", &[]), stored_cascades);
    for (provider, count) in &first_choices {
        let routed = [("rule", "none"), ("provider", provider.as_str())];
        assert_eq!(
            added("kassa_routing_decisions_total", &routed),
            *count,
            "{provider}"
        );
    }
    // Every deposit started at psp_b in the end.
    let started_at_b = [("provider", "psp_b"), ("method", "card")];
    assert_eq!(added("kassa_payments_initiated_total", &started_at_b), 8.0);

    let (a, b) = ([("provider", "psp_a")], [("provider", "psp_b")]);
    assert_eq!(after.sum("kassa_provider_circuit_state", &a), 2.0);
    assert_eq!(after.sum("kassa_provider_up", &a), 0.0);
    assert_eq!(after.sum("kassa_provider_circuit_state", &b), 0.0);
    assert_eq!(after.sum("kassa_provider_up", &b), 1.0);

    // Two of them approved: cost per success is computable.
    for (id, page) in &pages[..2] {
        pay_with_card(page, "4242424242424242", "").await;
        until_status(&app, &format!("/v1/payments/{id}"), "captured").await;
    }
    let paid = Scrape::of(&app).await;
    let cost = [("provider", "psp_b"), ("currency", "EUR")];
    assert_eq!(
        paid.sum("kassa_payment_cost_minor_total", &cost)
            - before.sum("kassa_payment_cost_minor_total", &cost),
        86.0
    );
    let approved = [("provider", "psp_b"), ("outcome", "approved")];
    assert_eq!(
        paid.sum("kassa_payments_total", &approved) - before.sum("kassa_payments_total", &approved),
        2.0
    );
    app.stop().await;
}
