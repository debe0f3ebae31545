//! A PostgreSQL that is briefly unreachable: the server sits behind a TCP proxy this test
//! controls; cutting it (existing connections closed, new ones dropped at once) must give
//! 503 database_unavailable with Retry-After and a failing /readyz, and restoring it must
//! bring everything back without a restart — the real PostgreSQL server is never touched.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kassa_store::testing::TestBackend;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards 127.0.0.1:<port> to `upstream` until cut.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (is_cut, all_links) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if is_cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                all_links.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Proxy { port, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// `postgres://user@host:port/db` → (`host:port`, the URL through 127.0.0.1:`port`).
fn through_proxy(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (credentials, rest) = rest.rsplit_once('@').map_or(("", rest), |(c, r)| (c, r));
    let (authority, path) = rest.split_once('/').unwrap();
    let at = if credentials.is_empty() { "" } else { "@" };
    (
        authority.to_string(),
        format!("{scheme}://{credentials}{at}127.0.0.1:{port}/{path}"),
    )
}

/// A server on a fresh PostgreSQL database reached through a proxy the test can cut.
async fn app_behind_proxy(
    adjust: impl FnOnce(&mut kassa_server::config::Config),
) -> (common::TestApp, Proxy) {
    let upstream = kassa_store::testing::postgres_server_url().expect("a PostgreSQL server");
    let (authority, _) = through_proxy(&upstream, 0);
    let proxy = Proxy::start(authority).await;
    let port = proxy.port;
    let app = common::spawn_with(TestBackend::Postgres, |config| {
        config.database_url = through_proxy(&config.database_url, port).1;
        adjust(config);
    })
    .await
    .unwrap();
    (app, proxy)
}

/// Waits until `/readyz` answers 200 again.
async fn wait_ready(app: &common::TestApp) {
    let started = Instant::now();
    while app
        .send(Method::GET, "/readyz", None, None, &[])
        .await
        .status
        != StatusCode::OK
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "readyz never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The one dead letter that cannot be kept (ADR 45): with the database away, a webhook is
/// answered 503 and nothing can be logged; the provider's retry is the copy that counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn a_webhook_while_the_database_is_away_is_answered_503_and_its_retry_applies_once() {
    let (app, proxy) = app_behind_proxy(|config| config.sandbox.autopilot = false).await;
    app.player("p1").await;
    let payment = common::start_deposit(&app, "50.00").await;
    let payment_id = payment.body["payment_id"].as_str().unwrap();
    let event = json!({"event_id": "evt_away", "payment_id": payment_id, "status": "captured",
        "amount": "50.00", "currency": "EUR", "timestamp": common::rfc3339_now_plus(0)});
    proxy.cut();
    let answer = common::deliver(&app, &event).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert!(
        ["database_unavailable", "webhook_timeout"].contains(&answer.error_code()),
        "{}",
        answer.body
    );
    proxy.restore();
    wait_ready(&app).await;
    let mut retried = common::deliver(&app, &event).await;
    let started = Instant::now();
    while retried.status == StatusCode::SERVICE_UNAVAILABLE
        && started.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        retried = common::deliver(&app, &event).await;
    }
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert_eq!(app.balance("p1").await.0, "50.00");
    let logged = app
        .send(
            Method::GET,
            "/v1/admin/webhooks/inbound?event_id=evt_away&outcome=processed",
            Some(&app.admin_key),
            None,
            &[],
        )
        .await;
    assert_eq!(logged.body["data"].as_array().map(Vec::len), Some(1));
    app.assert_ledger_verifies().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn a_briefly_unreachable_database_answers_503_then_recovers() {
    let (app, proxy) = app_behind_proxy(|_| {}).await;
    app.player("p1").await;
    assert_eq!(
        app.credit("w1", "p1", "100.00").await.status,
        StatusCode::OK
    );

    proxy.cut();
    for answer in [
        app.debit("b1", "p1", "10.00").await,
        app.get("/v1/players/p1/balance").await,
        app.get("/v1/players/p1/transactions").await,
    ] {
        assert_eq!(
            (answer.status, answer.error_code()),
            (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            "{}",
            answer.body
        );
        assert_eq!(answer.header("retry-after"), Some("1"));
    }
    let ready = app.send(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.error_code(), "database_unavailable");

    proxy.restore();
    wait_ready(&app).await;
    let started = Instant::now();
    let mut debit = app.debit("b1", "p1", "10.00").await;
    // The wallet writer's own connection may need one more attempt to reconnect.
    while debit.status == StatusCode::SERVICE_UNAVAILABLE
        && started.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        debit = app.debit("b1", "p1", "10.00").await;
    }
    assert_eq!(debit.status, StatusCode::OK, "{}", debit.body);
    assert_eq!(app.balance("p1").await.0, "90.00");
    app.assert_ledger_verifies().await;
    app.stop().await;
}
