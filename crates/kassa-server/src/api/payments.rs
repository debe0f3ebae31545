//! Deposits: `POST /v1/payments/init`, lookups, cancel, refunds, the inbound provider
//! webhook (`POST /v1/payments/webhook`, the seed's format) and live status streams.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::api::{ApiPath, ApiQuery};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::Stream;
use kassa_connectors::PaymentMethodToken;
use kassa_core::ids::PaymentId;
use kassa_core::payment::PaymentStatus;
use kassa_core::{Currency, Money};
use kassa_store::payments::PaymentRecord;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::api::{
    decode_keyset_cursor, encode_keyset_cursor, page_limit, parse_id, send_answer, ApiJson,
};
use crate::auth::Merchant;
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::IdempotencyClaim;
use crate::service::payments::{payment_not_found, NewPayment};
use crate::service::provider_events::{Delivery, ProviderEventError, ProviderEvents, HTTP_SOURCE};
use crate::views::payments::{payment_view as view, refund_view};
pub use crate::views::payments::{NextActionView, PaymentInitView, PaymentView, RefundView};
use crate::views::Answer;
use crate::views::PublicError;
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
    #[schema(example = "card", pattern = "^[a-z_]{1,32}$")]
    pub method: String,
    #[schema(pattern = "^[A-Za-z0-9._:@/-]{1,255}$")]
    pub player_id: String,
    /// Where the provider sends the player back to.
    #[schema(
        example = "https://casino.example/cashier/done",
        pattern = "^https?://\\S*$",
        max_length = 2048
    )]
    pub return_url: String,
    pub meta: PaymentMeta,
    /// A payment method the cashier tokenized in the player's browser with one provider
    /// account's own client library. That account is offered the deposit first; the others
    /// of the route, on a soft decline, show their own pages (ADR 64).
    pub payment_method_token: Option<PaymentMethodTokenInput>,
}

/// A payment method token and the provider account whose client library made it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMethodTokenInput {
    /// The provider account, e.g. `stripe-eu`.
    #[schema(example = "stripe-eu", max_length = 64)]
    pub account: String,
    /// The account's token as its library gave it: a Stripe `pm_…` id, or the JSON text of
    /// Adyen Drop-in's `state.data.paymentMethod`.
    #[schema(example = "pm_1QxYzAbCdEf", max_length = 8192)]
    pub token: String,
}

/// Context of the deposit, for routing and risk.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMeta {
    /// ISO 3166-1 alpha-2.
    #[schema(example = "MT", pattern = "^[A-Z]{2}$")]
    pub country: String,
    /// The player's device class: `desktop`, `mobile` or `tablet`. Free text is accepted;
    /// the metrics count anything else (and none) as `unknown`.
    #[schema(example = "mobile")]
    pub device: Option<String>,
    /// The player's device as the operator's device fingerprinting names it (at most 128
    /// characters); the risk rules count attempts and players per device with it.
    #[schema(max_length = 128)]
    pub device_id: Option<String>,
    /// The player's IP address; the risk rules count attempts and players per IP and look
    /// it up in the IP list.
    pub ip: Option<String>,
    pub session_id: Option<String>,
}

/// A page of payments, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentPage {
    pub data: Vec<PaymentView>,
    pub next_cursor: Option<String>,
}

