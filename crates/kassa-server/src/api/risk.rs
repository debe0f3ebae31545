//! `/v1/admin/risk/rules`: the risk rule set of a merchant and jurisdiction (or of any),
//! read and replaced without a deploy, its audited history, and the backtest of a draft over
//! the stored decisions (ADR 62).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kassa_core::ids::MerchantId;
use kassa_core::risk::RuleSet;
use kassa_store::risk::RuleSetVersion;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::players::check_jurisdiction;
use crate::api::{check_note, page_limit, version_cursor, ApiJson, ApiQuery};
use crate::auth::{roles, Admin};
use crate::error::{ApiError, ErrorBody};
use crate::service::risk::{parse_stored, Backtest, Scope};
use crate::AppState;

/// The longest backtest window.
pub const BACKTEST_DAYS_MAX: u32 = 90;

/// Whose rule set: a merchant's or any (omitted), a jurisdiction's or any (omitted).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ScopeQuery {
    pub merchant_id: Option<String>,
    pub jurisdiction: Option<String>,
}

/// A page of a scope's history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub merchant_id: Option<String>,
    pub jurisdiction: Option<String>,
    /// Page size (`pagination.page_size_default`, at most `pagination.page_size_max`).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn scope_of(merchant_id: Option<&str>, jurisdiction: Option<&str>) -> Result<Scope, ApiError> {
    let merchant = merchant_id
        .map(|m| {
            MerchantId::parse(m).map_err(|e| ApiError::validation("merchant_id", e.to_string()))
        })
        .transpose()?;
    if let Some(jurisdiction) = jurisdiction {
        check_jurisdiction(jurisdiction)?;
    }
    Ok(Scope {
        merchant,
        jurisdiction: jurisdiction.map(str::to_string),
    })
}

/// One version of a scope's rule set.
#[derive(Debug, Serialize, ToSchema)]
pub struct RiskRulesView {
    pub merchant_id: Option<String>,
    pub jurisdiction: Option<String>,
    /// `null` while the scope has none stored; `rules` is then the configured or built-in
    /// default, which decides where no broader scope has a stored set either.
    pub version: Option<i64>,
    /// Rules, thresholds and `step_up_refuses_deposits` (see docs/risk.md).
    #[schema(value_type = Object)]
    pub rules: Value,
    /// Who stored it (the admin key id).
    pub actor: Option<String>,
    pub note: Option<String>,
    /// RFC 3339.
    pub created_at: Option<String>,
}

impl RiskRulesView {
    fn of(scope: &Scope, stored: &RuleSetVersion) -> Result<RiskRulesView, ApiError> {
        let rules = parse_stored(stored)?;
        Ok(RiskRulesView {
            version: Some(stored.version),
            rules: serde_json::to_value(rules).unwrap_or_default(),
            actor: Some(stored.actor.clone()),
            note: stored.note.clone(),
            created_at: Some(crate::api::rfc3339(stored.created_at_ms)),
            ..RiskRulesView::empty(scope)
        })
    }

    fn empty(scope: &Scope) -> RiskRulesView {
        RiskRulesView {
            merchant_id: scope.merchant.as_ref().map(ToString::to_string),
            jurisdiction: scope.jurisdiction.clone(),
            version: None,
            rules: Value::Null,
            actor: None,
            note: None,
            created_at: None,
        }
    }
}

/// A new rule set for a scope.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskRulesChange {
    /// The whole rule set; it replaces the scope's.
    #[schema(value_type = Object)]
    pub rules: Value,
    /// The version this change was made from (`null` for the scope's first); another
    /// version stored since is a 409 `risk_rules_version_conflict` and nothing changes.
    pub based_on_version: Option<i64>,
    /// Why, for the audit (at most 500 characters).
    #[schema(max_length = 500)]
    pub note: Option<String>,
}

/// A draft rule set to replay over stored decisions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    #[schema(value_type = Object)]
    pub rules: Value,
    /// How many days back (1 to 90).
    pub days: u32,
}

/// A rule set as sent, parsed; a problem is a 422 naming its place.
fn parse_rules(rules: Value) -> Result<RuleSet, ApiError> {
    serde_path_to_error::deserialize(rules).map_err(|error| {
        // The place within the rule set, as validation names it (`rules[0].when.gt`).
        let place = match error.path().to_string() {
            path if path == "." => "rules".to_string(),
            path => path,
        };
        let problem = error.into_inner().to_string();
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_risk_rules",
            format!("invalid risk rule set: {place}: {problem}"),
        )
        .with_details(serde_json::json!({ "place": place, "problem": problem }))
    })
}

