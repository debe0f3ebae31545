//! Provider accounts as the server wires them: per merchant, embedded simulators only through
//! the hook, and an account pointing at a sandbox running elsewhere.

mod common;

use common::TestApp;
use kassa_server::config::Config;
use kassa_server::Server;
use kassa_store::testing::{fresh_database_url, TestBackend};
use reqwest::StatusCode;
use serde_json::json;

contract_tests_with!(
    a_merchant_is_never_routed_to_another_merchants_account => |c: &mut Config| {
        c.providers.accounts[0].merchant = "mch_someone_else".into();
    },
);

async fn a_merchant_is_never_routed_to_another_merchants_account(app: TestApp) {
    app.player("p1").await;
    let body = json!({"amount": "10.00", "currency": "EUR", "method": "card", "player_id": "p1",
                      "return_url": "http://shop/r", "meta": {"country": "MT"}});
    let answer = app
        .send(
            reqwest::Method::POST,
            "/v1/payments/init",
            Some(&app.api_key),
            Some(&body),
            &[("Idempotency-Key", "route-1")],
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    assert_eq!(answer.error_code(), "no_provider");
    app.stop().await;
}

async fn fresh_config() -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.database_url = fresh_database_url(TestBackend::Sqlite).await.unwrap();
    config.rate_limit.requests_per_second = 0;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_hook_an_account_with_no_base_url_is_a_start_error() {
    let Err(error) = Server::start(fresh_config().await).await else {
        panic!("the server started an embedded sandbox it does not link")
    };
    let text = format!("{error:#}");
    assert!(
        text.contains("\"sandbox\"") && text.contains("base_url"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_a_base_url_uses_that_sandbox() {
    let mut config = fresh_config().await;
    let sim = kassa_sim::psp::start(kassa_sim::psp::SandboxPspConfig {
        listen: "127.0.0.1:0".into(),
        api_secret: "sandbox_api_secret_not_for_production".into(),
        webhook_secret: common::SANDBOX_WEBHOOK_SECRET.into(),
        autopilot: false,
        ..Default::default()
    })
    .await
    .unwrap();
    config.providers.accounts[0]
        .settings
        .insert("base_url".into(), sim.base_url().into());
    // The default ID provider account needs an embedded simulator too.
    config.kyc.accounts.clear();
    // No hook: nothing embedded may start, and nothing needs to.
    let server = Server::start(config)
        .await
        .expect("starts without a simulator hook");
    assert!(server.sandbox_url.is_none());
    let keys = server.bootstrap.clone().unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.local_addr);
    let call = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&keys.api_key)
            .header("Idempotency-Key", "external-1")
            .json(&body)
            .send()
    };
    let player = client
        .put(format!("{base}/v1/players/p1"))
        .bearer_auth(&keys.api_key)
        .json(&json!({"currency": "EUR", "country": "MT"}))
        .send()
        .await
        .unwrap();
    assert_eq!(player.status(), StatusCode::CREATED);
    let init = call(
        "/v1/payments/init",
        json!({"amount": "10.00", "currency": "EUR", "method": "card", "player_id": "p1",
               "return_url": "http://shop/r", "meta": {"country": "MT"}}),
    )
    .await
    .unwrap();
    assert_eq!(init.status(), StatusCode::CREATED);
    let body: serde_json::Value = init.json().await.unwrap();
    assert_eq!(body["provider"], "sandbox");
    let redirect = body["redirect_url"].as_str().unwrap();
    assert!(redirect.starts_with(sim.base_url()), "{redirect}");
    server.stop().await.unwrap();
    sim.stop().await;
}