/// Which payments to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PaymentListQuery {
    /// Your id for the player.
    #[param(pattern = "^[A-Za-z0-9._:@/-]{1,255}$")]
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
        (status = 403, description = "self_excluded, account_blocked: the player may not deposit (details.register when a national self-exclusion register excluded them); register_identity_required: the register check needs PUT /v1/players/{id}/identity first (docs/registers.md); risk_declined, kyc_step_up_required: the risk rules refused it (docs/risk.md)", body = ErrorBody),
        (status = 503, description = "register_unavailable: the national self-exclusion register could not answer and no recent answer stands in; retry after Retry-After", body = ErrorBody),
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
    let started_at = Instant::now();
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
    check_return_url(&input.return_url)?;
    let country = input.meta.country;
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::validation(
            "meta.country",
            "must be an ISO 3166-1 alpha-2 code like \"MT\"",
        ));
    }
    if input
        .meta
        .device_id
        .as_ref()
        .is_some_and(|d| d.is_empty() || d.chars().count() > 128)
    {
        return Err(ApiError::validation(
            "meta.device_id",
            "1 to 128 characters",
        ));
    }
    let payment_method_token = input
        .payment_method_token
        .map(|given| {
            let token = PaymentMethodToken::parse(&given.token).ok_or_else(|| {
                ApiError::validation(
                    "payment_method_token.token",
                    "1 to 8192 characters of text, no control characters",
                )
            })?;
            if given.account.is_empty() || given.account.len() > 64 {
                return Err(ApiError::validation(
                    "payment_method_token.account",
                    "a provider account id, 1 to 64 characters",
                ));
            }
            Ok((given.account, token))
        })
        .transpose()?;
    let request = NewPayment {
        player_id,
        amount,
        method: input.method,
        return_url: input.return_url,
        country,
        device: input.meta.device,
        device_id: input.meta.device_id,
        ip: input.meta.ip,
        session_id: input.meta.session_id,
        payment_method_token,
    };
    let claim = claim.map(|c| c.0);
    let started = state
        .payments
        .init(&merchant.id, request, claim.as_ref())
        .await?;
    let timing = server_timing(started_at.elapsed(), started.provider_elapsed);
    let mut response = send_answer(started.answer);
    response.headers_mut().insert(SERVER_TIMING, timing);
    Ok(response)
}

/// Response header with Kassa's own time and the provider's, in milliseconds.
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// `kassa;dur=<ms>, provider;dur=<ms>`: Kassa's part is the handler's whole time minus the
/// provider call, so it can be watched apart from the provider's.
fn server_timing(total: Duration, provider: Duration) -> HeaderValue {
    let kassa = total.saturating_sub(provider);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let text = format!(
        "kassa;dur={:.3}, provider;dur={:.3}",
        ms(kassa),
        ms(provider)
    );
    HeaderValue::from_str(&text).expect("digits, letters and punctuation only")
}

