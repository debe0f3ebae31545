//! Typed events parsed from a provider's verified inbound messages, and why one was refused.

use kassa_core::kyc::{KycLevel, VerificationResult};
use kassa_core::Currency;
use serde::Serialize;

/// What a provider reported about a payment in one webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentEventStatus {
    /// The funds are reserved on the player's card or account, not yet taken.
    Authorized,
    /// The funds are taken: the only status that credits the player.
    Captured,
    /// The issuer or the provider refused the payment.
    Declined,
    /// The payment could not be completed for a technical reason.
    Failed,
    /// The payment was cancelled before it completed.
    Cancelled,
    /// (Part of) a captured payment went back to the player; the event carries `refund_id`.
    Refunded,
    /// The provider refused or could not complete a refund it had accepted; carries
    /// `refund_id`. The refund's hold goes back to the player.
    RefundFailed,
    /// The cardholder disputed the payment and the funds were withdrawn; carries `dispute_id`.
    Chargeback,
    /// The merchant won the dispute: the charged-back funds come back; carries `dispute_id`.
    DisputeWon,
    /// The merchant lost the dispute: the chargeback is final; carries `dispute_id`.
    DisputeLost,
    /// The provider said which card paid (Stripe's `charge.succeeded`) and nothing else:
    /// the payment's status does not change; the event carries `card`.
    CardReported,
}

impl PaymentEventStatus {
    /// The wire spelling, e.g. `dispute_won`.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentEventStatus::Authorized => "authorized",
            PaymentEventStatus::Captured => "captured",
            PaymentEventStatus::Declined => "declined",
            PaymentEventStatus::Failed => "failed",
            PaymentEventStatus::Cancelled => "cancelled",
            PaymentEventStatus::Refunded => "refunded",
            PaymentEventStatus::RefundFailed => "refund_failed",
            PaymentEventStatus::Chargeback => "chargeback",
            PaymentEventStatus::DisputeWon => "dispute_won",
            PaymentEventStatus::DisputeLost => "dispute_lost",
            PaymentEventStatus::CardReported => "card_reported",
        }
    }

    /// Parses the wire spelling; `None` for anything unknown.
    pub fn parse(text: &str) -> Option<PaymentEventStatus> {
        Some(match text {
            "authorized" => PaymentEventStatus::Authorized,
            "captured" => PaymentEventStatus::Captured,
            "declined" => PaymentEventStatus::Declined,
            "failed" => PaymentEventStatus::Failed,
            "cancelled" => PaymentEventStatus::Cancelled,
            "refunded" => PaymentEventStatus::Refunded,
            "refund_failed" => PaymentEventStatus::RefundFailed,
            "chargeback" => PaymentEventStatus::Chargeback,
            "dispute_won" => PaymentEventStatus::DisputeWon,
            "dispute_lost" => PaymentEventStatus::DisputeLost,
            "card_reported" => PaymentEventStatus::CardReported,
            _ => return None,
        })
    }
}

/// What a provider reported about a payout in one webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutEventStatus {
    /// The money reached the player: post the withdrawal hold.
    Paid,
    /// The payout did not go through: void the hold; `reason` says why.
    Failed,
}

impl PayoutEventStatus {
    /// The wire spelling, e.g. `paid`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutEventStatus::Paid => "paid",
            PayoutEventStatus::Failed => "failed",
        }
    }

    /// Parses the wire spelling; `None` for anything unknown.
    pub fn parse(text: &str) -> Option<PayoutEventStatus> {
        match text {
            "paid" => Some(PayoutEventStatus::Paid),
            "failed" => Some(PayoutEventStatus::Failed),
            _ => None,
        }
    }
}

