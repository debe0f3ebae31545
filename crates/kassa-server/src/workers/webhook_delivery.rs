//! Outbound webhooks to the operator (issue 18, items 4, 6, 7; ADR 46).
//!
//! The outbox publisher ([`WebhookPublisher`]) queues one `webhook.deliver` job per event and
//! matching enabled endpoint, inside the transaction that marks the events published: an
//! event committed is an event queued, on any node. A delivery job POSTs the event signed per
//! Standard Webhooks, logs the attempt, and decides: 2xx delivered; 410 disables the endpoint;
//! anything else is retried on the configured schedule (honouring `Retry-After`) until the
//! schedule runs out, and an endpoint failing for `disable_after_failing_ms` is disabled with
//! a `webhook_endpoint.disabled` event. A job whose node dies mid-delivery is taken over when
//! its lease runs out: delivery is at least once, and the operator dedupes on `webhook-id`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use futures::future::BoxFuture;
use kassa_store::jobs::JobRecord;
use kassa_store::payments::OutboxEvent;
use kassa_store::webhook_endpoints::{MessageStatus, WebhookAttempt, WebhookEndpointRecord};
use kassa_store::{now_ms, Conn, Store, StoreError};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::WebhooksConfig;
use crate::service::webhook_endpoints::{
    delivery_attempts_max, enqueue_delivery_in, filter_matches, signing_secrets, DeliveryPayload,
};
use crate::service::webhook_signature::signature_header;
use crate::service::webhook_urls::{check_literal_host, PublicOnlyResolver};
use crate::workers::kinds::JobError;
use crate::workers::outbox::{OutboxPublisher, PublishError};

/// Most bytes of an answer's body kept with its attempt.
pub const RESPONSE_EXCERPT_BYTES_MAX: usize = 1024;
/// The event type that says Kassa disabled an endpoint.
pub const ENDPOINT_DISABLED_EVENT: &str = "webhook_endpoint.disabled";
/// How long a delivery waits when its endpoint already has its share of deliveries running.
const BUSY_RETRY_MS: std::ops::RangeInclusive<i64> = 100..=400;

/// Sends deliveries: one HTTP client for all endpoints (its resolver refuses non-public
/// addresses), and a per-endpoint limit of concurrent deliveries on this node.
pub struct Deliverer {
    client: reqwest::Client,
    gates: DashMap<String, Arc<Semaphore>>,
    config: WebhooksConfig,
}

impl Deliverer {
    /// The client for `[webhooks]`: its timeout, no redirects (a redirect could lead into
    /// the private network), the SSRF-checking resolver.
    pub fn new(config: &WebhooksConfig) -> anyhow::Result<Deliverer> {
        let timeout = Duration::from_millis(config.outbound.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Kassa-Webhooks/1")
            .dns_resolver(Arc::new(PublicOnlyResolver {
                allow_private: config.allow_private_urls,
            }))
            .build()?;
        Ok(Deliverer {
            client,
            gates: DashMap::new(),
            config: config.clone(),
        })
    }

    /// A delivery slot of the endpoint, or `None` when all are taken.
    fn try_slot(&self, endpoint_id: &str) -> Option<OwnedSemaphorePermit> {
        let permits = self.config.outbound.concurrency_per_endpoint_max as usize;
        let gate = self
            .gates
            .entry(endpoint_id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(permits)))
            .clone();
        gate.try_acquire_owned().ok()
    }
}

/// The outbox publisher of outbound webhooks.
pub struct WebhookPublisher {
    store: Store,
    attempts_max: i64,
}

impl WebhookPublisher {
    /// Queues deliveries on `store` with `[webhooks]`'s attempt budget.
    pub fn new(store: Store, config: &WebhooksConfig) -> WebhookPublisher {
        WebhookPublisher {
            store,
            attempts_max: delivery_attempts_max(config),
        }
    }

    async fn queue(&self, conn: &mut Conn, events: &[OutboxEvent]) -> Result<(), StoreError> {
        let mut merchants: Vec<&str> = events.iter().map(|e| e.merchant_id.as_str()).collect();
        merchants.sort_unstable();
        merchants.dedup();
        let endpoints = self
            .store
            .enabled_webhook_endpoints_in(conn, &merchants)
            .await?;
        for event in events {
            let wanted = endpoints.iter().filter(|endpoint| {
                endpoint.merchant_id == event.merchant_id
                    && filter_matches(&endpoint.event_types, &event.topic)
            });
            for endpoint in wanted {
                enqueue_delivery_in(
                    &self.store,
                    conn,
                    &endpoint.id,
                    &event.event_id,
                    self.attempts_max,
                )
                .await?;
            }
        }
        Ok(())
    }
}

impl OutboxPublisher for WebhookPublisher {
    fn publish<'a>(
        &'a self,
        conn: &'a mut Conn,
        events: &'a [OutboxEvent],
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move { Ok(self.queue(conn, events).await?) })
    }
}

