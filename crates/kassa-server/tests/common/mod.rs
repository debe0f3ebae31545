//! Test harness: a real Kassa server on 127.0.0.1:0 over a fresh database, and a client.

#![allow(dead_code)]

pub mod logs;
pub mod risk_rules;

use futures::future::BoxFuture;
use kassa_connectors::ExposeSecret;
use kassa_server::config::{Config, ProviderAccountConfig};
use kassa_server::providers::{EmbeddedLaunch, EmbeddedProvider, EmbeddedProviders};
use kassa_server::Server;
use kassa_store::testing::{fresh_database_url, TestBackend};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The sandbox PSP (or, for `adyen` accounts, the Adyen simulator) for accounts without a
/// `base_url`, as `kassa serve` starts it: the server links no simulator, its tests bring one.
pub struct Simulators;

impl EmbeddedProviders for Simulators {
    fn start(&self, launch: EmbeddedLaunch) -> BoxFuture<'_, anyhow::Result<EmbeddedProvider>> {
        if launch.account.kind == kassa_connectors::stripe::KIND {
            return Box::pin(start_stripe(launch));
        }
        if launch.account.kind == kassa_connectors::idv_sandbox::KIND {
            return Box::pin(start_idv(launch));
        }
        if let Some(shape) = kassa_sim::register::RegisterShape::of_kind(&launch.account.kind) {
            return Box::pin(start_register(launch, shape));
        }
        Box::pin(async move {
            let secret = |name: &str| -> anyhow::Result<String> {
                Ok(launch.account.credential(name)?.expose_secret().to_string())
            };
            let simulator = &launch.simulator;
            if launch.account.kind == kassa_connectors::adyen::KIND {
                let handle = kassa_sim::adyen::start(kassa_sim::adyen::AdyenSimConfig {
                    listen: "127.0.0.1:0".into(),
                    api_key: Some(secret("api_key")?),
                    hmac_key_hex: secret("hmac_key")?,
                    webhook_url: Some(launch.webhook_url.clone()),
                    notification_delay_ms: simulator.webhook_delay_ms,
                    notification_retry_backoff_ms: 50,
                    slow_answer_ms: 1_500,
                    ..Default::default()
                })
                .await?;
                let base_url = handle.base_url().to_string();
                return Ok(EmbeddedProvider::new(
                    base_url,
                    Box::new(move || Box::pin(handle.stop())),
                ));
            }
            let handle = kassa_sim::psp::start(kassa_sim::psp::SandboxPspConfig {
                listen: "127.0.0.1:0".into(),
                api_secret: secret("api_secret")?,
                webhook_secret: secret("webhook_secret")?,
                webhook_url: Some(launch.webhook_url.clone()),
                webhook_delay_ms: simulator.webhook_delay_ms,
                slow_approval_delay_ms: simulator.slow_approval_delay_ms,
                duplicate_webhooks: simulator.duplicate_webhooks,
                out_of_order_webhooks: simulator.out_of_order_webhooks,
                autopilot: simulator.autopilot,
                behaviour: kassa_sim::psp::Behaviour::from_account_settings(
                    &launch.account.settings,
                )
                .map_err(anyhow::Error::msg)?,
                ..Default::default()
            })
            .await?;
            let base_url = handle.base_url().to_string();
            Ok(EmbeddedProvider::new(
                base_url,
                Box::new(move || Box::pin(handle.stop())),
            ))
        })
    }
}

/// The Stripe simulator for a `stripe` account, as `kassa serve` starts it; its time-out
/// card answers a second after the account's call timeout.
async fn start_stripe(launch: EmbeddedLaunch) -> anyhow::Result<EmbeddedProvider> {
    let account = &launch.account;
    let secret = |name: &str| -> anyhow::Result<String> {
        Ok(account.credential(name)?.expose_secret().to_string())
    };
    let handle = kassa_sim::stripe::start(kassa_sim::stripe::StripeSimConfig {
        listen: "127.0.0.1:0".into(),
        secret_key: Some(secret("secret_key")?),
        webhook_secret: secret("webhook_secret")?,
        webhook_url: Some(launch.webhook_url.clone()),
        webhook_delay_ms: launch.simulator.webhook_delay_ms,
        webhook_retry_backoff_ms: 50,
        slow_answer_ms: account.setting_u64("timeout_ms", 30_000)? + 1_000,
        ..Default::default()
    })
    .await?;
    let base_url = handle.base_url().to_string();
    Ok(EmbeddedProvider::new(
        base_url,
        Box::new(move || Box::pin(handle.stop())),
    ))
}

