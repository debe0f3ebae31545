//! AML monitoring after money moved, through the API (issue 19 items 3–4 and 7, docs/aml.md):
//! deposits credited through the sandbox PSP's signed webhooks and payouts requested raise
//! the scenarios' alerts once per pattern, alerts open one case per player, the case
//! workflow runs over HTTP with its audit trail, and the goAML export parses back against
//! the documented subset.

mod common;

use std::time::Duration;

use common::{deliver, fast_background, rfc3339_now_plus, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The test plays the provider (no webhook by itself) and jobs run at test speed.
fn monitored(config: &mut kassa_server::config::Config) {
    fast_background(config);
    config.sandbox.autopilot = false;
    config.aml.reporting_entity = kassa_core::aml::goaml::ReportingEntity {
        id: "4711".into(),
        branch: Some("Valletta".into()),
        name: "Kassa Test Casino Ltd".into(),
        country: Some("MT".into()),
        lookups: Default::default(),
    };
    config.metrics.listen = "127.0.0.1:0".into();
}

/// [`monitored`] with the FIU's lookup tables, strict: every name mapped but the
/// `cdd_threshold` indicator when `complete` is false.
fn fiu_lookups(config: &mut kassa_server::config::Config, complete: bool) {
    monitored(config);
    let table = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(name, code)| (name.to_string(), code.to_string()))
            .collect()
    };
    let mut indicators = vec![("structuring", "SA2001")];
    if complete {
        indicators.push(("cdd_threshold", "SA1001"));
    }
    config.aml.reporting_entity.lookups = kassa_core::aml::goaml::GoamlLookups {
        transmode: table(&[("card", "K")]),
        funds: table(&[("card", "CRD")]),
        indicators: table(&indicators),
        account_type: Some("G1".into()),
        strict: true,
    };
}

/// [`monitored`], keeping what the test binary logs.
fn monitored_with_logs(config: &mut kassa_server::config::Config) {
    monitored(config);
    common::logs::capture_logs();
}

/// [`monitored`] without KYC's own CDD lock (docs/kyc.md), so that only the risk rule
/// reading the AML case refuses.
fn without_kyc_lock(config: &mut kassa_server::config::Config) {
    monitored(config);
    config.kyc.cdd_lock_jurisdictions.clear();
}

/// [`monitored`] with runs that wait 3 s for more of the player's events (ADR 87).
fn coalescing(config: &mut kassa_server::config::Config) {
    monitored(config);
    config.aml.monitor_coalesce_ms = COALESCE_MS;
}

const COALESCE_MS: u64 = 3_000;

contract_tests_with!(
    a_burst_of_captures_is_one_monitoring_run_that_sees_them_all => coalescing,
    structuring_raises_one_alert_and_one_case => monitored,
    cdd_rapid_in_out_and_instruments_raise_theirs_and_a_small_player_none => monitored,
    the_case_workflow_runs_over_http_with_its_audit_trail => monitored,
    the_goaml_export_validates_and_names_the_case_transactions => monitored,
    the_goaml_export_names_the_account_holder_whose_identity_is_on_file => monitored_with_logs,
    a_rule_holds_payouts_while_a_cdd_case_is_open => without_kyc_lock,
    the_goaml_export_writes_the_fius_codes => |c: &mut kassa_server::config::Config| fiu_lookups(c, true),
    strict_lookups_refuse_an_export_they_do_not_map_before_it_moves_the_case =>
        |c: &mut kassa_server::config::Config| fiu_lookups(c, false),
);

async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> common::Answer {
    app.as_admin(method, path, body).await
}

/// A KYC-verified EUR player of Malta (MT links deposits over 180 days for CDD).
async fn player(app: &TestApp, player_id: &str) {
    let body = json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT",
                      "kyc_status": "verified"});
    let answer = app.put(&format!("/v1/players/{player_id}"), body).await;
    assert!(answer.status.is_success(), "{}", answer.body);
}

