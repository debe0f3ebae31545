//! `PUT /v1/players/{player_id}`, balances and transaction history.

use crate::api::{ApiPath, ApiQuery, PageQuery};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use kassa_core::email::EmailAddress;
use kassa_core::ids::PlayerId;
use kassa_core::ledger::EntryStatus;
use kassa_core::status::{AccountStatus, KycStatus};
use kassa_core::Currency;
use kassa_store::directory::{PlayerRecord, PlayerUpsert};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{parse_id, rfc3339, ApiJson};
use crate::auth::Merchant;
use crate::error::{ApiError, ErrorBody};
use crate::service::players::PlayerError;
use crate::AppState;

/// A player as created or updated.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayerInput {
    /// Wallet currency (ISO 4217 or a crypto asset); cannot change later.
    #[schema(example = "EUR")]
    pub currency: String,
    /// ISO 3166-1 alpha-2 country.
    #[schema(example = "MT", pattern = "^[A-Z]{2}$")]
    pub country: String,
    /// Licence the player plays under, e.g. `GB`, `MT`.
    #[schema(pattern = "^[A-Za-z0-9-]{1,16}$")]
    pub jurisdiction: Option<String>,
    /// `none` (default), `pending`, `verified` or `rejected`.
    #[schema(pattern = "^(none|pending|verified|rejected)$")]
    pub kyc_status: Option<String>,
    /// ISO 8601 date, `YYYY-MM-DD`.
    #[schema(example = "1990-04-01", format = Date)]
    pub birth_date: Option<String>,
    /// `active` (default), `self_excluded` (may still withdraw) or `blocked` (may not).
    #[schema(pattern = "^(active|self_excluded|blocked)$")]
    pub account_status: Option<String>,
    /// The player's email address, for the risk features (velocity per address, players
    /// sharing one). Stored trimmed and lowercased; absent: none (a `PUT` without it
    /// removes it).
    #[schema(example = "jane@example.com", max_length = 254)]
    pub email: Option<String>,
}

/// A player.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerView {
    pub player_id: String,
    pub currency: String,
    pub country: String,
    pub jurisdiction: Option<String>,
    pub kyc_status: String,
    pub birth_date: Option<String>,
    pub account_status: String,
    /// As stored: trimmed and lowercased.
    pub email: Option<String>,
}

/// A player's balance.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub player_id: String,
    pub currency: String,
    /// Spendable now.
    #[schema(example = "100.00")]
    pub available: String,
    /// Reserved for withdrawals in flight.
    #[schema(example = "0.00")]
    pub held: String,
}

/// One entry of a player's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionView {
    pub txn_id: String,
    /// `debit`, `credit`, `rollback`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// `posted`, `rejected`, `reversed`, `no_effect`, `original_not_found`, …
    pub status: String,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub round_id: Option<String>,
    /// Payment the entry settles, or the original of a rollback.
    pub reference: Option<String>,
    /// Whether this entry moved money: false for a call refused with 402
    /// (`status` `rejected`) and for entries that record a call without moving money
    /// (`no_effect`, `original_not_found`). Refused calls are listed, marked, because the
    /// player and support see every call the game made.
    pub moved_money: bool,
    /// Available balance right after this entry.
    pub balance_after: Option<String>,
    pub created_at: String,
}

/// A page of history, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionPage {
    pub data: Vec<TransactionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn view(player: PlayerRecord) -> PlayerView {
    PlayerView {
        player_id: player.player_id.into_string(),
        currency: player.currency.code().to_string(),
        country: player.country,
        jurisdiction: player.jurisdiction,
        kyc_status: player.kyc_status.as_str().to_string(),
        birth_date: player.birth_date,
        account_status: player.account_status.as_str().to_string(),
        email: player.email.map(|e| e.as_str().to_string()),
    }
}

/// The player a path names; an id no player can have is not found, like an unknown one.
pub(crate) fn player_in_path(text: &str) -> Result<PlayerId, ApiError> {
    PlayerId::parse(text).map_err(|_| {
        PlayerError::NotFound {
            player_id: text.to_string(),
        }
        .into()
    })
}

/// A status field: absent means `default`; a name outside `all` is a 422 listing them.
fn parse_status<T: Copy + std::fmt::Display>(
    field: &str,
    text: Option<&str>,
    default: T,
    parse: fn(&str) -> Option<T>,
    all: &[T],
) -> Result<T, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    parse(text).ok_or_else(|| {
        let names: Vec<String> = all.iter().map(ToString::to_string).collect();
        ApiError::validation(field, format!("must be one of {names:?}"))
    })
}

