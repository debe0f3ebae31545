//! Deposits: `POST /v1/payments/init`, lookups, cancel, refunds, the inbound provider
//! webhook (`POST /v1/payments/webhook`, the seed's format) and live status streams.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::Stream;
use kassa_connectors::{ProviderEvent, WebhookError};
use kassa_core::payment::PaymentStatus;
use kassa_core::{ids, Currency};
use kassa_store::now_ms;
use kassa_store::payments::{PaymentRecord, RefundRecord, WebhookDelivery};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::api::{
    decode_keyset_cursor, encode_keyset_cursor, external_id, page_limit, rfc3339, ApiJson,
};
use crate::auth::Merchant;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::IdempotencyClaim;
use crate::service::payments::{payment_not_found, NewPayment};
use crate::service::webhook_answer;
use crate::AppState;

/// Name of the provider whose webhooks arrive at `/v1/payments/webhook`.
pub const SEED_WEBHOOK_PROVIDER: &str = "sandbox";
/// Longest a status stream stays open.
const STREAM_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// How often a stream re-reads the status (changes made by other nodes).
const STREAM_POLL: Duration = Duration::from_secs(1);

/// A deposit to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentInitInput {
    #[schema(example = "50.00")]
    pub amount: String,
    #[schema(example = "EUR")]
    pub currency: String,
    /// Payment method, e.g. `card`.
    #[schema(example = "card")]
    pub method: String,
    pub player_id: String,
    /// Where the provider sends the player back to.
    #[schema(example = "https://casino.example/cashier/done")]
    pub return_url: String,
    pub meta: PaymentMeta,
}

/// Context of the deposit, for routing and risk.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMeta {
    /// ISO 3166-1 alpha-2.
    #[schema(example = "MT")]
    pub country: String,
    /// `desktop`, `mobile`, …
    pub device: Option<String>,
    pub ip: Option<String>,
    pub session_id: Option<String>,
}

/// Answer to an init.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentInitView {
    pub payment_id: String,
    #[schema(example = "pending")]
    pub status: String,
    /// Send the player here.
    pub redirect_url: Option<String>,
    pub provider: String,
}

/// A payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    pub payment_id: String,
    /// `initiated`, `pending`, `authorized`, `captured`, `partially_refunded`, `refunded`,
    /// `charged_back`, `declined`, `failed`, `cancelled`, `expired`.
    pub status: String,
    pub amount: String,
    pub currency: String,
    pub refunded: String,
    pub method: String,
    pub player_id: String,
    pub provider: String,
    pub provider_reference: Option<String>,
    pub redirect_url: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A page of payments, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentPage {
    pub data: Vec<PaymentView>,
    pub next_cursor: Option<String>,
}

/// Which payments to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PaymentListQuery {
    pub player_id: String,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// A refund to start; the whole refundable amount when `amount` is absent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundInput {
    #[schema(example = "10.00")]
    pub amount: Option<String>,
}

/// A refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundView {
    pub refund_id: String,
    pub payment_id: String,
    pub amount: String,
    pub currency: String,
    /// `pending`, `succeeded`, `failed`.
    pub status: String,
}

fn view(p: &PaymentRecord) -> PaymentView {
    PaymentView {
        payment_id: p.id.clone(),
        status: p.status.as_str().to_string(),
        amount: p.currency.format_minor(p.amount_minor),
        currency: p.currency.code().to_string(),
        refunded: p.currency.format_minor(p.refunded_minor),
        method: p.method.clone(),
        player_id: p.player_id.clone(),
        provider: p.provider.clone(),
        provider_reference: p.provider_reference.clone(),
        redirect_url: p.redirect_url.clone(),
        failure_reason: p.failure_reason.clone(),
        created_at: rfc3339(p.created_at_ms),
        updated_at: rfc3339(p.updated_at_ms),
    }
}

fn init_view(p: &PaymentRecord) -> PaymentInitView {
    PaymentInitView {
        payment_id: p.id.clone(),
        status: p.status.as_str().to_string(),
        redirect_url: p.redirect_url.clone(),
        provider: p.provider.clone(),
    }
}