/// A payment event from a verified webhook, amounts already in minor units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PaymentEvent {
    /// The provider's id of this event: the dedupe key (a duplicate delivery repeats it).
    pub event_id: String,
    /// Kassa's payment id, as sent to the provider at init.
    pub payment_id: String,
    /// What happened.
    pub status: PaymentEventStatus,
    /// The amount the event is about (the refund's amount for `refunded`).
    pub amount_minor: i64,
    /// The currency of `amount_minor`.
    pub currency: Currency,
    /// When the provider says the event happened, in Unix seconds.
    pub timestamp_unix_s: i64,
    /// The provider's own reference of the payment, when it sent one.
    pub provider_reference: Option<String>,
    /// Kassa's refund id; present on `refunded`.
    pub refund_id: Option<String>,
    /// The provider's dispute id; present on `chargeback`, `dispute_won` and `dispute_lost`.
    pub dispute_id: Option<String>,
    /// A machine-readable reason, e.g. `insufficient_funds` on `declined`.
    pub reason: Option<String>,
    /// Whether the player answered a 3-D Secure challenge for this payment (`false`: none,
    /// or a frictionless authentication); `None` when the provider does not say. A later
    /// soft decline cascades only when the player did not (ADR 56).
    pub three_ds_challenged: Option<bool>,
    /// The card that paid, as far as the provider told (it saw the number; Kassa did not).
    pub card: Option<ReportedCard>,
}

/// What a provider reported of the card that paid: never the number, only what identifies
/// its issuer and shows it to people. Each part is checked for its shape when parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReportedCard {
    /// The issuing country, ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
    /// The scheme as the provider names it, lower case (`visa`, `mc`, `mastercard`…).
    pub brand: Option<String>,
    /// The last four digits.
    pub last4: Option<String>,
}

impl ReportedCard {
    /// Takes what has the right shape and drops the rest (a provider's odd value must not
    /// refuse the event that moves the money): `None` when nothing is left.
    pub fn of(country: Option<&str>, brand: Option<&str>, last4: Option<&str>) -> Option<Self> {
        let country = country.and_then(country_code);
        let brand = brand
            .map(str::trim)
            .filter(|b| {
                (1..=32).contains(&b.len())
                    && b.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
            })
            .map(str::to_ascii_lowercase);
        let last4 = last4
            .filter(|l| l.len() == 4 && l.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string);
        let card = ReportedCard {
            country,
            brand,
            last4,
        };
        (card != ReportedCard::default()).then_some(card)
    }
}

/// `text` as an ISO 3166-1 alpha-2 code (two ASCII letters, upper-cased; blanks around are
/// dropped), `None` when it is not one.
pub fn country_code(text: &str) -> Option<String> {
    let text = text.trim();
    (text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| text.to_ascii_uppercase())
}

/// A payout event from a verified webhook, amounts already in minor units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PayoutEvent {
    /// The provider's id of this event: the dedupe key.
    pub event_id: String,
    /// Kassa's payout id, as sent to the provider.
    pub payout_id: String,
    /// What happened.
    pub status: PayoutEventStatus,
    /// The payout's amount.
    pub amount_minor: i64,
    /// The currency of `amount_minor`.
    pub currency: Currency,
    /// When the provider says the event happened, in Unix seconds.
    pub timestamp_unix_s: i64,
    /// The provider's own reference of the payout, when it sent one.
    pub provider_reference: Option<String>,
    /// A machine-readable reason, e.g. `account_closed` on `failed`.
    pub reason: Option<String>,
}

/// One document check an ID provider ran, as it reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DocumentCheck {
    /// What was checked, e.g. `identity_document` or `source_of_funds`.
    pub document: String,
    /// The check, e.g. `expiry`, `data_consistency`, `image_quality`.
    pub check: String,
    /// `clear` or `consider`.
    pub result: String,
    /// The provider's note, when it gave one.
    pub detail: Option<String>,
}

