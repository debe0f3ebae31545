//! Connector for Kassa's sandbox ID provider (`kassa sim idv`), shaped like the common ones
//! (Sumsub, Onfido): create an applicant, open a hosted verification page, get the result by
//! a signed webhook. See `docs/kyc.md` for the wire format.
//!
//! Its three parts: [`IdvSandboxTranslator`] (requests signed like the sandbox PSP's, pure),
//! the shared [`HttpTransport`], and [`IdvWebhookSource`] (`X-Idv-Signature: t=…,v1=…`).

mod inbound;
mod translator;

pub use self::inbound::{sign_idv_webhook, IdvWebhookSource, SIGNATURE_HEADER, TOLERANCE_S};
pub use self::translator::IdvSandboxTranslator;
use crate::account::{AccountError, ProviderAccount};
use crate::connector::Connector;
use crate::transport::{HttpTransport, HttpTransportConfig};

/// The account kind of the sandbox ID provider.
pub const KIND: &str = "idv_sandbox";
/// Largest answer body read; real answers are a few hundred bytes.
const ANSWER_LEN_MAX: usize = 64 * 1024;
/// Call timeout unless the account says otherwise.
const TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Attempts per call unless the account says otherwise: both calls are keyed, so safe.
const ATTEMPTS_MAX_DEFAULT: u64 = 2;

/// The sandbox ID provider's connector.
pub type IdvSandboxConnector = Connector<IdvSandboxTranslator, HttpTransport, IdvWebhookSource>;

/// Builds the connector of an `idv_sandbox` account: credentials `api_secret` and
/// `webhook_secret`; settings `base_url` (required), `timeout_ms`, `attempts_max`.
pub fn from_account(account: &ProviderAccount) -> Result<IdvSandboxConnector, AccountError> {
    let invalid = |name: &str, why: String| AccountError::InvalidSetting {
        account: account.id.clone(),
        name: name.to_string(),
        why,
    };
    let base_url = account.setting_str("base_url", "")?;
    if base_url.is_empty() {
        return Err(invalid("base_url", "is required".into()));
    }
    let attempts_max = account.setting_u64("attempts_max", ATTEMPTS_MAX_DEFAULT)?;
    let transport = HttpTransport::new(HttpTransportConfig {
        base_url: base_url.to_string(),
        timeout_ms: account.setting_u64("timeout_ms", TIMEOUT_MS_DEFAULT)?,
        attempts_max: u32::try_from(attempts_max).unwrap_or(u32::MAX),
        retry_backoff_ms: 100,
        response_len_max: ANSWER_LEN_MAX,
        other_origins: Vec::new(),
    })
    .map_err(|error| invalid("base_url", error.to_string()))?;
    let path_prefix = reqwest::Url::parse(base_url)
        .map(|url| url.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    Ok(Connector::compose(
        &account.id,
        IdvSandboxTranslator::new(account.credential("api_secret")?.clone(), &path_prefix),
        transport,
        IdvWebhookSource::new(account.credential("webhook_secret")?.clone()),
    ))
}
