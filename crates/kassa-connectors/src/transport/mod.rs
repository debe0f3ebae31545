//! The transport: carries a translator's messages to the provider and its answers back.
//!
//! It owns everything about the wire that is not the format: connections, the timeout of
//! every call, retries that cannot charge twice (it asks [`ReplaySafety`] before resending),
//! and — where it will live — the circuit breaker that stops calling a provider that keeps
//! failing. HTTP today ([`HttpTransport`]); to come: one persistent framed TCP connection
//! to an ISO 8583 acquirer (requests matched to answers by STAN, a reversal sent on a
//! timeout, advices handed to the account's inbound source), a WebSocket stream to a crypto
//! gateway, an SMPP session to a carrier's SMSC (bind, enquire_link, windowing).

mod http;

use async_trait::async_trait;

pub use self::http::{
    HttpRequest, HttpResponse, HttpTransport, HttpTransportConfig, TransportConfigError,
    ATTEMPTS_MAX_LIMIT,
};
use crate::provider::ProviderError;
use crate::translator::{CallContext, ReplaySafety};

/// Builds the message of one attempt; the transport calls it once per attempt, with a fresh
/// [`CallContext`], so each attempt carries its own timestamp and nonce.
pub type BuildMessage<'a, Request> =
    dyn Fn(&CallContext) -> Result<Request, ProviderError> + Send + Sync + 'a;

/// Carries one kind of wire message to a provider and brings its answer back.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The message it sends.
    type Request: Send;
    /// The answer it receives.
    type Response: Send;

    /// Sends the message `build` makes and answers the provider's answer, retrying only as
    /// `safety` allows. Every attempt ends within the transport's timeout:
    /// [`ProviderError::Timeout`] when the provider may have acted without answering,
    /// [`ProviderError::Unavailable`] when it could not be reached.
    async fn call(
        &self,
        safety: ReplaySafety,
        build: &BuildMessage<'_, Self::Request>,
    ) -> Result<Self::Response, ProviderError>;
}
