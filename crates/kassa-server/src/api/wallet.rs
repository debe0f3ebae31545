//! `POST /v1/wallet/debit`, `/credit` and `/rollback`: the seamless-wallet calls of game
//! rounds. The `txn_id` is the idempotency key; an `Idempotency-Key` header or an
//! `idempotency_key` field is honoured too when sent.

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use kassa_core::{Currency, Money};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::api::{parse_id, ApiJson};
use crate::auth::Merchant;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::{IdempotencyClaim, REPLAYED_HEADER};
use crate::service::wallet::{WalletMove, WalletReceipt};
use crate::AppState;

/// A bet or a win.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WalletMoveInput {
    /// Your unique id for this call; repeating it repeats the answer.
    #[schema(example = "bet-7f3a", pattern = "^[A-Za-z0-9._:@/-]{1,255}$")]
    pub txn_id: String,
    #[schema(pattern = "^[A-Za-z0-9._:@/-]{1,255}$")]
    pub player_id: String,
    /// Decimal string in the currency's unit.
    #[schema(example = "10.00")]
    pub amount: String,
    /// Must be the player's wallet currency.
    #[schema(example = "EUR")]
    pub currency: String,
    /// Game round tying bets to wins.
    #[schema(pattern = "^[A-Za-z0-9._:@/-]{1,255}$")]
    pub round_id: Option<String>,
    /// Credits only: the deposit being enrolled.
    #[schema(pattern = "^[A-Za-z0-9._:@/-]{1,255}$")]
    pub payment_id: Option<String>,
    /// Optional extra idempotency key (same rules as the header).
    #[schema(pattern = "^[\\x21-\\x7E]{1,255}$")]
    pub idempotency_key: Option<String>,
}

/// A rollback of a debit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackInput {
    /// Your unique id for this rollback.
    #[schema(pattern = "^[A-Za-z0-9._:@/-]{1,255}$")]
    pub txn_id: String,
    /// The debit to undo.
    #[schema(pattern = "^[A-Za-z0-9._:@/-]{1,255}$")]
    pub original_txn_id: String,
    /// Optional extra idempotency key.
    #[schema(pattern = "^[\\x21-\\x7E]{1,255}$")]
    pub idempotency_key: Option<String>,
}

fn parse_move(
    input: WalletMoveInput,
    allow_payment: bool,
    limits: &kassa_core::AmountLimits,
) -> Result<WalletMove, ApiError> {
    let txn_id = parse_id("txn_id", &input.txn_id)?;
    let player_id = parse_id("player_id", &input.player_id)?;
    let round_id = input
        .round_id
        .as_deref()
        .map(|round_id| parse_id("round_id", round_id))
        .transpose()?;
    if input.payment_id.is_some() && !allow_payment {
        return Err(ApiError::validation(
            "payment_id",
            "only credits enrol deposits",
        ));
    }
    let payment_id = input
        .payment_id
        .as_deref()
        .map(|payment_id| parse_id("payment_id", payment_id))
        .transpose()?;
    let currency = Currency::from_code(&input.currency)?;
    let amount_minor = limits.parse_positive(currency, &input.amount)?;
    Ok(WalletMove {
        txn_id,
        player_id,
        amount: Money::new(amount_minor, currency),
        round_id,
        payment_id,
    })
}

fn answer(receipt: WalletReceipt) -> Response {
    let replayed = receipt.replayed;
    let mut response = Json(receipt).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// The `idempotency_key` field and the `Idempotency-Key` header, when both are sent, must
/// agree; the middleware claimed whichever was sent.
fn field_key(
    field: Option<&str>,
    claim: &Option<Extension<IdempotencyClaim>>,
) -> Result<(), ApiError> {
    match (field, claim) {
        (Some(field), Some(Extension(claim))) if field != claim.key => Err(ApiError::validation(
            "idempotency_key",
            "differs from the Idempotency-Key header",
        )),
        _ => Ok(()),
    }
}

/// A bet: takes money from the player's available balance (402 when it does not cover it).
#[utoipa::path(post, path = "/v1/wallet/debit", tag = "wallet", request_body = WalletMoveInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional; the txn_id already makes the call idempotent")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "posted, or a repeat of the first answer", body = WalletReceipt),
        (status = 402, description = "insufficient_funds", body = ErrorBody),
        (status = 403, description = "self_excluded (details.register when a national self-exclusion register excluded the player), account_blocked: the player may not bet", body = ErrorBody),
        (status = 404, description = "player_not_found", body = ErrorBody),
        (status = 409, description = "txn_id_reused, txn_cancelled", body = ErrorBody),
        (status = 422, description = "validation_failed, currency_mismatch", body = ErrorBody),
    ))]
pub async fn debit(
    State(state): State<AppState>,
    merchant: Merchant,
    claim: Option<Extension<IdempotencyClaim>>,
    ApiJson(input): ApiJson<WalletMoveInput>,
) -> Result<Response, ApiError> {
    field_key(input.idempotency_key.as_deref(), &claim)?;
    let call = parse_move(input, false, &state.amount_limits)?;
    let receipt = state
        .wallet
        .debit(&merchant.id, call, claim.map(|c| c.0))
        .await?;
    Ok(answer(receipt))
}

/// A win, or the enrolment of a deposit (`payment_id`).
#[utoipa::path(post, path = "/v1/wallet/credit", tag = "wallet", request_body = WalletMoveInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional; the txn_id already makes the call idempotent")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "posted, or a repeat of the first answer", body = WalletReceipt),
        (status = 404, description = "player_not_found, payment_not_found (payment_id is not a deposit of this player)", body = ErrorBody),
        (status = 409, description = "txn_id_reused", body = ErrorBody),
        (status = 422, description = "validation_failed, currency_mismatch", body = ErrorBody),
    ))]
pub async fn credit(
    State(state): State<AppState>,
    merchant: Merchant,
    claim: Option<Extension<IdempotencyClaim>>,
    ApiJson(input): ApiJson<WalletMoveInput>,
) -> Result<Response, ApiError> {
    field_key(input.idempotency_key.as_deref(), &claim)?;
    let call = parse_move(input, true, &state.amount_limits)?;
    let receipt = state
        .wallet
        .credit(&merchant.id, call, claim.map(|c| c.0))
        .await?;
    Ok(answer(receipt))
}

/// Undoes a debit. A debit never seen answers 404 and is remembered: if it arrives later it
/// is refused with 409 `txn_cancelled`.
#[utoipa::path(post, path = "/v1/wallet/rollback", tag = "wallet", request_body = RollbackInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional; the txn_id already makes the call idempotent")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "rolled_back, or no_effect when nothing was left to undo", body = WalletReceipt),
        (status = 404, description = "original_txn_not_found", body = ErrorBody),
        (status = 409, description = "txn_id_reused, rollback_not_allowed", body = ErrorBody),
    ))]
pub async fn rollback(
    State(state): State<AppState>,
    merchant: Merchant,
    claim: Option<Extension<IdempotencyClaim>>,
    ApiJson(input): ApiJson<RollbackInput>,
) -> Result<Response, ApiError> {
    field_key(input.idempotency_key.as_deref(), &claim)?;
    let txn_id = parse_id("txn_id", &input.txn_id)?;
    let original_txn_id = parse_id("original_txn_id", &input.original_txn_id)?;
    let receipt = state
        .wallet
        .rollback(&merchant.id, &txn_id, &original_txn_id, claim.map(|c| c.0))
        .await?;
    Ok(answer(receipt))
}