/// A card deposit through the sandbox, credited by its signed `captured` webhook.
async fn deposit(app: &TestApp, player_id: &str, amount: &str) -> String {
    let body = json!({
        "amount": amount, "currency": "EUR", "method": "card", "player_id": player_id,
        "return_url": format!("{}/cashier/return", app.base), "meta": {"country": "MT"},
    });
    let started = app.post_idempotent("/v1/payments/init", body).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let payment_id = started.body["payment_id"].as_str().unwrap().to_string();
    let event = json!({
        "event_id": kassa_core::ids::generate("evt"), "payment_id": payment_id,
        "status": "captured", "amount": amount, "currency": "EUR",
        "timestamp": rfc3339_now_plus(0),
    });
    let answer = deliver(app, &event).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let payment = app.get(&format!("/v1/payments/{payment_id}")).await;
    assert_eq!(payment.body["status"], "captured", "{}", payment.body);
    payment_id
}

/// A bet of `amount` through the wallet.
async fn bet(app: &TestApp, player_id: &str, amount: &str) {
    let txn = kassa_core::ids::generate("bet");
    let answer = app.debit(&txn, player_id, amount).await;
    assert!(answer.status.is_success(), "{}", answer.body);
}

/// A card payout, optionally to `destination`; returns its id.
async fn payout(app: &TestApp, player_id: &str, amount: &str, destination: Option<&str>) -> String {
    let mut body =
        json!({"amount": amount, "currency": "EUR", "method": "card", "player_id": player_id});
    if let Some(destination) = destination {
        body["destination"] = json!(destination);
    }
    let requested = app.post_idempotent("/v1/payouts/init", body).await;
    assert!(requested.status.is_success(), "{}", requested.body);
    requested.body["payout_id"].as_str().unwrap().to_string()
}

