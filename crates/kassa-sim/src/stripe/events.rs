//! Events the simulator sends: Stripe's `event` objects, signed with `Stripe-Signature`,
//! delivered after the configured delay and retried with doubling backoff on any non-2xx
//! answer or transport error, as Stripe does (for days there; a bounded count here).

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::objects::{new_id, now_unix_s};
use super::Shared;

/// Header carrying `t=<unix s>,v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";
/// The API version events are rendered in.
const API_VERSION: &str = "2024-06-20";
/// Longest wait between two delivery attempts.
const RETRY_BACKOFF_MS_MAX: u64 = 60_000;

/// An `event` object of `kind` about `object`.
pub fn event(kind: &str, object: Value) -> Value {
    json!({
        "id": new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": now_unix_s(),
        "data": {"object": object},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": kind,
    })
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], timestamp_unix_s: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(format!("{timestamp_unix_s}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp_unix_s},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Sends `events` in order after the configured delay, in the background.
pub fn send(shared: &Shared, events: Vec<Value>) {
    let Some(url) = shared.config.webhook_url.clone() else {
        return;
    };
    let delay = Duration::from_millis(shared.config.webhook_delay_ms);
    let task_shared = shared.clone();
    shared.spawn(async move {
        tokio::time::sleep(delay).await;
        for event in events {
            deliver(&task_shared, &url, &event).await;
        }
    });
}

/// One event, retried until a 2xx or the attempts run out; each attempt signed afresh, so
/// a late retry is not stale.
async fn deliver(shared: &Shared, url: &str, event: &Value) {
    let config = &shared.config;
    let body = serde_json::to_vec(event).expect("events always serialize");
    let event_id = event["id"].as_str().unwrap_or_default();
    let mut backoff_ms = config.webhook_retry_backoff_ms;
    let attempts_max = config.webhook_attempts_max.max(1);
    for attempt in 1..=attempts_max {
        let header = signature(config.webhook_secret.as_bytes(), now_unix_s(), &body);
        let result = shared
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .header(SIGNATURE_HEADER, header)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => {
                tracing::info!(event_id, attempt, "Stripe event delivered");
                return;
            }
            Ok(response) => {
                tracing::warn!(event_id, attempt, status = %response.status(), "Stripe event refused");
            }
            Err(error) => tracing::warn!(event_id, attempt, %error, "Stripe event not delivered"),
        }
        if attempt < attempts_max {
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MS_MAX);
        }
    }
    tracing::error!(event_id, attempts_max, "Stripe event given up");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published vector (arlyon/async-stripe `webhook_events.rs`), computed the
    /// simulator's own way.
    #[test]
    fn signatures_follow_stripes_scheme() {
        let body = include_bytes!(
            "../../../kassa-connectors/src/stripe/testdata/stripe-signature-vector-payload.json"
        );
        assert_eq!(
            signature(b"webhook_secret", 1_533_204_620, body),
            "t=1533204620,v1=f0bdba6d4eacbd8ad8a3bbadd7248e633ec1477f7899c124c51b39405fa36613"
        );
    }
}
