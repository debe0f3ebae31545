//! Deposits through the real HTTP API, on SQLite and PostgreSQL alike. Here the test plays
//! the provider (the sandbox's autopilot is off) and signs its webhooks itself.

mod common;

use common::{deliver, deliver_signed, pay_with_card, rfc3339_now_plus, TestApp};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The test plays the provider: the sandbox sends no webhook by itself.
fn quiet(config: &mut kassa_server::config::Config) {
    config.sandbox.autopilot = false;
}

contract_tests_with!(
    init_follows_the_conventions => quiet,
    captured_credits_once_and_duplicates_replay => quiet,
    signatures_and_freshness_are_enforced => quiet,
    unknown_payments_and_mismatches_change_nothing => quiet,
    late_events_are_recorded_and_ignored => quiet,
    concurrent_captures_credit_once => quiet,
    declined_and_cancelled_payments_move_no_money => quiet,
    refunds_hold_then_settle_on_the_providers_word => quiet,
    chargebacks_take_what_the_player_has_and_book_the_rest_as_loss => quiet,
    every_webhook_is_in_the_delivery_log => quiet,
    the_status_stream_follows_the_payment => quiet,
    a_deposit_costs_two_commits => quiet_and_idle,
    concurrent_starts_with_one_key_make_one_payment => quiet,
);

/// [`quiet`], with the background jobs (outbox, status sync) far apart, so the only write
/// transactions during the test are the requests'.
fn quiet_and_idle(config: &mut kassa_server::config::Config) {
    quiet(config);
    config.jobs.poll_interval_ms = 3_600_000;
    config.jobs.outbox_interval_ms = 3_600_000;
    config.payments.status_sync_interval_ms = 3_600_000;
}

/// ADR 0034: the start is one commit (key, payment, provider answer, stored answer) after
/// its risk decision's (ADR 74), the capture one more (effect, dedupe row, delivery log
/// row); a replay of either costs none.
async fn a_deposit_costs_two_commits(app: TestApp) {
    app.player("p1").await;
    // The first start of a process also reads (or makes) the deployment's payment-id
    // secret, once; the start-up jobs settle meanwhile.
    let first = init(&app, "warm-up", "50.00").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // On SQLite with group commit, each unit below is a durable commit of its own (nothing
    // runs beside it); otherwise none is counted there (ADR 39).
    let grouped = u64::from(app.sqlite_group_commit());
    let before = app.write_transactions();
    let group_before = app.group_commits();
    let started = init(&app, "two-commits", "50.00").await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    // ADR 74: the risk decision is stored before the provider is asked (so simultaneous
    // starts count each other), then the start's record.
    assert_eq!(
        app.write_transactions() - before,
        2,
        "the start is its risk decision's commit and its own"
    );
    assert_eq!(
        app.group_commits() - group_before,
        2 * grouped,
        "the start's commits"
    );
    let timing = started
        .header("server-timing")
        .expect("Server-Timing")
        .to_string();
    let parts: Vec<&str> = timing.split(", ").collect();
    assert!(
        parts.len() == 2
            && parts[0].starts_with("kassa;dur=")
            && parts[1].starts_with("provider;dur="),
        "{timing}"
    );
    let id = started.body["payment_id"].as_str().unwrap().to_string();
    let before = app.write_transactions();
    let group_before = app.group_commits();
    let captured = deliver(&app, &event("evt_1", &id, "captured", "50.00")).await;
    assert_eq!(captured.body["outcome"], "processed", "{}", captured.body);
    assert_eq!(
        app.write_transactions() - before,
        1,
        "the capture is one commit"
    );
    assert_eq!(
        app.group_commits() - group_before,
        grouped,
        "the capture's commit"
    );
    let before = app.write_transactions();
    let replayed = init(&app, "two-commits", "50.00").await;
    assert_eq!(
        (replayed.status, &replayed.body),
        (StatusCode::CREATED, &started.body)
    );
    assert_eq!(
        app.write_transactions() - before,
        0,
        "a replay writes nothing"
    );
    assert_eq!(app.balance("p1").await.0, "50.00");
    let log = app
        .send(
            Method::GET,
            &format!("/v1/admin/webhook-deliveries?payment_id={id}"),
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
    assert_eq!(
        outcomes,
        ["processed"],
        "the capture's log row committed with it"
    );
    app.stop().await;
}

/// Two concurrent starts with one key: one payment at the provider and in Kassa, and every
/// answer either the payment or 409 `idempotency_key_in_use`.
async fn concurrent_starts_with_one_key_make_one_payment(app: TestApp) {
    app.player("p1").await;
    let answers = join_all((0..8).map(|_| init(&app, "one-key", "50.00"))).await;
    let mut ids = Vec::new();
    for answer in &answers {
        match answer.status {
            StatusCode::CREATED => {
                ids.push(answer.body["payment_id"].as_str().unwrap().to_string())
            }
            StatusCode::CONFLICT => assert_eq!(answer.error_code(), "idempotency_key_in_use"),
            other => panic!("{other}: {}", answer.body),
        }
    }
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "one payment: {answers_len} answers",
        answers_len = answers.len()
    );
    let listed = app.get("/v1/payments?player_id=p1").await;
    assert_eq!(
        listed.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        listed.body
    );
    app.stop().await;
}

