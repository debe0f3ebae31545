//! The risk decision before deposits and payouts through the API (issue 19 items 1–3, ADRs
//! 62 and 63): each feature family fires a rule, a decision reads back which rules fired
//! and why, rule changes are versioned and audited, and a backtest tells what a draft would
//! change. Every rule set here is stored through `PUT /v1/admin/risk/rules`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::risk_rules::{admin, fired, gte, never, read, rule, set_rules};
use common::{behave, deliver, rfc3339_now_plus, TestApp};
use kassa_store::testing::TestBackend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The test plays the provider: the sandbox sends no webhook by itself.
fn quiet(config: &mut kassa_server::config::Config) {
    config.sandbox.autopilot = false;
}

contract_tests_with!(
    velocity_per_player_ip_and_device_fires_its_rules => quiet,
    shared_devices_first_deposits_and_amounts_against_history_fire_their_rules => quiet,
    a_decision_explains_approve_review_step_up_and_decline => quiet,
    payouts_are_declined_stepped_up_or_sent_to_review => quiet,
    rule_changes_are_versioned_audited_and_validated => quiet,
    a_backtest_reports_what_a_draft_would_change => quiet,
    the_most_specific_scope_decides => quiet,
);

/// A EUR player of Malta.
async fn player(app: &TestApp, player_id: &str) {
    let body = json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT"});
    let answer = app.put(&format!("/v1/players/{player_id}"), body).await;
    assert!(answer.status.is_success(), "{}", answer.body);
}

/// Asks for a card deposit with the meta given (merged over `{"country": "MT"}`).
async fn deposit(app: &TestApp, player_id: &str, amount: &str, meta: Value) -> common::Answer {
    let mut full_meta = json!({"country": "MT"});
    for (name, value) in meta.as_object().unwrap() {
        full_meta[name] = value.clone();
    }
    let body = json!({
        "amount": amount, "currency": "EUR", "method": "card", "player_id": player_id,
        "return_url": format!("{}/cashier/return", app.base), "meta": full_meta,
    });
    app.post_idempotent("/v1/payments/init", body).await
}

/// A deposit that must start; returns its stored risk decision.
async fn decided(app: &TestApp, player_id: &str, amount: &str, meta: Value) -> (String, Value) {
    let started = deposit(app, player_id, amount, meta).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let id = started.body["payment_id"].as_str().unwrap().to_string();
    let payment = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(payment.status, StatusCode::OK, "{}", payment.body);
    (id, payment.body["risk"].clone())
}

