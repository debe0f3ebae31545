//! The one place that says how each use case's error is answered: HTTP status, stable
//! code, message and details. Changing a code here changes the API; tests pin them.

use crate::service::aml::AmlError;
use crate::service::exclusions::ExclusionError;
use crate::service::kyc::{KycError, Verification};
use crate::service::limits::{DepositRefused, LimitsError};
use crate::service::registers::RegisterError;
use crate::service::risk::{RiskError, RiskRefusal};
use crate::service::routing::RoutingError;
use kassa_connectors::ProviderError;
use kassa_core::aml::IllegalTransition;
use kassa_core::exclusion::ExclusionRefusal;
use kassa_core::kyc::{CheckReason, KycLevel};
use kassa_core::ledger::Refusal;
use kassa_core::limits::LimitKind;
use kassa_core::status::AccountStatus;
use kassa_core::MoneyError;
use kassa_store::StoreError;
use serde_json::{json, Value};

use super::ErrorBody;
use crate::service::payments::PaymentError;
use crate::service::payouts::PayoutError;
use crate::service::players::PlayerError;
use crate::service::provider_events::ProviderEventError;
use crate::service::wallet::{PlayRefused, WalletError};
use crate::service::webhook_endpoints::WebhookEndpointError;
use crate::service::webhook_urls::UrlRefusal;

/// The code of a 503 for a database that cannot be reached.
pub const DATABASE_UNAVAILABLE: &str = "database_unavailable";

/// The code of a 503 for a self-exclusion register that could not answer (ADR 73).
pub const REGISTER_UNAVAILABLE: &str = "register_unavailable";

/// The `Retry-After` of [`REGISTER_UNAVAILABLE`]: a register's outage is seldom shorter.
pub const REGISTER_RETRY_AFTER_S: u64 = 30;

/// An error as the API answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status code.
    pub status: u16,
    /// Stable, machine-readable code.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Extra facts, always an object.
    pub details: Value,
}

impl Problem {
    /// A problem without details.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Problem {
        self.details = details;
        self
    }

    /// 422: a field failed validation.
    pub fn validation(field: &str, message: impl std::fmt::Display) -> Problem {
        Problem::new(422, "validation_failed", format!("{field}: {message}"))
            .with_details(json!({ "field": field }))
    }

    /// 500: the cause is logged where the error is turned into a response, never sent.
    pub fn internal() -> Problem {
        Problem::new(
            500,
            "internal_error",
            "something went wrong on our side; quote the trace_id to support",
        )
    }

    /// The body this problem is sent as, for the request traced as `trace_id`.
    pub fn body(&self, trace_id: &str) -> ErrorBody {
        ErrorBody {
            error: self.code.to_string(),
            message: self.message.clone(),
            trace_id: trace_id.to_string(),
            details: self.details.clone(),
        }
    }
}

/// An error the API answers: its status, code, message and details.
pub trait PublicError: std::error::Error {
    /// How the API answers this error.
    fn problem(&self) -> Problem;
}

macro_rules! stable_code {
    ($($error:ty),*) => {$(
        impl $error {
            /// The stable code the API answers this error with.
            pub fn code(&self) -> &'static str {
                self.problem().code
            }
        }
    )*};
}

stable_code!(
    PaymentError,
    PayoutError,
    WalletError,
    PlayerError,
    ProviderEventError,
    WebhookEndpointError,
    RoutingError,
    LimitsError,
    ExclusionError,
    RegisterError
);

impl PublicError for WebhookEndpointError {
    fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            WebhookEndpointError::NotFound { .. } => {
                Problem::new(404, "webhook_endpoint_not_found", message)
            }
            WebhookEndpointError::EventNotFound { .. } => {
                Problem::new(404, "event_not_found", message)
            }
            WebhookEndpointError::Url(UrlRefusal::NotPublic { .. }) => {
                Problem::new(422, "url_not_allowed", message)
                    .with_details(json!({ "field": "url" }))
            }
            WebhookEndpointError::Url(refusal) => Problem::validation("url", refusal),
            WebhookEndpointError::EventTypes(why) => Problem::validation("event_types", why),
            WebhookEndpointError::Description => Problem::new(422, "validation_failed", message)
                .with_details(json!({ "field": "description" })),
            WebhookEndpointError::Disabled => {
                Problem::new(409, "webhook_endpoint_disabled", message)
            }
            WebhookEndpointError::Store(error) => error.problem(),
        }
    }
}

