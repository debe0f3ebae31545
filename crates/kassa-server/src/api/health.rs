//! Liveness, readiness and the OpenAPI document; no key needed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiError;
use crate::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "database_unavailable (with Retry-After) or unavailable: the database does not answer", body = crate::error::ErrorBody)
))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => {
            crate::outage::database_reachable();
            (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response()
        }
        Err(error) if error.is_unavailable() => ApiError::public(&error).into_response(),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            ApiError::unavailable("the database does not answer").into_response()
        }
    }
}

/// This API's OpenAPI 3.1 document, generated from the code.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI document")))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let document = DOCUMENT.get_or_init(|| {
        serde_json::to_value(crate::api::openapi_document(state)).unwrap_or_default()
    });
    Json(document.clone()).into_response()
}
