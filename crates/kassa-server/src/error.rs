//! The one error type of the API: a stable code, an HTTP status, a human message, details,
//! and the request's trace id, always as
//! `{"error": code, "message": text, "trace_id": id, "details": {…}}`. Use cases return
//! their own errors; [`crate::views::errors`] says how each is answered, and this module
//! turns that into a response (logging the cause chain of every 5xx once).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub use crate::views::ErrorBody;
use crate::views::{Problem, PublicError};

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

    /// 429 with `Retry-After`, for a source address (webhooks carry no API key).
    pub fn rate_limited_address(retry_after_s: u64) -> ApiError {
        let mut error = ApiError::rate_limited(retry_after_s);
        error.message =
            format!("too many requests from this address; retry after {retry_after_s} s");
        error
    }

    /// 503: overloaded or shutting down; safe to retry.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500 whose cause is logged here, with its whole chain, and never sent to the client.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> ApiError {
        log_chain(error);
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

    /// The answer to a use case's error; a 5xx's cause chain is logged here, once.
    pub fn public(error: &(impl PublicError + 'static)) -> ApiError {
        let problem = error.problem();
        if problem.code == crate::views::errors::DATABASE_UNAVAILABLE {
            // Logged once per outage, not per request (crate::outage).
            crate::outage::database_unreachable(&chain(error));
            let mut answer = ApiError::from(problem);
            answer.retry_after_s = Some(crate::outage::RETRY_AFTER_S);
            return answer;
        }
        if problem.status >= 500 {
            log_chain(error);
        }
        let retry_after_s = (problem.code == crate::views::errors::REGISTER_UNAVAILABLE)
            .then_some(crate::views::errors::REGISTER_RETRY_AFTER_S);
        let mut answer = ApiError::from(problem);
        answer.retry_after_s = retry_after_s;
        answer
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

fn log_chain(error: &(dyn std::error::Error + 'static)) {
    tracing::error!(error = %chain(error), "internal error");
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(problem.status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: problem.code,
            message: problem.message,
            details: problem.details,
            retry_after_s: None,
        }
    }
}

macro_rules! answered_as_api_error {
    ($($error:ty),*) => {$(
        impl From<$error> for ApiError {
            fn from(error: $error) -> ApiError {
                ApiError::public(&error)
            }
        }
    )*};
}

answered_as_api_error!(
    crate::service::payments::PaymentError,
    crate::service::payouts::PayoutError,
    crate::service::wallet::WalletError,
    crate::service::players::PlayerError,
    crate::service::provider_events::ProviderEventError,
    crate::service::webhook_endpoints::WebhookEndpointError,
    crate::service::routing::RoutingError,
    crate::service::limits::LimitsError,
    crate::service::risk::RiskError,
    crate::service::aml::AmlError,
    crate::service::exclusions::ExclusionError,
    crate::service::kyc::KycError,
    crate::service::registers::RegisterError,
    kassa_store::StoreError,
    kassa_core::MoneyError
);

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

impl From<kassa_store::SqlxError> for ApiError {
    fn from(error: kassa_store::SqlxError) -> ApiError {
        ApiError::from(kassa_store::StoreError::from(error))
    }
}
