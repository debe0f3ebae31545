//! A provider account's connector, composed of its three parts (ADR 0029).

use std::fmt;

use async_trait::async_trait;

use crate::event::InboundRefusal;
use crate::inbound::{InboundBatch, InboundSource, RawInbound};
use crate::provider::{
    Capabilities, PaymentProvider, PaymentRequest, PaymentStarted, PaymentStatusReport,
    PayoutAccepted, PayoutRequest, ProviderError, ProviderPaymentStatus, RefundAccepted,
    RefundRequest,
};
use crate::translator::{Operation, Outcome, Translator};
use crate::transport::Transport;

/// A translator, a transport that carries its messages, and an inbound source, under one
/// account id. It is the [`PaymentProvider`] the server routes to; a new provider brings its
/// own three parts (or reuses a transport) and changes nothing here.
pub struct Connector<T, X, I> {
    name: String,
    translator: T,
    transport: X,
    inbound: I,
}

impl<T, X, I> fmt::Debug for Connector<T, X, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The parts hold credentials; the account id is all a log needs.
        f.debug_struct("Connector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Parts of any kind: a payment translator ([`Translator`], this module's
/// [`PaymentProvider`]) or an identity one (`crate::identity`'s `IdentityProvider`).
impl<T, X, I> Connector<T, X, I> {
    /// Composes a connector for the account `name`.
    pub fn compose(name: impl Into<String>, translator: T, transport: X, inbound: I) -> Self {
        Connector {
            name: name.into(),
            translator,
            transport,
            inbound,
        }
    }

    /// The translator, for tests and tools.
    pub fn translator(&self) -> &T {
        &self.translator
    }

    /// The transport, for tests and tools.
    pub fn transport(&self) -> &X {
        &self.transport
    }

    /// The inbound source, for the server's stream readers.
    pub fn inbound(&self) -> &I {
        &self.inbound
    }

    /// The account id.
    pub(crate) fn account_name(&self) -> &str {
        &self.name
    }
}

impl<T, X, I> Connector<T, X, I>
where
    T: Translator,
    X: Transport<Request = T::Request, Response = T::Response>,
    I: InboundSource,
{
    /// Encodes, sends (as the translator's replay safety allows) and decodes one operation.
    async fn perform(&self, operation: Operation<'_>) -> Result<Outcome, ProviderError> {
        let safety = self.translator.replay_safety(&operation);
        let build = |context: &_| self.translator.encode(&operation, context);
        let response = self.transport.call(safety, &build).await?;
        self.translator.decode(&operation, response)
    }
}

fn mismatch(operation: &'static str, outcome: &Outcome) -> ProviderError {
    ProviderError::Protocol(format!(
        "the translator answered {outcome:?} to {operation}"
    ))
}

#[async_trait]
impl<T, X, I> PaymentProvider for Connector<T, X, I>
where
    T: Translator,
    X: Transport<Request = T::Request, Response = T::Response>,
    I: InboundSource,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> &Capabilities {
        self.translator.capabilities()
    }

    async fn start_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<PaymentStarted, ProviderError> {
        match self.perform(Operation::StartPayment(request)).await? {
            Outcome::Started(started) => Ok(started),
            other => Err(mismatch("start_payment", &other)),
        }
    }

    async fn get_status(
        &self,
        provider_reference: &str,
    ) -> Result<PaymentStatusReport, ProviderError> {
        match self
            .perform(Operation::GetStatus(provider_reference))
            .await?
        {
            Outcome::Status(report) => Ok(report),
            other => Err(mismatch("get_status", &other)),
        }
    }

    async fn cancel(
        &self,
        provider_reference: &str,
    ) -> Result<ProviderPaymentStatus, ProviderError> {
        match self.perform(Operation::Cancel(provider_reference)).await? {
            Outcome::Cancelled(status) => Ok(status),
            other => Err(mismatch("cancel", &other)),
        }
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundAccepted, ProviderError> {
        if !self.capabilities().refunds {
            return Err(ProviderError::Unsupported("refunds"));
        }
        match self.perform(Operation::Refund(request)).await? {
            Outcome::RefundAccepted(accepted) => Ok(accepted),
            other => Err(mismatch("refund", &other)),
        }
    }

    async fn payout(&self, request: &PayoutRequest) -> Result<PayoutAccepted, ProviderError> {
        if !self.capabilities().payouts {
            return Err(ProviderError::Unsupported("payouts"));
        }
        match self.perform(Operation::Payout(request)).await? {
            Outcome::PayoutAccepted(accepted) => Ok(accepted),
            other => Err(mismatch("payout", &other)),
        }
    }

    fn receive(
        &self,
        message: RawInbound<'_>,
        now_unix_s: i64,
    ) -> Result<InboundBatch, InboundRefusal> {
        self.inbound.verify(message, now_unix_s)
    }
}
