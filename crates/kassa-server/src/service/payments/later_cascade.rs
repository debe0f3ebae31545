//! Cascading after a *later* soft decline (ADR 56): the player went to the first account's
//! page and that account declined softly (its issuer could not be reached, …) by webhook.
//! The payment stays pending and a `payment.cascade` job (queued in the event's transaction)
//! starts it at the route's next accounts, in the same payment, as new attempts; the player
//! continues on the next account's page from Kassa's return page. Not when the player
//! answered a 3-D Secure challenge for it (or the provider does not say whether they did),
//! unless the rule says `cascade_after_3ds`: nobody is asked to authenticate twice by
//! default.

use kassa_connectors::{
    PaymentEvent as ProviderPaymentEvent, PaymentEventStatus, PaymentStart, PaymentStarted,
    ProviderError,
};
use kassa_core::ids::PaymentId;
use kassa_core::payment::{PaymentEvent, PaymentStatus};
use kassa_core::routing::{DeclineClass, DeclineClasses};
use kassa_store::jobs::NewJob;
use kassa_store::payments::PaymentRecord;
use kassa_store::{now_ms, HistoryEvent, Tx};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{cascade, payment_request, provider_failure_code, PaymentError, PaymentsService};
use crate::service::provider_events::ProviderEventError;

/// One later cascade of a payment away from an account (dedupe key: payment and account).
pub const PAYMENT_CASCADE: &str = "payment.cascade";
/// Attempts of a cascade job: it only fails when the database does.
const CASCADE_ATTEMPTS_MAX: i64 = 20;

/// Input of a [`PAYMENT_CASCADE`] job.
#[derive(Debug, Serialize, Deserialize)]
pub struct CascadePayload {
    pub payment_id: String,
    /// The account that declined; the job does nothing once the payment left it.
    pub from: String,
    /// Its decline reason.
    pub reason: Option<String>,
}

/// The payment's routing record as JSON (empty when it has none).
pub(super) fn routing_of(payment: &PaymentRecord) -> Value {
    payment
        .routing
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_else(|| json!({}))
}

