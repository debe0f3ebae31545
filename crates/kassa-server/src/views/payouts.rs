//! Public view of withdrawals.

use kassa_store::payouts::PayoutRecord;
use serde::Serialize;
use utoipa::ToSchema;

use super::rfc3339;

/// A payout.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutView {
    pub payout_id: String,
    /// `requested`, `in_review`, `approved`, `deferred`, `processing`, `paid`, `rejected`,
    /// `failed`, `cancelled`.
    pub status: String,
    pub amount: String,
    pub currency: String,
    pub method: String,
    pub player_id: String,
    pub provider: Option<String>,
    /// Why checks sent it to review.
    pub review_reasons: Vec<String>,
    /// Why it failed, was rejected or cancelled.
    pub failure_reason: Option<String>,
    /// Estimated hours until the money arrives.
    pub eta_hours: i64,
    pub reviewed_by: Option<String>,
    pub review_note: Option<String>,
    /// The risk decision (outcome, score, the rules that fired and the features each read,
    /// missing features, the rule set's version and scope); `null` when none was made.
    #[schema(value_type = Option<Object>)]
    pub risk: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// The public view of a payout.
pub fn payout_view(p: &PayoutRecord) -> PayoutView {
    PayoutView {
        payout_id: p.id.to_string(),
        status: p.status.as_str().to_string(),
        amount: p.amount.format_amount(),
        currency: p.amount.currency.code().to_string(),
        method: p.method.clone(),
        player_id: p.player_id.to_string(),
        provider: p.provider.clone(),
        review_reasons: p.review_reasons.clone(),
        failure_reason: p.failure_reason.clone(),
        eta_hours: p.eta_hours,
        reviewed_by: p.reviewed_by.clone(),
        review_note: p.review_note.clone(),
        risk: super::stored_json(p.risk.as_deref()),
        created_at: rfc3339(p.created_at_ms),
        updated_at: rfc3339(p.updated_at_ms),
    }
}
