//! The API Kassa calls: create an applicant, open its verification page.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{Applicant, Shared, APPLICANTS_MAX};
use crate::psp::ApiError;

#[derive(Deserialize)]
struct NewApplicant {
    external_user_id: String,
    level: String,
}

/// Longest external id taken (Kassa's check ids are about 30 characters).
const EXTERNAL_ID_LEN_MAX: usize = 128;

/// `POST /applicants`: a new applicant, or the one already created for the external id.
pub(super) async fn create_applicant(State(shared): State<Shared>, body: Bytes) -> Response {
    let request: NewApplicant = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", error.to_string())
                .into_response()
        }
    };
    let external_ok = !request.external_user_id.is_empty()
        && request.external_user_id.len() <= EXTERNAL_ID_LEN_MAX
        && !request.external_user_id.chars().any(char::is_control);
    if !external_ok || !matches!(request.level.as_str(), "basic" | "enhanced") {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_applicant",
            "external_user_id (1 to 128 characters) and level (basic, enhanced) are required",
        )
        .into_response();
    }
    let mut applicants = shared.applicants.lock().expect("applicants lock");
    if let Some(id) = applicants.by_external_id.get(&request.external_user_id) {
        let existing = &applicants.by_id[id];
        return (StatusCode::OK, Json(applicant_json(existing))).into_response();
    }
    if applicants.by_id.len() >= APPLICANTS_MAX {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sandbox_full",
            "the sandbox holds too many applicants",
        )
        .into_response();
    }
    let applicant = Applicant {
        id: kassa_core::ids::generate("app"),
        external_user_id: request.external_user_id,
        level: request.level,
        review_status: "init",
    };
    applicants
        .by_external_id
        .insert(applicant.external_user_id.clone(), applicant.id.clone());
    let answer = applicant_json(&applicant);
    applicants.by_id.insert(applicant.id.clone(), applicant);
    (StatusCode::CREATED, Json(answer)).into_response()
}

fn applicant_json(applicant: &Applicant) -> serde_json::Value {
    json!({
        "id": applicant.id,
        "external_user_id": applicant.external_user_id,
        "level": applicant.level,
        "review_status": applicant.review_status,
    })
}

/// `POST /applicants/{id}/verification`: the hosted page's URL (the same one every time).
pub(super) async fn start_verification(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Response {
    let applicants = shared.applicants.lock().expect("applicants lock");
    if !applicants.by_id.contains_key(&id) {
        return ApiError::not_found("applicant").into_response();
    }
    let url = format!("{}/verify/{id}", shared.base_url);
    Json(json!({ "applicant_id": id, "url": url })).into_response()
}
