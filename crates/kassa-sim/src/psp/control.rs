//! `/sandbox/` commands for tests and demos: what a real PSP's back office or a cardholder's
//! bank would do. Not signed; never expose a sandbox to the internet.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::api::ApiError;
use super::store::{Dispute, Payment, PaymentStatus};
use super::webhooks::{self, Trigger, WebhookEvent};
use super::Shared;

/// Reason carried by the chargeback webhook.
pub const REASON_CHARGEBACK: &str = "fraudulent";

fn answer(payment: &Payment) -> Json<Value> {
    Json(json!({
        "provider_reference": payment.provider_reference,
        "payment_id": payment.payment_id,
        "status": payment.status.as_str(),
        "dispute_id": payment.dispute.as_ref().map(|d| d.dispute_id.clone()),
    }))
}

/// Runs `change` on the payment and sends the events it returns (even with autopilot off:
/// the caller asked for them).
fn command(
    shared: &Shared,
    reference: &str,
    change: impl FnOnce(&mut Payment) -> Result<Vec<WebhookEvent>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let (reply, events) = {
        let mut store = shared.store.lock().expect("store lock");
        let payment = store
            .payments
            .get_mut(reference)
            .ok_or_else(|| ApiError::not_found("payment"))?;
        let events = change(payment)?;
        (answer(payment), events)
    };
    let delay = Duration::from_millis(shared.config.webhook_delay_ms);
    webhooks::send(shared, events, delay, Trigger::Command);
    Ok(reply)
}

/// `POST /sandbox/payments/{reference}/chargeback`: the cardholder disputes a captured payment.
pub async fn chargeback(
    State(shared): State<Shared>,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    command(&shared, &reference, |payment| {
        if !matches!(
            payment.status,
            PaymentStatus::Captured | PaymentStatus::PartiallyRefunded
        ) {
            return Err(ApiError::invalid_state(format!(
                "only a captured payment can be charged back; this one is {}",
                payment.status.as_str()
            )));
        }
        let dispute = Dispute {
            dispute_id: kassa_core::ids::generate("sbxdp"),
            amount_minor: payment.settled_minor(),
            open: true,
        };
        payment.status = PaymentStatus::ChargedBack;
        let mut event = WebhookEvent::payment(payment, "chargeback", dispute.amount_minor)
            .with_reason(REASON_CHARGEBACK);
        event.dispute_id = Some(dispute.dispute_id.clone());
        payment.dispute = Some(dispute);
        Ok(vec![event])
    })
}

fn resolve(payment: &mut Payment, won: bool) -> Result<Vec<WebhookEvent>, ApiError> {
    let open_dispute = payment
        .dispute
        .as_ref()
        .filter(|dispute| dispute.open && payment.status == PaymentStatus::ChargedBack);
    let Some(dispute) = open_dispute else {
        return Err(ApiError::invalid_state(
            "no open dispute on this payment; trigger a chargeback first",
        ));
    };
    let (dispute_id, amount_minor) = (dispute.dispute_id.clone(), dispute.amount_minor);
    let status = if won {
        payment.status = payment.captured_status();
        "dispute_won"
    } else {
        "dispute_lost"
    };
    if let Some(dispute) = payment.dispute.as_mut() {
        dispute.open = false;
    }
    let mut event = WebhookEvent::payment(payment, status, amount_minor);
    event.dispute_id = Some(dispute_id);
    Ok(vec![event])
}

/// `POST /sandbox/payments/{reference}/dispute_won`: the merchant wins; the funds come back.
pub async fn dispute_won(
    State(shared): State<Shared>,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    command(&shared, &reference, |payment| resolve(payment, true))
}

/// `POST /sandbox/payments/{reference}/dispute_lost`: the chargeback is final.
pub async fn dispute_lost(
    State(shared): State<Shared>,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    command(&shared, &reference, |payment| resolve(payment, false))
}
