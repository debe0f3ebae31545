//! The job queue through the server: dead jobs visible and retried through the admin API,
//! recurring jobs once across nodes, a dead node's job taken over, payouts sent by jobs, and
//! the outbox's consumer — on SQLite and PostgreSQL alike.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestApp;
use futures::future::BoxFuture;
use kassa_server::config::Config;
use kassa_server::workers::kinds;
use kassa_server::workers::outbox::{publish_pending, OutboxPublisher, PublishError};
use kassa_store::jobs::NewJob;
use kassa_store::payments::OutboxEvent;
use kassa_store::testing::{fresh_database_url, TestBackend};
use kassa_store::{now_ms, Conn, Store};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn fast(config: &mut Config) {
    config.jobs.poll_interval_ms = 20;
    config.jobs.backoff_base_ms = 10;
    config.jobs.backoff_cap_ms = 40;
    config.jobs.attempts_max = 3;
    config.jobs.lease_ms = 300;
    config.jobs.outbox_interval_ms = 50;
    config.sandbox.webhook_delay_ms = 20;
    config.payouts.retry_interval_ms = 50;
    config.payouts.retry_backoff_ms = 50;
}

contract_tests_with!(
    a_dead_job_is_visible_and_retried_through_the_admin_api => fast,
    the_admin_api_pages_filters_and_refuses_like_the_rest => fast,
    recurring_jobs_exist_once_across_restarts_and_nodes => fast,
    a_dead_nodes_job_is_taken_over_when_its_lease_runs_out => fast,
    a_deferred_payout_is_sent_by_a_job_and_its_events_are_published => fast,
);

async fn admin(app: &TestApp, method: Method, path: &str) -> common::Answer {
    app.send(method, path, Some(&app.admin_key), None, &[])
        .await
}

