//! Wager, loss and session-time limits through the API (issue 19 item 6, ADR 77): a bet
//! that would break one is refused with 402 `limit_exceeded` inside the wallet writer's
//! transaction, moves no money, and answers the same on a replay; wins, rollbacks and
//! enrolled deposits are never refused; simultaneous bets never pass a limit together, on
//! one node or two; an increase waits for the cooling-off and a session limit for its break,
//! both on the store's test clock.

mod common;

use common::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The default test server.
fn plain(_: &mut kassa_server::config::Config) {}

/// Metrics on, for the refusals' counter.
fn with_metrics(config: &mut kassa_server::config::Config) {
    config.metrics.listen = "127.0.0.1:0".into();
}

contract_tests_with!(
    a_wager_limit_refuses_the_bet_that_would_cross_it_and_moves_nothing => with_metrics,
    a_loss_limit_counts_wins_and_rollbacks => plain,
    simultaneous_bets_never_pass_a_limit_together => plain,
    a_first_limit_counts_the_play_before_it => plain,
    increases_wait_for_the_cooling_off_on_the_test_clock => plain,
    a_session_limit_refuses_after_its_time_and_allows_after_the_break => plain,
    a_refused_bet_replays_its_refusal => plain,
    bad_play_limit_changes_are_refused => plain,
    the_limits_show_the_play_counted_as_the_gate_counts_it => plain,
);

const MINUTE_MS: i64 = 60_000;

/// Player `p1` (EUR, Malta's rules) holding `funds`, enrolled from a deposit: a deposit is
/// no win, so the loss limits start at zero.
async fn funded_player(app: &TestApp, funds: &str) {
    let body = json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT"});
    let made = app.put("/v1/players/p1", body).await;
    assert!(made.status.is_success(), "{}", made.body);
    let payment = common::start_deposit(app, funds).await;
    let enrolled = app
        .post(
            "/v1/wallet/credit",
            json!({"txn_id": "fund", "player_id": "p1", "amount": funds, "currency": "EUR",
                   "payment_id": payment.body["payment_id"]}),
        )
        .await;
    assert_eq!(enrolled.status, StatusCode::OK, "{}", enrolled.body);
}

async fn set_limits(app: &TestApp, body: Value) -> common::Answer {
    let answer = app.put("/v1/players/p1/limits", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer
}

fn period<'a>(limits: &'a Value, kind: &str, name: &str) -> &'a Value {
    limits[kind]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["period"] == name)
        .unwrap()
}

/// A refusal's details after checking the whole answer: 402 `limit_exceeded`, the error
/// body's shape.
fn refused_details(answer: &common::Answer) -> &Value {
    assert_eq!(
        answer.status,
        StatusCode::PAYMENT_REQUIRED,
        "{}",
        answer.body
    );
    assert_eq!(answer.error_code(), "limit_exceeded");
    &answer.body["details"]
}

async fn win(app: &TestApp, txn_id: &str, amount: &str) -> common::Answer {
    app.post(
        "/v1/wallet/credit",
        json!({"txn_id": txn_id, "player_id": "p1", "amount": amount, "currency": "EUR",
               "round_id": "round-1"}),
    )
    .await
}

