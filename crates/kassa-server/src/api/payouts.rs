//! Withdrawals: `POST /v1/payouts/init`, lookups, the player's cancel, and the review queue
//! under `/v1/admin/payouts`.

use crate::api::{ApiPath, ApiQuery};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use kassa_core::ids::{MerchantId, PayoutId, PlayerId};
use kassa_core::payout::PayoutStatus;
use kassa_core::{Currency, Money};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::api::{
    decode_keyset_cursor, encode_keyset_cursor, page_limit, parse_id, send_answer, ApiJson,
};
use crate::auth::{roles, Admin, Merchant};
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::IdempotencyClaim;
use crate::service::payouts::{payout_not_found, Decision, NewPayout, PAYOUTS_PAUSED};
use crate::views::payouts::payout_view as view;
pub use crate::views::payouts::PayoutView;
use crate::views::Answer;
use crate::AppState;

/// A withdrawal to request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutInitInput {
    #[schema(example = "40.00")]
    pub amount: String,
    #[schema(example = "EUR")]
    pub currency: String,
    /// `card`, `bank_transfer`, …
    #[schema(example = "card", pattern = "^[a-z_]{1,32}$")]
    pub method: String,
    #[schema(pattern = "^[A-Za-z0-9._:@/-]{1,255}$")]
    pub player_id: String,
    /// Where the money goes (card token, IBAN), when the method needs one.
    #[schema(min_length = 1, max_length = 128)]
    pub destination: Option<String>,
}

/// A page of payouts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutPage {
    pub data: Vec<PayoutView>,
    pub next_cursor: Option<String>,
}

/// Which payouts to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PayoutListQuery {
    /// Your id for the player.
    #[param(pattern = "^[A-Za-z0-9._:@/-]{1,255}$")]
    pub player_id: String,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Which payouts the review queue lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQueueQuery {
    /// Default `in_review`.
    #[param(
        pattern = "^(requested|in_review|approved|deferred|processing|paid|rejected|failed|cancelled)$"
    )]
    pub status: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// A reviewer's decision; the reason is required and recorded.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    /// Why; 1 to 500 characters (surrounding white space is dropped).
    #[schema(
        example = "source of funds documents checked",
        min_length = 1,
        max_length = 500
    )]
    pub reason: String,
}

/// A switch's new state.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchInput {
    pub enabled: bool,
}

/// Requests a withdrawal. Checks, in order: KYC (403 `kyc_required`), account status (403
/// `account_blocked`), available balance (402 `insufficient_funds`), chargebacks (403
/// `risk_rejected`), amount and wagering (review), then the risk rules (403 `risk_declined`,
/// 403 `kyc_step_up_required`, or review; docs/risk.md). Accepted payouts hold the amount at
/// once.
#[utoipa::path(post, path = "/v1/payouts/init", tag = "payouts", request_body = PayoutInitInput,
    params(("Idempotency-Key" = String, Header, description = "Required")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "accepted: approved, in_review, deferred or already processing", body = PayoutView),
        (status = 402, description = "insufficient_funds", body = ErrorBody),
        (status = 403, description = "kyc_required, account_blocked, risk_rejected, risk_declined, kyc_step_up_required", body = ErrorBody),
        (status = 404, description = "player_not_found", body = ErrorBody),
        (status = 409, description = "idempotency_key_reused, idempotency_key_in_use", body = ErrorBody),
        (status = 422, description = "validation_failed, currency_mismatch, no_provider, idempotency_key_missing", body = ErrorBody),
    ))]
pub async fn init_payout(
    State(state): State<AppState>,
    merchant: Merchant,
    claim: Option<Extension<IdempotencyClaim>>,
    ApiJson(input): ApiJson<PayoutInitInput>,
) -> Result<Response, ApiError> {
    let player_id = parse_id("player_id", &input.player_id)?;
    let currency = Currency::from_code(&input.currency)?;
    let amount = Money::new(
        state
            .amount_limits
            .parse_positive(currency, &input.amount)?,
        currency,
    );
    if input.method.is_empty()
        || input.method.len() > 32
        || !input
            .method
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return Err(ApiError::validation(
            "method",
            "must be a method name like \"card\"",
        ));
    }
    if let Some(destination) = &input.destination {
        if destination.is_empty()
            || destination.len() > 128
            || destination.chars().any(char::is_control)
        {
            return Err(ApiError::validation(
                "destination",
                "must be 1 to 128 printable characters",
            ));
        }
    }
    let request = NewPayout {
        player_id,
        amount,
        method: input.method,
        destination: input.destination,
    };
    let claim = claim.map(|c| c.0);
    let payout = state
        .payouts
        .request(&merchant.id, request, claim.as_ref())
        .await?;
    Ok(send_answer(Answer::of(201, &view(&payout))))
}

