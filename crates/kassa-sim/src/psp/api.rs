//! The signed JSON API Kassa's connector calls.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kassa_core::Currency;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::store::{Payment, PaymentStatus, Payout, PayoutStatus, Refund, Stage, RECORDS_MAX};
use super::webhooks::{self, Trigger, WebhookEvent};
use super::Shared;

/// Longest id Kassa may send (payment, refund, payout ids).
const ID_LEN_MAX: usize = 255;
/// Payout methods the sandbox pays out through.
const PAYOUT_METHODS: &[&str] = &["card", "bank_transfer"];
/// Reason of a payout to a destination containing "fail".
pub const REASON_ACCOUNT_CLOSED: &str = "account_closed";

/// An error answer: `{"error": code, "message": text}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    pub fn invalid_state(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "invalid_state", message)
    }

    fn full() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sandbox_full",
            format!("the sandbox keeps at most {RECORDS_MAX} records; restart it"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "message": self.message});
        (self.status, Json(body)).into_response()
    }
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", error.to_string()))
}

fn check_id(name: &'static str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > ID_LEN_MAX {
        return Err(ApiError::invalid(
            "invalid_id",
            format!("{name} must be 1 to {ID_LEN_MAX} characters"),
        ));
    }
    Ok(())
}

fn parse_money(amount: &str, currency: &str) -> Result<(i64, Currency), ApiError> {
    let currency = Currency::from_code(currency)
        .map_err(|error| ApiError::invalid("invalid_currency", error.to_string()))?;
    let amount_minor = currency
        .parse_positive_minor(amount)
        .map_err(|error| ApiError::invalid("invalid_amount", error.to_string()))?;
    Ok((amount_minor, currency))
}

fn delay(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[derive(Deserialize)]
pub struct CreatePayment {
    payment_id: String,
    amount: String,
    currency: String,
    method: String,
    country: Option<String>,
    return_url: String,
}

fn payment_created(shared: &Shared, payment: &Payment) -> Value {
    json!({
        "provider_reference": payment.provider_reference,
        "payment_id": payment.payment_id,
        "status": payment.status.as_str(),
        "redirect_url": format!("{}/pay/{}", shared.base_url, payment.provider_reference),
    })
}

/// `POST /v1/payments`: a new payment, pending until the player pays on the hosted page.
pub async fn create_payment(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: CreatePayment = parse_body(&body)?;
    check_id("payment_id", &request.payment_id)?;
    let (amount_minor, currency) = parse_money(&request.amount, &request.currency)?;
    if request.method != "card" {
        return Err(ApiError::invalid(
            "unsupported_method",
            format!(
                "the sandbox takes method \"card\", not {:?}",
                request.method
            ),
        ));
    }
    if let Some(country) = &request.country {
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ApiError::invalid(
                "invalid_country",
                "country must be ISO 3166-1 alpha-2",
            ));
        }
    }
    let return_url_ok = reqwest::Url::parse(&request.return_url)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https"));
    if !return_url_ok {
        return Err(ApiError::invalid(
            "invalid_return_url",
            "return_url must be an http(s) URL",
        ));
    }
    let behaviour = shared.behaviour();
    behaviour.before_start(&request.payment_id).await?;
    let mut store = shared.store.lock().expect("store lock");
    // A retried init (after a timeout, say) finds the payment it created the first time.
    if let Some(reference) = store.payment_refs.get(&request.payment_id) {
        let existing = &store.payments[reference];
        if existing.amount_minor == amount_minor && existing.currency == currency {
            return Ok((
                StatusCode::CREATED,
                Json(payment_created(&shared, existing)),
            ));
        }
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "duplicate_payment_id",
            "a payment with this payment_id and another amount exists",
        ));
    }
    if store.payments.len() >= RECORDS_MAX {
        return Err(ApiError::full());
    }
    let declined = behaviour.decline(&request.payment_id);
    let payment = Payment {
        provider_reference: kassa_core::ids::generate("sbxpay"),
        payment_id: request.payment_id,
        amount_minor,
        currency,
        return_url: request.return_url,
        status: match declined {
            Some(_) => PaymentStatus::Declined,
            None => PaymentStatus::Pending,
        },
        stage: match declined {
            Some(_) => Stage::Done,
            None => Stage::AwaitingCard,
        },
        refunds: HashMap::new(),
        dispute: None,
        challenge_outcome: None,
    };
    tracing::info!(provider_reference = %payment.provider_reference, payment_id = %payment.payment_id, "payment created");
    let mut answer = payment_created(&shared, &payment);
    if let Some(reason) = declined {
        answer["reason"] = reason.into();
        answer["redirect_url"] = Value::Null;
    }
    store.payment_refs.insert(
        payment.payment_id.clone(),
        payment.provider_reference.clone(),
    );
    store
        .payments
        .insert(payment.provider_reference.clone(), payment);
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `GET /v1/payments/{reference}`: the payment as the sandbox sees it (status sync).
pub async fn get_payment(
    State(shared): State<Shared>,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = shared.store.lock().expect("store lock");
    let payment = store
        .payments
        .get(&reference)
        .ok_or_else(|| ApiError::not_found("payment"))?;
    Ok(Json(json!({
        "provider_reference": payment.provider_reference,
        "payment_id": payment.payment_id,
        "status": payment.status.as_str(),
        "amount": payment.currency.format_minor(payment.amount_minor),
        "currency": payment.currency.code(),
    })))
}

