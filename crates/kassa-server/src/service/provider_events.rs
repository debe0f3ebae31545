//! The one pipeline for events a provider sends (webhooks): verify the signature and
//! freshness, dedupe by event id, match the event to the payment or payout it names, apply
//! it (money moves only there, in the transaction that records the event's answer) and log
//! the delivery whatever happened.

use std::net::IpAddr;

use kassa_connectors::{
    Acknowledgement, HeaderMap, InboundBatch, InboundRefusal, PaymentEvent as ProviderPaymentEvent,
    PayoutEvent as ProviderPayoutEvent, ProviderEvent, RawInbound,
};
use kassa_core::ids;
use kassa_core::payment::PaymentStatus;
use kassa_core::payout::PayoutStatus;
use kassa_store::payments::WebhookDelivery;
use kassa_store::{now_ms, Store, StoreError};
use serde_json::json;

use crate::config::WebhooksConfig;
pub use crate::service::inbound_sources::{InboundFaults, SourceAllowLists};
use crate::service::kyc::KycService;
use crate::service::payments::PaymentsService;
use crate::service::payouts::PayoutsService;
use crate::service::players::PlayerError;
use crate::views::{Answer, PublicError};

/// Why an event was refused. Nothing changed a balance.
#[derive(Debug, thiserror::Error)]
pub enum ProviderEventError {
    /// No provider of that name is configured.
    #[error("no provider {provider:?}")]
    UnknownProvider { provider: String },
    /// The signature is missing or wrong.
    #[error("the webhook signature is missing or wrong")]
    InvalidSignature,
    /// The timestamp is too far from now.
    #[error("the webhook timestamp is more than 5 minutes from now")]
    Stale,
    /// The body is not an event the provider's format allows.
    #[error("malformed webhook: {0}")]
    Malformed(String),
    /// A field of a correctly signed event holds a control character.
    #[error("field {field} of the webhook holds a control character")]
    ControlCharacter { field: &'static str },
    /// The event names a payment we do not hold.
    #[error("no payment {payment_id:?}")]
    PaymentNotFound { payment_id: String },
    /// The event names a payout we do not hold.
    #[error("no payout {payout_id:?}")]
    PayoutNotFound { payout_id: String },
    /// The ID provider's result names an applicant no KYC check holds (yet: its check may
    /// not have committed).
    #[error("no KYC check of applicant {applicant_id:?}")]
    KycCheckNotFound { applicant_id: String },
    /// The event is not about what we hold (provider, amount, currency, reference).
    #[error("{0}")]
    Mismatch(&'static str),
    /// A signed event's amount is above the currency's limit (ADR 21).
    #[error(transparent)]
    AmountTooLarge(kassa_core::MoneyError),
    /// The payment's player could not be read.
    #[error(transparent)]
    Player(#[from] PlayerError),
    /// A concurrent delivery of the same event id committed its answer first: this one
    /// was rolled back and gets that answer (not an error for the provider, nor in the log).
    #[error("event {event_id:?} was already answered")]
    AlreadyAnswered { event_id: String },
    /// An acquirer's answer came after its reversal advice started: what the host did is
    /// being reversed, so the answer is not recorded (ADR 49). Never from a webhook.
    #[error("the answer came after its reversal advice started")]
    ReversalStarted,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The provider account's IP allow-list does not hold the sender's address.
    #[error("deliveries for {provider:?} are not accepted from this address")]
    SourceRefused { provider: String },
    /// A bug on our side (or a fault a test injected).
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// Handling took longer than `webhooks.processing_timeout_ms`.
    #[error("handling the delivery took longer than {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
}

impl From<kassa_store::SqlxError> for ProviderEventError {
    fn from(error: kassa_store::SqlxError) -> ProviderEventError {
        ProviderEventError::Store(error.into())
    }
}

impl From<InboundRefusal> for ProviderEventError {
    fn from(refusal: InboundRefusal) -> ProviderEventError {
        match refusal {
            InboundRefusal::InvalidSignature => ProviderEventError::InvalidSignature,
            InboundRefusal::Stale { .. } => ProviderEventError::Stale,
            InboundRefusal::Malformed(why) => ProviderEventError::Malformed(why),
        }
    }
}

impl ProviderEventError {
    /// Whether the provider should send the event again: a payment not (yet) known here (its
    /// start may not have committed, ADR 0034) or a failure on our side.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderEventError::PaymentNotFound { .. }
                | ProviderEventError::KycCheckNotFound { .. }
                | ProviderEventError::Player(_)
                | ProviderEventError::Store(_)
                | ProviderEventError::Internal(_)
                | ProviderEventError::Timeout { .. }
        )
    }

    /// The delivery log's name for this refusal.
    pub fn log_outcome(&self) -> &'static str {
        match self {
            ProviderEventError::UnknownProvider { .. } => "unknown_provider",
            ProviderEventError::InvalidSignature => "invalid_signature",
            ProviderEventError::Stale => "stale",
            ProviderEventError::Malformed(_) | ProviderEventError::ControlCharacter { .. } => {
                "malformed"
            }
            ProviderEventError::PaymentNotFound { .. } => "unknown_payment",
            ProviderEventError::PayoutNotFound { .. } => "unknown_payout",
            ProviderEventError::KycCheckNotFound { .. } => "unknown_kyc_check",
            ProviderEventError::Mismatch(_) => "mismatch",
            ProviderEventError::AlreadyAnswered { .. } => "duplicate",
            ProviderEventError::ReversalStarted => "reversed",
            ProviderEventError::AmountTooLarge(_) => "amount_too_large",
            ProviderEventError::SourceRefused { .. } => "ip_refused",
            // Ours, not the sender's (the database, a bug, a timeout): the verified delivery
            // is kept whole for a replay (ADR 45).
            ProviderEventError::Player(_)
            | ProviderEventError::Store(_)
            | ProviderEventError::Internal(_)
            | ProviderEventError::Timeout { .. } => DEAD_LETTERED,
        }
    }
}

