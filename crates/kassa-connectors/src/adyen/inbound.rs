//! Adyen's notification webhook as an inbound source: a batch of items, each HMAC-signed on
//! its own, answered `[accepted]` once stored whatever each item came to.

use kassa_core::Currency;
use secrecy::{ExposeSecret, SecretString};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::wire::{Notification, NotificationItem};
use super::{refusal_reason, signature};
use crate::event::{
    InboundRefusal, PaymentEvent, PaymentEventStatus, PayoutEvent, PayoutEventStatus,
    ProviderEvent, ReportedCard,
};
use crate::inbound::{Acknowledgement, InboundBatch, InboundChannel, InboundSource, RawInbound};

/// The answer Adyen waits for; anything else and it sends the batch again.
pub const ACCEPTED: &[u8] = b"[accepted]";
/// Largest notification read; Adyen batches are a few kilobytes.
const BODY_LEN_MAX: usize = 1024 * 1024;

/// Verifies an Adyen account's notifications with its HMAC key and merchant account.
pub struct AdyenNotificationSource {
    /// Hex, as Adyen's Customer Area shows it; checked to decode when the account is built.
    hmac_key_hex: SecretString,
    merchant_account: String,
}

impl AdyenNotificationSource {
    /// A source for `merchant_account`'s notifications, signed with `hmac_key_hex`; `None`
    /// when the key is empty or not hex.
    pub fn new(hmac_key_hex: SecretString, merchant_account: &str) -> Option<Self> {
        let key = hex::decode(hmac_key_hex.expose_secret()).ok()?;
        (!key.is_empty()).then(|| AdyenNotificationSource {
            hmac_key_hex,
            merchant_account: merchant_account.to_string(),
        })
    }

    fn key(&self) -> Vec<u8> {
        hex::decode(self.hmac_key_hex.expose_secret()).expect("checked in new")
    }

    /// One item: its signature first, then whether it is this account's, then its meaning.
    /// `Ok(None)` for an event Kassa has no use for (acknowledged, ignored).
    fn item(
        &self,
        key: &[u8],
        item: &NotificationItem,
        now_unix_s: i64,
    ) -> Result<Option<ProviderEvent>, InboundRefusal> {
        let claimed = item
            .additional_data
            .as_ref()
            .and_then(|data| data.get("hmacSignature"))
            .and_then(|value| value.as_str())
            .ok_or(InboundRefusal::InvalidSignature)?;
        if !signature::verify(key, item, claimed) {
            return Err(InboundRefusal::InvalidSignature);
        }
        if item.merchant_account_code != self.merchant_account {
            return Err(InboundRefusal::Malformed(format!(
                "item for merchant account {:?}, this account is {:?}",
                item.merchant_account_code, self.merchant_account
            )));
        }
        event_of(item, now_unix_s)
    }
}

impl InboundSource for AdyenNotificationSource {
    fn channel(&self) -> InboundChannel {
        InboundChannel::Webhook
    }

    /// Adyen signs items, not the message, and resends for days: a body that does not parse
    /// is refused whole; an item whose HMAC fails is refused alone. There is no timestamp
    /// tolerance (Adyen's protocol has none); replays are deduped by the event id.
    fn verify(
        &self,
        message: RawInbound<'_>,
        now_unix_s: i64,
    ) -> Result<InboundBatch, InboundRefusal> {
        if message.body.len() > BODY_LEN_MAX {
            return Err(InboundRefusal::Malformed("the body is too large".into()));
        }
        let notification: Notification =
            serde_json::from_slice(message.body).map_err(|_| InboundRefusal::InvalidSignature)?;
        let key = self.key();
        let items = notification
            .notification_items
            .iter()
            .filter_map(|wrapper| self.item(&key, &wrapper.item, now_unix_s).transpose())
            .collect();
        Ok(InboundBatch {
            items,
            acknowledgement: Acknowledgement::Fixed {
                content_type: "text/plain",
                body: ACCEPTED.to_vec(),
            },
        })
    }
}

/// The card an authorisation names in `additionalData`: the issuing country
/// (`cardIssuingCountry`, else `issuerCountry`), the scheme (`paymentMethod`) and the last
/// four digits (`cardSummary`). `additionalData` is outside Adyen's HMAC, so these are taken
/// as the provider's word over TLS and used for risk and display only, never for money.
fn reported_card(item: &NotificationItem) -> Option<ReportedCard> {
    let data = item.additional_data.as_ref()?;
    let text = |key: &str| data.get(key).and_then(|value| value.as_str());
    ReportedCard::of(
        text("cardIssuingCountry").or_else(|| text("issuerCountry")),
        text("paymentMethod"),
        text("cardSummary"),
    )
}