fn refund_view(r: &RefundRecord) -> RefundView {
    RefundView {
        refund_id: r.id.clone(),
        payment_id: r.payment_id.clone(),
        amount: r.currency.format_minor(r.amount_minor),
        currency: r.currency.code().to_string(),
        status: r.status.clone(),
    }
}

fn check_return_url(url: &str) -> Result<(), ApiError> {
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::validation(
            "return_url",
            "must be an http(s) URL of at most 2048 characters",
        ));
    }
    Ok(())
}

/// Starts a deposit: routes it to a provider and answers where to send the player.
#[utoipa::path(post, path = "/v1/payments/init", tag = "payments", request_body = PaymentInitInput,
    params(("Idempotency-Key" = String, Header, description = "Required; a repeat replays the first answer")),
    security(("bearer" = [])),
    responses(
        (status = 201, body = PaymentInitView),
        (status = 404, description = "player_not_found", body = ErrorBody),
        (status = 409, description = "idempotency_key_reused, idempotency_key_in_use", body = ErrorBody),
        (status = 422, description = "validation_failed, currency_mismatch, no_provider, idempotency_key_missing", body = ErrorBody),
        (status = 502, description = "provider_unavailable", body = ErrorBody),
    ))]
pub async fn init_payment(
    State(state): State<AppState>,
    merchant: Merchant,
    claim: Option<Extension<IdempotencyClaim>>,
    ApiJson(input): ApiJson<PaymentInitInput>,
) -> Result<Response, ApiError> {
    external_id("player_id", &input.player_id)?;
    let currency = Currency::from_code(&input.currency)?;
    let amount_minor = state
        .amount_limits
        .parse_positive(currency, &input.amount)?;
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
    check_return_url(&input.return_url)?;
    let country = input.meta.country;
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::validation(
            "meta.country",
            "must be an ISO 3166-1 alpha-2 code like \"MT\"",
        ));
    }
    let request = NewPayment {
        player_id: input.player_id,
        amount_minor,
        currency,
        method: input.method,
        return_url: input.return_url,
        country,
        device: input.meta.device,
        ip: input.meta.ip,
        session_id: input.meta.session_id,
    };
    let render = |p: &PaymentRecord| serde_json::to_string(&init_view(p)).unwrap_or_default();
    let payment = state
        .payments
        .init(&merchant.id, request, claim.map(|c| c.0), render)
        .await?;
    Ok((StatusCode::CREATED, Json(init_view(&payment))).into_response())
}