/// What the event is about, with its status after the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSubject {
    /// A deposit.
    Payment(PaymentStatus),
    /// A withdrawal.
    Payout(PayoutStatus),
    /// A KYC check at an ID provider.
    KycCheck(kassa_core::kyc::LevelStatus),
}

/// The answer a provider gets for an event (and again for every repeat of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventAnswer {
    /// The event moved its payment or payout; otherwise it did not fit the state and was
    /// recorded and ignored.
    pub applied: bool,
    /// The payment or payout and its status.
    pub subject: EventSubject,
}

impl EventAnswer {
    /// The answer about a payment.
    pub fn payment(applied: bool, status: PaymentStatus) -> EventAnswer {
        EventAnswer {
            applied,
            subject: EventSubject::Payment(status),
        }
    }

    /// The answer about a payout.
    pub fn payout(applied: bool, status: PayoutStatus) -> EventAnswer {
        EventAnswer {
            applied,
            subject: EventSubject::Payout(status),
        }
    }

    /// The answer about a KYC check.
    pub fn kyc(applied: bool, status: kassa_core::kyc::LevelStatus) -> EventAnswer {
        EventAnswer {
            applied,
            subject: EventSubject::KycCheck(status),
        }
    }

    /// The JSON body, as sent and stored for the event id.
    pub fn to_json(&self) -> String {
        let mut answer = json!({
            "received": true,
            "outcome": if self.applied { "processed" } else { "ignored" },
        });
        match self.subject {
            EventSubject::Payment(status) => answer["payment_status"] = json!(status.as_str()),
            EventSubject::Payout(status) => answer["payout_status"] = json!(status.as_str()),
            EventSubject::KycCheck(status) => answer["kyc_check_status"] = json!(status.as_str()),
        }
        answer.to_string()
    }
}

/// What the pipeline did with an accepted event, as logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Applied: it moved its payment or payout.
    Processed,
    /// Recorded but it did not fit the state.
    Ignored,
    /// A repeat of an event id already answered: the first answer again.
    Duplicate,
}

impl DeliveryOutcome {
    /// The delivery log's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Processed => "processed",
            DeliveryOutcome::Ignored => "ignored",
            DeliveryOutcome::Duplicate => "duplicate",
        }
    }
}

/// An accepted event's answer: what happened and the exact bytes to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventReceipt {
    /// What happened.
    pub outcome: DeliveryOutcome,
    /// Status and body, the stored ones for a duplicate.
    pub answer: Answer,
    /// The media type of the body.
    pub content_type: &'static str,
    /// Whether the delivery's log row committed with the event's effect.
    pub logged_with_effect: bool,
}

