//! `/v1/admin/webhooks/inbound`: the inbound delivery log for operators (admin keys) —
//! search, one delivery with its headers and exact body, and replays of dead-lettered (or
//! any logged) deliveries, one or in bulk (ADR 45).

use axum::extract::State;
use axum::Json;
use base64::Engine;
use kassa_store::inbound_log::{DeliveryFilter, DeliveryOrder, WebhookDelivery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{decode_keyset_cursor, encode_keyset_cursor, page_limit, rfc3339};
use crate::api::{ApiJson, ApiPath, ApiQuery};
use crate::auth::{roles, Admin};
use crate::error::{ApiError, ErrorBody};
use crate::service::inbound_log::{self, ReplayOutcome};
use crate::service::provider_events::DEAD_LETTERED;
use crate::AppState;

/// Longest text filter accepted (ids, provider, outcome, source).
const FILTER_LEN_MAX: usize = 255;

/// Replays of one delivery shown with it.
const REPLAYS_SHOWN_MAX: u32 = 100;

/// One logged inbound delivery, without its headers and body.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboundDeliveryView {
    pub delivery_id: String,
    /// The provider account the delivery was addressed to.
    pub provider: String,
    /// The inbound source: `http` (webhooks).
    pub source: String,
    /// The peer address it came from.
    pub source_address: Option<String>,
    pub event_id: Option<String>,
    pub payment_id: Option<String>,
    pub payout_id: Option<String>,
    /// `processed`, `ignored`, `duplicate`, `dead_lettered` (our failure: kept for a replay),
    /// `ip_refused`, `invalid_signature`, `stale`, `malformed`, `unknown_payment`,
    /// `unknown_payout`, `mismatch`, `amount_too_large`, `unknown_provider`.
    pub outcome: String,
    /// The status Kassa answered.
    pub http_status: u16,
    /// When it arrived (a replay: when it ran).
    pub received_at: String,
    /// Size of the stored body (an unverifiable delivery keeps an excerpt).
    pub raw_body_size_bytes: usize,
    /// A replay: the delivery it ran again.
    pub replay_of: Option<String>,
    /// A replay: the admin key that asked for it.
    pub replayed_by: Option<String>,
    /// The replay that settled this delivery.
    pub resolved_by: Option<String>,
}

/// One delivery with its headers (secrets removed; the signature kept) and body.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboundDeliveryDetail {
    #[serde(flatten)]
    pub delivery: InboundDeliveryView,
    #[schema(value_type = Object)]
    pub headers: serde_json::Value,
    /// The body as text (bytes that are not UTF-8 shown as U+FFFD).
    pub raw_body: String,
    /// The exact bytes, base64.
    pub raw_body_base64: String,
    /// Its replays, oldest first.
    pub replays: Vec<InboundDeliveryView>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboundDeliveryPage {
    pub data: Vec<InboundDeliveryView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Which deliveries to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboundSearchQuery {
    pub payment_id: Option<String>,
    pub payout_id: Option<String>,
    pub provider: Option<String>,
    pub event_id: Option<String>,
    pub outcome: Option<String>,
    /// `http`.
    pub source: Option<String>,
    /// RFC 3339: received at or after.
    pub from: Option<String>,
    /// RFC 3339: received before.
    pub to: Option<String>,
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Deliveries to replay; every field is optional, `outcome` is `dead_lettered` unless given.
/// Only deliveries as they arrived (not replays) that no replay has settled are taken.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkReplayInput {
    pub payment_id: Option<String>,
    pub payout_id: Option<String>,
    pub provider: Option<String>,
    pub event_id: Option<String>,
    #[schema(example = "dead_lettered")]
    pub outcome: Option<String>,
    pub source: Option<String>,
    /// RFC 3339: received at or after.
    pub from: Option<String>,
    /// RFC 3339: received before.
    pub to: Option<String>,
    /// Most deliveries replayed by this call (`webhooks.replay_bulk_max` at most and by
    /// default).
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// What a replay did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayView {
    /// The delivery run again.
    pub delivery_id: String,
    /// The replay's own log row (`GET /v1/admin/webhooks/inbound/{delivery_id}`).
    pub replay_delivery_id: String,
    /// `processed`, `ignored`, `duplicate` (answered before: nothing moved),
    /// `dead_lettered` (failed on our side again) or a refusal.
    pub outcome: String,
    /// The status the provider would have got.
    pub http_status: u16,
    /// The body the provider would have got.
    #[schema(value_type = Object)]
    pub answer: serde_json::Value,
}

/// What a bulk replay did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkReplayView {
    /// Deliveries replayed by this call.
    pub replayed: usize,
    /// Replays per outcome.
    #[schema(value_type = Object)]
    pub outcomes: std::collections::BTreeMap<String, u32>,
    /// More deliveries match: call again.
    pub more: bool,
    /// Each replay, oldest delivery first.
    pub data: Vec<ReplayView>,
}