/// A payout.
#[utoipa::path(get, path = "/v1/payouts/{payout_id}", tag = "payouts", params(("payout_id" = String, Path)),
    security(("bearer" = [])), responses((status = 200, body = PayoutView), (status = 404, body = ErrorBody)))]
pub async fn get_payout(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(payout_id): ApiPath<String>,
) -> Result<Json<PayoutView>, ApiError> {
    let payout_id = payout_in_path(&payout_id)?;
    Ok(Json(view(
        &state.payouts.get(&merchant.id, &payout_id).await?,
    )))
}

/// A player's payouts, newest first.
#[utoipa::path(get, path = "/v1/payouts", tag = "payouts", params(PayoutListQuery), security(("bearer" = [])),
    responses((status = 200, body = PayoutPage), (status = 422, body = ErrorBody)))]
pub async fn list_payouts(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiQuery(query): ApiQuery<PayoutListQuery>,
) -> Result<Json<PayoutPage>, ApiError> {
    let player_id: PlayerId = parse_id("player_id", &query.player_id)?;
    page(
        &state,
        Some(&merchant.id),
        Some(&player_id),
        None,
        query.cursor.as_deref(),
        query.limit,
    )
    .await
    .map(Json)
}

/// The player withdraws a payout not yet sent to a provider — where the jurisdiction allows
/// it (409 `cancel_not_allowed` in GB, for example). A repeat answers the cancelled payout
/// again.
#[utoipa::path(post, path = "/v1/payouts/{payout_id}/cancel", tag = "payouts", params(("payout_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = PayoutView), (status = 404, body = ErrorBody), (status = 409, description = "cancel_not_allowed, payout_not_cancellable", body = ErrorBody)))]
pub async fn cancel_payout(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(payout_id): ApiPath<String>,
) -> Result<Json<PayoutView>, ApiError> {
    let payout_id = payout_in_path(&payout_id)?;
    Ok(Json(view(
        &state.payouts.cancel(&merchant.id, &payout_id).await?,
    )))
}

/// The review queue (admin or finance keys): payouts in a status, `in_review` by default.
#[utoipa::path(get, path = "/v1/admin/payouts", tag = "admin", params(ReviewQueueQuery), security(("bearer" = [])),
    responses((status = 200, body = PayoutPage), (status = 403, body = ErrorBody)))]
pub async fn review_queue(
    State(state): State<AppState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<ReviewQueueQuery>,
) -> Result<Json<PayoutPage>, ApiError> {
    admin.require_any(&[roles::ADMIN, roles::FINANCE])?;
    let status = match query.status.as_deref() {
        None => PayoutStatus::InReview,
        Some(text) => PayoutStatus::parse(text)
            .ok_or_else(|| ApiError::validation("status", "is not a payout status"))?,
    };
    page(
        &state,
        None,
        None,
        Some(status),
        query.cursor.as_deref(),
        query.limit,
    )
    .await
    .map(Json)
}