/// The media type of the pipeline's own answers.
const JSON: &str = "application/json";

/// The one answer to a delivery: what its inbound source demands once every item is stored
/// ([`Acknowledgement::Fixed`]), or the pipeline's own. Either way a failure on our side
/// (the database) is answered as such, so the provider sends the message again.
fn answer_batch(
    acknowledgement: Acknowledgement,
    mut results: Vec<Result<EventReceipt, ProviderEventError>>,
) -> Result<EventReceipt, ProviderEventError> {
    if let Some(failed) = results
        .iter()
        .position(|r| matches!(r, Err(e) if e.is_retryable()))
    {
        return results.swap_remove(failed);
    }
    match acknowledgement {
        Acknowledgement::Fixed { content_type, body } => Ok(EventReceipt {
            outcome: DeliveryOutcome::Processed,
            answer: Answer {
                status: 200,
                body: String::from_utf8_lossy(&body).into_owned(),
            },
            content_type,
            logged_with_effect: true,
        }),
        Acknowledgement::PipelineAnswer if results.len() == 1 => results.remove(0),
        Acknowledgement::PipelineAnswer => {
            // Several events answered by the pipeline: the first refusal, else every answer.
            if let Some(refused) = results.iter().position(Result::is_err) {
                return results.swap_remove(refused);
            }
            let answers: Vec<serde_json::Value> = results
                .iter()
                .flatten()
                .map(|r| serde_json::from_str(&r.answer.body).unwrap_or_default())
                .collect();
            Ok(EventReceipt {
                outcome: DeliveryOutcome::Processed,
                answer: Answer {
                    status: 200,
                    body: json!({ "received": true, "events": answers }).to_string(),
                },
                content_type: JSON,
                logged_with_effect: true,
            })
        }
    }
}

/// One delivery as it arrived (or as it is replayed).
pub struct Delivery<'a> {
    /// The provider the delivery's URL names.
    pub provider: &'a str,
    /// Its headers (the signature is among them).
    pub headers: &'a HeaderMap,
    /// Its raw body, as signed.
    pub body: &'a [u8],
    /// The inbound source it came through ([`HTTP_SOURCE`] for webhooks).
    pub source: &'a str,
    /// The peer address it came from; `None` when the source has none (a provider account
    /// with an IP allow-list then refuses it).
    pub source_address: Option<IpAddr>,
    /// When it arrived: the clock its timestamp is checked against (a replay's is the
    /// original delivery's, so that the same rules give the same verdict).
    pub received_at_ms: i64,
    /// Set when an admin runs a logged delivery again.
    pub replay: Option<ReplayOf<'a>>,
}

/// What a replay's log row records: which delivery ran again, on whose request.
#[derive(Clone, Copy, Debug)]
pub struct ReplayOf<'a> {
    /// The id of the replay's own log row.
    pub log_id: &'a str,
    /// The delivery run again.
    pub original_id: &'a str,
    /// The admin key that asked.
    pub admin_key_id: &'a str,
}

/// The inbound source of HTTP webhooks.
pub const HTTP_SOURCE: &str = "http";

/// The delivery log's outcome of a delivery kept for a replay: the failure was ours.
pub const DEAD_LETTERED: &str = "dead_lettered";

/// The provider-event use case; borrows the services it hands events to.
pub struct ProviderEvents<'a> {
    /// The database, for dedupe and the delivery log.
    pub store: &'a Store,
    /// Deposits.
    pub payments: &'a PaymentsService,
    /// Withdrawals.
    pub payouts: &'a PayoutsService,
    /// KYC checks at ID providers.
    pub kyc: &'a KycService,
    /// What the delivery log keeps of unverifiable deliveries.
    pub log_limits: &'a WebhooksConfig,
    /// The most one event may move, per currency.
    pub amount_limits: &'a kassa_core::AmountLimits,
    /// The addresses each provider account takes deliveries from.
    pub allow_lists: &'a SourceAllowLists,
    /// Faults a test injects; none in production.
    pub faults: &'a InboundFaults,
}