/// The inbound delivery log, newest first, by payment, payout, provider, event id, outcome,
/// source and time (roles `admin` or `finance`).
#[utoipa::path(get, path = "/v1/admin/webhooks/inbound", tag = "admin", params(InboundSearchQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = InboundDeliveryPage),
        (status = 422, description = "a filter too long, a bad time, limit or cursor", body = ErrorBody),
    ))]
pub async fn search_inbound(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<InboundSearchQuery>,
) -> Result<Json<InboundDeliveryPage>, ApiError> {
    admin.require_any(&[roles::ADMIN, roles::FINANCE])?;
    let filter = filter_of(FilterInput {
        payment_id: query.payment_id,
        payout_id: query.payout_id,
        provider: query.provider,
        event_id: query.event_id,
        outcome: query.outcome,
        source: query.source,
        from: query.from,
        to: query.to,
    })?;
    let limit = page_limit(&state.config.pagination, query.limit)?;
    let cursor = query
        .cursor
        .as_deref()
        .map(decode_keyset_cursor)
        .transpose()?;
    let mut found = state
        .store
        .search_webhook_deliveries(&filter, DeliveryOrder::NewestFirst(cursor), limit + 1)
        .await?;
    let next_cursor = if found.len() > limit as usize {
        found.truncate(limit as usize);
        found
            .last()
            .map(|d| encode_keyset_cursor(d.received_at_ms, &d.id))
    } else {
        None
    };
    Ok(Json(InboundDeliveryPage {
        data: found.iter().map(view).collect(),
        next_cursor,
    }))
}

/// One inbound delivery with its headers, exact body and replays (roles `admin` or
/// `finance`).
#[utoipa::path(get, path = "/v1/admin/webhooks/inbound/{delivery_id}", tag = "admin",
    params(("delivery_id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, body = InboundDeliveryDetail),
        (status = 404, description = "delivery_not_found", body = ErrorBody),
    ))]
pub async fn get_inbound(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(delivery_id): ApiPath<String>,
) -> Result<Json<InboundDeliveryDetail>, ApiError> {
    admin.require_any(&[roles::ADMIN, roles::FINANCE])?;
    let delivery = find(&state, &delivery_id).await?;
    let replays_of = DeliveryFilter {
        replay_of: Some(delivery.id.clone()),
        ..DeliveryFilter::default()
    };
    let replays = state
        .store
        .search_webhook_deliveries(&replays_of, DeliveryOrder::OldestFirst, REPLAYS_SHOWN_MAX)
        .await?;
    Ok(Json(InboundDeliveryDetail {
        headers: serde_json::from_str(&delivery.headers).unwrap_or_default(),
        raw_body: String::from_utf8_lossy(&delivery.raw_body).into_owned(),
        raw_body_base64: base64::engine::general_purpose::STANDARD.encode(&delivery.raw_body),
        replays: replays.iter().map(view).collect(),
        delivery: view(&delivery),
    }))
}

