//! The inbound source: how a provider's unsolicited messages become verified, typed events.
//!
//! Whatever carries them — an HTTP webhook (the sandbox's signed JSON, Stripe's
//! `Stripe-Signature`, an Adyen notification batch with an HMAC per item), an ISO 8583 advice
//! read off the acquirer's TCP session, a crypto gateway's WebSocket event, an SMPP
//! `deliver_sm` receipt — it reaches Kassa as bytes plus some metadata, and leaves the source
//! as [`ProviderEvent`]s or a typed [`InboundRefusal`]. The server's one provider-event
//! pipeline (verify, dedupe, match, apply, log) takes it from there; a source never decides.

use reqwest::header::HeaderMap;

use crate::event::{InboundRefusal, ProviderEvent};

/// One raw inbound message, exactly as it arrived.
#[derive(Clone, Copy, Debug)]
pub struct RawInbound<'a> {
    /// The HTTP headers of a webhook. A stream (ISO 8583, WebSocket, SMPP) has none and
    /// passes an empty map; what it knows of its session it holds itself.
    pub metadata: &'a HeaderMap,
    /// The bytes: a webhook body, one ISO 8583 frame, one WebSocket text frame, one PDU.
    pub body: &'a [u8],
}

/// How a source's messages reach Kassa, so the server knows what to wire it to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundChannel {
    /// HTTP `POST`s to `/v1/providers/{account}/webhook`.
    Webhook,
    /// Frames read from a connection the account's transport keeps open (ISO 8583 advices,
    /// WebSocket events, SMPP delivery receipts).
    Stream,
}

/// What the provider must get back for a message it sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acknowledgement {
    /// The pipeline's own answer per event (the sandbox: a JSON body, 2xx once applied or a
    /// duplicate, 4xx when refused, so the provider retries what failed).
    PipelineAnswer,
    /// A fixed answer the protocol demands once the message is stored, whatever its items
    /// did (Adyen: `200 [accepted]`; an ISO 8583 advice: its `0x30` response). Refused items
    /// are logged and kept for replay instead of being retried by the provider.
    Fixed {
        /// The media type of `body`.
        content_type: &'static str,
        /// The bytes to answer.
        body: Vec<u8>,
    },
}

/// The verified content of one inbound message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundBatch {
    /// One entry per event the message carried, in order. A message whose items are signed
    /// one by one (Adyen) may mix verified events and refused items; a message signed as a
    /// whole is refused as a whole and never gets here.
    pub items: Vec<Result<ProviderEvent, InboundRefusal>>,
    /// What to answer the provider.
    pub acknowledgement: Acknowledgement,
}

impl InboundBatch {
    /// A message carrying one verified event, answered by the pipeline.
    pub fn single(event: ProviderEvent) -> InboundBatch {
        InboundBatch {
            items: vec![Ok(event)],
            acknowledgement: Acknowledgement::PipelineAnswer,
        }
    }

    /// The one event of a single-event message; anything else is refused as malformed, so a
    /// caller that handles one event never silently drops the rest.
    pub fn into_single_event(mut self) -> Result<ProviderEvent, InboundRefusal> {
        if self.items.len() != 1 {
            return Err(InboundRefusal::Malformed(format!(
                "expected one event, the message carries {}",
                self.items.len()
            )));
        }
        self.items.remove(0)
    }
}

/// Turns a provider's raw inbound messages into verified, typed events.
///
/// Implementations are pure apart from the clock they are handed: no I/O, so every check is
/// unit-testable with bytes in and events or refusals out. Dedupe is not theirs (the pipeline
/// dedupes by [`ProviderEvent::event_id`]); what they must guarantee is that a replay of the
/// same bytes yields the same event id, and that bytes older than the protocol's tolerance are
/// refused as [`InboundRefusal::Stale`].
pub trait InboundSource: Send + Sync {
    /// How this source's messages arrive.
    fn channel(&self) -> InboundChannel;

    /// Checks the message's authenticity first (signature, MAC field, per-item HMAC), then its
    /// freshness against `now_unix_s`, then parses it.
    ///
    /// Required, with no default, and fails closed: a missing or unknown signature scheme, an
    /// oversized body, a timestamp outside the tolerance, an amount that does not fit the
    /// currency — each is a refusal, never a best guess. Nothing from the bytes is trusted
    /// (not even to pick a key) before the signature is.
    fn verify(
        &self,
        message: RawInbound<'_>,
        now_unix_s: i64,
    ) -> Result<InboundBatch, InboundRefusal>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PayoutEvent, PayoutEventStatus};
    use kassa_core::Currency;

    fn event(id: &str) -> ProviderEvent {
        ProviderEvent::Payout(PayoutEvent {
            event_id: id.into(),
            payout_id: "po_1".into(),
            status: PayoutEventStatus::Paid,
            amount_minor: 100,
            currency: Currency::from_code("EUR").unwrap(),
            timestamp_unix_s: 1,
            provider_reference: None,
            reason: None,
        })
    }

    #[test]
    fn only_a_message_of_exactly_one_verified_event_is_a_single_event() {
        assert_eq!(
            InboundBatch::single(event("e1")).into_single_event(),
            Ok(event("e1"))
        );
        let two = InboundBatch {
            items: vec![Ok(event("e1")), Ok(event("e2"))],
            acknowledgement: Acknowledgement::PipelineAnswer,
        };
        assert!(matches!(
            two.into_single_event(),
            Err(InboundRefusal::Malformed(_))
        ));
        let none = InboundBatch {
            items: Vec::new(),
            acknowledgement: Acknowledgement::PipelineAnswer,
        };
        assert!(none.into_single_event().is_err());
        let refused = InboundBatch {
            items: vec![Err(InboundRefusal::InvalidSignature)],
            acknowledgement: Acknowledgement::PipelineAnswer,
        };
        assert_eq!(
            refused.into_single_event(),
            Err(InboundRefusal::InvalidSignature)
        );
    }
}
