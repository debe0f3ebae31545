//! Connector for Stripe's PaymentIntents API (kind `stripe`), and for anything speaking it
//! (Kassa's Stripe simulator, `kassa sim stripe`). See `docs/providers/stripe.md`.
//!
//! Its three parts: [`StripeTranslator`] (form-encoded requests, bearer secret key,
//! `Idempotency-Key` on every POST; pure), the shared [`HttpTransport`], and
//! [`StripeWebhookSource`] (`Stripe-Signature` webhooks).

mod inbound;
mod translator;
mod wire;

use secrecy::{ExposeSecret, SecretString};

pub use self::inbound::{
    signature_header, verify_signature, StripeWebhookSource, SIGNATURE_HEADER, TOLERANCE_S,
};
pub use self::translator::{idempotency_key, StripeTranslator, API_VERSION};
use crate::account::{AccountError, ProviderAccount};
use crate::connector::Connector;
use crate::transport::{HttpTransport, HttpTransportConfig};

/// The account kind of Stripe.
pub const KIND: &str = "stripe";
/// Stripe's API, unless the account names another `base_url` (the simulator).
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";
/// The payment method intents are confirmed with unless the account names another
/// (ADR 59): Stripe's test Visa card.
pub const DEFAULT_PAYMENT_METHOD: &str = "pm_card_visa";
/// Largest answer body read; a payment intent is a few kilobytes.
const ANSWER_LEN_MAX: usize = 256 * 1024;
/// Attempts per call unless the account says otherwise: the `Idempotency-Key` makes a retry
/// after a timeout answer what the first attempt did.
const ATTEMPTS_MAX_DEFAULT: u64 = 2;
/// Wait before a retry unless the account says otherwise.
const RETRY_BACKOFF_MS_DEFAULT: u64 = 100;
/// Call timeout unless the account says otherwise; Stripe answers a confirmation in seconds.
const TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// A Stripe account's connector.
pub type StripeConnector = Connector<StripeTranslator, HttpTransport, StripeWebhookSource>;

/// Builds the connector of a `stripe` account: credentials `secret_key` (`sk_…`) and
/// `webhook_secret` (`whsec_…`); settings `base_url` (default Stripe's API),
/// `payment_method`, `timeout_ms`, `attempts_max`, `retry_backoff_ms`.
pub fn from_account(account: &ProviderAccount) -> Result<StripeConnector, AccountError> {
    let invalid = |name: &str, why: String| AccountError::InvalidSetting {
        account: account.id.clone(),
        name: name.to_string(),
        why,
    };
    let secret_key: SecretString = account.credential("secret_key")?.clone();
    if !secret_key.expose_secret().starts_with("sk_")
        && !secret_key.expose_secret().starts_with("rk_")
    {
        // Never quote it: a publishable key pasted here is still a key.
        return Err(invalid(
            "secret_key",
            "must be a secret key (sk_… or rk_…)".into(),
        ));
    }
    let webhook_secret = account.credential("webhook_secret")?.clone();
    let payment_method = account.setting_str("payment_method", DEFAULT_PAYMENT_METHOD)?;
    if payment_method.is_empty() {
        return Err(invalid("payment_method", "must not be empty".into()));
    }
    let attempts_max = account.setting_u64("attempts_max", ATTEMPTS_MAX_DEFAULT)?;
    let transport = HttpTransport::new(HttpTransportConfig {
        base_url: account
            .setting_str("base_url", DEFAULT_BASE_URL)?
            .to_string(),
        timeout_ms: account.setting_u64("timeout_ms", TIMEOUT_MS_DEFAULT)?,
        attempts_max: u32::try_from(attempts_max).unwrap_or(u32::MAX),
        retry_backoff_ms: account.setting_u64("retry_backoff_ms", RETRY_BACKOFF_MS_DEFAULT)?,
        response_len_max: ANSWER_LEN_MAX,
        other_origins: Vec::new(),
    })
    .map_err(|error| invalid("transport", error.to_string()))?;
    Ok(Connector::compose(
        &account.id,
        StripeTranslator::new(secret_key, payment_method),
        transport,
        StripeWebhookSource::new(webhook_secret),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Credentials;
    use crate::provider::PaymentProvider;

    fn account(secret_key: &str, settings: serde_json::Value) -> ProviderAccount {
        let mut credentials = Credentials::new();
        credentials.insert("secret_key", SecretString::from(secret_key));
        credentials.insert("webhook_secret", SecretString::from("whsec_abc"));
        ProviderAccount {
            id: "stripe-eu".into(),
            merchant_id: "mch_demo".into(),
            kind: KIND.into(),
            display_name: "Stripe EU".into(),
            credentials,
            settings: settings.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn an_account_becomes_a_connector_with_its_settings_and_no_secret_in_debug() {
        let connector = from_account(&account(
            "sk_test_secretvalue",
            serde_json::json!({"base_url": "http://127.0.0.1:9", "timeout_ms": 1234, "attempts_max": 3}),
        ))
        .unwrap();
        assert_eq!(connector.name(), "stripe-eu");
        assert_eq!(connector.transport().config().timeout_ms, 1234);
        assert_eq!(connector.transport().config().attempts_max, 3);
        assert!(!format!("{connector:?}").contains("secretvalue"));
        let default = from_account(&account("sk_test_x", serde_json::json!({}))).unwrap();
        assert_eq!(default.transport().config().base_url, DEFAULT_BASE_URL);
    }

    #[test]
    fn unusable_accounts_are_refused() {
        let publishable = from_account(&account("pk_test_x", serde_json::json!({})));
        assert!(
            matches!(publishable, Err(AccountError::InvalidSetting { ref name, ref why, .. }) if name == "secret_key" && !why.contains("pk_test_x"))
        );
        let no_key = from_account(&account("", serde_json::json!({})));
        assert!(matches!(
            no_key,
            Err(AccountError::MissingCredential { .. })
        ));
        let bad_url = from_account(&account(
            "sk_test_x",
            serde_json::json!({"base_url": "nope"}),
        ));
        assert!(bad_url.is_err());
        let attempts = from_account(&account(
            "sk_test_x",
            serde_json::json!({"attempts_max": 99}),
        ));
        assert!(attempts.is_err());
    }
}