async fn init(app: &TestApp, key: &str, amount: &str) -> common::Answer {
    let body = json!({
        "amount": amount, "currency": "EUR", "method": "card", "player_id": "p1",
        "return_url": format!("{}/cashier/return", app.base),
        "meta": {"country": "MT", "device": "desktop", "ip": "203.0.113.9"}
    });
    app.send(
        Method::POST,
        "/v1/payments/init",
        Some(&app.api_key),
        Some(&body),
        &[("Idempotency-Key", key)],
    )
    .await
}

async fn new_payment(app: &TestApp, amount: &str) -> String {
    let answer = init(app, &kassa_core::ids::generate("idem"), amount).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body["payment_id"].as_str().unwrap().to_string()
}

fn event(event_id: &str, payment_id: &str, status: &str, amount: &str) -> Value {
    json!({"event_id": event_id, "payment_id": payment_id, "status": status, "amount": amount, "currency": "EUR", "timestamp": rfc3339_now_plus(0)})
}

/// The event types the outbox holds about one object, oldest first.
async fn outbox_topics(app: &TestApp, aggregate_id: &str) -> Vec<String> {
    let store = kassa_store::Store::connect(&app.database_url)
        .await
        .unwrap();
    let topics = store.outbox_for(aggregate_id).await.unwrap();
    store.close().await;
    topics.into_iter().map(|(topic, _)| topic).collect()
}

