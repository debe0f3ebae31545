//! Test-only controls (`/_sim/…`): a card on file, the payments held, disputes.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::error;
use super::notifications::{self, Item};
use super::Shared;

#[derive(Deserialize)]
pub struct CardOnFile {
    card_number: Option<String>,
}

/// `PUT /_sim/card-on-file {"card_number": "…" | null}`: payments started without card
/// details are decided with this card at once (a shopper's stored card); `null` sends them
/// to the hosted page again.
pub async fn card_on_file(State(shared): State<Shared>, Json(body): Json<CardOnFile>) -> Response {
    shared.store().card_on_file = body.card_number;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub struct RefundRefusal {
    reason: Option<String>,
}

/// `PUT /_sim/refund-refusal {"reason": "…" | null}`: later refunds are received, then
/// refused by a `REFUND` notification with `success=false` and this reason; `null` lets them
/// succeed again.
pub async fn refund_refusal(
    State(shared): State<Shared>,
    Json(body): Json<RefundRefusal>,
) -> Response {
    shared.store().refund_refusal = body.reason;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub struct ByReference {
    reference: Option<String>,
}

/// `GET /_sim/payments?reference=…`: the payments held, by merchant reference.
pub async fn payments(
    State(shared): State<Shared>,
    Query(query): Query<ByReference>,
) -> Json<Value> {
    let store = shared.store();
    let mut held: Vec<Value> = store
        .payments
        .values()
        .filter(|p| query.reference.as_deref().is_none_or(|r| r == p.reference))
        .map(|p| {
            json!({"pspReference": p.psp_reference, "merchantReference": p.reference,
                   "resultCode": p.result_code, "refunded": p.refunded,
                   "amount": {"value": p.value, "currency": p.currency}})
        })
        .collect();
    held.sort_by_key(|p| p["pspReference"].as_str().unwrap_or("").to_string());
    Json(json!({ "payments": held }))
}

/// `POST /_sim/payments/{pspReference}/{chargeback|chargeback_reversed}`: the issuer's
/// dispute, notified with the payment's own pspReference and merchantReference.
pub async fn dispute(
    State(shared): State<Shared>,
    Path((psp_reference, dispute)): Path<(String, String)>,
) -> Response {
    let (event_code, reason) = match dispute.as_str() {
        "chargeback" => ("CHARGEBACK", "Fraudulent transaction"),
        "chargeback_reversed" => ("CHARGEBACK_REVERSED", ""),
        _ => return error(StatusCode::NOT_FOUND, "000", "Not found", "validation"),
    };
    let Some(payment) = shared.store().payments.get(&psp_reference).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "000",
            "No such payment",
            "validation",
        );
    };
    if payment.result_code != "Authorised" {
        return error(StatusCode::CONFLICT, "000", "Not authorised", "validation");
    }
    let item = Item::of_payment(&payment, event_code, true, reason);
    notifications::send(&shared, &[item]);
    (StatusCode::ACCEPTED, Json(json!({"eventCode": event_code}))).into_response()
}
