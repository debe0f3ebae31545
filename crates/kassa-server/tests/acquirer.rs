//! Card deposits through a direct ISO 8583 acquirer, end to end over real TCP against Kassa's
//! host simulator, on both backends: Kassa's card page, the `0200`, the credit once, declines,
//! a timeout reversed by advices repeated until answered, a refund, STANs across a restart,
//! and no card number in the database.

mod common;
#[path = "acquirer/threeds.rs"]
mod threeds;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::TestApp;
use kassa_server::config::{Config, ProviderAccountConfig};
use kassa_sim::iso8583::{start, Iso8583HostConfig, Iso8583HostHandle};
use kassa_store::testing::TestBackend;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use threeds::{
    threeds_challenge_passed_charges_and_failed_sends_no_authorization,
    threeds_frictionless_and_attempted_carry_eci_and_cavv_to_the_host,
    threeds_rejected_sends_no_authorization_and_the_host_wants_3ds,
};

/// Luhn-valid test cards of the simulator.
const APPROVE: &str = "4000000000000002";
const INSUFFICIENT_FUNDS: &str = "4000000000000051";
const ISSUER_UNAVAILABLE: &str = "4000000000020091";
const SLOW: &str = "4000000000000077";

backend_tests!(
    an_approved_card_is_captured_and_credited_once_then_refunded,
    declines_leave_the_player_uncharged,
    a_timeout_is_reversed_by_advices_repeated_until_the_host_answers,
    a_restart_never_reuses_a_stan,
    bad_card_input_is_refused_clearly,
    a_saved_card_pays_again_across_a_key_rotation,
    a_soft_decline_on_the_card_page_cascades_to_the_next_acquirer_with_the_same_card,
    a_hard_decline_on_the_card_page_goes_to_no_other_acquirer,
    a_returning_saved_card_goes_first_to_the_acquirer_that_approved_it,
    threeds_frictionless_and_attempted_carry_eci_and_cavv_to_the_host,
    threeds_challenge_passed_charges_and_failed_sends_no_authorization,
    threeds_rejected_sends_no_authorization_and_the_host_wants_3ds,
    an_authorization_is_credited_once_and_completed_by_an_advice_repeated_until_answered,
    the_settlement_file_lists_exactly_the_approved_unreversed_transactions,
);

/// Everything every test of this binary logs, at every level (one subscriber per process).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The logs hold `seen` (so they are captured) and never `pan`.
fn assert_no_pan_logged(pan: &str, seen: &str) {
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(logs.contains(seen), "the logs were not captured");
    assert!(!logs.contains(pan), "the PAN is in the logs");
}

async fn host(ignore_advices: u32) -> Iso8583HostHandle {
    host_with(ignore_advices, false).await
}

