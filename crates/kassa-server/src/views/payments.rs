//! Public views of deposits and refunds.

use kassa_store::payments::{PaymentRecord, RefundRecord};
use serde::Serialize;
use utoipa::ToSchema;

use super::rfc3339;

/// Answer to an init.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentInitView {
    pub payment_id: String,
    #[schema(example = "pending")]
    pub status: String,
    /// Send the player here.
    pub redirect_url: Option<String>,
    pub provider: String,
    /// The player's next step when it is not a page to send them to: funds to send to an
    /// address (crypto) or a code sent to their phone (carrier billing). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_action: Option<NextActionView>,
}

/// A start's next step that is not a redirect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NextActionView {
    /// Send `amount` `currency` to `address` before `expires_at_unix_s`.
    AwaitingFunds {
        address: String,
        #[schema(example = "50.00")]
        amount: String,
        currency: String,
        expires_at_unix_s: i64,
    },
    /// A one-time code went to `destination_masked`; valid until `expires_at_unix_s`.
    CodeSent {
        destination_masked: String,
        expires_at_unix_s: i64,
    },
    /// The provider decides later with no step for the player (a debit being processed):
    /// show that the deposit is under way and follow its status stream.
    Processing,
}

impl NextActionView {
    /// The next step of a provider's start, when it is not a redirect.
    pub fn of(start: &kassa_connectors::PaymentStart) -> Option<NextActionView> {
        use kassa_connectors::PaymentStart as S;
        match start {
            S::AwaitingFunds {
                address,
                amount_minor,
                currency,
                expires_at_unix_s,
            } => Some(NextActionView::AwaitingFunds {
                address: address.clone(),
                amount: currency.format_minor(*amount_minor),
                currency: currency.code().to_string(),
                expires_at_unix_s: *expires_at_unix_s,
            }),
            S::CodeSent {
                destination_masked,
                expires_at_unix_s,
            } => Some(NextActionView::CodeSent {
                destination_masked: destination_masked.clone(),
                expires_at_unix_s: *expires_at_unix_s,
            }),
            S::Processing => Some(NextActionView::Processing),
            _ => None,
        }
    }
}

/// A payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    pub payment_id: String,
    /// `initiated`, `pending`, `authorized`, `captured`, `partially_refunded`, `refunded`,
    /// `charged_back`, `declined`, `failed`, `cancelled`, `expired`.
    pub status: String,
    pub amount: String,
    pub currency: String,
    pub refunded: String,
    pub method: String,
    pub player_id: String,
    pub provider: String,
    pub provider_reference: Option<String>,
    pub redirect_url: Option<String>,
    pub failure_reason: Option<String>,
    /// How the payment was routed: `decision` (the rule, the accounts in order, a weighted
    /// split's draw, the reasons) and `attempts` (every provider account asked, with its
    /// outcome and whether the payment cascaded from it). `null` for payments made before
    /// routing was recorded.
    #[schema(value_type = Option<Object>)]
    pub routing: Option<serde_json::Value>,
    /// The risk decision before the start (outcome, score, the rules that fired and the
    /// features each read, missing features, the rule set's version and scope); a `review`
    /// deposit went ahead flagged. `null` when none was made.
    #[schema(value_type = Option<Object>)]
    pub risk: Option<serde_json::Value>,
    /// The card that paid, as the provider reported it (Stripe, Adyen); `null` until one
    /// did, and for providers that do not say.
    pub card: Option<ReportedCardView>,
    pub created_at: String,
    pub updated_at: String,
}

/// A provider's report of the card that paid: never the number. Each part is `null` when the
/// provider did not give it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportedCardView {
    /// The issuing country, ISO 3166-1 alpha-2.
    pub country: Option<String>,
    /// The scheme as the provider names it (`visa`, `mc`…).
    pub brand: Option<String>,
    pub last4: Option<String>,
}

/// A refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundView {
    pub refund_id: String,
    pub payment_id: String,
    pub amount: String,
    pub currency: String,
    /// `pending`, `succeeded`, `failed`.
    pub status: String,
}

/// The public view of a payment.
pub fn payment_view(p: &PaymentRecord) -> PaymentView {
    PaymentView {
        payment_id: p.id.to_string(),
        status: p.status.as_str().to_string(),
        amount: p.amount.format_amount(),
        currency: p.amount.currency.code().to_string(),
        refunded: p.refunded.format_amount(),
        method: p.method.clone(),
        player_id: p.player_id.to_string(),
        provider: p.provider.clone(),
        provider_reference: p.provider_reference.clone(),
        redirect_url: p.redirect_url.clone(),
        failure_reason: p.failure_reason.clone(),
        routing: super::stored_json(p.routing.as_deref()),
        risk: super::stored_json(p.risk.as_deref()),
        card: p.card.as_ref().map(|card| ReportedCardView {
            country: card.country.clone(),
            brand: card.brand.clone(),
            last4: card.last4.clone(),
        }),
        created_at: rfc3339(p.created_at_ms),
        updated_at: rfc3339(p.updated_at_ms),
    }
}

/// The answer to `POST /v1/payments/init`.
pub fn init_view(p: &PaymentRecord, next_action: Option<NextActionView>) -> PaymentInitView {
    PaymentInitView {
        payment_id: p.id.to_string(),
        status: p.status.as_str().to_string(),
        redirect_url: p.redirect_url.clone(),
        provider: p.provider.clone(),
        next_action,
    }
}

/// The public view of a refund.
pub fn refund_view(r: &RefundRecord) -> RefundView {
    RefundView {
        refund_id: r.id.to_string(),
        payment_id: r.payment_id.to_string(),
        amount: r.amount.format_amount(),
        currency: r.amount.currency.code().to_string(),
        status: r.status.as_str().to_string(),
    }
}
