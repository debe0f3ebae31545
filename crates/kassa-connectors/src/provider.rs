//! The one trait every payment provider's connector implements, and the types crossing it.
//!
//! [`PaymentProvider`] is the object-safe face the server routes to; a provider's code does
//! not implement it by hand but composes a [`crate::Connector`] from a pure
//! [`crate::Translator`], a [`crate::Transport`] and an [`crate::InboundSource`] (ADR 0029).

use async_trait::async_trait;
use kassa_core::Currency;
use reqwest::header::HeaderMap;
use serde::Serialize;

use crate::card::CardDetails;
use crate::event::{InboundRefusal, ProviderEvent, WebhookError};
use crate::inbound::{InboundBatch, RawInbound};

/// What a provider can do, so the router never sends it a payment it cannot take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Payment methods, e.g. `card`, `bank_transfer`.
    pub methods: Vec<String>,
    /// Currencies it settles in.
    pub currencies: Vec<Currency>,
    /// ISO 3166-1 alpha-2 country codes it serves; empty means every country.
    pub countries: Vec<String>,
    /// Whether it can send payouts (withdrawals).
    pub payouts: bool,
    /// Whether it can refund a captured payment.
    pub refunds: bool,
}

impl Capabilities {
    /// Whether a payment with this method, currency and (optional) country fits.
    pub fn supports(&self, method: &str, currency: Currency, country: Option<&str>) -> bool {
        let country_ok = match country {
            _ if self.countries.is_empty() => true,
            Some(country) => self
                .countries
                .iter()
                .any(|c| c.eq_ignore_ascii_case(country)),
            None => false,
        };
        self.methods.iter().any(|m| m == method)
            && self.currencies.contains(&currency)
            && country_ok
    }
}

/// A deposit to start at the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRequest {
    /// Kassa's payment id; the provider echoes it in its webhooks.
    pub payment_id: String,
    /// The amount to charge, in minor units; strictly positive.
    pub amount_minor: i64,
    /// The currency of `amount_minor`.
    pub currency: Currency,
    /// The payment method, one of the provider's [`Capabilities::methods`].
    pub method: String,
    /// The player's country (ISO 3166-1 alpha-2), when known.
    pub country: Option<String>,
    /// Where the provider sends the player's browser when the payment page is done.
    pub return_url: String,
    /// A payment method the player's browser tokenized with this account's own client
    /// library (Stripe.js `pm_…`, the `paymentMethod` of Adyen's Drop-in), when the deposit
    /// carries one for this account; a connector without one uses its hosted page or its
    /// configured test method (ADR 64).
    pub payment_method_token: Option<PaymentMethodToken>,
}

/// A provider's token of the player's payment method, opaque to Kassa. Kept out of `Debug`
/// and logs: some (Adyen's encrypted card fields) are card data in another form.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentMethodToken(String);

impl PaymentMethodToken {
    /// Longest token accepted: an Adyen Drop-in `paymentMethod` with encrypted card fields
    /// is a few kilobytes.
    pub const LEN_MAX: usize = 8 * 1024;

    /// A token as the client sent it; `None` when empty, too long, or not printable text.
    pub fn parse(token: &str) -> Option<PaymentMethodToken> {
        let printable = token.chars().all(|c| !c.is_control());
        (!token.is_empty() && token.len() <= Self::LEN_MAX && printable)
            .then(|| PaymentMethodToken(token.to_string()))
    }

    /// The token, for the connector that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PaymentMethodToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PaymentMethodToken(***)")
    }
}

/// The provider's status of a payment, as it answers a call (not a webhook).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderPaymentStatus {
    /// Waiting for the player or the issuer.
    Pending,
    /// Funds reserved, not taken.
    Authorized,
    /// Funds taken.
    Captured,
    /// Refused by the issuer or the provider.
    Declined,
    /// Ended by a technical failure.
    Failed,
    /// Cancelled before completing.
    Cancelled,
    /// Part of the captured amount was refunded.
    PartiallyRefunded,
    /// The whole captured amount was refunded.
    Refunded,
    /// Disputed by the cardholder and withdrawn.
    ChargedBack,
}

