//! Inbound provider webhooks (the sandbox connector's format): any body and signature
//! header is verified and parsed or refused without panicking; a body signed with another
//! secret is never accepted; a body signed with the right secret reaches the parser.
#![no_main]

use kassa_connectors::webhook::{sign_webhook, verify_signed_webhook, SIGNATURE_HEADER};
use kassa_connectors::{HeaderMap, ProviderEvent};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-webhook-secret-fuzz-webhook";
const NOW_S: i64 = 1_760_694_060; // 2025-10-17T09:41:00Z

fn with_signature(value: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(value) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
        headers.insert(SIGNATURE_HEADER, value);
    }
    headers
}

fuzz_target!(|data: &[u8]| {
    // First byte: how the delivery is signed; then the signature header's length; the rest
    // is the header value and the body.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&header_len, rest)) = rest.split_first() else {
        return;
    };
    let header_len = usize::from(header_len).min(rest.len());
    let (header_value, body) = rest.split_at(header_len);
    let headers = match mode % 3 {
        0 => with_signature(header_value),
        1 => with_signature(sign_webhook(SECRET, body).as_bytes()),
        _ => with_signature(sign_webhook(b"another-secret-another-secret-ab", body).as_bytes()),
    };
    let verified = verify_signed_webhook(SECRET, &headers, body, NOW_S);
    if mode % 3 == 2 {
        assert!(verified.is_err(), "accepted a body signed with another secret");
    }
    if let Ok(event) = verified {
        let (amount_minor, currency) = match &event {
            ProviderEvent::Payment(e) => (e.amount_minor, e.currency),
            ProviderEvent::Payout(e) => (e.amount_minor, e.currency),
            ProviderEvent::Verification(_) => panic!("the seed format yields no verification event"),
        };
        assert!(amount_minor > 0, "a verified event moves a positive amount");
        let _ = currency.format_minor(amount_minor);
    }
});