impl ProviderEvents<'_> {
    /// The pipeline over the application's services.
    pub fn of(state: &crate::AppStateInner) -> ProviderEvents<'_> {
        ProviderEvents {
            store: &state.store,
            payments: &state.payments,
            payouts: &state.payouts,
            kyc: &state.kyc,
            log_limits: &state.config.webhooks,
            amount_limits: &state.amount_limits,
            allow_lists: &state.source_allow_lists,
            faults: &state.inbound_faults,
        }
    }

    /// Verifies one delivery through its provider's inbound source, then dedupes, matches
    /// and applies each event it carries on its own, logging each whatever happens. An
    /// applied payment event's log row commits with its effect; the rest are logged after.
    /// Counts each delivery from a provider (not an admin's replay) by its outcome.
    pub async fn receive(
        &self,
        delivery: Delivery<'_>,
    ) -> Result<EventReceipt, ProviderEventError> {
        let (provider, replay) = (delivery.provider, delivery.replay.is_some());
        let result = self.receive_delivery(delivery).await;
        if !replay {
            let outcome = match &result {
                Ok(receipt) => receipt.outcome.as_str(),
                Err(error) => error.log_outcome(),
            };
            // A name no account has is the sender's text: never a label of its own.
            let known =
                self.payments.provider(provider).is_some() || self.kyc.provider(provider).is_some();
            crate::metrics::record_webhook_received(known.then_some(provider), outcome);
        }
        result
    }

    async fn receive_delivery(
        &self,
        delivery: Delivery<'_>,
    ) -> Result<EventReceipt, ProviderEventError> {
        let mut log = delivery_log(&delivery);
        let checked = self
            .check_source(&delivery)
            .and_then(|()| self.verify(&delivery));
        let batch = match checked {
            Ok(batch) => batch,
            Err(error) => return Err(self.refuse_unverified(log, &delivery, error).await),
        };
        // Verified: the whole body is kept, exactly (bounded by the HTTP body limit).
        log.raw_body = delivery.body.to_vec();
        let timeout_ms = self.log_limits.processing_timeout_ms;
        let handled = tokio::time::timeout(
            std::time::Duration::from_millis(timeout_ms),
            self.receive_items(&delivery, batch, &log),
        )
        .await;
        match handled {
            Ok(result) => result,
            // Dropped mid-way: whatever committed stays committed (a replay then finds the
            // event answered); the rest is kept whole for a replay.
            Err(_) => {
                let error = ProviderEventError::Timeout { timeout_ms };
                self.log(log, (error.log_outcome(), error.problem().status))
                    .await;
                Err(error)
            }
        }
    }

    /// Dedupes, matches and applies each event of a verified delivery on its own.
    async fn receive_items(
        &self,
        delivery: &Delivery<'_>,
        batch: InboundBatch,
        log: &WebhookDelivery,
    ) -> Result<EventReceipt, ProviderEventError> {
        let mut results = Vec::with_capacity(batch.items.len());
        for (index, item) in batch.items.into_iter().enumerate() {
            let mut log = log.clone();
            if index > 0 {
                log.id = ids::generate("whk");
            }
            results.push(self.receive_item(delivery.provider, item, log).await);
        }
        answer_batch(batch.acknowledgement, results)
    }

    /// An unverifiable delivery costs a counter and, while its provider's minute is under
    /// the limit (then only as a sample), a bounded excerpt; the error is its answer.
    async fn refuse_unverified(
        &self,
        mut log: WebhookDelivery,
        delivery: &Delivery<'_>,
        error: ProviderEventError,
    ) -> ProviderEventError {
        log.outcome = error.log_outcome().to_string();
        log.http_status = error.problem().status;
        log.raw_body = excerpt(delivery.body, self.log_limits.unverified_excerpt_bytes);
        self.log_unverified(&log, Some(&error)).await;
        error
    }

    /// One item of a verified delivery: handled, then logged unless its log row committed
    /// with its effect.
    async fn receive_item(
        &self,
        provider: &str,
        item: Result<ProviderEvent, InboundRefusal>,
        mut log: WebhookDelivery,
    ) -> Result<EventReceipt, ProviderEventError> {
        let result = match item {
            Ok(event) => self.handle(provider, event, &mut log).await,
            Err(refusal) => Err(refusal.into()),
        };
        match &result {
            Ok(receipt) if receipt.logged_with_effect => {}
            Ok(receipt) => {
                self.log(log, (receipt.outcome.as_str(), receipt.answer.status))
                    .await
            }
            Err(error) => {
                self.log(log, (error.log_outcome(), error.problem().status))
                    .await
            }
        }
        result
    }

    /// Counts an unverifiable delivery, and logs it while its provider's minute is under
    /// the limit, then only a sample: such deliveries cost a counter, not a row each.
    async fn log_unverified(&self, log: &WebhookDelivery, error: Option<&ProviderEventError>) {
        // A replay is an admin's act, audited whatever it gave: never sampled away.
        if log.replay_of.is_some() {
            return self.insert_log(log).await;
        }
        let counted_as = match error {
            Some(ProviderEventError::UnknownProvider { .. }) => UNKNOWN_PROVIDER_COUNTED_AS,
            _ => log.provider.as_str(),
        };
        let minute_ms = log.received_at_ms - log.received_at_ms.rem_euclid(60_000);
        let count = match self
            .store
            .count_unverified_webhook(counted_as, minute_ms)
            .await
        {
            Ok(count) => count,
            Err(error) => {
                tracing::error!(error = %error, "could not count an unverifiable webhook delivery");
                return self.insert_log(log).await;
            }
        };
        let limits = self.log_limits;
        let over = count - limits.unverified_logged_per_minute_max;
        if over <= 0 || over % limits.unverified_sample_every.max(1) == 0 {
            self.insert_log(log).await;
        }
    }

    async fn insert_log(&self, log: &WebhookDelivery) {
        if let Err(error) = self.store.insert_webhook_delivery(log).await {
            tracing::error!(error = %error, "could not log a webhook delivery");
        }
    }

    /// Refuses a delivery from an address its provider account's allow-list does not hold.
    fn check_source(&self, delivery: &Delivery<'_>) -> Result<(), ProviderEventError> {
        if self
            .allow_lists
            .permits(delivery.provider, delivery.source_address)
        {
            return Ok(());
        }
        Err(ProviderEventError::SourceRefused {
            provider: delivery.provider.to_string(),
        })
    }

    /// Verifies through the account's inbound source: a payment provider's, else an ID
    /// provider's (their ids never overlap: the configuration refuses it).
    fn verify(&self, delivery: &Delivery<'_>) -> Result<InboundBatch, ProviderEventError> {
        let message = RawInbound {
            metadata: delivery.headers,
            body: delivery.body,
        };
        let now_unix_s = delivery.received_at_ms.div_euclid(1000);
        if let Some(provider) = self.payments.provider(delivery.provider) {
            return Ok(provider.receive(message, now_unix_s)?);
        }
        match self.kyc.provider(delivery.provider) {
            Some(provider) => Ok(provider.receive(message, now_unix_s)?),
            None => Err(ProviderEventError::UnknownProvider {
                provider: delivery.provider.to_string(),
            }),
        }
    }

    /// Writes a delivery's log row on its own (a refusal, a duplicate, a payout event).
    async fn log(&self, mut log: WebhookDelivery, (outcome, http_status): (&str, u16)) {
        log.outcome = outcome.to_string();
        log.http_status = http_status;
        self.insert_log(&log).await;
    }

    async fn handle(
        &self,
        provider: &str,
        event: ProviderEvent,
        log: &mut WebhookDelivery,
    ) -> Result<EventReceipt, ProviderEventError> {
        let event = self.name_the_payment(provider, event).await?;
        // Signed, but a control character in a field (ADR 30): refused before anything is
        // stored under its ids, so that both backends answer alike and no money moves.
        if let Some(field) = control_character_field(&event) {
            return Err(ProviderEventError::ControlCharacter { field });
        }
        if let ProviderEvent::Verification(event) = &event {
            log.event_id = Some(event.event_id.clone());
            self.faults.before_apply().await?;
            return self
                .apply_once(provider, &event.event_id, || {
                    self.kyc.apply_verification_event(provider, event)
                })
                .await;
        }
        // Named in the log from here on, so that a refusal or a dead letter is found by them.
        let (amount_minor, currency) = match &event {
            ProviderEvent::Payment(e) => {
                log.event_id = Some(e.event_id.clone());
                log.payment_id = Some(e.payment_id.clone());
                (e.amount_minor, e.currency)
            }
            ProviderEvent::Payout(e) => {
                log.event_id = Some(e.event_id.clone());
                log.payout_id = Some(e.payout_id.clone());
                (e.amount_minor, e.currency)
            }
            ProviderEvent::Verification(_) => {
                return Err(ProviderEventError::Internal(
                    "a verification event came this far",
                ))
            }
        };
        self.amount_limits
            .check(currency, amount_minor)
            .map_err(ProviderEventError::AmountTooLarge)?;
        self.faults.before_apply().await?;
        match event {
            ProviderEvent::Payment(event) => {
                let log = &*log;
                let mut receipt = self
                    .apply_once(provider, &event.event_id, || {
                        self.apply_payment(provider, &event, log)
                    })
                    .await?;
                // Applied here (not a stored answer): its log row committed with it.
                receipt.logged_with_effect = receipt.outcome != DeliveryOutcome::Duplicate;
                Ok(receipt)
            }
            ProviderEvent::Payout(event) => {
                self.apply_once(provider, &event.event_id, || {
                    self.apply_payout(provider, &event)
                })
                .await
            }
            ProviderEvent::Verification(_) => Err(ProviderEventError::Internal(
                "a verification event came this far",
            )),
        }
    }

    /// A payment event that does not name Kassa's payment gets it from what it does name:
    /// Kassa's refund id (Adyen's REFUND notification carries the refund's reference, not the
    /// payment's; ADR 61), else the provider's own reference of the payment on this account
    /// (a Stripe dispute names its PaymentIntent only). Unmatched ids stay unnamed and are
    /// answered as an unknown payment.
    async fn name_the_payment(
        &self,
        provider: &str,
        event: ProviderEvent,
    ) -> Result<ProviderEvent, ProviderEventError> {
        let ProviderEvent::Payment(mut payment_event) = event else {
            return Ok(event);
        };
        if !payment_event.payment_id.is_empty() {
            return Ok(ProviderEvent::Payment(payment_event));
        }
        let found = match (&payment_event.refund_id, &payment_event.provider_reference) {
            (Some(refund_id), _) => self.store.payment_of_refund(refund_id).await?,
            (None, Some(reference)) => {
                self.store
                    .payment_by_provider_reference(provider, reference)
                    .await?
            }
            (None, None) => None,
        };
        if let Some(payment_id) = found {
            payment_event.payment_id = payment_id;
        }
        Ok(ProviderEvent::Payment(payment_event))
    }

    async fn apply_payment(
        &self,
        provider: &str,
        event: &ProviderPaymentEvent,
        log: &WebhookDelivery,
    ) -> Result<EventAnswer, ProviderEventError> {
        let applied = self
            .payments
            .apply_provider_event(provider, event, "webhook", Some(log))
            .await?;
        Ok(applied.answer())
    }

    async fn apply_payout(
        &self,
        provider: &str,
        event: &ProviderPayoutEvent,
    ) -> Result<EventAnswer, ProviderEventError> {
        let (status, applied) = self.payouts.apply_provider_event(provider, event).await?;
        Ok(EventAnswer::payout(applied, status))
    }

    /// Applies a verified event at most once per event id: a repeat of a processed id gets
    /// the first answer; if a concurrent delivery of the same event won the race (its effect
    /// and answer committed first, [`ProviderEventError::AlreadyAnswered`]) or applying
    /// failed after it did, that delivery's answer is given.
    async fn apply_once<F, Fut>(
        &self,
        provider: &str,
        event_id: &str,
        apply: F,
    ) -> Result<EventReceipt, ProviderEventError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<EventAnswer, ProviderEventError>>,
    {
        if let Some(receipt) = self.stored_answer(provider, event_id).await? {
            return Ok(receipt);
        }
        match apply().await {
            Ok(answer) => Ok(EventReceipt {
                outcome: if answer.applied {
                    DeliveryOutcome::Processed
                } else {
                    DeliveryOutcome::Ignored
                },
                answer: Answer {
                    status: 200,
                    body: answer.to_json(),
                },
                content_type: JSON,
                logged_with_effect: false,
            }),
            Err(error) => match self.stored_answer(provider, event_id).await {
                Ok(Some(receipt)) => Ok(receipt),
                // The answer could not be read: the provider should send the event again.
                Err(lookup) if matches!(error, ProviderEventError::AlreadyAnswered { .. }) => {
                    Err(lookup)
                }
                _ => Err(error),
            },
        }
    }

    async fn stored_answer(
        &self,
        provider: &str,
        event_id: &str,
    ) -> Result<Option<EventReceipt>, ProviderEventError> {
        let stored = self
            .store
            .processed_webhook_event(provider, event_id)
            .await?;
        Ok(stored.map(|(status, body)| EventReceipt {
            outcome: DeliveryOutcome::Duplicate,
            answer: Answer { status, body },
            content_type: JSON,
            logged_with_effect: false,
        }))
    }
}