/// Runs one logged delivery again through the provider-event pipeline (role `admin`): its
/// signature is checked again on the stored bytes and its timestamp against the time it
/// arrived; an event already answered is a `duplicate` and moves nothing. Audited as a log
/// row of its own. An `Idempotency-Key` replays this answer.
#[utoipa::path(post, path = "/v1/admin/webhooks/inbound/{delivery_id}/replay", tag = "admin",
    params(("delivery_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional; a repeat replays the first answer")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the replay ran (its outcome may be a refusal)", body = ReplayView),
        (status = 404, description = "delivery_not_found", body = ErrorBody),
        (status = 409, description = "idempotency_key_reused, idempotency_key_in_use", body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
pub async fn replay_inbound(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(delivery_id): ApiPath<String>,
) -> Result<Json<ReplayView>, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let delivery = find(&state, &delivery_id).await?;
    let outcome = inbound_log::replay(&state, &delivery, &admin.key_id).await?;
    Ok(Json(replay_view(outcome)))
}

/// Replays, oldest first, the deliveries matching a filter (`dead_lettered` by default) that
/// no replay has settled, at most `webhooks.replay_bulk_max` per call and only as many as
/// fit in half of `http.request_timeout_ms` (`more: true`: call again) (role `admin`).
#[utoipa::path(post, path = "/v1/admin/webhooks/inbound/replay", tag = "admin",
    request_body = BulkReplayInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional; a repeat replays the first answer")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = BulkReplayView),
        (status = 409, description = "idempotency_key_reused, idempotency_key_in_use", body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
pub async fn replay_inbound_bulk(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(input): ApiJson<BulkReplayInput>,
) -> Result<Json<BulkReplayView>, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let max = state.config.webhooks.replay_bulk_max;
    let limit = input.limit.unwrap_or(max);
    if limit == 0 || limit > max {
        return Err(ApiError::validation(
            "limit",
            format!("must be between 1 and {max} (webhooks.replay_bulk_max)"),
        ));
    }
    let filter = filter_of(FilterInput {
        payment_id: input.payment_id,
        payout_id: input.payout_id,
        provider: input.provider,
        event_id: input.event_id,
        outcome: Some(input.outcome.unwrap_or_else(|| DEAD_LETTERED.into())),
        source: input.source,
        from: input.from,
        to: input.to,
    })?;
    // Half the request's time: whatever is left is reported as `more`, never cut off.
    let budget = std::time::Duration::from_millis(state.config.http.request_timeout_ms / 2);
    let deadline = std::time::Instant::now() + budget;
    let report =
        inbound_log::replay_matching(&state, &filter, limit, &admin.key_id, deadline).await?;
    Ok(Json(BulkReplayView {
        replayed: report.replays.len(),
        outcomes: report.outcomes,
        more: report.more,
        data: report.replays.into_iter().map(replay_view).collect(),
    }))
}

/// The filters search and bulk replay share, as given.
struct FilterInput {
    payment_id: Option<String>,
    payout_id: Option<String>,
    provider: Option<String>,
    event_id: Option<String>,
    outcome: Option<String>,
    source: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn filter_of(input: FilterInput) -> Result<DeliveryFilter, ApiError> {
    let text = |field: &str, value: Option<String>| -> Result<Option<String>, ApiError> {
        match value {
            Some(v) if v.is_empty() || v.len() > FILTER_LEN_MAX => Err(ApiError::validation(
                field,
                format!("must be 1 to {FILTER_LEN_MAX} bytes"),
            )),
            other => Ok(other),
        }
    };
    Ok(DeliveryFilter {
        payment_id: text("payment_id", input.payment_id)?,
        payout_id: text("payout_id", input.payout_id)?,
        provider: text("provider", input.provider)?,
        event_id: text("event_id", input.event_id)?,
        outcome: text("outcome", input.outcome)?,
        source: text("source", input.source)?,
        from_ms: time_ms("from", input.from.as_deref())?,
        to_ms: time_ms("to", input.to.as_deref())?,
        ..DeliveryFilter::default()
    })
}

/// An RFC 3339 time as milliseconds since the Unix epoch.
fn time_ms(field: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::validation(field, "must be an RFC 3339 time"))?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map(Some)
        .map_err(|_| ApiError::validation(field, "is out of range"))
}

async fn find(state: &AppState, delivery_id: &str) -> Result<WebhookDelivery, ApiError> {
    state
        .store
        .webhook_delivery(delivery_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "delivery_not_found",
                format!("no inbound delivery {delivery_id:?}"),
            )
        })
}

fn view(d: &WebhookDelivery) -> InboundDeliveryView {
    InboundDeliveryView {
        delivery_id: d.id.clone(),
        provider: d.provider.clone(),
        source: d.source.clone(),
        source_address: d.source_address.clone(),
        event_id: d.event_id.clone(),
        payment_id: d.payment_id.clone(),
        payout_id: d.payout_id.clone(),
        outcome: d.outcome.clone(),
        http_status: d.http_status,
        received_at: rfc3339(d.received_at_ms),
        raw_body_size_bytes: d.raw_body.len(),
        replay_of: d.replay_of.clone(),
        replayed_by: d.replayed_by.clone(),
        resolved_by: d.resolved_by.clone(),
    }
}

fn replay_view(outcome: ReplayOutcome) -> ReplayView {
    ReplayView {
        delivery_id: outcome.original_id,
        replay_delivery_id: outcome.replay_id,
        outcome: outcome.outcome,
        http_status: outcome.http_status,
        answer: outcome.answer,
    }
}
