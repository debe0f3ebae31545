//! ID providers for KYC on the same three-part interface as the payment providers (ADR 0029):
//! a pure [`IdentityTranslator`] (domain operation → wire message, answer → outcome), a
//! [`Transport`] that carries it, and an [`InboundSource`] yielding verified
//! [`ProviderEvent::Verification`](crate::ProviderEvent)s into the one provider-event
//! pipeline. The payment providers' [`Connector`] composes them into the object-safe [`IdentityProvider`]
//! the server's KYC service calls; [`IdentityProviders`] holds one per configured account.

use std::sync::Arc;

use async_trait::async_trait;
use kassa_core::kyc::KycLevel;

use crate::account::{AccountError, ProviderAccount};
use crate::connector::Connector;
use crate::event::InboundRefusal;
use crate::inbound::{InboundBatch, InboundSource, RawInbound};
use crate::merchant_accounts::{AccountNamed, MerchantAccounts};
use crate::provider::ProviderError;
use crate::translator::{CallContext, ReplaySafety};
use crate::transport::Transport;

/// One thing Kassa asks of an ID provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityOperation<'a> {
    /// Create the applicant for one check, keyed by Kassa's check id.
    CreateApplicant {
        /// Kassa's check id (the provider's `external_user_id`); a repeat answers the same
        /// applicant.
        external_id: &'a str,
        /// How deep the verification goes.
        level: KycLevel,
    },
    /// Open the hosted verification page of an applicant.
    StartVerification {
        /// The provider's applicant id.
        applicant_id: &'a str,
    },
}

/// What an operation came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityOutcome {
    /// The applicant's id at the provider.
    ApplicantCreated {
        /// The provider's applicant id.
        applicant_id: String,
    },
    /// Where the player verifies.
    VerificationStarted {
        /// The hosted page's URL.
        url: String,
    },
}

/// An ID provider's wire format, pure: no I/O, no clock (the transport's [`CallContext`]).
pub trait IdentityTranslator: Send + Sync {
    /// The wire message this translator builds.
    type Request: Send;
    /// The wire answer this translator reads.
    type Response: Send;

    /// Whether `operation`'s message may be sent again.
    fn replay_safety(&self, operation: &IdentityOperation<'_>) -> ReplaySafety;

    /// Builds the message of one attempt of `operation`.
    fn encode(
        &self,
        operation: &IdentityOperation<'_>,
        context: &CallContext,
    ) -> Result<Self::Request, ProviderError>;

    /// Reads the provider's answer to `operation`.
    fn decode(
        &self,
        operation: &IdentityOperation<'_>,
        response: Self::Response,
    ) -> Result<IdentityOutcome, ProviderError>;
}

/// One ID provider account, as the KYC service calls it.
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// The account id, as checks are stored and webhooks addressed under.
    fn name(&self) -> &str;

    /// Creates (or finds again) the applicant of check `external_id`; answers its id.
    async fn create_applicant(
        &self,
        external_id: &str,
        level: KycLevel,
    ) -> Result<String, ProviderError>;

    /// Opens the applicant's hosted verification page; answers its URL.
    async fn start_verification(&self, applicant_id: &str) -> Result<String, ProviderError>;

    /// Verifies one inbound message (signature, freshness, shape); fails closed.
    fn receive(
        &self,
        message: RawInbound<'_>,
        now_unix_s: i64,
    ) -> Result<InboundBatch, InboundRefusal>;
}

/// Encodes, sends (as the translator's replay safety allows) and decodes one identity
/// operation through `connector`'s parts.
async fn perform<T, X, I>(
    connector: &Connector<T, X, I>,
    operation: IdentityOperation<'_>,
) -> Result<IdentityOutcome, ProviderError>
where
    T: IdentityTranslator,
    X: Transport<Request = T::Request, Response = T::Response>,
{
    let translator = connector.translator();
    let safety = translator.replay_safety(&operation);
    let build = |context: &_| translator.encode(&operation, context);
    let response = connector.transport().call(safety, &build).await?;
    translator.decode(&operation, response)
}

#[async_trait]
impl<T, X, I> IdentityProvider for Connector<T, X, I>
where
    T: IdentityTranslator,
    X: Transport<Request = T::Request, Response = T::Response>,
    I: InboundSource,
{
    fn name(&self) -> &str {
        self.account_name()
    }

    async fn create_applicant(
        &self,
        external_id: &str,
        level: KycLevel,
    ) -> Result<String, ProviderError> {
        let operation = IdentityOperation::CreateApplicant { external_id, level };
        match perform(self, operation).await? {
            IdentityOutcome::ApplicantCreated { applicant_id } => Ok(applicant_id),
            other => Err(mismatch("create_applicant", &other)),
        }
    }

    async fn start_verification(&self, applicant_id: &str) -> Result<String, ProviderError> {
        let operation = IdentityOperation::StartVerification { applicant_id };
        match perform(self, operation).await? {
            IdentityOutcome::VerificationStarted { url } => Ok(url),
            other => Err(mismatch("start_verification", &other)),
        }
    }

    fn receive(
        &self,
        message: RawInbound<'_>,
        now_unix_s: i64,
    ) -> Result<InboundBatch, InboundRefusal> {
        self.inbound().verify(message, now_unix_s)
    }
}

fn mismatch(operation: &'static str, outcome: &IdentityOutcome) -> ProviderError {
    ProviderError::Protocol(format!(
        "the translator answered {outcome:?} to {operation}"
    ))
}

/// Builds the connector of one ID provider account.
pub type IdentityFactory = fn(&ProviderAccount) -> Result<Arc<dyn IdentityProvider>, AccountError>;

/// The ID provider kinds this build speaks; today `idv_sandbox`.
pub fn identity_kind(kind: &str) -> Option<IdentityFactory> {
    match kind {
        crate::idv_sandbox::KIND => Some(idv_sandbox as IdentityFactory),
        _ => None,
    }
}

fn idv_sandbox(account: &ProviderAccount) -> Result<Arc<dyn IdentityProvider>, AccountError> {
    Ok(Arc::new(crate::idv_sandbox::from_account(account)?))
}

/// The configured ID provider accounts, by id, each with its merchant.
pub type IdentityProviders = MerchantAccounts<dyn IdentityProvider>;

impl AccountNamed for dyn IdentityProvider {
    fn account_id(&self) -> &str {
        self.name()
    }
}

impl IdentityProviders {
    /// The merchant's ID provider: its first account by id.
    pub fn for_merchant(&self, merchant_id: &str) -> Option<&Arc<dyn IdentityProvider>> {
        self.find(merchant_id, |_| true)
    }
}
