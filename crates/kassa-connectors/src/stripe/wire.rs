//! Stripe's objects as they travel: form-encoded requests (bracket notation for nested
//! fields), JSON answers. Only the fields Kassa reads are declared; Stripe adds fields
//! freely, so unknown ones are ignored.

use serde::Deserialize;

/// A form body in Stripe's bracket notation, in insertion order, e.g.
/// `amount=5000&metadata[kassa_payment_id]=pay_1`; values are percent-encoded, brackets too,
/// as Stripe's own SDKs send them.
#[derive(Default)]
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    pub fn field(mut self, name: &str, value: impl Into<String>) -> Form {
        self.0.push((name.to_string(), value.into()));
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.0 {
            serializer.append_pair(name, value);
        }
        serializer.finish().into_bytes()
    }
}

/// Kassa's ids, as Stripe stores them in an object's `metadata`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Metadata {
    #[serde(default)]
    pub kassa_payment_id: Option<String>,
    #[serde(default)]
    pub kassa_refund_id: Option<String>,
    #[serde(default)]
    pub kassa_payout_id: Option<String>,
}

/// Why a card was refused (`last_payment_error`, and the `error` object's card fields).
#[derive(Debug, Default, Deserialize)]
pub(super) struct PaymentError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
}

impl PaymentError {
    /// The most specific reason: the issuer's `decline_code`, else Stripe's `code`; a failed
    /// 3-D Secure challenge is Kassa's `authentication_failed` (hard, counted as a 3-D Secure
    /// failure).
    pub fn reason(&self) -> Option<String> {
        match self.code.as_deref() {
            Some("payment_intent_authentication_failure") => Some("authentication_failed".into()),
            _ => self.decline_code.clone().or_else(|| self.code.clone()),
        }
    }
}

/// `object: "payment_intent"`.
#[derive(Debug, Deserialize)]
pub(super) struct PaymentIntent {
    pub id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub last_payment_error: Option<PaymentError>,
    #[serde(default)]
    pub next_action: Option<NextAction>,
    #[serde(default)]
    pub cancellation_reason: Option<String>,
}

/// `next_action` of a `requires_action` intent.
#[derive(Debug, Deserialize)]
pub(super) struct NextAction {
    #[serde(default)]
    pub redirect_to_url: Option<RedirectToUrl>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RedirectToUrl {
    pub url: String,
}

/// `object: "refund"`.
#[derive(Debug, Deserialize)]
pub(super) struct Refund {
    pub id: String,
    pub status: String,
    pub amount: i64,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
}

/// `object: "payout"`.
#[derive(Debug, Deserialize)]
pub(super) struct Payout {
    pub id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub failure_code: Option<String>,
}

/// `object: "charge"`, as `charge.succeeded` and `charge.refunded` carry it.
#[derive(Debug, Deserialize)]
pub(super) struct Charge {
    pub currency: String,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub refunds: Option<RefundList>,
    /// The charge's amount (what `charge.succeeded` reports).
    #[serde(default)]
    pub amount: i64,
    /// How it was paid: the card's brand, issuing country and last four digits.
    #[serde(default)]
    pub payment_method_details: Option<PaymentMethodDetails>,
}

/// `payment_method_details` of a charge; only a card's is read.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PaymentMethodDetails {
    #[serde(default)]
    pub card: Option<ChargeCard>,
}

/// `payment_method_details.card`: Stripe's view of the card (never the number).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ChargeCard {
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub last4: Option<String>,
}

/// A list object, `{"object":"list","data":[…]}`, newest first.
#[derive(Debug, Deserialize)]
pub(super) struct RefundList {
    pub data: Vec<Refund>,
}

/// `object: "dispute"`.
#[derive(Debug, Deserialize)]
pub(super) struct Dispute {
    pub id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
}

/// `object: "event"`; `data.object` is read by type once the type is known.
#[derive(Debug, Deserialize)]
pub(super) struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub(super) struct EventData {
    pub object: serde_json::Value,
}

/// Stripe's error answer, `{"error":{…}}`.
#[derive(Debug, Deserialize)]
pub(super) struct ErrorAnswer {
    pub error: ErrorObject,
}

#[derive(Debug, Deserialize)]
pub(super) struct ErrorObject {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// The intent a failed confirmation left behind (card errors on `/v1/payment_intents`).
    #[serde(default)]
    pub payment_intent: Option<PaymentIntent>,
}