/// Waits until every queued monitoring run has finished.
async fn monitored_all(app: &TestApp) {
    let store = app.store();
    for _ in 0..500 {
        let left = store
            .unfinished_job_count(kassa_server::service::aml::AML_MONITOR)
            .await
            .unwrap();
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the AML monitoring jobs did not finish");
}

/// The player's alerts, newest first.
async fn alerts(app: &TestApp, player_id: &str) -> Vec<Value> {
    monitored_all(app).await;
    let page = admin(
        app,
        Method::GET,
        &format!("/v1/admin/alerts?player_id={player_id}&limit=100"),
        None,
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["data"].as_array().unwrap().clone()
}

fn scenarios(alerts: &[Value]) -> Vec<&str> {
    let mut names: Vec<&str> = alerts
        .iter()
        .map(|a| a["scenario"].as_str().unwrap())
        .collect();
    names.sort();
    names
}

async fn cases(app: &TestApp, query: &str) -> Vec<Value> {
    let page = admin(app, Method::GET, &format!("/v1/admin/cases?{query}"), None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["data"].as_array().unwrap().clone()
}

/// Three deposits of €1,800 within 24 hours, each under the €2,000 threshold: one case for
/// the player, holding the structuring alert and the CDD alert of the linked sum.
async fn structured(app: &TestApp, player_id: &str) -> (String, Vec<String>) {
    player(app, player_id).await;
    let mut payments = Vec::new();
    for _ in 0..3 {
        payments.push(deposit(app, player_id, "1800.00").await);
    }
    let found = alerts(app, player_id).await;
    let cases = cases(app, &format!("player_id={player_id}")).await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert!(found.iter().all(|a| a["case_id"] == cases[0]["case_id"]));
    (cases[0]["case_id"].as_str().unwrap().to_string(), payments)
}

async fn a_burst_of_captures_is_one_monitoring_run_that_sees_them_all(app: TestApp) {
    player(&app, "b1").await;
    let mut payments = Vec::new();
    for _ in 0..3 {
        payments.push(deposit(&app, "b1", "1800.00").await);
    }
    let found = alerts(&app, "b1").await;
    let structuring = found
        .iter()
        .find(|a| a["scenario"] == "structuring")
        .unwrap_or_else(|| panic!("{found:?}"));
    assert_eq!(structuring["transactions"], json!(payments));

    let page = admin(&app, Method::GET, "/v1/admin/jobs?kind=aml.monitor", None).await;
    let jobs = page.body["data"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "three captures, one run: {jobs:?}");
    let job = &jobs[0];
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["attempts"], 1);
    let waited_ms = common::parse_rfc3339_ms(job["run_at"].as_str().unwrap())
        - common::parse_rfc3339_ms(job["created_at"].as_str().unwrap());
    assert!(
        (COALESCE_MS as i64 - 5..=COALESCE_MS as i64 + 5).contains(&waited_ms),
        "due {waited_ms} ms after the first capture: {job}"
    );
}

async fn structuring_raises_one_alert_and_one_case(app: TestApp) {
    let (case_id, payments) = structured(&app, "s1").await;
    let found = alerts(&app, "s1").await;
    assert_eq!(
        scenarios(&found),
        ["cdd_threshold", "structuring"],
        "{found:?}"
    );
    let structuring = found
        .iter()
        .find(|a| a["scenario"] == "structuring")
        .unwrap();
    assert_eq!(structuring["transactions"], json!(payments));
    assert_eq!(structuring["amount"], "5400.00");
    assert_eq!(structuring["figures"]["floor_minor"], 160_000);
    assert!(structuring["found_after"]
        .as_str()
        .unwrap()
        .starts_with("payment.captured:pay_"));

    // A fourth in the same window is the same pattern: no second alert, no second case.
    deposit(&app, "s1", "1800.00").await;
    let again = alerts(&app, "s1").await;
    assert_eq!(
        scenarios(&again),
        ["cdd_threshold", "structuring"],
        "{again:?}"
    );
    let open = cases(&app, "player_id=s1&status=open").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["case_id"], case_id.as_str());

    // The metrics count alerts by scenario and the cases opened.
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("kassa_aml_alerts_total{scenario=\"structuring\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("kassa_cases_opened_total"), "{metrics}");
}

async fn cdd_rapid_in_out_and_instruments_raise_theirs_and_a_small_player_none(app: TestApp) {
    // €2,000 in one deposit reaches the CDD threshold, once per window.
    player(&app, "c1").await;
    let big = deposit(&app, "c1", "2000.00").await;
    let found = alerts(&app, "c1").await;
    assert_eq!(scenarios(&found), ["cdd_threshold"], "{found:?}");
    assert_eq!(found[0]["transactions"], json!([big]));
    deposit(&app, "c1", "10.00").await;
    assert_eq!(alerts(&app, "c1").await.len(), 1);

    // 90 % of a deposit withdrawn within the hour with 2 % of it wagered.
    player(&app, "r1").await;
    let paid_in = deposit(&app, "r1", "500.00").await;
    bet(&app, "r1", "10.00").await;
    let out = payout(&app, "r1", "450.00", None).await;
    let found = alerts(&app, "r1").await;
    assert_eq!(scenarios(&found), ["rapid_in_out"], "{found:?}");
    assert_eq!(found[0]["transactions"], json!([paid_in, out]));
    assert_eq!(found[0]["figures"]["wagered_minor"], 1_000);

    // A payout to an instrument the player never deposited with; a second player paying
    // out to the same one makes it a shared (third-party) instrument.
    player(&app, "o1").await;
    deposit(&app, "o1", "100.00").await;
    bet(&app, "o1", "60.00").await;
    let elsewhere = payout(&app, "o1", "20.00", Some("tok_someone_elses_card")).await;
    let found = alerts(&app, "o1").await;
    assert_eq!(scenarios(&found), ["other_instrument"], "{found:?}");
    assert_eq!(found[0]["transactions"], json!([elsewhere]));
    player(&app, "o2").await;
    deposit(&app, "o2", "100.00").await;
    bet(&app, "o2", "60.00").await;
    payout(&app, "o2", "20.00", Some("tok_someone_elses_card")).await;
    let found = alerts(&app, "o2").await;
    assert_eq!(
        scenarios(&found),
        ["other_instrument", "shared_instrument"],
        "{found:?}"
    );

    // Below every threshold: small deposits, real play, a small payout to the same route.
    player(&app, "n1").await;
    deposit(&app, "n1", "50.00").await;
    bet(&app, "n1", "40.00").await;
    payout(&app, "n1", "5.00", None).await;
    assert!(alerts(&app, "n1").await.is_empty());
    assert!(cases(&app, "player_id=n1").await.is_empty());
}

async fn transition(app: &TestApp, case_id: &str, body: Value) -> common::Answer {
    let path = format!("/v1/admin/cases/{case_id}/transition");
    admin(app, Method::POST, &path, Some(body)).await
}

async fn the_case_workflow_runs_over_http_with_its_audit_trail(app: TestApp) {
    player(&app, "w1").await;
    deposit(&app, "w1", "2500.00").await;
    alerts(&app, "w1").await;
    let case_id = cases(&app, "player_id=w1").await[0]["case_id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = |tail: &str| format!("/v1/admin/cases/{case_id}{tail}");

    let assigned = admin(
        &app,
        Method::POST,
        &path("/assign"),
        Some(json!({"assignee": "mlro"})),
    )
    .await;
    assert_eq!(assigned.status, StatusCode::OK, "{}", assigned.body);
    assert_eq!(assigned.body["assignee"], "mlro");

    // A note with an Idempotency-Key is written once; the repeat replays the first answer.
    let key = [("Idempotency-Key", "note-1")];
    let note = json!({"text": "source of funds asked for"});
    let mut answers = Vec::new();
    for _ in 0..2 {
        let notes = path("/notes");
        let answer = app
            .send(
                Method::POST,
                &notes,
                Some(&app.admin_key),
                Some(&note),
                &key,
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answers.push(answer);
    }
    let (first, repeat) = (&answers[0], &answers[1]);
    assert_eq!(repeat.header("idempotent-replayed"), Some("true"));
    assert_eq!(repeat.body, first.body);

    // open → reported skips the investigation: 409 with the documented error body.
    let illegal = transition(&app, &case_id, json!({"to": "reported"})).await;
    assert_eq!(illegal.status, StatusCode::CONFLICT, "{}", illegal.body);
    assert_eq!(illegal.error_code(), "case_transition_not_allowed");
    assert_eq!(illegal.body["details"]["from"], "open");
    assert_eq!(
        illegal.body["details"]["allowed"],
        json!(["investigating", "closed"])
    );

    for to in ["investigating", "escalated", "reported"] {
        let moved = transition(
            &app,
            &case_id,
            json!({"to": to, "note": format!("to {to}")}),
        )
        .await;
        assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
        assert_eq!(moved.body["status"], to);
    }
    let no_reason = transition(&app, &case_id, json!({"to": "closed"})).await;
    assert_eq!(
        no_reason.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        no_reason.body
    );
    assert_eq!(no_reason.error_code(), "validation_failed");
    let closed = transition(
        &app,
        &case_id,
        json!({"to": "closed", "reason": "reported"}),
    )
    .await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.body);
    assert_eq!(closed.body["status"], "closed");
    assert_eq!(closed.body["close_reason"], "reported");
    assert_eq!(closed.body["next_statuses"], json!([]));
    let after_close = transition(&app, &case_id, json!({"to": "investigating"})).await;
    assert_eq!(after_close.error_code(), "case_transition_not_allowed");
    let reassigned = admin(
        &app,
        Method::POST,
        &path("/assign"),
        Some(json!({"assignee": "x"})),
    )
    .await;
    assert_eq!(reassigned.status, StatusCode::CONFLICT);
    assert_eq!(reassigned.error_code(), "case_closed");

    // The audit trail reads back: who, when, from → to.
    let file = admin(&app, Method::GET, &path(""), None).await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.body);
    let audit = file.body["audit"].as_array().unwrap();
    let trail: Vec<String> = audit
        .iter()
        .map(|e| match e["event"].as_str().unwrap() {
            "transition" => format!(
                "{}->{}",
                e["from_status"].as_str().unwrap(),
                e["to_status"].as_str().unwrap()
            ),
            other => other.to_string(),
        })
        .collect();
    assert_eq!(
        trail,
        [
            "opened",
            "alert",
            "assigned",
            "note",
            "open->investigating",
            "investigating->escalated",
            "escalated->reported",
            "reported->closed"
        ],
        "{audit:?}"
    );
    let admin_key_id = audit[2]["actor"].as_str().unwrap();
    assert_ne!(admin_key_id, "aml");
    assert!(audit[4..]
        .iter()
        .all(|e| e["actor"] == admin_key_id && e["created_at"].is_string()));
    assert_eq!(audit[0]["actor"], "aml");
    assert_eq!(file.body["alerts"][0]["scenario"], "cdd_threshold");
    // A new alert of the player opens a new case: the closed one stays closed.
    assert_eq!(cases(&app, "player_id=w1&status=closed").await.len(), 1);
    let unknown = admin(&app, Method::GET, "/v1/admin/cases/case_nope", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "case_not_found");
}

/// goAML's `report` as Kassa writes it (docs/aml.md): each child's name with its least and
/// most occurrences, in order.
const REPORT_SUBSET: &[(&str, usize, usize)] = &[
    ("rentity_id", 1, 1),
    ("rentity_branch", 0, 1),
    ("submission_code", 1, 1),
    ("report_code", 1, 1),
    ("entity_reference", 1, 1),
    ("submission_date", 1, 1),
    ("currency_code_local", 1, 1),
    ("reason", 1, 1),
    ("action", 1, 1),
    ("transaction", 1, usize::MAX),
    ("report_indicators", 1, 1),
];
const TRANSACTION_SUBSET: &[(&str, usize, usize)] = &[
    ("transactionnumber", 1, 1),
    ("internal_ref_number", 0, 1),
    ("transaction_description", 1, 1),
    ("date_transaction", 1, 1),
    ("transmode_code", 1, 1),
    ("amount_local", 1, 1),
    ("t_from", 0, 1),
    ("t_from_my_client", 0, 1),
    ("t_to", 0, 1),
    ("t_to_my_client", 0, 1),
];
const ACCOUNT_SUBSET: &[(&str, usize, usize)] = &[
    ("institution_name", 1, 1),
    ("account", 1, 1),
    ("currency_code", 1, 1),
    ("client_number", 0, 1),
    ("personal_account_type", 0, 1),
];

/// The player's account ("my client"): the account, then the player as its signatory when
/// Kassa holds their identity.
const MY_CLIENT_ACCOUNT_SUBSET: &[(&str, usize, usize)] = &[
    ("institution_name", 1, 1),
    ("account", 1, 1),
    ("currency_code", 1, 1),
    ("client_number", 0, 1),
    ("personal_account_type", 0, 1),
    ("signatory", 0, 1),
];
const SIGNATORY_SUBSET: &[(&str, usize, usize)] = &[("is_primary", 0, 1), ("t_person", 1, 1)];
/// goAML's person elements in its order, those Kassa may hold.
const PERSON_SUBSET: &[(&str, usize, usize)] = &[
    ("first_name", 0, 1),
    ("last_name", 0, 1),
    ("birthdate", 0, 1),
    ("email", 0, 1),
];

/// Checks `node`'s element children against `subset`: only its names, in its order, each
/// as often as allowed.
fn check_children(node: roxmltree::Node<'_, '_>, subset: &[(&str, usize, usize)]) {
    let names: Vec<&str> = node
        .children()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name())
        .collect();
    let mut at = 0;
    for (name, least, most) in subset {
        let count = names[at..].iter().take_while(|n| *n == name).count();
        assert!(
            count >= *least && count <= *most,
            "<{}>: {count} <{name}> at {at} in {names:?}",
            node.tag_name().name()
        );
        at += count;
    }
    assert_eq!(
        at,
        names.len(),
        "<{}> has unexpected children: {names:?}",
        node.tag_name().name()
    );
}

fn text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> &'a str {
    node.children()
        .find(|n| n.has_tag_name(name))
        .and_then(|n| n.text())
        .unwrap_or_else(|| panic!("no <{name}> text in <{}>", node.tag_name().name()))
}

