//! National self-exclusion registers (GAMSTOP, Spelpaus; ADR 73) on the same three-part
//! interface as the payment and ID providers (ADR 0029): a pure [`RegisterTranslator`] per
//! register shape (identity → wire request, wire answer → [`RegisterAnswer`]), the shared
//! [`Transport`], and no inbound source (a register sends nothing unasked). The payment
//! providers' [`Connector`] composes them into the object-safe [`ExclusionRegister`] the
//! server calls; [`ExclusionRegisters`] holds one per configured account.

use std::sync::Arc;

use async_trait::async_trait;
use kassa_core::register::{PlayerIdentity, RegisterOutcome};
use reqwest::StatusCode;

use crate::account::{AccountError, ProviderAccount};
use crate::connector::Connector;
use crate::merchant_accounts::{AccountNamed, MerchantAccounts};
use crate::provider::ProviderError;
use crate::translator::{CallContext, ReplaySafety};
use crate::transport::{HttpTransport, Transport};

/// One question to a register: is this person excluded?
#[derive(Clone, Copy, Debug)]
pub struct RegisterQuestion<'a> {
    /// Kassa's id of this check, sent where the register takes a trace or request id (never
    /// personal data), so both sides' audit trails name the same check.
    pub check_id: &'a str,
    /// Who is asked about.
    pub identity: &'a PlayerIdentity,
}

/// A register's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterAnswer {
    /// What it said.
    pub outcome: RegisterOutcome,
    /// The register's id of its answer (GAMSTOP `X-Unique-Id`, Spelpaus `responseId`), for
    /// the audit trail.
    pub reference: String,
}

/// A register's wire format, pure: no I/O, no clock (the transport's [`CallContext`]).
pub trait RegisterTranslator: Send + Sync {
    /// The wire message this translator builds.
    type Request: Send;
    /// The wire answer this translator reads.
    type Response: Send;

    /// The fields of `identity` this register needs and does not have; empty: it can ask.
    fn missing(&self, identity: &PlayerIdentity) -> Vec<&'static str>;

    /// Builds the message of one attempt.
    fn encode(
        &self,
        question: &RegisterQuestion<'_>,
        context: &CallContext,
    ) -> Result<Self::Request, ProviderError>;

    /// Reads the register's answer strictly: anything but a well-formed answer is an error,
    /// never "not excluded".
    fn decode(
        &self,
        question: &RegisterQuestion<'_>,
        response: Self::Response,
    ) -> Result<RegisterAnswer, ProviderError>;
}

/// One register account, as the server calls it.
#[async_trait]
pub trait ExclusionRegister: Send + Sync {
    /// The account id.
    fn name(&self) -> &str;

    /// The account's kind (`gamstop`, `spelpaus`): the register named in refusals.
    fn register(&self) -> &'static str;

    /// The identity fields this register needs and `identity` lacks.
    fn missing(&self, identity: &PlayerIdentity) -> Vec<&'static str>;

    /// Asks whether the person is excluded.
    async fn check(&self, question: &RegisterQuestion<'_>)
        -> Result<RegisterAnswer, ProviderError>;
}

/// A register translator that also names its register.
pub trait NamedRegister: RegisterTranslator {
    /// The account kind, e.g. `gamstop`.
    const KIND: &'static str;
}

#[async_trait]
impl<T, X, I> ExclusionRegister for Connector<T, X, I>
where
    T: NamedRegister,
    X: Transport<Request = T::Request, Response = T::Response>,
    I: Send + Sync,
{
    fn name(&self) -> &str {
        self.account_name()
    }

    fn register(&self) -> &'static str {
        T::KIND
    }

    fn missing(&self, identity: &PlayerIdentity) -> Vec<&'static str> {
        self.translator().missing(identity)
    }

    async fn check(
        &self,
        question: &RegisterQuestion<'_>,
    ) -> Result<RegisterAnswer, ProviderError> {
        let translator = self.translator();
        let build = |context: &_| translator.encode(question, context);
        // A lookup changes nothing at the register: asking again is safe.
        let response = self.transport().call(ReplaySafety::Safe, &build).await?;
        translator.decode(question, response)
    }
}

/// Attempts per call unless the account says otherwise (a lookup is safe to repeat).
const REGISTER_ATTEMPTS_MAX_DEFAULT: u64 = 2;

/// The transport of a register account and the path of its `base_url`.
pub(crate) fn register_transport(
    account: &ProviderAccount,
    timeout_ms_default: u64,
    response_len_max: usize,
) -> Result<(HttpTransport, String), AccountError> {
    account.http_transport(
        timeout_ms_default,
        REGISTER_ATTEMPTS_MAX_DEFAULT,
        response_len_max,
    )
}

/// The status of an answer other than 200: the register could not answer, or refused.
pub(crate) fn refused_status(status: StatusCode) -> ProviderError {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return ProviderError::Unavailable(format!("the register answered {status}"));
    }
    // The body is not read into the error: a refusal may echo the personal data sent.
    ProviderError::Rejected {
        code: format!("http_{}", status.as_u16()),
        message: format!("the register refused the request ({status})"),
    }
}

/// Builds the connector of one register account.
pub type RegisterFactory = fn(&ProviderAccount) -> Result<Arc<dyn ExclusionRegister>, AccountError>;

/// The register kinds this build speaks: `gamstop` and `spelpaus`.
pub fn register_kind(kind: &str) -> Option<RegisterFactory> {
    match kind {
        crate::gamstop::KIND => Some(gamstop as RegisterFactory),
        crate::spelpaus::KIND => Some(spelpaus as RegisterFactory),
        _ => None,
    }
}

fn gamstop(account: &ProviderAccount) -> Result<Arc<dyn ExclusionRegister>, AccountError> {
    Ok(Arc::new(crate::gamstop::from_account(account)?))
}

fn spelpaus(account: &ProviderAccount) -> Result<Arc<dyn ExclusionRegister>, AccountError> {
    Ok(Arc::new(crate::spelpaus::from_account(account)?))
}

/// The configured register accounts, by id, each with its merchant.
pub type ExclusionRegisters = MerchantAccounts<dyn ExclusionRegister>;

impl AccountNamed for dyn ExclusionRegister {
    fn account_id(&self) -> &str {
        self.name()
    }
}

impl ExclusionRegisters {
    /// The merchant's account of register `kind`: its first by id.
    pub fn for_merchant(
        &self,
        merchant_id: &str,
        kind: &str,
    ) -> Option<&Arc<dyn ExclusionRegister>> {
        self.find(merchant_id, |register| register.register() == kind)
    }
}