/// What one attempt came to.
struct Sent {
    http_status: Option<u16>,
    latency_ms: i64,
    excerpt: Option<String>,
    error: Option<String>,
    retry_after_ms: Option<i64>,
}

/// Runs one `webhook.deliver` job: one attempt of one message.
pub async fn run(store: &Store, deliverer: &Deliverer, job: &JobRecord) -> Result<(), JobError> {
    let payload: DeliveryPayload =
        serde_json::from_str(&job.payload).map_err(|e| JobError::Payload(e.to_string()))?;
    let (endpoint_id, event_id) = (&payload.endpoint_id, &payload.event_id);
    let endpoint = match store.webhook_endpoint(endpoint_id).await? {
        Some(endpoint) if endpoint.enabled => endpoint,
        _ => {
            // Deleted or disabled since it was queued: the message stops here.
            store
                .set_webhook_message_status(
                    endpoint_id,
                    event_id,
                    MessageStatus::Failed,
                    job.attempts - 1,
                )
                .await?;
            return Ok(());
        }
    };
    let event = store
        .outbox_event(event_id)
        .await?
        .ok_or_else(|| JobError::Payload(format!("no outbox event {event_id:?}")))?;
    let Some(_slot) = deliverer.try_slot(endpoint_id) else {
        let wait_ms = rand::thread_rng().gen_range(BUSY_RETRY_MS);
        return Err(JobError::Busy {
            run_at_ms: now_ms() + wait_ms,
        });
    };
    let attempted_at_ms = now_ms();
    let Some(budget) = lease_budget(job, deliverer.config.outbound.timeout_ms, attempted_at_ms)
    else {
        // Too little of the claim's lease is left to send within it: run again at once on
        // a fresh claim rather than risk overlapping the node that would take over.
        return Err(JobError::Busy {
            run_at_ms: attempted_at_ms,
        });
    };
    let sent = send(deliverer, &endpoint, &event, budget).await;
    store
        .insert_webhook_attempt(&WebhookAttempt {
            id: 0,
            endpoint_id: endpoint_id.clone(),
            event_id: event_id.clone(),
            attempt: job.attempts,
            http_status: sent.http_status.map(i64::from),
            latency_ms: sent.latency_ms,
            response_excerpt: sent.excerpt.clone(),
            error: sent.error.clone(),
            attempted_at_ms,
        })
        .await?;
    settle(store, &deliverer.config, &endpoint, event_id, job, &sent).await
}

/// What is kept between the end of a delivery and the end of its claim's lease (at most a
/// fifth of the lease): a request still running past the lease could overlap the node that
/// takes the job over.
const LEASE_MARGIN_MS: i64 = 250;
/// Shortest request worth starting (at most a fifth of the lease).
const SEND_BUDGET_MIN_MS: i64 = 100;

/// How long this attempt's request may take: the configured timeout, cut so that it ends a
/// margin before the claim's lease runs out. The heartbeat renews the lease while the job
/// runs, but a renewal can fail (the database is slow or away), and another node claims the
/// job the moment the lease it saw runs out; bounding the request by the lease as claimed
/// keeps one event from being sent by two nodes at once whatever the heartbeat does. `None`
/// when too little is left to start a request.
fn lease_budget(job: &JobRecord, timeout_ms: u64, now_ms: i64) -> Option<Duration> {
    let timeout_ms = i64::try_from(timeout_ms).unwrap_or(i64::MAX);
    let Some(until_ms) = job.lease_until_ms else {
        return Some(Duration::from_millis(timeout_ms as u64));
    };
    // The claim stamped updated_at_ms when it set the lease.
    let fifth_ms = (until_ms - job.updated_at_ms).max(0) / 5;
    let budget_ms = timeout_ms.min(until_ms - LEASE_MARGIN_MS.min(fifth_ms) - now_ms);
    (budget_ms >= SEND_BUDGET_MIN_MS.min(fifth_ms).max(1))
        .then(|| Duration::from_millis(budget_ms as u64))
}

