//! The 3-D Secure ends of Kassa's card page (ADR 9300): where the Directory Server sends a
//! challenge's RReq, and where the ACS's page returns the browser with the `cres`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use kassa_connectors::threeds::AuthenticationResult;
use serde::Deserialize;
use serde_json::json;

use super::card_page::{charge, decline_unauthenticated, page_again, payment_of};
use crate::error::ApiError;
use crate::service::threeds::Verdict;
use crate::AppState;

/// `POST /pay/card/{payment_id}/threeds/results`: the RReq of a challenge, answered by the
/// RRes; an RReq naming no challenge of this payment gets an EMVCo `Erro` message.
pub async fn results(
    State(state): State<AppState>,
    Path(payment_id): Path<String>,
    Json(rreq): Json<AuthenticationResult>,
) -> Response {
    match state.threeds.results(&payment_id, rreq) {
        Ok(rres) => Json(rres).into_response(),
        Err(error) => {
            tracing::warn!(%error, payment_id, "RReq refused");
            // EMVCo error code 301: transaction id not recognised.
            let erro = json!({"messageType": "Erro", "errorCode": "301", "errorComponent": "S", "errorDescription": error.to_string()});
            (StatusCode::NOT_FOUND, Json(erro)).into_response()
        }
    }
}

/// The browser's form post back from the ACS.
#[derive(Deserialize)]
pub struct ReturnForm {
    cres: String,
}

/// `POST /pay/card/{payment_id}/threeds/return`: the challenge is over; the RReq's result
/// decides between the authorization and a decline.
pub async fn return_from_challenge(
    State(state): State<AppState>,
    Path(payment_id): Path<String>,
    Form(form): Form<ReturnForm>,
) -> Result<Response, ApiError> {
    let payment = payment_of(&state, &payment_id).await?;
    match state.threeds.finish(&payment_id, &form.cres) {
        Ok(finished) => match finished.verdict {
            Verdict::Authenticated(authenticated) => {
                charge(&state, &payment, finished.entry, Some(&authenticated)).await
            }
            Verdict::Refused(outcome) => decline_unauthenticated(&state, &payment, &outcome).await,
        },
        Err(error) => {
            tracing::warn!(%error, payment_id, "3-D Secure return refused");
            let why = "Your bank's check is over or has expired. Enter the card again.";
            Ok(page_again(&state, &payment, why, StatusCode::CONFLICT).await)
        }
    }
}
