//! `GET/PUT /v1/players/{player_id}/limits`: responsible-gambling deposit, wager, loss and
//! session-time limits.

use axum::extract::State;
use axum::Json;
use kassa_core::limits::LimitPeriod;
use kassa_core::play_limits::SESSION_MINUTES_MAX;
use kassa_core::Currency;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::players::player_in_path;
use crate::api::{rfc3339, ApiJson, ApiPath};
use crate::auth::Merchant;
use crate::error::{ApiError, ErrorBody};
use crate::service::limits::{LimitChanges, PlayerLimits, ShownLimit, SET_BY};
use crate::AppState;

/// One period's limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitView {
    /// `day` (24 h), `week` (7 days) or `month` (30 days), rolling.
    pub period: String,
    /// The limit in force; `null`: none.
    pub amount: Option<String>,
    /// A larger limit (`amount` `null`: none) waiting for the cooling-off.
    #[schema(value_type = Option<Object>)]
    pub pending: Option<Value>,
    /// Counted against the limit in its window now, in minor units, exactly as a refusal
    /// counts (deposits: gross, with starts in flight; losses: a net gain counts as 0);
    /// `null` when no limit is in force.
    #[schema(example = 3000)]
    pub used_minor: Option<i64>,
    /// What may still be deposited or counted before the limit refuses, in minor units;
    /// never negative; `null` when no limit is in force.
    #[schema(example = 2000)]
    pub remaining_minor: Option<i64>,
    /// RFC 3339: when, with nothing more counted, the earliest counted amount leaves the
    /// window and more fits again; `null` when nothing is used.
    pub resets_at: Option<String>,
}

/// The session-time limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionLimitView {
    /// Longest session in minutes; `null`: none.
    pub minutes: Option<i64>,
    /// A longer limit (`minutes` `null`: none) waiting for the cooling-off.
    #[schema(value_type = Option<Object>)]
    pub pending: Option<Value>,
    /// Minutes without a wallet call that end a session (`wallet.play_session_break_minutes`):
    /// a session runs from the first call after such a break.
    pub break_minutes: i64,
    /// Whole minutes of the session under way (0: none, or its break has passed); `null`
    /// when no session limit is in force.
    pub used_minutes: Option<i64>,
    /// RFC 3339: when the break would end the session under way, with no more play; `null`
    /// when none is under way.
    pub resets_at: Option<String>,
}

/// A player's limits and the rules of changing them.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    pub player_id: String,
    pub currency: String,
    /// Deposits per day, week and month; the lowest wins; gross (withdrawals are not netted
    /// off).
    pub deposit: Vec<LimitView>,
    /// Stakes of bets per day, week and month; the lowest wins.
    pub wager: Vec<LimitView>,
    /// Stakes less wins per day, week and month (a rolled-back bet counts neither); the
    /// lowest wins.
    pub loss: Vec<LimitView>,
    pub session: SessionLimitView,
    /// Hours an increase waits (24; 72 in Sweden, and not before the period has run once more).
    pub increase_cooling_off_hours: i64,
    pub increase_waits_for_period_end: bool,
}

/// The session-time limit asked for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionLimitInput {
    /// Longest session, 1 to 1440 minutes, or `null` to remove the limit.
    #[schema(value_type = Option<i64>, example = 60)]
    pub minutes: Value,
}

/// Changes to a player's limits. Kinds and periods left out do not change. A lower limit
/// applies at once; a higher one (or a removal) after the cooling-off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsInput {
    /// Deposit limits by period (`day`, `week`, `month`): an amount string, or `null` to
    /// remove the limit.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"day": "100.00", "month": null}))]
    pub deposit: Map<String, Value>,
    /// Wager limits (stakes), by period as `deposit`.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"week": "500.00"}))]
    pub wager: Map<String, Value>,
    /// Loss limits (stakes less wins), by period as `deposit`.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"day": "50.00"}))]
    pub loss: Map<String, Value>,
    /// The session-time limit.
    pub session: Option<SessionLimitInput>,
    /// `player` (default) or `operator`.
    pub set_by: Option<String>,
}

