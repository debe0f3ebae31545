//! National self-exclusion registers (issue 19 item 6, ADR 73, docs/registers.md), over
//! real HTTP against the GAMSTOP- and Spelpaus-shaped sandboxes: an excluded player's
//! deposits and bets are refused, a clear answer is stored and used until it is old, a
//! register that cannot answer refuses only players it never answered about, players of a
//! jurisdiction without a register are not checked, a bad answer never passes, the
//! identity sent never reaches the logs, and the recheck job asks again about active players
//! whose answer has grown old (their next bet is refused when the answer is now `excluded`)
//! without clearing anyone while the register is down.

mod common;

use common::logs::{capture_logs, logs};
use common::{Answer, TestApp};
use kassa_core::register::RegisterOutcome;
use kassa_store::jobs::{JobRecord, JobState};
use reqwest::StatusCode;
use serde_json::{json, Value};

const GAMSTOP: &str = "gamstop-test";
const SPELPAUS: &str = "spelpaus-test";

/// GB players are checked with GAMSTOP, SE players with Spelpaus, both sandboxes embedded.
fn registers(config: &mut kassa_server::config::Config) {
    config.registers.jurisdictions = [("GB", "gamstop"), ("SE", "spelpaus")]
        .map(|(j, r)| (j.to_string(), r.to_string()))
        .into();
    config.registers.accounts = vec![
        common::register_account("gamstop", GAMSTOP),
        common::register_account("spelpaus", SPELPAUS),
    ];
    config.metrics.listen = "127.0.0.1:0".into();
    capture_logs();
}

/// [`registers`], every deposit asking the register again (no answer is recent enough).
fn always_ask(config: &mut kassa_server::config::Config) {
    registers(config);
    config.registers.recheck_hours = 0;
}

/// [`registers`] with the job runtime looking for due jobs every 20 ms, and the recheck job
/// reading one player per batch (so a run goes through several batches).
fn sweeping(config: &mut kassa_server::config::Config) {
    registers(config);
    common::fast_background(config);
    config.registers.recheck_batch_max = 1;
}

