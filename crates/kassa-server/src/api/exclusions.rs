//! `GET/POST /v1/players/{player_id}/exclusion`: self-exclusion and time-outs (ADR 57).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kassa_core::exclusion::{ExclusionKind, SelfExclusionDays};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::players::player_in_path;
use crate::api::{rfc3339, ApiJson, ApiPath};
use crate::auth::Merchant;
use crate::error::{ApiError, ErrorBody};
use crate::service::exclusions::PlayerExclusion;
use crate::service::limits::SET_BY;
use crate::AppState;

/// A player's exclusion in force and what their jurisdiction allows.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExclusionView {
    pub player_id: String,
    /// Whether deposits and bets are refused now (by an exclusion in force or a national
    /// register's `excluded` answer).
    pub excluded: bool,
    /// `time_out` or `self_exclusion`; `null` when none is in force.
    pub kind: Option<String>,
    /// RFC 3339.
    pub starts_at: Option<String>,
    /// RFC 3339; `null` with `excluded`: indefinitely.
    pub ends_at: Option<String>,
    /// `player` or `operator`.
    pub set_by: Option<String>,
    /// Self-exclusion days the jurisdiction allows (besides indefinitely), as
    /// `{"rule": "at_least", "days": 180}` or `{"rule": "one_of", "days": [30, 90, 180]}`;
    /// a time-out lasts 1 to 42 days.
    #[schema(value_type = Object)]
    pub self_exclusion_days: serde_json::Value,
    /// The national self-exclusion register's latest answer (docs/registers.md); `null`
    /// when none was asked.
    pub register_check: Option<RegisterCheckView>,
}

/// A national self-exclusion register's answer about a player.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterCheckView {
    /// The register, e.g. `gamstop`, `spelpaus`.
    pub register: String,
    /// `excluded`, `not_excluded` or `previously_excluded`; only `excluded` refuses.
    pub outcome: String,
    /// RFC 3339: when the register answered.
    pub checked_at: String,
    /// Kassa's id of the check (`rchk_…`), as the audit trail and the register's log have it.
    pub check_id: String,
}

impl RegisterCheckView {
    /// The view of a stored answer.
    pub fn of(status: &kassa_store::registers::RegisterStatus) -> RegisterCheckView {
        RegisterCheckView {
            register: status.register.clone(),
            outcome: status.outcome.as_str().to_string(),
            checked_at: rfc3339(status.checked_at_ms),
            check_id: status.check_id.clone(),
        }
    }
}

fn view(found: PlayerExclusion) -> ExclusionView {
    let record = found.current.as_ref();
    let days: SelfExclusionDays = found.policy.self_exclusion_days;
    let register_excluded = found.register.as_ref().is_some_and(|r| r.outcome.blocks());
    ExclusionView {
        player_id: found.player_id.to_string(),
        excluded: record.is_some() || register_excluded,
        kind: record.map(|r| r.exclusion.kind.as_str().to_string()),
        starts_at: record.map(|r| rfc3339(r.exclusion.starts_at_ms)),
        ends_at: record.and_then(|r| r.exclusion.ends_at_ms.map(rfc3339)),
        set_by: record.map(|r| r.set_by.clone()),
        self_exclusion_days: serde_json::to_value(days).unwrap_or_default(),
        register_check: found.register.as_ref().map(RegisterCheckView::of),
    }
}

/// An exclusion to start now.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExclusionInput {
    /// `time_out` (1 to 42 days) or `self_exclusion` (the jurisdiction's durations, or
    /// indefinitely).
    pub kind: String,
    /// How long; `null` or absent: indefinitely (self-exclusion only).
    pub days: Option<u32>,
    /// `player` (default) or `operator`.
    pub set_by: Option<String>,
    /// Why, for the record (at most 500 characters).
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// The player's exclusion in force, if any, and the durations their jurisdiction allows.
#[utoipa::path(get, path = "/v1/players/{player_id}/exclusion", tag = "players",
    params(("player_id" = String, Path, description = "Your id for the player")),
    security(("bearer" = [])),
    responses((status = 200, body = ExclusionView), (status = 404, body = ErrorBody)))]
pub async fn get_exclusion(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
) -> Result<Json<ExclusionView>, ApiError> {
    let player_id = player_in_path(&player_id)?;
    Ok(Json(view(
        state.exclusions.get(&merchant.id, &player_id).await?,
    )))
}

/// Starts a time-out or self-exclusion at once: deposits and bets are refused (403
/// `self_excluded`) until it ends, withdrawals still go. It can be extended, never
/// shortened (409 `exclusion_cannot_be_shortened`), and `PUT /v1/players/{id}` cannot make
/// the account active while it lasts (409 `exclusion_in_force`).
#[utoipa::path(post, path = "/v1/players/{player_id}/exclusion", tag = "players",
    params(("player_id" = String, Path, description = "Your id for the player")),
    request_body = ExclusionInput, security(("bearer" = [])),
    responses((status = 201, body = ExclusionView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn post_exclusion(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
    ApiJson(input): ApiJson<ExclusionInput>,
) -> Result<(StatusCode, Json<ExclusionView>), ApiError> {
    let player_id = player_in_path(&player_id)?;
    let kind = ExclusionKind::parse(&input.kind).ok_or_else(|| {
        ApiError::validation("kind", "must be \"time_out\" or \"self_exclusion\"")
    })?;
    let set_by = input.set_by.as_deref().unwrap_or("player");
    if !SET_BY.contains(&set_by) {
        return Err(ApiError::validation(
            "set_by",
            "must be \"player\" or \"operator\"",
        ));
    }
    if input
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 500)
    {
        return Err(ApiError::validation("reason", "at most 500 characters"));
    }
    let made = state
        .exclusions
        .exclude(
            &merchant.id,
            &player_id,
            kind,
            input.days,
            set_by,
            input.reason,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(made))))
}