/// Cancels a pending payment; the caller sends the returned events.
pub fn cancel_pending(payment: &mut Payment) -> Result<Vec<WebhookEvent>, ApiError> {
    match payment.status {
        PaymentStatus::Pending => {
            payment.status = PaymentStatus::Cancelled;
            payment.stage = Stage::Done;
            let event = WebhookEvent::payment(payment, "cancelled", payment.amount_minor);
            Ok(vec![event])
        }
        // Cancelling twice is not an error: the first call may have timed out.
        PaymentStatus::Cancelled => Ok(Vec::new()),
        other => Err(ApiError::invalid_state(format!(
            "only a pending payment can be cancelled; this one is {}",
            other.as_str()
        ))),
    }
}

/// `POST /v1/payments/{reference}/cancel`.
pub async fn cancel_payment(
    State(shared): State<Shared>,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (answer, events) = {
        let mut store = shared.store.lock().expect("store lock");
        let payment = store
            .payments
            .get_mut(&reference)
            .ok_or_else(|| ApiError::not_found("payment"))?;
        let events = cancel_pending(payment)?;
        let answer = json!({
            "provider_reference": payment.provider_reference,
            "payment_id": payment.payment_id,
            "status": payment.status.as_str(),
        });
        (answer, events)
    };
    webhooks::send(
        &shared,
        events,
        delay(shared.config.webhook_delay_ms),
        Trigger::Autopilot,
    );
    Ok(Json(answer))
}

#[derive(Deserialize)]
pub struct CreateRefund {
    provider_reference: String,
    refund_id: String,
    amount: String,
}

/// `POST /v1/refunds`: accepted as pending; processed (and reported) after the webhook delay.
pub async fn create_refund(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: CreateRefund = parse_body(&body)?;
    check_id("refund_id", &request.refund_id)?;
    let answer = |amount: String, currency: &str, status: &str| {
        Json(json!({
            "refund_id": request.refund_id,
            "provider_reference": request.provider_reference,
            "status": status,
            "amount": amount,
            "currency": currency,
        }))
    };
    {
        let mut store = shared.store.lock().expect("store lock");
        let payment = store
            .payments
            .get_mut(&request.provider_reference)
            .ok_or_else(|| ApiError::not_found("payment"))?;
        let amount_minor = payment
            .currency
            .parse_positive_minor(&request.amount)
            .map_err(|error| ApiError::invalid("invalid_amount", error.to_string()))?;
        let amount_text = payment.currency.format_minor(amount_minor);
        if let Some(existing) = payment.refunds.get(&request.refund_id) {
            if existing.amount_minor != amount_minor {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "duplicate_refund_id",
                    "a refund with this refund_id and another amount exists",
                ));
            }
            let status = if existing.done { "refunded" } else { "pending" };
            return Ok((
                StatusCode::CREATED,
                answer(amount_text, payment.currency.code(), status),
            ));
        }
        if !matches!(
            payment.status,
            PaymentStatus::Captured | PaymentStatus::PartiallyRefunded
        ) {
            return Err(ApiError::invalid_state(format!(
                "only a captured payment can be refunded; this one is {}",
                payment.status.as_str()
            )));
        }
        if amount_minor > payment.refundable_minor() {
            return Err(ApiError::invalid(
                "amount_exceeds_refundable",
                format!(
                    "at most {} {} can still be refunded",
                    payment.currency.format_minor(payment.refundable_minor()),
                    payment.currency.code()
                ),
            ));
        }
        payment.refunds.insert(
            request.refund_id.clone(),
            Refund {
                amount_minor,
                done: false,
            },
        );
        tracing::info!(provider_reference = %request.provider_reference, refund_id = %request.refund_id, "refund accepted");
        let currency = payment.currency.code();
        let reply = answer(amount_text, currency, "pending");
        drop(store);
        schedule_refund(
            &shared,
            request.provider_reference.clone(),
            request.refund_id.clone(),
        );
        Ok((StatusCode::CREATED, reply))
    }
}