fn is_iso_datetime(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.len() == 19
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            _ => b.is_ascii_digit(),
        })
}

fn is_decimal(value: &str) -> bool {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

async fn export(app: &TestApp, case_id: &str, query: &str) -> (StatusCode, String) {
    let url = format!("{}/v1/admin/cases/{case_id}/export?{query}", app.base);
    let answer = app
        .client
        .get(url)
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    (answer.status(), answer.text().await.unwrap())
}

async fn the_goaml_export_validates_and_names_the_case_transactions(app: TestApp) {
    let (case_id, payments) = structured(&app, "g1").await;
    let (status, xml) = export(&app, &case_id, "format=goaml").await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let document = roxmltree::Document::parse(&xml).expect("the export is well-formed XML");
    let report = document.root_element();
    assert_eq!(report.tag_name().name(), "report");
    check_children(report, REPORT_SUBSET);
    assert_eq!(text(report, "rentity_id"), "4711");
    assert_eq!(text(report, "rentity_branch"), "Valletta");
    assert_eq!(text(report, "report_code"), "STR");
    assert_eq!(text(report, "entity_reference"), case_id);
    assert_eq!(text(report, "currency_code_local"), "EUR");
    assert!(is_iso_datetime(text(report, "submission_date")));
    assert!(text(report, "reason").contains("structuring"));
    let mut numbers = Vec::new();
    for transaction in report.children().filter(|n| n.has_tag_name("transaction")) {
        check_children(transaction, TRANSACTION_SUBSET);
        numbers.push(text(transaction, "transactionnumber").to_string());
        assert!(is_iso_datetime(text(transaction, "date_transaction")));
        let amount = text(transaction, "amount_local");
        assert!(is_decimal(amount), "{amount}");
        assert_eq!(amount, "1800.00");
        // A deposit: from the provider's account to the player's, "my client".
        let from = transaction
            .children()
            .find(|n| n.has_tag_name("t_from"))
            .expect("t_from");
        let to = transaction
            .children()
            .find(|n| n.has_tag_name("t_to_my_client"))
            .expect("t_to_my_client");
        let account = to
            .children()
            .find(|n| n.has_tag_name("to_account"))
            .unwrap();
        check_children(account, MY_CLIENT_ACCOUNT_SUBSET);
        assert!(
            !account.children().any(|n| n.has_tag_name("signatory")),
            "no identity on file, no person"
        );
        assert_eq!(text(account, "account"), "g1");
        assert_eq!(text(account, "institution_name"), "Kassa Test Casino Ltd");
        assert_eq!(text(to, "to_country"), "MT");
        check_children(
            from.children()
                .find(|n| n.has_tag_name("from_account"))
                .unwrap(),
            ACCOUNT_SUBSET,
        );
    }
    assert_eq!(numbers, payments, "the case's transactions, oldest first");
    let indicators: Vec<&str> = report
        .children()
        .find(|n| n.has_tag_name("report_indicators"))
        .unwrap()
        .children()
        .filter_map(|n| n.text().filter(|_| n.is_element()))
        .collect();
    assert_eq!(indicators, ["cdd_threshold", "structuring"]);

    let (status, summary) = export(&app, &case_id, "format=summary&report_code=SAR").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        summary.starts_with(&format!("SAR report for case {case_id}")),
        "{summary}"
    );
    assert!(
        payments.iter().all(|p| summary.contains(p.as_str())),
        "{summary}"
    );
    assert!(
        summary.contains("Name: unknown (no identity on file)"),
        "{summary}"
    );

    // Exporting changes nothing unless asked; marking an open case reported is refused.
    let open = admin(
        &app,
        Method::GET,
        &format!("/v1/admin/cases/{case_id}"),
        None,
    )
    .await;
    assert_eq!(open.body["status"], "open");
    let (status, refused) = export(&app, &case_id, "format=goaml&mark_reported=true").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused.contains("case_transition_not_allowed"));
    transition(&app, &case_id, json!({"to": "investigating"})).await;
    let (status, _) = export(&app, &case_id, "format=goaml&mark_reported=true").await;
    assert_eq!(status, StatusCode::OK);
    let reported = admin(
        &app,
        Method::GET,
        &format!("/v1/admin/cases/{case_id}"),
        None,
    )
    .await;
    assert_eq!(reported.body["status"], "reported");
    let exports = reported.body["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "exported")
        .count();
    assert_eq!(exports, 3);
    let (status, bad) = export(&app, &case_id, "format=pdf").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
}