/// Records what the attempt means for the message and the endpoint.
async fn settle(
    store: &Store,
    config: &WebhooksConfig,
    endpoint: &WebhookEndpointRecord,
    event_id: &str,
    job: &JobRecord,
    sent: &Sent,
) -> Result<(), JobError> {
    let mark =
        |status| store.set_webhook_message_status(&endpoint.id, event_id, status, job.attempts);
    match sent.http_status {
        Some(status) if (200..300).contains(&status) => {
            mark(MessageStatus::Delivered).await?;
            store.webhook_endpoint_succeeded(&endpoint.id).await?;
            return Ok(());
        }
        Some(410) => {
            mark(MessageStatus::Failed).await?;
            disable(store, endpoint, "gone").await?;
            return Ok(());
        }
        _ => {}
    }
    let now = now_ms();
    let failing_since_ms = store
        .webhook_endpoint_failed(&endpoint.id, now)
        .await?
        .unwrap_or(now);
    if now - failing_since_ms >= config.outbound.disable_after_failing_ms {
        mark(MessageStatus::Failed).await?;
        disable(store, endpoint, "failing").await?;
        return Ok(());
    }
    let error = match (sent.http_status, &sent.error) {
        (Some(status), _) => format!("the endpoint answered {status}"),
        (None, Some(error)) => error.clone(),
        (None, None) => "no answer".to_string(),
    };
    if job.attempts >= job.attempts_max {
        // The operator's endpoint failing is not Kassa's failure: the job ends, the message
        // is `failed` (recover sends it again), and no dead job raises an alarm of ours.
        mark(MessageStatus::Failed).await?;
        tracing::warn!(endpoint_id = %endpoint.id, event_id, attempts = job.attempts, error, "webhook message failed: its retry schedule ran out");
        return Ok(());
    }
    mark(MessageStatus::Pending).await?;
    let mut rng = rand::thread_rng();
    let delay_ms = retry_delay_ms(config, job.attempts, sent.retry_after_ms, &mut rng);
    Err(JobError::RetryAt {
        retry_at_ms: now + delay_ms,
        error,
    })
}

/// Disables the endpoint and writes the event saying so, in one transaction.
async fn disable(
    store: &Store,
    endpoint: &WebhookEndpointRecord,
    reason: &str,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    if store
        .disable_webhook_endpoint_in(&mut tx, &endpoint.id, reason)
        .await?
    {
        let payload = json!({
            "endpoint_id": endpoint.id,
            "url": endpoint.url,
            "reason": reason,
        });
        kassa_store::payments::insert_outbox_in(
            &mut tx,
            &endpoint.merchant_id,
            ENDPOINT_DISABLED_EVENT,
            &endpoint.id,
            &payload.to_string(),
        )
        .await?;
        tracing::warn!(endpoint_id = %endpoint.id, reason, "webhook endpoint disabled");
    }
    tx.commit().await?;
    Ok(())
}

/// The wait before the attempt after `attempt`: the schedule's entry jittered by ±20%, and
/// at least what `Retry-After` asked (up to `retry_after_max_ms`).
pub fn retry_delay_ms(
    config: &WebhooksConfig,
    attempt: i64,
    retry_after_ms: Option<i64>,
    rng: &mut impl Rng,
) -> i64 {
    let schedule = &config.outbound.retry_schedule_ms;
    let index = (attempt.max(1) as usize - 1).min(schedule.len().saturating_sub(1));
    let base_ms = schedule.get(index).copied().unwrap_or(0) as f64;
    let jittered_ms = (base_ms * rng.gen_range(0.8..=1.2)) as i64;
    let asked_ms = retry_after_ms
        .unwrap_or(0)
        .min(config.outbound.retry_after_max_ms as i64);
    jittered_ms.max(asked_ms)
}

/// The body the operator receives: the event's id, type, time, ordering key and sequence
/// (increasing per ordering key), and the object's public view as `data`.
pub fn delivery_body(event: &OutboxEvent) -> String {
    let data: serde_json::Value =
        serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
    json!({
        "id": event.event_id,
        "type": event.topic,
        "timestamp": crate::views::rfc3339(event.created_at_ms),
        "ordering_key": event.aggregate_id,
        "sequence": event.id,
        "data": data,
    })
    .to_string()
}

/// POSTs the event once; never fails, it reports.
async fn send(
    deliverer: &Deliverer,
    endpoint: &WebhookEndpointRecord,
    event: &OutboxEvent,
    timeout: Duration,
) -> Sent {
    let started = Instant::now();
    let failed = |error: String| Sent {
        http_status: None,
        latency_ms: started.elapsed().as_millis() as i64,
        excerpt: None,
        error: Some(error),
        retry_after_ms: None,
    };
    let request = match build_request(deliverer, endpoint, event) {
        Ok(request) => request,
        Err(error) => return failed(error),
    };
    let mut response = match request.timeout(timeout).send().await {
        Ok(response) => response,
        Err(error) => return failed(crate::workers::jobs::error_chain(&error)),
    };
    let status = response.status().as_u16();
    let retry_after_ms = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after_ms);
    let excerpt = read_excerpt(&mut response).await;
    Sent {
        http_status: Some(status),
        latency_ms: started.elapsed().as_millis() as i64,
        excerpt: Some(excerpt),
        error: None,
        retry_after_ms,
    }
}

