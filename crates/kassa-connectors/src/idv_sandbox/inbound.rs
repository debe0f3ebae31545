//! The sandbox ID provider's webhooks: one JSON event per delivery, signed over its
//! timestamp and body, `X-Idv-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "t.body")>`.
//! The timestamp is inside the signature, so an old delivery cannot be made fresh: a replay
//! outside [`TOLERANCE_S`] is refused as stale, one inside it is a duplicate event id.

use hmac::{Hmac, Mac};
use kassa_core::kyc::{KycLevel, VerificationResult};
use serde::Deserialize;
use sha2::Sha256;

use crate::event::{country_code, DocumentCheck, InboundRefusal, ProviderEvent, VerificationEvent};
use crate::inbound::{InboundBatch, InboundChannel, InboundSource, RawInbound};
use secrecy::{ExposeSecret, SecretString};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Idv-Signature";
/// Largest accepted distance between the signed timestamp and the receiver's clock.
pub const TOLERANCE_S: i64 = 300;
/// Largest webhook body read; a result with its checks is about a kilobyte.
const BODY_LEN_MAX: usize = 64 * 1024;
/// Most document checks one event may carry.
const CHECKS_MAX: usize = 32;

/// The `X-Idv-Signature` value the provider sends with `body` at `timestamp_unix_s`.
pub fn sign_idv_webhook(secret: &[u8], timestamp_unix_s: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp_unix_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp_unix_s},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Verifies the sandbox ID provider's webhooks with the account's webhook secret.
pub struct IdvWebhookSource {
    webhook_secret: SecretString,
}

impl IdvWebhookSource {
    /// A source checking signatures with `webhook_secret`.
    pub fn new(webhook_secret: SecretString) -> IdvWebhookSource {
        IdvWebhookSource { webhook_secret }
    }
}

#[derive(Deserialize)]
struct WireEvent {
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    applicant_id: String,
    external_user_id: String,
    level: String,
    review_result: String,
    reason: Option<String>,
    #[serde(default)]
    checks: Vec<WireCheck>,
    /// The identity document's issuing country, as the reviewer read it.
    #[serde(default)]
    document_country: Option<String>,
}

#[derive(Deserialize)]
struct WireCheck {
    document: String,
    check: String,
    result: String,
    detail: Option<String>,
}

/// The signed timestamp of a well-formed header with exactly one `t` and one `v1`.
fn parse_header(value: &str) -> Option<(i64, Vec<u8>)> {
    let (mut timestamp, mut signature) = (None, None);
    for part in value.split(',') {
        match part.trim().split_once('=')? {
            ("t", text) if timestamp.is_none() => timestamp = Some(text.parse().ok()?),
            ("v1", text) if signature.is_none() => signature = Some(hex::decode(text).ok()?),
            _ => return None,
        }
    }
    Some((timestamp?, signature?))
}

impl IdvWebhookSource {
    fn check_signature(&self, message: &RawInbound<'_>) -> Result<i64, InboundRefusal> {
        let mut values = message.metadata.get_all(SIGNATURE_HEADER).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(InboundRefusal::InvalidSignature);
        };
        let (timestamp, signature) = value
            .to_str()
            .ok()
            .and_then(parse_header)
            .ok_or(InboundRefusal::InvalidSignature)?;
        let secret = self.webhook_secret.expose_secret().as_bytes();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(message.body);
        mac.verify_slice(&signature)
            .map_err(|_| InboundRefusal::InvalidSignature)?;
        Ok(timestamp)
    }
}

impl InboundSource for IdvWebhookSource {
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
        let timestamp_unix_s = self.check_signature(&message)?;
        if (now_unix_s - timestamp_unix_s).abs() > TOLERANCE_S {
            return Err(InboundRefusal::Stale {
                timestamp_unix_s,
                now_unix_s,
                tolerance_s: TOLERANCE_S,
            });
        }
        let wire: WireEvent = serde_json::from_slice(message.body)
            .map_err(|error| InboundRefusal::Malformed(format!("not an IDV event: {error}")))?;
        into_event(wire, timestamp_unix_s).map(InboundBatch::single)
    }
}

