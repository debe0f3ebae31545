//! The operator's webhook endpoints (issue 18, item 5): create, read, change, delete,
//! rotate the secret; the delivery attempts; replay of one message and recovery of all
//! failed messages since a time. Deliveries themselves are `workers::webhook_delivery`.

use kassa_core::ids::MerchantId;
use kassa_store::jobs::NewJob;
use kassa_store::webhook_endpoints::{WebhookAttempt, WebhookEndpointRecord};
use kassa_store::{now_ms, Conn, Store, StoreError};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::WebhooksConfig;
use crate::service::webhook_signature::new_secret;
use crate::service::webhook_urls::{check_url, UrlRefusal};

/// Job kind of one delivery of one event to one endpoint (dedupe key `endpoint:event`).
pub const WEBHOOK_DELIVER: &str = "webhook.deliver";
/// Most event-type filters per endpoint.
pub const EVENT_TYPES_MAX: usize = 50;
/// Longest event-type filter.
const EVENT_TYPE_LEN_MAX: usize = 100;
/// Longest description, in characters.
pub const DESCRIPTION_CHARS_MAX: usize = 500;
/// Most failed messages one recover call queues again; call again for the rest.
pub const RECOVER_MESSAGES_MAX: u32 = 10_000;
/// Longest event id accepted in a path.
const EVENT_ID_LEN_MAX: usize = 100;

/// Why a webhook-endpoint call was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookEndpointError {
    #[error("no webhook endpoint {endpoint_id:?}")]
    NotFound { endpoint_id: String },
    #[error("no event {event_id:?} of this merchant")]
    EventNotFound { event_id: String },
    #[error("url: {0}")]
    Url(UrlRefusal),
    #[error("event_types: {0}")]
    EventTypes(String),
    #[error("description: at most {DESCRIPTION_CHARS_MAX} characters")]
    Description,
    #[error("the endpoint is disabled; enable it first (PATCH enabled=true)")]
    Disabled,
    #[error("database error")]
    Store(#[from] StoreError),
}

/// Input of a delivery job.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeliveryPayload {
    pub endpoint_id: String,
    pub event_id: String,
}

/// A new endpoint as the API reads it.
pub struct NewEndpoint {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
}

/// A change of an endpoint: `None` leaves a field as it is.
#[derive(Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// The endpoints' use cases.
#[derive(Clone)]
pub struct WebhookEndpointsService {
    store: Store,
    allow_private_urls: bool,
    secret_grace_ms: i64,
    attempts_max: i64,
}

impl WebhookEndpointsService {
    /// Over a migrated store, with `[webhooks]`.
    pub fn new(store: Store, config: &WebhooksConfig) -> WebhookEndpointsService {
        WebhookEndpointsService {
            store,
            allow_private_urls: config.allow_private_urls,
            secret_grace_ms: config.outbound.secret_grace_ms,
            attempts_max: delivery_attempts_max(config),
        }
    }

    /// Creates an endpoint with a fresh secret (the record carries it; the API shows it once).
    pub async fn create(
        &self,
        merchant_id: &MerchantId,
        new: NewEndpoint,
    ) -> Result<WebhookEndpointRecord, WebhookEndpointError> {
        let url = self.checked_url(&new.url).await?;
        check_event_types(&new.event_types)?;
        check_description(&new.description)?;
        let now = now_ms();
        let endpoint = WebhookEndpointRecord {
            id: kassa_core::ids::generate("we"),
            merchant_id: merchant_id.to_string(),
            url,
            event_types: new.event_types,
            description: new.description,
            enabled: new.enabled,
            disabled_reason: None,
            secret: new_secret(),
            previous_secret: None,
            previous_secret_until_ms: None,
            failing_since_ms: None,
            created_at_ms: now,
            updated_at_ms: now,
        };
        self.store.insert_webhook_endpoint(&endpoint).await?;
        Ok(endpoint)
    }

    /// One endpoint of the merchant.
    pub async fn get(
        &self,
        merchant_id: &MerchantId,
        endpoint_id: &str,
    ) -> Result<WebhookEndpointRecord, WebhookEndpointError> {
        self.store
            .webhook_endpoint(endpoint_id)
            .await?
            .filter(|e| e.merchant_id == merchant_id.as_str())
            .ok_or_else(|| WebhookEndpointError::NotFound {
                endpoint_id: endpoint_id.to_string(),
            })
    }