/// 402 `limit_exceeded`, naming the limit, its period and when the deposit would fit.
fn limit_exceeded(refused: &DepositRefused, message: String) -> Problem {
    let exceeded = refused.exceeded;
    let amount = |minor| refused.currency.format_minor(minor);
    Problem::new(402, "limit_exceeded", message).with_details(json!({
        "limit": LimitKind::Deposit.as_str(),
        "period": exceeded.period.as_str(),
        "limit_amount": amount(exceeded.limit_minor),
        "used": amount(exceeded.used_minor),
        "currency": refused.currency.code(),
        "resets_at": exceeded.fits_at_ms.map(crate::api::rfc3339),
    }))
}

/// 402 `limit_exceeded` for a bet, in the deposit refusal's shape: the limit (`wager`,
/// `loss` or `session`), its period (`session` for a session limit, whose amounts are
/// minutes), the limit and what it counted, and when the bet would fit.
fn play_limit_exceeded(refused: &PlayRefused) -> Problem {
    let exceeded = refused.exceeded;
    let resets_at = exceeded.resets_at_ms.map(crate::api::rfc3339);
    let message = match exceeded.period {
        Some(period) => format!(
            "the {} {} limit would be exceeded",
            period.as_str(),
            exceeded.kind
        ),
        None => "the session-time limit is reached; play again after a break".to_string(),
    };
    let details = match exceeded.period {
        Some(period) => {
            let amount = |minor| refused.currency.format_minor(minor);
            json!({
                "limit": exceeded.kind.as_str(), "period": period.as_str(),
                "limit_amount": amount(exceeded.limit), "used": amount(exceeded.used),
                "currency": refused.currency.code(), "resets_at": resets_at,
                "txn_id": refused.txn_id,
            })
        }
        None => json!({
            "limit": exceeded.kind.as_str(), "period": LimitKind::Session.as_str(),
            "limit_minutes": exceeded.limit, "used_minutes": exceeded.used,
            "resets_at": resets_at, "txn_id": refused.txn_id,
        }),
    };
    Problem::new(402, "limit_exceeded", message).with_details(details)
}

/// Names where the player verifies in a refusal's details (when a check could open).
fn add_verification(details: &mut serde_json::Value, verification: Option<&Verification>) {
    if let Some(verification) = verification {
        details["verification_url"] = json!(verification.url);
        details["kyc_check_id"] = json!(verification.check_id);
        details["kyc_level"] = json!(verification.level.as_str());
    }
}

impl PublicError for KycError {
    fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            KycError::Player(error) => error.problem(),
            KycError::NoProvider => Problem::new(409, "kyc_provider_not_configured", message),
            KycError::AlreadyVerified { level } => {
                Problem::new(409, "kyc_already_verified", message)
                    .with_details(json!({ "level": level.as_str() }))
            }
            KycError::NotStartable { level, status } => {
                Problem::new(409, "kyc_check_not_allowed", message)
                    .with_details(json!({ "level": level.as_str(), "status": status.as_str() }))
            }
            KycError::Provider(error) => {
                tracing::warn!(%error, "ID provider call failed");
                Problem::new(
                    502,
                    "kyc_provider_unavailable",
                    "the ID provider did not open the check; try again",
                )
            }
            KycError::Store(error) => error.problem(),
        }
    }
}

/// A start refused by the risk decision: 403 `risk_declined`, or 403
/// `kyc_step_up_required` when the player must verify their identity further first.
fn risk_refused(refusal: &RiskRefusal) -> Problem {
    let code = match refusal.outcome {
        kassa_core::risk::RiskOutcome::StepUp => "kyc_step_up_required",
        _ => "risk_declined",
    };
    Problem::new(403, code, refusal.to_string()).with_details(json!({
        "outcome": refusal.outcome.as_str(),
        "score": refusal.score,
        "rules": refusal.rules,
        "decision_id": refusal.decision_id,
    }))
}

impl PublicError for RiskError {
    fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            RiskError::Invalid(error) => Problem::new(422, "invalid_risk_rules", message)
                .with_details(json!({ "place": error.place, "problem": error.problem })),
            RiskError::Conflict { based_on, current } => {
                Problem::new(409, "risk_rules_version_conflict", message).with_details(
                    json!({ "based_on_version": based_on, "current_version": current }),
                )
            }
            RiskError::Store(error) => error.problem(),
        }
    }
}