fn into_event(wire: WireEvent, timestamp_unix_s: i64) -> Result<ProviderEvent, InboundRefusal> {
    let malformed = |text: String| InboundRefusal::Malformed(text);
    if wire.kind != "applicant.reviewed" {
        return Err(malformed(format!("unknown event type {:?}", wire.kind)));
    }
    if wire.event_id.is_empty() || wire.applicant_id.is_empty() || wire.external_user_id.is_empty()
    {
        return Err(malformed(
            "event_id, applicant_id and external_user_id are required".into(),
        ));
    }
    let level = KycLevel::parse(&wire.level)
        .ok_or_else(|| malformed(format!("unknown level {:?}", wire.level)))?;
    let result = VerificationResult::parse(&wire.review_result)
        .ok_or_else(|| malformed(format!("unknown review_result {:?}", wire.review_result)))?;
    if wire.checks.len() > CHECKS_MAX {
        return Err(malformed(format!("more than {CHECKS_MAX} checks")));
    }
    let checks = wire
        .checks
        .into_iter()
        .map(|check| DocumentCheck {
            document: check.document,
            check: check.check,
            result: check.result,
            detail: check.detail,
        })
        .collect();
    Ok(ProviderEvent::Verification(VerificationEvent {
        event_id: wire.event_id,
        applicant_id: wire.applicant_id,
        external_id: wire.external_user_id,
        level,
        result,
        reason: wire.reason,
        checks,
        timestamp_unix_s,
        document_country: wire.document_country.as_deref().and_then(country_code),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    const SECRET: &str = "idv_whsec_test";
    const SENT_UNIX_S: i64 = 1_760_694_060;
    const BODY: &[u8] = br#"{"event_id":"idvevt_1","type":"applicant.reviewed","applicant_id":"app_1","external_user_id":"kyc_1","level":"basic","review_result":"rejected","reason":"document_expired","checks":[{"document":"identity_document","check":"expiry","result":"consider","detail":"expired 2020-01-31"}]}"#;

    fn receive(header: &str, body: &[u8], now: i64) -> Result<InboundBatch, InboundRefusal> {
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(header).unwrap());
        IdvWebhookSource::new(SecretString::from(SECRET)).verify(
            RawInbound {
                metadata: &headers,
                body,
            },
            now,
        )
    }

    #[test]
    fn a_signed_result_yields_a_verification_event_with_its_checks() {
        let header = sign_idv_webhook(SECRET.as_bytes(), SENT_UNIX_S, BODY);
        let event = receive(&header, BODY, SENT_UNIX_S + 3)
            .unwrap()
            .into_single_event()
            .unwrap();
        let ProviderEvent::Verification(event) = event else {
            panic!("expected a verification event")
        };
        assert_eq!(event.result, VerificationResult::Rejected);
        assert_eq!(event.reason.as_deref(), Some("document_expired"));
        assert_eq!(event.checks[0].check, "expiry");
        assert_eq!(event.timestamp_unix_s, SENT_UNIX_S);
        assert_eq!(event.document_country, None, "the body names none");
    }

    #[test]
    fn the_documents_country_is_taken_when_it_is_a_country_code() {
        let with = |country: &str| {
            let body = String::from_utf8(BODY.to_vec()).unwrap().replace(
                r#""level":"basic""#,
                &format!(r#""level":"basic","document_country":{country}"#),
            );
            let header = sign_idv_webhook(SECRET.as_bytes(), SENT_UNIX_S, body.as_bytes());
            let event = receive(&header, body.as_bytes(), SENT_UNIX_S)
                .unwrap()
                .into_single_event()
                .unwrap();
            let ProviderEvent::Verification(event) = event else {
                panic!("expected a verification event")
            };
            event.document_country
        };
        assert_eq!(with(r#""se""#).as_deref(), Some("SE"));
        assert_eq!(with(r#""SWE""#), None, "alpha-3 is not taken");
        assert_eq!(with("null"), None);
    }

    #[test]
    fn a_forged_or_moved_signature_is_refused() {
        let forged = sign_idv_webhook(b"another secret", SENT_UNIX_S, BODY);
        assert_eq!(
            receive(&forged, BODY, SENT_UNIX_S).unwrap_err(),
            InboundRefusal::InvalidSignature
        );
        // The timestamp is signed: a fresh `t` on an old signature does not verify.
        let good = sign_idv_webhook(SECRET.as_bytes(), SENT_UNIX_S, BODY);
        let moved = good.replace(
            &format!("t={SENT_UNIX_S}"),
            &format!("t={}", SENT_UNIX_S + 900),
        );
        assert_eq!(
            receive(&moved, BODY, SENT_UNIX_S + 900).unwrap_err(),
            InboundRefusal::InvalidSignature
        );
        assert_eq!(
            receive("v1=00", BODY, SENT_UNIX_S).unwrap_err(),
            InboundRefusal::InvalidSignature
        );
    }

    #[test]
    fn a_replay_outside_the_window_is_stale() {
        let header = sign_idv_webhook(SECRET.as_bytes(), SENT_UNIX_S, BODY);
        assert!(matches!(
            receive(&header, BODY, SENT_UNIX_S + TOLERANCE_S + 1),
            Err(InboundRefusal::Stale { .. })
        ));
    }
}
