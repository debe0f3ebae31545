//! The 3-D Secure ends of Kassa's card page (ADR 67): where the Directory Server sends a
//! challenge's RReq, and where the ACS's page returns the browser with the `cres`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};

use crate::api::ApiJson;
use kassa_connectors::threeds::AuthenticationResult;
use serde::Deserialize;
use serde_json::json;

use super::card_page::{charge, decline_unauthenticated, page_again, payment_of};
use crate::error::ApiError;
use crate::service::threeds::Verdict;
use crate::views::ErrorBody;
use crate::AppState;

/// `POST /pay/card/{payment_id}/threeds/results`: the RReq of a challenge, answered by the
/// RRes; an RReq naming no challenge of this payment gets an EMVCo `Erro` message.
#[utoipa::path(post, path = "/pay/card/{payment_id}/threeds/results", tag = "payments",
    description = "The 3-D Secure Directory Server's results request (RReq, EMVCo 3DS 2.2 JSON: \
        messageType, threeDSServerTransID, acsTransID, dsTransID, transStatus, eci, \
        authenticationValue) of a challenge on Kassa's card page (ADR 67); answered by the RRes \
        (messageType RRes, resultsStatus 01).",
    params(("payment_id" = String, Path)),
    request_body(content = Object, content_type = "application/json", description = "RReq"),
    responses(
        (status = 200, description = "RRes", body = Object),
        (status = 400, description = "a body that is not JSON", body = ErrorBody),
        (status = 404, description = "EMVCo Erro message (errorCode 301): no challenge of this payment waits on this node, or the RReq does not match it", body = Object),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "JSON that is not an RReq", body = ErrorBody),
    ))]
pub async fn results(
    State(state): State<AppState>,
    Path(payment_id): Path<String>,
    ApiJson(rreq): ApiJson<AuthenticationResult>,
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