impl ProviderPaymentStatus {
    /// Whether the provider will not change this status by itself any more (refunds and
    /// chargebacks aside), so status sync can stop asking.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            ProviderPaymentStatus::Pending | ProviderPaymentStatus::Authorized
        )
    }
}

/// What starting a payment answered: the one thing the player (or Kassa) does next.
///
/// Every provider kind answers one of these six: a REST PSP a [`PaymentStart::Redirect`] to its
/// hosted page (Stripe's `requires_action` with `redirect_to_url`, Adyen's `action.type =
/// redirect`), a 3-D Secure step a [`PaymentStart::Challenge`], an ISO 8583 acquirer's approved
/// or refused `0110` an [`PaymentStart::Authorized`] or [`PaymentStart::Declined`], a crypto
/// gateway [`PaymentStart::AwaitingFunds`], SMPP carrier billing [`PaymentStart::CodeSent`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PaymentStart {
    /// The player continues on the provider's page (card form, bank app, wallet).
    Redirect {
        /// Where to send the player's browser.
        url: String,
    },
    /// The issuer asks the player to prove who they are (3-D Secure) before it decides.
    Challenge {
        /// Where the player answers the challenge.
        url: String,
    },
    /// Approved at once, no player step; the funds are reserved or taken.
    Authorized,
    /// The provider took the payment and decides later with no step for the player (Adyen's
    /// `Received`/`Pending` without an action, Stripe's `processing`); the outcome arrives
    /// by event or status sync.
    Processing,
    /// Refused at once, no player step.
    Declined {
        /// The provider's machine-readable reason, e.g. `insufficient_funds`.
        reason: Option<String>,
    },
    /// The player must send funds to an address before the expiry (crypto).
    AwaitingFunds {
        /// Where the player sends the funds, e.g. a chain address.
        address: String,
        /// How much must arrive, in minor units of `currency`.
        amount_minor: i64,
        /// The currency (or asset) of `amount_minor`.
        currency: Currency,
        /// After this instant (Unix seconds) the address no longer credits this payment.
        expires_at_unix_s: i64,
    },
    /// A one-time code went to the player's phone; the player types it to confirm (carrier
    /// billing).
    CodeSent {
        /// Where the code went, masked for display, e.g. `+356 •••• 4321`.
        destination_masked: String,
        /// After this instant (Unix seconds) the code is no longer accepted.
        expires_at_unix_s: i64,
    },
}

/// A started payment: the provider's reference and what comes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentStarted {
    /// The provider's id of the payment; status sync, refunds and its events use it.
    pub provider_reference: String,
    /// What the player (or Kassa) does next.
    pub start: PaymentStart,
}

/// What the provider answered to a new payment, in the server's older, flatter shape.
///
/// Superseded by [`PaymentStarted`]: [`PaymentProvider::init_payment`] derives it, losing the
/// address of [`PaymentStart::AwaitingFunds`] and the destination of
/// [`PaymentStart::CodeSent`] (both become `Pending` without a redirect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentSession {
    /// The provider's id of the payment; status sync and refunds use it.
    pub provider_reference: String,
    /// The payment's status right after init, usually `Pending`.
    pub status: ProviderPaymentStatus,
    /// The provider's page the player must visit (card form, 3-D Secure, bank app), if any.
    pub redirect_url: Option<String>,
}

impl From<PaymentStarted> for PaymentSession {
    fn from(started: PaymentStarted) -> PaymentSession {
        let (status, redirect_url) = match started.start {
            PaymentStart::Redirect { url } | PaymentStart::Challenge { url } => {
                (ProviderPaymentStatus::Pending, Some(url))
            }
            PaymentStart::Authorized => (ProviderPaymentStatus::Authorized, None),
            PaymentStart::Declined { .. } => (ProviderPaymentStatus::Declined, None),
            PaymentStart::AwaitingFunds { .. }
            | PaymentStart::CodeSent { .. }
            | PaymentStart::Processing => (ProviderPaymentStatus::Pending, None),
        };
        PaymentSession {
            provider_reference: started.provider_reference,
            status,
            redirect_url,
        }
    }
}

/// The provider's view of a payment, from status sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentStatusReport {
    /// The provider's id of the payment.
    pub provider_reference: String,
    /// Kassa's payment id, as the provider stored it.
    pub payment_id: String,
    /// The provider's current status.
    pub status: ProviderPaymentStatus,
    /// The payment's amount, in minor units.
    pub amount_minor: i64,
    /// The currency of `amount_minor`.
    pub currency: Currency,
}

