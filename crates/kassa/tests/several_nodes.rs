//! Several nodes, one killed (issue 18, item 9 and its "done when"): two `kassa serve`
//! processes (the real binary) share one PostgreSQL database and one sandbox PSP. Payouts
//! make outbox events; the PSP's webhooks reach both nodes at once (a forwarder sends each to
//! every live node, so both race to apply it); outbound webhooks go to a slow local receiver.
//! Mid-delivery one node gets SIGKILL. Then:
//! - every outbox event reached the receiver at least once;
//! - no event was ever being delivered by two requests at the same time (the receiver logs
//!   concurrent arrivals of one `webhook-id`);
//! - no inbound event was applied twice: `kassa ledger verify` is clean and every balance is
//!   what the paid payouts leave;
//! - with NATS at 127.0.0.1:4222, every event is in the JetStream stream exactly once.
//!
//! Asserts correctness, never speed.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::{assert_ledger_verifies, available_minor, money, start_node, Node};
use kassa_server::workers::event_stream::testing::{
    count_by_message_id, delete_stream, nats_url_or_skip, stream_messages, unique_stream,
};
use kassa_store::testing::{fresh_database_url, TestBackend};
use serde_json::{json, Value};

const API_KEY: &str = "sk_test_several_nodes_0123456789abcdef";
const KEY_HASH_SECRET: &str = "several-nodes-key-hash-secret-several";
const API_SECRET: &str = "several_nodes_api_secret";
const WEBHOOK_SECRET: &str = "several_nodes_webhook_secret";
const PLAYERS: usize = 4;
const PAYOUTS_PER_PLAYER: usize = 10;
const PAYOUT_MINOR: i64 = 1_000;
const FUNDS_MINOR: i64 = 100_000;
/// The receiver holds every delivery this long, so the kill finds some in flight.
const RECEIVER_DELAY: Duration = Duration::from_millis(150);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The nodes' configuration: short leases so a killed node's jobs move on quickly, fast
/// job polling, private URLs allowed (everything is on 127.0.0.1), one sandbox account on
/// the shared PSP, and the event stream when NATS is there.
fn config_file(psp_url: &str, stream: Option<(&str, &str, &str)>) -> ConfigFile {
    let stream = match stream {
        Some((url, name, prefix)) => format!(
            "[events_stream]\nnats_url = \"{url}\"\nstream_name = \"{name}\"\n\
             subject_prefix = \"{prefix}\"\ninterval_ms = 100\nbatch_max = 50\n"
        ),
        None => String::new(),
    };
    let text = format!(
        r#"
[jobs]
poll_interval_ms = 50
lease_ms = 1500
outbox_interval_ms = 100
backoff_base_ms = 100
backoff_cap_ms = 500

[payouts]
retry_interval_ms = 200

[webhooks]
allow_private_urls = true

[webhooks.outbound]
timeout_ms = 1000
retry_schedule_ms = [200, 200, 200, 200, 200, 200, 200, 200]

{stream}

[[providers.accounts]]
id = "sandbox"
merchant = "mch_demo"
kind = "sandbox"
name = "Shared sandbox PSP"
webhook_source_cidrs = []

[providers.accounts.credentials]
api_secret = "{API_SECRET}"
webhook_secret = "{WEBHOOK_SECRET}"

[providers.accounts.settings]
base_url = "{psp_url}"
timeout_ms = 5000
attempts_max = 2
retry_backoff_ms = 100
"#
    );
    ConfigFile::write(&text)
}

/// The nodes' config file, removed when dropped.
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn write(text: &str) -> ConfigFile {
        let name = format!("{}.toml", kassa_core::ids::generate("kassa_nodes"));
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, text).expect("config file written");
        ConfigFile(path)
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn start(database_url: &str, config: &std::path::Path, client: &reqwest::Client) -> Node {
    start_node(database_url, API_KEY, KEY_HASH_SECRET, client, |command| {
        command
            .arg("--config")
            .arg(config)
            .env_remove("KASSA_EVENTS_NATS_URL");
    })
    .await
}

/// The operator's backend: holds each delivery [`RECEIVER_DELAY`], answers 200, and logs
/// every arrival by `webhook-id` and every time one arrived while another request for the
/// same id was still being answered.
#[derive(Clone, Default)]
struct Receiver {
    arrivals: Arc<Mutex<HashMap<String, usize>>>,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
    overlaps: Arc<Mutex<Vec<String>>>,
}