async fn a_wager_limit_refuses_the_bet_that_would_cross_it_and_moves_nothing(app: TestApp) {
    funded_player(&app, "100.00").await;
    let set = set_limits(&app, json!({"wager": {"day": "50.00", "week": "80.00"}})).await;
    assert_eq!(period(&set.body, "wager", "day")["amount"], "50.00");
    assert_eq!(period(&set.body, "wager", "month")["amount"], Value::Null);

    assert_eq!(app.debit("b1", "p1", "30.00").await.status, StatusCode::OK);
    let refused = app.debit("b2", "p1", "30.00").await;
    let details = refused_details(&refused);
    assert_eq!(details["limit"], "wager");
    assert_eq!(details["period"], "day");
    assert_eq!(details["limit_amount"], "50.00");
    assert_eq!(details["used"], "30.00");
    assert_eq!(details["currency"], "EUR");
    assert_eq!(details["txn_id"], "b2");
    assert!(details["resets_at"].is_string(), "{details}");
    assert_eq!(
        app.balance("p1").await.0,
        "70.00",
        "the refusal moved nothing"
    );

    // Wins and enrolled deposits are never refused by a limit; a win does not free stakes.
    assert_eq!(win(&app, "w1", "5.00").await.status, StatusCode::OK);
    assert_eq!(
        app.debit("b3", "p1", "20.00").await.status,
        StatusCode::OK,
        "exactly the limit"
    );
    let over = app.debit("b4", "p1", "0.01").await;
    assert_eq!(refused_details(&over)["used"], "50.00");

    let history = app.get("/v1/players/p1/transactions").await;
    let b2 = history.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["txn_id"] == "b2")
        .cloned()
        .unwrap();
    assert_eq!(b2["status"], "limit_refused", "{b2}");
    assert_eq!(b2["moved_money"], false);
    assert_eq!(app.balance("p1").await.0, "55.00");
    let metrics = app.metrics_text().await;
    let series = "kassa_limit_refusals_total{limit=\"wager\"}";
    assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_loss_limit_counts_wins_and_rollbacks(app: TestApp) {
    funded_player(&app, "100.00").await;
    set_limits(&app, json!({"loss": {"day": "50.00"}})).await;
    assert_eq!(app.debit("b1", "p1", "30.00").await.status, StatusCode::OK);
    let refused = app.debit("b2", "p1", "30.00").await;
    let details = refused_details(&refused);
    assert_eq!(
        (details["limit"].as_str(), details["period"].as_str()),
        (Some("loss"), Some("day"))
    );
    assert_eq!(details["used"], "30.00");
    // A win takes 20.00 off the loss: 30.00 more may be staked.
    assert_eq!(win(&app, "w1", "20.00").await.status, StatusCode::OK);
    assert_eq!(app.debit("b3", "p1", "40.00").await.status, StatusCode::OK);
    assert_eq!(
        refused_details(&app.debit("b4", "p1", "0.01").await)["used"],
        "50.00"
    );
    // A rolled-back bet counts neither as stake nor as loss.
    assert_eq!(app.rollback("rb1", "b3").await.status, StatusCode::OK);
    assert_eq!(app.debit("b5", "p1", "40.00").await.status, StatusCode::OK);
    assert_eq!(
        refused_details(&app.debit("b6", "p1", "0.01").await)["used"],
        "50.00"
    );
    // The rollback of a refused bet moves nothing.
    let nothing = app.rollback("rb2", "b2").await;
    assert_eq!(nothing.body["status"], "no_effect", "{}", nothing.body);
    assert_eq!(app.balance("p1").await.0, "50.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn simultaneous_bets_never_pass_a_limit_together(app: TestApp) {
    funded_player(&app, "1000.00").await;
    set_limits(&app, json!({"wager": {"day": "100.00"}})).await;
    // On PostgreSQL half the bets go through a second node: its writer decides under the
    // same row lock.
    let second = match app.database_url.starts_with("postgres") {
        true => Some(app.another_node(|_| {}).await),
        false => None,
    };
    let txn_ids: Vec<String> = (0..16).map(|i| format!("bet-{i}")).collect();
    let bets = txn_ids.iter().enumerate().map(|(i, txn_id)| {
        let node = match (&second, i % 2) {
            (Some(second), 1) => second,
            _ => &app,
        };
        node.debit(txn_id, "p1", "10.00")
    });
    let answers = futures::future::join_all(bets).await;
    let posted = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::PAYMENT_REQUIRED)
        .collect();
    let bodies: Vec<&Value> = answers.iter().map(|a| &a.body).collect();
    assert_eq!(posted, 10, "{bodies:?}");
    assert_eq!(refused.len(), 6, "{bodies:?}");
    assert!(refused.iter().all(|a| a.body["error"] == "limit_exceeded"));
    assert_eq!(app.balance("p1").await.0, "900.00");
    app.assert_ledger_verifies().await;
    if let Some(second) = second {
        second.stop().await;
    }
    app.stop().await;
}

