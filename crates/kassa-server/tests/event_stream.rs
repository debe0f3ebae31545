//! The event stream (issue 18, item 8; ADR 51) against the NATS server at 127.0.0.1:4222,
//! on SQLite and PostgreSQL: every outbox event is in the JetStream stream once, on
//! `<prefix>.<merchant>.<type>` with its event id as `Nats-Msg-Id`; publishing a batch again
//! (acknowledgements lost before they were recorded) adds nothing; and a NATS outage holds
//! back the stream only, never the webhook publisher. A test that finds no NATS server says
//! it was skipped (and fails under CI=true).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::{request_payout, verified_player, TestApp};
use kassa_server::config::Config;
use kassa_server::workers::event_stream::testing::{
    count_by_message_id, delete_stream, nats_url_or_skip, stream_messages, unique_stream,
};

/// Fast jobs and publishing, small batches; the sandbox pays payouts at once.
fn fast(config: &mut Config) {
    common::fast_background(config);
    config.jobs.backoff_base_ms = 50;
    config.jobs.backoff_cap_ms = 200;
    config.events_stream.interval_ms = 50;
    config.events_stream.batch_max = 4;
}

/// Events for the outbox: payouts the sandbox pays (approved, processing, paid each).
async fn make_events(app: &TestApp, payouts: usize) {
    verified_player(app, "stream-p1", "500.00").await;
    for _ in 0..payouts {
        request_payout(app, "stream-p1", "10.00").await;
    }
}

/// Waits until `condition` holds over the outbox, 15 s at most.
async fn until_outbox(
    app: &TestApp,
    what: &str,
    condition: impl Fn(&[(String, bool, bool)]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = outbox_rows(app).await;
        if condition(&rows) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every outbox row: (event id, published to webhooks, streamed).
async fn outbox_rows(app: &TestApp) -> Vec<(String, bool, bool)> {
    let pool = sqlx::AnyPool::connect(&app.database_url).await.unwrap();
    let rows: Vec<(String, Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT event_id, published_at_ms, streamed_at_ms FROM outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|(id, published, streamed)| (id, published.is_some(), streamed.is_some()))
        .collect()
}

async fn mark_all_unstreamed(app: &TestApp) {
    let pool = sqlx::AnyPool::connect(&app.database_url).await.unwrap();
    sqlx::query("UPDATE outbox SET streamed_at_ms = NULL")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

const PAYOUTS: usize = 4;

async fn every_event_is_in_the_stream_once(backend: kassa_store::testing::TestBackend) {
    sqlx::any::install_default_drivers();
    let Some(url) = nats_url_or_skip("every_event_is_in_the_stream_once").await else {
        return;
    };
    let (stream, prefix) = unique_stream();
    let app = common::spawn_with(backend, |c| {
        fast(c);
        c.events_stream.nats_url = url.clone();
        c.events_stream.stream_name = stream.clone();
        c.events_stream.subject_prefix = prefix.clone();
    })
    .await
    .unwrap();
    make_events(&app, PAYOUTS).await;
    until_outbox(&app, "3 events per payout, all streamed", |rows| {
        rows.len() >= 3 * PAYOUTS && rows.iter().all(|r| r.2)
    })
    .await;
    let outbox: Vec<String> = outbox_rows(&app).await.into_iter().map(|r| r.0).collect();
    let messages = stream_messages(&url, &stream).await.unwrap();
    let counts = count_by_message_id(&messages);
    assert_eq!(messages.len(), outbox.len(), "{messages:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert_eq!(
        counts.keys().cloned().collect::<BTreeSet<_>>(),
        outbox.iter().cloned().collect::<BTreeSet<_>>(),
        "the stream holds exactly the outbox's events"
    );
    for message in &messages {
        let event_type = message.body["type"].as_str().unwrap();
        assert_eq!(message.body["id"], message.message_id.as_str());
        assert_eq!(
            message.subject,
            format!("{prefix}.mch_demo.{event_type}"),
            "{message:?}"
        );
    }
    // Each object's events are in the order they were written (its `sequence` grows). Across
    // objects the stream follows commit visibility, which on PostgreSQL need not be the
    // outbox id order (an id taken by a transaction that commits later).
    let mut last_sequence: HashMap<String, i64> = HashMap::new();
    for message in &messages {
        let key = message.body["ordering_key"].as_str().unwrap().to_string();
        let sequence = message.body["sequence"].as_i64().unwrap();
        let previous = last_sequence.insert(key, sequence).unwrap_or(0);
        assert!(
            previous < sequence,
            "per object, oldest first: {messages:?}"
        );
    }

    // The acknowledgements are lost (a crash before they were recorded): every event is
    // published again, and JetStream keeps one of each.
    mark_all_unstreamed(&app).await;
    until_outbox(&app, "streamed again", |rows| rows.iter().all(|r| r.2)).await;
    let again = stream_messages(&url, &stream).await.unwrap();
    assert_eq!(
        again.len(),
        outbox.len(),
        "republished events are dropped as duplicates"
    );

    // The stream is deleted under the running node: the next failed batch makes the node
    // ensure it again, and the new events go into the new stream.
    delete_stream(&url, &stream).await.unwrap();
    request_payout(&app, "stream-p1", "10.00").await;
    until_outbox(&app, "streamed into a new stream", |rows| {
        rows.len() >= outbox.len() + 3 && rows.iter().all(|r| r.2)
    })
    .await;
    let renewed = stream_messages(&url, &stream).await.unwrap();
    assert!(
        renewed.len() >= 3 && renewed.iter().all(|m| !outbox.contains(&m.message_id)),
        "the new stream holds the new events: {renewed:?}"
    );
    app.stop().await;
    delete_stream(&url, &stream).await.unwrap();
}

async fn a_nats_outage_holds_back_only_the_stream(backend: kassa_store::testing::TestBackend) {
    sqlx::any::install_default_drivers();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = common::spawn_with(backend, |c| {
        fast(c);
        c.events_stream.nats_url = format!("nats://127.0.0.1:{closed_port}");
    })
    .await
    .unwrap();
    make_events(&app, 2).await;
    until_outbox(&app, "webhooks published despite the outage", |rows| {
        rows.len() >= 6 && rows.iter().all(|r| r.1)
    })
    .await;
    let rows = outbox_rows(&app).await;
    assert!(rows.iter().all(|r| !r.2), "nothing streamed: {rows:?}");
    let pool = sqlx::AnyPool::connect(&app.database_url).await.unwrap();
    let errors: Vec<Option<String>> =
        sqlx::query_scalar("SELECT last_error FROM jobs WHERE kind = 'events.stream'")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert!(
        errors
            .iter()
            .flatten()
            .any(|e| e.contains("cannot connect to NATS")),
        "the stream's job says why: {errors:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_event_is_in_the_stream_once() {
    every_event_is_in_the_stream_once(kassa_store::testing::TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_every_event_is_in_the_stream_once() {
    every_event_is_in_the_stream_once(kassa_store::testing::TestBackend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_nats_outage_holds_back_only_the_stream() {
    a_nats_outage_holds_back_only_the_stream(kassa_store::testing::TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn postgres_a_nats_outage_holds_back_only_the_stream() {
    a_nats_outage_holds_back_only_the_stream(kassa_store::testing::TestBackend::Postgres).await;
}
