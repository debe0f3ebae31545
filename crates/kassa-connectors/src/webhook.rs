//! The seed's inbound webhook format: an HMAC-signed JSON event per delivery.
//!
//! `X-Signature: sha256=<lowercase hex HMAC-SHA256(secret, raw body)>` over a body like
//! `{"event_id":"evt_1","payment_id":"pay_1","status":"captured","amount":"50.00",
//! "currency":"EUR","timestamp":"2025-10-17T09:41:00Z","provider_reference":"sbxpay_1"}`.
//! Payout events carry `payout_id` instead of `payment_id`, with status `paid` or `failed`.

use hmac::{Hmac, Mac};
use kassa_core::{Currency, MoneyError};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::event::{
    PaymentEvent, PaymentEventStatus, PayoutEvent, PayoutEventStatus, ProviderEvent, WebhookError,
};

/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Signature";
/// Prefix of the signature header's value.
const SIGNATURE_PREFIX: &str = "sha256=";
/// Largest accepted distance between an event's timestamp and the receiver's clock.
pub const TIMESTAMP_TOLERANCE_S: i64 = 300;
/// Largest webhook body read; real events are a few hundred bytes.
pub const BODY_LEN_MAX: usize = 64 * 1024;

/// The `X-Signature` header value a provider sends with `body`.
pub fn sign_webhook(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Verifies a webhook in the seed format and parses it. Checks, in order: body size, the
/// signature (constant time), the JSON shape, the timestamp's freshness, and the amount
/// against the currency's exponent.
pub fn verify_signed_webhook(
    secret: &[u8],
    headers: &HeaderMap,
    raw_body: &[u8],
    now_unix_s: i64,
) -> Result<ProviderEvent, WebhookError> {
    if raw_body.len() > BODY_LEN_MAX {
        return Err(WebhookError::Malformed(format!(
            "body is larger than {BODY_LEN_MAX} bytes"
        )));
    }
    verify_signature(secret, headers, raw_body)?;
    let wire: WireEvent = serde_json::from_slice(raw_body)
        .map_err(|error| WebhookError::Malformed(format!("not a webhook event: {error}")))?;
    let timestamp_unix_s = parse_timestamp(&wire.timestamp)?;
    if (now_unix_s - timestamp_unix_s).abs() > TIMESTAMP_TOLERANCE_S {
        return Err(WebhookError::Stale {
            timestamp_unix_s,
            now_unix_s,
            tolerance_s: TIMESTAMP_TOLERANCE_S,
        });
    }
    wire.into_event(timestamp_unix_s)
}

fn verify_signature(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
    // Exactly one header: two could let a proxy and Kassa disagree on which one counted.
    let mut values = headers.get_all(SIGNATURE_HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(WebhookError::InvalidSignature);
    };
    let signature_hex = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix(SIGNATURE_PREFIX))
        .ok_or(WebhookError::InvalidSignature)?;
    let signature = hex::decode(signature_hex).map_err(|_| WebhookError::InvalidSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    mac.verify_slice(&signature)
        .map_err(|_| WebhookError::InvalidSignature)
}

fn parse_timestamp(text: &str) -> Result<i64, WebhookError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|_| WebhookError::Malformed(format!("timestamp {text:?} is not RFC 3339")))
}

/// The body as the provider sends it; unknown fields are ignored so providers may add some.
#[derive(Deserialize)]
struct WireEvent {
    event_id: String,
    payment_id: Option<String>,
    payout_id: Option<String>,
    status: String,
    amount: String,
    currency: String,
    timestamp: String,
    provider_reference: Option<String>,
    refund_id: Option<String>,
    dispute_id: Option<String>,
    reason: Option<String>,
    /// `challenge` or `frictionless` when 3-D Secure ran; absent otherwise.
    three_ds: Option<String>,
}