async fn payment(app: &TestApp, id: &str) -> Value {
    let answer = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

async fn init_follows_the_conventions(app: TestApp) {
    app.player("p1").await;
    let body = json!({"amount": "50.00", "currency": "EUR", "method": "card", "player_id": "p1", "return_url": "https://casino.example/back", "meta": {"country": "MT"}});
    let no_key = app.post("/v1/payments/init", body.clone()).await;
    assert_eq!(
        (no_key.status, no_key.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_missing")
    );
    let first = init(&app, "k1", "50.00").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(
        (
            first.body["status"].as_str(),
            first.body["provider"].as_str()
        ),
        (Some("pending"), Some("sandbox"))
    );
    let id = first.body["payment_id"].as_str().unwrap();
    assert!(id.starts_with("pay_"));
    assert!(first.body["redirect_url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    let replay = init(&app, "k1", "50.00").await;
    assert_eq!(
        (replay.status, &replay.body),
        (StatusCode::CREATED, &first.body)
    );
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let reused = init(&app, "k1", "60.00").await;
    assert_eq!(
        (reused.status, reused.error_code()),
        (StatusCode::CONFLICT, "idempotency_key_reused")
    );
    for (patch, code) in [
        (json!({"amount": "50.001"}), "validation_failed"),
        (json!({"currency": "USD"}), "currency_mismatch"),
        (json!({"method": "pigeon"}), "no_provider"),
        (
            json!({"return_url": "javascript:alert(1)"}),
            "validation_failed",
        ),
        (json!({"player_id": "ghost"}), "player_not_found"),
    ] {
        let mut request = body.clone();
        for (k, v) in patch.as_object().unwrap() {
            request[k] = v.clone();
        }
        let refused = app
            .send(
                Method::POST,
                "/v1/payments/init",
                Some(&app.api_key),
                Some(&request),
                &[("Idempotency-Key", &kassa_core::ids::generate("k"))],
            )
            .await;
        assert_eq!(refused.error_code(), code, "{patch}");
    }
    let fetched = payment(&app, id).await;
    assert_eq!(
        (
            fetched["status"].as_str(),
            fetched["amount"].as_str(),
            fetched["player_id"].as_str()
        ),
        (Some("pending"), Some("50.00"), Some("p1"))
    );
    let list = app.get("/v1/payments?player_id=p1&limit=10").await;
    assert_eq!(
        list.body["data"].as_array().unwrap().len(),
        1,
        "refused inits create no payment"
    );
    assert_eq!(
        app.get("/v1/payments/pay_nope").await.status,
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

async fn captured_credits_once_and_duplicates_replay(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "50.00").await;
    let authorized = deliver(&app, &event("evt_1", &id, "authorized", "50.00")).await;
    assert_eq!(
        (authorized.status, authorized.body["outcome"].as_str()),
        (StatusCode::OK, Some("processed"))
    );
    assert_eq!(
        app.balance("p1").await.0,
        "0.00",
        "authorized moves no money"
    );
    let captured = deliver(&app, &event("evt_2", &id, "captured", "50.00")).await;
    assert_eq!(
        (captured.status, captured.body["payment_status"].as_str()),
        (StatusCode::OK, Some("captured"))
    );
    assert_eq!(app.balance("p1").await.0, "50.00");
    let duplicate = deliver(&app, &event("evt_2", &id, "captured", "50.00")).await;
    assert_eq!(
        (duplicate.status, &duplicate.body),
        (StatusCode::OK, &captured.body)
    );
    let another_capture = deliver(&app, &event("evt_3", &id, "captured", "50.00")).await;
    assert_eq!(
        (
            another_capture.status,
            another_capture.body["outcome"].as_str()
        ),
        (StatusCode::OK, Some("ignored"))
    );
    assert_eq!(app.balance("p1").await.0, "50.00", "credited exactly once");
    assert_eq!(payment(&app, &id).await["status"], "captured");
    let history = app.get("/v1/players/p1/transactions").await;
    let deposit = &history.body["data"][0];
    assert_eq!(
        (deposit["type"].as_str(), deposit["reference"].as_str()),
        (Some("deposit"), Some(id.as_str()))
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn signatures_and_freshness_are_enforced(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "50.00").await;
    let body = event("evt_1", &id, "captured", "50.00");
    let forged = deliver_signed(&app, &body, "not-the-secret-at-all").await;
    assert_eq!(
        (forged.status, forged.error_code()),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    let unsigned = app
        .client
        .post(format!("{}/v1/payments/webhook", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let raw = serde_json::to_vec(&body).unwrap();
    let signature = kassa_connectors::sign_webhook(common::SANDBOX_WEBHOOK_SECRET.as_bytes(), &raw);
    let mut tampered = raw.clone();
    let at = tampered.windows(5).position(|w| w == b"50.00").unwrap();
    tampered[at] = b'9';
    let tampered = app
        .client
        .post(format!("{}/v1/payments/webhook", app.base))
        .header("x-signature", signature)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), StatusCode::UNAUTHORIZED);
    let mut stale = body.clone();
    stale["timestamp"] = json!(rfc3339_now_plus(-301));
    let stale = deliver(&app, &stale).await;
    assert_eq!(
        (stale.status, stale.error_code()),
        (StatusCode::UNAUTHORIZED, "stale_webhook")
    );
    let mut future = body.clone();
    future["timestamp"] = json!(rfc3339_now_plus(301));
    assert_eq!(deliver(&app, &future).await.error_code(), "stale_webhook");
    assert_eq!(app.balance("p1").await.0, "0.00");
    assert_eq!(payment(&app, &id).await["status"], "pending");
    // The refused deliveries did not burn the event id: the genuine one still applies.
    assert_eq!(deliver(&app, &body).await.body["outcome"], "processed");
    assert_eq!(app.balance("p1").await.0, "50.00");
    app.stop().await;
}

async fn unknown_payments_and_mismatches_change_nothing(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "50.00").await;
    // Retryable: the event may have overtaken its payment's start (ADR 0034).
    let unknown = deliver(&app, &event("evt_1", "pay_unknown", "captured", "50.00")).await;
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (StatusCode::SERVICE_UNAVAILABLE, "payment_not_found")
    );
    let amount = deliver(&app, &event("evt_2", &id, "captured", "500.00")).await;
    assert_eq!(
        (amount.status, amount.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "webhook_mismatch")
    );
    let mut currency = event("evt_3", &id, "captured", "50.00");
    currency["currency"] = json!("USD");
    assert_eq!(
        deliver(&app, &currency).await.error_code(),
        "webhook_mismatch"
    );
    let mut reference = event("evt_4", &id, "captured", "50.00");
    reference["provider_reference"] = json!("psp_someone_else");
    assert_eq!(
        deliver(&app, &reference).await.error_code(),
        "webhook_mismatch"
    );
    let malformed = deliver(&app, &json!({"event_id": "evt_5", "payment_id": id, "status": "teleported", "amount": "50.00", "currency": "EUR", "timestamp": rfc3339_now_plus(0)})).await;
    assert_eq!(
        (malformed.status, malformed.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "malformed_webhook")
    );
    assert_eq!(app.balance("p1").await.0, "0.00");
    assert_eq!(payment(&app, &id).await["status"], "pending");
    app.stop().await;
}

async fn late_events_are_recorded_and_ignored(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "20.00").await;
    deliver(&app, &event("evt_1", &id, "captured", "20.00")).await;
    for (n, late) in ["declined", "failed", "authorized", "cancelled"]
        .iter()
        .enumerate()
    {
        let answer = deliver(&app, &event(&format!("evt_late_{n}"), &id, late, "20.00")).await;
        assert_eq!(
            (answer.status, answer.body["outcome"].as_str()),
            (StatusCode::OK, Some("ignored")),
            "{late}"
        );
    }
    assert_eq!(payment(&app, &id).await["status"], "captured");
    assert_eq!(app.balance("p1").await.0, "20.00");
    // Out of order: captured first, then the older authorized, is fine too.
    let second = new_payment(&app, "5.00").await;
    deliver(&app, &event("evt_a", &second, "captured", "5.00")).await;
    assert_eq!(
        deliver(&app, &event("evt_b", &second, "authorized", "5.00"))
            .await
            .body["outcome"],
        "ignored"
    );
    assert_eq!(app.balance("p1").await.0, "25.00");
    app.stop().await;
}

async fn concurrent_captures_credit_once(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "30.00").await;
    let same = event("evt_same", &id, "captured", "30.00");
    let same_event = join_all((0..10).map(|_| deliver(&app, &same))).await;
    let different_events = join_all((0..10).map(|i| {
        let body = event(&format!("evt_{i}"), &id, "captured", "30.00");
        let app = &app;
        async move { deliver(app, &body).await }
    }))
    .await;
    for answer in same_event.iter().chain(&different_events) {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    assert_eq!(app.balance("p1").await.0, "30.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn declined_and_cancelled_payments_move_no_money(app: TestApp) {
    app.player("p1").await;
    let declined = new_payment(&app, "10.00").await;
    let mut body = event("evt_1", &declined, "declined", "10.00");
    body["reason"] = json!("insufficient_funds");
    assert_eq!(
        deliver(&app, &body).await.body["payment_status"],
        "declined"
    );
    let view = payment(&app, &declined).await;
    assert_eq!(view["status"], "declined");
    let cancelled = new_payment(&app, "10.00").await;
    let cancel = app
        .post(&format!("/v1/payments/{cancelled}/cancel"), json!({}))
        .await;
    assert_eq!(
        (cancel.status, cancel.body["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{}",
        cancel.body
    );
    assert_eq!(
        deliver(&app, &event("evt_2", &cancelled, "captured", "10.00"))
            .await
            .body["outcome"],
        "ignored"
    );
    let again = app
        .post(&format!("/v1/payments/{cancelled}/cancel"), json!({}))
        .await;
    assert_eq!(
        (again.status, &again.body),
        (StatusCode::OK, &cancel.body),
        "a repeated cancel answers the cancelled payment again"
    );
    assert_eq!(app.balance("p1").await.0, "0.00");
    app.stop().await;
}

async fn refunds_hold_then_settle_on_the_providers_word(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "50.00").await;
    let early = app
        .send(
            Method::POST,
            &format!("/v1/payments/{id}/refunds"),
            Some(&app.api_key),
            Some(&json!({})),
            &[("Idempotency-Key", "r0")],
        )
        .await;
    assert_eq!(
        (early.status, early.error_code()),
        (StatusCode::CONFLICT, "payment_not_refundable")
    );
    // The sandbox must itself have captured the payment before it refunds it.
    let redirect = payment(&app, &id).await["redirect_url"]
        .as_str()
        .unwrap()
        .to_string();
    let landed = pay_with_card(&redirect, "4242424242424242", "").await;
    assert!(landed.contains(&format!("payment_id={id}")), "{landed}");
    deliver(&app, &event("evt_1", &id, "captured", "50.00")).await;
    let refund = |amount: Option<&str>, key: &str| {
        let body = match amount {
            Some(a) => json!({"amount": a}),
            None => json!({}),
        };
        let key = key.to_string();
        let app = &app;
        let id = id.clone();
        async move {
            app.send(
                Method::POST,
                &format!("/v1/payments/{id}/refunds"),
                Some(&app.api_key),
                Some(&body),
                &[("Idempotency-Key", &key)],
            )
            .await
        }
    };
    let first = refund(Some("20.00"), "r1").await;
    assert_eq!(
        (first.status, first.body["status"].as_str()),
        (StatusCode::CREATED, Some("pending")),
        "{}",
        first.body
    );
    assert_eq!(
        app.balance("p1").await,
        ("30.00".to_string(), "20.00".to_string()),
        "the refund is held at once"
    );
    let too_much = refund(Some("30.01"), "r2").await;
    assert_eq!(
        too_much.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "captured 50, 20 refunding: at most 30 more"
    );
    let refund_id = first.body["refund_id"].as_str().unwrap();
    let mut done = event("evt_r1", &id, "refunded", "20.00");
    done["refund_id"] = json!(refund_id);
    assert_eq!(
        deliver(&app, &done).await.body["payment_status"],
        "partially_refunded"
    );
    assert_eq!(
        deliver(&app, &done).await.status,
        StatusCode::OK,
        "a duplicate refund event is harmless"
    );
    assert_eq!(
        app.balance("p1").await,
        ("30.00".to_string(), "0.00".to_string())
    );
    let view = payment(&app, &id).await;
    assert_eq!(
        (view["status"].as_str(), view["refunded"].as_str()),
        (Some("partially_refunded"), Some("20.00"))
    );
    // The rest, but the player has spent some of it meanwhile.
    app.debit("bet", "p1", "25.00").await;
    let short = refund(None, "r3").await;
    assert_eq!(
        (short.status, short.error_code()),
        (StatusCode::PAYMENT_REQUIRED, "insufficient_funds")
    );
    app.credit("win", "p1", "25.00").await;
    let rest = refund(None, "r4").await;
    assert_eq!(rest.body["amount"], "30.00");
    let mut done = event("evt_r2", &id, "refunded", "30.00");
    done["refund_id"] = rest.body["refund_id"].clone();
    assert_eq!(
        deliver(&app, &done).await.body["payment_status"],
        "refunded"
    );
    assert_eq!(
        app.balance("p1").await,
        ("0.00".to_string(), "0.00".to_string())
    );
    let mut forged = event("evt_r3", &id, "refunded", "30.00");
    forged["refund_id"] = json!("rf_not_ours");
    assert_eq!(
        deliver(&app, &forged).await.error_code(),
        "webhook_mismatch"
    );
    // The operator hears of each refund, in its own order, beside the payment's changes.
    let refund_events = outbox_topics(&app, refund_id).await;
    assert_eq!(refund_events, ["refund.created", "refund.succeeded"]);
    let payment_events = outbox_topics(&app, &id).await;
    assert!(
        payment_events.ends_with(&[
            "payment.captured".to_string(),
            "payment.partially_refunded".to_string(),
            "payment.refunded".to_string()
        ]),
        "{payment_events:?}"
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn chargebacks_take_what_the_player_has_and_book_the_rest_as_loss(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "50.00").await;
    deliver(&app, &event("evt_1", &id, "captured", "50.00")).await;
    app.debit("bet", "p1", "40.00").await;
    let mut chargeback = event("evt_cb", &id, "chargeback", "50.00");
    chargeback["dispute_id"] = json!("dp_1");
    assert_eq!(
        deliver(&app, &chargeback).await.body["payment_status"],
        "charged_back"
    );
    assert_eq!(
        app.balance("p1").await.0,
        "0.00",
        "the player's remaining 10.00 is taken; 40.00 is the operator's loss"
    );
    assert_eq!(deliver(&app, &chargeback).await.status, StatusCode::OK);
    assert_eq!(app.balance("p1").await.0, "0.00");
    let mut won = event("evt_won", &id, "dispute_won", "50.00");
    won["dispute_id"] = json!("dp_1");
    assert_eq!(deliver(&app, &won).await.body["payment_status"], "captured");
    assert_eq!(
        app.balance("p1").await.0,
        "10.00",
        "winning returns what was taken from the player"
    );
    // A second dispute on the same payment, lost this time: the chargeback stands.
    let mut again = event("evt_cb2", &id, "chargeback", "50.00");
    again["dispute_id"] = json!("dp_2");
    assert_eq!(
        deliver(&app, &again).await.body["payment_status"],
        "charged_back"
    );
    assert_eq!(app.balance("p1").await.0, "0.00");
    let mut lost = event("evt_lost", &id, "dispute_lost", "50.00");
    lost["dispute_id"] = json!("dp_2");
    assert_eq!(
        deliver(&app, &lost).await.body["payment_status"],
        "charged_back"
    );
    assert_eq!(
        app.balance("p1").await.0,
        "0.00",
        "a lost dispute moves no more money"
    );
    let disputes: Vec<String> = outbox_topics(&app, &id)
        .await
        .into_iter()
        .filter(|topic| !topic.starts_with("payment."))
        .collect();
    assert_eq!(
        disputes,
        [
            "chargeback.created",
            "dispute.won",
            "chargeback.created",
            "dispute.lost"
        ],
        "one event per dispute step, none for the repeated delivery"
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn every_webhook_is_in_the_delivery_log(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "50.00").await;
    deliver_signed(
        &app,
        &event("evt_x", &id, "captured", "50.00"),
        "wrong-secret-wrong-secret",
    )
    .await;
    deliver(&app, &event("evt_1", &id, "captured", "50.00")).await;
    deliver(&app, &event("evt_1", &id, "captured", "50.00")).await;
    let log = app
        .send(
            Method::GET,
            "/v1/admin/webhook-deliveries?limit=10",
            Some(&app.admin_key),
            None,
            &[],
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let outcomes: Vec<&str> = log.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["duplicate", "processed", "invalid_signature"]);
    let first = &log.body["data"][2];
    assert_eq!(first["http_status"], 401);
    assert!(first["raw_body"].as_str().unwrap().contains("evt_x"));
    assert!(first["headers"]["x-signature"].is_string());
    let for_payment = app
        .send(
            Method::GET,
            &format!("/v1/admin/webhook-deliveries?payment_id={id}"),
            Some(&app.admin_key),
            None,
            &[],
        )
        .await;
    assert_eq!(
        for_payment.body["data"].as_array().unwrap().len(),
        2,
        "the forged one was never matched to the payment"
    );
    app.stop().await;
}

async fn the_status_stream_follows_the_payment(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "15.00").await;
    let mut stream = app
        .client
        .get(format!("{}/v1/payments/{id}/events", app.base))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    seen.push_str(&String::from_utf8_lossy(&first));
    assert!(seen.contains("\"status\":\"pending\""), "{seen}");
    deliver(&app, &event("evt_1", &id, "captured", "15.00")).await;
    while !seen.contains("\"status\":\"captured\"") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk())
            .await
            .expect("the stream reports the capture")
            .unwrap();
        match chunk {
            Some(bytes) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            None => break,
        }
    }
    assert!(seen.contains("\"status\":\"captured\""), "{seen}");
    let page = app
        .client
        .get(format!("{}/cashier/return?payment_id={id}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("15.00 EUR") && html.contains(">captured<"),
        "{html}"
    );
    app.stop().await;
}

/// The switch reaches the store (ADR 39): on SQLite group commit is on with the tuning and
/// off when `storage.sqlite_group_commit` or the tuning is off.
#[tokio::test]
async fn the_group_commit_switch_reaches_the_store() {
    for (tuning, group_commit) in [(true, true), (true, false), (false, true)] {
        let app = common::spawn_with(kassa_store::testing::TestBackend::Sqlite, |config| {
            config.storage.sqlite_tuning = tuning;
            config.storage.sqlite_group_commit = group_commit;
        })
        .await
        .expect("sqlite");
        assert_eq!(
            app.sqlite_group_commit(),
            tuning && group_commit,
            "tuning {tuning}, group commit {group_commit}"
        );
        app.stop().await;
    }
}