/// The route's accounts after the payment's own, in the decision's order.
pub(super) fn accounts_after(payment: &PaymentRecord, routing: &Value) -> Vec<String> {
    let candidates = routing["decision"]["candidates"].as_array();
    candidates
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .skip_while(|account| *account != payment.provider)
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Whether `event` (about the pending `payment`) is a later soft decline that cascades: a
/// soft reason, a route with accounts left, and no 3-D Secure challenge answered unless the
/// rule allows cascading after one.
pub(super) fn cascades_later(
    payment: &PaymentRecord,
    event: &ProviderPaymentEvent,
    declines: &DeclineClasses,
) -> bool {
    if event.status != PaymentEventStatus::Declined || payment.status != PaymentStatus::Pending {
        return false;
    }
    if declines.classify(event.reason.as_deref()) != DeclineClass::Soft {
        return false;
    }
    let routing = routing_of(payment);
    let after_3ds = routing["decision"]["cascade_after_3ds"].as_bool() == Some(true);
    if event.three_ds_challenged != Some(false) && !after_3ds {
        return false;
    }
    !accounts_after(payment, &routing).is_empty()
}

impl PaymentsService {
    /// Instead of declining: records the soft decline on the pending payment and queues its
    /// cascade, in the event's transaction.
    pub(super) async fn defer_to_cascade(
        &self,
        tx: &mut Tx,
        payment: &PaymentRecord,
        event: &ProviderPaymentEvent,
        source: &str,
    ) -> Result<(), ProviderEventError> {
        let detail = json!({ "event_id": event.event_id, "reason": event.reason,
                             "from": payment.provider })
        .to_string();
        let pending = PaymentStatus::Pending.as_str();
        let history = HistoryEvent {
            source,
            event: "declined_cascading",
            from: pending,
            to: Some(pending),
            actor: None,
            detail: Some(&detail),
        };
        self.store
            .insert_payment_event(tx, &payment.id, history)
            .await?;
        let payload = CascadePayload {
            payment_id: payment.id.to_string(),
            from: payment.provider.clone(),
            reason: event.reason.clone(),
        };
        let payload = serde_json::to_string(&payload).expect("a payload serializes");
        let dedupe_key = format!("{}:{}", payment.id, payment.provider);
        let job = NewJob {
            kind: PAYMENT_CASCADE,
            payload: &payload,
            dedupe_key: Some(&dedupe_key),
            run_at_ms: now_ms(),
            attempts_max: CASCADE_ATTEMPTS_MAX,
            repeat_every_ms: None,
        };
        self.store.enqueue_job_on(tx, &job).await?;
        tracing::info!(payment_id = %payment.id, from = %payment.provider, reason = ?event.reason, "later soft decline: cascading");
        Ok(())
    }

    /// Runs a queued cascade: offers the payment to the route's accounts after `from` and
    /// records the outcome. Does nothing once the payment left `from` or stopped pending, so
    /// a second run (a lease that ran out) changes nothing.
    pub async fn cascade_after_decline(
        &self,
        payload: &CascadePayload,
    ) -> Result<(), PaymentError> {
        let payment_id = PaymentId::parse(&payload.payment_id)
            .map_err(|_| super::payment_not_found(&payload.payment_id))?;
        let Some(known) = self.store.find_payment(&payment_id).await? else {
            return Err(super::payment_not_found(&payload.payment_id));
        };
        if known.status != PaymentStatus::Pending || known.provider != payload.from {
            return Ok(());
        }
        let routing = routing_of(&known);
        let remaining: Vec<String> = accounts_after(&known, &routing)
            .into_iter()
            .filter(|account| self.providers.get(account).is_some())
            .collect();
        let declines = self.routing.current().await?.document.declines.clone();
        let offered = match remaining.is_empty() {
            true => None,
            false => Some(
                cascade::offer(
                    &self.routing,
                    &self.providers,
                    &remaining,
                    &declines,
                    &payment_request(&known),
                    // A token belonged to the first account; the rest show their own pages.
                    None,
                )
                .await,
            ),
        };
        let mut tx = self.store.begin().await?;
        let mut payment = self.locked_payment(&mut tx, &payment_id).await?;
        if payment.status != PaymentStatus::Pending || payment.provider != payload.from {
            tx.rollback().await?;
            return Ok(());
        }
        let was = payment.status;
        match offered {
            Some(offered) => {
                let mut routing = routing;
                let step = json!({ "from": payload.from, "reason": payload.reason,
                                   "attempts": offered.attempts });
                match routing["after_decline"].as_array_mut() {
                    Some(steps) => steps.push(step),
                    None => routing["after_decline"] = json!([step]),
                }
                payment.routing = Some(routing.to_string());
                payment.provider = offered.provider.name().to_string();
                let start = offered.asked.as_ref().ok().map(|started| &started.start);
                crate::metrics::record_threeds_challenge(&payment.provider, start, false);
                self.store.reroute_payment(&mut tx, &payment).await?;
                self.record_later_start(&mut tx, &mut payment, offered.asked)
                    .await?;
            }
            None => self.record_decline(&mut tx, &mut payment, payload).await?,
        }
        tx.commit().await?;
        self.publish(&payment);
        crate::metrics::record_payment_change(&payment, was);
        Ok(())
    }

    /// What the next account answered, on the still pending payment.
    async fn record_later_start(
        &self,
        tx: &mut Tx,
        payment: &mut PaymentRecord,
        asked: Result<PaymentStarted, ProviderError>,
    ) -> Result<(), PaymentError> {
        let started = match asked {
            Ok(started) => started,
            Err(error) => {
                payment.failure_reason = Some(provider_failure_code(&error));
                let detail = error.to_string();
                let event = PaymentEvent::Failed;
                self.transition(
                    tx,
                    payment,
                    event,
                    "cascade",
                    "provider_error",
                    Some(&detail),
                )
                .await?;
                return Ok(());
            }
        };
        payment.provider_reference = Some(started.provider_reference);
        let detail = json!({ "provider": payment.provider }).to_string();
        match started.start {
            PaymentStart::Redirect { url } | PaymentStart::Challenge { url } => {
                payment.redirect_url = Some(url);
                let pending = PaymentStatus::Pending.as_str();
                let history = HistoryEvent {
                    source: "cascade",
                    event: "cascaded",
                    from: pending,
                    to: Some(pending),
                    actor: None,
                    detail: Some(&detail),
                };
                self.store
                    .insert_payment_event(tx, &payment.id, history)
                    .await?;
                self.store.update_payment(tx, payment).await?;
            }
            PaymentStart::Authorized => {
                let event = PaymentEvent::Authorized;
                self.transition(tx, payment, event, "cascade", "authorized", Some(&detail))
                    .await?;
            }
            PaymentStart::Declined { reason } => {
                payment.failure_reason = Some(reason.unwrap_or_else(|| "declined".into()));
                let event = PaymentEvent::Declined;
                self.transition(tx, payment, event, "cascade", "declined", Some(&detail))
                    .await?;
            }
            PaymentStart::AwaitingFunds { .. }
            | PaymentStart::CodeSent { .. }
            | PaymentStart::Processing => {
                // The first account's page is of no use any more; no page replaces it.
                payment.redirect_url = None;
                self.store.update_payment(tx, payment).await?;
            }
        }
        Ok(())
    }

    /// No account is left (the route's accounts were removed since): the decline stands.
    async fn record_decline(
        &self,
        tx: &mut Tx,
        payment: &mut PaymentRecord,
        payload: &CascadePayload,
    ) -> Result<(), PaymentError> {
        payment.failure_reason = payload.reason.clone().or(Some("declined".into()));
        self.transition(
            tx,
            payment,
            PaymentEvent::Declined,
            "cascade",
            "declined",
            None,
        )
        .await?;
        Ok(())
    }
}
