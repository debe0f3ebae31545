//! Trace ids: one per request, in the `X-Trace-Id` header, in every log line (the request
//! span) and in every error body (read from a task-local by [`crate::error::ApiError`]).

use std::time::Instant;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::ApiError;

tokio::task_local! {
    static TRACE_ID: String;
}

/// Response header carrying the trace id.
pub const TRACE_HEADER: &str = "x-trace-id";

/// The current request's trace id, or a fresh one outside a request.
pub fn current() -> String {
    TRACE_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| new_trace_id())
}

fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Gives the request a trace id (a caller's `X-Trace-Id` if it is sane), a span that every
/// log line inside it carries, and logs its end once.
pub async fn middleware(request: Request, next: Next) -> Response {
    let trace_id = request
        .headers()
        .get(TRACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (8..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_string)
        .unwrap_or_else(new_trace_id);
    let span = tracing::info_span!(
        "request",
        trace_id = %trace_id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = Instant::now();
    let header_value = HeaderValue::from_str(&trace_id).ok();
    let mut response = TRACE_ID
        .scope(trace_id, async move {
            let response = normalize_error(next.run(request).await).await;
            tracing::info!(
                status = response.status().as_u16(),
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "request finished"
            );
            response
        })
        .instrument(span)
        .await;
    if let Some(value) = header_value {
        response.headers_mut().insert(TRACE_HEADER, value);
    }
    response
}

/// Errors produced outside our handlers (an unknown method, a body over the limit, a bad
/// path parameter) come as plain text; give them the documented error body.
async fn normalize_error(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&text).trim().to_string();
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method_not_allowed",
            "this path does not accept that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "payload_too_large",
            "the request body is larger than allowed",
        ),
        StatusCode::NOT_FOUND => ApiError::new(status, "not_found", "no such resource"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the request took too long; retry it",
        ),
        s if s.is_server_error() => ApiError::internal_message(),
        _ => ApiError::new(
            status,
            "bad_request",
            if detail.is_empty() {
                "the request is malformed"
            } else {
                &detail
            },
        ),
    };
    let mut normalized = error.into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        normalized
            .headers_mut()
            .insert(header::ALLOW, allow.clone());
    }
    normalized
}