impl PublicError for AmlError {
    fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            AmlError::CaseNotFound { case_id } => Problem::new(404, "case_not_found", message)
                .with_details(json!({ "case_id": case_id })),
            AmlError::Transition(IllegalTransition::NotAllowed { from, to }) => {
                let allowed: Vec<&str> = from.next().map(|s| s.as_str()).collect();
                Problem::new(409, "case_transition_not_allowed", message).with_details(
                    json!({ "from": from.as_str(), "to": to.as_str(), "allowed": allowed }),
                )
            }
            AmlError::Transition(_) => Problem::new(422, "validation_failed", message)
                .with_details(json!({ "field": "reason" })),
            AmlError::CaseClosed { case_id } => Problem::new(409, "case_closed", message)
                .with_details(json!({ "case_id": case_id })),
            AmlError::LookupsMissing { unmapped } => {
                Problem::new(422, "goaml_lookup_missing", message)
                    .with_details(json!({ "unmapped": unmapped }))
            }
            AmlError::Store(error) => error.problem(),
        }
    }
}

impl PublicError for LimitsError {
    fn problem(&self) -> Problem {
        match self {
            LimitsError::Player(error) => error.problem(),
            LimitsError::Store(error) => error.problem(),
        }
    }
}

impl PublicError for RoutingError {
    fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            RoutingError::Invalid(error) => Problem::new(422, "invalid_routing_document", message)
                .with_details(json!({ "place": error.place, "problem": error.problem })),
            RoutingError::UnknownAccount { place, account } => {
                Problem::new(422, "unknown_provider_account", message)
                    .with_details(json!({ "place": place, "account": account }))
            }
            RoutingError::Conflict { based_on, current } => {
                Problem::new(409, "routing_version_conflict", message).with_details(
                    json!({ "based_on_version": based_on, "current_version": current }),
                )
            }
            RoutingError::Store(error) => error.problem(),
        }
    }
}

impl PublicError for StoreError {
    fn problem(&self) -> Problem {
        match self {
            StoreError::CurrencyImmutable { .. } => {
                Problem::new(409, "currency_immutable", self.to_string())
            }
            error if error.is_unavailable() => Problem::new(
                503,
                DATABASE_UNAVAILABLE,
                "the database is briefly unreachable; nothing was done, retry after Retry-After",
            ),
            _ => Problem::internal(),
        }
    }
}

impl PublicError for MoneyError {
    fn problem(&self) -> Problem {
        if let MoneyError::TooLarge { max, .. } = self {
            return Problem::new(422, "amount_too_large", self.to_string())
                .with_details(json!({ "field": "amount", "max": max }));
        }
        let field = match self {
            MoneyError::UnknownCurrency(_) => "currency",
            _ => "amount",
        };
        Problem::validation(field, self)
    }
}

impl PublicError for PlayerError {
    fn problem(&self) -> Problem {
        match self {
            PlayerError::NotFound { player_id } => Problem::new(
                404,
                "player_not_found",
                format!("no player {player_id:?}; create it with PUT /v1/players/{{player_id}}"),
            ),
            PlayerError::CurrencyMismatch {
                player_id,
                held,
                asked,
            } => Problem::new(
                422,
                "currency_mismatch",
                format!("player {player_id} holds {held}, not {asked}"),
            )
            .with_details(json!({ "field": "currency", "player_currency": held.code() })),
            PlayerError::Restricted { status, .. } => {
                let code = match status {
                    AccountStatus::SelfExcluded => "self_excluded",
                    _ => "account_blocked",
                };
                Problem::new(403, code, self.to_string())
                    .with_details(json!({ "account_status": status.as_str() }))
            }
            // The self-exclusion refusal, naming the register that excluded the player.
            PlayerError::RegisterExcluded {
                register,
                checked_at_ms,
                ..
            } => Problem::new(403, "self_excluded", self.to_string()).with_details(json!({
                "register": register,
                "register_checked_at": crate::api::rfc3339(*checked_at_ms),
            })),
            PlayerError::Underage {
                minimum_age_years, ..
            } => Problem::new(403, "underage", self.to_string())
                .with_details(json!({ "minimum_age_years": minimum_age_years })),
            PlayerError::ExclusionInForce { ends_at, .. } => {
                Problem::new(409, "exclusion_in_force", self.to_string())
                    .with_details(json!({ "ends_at": ends_at }))
            }
            PlayerError::Store(error) => error.problem(),
        }
    }
}

