//! The sandbox's inbound source: one HMAC-signed JSON event per webhook (`crate::webhook`).

use secrecy::{ExposeSecret, SecretString};

use crate::event::InboundRefusal;
use crate::inbound::{InboundBatch, InboundChannel, InboundSource, RawInbound};
use crate::webhook;

/// Verifies the sandbox's webhooks with the account's webhook secret.
pub struct SandboxWebhookSource {
    webhook_secret: SecretString,
}

impl SandboxWebhookSource {
    /// A source checking signatures with `webhook_secret`.
    pub fn new(webhook_secret: SecretString) -> SandboxWebhookSource {
        SandboxWebhookSource { webhook_secret }
    }
}

impl InboundSource for SandboxWebhookSource {
    fn channel(&self) -> InboundChannel {
        InboundChannel::Webhook
    }

    fn verify(
        &self,
        message: RawInbound<'_>,
        now_unix_s: i64,
    ) -> Result<InboundBatch, InboundRefusal> {
        webhook::verify_signed_webhook(
            self.webhook_secret.expose_secret().as_bytes(),
            message.metadata,
            message.body,
            now_unix_s,
        )
        .map(InboundBatch::single)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PaymentEventStatus, ProviderEvent};
    use crate::inbound::Acknowledgement;
    use crate::webhook::{sign_webhook, SIGNATURE_HEADER, TIMESTAMP_TOLERANCE_S};
    use reqwest::header::{HeaderMap, HeaderValue};

    const SECRET: &str = "whsec_inbound_test";
    /// 2025-10-17T09:41:00Z, the body's timestamp.
    const SENT_UNIX_S: i64 = 1_760_694_060;
    const BODY: &[u8] = br#"{"event_id":"evt_7","payment_id":"pay_7","status":"captured","amount":"12.34","currency":"EUR","timestamp":"2025-10-17T09:41:00Z","provider_reference":"sbxpay_7"}"#;

    fn source() -> SandboxWebhookSource {
        SandboxWebhookSource::new(SecretString::from(SECRET))
    }

    fn signed_with(secret: &str, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&sign_webhook(secret.as_bytes(), body)).unwrap();
        headers.insert(SIGNATURE_HEADER, value);
        headers
    }

    fn receive(headers: &HeaderMap, body: &[u8], now: i64) -> Result<InboundBatch, InboundRefusal> {
        source().verify(
            RawInbound {
                metadata: headers,
                body,
            },
            now,
        )
    }

    #[test]
    fn a_good_signature_yields_one_typed_event_for_the_pipeline() {
        let batch = receive(&signed_with(SECRET, BODY), BODY, SENT_UNIX_S + 5).unwrap();
        assert_eq!(batch.acknowledgement, Acknowledgement::PipelineAnswer);
        let Ok(ProviderEvent::Payment(event)) = batch.into_single_event() else {
            panic!("expected a payment event")
        };
        assert_eq!(event.event_id, "evt_7");
        assert_eq!(event.status, PaymentEventStatus::Captured);
        assert_eq!(event.amount_minor, 1234);
        assert_eq!(source().channel(), InboundChannel::Webhook);
    }

    #[test]
    fn a_bad_signature_is_refused_before_the_body_is_read() {
        assert_eq!(
            receive(&signed_with("another secret", BODY), BODY, SENT_UNIX_S),
            Err(InboundRefusal::InvalidSignature)
        );
        assert_eq!(
            receive(&HeaderMap::new(), BODY, SENT_UNIX_S),
            Err(InboundRefusal::InvalidSignature)
        );
        // Signed garbage would be malformed; unsigned garbage never gets that far.
        assert_eq!(
            receive(&signed_with("another secret", b"{"), b"{", SENT_UNIX_S),
            Err(InboundRefusal::InvalidSignature)
        );
    }

    #[test]
    fn a_stale_message_is_refused_even_when_signed() {
        let headers = signed_with(SECRET, BODY);
        let late = SENT_UNIX_S + TIMESTAMP_TOLERANCE_S + 1;
        assert_eq!(
            receive(&headers, BODY, late),
            Err(InboundRefusal::Stale {
                timestamp_unix_s: SENT_UNIX_S,
                now_unix_s: late,
                tolerance_s: TIMESTAMP_TOLERANCE_S
            })
        );
    }

    #[test]
    fn replayed_bytes_carry_the_same_event_id_and_expire_with_the_tolerance() {
        let headers = signed_with(SECRET, BODY);
        let first = receive(&headers, BODY, SENT_UNIX_S).unwrap();
        let replay = receive(&headers, BODY, SENT_UNIX_S + 60).unwrap();
        // Within the tolerance a replay verifies; the pipeline dedupes it by this id.
        assert_eq!(
            first.into_single_event().unwrap().event_id(),
            replay.into_single_event().unwrap().event_id()
        );
        // Re-dating the replay breaks the signature: the timestamp is inside the signed bytes.
        let redated = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("09:41:00", "09:46:00");
        assert_eq!(
            receive(&headers, redated.as_bytes(), SENT_UNIX_S + 300),
            Err(InboundRefusal::InvalidSignature)
        );
        // After the tolerance the same bytes are stale, whatever the dedupe table still holds.
        assert!(matches!(
            receive(&headers, BODY, SENT_UNIX_S + TIMESTAMP_TOLERANCE_S + 60),
            Err(InboundRefusal::Stale { .. })
        ));
    }
}
