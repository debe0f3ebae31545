//! Inbound webhooks you can trust (issue 18, items 1–3), through the real HTTP API on SQLite
//! and PostgreSQL alike: the delivery log's search and paging, the dead-letter queue and its
//! replays (one, bulk, audited; an applied event replayed moves nothing), and the IP
//! allow-list per provider account.

mod common;

use base64::Engine;
use common::{deliver, deliver_raw_signed, rfc3339_now_plus, TestApp, SANDBOX_WEBHOOK_SECRET};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn quiet(config: &mut kassa_server::config::Config) {
    config.sandbox.autopilot = false;
    config.webhooks.requests_per_second_per_address = 0;
}

fn short_processing(config: &mut kassa_server::config::Config) {
    quiet(config);
    config.webhooks.processing_timeout_ms = 300;
}

fn small_bulk(config: &mut kassa_server::config::Config) {
    quiet(config);
    config.webhooks.replay_bulk_max = 2;
}

fn allow_list(cidrs: &[&str]) -> impl FnOnce(&mut kassa_server::config::Config) {
    let cidrs: Vec<String> = cidrs.iter().map(|c| c.to_string()).collect();
    move |config| {
        quiet(config);
        for account in &mut config.providers.accounts {
            account.webhook_source_cidrs = cidrs.clone();
        }
    }
}

fn loopback_excluded(config: &mut kassa_server::config::Config) {
    allow_list(&["10.0.0.0/8", "2001:db8::/32"])(config)
}

fn loopback_included(config: &mut kassa_server::config::Config) {
    allow_list(&["192.0.2.0/24", "127.0.0.0/8", "::1/128"])(config)
}

contract_tests_with!(
    the_delivery_log_is_searched_by_every_filter_and_paged => quiet,
    a_dead_lettered_capture_is_kept_whole_and_its_replay_moves_money_once => quiet,
    a_delivery_that_times_out_is_dead_lettered_and_replayed => short_processing,
    replaying_an_applied_event_moves_nothing => quiet,
    bytes_that_are_not_text_are_kept_exactly => quiet,
    bulk_replay_takes_dead_letters_oldest_first_bounded_and_idempotent => small_bulk,
    an_address_outside_the_allow_list_is_refused_and_logged => loopback_excluded,
    an_address_inside_the_allow_list_is_accepted => loopback_included,
);

async fn new_payment(app: &TestApp, amount: &str) -> String {
    let answer = common::start_deposit(app, amount).await;
    answer.body["payment_id"].as_str().unwrap().to_string()
}

fn capture(event_id: &str, payment_id: &str, amount: &str) -> Value {
    json!({"event_id": event_id, "payment_id": payment_id, "status": "captured",
        "amount": amount, "currency": "EUR", "timestamp": rfc3339_now_plus(0)})
}

async fn admin_get(app: &TestApp, path: &str) -> common::Answer {
    let answer = app
        .send(Method::GET, path, Some(&app.admin_key), None, &[])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "GET {path}: {}", answer.body);
    answer
}

async fn admin_post(app: &TestApp, path: &str, body: Value, key: Option<&str>) -> common::Answer {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    app.send(
        Method::POST,
        path,
        Some(&app.admin_key),
        Some(&body),
        &headers,
    )
    .await
}

/// The deliveries a search finds (one page of at most 100).
async fn search(app: &TestApp, query: &str) -> Vec<Value> {
    let answer = admin_get(
        app,
        &format!("/v1/admin/webhooks/inbound?limit=100&{query}"),
    )
    .await;
    answer.body["data"].as_array().unwrap().clone()
}

async fn replay(app: &TestApp, delivery_id: &str) -> Value {
    let path = format!("/v1/admin/webhooks/inbound/{delivery_id}/replay");
    let answer = admin_post(app, &path, json!({}), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["delivery_id"].as_str().unwrap().to_string())
        .collect()
}