/// A payment.
#[utoipa::path(get, path = "/v1/payments/{payment_id}", tag = "payments",
    params(("payment_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = PaymentView), (status = 404, body = ErrorBody)))]
pub async fn get_payment(
    State(state): State<AppState>,
    merchant: Merchant,
    Path(payment_id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    Ok(Json(view(
        &state.payments.get(&merchant.id, &payment_id).await?,
    )))
}

/// A player's payments, newest first.
#[utoipa::path(get, path = "/v1/payments", tag = "payments", params(PaymentListQuery), security(("bearer" = [])),
    responses((status = 200, body = PaymentPage), (status = 422, body = ErrorBody)))]
pub async fn list_payments(
    State(state): State<AppState>,
    merchant: Merchant,
    Query(query): Query<PaymentListQuery>,
) -> Result<Json<PaymentPage>, ApiError> {
    external_id("player_id", &query.player_id)?;
    let paging = &state.config.pagination;
    let limit = page_limit(paging, query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(decode_keyset_cursor)
        .transpose()?;
    let mut payments = state
        .store
        .list_payments(&merchant.id, &query.player_id, before, limit + 1)
        .await?;
    let next_cursor = if payments.len() > limit as usize {
        payments.truncate(limit as usize);
        payments
            .last()
            .map(|p| encode_keyset_cursor(p.created_at_ms, &p.id))
    } else {
        None
    };
    Ok(Json(PaymentPage {
        data: payments.iter().map(view).collect(),
        next_cursor,
    }))
}

/// Cancels a payment the player has not completed.
#[utoipa::path(post, path = "/v1/payments/{payment_id}/cancel", tag = "payments",
    params(("payment_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = PaymentView), (status = 404, body = ErrorBody), (status = 409, description = "payment_not_cancellable", body = ErrorBody)))]
pub async fn cancel_payment(
    State(state): State<AppState>,
    merchant: Merchant,
    Path(payment_id): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    Ok(Json(view(
        &state.payments.cancel(&merchant.id, &payment_id).await?,
    )))
}

/// Refunds (part of) a captured payment through its provider; the player's money is held at
/// once and leaves when the provider confirms.
#[utoipa::path(post, path = "/v1/payments/{payment_id}/refunds", tag = "payments", request_body = RefundInput,
    params(("payment_id" = String, Path), ("Idempotency-Key" = String, Header, description = "Required")),
    security(("bearer" = [])),
    responses(
        (status = 201, body = RefundView),
        (status = 402, description = "insufficient_funds", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "payment_not_refundable", body = ErrorBody),
        (status = 422, description = "more than captured minus refunded", body = ErrorBody),
    ))]
pub async fn create_refund(
    State(state): State<AppState>,
    merchant: Merchant,
    Path(payment_id): Path<String>,
    claim: Option<Extension<IdempotencyClaim>>,
    ApiJson(input): ApiJson<RefundInput>,
) -> Result<Response, ApiError> {
    let payment = state.payments.get(&merchant.id, &payment_id).await?;
    let amount_minor = input
        .amount
        .as_deref()
        .map(|a| state.amount_limits.parse_positive(payment.currency, a))
        .transpose()?;
    let render = |r: &RefundRecord| serde_json::to_string(&refund_view(r)).unwrap_or_default();
    let refund = state
        .payments
        .refund(
            &merchant.id,
            &payment_id,
            amount_minor,
            claim.map(|c| c.0),
            render,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(refund_view(&refund))).into_response())
}

/// The seed's inbound webhook body (a payout event carries `payout_id` instead).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct SeedWebhookBody {
    /// The provider's event id: the dedupe key.
    pub event_id: String,
    pub payment_id: String,
    /// `authorized`, `captured`, `declined`, `failed`, `cancelled`, `refunded`, `chargeback`,
    /// `dispute_won`, `dispute_lost`.
    pub status: String,
    #[schema(example = "50.00")]
    pub amount: String,
    pub currency: String,
    /// RFC 3339; refused when more than 5 minutes from now.
    #[schema(example = "2025-10-17T09:41:00Z")]
    pub timestamp: String,
    pub provider_reference: Option<String>,
    /// On `refunded`.
    pub refund_id: Option<String>,
    /// On chargebacks and disputes.
    pub dispute_id: Option<String>,
    pub reason: Option<String>,
}

/// The inbound webhook of the sandbox provider, in the seed's format: header
/// `X-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`.
#[utoipa::path(post, path = "/v1/payments/webhook", tag = "payments", request_body = SeedWebhookBody,
    params(("X-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256(secret, raw body)>")),
    responses(
        (status = 200, description = "processed, ignored (does not fit the state) or a duplicate"),
        (status = 401, description = "invalid_signature, stale_webhook", body = ErrorBody),
        (status = 404, description = "payment_not_found", body = ErrorBody),
        (status = 422, description = "webhook_mismatch, malformed_webhook", body = ErrorBody),
    ))]
pub async fn seed_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receive_webhook(&state, SEED_WEBHOOK_PROVIDER, &headers, &body).await
}

