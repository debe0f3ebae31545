//! Stripe's webhooks: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>…]`, each `v1` the
//! HMAC-SHA256 of `"{t}.{raw body}"` keyed with the whole endpoint secret (`whsec_…`, not
//! decoded). Any matching `v1` is accepted (secret rotation), other schemes are ignored, and a
//! `t` more than 300 s from now is stale. The body is one `event` object; its `id` (`evt_…`)
//! is the dedupe key. Types Kassa does not act on are acknowledged and ignored (ADR 58).

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use sha2::Sha256;

use super::translator::currency;
use super::wire;
use crate::event::{
    InboundRefusal, PaymentEvent, PaymentEventStatus, PayoutEvent, PayoutEventStatus,
    ProviderEvent, ReportedCard,
};
use crate::inbound::{Acknowledgement, InboundBatch, InboundChannel, InboundSource, RawInbound};
use crate::webhook::BODY_LEN_MAX;

/// Header carrying the signatures.
pub const SIGNATURE_HEADER: &str = "Stripe-Signature";
/// Largest accepted distance between the signed `t` and the receiver's clock, as Stripe's
/// libraries default to.
pub const TOLERANCE_S: i64 = 300;

/// The `Stripe-Signature` value for `body` signed at `t`, as Stripe computes it.
pub fn signature_header(secret: &[u8], timestamp_unix_s: i64, body: &[u8]) -> String {
    let mac = signed_payload_mac(secret, timestamp_unix_s, body);
    format!(
        "t={timestamp_unix_s},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

fn signed_payload_mac(secret: &[u8], timestamp_unix_s: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp_unix_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks the header against `body`: one header, a `t`, a matching `v1` (constant time),
/// then freshness. Answers the signed `t`.
pub fn verify_signature(
    secret: &[u8],
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    now_unix_s: i64,
) -> Result<i64, InboundRefusal> {
    let mut values = headers.get_all(SIGNATURE_HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(InboundRefusal::InvalidSignature);
    };
    let value = value
        .to_str()
        .map_err(|_| InboundRefusal::InvalidSignature)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", text)) => timestamp = text.parse::<i64>().ok(),
            Some(("v1", hex_text)) => candidates.extend(hex::decode(hex_text).ok()),
            _ => {}
        }
    }
    let timestamp_unix_s = timestamp.ok_or(InboundRefusal::InvalidSignature)?;
    let mac = signed_payload_mac(secret, timestamp_unix_s, body);
    let matched = candidates
        .iter()
        .any(|candidate| mac.clone().verify_slice(candidate).is_ok());
    if !matched {
        return Err(InboundRefusal::InvalidSignature);
    }
    if (now_unix_s - timestamp_unix_s).abs() > TOLERANCE_S {
        return Err(InboundRefusal::Stale {
            timestamp_unix_s,
            now_unix_s,
            tolerance_s: TOLERANCE_S,
        });
    }
    Ok(timestamp_unix_s)
}

/// Verifies Stripe's webhooks with the endpoint's signing secret.
pub struct StripeWebhookSource {
    webhook_secret: SecretString,
}

impl StripeWebhookSource {
    /// A source checking signatures with `webhook_secret` (`whsec_…`).
    pub fn new(webhook_secret: SecretString) -> StripeWebhookSource {
        StripeWebhookSource { webhook_secret }
    }
}

impl InboundSource for StripeWebhookSource {
    fn channel(&self) -> InboundChannel {
        InboundChannel::Webhook
    }

    fn verify(
        &self,
        message: RawInbound<'_>,
        now_unix_s: i64,
    ) -> Result<InboundBatch, InboundRefusal> {
        if message.body.len() > BODY_LEN_MAX {
            return Err(InboundRefusal::Malformed(format!(
                "body is larger than {BODY_LEN_MAX} bytes"
            )));
        }
        let secret = self.webhook_secret.expose_secret().as_bytes();
        verify_signature(secret, message.metadata, message.body, now_unix_s)?;
        let event: wire::Event = serde_json::from_slice(message.body)
            .map_err(|error| malformed(format!("not a Stripe event: {error}")))?;
        if event.id.is_empty() {
            return Err(malformed("the event has no id".into()));
        }
        Ok(match parse_event(event)? {
            Some(event) => InboundBatch::single(event),
            None => ignored(),
        })
    }
}

fn malformed(text: String) -> InboundRefusal {
    InboundRefusal::Malformed(text)
}

/// An event Kassa does not act on: answered 200 so Stripe stops sending it, nothing applied.
fn ignored() -> InboundBatch {
    InboundBatch {
        items: Vec::new(),
        acknowledgement: Acknowledgement::Fixed {
            content_type: "application/json",
            body: br#"{"received":true,"ignored":true}"#.to_vec(),
        },
    }
}

fn object<T: DeserializeOwned>(event: &wire::Event) -> Result<T, InboundRefusal> {
    serde_json::from_value(event.data.object.clone())
        .map_err(|error| malformed(format!("{} data.object: {error}", event.kind)))
}

fn required(id: Option<String>, what: &str) -> Result<String, InboundRefusal> {
    id.filter(|id| !id.is_empty())
        .ok_or_else(|| malformed(format!("metadata[{what}] is missing")))
}

/// The typed event of a verified Stripe event, `None` for a type Kassa ignores.
fn parse_event(event: wire::Event) -> Result<Option<ProviderEvent>, InboundRefusal> {
    let payment = |status, object: PaymentFields| -> Result<_, InboundRefusal> {
        Ok(Some(ProviderEvent::Payment(PaymentEvent {
            event_id: event.id.clone(),
            payment_id: match (&object.provider_reference, object.dispute_id.is_some()) {
                // A dispute names only its PaymentIntent; the pipeline finds the payment by it.
                (Some(_), true) => object.payment_id.unwrap_or_default(),
                _ => required(object.payment_id, "kassa_payment_id")?,
            },
            status,
            amount_minor: object.amount_minor,
            currency: currency(&object.currency).map_err(|e| malformed(e.to_string()))?,
            timestamp_unix_s: event.created,
            provider_reference: object.provider_reference,
            refund_id: object.refund_id,
            dispute_id: object.dispute_id,
            // Stripe's intent events do not say how 3-D Secure ran, except that a failed
            // challenge fails with `authentication_failed` (ADR 56: `None` never cascades).
            three_ds_challenged: (object.reason.as_deref() == Some("authentication_failed"))
                .then_some(true),
            reason: object.reason,
            card: object.card,
        })))
    };
    match event.kind.as_str() {
        "payment_intent.succeeded"
        | "payment_intent.payment_failed"
        | "payment_intent.canceled" => {
            let intent: wire::PaymentIntent = object(&event)?;
            let status = match event.kind.as_str() {
                "payment_intent.succeeded" => PaymentEventStatus::Captured,
                "payment_intent.canceled" => PaymentEventStatus::Cancelled,
                _ => PaymentEventStatus::Declined,
            };
            payment(status, PaymentFields::of_intent(intent))
        }
        // Sent with `payment_intent.succeeded` (which, since API version 2022-11-15, names its
        // charge only by id): the one event that says which card paid.
        "charge.succeeded" => {
            // Only the card is taken from it, and no money moves on it: a charge Kassa
            // cannot read is acknowledged and ignored, as before Kassa read any.
            let Ok(charge) = object::<wire::Charge>(&event) else {
                return Ok(None);
            };
            let fields = PaymentFields::of_charge(charge);
            // Not a charge of Kassa's (no payment id in its metadata), or nothing to tell.
            if fields.card.is_none() || fields.payment_id.is_none() {
                return Ok(None);
            }
            payment(PaymentEventStatus::CardReported, fields)
        }
        "charge.refunded" => {
            let charge: wire::Charge = object(&event)?;
            payment(
                PaymentEventStatus::Refunded,
                PaymentFields::of_refund(charge)?,
            )
        }
        "charge.dispute.created" | "charge.dispute.closed" => {
            let dispute: wire::Dispute = object(&event)?;
            let status = match (event.kind.as_str(), dispute.status.as_str()) {
                ("charge.dispute.created", _) => PaymentEventStatus::Chargeback,
                (_, "won") => PaymentEventStatus::DisputeWon,
                (_, "lost") => PaymentEventStatus::DisputeLost,
                // `warning_closed` and the like: an inquiry that never became a chargeback.
                _ => return Ok(None),
            };
            payment(status, PaymentFields::of_dispute(dispute))
        }
        "payout.paid" | "payout.failed" => {
            let payout: wire::Payout = object(&event)?;
            let status = match event.kind.as_str() {
                "payout.paid" => PayoutEventStatus::Paid,
                _ => PayoutEventStatus::Failed,
            };
            Ok(Some(ProviderEvent::Payout(PayoutEvent {
                event_id: event.id.clone(),
                payout_id: required(payout.metadata.kassa_payout_id, "kassa_payout_id")?,
                status,
                amount_minor: payout.amount,
                currency: currency(&payout.currency).map_err(|e| malformed(e.to_string()))?,
                timestamp_unix_s: event.created,
                provider_reference: Some(payout.id),
                reason: payout.failure_code,
            })))
        }
        _ => Ok(None),
    }
}

/// What a payment event takes from the Stripe object it is about.
struct PaymentFields {
    payment_id: Option<String>,
    amount_minor: i64,
    currency: String,
    provider_reference: Option<String>,
    refund_id: Option<String>,
    dispute_id: Option<String>,
    reason: Option<String>,
    card: Option<ReportedCard>,
}

impl PaymentFields {
    fn of_intent(intent: wire::PaymentIntent) -> PaymentFields {
        PaymentFields {
            payment_id: intent.metadata.kassa_payment_id,
            amount_minor: intent.amount,
            currency: intent.currency,
            provider_reference: Some(intent.id),
            refund_id: None,
            dispute_id: None,
            reason: intent.last_payment_error.and_then(|error| error.reason()),
            card: None,
        }
    }

    /// `charge.succeeded`: the charge's card, under its PaymentIntent and Kassa's payment.
    fn of_charge(charge: wire::Charge) -> PaymentFields {
        let card = charge
            .payment_method_details
            .and_then(|details| details.card)
            .and_then(|card| {
                ReportedCard::of(
                    card.country.as_deref(),
                    card.brand.as_deref(),
                    card.last4.as_deref(),
                )
            });
        PaymentFields {
            payment_id: charge.metadata.kassa_payment_id,
            amount_minor: charge.amount,
            currency: charge.currency,
            provider_reference: charge.payment_intent,
            refund_id: None,
            dispute_id: None,
            reason: None,
            card,
        }
    }

    /// `charge.refunded` is about the charge; the refund it reports is the newest of the
    /// charge's refunds (Stripe lists them newest first), Kassa's id in its metadata.
    fn of_refund(charge: wire::Charge) -> Result<PaymentFields, InboundRefusal> {
        let refund = charge
            .refunds
            .and_then(|list| list.data.into_iter().next())
            .ok_or_else(|| malformed("charge.refunded carries no refund".into()))?;
        Ok(PaymentFields {
            payment_id: charge.metadata.kassa_payment_id,
            amount_minor: refund.amount,
            currency: charge.currency,
            provider_reference: charge.payment_intent,
            refund_id: Some(required(
                refund.metadata.kassa_refund_id,
                "kassa_refund_id",
            )?),
            dispute_id: None,
            reason: None,
            card: None,
        })
    }

    fn of_dispute(dispute: wire::Dispute) -> PaymentFields {
        PaymentFields {
            payment_id: dispute.metadata.kassa_payment_id,
            amount_minor: dispute.amount,
            currency: dispute.currency,
            provider_reference: dispute.payment_intent,
            refund_id: None,
            dispute_id: Some(dispute.id),
            reason: dispute.reason,
            card: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    const SECRET: &str = "whsec_test_secret";
    const NOW: i64 = 1_760_694_060;

    fn signed(body: &[u8], t: i64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = signature_header(SECRET.as_bytes(), t, body);
        headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(&value).unwrap());
        headers
    }

    fn receive(headers: &HeaderMap, body: &[u8]) -> Result<InboundBatch, InboundRefusal> {
        StripeWebhookSource::new(SecretString::from(SECRET)).verify(
            RawInbound {
                metadata: headers,
                body,
            },
            NOW,
        )
    }

    fn event(kind: &str, object: &str) -> Vec<u8> {
        format!(r#"{{"id":"evt_1","object":"event","type":"{kind}","created":{NOW},"livemode":false,"data":{{"object":{object}}}}}"#).into_bytes()
    }

    fn one(kind: &str, object: &str) -> ProviderEvent {
        let body = event(kind, object);
        receive(&signed(&body, NOW), &body)
            .unwrap()
            .into_single_event()
            .unwrap()
    }

    /// The published vector (arlyon/async-stripe's `webhook_events.rs`): secret
    /// `webhook_secret`, t = 1533204620, the 807-byte pretty-printed `evt_123` body.
    #[test]
    fn the_research_signature_vector_verifies() {
        let body = include_bytes!("testdata/stripe-signature-vector-payload.json");
        assert_eq!(body.len(), 807);
        let expected = "f0bdba6d4eacbd8ad8a3bbadd7248e633ec1477f7899c124c51b39405fa36613";
        assert_eq!(
            signature_header(b"webhook_secret", 1_533_204_620, body),
            format!("t=1533204620,v1={expected}")
        );
        let mut headers = HeaderMap::new();
        let value = format!("t=1533204620,v1=00ff,v1={expected},v0=abc");
        headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(&value).unwrap());
        assert_eq!(
            verify_signature(b"webhook_secret", &headers, body, 1_533_204_620 + 299),
            Ok(1_533_204_620)
        );
        // An `invoiceitem.created` is signed but not Kassa's business: acknowledged, ignored.
        let batch = StripeWebhookSource::new(SecretString::from("webhook_secret"))
            .verify(
                RawInbound {
                    metadata: &headers,
                    body,
                },
                1_533_204_620,
            )
            .unwrap();
        assert!(batch.items.is_empty());
        assert!(matches!(
            batch.acknowledgement,
            Acknowledgement::Fixed { .. }
        ));
    }

    #[test]
    fn tampered_stale_unsigned_and_doubled_messages_are_refused() {
        let body = event("payment_intent.succeeded", "{}");
        let headers = signed(&body, NOW);
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert_eq!(
            receive(&headers, &tampered),
            Err(InboundRefusal::InvalidSignature)
        );
        assert_eq!(
            receive(&HeaderMap::new(), &body),
            Err(InboundRefusal::InvalidSignature)
        );
        let old = NOW - TOLERANCE_S - 1;
        assert_eq!(
            receive(&signed(&body, old), &body),
            Err(InboundRefusal::Stale {
                timestamp_unix_s: old,
                now_unix_s: NOW,
                tolerance_s: TOLERANCE_S
            })
        );
        // Re-dating a captured header breaks it: `t` is inside the signed bytes.
        let value = signature_header(SECRET.as_bytes(), old, &body)
            .replace(&old.to_string(), &NOW.to_string());
        let mut redated = HeaderMap::new();
        redated.insert(SIGNATURE_HEADER, HeaderValue::from_str(&value).unwrap());
        assert_eq!(
            receive(&redated, &body),
            Err(InboundRefusal::InvalidSignature)
        );
        let mut doubled = signed(&body, NOW);
        doubled.append(SIGNATURE_HEADER, HeaderValue::from_static("t=1,v1=00"));
        assert_eq!(
            receive(&doubled, &body),
            Err(InboundRefusal::InvalidSignature)
        );
        for value in ["v1=00", "t=abc,v1=00", "", "t=1"] {
            let mut headers = HeaderMap::new();
            headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(value).unwrap());
            assert_eq!(
                receive(&headers, &body),
                Err(InboundRefusal::InvalidSignature)
            );
        }
        let garbage = b"{not json";
        assert!(matches!(
            receive(&signed(garbage, NOW), garbage),
            Err(InboundRefusal::Malformed(_))
        ));
    }

    #[test]
    fn a_succeeded_charge_reports_its_card_and_nothing_else() {
        let charge = |metadata: &str, details: &str| {
            format!(
                r#"{{"id":"ch_1","object":"charge","amount":5000,"currency":"eur","payment_intent":"pi_1","status":"succeeded","metadata":{{{metadata}}}{details}}}"#
            )
        };
        let card = r#","payment_method_details":{"type":"card","card":{"brand":"visa","country":"DE","last4":"0016","exp_month":12,"exp_year":2034,"funding":"credit"}}"#;
        let ProviderEvent::Payment(reported) = one(
            "charge.succeeded",
            &charge(r#""kassa_payment_id":"pay_1""#, card),
        ) else {
            panic!("a payment event")
        };
        assert_eq!(
            (
                reported.status,
                reported.payment_id.as_str(),
                reported.provider_reference.as_deref(),
                reported.amount_minor,
            ),
            (
                PaymentEventStatus::CardReported,
                "pay_1",
                Some("pi_1"),
                5000
            )
        );
        let card_seen = reported.card.unwrap();
        assert_eq!(
            (
                card_seen.country.as_deref(),
                card_seen.brand.as_deref(),
                card_seen.last4.as_deref()
            ),
            (Some("DE"), Some("visa"), Some("0016"))
        );
        // Not Kassa's charge, or no card details: acknowledged and ignored, as before.
        for body in [
            charge("", card),
            charge(r#""kassa_payment_id":"pay_1""#, ""),
        ] {
            let bytes = event("charge.succeeded", &body);
            let batch = receive(&signed(&bytes, NOW), &bytes).unwrap();
            assert!(batch.items.is_empty(), "{body}");
        }
    }

    #[test]
    fn payment_intent_events_carry_kassas_payment_id_and_the_reason() {
        let intent = |status: &str, error: &str| {
            format!(
                r#"{{"id":"pi_1","object":"payment_intent","status":"{status}","amount":5000,"currency":"eur","metadata":{{"kassa_payment_id":"pay_1"}}{error}}}"#
            )
        };
        let ProviderEvent::Payment(captured) =
            one("payment_intent.succeeded", &intent("succeeded", ""))
        else {
            panic!("a payment event")
        };
        assert_eq!(
            (
                captured.event_id.as_str(),
                captured.payment_id.as_str(),
                captured.status,
                captured.amount_minor
            ),
            ("evt_1", "pay_1", PaymentEventStatus::Captured, 5000)
        );
        assert_eq!(captured.currency.code(), "EUR");
        assert_eq!(captured.provider_reference.as_deref(), Some("pi_1"));
        assert_eq!(captured.timestamp_unix_s, NOW);
        let failed = intent(
            "requires_payment_method",
            r#","last_payment_error":{"type":"card_error","code":"card_declined","decline_code":"lost_card"}"#,
        );
        let ProviderEvent::Payment(declined) = one("payment_intent.payment_failed", &failed) else {
            panic!("a payment event")
        };
        assert_eq!(declined.status, PaymentEventStatus::Declined);
        assert_eq!(declined.reason.as_deref(), Some("lost_card"));
        let challenge_failed = intent(
            "requires_payment_method",
            r#","last_payment_error":{"type":"invalid_request_error","code":"payment_intent_authentication_failure"}"#,
        );
        let ProviderEvent::Payment(unauthenticated) =
            one("payment_intent.payment_failed", &challenge_failed)
        else {
            panic!("a payment event")
        };
        assert_eq!(
            unauthenticated.reason.as_deref(),
            Some("authentication_failed")
        );
        assert_eq!(unauthenticated.three_ds_challenged, Some(true));
        assert_eq!(declined.three_ds_challenged, None, "Stripe does not say");
        let no_id = event(
            "payment_intent.succeeded",
            r#"{"id":"pi_1","status":"succeeded","amount":1,"currency":"eur"}"#,
        );
        assert!(matches!(
            receive(&signed(&no_id, NOW), &no_id),
            Err(InboundRefusal::Malformed(_))
        ));
    }

    #[test]
    fn a_refund_event_names_kassas_refund_and_its_own_amount() {
        let charge = r#"{"id":"ch_1","object":"charge","amount":5000,"amount_refunded":3000,"currency":"eur","payment_intent":"pi_1","metadata":{"kassa_payment_id":"pay_1"},"refunds":{"object":"list","data":[{"id":"re_2","object":"refund","amount":1000,"status":"succeeded","metadata":{"kassa_refund_id":"rf_2"}},{"id":"re_1","object":"refund","amount":2000,"status":"succeeded","metadata":{"kassa_refund_id":"rf_1"}}]}}"#;
        let ProviderEvent::Payment(refunded) = one("charge.refunded", charge) else {
            panic!("a payment event")
        };
        assert_eq!(refunded.status, PaymentEventStatus::Refunded);
        assert_eq!(refunded.refund_id.as_deref(), Some("rf_2"));
        assert_eq!(refunded.amount_minor, 1000);
        assert_eq!(refunded.provider_reference.as_deref(), Some("pi_1"));
    }

    #[test]
    fn dispute_events_become_chargebacks_and_their_outcomes() {
        let dispute = |status: &str| {
            format!(
                r#"{{"id":"dp_1","object":"dispute","amount":5000,"currency":"eur","charge":"ch_1","payment_intent":"pi_1","reason":"fraudulent","status":"{status}","metadata":{{"kassa_payment_id":"pay_1"}}}}"#
            )
        };
        let status_of = |kind: &str, status: &str| match one(kind, &dispute(status)) {
            ProviderEvent::Payment(event) => (event.status, event.dispute_id),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            status_of("charge.dispute.created", "needs_response"),
            (PaymentEventStatus::Chargeback, Some("dp_1".into()))
        );
        assert_eq!(
            status_of("charge.dispute.closed", "won").0,
            PaymentEventStatus::DisputeWon
        );
        assert_eq!(
            status_of("charge.dispute.closed", "lost").0,
            PaymentEventStatus::DisputeLost
        );
        let body = event("charge.dispute.closed", &dispute("warning_closed"));
        assert!(receive(&signed(&body, NOW), &body)
            .unwrap()
            .items
            .is_empty());
        // Stripe's own disputes carry no metadata of ours: the PaymentIntent names the payment.
        let bare = dispute("needs_response").replace(r#"{"kassa_payment_id":"pay_1"}"#, "{}");
        let ProviderEvent::Payment(event) = one("charge.dispute.created", &bare) else {
            panic!("a payment event");
        };
        assert_eq!(event.payment_id, "");
        assert_eq!(event.provider_reference.as_deref(), Some("pi_1"));
    }

    #[test]
    fn payout_events_carry_kassas_payout_id() {
        let payout = |status: &str| {
            format!(
                r#"{{"id":"po_9","object":"payout","amount":700,"currency":"eur","status":"{status}","failure_code":{},"metadata":{{"kassa_payout_id":"pyo_1"}}}}"#,
                if status == "failed" {
                    r#""account_closed""#
                } else {
                    "null"
                }
            )
        };
        let ProviderEvent::Payout(paid) = one("payout.paid", &payout("paid")) else {
            panic!("a payout event")
        };
        assert_eq!(
            (paid.payout_id.as_str(), paid.status, paid.amount_minor),
            ("pyo_1", PayoutEventStatus::Paid, 700)
        );
        let ProviderEvent::Payout(failed) = one("payout.failed", &payout("failed")) else {
            panic!("a payout event")
        };
        assert_eq!(failed.status, PayoutEventStatus::Failed);
        assert_eq!(failed.reason.as_deref(), Some("account_closed"));
    }
}