/// The delivery log's row for a delivery as it arrived; what became of it is filled in
/// later.
fn delivery_log(delivery: &Delivery<'_>) -> WebhookDelivery {
    let replay = delivery.replay;
    WebhookDelivery {
        id: replay.map_or_else(|| ids::generate("whk"), |r| r.log_id.to_string()),
        provider: delivery
            .provider
            .chars()
            .take(PROVIDER_NAME_LOGGED_MAX)
            .collect(),
        source: delivery.source.to_string(),
        source_address: delivery.source_address.map(|a| a.to_string()),
        headers: loggable_headers(delivery.headers),
        received_at_ms: now_ms(),
        replay_of: replay.map(|r| r.original_id.to_string()),
        replayed_by: replay.map(|r| r.admin_key_id.to_string()),
        ..WebhookDelivery::default()
    }
}

/// Longest provider name (from the URL) kept in the delivery log.
const PROVIDER_NAME_LOGGED_MAX: usize = 64;

/// The counter key all unknown providers share, so that made-up names add no rows.
const UNKNOWN_PROVIDER_COUNTED_AS: &str = "<unknown>";

/// The first field of an event that holds a control character, if any.
fn control_character_field(event: &ProviderEvent) -> Option<&'static str> {
    use crate::api::text::has_control;
    let fields: Vec<(&'static str, Option<&str>)> = match event {
        ProviderEvent::Payment(e) => vec![
            ("event_id", Some(e.event_id.as_str())),
            ("payment_id", Some(e.payment_id.as_str())),
            ("provider_reference", e.provider_reference.as_deref()),
            ("refund_id", e.refund_id.as_deref()),
            ("dispute_id", e.dispute_id.as_deref()),
            ("reason", e.reason.as_deref()),
        ],
        ProviderEvent::Payout(e) => vec![
            ("event_id", Some(e.event_id.as_str())),
            ("payout_id", Some(e.payout_id.as_str())),
            ("provider_reference", e.provider_reference.as_deref()),
            ("reason", e.reason.as_deref()),
        ],
        ProviderEvent::Verification(e) => vec![
            ("event_id", Some(e.event_id.as_str())),
            ("applicant_id", Some(e.applicant_id.as_str())),
            ("external_user_id", Some(e.external_id.as_str())),
            ("reason", e.reason.as_deref()),
        ],
    };
    fields
        .into_iter()
        .find(|(_, value)| value.is_some_and(has_control))
        .map(|(field, _)| field)
}