async fn capture(app: &TestApp, payment_id: &str, amount: &str) {
    let event = json!({
        "event_id": kassa_core::ids::generate("evt"), "payment_id": payment_id,
        "status": "captured", "amount": amount, "currency": "EUR",
        "timestamp": rfc3339_now_plus(0),
    });
    let answer = deliver(app, &event).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

async fn velocity_per_player_ip_and_device_fires_its_rules(app: TestApp) {
    let rules = json!({
        "thresholds": never(),
        "rules": [
            rule("player-burst", gte("player_attempts_10m", 2), 1),
            rule("ip-burst", gte("ip_attempts_1h", 2), 2),
            rule("device-burst", gte("device_attempts_1h", 2), 4),
            rule("player-declined", gte("player_declines_1h", 1), 8),
            rule("too-much", gte("amount_minor", 90000), 200000),
        ],
    });
    set_rules(&app, "", rules).await;
    for p in ["p1", "p2", "p3", "p4"] {
        player(&app, p).await;
    }
    let meta = |ip: &str, device: &str| json!({"ip": ip, "device_id": device});
    let (_, first) = decided(&app, "p1", "10.00", meta("192.0.2.1", "dev-x")).await;
    assert!(fired(&first).is_empty(), "{first}");
    decided(&app, "p1", "10.00", meta("192.0.2.2", "dev-y")).await;
    let (_, third) = decided(&app, "p1", "10.00", meta("192.0.2.3", "dev-z")).await;
    assert_eq!(fired(&third), ["player-burst"], "{third}");
    assert_eq!(read(&third, "player-burst", "player_attempts_10m"), 2);

    let (_, other_player) = decided(&app, "p2", "10.00", meta("192.0.2.1", "dev-w")).await;
    assert!(fired(&other_player).is_empty(), "{other_player}");
    let (_, same_ip) = decided(&app, "p3", "10.00", meta("192.0.2.1", "dev-x")).await;
    assert_eq!(fired(&same_ip), ["ip-burst"], "{same_ip}");
    assert_eq!(read(&same_ip, "ip-burst", "ip_attempts_1h"), 2);
    let (_, same_device) = decided(&app, "p4", "10.00", meta("192.0.2.9", "dev-x")).await;
    assert_eq!(fired(&same_device), ["device-burst"], "{same_device}");

    // A refused attempt counts as a decline of the player's.
    let refused = deposit(&app, "p4", "900.00", meta("192.0.2.9", "dev-v")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let (_, after) = decided(&app, "p4", "10.00", meta("192.0.2.10", "dev-u")).await;
    assert_eq!(
        fired(&after),
        ["player-burst", "player-declined"],
        "{after}"
    );
    assert_eq!(read(&after, "player-declined", "player_declines_1h"), 1);

    // So does an approved attempt whose payment the provider declined afterwards (ADR 88).
    let (declined, _) = decided(&app, "p2", "10.00", meta("192.0.2.20", "dev-t")).await;
    let event = json!({
        "event_id": kassa_core::ids::generate("evt"), "payment_id": declined,
        "status": "declined", "amount": "10.00", "currency": "EUR",
        "timestamp": rfc3339_now_plus(0),
    });
    let answer = deliver(&app, &event).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let (_, next) = decided(&app, "p2", "10.00", meta("192.0.2.21", "dev-s")).await;
    assert_eq!(fired(&next), ["player-burst", "player-declined"], "{next}");
    assert_eq!(read(&next, "player-declined", "player_declines_1h"), 1);

    // And one the provider declined at once: its payment is stored declined from the start.
    behave(&app, "sandbox", json!({"decline_permille": 1000})).await;
    let at_once = deposit(&app, "p3", "10.00", meta("192.0.2.30", "dev-r")).await;
    assert_eq!(at_once.status, StatusCode::CREATED, "{}", at_once.body);
    assert_eq!(at_once.body["status"], "declined", "{}", at_once.body);
    behave(&app, "sandbox", json!({})).await;
    let (_, after_decline) = decided(&app, "p3", "10.00", meta("192.0.2.31", "dev-q")).await;
    assert_eq!(
        read(&after_decline, "player-declined", "player_declines_1h"),
        1,
        "{after_decline}"
    );
    app.stop().await;
}

async fn shared_devices_first_deposits_and_amounts_against_history_fire_their_rules(app: TestApp) {
    let rules = json!({
        "thresholds": never(),
        "rules": [
            rule("first", json!({"flag": "first_deposit"}), 1),
            rule("shared-device", gte("device_players_30d", 2), 2),
            rule("shared-ip", gte("ip_players_30d", 1), 4),
            rule("five-times-average", gte("amount_vs_average_pct", 500), 8),
        ],
    });
    set_rules(&app, "", rules).await;
    for p in ["p1", "p2", "p3"] {
        player(&app, p).await;
    }
    let (id, first) = decided(&app, "p1", "20.00", json!({"device_id": "shared"})).await;
    assert_eq!(fired(&first), ["first"], "{first}");
    assert_eq!(read(&first, "first", "first_deposit"), true);
    capture(&app, &id, "20.00").await;

    let (_, second) = decided(&app, "p1", "40.00", json!({"device_id": "shared"})).await;
    assert!(
        fired(&second).is_empty(),
        "not first, twice the average: {second}"
    );
    let (_, big) = decided(&app, "p1", "100.00", json!({})).await;
    assert_eq!(fired(&big), ["five-times-average"], "{big}");
    assert_eq!(
        read(&big, "five-times-average", "amount_vs_average_pct"),
        500
    );
    assert!(
        big["missing_features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "device_players_30d"),
        "no device: its rule could not tell: {big}"
    );

    decided(
        &app,
        "p2",
        "20.00",
        json!({"device_id": "shared", "ip": "198.51.100.1"}),
    )
    .await;
    let (_, third_player) = decided(
        &app,
        "p3",
        "20.00",
        json!({"device_id": "shared", "ip": "198.51.100.1"}),
    )
    .await;
    assert_eq!(
        fired(&third_player),
        ["first", "shared-device", "shared-ip"],
        "{third_player}"
    );
    assert_eq!(
        read(&third_player, "shared-device", "device_players_30d"),
        2
    );
    assert_eq!(read(&third_player, "shared-ip", "ip_players_30d"), 1);
    app.stop().await;
}

/// Three rules on the amount: 50 at 100.00, +30 at 500.00, +40 at 900.00; review at 50,
/// step-up at 80, decline at 120.
fn amount_rules(step_up_refuses_deposits: bool) -> Value {
    json!({
        "thresholds": {"review": 50, "step_up": 80, "decline": 120},
        "step_up_refuses_deposits": step_up_refuses_deposits,
        "rules": [
            rule("over-100", json!({"gt": {"feature": "amount_minor", "value": 10000}}), 50),
            rule("over-500", json!({"gt": {"feature": "amount_minor", "value": 50000}}), 30),
            rule("over-900", json!({"gt": {"feature": "amount_minor", "value": 90000}}), 40),
        ],
    })
}

async fn a_decision_explains_approve_review_step_up_and_decline(app: TestApp) {
    let stored = set_rules(&app, "", amount_rules(false)).await;
    let version = stored["version"].clone();
    player(&app, "p1").await;

    let (_, approve) = decided(&app, "p1", "50.00", json!({})).await;
    assert_eq!(approve["outcome"], "approve", "{approve}");
    assert_eq!(approve["score"], 0);
    assert!(fired(&approve).is_empty());
    assert_eq!(approve["rules_version"], version);
    assert_eq!(approve["scope"], "*|*");

    let (_, review) = decided(&app, "p1", "200.00", json!({})).await;
    assert_eq!(
        (review["outcome"].as_str(), review["score"].as_i64()),
        (Some("review"), Some(50))
    );
    assert_eq!(fired(&review), ["over-100"]);
    assert_eq!(read(&review, "over-100", "amount_minor"), 20000);
    assert_eq!(review["fired"][0]["description"], "over-100 fired");

    // A step-up lets a deposit through (flagged) unless the rule set says otherwise.
    let (_, step_up) = decided(&app, "p1", "600.00", json!({})).await;
    assert_eq!(step_up["outcome"], "step_up", "{step_up}");
    assert_eq!(fired(&step_up), ["over-100", "over-500"]);
    assert_eq!(step_up["thresholds"]["step_up"], 80);
    set_rules(&app, "", amount_rules(true)).await;
    let stepped = deposit(&app, "p1", "600.00", json!({})).await;
    assert_eq!(stepped.status, StatusCode::FORBIDDEN, "{}", stepped.body);
    assert_eq!(stepped.error_code(), "kyc_step_up_required");
    common::assert_error_body(&stepped.body, &stepped.headers);

    let declined = deposit(&app, "p1", "1000.00", json!({})).await;
    assert_eq!(declined.status, StatusCode::FORBIDDEN, "{}", declined.body);
    assert_eq!(declined.error_code(), "risk_declined");
    common::assert_error_body(&declined.body, &declined.headers);
    let details = &declined.body["details"];
    assert_eq!(details["outcome"], "decline");
    assert_eq!(details["score"], 120);
    assert_eq!(
        details["rules"],
        json!(["over-100", "over-500", "over-900"])
    );
    assert!(details["decision_id"].as_str().unwrap().starts_with("rsk_"));

    let payments = app.get("/v1/payments?player_id=p1").await;
    assert_eq!(
        payments.body["data"].as_array().unwrap().len(),
        3,
        "the refused deposits started nothing: {}",
        payments.body
    );
    app.stop().await;
}

async fn payout(app: &TestApp, amount: &str) -> common::Answer {
    let body = json!({"amount": amount, "currency": "EUR", "method": "card", "player_id": "w1"});
    app.post_idempotent("/v1/payouts/init", body).await
}

async fn payouts_are_declined_stepped_up_or_sent_to_review(app: TestApp) {
    let rules = json!({
        "thresholds": {"review": 50, "step_up": 80, "decline": 120},
        "rules": [
            rule("payout", json!({"in": {"feature": "kind", "values": ["payout"]}}), 10),
            rule("over-100", json!({"gt": {"feature": "amount_minor", "value": 10000}}), 40),
            rule("over-500", json!({"gt": {"feature": "amount_minor", "value": 50000}}), 30),
            rule("over-900", json!({"gt": {"feature": "amount_minor", "value": 90000}}), 40),
        ],
    });
    set_rules(&app, "", rules).await;
    common::verified_player(&app, "w1", "2000.00").await;
    let declined = payout(&app, "1000.00").await;
    assert_eq!(declined.status, StatusCode::FORBIDDEN, "{}", declined.body);
    assert_eq!(declined.error_code(), "risk_declined");
    let stepped = payout(&app, "600.00").await;
    assert_eq!(
        (stepped.status, stepped.error_code()),
        (StatusCode::FORBIDDEN, "kyc_step_up_required"),
        "{}",
        stepped.body
    );
    assert_eq!(
        app.balance("w1").await.0,
        "2000.00",
        "nothing held for refused payouts"
    );

    let review = payout(&app, "200.00").await;
    assert!(review.status.is_success(), "{}", review.body);
    assert_eq!(review.body["status"], "in_review", "{}", review.body);
    assert!(
        review.body["review_reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "risk_review"),
        "{}",
        review.body
    );
    let id = review.body["payout_id"].as_str().unwrap();
    let shown = app.get(&format!("/v1/payouts/{id}")).await;
    let risk = &shown.body["risk"];
    assert_eq!(risk["outcome"], "review", "{}", shown.body);
    assert_eq!(fired(risk), ["payout", "over-100"]);
    assert_eq!(read(risk, "payout", "kind"), "payout");
    app.stop().await;
}

async fn rule_changes_are_versioned_audited_and_validated(app: TestApp) {
    let path = "/v1/admin/risk/rules";
    let default = admin(&app, Method::GET, path, None).await;
    assert_eq!(default.status, StatusCode::OK, "{}", default.body);
    assert_eq!(default.body["version"], Value::Null);
    assert!(
        !default.body["rules"]["rules"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the built-in default: {}",
        default.body
    );

    let first = json!({"rules": amount_rules(false), "note": "first"});
    let v1 = admin(&app, Method::PUT, path, Some(first)).await;
    assert_eq!(
        (v1.status, v1.body["version"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{}",
        v1.body
    );
    let second = json!({"rules": amount_rules(true), "based_on_version": 1, "note": "stricter"});
    let v2 = admin(&app, Method::PUT, path, Some(second.clone())).await;
    assert_eq!(v2.body["version"], 2, "{}", v2.body);

    let stale = admin(&app, Method::PUT, path, Some(second)).await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert_eq!(stale.error_code(), "risk_rules_version_conflict");
    assert_eq!(stale.body["details"]["current_version"], 2);
    common::assert_error_body(&stale.body, &stale.headers);

    let history = admin(&app, Method::GET, &format!("{path}/history"), None).await;
    let versions = history.body["data"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{}", history.body);
    assert_eq!(versions[0]["version"], 2);
    assert_eq!(versions[0]["note"], "stricter");
    assert_eq!(versions[0]["rules"]["step_up_refuses_deposits"], true);
    assert_eq!(versions[1]["rules"]["step_up_refuses_deposits"], false);
    assert!(versions[1]["actor"].as_str().is_some_and(|a| !a.is_empty()));
    assert!(versions[1]["created_at"].is_string());

    let invalid = json!({"rules": {"rules": [
        rule("a", json!({"flag": "ip_vpn"}), 1),
        rule("b", json!({"all": [{"flag": "ip_tor"}, {"gt": {"feature": "ip_vpn", "value": 1}}]}), 1),
    ]}, "based_on_version": 2});
    let refused = admin(&app, Method::PUT, path, Some(invalid)).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(refused.error_code(), "invalid_risk_rules");
    assert_eq!(
        refused.body["details"]["place"],
        "rules[1].when.all[1].gt.feature"
    );
    let unparsed = json!({"rules": {"rules": [{"id": "a", "when": {"gt": 5}, "score": 1}]}});
    let refused = admin(&app, Method::PUT, path, Some(unparsed)).await;
    assert_eq!(
        refused.error_code(),
        "invalid_risk_rules",
        "{}",
        refused.body
    );
    assert_eq!(refused.body["details"]["place"], "rules[0].when.gt");
    let merchant_key = app.put(path, json!({"rules": amount_rules(false)})).await;
    assert_eq!(
        merchant_key.status,
        StatusCode::FORBIDDEN,
        "{}",
        merchant_key.body
    );
    let now = admin(&app, Method::GET, path, None).await;
    assert_eq!(now.body["version"], 2, "refused changes changed nothing");
    app.stop().await;
}

async fn a_backtest_reports_what_a_draft_would_change(app: TestApp) {
    set_rules(&app, "", amount_rules(false)).await;
    player(&app, "p1").await;
    decided(&app, "p1", "50.00", json!({})).await;
    let (review_id, _) = decided(&app, "p1", "200.00", json!({})).await;
    let declined = deposit(&app, "p1", "1000.00", json!({})).await;
    assert_eq!(declined.status, StatusCode::FORBIDDEN);

    // The draft reviews from 150.00 and no longer declines.
    let draft = json!({
        "thresholds": {"review": 50, "step_up": 500, "decline": 500},
        "rules": [rule("over-150", json!({"gt": {"feature": "amount_minor", "value": 15000}}), 50)],
    });
    let body = json!({"rules": draft, "days": 1});
    let report = admin(
        &app,
        Method::POST,
        "/v1/admin/risk/rules/backtest",
        Some(body),
    )
    .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    let report = report.body;
    assert_eq!(report["decisions"], 3, "{report}");
    assert_eq!(
        report["before"],
        json!({"approve": 1, "review": 1, "step_up": 0, "decline": 1})
    );
    assert_eq!(
        report["after"],
        json!({"approve": 1, "review": 2, "step_up": 0, "decline": 0})
    );
    assert_eq!(report["changed"], 1);
    let change = &report["changes"][0];
    assert_eq!(
        (change["before"].as_str(), change["after"].as_str()),
        (Some("decline"), Some("review"))
    );
    assert_eq!(change["fired"], json!(["over-150"]));
    assert_ne!(change["subject_id"], review_id.as_str());

    let nothing = admin(
        &app,
        Method::POST,
        "/v1/admin/risk/rules/backtest?merchant_id=mch_nobody",
        Some(json!({"rules": draft, "days": 1})),
    )
    .await;
    assert_eq!(nothing.body["decisions"], 0, "{}", nothing.body);
    let bad_days = admin(
        &app,
        Method::POST,
        "/v1/admin/risk/rules/backtest",
        Some(json!({"rules": draft, "days": 0})),
    )
    .await;
    assert_eq!(bad_days.status, StatusCode::UNPROCESSABLE_ENTITY);
    let versions = admin(&app, Method::GET, "/v1/admin/risk/rules", None).await;
    assert_eq!(versions.body["version"], 1, "a backtest stores nothing");
    app.stop().await;
}

async fn the_most_specific_scope_decides(app: TestApp) {
    let tagged = |id: &str| json!({"thresholds": never(), "rules": [rule(id, json!({"in": {"feature": "kind", "values": ["deposit"]}}), 1)]});
    set_rules(&app, "", tagged("any")).await;
    set_rules(&app, "?jurisdiction=MT", tagged("malta")).await;
    player(&app, "p1").await;
    let (_, malta) = decided(&app, "p1", "10.00", json!({})).await;
    assert_eq!(
        (fired(&malta), malta["scope"].as_str()),
        (vec!["malta".to_string()], Some("*|MT"))
    );
    let mine = admin(
        &app,
        Method::GET,
        "/v1/admin/risk/rules?merchant_id=mch_nobody",
        None,
    )
    .await;
    assert_eq!(mine.body["version"], Value::Null, "{}", mine.body);
    let bad = admin(
        &app,
        Method::GET,
        "/v1/admin/risk/rules?jurisdiction=a%20b",
        None,
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

// The IP list is a file of this test's own, so these run outside `contract_tests!`.

fn ip_list_path(backend: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "kassa-risk-ips-{}-{backend}.txt",
        std::process::id()
    ))
}

async fn ip_flags_come_from_a_list_file_read_again_when_it_changes(
    backend: TestBackend,
    name: &str,
) {
    let path = ip_list_path(name);
    std::fs::write(&path, "# test list\n198.51.100.0/24 vpn\n").unwrap();
    let list = path.to_string_lossy().to_string();
    let Some(app) = common::spawn_with(backend, |config| {
        quiet(config);
        config.risk.ip_list_path = list;
    })
    .await
    else {
        return;
    };
    let rules = json!({
        "thresholds": {"review": 50, "step_up": 80, "decline": 100},
        "rules": [
            rule("vpn", json!({"flag": "ip_vpn"}), 50),
            rule("tor", json!({"flag": "ip_tor"}), 100),
        ],
    });
    set_rules(&app, "", rules).await;
    player(&app, "p1").await;
    let (_, vpn) = decided(&app, "p1", "10.00", json!({"ip": "198.51.100.7"})).await;
    assert_eq!(
        (vpn["outcome"].as_str(), fired(&vpn)),
        (Some("review"), vec!["vpn".to_string()])
    );
    assert_eq!(read(&vpn, "vpn", "ip_vpn"), true);
    let (_, clean) = decided(&app, "p1", "10.00", json!({"ip": "192.0.2.1"})).await;
    assert_eq!(clean["outcome"], "approve", "{clean}");

    std::fs::write(&path, "198.51.100.0/24 vpn\n192.0.2.1 tor # exit node\n").unwrap();
    // The file is looked at again at most once a second.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let refused = deposit(&app, "p1", "10.00", json!({"ip": "192.0.2.1"})).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (StatusCode::FORBIDDEN, "risk_declined"),
        "{}",
        refused.body
    );
    assert_eq!(refused.body["details"]["rules"], json!(["tor"]));
    app.stop().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ip_flags_come_from_a_list_file_read_again_when_it_changes() {
    ip_flags_come_from_a_list_file_read_again_when_it_changes(TestBackend::Sqlite, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_ip_flags_come_from_a_list_file_read_again_when_it_changes() {
    ip_flags_come_from_a_list_file_read_again_when_it_changes(TestBackend::Postgres, "postgres")
        .await;
}