async fn a_first_limit_counts_the_play_before_it(app: TestApp) {
    funded_player(&app, "100.00").await;
    assert_eq!(app.debit("b1", "p1", "40.00").await.status, StatusCode::OK);
    assert_eq!(app.debit("b2", "p1", "5.00").await.status, StatusCode::OK);
    assert_eq!(app.rollback("rb2", "b2").await.status, StatusCode::OK);
    set_limits(&app, json!({"wager": {"day": "50.00"}})).await;
    let refused = app.debit("b3", "p1", "20.00").await;
    assert_eq!(
        refused_details(&refused)["used"],
        "40.00",
        "the day's stakes before the limit count, the rolled-back one not"
    );
    assert_eq!(app.debit("b4", "p1", "10.00").await.status, StatusCode::OK);
    app.stop().await;
}

async fn increases_wait_for_the_cooling_off_on_the_test_clock(app: TestApp) {
    funded_player(&app, "500.00").await;
    set_limits(
        &app,
        json!({"wager": {"day": "50.00"}, "session": {"minutes": 30}}),
    )
    .await;
    assert_eq!(app.debit("b1", "p1", "40.00").await.status, StatusCode::OK);
    let raised = set_limits(
        &app,
        json!({"wager": {"day": "100.00"}, "session": {"minutes": 120}}),
    )
    .await;
    let day = period(&raised.body, "wager", "day");
    assert_eq!(day["amount"], "50.00", "an increase waits");
    assert_eq!(day["pending"]["amount"], "100.00");
    assert_eq!(raised.body["session"]["minutes"], 30);
    assert_eq!(raised.body["session"]["pending"]["minutes"], 120);
    assert_eq!(raised.body["session"]["break_minutes"], 20);
    assert!(refused_details(&app.debit("b2", "p1", "20.00").await)["limit_amount"] == "50.00");

    // A day later (the store's clock moved, not waited for) the increase is in force.
    app.store().clock().advance(24 * 60 * MINUTE_MS + MINUTE_MS);
    let later = app.get("/v1/players/p1/limits").await;
    let day = period(&later.body, "wager", "day");
    assert_eq!(
        (day["amount"].as_str(), &day["pending"]),
        (Some("100.00"), &Value::Null)
    );
    assert_eq!(later.body["session"]["minutes"], 120);
    // At most the last hour's bucket of yesterday still counts (ADR 77): 40 + 60 fits.
    assert_eq!(app.debit("b3", "p1", "60.00").await.status, StatusCode::OK);
    let store = app.store();
    let events = store.outbox_for("p1").await.unwrap();
    let changed = events
        .iter()
        .filter(|(topic, _)| topic == "player.limit.changed")
        .count();
    assert_eq!(changed, 4, "one event per limit changed");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_session_limit_refuses_after_its_time_and_allows_after_the_break(app: TestApp) {
    funded_player(&app, "100.00").await;
    set_limits(&app, json!({"session": {"minutes": 60}})).await;
    let clock = app.store().clock().clone();
    // A bet every quarter of an hour: no gap reaches the 20-minute break.
    for (i, minute) in [0, 15, 30, 45].into_iter().enumerate() {
        if minute > 0 {
            clock.advance(15 * MINUTE_MS);
        }
        let bet = app.debit(&format!("b{i}"), "p1", "1.00").await;
        assert_eq!(bet.status, StatusCode::OK, "minute {minute}: {}", bet.body);
    }
    clock.advance(15 * MINUTE_MS);
    let refused = app.debit("b4", "p1", "1.00").await;
    let details = refused_details(&refused);
    assert_eq!(details["limit"], "session");
    assert_eq!(details["period"], "session");
    assert_eq!(details["limit_minutes"], 60);
    assert!(details["used_minutes"].as_i64().unwrap() >= 60, "{details}");
    assert!(details["resets_at"].is_string(), "{details}");
    let session = limits(&app).await["session"].clone();
    assert_eq!(
        session["used_minutes"], details["used_minutes"],
        "{session}"
    );
    assert_eq!(session["resets_at"], details["resets_at"], "{session}");
    assert_eq!(app.balance("p1").await.0, "96.00");
    // Refused bets are no play: a break counts from the last bet that moved money.
    clock.advance(5 * MINUTE_MS + 1_000);
    let after_break = app.debit("b5", "p1", "1.00").await;
    assert_eq!(after_break.status, StatusCode::OK, "{}", after_break.body);
    assert_eq!(app.balance("p1").await.0, "95.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_refused_bet_replays_its_refusal(app: TestApp) {
    funded_player(&app, "100.00").await;
    set_limits(&app, json!({"wager": {"day": "10.00"}})).await;
    let body = json!({"txn_id": "b1", "player_id": "p1", "amount": "20.00", "currency": "EUR",
                      "round_id": "round-1"});
    let key = [("Idempotency-Key", "bet-key-1")];
    let debit = "/v1/wallet/debit";
    let first = app
        .send(Method::POST, debit, Some(&app.api_key), Some(&body), &key)
        .await;
    refused_details(&first);
    let keyed = app
        .send(Method::POST, debit, Some(&app.api_key), Some(&body), &key)
        .await;
    assert_eq!(keyed.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(keyed.header("idempotent-replayed"), Some("true"));
    assert_eq!(keyed.body, first.body, "the stored answer, byte for byte");
    // The same txn_id without the key, a day later when the bet would fit: the journal's
    // refusal answers, with the same details.
    app.store().clock().advance(25 * 60 * MINUTE_MS);
    let again = app
        .send(Method::POST, debit, Some(&app.api_key), Some(&body), &[])
        .await;
    assert_eq!(refused_details(&again), &first.body["details"]);
    assert_eq!(app.balance("p1").await.0, "100.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn bad_play_limit_changes_are_refused(app: TestApp) {
    funded_player(&app, "10.00").await;
    for (body, field) in [
        (json!({"wager": {"fortnight": "10.00"}}), "wager.fortnight"),
        (json!({"loss": {"day": "-1.00"}}), "loss.day"),
        (json!({"loss": {"day": 5}}), "loss.day"),
        (json!({"session": {"minutes": 0}}), "session.minutes"),
        (json!({"session": {"minutes": 1441}}), "session.minutes"),
        (json!({"session": {"minutes": "60"}}), "session.minutes"),
        (json!({"wager": {}}), "deposit"),
    ] {
        let refused = app.put("/v1/players/p1/limits", body.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            refused.body
        );
        common::assert_error_body(&refused.body, &refused.headers);
        assert_eq!(refused.body["details"]["field"], field, "{}", refused.body);
    }
    let limits = app.get("/v1/players/p1/limits").await;
    assert_eq!(period(&limits.body, "wager", "day")["amount"], Value::Null);
    assert_eq!(limits.body["session"]["minutes"], Value::Null);
    assert_eq!(app.debit("b1", "p1", "10.00").await.status, StatusCode::OK);
    app.stop().await;
}

/// A period's usage fields: used and remaining (minor units), and when it resets.
fn usage(limits: &Value, kind: &str, name: &str) -> (Value, Value, Value) {
    let limit = period(limits, kind, name);
    (
        limit["used_minor"].clone(),
        limit["remaining_minor"].clone(),
        limit["resets_at"].clone(),
    )
}

async fn limits(app: &TestApp) -> Value {
    let answer = app.get("/v1/players/p1/limits").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

async fn the_limits_show_the_play_counted_as_the_gate_counts_it(app: TestApp) {
    funded_player(&app, "100.00").await;
    let set = set_limits(
        &app,
        json!({"wager": {"day": "50.00"}, "loss": {"day": "40.00"}, "session": {"minutes": 60}}),
    )
    .await;
    assert_eq!(
        usage(&set.body, "wager", "day"),
        (json!(0), json!(5000), Value::Null)
    );
    assert_eq!(
        usage(&set.body, "wager", "week"),
        (Value::Null, Value::Null, Value::Null)
    );
    assert_eq!(
        (
            &set.body["session"]["used_minutes"],
            &set.body["session"]["resets_at"]
        ),
        (&json!(0), &Value::Null),
        "a deposit is no play"
    );

    let clock = app.store().clock().clone();
    let before = clock.now_ms();
    assert_eq!(app.debit("b1", "p1", "30.00").await.status, StatusCode::OK);
    let after = clock.now_ms();
    assert_eq!(win(&app, "w1", "10.00").await.status, StatusCode::OK);
    let shown = limits(&app).await;
    assert_eq!(
        (
            usage(&shown, "wager", "day").0,
            usage(&shown, "wager", "day").1
        ),
        (json!(3000), json!(2000)),
        "a win frees no stakes"
    );
    assert_eq!(
        (
            usage(&shown, "loss", "day").0,
            usage(&shown, "loss", "day").1
        ),
        (json!(2000), json!(2000)),
        "stakes less wins"
    );

    let refused = app.debit("b2", "p1", "25.00").await;
    let details = refused_details(&refused);
    assert_eq!(
        (details["limit"].as_str(), details["used"].as_str()),
        (Some("wager"), Some("30.00"))
    );
    let shown = limits(&app).await;
    let (used, _, resets_at) = usage(&shown, "wager", "day");
    assert_eq!(used, json!(3000), "the refusal's used, in minor units");
    assert_eq!(resets_at, details["resets_at"], "{shown} {details}");
    // The hour bucket of the bet leaves the day's window (ADR 77).
    let hour_ms = 60 * MINUTE_MS;
    let bucket_leaves = |at: i64| at - at % hour_ms + hour_ms + 24 * hour_ms;
    let resets_at_ms = common::parse_rfc3339_ms(resets_at.as_str().unwrap());
    assert!(
        [bucket_leaves(before), bucket_leaves(after)].contains(&resets_at_ms),
        "{resets_at}"
    );

    // The session: 10 minutes on, a bet; the break would end it 20 minutes after that bet.
    clock.advance(10 * MINUTE_MS);
    let before = clock.now_ms();
    assert_eq!(app.debit("b3", "p1", "1.00").await.status, StatusCode::OK);
    let after = clock.now_ms();
    let session = limits(&app).await["session"].clone();
    assert_eq!(session["used_minutes"], 10, "{session}");
    let ends_at = common::parse_rfc3339_ms(session["resets_at"].as_str().unwrap());
    assert!(
        (before + 20 * MINUTE_MS..=after + 20 * MINUTE_MS).contains(&ends_at),
        "{session}"
    );
    // A net gain counts as no loss at all.
    assert_eq!(win(&app, "w2", "50.00").await.status, StatusCode::OK);
    let shown = limits(&app).await;
    assert_eq!(
        usage(&shown, "loss", "day"),
        (json!(0), json!(4000), Value::Null)
    );
    assert_eq!(usage(&shown, "wager", "day").0, json!(3100));

    // After the break no session is under way; a day later the stakes have left the window.
    clock.advance(20 * MINUTE_MS);
    let session = limits(&app).await["session"].clone();
    assert_eq!(
        (&session["used_minutes"], &session["resets_at"]),
        (&json!(0), &Value::Null)
    );
    clock.advance(25 * hour_ms);
    let shown = limits(&app).await;
    assert_eq!(
        usage(&shown, "wager", "day"),
        (json!(0), json!(5000), Value::Null)
    );
    assert_eq!(
        app.debit("b4", "p1", "40.00").await.status,
        StatusCode::OK,
        "the whole loss limit again"
    );
    app.stop().await;
}