/// A refund of (part of) a captured payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRequest {
    /// The provider's id of the captured payment.
    pub provider_reference: String,
    /// Kassa's refund id; the provider echoes it in the `refunded` webhook.
    pub refund_id: String,
    /// How much to give back, in minor units; strictly positive.
    pub amount_minor: i64,
    /// The payment's currency.
    pub currency: Currency,
}

/// The provider took the refund; the outcome arrives by webhook, unless `settled`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundAccepted {
    /// Kassa's refund id, echoed.
    pub refund_id: String,
    /// The provider's id of the refunded payment.
    pub provider_reference: String,
    /// The answer itself says the money went back (an ISO 8583 acquirer's approved `0210`):
    /// no event will follow, the server applies the refund at once.
    pub settled: bool,
    /// The job key of the refund's reversal advice, still queued (an ISO 8583 acquirer's
    /// approved refund): the server cancels it in the transaction that records the refund,
    /// and treats the refund as reversed when it can no longer cancel it, as for
    /// [`CardCharge::reversal_advice_key`].
    pub reversal_advice_key: Option<String>,
}

/// What a direct acquirer answered to a card charge (a `0200` purchase).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardCharge {
    /// The reference and the next step, as for any start: [`PaymentStart::Authorized`] when
    /// approved, [`PaymentStart::Declined`] with the decline class as reason when refused.
    pub started: PaymentStarted,
    /// The approval took the funds (a purchase, not an authorization only): the server
    /// applies the capture at once, no event will follow.
    pub captured: bool,
    /// A refusal another provider may well accept (a technical decline such as `91`/`96`),
    /// as opposed to the issuer's own refusal of the card.
    pub soft_decline: bool,
    /// The job key of the reversal advice queued before the charge left, still queued. The
    /// caller cancels it in the transaction that records this answer, and treats the charge
    /// as reversed when it can no longer cancel it (the advice already ran): cancelling any
    /// earlier leaves a moment where the player is charged and nothing records it.
    pub reversal_advice_key: Option<String>,
    /// With an approved authorization (`0100`) of an account that completes later: the
    /// original the completion advice (`0220`) names. The caller queues it as a job in the
    /// transaction that records the approval (ADR 69).
    pub completion_advice: Option<crate::acquirer::advice::ReversalAdvice>,
}

/// A withdrawal to send to the player.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutRequest {
    /// Kassa's payout id; the provider echoes it in its webhooks.
    pub payout_id: String,
    /// The amount to pay out, in minor units; strictly positive.
    pub amount_minor: i64,
    /// The currency of `amount_minor`.
    pub currency: Currency,
    /// The payout method, e.g. `card` or `bank_transfer`.
    pub method: String,
    /// Where the money goes (a card token, an IBAN), when the method needs one.
    pub destination: Option<String>,
}

/// The provider's status of a payout, as it answers a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderPayoutStatus {
    /// Accepted, the outcome comes by webhook.
    Pending,
    /// Already paid.
    Paid,
    /// Already failed.
    Failed,
}

/// What the provider answered to a payout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutAccepted {
    /// The provider's id of the payout.
    pub provider_reference: String,
    /// The payout's status right after the call, usually `Pending`.
    pub status: ProviderPayoutStatus,
    /// The job key of the payout's reversal advice, still queued (an ISO 8583 acquirer's paid
    /// OCT): cancelled by the server in the transaction that records the payout, as for
    /// [`RefundAccepted::reversal_advice_key`].
    pub reversal_advice_key: Option<String>,
}

/// Why a call to a provider did not give an answer Kassa can use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No answer within the configured timeout; the provider may or may not have acted.
    #[error("the provider did not answer in time")]
    Timeout,
    /// The provider could not be reached or answered with a server error (5xx).
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider answered and refused the request (4xx), with its own code.
    #[error("the provider refused the request: {code}: {message}")]
    Rejected {
        /// The provider's stable error code, e.g. `invalid_state`.
        code: String,
        /// The provider's human text.
        message: String,
    },
    /// The provider answered something that does not follow its protocol.
    #[error("the provider broke its protocol: {0}")]
    Protocol(String),
    /// The provider does not offer this operation (see [`Capabilities`]).
    #[error("the provider does not support {0}")]
    Unsupported(&'static str),
}