/// A scope's rule set (roles `admin` or `finance`).
#[utoipa::path(get, path = "/v1/admin/risk/rules", tag = "admin", params(ScopeQuery),
    security(("bearer" = [])),
    responses((status = 200, body = RiskRulesView), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn get_rules(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<ScopeQuery>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN, roles::FINANCE])?;
    let scope = scope_of(query.merchant_id.as_deref(), query.jurisdiction.as_deref())?;
    let view = match state.risk.latest(&scope).await? {
        Some(stored) => RiskRulesView::of(&scope, &stored)?,
        None => RiskRulesView {
            rules: serde_json::to_value(state.risk.default_rules()).unwrap_or_default(),
            ..RiskRulesView::empty(&scope)
        },
    };
    Ok(Json(view).into_response())
}

/// Replaces a scope's rule set (role `admin`). Applies at once on this node and within a
/// second on every other node; the old version stays in the history.
#[utoipa::path(put, path = "/v1/admin/risk/rules", tag = "admin", params(ScopeQuery),
    request_body = RiskRulesChange, security(("bearer" = [])),
    responses(
        (status = 200, body = RiskRulesView),
        (status = 403, body = ErrorBody),
        (status = 409, description = "risk_rules_version_conflict", body = ErrorBody),
        (status = 422, description = "invalid_risk_rules (details.place names the problem)", body = ErrorBody),
    ))]
pub async fn put_rules(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<ScopeQuery>,
    ApiJson(change): ApiJson<RiskRulesChange>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let scope = scope_of(query.merchant_id.as_deref(), query.jurisdiction.as_deref())?;
    check_note(change.note.as_deref())?;
    let rules = parse_rules(change.rules)?;
    let stored = state
        .risk
        .replace(
            &scope,
            change.based_on_version,
            rules,
            &admin.key_id,
            change.note.as_deref(),
        )
        .await?;
    Ok(Json(RiskRulesView::of(&scope, &stored)?).into_response())
}

/// A scope's earlier versions, newest first: who changed the rules, when, why, and the
/// rule set each change left; consecutive versions are the before and after (roles
/// `admin` or `finance`).
#[utoipa::path(get, path = "/v1/admin/risk/rules/history", tag = "admin", params(HistoryQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "{data: [version], next_cursor}", body = Object),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rules_history(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN, roles::FINANCE])?;
    let scope = scope_of(query.merchant_id.as_deref(), query.jurisdiction.as_deref())?;
    let limit = page_limit(&state.config.pagination, query.limit)?;
    let before = version_cursor(query.cursor.as_deref())?;
    let mut versions = state.risk.history(&scope, before, limit + 1).await?;
    let next_cursor = crate::api::split_page(&mut versions, limit, |v| v.version.to_string());
    let data = versions
        .iter()
        .map(|v| RiskRulesView::of(&scope, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "data": data, "next_cursor": next_cursor })).into_response())
}

/// Replays the stored decisions of the last `days` days (of the scope's merchant and
/// jurisdiction when named) under a draft rule set: counts by outcome before and after, and
/// the decisions that would change (at most 100). Stores nothing (role `admin`).
#[utoipa::path(post, path = "/v1/admin/risk/rules/backtest", tag = "admin", params(ScopeQuery),
    request_body = BacktestRequest, security(("bearer" = [])),
    responses(
        (status = 200, description = "{days, decisions, truncated, before, after, changed, changes}", body = Object),
        (status = 403, body = ErrorBody),
        (status = 422, description = "invalid_risk_rules, validation_failed", body = ErrorBody),
    ))]
pub async fn backtest(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<ScopeQuery>,
    ApiJson(request): ApiJson<BacktestRequest>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let scope = scope_of(query.merchant_id.as_deref(), query.jurisdiction.as_deref())?;
    if !(1..=BACKTEST_DAYS_MAX).contains(&request.days) {
        return Err(ApiError::validation(
            "days",
            format!("between 1 and {BACKTEST_DAYS_MAX}"),
        ));
    }
    let draft = parse_rules(request.rules)?;
    let report: Backtest = state.risk.backtest(&scope, draft, request.days).await?;
    Ok(Json(report).into_response())
}