contract_tests_with!(
    a_gamstop_exclusion_refuses_deposits_and_bets => registers,
    a_clear_answer_is_stored_and_used_until_it_is_old => registers,
    spelpaus_blocks_by_personal_number => registers,
    an_unreachable_register_refuses_only_players_it_never_answered_about => always_ask,
    a_jurisdiction_without_a_register_is_not_checked => registers,
    bad_answers_and_missing_identity_refuse_the_deposit => registers,
    the_identity_never_reaches_the_logs => registers,
    the_recheck_job_asks_again_about_active_players_only => sweeping,
    a_register_outage_during_the_recheck_clears_nobody_and_the_job_retries => sweeping,
);

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The recurring recheck job, once it is not running.
async fn recheck_job(app: &TestApp) -> JobRecord {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let jobs = app
            .store()
            .list_jobs(None, Some("registers.recheck"), None, 10)
            .await
            .unwrap();
        let unfinished: Vec<_> = jobs
            .into_iter()
            .filter(|job| matches!(job.state, JobState::Queued | JobState::Running))
            .collect();
        assert!(unfinished.len() <= 1, "one recurring job: {unfinished:?}");
        if let Some(job) = unfinished.into_iter().next() {
            if job.state == JobState::Queued {
                return job;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no queued recheck job"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Makes the recheck job due now (as its period running out would) and waits until that
/// run has ended; answers the job as it is then.
async fn run_recheck(app: &TestApp) -> JobRecord {
    let store = app.store();
    loop {
        let job = recheck_job(app).await;
        let mut tx = store.begin().await.unwrap();
        let made_due =
            sqlx::query("UPDATE jobs SET run_at_ms = 0 WHERE id = $1 AND state = 'queued'")
                .bind(&job.id)
                .execute(&mut *tx)
                .await
                .unwrap()
                .rows_affected();
        tx.commit().await.unwrap();
        if made_due == 1 {
            break;
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let job = recheck_job(app).await;
        if job.run_at_ms != 0 {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the recheck did not run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn register_status(app: &TestApp, player_id: &str) -> kassa_store::registers::RegisterStatus {
    app.store()
        .register_status("mch_demo", player_id)
        .await
        .unwrap()
        .expect("an answer is stored")
}

async fn recheck_reasons(app: &TestApp, player_id: &str) -> Vec<(String, Option<RegisterOutcome>)> {
    let checks = app.store().register_checks("mch_demo", player_id, 20).await;
    checks
        .unwrap()
        .into_iter()
        .map(|check| (check.reason, check.outcome))
        .collect()
}

/// A EUR player of Great Britain whose register identity has `last_name` (the sandbox's
/// test data: Excluded, Lapsed, Unavailable, Garbled; anything else is not excluded).
async fn gb_player(app: &TestApp, player_id: &str, last_name: &str) {
    let player = json!({"currency": "EUR", "country": "GB", "jurisdiction": "GB",
        "birth_date": "1990-04-01"});
    let answer = app.put(&format!("/v1/players/{player_id}"), player).await;
    assert!(answer.status.is_success(), "{}", answer.body);
    let identity = json!({"first_name": "Ada", "last_name": last_name,
        "email": format!("{player_id}@example.com"), "postcode": "SW1A 1AA"});
    put_identity(app, player_id, identity).await;
}

async fn put_identity(app: &TestApp, player_id: &str, identity: Value) {
    let answer = app
        .put(&format!("/v1/players/{player_id}/identity"), identity)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(
        !answer.body.to_string().contains("@example.com"),
        "the identity is never echoed: {}",
        answer.body
    );
}

/// A EUR player of Sweden with personal identity number `national_id`.
async fn se_player(app: &TestApp, player_id: &str, national_id: &str) {
    let player = json!({"currency": "EUR", "country": "SE", "jurisdiction": "SE"});
    let answer = app.put(&format!("/v1/players/{player_id}"), player).await;
    assert!(answer.status.is_success(), "{}", answer.body);
    put_identity(app, player_id, json!({ "national_id": national_id })).await;
}

fn deposit_body(app: &TestApp, player_id: &str) -> Value {
    json!({
        "amount": "10.00", "currency": "EUR", "method": "card", "player_id": player_id,
        "return_url": format!("{}/cashier/return", app.base), "meta": {"country": "MT"}
    })
}

async fn deposit(app: &TestApp, player_id: &str) -> Answer {
    common::post_deposit(app, &deposit_body(app, player_id)).await
}

/// A deposit under the `Idempotency-Key` `key`.
async fn deposit_keyed(app: &TestApp, player_id: &str, key: &str) -> Answer {
    let body = deposit_body(app, player_id);
    let headers = [("Idempotency-Key", key)];
    app.send(
        reqwest::Method::POST,
        "/v1/payments/init",
        Some(&app.api_key),
        Some(&body),
        &headers,
    )
    .await
}

/// How many checks the account's sandbox was asked.
async fn calls(app: &TestApp, account: &str) -> u64 {
    let url = format!("{}/sandbox/calls", app.simulator_url(account));
    let answer: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    answer["calls"].as_u64().unwrap()
}

async fn set_available(app: &TestApp, account: &str, available: bool) {
    let url = format!("{}/sandbox/behaviour", app.simulator_url(account));
    let answer = reqwest::Client::new()
        .put(url)
        .json(&json!({ "available": available }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}

async fn exclusion_view(app: &TestApp, player_id: &str) -> Value {
    let answer = app.get(&format!("/v1/players/{player_id}/exclusion")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

/// The player's GAMSTOP exclusion was announced: the outbox event, the metric.
async fn assert_exclusion_announced(app: &TestApp, player_id: &str) {
    let events = app.store().outbox_for(player_id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|(topic, _)| topic == "player.register_excluded"),
        "{events:?}"
    );
    assert!(gamstop_exclusions_counted(app).await >= 1);
}

/// `kassa_register_checks_total{register="gamstop",outcome="excluded"}` (the recorder is
/// the process's: other tests of this binary count into it too).
async fn gamstop_exclusions_counted(app: &TestApp) -> u64 {
    let metrics = app.metrics_text().await;
    let series = "kassa_register_checks_total{register=\"gamstop\",outcome=\"excluded\"} ";
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .map_or(0, |value| value.trim().parse().unwrap())
}

fn assert_refused(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(
        (answer.status, answer.error_code()),
        (status, code),
        "{}",
        answer.body
    );
}

async fn a_gamstop_exclusion_refuses_deposits_and_bets(app: TestApp) {
    gb_player(&app, "x1", "Excluded").await;
    let refused = deposit(&app, "x1").await;
    assert_refused(&refused, StatusCode::FORBIDDEN, "self_excluded");
    assert_eq!(refused.body["details"]["register"], "gamstop");
    assert!(refused.body["details"]["register_checked_at"].is_string());
    // A win of a round already open is paid; a bet is refused like a self-exclusion's.
    assert!(app.credit("win-x1", "x1", "5.00").await.status.is_success());
    let bet = app.debit("bet-x1", "x1", "1.00").await;
    assert_refused(&bet, StatusCode::FORBIDDEN, "self_excluded");
    assert_eq!(bet.body["details"]["register"], "gamstop");
    assert_eq!(
        app.balance("x1").await.0,
        "5.00",
        "the refusals moved nothing"
    );

    let view = exclusion_view(&app, "x1").await;
    assert_eq!(view["excluded"], true, "{view}");
    assert_eq!(view["register_check"]["register"], "gamstop", "{view}");
    assert_eq!(view["register_check"]["outcome"], "excluded", "{view}");
    let audit = app
        .store()
        .register_checks("mch_demo", "x1", 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].outcome, Some(RegisterOutcome::Excluded));
    assert_eq!(audit[0].reason, "first_deposit");
    assert_eq!(audit[0].account_id, GAMSTOP);
    assert!(audit[0]
        .register_reference
        .as_deref()
        .is_some_and(|r| !r.is_empty()));
    assert_eq!(view["register_check"]["check_id"], audit[0].id.as_str());
    assert_exclusion_announced(&app, "x1").await;
    app.stop().await;
}

async fn a_clear_answer_is_stored_and_used_until_it_is_old(app: TestApp) {
    gb_player(&app, "n1", "Smith").await;
    for _ in 0..2 {
        let started = deposit(&app, "n1").await;
        assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    }
    assert_eq!(
        calls(&app, GAMSTOP).await,
        1,
        "the second deposit used the stored answer"
    );
    let view = exclusion_view(&app, "n1").await;
    assert_eq!(
        (&view["excluded"], &view["register_check"]["outcome"]),
        (&json!(false), &json!("not_excluded")),
        "{view}"
    );
    // The operator may ask at any time; the register is asked whatever is stored.
    let asked = app.post("/v1/players/n1/register-check", json!({})).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert_eq!(
        (&asked.body["outcome"], &asked.body["excluded"]),
        (&json!("not_excluded"), &json!(false))
    );
    assert_eq!(calls(&app, GAMSTOP).await, 2);
    // A changed identity is asked about again at the next deposit.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    gb_player(&app, "n1", "Smythe").await;
    assert_eq!(deposit(&app, "n1").await.status, StatusCode::CREATED);
    assert_eq!(calls(&app, GAMSTOP).await, 3);
    let reasons: Vec<String> = app
        .store()
        .register_checks("mch_demo", "n1", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|check| check.reason)
        .collect();
    assert_eq!(reasons, ["recheck", "operator", "first_deposit"]);

    // Previously excluded (GAMSTOP's P): the exclusion has lapsed, the player may play.
    gb_player(&app, "l1", "Lapsed").await;
    let started = deposit(&app, "l1").await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let view = exclusion_view(&app, "l1").await;
    assert_eq!(
        view["register_check"]["outcome"], "previously_excluded",
        "{view}"
    );
    assert_eq!(view["excluded"], false);
    app.stop().await;
}

async fn spelpaus_blocks_by_personal_number(app: TestApp) {
    se_player(&app, "s1", "19900101-9992").await;
    let refused = deposit(&app, "s1").await;
    assert_refused(&refused, StatusCode::FORBIDDEN, "self_excluded");
    assert_eq!(refused.body["details"]["register"], "spelpaus");
    se_player(&app, "s2", "199001011239").await;
    let started = deposit(&app, "s2").await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    assert_eq!(calls(&app, SPELPAUS).await, 2);
    assert_eq!(
        calls(&app, GAMSTOP).await,
        0,
        "SE players are not asked of GAMSTOP"
    );
    app.stop().await;
}

async fn an_unreachable_register_refuses_only_players_it_never_answered_about(app: TestApp) {
    gb_player(&app, "c1", "Smith").await;
    assert_eq!(deposit(&app, "c1").await.status, StatusCode::CREATED);
    gb_player(&app, "c2", "Jones").await;
    set_available(&app, GAMSTOP, false).await;

    let refused = deposit(&app, "c2").await;
    assert_refused(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "register_unavailable",
    );
    assert_eq!(refused.body["details"]["register"], "gamstop");
    assert_eq!(refused.header("retry-after"), Some("30"));
    // c1's answer is within valid_hours: it stands in, and the failed question is audited.
    let started = deposit(&app, "c1").await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let audit = app
        .store()
        .register_checks("mch_demo", "c1", 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0].outcome, None);
    assert!(
        audit[0].error.as_deref().is_some_and(|e| e.contains("503")),
        "{audit:?}"
    );

    set_available(&app, GAMSTOP, true).await;
    // Nothing was started or stored: the retry under the same key goes through.
    let started = deposit_keyed(&app, "c2", "idem-c2").await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    app.stop().await;
}

async fn a_jurisdiction_without_a_register_is_not_checked(app: TestApp) {
    app.player("m1").await;
    let started = deposit(&app, "m1").await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    assert_eq!(
        (calls(&app, GAMSTOP).await, calls(&app, SPELPAUS).await),
        (0, 0)
    );
    assert_eq!(
        exclusion_view(&app, "m1").await["register_check"],
        Value::Null
    );
    let asked = app.post("/v1/players/m1/register-check", json!({})).await;
    assert_refused(&asked, StatusCode::CONFLICT, "no_register");
    app.stop().await;
}

async fn bad_answers_and_missing_identity_refuse_the_deposit(app: TestApp) {
    let player = json!({"currency": "EUR", "country": "GB", "jurisdiction": "GB"});
    assert!(app.put("/v1/players/g1", player).await.status.is_success());
    let refused = deposit(&app, "g1").await;
    assert_refused(
        &refused,
        StatusCode::FORBIDDEN,
        "register_identity_required",
    );
    assert_eq!(
        refused.body["details"]["missing"],
        json!(["first_name", "last_name", "birth_date", "email", "postcode"])
    );
    assert_eq!(calls(&app, GAMSTOP).await, 0);
    for (identity, field) in [
        (json!({}), "identity"),
        (json!({"national_id": "199001011238"}), "national_id"),
        (json!({"email": "not-an-address"}), "email"),
        (json!({"first_name": ""}), "first_name"),
        (json!({"postcode": "SW1A<1AA>"}), "postcode"),
    ] {
        let answer = app.put("/v1/players/g1/identity", identity).await;
        assert_refused(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert_eq!(answer.body["details"]["field"], field, "{}", answer.body);
    }
    // A malformed answer and a register error are never "not excluded".
    for (player_id, last_name) in [("g2", "Garbled"), ("g3", "Unavailable")] {
        gb_player(&app, player_id, last_name).await;
        let refused = deposit(&app, player_id).await;
        assert_refused(
            &refused,
            StatusCode::SERVICE_UNAVAILABLE,
            "register_unavailable",
        );
    }
    let audit = app
        .store()
        .register_checks("mch_demo", "g2", 10)
        .await
        .unwrap();
    assert!(
        audit[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("X-Exclusion")),
        "{audit:?}"
    );
    let asked = app.post("/v1/players/g2/register-check", json!({})).await;
    assert_refused(
        &asked,
        StatusCode::SERVICE_UNAVAILABLE,
        "register_unavailable",
    );
    app.stop().await;
}

async fn the_identity_never_reaches_the_logs(app: TestApp) {
    let player = json!({"currency": "EUR", "country": "GB", "jurisdiction": "GB",
        "birth_date": "1977-03-14"});
    assert!(app.put("/v1/players/pii", player).await.status.is_success());
    let identity = json!({"first_name": "Wilhelmina", "last_name": "Quarrington",
        "email": "wilhelmina.q@pii.example", "postcode": "ZX9 9ZZ", "mobile": "07700900123"});
    put_identity(&app, "pii", identity).await;
    assert_eq!(deposit(&app, "pii").await.status, StatusCode::CREATED);
    let asked = app.post("/v1/players/pii/register-check", json!({})).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    se_player(&app, "pii-se", "199001019976").await;
    let refused = deposit(&app, "pii-se").await;
    assert_refused(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "register_unavailable",
    );
    app.stop().await;

    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(logs.contains("register checked"), "the checks were logged");
    for secret in [
        "Wilhelmina",
        "Quarrington",
        "wilhelmina.q",
        "pii.example",
        "ZX9 9ZZ",
        "ZX9+9ZZ",
        "07700900123",
        "1977-03-14",
        "199001019976",
    ] {
        assert!(!logs.contains(secret), "{secret:?} is in the logs");
    }
}

async fn the_recheck_job_asks_again_about_active_players_only(app: TestApp) {
    let clock = app.store().clock().clone();
    // Checked, deposited and then gone: 32 days without a wallet call or a deposit.
    gb_player(&app, "dormant", "Smith").await;
    assert_eq!(deposit(&app, "dormant").await.status, StatusCode::CREATED);
    clock.advance(31 * DAY_MS);
    // Checked 25 hours ago and playing, but its identity now lacks what GAMSTOP needs: the
    // job skips it (its next deposit asks for the identity) and goes on to the next batch.
    gb_player(&app, "gap", "Brown").await;
    assert_eq!(deposit(&app, "gap").await.status, StatusCode::CREATED);
    assert!(app.credit("win-g", "gap", "5.00").await.status.is_success());
    clock.advance(1_000);
    // Checked 25 hours ago, and playing.
    gb_player(&app, "active", "Jones").await;
    assert_eq!(deposit(&app, "active").await.status, StatusCode::CREATED);
    assert!(app
        .credit("win-a", "active", "5.00")
        .await
        .status
        .is_success());
    clock.advance(25 * HOUR_MS);
    // Both register with GAMSTOP since (the sandbox names this last name as excluded).
    gb_player(&app, "active", "Excluded").await;
    gb_player(&app, "dormant", "Excluded").await;
    put_identity(&app, "gap", json!({"national_id": "199001011239"})).await;
    let bet = app.debit("bet-a1", "active", "1.00").await;
    assert!(
        bet.status.is_success(),
        "no register is asked for a bet: {}",
        bet.body
    );
    assert_eq!(calls(&app, GAMSTOP).await, 3);

    let counted_before = gamstop_exclusions_counted(&app).await;
    // One player per batch (`sweeping`): the skipped one, then the active one.
    let job = run_recheck(&app).await;
    assert_eq!(job.last_error, None, "{job:?}");
    assert_eq!(
        calls(&app, GAMSTOP).await,
        4,
        "only the active player was asked"
    );
    assert_eq!(recheck_reasons(&app, "gap").await.len(), 1);
    let bet = app.debit("bet-a2", "active", "1.00").await;
    assert_refused(&bet, StatusCode::FORBIDDEN, "self_excluded");
    assert_eq!(bet.body["details"]["register"], "gamstop");
    assert_eq!(app.balance("active").await.0, "4.00");
    assert_eq!(
        recheck_reasons(&app, "active").await,
        [
            ("sweep".to_string(), Some(RegisterOutcome::Excluded)),
            (
                "first_deposit".to_string(),
                Some(RegisterOutcome::NotExcluded)
            ),
        ]
    );
    assert_eq!(recheck_reasons(&app, "dormant").await.len(), 1);
    assert_exclusion_announced(&app, "active").await;
    assert!(gamstop_exclusions_counted(&app).await > counted_before);

    // A fresh answer is not asked again at the next run.
    let job = run_recheck(&app).await;
    assert_eq!(job.last_error, None, "{job:?}");
    assert_eq!(calls(&app, GAMSTOP).await, 4);
    // The dormant player is asked at their next deposit, as before.
    let refused = deposit(&app, "dormant").await;
    assert_refused(&refused, StatusCode::FORBIDDEN, "self_excluded");
    assert_eq!(calls(&app, GAMSTOP).await, 5);
    app.stop().await;
}

async fn a_register_outage_during_the_recheck_clears_nobody_and_the_job_retries(app: TestApp) {
    let clock = app.store().clock().clone();
    gb_player(&app, "e1", "Excluded").await;
    let refused = deposit(&app, "e1").await;
    assert_refused(&refused, StatusCode::FORBIDDEN, "self_excluded");
    gb_player(&app, "c1", "Smith").await;
    assert_eq!(deposit(&app, "c1").await.status, StatusCode::CREATED);
    for player_id in ["e1", "c1"] {
        let win = app
            .credit(&format!("win-{player_id}"), player_id, "5.00")
            .await;
        assert!(win.status.is_success(), "{}", win.body);
    }
    clock.advance(25 * HOUR_MS);
    let (excluded_at, cleared_at) = (
        register_status(&app, "e1").await,
        register_status(&app, "c1").await,
    );
    set_available(&app, GAMSTOP, false).await;

    let job = run_recheck(&app).await;
    assert!(job.attempts >= 1, "{job:?}");
    let error = job.last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with("register_unavailable: gamstop for mch_demo could not answer")
            && error.contains("503")
            && error.contains("1 more players left unasked"),
        "{job:?}"
    );
    // Nobody's stored answer changed; the excluded player stays refused.
    assert_eq!(register_status(&app, "e1").await, excluded_at);
    assert_eq!(register_status(&app, "c1").await, cleared_at);
    let bet = app.debit("bet-e1", "e1", "1.00").await;
    assert_refused(&bet, StatusCode::FORBIDDEN, "self_excluded");
    let unanswered = [
        recheck_reasons(&app, "e1").await,
        recheck_reasons(&app, "c1").await,
    ]
    .concat()
    .into_iter()
    .filter(|check| *check == ("sweep".to_string(), None))
    .count();
    assert!(unanswered >= 1, "the failed question is audited");

    // The queue retries the job by itself; once the register answers, both are rechecked.
    set_available(&app, GAMSTOP, true).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while register_status(&app, "c1").await == cleared_at
        || register_status(&app, "e1").await == excluded_at
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the job was not retried"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let job = recheck_job(&app).await;
    assert_eq!(job.attempts, 0, "the retry succeeded: {job:?}");
    assert_eq!(
        register_status(&app, "e1").await.outcome,
        RegisterOutcome::Excluded
    );
    assert_eq!(
        register_status(&app, "c1").await.outcome,
        RegisterOutcome::NotExcluded
    );
    let bet = app.debit("bet-e1-2", "e1", "1.00").await;
    assert_refused(&bet, StatusCode::FORBIDDEN, "self_excluded");
    app.stop().await;
}
