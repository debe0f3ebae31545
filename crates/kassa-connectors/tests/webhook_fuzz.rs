//! Property-based fuzzing of the inbound webhook parser: whatever bytes and headers arrive,
//! verification never panics, never accepts what the secret did not sign, and — for bodies
//! that are signed — parses or refuses without panicking.

use kassa_connectors::webhook::{sign_webhook, verify_signed_webhook, SIGNATURE_HEADER};
use kassa_connectors::{HeaderMap, ProviderEvent};
use proptest::prelude::*;

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret";
const NOW_S: i64 = 1_760_694_060; // 2025-10-17T09:41:00Z

fn headers(signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = signature.parse() {
        headers.insert(SIGNATURE_HEADER, value);
    }
    headers
}

/// JSON values shaped like webhook bodies, with random field types and contents.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "[ -~]{0,40}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("captured"),
            Just("authorized"),
            Just("refunded"),
            Just("chargeback"),
            Just("paid"),
            Just("failed"),
            Just("EUR"),
            Just("JPY"),
            Just("50.00"),
            Just("1e3"),
            Just("-1.00"),
            Just("0.001"),
            Just("2025-10-17T09:41:00Z"),
            Just("9999-99-99T99:99:99Z")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 32, 8, |inner| {
        let keys = prop_oneof![
            Just("event_id"),
            Just("payment_id"),
            Just("payout_id"),
            Just("status"),
            Just("amount"),
            Just("currency"),
            Just("timestamp"),
            Just("refund_id"),
            Just("dispute_id"),
            Just("reason"),
            Just("provider_reference"),
            Just("extra")
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(keys.prop_map(str::to_string), inner, 0..10)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn unsigned_garbage_is_refused(body in proptest::collection::vec(any::<u8>(), 0..2048), signature in "[ -~]{0,80}") {
        let result = verify_signed_webhook(SECRET, &headers(&signature), &body, NOW_S);
        prop_assert!(result.is_err());
    }

    #[test]
    fn signed_garbage_parses_or_is_refused_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let signature = sign_webhook(SECRET, &body);
        let _ = verify_signed_webhook(SECRET, &headers(&signature), &body, NOW_S);
    }

    #[test]
    fn signed_json_of_any_shape_never_panics(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        let signature = sign_webhook(SECRET, &body);
        if let Ok(event) = verify_signed_webhook(SECRET, &headers(&signature), &body, NOW_S) {
            // Whatever is accepted is a well-formed event: positive amount, fresh timestamp.
            let (amount_minor, timestamp) = match &event {
                ProviderEvent::Payment(e) => (e.amount_minor, e.timestamp_unix_s),
                ProviderEvent::Payout(e) => (e.amount_minor, e.timestamp_unix_s),
                ProviderEvent::Verification(_) => {
                    return Err(TestCaseError::fail("the seed format yields no verification events"))
                }
            };
            prop_assert!(amount_minor > 0);
            prop_assert!((timestamp - NOW_S).abs() <= 300);
        }
    }

    #[test]
    fn any_single_byte_change_breaks_the_signature(index in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let body = br#"{"event_id":"evt_1","payment_id":"pay_1","status":"captured","amount":"50.00","currency":"EUR","timestamp":"2025-10-17T09:41:00Z"}"#.to_vec();
        let signature = sign_webhook(SECRET, &body);
        prop_assert!(verify_signed_webhook(SECRET, &headers(&signature), &body, NOW_S).is_ok());
        let mut tampered = body.clone();
        let at = index.index(tampered.len());
        tampered[at] ^= flip;
        prop_assert!(verify_signed_webhook(SECRET, &headers(&signature), &tampered, NOW_S).is_err());
    }
}