    /// The merchant's endpoints, newest first.
    pub async fn list(
        &self,
        merchant_id: &MerchantId,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<WebhookEndpointRecord>, WebhookEndpointError> {
        Ok(self
            .store
            .list_webhook_endpoints(merchant_id.as_str(), before, limit)
            .await?)
    }

    /// Changes the named fields; enabling an endpoint Kassa disabled clears its failure
    /// record, so the 5-day clock starts again.
    pub async fn update(
        &self,
        merchant_id: &MerchantId,
        endpoint_id: &str,
        patch: EndpointPatch,
    ) -> Result<WebhookEndpointRecord, WebhookEndpointError> {
        let mut endpoint = self.get(merchant_id, endpoint_id).await?;
        if let Some(url) = patch.url {
            endpoint.url = self.checked_url(&url).await?;
        }
        if let Some(event_types) = patch.event_types {
            check_event_types(&event_types)?;
            endpoint.event_types = event_types;
        }
        if let Some(description) = patch.description {
            check_description(&description)?;
            endpoint.description = description;
        }
        if let Some(enabled) = patch.enabled {
            if enabled && !endpoint.enabled {
                endpoint.disabled_reason = None;
                endpoint.failing_since_ms = None;
            }
            endpoint.enabled = enabled;
        }
        endpoint.updated_at_ms = now_ms();
        self.save(endpoint).await
    }

    /// A new secret; the old one keeps signing beside it for `secret_grace_ms`.
    pub async fn rotate_secret(
        &self,
        merchant_id: &MerchantId,
        endpoint_id: &str,
    ) -> Result<WebhookEndpointRecord, WebhookEndpointError> {
        let mut endpoint = self.get(merchant_id, endpoint_id).await?;
        let now = now_ms();
        let old = std::mem::replace(&mut endpoint.secret, new_secret());
        endpoint.previous_secret = Some(old);
        endpoint.previous_secret_until_ms = Some(now + self.secret_grace_ms);
        endpoint.updated_at_ms = now;
        self.save(endpoint).await
    }

    /// Deletes an endpoint; its pending deliveries find it gone and stop.
    pub async fn delete(
        &self,
        merchant_id: &MerchantId,
        endpoint_id: &str,
    ) -> Result<(), WebhookEndpointError> {
        if self
            .store
            .delete_webhook_endpoint(merchant_id.as_str(), endpoint_id)
            .await?
        {
            Ok(())
        } else {
            Err(not_found(endpoint_id))
        }
    }

    /// An endpoint's attempts, newest first, below the `before_id` cursor.
    pub async fn attempts(
        &self,
        merchant_id: &MerchantId,
        endpoint_id: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<WebhookAttempt>, WebhookEndpointError> {
        self.get(merchant_id, endpoint_id).await?;
        Ok(self
            .store
            .list_webhook_attempts(endpoint_id, before_id, limit)
            .await?)
    }

    /// Sends one event to the endpoint again, whether or not it was delivered or matches the
    /// endpoint's filter; `false` when a delivery of it is already queued.
    pub async fn replay(
        &self,
        merchant_id: &MerchantId,
        endpoint_id: &str,
        event_id: &str,
    ) -> Result<bool, WebhookEndpointError> {
        let endpoint = self.enabled(merchant_id, endpoint_id).await?;
        let event = match event_id.len() <= EVENT_ID_LEN_MAX {
            true => self.store.outbox_event(event_id).await?,
            false => None,
        };
        let of_merchant = event.is_some_and(|e| e.merchant_id == merchant_id.as_str());
        if !of_merchant {
            return Err(WebhookEndpointError::EventNotFound {
                event_id: event_id.to_string(),
            });
        }
        let mut tx = self.store.begin().await?;
        let queued = enqueue_delivery_in(
            &self.store,
            &mut tx,
            &endpoint.id,
            event_id,
            self.attempts_max,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(queued)
    }

    /// Queues again every failed message of the endpoint last changed at or after
    /// `since_ms` (at most [`RECOVER_MESSAGES_MAX`]); returns how many were queued.
    pub async fn recover(
        &self,
        merchant_id: &MerchantId,
        endpoint_id: &str,
        since_ms: i64,
    ) -> Result<usize, WebhookEndpointError> {
        let endpoint = self.enabled(merchant_id, endpoint_id).await?;
        let failed = self
            .store
            .failed_webhook_messages_since(&endpoint.id, since_ms, RECOVER_MESSAGES_MAX)
            .await?;
        let mut tx = self.store.begin().await?;
        let mut queued = 0;
        for event_id in &failed {
            if enqueue_delivery_in(
                &self.store,
                &mut tx,
                &endpoint.id,
                event_id,
                self.attempts_max,
            )
            .await?
            {
                queued += 1;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(queued)
    }

    async fn enabled(
        &self,
        merchant_id: &MerchantId,
        endpoint_id: &str,
    ) -> Result<WebhookEndpointRecord, WebhookEndpointError> {
        let endpoint = self.get(merchant_id, endpoint_id).await?;
        if !endpoint.enabled {
            return Err(WebhookEndpointError::Disabled);
        }
        Ok(endpoint)
    }

    async fn save(
        &self,
        endpoint: WebhookEndpointRecord,
    ) -> Result<WebhookEndpointRecord, WebhookEndpointError> {
        if self.store.update_webhook_endpoint(&endpoint).await? {
            Ok(endpoint)
        } else {
            Err(not_found(&endpoint.id))
        }
    }

    async fn checked_url(&self, url: &str) -> Result<String, WebhookEndpointError> {
        check_url(url, self.allow_private_urls)
            .await
            .map(|url| url.to_string())
            .map_err(WebhookEndpointError::Url)
    }
}

fn not_found(endpoint_id: &str) -> WebhookEndpointError {
    WebhookEndpointError::NotFound {
        endpoint_id: endpoint_id.to_string(),
    }
}

/// Attempts one message gets: one more than the retry schedule has waits.
pub fn delivery_attempts_max(config: &WebhooksConfig) -> i64 {
    config.outbound.retry_schedule_ms.len() as i64 + 1
}

/// Marks the message pending and queues its delivery job on `conn` (inside the caller's
/// transaction); `false` when a delivery of it is already queued or running.
pub async fn enqueue_delivery_in(
    store: &Store,
    conn: &mut Conn,
    endpoint_id: &str,
    event_id: &str,
    attempts_max: i64,
) -> Result<bool, StoreError> {
    store
        .upsert_webhook_message_in(conn, endpoint_id, event_id)
        .await?;
    let payload =
        serde_json::json!({ "endpoint_id": endpoint_id, "event_id": event_id }).to_string();
    let dedupe_key = format!("{endpoint_id}:{event_id}");
    let job = NewJob {
        kind: WEBHOOK_DELIVER,
        payload: &payload,
        dedupe_key: Some(&dedupe_key),
        run_at_ms: now_ms(),
        attempts_max,
        repeat_every_ms: None,
    };
    Ok(store.enqueue_job_on(conn, &job).await?.is_some())
}

/// Whether an endpoint with these filters wants events of `event_type`: `*` takes all,
/// `payment.*` every type under `payment.`, anything else exactly its type.
pub fn filter_matches(event_types: &[String], event_type: &str) -> bool {
    event_types
        .iter()
        .any(|filter| match filter.strip_suffix('*') {
            Some("") => true,
            Some(prefix) => event_type.starts_with(prefix),
            None => filter == event_type,
        })
}

/// Filters are `*`, `<prefix>.*` or a type: lower-case letters, digits, `_` and `.`.
fn check_event_types(event_types: &[String]) -> Result<(), WebhookEndpointError> {
    let refuse = |why: String| Err(WebhookEndpointError::EventTypes(why));
    if event_types.is_empty() || event_types.len() > EVENT_TYPES_MAX {
        return refuse(format!("list 1 to {EVENT_TYPES_MAX} filters"));
    }
    for filter in event_types {
        let name = filter.strip_suffix(".*").unwrap_or(filter);
        let well_formed = filter == "*"
            || (!name.is_empty()
                && filter.len() <= EVENT_TYPE_LEN_MAX
                && !name.starts_with('.')
                && !name.ends_with('.')
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'
                }));
        if !well_formed {
            return refuse(format!(
                "{filter:?} is not \"*\", \"<prefix>.*\" or an event type like \"payment.captured\""
            ));
        }
    }
    Ok(())
}

fn check_description(description: &str) -> Result<(), WebhookEndpointError> {
    if description.chars().count() > DESCRIPTION_CHARS_MAX {
        return Err(WebhookEndpointError::Description);
    }
    Ok(())
}

/// The secrets that sign a delivery at `now_ms`: the current one, and the previous one
/// during its grace period.
pub fn signing_secrets(endpoint: &WebhookEndpointRecord, now_ms: i64) -> Vec<&SecretString> {
    let mut secrets = vec![&endpoint.secret];
    if let (Some(previous), Some(until_ms)) =
        (&endpoint.previous_secret, endpoint.previous_secret_until_ms)
    {
        if now_ms < until_ms {
            secrets.push(previous);
        }
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn filters_match_all_a_prefix_or_one_type() {
        assert!(filter_matches(&filters(&["*"]), "payout.paid"));
        assert!(filter_matches(&filters(&["payment.*"]), "payment.captured"));
        assert!(!filter_matches(&filters(&["payment.*"]), "payout.paid"));
        assert!(
            !filter_matches(&filters(&["payment.*"]), "payments.x"),
            "a prefix ends at a dot"
        );
        assert!(filter_matches(
            &filters(&["refund.succeeded", "payout.paid"]),
            "payout.paid"
        ));
        assert!(!filter_matches(
            &filters(&["payout.paid"]),
            "payout.paid_out"
        ));
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in [
            &[][..],
            &["Payment.*"],
            &["payment*"],
            &["*.paid"],
            &[".*"],
            &["a b"],
            &["payment."],
        ] {
            assert!(check_event_types(&filters(bad)).is_err(), "{bad:?}");
        }
        for good in [
            &["*"][..],
            &["payment.*", "payout.paid"],
            &["webhook_endpoint.disabled"],
        ] {
            assert!(check_event_types(&filters(good)).is_ok(), "{good:?}");
        }
    }
}