/// A payment.
#[utoipa::path(get, path = "/v1/payments/{payment_id}", tag = "payments",
    params(("payment_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = PaymentView), (status = 404, body = ErrorBody)))]
pub async fn get_payment(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(payment_id): ApiPath<String>,
) -> Result<Json<PaymentView>, ApiError> {
    let payment_id = payment_in_path(&payment_id)?;
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
    ApiQuery(query): ApiQuery<PaymentListQuery>,
) -> Result<Json<PaymentPage>, ApiError> {
    let player_id = parse_id("player_id", &query.player_id)?;
    let paging = &state.config.pagination;
    let limit = page_limit(paging, query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(decode_keyset_cursor)
        .transpose()?;
    let mut payments = state
        .store
        .list_payments(&merchant.id, &player_id, before, limit + 1)
        .await?;
    let next_cursor = if payments.len() > limit as usize {
        payments.truncate(limit as usize);
        payments
            .last()
            .map(|p| encode_keyset_cursor(p.created_at_ms, p.id.as_str()))
    } else {
        None
    };
    Ok(Json(PaymentPage {
        data: payments.iter().map(view).collect(),
        next_cursor,
    }))
}

/// Cancels a payment the player has not completed; a repeat answers the cancelled payment
/// again.
#[utoipa::path(post, path = "/v1/payments/{payment_id}/cancel", tag = "payments",
    params(("payment_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = PaymentView), (status = 404, body = ErrorBody), (status = 409, description = "payment_not_cancellable", body = ErrorBody)))]
pub async fn cancel_payment(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(payment_id): ApiPath<String>,
) -> Result<Json<PaymentView>, ApiError> {
    let payment_id = payment_in_path(&payment_id)?;
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
    ApiPath(payment_id): ApiPath<String>,
    claim: Option<Extension<IdempotencyClaim>>,
    ApiJson(input): ApiJson<RefundInput>,
) -> Result<Response, ApiError> {
    let payment_id = payment_in_path(&payment_id)?;
    let claim = claim.map(|c| c.0);
    let refund = state
        .payments
        .refund(
            &merchant.id,
            &payment_id,
            input.amount.as_deref(),
            claim.as_ref(),
        )
        .await?;
    Ok(send_answer(Answer::of(201, &refund_view(&refund))))
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
        (status = 404, description = "payout_not_found (a payout event)", body = ErrorBody),
        (status = 409, description = "duplicate_event: the event id was answered, but its answer could not be found", body = ErrorBody),
        (status = 422, description = "webhook_mismatch, malformed_webhook (details.field names a field holding a control character)", body = ErrorBody),
        (status = 429, description = "rate_limited: too many deliveries from this source address; see Retry-After", body = ErrorBody),
        (status = 503, description = "payment_not_found: no such payment yet (its start may not have committed; ADR 34), send the event again later; database_unavailable", body = ErrorBody),
    ))]
pub async fn seed_webhook(
    State(state): State<AppState>,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receive_webhook(&state, source, SEED_WEBHOOK_PROVIDER, &headers, &body).await
}

/// The inbound webhook of any configured provider.
#[utoipa::path(post, path = "/v1/providers/{provider}/webhook", tag = "payments", request_body = SeedWebhookBody,
    params(("provider" = String, Path)),
    responses((status = 200, description = "processed, ignored or a duplicate"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "rate_limited: too many deliveries from this source address; see Retry-After", body = ErrorBody),
        (status = 503, description = "payment_not_found (send again later), database_unavailable", body = ErrorBody)))]
pub async fn provider_webhook(
    State(state): State<AppState>,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiPath(provider): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receive_webhook(&state, source, &provider, &headers, &body).await
}

/// Hands one delivery to the provider-event pipeline and sends its answer; a source
/// address over its rate gets 429 before anything is read or stored.
async fn receive_webhook(
    state: &AppState,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    provider: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if let (Some(limiter), Some(Extension(ConnectInfo(address)))) =
        (&state.webhook_limiter, &source)
    {
        if let Err(retry_after_s) = limiter.check(&address.ip().to_string()) {
            return ApiError::rate_limited_address(retry_after_s).into_response();
        }
    }
    let delivery = Delivery {
        provider,
        headers,
        body,
        source: HTTP_SOURCE,
        source_address: source.map(|Extension(ConnectInfo(address))| address.ip()),
        received_at_ms: kassa_store::now_ms(),
        replay: None,
    };
    match ProviderEvents::of(state).receive(delivery).await {
        Ok(receipt) => {
            let mut response = send_answer(receipt.answer);
            response.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static(receipt.content_type),
            );
            response
        }
        // Not our fault (an event that may have overtaken its payment's start): answered
        // for a retry without an error in the log.
        Err(error @ ProviderEventError::PaymentNotFound { .. }) => {
            ApiError::from(error.problem()).into_response()
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// Live status of a payment as Server-Sent Events (`event: status`), until it is final.
#[utoipa::path(get, path = "/v1/payments/{payment_id}/events", tag = "payments",
    params(("payment_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "text/event-stream of {payment_id, status}"), (status = 404, body = ErrorBody)))]
pub async fn payment_events(
    State(state): State<AppState>,
    merchant: Merchant,
    ApiPath(payment_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let payment_id = payment_in_path(&payment_id)?;
    let payment = state.payments.get(&merchant.id, &payment_id).await?;
    Ok(status_stream(state, payment).into_response())
}

/// The same stream for the player's browser on the return page: the payment id is the
/// capability (unguessable), and only the status is shown.
pub async fn public_payment_events(
    State(state): State<AppState>,
    ApiPath(payment_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let payment = find_any(&state, &payment_id).await?;
    Ok(status_stream(state, payment).into_response())
}

/// The payment a path names; an id that cannot be a payment's is not found, like an
/// unknown one.
fn payment_in_path(text: &str) -> Result<PaymentId, ApiError> {
    PaymentId::parse(text).map_err(|_| payment_not_found(text).into())
}

async fn find_any(state: &AppState, payment_id: &str) -> Result<PaymentRecord, ApiError> {
    state
        .store
        .find_payment(&payment_in_path(payment_id)?)
        .await?
        .ok_or_else(|| payment_not_found(payment_id).into())
}

fn status_stream(
    state: AppState,
    payment: PaymentRecord,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut feed = state.payments.feed().subscribe();
    let stream = async_stream(move |mut emit| async move {
        let started = tokio::time::Instant::now();
        let mut last: Option<(PaymentStatus, Option<String>)> = None;
        loop {
            let current = state
                .store
                .get_payment(&payment.merchant_id, &payment.id)
                .await
                .ok()
                .flatten();
            if let Some(current) = current {
                let next = crate::web::continue_url(&current).map(str::to_string);
                let now = Some((current.status, next.clone()));
                if last != now {
                    last = now;
                    let data = json!({ "payment_id": current.id, "status": current.status.as_str(),
                                       "continue_url": next });
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