/// The FIU's codes replace Kassa's names in the XML; the plain summary keeps Kassa's.
async fn the_goaml_export_writes_the_fius_codes(app: TestApp) {
    let (case_id, _) = structured(&app, "f1").await;
    let (status, xml) = export(&app, &case_id, "format=goaml").await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let document = roxmltree::Document::parse(&xml).expect("the export is well-formed XML");
    let report = document.root_element();
    check_children(report, REPORT_SUBSET);
    for transaction in report.children().filter(|n| n.has_tag_name("transaction")) {
        assert_eq!(text(transaction, "transmode_code"), "K");
        let from = child(transaction, "t_from");
        assert_eq!(text(from, "from_funds_code"), "CRD");
        let to = child(transaction, "t_to_my_client");
        assert_eq!(text(to, "to_funds_code"), "CRD");
        assert_eq!(text(child(to, "to_account"), "personal_account_type"), "G1");
    }
    let indicators: Vec<&str> = child(report, "report_indicators")
        .children()
        .filter_map(|n| n.text().filter(|_| n.is_element()))
        .collect();
    assert_eq!(indicators, ["SA1001", "SA2001"]);
    let (status, summary) = export(&app, &case_id, "format=summary").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        summary.contains("Indicators: cdd_threshold, structuring"),
        "{summary}"
    );
}

