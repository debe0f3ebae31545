//! Test harness: a real Kassa server on 127.0.0.1:0 over a fresh database, and a client.

#![allow(dead_code)]

use kassa_server::config::Config;
use kassa_server::Server;
use kassa_store::testing::{fresh_database_url, TestBackend};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

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

pub async fn spawn(backend: TestBackend) -> Option<TestApp> {
    spawn_with(backend, |_| {}).await
}

pub async fn spawn_with(backend: TestBackend, adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let database_url = fresh_database_url(backend).await?;
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.database_url = database_url.clone();
    config.rate_limit.requests_per_second = 0;
    adjust(&mut config);
    let server = Server::start(config).await.expect("server starts");
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

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, Some(&self.api_key), None, &[])
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(&self.api_key), Some(&body), &[])
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
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".into();
        config.database_url = self.database_url.clone();
        config.rate_limit.requests_per_second = 0;
        adjust(&mut config);
        let server = Server::start(config).await.expect("server restarts");
        assert!(
            server.bootstrap.is_none(),
            "a restart creates no new demo merchant"
        );
        self.base = format!("http://{}", server.local_addr);
        self.server = Some(server);
        self
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("clean stop");
        }
    }
}

/// Declares each listed `async fn name(app: TestApp)` as a test on SQLite and on PostgreSQL
/// (the latter runs when `KASSA_TEST_POSTGRES_URL` is set).
#[macro_export]
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::spawn(kassa_store::testing::TestBackend::Sqlite).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(app) = $crate::common::spawn(kassa_store::testing::TestBackend::Postgres).await else {
                        eprintln!("KASSA_TEST_POSTGRES_URL is not set; skipping the PostgreSQL half");
                        return;
                    };
                    super::$name(app).await;
                }
            )*
        }
    };
}