impl PublicError for RegisterError {
    fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            RegisterError::Player(error) => error.problem(),
            RegisterError::IdentityMissing { register, missing } => {
                Problem::new(403, "register_identity_required", message)
                    .with_details(json!({ "register": register, "missing": missing }))
            }
            // The reason stays in the log: it may name the register's host.
            RegisterError::Unavailable { register, .. } => Problem::new(
                503,
                REGISTER_UNAVAILABLE,
                format!(
                    "the {register} self-exclusion register could not be asked and no recent \
                     answer stands in; nothing was done, retry after Retry-After"
                ),
            )
            .with_details(json!({ "register": register })),
            RegisterError::NoRegister { jurisdiction } => Problem::new(409, "no_register", message)
                .with_details(json!({ "jurisdiction": jurisdiction })),
            RegisterError::Store(error) => error.problem(),
        }
    }
}

impl PublicError for ExclusionError {
    fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            ExclusionError::Player(error) => error.problem(),
            ExclusionError::Refused(ExclusionRefusal::WouldShorten { ends_at_ms }) => {
                Problem::new(409, "exclusion_cannot_be_shortened", message)
                    .with_details(json!({ "ends_at": ends_at_ms.map(crate::api::rfc3339) }))
            }
            ExclusionError::Refused(refusal) => Problem::validation("days", refusal),
            ExclusionError::Store(error) => error.problem(),
        }
    }
}

fn provider_problem(error: &ProviderError) -> Problem {
    match error {
        ProviderError::Rejected { code, message } => Problem::new(
            402,
            "provider_declined",
            format!("the provider refused: {message}"),
        )
        .with_details(json!({ "provider_code": code })),
        ProviderError::Unsupported(what) => Problem::new(
            409,
            "provider_unsupported",
            format!("the provider does not support {what}"),
        ),
        _ => Problem::new(
            502,
            "provider_unavailable",
            "the payment provider did not answer; try again",
        ),
    }
}

impl PublicError for PaymentError {
    fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            PaymentError::Money(error) => error.problem(),
            PaymentError::Player(error) => error.problem(),
            PaymentError::NoProvider {
                method,
                currency,
                country,
                reasons,
            } => Problem::new(422, "no_provider", message).with_details(json!({
                "method": method, "currency": currency.code(), "country": country,
                "reasons": reasons,
            })),
            PaymentError::TokenAccountOffRoute { account, reasons } => {
                Problem::new(422, "payment_method_token_unusable", message)
                    .with_details(json!({ "account": account, "reasons": reasons }))
            }
            PaymentError::LimitExceeded(refused) => limit_exceeded(refused, message),
            PaymentError::Register(error) => error.problem(),
            PaymentError::Risk(refusal) => risk_refused(refusal),
            PaymentError::StepUp {
                refusal,
                verification,
            } => {
                let mut problem = risk_refused(refusal);
                problem.details["reason"] = json!(CheckReason::RiskStepUp.as_str());
                problem.details["required_level"] = json!(KycLevel::Enhanced.as_str());
                add_verification(&mut problem.details, verification.as_ref());
                problem
            }
            PaymentError::NotFound { .. } => Problem::new(404, "payment_not_found", message),
            PaymentError::NotCancellable { .. } | PaymentError::CancelOvertaken { .. } => {
                Problem::new(409, "payment_not_cancellable", message)
            }
            PaymentError::NotRefundable { .. } => {
                Problem::new(409, "payment_not_refundable", message)
            }
            PaymentError::RefundsUnsupported { .. } => {
                Problem::new(409, "refunds_unsupported", message)
            }
            PaymentError::RefundTooLarge { refundable } => {
                let refundable = refundable.format_amount();
                Problem::validation("amount", format!("at most {refundable} can be refunded"))
                    .with_details(json!({ "field": "amount", "refundable": refundable }))
            }
            PaymentError::RefundNotCovered => Problem::new(402, "insufficient_funds", message),
            PaymentError::Provider(error) => provider_problem(error),
            PaymentError::ProviderMissing { .. } => Problem::internal(),
            PaymentError::KeyInUse => Problem::new(409, "idempotency_key_in_use", message),
            PaymentError::CardNotExpected { status } => {
                Problem::new(409, "card_not_expected", message)
                    .with_details(json!({ "status": status.as_str() }))
            }
            PaymentError::CardAlreadySubmitted => {
                Problem::new(409, "card_already_submitted", message)
            }
            PaymentError::Store(error) => error.problem(),
        }
    }
}

