//! The Adyen connector's account handling and notification source, bytes in, events out.

use reqwest::header::HeaderMap;
use secrecy::SecretString;
use serde_json::{json, Value};

use super::*;
use crate::event::{InboundRefusal, PaymentEventStatus, PayoutEventStatus, ProviderEvent};
use crate::inbound::{Acknowledgement, InboundSource, RawInbound};
use crate::provider::PaymentProvider;

const KEY_HEX: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";

fn account(settings: Value, hmac_key: &str) -> ProviderAccount {
    let mut credentials = crate::account::Credentials::new();
    credentials.insert("api_key", SecretString::from("AQE-test-key"));
    credentials.insert("hmac_key", SecretString::from(hmac_key));
    ProviderAccount {
        id: "adyen-eu".into(),
        merchant_id: "mch_demo".into(),
        kind: KIND.into(),
        display_name: "Adyen EU".into(),
        credentials,
        settings: settings.as_object().unwrap().clone(),
    }
}

fn source() -> AdyenNotificationSource {
    AdyenNotificationSource::new(SecretString::from(KEY_HEX), "KassaECOM").unwrap()
}

/// A notification item signed with `key_hex` (the test plays Adyen).
fn item(fields: Value, key_hex: &str) -> Value {
    let mut item = json!({
        "merchantAccountCode": "KassaECOM", "amount": {"value": 5000, "currency": "EUR"},
        "success": "true", "eventDate": "2026-12-06T12:00:00+01:00", "reason": ""
    });
    for (name, value) in fields.as_object().unwrap() {
        item[name] = value.clone();
    }
    let parsed: wire::NotificationItem = serde_json::from_value(item.clone()).unwrap();
    let key = hex::decode(key_hex).unwrap();
    item["additionalData"] = json!({"hmacSignature": signature::sign(&key, &parsed)});
    item
}

fn batch(items: &[Value]) -> Vec<u8> {
    let wrapped: Vec<Value> = items
        .iter()
        .map(|item| json!({"NotificationRequestItem": item}))
        .collect();
    serde_json::to_vec(&json!({"live": "false", "notificationItems": wrapped})).unwrap()
}

fn receive(body: &[u8]) -> Result<crate::InboundBatch, InboundRefusal> {
    source().verify(
        RawInbound {
            metadata: &HeaderMap::new(),
            body,
        },
        1_800_000_000,
    )
}

