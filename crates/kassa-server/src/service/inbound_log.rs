//! Replays of logged inbound deliveries (the dead-letter queue's way out, ADR 45): a
//! stored delivery runs again through the one provider-event pipeline under the rules it
//! arrived under (its source address against today's allow-list, its signature on its exact
//! bytes, its timestamp against the time it arrived, dedupe by event id), and the replay is a
//! log row of its own, linked to the original, naming the admin key that asked.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kassa_connectors::HeaderMap;
use kassa_store::inbound_log::{DeliveryFilter, DeliveryOrder, WebhookDelivery};
use kassa_store::StoreError;

use crate::service::provider_events::{Delivery, ProviderEvents, ReplayOf};
use crate::views::PublicError;
use crate::AppStateInner;

/// What one replay did.
#[derive(Clone, Debug)]
pub struct ReplayOutcome {
    /// The delivery run again.
    pub original_id: String,
    /// The replay's own log row.
    pub replay_id: String,
    /// As the delivery log names it: `processed`, `ignored`, `duplicate` (the event was
    /// answered before: nothing moved), `dead_lettered`, or a refusal.
    pub outcome: String,
    /// The status the provider would have got.
    pub http_status: u16,
    /// The body the provider would have got.
    pub answer: serde_json::Value,
}

/// Runs the logged delivery `original` again on behalf of the admin key `admin_key_id`.
/// A replay that settles it (anything but a failure on our side) marks it resolved.
pub async fn replay(
    state: &AppStateInner,
    original: &WebhookDelivery,
    admin_key_id: &str,
) -> Result<ReplayOutcome, StoreError> {
    let replay_id = kassa_core::ids::generate("whk");
    let headers = stored_headers(&original.headers);
    let delivery = Delivery {
        provider: &original.provider,
        headers: &headers,
        body: &original.raw_body,
        source: &original.source,
        source_address: original
            .source_address
            .as_deref()
            .and_then(|a| a.parse::<IpAddr>().ok()),
        received_at_ms: original.received_at_ms,
        replay: Some(ReplayOf {
            log_id: &replay_id,
            original_id: &original.id,
            admin_key_id,
        }),
    };
    let (outcome, http_status, answer, settled) =
        match ProviderEvents::of(state).receive(delivery).await {
            Ok(receipt) => (
                receipt.outcome.as_str().to_string(),
                receipt.answer.status,
                serde_json::from_str(&receipt.answer.body).unwrap_or_default(),
                true,
            ),
            Err(error) => {
                let problem = error.problem();
                let answer = serde_json::json!({"error": problem.code, "message": problem.message});
                (
                    error.log_outcome().to_string(),
                    problem.status,
                    answer,
                    !error.is_retryable(),
                )
            }
        };
    if settled {
        state
            .store
            .resolve_webhook_delivery(&original.id, &replay_id)
            .await?;
    }
    tracing::info!(delivery_id = %original.id, replay_id = %replay_id, outcome = %outcome,
        by = %admin_key_id, "inbound delivery replayed");
    Ok(ReplayOutcome {
        original_id: original.id.clone(),
        replay_id,
        outcome,
        http_status,
        answer,
    })
}

/// What a bulk replay did.
#[derive(Clone, Debug, Default)]
pub struct BulkReplay {
    /// Each replay, oldest delivery first.
    pub replays: Vec<ReplayOutcome>,
    /// Replays per outcome.
    pub outcomes: BTreeMap<String, u32>,
    /// More deliveries match than one call replays: call again.
    pub more: bool,
}

/// Replays, oldest first, at most `max` original deliveries matching `filter` that no
/// replay has settled yet, and none once `deadline` has passed (the rest are `more`), so
/// that the call ends before the HTTP request times out.
pub async fn replay_matching(
    state: &AppStateInner,
    filter: &DeliveryFilter,
    max: u32,
    admin_key_id: &str,
    deadline: std::time::Instant,
) -> Result<BulkReplay, StoreError> {
    let filter = DeliveryFilter {
        unresolved_only: true,
        originals_only: true,
        ..filter.clone()
    };
    let mut found = state
        .store
        .search_webhook_deliveries(&filter, DeliveryOrder::OldestFirst, max.saturating_add(1))
        .await?;
    let more = found.len() > max as usize;
    found.truncate(max as usize);
    let mut report = BulkReplay {
        more,
        ..BulkReplay::default()
    };
    for (done, original) in found.iter().enumerate() {
        if std::time::Instant::now() >= deadline {
            report.more = true;
            tracing::warn!(
                replayed = done,
                "bulk replay stopped at its deadline; call again"
            );
            break;
        }
        let outcome = replay(state, original, admin_key_id).await?;
        *report.outcomes.entry(outcome.outcome.clone()).or_default() += 1;
        report.replays.push(outcome);
    }
    Ok(report)
}

/// The headers a logged delivery kept (a JSON object of names and text values); anything
/// that is no longer a valid header is left out, and the signature check decides.
fn stored_headers(json: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Ok(serde_json::Value::Object(stored)) = serde_json::from_str(json) else {
        return headers;
    };
    for (name, value) in stored {
        let (Ok(name), Some(value)) = (
            name.parse::<axum::http::HeaderName>(),
            value
                .as_str()
                .and_then(|v| axum::http::HeaderValue::from_str(v).ok()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_headers_come_back_and_junk_is_left_out() {
        let headers =
            stored_headers(r#"{"x-signature":"sha256=ab","bad name":"x","n":1,"ok":"y"}"#);
        assert_eq!(headers.get("x-signature").unwrap(), "sha256=ab");
        assert_eq!(headers.get("ok").unwrap(), "y");
        assert_eq!(headers.len(), 2);
        assert!(stored_headers("not json").is_empty());
    }
}