/// An ID provider's result for one applicant's verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerificationEvent {
    /// The provider's id of this event: the dedupe key.
    pub event_id: String,
    /// The provider's applicant id.
    pub applicant_id: String,
    /// Kassa's check id, as sent when the applicant was created.
    pub external_id: String,
    /// The level the applicant was verified at.
    pub level: KycLevel,
    /// What the provider decided.
    pub result: VerificationResult,
    /// A machine-readable reason for a rejection or a resubmission, e.g. `document_expired`.
    pub reason: Option<String>,
    /// Each document check and its result.
    pub checks: Vec<DocumentCheck>,
    /// The country that issued the identity document (ISO 3166-1 alpha-2), when the
    /// provider read one; a value that is not a country code is dropped.
    pub document_country: Option<String>,
    /// When the provider signed the event, in Unix seconds.
    pub timestamp_unix_s: i64,
}

/// One verified, parsed provider webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderEvent {
    /// About a deposit (or its refund or chargeback).
    Payment(PaymentEvent),
    /// About a withdrawal.
    Payout(PayoutEvent),
    /// An ID provider's verification result.
    Verification(VerificationEvent),
}

impl ProviderEvent {
    /// The provider's event id, the dedupe key whichever the kind.
    pub fn event_id(&self) -> &str {
        match self {
            ProviderEvent::Payment(event) => &event.event_id,
            ProviderEvent::Payout(event) => &event.event_id,
            ProviderEvent::Verification(event) => &event.event_id,
        }
    }

    /// When the provider says the event happened, in Unix seconds.
    pub fn timestamp_unix_s(&self) -> i64 {
        match self {
            ProviderEvent::Payment(event) => event.timestamp_unix_s,
            ProviderEvent::Payout(event) => event.timestamp_unix_s,
            ProviderEvent::Verification(event) => event.timestamp_unix_s,
        }
    }
}

/// Why an inbound message (webhook, ISO 8583 advice, WebSocket event, SMPP delivery receipt)
/// was refused. Every variant means: change nothing, log, keep for replay.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboundRefusal {
    /// The signature (header, MAC field, session proof) is missing, unreadable, or does not
    /// match the bytes.
    #[error("webhook signature is missing or invalid")]
    InvalidSignature,
    /// The event's timestamp is further than the tolerance from now, either way.
    #[error(
        "webhook timestamp {timestamp_unix_s} is more than {tolerance_s} s from now ({now_unix_s})"
    )]
    Stale {
        /// The event's timestamp.
        timestamp_unix_s: i64,
        /// The receiver's clock.
        now_unix_s: i64,
        /// The largest accepted distance.
        tolerance_s: i64,
    },
    /// The signature is good (or the bytes are too large to check) but the body is not an
    /// event Kassa understands.
    #[error("webhook body is malformed: {0}")]
    Malformed(String),
}

/// The name the webhook pipeline knows [`InboundRefusal`] by; the same type.
pub type WebhookError = InboundRefusal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_card_keeps_only_well_formed_parts() {
        let card = ReportedCard::of(Some(" mt "), Some("Visa"), Some("4242")).unwrap();
        assert_eq!(
            card,
            ReportedCard {
                country: Some("MT".into()),
                brand: Some("visa".into()),
                last4: Some("4242".into()),
            }
        );
        let odd = ReportedCard::of(Some("MLT"), Some("vi sa"), Some("42a2"));
        assert_eq!(odd, None, "nothing well formed is left");
        let country_only = ReportedCard::of(Some("de"), Some(""), Some("12345")).unwrap();
        assert_eq!(country_only.country.as_deref(), Some("DE"));
        assert_eq!((country_only.brand, country_only.last4), (None, None));
        assert_eq!(ReportedCard::of(Some("\u{0}M"), None, None), None);
    }

    #[test]
    fn card_reported_is_a_status_of_its_own() {
        let status = PaymentEventStatus::parse("card_reported").unwrap();
        assert_eq!(status, PaymentEventStatus::CardReported);
        assert_eq!(status.as_str(), "card_reported");
    }
}