fn payment_event(result: &Result<ProviderEvent, InboundRefusal>) -> &crate::PaymentEvent {
    match result {
        Ok(ProviderEvent::Payment(event)) => event,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_account_becomes_a_connector_with_its_settings_and_refuses_bad_ones() {
    let settings = json!({"base_url": "http://127.0.0.1:9", "merchant_account": "KassaECOM",
                          "timeout_ms": 1234});
    let connector = from_account(&account(settings.clone(), KEY_HEX)).unwrap();
    assert_eq!(connector.name(), "adyen-eu");
    assert_eq!(connector.transport().config().timeout_ms, 1234);
    let shown = format!("{connector:?} {:?}", account(settings.clone(), KEY_HEX));
    assert!(
        !shown.contains("AQE-test-key") && !shown.contains(KEY_HEX),
        "{shown}"
    );
    for missing in ["base_url", "merchant_account"] {
        let mut partial = settings.clone();
        partial.as_object_mut().unwrap().remove(missing);
        let error = from_account(&account(partial, KEY_HEX)).unwrap_err();
        assert!(
            matches!(error, AccountError::InvalidSetting { ref name, .. } if name == missing),
            "{error:?}"
        );
    }
    assert!(matches!(
        from_account(&account(settings.clone(), "not-hex")),
        Err(AccountError::InvalidSetting { ref name, .. }) if name == "hmac_key"
    ));
    assert!(matches!(
        from_account(&account(settings, "")),
        Err(AccountError::MissingCredential { .. })
    ));
}

#[test]
fn a_batch_answers_accepted_and_refuses_only_its_forged_item() {
    let good = item(
        json!({"pspReference": "PSP0000000000001", "merchantReference": "pay_1",
               "eventCode": "AUTHORISATION"}),
        KEY_HEX,
    );
    let mut forged = item(
        json!({"pspReference": "PSP0000000000002", "merchantReference": "pay_2",
               "eventCode": "AUTHORISATION"}),
        KEY_HEX,
    );
    forged["amount"]["value"] = json!(500_000); // changed after signing
    let other_key = item(
        json!({"pspReference": "PSP0000000000003", "merchantReference": "pay_3",
               "eventCode": "AUTHORISATION"}),
        &"00".repeat(32),
    );
    let unknown = item(
        json!({"pspReference": "PSP0000000000004", "merchantReference": "pay_4",
               "eventCode": "REPORT_AVAILABLE"}),
        KEY_HEX,
    );
    let received = receive(&batch(&[good, forged, other_key, unknown])).unwrap();
    assert_eq!(
        received.acknowledgement,
        Acknowledgement::Fixed {
            content_type: "text/plain",
            body: b"[accepted]".to_vec()
        }
    );
    // The unknown event code is acknowledged and dropped; the forged ones are refused alone.
    assert_eq!(received.items.len(), 3);
    let event = payment_event(&received.items[0]);
    assert_eq!(event.event_id, "PSP0000000000001:AUTHORISATION:true");
    assert_eq!(event.payment_id, "pay_1");
    assert_eq!(event.status, PaymentEventStatus::Captured);
    assert_eq!(event.amount_minor, 5000);
    assert_eq!(event.timestamp_unix_s, 1_796_554_800);
    assert_eq!(
        event.provider_reference.as_deref(),
        Some("PSP0000000000001")
    );
    assert_eq!(received.items[1], Err(InboundRefusal::InvalidSignature));
    assert_eq!(received.items[2], Err(InboundRefusal::InvalidSignature));
    assert_eq!(
        receive(b"[accepted]"),
        Err(InboundRefusal::InvalidSignature)
    );
}

#[test]
fn each_event_code_means_what_kassa_needs() {
    let one = |fields: Value| {
        let received = receive(&batch(&[item(fields, KEY_HEX)])).unwrap();
        assert_eq!(received.items.len(), 1);
        received.items.into_iter().next().unwrap()
    };
    let refused = one(json!({"pspReference": "P1", "merchantReference": "pay_1",
        "eventCode": "AUTHORISATION", "success": "false", "reason": "Not enough balance"}));
    let refused = payment_event(&refused);
    assert_eq!(refused.status, PaymentEventStatus::Declined);
    assert_eq!(refused.reason.as_deref(), Some("insufficient_funds"));
    assert_eq!(refused.event_id, "P1:AUTHORISATION:false");
    let refund = one(json!({"pspReference": "R1", "originalReference": "P1",
        "merchantReference": "rf_1", "eventCode": "REFUND", "amount": {"value": 2000, "currency": "EUR"}}));
    let refund = payment_event(&refund);
    assert_eq!(
        (
            refund.status,
            refund.payment_id.as_str(),
            refund.refund_id.as_deref()
        ),
        (PaymentEventStatus::Refunded, "", Some("rf_1"))
    );
    assert_eq!(refund.provider_reference.as_deref(), Some("P1"));
    let chargeback = one(json!({"pspReference": "P1", "merchantReference": "pay_1",
        "eventCode": "CHARGEBACK", "reason": "Fraudulent transaction"}));
    let chargeback = payment_event(&chargeback);
    assert_eq!(chargeback.status, PaymentEventStatus::Chargeback);
    assert_eq!(chargeback.dispute_id.as_deref(), Some("P1"));
    let reversed = one(json!({"pspReference": "P1", "merchantReference": "pay_1",
        "eventCode": "CHARGEBACK_REVERSED"}));
    let reversed = payment_event(&reversed);
    assert_eq!(reversed.status, PaymentEventStatus::DisputeWon);
    assert_eq!(reversed.dispute_id.as_deref(), Some("P1"));
    let cancelled = one(json!({"pspReference": "C1", "originalReference": "P1",
        "merchantReference": "pay_1", "eventCode": "CANCELLATION"}));
    assert_eq!(
        payment_event(&cancelled).status,
        PaymentEventStatus::Cancelled
    );
    let payout = one(json!({"pspReference": "O1", "merchantReference": "po_1",
        "eventCode": "PAYOUT_THIRDPARTY", "success": "false", "reason": "Account closed"}));
    let Ok(ProviderEvent::Payout(payout)) = payout else {
        panic!("{payout:?}")
    };
    assert_eq!(payout.status, PayoutEventStatus::Failed);
    assert_eq!(payout.payout_id, "po_1");
    assert_eq!(payout.reason.as_deref(), Some("account_closed"));
    let elsewhere = one(json!({"pspReference": "P9", "merchantReference": "pay_9",
        "eventCode": "AUTHORISATION", "merchantAccountCode": "OtherECOM"}));
    assert!(matches!(elsewhere, Err(InboundRefusal::Malformed(_))));
}

#[test]
fn an_authorisation_names_its_card_from_additional_data() {
    let mut authorised = item(
        json!({"pspReference": "P2", "merchantReference": "pay_2", "eventCode": "AUTHORISATION"}),
        KEY_HEX,
    );
    // additionalData is outside the HMAC: added after signing, as Adyen sends it.
    let data = authorised["additionalData"].as_object_mut().unwrap();
    data.insert("cardIssuingCountry".into(), json!("NL"));
    data.insert("issuerCountry".into(), json!("BE"));
    data.insert("paymentMethod".into(), json!("mc"));
    data.insert("cardSummary".into(), json!("0010"));
    data.insert("cardBin".into(), json!("222241"));
    let received = receive(&batch(&[authorised])).unwrap();
    let event = payment_event(&received.items[0]);
    assert_eq!(event.status, PaymentEventStatus::Captured);
    let card = event.card.as_ref().expect("the card is reported");
    assert_eq!(
        (
            card.country.as_deref(),
            card.brand.as_deref(),
            card.last4.as_deref()
        ),
        (Some("NL"), Some("mc"), Some("0010")),
        "cardIssuingCountry wins over issuerCountry"
    );

    let mut issuer_only = item(
        json!({"pspReference": "P3", "merchantReference": "pay_3", "eventCode": "AUTHORISATION"}),
        KEY_HEX,
    );
    let data = issuer_only["additionalData"].as_object_mut().unwrap();
    data.insert("issuerCountry".into(), json!("mt"));
    let received = receive(&batch(&[issuer_only])).unwrap();
    let card = payment_event(&received.items[0]).card.clone().unwrap();
    assert_eq!(card.country.as_deref(), Some("MT"));

    let bare = item(
        json!({"pspReference": "P4", "merchantReference": "pay_4", "eventCode": "AUTHORISATION"}),
        KEY_HEX,
    );
    let received = receive(&batch(&[bare])).unwrap();
    assert_eq!(payment_event(&received.items[0]).card, None);
}

#[test]
fn refusal_texts_map_to_decline_classes_reasons() {
    let classes = kassa_core::routing::DeclineClasses::default();
    use kassa_core::routing::DeclineClass::{Hard, Soft};
    for (text, class) in [
        ("Not enough balance", Hard),
        ("Stolen Card", Hard),
        ("Lost Card", Hard),
        ("Acquirer Error", Soft),
        ("Issuer Unavailable", Soft),
        ("Refused", Hard),
    ] {
        assert_eq!(
            classes.classify(Some(&refusal_reason(text))),
            class,
            "{text}"
        );
    }
    assert_eq!(refusal_reason("  "), "refused");
    assert_eq!(refusal_reason(&"x".repeat(500)).len(), 64);
}