/// The sandbox ID provider for an `idv_sandbox` account, as `kassa serve` starts it, its
/// webhook retries at test speed.
async fn start_idv(launch: EmbeddedLaunch) -> anyhow::Result<EmbeddedProvider> {
    let account = &launch.account;
    let secret = |name: &str| -> anyhow::Result<String> {
        Ok(account.credential(name)?.expose_secret().to_string())
    };
    let handle = kassa_sim::idv::start(kassa_sim::idv::IdvSimConfig {
        listen: "127.0.0.1:0".into(),
        api_secret: secret("api_secret")?,
        webhook_secret: secret("webhook_secret")?,
        webhook_url: Some(launch.webhook_url.clone()),
        webhook_delay_ms: launch.simulator.webhook_delay_ms,
        webhook_retry_backoff_ms: 50,
        ..Default::default()
    })
    .await?;
    let base_url = handle.base_url().to_string();
    Ok(EmbeddedProvider::new(
        base_url,
        Box::new(move || Box::pin(handle.stop())),
    ))
}

/// The register sandbox for a `gamstop` or `spelpaus` account, as `kassa serve` starts it.
async fn start_register(
    launch: EmbeddedLaunch,
    shape: kassa_sim::register::RegisterShape,
) -> anyhow::Result<EmbeddedProvider> {
    let api_key = launch
        .account
        .credential("api_key")?
        .expose_secret()
        .to_string();
    let handle = kassa_sim::register::start(kassa_sim::register::RegisterSimConfig {
        listen: "127.0.0.1:0".into(),
        shape,
        api_key,
    })
    .await?;
    let base_url = handle.base_url().to_string();
    Ok(EmbeddedProvider::new(
        base_url,
        Box::new(move || Box::pin(handle.stop())),
    ))
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub api_key: String,
    pub admin_key: String,
    pub database_url: String,
    pub client: reqwest::Client,
    server: Option<Server>,
}

/// An answer: status, headers and JSON body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `error` code of an error body, after checking the body's shape.
    pub fn error_code(&self) -> &str {
        assert_error_body(&self.body, &self.headers);
        self.body["error"].as_str().unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Every error body has exactly these fields, and its trace id is the response's.
pub fn assert_error_body(body: &Value, headers: &reqwest::header::HeaderMap) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["details", "error", "message", "trace_id"],
        "error body {body}"
    );
    assert!(body["details"].is_object());
    assert!(!body["message"].as_str().unwrap().is_empty());
    let trace_id = body["trace_id"].as_str().unwrap();
    assert!(!trace_id.is_empty());
    assert_eq!(
        headers.get("x-trace-id").and_then(|v| v.to_str().ok()),
        Some(trace_id)
    );
}

/// Background work at test speed: jobs looked for every 20 ms, the outbox published every
/// 50 ms, payouts sent within 100 ms and paid by the sandbox 20 ms later.
pub fn fast_background(config: &mut Config) {
    config.sandbox.webhook_delay_ms = 20;
    config.payouts.retry_interval_ms = 100;
    config.payouts.retry_backoff_ms = 100;
    config.jobs.poll_interval_ms = 20;
    config.jobs.outbox_interval_ms = 50;
}

/// The test configuration of a server on `database_url`: any free port, no rate limit, the
/// test key-hash secret, and the SQLite switches the CI sets through the environment.
fn test_config(database_url: &str) -> Config {
    let mut config = Config::defaults();
    // The CI runs the suite again with the SQLite tuning off.
    if let Some(tuning) = kassa_store::sqlite_tuning_from_env() {
        config.storage.sqlite_tuning = tuning;
    }
    if let Some(group_commit) = kassa_store::sqlite_group_commit_from_env() {
        config.storage.sqlite_group_commit = group_commit;
    }
    config.listen = "127.0.0.1:0".into();
    config.database_url = database_url.to_string();
    config.rate_limit.requests_per_second = 0;
    config.auth.key_hash_secret = TEST_KEY_HASH_SECRET.into();
    // Monitoring at once, so that a test reads its alerts without waiting (ADR 87).
    config.aml.monitor_coalesce_ms = 0;
    config
}