fn schedule_refund(shared: &Shared, reference: String, refund_id: String) {
    let task_shared = shared.clone();
    shared.spawn(async move {
        tokio::time::sleep(delay(task_shared.config.webhook_delay_ms)).await;
        let events = {
            let mut store = task_shared.store.lock().expect("store lock");
            let Some(payment) = store.payments.get_mut(&reference) else {
                return;
            };
            let Some(refund) = payment.refunds.get_mut(&refund_id) else {
                return;
            };
            refund.done = true;
            let amount_minor = refund.amount_minor;
            // A charged-back payment keeps that status; the refund still happened.
            if payment.status != PaymentStatus::ChargedBack {
                payment.status = payment.captured_status();
            }
            let mut event = WebhookEvent::payment(payment, "refunded", amount_minor);
            event.refund_id = Some(refund_id);
            vec![event]
        };
        webhooks::send(&task_shared, events, Duration::ZERO, Trigger::Autopilot);
    });
}

#[derive(Deserialize)]
pub struct CreatePayout {
    payout_id: String,
    amount: String,
    currency: String,
    method: String,
    destination: Option<String>,
}

fn payout_answer(payout: &Payout) -> Value {
    json!({
        "provider_reference": payout.provider_reference,
        "payout_id": payout.payout_id,
        "status": payout.status.as_str(),
        "amount": payout.currency.format_minor(payout.amount_minor),
        "currency": payout.currency.code(),
    })
}

/// `POST /v1/payouts`: accepted as pending; paid or failed after the webhook delay.
pub async fn create_payout(
    State(shared): State<Shared>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: CreatePayout = parse_body(&body)?;
    check_id("payout_id", &request.payout_id)?;
    let (amount_minor, currency) = parse_money(&request.amount, &request.currency)?;
    if !PAYOUT_METHODS.contains(&request.method.as_str()) {
        return Err(ApiError::invalid(
            "unsupported_method",
            format!("payout method must be one of {PAYOUT_METHODS:?}"),
        ));
    }
    let reference = {
        let mut store = shared.store.lock().expect("store lock");
        if let Some(reference) = store.payout_refs.get(&request.payout_id) {
            let existing = &store.payouts[reference];
            if existing.amount_minor == amount_minor && existing.currency == currency {
                return Ok((StatusCode::CREATED, Json(payout_answer(existing))));
            }
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "duplicate_payout_id",
                "a payout with this payout_id and another amount exists",
            ));
        }
        if store.payouts.len() >= RECORDS_MAX {
            return Err(ApiError::full());
        }
        let payout = Payout {
            provider_reference: kassa_core::ids::generate("sbxpo"),
            payout_id: request.payout_id.clone(),
            amount_minor,
            currency,
            method: request.method,
            destination: request.destination,
            status: PayoutStatus::Pending,
        };
        tracing::info!(provider_reference = %payout.provider_reference, payout_id = %payout.payout_id, method = %payout.method, "payout accepted");
        let reference = payout.provider_reference.clone();
        store
            .payout_refs
            .insert(request.payout_id, reference.clone());
        store.payouts.insert(reference.clone(), payout);
        reference
    };
    let answer = {
        let store = shared.store.lock().expect("store lock");
        payout_answer(&store.payouts[&reference])
    };
    schedule_payout(&shared, reference);
    Ok((StatusCode::CREATED, Json(answer)))
}

fn schedule_payout(shared: &Shared, reference: String) {
    let task_shared = shared.clone();
    shared.spawn(async move {
        tokio::time::sleep(delay(task_shared.config.webhook_delay_ms)).await;
        let events = {
            let mut store = task_shared.store.lock().expect("store lock");
            let Some(payout) = store.payouts.get_mut(&reference) else {
                return;
            };
            let fails = payout
                .destination
                .as_deref()
                .is_some_and(|destination| destination.contains("fail"));
            let reason = if fails {
                payout.status = PayoutStatus::Failed;
                Some(REASON_ACCOUNT_CLOSED)
            } else {
                payout.status = PayoutStatus::Paid;
                None
            };
            vec![WebhookEvent::payout(payout, reason)]
        };
        webhooks::send(&task_shared, events, Duration::ZERO, Trigger::Autopilot);
    });
}

/// `GET /v1/payouts/{reference}`.
pub async fn get_payout(
    State(shared): State<Shared>,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = shared.store.lock().expect("store lock");
    let payout = store
        .payouts
        .get(&reference)
        .ok_or_else(|| ApiError::not_found("payout"))?;
    Ok(Json(payout_answer(payout)))
}
