//! The translator: a provider's wire format, pure.
//!
//! It turns a domain [`Operation`] into the wire message its [`crate::Transport`] carries, and
//! the provider's answer back into a domain [`Outcome`]. No I/O, no clock, no randomness: what
//! a message needs of those (a timestamp to sign, a nonce, which attempt this is) comes in a
//! [`CallContext`] the transport makes for every attempt, so a translator is tested with
//! exact bytes in and out.
//!
//! The shapes it must carry: a Stripe-like aggregator (form-encoded body, `Idempotency-Key`
//! header, a bearer key; `requires_action` → [`crate::PaymentStart::Redirect`]); an Adyen-like
//! one (JSON, `resultCode` + `action`); an ISO 8583 acquirer (a `0200` built from field specs,
//! STAN and RRN from the context, a repeat `0201` on a later attempt, `0110` field 39 →
//! authorized or declined); a crypto gateway (a JSON invoice → awaiting funds); SMPP carrier
//! billing (a `submit_sm` carrying the OTP → code sent).

use crate::provider::{
    Capabilities, PaymentRequest, PaymentStarted, PaymentStatusReport, PayoutAccepted,
    PayoutRequest, ProviderError, ProviderPaymentStatus, RefundAccepted, RefundRequest,
};

/// One thing Kassa asks of a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation<'a> {
    /// Start a deposit.
    StartPayment(&'a PaymentRequest),
    /// Ask for a payment's status, by the provider's reference.
    GetStatus(&'a str),
    /// Cancel a payment that has not completed, by the provider's reference.
    Cancel(&'a str),
    /// Refund (part of) a captured payment.
    Refund(&'a RefundRequest),
    /// Send a withdrawal.
    Payout(&'a PayoutRequest),
}

impl Operation<'_> {
    /// A short name for logs and errors, e.g. `start_payment`.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::StartPayment(_) => "start_payment",
            Operation::GetStatus(_) => "get_status",
            Operation::Cancel(_) => "cancel",
            Operation::Refund(_) => "refund",
            Operation::Payout(_) => "payout",
        }
    }
}

/// What an operation came to, one variant per [`Operation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answer to [`Operation::StartPayment`].
    Started(PaymentStarted),
    /// Answer to [`Operation::GetStatus`].
    Status(PaymentStatusReport),
    /// Answer to [`Operation::Cancel`]: the status after the call.
    Cancelled(ProviderPaymentStatus),
    /// Answer to [`Operation::Refund`].
    RefundAccepted(RefundAccepted),
    /// Answer to [`Operation::Payout`].
    PayoutAccepted(PayoutAccepted),
}

/// What one attempt of a call may put in its message, made by the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallContext {
    /// The transport's clock, in Unix seconds (request signatures, ISO 8583 field 7).
    pub now_unix_s: i64,
    /// A fresh random value per attempt (request nonces), so a provider that refuses a
    /// replayed nonce still takes a retry.
    pub nonce: String,
    /// 1 for the first attempt; a later attempt may have to say it repeats (ISO 8583 `0201`).
    pub attempt: u32,
}

/// Whether sending an operation's message again could make the provider act twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplaySafety {
    /// The provider acts at most once however often it gets the message: a read, or a write
    /// it dedupes (Kassa's id in the body, an `Idempotency-Key`, an ISO 8583 repeat). The
    /// transport may retry after a timeout or a 5xx.
    Safe,
    /// A second delivery could charge or pay twice. The transport retries only when it knows
    /// the first never left (the connection was refused); a timeout is answered as such and
    /// status sync or a reversal settles it.
    Never,
}

/// A provider's wire format, pure: domain operation → wire message, wire answer → outcome.
///
/// `Request` and `Response` are what the transport carries: [`crate::HttpRequest`] and
/// [`crate::HttpResponse`] for REST providers, an ISO 8583 message or an SMPP PDU for the
/// stream transports to come.
pub trait Translator: Send + Sync {
    /// The wire message this translator builds.
    type Request: Send;
    /// The wire answer this translator reads.
    type Response: Send;

    /// What the provider can do, so the router never sends it what it cannot take.
    fn capabilities(&self) -> &Capabilities;

    /// Whether `operation`'s message may be sent again (see [`ReplaySafety`]).
    fn replay_safety(&self, operation: &Operation<'_>) -> ReplaySafety;

    /// Builds the message of one attempt of `operation`; [`ProviderError::Unsupported`] when
    /// the provider does not offer it.
    fn encode(
        &self,
        operation: &Operation<'_>,
        context: &CallContext,
    ) -> Result<Self::Request, ProviderError>;

    /// Reads the provider's answer to `operation`; the outcome's variant must match it.
    fn decode(
        &self,
        operation: &Operation<'_>,
        response: Self::Response,
    ) -> Result<Outcome, ProviderError>;
}

/// The deposit's `return_url` with Kassa's `payment_id` added, so the player's way back names
/// the payment whichever provider sends them (Stripe adds only its own `payment_intent`,
/// Adyen only its `redirectResult`). A URL that no longer parses (the server checked it at
/// init) is kept as given.
pub fn return_url_naming_payment(return_url: &str, payment_id: &str) -> String {
    match reqwest::Url::parse(return_url) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair("payment_id", payment_id);
            url.to_string()
        }
        Err(_) => return_url.to_string(),
    }
}
