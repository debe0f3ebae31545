//! The sandbox's memory of payments and payouts. Bounded: a sandbox is not a database.

use std::collections::HashMap;

use kassa_core::Currency;

/// Most payments (and, separately, payouts) one sandbox process keeps.
pub const RECORDS_MAX: usize = 100_000;

/// A payment's status as the sandbox reports it on `GET /v1/payments/{ref}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Captured,
    Declined,
    Cancelled,
    PartiallyRefunded,
    Refunded,
    ChargedBack,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Captured => "captured",
            PaymentStatus::Declined => "declined",
            PaymentStatus::Cancelled => "cancelled",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::ChargedBack => "charged_back",
        }
    }
}

/// Where the player is in the hosted flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The card form has not been submitted yet.
    AwaitingCard,
    /// The card asked for a 3-D Secure challenge; the code has not been entered yet.
    AwaitingChallenge,
    /// The card was submitted and the issuer has not answered (slow or silent card).
    Processing,
    /// The hosted flow is over.
    Done,
}

pub struct Payment {
    pub provider_reference: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub return_url: String,
    pub status: PaymentStatus,
    pub stage: Stage,
    /// Refunds by Kassa's refund id: amount and whether the provider has processed it yet.
    pub refunds: HashMap<String, Refund>,
    pub dispute: Option<Dispute>,
    /// What the issuer answers once the player passes the challenge (the card's outcome).
    pub challenge_outcome: Option<super::cards::CardOutcome>,
}

pub struct Refund {
    pub amount_minor: i64,
    pub done: bool,
}

pub struct Dispute {
    pub dispute_id: String,
    pub amount_minor: i64,
    pub open: bool,
}

impl Payment {
    /// Captured amount not yet refunded or promised to a pending refund.
    pub fn refundable_minor(&self) -> i64 {
        self.amount_minor - self.refunds.values().map(|r| r.amount_minor).sum::<i64>()
    }

    /// Captured amount minus processed refunds: what a chargeback can take.
    pub fn settled_minor(&self) -> i64 {
        let refunded: i64 = self
            .refunds
            .values()
            .filter(|r| r.done)
            .map(|r| r.amount_minor)
            .sum();
        self.amount_minor - refunded
    }

    /// The status a captured payment returns to after processed refunds.
    pub fn captured_status(&self) -> PaymentStatus {
        match self.settled_minor() {
            0 => PaymentStatus::Refunded,
            settled if settled < self.amount_minor => PaymentStatus::PartiallyRefunded,
            _ => PaymentStatus::Captured,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayoutStatus {
    Pending,
    Paid,
    Failed,
}

impl PayoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Pending => "pending",
            PayoutStatus::Paid => "paid",
            PayoutStatus::Failed => "failed",
        }
    }
}

pub struct Payout {
    pub provider_reference: String,
    pub payout_id: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub method: String,
    pub destination: Option<String>,
    pub status: PayoutStatus,
}

#[derive(Default)]
pub struct Store {
    pub payments: HashMap<String, Payment>,
    /// Kassa's payment id → provider reference, so a retried init finds its payment.
    pub payment_refs: HashMap<String, String>,
    pub payouts: HashMap<String, Payout>,
    pub payout_refs: HashMap<String, String>,
}