impl PublicError for PayoutError {
    fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            PayoutError::Player(error) => error.problem(),
            PayoutError::KycRequired {
                kyc_status,
                verification,
            } => {
                let mut details = json!({
                    "kyc_status": kyc_status,
                    "required_step": "identity_verification",
                });
                add_verification(&mut details, verification.as_ref());
                Problem::new(403, "kyc_required", message).with_details(details)
            }
            PayoutError::StepUp {
                reason,
                refusal,
                verification,
            } => {
                let mut problem = match refusal {
                    Some(refusal) => risk_refused(refusal),
                    None => Problem::new(403, "kyc_step_up_required", message),
                };
                problem.details["reason"] = json!(reason.as_str());
                problem.details["required_level"] = json!(KycLevel::Enhanced.as_str());
                add_verification(&mut problem.details, verification.as_ref());
                problem
            }
            PayoutError::AccountBlocked { account_status } => {
                Problem::new(403, "account_blocked", message)
                    .with_details(json!({ "account_status": account_status }))
            }
            PayoutError::InsufficientFunds { available } => {
                Problem::new(402, "insufficient_funds", message)
                    .with_details(json!({ "available": available.format_amount() }))
            }
            PayoutError::RiskRejected { chargebacks } => {
                Problem::new(403, "risk_rejected", message)
                    .with_details(json!({ "rule": "open_chargebacks", "chargebacks": chargebacks }))
            }
            PayoutError::Risk(refusal) => risk_refused(refusal),
            PayoutError::NoProvider { method, currency } => {
                Problem::new(422, "no_provider", message)
                    .with_details(json!({ "method": method, "currency": currency.code() }))
            }
            PayoutError::NotFound { .. } => Problem::new(404, "payout_not_found", message),
            PayoutError::NotInReview { .. } => Problem::new(409, "payout_not_in_review", message),
            PayoutError::CancelNotAllowed { jurisdiction } => {
                Problem::new(409, "cancel_not_allowed", message)
                    .with_details(json!({ "jurisdiction": jurisdiction }))
            }
            PayoutError::NotCancellable { .. } => {
                Problem::new(409, "payout_not_cancellable", message)
            }
            PayoutError::Store(error) => error.problem(),
        }
    }
}

fn refusal_problem(refusal: &Refusal) -> Problem {
    match refusal {
        Refusal::NotReversible { .. } => {
            Problem::new(409, "rollback_not_allowed", refusal.to_string())
        }
        Refusal::ActsOnItself(_) => Problem::validation("original_txn_id", refusal),
        Refusal::Overflow => Problem::validation(
            "amount",
            "the balance would exceed the largest amount Kassa holds",
        ),
        Refusal::NotPositive => Problem::validation("amount", refusal),
        _ => Problem::internal(),
    }
}

impl PublicError for WalletError {
    fn problem(&self) -> Problem {
        match self {
            WalletError::Player(error) => error.problem(),
            WalletError::Unavailable(message) => Problem::new(503, "unavailable", *message),
            WalletError::TxnIdReused => Problem::new(
                409,
                "txn_id_reused",
                "this txn_id was already used for a different call; use a new txn_id",
            ),
            WalletError::TxnCancelled { rollback_txn_id } => Problem::new(
                409,
                "txn_cancelled",
                "this txn_id was rolled back before it arrived and can no longer be applied",
            )
            .with_details(json!({ "rollback_txn_id": rollback_txn_id })),
            WalletError::InsufficientFunds { balance, txn_id } => Problem::new(
                402,
                "insufficient_funds",
                "the player's balance does not cover this amount",
            )
            .with_details(json!({ "balance": balance, "txn_id": txn_id })),
            WalletError::LimitExceeded(refused) => play_limit_exceeded(refused),
            WalletError::OriginalNotFound { original_txn_id } => Problem::new(
                404,
                "original_txn_not_found",
                "no debit with this original_txn_id; it is remembered and will be refused if \
                 it arrives later",
            )
            .with_details(json!({ "original_txn_id": original_txn_id })),
            WalletError::PaymentNotFound { payment_id } => Problem::new(
                404,
                "payment_not_found",
                format!("no payment {payment_id:?} of this player to enrol"),
            )
            .with_details(json!({ "field": "payment_id" })),
            WalletError::Refused(refusal) => refusal_problem(refusal),
            WalletError::UnexpectedEntry { .. } => Problem::internal(),
            WalletError::Store(error) => error.problem(),
        }
    }
}

