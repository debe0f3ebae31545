//! Responsible-gambling deposit limits through the API (issue 19 item 6): set, lowered at
//! once, raised only after the cooling-off, a deposit over a limit refused with 402 and no
//! payment started, every change an event. The cooling-off's clock is tested in
//! `kassa_core::limits` with explicit times.

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

contract_tests!(
    a_deposit_over_a_limit_is_refused_and_starts_nothing,
    increases_wait_for_the_cooling_off_and_decreases_do_not,
    bad_limit_changes_are_refused,
);

async fn player(app: &TestApp, player_id: &str, jurisdiction: &str) {
    let body = json!({"currency": "EUR", "country": "MT", "jurisdiction": jurisdiction});
    let answer = app.put(&format!("/v1/players/{player_id}"), body).await;
    assert!(answer.status.is_success(), "{}", answer.body);
}

async fn set_limits(app: &TestApp, player_id: &str, deposit: Value) -> common::Answer {
    app.put(
        &format!("/v1/players/{player_id}/limits"),
        json!({ "deposit": deposit }),
    )
    .await
}

fn period<'a>(limits: &'a Value, name: &str) -> &'a Value {
    limits["deposit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["period"] == name)
        .unwrap()
}

async fn a_deposit_over_a_limit_is_refused_and_starts_nothing(app: TestApp) {
    player(&app, "p1", "GB").await;
    let set = set_limits(&app, "p1", json!({"day": "50.00"})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(period(&set.body, "day")["amount"], "50.00");

    assert_eq!(
        common::try_deposit(&app, "30.00").await.status,
        StatusCode::CREATED
    );
    let refused = common::try_deposit(&app, "30.00").await;
    assert_eq!(
        refused.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        refused.body
    );
    assert_eq!(refused.error_code(), "limit_exceeded");
    common::assert_error_body(&refused.body, &refused.headers);
    let details = &refused.body["details"];
    assert_eq!(details["period"], "day");
    assert_eq!(details["limit_amount"], "50.00");
    assert_eq!(details["used"], "30.00");
    assert!(details["resets_at"].is_string(), "{details}");
    assert_eq!(
        common::try_deposit(&app, "20.00").await.status,
        StatusCode::CREATED,
        "exactly the limit"
    );

    let payments = app.get("/v1/payments?player_id=p1").await;
    assert_eq!(
        payments.body["data"].as_array().unwrap().len(),
        2,
        "the refused deposit started nothing"
    );
    app.stop().await;
}

async fn increases_wait_for_the_cooling_off_and_decreases_do_not(app: TestApp) {
    player(&app, "p1", "GB").await;
    set_limits(&app, "p1", json!({"day": "50.00", "week": "200.00"})).await;
    let raised = set_limits(&app, "p1", json!({"day": "100.00", "week": "80.00"})).await;
    assert_eq!(raised.status, StatusCode::OK, "{}", raised.body);
    assert_eq!(raised.body["increase_cooling_off_hours"], 24);
    let day = period(&raised.body, "day");
    assert_eq!(day["amount"], "50.00", "an increase waits");
    assert_eq!(day["pending"]["amount"], "100.00");
    let applies_at = time::OffsetDateTime::parse(
        day["pending"]["applies_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let wait = applies_at - time::OffsetDateTime::now_utc();
    assert!(
        wait > time::Duration::hours(23) && wait <= time::Duration::hours(24),
        "{wait}"
    );
    assert_eq!(
        period(&raised.body, "week")["amount"],
        "80.00",
        "a decrease is at once"
    );

    let removed = set_limits(&app, "p1", json!({"week": null})).await;
    let week = period(&removed.body, "week");
    assert_eq!(week["amount"], "80.00", "removing a limit is an increase");
    assert!(week["pending"]["amount"].is_null());

    let store = kassa_store::Store::connect(&app.database_url)
        .await
        .unwrap();
    let events = store.outbox_for("p1").await.unwrap();
    assert_eq!(
        events.len(),
        5,
        "one player.limit.changed per period changed"
    );
    assert!(events
        .iter()
        .all(|(topic, _)| topic == "player.limit.changed"));

    player(&app, "p2", "SE").await;
    set_limits(&app, "p2", json!({"month": "500.00"})).await;
    let swedish = set_limits(&app, "p2", json!({"month": "900.00"})).await;
    assert_eq!(swedish.body["increase_cooling_off_hours"], 72);
    assert_eq!(swedish.body["increase_waits_for_period_end"], true);
    assert_eq!(period(&swedish.body, "month")["amount"], "500.00");
    app.stop().await;
}

async fn bad_limit_changes_are_refused(app: TestApp) {
    player(&app, "p1", "MT").await;
    for (deposit, field) in [
        (json!({"fortnight": "10.00"}), "deposit.fortnight"),
        (json!({"day": "ten"}), "deposit.day"),
        (json!({"day": "-1.00"}), "deposit.day"),
        (json!({"day": 10}), "deposit.day"),
        (json!({}), "deposit"),
    ] {
        let refused = set_limits(&app, "p1", deposit).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.body
        );
        assert_eq!(refused.body["details"]["field"], field, "{}", refused.body);
    }
    let unknown = set_limits(&app, "nobody", json!({"day": "10.00"})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let limits = app.get("/v1/players/p1/limits").await;
    assert_eq!(limits.status, StatusCode::OK);
    assert!(
        period(&limits.body, "day")["amount"].is_null(),
        "nothing changed"
    );
    app.stop().await;
}
