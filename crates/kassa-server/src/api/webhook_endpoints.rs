//! `/v1/webhook-endpoints`: where Kassa sends the merchant's events (Standard Webhooks), the
//! attempts log, replay and recovery (merchant keys).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kassa_store::webhook_endpoints::{WebhookAttempt, WebhookEndpointRecord};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{decode_keyset_cursor, encode_keyset_cursor, page_limit, rfc3339, split_page};
use crate::api::{ApiJson, ApiPath, ApiQuery, PageQuery};
use crate::auth::Merchant;
use crate::error::{ApiError, ErrorBody};
use crate::service::webhook_endpoints::{EndpointPatch, NewEndpoint};
use crate::AppState;

/// An endpoint. `secret` is present only in the answers of create and rotate-secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointView {
    /// `we_…`.
    pub endpoint_id: String,
    pub url: String,
    /// Event-type filters: `*`, `payment.*`, `payout.paid`.
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// Why Kassa disabled it: `gone` (it answered 410), `failing` (every attempt failed for
    /// `webhooks.outbound.disable_after_failing_ms`).
    pub disabled_reason: Option<String>,
    /// `whsec_…`, the key of the `webhook-signature` HMAC; shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Until when the previous secret still signs beside this one (after a rotation).
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointInput {
    /// An http(s) URL on a public address.
    #[schema(max_length = 2048)]
    pub url: String,
    /// Event-type filters; `["*"]` when absent.
    pub event_types: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// `true` when absent.
    pub enabled: Option<bool>,
}

/// A change of an endpoint; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointPatch {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// A page of endpoints, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointPage {
    pub data: Vec<WebhookEndpointView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttemptView {
    pub attempt_id: i64,
    /// The event (`webhook-id`).
    pub event_id: String,
    /// 1 for a message's first try.
    pub attempt: i64,
    /// The status answered; absent when no answer came.
    pub http_status: Option<i64>,
    pub latency_ms: i64,
    /// At most 1 KiB of the answer's body.
    pub response_excerpt: Option<String>,
    /// Why no answer came (timeout, refused connection, a non-public address).
    pub error: Option<String>,
    pub attempted_at: String,
}

/// A page of attempts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttemptPage {
    pub data: Vec<WebhookAttemptView>,
    pub next_cursor: Option<String>,
}

/// What a replay or recovery queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedView {
    /// Messages queued for delivery (a replay of one already queued queues none).
    pub queued: usize,
}

/// Since when to recover.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverInput {
    /// RFC 3339 time; failed messages last tried at or after it are queued again.
    pub since: String,
}

fn view(endpoint: &WebhookEndpointRecord, with_secret: bool) -> WebhookEndpointView {
    WebhookEndpointView {
        endpoint_id: endpoint.id.clone(),
        url: endpoint.url.clone(),
        event_types: endpoint.event_types.clone(),
        description: endpoint.description.clone(),
        enabled: endpoint.enabled,
        disabled_reason: endpoint.disabled_reason.clone(),
        secret: with_secret.then(|| endpoint.secret.expose_secret().to_string()),
        previous_secret_expires_at: endpoint
            .previous_secret_until_ms
            .filter(|until| *until > kassa_store::now_ms())
            .map(rfc3339),
        created_at: rfc3339(endpoint.created_at_ms),
        updated_at: rfc3339(endpoint.updated_at_ms),
    }
}

fn attempt_view(a: &WebhookAttempt) -> WebhookAttemptView {
    WebhookAttemptView {
        attempt_id: a.id,
        event_id: a.event_id.clone(),
        attempt: a.attempt,
        http_status: a.http_status,
        latency_ms: a.latency_ms,
        response_excerpt: a.response_excerpt.clone(),
        error: a.error.clone(),
        attempted_at: rfc3339(a.attempted_at_ms),
    }
}

/// Creates an endpoint; the answer carries its secret, the only time it is shown.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", request_body = WebhookEndpointInput,
    security(("bearer" = [])),
    responses(
        (status = 201, body = WebhookEndpointView),
        (status = 422, description = "validation_failed, url_not_allowed (a non-public address)", body = ErrorBody),
    ))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiJson(input): ApiJson<WebhookEndpointInput>,
) -> Result<Response, ApiError> {
    let new = NewEndpoint {
        url: input.url,
        event_types: input.event_types.unwrap_or_else(|| vec!["*".into()]),
        description: input.description.unwrap_or_default(),
        enabled: input.enabled.unwrap_or(true),
    };
    let endpoint = state.webhook_endpoints.create(&merchant.id, new).await?;
    Ok((StatusCode::CREATED, Json(view(&endpoint, true))).into_response())
}