impl ProviderError {
    /// Whether the same call may succeed later (for health, breakers and retries). A timeout
    /// is transient but ambiguous: the provider may have acted, so retry idempotently only.
    pub fn is_transient(&self) -> bool {
        matches!(self, ProviderError::Timeout | ProviderError::Unavailable(_))
    }
}

/// One provider account behind Kassa, as the server routes to it: translator, transport and
/// inbound source composed ([`crate::Connector`]), never a decision maker.
///
/// Implementations must be cheap to share (`Arc<dyn PaymentProvider>`), put a timeout on
/// every call, and translate amounts between `i64` minor units and the provider's wire format.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// The provider account's id, as Kassa routes and stores it, e.g. `sandbox`.
    fn name(&self) -> &str;

    /// What the provider can do.
    fn capabilities(&self) -> &Capabilities;

    /// Starts a payment and answers what comes next (one of the six [`PaymentStart`]s).
    async fn start_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<PaymentStarted, ProviderError>;

    /// Starts a payment, answered in the older [`PaymentSession`] shape; see there for what
    /// it loses. New code calls [`PaymentProvider::start_payment`].
    async fn init_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<PaymentSession, ProviderError> {
        self.start_payment(request).await.map(PaymentSession::from)
    }

    /// Asks the provider for a payment's current status (status sync).
    async fn get_status(
        &self,
        provider_reference: &str,
    ) -> Result<PaymentStatusReport, ProviderError>;

    /// Cancels a payment that has not completed; answers the status after the call.
    async fn cancel(
        &self,
        provider_reference: &str,
    ) -> Result<ProviderPaymentStatus, ProviderError>;

    /// Refunds (part of) a captured payment; the outcome comes by an inbound event.
    async fn refund(&self, request: &RefundRequest) -> Result<RefundAccepted, ProviderError>;

    /// Sends a payout; the outcome comes by an inbound event.
    async fn payout(&self, request: &PayoutRequest) -> Result<PayoutAccepted, ProviderError>;

    /// Charges a card directly (an ISO 8583 acquirer): the card number reaches only this call
    /// and the message it builds. Providers that host their own card page do not take card
    /// numbers; they keep the default, [`ProviderError::Unsupported`]. `authentication` is
    /// the 3-D Secure result the cardholder gave Kassa's 3DS Server, when the account asks
    /// for one; it travels in the authorization message.
    async fn charge_card(
        &self,
        _request: &PaymentRequest,
        _card: &CardDetails,
        _authentication: Option<&crate::threeds::CardAuthentication>,
    ) -> Result<CardCharge, ProviderError> {
        Err(ProviderError::Unsupported("card charges"))
    }

    /// Pays out to a card directly (an original credit transaction); default unsupported, as
    /// for [`PaymentProvider::charge_card`].
    async fn payout_to_card(
        &self,
        _request: &PayoutRequest,
        _card: &CardDetails,
    ) -> Result<PayoutAccepted, ProviderError> {
        Err(ProviderError::Unsupported("card payouts"))
    }

    /// Checks one raw inbound message (its signature, freshness and shape) and parses it into
    /// typed events, through the account's [`crate::InboundSource`].
    ///
    /// Required, with no default: a connector that cannot verify must refuse. Fails closed:
    /// any doubt is a refusal, and nothing in the bytes is trusted before the signature is.
    fn receive(
        &self,
        message: RawInbound<'_>,
        now_unix_s: i64,
    ) -> Result<InboundBatch, InboundRefusal>;

    /// [`PaymentProvider::receive`] for a webhook that carries exactly one event, as the
    /// server's webhook endpoint takes them today. A batch (or a refused item) is refused as
    /// malformed rather than half applied.
    fn verify_webhook(
        &self,
        headers: &HeaderMap,
        raw_body: &[u8],
        now_unix_s: i64,
    ) -> Result<ProviderEvent, WebhookError> {
        let message = RawInbound {
            metadata: headers,
            body: raw_body,
        };
        self.receive(message, now_unix_s)?.into_single_event()
    }
}