async fn host_with(ignore_advices: u32, issuer_outage: bool) -> Iso8583HostHandle {
    start(Iso8583HostConfig {
        listen: "127.0.0.1:0".into(),
        slow_delay_ms: 3_000,
        ignore_advices,
        issuer_outage,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The demo merchant's only account becomes the acquirer at `address`; jobs run often, so
/// advice repeats come quickly.
fn acquirer_only(config: &mut Config, address: &str) {
    acquirers(config, &[("acquirer", address)]);
}

/// The demo merchant's accounts become acquirers at these addresses, in this order (so, with
/// no routing rule, a deposit's route); jobs run often, so advice repeats come quickly.
fn acquirers(config: &mut Config, accounts: &[(&str, &str)]) {
    let merchant = config.providers.accounts[0].merchant.clone();
    config.providers.accounts = accounts
        .iter()
        .map(|(id, address)| acquirer_account(&merchant, id, address))
        .collect();
    config.jobs.poll_interval_ms = 20;
    config.jobs.backoff_base_ms = 20;
    config.jobs.backoff_cap_ms = 100;
}

fn acquirer_account(merchant: &str, id: &str, address: &str) -> ProviderAccountConfig {
    let settings: toml::Table = toml::from_str(&format!(
        r#"address = "{address}"
terminal_id = "KASSA001"
card_acceptor_id = "CASINO-MT-01"
timeout_ms = 400
echo_interval_ms = 1000
reconnect_min_ms = 20
reconnect_max_ms = 200"#
    ))
    .unwrap();
    ProviderAccountConfig {
        id: id.into(),
        merchant: merchant.into(),
        kind: "iso8583".into(),
        name: format!("Direct acquirer {id}"),
        credentials: Default::default(),
        settings,
        webhook_source_cidrs: Vec::new(),
    }
}

async fn rig(backend: TestBackend, ignore_advices: u32) -> Option<(TestApp, Iso8583HostHandle)> {
    logs();
    let host = host(ignore_advices).await;
    let address = host.local_addr().to_string();
    let app = common::spawn_with(backend, |c| acquirer_only(c, &address)).await?;
    app.player("p1").await;
    Some((app, host))
}

/// A browser that does not follow redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Starts a deposit; answers its id and the card page it redirects to.
async fn deposit(app: &TestApp, amount: &str) -> (String, String) {
    let started = common::start_deposit(app, amount).await;
    let id = started.body["payment_id"].as_str().unwrap().to_string();
    let page = started.body["redirect_url"].as_str().unwrap().to_string();
    assert_eq!(
        page,
        format!("{}/pay/card/{id}", app.base),
        "{}",
        started.body
    );
    (id, page)
}

/// Submits the card page's form; answers the status and where it sends the browser.
async fn submit(page: &str, number: &str) -> (StatusCode, Option<String>, String) {
    post_form(
        page,
        &[("number", number), ("expiry", "12/30"), ("cvc", "123")],
    )
    .await
}

/// Posts a form; answers the status, where it sends the browser and the page.
async fn post_form(url: &str, form: &[(&str, &str)]) -> (StatusCode, Option<String>, String) {
    let answer = browser().post(url).form(form).send().await.unwrap();
    let status = answer.status();
    let location = answer
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    (status, location, answer.text().await.unwrap())
}

async fn payment(app: &TestApp, id: &str) -> Value {
    let answer = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

/// Pays `amount` with `card` through the card page; answers the payment afterwards.
async fn pay(app: &TestApp, amount: &str, card: &str) -> Value {
    let (id, page) = deposit(app, amount).await;
    let (status, location, body) = submit(&page, card).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, Some(format!("/cashier/return?payment_id={id}")));
    payment(app, &id).await
}

/// Every STAN the host has read, and whether they are all different.
fn stans_unique(host: &Iso8583HostHandle) -> (usize, bool) {
    let mut stans: Vec<String> = host.received().into_iter().map(|(_, stan)| stan).collect();
    let count = stans.len();
    stans.sort();
    stans.dedup();
    (count, stans.len() == count)
}

async fn an_approved_card_is_captured_and_credited_once_then_refunded(backend: TestBackend) {
    let Some((app, host)) = rig(backend, 0).await else {
        return;
    };
    let (id, page) = deposit(&app, "25.00").await;
    let shown = browser().get(&page).send().await.unwrap();
    assert_eq!(shown.status(), StatusCode::OK);
    assert_eq!(shown.headers()["cache-control"], "no-store");
    assert!(shown
        .text()
        .await
        .unwrap()
        .contains("Pay 25.00 EUR by card"));
    let (status, _, _) = submit(&page, APPROVE).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let paid = payment(&app, &id).await;
    assert_eq!(paid["status"], "captured", "{paid}");
    assert_eq!(app.balance("p1").await.0, "25.00");
    // A second submission (another tab) charges nothing.
    let (again, _, body) = submit(&page, APPROVE).await;
    assert_eq!(again, StatusCode::CONFLICT, "{body}");
    let purchases = host
        .received()
        .iter()
        .filter(|(mti, _)| mti == "0200")
        .count();
    assert_eq!(purchases, 1);
    assert_eq!(app.balance("p1").await.0, "25.00");
    // The purchase's reversal advice was called off by the transaction that credited the
    // player, not before it: nothing is left to reverse the charge.
    assert_eq!(advices_in(&app, "cancelled").await, 1);
    assert_eq!(advices_in(&app, "queued").await, 0);

    let refund = refund_ten(&app, &id).await;
    assert_eq!(refund.body["status"], "succeeded", "{}", refund.body);
    // The refund's reversal advice, left queued by the connector, was called off by the
    // transaction that recorded the refund; none was ever sent.
    assert_eq!(advices_in(&app, "cancelled").await, 2);
    assert_eq!(advices_in(&app, "queued").await, 0);
    assert!(host
        .received()
        .iter()
        .all(|(mti, _)| !mti.starts_with("04")));
    assert_eq!(app.balance("p1").await, ("15.00".into(), "0.00".into()));
    assert_eq!(payment(&app, &id).await["status"], "partially_refunded");
    app.assert_ledger_verifies().await;
    assert_no_pan_stored(&app, APPROVE, &id).await;
    assert_no_pan_logged(APPROVE, "card submitted on the card page");
    app.stop().await;
}

async fn declines_leave_the_player_uncharged(backend: TestBackend) {
    let Some((app, _host)) = rig(backend, 0).await else {
        return;
    };
    let refused = pay(&app, "30.00", INSUFFICIENT_FUNDS).await;
    assert_eq!(refused["status"], "declined", "{refused}");
    assert_eq!(refused["failure_reason"], "insufficient_funds");
    let technical = pay(&app, "30.00", ISSUER_UNAVAILABLE).await;
    assert_eq!(technical["status"], "declined", "{technical}");
    assert_eq!(technical["failure_reason"], "issuer_unavailable");
    assert_eq!(app.balance("p1").await.0, "0.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_timeout_is_reversed_by_advices_repeated_until_the_host_answers(backend: TestBackend) {
    // The host leaves the first two advices unanswered.
    let Some((app, host)) = rig(backend, 2).await else {
        return;
    };
    let timed_out = pay(&app, "40.00", SLOW).await;
    assert_eq!(timed_out["status"], "failed", "{timed_out}");
    assert_eq!(timed_out["failure_reason"], "provider_timeout");
    let advices = wait_for_answered_advice(&app, &host).await;
    assert_eq!(advices, ["0420", "0421", "0421"]);
    // The late approval changed nothing: never charged, never credited.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(app.balance("p1").await.0, "0.00");
    let again = payment(&app, timed_out["payment_id"].as_str().unwrap()).await;
    assert_eq!(again["status"], "failed");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

/// Refunds 10.00 of payment `id`; answers the refund once created.
async fn refund_ten(app: &TestApp, id: &str) -> common::Answer {
    let refund = app
        .send(
            Method::POST,
            &format!("/v1/payments/{id}/refunds"),
            Some(&app.api_key),
            Some(&json!({"amount": "10.00"})),
            &[("Idempotency-Key", &format!("refund-{id}"))],
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.body);
    refund
}

/// How many reversal advice jobs are in `state`.
async fn advices_in(app: &TestApp, state: &str) -> usize {
    let jobs = app
        .send(
            Method::GET,
            &format!("/v1/admin/jobs?kind=acquirer.reversal_advice&state={state}"),
            Some(&app.admin_key),
            None,
            &[],
        )
        .await;
    assert_eq!(jobs.status, StatusCode::OK, "{}", jobs.body);
    jobs.body["data"].as_array().map_or(0, Vec::len)
}

/// Waits until the reversal advice job succeeded; answers the advice MTIs the host read.
async fn wait_for_answered_advice(app: &TestApp, host: &Iso8583HostHandle) -> Vec<String> {
    let mtis = wait_for_succeeded_job(app, "acquirer.reversal_advice", host).await;
    mtis.into_iter()
        .filter(|mti| mti.starts_with("04"))
        .collect()
}

/// Waits until a job of `kind` succeeded (it holds no PAN); answers the MTIs of the financial
/// requests and advices the host read.
async fn wait_for_succeeded_job(
    app: &TestApp,
    kind: &str,
    host: &Iso8583HostHandle,
) -> Vec<String> {
    for _ in 0..300 {
        let jobs = app
            .send(
                Method::GET,
                &format!("/v1/admin/jobs?kind={kind}&state=succeeded"),
                Some(&app.admin_key),
                None,
                &[],
            )
            .await;
        assert_eq!(jobs.status, StatusCode::OK, "{}", jobs.body);
        if jobs.body["data"].as_array().is_some_and(|d| !d.is_empty()) {
            let job = &jobs.body["data"][0];
            for pan in [SLOW, APPROVE] {
                assert!(!job.to_string().contains(pan), "no PAN in a job: {job}");
            }
            return host
                .received()
                .into_iter()
                .map(|(mti, _)| mti)
                .filter(|mti| mti != "0800")
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {kind} job succeeded: {:?}", host.received());
}

async fn an_authorization_is_credited_once_and_completed_by_an_advice_repeated_until_answered(
    backend: TestBackend,
) {
    logs();
    // The host leaves the first two completion advices unanswered.
    let host = start(Iso8583HostConfig {
        listen: "127.0.0.1:0".into(),
        ignore_completions: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let address = host.local_addr().to_string();
    let Some(app) = common::spawn_with(backend, |c| {
        acquirer_only(c, &address);
        c.providers.accounts[0]
            .settings
            .insert("capture".into(), "authorize_then_complete".into());
    })
    .await
    else {
        return;
    };
    app.player("p1").await;
    let paid = pay(&app, "45.00", APPROVE).await;
    assert_eq!(paid["status"], "captured", "{paid}");
    assert_eq!(app.balance("p1").await.0, "45.00");
    let completions = wait_for_succeeded_job(&app, "acquirer.completion_advice", &host).await;
    assert_eq!(completions, ["0100", "0220", "0221", "0221"]);
    // Credited once, on the approved authorization; the completions moved no money again.
    assert_eq!(app.balance("p1").await.0, "45.00");
    assert_eq!(
        advices_in(&app, "queued").await,
        0,
        "the 0100's reversal was called off"
    );
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn the_settlement_file_lists_exactly_the_approved_unreversed_transactions(
    backend: TestBackend,
) {
    logs();
    let host = start(Iso8583HostConfig {
        listen: "127.0.0.1:0".into(),
        slow_delay_ms: 3_000,
        settlement_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let address = host.local_addr().to_string();
    let Some(app) = common::spawn_with(backend, |c| acquirer_only(c, &address)).await else {
        return;
    };
    app.player("p1").await;
    let approved = pay(&app, "25.00", APPROVE).await;
    assert_eq!(approved["status"], "captured");
    assert_eq!(
        pay(&app, "30.00", INSUFFICIENT_FUNDS).await["status"],
        "declined"
    );
    // Approved by the host after Kassa gave up, then reversed by the advice.
    assert_eq!(pay(&app, "40.00", SLOW).await["status"], "failed");
    wait_for_answered_advice(&app, &host).await;
    let id = approved["payment_id"].as_str().unwrap();
    refund_ten(&app, id).await;

    let today = time::OffsetDateTime::now_utc().date();
    let date = format!(
        "{:04}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    let url = format!("{}/settlement/{date}", host.settlement_url().unwrap());
    let answer = reqwest::get(&url).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["content-type"], "text/csv; charset=utf-8");
    let file = answer.text().await.unwrap();
    let lines: Vec<Vec<&str>> = file
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // The approved purchase and its refund; not the decline, not the reversed purchase.
    let shape: Vec<(&str, &str, &str, &str, &str)> = lines
        .iter()
        .map(|l| (l[1], l[5], l[6], l[8], l[9]))
        .collect();
    assert_eq!(
        shape,
        [
            ("0200", "400000******0002", "2500", "000000", "00"),
            ("0200", "400000******0002", "1000", "200000", "00"),
        ],
        "{file}"
    );
    let reference = approved["provider_reference"].as_str().unwrap_or_default();
    let purchase = &lines[0];
    assert_eq!(
        (purchase[0], purchase[2], purchase[7]),
        (date.as_str(), "KASSA001", "978")
    );
    assert!(
        reference.contains(purchase[3]) && reference.contains(purchase[4]),
        "{reference} {file}"
    );
    assert_eq!(purchase[10].len(), 6, "an authorization id");
    assert!(!file.contains(APPROVE) && !file.contains(SLOW));
    let bad = reqwest::get(format!(
        "{}/settlement/20261206",
        host.settlement_url().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

async fn a_restart_never_reuses_a_stan(backend: TestBackend) {
    let Some((app, host)) = rig(backend, 0).await else {
        return;
    };
    assert_eq!(pay(&app, "5.00", APPROVE).await["status"], "captured");
    let address = host.local_addr().to_string();
    let app = app.restart(|c| acquirer_only(c, &address)).await;
    assert_eq!(pay(&app, "6.00", APPROVE).await["status"], "captured");
    let (count, unique) = stans_unique(&host);
    assert!(
        count >= 4,
        "sign-on, 0200, sign-off, sign-on, 0200: {:?}",
        host.received()
    );
    assert!(unique, "{:?}", host.received());
    assert_eq!(app.balance("p1").await.0, "11.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn bad_card_input_is_refused_clearly(backend: TestBackend) {
    let Some((app, host)) = rig(backend, 0).await else {
        return;
    };
    let (id, page) = deposit(&app, "7.00").await;
    let (status, _, body) = submit(&page, "4000000000000003").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("The card number is not valid."), "{body}");
    assert!(
        !body.contains("4000000000000003"),
        "the page never echoes a number"
    );
    let expired = [("number", APPROVE), ("expiry", "01/20"), ("cvc", "123")];
    let answer = browser().post(&page).form(&expired).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing reached the host; the payment still waits for a card.
    assert!(host.received().iter().all(|(mti, _)| mti == "0800"));
    assert_eq!(payment(&app, &id).await["status"], "pending");
    let unknown = browser()
        .get(format!("{}/pay/card/pay_doesnotexist", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let headers = unknown.headers().clone();
    let body: Value = unknown.json().await.unwrap();
    common::assert_error_body(&body, &headers);
    app.stop().await;
}

/// Greps the whole database for the card number: on SQLite the file (and its WAL), on
/// PostgreSQL every row of every table as text. `stored` is a value the database does hold,
/// so the grep is shown to see the data it searches.
async fn assert_no_pan_stored(app: &TestApp, pan: &str, stored: &str) {
    let found = |needle: &str, haystacks: &[Vec<u8>]| {
        haystacks
            .iter()
            .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    if let Some(path) = app.database_url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap();
        let files: Vec<Vec<u8>> = [path.to_string(), format!("{path}-wal")]
            .iter()
            .filter_map(|file| std::fs::read(file).ok())
            .collect();
        assert!(found(stored, &files), "the grep does not see {stored}");
        assert!(!found(pan, &files), "the PAN is in the SQLite files");
        return;
    }
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let count_of = |table: &str, needle: &str| {
        let sql = format!("SELECT count(*) FROM \"{table}\" t WHERE t::text LIKE $1");
        let pool = pool.clone();
        let like = format!("%{needle}%");
        async move {
            let count: i64 = sqlx::query_scalar(&sql)
                .bind(like)
                .fetch_one(&pool)
                .await
                .unwrap();
            count
        }
    };
    let mut seen = 0;
    for table in &tables {
        seen += count_of(table, stored).await;
        assert_eq!(count_of(table, pan).await, 0, "the PAN is in table {table}");
    }
    assert!(seen > 0, "the grep does not see {stored}");
    pool.close().await;
}

mod vault {
    use super::*;

    pub(super) const KEY_1: &str = "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE="; // 32 × '1'
    const KEY_2: &str = "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjI="; // 32 × '2'

    fn keys(config: &mut Config, keys: &[(&str, &str)], active: &str) {
        config.vault.master_keys = keys
            .iter()
            .map(|(id, key)| (id.to_string(), (*key).into()))
            .collect();
        config.vault.active_key = active.into();
    }

    /// Pays `amount` with a typed card the player asks to save; answers the payment.
    pub(super) async fn pay_and_save(app: &TestApp, amount: &str) -> Value {
        let (id, page) = deposit(app, amount).await;
        let form = [
            ("number", APPROVE),
            ("expiry", "12/30"),
            ("cvc", "123"),
            ("save", "on"),
        ];
        let answer = browser().post(&page).form(&form).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        payment(app, &id).await
    }

    /// The token of the saved card the page offers.
    pub(super) async fn saved_token(page: &str) -> String {
        let html = browser()
            .get(page)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("•••• 0002 (12/30)"), "{html}");
        assert!(!html.contains(APPROVE));
        let at = html
            .find(r#"name="saved" value=""#)
            .expect("a saved card button")
            + 20;
        html[at..].split('"').next().unwrap().to_string()
    }

    async fn pay_saved(app: &TestApp, token: &str) -> Value {
        let (id, page) = deposit(app, "3.00").await;
        let answer = browser()
            .post(&page)
            .form(&[("saved", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        payment(app, &id).await
    }

    /// Pays 4.00 out to the saved card (an OCT `0200`) and waits for it to be paid.
    async fn pay_out_to(app: &TestApp, host: &Iso8583HostHandle, token: &str) {
        let kyc = json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT", "kyc_status": "verified"});
        assert!(app.put("/v1/players/p1", kyc).await.status.is_success());
        let body = json!({"amount": "4.00", "currency": "EUR", "method": "card", "player_id": "p1",
                          "destination": token});
        let requested = app
            .send(
                Method::POST,
                "/v1/payouts/init",
                Some(&app.api_key),
                Some(&body),
                &[("Idempotency-Key", "po-1")],
            )
            .await;
        assert!(requested.status.is_success(), "{}", requested.body);
        let id = requested.body["payout_id"].as_str().unwrap().to_string();
        let before = host.received().len();
        let cancelled_before = advices_in(app, "cancelled").await;
        // A deposit with no play since is held for review: a reviewer approves it.
        assert_eq!(requested.body["status"], "in_review", "{}", requested.body);
        let approved = app
            .send(
                Method::POST,
                &format!("/v1/admin/payouts/{id}/approve"),
                Some(&app.admin_key),
                Some(&json!({"reason": "card payout test"})),
                &[],
            )
            .await;
        assert!(approved.status.is_success(), "{}", approved.body);
        for _ in 0..300 {
            let view = app.get(&format!("/v1/payouts/{id}")).await.body;
            if view["status"] == "paid" {
                // Financial messages only: the session's echo (0800, every second) may fall
                // in between on a slow machine.
                let sent: Vec<_> = host.received()[before..]
                    .iter()
                    .map(|(mti, _)| mti.clone())
                    .filter(|mti| !mti.starts_with("08"))
                    .collect();
                assert_eq!(sent, ["0200"], "the OCT, and no reversal of it");
                // Its reversal advice was called off by the transaction that recorded it paid.
                assert_eq!(advices_in(app, "cancelled").await, cancelled_before + 1);
                assert_eq!(advices_in(app, "queued").await, 0);
                return;
            }
            assert_ne!(view["status"], "failed", "{view}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let view = app.get(&format!("/v1/payouts/{id}")).await.body;
        panic!("the payout to the saved card was never paid: {view}");
    }

    pub(super) async fn a_saved_card_pays_again_across_a_key_rotation(backend: TestBackend) {
        logs();
        let host = super::host(0).await;
        let address = host.local_addr().to_string();
        let adjust = |c: &mut Config| {
            acquirer_only(c, &address);
            keys(c, &[("k1", KEY_1)], "k1");
        };
        let Some(app) = common::spawn_with(backend, adjust).await else {
            return;
        };
        app.player("p1").await;
        let first = pay_and_save(&app, "10.00").await;
        assert_eq!(first["status"], "captured");

        let (_, page) = deposit(&app, "1.00").await;
        let token = saved_token(&page).await;
        assert!(token.starts_with("card_"), "{token}");
        assert_eq!(pay_saved(&app, &token).await["status"], "captured");
        // Another player's token (or a made-up one) pays nothing.
        let forged = browser()
            .post(&page)
            .form(&[("saved", "card_forged")])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_no_pan_stored(&app, APPROVE, &token).await;
        pay_out_to(&app, &host, &token).await;

        // Rotation: k2 seals new cards, k1 still opens the old one.
        let app = app
            .restart(|c| {
                acquirer_only(c, &address);
                keys(c, &[("k1", KEY_1), ("k2", KEY_2)], "k2");
            })
            .await;
        assert_eq!(pay_saved(&app, &token).await["status"], "captured");
        let store = kassa_store::Store::connect(&app.database_url)
            .await
            .unwrap();
        let both = std::collections::BTreeMap::from([
            ("k1".to_string(), KEY_1.into()),
            ("k2".to_string(), KEY_2.into()),
        ]);
        let vault = kassa_server::service::vault::Vault::new(store, &both, "k2").unwrap();
        assert_eq!(vault.rewrap().await.unwrap(), 1);
        assert_eq!(vault.rewrap().await.unwrap(), 0, "nothing left under k1");
        // k1 gone: the re-wrapped card still opens.
        let app = app
            .restart(|c| {
                acquirer_only(c, &address);
                keys(c, &[("k2", KEY_2)], "k2");
            })
            .await;
        assert_eq!(pay_saved(&app, &token).await["status"], "captured");
        assert_eq!(
            app.balance("p1").await.0,
            "15.00",
            "19.00 paid in, 4.00 out"
        );
        app.assert_ledger_verifies().await;
        assert_no_pan_stored(&app, APPROVE, &token).await;
        app.stop().await;
    }
}

use vault::a_saved_card_pays_again_across_a_key_rotation;

/// Two acquirers for one merchant, routed in this order: `acq_a`, whose host has lost its
/// issuers (`91` to everything) when `a_down`, then `acq_b`.
async fn two_acquirers(
    backend: TestBackend,
    a_down: bool,
    adjust: impl FnOnce(&mut Config),
) -> Option<(TestApp, Iso8583HostHandle, Iso8583HostHandle)> {
    logs();
    let (host_a, host_b) = (host_with(0, a_down).await, host(0).await);
    let (a, b) = (
        host_a.local_addr().to_string(),
        host_b.local_addr().to_string(),
    );
    let app = common::spawn_with(backend, |c| {
        acquirers(c, &[("acq_a", &a), ("acq_b", &b)]);
        adjust(c);
    })
    .await?;
    app.player("p1").await;
    Some((app, host_a, host_b))
}

fn purchases(host: &Iso8583HostHandle) -> usize {
    host.received()
        .iter()
        .filter(|(mti, _)| mti == "0200")
        .count()
}

/// The card page's attempts of a payment: (account, outcome, cascaded).
fn card_attempts(payment: &Value) -> Vec<(String, String, bool)> {
    payment["routing"]["card_page"]["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no card page attempts: {payment}"))
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap().to_string(),
                a["outcome"].as_str().unwrap().to_string(),
                a["cascaded"].as_bool().unwrap(),
            )
        })
        .collect()
}

async fn a_soft_decline_on_the_card_page_cascades_to_the_next_acquirer_with_the_same_card(
    backend: TestBackend,
) {
    let Some((app, host_a, host_b)) = two_acquirers(backend, true, |_| {}).await else {
        return;
    };
    let paid = pay(&app, "12.00", APPROVE).await;
    assert_eq!(paid["status"], "captured", "{paid}");
    assert_eq!(paid["provider"], "acq_b", "{paid}");
    assert_eq!(
        card_attempts(&paid),
        [
            ("acq_a".to_string(), "declined".to_string(), true),
            ("acq_b".to_string(), "started".to_string(), false),
        ]
    );
    assert_eq!(
        paid["routing"]["card_page"]["attempts"][0]["reason"],
        "issuer_unavailable"
    );
    // One purchase at each acquirer, the player credited once, nothing left to reverse.
    assert_eq!((purchases(&host_a), purchases(&host_b)), (1, 1));
    assert_eq!(app.balance("p1").await.0, "12.00");
    assert_eq!(advices_in(&app, "queued").await, 0);
    assert_eq!(advices_in(&app, "cancelled").await, 2);
    // The refund goes to the acquirer that took the money.
    let refund = app
        .send(
            Method::POST,
            &format!(
                "/v1/payments/{}/refunds",
                paid["payment_id"].as_str().unwrap()
            ),
            Some(&app.api_key),
            Some(&json!({"amount": "2.00"})),
            &[("Idempotency-Key", "refund-cascaded")],
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.body);
    assert_eq!(refund.body["status"], "succeeded", "{}", refund.body);
    assert_eq!(purchases(&host_a), 1, "nothing more went to acq_a");
    assert!(host_b.received().len() >= 2, "the refund went to acq_b");
    assert_eq!(app.balance("p1").await.0, "10.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_hard_decline_on_the_card_page_goes_to_no_other_acquirer(backend: TestBackend) {
    let Some((app, host_a, host_b)) = two_acquirers(backend, false, |_| {}).await else {
        return;
    };
    let refused = pay(&app, "12.00", INSUFFICIENT_FUNDS).await;
    assert_eq!(refused["status"], "declined", "{refused}");
    assert_eq!(refused["provider"], "acq_a");
    assert_eq!(
        card_attempts(&refused),
        [("acq_a".to_string(), "declined".to_string(), false)]
    );
    assert_eq!((purchases(&host_a), purchases(&host_b)), (1, 0));
    assert_eq!(app.balance("p1").await.0, "0.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}

async fn a_returning_saved_card_goes_first_to_the_acquirer_that_approved_it(backend: TestBackend) {
    let with_vault = |c: &mut Config| {
        c.vault.master_keys = [("k1".to_string(), vault::KEY_1.into())]
            .into_iter()
            .collect();
        c.vault.active_key = "k1".into();
    };
    let Some((app, host_a, host_b)) = two_acquirers(backend, true, with_vault).await else {
        return;
    };
    // First deposit: acq_a's issuers are down, acq_b approves; the card is saved.
    let first = vault::pay_and_save(&app, "10.00").await;
    assert_eq!(
        (first["status"].as_str(), first["provider"].as_str()),
        (Some("captured"), Some("acq_b"))
    );
    assert_eq!((purchases(&host_a), purchases(&host_b)), (1, 1));

    // The returning card is routed to acq_a first like any deposit, but goes straight to
    // acq_b, which approved it: acq_a hears nothing.
    let (id, page) = deposit(&app, "3.00").await;
    let token = vault::saved_token(&page).await;
    let answer = browser()
        .post(&page)
        .form(&[("saved", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let again = payment(&app, &id).await;
    assert_eq!(again["status"], "captured", "{again}");
    assert_eq!(again["provider"], "acq_b");
    assert_eq!(
        again["routing"]["card_page"]["preferred_for_returning_card"],
        "acq_b"
    );
    assert_eq!(
        card_attempts(&again),
        [("acq_b".to_string(), "started".to_string(), false)]
    );
    assert_eq!((purchases(&host_a), purchases(&host_b)), (1, 2));
    assert_eq!(app.balance("p1").await.0, "13.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}
