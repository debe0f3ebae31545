//! Connector for GAMSTOP, Great Britain's national online self-exclusion register, and for
//! its sandbox (`kassa sim gamstop`). The wire format (docs/registers.md): a form-encoded
//! `POST` of the person's names, birth date, e-mail, postcode and mobile with the operator's
//! `X-API-Key`, answered `200` with `X-Exclusion: Y|N|P` and `X-Unique-Id` headers.
//!
//! Its parts: [`GamstopTranslator`] (pure), the shared [`HttpTransport`], no inbound source.

mod translator;

pub use self::translator::{GamstopTranslator, EXCLUSION_HEADER, UNIQUE_ID_HEADER};
use crate::account::{AccountError, ProviderAccount};
use crate::connector::Connector;
use crate::register::register_transport;
use crate::transport::HttpTransport;

/// The account kind.
pub const KIND: &str = "gamstop";
/// Largest answer body read; the answer is in its headers.
const ANSWER_LEN_MAX: usize = 16 * 1024;
/// Call timeout unless the account says otherwise: a deposit waits for it.
const TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// GAMSTOP's connector: no inbound source, a register sends nothing unasked.
pub type GamstopConnector = Connector<GamstopTranslator, HttpTransport, ()>;

/// Builds the connector of a `gamstop` account: credential `api_key`; settings `base_url`
/// (the endpoint, e.g. `https://api.gamstop.io/v2`), `timeout_ms`, `attempts_max`.
pub fn from_account(account: &ProviderAccount) -> Result<GamstopConnector, AccountError> {
    let (transport, path) = register_transport(account, TIMEOUT_MS_DEFAULT, ANSWER_LEN_MAX)?;
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    Ok(Connector::compose(
        &account.id,
        GamstopTranslator::new(account.credential("api_key")?.clone(), &path),
        transport,
        (),
    ))
}
