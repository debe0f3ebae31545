//! Outbound webhook delivery throughput (issue 18): events per second from the outbox to a
//! local receiver, through the real pipeline — the `outbox.publish` job queues one
//! `webhook.deliver` job per event, any job slot of the node claims it, signs the body and
//! POSTs it — with the server's default `[jobs]` and `[webhooks.outbound]` settings.
//!
//! A run writes `events` outbox events at once (one transaction per 500, as a burst of
//! payment changes would), then waits until the receiver has every one. Throughput is
//! events / (last arrival − first write); latency is each event's write-to-arrival time.
//! Checks after each run: every event arrived, each `webhook_messages` row is `delivered`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kassa_store::Store;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::json;

use super::stats::{self, RunStats};

/// Outbox events written per transaction.
const WRITE_CHUNK: usize = 500;
/// Longest a run waits for its events to arrive.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// What the receiver saw: the arrival time of each event id's first delivery, and how many
/// deliveries came in all.
#[derive(Default)]
struct Arrivals {
    first: HashMap<String, Instant>,
    total: u64,
}

/// The operator's backend: answers every POST `200` at once and notes its `webhook-id`.
struct Receiver {
    url: String,
    arrivals: Arc<Mutex<Arrivals>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let arrivals: Arc<Mutex<Arrivals>> = Arc::default();
        let seen = arrivals.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        note(&seen, &request);
                        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Receiver {
            url,
            arrivals,
            task,
        })
    }

    fn arrived(&self) -> usize {
        lock(&self.arrivals).first.len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn note(arrivals: &Mutex<Arrivals>, request: &Request<Incoming>) {
    let Some(event_id) = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let mut arrivals = lock(arrivals);
    arrivals.total += 1;
    arrivals
        .first
        .entry(event_id.to_string())
        .or_insert_with(Instant::now);
}

fn lock(arrivals: &Mutex<Arrivals>) -> std::sync::MutexGuard<'_, Arrivals> {
    arrivals.lock().unwrap_or_else(|e| e.into_inner())
}

/// One endpoint on the server under test, receiving every event type.
pub struct WebhookBench {
    store: Store,
    receiver: Receiver,
    merchant_id: String,
    endpoint_id: String,
}

impl WebhookBench {
    /// Starts the receiver and registers it as an endpoint of the merchant of `api_key`.
    /// The server must allow private URLs (the receiver is on 127.0.0.1).
    pub async fn setup(base: &str, api_key: &str, store: Store) -> anyhow::Result<WebhookBench> {
        let receiver = Receiver::start().await?;
        let created: serde_json::Value = reqwest::Client::new()
            .post(format!("{base}/v1/webhook-endpoints"))
            .header(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {api_key}"))?,
            )
            .json(&json!({"url": receiver.url, "event_types": ["*"], "description": "bench"}))
            .send()
            .await?
            .error_for_status()
            .context("creating the bench's webhook endpoint")?
            .json()
            .await?;
        let endpoint_id = created["endpoint_id"]
            .as_str()
            .context("the endpoint answer has no id")?
            .to_string();
        let merchant_id = store
            .webhook_endpoint(&endpoint_id)
            .await?
            .context("the endpoint just created is not stored")?
            .merchant_id;
        Ok(WebhookBench {
            store,
            receiver,
            merchant_id,
            endpoint_id,
        })
    }

    /// Writes `events` outbox events and measures their delivery.
    pub async fn run(&self, events: usize) -> anyhow::Result<RunStats> {
        let already = self.receiver.arrived();
        let started = Instant::now();
        let written = self.write_events(events).await?;
        let deadline = started + RUN_TIMEOUT;
        while self.receiver.arrived() < already + events && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut run = self.measure(&written, started);
        self.check_messages(&written, &mut run).await?;
        Ok(run)
    }

    /// Throughput and write-to-arrival latencies of `written`, from the receiver's log.
    fn measure(&self, written: &[(String, Instant)], started: Instant) -> RunStats {
        let arrivals = lock(&self.receiver.arrivals);
        let mut histogram = stats::new_histogram();
        let mut last = started;
        let mut missing = 0u64;
        for (event_id, written_at) in written {
            match arrivals.first.get(event_id) {
                Some(&at) => {
                    stats::record(&mut histogram, at.saturating_duration_since(*written_at));
                    last = last.max(at);
                }
                None => missing += 1,
            }
        }
        let delivered = written.len() as u64 - missing;
        let mut run = RunStats::new(delivered, missing, last - started, &histogram);
        run.checks
            .push(format!("{} deliveries received in all", arrivals.total));
        if missing > 0 {
            run.checks_ok = false;
            run.checks.push(format!("{missing} events never arrived"));
        }
        run
    }

    /// Writes the events in chunks of [`WRITE_CHUNK`]; returns each id and when its chunk
    /// committed.
    async fn write_events(&self, events: usize) -> anyhow::Result<Vec<(String, Instant)>> {
        let mut written = Vec::with_capacity(events);
        let payload = json!({"object": "bench", "amount": "10.00"}).to_string();
        for chunk_start in (0..events).step_by(WRITE_CHUNK) {
            let chunk_len = WRITE_CHUNK.min(events - chunk_start);
            let mut tx = self.store.begin().await?;
            let mut ids = Vec::with_capacity(chunk_len);
            for index in chunk_start..chunk_start + chunk_len {
                let aggregate_id = format!("bench_{}", index % 64);
                let event_id = self
                    .store
                    .insert_outbox(
                        &mut tx,
                        &self.merchant_id,
                        "payment.captured",
                        &aggregate_id,
                        &payload,
                    )
                    .await?;
                ids.push(event_id);
            }
            tx.commit().await?;
            let committed_at = Instant::now();
            written.extend(ids.into_iter().map(|id| (id, committed_at)));
        }
        Ok(written)
    }

    /// Every event's message on the endpoint is `delivered` (the node records that just
    /// after the receiver answered, so each gets a moment).
    async fn check_messages(
        &self,
        written: &[(String, Instant)],
        run: &mut RunStats,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut undelivered = 0usize;
        for (event_id, _) in written {
            loop {
                let status = self
                    .store
                    .webhook_message_status(&self.endpoint_id, event_id)
                    .await?;
                if status.as_deref() == Some("delivered") {
                    break;
                }
                if Instant::now() >= deadline {
                    undelivered += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if undelivered == 0 {
            run.checks
                .push(format!("{} messages delivered", written.len()));
        } else {
            run.checks_ok = false;
            run.checks
                .push(format!("{undelivered} messages not marked delivered"));
        }
        Ok(())
    }
}
