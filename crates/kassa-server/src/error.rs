//! The one error type of the API: a stable code, an HTTP status, a human message, details,
//! and the request's trace id, always as
//! `{"error": code, "message": text, "trace_id": id, "details": {…}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// The documented error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code, e.g. `insufficient_funds`.
    #[schema(example = "insufficient_funds")]
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The request's trace id; quote it to support.
    pub trace_id: String,
    /// Extra facts (the failing field, the balance, …).
    #[schema(value_type = Object)]
    pub details: Value,
}

/// An error answer. Build one with a constructor; the status and code stay together here.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
    retry_after_s: Option<u64>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: json!({}),
            retry_after_s: None,
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// 422: a field failed validation.
    pub fn validation(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field}: {message}"),
        )
        .with_details(json!({ "field": field }))
    }

    /// 401: no key, or a key we do not know.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a valid API key as Authorization: Bearer <key>",
        )
    }

    /// 403: the key may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 403 with a specific code.
    pub fn forbidden_with(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404 for a named kind of thing.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 with a specific code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// 402 with a specific code.
    pub fn payment_refused(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYMENT_REQUIRED, code, message)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after_s: u64) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests for this API key; retry after {retry_after_s} s"),
        );
        error.retry_after_s = Some(retry_after_s);
        error
    }

    /// 503: overloaded or shutting down; safe to retry.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500 whose cause is logged here, with its whole chain, and never sent to the client.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> ApiError {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %chain, "internal error");
        ApiError::internal_message()
    }

    /// 500 without logging (the cause was logged where it happened).
    pub fn internal_message() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong on our side; quote the trace_id to support",
        )
    }

    /// The body this error is sent as.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code.to_string(),
            message: self.message.clone(),
            trace_id: crate::trace::current(),
            details: self.details.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<kassa_store::StoreError> for ApiError {
    fn from(error: kassa_store::StoreError) -> ApiError {
        match error {
            kassa_store::StoreError::CurrencyImmutable { .. } => {
                ApiError::conflict("currency_immutable", error.to_string())
            }
            other => ApiError::internal(&other),
        }
    }
}

impl From<kassa_store::SqlxError> for ApiError {
    fn from(error: kassa_store::SqlxError) -> ApiError {
        ApiError::from(kassa_store::StoreError::from(error))
    }
}

impl From<kassa_core::MoneyError> for ApiError {
    fn from(error: kassa_core::MoneyError) -> ApiError {
        if let kassa_core::MoneyError::TooLarge { max, .. } = &error {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "amount_too_large",
                error.to_string(),
            )
            .with_details(json!({ "field": "amount", "max": max }));
        }
        let field = match error {
            kassa_core::MoneyError::UnknownCurrency(_) => "currency",
            _ => "amount",
        };
        ApiError::validation(field, error.to_string())
    }
}
