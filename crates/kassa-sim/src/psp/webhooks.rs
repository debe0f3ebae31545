//! Webhooks the sandbox sends: built from the protocol, signed, delayed, retried.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::store::{Payment, Payout};
use super::Shared;

/// Header carrying `sha256=<hex HMAC-SHA256(webhook_secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Signature";
/// Longest wait between two delivery attempts, however many retries.
const RETRY_BACKOFF_MS_MAX: u64 = 30_000;

/// One webhook body, as the protocol defines it.
#[derive(Clone, Debug, Serialize)]
pub struct WebhookEvent {
    pub event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<String>,
    pub status: &'static str,
    pub amount: String,
    pub currency: &'static str,
    pub timestamp: String,
    pub provider_reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispute_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `challenge` or `frictionless` when 3-D Secure ran for the payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub three_ds: Option<&'static str>,
}

fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    // Whole seconds, like `2025-10-17T09:41:00Z`.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339).expect("a UTC time always formats")
}

impl WebhookEvent {
    /// An event about a payment, for `amount_minor` of its currency.
    pub fn payment(payment: &Payment, status: &'static str, amount_minor: i64) -> WebhookEvent {
        WebhookEvent {
            event_id: kassa_core::ids::generate("sbxevt"),
            payment_id: Some(payment.payment_id.clone()),
            payout_id: None,
            status,
            amount: payment.currency.format_minor(amount_minor),
            currency: payment.currency.code(),
            timestamp: now_rfc3339(),
            provider_reference: payment.provider_reference.clone(),
            refund_id: None,
            dispute_id: None,
            reason: None,
            three_ds: None,
        }
    }

    /// An event about a payout.
    pub fn payout(payout: &Payout, reason: Option<&str>) -> WebhookEvent {
        WebhookEvent {
            event_id: kassa_core::ids::generate("sbxevt"),
            payment_id: None,
            payout_id: Some(payout.payout_id.clone()),
            status: payout.status.as_str(),
            amount: payout.currency.format_minor(payout.amount_minor),
            currency: payout.currency.code(),
            timestamp: now_rfc3339(),
            provider_reference: payout.provider_reference.clone(),
            refund_id: None,
            dispute_id: None,
            reason: reason.map(str::to_string),
            three_ds: None,
        }
    }

    /// The same event with a reason.
    pub fn with_reason(mut self, reason: &str) -> WebhookEvent {
        self.reason = Some(reason.to_string());
        self
    }
}

/// The `X-Signature` value for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether a webhook comes from the autopilot or from an explicit `/sandbox/` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The sandbox acting by itself; silenced when autopilot is off.
    Autopilot,
    /// A control request asked for it; sent even when autopilot is off.
    Command,
}

/// Sends the events of one outcome after `delay`, in order (reversed when out-of-order is on,
/// each twice when duplicates are on). Returns at once; delivery runs in the background.
pub fn send(shared: &Shared, events: Vec<WebhookEvent>, delay: Duration, trigger: Trigger) {
    let config = &shared.config;
    if trigger == Trigger::Autopilot && !config.autopilot {
        tracing::debug!(events = events.len(), "autopilot off: webhooks not sent");
        return;
    }
    let Some(url) = config.webhook_url.clone() else {
        tracing::debug!(events = events.len(), "no webhook_url: webhooks not sent");
        return;
    };
    let mut events = events;
    if config.out_of_order_webhooks {
        events.reverse();
    }
    let copies = if config.duplicate_webhooks { 2 } else { 1 };
    let mut deliveries = Vec::with_capacity(events.len() * copies);
    for event in &events {
        let body = serde_json::to_vec(event).expect("webhook events always serialize");
        for _ in 0..copies {
            deliveries.push((event.event_id.clone(), body.clone()));
        }
    }
    let task_shared = shared.clone();
    shared.spawn(async move {
        tokio::time::sleep(delay).await;
        for (event_id, body) in deliveries {
            deliver(&task_shared, &url, &event_id, body).await;
        }
    });
}

/// One delivery with bounded retries on 5xx and transport errors; a 4xx is final.
async fn deliver(shared: &Shared, url: &str, event_id: &str, body: Vec<u8>) {
    let config = &shared.config;
    let signature = sign(config.webhook_secret.as_bytes(), &body);
    let mut backoff_ms = config.webhook_retry_backoff_ms;
    let attempts_max = config.webhook_attempts_max.max(1);
    for attempt in 1..=attempts_max {
        let result = shared
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => {
                tracing::info!(event_id, attempt, "webhook delivered");
                return;
            }
            Ok(response) if response.status().is_client_error() => {
                tracing::warn!(event_id, status = %response.status(), "webhook refused, not retried");
                return;
            }
            Ok(response) => {
                tracing::warn!(event_id, attempt, status = %response.status(), "webhook failed");
            }
            Err(error) => {
                tracing::warn!(event_id, attempt, %error, "webhook not delivered");
            }
        }
        if attempt < attempts_max {
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MS_MAX);
        }
    }
    tracing::error!(event_id, attempts_max, "webhook given up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_the_raw_body_in_lowercase_hex() {
        // printf '{"a":1}' | openssl dgst -sha256 -hmac whsec
        assert_eq!(
            sign(b"whsec", br#"{"a":1}"#),
            "sha256=19373ef0e8c66f206e49d251e4402291615bbce6ef00922e94a47a213fb76ee1"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_in_whole_seconds() {
        let stamp = now_rfc3339();
        assert!(stamp.ends_with('Z'), "{stamp}");
        assert_eq!(stamp.len(), "2025-10-17T09:41:00Z".len(), "{stamp}");
        assert!(OffsetDateTime::parse(&stamp, &Rfc3339).is_ok());
    }
}