/// At most the first `bytes_max` bytes of `body`, without a UTF-8 character cut in two at
/// the end (so that the excerpt reads as text when the body was text).
fn excerpt(body: &[u8], bytes_max: usize) -> Vec<u8> {
    let mut prefix = &body[..body.len().min(bytes_max)];
    if let Err(error) = std::str::from_utf8(prefix) {
        if error.error_len().is_none() {
            prefix = &prefix[..error.valid_up_to()];
        }
    }
    prefix.to_vec()
}

/// Headers worth keeping in the delivery log, with anything secret-looking removed.
fn loggable_headers(headers: &HeaderMap) -> String {
    let kept: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            )
        })
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                json!(value.to_str().unwrap_or("<binary>")),
            )
        })
        .collect();
    serde_json::Value::Object(kept).to_string()
}

/// Transactions retried after a lost race before the error is answered.
const APPLY_RETRIES_MAX: u32 = 3;

/// Runs `attempt` again while it fails with a retryable store error (busy, deadlock,
/// serialization failure), at most [`APPLY_RETRIES_MAX`] times. Two deliveries of one event
/// racing are not retried: the loser gets [`ProviderEventError::AlreadyAnswered`].
pub(crate) async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, ProviderEventError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderEventError>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(ProviderEventError::Store(error))
                if error.is_retryable() && retries < APPLY_RETRIES_MAX =>
            {
                retries += 1
            }
            other => return other,
        }
    }
}
