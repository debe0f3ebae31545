//! `GET/PUT /v1/players/{player_id}/limits`: responsible-gambling deposit limits.

use axum::extract::State;
use axum::Json;
use kassa_core::limits::LimitPeriod;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::players::player_in_path;
use crate::api::{rfc3339, ApiJson, ApiPath};
use crate::auth::Merchant;
use crate::error::{ApiError, ErrorBody};
use crate::service::limits::{PlayerLimits, SET_BY};
use crate::AppState;

/// One period's deposit limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitView {
    /// `day` (24 h), `week` (7 days) or `month` (30 days), rolling.
    pub period: String,
    /// The limit in force; `null`: none.
    pub amount: Option<String>,
    /// A larger limit (`amount` `null`: none) waiting for the cooling-off.
    #[schema(value_type = Option<Object>)]
    pub pending: Option<Value>,
}

/// A player's deposit limits and the rules of changing them.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    pub player_id: String,
    pub currency: String,
    /// Day, week and month; the lowest wins; gross (withdrawals are not netted off).
    pub deposit: Vec<LimitView>,
    /// Hours an increase waits (24; 72 in Sweden, and not before the period has run once more).
    pub increase_cooling_off_hours: i64,
    pub increase_waits_for_period_end: bool,
}

/// Changes to a player's deposit limits.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    /// By period (`day`, `week`, `month`): an amount string, or `null` to remove the limit.
    /// Periods left out do not change. A lower limit applies at once; a higher one (or a
    /// removal) after the cooling-off.
    #[schema(value_type = Object, example = json!({"day": "100.00", "month": null}))]
    pub deposit: Map<String, Value>,
    /// `player` (default) or `operator`.
    pub set_by: Option<String>,
}

fn view(limits: PlayerLimits) -> LimitsView {
    let currency = limits.currency;
    let amount = |minor: Option<i64>| minor.map(|m| currency.format_minor(m));
    LimitsView {
        player_id: limits.player_id.to_string(),
        currency: currency.code().to_string(),
        deposit: limits
            .deposit
            .iter()
            .map(|limit| LimitView {
                period: limit.period.as_str().to_string(),
                amount: amount(limit.amount_minor),
                pending: limit.pending.map(|p| {
                    serde_json::json!({
                        "amount": amount(p.amount_minor),
                        "applies_at": rfc3339(p.applies_at_ms),
                    })
                }),
            })
            .collect(),
        increase_cooling_off_hours: limits.policy.cooling_off_ms / 3_600_000,
        increase_waits_for_period_end: limits.policy.not_before_period_end,
    }
}

/// The player's deposit limits, with increases still waiting.
#[utoipa::path(get, path = "/v1/players/{player_id}/limits", tag = "players",
    params(("player_id" = String, Path, description = "Your id for the player")),
    security(("bearer" = [])),
    responses((status = 200, body = LimitsView), (status = 404, body = ErrorBody)))]
pub async fn get_limits(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
) -> Result<Json<LimitsView>, ApiError> {
    let player_id = player_in_path(&player_id)?;
    Ok(Json(view(
        state.limits.get(&merchant.id, &player_id).await?,
    )))
}

/// Sets, lowers, raises or removes deposit limits. Deposits that would break a limit are
/// refused with 402 `limit_exceeded`.
#[utoipa::path(put, path = "/v1/players/{player_id}/limits", tag = "players",
    params(("player_id" = String, Path, description = "Your id for the player")),
    request_body = LimitsInput, security(("bearer" = [])),
    responses((status = 200, body = LimitsView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_limits(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
    ApiJson(input): ApiJson<LimitsInput>,
) -> Result<Json<LimitsView>, ApiError> {
    let player_id = player_in_path(&player_id)?;
    let set_by = input.set_by.as_deref().unwrap_or("player");
    if !SET_BY.contains(&set_by) {
        return Err(ApiError::validation(
            "set_by",
            "must be \"player\" or \"operator\"",
        ));
    }
    let player = state.players.get(&merchant.id, &player_id).await?;
    let mut changes = Vec::new();
    for (name, value) in &input.deposit {
        let field = format!("deposit.{name}");
        let period = LimitPeriod::parse(name).ok_or_else(|| {
            ApiError::validation(&field, "the periods are \"day\", \"week\" and \"month\"")
        })?;
        let amount = match value {
            Value::Null => None,
            Value::String(text) => {
                let minor = player
                    .currency
                    .parse_minor(text)
                    .ok()
                    .filter(|m| *m >= 0 && *m <= state.amount_limits.max_minor(player.currency))
                    .ok_or_else(|| {
                        ApiError::validation(&field, "must be an amount string like \"100.00\"")
                    })?;
                Some(minor)
            }
            _ => {
                return Err(ApiError::validation(
                    &field,
                    "must be an amount string or null",
                ))
            }
        };
        changes.push((period, amount));
    }
    if changes.is_empty() {
        return Err(ApiError::validation("deposit", "names no period"));
    }
    let limits = state
        .limits
        .set(&merchant.id, &player_id, &changes, set_by)
        .await?;
    Ok(Json(view(limits)))
}