/// The inbound webhook of any configured provider.
#[utoipa::path(post, path = "/v1/providers/{provider}/webhook", tag = "payments", request_body = SeedWebhookBody,
    params(("provider" = String, Path)),
    responses((status = 200, description = "processed, ignored or a duplicate"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn provider_webhook(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receive_webhook(&state, &provider, &headers, &body).await
}

/// Verifies, dedupes and applies one webhook, and logs it whatever happens.
async fn receive_webhook(
    state: &AppState,
    provider_name: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let mut delivery = WebhookDelivery {
        id: ids::generate("whk"),
        provider: provider_name.to_string(),
        event_id: None,
        payment_id: None,
        headers: loggable_headers(headers),
        raw_body: String::from_utf8_lossy(body).into_owned(),
        outcome: String::new(),
        http_status: 0,
        received_at_ms: now_ms(),
    };
    let (outcome, response) =
        handle_webhook(state, provider_name, headers, body, &mut delivery).await;
    delivery.outcome = outcome.to_string();
    delivery.http_status = response.status().as_u16();
    if let Err(error) = state.store.insert_webhook_delivery(&delivery).await {
        tracing::error!(error = %error, "could not log a webhook delivery");
    }
    response
}

async fn handle_webhook(
    state: &AppState,
    provider_name: &str,
    headers: &HeaderMap,
    body: &Bytes,
    delivery: &mut WebhookDelivery,
) -> (&'static str, Response) {
    let Some(provider) = state.payments.provider(provider_name) else {
        return (
            "unknown_provider",
            ApiError::not_found(
                "provider_not_found",
                format!("no provider {provider_name:?}"),
            )
            .into_response(),
        );
    };
    let event = match provider.verify_webhook(headers, body, now_ms() / 1000) {
        Ok(event) => event,
        Err(WebhookError::InvalidSignature) => {
            return (
                "invalid_signature",
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_signature",
                    "the webhook signature is missing or wrong",
                )
                .into_response(),
            )
        }
        Err(WebhookError::Stale { .. }) => {
            return (
                "stale",
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "stale_webhook",
                    "the webhook timestamp is more than 5 minutes from now",
                )
                .into_response(),
            )
        }
        Err(WebhookError::Malformed(why)) => {
            return (
                "malformed",
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "malformed_webhook", why)
                    .into_response(),
            )
        }
    };
    let (amount_minor, currency) = match &event {
        ProviderEvent::Payment(e) => (e.amount_minor, e.currency),
        ProviderEvent::Payout(e) => (e.amount_minor, e.currency),
    };
    if let Err(error) = state.amount_limits.check(currency, amount_minor) {
        return ("amount_too_large", ApiError::from(error).into_response());
    }
    let event = match event {
        ProviderEvent::Payment(event) => event,
        ProviderEvent::Payout(event) => {
            return handle_payout_webhook(state, provider_name, &event, delivery).await
        }
    };
    delivery.event_id = Some(event.event_id.clone());
    delivery.payment_id = Some(event.payment_id.clone());
    apply_once(state, provider_name, &event.event_id, async {
        let applied = state
            .payments
            .apply_provider_event(provider_name, &event, "webhook")
            .await?;
        Ok(applied.answer())
    })
    .await
}

async fn handle_payout_webhook(
    state: &AppState,
    provider_name: &str,
    event: &kassa_connectors::PayoutEvent,
    delivery: &mut WebhookDelivery,
) -> (&'static str, Response) {
    delivery.event_id = Some(event.event_id.clone());
    delivery.payment_id = Some(event.payout_id.clone());
    apply_once(state, provider_name, &event.event_id, async {
        let (status, applied) = state
            .payouts
            .apply_provider_event(provider_name, event)
            .await?;
        Ok(webhook_answer(applied, "payout_status", status.as_str()))
    })
    .await
}