/// Strict tables that do not map an indicator refuse the goAML export with what is
/// missing, before `mark_reported` moves the case; the summary is still given.
async fn strict_lookups_refuse_an_export_they_do_not_map_before_it_moves_the_case(app: TestApp) {
    let (case_id, _) = structured(&app, "f2").await;
    transition(&app, &case_id, json!({"to": "investigating"})).await;
    let (status, refused) = export(&app, &case_id, "format=goaml&mark_reported=true").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let refused: Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(refused["error"], "goaml_lookup_missing", "{refused}");
    assert_eq!(
        refused["details"]["unmapped"],
        json!(["indicators:cdd_threshold"])
    );
    let case = admin(
        &app,
        Method::GET,
        &format!("/v1/admin/cases/{case_id}"),
        None,
    )
    .await;
    assert_eq!(case.body["status"], "investigating", "{}", case.body);
    let audit = case.body["audit"].as_array().unwrap();
    assert!(
        !audit.iter().any(|e| e["event"] == "exported"),
        "{}",
        case.body
    );
    let (status, summary) = export(&app, &case_id, "format=summary").await;
    assert_eq!(status, StatusCode::OK, "{summary}");
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> roxmltree::Node<'a, 'i> {
    node.children()
        .find(|n| n.has_tag_name(name))
        .unwrap_or_else(|| panic!("no <{name}> in <{}>", node.tag_name().name()))
}

async fn the_goaml_export_names_the_account_holder_whose_identity_is_on_file(app: TestApp) {
    let (case_id, payments) = structured(&app, "n1").await;
    let born = json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT",
                      "kyc_status": "verified", "birth_date": "1977-03-14"});
    assert!(app.put("/v1/players/n1", born).await.status.is_success());
    let identity = json!({"first_name": "Wilhelmina", "last_name": "Quarrington",
        "email": "wilhelmina.q@pii.example", "postcode": "ZX9 9ZZ"});
    let stored = app.put("/v1/players/n1/identity", identity).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);

    let (status, xml) = export(&app, &case_id, "format=goaml").await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let document = roxmltree::Document::parse(&xml).expect("the export is well-formed XML");
    let report = document.root_element();
    check_children(report, REPORT_SUBSET);
    let transactions: Vec<_> = report
        .children()
        .filter(|n| n.has_tag_name("transaction"))
        .collect();
    assert_eq!(transactions.len(), payments.len());
    for transaction in transactions {
        let account = child(child(transaction, "t_to_my_client"), "to_account");
        check_children(account, MY_CLIENT_ACCOUNT_SUBSET);
        let signatory = child(account, "signatory");
        check_children(signatory, SIGNATORY_SUBSET);
        assert_eq!(text(signatory, "is_primary"), "true");
        let person = child(signatory, "t_person");
        check_children(person, PERSON_SUBSET);
        let fields: Vec<(&str, &str)> = person
            .children()
            .filter(|n| n.is_element())
            .map(|n| (n.tag_name().name(), n.text().unwrap_or("")))
            .collect();
        assert_eq!(
            fields,
            [
                ("first_name", "Wilhelmina"),
                ("last_name", "Quarrington"),
                ("birthdate", "1977-03-14T00:00:00"),
                ("email", "wilhelmina.q@pii.example"),
            ]
        );
        check_children(
            child(child(transaction, "t_from"), "from_account"),
            ACCOUNT_SUBSET,
        );
    }
    assert!(
        !xml.contains("ZX9"),
        "only the fields goAML's subset names: {xml}"
    );

    let (status, summary) = export(&app, &case_id, "format=summary").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        summary.contains("Name: Wilhelmina Quarrington\n"),
        "{summary}"
    );
    assert!(
        summary.contains("E-mail: wilhelmina.q@pii.example\n"),
        "{summary}"
    );
    assert!(summary.contains("born 1977-03-14"), "{summary}");
    app.stop().await;

    let logs = String::from_utf8_lossy(&common::logs::logs().lock().unwrap()).into_owned();
    assert!(
        logs.contains("register identity stored"),
        "the logs were kept"
    );
    for secret in ["Wilhelmina", "Quarrington", "pii.example"] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
}

