//! Notifications the simulator sends: items signed one by one with the hex HMAC key, posted
//! as a batch, sent again until the answer is exactly `[accepted]`.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::Shared;

/// The only answer that stops the retries.
const ACCEPTED: &str = "[accepted]";
/// Longest wait between two delivery attempts.
const RETRY_BACKOFF_MS_MAX: u64 = 10_000;

/// The string Adyen signs: `pspReference:originalReference:merchantAccountCode:
/// merchantReference:value:currency:eventCode:success`, a missing field empty.
pub fn signed_string(item: &Value) -> String {
    let text = |name: &str| item[name].as_str().unwrap_or("").to_string();
    let value = item["amount"]["value"]
        .as_i64()
        .map(|value| value.to_string())
        .unwrap_or_default();
    [
        text("pspReference"),
        text("originalReference"),
        text("merchantAccountCode"),
        text("merchantReference"),
        value,
        item["amount"]["currency"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        text("eventCode"),
        text("success"),
    ]
    .join(":")
}

/// `additionalData.hmacSignature` of `item` under the hex key; `None` if the key is not hex.
pub fn hmac_signature(key_hex: &str, item: &Value) -> Option<String> {
    let key = hex::decode(key_hex).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts any key length");
    mac.update(signed_string(item).as_bytes());
    Some(BASE64.encode(mac.finalize().into_bytes()))
}

/// One unsigned item, as Adyen builds it.
pub struct Item<'a> {
    pub event_code: &'static str,
    pub success: bool,
    pub psp_reference: &'a str,
    pub original_reference: Option<&'a str>,
    pub merchant_account: &'a str,
    pub merchant_reference: &'a str,
    pub value: i64,
    pub currency: &'a str,
    pub reason: &'a str,
    /// The card, for an authorisation: reported in `additionalData`, outside the HMAC.
    pub card: Option<&'a super::cards::CardFacts>,
}

impl<'a> Item<'a> {
    /// An item about the payment itself (its authorisation, a dispute): the payment's own
    /// pspReference and merchantReference, its whole amount.
    pub(super) fn of_payment(
        payment: &'a super::Payment,
        event_code: &'static str,
        success: bool,
        reason: &'a str,
    ) -> Item<'a> {
        Item {
            event_code,
            success,
            psp_reference: &payment.psp_reference,
            original_reference: None,
            merchant_account: &payment.merchant_account,
            merchant_reference: &payment.reference,
            value: payment.value,
            currency: &payment.currency,
            reason,
            card: (event_code == "AUTHORISATION")
                .then_some(payment.card.as_ref())
                .flatten(),
        }
    }

    /// The item's JSON, signed with `key_hex`.
    pub fn signed(&self, key_hex: &str) -> Value {
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let mut item = json!({
            "pspReference": self.psp_reference,
            "merchantAccountCode": self.merchant_account,
            "merchantReference": self.merchant_reference,
            "amount": {"value": self.value, "currency": self.currency},
            "eventCode": self.event_code,
            "eventDate": now.format(&Rfc3339).expect("a UTC time formats"),
            "success": if self.success { "true" } else { "false" },
            "reason": self.reason,
            "paymentMethod": "visa",
        });
        if let Some(original) = self.original_reference {
            item["originalReference"] = json!(original);
        }
        let signature = hmac_signature(key_hex, &item).expect("the key was checked at start");
        item["additionalData"] = json!({ "hmacSignature": signature });
        if let Some(card) = self.card {
            let data = &mut item["additionalData"];
            data["cardIssuingCountry"] = json!(card.country);
            data["issuerCountry"] = json!(card.country);
            data["paymentMethod"] = json!(card.brand);
            data["cardSummary"] = json!(card.last4);
        }
        item
    }
}

/// The batch body for `items`.
pub fn batch(items: Vec<Value>) -> Value {
    let wrapped: Vec<Value> = items
        .into_iter()
        .map(|item| json!({ "NotificationRequestItem": item }))
        .collect();
    json!({ "live": "false", "notificationItems": wrapped })
}

/// Signs `items` and posts them as one batch after the configured delay, in the background.
pub(super) fn send(shared: &Shared, items: &[Item<'_>]) {
    let Some(url) = shared.config.webhook_url.clone() else {
        tracing::debug!("no webhook_url: notifications not sent");
        return;
    };
    let signed = items
        .iter()
        .map(|item| item.signed(&shared.config.hmac_key_hex))
        .collect();
    let body = serde_json::to_vec(&batch(signed)).expect("a batch serializes");
    let task_shared = shared.clone();
    shared.spawn(async move {
        tokio::time::sleep(Duration::from_millis(
            task_shared.config.notification_delay_ms,
        ))
        .await;
        deliver(&task_shared, &url, body).await;
    });
}

/// Posts until Kassa answers exactly `[accepted]` (any status, any other body: again).
async fn deliver(shared: &Shared, url: &str, body: Vec<u8>) {
    let config = &shared.config;
    let mut backoff_ms = config.notification_retry_backoff_ms.max(1);
    for attempt in 1..=config.notification_attempts_max.max(1) {
        let answer = shared
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let accepted = match answer {
            Ok(response) => response.text().await.is_ok_and(|text| text == ACCEPTED),
            Err(error) => {
                tracing::warn!(attempt, %error, "notification not delivered");
                false
            }
        };
        if accepted {
            tracing::info!(attempt, "notification accepted");
            return;
        }
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MS_MAX);
    }
    tracing::error!("notification given up");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_adyens_documented_example() {
        // Adyen's Python library's own example (test/UtilTest.py).
        let item = json!({"pspReference": "7914073381342284",
            "merchantReference": "TestPayment-1407325143704", "merchantAccountCode": "TestMerchant",
            "amount": {"currency": "EUR", "value": 1130}, "eventCode": "AUTHORISATION", "success": "true"});
        let key = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
        assert_eq!(
            hmac_signature(key, &item).as_deref(),
            Some("coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0=")
        );
        assert_eq!(hmac_signature("zz", &item), None);
    }
}