/// Applies a verified event at most once per event id: a repeat of a processed id gets the
/// first answer; if applying fails because a concurrent delivery of the same event won the
/// race (its effect and answer committed first), that delivery's answer is given. Returns the
/// delivery log's outcome with the response.
async fn apply_once(
    state: &AppState,
    provider_name: &str,
    event_id: &str,
    apply: impl std::future::Future<Output = Result<serde_json::Value, ApiError>>,
) -> (&'static str, Response) {
    let stored = state.store.processed_webhook_event(provider_name, event_id);
    match stored.await {
        Ok(Some((status, body))) => return ("duplicate", stored_answer(status, body)),
        Ok(None) => {}
        Err(error) => return ("error", ApiError::from(error).into_response()),
    }
    match apply.await {
        Ok(answer) => {
            let outcome = if answer["outcome"] == "processed" {
                "processed"
            } else {
                "ignored"
            };
            (outcome, Json(answer).into_response())
        }
        Err(error) => {
            let stored = state.store.processed_webhook_event(provider_name, event_id);
            if let Ok(Some((status, body))) = stored.await {
                return ("duplicate", stored_answer(status, body));
            }
            let outcome = match error.code() {
                "payment_not_found" => "unknown_payment",
                "payout_not_found" => "unknown_payout",
                "webhook_mismatch" => "mismatch",
                _ => "error",
            };
            (outcome, error.into_response())
        }
    }
}

fn stored_answer(status: u16, body: String) -> Response {
    let mut response =
        (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Headers worth keeping in the delivery log, with anything secret-looking removed.
fn loggable_headers(headers: &HeaderMap) -> String {
    let kept: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            )
        })
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                json!(value.to_str().unwrap_or("<binary>")),
            )
        })
        .collect();
    serde_json::Value::Object(kept).to_string()
}

/// Live status of a payment as Server-Sent Events (`event: status`), until it is final.
#[utoipa::path(get, path = "/v1/payments/{payment_id}/events", tag = "payments",
    params(("payment_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream of {payment_id, status}"), (status = 404, body = ErrorBody)))]
pub async fn payment_events(
    State(state): State<AppState>,
    merchant: Merchant,
    Path(payment_id): Path<String>,
) -> Result<Response, ApiError> {
    let payment = state.payments.get(&merchant.id, &payment_id).await?;
    Ok(status_stream(state, payment).into_response())
}

/// The same stream for the player's browser on the return page: the payment id is the
/// capability (unguessable), and only the status is shown.
pub async fn public_payment_events(
    State(state): State<AppState>,
    Path(payment_id): Path<String>,
) -> Result<Response, ApiError> {
    let payment = find_any(&state, &payment_id).await?;
    Ok(status_stream(state, payment).into_response())
}

async fn find_any(state: &AppState, payment_id: &str) -> Result<PaymentRecord, ApiError> {
    state
        .store
        .find_payment(payment_id)
        .await?
        .ok_or_else(|| payment_not_found(payment_id))
}

fn status_stream(
    state: AppState,
    payment: PaymentRecord,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut feed = state.payments.feed().subscribe();
    let stream = async_stream(move |mut emit| async move {
        let started = tokio::time::Instant::now();
        let mut last: Option<PaymentStatus> = None;
        loop {
            let current = state
                .store
                .get_payment(&payment.merchant_id, &payment.id)
                .await
                .ok()
                .flatten();
            if let Some(current) = current {
                if last != Some(current.status) {
                    last = Some(current.status);
                    let data =
                        json!({ "payment_id": current.id, "status": current.status.as_str() });
                    if !emit(Event::default().event("status").data(data.to_string())).await {
                        return;
                    }
                    if current.status.is_final() || current.status.is_captured_family() {
                        return;
                    }
                }
            }
            if started.elapsed() > STREAM_LIFETIME {
                return;
            }
            // Wake on this node's changes at once, and poll for other nodes'.
            let _ = tokio::time::timeout(STREAM_POLL, async {
                while let Ok((id, _)) = feed.recv().await {
                    if id == payment.id {
                        break;
                    }
                }
            })
            .await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A stream fed by an async closure that emits items; `emit` answers false once the client
/// is gone.
fn async_stream<F, Fut>(body: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(Box<dyn FnMut(Event) -> futures::future::BoxFuture<'static, bool> + Send>) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel::<Event>(8);
    let emit = Box::new(move |event: Event| {
        let sender = sender.clone();
        Box::pin(async move { sender.send(event).await.is_ok() })
            as futures::future::BoxFuture<'static, bool>
    });
    tokio::spawn(body(emit));
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    })
}
