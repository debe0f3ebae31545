//! `GET/POST /v1/players/{player_id}/kyc`: KYC levels and checks through the merchant's ID
//! provider (docs/kyc.md).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kassa_core::kyc::{CheckReason, KycLevel};
use kassa_store::kyc::KycCheckRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::players::player_in_path;
use crate::api::{rfc3339, ApiJson, ApiPath};
use crate::auth::Merchant;
use crate::error::{ApiError, ErrorBody};
use crate::service::kyc::KycOverview;
use crate::AppState;

/// One check at the ID provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct KycCheckView {
    /// `kyc_…`.
    pub id: String,
    /// `basic` or `enhanced`.
    pub level: String,
    /// `pending`, `verified`, `rejected` or `resubmission_requested`.
    pub status: String,
    /// `first_withdrawal`, `risk_step_up`, `cdd_threshold` or `operator`.
    pub reason: String,
    /// The ID provider account.
    pub provider: String,
    /// The provider's applicant id.
    pub applicant_id: String,
    /// The hosted page the player verifies on.
    pub verification_url: String,
    /// RFC 3339.
    pub requested_at: String,
    /// RFC 3339; `null` while pending.
    pub completed_at: Option<String>,
    /// Time to verify: completed minus requested, in milliseconds.
    pub time_to_verify_ms: Option<i64>,
    /// The provider's reason for a rejection or a resubmission, e.g. `document_expired`.
    pub result_reason: Option<String>,
    /// The provider's document checks: `[{document, check, result, detail}]`.
    #[schema(value_type = Option<Object>)]
    pub document_checks: Option<serde_json::Value>,
    /// The identity document's issuing country (ISO 3166-1 alpha-2), when the result named
    /// one.
    pub document_country: Option<String>,
}

fn check_view(check: &KycCheckRecord) -> KycCheckView {
    KycCheckView {
        id: check.id.clone(),
        level: check.level.as_str().into(),
        status: check.status.as_str().into(),
        reason: check.reason.as_str().into(),
        provider: check.provider.clone(),
        applicant_id: check.applicant_id.clone(),
        verification_url: check.verification_url.clone(),
        requested_at: rfc3339(check.requested_at_ms),
        completed_at: check.completed_at_ms.map(rfc3339),
        time_to_verify_ms: check
            .completed_at_ms
            .map(|done| done - check.requested_at_ms),
        result_reason: check.result_reason.clone(),
        document_checks: check
            .document_checks
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok()),
        document_country: check.document_country.clone(),
    }
}

/// A player's KYC.
#[derive(Debug, Serialize, ToSchema)]
pub struct KycView {
    pub player_id: String,
    /// Each level's status: `not_started`, `pending`, `verified`, `rejected` or
    /// `resubmission_requested`, as `{"basic": …, "enhanced": …}`.
    #[schema(value_type = Object)]
    pub levels: serde_json::Value,
    /// The player's one `kyc_status` (set from the basic level's result; `verified` may
    /// withdraw).
    pub kyc_status: String,
    /// The issuing country of the identity document a verified check read; the risk
    /// features' KYC country (ADR 86). `null` until one did.
    pub kyc_country: Option<String>,
    /// Whether the CDD threshold locks withdrawals until `enhanced` is verified.
    pub cdd_locked: bool,
    /// The checks still open, one per level at most.
    pub open_checks: Vec<KycCheckView>,
    /// Every check, newest first (at most 50).
    pub history: Vec<KycCheckView>,
}

fn view(player_id: &str, overview: KycOverview) -> KycView {
    let levels = overview.levels;
    KycView {
        player_id: player_id.to_string(),
        levels: serde_json::json!({
            "basic": levels.basic.as_str(),
            "enhanced": levels.enhanced.as_str(),
        }),
        kyc_status: overview.kyc_status.as_str().into(),
        kyc_country: overview.kyc_country,
        cdd_locked: overview.cdd_locked,
        open_checks: overview
            .checks
            .iter()
            .filter(|c| c.completed_at_ms.is_none())
            .map(check_view)
            .collect(),
        history: overview.checks.iter().map(check_view).collect(),
    }
}

/// The player's KYC levels, open checks and history.
#[utoipa::path(get, path = "/v1/players/{player_id}/kyc", tag = "players",
    params(("player_id" = String, Path, description = "Your id for the player")),
    security(("bearer" = [])),
    responses((status = 200, body = KycView), (status = 404, body = ErrorBody)))]
pub async fn get_kyc(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
) -> Result<Json<KycView>, ApiError> {
    let player = player_in_path(&player_id)?;
    let overview = state.kyc.overview(&merchant.id, &player).await?;
    Ok(Json(view(player.as_str(), overview)))
}

/// A check to open.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KycCheckInput {
    /// `basic` (identity and document) or `enhanced` (plus source of funds).
    pub level: String,
}

/// Opens a check at the merchant's ID provider (reason `operator`) and answers its hosted
/// page: 201 with a new check, 200 with the level's open one (one per player and level).
/// 409 `kyc_already_verified`, `kyc_provider_not_configured`; 502
/// `kyc_provider_unavailable` when the provider did not answer.
#[utoipa::path(post, path = "/v1/players/{player_id}/kyc", tag = "players",
    params(("player_id" = String, Path, description = "Your id for the player")),
    request_body = KycCheckInput, security(("bearer" = [])),
    responses((status = 201, body = KycCheckView), (status = 200, body = KycCheckView),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn post_kyc(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
    ApiJson(input): ApiJson<KycCheckInput>,
) -> Result<(StatusCode, Json<KycCheckView>), ApiError> {
    let player = player_in_path(&player_id)?;
    let level = KycLevel::parse(&input.level)
        .ok_or_else(|| ApiError::validation("level", "must be \"basic\" or \"enhanced\""))?;
    let (check, opened) = state
        .kyc
        .request_check(&merchant.id, &player, level, CheckReason::Operator)
        .await?;
    let status = if opened {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(check_view(&check))))
}