pub async fn spawn(backend: TestBackend) -> Option<TestApp> {
    spawn_with(backend, |_| {}).await
}

pub async fn spawn_with(backend: TestBackend, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let database_url = fresh_database_url(backend).await?;
    let mut config = test_config(&database_url);
    adjust(&mut config);
    let server = Server::start_with(config, Some(&Simulators))
        .await
        .expect("server starts");
    let keys = server
        .bootstrap
        .clone()
        .expect("a fresh database bootstraps the demo merchant");
    Some(TestApp {
        base: format!("http://{}", server.local_addr),
        api_key: keys.api_key,
        admin_key: keys.admin_key,
        database_url,
        client: reqwest::Client::new(),
        server: Some(server),
    })
}

impl TestApp {
    /// The `/metrics` URL, when the server was started with `[metrics] listen`.
    pub fn metrics_url(&self) -> Option<String> {
        let addr = self.server.as_ref()?.metrics_addr?;
        Some(format!("http://{addr}/metrics"))
    }

    /// What `/metrics` shows now (the server was started with `[metrics] listen`).
    pub async fn metrics_text(&self) -> String {
        let url = self.metrics_url().expect("[metrics] listen is set");
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{status} answered non-JSON: {text}"))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Sends `method` `path` with the admin key.
    pub async fn as_admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.send(method, path, Some(&self.admin_key), body.as_ref(), &[])
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, Some(&self.api_key), None, &[])
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(&self.api_key), Some(&body), &[])
            .await
    }

    /// A POST with a fresh `Idempotency-Key`.
    pub async fn post_idempotent(&self, path: &str, body: Value) -> Answer {
        let key = kassa_core::ids::generate("idem");
        let headers = [("Idempotency-Key", key.as_str())];
        self.send(
            Method::POST,
            path,
            Some(&self.api_key),
            Some(&body),
            &headers,
        )
        .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PUT, path, Some(&self.api_key), Some(&body), &[])
            .await
    }

    /// Creates a EUR player in Malta.
    pub async fn player(&self, player_id: &str) {
        let answer = self
            .put(
                &format!("/v1/players/{player_id}"),
                json!({"currency": "EUR", "country": "MT"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }

    pub async fn credit(&self, txn_id: &str, player_id: &str, amount: &str) -> Answer {
        self.post(
            "/v1/wallet/credit",
            json!({"txn_id": txn_id, "player_id": player_id, "amount": amount, "currency": "EUR"}),
        )
        .await
    }

    pub async fn debit(&self, txn_id: &str, player_id: &str, amount: &str) -> Answer {
        self.post("/v1/wallet/debit", json!({"txn_id": txn_id, "player_id": player_id, "amount": amount, "currency": "EUR", "round_id": "round-1"})).await
    }

    pub async fn rollback(&self, txn_id: &str, original: &str) -> Answer {
        self.post(
            "/v1/wallet/rollback",
            json!({"txn_id": txn_id, "original_txn_id": original}),
        )
        .await
    }

    /// (available, held)
    pub async fn balance(&self, player_id: &str) -> (String, String) {
        let answer = self.get(&format!("/v1/players/{player_id}/balance")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        (
            answer.body["available"].as_str().unwrap().to_string(),
            answer.body["held"].as_str().unwrap().to_string(),
        )
    }

    /// Asserts the ledger verifies through the admin API.
    pub async fn assert_ledger_verifies(&self) {
        let answer = self
            .send(
                Method::GET,
                "/v1/admin/ledger/verify",
                Some(&self.admin_key),
                None,
                &[],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.body["ok"],
            json!(true),
            "ledger report {}",
            answer.body
        );
    }

    /// Stops this server and starts a new one on the same database (a restart), keeping the
    /// keys; `adjust` changes the new server's config.
    pub async fn restart(mut self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("clean stop");
        }
        let mut config = test_config(&self.database_url);
        adjust(&mut config);
        let server = Server::start_with(config, Some(&Simulators))
            .await
            .expect("server restarts");
        assert!(
            server.bootstrap.is_none(),
            "a restart creates no new demo merchant"
        );
        self.base = format!("http://{}", server.local_addr);
        self.server = Some(server);
        self
    }

    /// The server's database handle.
    pub fn store(&self) -> kassa_store::Store {
        self.server
            .as_ref()
            .expect("a running server")
            .store
            .clone()
    }

    /// A second Kassa node on this one's database (several nodes on one PostgreSQL), with
    /// the same keys; it runs its own embedded simulators.
    pub async fn another_node(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = test_config(&self.database_url);
        adjust(&mut config);
        let server = Server::start_with(config, Some(&Simulators))
            .await
            .expect("a second node starts");
        TestApp {
            base: format!("http://{}", server.local_addr),
            api_key: self.api_key.clone(),
            admin_key: self.admin_key.clone(),
            database_url: self.database_url.clone(),
            client: reqwest::Client::new(),
            server: Some(server),
        }
    }

    /// The base URL of the embedded simulator standing in for `account`.
    pub fn simulator_url(&self, account: &str) -> String {
        let server = self.server.as_ref().expect("a running server");
        server.simulator_urls[account].clone()
    }

    /// Write transactions the server's store has begun so far (see
    /// `Store::write_transactions`).
    pub fn write_transactions(&self) -> u64 {
        self.server
            .as_ref()
            .map_or(0, |server| server.store.write_transactions())
    }

    /// Durable commits the SQLite group commit has made so far (ADR 39; 0 when it is off
    /// and on PostgreSQL).
    pub fn group_commits(&self) -> u64 {
        self.server
            .as_ref()
            .map_or(0, |server| server.store.group_commits())
    }

    /// The faults this server's provider-event pipeline takes from tests.
    pub fn inbound_faults(
        &self,
    ) -> std::sync::Arc<kassa_server::service::inbound_sources::InboundFaults> {
        self.server
            .as_ref()
            .expect("a running server")
            .inbound_faults
            .clone()
    }

    /// Whether the server's store groups deposit commits (ADR 39).
    pub fn sqlite_group_commit(&self) -> bool {
        self.server
            .as_ref()
            .is_some_and(|server| server.store.sqlite_group_commit())
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("clean stop");
        }
    }
}

/// The API key hash secret of every test server: PostgreSQL refuses the demo default.
pub const TEST_KEY_HASH_SECRET: &str = "test-key-hash-secret-test-key-hash-secret";

/// The sandbox's webhook secret in the default config.
pub const SANDBOX_WEBHOOK_SECRET: &str = "sandbox_webhook_secret_not_for_production";

/// Now plus `seconds`, as the RFC 3339 the seed's webhooks carry.
pub fn rfc3339_now_plus(seconds: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    at.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Milliseconds since the Unix epoch of an RFC 3339 time Kassa answered.
pub fn parse_rfc3339_ms(text: &str) -> i64 {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Sends a provider webhook to `/v1/payments/webhook`, signed with `secret`.
pub async fn deliver_signed(app: &TestApp, body: &Value, secret: &str) -> Answer {
    deliver_raw_signed(app, serde_json::to_vec(body).unwrap(), secret).await
}

/// Sends the exact bytes `raw` as a provider webhook to `/v1/payments/webhook`, signed with
/// `secret`.
pub async fn deliver_raw_signed(app: &TestApp, raw: Vec<u8>, secret: &str) -> Answer {
    let signature = kassa_connectors::sign_webhook(secret.as_bytes(), &raw);
    let response = app
        .client
        .post(format!("{}/v1/payments/webhook", app.base))
        .header("content-type", "application/json")
        .header("x-signature", signature)
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// The accounts of [`three_accounts`].
pub const ACCOUNTS: [&str; 3] = ["psp_a", "psp_b", "psp_c"];

/// Three sandbox accounts for the demo merchant, breakers that open after 3 failures for 1.5 s.
pub fn three_accounts(config: &mut Config) {
    let template = config.providers.accounts[0].clone();
    config.providers.accounts = ACCOUNTS
        .iter()
        .map(|id| {
            let mut account = template.clone();
            account.id = id.to_string();
            account.name = format!("Sandbox {id}");
            account
        })
        .collect();
    config.routing.breaker = kassa_core::routing::BreakerSettings {
        failures_to_open: 3,
        open_for_ms: 1_500,
        half_open_probes: 1,
    };
    config.sandbox.webhook_delay_ms = 10;
}

/// Stores `document` as the routing document in force (admin key); returns the new version.
pub async fn set_routing(app: &TestApp, document: Value) -> Value {
    let change = json!({ "document": document, "note": "test" });
    let answer = app
        .send(
            Method::PUT,
            "/v1/admin/routing",
            Some(&app.admin_key),
            Some(&change),
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

/// Sets how the account's sandbox misbehaves.
pub async fn behave(app: &TestApp, account: &str, behaviour: Value) {
    let url = format!("{}/sandbox/behaviour", app.simulator_url(account));
    let answer = reqwest::Client::new()
        .put(url)
        .json(&behaviour)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}

/// Starts a EUR card deposit of `amount` for player `p1`; returns the whole answer.
pub async fn start_deposit(app: &TestApp, amount: &str) -> Answer {
    let answer = try_deposit(app, amount).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer
}

/// Asks for a EUR card deposit of `amount` for player `p1`, whatever the answer.
pub async fn try_deposit(app: &TestApp, amount: &str) -> Answer {
    let body = json!({
        "amount": amount, "currency": "EUR", "method": "card", "player_id": "p1",
        "return_url": format!("{}/cashier/return", app.base), "meta": {"country": "MT"}
    });
    post_deposit(app, &body).await
}

/// Posts `body` to `/v1/payments/init` under a fresh idempotency key, whatever the answer.
pub async fn post_deposit(app: &TestApp, body: &Value) -> Answer {
    let key = kassa_core::ids::generate("idem");
    app.send(
        Method::POST,
        "/v1/payments/init",
        Some(&app.api_key),
        Some(body),
        &[("Idempotency-Key", &key)],
    )
    .await
}

/// Creates a KYC-verified EUR player in Malta holding `funds`, who may withdraw.
pub async fn verified_player(app: &TestApp, player_id: &str, funds: &str) {
    let player =
        json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT", "kyc_status": "verified"});
    let answer = app.put(&format!("/v1/players/{player_id}"), player).await;
    assert!(answer.status.is_success(), "{}", answer.body);
    app.credit(&format!("fund-{player_id}"), player_id, funds)
        .await;
}

/// Requests a EUR card payout of `amount` for `player_id`; returns its id.
pub async fn request_payout(app: &TestApp, player_id: &str, amount: &str) -> String {
    let body =
        json!({"amount": amount, "currency": "EUR", "method": "card", "player_id": player_id});
    let requested = post_payout(app, &body).await;
    assert!(requested.status.is_success(), "{}", requested.body);
    requested.body["payout_id"].as_str().unwrap().to_string()
}

/// Posts `body` to `/v1/payouts/init` under a fresh idempotency key, whatever the answer.
pub async fn post_payout(app: &TestApp, body: &Value) -> Answer {
    let key = kassa_core::ids::generate("idem");
    app.send(
        Method::POST,
        "/v1/payouts/init",
        Some(&app.api_key),
        Some(body),
        &[("Idempotency-Key", &key)],
    )
    .await
}

/// Sends a webhook signed as the sandbox signs it: the test plays the provider.
pub async fn deliver(app: &TestApp, body: &Value) -> Answer {
    deliver_signed(app, body, SANDBOX_WEBHOOK_SECRET).await
}

/// Pays on the sandbox's hosted page the way a browser would (form posts, 303 redirects),
/// answering a 3-D Secure challenge with `otp`; returns where the player lands.
pub async fn pay_with_card(redirect_url: &str, card: &str, otp: &str) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(
        browser.get(redirect_url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let form = [
        ("card_number", card),
        ("expiry", "12/34"),
        ("cvc", "123"),
        ("cardholder", "Ada Lovelace"),
    ];
    let answer = browser.post(redirect_url).form(&form).send().await.unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::SEE_OTHER,
        "the card page should redirect"
    );
    let mut location = answer.headers()["location"].to_str().unwrap().to_string();
    if location.contains("/3ds/") {
        // The Location may be relative to the card page.
        let url = reqwest::Url::parse(redirect_url)
            .unwrap()
            .join(&location)
            .unwrap();
        let page = browser
            .get(url.clone())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("id=\"otp\""),
            "a challenge page asks for the code"
        );
        let answer = browser
            .post(url)
            .form(&[("otp", otp)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        location = answer.headers()["location"].to_str().unwrap().to_string();
    }
    location
}

/// Declares each listed `async fn name(app: TestApp)` as a test on SQLite and on PostgreSQL
/// (the latter ignored unless `KASSA_TEST_POSTGRES_URL` was set at build time), each server
/// configured by the closure after `=>`.
#[macro_export]
macro_rules! contract_tests_with {
    ($($name:ident => $adjust:expr),* $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::spawn_with(kassa_store::testing::TestBackend::Sqlite, $adjust).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
                async fn $name() {
                    let app = $crate::common::spawn_with(kassa_store::testing::TestBackend::Postgres, $adjust).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
    };
}

/// Declares each listed `async fn name(backend: TestBackend)` as a test on SQLite and on
/// PostgreSQL (the latter ignored unless `KASSA_TEST_POSTGRES_URL` was set at build time),
/// for tests that start more than the server (a host simulator) before it.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(kassa_store::testing::TestBackend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
                async fn $name() {
                    super::$name(kassa_store::testing::TestBackend::Postgres).await;
                }
            )*
        }
    };
}

/// [`contract_tests_with!`] with the default test config.
#[macro_export]
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        $crate::contract_tests_with!($($name => |_: &mut kassa_server::config::Config| {}),*);
    };
}

/// A provider account of `kind` for the demo merchant, served by its embedded simulator.
fn embedded_account(
    kind: &str,
    id: &str,
    credentials: &[(&str, &str)],
    settings: toml::Table,
) -> ProviderAccountConfig {
    ProviderAccountConfig {
        id: id.into(),
        merchant: "mch_demo".into(),
        kind: kind.into(),
        name: format!("{kind} {id}"),
        credentials: credentials
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string().into()))
            .collect(),
        settings,
        webhook_source_cidrs: Vec::new(),
    }
}

