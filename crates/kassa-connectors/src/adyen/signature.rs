//! Adyen's notification HMAC: base64(HMAC-SHA256(hex-decoded key, the item's signed string)).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::wire::NotificationItem;

/// The item's fields Adyen signs, in order, colon-separated; a missing field is empty:
/// `pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success`.
pub(super) fn signed_string(item: &NotificationItem) -> String {
    [
        item.psp_reference.as_str(),
        item.original_reference.as_deref().unwrap_or(""),
        item.merchant_account_code.as_str(),
        item.merchant_reference.as_str(),
        &item.amount.value.to_string(),
        item.amount.currency.as_str(),
        item.event_code.as_str(),
        item.success.as_str(),
    ]
    .join(":")
}

fn mac(key: &[u8], signed: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(signed.as_bytes());
    mac
}

/// The `hmacSignature` of `item` under the (already hex-decoded) `key` (tests play Adyen).
#[cfg(test)]
pub(super) fn sign(key: &[u8], item: &NotificationItem) -> String {
    BASE64.encode(mac(key, &signed_string(item)).finalize().into_bytes())
}

/// Whether `signature` (base64) is `item`'s under `key`, compared in constant time.
pub(super) fn verify(key: &[u8], item: &NotificationItem, signature: &str) -> bool {
    let Ok(claimed) = BASE64.decode(signature.trim()) else {
        return false;
    };
    mac(key, &signed_string(item))
        .verify_slice(&claimed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Adyen's own Python library (`test/UtilTest.py`,
    /// `test_notification_request_item_hmac`): its key, its item, its signature.
    #[test]
    fn adyens_documented_example_verifies() {
        let item: NotificationItem = serde_json::from_str(
            r#"{"pspReference":"7914073381342284","merchantReference":"TestPayment-1407325143704",
                "merchantAccountCode":"TestMerchant","amount":{"currency":"EUR","value":1130},
                "eventCode":"AUTHORISATION","success":"true",
                "eventDate":"2019-05-06T17:15:34.121+02:00","paymentMethod":"visa"}"#,
        )
        .unwrap();
        let key = hex::decode("44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056")
            .unwrap();
        assert_eq!(
            signed_string(&item),
            "7914073381342284::TestMerchant:TestPayment-1407325143704:1130:EUR:AUTHORISATION:true"
        );
        let expected = "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0=";
        assert_eq!(sign(&key, &item), expected);
        assert!(verify(&key, &item, expected));
        let mut refused = item.clone();
        refused.success = "false".into();
        assert!(!verify(&key, &refused, expected));
        assert!(!verify(&key[1..], &item, expected));
        assert!(!verify(&key, &item, "not base64!"));
    }
}