impl WireEvent {
    fn into_event(self, timestamp_unix_s: i64) -> Result<ProviderEvent, WebhookError> {
        let malformed = |text: String| WebhookError::Malformed(text);
        if self.event_id.is_empty() {
            return Err(malformed("event_id is empty".into()));
        }
        let currency = Currency::from_code(&self.currency)
            .map_err(|_| malformed(format!("unknown currency {:?}", self.currency)))?;
        let amount_minor = currency
            .parse_positive_minor(&self.amount)
            .map_err(|error: MoneyError| malformed(format!("amount {:?}: {error}", self.amount)))?;
        match (self.payment_id, self.payout_id) {
            (Some(payment_id), None) if !payment_id.is_empty() => {
                let status = PaymentEventStatus::parse(&self.status).ok_or_else(|| {
                    malformed(format!("unknown payment status {:?}", self.status))
                })?;
                // The sandbox PSP reports no card; Stripe's charge event is the only source.
                if status == PaymentEventStatus::CardReported {
                    return Err(malformed("the sandbox PSP sends no card_reported".into()));
                }
                let needs_refund_id = status == PaymentEventStatus::Refunded;
                if needs_refund_id && self.refund_id.as_deref().is_none_or(str::is_empty) {
                    return Err(malformed("a refunded event needs refund_id".into()));
                }
                let needs_dispute_id = matches!(
                    status,
                    PaymentEventStatus::Chargeback
                        | PaymentEventStatus::DisputeWon
                        | PaymentEventStatus::DisputeLost
                );
                if needs_dispute_id && self.dispute_id.as_deref().is_none_or(str::is_empty) {
                    return Err(malformed(format!(
                        "a {} event needs dispute_id",
                        status.as_str()
                    )));
                }
                Ok(ProviderEvent::Payment(PaymentEvent {
                    event_id: self.event_id,
                    payment_id,
                    status,
                    amount_minor,
                    currency,
                    timestamp_unix_s,
                    provider_reference: self.provider_reference,
                    refund_id: self.refund_id,
                    dispute_id: self.dispute_id,
                    reason: self.reason,
                    three_ds_challenged: match self.three_ds.as_deref() {
                        Some("challenge") => Some(true),
                        Some("frictionless") | Some("none") => Some(false),
                        Some(other) => {
                            return Err(malformed(format!("unknown three_ds {other:?}")))
                        }
                        None => None,
                    },
                    card: None,
                }))
            }
            (None, Some(payout_id)) if !payout_id.is_empty() => {
                let status = PayoutEventStatus::parse(&self.status)
                    .ok_or_else(|| malformed(format!("unknown payout status {:?}", self.status)))?;
                Ok(ProviderEvent::Payout(PayoutEvent {
                    event_id: self.event_id,
                    payout_id,
                    status,
                    amount_minor,
                    currency,
                    timestamp_unix_s,
                    provider_reference: self.provider_reference,
                    reason: self.reason,
                }))
            }
            _ => Err(malformed(
                "exactly one of payment_id and payout_id must be set".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const SECRET: &[u8] = b"whsec_test";
    /// 2025-10-17T09:41:00Z.
    const EVENT_TIME_UNIX_S: i64 = 1_760_694_060;

    fn body(status: &str, amount: &str, currency: &str) -> Vec<u8> {
        serde_json::json!({
            "event_id": "evt_1",
            "payment_id": "pay_1",
            "status": status,
            "amount": amount,
            "currency": currency,
            "timestamp": "2025-10-17T09:41:00Z",
            "provider_reference": "sbxpay_1",
        })
        .to_string()
        .into_bytes()
    }

    fn signed(secret: &[u8], body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&sign_webhook(secret, body)).unwrap();
        headers.insert(SIGNATURE_HEADER, value);
        headers
    }

    fn verify(headers: &HeaderMap, body: &[u8]) -> Result<ProviderEvent, WebhookError> {
        verify_signed_webhook(SECRET, headers, body, EVENT_TIME_UNIX_S)
    }

    #[test]
    fn sign_webhook_matches_an_independent_computation() {
        // printf '{"a":1}' | openssl dgst -sha256 -hmac whsec
        assert_eq!(
            sign_webhook(b"whsec", br#"{"a":1}"#),
            "sha256=19373ef0e8c66f206e49d251e4402291615bbce6ef00922e94a47a213fb76ee1"
        );
    }

    #[test]
    fn a_good_payment_webhook_parses_into_minor_units() {
        let body = body("captured", "50.00", "EUR");
        let event = verify(&signed(SECRET, &body), &body).unwrap();
        let ProviderEvent::Payment(event) = event else {
            panic!("expected a payment event")
        };
        assert_eq!(event.event_id, "evt_1");
        assert_eq!(event.payment_id, "pay_1");
        assert_eq!(event.status, PaymentEventStatus::Captured);
        assert_eq!(event.amount_minor, 5000);
        assert_eq!(event.currency.code(), "EUR");
        assert_eq!(event.timestamp_unix_s, EVENT_TIME_UNIX_S);
        assert_eq!(event.provider_reference.as_deref(), Some("sbxpay_1"));
    }

    #[test]
    fn a_good_payout_webhook_parses() {
        let body = serde_json::json!({
            "event_id": "evt_2", "payout_id": "po_1", "status": "failed", "amount": "1500",
            "currency": "JPY", "timestamp": "2025-10-17T09:41:00Z", "reason": "account_closed",
        })
        .to_string();
        let event = verify(&signed(SECRET, body.as_bytes()), body.as_bytes()).unwrap();
        let ProviderEvent::Payout(event) = event else {
            panic!("expected a payout event")
        };
        assert_eq!(event.payout_id, "po_1");
        assert_eq!(event.status, PayoutEventStatus::Failed);
        assert_eq!(event.amount_minor, 1500);
        assert_eq!(event.reason.as_deref(), Some("account_closed"));
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let body = body("captured", "50.00", "EUR");
        let headers = signed(SECRET, &body);
        let tampered = String::from_utf8(body).unwrap().replace("50.00", "500.00");
        assert_eq!(
            verify(&headers, tampered.as_bytes()),
            Err(WebhookError::InvalidSignature)
        );
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let body = body("captured", "50.00", "EUR");
        assert_eq!(
            verify(&signed(b"another secret", &body), &body),
            Err(WebhookError::InvalidSignature)
        );
    }

    #[test]
    fn a_missing_or_garbled_header_is_refused() {
        let body = body("captured", "50.00", "EUR");
        assert_eq!(
            verify(&HeaderMap::new(), &body),
            Err(WebhookError::InvalidSignature)
        );
        let good = sign_webhook(SECRET, &body);
        let hex_only = good.trim_start_matches(SIGNATURE_PREFIX).to_string();
        for bad in [
            hex_only,
            format!("sha1={}", &good[7..]),
            "sha256=zz".into(),
            "".into(),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(&bad).unwrap());
            assert_eq!(
                verify(&headers, &body),
                Err(WebhookError::InvalidSignature),
                "{bad}"
            );
        }
        let mut twice = signed(SECRET, &body);
        twice.append(SIGNATURE_HEADER, HeaderValue::from_str(&good).unwrap());
        assert_eq!(verify(&twice, &body), Err(WebhookError::InvalidSignature));
    }

    #[test]
    fn the_header_name_is_case_insensitive_and_uppercase_hex_is_accepted() {
        let body = body("captured", "50.00", "EUR");
        let mut headers = HeaderMap::new();
        let upper = sign_webhook(SECRET, &body)
            .to_uppercase()
            .replace("SHA256=", "sha256=");
        headers.insert("x-signature", HeaderValue::from_str(&upper).unwrap());
        assert!(verify(&headers, &body).is_ok());
    }

    #[test]
    fn timestamps_more_than_300_s_away_either_way_are_stale() {
        let body = body("captured", "50.00", "EUR");
        let headers = signed(SECRET, &body);
        for now in [EVENT_TIME_UNIX_S + 300, EVENT_TIME_UNIX_S - 300] {
            assert!(verify_signed_webhook(SECRET, &headers, &body, now).is_ok());
        }
        for now in [EVENT_TIME_UNIX_S + 301, EVENT_TIME_UNIX_S - 301] {
            assert!(matches!(
                verify_signed_webhook(SECRET, &headers, &body, now),
                Err(WebhookError::Stale { .. })
            ));
        }
    }

    #[test]
    fn malformed_bodies_are_refused_even_when_signed() {
        let cases: Vec<Vec<u8>> = vec![
            b"not json".to_vec(),
            b"{}".to_vec(),
            body("settled", "50.00", "EUR"),
            body("paid", "50.00", "EUR"),
            body("captured", "50.001", "EUR"),
            body("captured", "1.5", "JPY"),
            body("captured", "50.00", "XXX"),
            body("captured", "-5.00", "EUR"),
            body("captured", "0", "EUR"),
            body("captured", "5e3", "EUR"),
            body("refunded", "5.00", "EUR"),
            body("chargeback", "5.00", "EUR"),
            serde_json::json!({
                "event_id": "evt_1", "payment_id": "pay_1", "payout_id": "po_1",
                "status": "captured", "amount": "1.00", "currency": "EUR",
                "timestamp": "2025-10-17T09:41:00Z",
            })
            .to_string()
            .into_bytes(),
            serde_json::json!({
                "event_id": "evt_1", "payment_id": "pay_1", "status": "captured",
                "amount": "1.00", "currency": "EUR", "timestamp": "1760694060",
            })
            .to_string()
            .into_bytes(),
        ];
        for body in cases {
            let result = verify(&signed(SECRET, &body), &body);
            assert!(
                matches!(result, Err(WebhookError::Malformed(_))),
                "{}: {result:?}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn refund_and_dispute_events_carry_their_ids() {
        let refund = String::from_utf8(body("refunded", "5.00", "EUR"))
            .unwrap()
            .replace("}", r#","refund_id":"rf_1"}"#);
        let ProviderEvent::Payment(event) =
            verify(&signed(SECRET, refund.as_bytes()), refund.as_bytes()).unwrap()
        else {
            panic!("expected a payment event")
        };
        assert_eq!(event.refund_id.as_deref(), Some("rf_1"));
        assert_eq!(event.amount_minor, 500);

        let dispute = String::from_utf8(body("dispute_lost", "5.00", "EUR"))
            .unwrap()
            .replace("}", r#","dispute_id":"dp_1","reason":"fraudulent"}"#);
        let ProviderEvent::Payment(event) =
            verify(&signed(SECRET, dispute.as_bytes()), dispute.as_bytes()).unwrap()
        else {
            panic!("expected a payment event")
        };
        assert_eq!(event.status, PaymentEventStatus::DisputeLost);
        assert_eq!(event.dispute_id.as_deref(), Some("dp_1"));
    }

    #[test]
    fn oversized_bodies_are_refused_before_hashing() {
        let body = vec![b' '; BODY_LEN_MAX + 1];
        assert!(matches!(
            verify(&signed(SECRET, &body), &body),
            Err(WebhookError::Malformed(_))
        ));
    }
}