/// Counts a request out of `in_flight` however it ends (answered, or dropped when its
/// sender's connection died).
struct InFlightGuard {
    receiver: Receiver,
    event_id: String,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut in_flight = self.receiver.in_flight.lock().unwrap();
        if let Some(count) = in_flight.get_mut(&self.event_id) {
            *count -= 1;
        }
    }
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap| {
                let state = state.clone();
                async move { state.answer(headers).await }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    async fn answer(&self, headers: HeaderMap) -> axum::response::Response {
        let event_id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let _guard = {
            let mut in_flight = self.in_flight.lock().unwrap();
            let count = in_flight.entry(event_id.clone()).or_insert(0);
            if *count > 0 {
                self.overlaps.lock().unwrap().push(event_id.clone());
            }
            *count += 1;
            InFlightGuard {
                receiver: self.clone(),
                event_id: event_id.clone(),
            }
        };
        tokio::time::sleep(RECEIVER_DELAY).await;
        *self.arrivals.lock().unwrap().entry(event_id).or_insert(0) += 1;
        (StatusCode::OK, "{}").into_response()
    }

    /// Requests being answered now, over all events.
    fn in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().values().sum()
    }

    fn delivered(&self) -> HashMap<String, usize> {
        self.arrivals.lock().unwrap().clone()
    }
}