/// The merchant's endpoints, newest first.
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = WebhookEndpointPage), (status = 422, body = ErrorBody)))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<WebhookEndpointPage>, ApiError> {
    let limit = page_limit(&state.config.pagination, query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(decode_keyset_cursor)
        .transpose()?;
    let mut endpoints = state
        .webhook_endpoints
        .list(&merchant.id, before, limit + 1)
        .await?;
    let next_cursor = split_page(&mut endpoints, limit, |e| {
        encode_keyset_cursor(e.created_at_ms, &e.id)
    });
    Ok(Json(WebhookEndpointPage {
        data: endpoints.iter().map(|e| view(e, false)).collect(),
        next_cursor,
    }))
}

/// One endpoint.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{endpoint_id}", tag = "webhooks",
    params(("endpoint_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WebhookEndpointView), (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody)))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(endpoint_id): ApiPath<String>,
) -> Result<Json<WebhookEndpointView>, ApiError> {
    let endpoint = state
        .webhook_endpoints
        .get(&merchant.id, &endpoint_id)
        .await?;
    Ok(Json(view(&endpoint, false)))
}

/// Changes an endpoint; enabling one Kassa disabled starts its failure clock again.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{endpoint_id}", tag = "webhooks",
    params(("endpoint_id" = String, Path)), request_body = WebhookEndpointPatch, security(("bearer" = [])),
    responses(
        (status = 200, body = WebhookEndpointView),
        (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody),
        (status = 422, description = "validation_failed, url_not_allowed", body = ErrorBody),
    ))]
pub async fn update_endpoint(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(endpoint_id): ApiPath<String>,
    ApiJson(input): ApiJson<WebhookEndpointPatch>,
) -> Result<Json<WebhookEndpointView>, ApiError> {
    let patch = EndpointPatch {
        url: input.url,
        event_types: input.event_types,
        description: input.description,
        enabled: input.enabled,
    };
    let endpoint = state
        .webhook_endpoints
        .update(&merchant.id, &endpoint_id, patch)
        .await?;
    Ok(Json(view(&endpoint, false)))
}

/// Deletes an endpoint; deliveries still queued for it stop.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{endpoint_id}", tag = "webhooks",
    params(("endpoint_id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody)))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(endpoint_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .webhook_endpoints
        .delete(&merchant.id, &endpoint_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret, shown once; the old one keeps signing beside it for
/// `webhooks.outbound.secret_grace_ms` (24 h by default).
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpoint_id}/rotate-secret", tag = "webhooks",
    params(("endpoint_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WebhookEndpointView), (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(endpoint_id): ApiPath<String>,
) -> Result<Json<WebhookEndpointView>, ApiError> {
    let endpoint = state
        .webhook_endpoints
        .rotate_secret(&merchant.id, &endpoint_id)
        .await?;
    Ok(Json(view(&endpoint, true)))
}

/// The endpoint's delivery attempts, newest first.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{endpoint_id}/attempts", tag = "webhooks",
    params(("endpoint_id" = String, Path), PageQuery), security(("bearer" = [])),
    responses(
        (status = 200, body = WebhookAttemptPage),
        (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn list_attempts(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(endpoint_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<WebhookAttemptPage>, ApiError> {
    let limit = page_limit(&state.config.pagination, query.limit)?;
    let before_id = query
        .cursor
        .as_deref()
        .map(|cursor| {
            cursor
                .parse::<i64>()
                .map_err(|_| ApiError::validation("cursor", "is not a cursor this API returned"))
        })
        .transpose()?;
    let mut attempts = state
        .webhook_endpoints
        .attempts(&merchant.id, &endpoint_id, before_id, limit + 1)
        .await?;
    let next_cursor = split_page(&mut attempts, limit, |a| a.id.to_string());
    Ok(Json(WebhookAttemptPage {
        data: attempts.iter().map(attempt_view).collect(),
        next_cursor,
    }))
}

/// Sends one event to the endpoint again (a new delivery with the same `webhook-id`).
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpoint_id}/messages/{event_id}/replay", tag = "webhooks",
    params(("endpoint_id" = String, Path), ("event_id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 202, body = QueuedView),
        (status = 404, description = "webhook_endpoint_not_found, event_not_found", body = ErrorBody),
        (status = 409, description = "webhook_endpoint_disabled", body = ErrorBody),
    ))]
pub async fn replay_message(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath((endpoint_id, event_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let queued = state
        .webhook_endpoints
        .replay(&merchant.id, &endpoint_id, &event_id)
        .await?;
    let answer = QueuedView {
        queued: usize::from(queued),
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// Queues again every failed message of the endpoint since a time (at most 10000 per call).
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpoint_id}/recover", tag = "webhooks",
    params(("endpoint_id" = String, Path)), request_body = RecoverInput, security(("bearer" = [])),
    responses(
        (status = 202, body = QueuedView),
        (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody),
        (status = 409, description = "webhook_endpoint_disabled", body = ErrorBody),
        (status = 422, description = "validation_failed", body = ErrorBody),
    ))]
pub async fn recover(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(endpoint_id): ApiPath<String>,
    ApiJson(input): ApiJson<RecoverInput>,
) -> Result<Response, ApiError> {
    let since =
        time::OffsetDateTime::parse(&input.since, &time::format_description::well_known::Rfc3339)
            .map_err(|_| ApiError::validation("since", "must be an RFC 3339 time"))?;
    let since_ms = (since.unix_timestamp_nanos() / 1_000_000) as i64;
    let queued = state
        .webhook_endpoints
        .recover(&merchant.id, &endpoint_id, since_ms)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(QueuedView { queued })).into_response())
}
