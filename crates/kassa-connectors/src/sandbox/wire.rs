//! The sandbox PSP's JSON bodies, exactly as they travel. Amounts are decimal strings.

use serde::{Deserialize, Serialize};

/// `POST /v1/payments`.
#[derive(Serialize)]
pub(super) struct InitPaymentBody<'a> {
    pub payment_id: &'a str,
    pub amount: String,
    pub currency: &'a str,
    pub method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<&'a str>,
    pub return_url: &'a str,
}

/// Answer to `POST /v1/payments`.
#[derive(Deserialize)]
pub(super) struct InitPaymentAnswer {
    pub provider_reference: String,
    pub status: String,
    pub redirect_url: Option<String>,
    /// Why a payment declined at once was declined.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Answer to `GET /v1/payments/{ref}`.
#[derive(Deserialize)]
pub(super) struct PaymentAnswer {
    pub provider_reference: String,
    pub payment_id: String,
    pub status: String,
    pub amount: String,
    pub currency: String,
}

/// Answer to `POST /v1/payments/{ref}/cancel`.
#[derive(Deserialize)]
pub(super) struct CancelAnswer {
    pub status: String,
}

/// `POST /v1/refunds`.
#[derive(Serialize)]
pub(super) struct RefundBody<'a> {
    pub provider_reference: &'a str,
    pub refund_id: &'a str,
    pub amount: String,
}

/// Answer to `POST /v1/refunds`.
#[derive(Deserialize)]
pub(super) struct RefundAnswer {
    pub refund_id: String,
    pub provider_reference: String,
    pub status: String,
}

/// `POST /v1/payouts`.
#[derive(Serialize)]
pub(super) struct PayoutBody<'a> {
    pub payout_id: &'a str,
    pub amount: String,
    pub currency: &'a str,
    pub method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<&'a str>,
}

/// Answer to `POST /v1/payouts`.
#[derive(Deserialize)]
pub(super) struct PayoutAnswer {
    pub provider_reference: String,
    pub status: String,
}

/// Any 4xx or 5xx answer.
#[derive(Deserialize)]
pub(super) struct ErrorAnswer {
    pub error: String,
    #[serde(default)]
    pub message: String,
}