fn period_views(limits: &[ShownLimit], currency: Currency) -> Vec<LimitView> {
    let amount = |minor: Option<i64>| minor.map(|m| currency.format_minor(m));
    limits
        .iter()
        .map(|ShownLimit { limit, usage }| LimitView {
            period: limit.period.as_str().to_string(),
            amount: amount(limit.amount_minor),
            pending: limit.pending.map(|p| {
                serde_json::json!({
                    "amount": amount(p.amount_minor),
                    "applies_at": rfc3339(p.applies_at_ms),
                })
            }),
            used_minor: usage.map(|u| u.used_minor),
            remaining_minor: usage.map(|u| u.remaining_minor),
            resets_at: usage.and_then(|u| u.resets_at_ms).map(rfc3339),
        })
        .collect()
}

fn view(limits: PlayerLimits) -> LimitsView {
    let currency = limits.currency;
    let session = limits.session_usage;
    LimitsView {
        player_id: limits.player_id.to_string(),
        currency: currency.code().to_string(),
        deposit: period_views(&limits.deposit, currency),
        wager: period_views(&limits.wager, currency),
        loss: period_views(&limits.loss, currency),
        session: SessionLimitView {
            minutes: limits.session.minutes,
            pending: limits.session.pending.map(|p| {
                serde_json::json!({
                    "minutes": p.amount_minor,
                    "applies_at": rfc3339(p.applies_at_ms),
                })
            }),
            break_minutes: limits.session_break_minutes,
            used_minutes: session.map(|s| s.used_minutes()),
            resets_at: session.and_then(|s| s.ends_at_ms).map(rfc3339),
        },
        increase_cooling_off_hours: limits.policy.cooling_off_ms / 3_600_000,
        increase_waits_for_period_end: limits.policy.not_before_period_end,
    }
}

/// The player's limits, with increases still waiting and how much of each limit is used
/// now.
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

/// Sets, lowers, raises or removes deposit, wager, loss and session-time limits. Deposits
/// and bets that would break a limit are refused with 402 `limit_exceeded`.
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
    let max_minor = state.amount_limits.max_minor(player.currency);
    let periods = |kind: &str, map: &Map<String, Value>| {
        period_changes(kind, map, player.currency, max_minor)
    };
    let changes = LimitChanges {
        deposit: periods("deposit", &input.deposit)?,
        wager: periods("wager", &input.wager)?,
        loss: periods("loss", &input.loss)?,
        session_minutes: input.session.as_ref().map(session_minutes).transpose()?,
    };
    if changes.is_empty() {
        return Err(ApiError::validation(
            "deposit",
            "names no limit: give deposit, wager or loss periods, or session minutes",
        ));
    }
    let limits = state
        .limits
        .set(&merchant.id, &player_id, &changes, set_by)
        .await?;
    Ok(Json(view(limits)))
}

/// A kind's asked periods: each an amount string, or `null` to remove the limit.
fn period_changes(
    kind: &str,
    map: &Map<String, Value>,
    currency: Currency,
    max_minor: i64,
) -> Result<Vec<(LimitPeriod, Option<i64>)>, ApiError> {
    let mut changes = Vec::new();
    for (name, value) in map {
        let field = format!("{kind}.{name}");
        let period = LimitPeriod::parse(name).ok_or_else(|| {
            ApiError::validation(&field, "the periods are \"day\", \"week\" and \"month\"")
        })?;
        let amount = match value {
            Value::Null => None,
            Value::String(text) => {
                let minor = currency
                    .parse_minor(text)
                    .ok()
                    .filter(|m| *m >= 0 && *m <= max_minor)
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
    Ok(changes)
}

/// The asked session limit: whole minutes from 1 to a day, or `null`.
fn session_minutes(input: &SessionLimitInput) -> Result<Option<i64>, ApiError> {
    match &input.minutes {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .filter(|m| (1..=SESSION_MINUTES_MAX).contains(m))
            .map(Some)
            .ok_or_else(|| {
                ApiError::validation("session.minutes", "must be whole minutes from 1 to 1440")
            }),
        _ => Err(ApiError::validation(
            "session.minutes",
            "must be whole minutes from 1 to 1440, or null",
        )),
    }
}