/// What a verified item means to Kassa; `None` for event codes Kassa does not act on.
fn event_of(
    item: &NotificationItem,
    now_unix_s: i64,
) -> Result<Option<ProviderEvent>, InboundRefusal> {
    let success = match item.success.as_str() {
        "true" => true,
        "false" => false,
        other => return Err(InboundRefusal::Malformed(format!("success {other:?}"))),
    };
    let currency = Currency::from_code(&item.amount.currency)
        .map_err(|error| InboundRefusal::Malformed(error.to_string()))?;
    if item.amount.value < 0 {
        return Err(InboundRefusal::Malformed("a negative amount".into()));
    }
    let timestamp_unix_s = item
        .event_date
        .as_deref()
        .and_then(|date| OffsetDateTime::parse(date, &Rfc3339).ok())
        .map_or(now_unix_s, OffsetDateTime::unix_timestamp);
    // Adyen resends the same item (same pspReference, code and outcome) until answered.
    let event_id = format!("{}:{}:{}", item.psp_reference, item.event_code, success);
    let payment = |status, payment_id: &str, reference: &str| PaymentEvent {
        event_id: event_id.clone(),
        payment_id: payment_id.to_string(),
        status,
        amount_minor: item.amount.value,
        currency,
        timestamp_unix_s,
        provider_reference: Some(reference.to_string()),
        refund_id: None,
        dispute_id: None,
        reason: None,
        // Adyen says it only in additionalData, which its HMAC does not cover: unknown, so a
        // later soft decline does not cascade (ADR 56).
        three_ds_challenged: None,
        card: None,
    };
    let original = item.original_reference.as_deref().unwrap_or_default();
    let reference = item.merchant_reference.as_str();
    let event = match (item.event_code.as_str(), success) {
        // Kassa's Adyen accounts capture automatically: an authorisation takes the funds.
        ("AUTHORISATION", true) => PaymentEvent {
            card: reported_card(item),
            ..payment(PaymentEventStatus::Captured, reference, &item.psp_reference)
        },
        ("AUTHORISATION", false) => PaymentEvent {
            reason: Some(refusal_reason(item.reason.as_deref().unwrap_or("Refused"))),
            ..payment(PaymentEventStatus::Declined, reference, &item.psp_reference)
        },
        ("CAPTURE", true) => payment(PaymentEventStatus::Captured, reference, original),
        ("CANCELLATION", true) => payment(PaymentEventStatus::Cancelled, reference, original),
        // A refund's merchantReference is Kassa's refund id (the modification's reference);
        // the payment is found by it (ADR 61), so no payment id is claimed here.
        ("REFUND", true) => PaymentEvent {
            refund_id: Some(reference.to_string()),
            ..payment(PaymentEventStatus::Refunded, "", original)
        },
        // Adyen refused the refund it had received (`success=false`, e.g. the payment was
        // already refunded or the balance is short): the hold goes back to the player.
        ("REFUND", false) | ("REFUND_FAILED", true) => PaymentEvent {
            refund_id: Some(reference.to_string()),
            reason: Some(refusal_reason(
                item.reason.as_deref().unwrap_or("Refund refused"),
            )),
            ..payment(PaymentEventStatus::RefundFailed, "", original)
        },
        // Dispute items carry the payment's own pspReference and merchantReference.
        ("CHARGEBACK", true) => PaymentEvent {
            dispute_id: Some(item.psp_reference.clone()),
            reason: item.reason.clone(),
            ..payment(
                PaymentEventStatus::Chargeback,
                reference,
                &item.psp_reference,
            )
        },
        ("CHARGEBACK_REVERSED", true) => PaymentEvent {
            dispute_id: Some(item.psp_reference.clone()),
            ..payment(
                PaymentEventStatus::DisputeWon,
                reference,
                &item.psp_reference,
            )
        },
        ("PAYOUT_THIRDPARTY", success) => {
            return Ok(Some(ProviderEvent::Payout(PayoutEvent {
                event_id,
                payout_id: reference.to_string(),
                status: if success {
                    PayoutEventStatus::Paid
                } else {
                    PayoutEventStatus::Failed
                },
                amount_minor: item.amount.value,
                currency,
                timestamp_unix_s,
                provider_reference: Some(item.psp_reference.clone()),
                reason: (!success).then(|| refusal_reason(item.reason.as_deref().unwrap_or(""))),
            })))
        }
        // Reports, other failed modifications and codes Kassa does not know: acknowledged
        // and ignored.
        (code, success) => {
            tracing::info!(code, success, psp_reference = %item.psp_reference, "Adyen notification ignored");
            return Ok(None);
        }
    };
    Ok(Some(ProviderEvent::Payment(event)))
}
