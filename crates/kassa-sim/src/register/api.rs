//! The registers' check endpoints, the test identities that decide their answers, and the
//! sandbox's controls.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;

use super::Shared;

/// What the sandbox answers a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxAnswer {
    /// Excluded (`Y`, `isBlocked: true`).
    Excluded,
    /// Not registered (`N`, `isBlocked: false`).
    NotExcluded,
    /// Previously excluded (`P`; GAMSTOP only).
    PreviouslyExcluded,
    /// `503`: the register cannot answer now.
    Unavailable,
    /// `200` with an answer no parser should take (`X-Exclusion: maybe`, `"isBlocked": "no"`).
    Garbled,
}

/// GAMSTOP's test identities, by last name (any case): `Excluded` → `Y`, `Lapsed` → `P`,
/// `Unavailable` → `503`, `Garbled` → a malformed answer; anyone else → `N`.
pub fn gamstop_answer(last_name: &str) -> SandboxAnswer {
    match last_name.to_ascii_lowercase().as_str() {
        "excluded" => SandboxAnswer::Excluded,
        "lapsed" => SandboxAnswer::PreviouslyExcluded,
        "unavailable" => SandboxAnswer::Unavailable,
        "garbled" => SandboxAnswer::Garbled,
        _ => SandboxAnswer::NotExcluded,
    }
}

/// Spelpaus's test identities, by the birth number (digits 9 to 11) of the personal identity
/// number: `999` → blocked (e.g. `199001019992`), `998` → `503` (`199001019984`), `997` → a
/// malformed answer (`199001019976`); any other → not blocked (`199001011239`).
pub fn spelpaus_answer(subject_id: &str) -> SandboxAnswer {
    match subject_id.get(8..11) {
        Some("999") => SandboxAnswer::Excluded,
        Some("998") => SandboxAnswer::Unavailable,
        Some("997") => SandboxAnswer::Garbled,
        _ => SandboxAnswer::NotExcluded,
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

fn key_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|key| key == shared.config.api_key)
}

/// `POST /v2` (GAMSTOP): the form's five fields are required; the answer is in headers.
pub(super) async fn gamstop_check(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !shared.count_call() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    if !key_ok(&shared, &headers) {
        return text(StatusCode::FORBIDDEN, "Forbidden");
    }
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&body).into_owned().collect();
    let required = ["firstName", "lastName", "dateOfBirth", "email", "postcode"];
    if required
        .iter()
        .any(|name| form.get(*name).is_none_or(|value| value.is_empty()))
    {
        return text(StatusCode::BAD_REQUEST, "Bad Request");
    }
    let flag = match gamstop_answer(&form["lastName"]) {
        SandboxAnswer::Excluded => "Y",
        SandboxAnswer::NotExcluded => "N",
        SandboxAnswer::PreviouslyExcluded => "P",
        SandboxAnswer::Unavailable => {
            return text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        SandboxAnswer::Garbled => "maybe",
    };
    let mut answer = text(StatusCode::OK, "").into_response();
    let answer_headers = answer.headers_mut();
    answer_headers.insert("x-exclusion", HeaderValue::from_static(flag));
    let unique_id = kassa_core::ids::generate("gs");
    if let Ok(value) = HeaderValue::from_str(&unique_id) {
        answer_headers.insert("x-unique-id", value);
    }
    answer
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockingInfoRequest {
    request_id: String,
    subject_id: String,
}

/// `POST /api/blocking-info/{actor_id}` (Spelpaus).
pub(super) async fn spelpaus_check(
    State(shared): State<Shared>,
    Path(_actor_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !shared.count_call() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "");
    }
    if !key_ok(&shared, &headers) {
        return text(StatusCode::UNAUTHORIZED, "");
    }
    let Ok(request) = serde_json::from_slice::<BlockingInfoRequest>(&body) else {
        return text(StatusCode::BAD_REQUEST, "");
    };
    let valid = request.subject_id.len() == 12
        && request.subject_id.bytes().all(|b| b.is_ascii_digit())
        && !request.request_id.is_empty();
    if !valid {
        let errors = json!({ "SubjectId": [
            "The field SubjectId must be a string of 12 digits."
        ]});
        return (StatusCode::BAD_REQUEST, Json(errors)).into_response();
    }
    let blocked = match spelpaus_answer(&request.subject_id) {
        SandboxAnswer::Excluded => json!(true),
        SandboxAnswer::Unavailable => return text(StatusCode::SERVICE_UNAVAILABLE, ""),
        SandboxAnswer::Garbled => json!("no"),
        _ => json!(false),
    };
    let response_id = kassa_core::ids::generate("sp");
    Json(json!({
        "isBlocked": blocked, "requestId": request.request_id, "responseId": response_id,
    }))
    .into_response()
}

/// `GET /sandbox/calls`: how many checks were asked.
pub(super) async fn calls(State(shared): State<Shared>) -> Json<serde_json::Value> {
    Json(json!({ "calls": shared.calls.load(Ordering::SeqCst) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Behaviour {
    available: bool,
}

/// `PUT /sandbox/behaviour` `{"available": false}`: every check answers `503` until it is
/// `true` again.
pub(super) async fn behaviour(
    State(shared): State<Shared>,
    Json(behaviour): Json<Behaviour>,
) -> Json<serde_json::Value> {
    shared
        .available
        .store(behaviour.available, Ordering::SeqCst);
    Json(json!({ "available": behaviour.available }))
}