async fn verified_payout(app: &TestApp) -> String {
    common::verified_player(app, "p2", "100.00").await;
    common::request_payout(app, "p2", "10.00").await
}

async fn the_delivery_log_is_searched_by_every_filter_and_paged(app: TestApp) {
    app.player("p1").await;
    let (a, b) = (
        new_payment(&app, "10.00").await,
        new_payment(&app, "20.00").await,
    );
    let started = rfc3339_now_plus(-1);
    assert_eq!(
        deliver(&app, &capture("evt_a", &a, "10.00")).await.status,
        200
    );
    assert_eq!(
        deliver(&app, &capture("evt_a", &a, "10.00")).await.status,
        200
    );
    assert_eq!(
        deliver(&app, &capture("evt_b", &b, "20.00")).await.status,
        200
    );
    let forged = common::deliver_signed(&app, &capture("evt_x", &b, "20.00"), "wrong-secret").await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let payout_id = verified_payout(&app).await;
    let paid = json!({"event_id": "evt_po", "payout_id": payout_id, "status": "paid",
        "amount": "10.00", "currency": "EUR", "timestamp": rfc3339_now_plus(0)});
    assert_eq!(deliver(&app, &paid).await.status, 200);

    let all = search(&app, "").await;
    assert_eq!(all.len(), 5, "{all:?}");
    let times: Vec<time::OffsetDateTime> = all
        .iter()
        .map(|r| {
            let text = r["received_at"].as_str().unwrap();
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .unwrap()
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    assert!(all
        .iter()
        .all(|r| r["source"] == "http" && r["provider"] == "sandbox"));
    assert!(all.iter().all(|r| r["source_address"] == "127.0.0.1"));
    let count = |rows: Vec<Value>| rows.len();
    assert_eq!(count(search(&app, &format!("payment_id={a}")).await), 2);
    assert_eq!(count(search(&app, "event_id=evt_a").await), 2);
    assert_eq!(count(search(&app, "outcome=duplicate").await), 1);
    assert_eq!(count(search(&app, "outcome=invalid_signature").await), 1);
    assert_eq!(count(search(&app, "provider=sandbox&source=http").await), 5);
    assert_eq!(count(search(&app, "provider=other").await), 0);
    let for_payout = search(&app, &format!("payout_id={payout_id}")).await;
    assert_eq!(for_payout.len(), 1);
    assert_eq!(for_payout[0]["payment_id"], Value::Null);
    assert_eq!(count(search(&app, &format!("from={started}")).await), 5);
    assert_eq!(count(search(&app, &format!("to={started}")).await), 0);
    let later = rfc3339_now_plus(60);
    assert_eq!(count(search(&app, &format!("from={later}")).await), 0);
    // Pages of two: every delivery once, in the same order.
    let mut paged = Vec::new();
    let mut path = "/v1/admin/webhooks/inbound?limit=2".to_string();
    loop {
        let page = admin_get(&app, &path).await.body;
        paged.extend(ids(page["data"].as_array().unwrap()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/admin/webhooks/inbound?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, ids(&all));
    let bad = app
        .send(
            Method::GET,
            "/v1/admin/webhooks/inbound?from=yesterday",
            Some(&app.admin_key),
            None,
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let merchant = app.get("/v1/admin/webhooks/inbound").await;
    assert_eq!(merchant.status, StatusCode::FORBIDDEN);
    app.stop().await;
}

async fn a_dead_lettered_capture_is_kept_whole_and_its_replay_moves_money_once(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "50.00").await;
    // Exact bytes: pretty-printed, non-ASCII text in a field; the signature covers them.
    let mut event = capture("evt_dlq", &id, "50.00");
    event["reason"] = json!("café ✓");
    let raw = serde_json::to_vec_pretty(&event).unwrap();
    app.inbound_faults().fail_next(1);
    let failed = deliver_raw_signed(&app, raw.clone(), SANDBOX_WEBHOOK_SECRET).await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.body
    );
    assert_eq!(failed.error_code(), "internal_error");
    assert_eq!(app.balance("p1").await.0, "0.00");

    let dead = search(&app, "outcome=dead_lettered").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let dead_id = dead[0]["delivery_id"].as_str().unwrap().to_string();
    assert_eq!(dead[0]["event_id"], "evt_dlq");
    assert_eq!(dead[0]["http_status"], 500);
    let detail = admin_get(&app, &format!("/v1/admin/webhooks/inbound/{dead_id}"))
        .await
        .body;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(detail["raw_body_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored, raw, "the exact bytes are kept");
    assert!(
        detail["headers"]["x-signature"].is_string(),
        "the signature is kept"
    );

    let first = replay(&app, &dead_id).await;
    assert_eq!(
        (first["outcome"].as_str(), first["http_status"].as_u64()),
        (Some("processed"), Some(200))
    );
    assert_eq!(first["answer"]["payment_status"], "captured");
    assert_eq!(app.balance("p1").await.0, "50.00");
    let second = replay(&app, &dead_id).await;
    assert_eq!(second["outcome"], "duplicate", "{second}");
    // The provider's own retry is a duplicate too.
    let retried = deliver_raw_signed(&app, raw, SANDBOX_WEBHOOK_SECRET).await;
    assert_eq!(
        (retried.status, retried.body["outcome"].as_str()),
        (StatusCode::OK, Some("processed"))
    );
    assert_eq!(app.balance("p1").await.0, "50.00", "money moved once");

    // Audited: each replay is a row linked to the original, naming the admin key.
    let detail = admin_get(&app, &format!("/v1/admin/webhooks/inbound/{dead_id}"))
        .await
        .body;
    let replays = detail["replays"].as_array().unwrap();
    assert_eq!(
        ids(replays),
        [
            first["replay_delivery_id"].as_str().unwrap(),
            second["replay_delivery_id"].as_str().unwrap()
        ]
    );
    assert_eq!(replays[0]["outcome"], "processed");
    assert_eq!(replays[1]["outcome"], "duplicate");
    assert!(replays.iter().all(|r| r["replay_of"] == dead_id.as_str()));
    let by = replays[0]["replayed_by"].as_str().unwrap();
    assert!(
        !by.is_empty() && replays[1]["replayed_by"] == by,
        "{replays:?}"
    );
    assert_eq!(detail["resolved_by"], first["replay_delivery_id"]);
    let found = search(&app, "event_id=evt_dlq&outcome=processed").await;
    assert_eq!(found.len(), 1, "the replay is searchable: {found:?}");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_delivery_that_times_out_is_dead_lettered_and_replayed(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "30.00").await;
    app.inbound_faults().stall_next(1, 2_000);
    let answer = deliver(&app, &capture("evt_slow", &id, "30.00")).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.error_code(), "webhook_timeout");
    let dead = search(&app, "outcome=dead_lettered").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["http_status"], 503);
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    assert_eq!(
        app.balance("p1").await.0,
        "0.00",
        "the stalled apply was dropped"
    );
    let replayed = replay(&app, dead[0]["delivery_id"].as_str().unwrap()).await;
    assert_eq!(replayed["outcome"], "processed", "{replayed}");
    assert_eq!(app.balance("p1").await.0, "30.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn replaying_an_applied_event_moves_nothing(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "40.00").await;
    assert_eq!(
        deliver(&app, &capture("evt_ok", &id, "40.00")).await.status,
        200
    );
    let processed = search(&app, "outcome=processed").await;
    assert_eq!(processed.len(), 1);
    // Hours later the timestamp is still judged against the time it arrived.
    let replayed = replay(&app, processed[0]["delivery_id"].as_str().unwrap()).await;
    assert_eq!(replayed["outcome"], "duplicate", "{replayed}");
    assert_eq!(replayed["answer"]["payment_status"], "captured");
    assert_eq!(app.balance("p1").await.0, "40.00");
    let missing = admin_post(
        &app,
        "/v1/admin/webhooks/inbound/whk_nope/replay",
        json!({}),
        None,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "delivery_not_found");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn bytes_that_are_not_text_are_kept_exactly(app: TestApp) {
    let raw = b"{\"event_id\":\"e\0\xff\xfe\x80\"}\r\n\x00".to_vec();
    let answer = deliver_raw_signed(&app, raw.clone(), "not-the-secret").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let logged = search(&app, "outcome=invalid_signature").await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["raw_body_size_bytes"], raw.len());
    let id = logged[0]["delivery_id"].as_str().unwrap();
    let detail = admin_get(&app, &format!("/v1/admin/webhooks/inbound/{id}"))
        .await
        .body;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(detail["raw_body_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored, raw, "NUL, invalid UTF-8 and line ends as sent");
    // Replayed under the same rules: the signature still does not verify.
    assert_eq!(replay(&app, id).await["outcome"], "invalid_signature");
    app.stop().await;
}

async fn bulk_replay_takes_dead_letters_oldest_first_bounded_and_idempotent(app: TestApp) {
    app.player("p1").await;
    let mut payments = Vec::new();
    for n in 0..3 {
        payments.push(new_payment(&app, "5.00").await);
        app.inbound_faults().fail_next(1);
        let answer = deliver(&app, &capture(&format!("evt_{n}"), &payments[n], "5.00")).await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(search(&app, "outcome=dead_lettered").await.len(), 3);
    let path = "/v1/admin/webhooks/inbound/replay";
    let too_many = admin_post(&app, path, json!({"limit": 3}), None).await;
    assert_eq!(too_many.status, StatusCode::UNPROCESSABLE_ENTITY);
    let first = admin_post(&app, path, json!({}), Some("bulk-1")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(
        (
            first.body["replayed"].as_u64(),
            first.body["more"].as_bool()
        ),
        (Some(2), Some(true))
    );
    assert_eq!(first.body["outcomes"], json!({"processed": 2}));
    let events: Vec<&str> = first.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["answer"]["payment_status"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["captured", "captured"]);
    assert_eq!(app.balance("p1").await.0, "10.00");
    // The same key again: the first answer, nothing run again.
    let again = admin_post(&app, path, json!({}), Some("bulk-1")).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(search(&app, "outcome=processed").await.len(), 2);
    let rest = admin_post(&app, path, json!({}), None).await;
    assert_eq!(
        (rest.body["replayed"].as_u64(), rest.body["more"].as_bool()),
        (Some(1), Some(false))
    );
    let none = admin_post(&app, path, json!({"provider": "sandbox"}), None).await;
    assert_eq!(
        none.body["replayed"], 0,
        "settled deliveries are not taken again"
    );
    assert_eq!(app.balance("p1").await.0, "15.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn an_address_outside_the_allow_list_is_refused_and_logged(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "50.00").await;
    let answer = deliver(&app, &capture("evt_ip", &id, "50.00")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(answer.error_code(), "webhook_source_refused");
    assert_eq!(app.balance("p1").await.0, "0.00");
    let refused = search(&app, "outcome=ip_refused").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (
            refused[0]["http_status"].as_u64(),
            refused[0]["source_address"].as_str()
        ),
        (Some(403), Some("127.0.0.1"))
    );
    // Refused before anything was read from the body: no event id, only an excerpt.
    assert_eq!(refused[0]["event_id"], Value::Null);
    app.stop().await;
}

async fn an_address_inside_the_allow_list_is_accepted(app: TestApp) {
    app.player("p1").await;
    let id = new_payment(&app, "50.00").await;
    let answer = deliver(&app, &capture("evt_ip", &id, "50.00")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(app.balance("p1").await.0, "50.00");
    app.stop().await;
}
