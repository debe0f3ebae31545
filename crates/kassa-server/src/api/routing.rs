//! `/v1/admin/routing`: the routing document (rules, switches, decline classes, commissions)
//! read and replaced without a deploy, its audited history, and provider health.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kassa_core::routing::RoutingDocument;
use kassa_store::routing::RoutingVersion;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::api::{check_note, page_limit, version_cursor, ApiJson, ApiQuery, PageQuery};
use crate::auth::{roles, Admin};
use crate::error::{ApiError, ErrorBody};
use crate::service::routing::parse_stored;
use crate::AppState;

/// One version of the routing document.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingVersionView {
    /// `null` before the first version is stored (then `document` is empty: every account
    /// that takes a payment, in account id order).
    pub version: Option<i64>,
    /// Rules, switches, decline classes and commissions (see the README's routing section).
    #[schema(value_type = Object)]
    pub document: Value,
    /// Who stored it: `config` for the configuration file's seed, else the admin key id.
    pub actor: Option<String>,
    pub note: Option<String>,
    /// RFC 3339.
    pub created_at: Option<String>,
}

impl RoutingVersionView {
    fn of(stored: &RoutingVersion) -> Result<RoutingVersionView, ApiError> {
        let document = parse_stored(stored)?;
        Ok(RoutingVersionView {
            version: Some(stored.version),
            document: serde_json::to_value(document).unwrap_or_default(),
            actor: Some(stored.actor.clone()),
            note: stored.note.clone(),
            created_at: Some(crate::api::rfc3339(stored.created_at_ms)),
        })
    }
}

/// A new routing document.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingChange {
    /// The whole document; it replaces the one in force.
    #[schema(value_type = Object)]
    pub document: Value,
    /// The version this change was made from; when another change was stored since, the
    /// answer is 409 `routing_version_conflict` and nothing changes. Omitted: the newest.
    pub based_on_version: Option<i64>,
    /// Why, for the audit (at most 500 characters).
    #[schema(max_length = 500)]
    pub note: Option<String>,
}

/// The routing document in force (roles `admin` or `finance`).
#[utoipa::path(get, path = "/v1/admin/routing", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = RoutingVersionView), (status = 403, body = ErrorBody)))]
pub async fn get_routing(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN, roles::FINANCE])?;
    let view = match state.routing.latest().await? {
        Some(stored) => RoutingVersionView::of(&stored)?,
        None => RoutingVersionView {
            version: None,
            document: serde_json::to_value(RoutingDocument::default()).unwrap_or_default(),
            actor: None,
            note: None,
            created_at: None,
        },
    };
    Ok(Json(view).into_response())
}

/// Replaces the routing document (role `admin`). Applies at once on this node and within
/// a second on every other node; the old version stays in the history.
#[utoipa::path(put, path = "/v1/admin/routing", tag = "admin", request_body = RoutingChange,
    security(("bearer" = [])),
    responses(
        (status = 200, body = RoutingVersionView),
        (status = 403, body = ErrorBody),
        (status = 409, description = "routing_version_conflict", body = ErrorBody),
        (status = 422, description = "invalid_routing_document, unknown_provider_account", body = ErrorBody),
    ))]
pub async fn put_routing(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(change): ApiJson<RoutingChange>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    check_note(change.note.as_deref())?;
    let document: RoutingDocument = serde_json::from_value(change.document).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_routing_document",
            format!("invalid routing document: {e}"),
        )
        .with_details(serde_json::json!({ "place": "document" }))
    })?;
    let based_on = match change.based_on_version {
        Some(version) => Some(version),
        None => state.store.routing_version_number().await?,
    };
    let stored = state
        .routing
        .replace(based_on, document, &admin.key_id, change.note.as_deref())
        .await?;
    Ok(Json(RoutingVersionView::of(&stored)?).into_response())
}

/// Earlier versions of the routing document, newest first: who changed it, when, why, and
/// the document each change left (roles `admin` or `finance`).
#[utoipa::path(get, path = "/v1/admin/routing/history", tag = "admin", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "{data: [version], next_cursor}", body = Object),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn routing_history(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN, roles::FINANCE])?;
    let limit = page_limit(&state.config.pagination, page.limit)?;
    let before = version_cursor(page.cursor.as_deref())?;
    let mut versions = state.routing.history(before, limit + 1).await?;
    let next_cursor = crate::api::split_page(&mut versions, limit, |v| v.version.to_string());
    let data = versions
        .iter()
        .map(RoutingVersionView::of)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "data": data, "next_cursor": next_cursor })).into_response())
}

/// Every provider account's circuit, whether it is degraded, and its recent calls as this
/// node measured them: approval and failure rates, p95 time, share within the SLA (roles
/// `admin` or `finance`).
#[utoipa::path(get, path = "/v1/admin/routing/health", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "{accounts: [...]}", body = Object),
        (status = 403, body = ErrorBody)))]
pub async fn routing_health(
    State(state): State<AppState>,
    admin: Admin,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN, roles::FINANCE])?;
    let accounts = state.routing.health();
    Ok(Json(serde_json::json!({ "accounts": accounts })).into_response())
}

/// The period of the success-rate report.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuccessRateQuery {
    /// Hours back from now, 1 to 720 (default 24).
    pub hours: Option<u32>,
}

/// How the success-rate mode's arms did: finished deposits and approval rate of the exploit
/// arm (best measured account first), the holdout (rules alone) and the explore arm, the
/// uplift of exploit over holdout and whether it is significant (roles `admin` or
/// `finance`). Counts every node's deposits.
#[utoipa::path(get, path = "/v1/admin/routing/success-rate", tag = "admin",
    params(SuccessRateQuery), security(("bearer" = [])),
    responses((status = 200, description = "{hours, arms: [...], uplift_permille, z, significant}",
        body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn routing_success_rate(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<SuccessRateQuery>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN, roles::FINANCE])?;
    let max = crate::service::success_rate::REPORT_HOURS_MAX;
    let hours = query.hours.unwrap_or(24);
    if !(1..=max).contains(&hours) {
        return Err(ApiError::validation("hours", format!("must be 1 to {max}")));
    }
    let report = state.routing.success_rate_report(hours).await?;
    Ok(Json(report).into_response())
}
