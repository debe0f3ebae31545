//! `PUT /v1/players/{player_id}/identity` (what a national self-exclusion register check
//! sends) and `POST /v1/players/{player_id}/register-check` (ask it now); ADR 73,
//! docs/registers.md.

use axum::extract::State;
use axum::Json;
use kassa_core::register::{swedish_personal_number, PlayerIdentity};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::exclusions::RegisterCheckView;
use crate::api::players::player_in_path;
use crate::api::{rfc3339, ApiJson, ApiPath};
use crate::auth::Merchant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Longest name part taken (GAMSTOP reads the first 20 characters).
const NAME_LEN_MAX: usize = 50;
/// Longest e-mail address (RFC 5321's path limit).
const EMAIL_LEN_MAX: usize = 254;
/// Longest postcode (UK ones are at most 8 characters).
const POSTCODE_LEN_MAX: usize = 16;
/// Longest mobile number (E.164 is 15 digits, plus `+` and spaces).
const MOBILE_LEN_MAX: usize = 20;

/// The identity register checks send: personal data, stored only for these checks and never
/// logged or echoed back. GAMSTOP (GB) needs the names, `email` and `postcode` (with the
/// player's `birth_date`); Spelpaus (SE) needs `national_id`. Replaces what was sent before.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityInput {
    /// Given name, 1 to 50 characters.
    #[schema(max_length = 50)]
    pub first_name: Option<String>,
    /// Family name, 1 to 50 characters.
    #[schema(max_length = 50)]
    pub last_name: Option<String>,
    /// E-mail address.
    #[schema(max_length = 254)]
    pub email: Option<String>,
    /// Postcode, e.g. `SW1A 1AA`.
    #[schema(max_length = 16)]
    pub postcode: Option<String>,
    /// Mobile number, digits with an optional leading `+`.
    #[schema(max_length = 20)]
    pub mobile: Option<String>,
    /// Swedish personal identity number, `YYYYMMDDNNNC` or `YYYYMMDD-NNNC`.
    #[schema(max_length = 13)]
    pub national_id: Option<String>,
}

/// Which identity fields are stored: never their values.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    pub player_id: String,
    /// The fields stored, e.g. `["email", "first_name", …]`.
    pub fields: Vec<&'static str>,
    /// RFC 3339.
    pub updated_at: String,
}

/// A register's answer about a player, asked now.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterCheckAnswer {
    pub player_id: String,
    /// Whether deposits and bets are refused because of it.
    pub excluded: bool,
    #[serde(flatten)]
    pub check: RegisterCheckView,
}

/// A text field: trimmed, 1 to `max` characters, no control characters.
fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.trim().to_string();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            format!("must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(Some(value))
}

/// Parses the input at the edge; the messages never repeat the values.
fn parse_identity(input: IdentityInput) -> Result<PlayerIdentity, ApiError> {
    let email = text("email", input.email, EMAIL_LEN_MAX)?;
    if let Some(email) = &email {
        let (local, domain) = email.rsplit_once('@').unwrap_or_default();
        if local.is_empty() || !domain.contains('.') || email.contains(char::is_whitespace) {
            return Err(ApiError::validation("email", "must be an e-mail address"));
        }
    }
    let postcode = text("postcode", input.postcode, POSTCODE_LEN_MAX)?;
    if postcode.as_deref().is_some_and(|p| {
        !p.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
    }) {
        return Err(ApiError::validation(
            "postcode",
            "letters, digits, spaces and - only",
        ));
    }
    let mobile = text("mobile", input.mobile, MOBILE_LEN_MAX)?;
    let digits = |m: &str| {
        m.trim_start_matches('+')
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ')
    };
    if mobile.as_deref().is_some_and(|m| !digits(m)) {
        return Err(ApiError::validation(
            "mobile",
            "digits with an optional leading +",
        ));
    }
    let national_id = input
        .national_id
        .map(|id| swedish_personal_number(id.trim()))
        .transpose()
        .map_err(|why| ApiError::validation("national_id", why))?;
    let identity = PlayerIdentity {
        first_name: text("first_name", input.first_name, NAME_LEN_MAX)?,
        last_name: text("last_name", input.last_name, NAME_LEN_MAX)?,
        birth_date: None,
        email,
        postcode,
        mobile,
        national_id,
    };
    if present_fields(&identity).is_empty() {
        return Err(ApiError::validation(
            "identity",
            "at least one field is required",
        ));
    }
    Ok(identity)
}

fn present_fields(identity: &PlayerIdentity) -> Vec<&'static str> {
    [
        ("email", &identity.email),
        ("first_name", &identity.first_name),
        ("last_name", &identity.last_name),
        ("mobile", &identity.mobile),
        ("national_id", &identity.national_id),
        ("postcode", &identity.postcode),
    ]
    .into_iter()
    .filter(|(_, value)| value.is_some())
    .map(|(name, _)| name)
    .collect()
}

/// Stores the identity a national self-exclusion register check sends (docs/registers.md).
/// The answer names the fields stored, never their values; a stored register answer about
/// the identity before is asked again at the next deposit.
#[utoipa::path(put, path = "/v1/players/{player_id}/identity", tag = "players",
    params(("player_id" = String, Path, description = "Your id for the player")),
    request_body = IdentityInput, security(("bearer" = [])),
    responses((status = 200, body = IdentityView), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_identity(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
    ApiJson(input): ApiJson<IdentityInput>,
) -> Result<Json<IdentityView>, ApiError> {
    let player_id = player_in_path(&player_id)?;
    let identity = parse_identity(input)?;
    let updated_at_ms = state
        .registers
        .put_identity(&merchant.id, &player_id, &identity)
        .await?;
    Ok(Json(IdentityView {
        player_id: player_id.to_string(),
        fields: present_fields(&identity),
        updated_at: rfc3339(updated_at_ms),
    }))
}

/// Asks the national self-exclusion register of the player's jurisdiction now, whatever
/// answer is stored; the answer is stored, audited, and an `excluded` one refuses deposits
/// and bets from then on (403 `self_excluded`).
#[utoipa::path(post, path = "/v1/players/{player_id}/register-check", tag = "players",
    params(("player_id" = String, Path, description = "Your id for the player")),
    security(("bearer" = [])),
    responses((status = 200, body = RegisterCheckAnswer), (status = 404, body = ErrorBody),
        (status = 403, description = "register_identity_required: send PUT /v1/players/{id}/identity first", body = ErrorBody),
        (status = 409, description = "no_register: the jurisdiction has none", body = ErrorBody),
        (status = 503, description = "register_unavailable: retry after Retry-After", body = ErrorBody)))]
pub async fn post_register_check(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
) -> Result<Json<RegisterCheckAnswer>, ApiError> {
    let player_id = player_in_path(&player_id)?;
    let status = state.registers.check_now(&merchant.id, &player_id).await?;
    Ok(Json(RegisterCheckAnswer {
        player_id: player_id.to_string(),
        excluded: status.outcome.blocks(),
        check: RegisterCheckView::of(&status),
    }))
}