/// Polls the admin API until `wanted` holds for the job, or fails after 10 s.
async fn until_job(app: &TestApp, job_id: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = admin(app, Method::GET, &format!("/v1/admin/jobs/{job_id}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        if wanted(&answer.body) {
            return answer.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never got there: {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn store_of(app: &TestApp) -> Store {
    Store::connect(&app.database_url).await.unwrap()
}

/// A send job for a payout that does not exist: every run fails with `payout_not_found`.
fn doomed_send(run_at_ms: i64, attempts_max: i64) -> NewJob<'static> {
    NewJob {
        kind: kinds::PAYOUT_SEND,
        payload: r#"{"payout_id":"po_missing"}"#,
        dedupe_key: Some("po_missing"),
        run_at_ms,
        attempts_max,
        repeat_every_ms: None,
    }
}

async fn a_dead_job_is_visible_and_retried_through_the_admin_api(app: TestApp) {
    let store = store_of(&app).await;
    let id = store
        .enqueue_job(&doomed_send(0, 2))
        .await
        .unwrap()
        .unwrap();
    let dead = until_job(&app, &id, |job| job["state"] == "dead").await;
    assert_eq!(dead["attempts"], 2, "dead after its last attempt: {dead}");
    assert_eq!(dead["kind"], "payout.send");
    assert_eq!(dead["payload"], json!({"payout_id": "po_missing"}));
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("payout_not_found"),
        "{dead}"
    );
    assert_eq!(dead["lease_owner"], Value::Null);
    let listed = admin(&app, Method::GET, "/v1/admin/jobs?state=dead").await;
    assert_eq!(listed.status, StatusCode::OK);
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);

    let retried = admin(&app, Method::POST, &format!("/v1/admin/jobs/{id}/retry")).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert_eq!(retried.body["state"], "queued");
    assert_eq!(retried.body["attempts"], 0);
    // It runs again (and, the payout still missing, dies again after two more attempts).
    let again = until_job(&app, &id, |job| job["state"] == "dead").await;
    assert_eq!(again["attempts"], 2);
    // As instants: RFC 3339 texts with fractions of different lengths do not sort as text.
    let instant = |job: &Value| {
        let text = job["updated_at"].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert!(instant(&again) >= instant(&dead), "{again} {dead}");

    // Only a dead job can be retried.
    let sync = admin(
        &app,
        Method::GET,
        "/v1/admin/jobs?kind=payments.status_sync",
    )
    .await;
    let sync_id = sync.body["data"][0]["job_id"].as_str().unwrap().to_string();
    let refused = admin(
        &app,
        Method::POST,
        &format!("/v1/admin/jobs/{sync_id}/retry"),
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.error_code(), "job_not_dead");
    // Nor one whose work is queued again under a newer job.
    store
        .enqueue_job(&doomed_send(now_ms() + 3_600_000, 2))
        .await
        .unwrap()
        .unwrap();
    let duplicate = admin(&app, Method::POST, &format!("/v1/admin/jobs/{id}/retry")).await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    assert_eq!(duplicate.error_code(), "job_duplicate");
    app.stop().await;
}

async fn the_admin_api_pages_filters_and_refuses_like_the_rest(app: TestApp) {
    let store = store_of(&app).await;
    let later = now_ms() + 3_600_000;
    for n in 0..5 {
        let key = format!("po_{n}");
        let job = NewJob {
            dedupe_key: Some(&key),
            ..doomed_send(later, 3)
        };
        store.enqueue_job(&job).await.unwrap().unwrap();
    }
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/admin/jobs?kind=payout.send&state=queued&limit=2".to_string();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = admin(&app, Method::GET, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let data = page.body["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        for job in data {
            assert_eq!(job["kind"], "payout.send");
            assert!(seen.insert(job["job_id"].as_str().unwrap().to_string()));
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);

    let missing = admin(&app, Method::GET, "/v1/admin/jobs/job_missing").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "job_not_found");
    let missing = admin(&app, Method::POST, "/v1/admin/jobs/job_missing/retry").await;
    assert_eq!(missing.error_code(), "job_not_found");
    let bad_state = admin(&app, Method::GET, "/v1/admin/jobs?state=sleeping").await;
    assert_eq!(bad_state.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_state.error_code(), "validation_failed");
    assert_eq!(bad_state.body["details"]["field"], "state");
    let bad_limit = admin(&app, Method::GET, "/v1/admin/jobs?limit=0").await;
    assert_eq!(bad_limit.error_code(), "validation_failed");
    let bad_cursor = admin(&app, Method::GET, "/v1/admin/jobs?cursor=nope").await;
    assert_eq!(bad_cursor.error_code(), "validation_failed");
    // A merchant's key is not an admin key; no key is no caller.
    let merchant = app.get("/v1/admin/jobs").await;
    assert_eq!(merchant.status, StatusCode::FORBIDDEN, "{}", merchant.body);
    merchant.error_code();
    let anonymous = app
        .send(Method::GET, "/v1/admin/jobs", None, None, &[])
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // The OpenAPI document describes the three routes.
    let doc = app
        .send(Method::GET, "/v1/openapi.json", None, None, &[])
        .await;
    let paths = &doc.body["paths"];
    assert!(paths["/v1/admin/jobs"]["get"].is_object());
    assert!(paths["/v1/admin/jobs/{job_id}"]["get"].is_object());
    assert!(paths["/v1/admin/jobs/{job_id}/retry"]["post"]["responses"]["409"].is_object());
    app.stop().await;
}

async fn recurring_count(app: &TestApp, kind: &str) -> usize {
    let answer = admin(app, Method::GET, &format!("/v1/admin/jobs?kind={kind}")).await;
    answer.body["data"].as_array().unwrap().len()
}

async fn recurring_jobs_exist_once_across_restarts_and_nodes(app: TestApp) {
    // The runtime creates them just after the server starts.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for kind in [
        kinds::STATUS_SYNC,
        kinds::PAYOUT_SCHEDULER,
        kinds::OUTBOX_PUBLISH,
    ] {
        while recurring_count(&app, kind).await == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind} never created"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(recurring_count(&app, kind).await, 1, "{kind}");
    }
    // They run: a recurring job comes back queued after each success.
    let listed = admin(&app, Method::GET, "/v1/admin/jobs?kind=outbox.publish").await;
    let id = listed.body["data"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let first = listed.body["data"][0]["updated_at"].clone();
    until_job(&app, &id, |job| {
        job["updated_at"] != first && job["repeat_every_ms"] == 50
    })
    .await;
    let postgres = app.database_url.starts_with("postgres");
    let app = app.restart(fast).await;
    // A second node on the same PostgreSQL database (SQLite takes one process per file).
    let second = if postgres {
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".into();
        config.database_url = app.database_url.clone();
        config.auth.key_hash_secret = common::TEST_KEY_HASH_SECRET.into();
        fast(&mut config);
        Some(
            kassa_server::Server::start_with(config, Some(&common::Simulators))
                .await
                .unwrap(),
        )
    } else {
        None
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for kind in [
        kinds::STATUS_SYNC,
        kinds::PAYOUT_SCHEDULER,
        kinds::OUTBOX_PUBLISH,
    ] {
        assert_eq!(recurring_count(&app, kind).await, 1, "{kind}");
    }
    if let Some(second) = second {
        second.stop().await.unwrap();
    }
    app.stop().await;
}

async fn a_dead_nodes_job_is_taken_over_when_its_lease_runs_out(app: TestApp) {
    let store = store_of(&app).await;
    let later = now_ms() + 3_600_000;
    let id = store
        .enqueue_job(&doomed_send(later, 3))
        .await
        .unwrap()
        .unwrap();
    // A node claims it (its clock says it is due) and dies without a word.
    let claimed = store
        .claim_jobs("node_dead", &[kinds::PAYOUT_SEND], later, now_ms() + 400, 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let held = admin(&app, Method::GET, &format!("/v1/admin/jobs/{id}")).await;
    assert_eq!(held.body["state"], "running");
    assert_eq!(held.body["lease_owner"], "node_dead");
    // The server takes it over once the lease ran out, and runs it itself.
    let taken = until_job(&app, &id, |job| job["last_error"].is_string()).await;
    assert!(taken["attempts"].as_i64().unwrap() >= 2, "{taken}");
    assert_ne!(taken["lease_owner"], "node_dead");
    app.stop().await;
}

async fn pause(app: &TestApp, enabled: bool) -> common::Answer {
    let body = json!({"enabled": enabled});
    app.send(
        Method::PUT,
        "/v1/admin/switches/payouts_paused",
        Some(&app.admin_key),
        Some(&body),
        &[],
    )
    .await
}

async fn a_deferred_payout_is_sent_by_a_job_and_its_events_are_published(app: TestApp) {
    let body =
        json!({"currency": "EUR", "country": "MT", "jurisdiction": "MT", "kyc_status": "verified"});
    assert!(app.put("/v1/players/p1", body).await.status.is_success());
    app.credit("fund-p1", "p1", "100.00").await;
    assert_eq!(pause(&app, true).await.status, StatusCode::OK);
    let requested = app
        .send(
            Method::POST,
            "/v1/payouts/init",
            Some(&app.api_key),
            Some(
                &json!({"player_id": "p1", "amount": "40.00", "currency": "EUR", "method": "card"}),
            ),
            &[("Idempotency-Key", "po-1")],
        )
        .await;
    assert_eq!(requested.status, StatusCode::CREATED, "{}", requested.body);
    assert_eq!(requested.body["status"], "deferred");
    let payout_id = requested.body["payout_id"].as_str().unwrap().to_string();
    assert_eq!(pause(&app, false).await.status, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let view = app.get(&format!("/v1/payouts/{payout_id}")).await.body;
        if view["status"] == "paid" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let sends = admin(&app, Method::GET, "/v1/admin/jobs?kind=payout.send").await;
    let jobs = sends.body["data"].as_array().unwrap();
    assert!(
        jobs.iter()
            .any(|j| j["dedupe_key"] == payout_id.as_str() && j["state"] == "succeeded"),
        "the scheduler queued a send job for the payout: {}",
        sends.body
    );
    // Every status change of the payout went to the publisher.
    let store = store_of(&app).await;
    let events = store.outbox_for(&payout_id).await.unwrap();
    assert!(events.len() >= 3, "{events:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.outbox_unpublished_count().await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    app.assert_ledger_verifies().await;
    app.stop().await;
}

/// Records what it is handed; fails while `failing` is set; takes a little time per batch so
/// that concurrent consumers overlap.
#[derive(Default)]
struct Collector {
    published: Mutex<Vec<OutboxEvent>>,
    failing: Mutex<bool>,
}

impl OutboxPublisher for Collector {
    fn publish<'a>(
        &'a self,
        _conn: &'a mut Conn,
        events: &'a [OutboxEvent],
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if *self.failing.lock().unwrap() {
                return Err(PublishError::Failed("destination down".into()));
            }
            self.published
                .lock()
                .unwrap()
                .extend(events.iter().cloned());
            Ok(())
        })
    }
}

async fn outbox_store(backend: TestBackend) -> Option<Store> {
    let store = Store::connect(&fresh_database_url(backend).await?)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some(store)
}

async fn fill_outbox(store: &Store, events: usize, aggregates: usize) {
    let mut tx = store.begin().await.unwrap();
    for n in 0..events {
        let aggregate = format!("po_{}", n % aggregates);
        let payload = json!({ "n": n }).to_string();
        store
            .insert_outbox(
                &mut tx,
                "mch",
                "payout.status_changed",
                &aggregate,
                &payload,
            )
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

/// Two consumers at once (as when a node's consumer lease ran out while it still worked):
/// every event is published once, and each aggregate's events in the order written.
async fn concurrent_consumers_publish_each_event_once_in_order(store: Store) {
    fill_outbox(&store, 300, 7).await;
    let collector = Arc::new(Collector::default());
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let (store, collector) = (store.clone(), collector.clone());
        consumers.push(tokio::spawn(async move {
            let mut total = 0;
            loop {
                let published = publish_pending(&store, collector.as_ref(), 16)
                    .await
                    .unwrap();
                total += published;
                if published == 0 {
                    return total;
                }
            }
        }));
    }
    let mut total = 0;
    for consumer in consumers {
        total += consumer.await.unwrap();
    }
    assert_eq!(total, 300);
    let published = collector.published.lock().unwrap().clone();
    let ids: HashSet<i64> = published.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 300, "no event published twice");
    assert_eq!(published.len(), 300);
    let mut last_per_aggregate: HashMap<String, i64> = HashMap::new();
    for event in &published {
        let last = last_per_aggregate
            .entry(event.aggregate_id.clone())
            .or_default();
        assert!(event.id > *last, "{} out of order", event.aggregate_id);
        *last = event.id;
    }
    assert_eq!(store.outbox_unpublished_count().await.unwrap(), 0);
}

/// A publisher that fails leaves the batch unpublished, and it goes out once it recovers.
async fn a_failed_publish_leaves_the_events_for_the_next_run(store: Store) {
    fill_outbox(&store, 5, 2).await;
    let collector = Collector::default();
    *collector.failing.lock().unwrap() = true;
    let failed = publish_pending(&store, &collector, 3).await;
    assert!(matches!(failed, Err(PublishError::Failed(_))));
    assert_eq!(store.outbox_unpublished_count().await.unwrap(), 5);
    *collector.failing.lock().unwrap() = false;
    assert_eq!(publish_pending(&store, &collector, 3).await.unwrap(), 5);
    let ns: Vec<i64> = collector
        .published
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert!(ns.windows(2).all(|w| w[0] < w[1]), "{ns:?}");
    assert_eq!(store.outbox_unpublished_count().await.unwrap(), 0);
}

macro_rules! outbox_tests {
    ($($name:ident),*) => {
        mod outbox_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let store = super::outbox_store(super::TestBackend::Sqlite).await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod outbox_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(store) = super::outbox_store(super::TestBackend::Postgres).await else {
                        eprintln!("KASSA_TEST_POSTGRES_URL is not set; skipping the PostgreSQL half");
                        return;
                    };
                    super::$name(store).await;
                }
            )*
        }
    };
}

outbox_tests!(
    concurrent_consumers_publish_each_event_once_in_order,
    a_failed_publish_leaves_the_events_for_the_next_run
);
