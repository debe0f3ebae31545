//! Connector for Spelpaus, Sweden's national self-exclusion register run by
//! Spelinspektionen, and for its sandbox (`kassa sim spelpaus`). The wire format
//! (docs/registers.md): a JSON `POST /api/blocking-info/{actor_id}` of a request id and the
//! person's personal identity number, answered `{"isBlocked", "requestId", "responseId"}`.
//!
//! Its parts: [`SpelpausTranslator`] (pure), the shared [`HttpTransport`], no inbound source.

mod translator;

pub use self::translator::SpelpausTranslator;
use crate::account::{AccountError, ProviderAccount};
use crate::connector::Connector;
use crate::register::register_transport;
use crate::transport::HttpTransport;

/// The account kind.
pub const KIND: &str = "spelpaus";
/// Largest answer body read; real answers are about 150 bytes.
const ANSWER_LEN_MAX: usize = 16 * 1024;
/// Call timeout unless the account says otherwise: a deposit waits for it.
const TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Spelpaus's connector: no inbound source, a register sends nothing unasked.
pub type SpelpausConnector = Connector<SpelpausTranslator, HttpTransport, ()>;

/// Builds the connector of a `spelpaus` account: credential `api_key`; settings `base_url`
/// (required), `actor_id` (the operator's number at Spelinspektionen, digits), `timeout_ms`,
/// `attempts_max`.
pub fn from_account(account: &ProviderAccount) -> Result<SpelpausConnector, AccountError> {
    let (transport, path) = register_transport(account, TIMEOUT_MS_DEFAULT, ANSWER_LEN_MAX)?;
    let actor_id = account.setting_str("actor_id", "")?;
    if actor_id.is_empty() || actor_id.len() > 16 || !actor_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AccountError::InvalidSetting {
            account: account.id.clone(),
            name: "actor_id".into(),
            why: "must be 1 to 16 digits".into(),
        });
    }
    Ok(Connector::compose(
        &account.id,
        SpelpausTranslator::new(account.credential("api_key")?.clone(), &path, actor_id),
        transport,
        (),
    ))
}