fn build_request(
    deliverer: &Deliverer,
    endpoint: &WebhookEndpointRecord,
    event: &OutboxEvent,
) -> Result<reqwest::RequestBuilder, String> {
    let url = reqwest::Url::parse(&endpoint.url).map_err(|e| format!("url: {e}"))?;
    check_literal_host(&url, deliverer.config.allow_private_urls).map_err(|e| e.to_string())?;
    let body = delivery_body(event);
    let timestamp_s = now_ms() / 1000;
    let secrets = signing_secrets(endpoint, now_ms());
    let signature = signature_header(&secrets, &event.event_id, timestamp_s, body.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut put = |name: &'static str, value: &str| -> Result<(), String> {
        let value = HeaderValue::from_str(value).map_err(|e| format!("{name}: {e}"))?;
        headers.insert(name, value);
        Ok(())
    };
    put("webhook-id", &event.event_id)?;
    put("webhook-timestamp", &timestamp_s.to_string())?;
    put("webhook-signature", &signature)?;
    Ok(deliverer.client.post(url).headers(headers).body(body))
}

/// The first [`RESPONSE_EXCERPT_BYTES_MAX`] bytes of the body, read no further.
async fn read_excerpt(response: &mut reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < RESPONSE_EXCERPT_BYTES_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(RESPONSE_EXCERPT_BYTES_MAX);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    // A multi-byte character cut at the limit becomes U+FFFD (3 bytes); stay within 1 KiB.
    while text.len() > RESPONSE_EXCERPT_BYTES_MAX {
        text.pop();
    }
    text
}

/// `Retry-After` as a wait in ms: delta-seconds or an HTTP date.
pub fn parse_retry_after_ms(value: &str) -> Option<i64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u32>() {
        return Some(i64::from(seconds) * 1000);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
    Some(wait.as_millis().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn config(schedule: Vec<u64>) -> WebhooksConfig {
        let mut config = crate::Config::defaults().webhooks;
        config.outbound.retry_schedule_ms = schedule;
        config.outbound.retry_after_max_ms = 60_000;
        config
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after_ms("7"), Some(7000));
        assert_eq!(
            parse_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(0),
            "a past date: now"
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let wait = parse_retry_after_ms(&later).unwrap();
        assert!((118_000..=120_000).contains(&wait), "{wait}");
        assert_eq!(parse_retry_after_ms("soon"), None);
    }

    #[test]
    fn waits_follow_the_schedule_with_jitter_and_honour_retry_after() {
        let config = config(vec![5_000, 300_000]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..200 {
            let first = retry_delay_ms(&config, 1, None, &mut rng);
            assert!((4_000..=6_000).contains(&first), "{first}");
            let second = retry_delay_ms(&config, 2, None, &mut rng);
            assert!((240_000..=360_000).contains(&second), "{second}");
        }
        assert!(retry_delay_ms(&config, 1, Some(30_000), &mut rng) == 30_000);
        assert!(
            retry_delay_ms(&config, 1, Some(10_000_000), &mut rng) == 60_000,
            "Retry-After is honoured up to its cap"
        );
    }

    fn claimed(lease_until_ms: Option<i64>, claimed_at_ms: i64) -> JobRecord {
        JobRecord {
            id: "job_1".into(),
            kind: crate::workers::kinds::WEBHOOK_DELIVER.into(),
            payload: "{}".into(),
            dedupe_key: None,
            state: kassa_store::jobs::JobState::Running,
            attempts: 1,
            attempts_max: 8,
            run_at_ms: 0,
            repeat_every_ms: None,
            lease_owner: Some("node_a".into()),
            lease_until_ms,
            last_error: None,
            created_at_ms: 0,
            updated_at_ms: claimed_at_ms,
        }
    }

    #[test]
    fn a_request_ends_before_the_lease_it_was_claimed_under() {
        let now = 1_000_000;
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as i64);
        let budget = |lease_until, claimed_at, timeout| {
            ms(lease_budget(
                &claimed(lease_until, claimed_at),
                timeout,
                now,
            ))
        };
        assert_eq!(
            budget(Some(now + 30_000), now, 15_000),
            Some(15_000),
            "a long lease leaves the timeout as configured"
        );
        assert_eq!(
            budget(Some(now + 2_000), now - 28_000, 15_000),
            Some(2_000 - LEASE_MARGIN_MS),
            "late in its lease, the request is cut"
        );
        assert_eq!(
            budget(Some(now + 300), now - 29_700, 15_000),
            None,
            "too little left: not sent"
        );
        assert_eq!(
            budget(Some(now + 300), now, 15_000),
            Some(240),
            "a short lease keeps a fifth of itself as the margin"
        );
        assert_eq!(budget(None, now, 5_000), Some(5_000));
    }

    #[test]
    fn the_default_schedule_is_the_documented_one() {
        let config = crate::Config::defaults().webhooks;
        assert_eq!(
            config.outbound.retry_schedule_ms,
            [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]
        );
        assert_eq!(delivery_attempts_max(&config), 8);
    }
}