async fn a_rule_holds_payouts_while_a_cdd_case_is_open(app: TestApp) {
    let rules = json!({
        "rules": {
            "thresholds": {"review": 50, "step_up": 80, "decline": 120},
            "rules": [{
                "id": "cdd-before-withdrawal", "description": "CDD threshold reached",
                "when": {"all": [{"in": {"feature": "kind", "values": ["payout"]}},
                                 {"flag": "aml_cdd_threshold"}]},
                "score": 80,
            }],
        },
        "based_on_version": null,
    });
    let stored = admin(&app, Method::PUT, "/v1/admin/risk/rules", Some(rules)).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    player(&app, "h1").await;
    deposit(&app, "h1", "2500.00").await;
    alerts(&app, "h1").await;
    let body = json!({"amount": "100.00", "currency": "EUR", "method": "card", "player_id": "h1"});
    let held = app.post_idempotent("/v1/payouts/init", body.clone()).await;
    assert_eq!(held.status, StatusCode::FORBIDDEN, "{}", held.body);
    assert_eq!(held.error_code(), "kyc_step_up_required");
    assert_eq!(
        held.body["details"]["rules"],
        json!(["cdd-before-withdrawal"])
    );
    let (available, _) = app.balance("h1").await;
    assert_eq!(available, "2500.00", "nothing was held");

    let case_id = cases(&app, "player_id=h1").await[0]["case_id"]
        .as_str()
        .unwrap()
        .to_string();
    let closed = transition(
        &app,
        &case_id,
        json!({"to": "closed", "reason": "no_suspicion"}),
    )
    .await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.body);
    let paid = app.post_idempotent("/v1/payouts/init", body).await;
    assert!(paid.status.is_success(), "{}", paid.body);
}
