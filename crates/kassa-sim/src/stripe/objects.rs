//! What the simulator holds (intents, refunds, payouts, disputes, saved idempotent answers)
//! and how each renders as Stripe's JSON object.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

/// String fields of an object's `metadata`.
pub type Metadata = BTreeMap<String, String>;

/// The seconds since the epoch, as Stripe's `created`.
pub fn now_unix_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A new object id, e.g. `pi_3Ab…`.
pub fn new_id(prefix: &str) -> String {
    kassa_core::ids::generate(prefix)
}

/// Why the last confirmation failed.
#[derive(Clone, Debug)]
pub struct PaymentError {
    pub code: &'static str,
    pub decline_code: Option<&'static str>,
}

impl PaymentError {
    /// Stripe's error object of a card error.
    pub fn to_json(&self) -> Value {
        json!({
            "type": "card_error",
            "code": self.code,
            "decline_code": self.decline_code,
            "message": super::cards::message(self.code, self.decline_code),
        })
    }
}

#[derive(Clone, Debug)]
pub struct Intent {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub status: &'static str,
    pub capture_method: String,
    pub payment_method: Option<String>,
    pub return_url: Option<String>,
    pub metadata: Metadata,
    pub created: i64,
    pub last_payment_error: Option<PaymentError>,
    pub latest_charge: Option<String>,
    pub cancellation_reason: Option<String>,
    /// Refund ids, oldest first.
    pub refunds: Vec<String>,
    /// The card it was confirmed with, as its charges show it.
    pub card: Option<super::cards::CardFacts>,
}

impl Intent {
    /// A charge's `payment_method_details` for the intent's card.
    pub fn payment_method_details(&self) -> Value {
        match &self.card {
            Some(card) => json!({
                "type": "card",
                "card": {
                    "brand": card.brand, "country": card.country, "last4": card.last4,
                    "exp_month": 12, "exp_year": 2034, "funding": "credit",
                },
            }),
            None => Value::Null,
        }
    }

    pub fn client_secret(&self) -> String {
        format!("{}_secret_kassa", self.id)
    }

    pub fn to_json(&self, base_url: &str) -> Value {
        let next_action = (self.status == "requires_action").then(|| {
            json!({
                "type": "redirect_to_url",
                "redirect_to_url": {
                    "url": format!("{base_url}/3ds/{}", self.id),
                    "return_url": self.return_url,
                }
            })
        });
        let received = if self.status == "succeeded" {
            self.amount
        } else {
            0
        };
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": if self.status == "requires_capture" { self.amount } else { 0 },
            "amount_received": received,
            "capture_method": self.capture_method,
            "cancellation_reason": self.cancellation_reason,
            "client_secret": self.client_secret(),
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "last_payment_error": self.last_payment_error.as_ref().map(PaymentError::to_json),
            "latest_charge": self.latest_charge,
            "livemode": false,
            "metadata": self.metadata,
            "next_action": next_action,
            "payment_method": self.payment_method,
            "payment_method_types": ["card"],
            "status": self.status,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub payment_intent: String,
    pub charge: Option<String>,
    pub metadata: Metadata,
    pub created: i64,
}

impl Refund {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "metadata": self.metadata,
            "payment_intent": self.payment_intent,
            "status": "succeeded",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Payout {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub destination: Option<String>,
    pub metadata: Metadata,
    pub status: &'static str,
    pub failure_code: Option<&'static str>,
    pub created: i64,
}

impl Payout {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "payout",
            "amount": self.amount,
            "arrival_date": self.created,
            "created": self.created,
            "currency": self.currency,
            "destination": self.destination,
            "failure_code": self.failure_code,
            "livemode": false,
            "metadata": self.metadata,
            "method": "standard",
            "status": self.status,
            "type": "bank_account",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Dispute {
    pub id: String,
    pub payment_intent: String,
    pub charge: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub status: &'static str,
    pub created: i64,
}

impl Dispute {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "dispute",
            "amount": self.amount,
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "livemode": false,
            // As Stripe's: a dispute's own metadata, empty; Kassa names the payment by
            // `payment_intent`.
            "metadata": {},
            "payment_intent": self.payment_intent,
            "reason": "fraudulent",
            "status": self.status,
        })
    }
}

/// The first answer to an `Idempotency-Key`, replayed to every later request with it.
#[derive(Clone, Debug)]
pub struct SavedAnswer {
    /// Method, path and body of the first request: a reuse with others is an error.
    pub fingerprint: String,
    pub status: u16,
    pub body: Value,
}

/// Everything the simulator holds.
#[derive(Default)]
pub struct Objects {
    pub intents: HashMap<String, Intent>,
    pub refunds: HashMap<String, Refund>,
    pub payouts: HashMap<String, Payout>,
    pub disputes: HashMap<String, Dispute>,
    pub idempotency: HashMap<String, SavedAnswer>,
}

impl Objects {
    /// The `charge` object of a captured intent, its refunds newest first (what
    /// `charge.refunded` carries).
    pub fn charge_json(&self, intent: &Intent) -> Value {
        let refunds: Vec<Value> = intent
            .refunds
            .iter()
            .rev()
            .filter_map(|id| self.refunds.get(id))
            .map(Refund::to_json)
            .collect();
        let refunded = intent.amount - self.refundable(intent);
        json!({
            "id": intent.latest_charge,
            "object": "charge",
            "amount": intent.amount,
            "amount_captured": intent.amount,
            "amount_refunded": refunded,
            "captured": true,
            "currency": intent.currency,
            "livemode": false,
            "metadata": intent.metadata,
            "paid": true,
            "payment_intent": intent.id,
            "payment_method_details": intent.payment_method_details(),
            "refunded": refunded == intent.amount,
            "refunds": {"object": "list", "data": refunds, "has_more": false},
            "status": "succeeded",
        })
    }

    /// The amount of `intent` not refunded yet.
    pub fn refundable(&self, intent: &Intent) -> i64 {
        let refunded: i64 = intent
            .refunds
            .iter()
            .filter_map(|id| self.refunds.get(id))
            .map(|refund| refund.amount)
            .sum();
        intent.amount - refunded
    }
}