/// A Stripe account whose intents are confirmed with `payment_method` (a Stripe test
/// payment method: its name decides the outcome).
pub fn stripe_account(id: &str, payment_method: &str) -> ProviderAccountConfig {
    let mut settings = toml::Table::new();
    settings.insert("payment_method".into(), payment_method.into());
    let secret_key = format!("sk_test_kassa_{id}");
    let webhook_secret = format!("whsec_kassa_{id}");
    let credentials = [
        ("secret_key", secret_key.as_str()),
        ("webhook_secret", webhook_secret.as_str()),
    ];
    embedded_account("stripe", id, &credentials, settings)
}

/// An Adyen account of merchant account `KassaECOM`, signing with `hmac_key_hex`.
pub fn adyen_account(id: &str, hmac_key_hex: &str) -> ProviderAccountConfig {
    let mut settings = toml::Table::new();
    settings.insert("merchant_account".into(), "KassaECOM".into());
    let credentials = [("api_key", "AQE_test_api_key"), ("hmac_key", hmac_key_hex)];
    embedded_account(kassa_connectors::adyen::KIND, id, &credentials, settings)
}

/// The Python with an interop peer (`package`, pinned as `.ci/run` installs it), from the
/// environment variable `var`; `None` after saying why the test is skipped. Under `CI=true`
/// its absence is a failure, never a silent pass.
pub fn interop_python(var: &str, package: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but {var} is unset; .ci/run makes that venv")
        }
        _ => {
            eprintln!("skipped: {var} is unset (a python with {package}; .ci/run makes one)");
            None
        }
    }
}

/// A self-exclusion register account of `kind` (`gamstop`, `spelpaus`) for the demo merchant,
/// served by its embedded sandbox.
pub fn register_account(kind: &str, id: &str) -> ProviderAccountConfig {
    let mut settings = toml::Table::new();
    if kind == kassa_connectors::spelpaus::KIND {
        settings.insert("actor_id".into(), "20".into());
    }
    embedded_account(kind, id, &[("api_key", "register_test_api_key")], settings)
}