/// The player as sent, checked field by field.
fn upsert_of(
    merchant: Merchant,
    player_id: PlayerId,
    input: PlayerInput,
) -> Result<PlayerUpsert, ApiError> {
    let currency = Currency::from_code(&input.currency)
        .map_err(|e| ApiError::validation("currency", e.to_string()))?;
    if input.country.len() != 2 || !input.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::validation(
            "country",
            "must be an ISO 3166-1 alpha-2 code like \"MT\"",
        ));
    }
    if let Some(jurisdiction) = &input.jurisdiction {
        check_jurisdiction(jurisdiction)?;
    }
    let kyc_status = parse_status(
        "kyc_status",
        input.kyc_status.as_deref(),
        KycStatus::None,
        KycStatus::parse,
        KycStatus::ALL,
    )?;
    let account_status = parse_status(
        "account_status",
        input.account_status.as_deref(),
        AccountStatus::Active,
        AccountStatus::parse,
        AccountStatus::ALL,
    )?;
    if let Some(date) = &input.birth_date {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(date, &format).map_err(|_| {
            ApiError::validation("birth_date", "must be a date like \"1990-04-01\"")
        })?;
    }
    let email = input
        .email
        .as_deref()
        .map(EmailAddress::parse)
        .transpose()
        .map_err(|e| ApiError::validation("email", e.to_string()))?;
    Ok(PlayerUpsert {
        merchant_id: merchant.id,
        player_id,
        currency,
        country: input.country,
        jurisdiction: input.jurisdiction,
        kyc_status,
        birth_date: input.birth_date,
        account_status,
        email,
    })
}

/// Creates a player and their wallet, or updates their details (201 when created).
#[utoipa::path(put, path = "/v1/players/{player_id}", tag = "players", request_body = PlayerInput,
    params(("player_id" = String, Path, description = "Your id for the player")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "created", body = PlayerView),
        (status = 200, description = "updated", body = PlayerView),
        (status = 409, description = "the currency cannot change", body = ErrorBody),
        (status = 422, description = "invalid field", body = ErrorBody),
    ))]
pub async fn put_player(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
    ApiJson(input): ApiJson<PlayerInput>,
) -> Result<Response, ApiError> {
    let player_id = parse_id("player_id", &player_id)?;
    let upsert = upsert_of(merchant, player_id, input)?;
    let (player, created) = state.players.upsert(upsert).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(player))).into_response())
}

/// A player's details.
#[utoipa::path(get, path = "/v1/players/{player_id}", tag = "players",
    params(("player_id" = String, Path, description = "Your id for the player")),
    security(("bearer" = [])),
    responses((status = 200, body = PlayerView), (status = 404, body = ErrorBody)))]
pub async fn get_player(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
) -> Result<Json<PlayerView>, ApiError> {
    let player_id = player_in_path(&player_id)?;
    Ok(Json(view(
        state.players.get(&merchant.id, &player_id).await?,
    )))
}

/// The player's available and held money.
#[utoipa::path(get, path = "/v1/players/{player_id}/balance", tag = "players",
    params(("player_id" = String, Path, description = "Your id for the player")),
    security(("bearer" = [])),
    responses((status = 200, body = BalanceView), (status = 404, body = ErrorBody)))]
pub async fn get_balance(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
) -> Result<Json<BalanceView>, ApiError> {
    let wallet = state
        .players
        .wallet(&merchant.id, &player_in_path(&player_id)?)
        .await?;
    let balances = state.store.balances(&[wallet.cash, wallet.hold]).await?;
    let amount = |id| {
        wallet
            .currency
            .format_minor(balances.get(&id).copied().unwrap_or(0))
    };
    Ok(Json(BalanceView {
        player_id,
        currency: wallet.currency.code().to_string(),
        available: amount(wallet.cash),
        held: amount(wallet.hold),
    }))
}

/// The player's wallet history, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/players/{player_id}/transactions", tag = "players",
    params(("player_id" = String, Path, description = "Your id for the player"), PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = TransactionPage), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_transactions(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(player_id): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<TransactionPage>, ApiError> {
    let paging = &state.config.pagination;
    let limit = crate::api::page_limit(paging, page.limit)?;
    let before_id = page.cursor.as_deref().map(decode_cursor).transpose()?;
    let player_id = player_in_path(&player_id)?;
    state.players.get(&merchant.id, &player_id).await?;
    let mut entries = state
        .store
        .player_entries(
            merchant.id.as_str(),
            player_id.as_str(),
            before_id,
            limit + 1,
        )
        .await?;
    let next_cursor = if entries.len() > limit as usize {
        entries.truncate(limit as usize);
        entries.last().map(|e| encode_cursor(e.id))
    } else {
        None
    };
    let data = entries
        .into_iter()
        .map(|stored| {
            let entry = stored.entry;
            let money = |minor: i64| entry.currency.map(|c| c.format_minor(minor));
            TransactionView {
                amount: money(entry.amount_minor),
                balance_after: entry.subject_balance_after_minor.and_then(money),
                currency: entry.currency.map(|c| c.code().to_string()),
                txn_id: entry.txn_id,
                kind: entry.label,
                moved_money: matches!(entry.status, EntryStatus::Posted | EntryStatus::Reversed),
                status: entry.status.as_str().to_string(),
                round_id: entry.meta.round_id,
                reference: entry.meta.reference.or(entry.ref_txn_id),
                created_at: rfc3339(stored.created_at_ms),
            }
        })
        .collect();
    Ok(Json(TransactionPage { data, next_cursor }))
}

fn encode_cursor(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("e{id}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix('e').and_then(|n| n.parse().ok()))
        .ok_or_else(|| ApiError::validation("cursor", "is not a cursor this API returned"))
}

/// A licence code: 1 to 16 letters, digits or `-` (`GB`, `MT`, `SE`).
pub fn check_jurisdiction(jurisdiction: &str) -> Result<(), ApiError> {
    if jurisdiction.is_empty()
        || jurisdiction.len() > 16
        || !jurisdiction
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::validation(
            "jurisdiction",
            "must be a short code like \"GB\" or \"MT\"",
        ));
    }
    Ok(())
}
