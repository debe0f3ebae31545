//! Connector for an Adyen merchant account (Checkout API v71, Payout API v68, HMAC-signed
//! notification batches). See `docs/providers/adyen.md` for the account's settings and
//! ADR 60 for how outcomes arrive without a payment lookup.
//!
//! Its three parts: [`AdyenTranslator`] (JSON with `X-API-Key` and `Idempotency-Key`,
//! pure), the shared [`HttpTransport`], and [`AdyenNotificationSource`].

mod inbound;
mod signature;
mod translator;
mod wire;

pub use self::inbound::{AdyenNotificationSource, ACCEPTED};
pub use self::translator::{AdyenTranslator, CHECKOUT_PATH, PAYOUT_PATH, SEPA_DIRECT_DEBIT};
use crate::account::{AccountError, ProviderAccount};
use crate::connector::Connector;
use crate::transport::{HttpTransport, HttpTransportConfig};

/// The account kind of an Adyen merchant account.
pub const KIND: &str = "adyen";
/// Largest answer body read from Adyen; real answers are a few kilobytes.
const ANSWER_LEN_MAX: usize = 256 * 1024;
/// Attempts per call unless the account says otherwise; every write carries an
/// idempotency key, so a retry is answered, never acted on twice.
const ATTEMPTS_MAX_DEFAULT: u64 = 2;
/// Wait before a retry unless the account says otherwise.
const RETRY_BACKOFF_MS_DEFAULT: u64 = 100;
/// Call timeout unless the account says otherwise.
const TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// An Adyen account's connector: its translator over HTTP, its notifications as inbound source.
pub type AdyenConnector = Connector<AdyenTranslator, HttpTransport, AdyenNotificationSource>;

/// Adyen's `refusalReason` (its documented texts) as the reason Kassa's decline classes know
/// (`kassa_core::routing::declines`); a text without an equivalent becomes its snake_case
/// spelling (`Refused` → `refused`), which the routing document may classify (unknown
/// reasons are hard).
pub fn refusal_reason(text: &str) -> String {
    let known = match text {
        "Not enough balance" => "insufficient_funds",
        "Stolen Card" => "stolen_card",
        "Lost Card" => "lost_card",
        "Acquirer Error" => "acquirer_unavailable",
        "Issuer Unavailable" => "issuer_unavailable",
        "Expired Card" => "expired_card",
        "CVC Declined" | "Invalid Card Number" | "Invalid Pin" => "invalid_card",
        "Blocked Card" | "Restricted Card" | "Transaction Not Permitted" => "restricted_card",
        "FRAUD" | "FRAUD-CANCELLED" => "fraud",
        "Issuer Suspected Fraud" => "suspected_fraud",
        "Withdrawal amount exceeded" | "Withdrawal count exceeded" => "limit_exceeded",
        "3D Not Authenticated" => "authentication_failed",
        "Declined Non Generic" => "do_not_honour",
        _ => return snake_case(text),
    };
    known.to_string()
}

fn snake_case(text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    match words.join("_") {
        empty if empty.is_empty() => "refused".into(),
        // A reason is a label, not a place for the sender's text at length.
        joined => joined.chars().take(64).collect(),
    }
}

/// Builds the connector of an Adyen account: credentials `api_key` and `hmac_key` (hex, as
/// the Customer Area shows it); settings `base_url` (the Checkout API, with the live
/// `/checkout` path where it has one) and `merchant_account` (required), `payout_base_url`
/// (the Payout API's host; default: `base_url`'s), `timeout_ms`, `attempts_max`,
/// `retry_backoff_ms`.
pub fn from_account(account: &ProviderAccount) -> Result<AdyenConnector, AccountError> {
    let invalid = |name: &str, why: String| AccountError::InvalidSetting {
        account: account.id.clone(),
        name: name.to_string(),
        why,
    };
    let required = |name: &str| match account.setting_str(name, "")? {
        "" => Err(invalid(name, "is required".into())),
        value => Ok(value),
    };
    let base_url = required("base_url")?;
    let checkout_prefix = reqwest::Url::parse(base_url)
        .map(|url| url.path().trim_end_matches('/').to_string())
        .map_err(|_| invalid("base_url", "must be an http(s) URL".into()))?;
    let payout_base = account.setting_str("payout_base_url", "")?;
    let merchant_account = required("merchant_account")?;
    let api_key = account.credential("api_key")?.clone();
    let hmac_key = account.credential("hmac_key")?.clone();
    let attempts_max = account.setting_u64("attempts_max", ATTEMPTS_MAX_DEFAULT)?;
    let transport = HttpTransport::new(HttpTransportConfig {
        base_url: base_url.to_string(),
        timeout_ms: account.setting_u64("timeout_ms", TIMEOUT_MS_DEFAULT)?,
        attempts_max: u32::try_from(attempts_max).unwrap_or(u32::MAX),
        retry_backoff_ms: account.setting_u64("retry_backoff_ms", RETRY_BACKOFF_MS_DEFAULT)?,
        response_len_max: ANSWER_LEN_MAX,
        other_origins: match payout_base {
            "" => Vec::new(),
            other => vec![other.to_string()],
        },
    })
    .map_err(|error| invalid("connector", error.to_string()))?;
    let inbound = AdyenNotificationSource::new(hmac_key, merchant_account).ok_or_else(|| {
        AccountError::InvalidSetting {
            account: account.id.clone(),
            name: "hmac_key".into(),
            why: "must be hex".into(),
        }
    })?;
    Ok(Connector::compose(
        &account.id,
        AdyenTranslator::new(api_key, merchant_account).with_hosts(&checkout_prefix, payout_base),
        transport,
        inbound,
    ))
}

#[cfg(test)]
mod tests;
