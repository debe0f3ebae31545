//! `/v1/admin/*`: platform administration with admin keys and roles.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{ApiJson, ApiQuery};
use crate::auth::{generate_key, roles, Admin};
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// A new merchant (brand).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MerchantInput {
    /// Display name.
    /// 1 to 200 characters (surrounding white space is dropped).
    #[schema(example = "Lucky Star Casino", min_length = 1, max_length = 200)]
    pub name: String,
}

/// A created merchant and its first API key. The key is shown once and stored only hashed.
#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantCreated {
    pub merchant_id: String,
    pub name: String,
    pub api_key: String,
}

/// Creates a merchant with its first API key: a merchant key (no admin roles), which acts
/// for this merchant on the merchant endpoints and gets 403 on `/v1/admin/*`.
#[utoipa::path(post, path = "/v1/admin/merchants", tag = "admin", request_body = MerchantInput,
    security(("bearer" = [])),
    responses(
        (status = 201, body = MerchantCreated),
        (status = 403, description = "not an admin key with role admin", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ))]
pub async fn create_merchant(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(input): ApiJson<MerchantInput>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::validation("name", "must be 1 to 200 characters"));
    }
    let merchant_id = kassa_core::ids::MerchantId::generate();
    let api_key = generate_key("sk_live");
    state
        .store
        .create_merchant(merchant_id.as_str(), name)
        .await?;
    state
        .store
        .create_api_key(
            &kassa_core::ids::generate("key"),
            Some(merchant_id.as_str()),
            &state.auth.hash_key(&api_key),
            &api_key[..12],
            &[],
        )
        .await?;
    tracing::info!(merchant_id = %merchant_id, by = %admin.key_id, "merchant created");
    let created = MerchantCreated {
        merchant_id: merchant_id.into_string(),
        name: name.to_string(),
        api_key,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Recomputes every balance from the journal and checks the ledger's invariants (roles
/// `admin` or `finance`). `ok: false` lists what disagrees.
#[utoipa::path(get, path = "/v1/admin/ledger/verify", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the report", body = Object),
        (status = 403, body = ErrorBody),
    ))]
pub async fn verify_ledger(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN, roles::FINANCE])?;
    let report = state.store.verify_ledger().await?;
    Ok(Json(report.to_json()).into_response())
}

/// Which deliveries to list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only this payment's (or payout's).
    pub payment_id: Option<String>,
    /// At most this many (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// The inbound provider webhook delivery log, newest first: raw body, headers (secrets
/// removed), outcome and the status Kassa answered (roles `admin` or `finance`).
#[utoipa::path(get, path = "/v1/admin/webhook-deliveries", tag = "admin", params(DeliveryQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "{data: [delivery]}", body = Object), (status = 403, body = ErrorBody)))]
pub async fn webhook_deliveries(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN, roles::FINANCE])?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 500"));
    }
    let deliveries = state
        .store
        .webhook_deliveries(query.payment_id.as_deref(), limit)
        .await?;
    let data: Vec<serde_json::Value> = deliveries
        .into_iter()
        .map(|d| {
            serde_json::json!({
                "delivery_id": d.id,
                "provider": d.provider,
                "event_id": d.event_id,
                "payment_id": d.payment_id,
                "payout_id": d.payout_id,
                "outcome": d.outcome,
                "http_status": d.http_status,
                "headers": serde_json::from_str::<serde_json::Value>(&d.headers).unwrap_or_default(),
                "raw_body": String::from_utf8_lossy(&d.raw_body),
                "received_at": crate::api::rfc3339(d.received_at_ms),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "data": data })).into_response())
}
