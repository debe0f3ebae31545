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
use crate::transport::HttpTransport;

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
    let (transport, path_prefix) =
        account.http_transport(TIMEOUT_MS_DEFAULT, ATTEMPTS_MAX_DEFAULT, ANSWER_LEN_MAX)?;
    Ok(Connector::compose(
        &account.id,
        IdvSandboxTranslator::new(account.credential("api_secret")?.clone(), &path_prefix),
        transport,
        IdvWebhookSource::new(account.credential("webhook_secret")?.clone()),
    ))
}
