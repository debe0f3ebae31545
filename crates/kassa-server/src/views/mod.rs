//! What the API answers, without the HTTP framework: the public views of domain results and
//! the one mapping of every use case's error to a status, a stable code, a message and
//! details ([`errors`]). Services use it to store an idempotent answer in the transaction of
//! its effect; handlers use the same functions to send it, so the first answer and its
//! replay are the same bytes.

pub mod errors;
pub mod payments;
pub mod payouts;

use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

pub use errors::{Problem, PublicError};

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

/// A whole answer as sent and as remembered for an `Idempotency-Key`: status and JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body, exactly as sent.
    pub body: String,
}

impl Answer {
    /// A success answer with `view` as its body.
    pub fn of<T: Serialize>(status: u16, view: &T) -> Answer {
        Answer {
            status,
            body: to_json(view),
        }
    }

    /// The error answer of `error` for the request traced as `trace_id`.
    pub fn error(error: &impl PublicError, trace_id: &str) -> Answer {
        let problem = error.problem();
        Answer {
            status: problem.status,
            body: to_json(&problem.body(trace_id)),
        }
    }
}

/// Serializes a view; our views are plain structs of strings and numbers, which never fail.
pub fn to_json<T: Serialize>(view: &T) -> String {
    serde_json::to_string(view).unwrap_or_else(|error| {
        tracing::error!(%error, "a view did not serialize");
        json!({}).to_string()
    })
}

/// JSON stored as text, shown as JSON (`None` when absent or unreadable).
pub fn stored_json(text: Option<&str>) -> Option<serde_json::Value> {
    text.and_then(|text| serde_json::from_str(text).ok())
}

/// Formats stored milliseconds as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