/// Approves a payout in review and sends it (admin key; the reason is recorded with who and
/// when). A repeat answers the payout again (200); with an `Idempotency-Key`, a repeat gets
/// the first answer byte for byte.
#[utoipa::path(post, path = "/v1/admin/payouts/{payout_id}/approve", tag = "admin", request_body = ReviewInput,
    params(("payout_id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Optional, scoped by the admin key; a repeat replays the first answer")),
    security(("bearer" = [])),
    responses((status = 200, body = PayoutView), (status = 409, description = "payout_not_in_review (rejected, cancelled, or never sent to review); idempotency_key_reused, idempotency_key_in_use", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn approve_payout(
    State(state): State<AppState>,
    admin: Admin,
    claim: Option<Extension<IdempotencyClaim>>,
    ApiPath(payout_id): ApiPath<String>,
    ApiJson(input): ApiJson<ReviewInput>,
) -> Result<Response, ApiError> {
    let review = Review {
        decision: Decision::Approve,
        reason: &input.reason,
    };
    decide(&state, &admin, &payout_id, review, claim).await
}

/// Rejects a payout in review and releases its hold (admin key; reason required). A repeat
/// answers the payout again (200); with an `Idempotency-Key`, a repeat gets the first answer
/// byte for byte.
#[utoipa::path(post, path = "/v1/admin/payouts/{payout_id}/reject", tag = "admin", request_body = ReviewInput,
    params(("payout_id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Optional, scoped by the admin key; a repeat replays the first answer")),
    security(("bearer" = [])),
    responses((status = 200, body = PayoutView), (status = 409, description = "payout_not_in_review (approved, cancelled, or never sent to review); idempotency_key_reused, idempotency_key_in_use", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reject_payout(
    State(state): State<AppState>,
    admin: Admin,
    claim: Option<Extension<IdempotencyClaim>>,
    ApiPath(payout_id): ApiPath<String>,
    ApiJson(input): ApiJson<ReviewInput>,
) -> Result<Response, ApiError> {
    let review = Review {
        decision: Decision::Reject,
        reason: &input.reason,
    };
    decide(&state, &admin, &payout_id, review, claim).await
}

/// A reviewer's decision as asked for.
struct Review<'a> {
    decision: Decision,
    reason: &'a str,
}

/// Turns a switch on or off without a deploy (admin key). `payouts_paused` holds every payout
/// back as `deferred` until it is turned off.
#[utoipa::path(put, path = "/v1/admin/switches/{name}", tag = "admin", request_body = SwitchInput,
    params(("name" = String, Path, description = "payouts_paused")), security(("bearer" = [])),
    responses((status = 200, description = "{name, enabled}"), (status = 404, body = ErrorBody)))]
pub async fn set_switch(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(input): ApiJson<SwitchInput>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    if name != PAYOUTS_PAUSED {
        return Err(ApiError::not_found(
            "switch_not_found",
            format!("no switch {name:?}; known: [\"{PAYOUTS_PAUSED}\"]"),
        ));
    }
    state
        .store
        .set_switch(&name, input.enabled, &admin.key_id)
        .await?;
    tracing::info!(switch = %name, enabled = input.enabled, by = %admin.key_id, "switch changed");
    Ok(Json(json!({ "name": name, "enabled": input.enabled })).into_response())
}

async fn decide(
    state: &AppState,
    admin: &Admin,
    payout_id: &str,
    review: Review<'_>,
    claim: Option<Extension<IdempotencyClaim>>,
) -> Result<Response, ApiError> {
    admin.require_any(&[roles::ADMIN])?;
    let reason = review.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::validation(
            "reason",
            "is required (1 to 500 characters)",
        ));
    }
    let payout_id = payout_in_path(payout_id)?;
    let claim = claim.map(|c| c.0);
    let payout = state
        .payouts
        .review(
            &payout_id,
            review.decision,
            (&admin.key_id, reason),
            claim.as_ref(),
        )
        .await?;
    Ok(send_answer(Answer::of(200, &view(&payout))))
}

/// The payout a path names; an id that cannot be a payout's is not found, like an unknown
/// one.
fn payout_in_path(text: &str) -> Result<PayoutId, ApiError> {
    PayoutId::parse(text).map_err(|_| payout_not_found(text).into())
}

async fn page(
    state: &AppState,
    merchant_id: Option<&MerchantId>,
    player_id: Option<&PlayerId>,
    status: Option<PayoutStatus>,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<PayoutPage, ApiError> {
    let paging = &state.config.pagination;
    let limit = page_limit(paging, limit)?;
    let before = cursor.map(decode_keyset_cursor).transpose()?;
    let mut payouts = state
        .store
        .list_payouts(merchant_id, player_id, status, before, limit + 1)
        .await?;
    let next_cursor = if payouts.len() > limit as usize {
        payouts.truncate(limit as usize);
        payouts
            .last()
            .map(|p| encode_keyset_cursor(p.created_at_ms, p.id.as_str()))
    } else {
        None
    };
    Ok(PayoutPage {
        data: payouts.iter().map(view).collect(),
        next_cursor,
    })
}