/// Stands where a load balancer would: sends every provider webhook to every live node at
/// once, answering with the best answer (so both nodes race to apply each event).
#[derive(Clone)]
struct Forwarder {
    nodes: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Forwarder {
    async fn start(nodes: Vec<String>) -> (Forwarder, String) {
        let forwarder = Forwarder {
            nodes: Arc::new(Mutex::new(nodes)),
            client: reqwest::Client::new(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = forwarder.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move { state.forward(uri, headers, body).await }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (forwarder, url)
    }

    async fn forward(
        &self,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        let nodes = self.nodes.lock().unwrap().clone();
        let sends = nodes.iter().map(|base| {
            let mut request = self.client.post(format!("{base}{uri}")).body(body.clone());
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    request = request.header(name.as_str(), value.as_bytes());
                }
            }
            request.send()
        });
        let answers = futures::future::join_all(sends).await;
        let best = answers
            .iter()
            .filter_map(|a| a.as_ref().ok().map(|r| r.status().as_u16()))
            .min_by_key(|status| (!(200..300).contains(status), *status))
            .unwrap_or(503);
        StatusCode::from_u16(best)
            .unwrap_or(StatusCode::BAD_GATEWAY)
            .into_response()
    }

    fn remove(&self, base: &str) {
        self.nodes.lock().unwrap().retain(|b| b != base);
    }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> Value {
    let response = client
        .request(method, url)
        .bearer_auth(API_KEY)
        .header("Idempotency-Key", kassa_core::ids::generate("idem"))
        .json(&body)
        .send()
        .await
        .expect("the node answers");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// Every outbox event id, and how many payouts are not yet paid.
async fn outbox_and_unpaid(pool: &sqlx::AnyPool) -> (Vec<String>, i64) {
    let events: Vec<String> = sqlx::query_scalar("SELECT event_id FROM outbox ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap();
    let unpaid: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payouts WHERE status <> 'paid'")
        .fetch_one(pool)
        .await
        .unwrap();
    (events, unpaid)
}

async fn unstreamed(pool: &sqlx::AnyPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE streamed_at_ms IS NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn several_nodes_one_killed(backend: TestBackend) {
    sqlx::any::install_default_drivers();
    let Some(database_url) = fresh_database_url(backend).await else {
        eprintln!("skipped: {backend:?} is not configured");
        return;
    };
    let nats = nats_url_or_skip("several_nodes_one_killed (its stream half)").await;
    let (stream_name, prefix) = unique_stream();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let (receiver, receiver_url) = Receiver::start().await;
    let (forwarder, forwarder_url) = Forwarder::start(Vec::new()).await;
    let psp = kassa_sim::psp::start(kassa_sim::psp::SandboxPspConfig {
        listen: "127.0.0.1:0".into(),
        api_secret: API_SECRET.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        webhook_url: Some(format!("{forwarder_url}/v1/providers/sandbox/webhook")),
        webhook_delay_ms: 20,
        ..Default::default()
    })
    .await
    .expect("the sandbox PSP starts");
    let config = config_file(
        psp.base_url(),
        nats.as_deref()
            .map(|url| (url, stream_name.as_str(), prefix.as_str())),
    );

    let first = start(&database_url, &config.0, &client).await;
    let second = start(&database_url, &config.0, &client).await;
    forwarder
        .nodes
        .lock()
        .unwrap()
        .extend([first.base.clone(), second.base.clone()]);
    call(
        &client,
        reqwest::Method::POST,
        format!("{}/v1/webhook-endpoints", first.base),
        json!({"url": receiver_url, "event_types": ["*"], "description": "several nodes"}),
    )
    .await;

    for player in 0..PLAYERS {
        let base = if player % 2 == 0 {
            &first.base
        } else {
            &second.base
        };
        let body = json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT",
                          "kyc_status": "verified"});
        let url = format!("{base}/v1/players/nodes-p{player}");
        call(&client, reqwest::Method::PUT, url, body).await;
        let credit = json!({"txn_id": format!("fund-{player}"), "player_id": format!("nodes-p{player}"),
                            "amount": money(FUNDS_MINOR), "currency": "EUR"});
        call(
            &client,
            reqwest::Method::POST,
            format!("{base}/v1/wallet/credit"),
            credit,
        )
        .await;
    }
    // Payouts through both nodes; each makes approved, processing and paid events.
    for round in 0..PAYOUTS_PER_PLAYER {
        for player in 0..PLAYERS {
            let base = if (round + player) % 2 == 0 {
                &first.base
            } else {
                &second.base
            };
            let body = json!({"amount": money(PAYOUT_MINOR), "currency": "EUR", "method": "card",
                              "player_id": format!("nodes-p{player}")});
            call(
                &client,
                reqwest::Method::POST,
                format!("{base}/v1/payouts/init"),
                body,
            )
            .await;
        }
    }

    // Kill the first node while deliveries are under way.
    let expected_events = 3 * PLAYERS * PAYOUTS_PER_PLAYER;
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    // More requests in flight than one node may send to the endpoint at once
    // (concurrency_per_endpoint_max, 2): the first node is sending at least one of them.
    while receiver.delivered().len() < expected_events / 4 || receiver.in_flight() < 3 {
        assert!(Instant::now() < deadline, "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut first = first;
    first.child.kill().expect("SIGKILL the first node");
    first.child.wait().expect("reap the first node");
    forwarder.remove(&first.base);
    let delivered_at_kill = receiver.delivered().len();

    // The survivor finishes: every payout paid, every event delivered (and streamed).
    let pool = sqlx::AnyPool::connect(&database_url).await.unwrap();
    let events = loop {
        let (events, unpaid) = outbox_and_unpaid(&pool).await;
        let delivered = receiver.delivered();
        let all_delivered = events.iter().all(|e| delivered.contains_key(e));
        let all_streamed = nats.is_none() || unstreamed(&pool).await == 0;
        if unpaid == 0 && events.len() >= expected_events && all_delivered && all_streamed {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {unpaid} payouts unpaid, {} of {} events delivered",
            events.iter().filter(|e| delivered.contains_key(*e)).count(),
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        delivered_at_kill < events.len(),
        "the kill came mid-delivery ({delivered_at_kill} of {} delivered)",
        events.len()
    );
    // A delivery that died with the killed node was taken over: its message's first
    // logged attempt is not attempt 1 (the dead attempt was counted but never logged).
    let taken_over: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT endpoint_id, event_id, MIN(attempt) AS first_attempt \
         FROM webhook_attempts GROUP BY endpoint_id, event_id) firsts WHERE first_attempt > 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        taken_over >= 1,
        "a delivery in flight at the kill was taken over by the other node"
    );
    let overlaps = receiver.overlaps.lock().unwrap().clone();
    assert!(
        overlaps.is_empty(),
        "events delivered by two requests at once: {overlaps:?}"
    );

    // No inbound event applied twice: the ledger verifies and each player lost exactly the
    // paid payouts.
    assert_ledger_verifies(&database_url, "after the kill");
    // Both nodes were handed each provider event (the forwarder sends to both): the log
    // holds more deliveries than there are events, yet each event took effect once.
    let (deliveries, distinct): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM webhook_deliveries WHERE provider = 'sandbox'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        distinct > 0 && deliveries > distinct,
        "provider events reached both nodes ({deliveries} deliveries of {distinct} events)"
    );
    for player in 0..PLAYERS {
        let player_id = format!("nodes-p{player}");
        let available = available_minor(&client, &second.base, API_KEY, &player_id).await;
        let expected = FUNDS_MINOR - PAYOUT_MINOR * PAYOUTS_PER_PLAYER as i64;
        assert_eq!(available, expected, "player {player}");
    }

    if let Some(url) = &nats {
        let messages = stream_messages(url, &stream_name).await.unwrap();
        let counts = count_by_message_id(&messages);
        assert!(
            counts.values().all(|&n| n == 1),
            "an event is in the stream more than once: {counts:?}"
        );
        assert_eq!(
            counts.keys().cloned().collect::<BTreeSet<_>>(),
            events.iter().cloned().collect::<BTreeSet<_>>(),
            "the stream holds every event"
        );
        delete_stream(url, &stream_name).await.unwrap();
    }
    let redelivered = receiver.delivered().values().filter(|&&n| n > 1).count();
    eprintln!(
        "{backend:?}: {} events, {delivered_at_kill} delivered before the kill, {taken_over} \
         taken over from the killed node, {redelivered} delivered more than once (at least \
         once), none concurrently",
        events.len()
    );
    pool.close().await;
    drop(second);
    psp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_two_nodes_one_killed_lose_no_event_and_apply_none_twice() {
    several_nodes_one_killed(TestBackend::Postgres).await;
}
