//! Use cases behind the API. Each one that moves money runs in one database transaction.

pub mod payments;
pub mod payouts;
pub mod players;
pub mod wallet;

use kassa_connectors::ProviderError;
use kassa_store::StoreError;

use crate::error::ApiError;

/// Why applying a provider event failed: a store error worth retrying (a lost race, a
/// deadlock) or an answer for the provider.
pub(crate) enum ApplyError {
    Store(StoreError),
    Api(ApiError),
}

impl From<StoreError> for ApplyError {
    fn from(error: StoreError) -> ApplyError {
        ApplyError::Store(error)
    }
}

impl From<kassa_store::SqlxError> for ApplyError {
    fn from(error: kassa_store::SqlxError) -> ApplyError {
        ApplyError::Store(error.into())
    }
}

/// Transactions retried after a lost race before the error is answered.
const APPLY_RETRIES_MAX: u32 = 3;

/// Runs `attempt` again while it fails with a retryable store error (two deliveries of one
/// event racing: the loser retries and finds the winner's answer), at most
/// [`APPLY_RETRIES_MAX`] times.
pub(crate) async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApplyError>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(ApplyError::Store(error))
                if error.is_retryable() && retries < APPLY_RETRIES_MAX =>
            {
                retries += 1
            }
            Err(ApplyError::Store(error)) => return Err(error.into()),
            Err(ApplyError::Api(error)) => return Err(error),
        }
    }
}

/// What a provider is answered for an event it sent, stored with the event id so that a
/// repeat gets exactly the first answer: `status_key` is `payment_status` or `payout_status`.
pub fn webhook_answer(applied: bool, status_key: &str, status: &str) -> serde_json::Value {
    let mut answer = serde_json::json!({
        "received": true,
        "outcome": if applied { "processed" } else { "ignored" },
    });
    answer[status_key] = serde_json::Value::from(status);
    answer
}

/// 422 `webhook_mismatch`: the event is not about what we hold.
pub(crate) fn webhook_mismatch(message: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "webhook_mismatch",
        message,
    )
}

/// The stable reason code stored when a provider call failed.
pub(crate) fn provider_failure_code(error: &ProviderError) -> String {
    match error {
        ProviderError::Timeout => "provider_timeout".into(),
        ProviderError::Unavailable(_) => "provider_unavailable".into(),
        ProviderError::Rejected { code, .. } => format!("provider_rejected:{code}"),
        ProviderError::Protocol(_) => "provider_protocol_error".into(),
        ProviderError::Unsupported(_) => "provider_unsupported".into(),
    }
}

/// Logs a ledger outcome a flow did not expect and answers 500.
pub(crate) fn unexpected_ledger(outcome: &kassa_core::ledger::Outcome) -> ApiError {
    tracing::error!(
        ?outcome,
        "unexpected ledger outcome in a payment or payout flow"
    );
    ApiError::internal_message()
}