impl PublicError for ProviderEventError {
    fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            ProviderEventError::UnknownProvider { .. } => {
                Problem::new(404, "provider_not_found", message)
            }
            ProviderEventError::InvalidSignature => Problem::new(401, "invalid_signature", message),
            ProviderEventError::Stale => Problem::new(401, "stale_webhook", message),
            ProviderEventError::Malformed(why) => {
                Problem::new(422, "malformed_webhook", why.clone())
            }
            ProviderEventError::ControlCharacter { field } => {
                Problem::new(422, "malformed_webhook", message)
                    .with_details(json!({ "field": field }))
            }
            // Retryable: the payment's start may not have committed yet (ADR 0034).
            ProviderEventError::PaymentNotFound { .. } => Problem::new(
                503,
                "payment_not_found",
                format!("{message}; send the event again later"),
            ),
            ProviderEventError::PayoutNotFound { .. } => {
                Problem::new(404, "payout_not_found", message)
            }
            // Retryable like an unknown payment: the check's row may not have committed.
            ProviderEventError::KycCheckNotFound { .. } => Problem::new(
                503,
                "kyc_check_not_found",
                format!("{message}; send the event again later"),
            ),
            ProviderEventError::Mismatch(_) => Problem::new(422, "webhook_mismatch", message),
            // Answered with the stored answer by the pipeline; only if that answer is gone.
            ProviderEventError::AlreadyAnswered { .. } => {
                Problem::new(409, "duplicate_event", message)
            }
            ProviderEventError::ReversalStarted => Problem::new(409, "reversal_started", message),
            ProviderEventError::AmountTooLarge(error) => error.problem(),
            ProviderEventError::Player(error) => error.problem(),
            ProviderEventError::Store(error) => error.problem(),
            ProviderEventError::SourceRefused { .. } => {
                Problem::new(403, "webhook_source_refused", message)
            }
            ProviderEventError::Internal(_) => Problem::internal(),
            ProviderEventError::Timeout { .. } => Problem::new(
                503,
                "webhook_timeout",
                "the event could not be handled in time; it was kept, send it again later",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_stable_codes_and_statuses() {
        let cases: Vec<(Problem, u16, &str)> = vec![
            (
                PlayerError::NotFound {
                    player_id: "p".into(),
                }
                .problem(),
                404,
                "player_not_found",
            ),
            (
                PaymentError::RefundNotCovered.problem(),
                402,
                "insufficient_funds",
            ),
            (
                PaymentError::Provider(ProviderError::Timeout).problem(),
                502,
                "provider_unavailable",
            ),
            (
                PayoutError::CancelNotAllowed {
                    jurisdiction: "GB".into(),
                }
                .problem(),
                409,
                "cancel_not_allowed",
            ),
            (WalletError::TxnIdReused.problem(), 409, "txn_id_reused"),
            (ProviderEventError::Stale.problem(), 401, "stale_webhook"),
            (
                ProviderEventError::Store(StoreError::Corrupt("x".into())).problem(),
                500,
                "internal_error",
            ),
            (
                PlayerError::RegisterExcluded {
                    player_id: "p".into(),
                    register: "gamstop".into(),
                    checked_at_ms: 0,
                }
                .problem(),
                403,
                "self_excluded",
            ),
            (
                RegisterError::Unavailable {
                    register: "gamstop".into(),
                    reason: "timeout".into(),
                }
                .problem(),
                503,
                REGISTER_UNAVAILABLE,
            ),
            (
                RegisterError::IdentityMissing {
                    register: "spelpaus",
                    missing: vec!["national_id"],
                }
                .problem(),
                403,
                "register_identity_required",
            ),
            (
                RegisterError::NoRegister { jurisdiction: None }.problem(),
                409,
                "no_register",
            ),
        ];
        for (problem, status, code) in cases {
            assert_eq!((problem.status, problem.code), (status, code));
        }
    }
}
