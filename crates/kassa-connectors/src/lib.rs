//! Kassa's connectors: the one provider interface and one module per payment provider.
//!
//! A connector has three parts (ADR 0029): a pure [`Translator`] (domain operation → wire
//! message, wire answer → domain outcome, no I/O), a [`Transport`] that carries the messages
//! (timeouts, retries that cannot charge twice, the circuit breaker), and an
//! [`InboundSource`] that turns the provider's own messages (webhooks, ISO 8583 advices,
//! WebSocket events, SMPP delivery receipts) into verified [`ProviderEvent`]s. A
//! [`Connector`] composes the three into the [`PaymentProvider`] the server routes to. It
//! never decides: routing, state transitions and money movement happen in the server.
//!
//! Adding a provider is one module with its translator and inbound source (reusing a
//! transport) plus one [`ProviderKinds::add`] line; accounts of that kind are then
//! configured per merchant ([`ProviderAccount`]).

pub mod account;
pub mod acquirer;
pub mod adyen;
pub mod card;
pub mod connector;
pub mod event;
pub mod gamstop;
pub mod guarded;
pub mod identity;
pub mod idv_sandbox;
pub mod inbound;
pub mod merchant_accounts;
pub mod provider;
pub mod register;
pub mod registry;
pub mod sandbox;
pub mod signing;
pub mod spelpaus;
pub mod stripe;
pub mod threeds;
pub mod translator;
pub mod transport;
pub mod webhook;

pub use account::{AccountError, Credentials, ProviderAccount};
pub use card::{CardDetails, CardError};
pub use connector::Connector;
pub use event::{
    DocumentCheck, InboundRefusal, PaymentEvent, PaymentEventStatus, PayoutEvent,
    PayoutEventStatus, ProviderEvent, ReportedCard, VerificationEvent, WebhookError,
};
pub use guarded::{Guarded, CIRCUIT_OPEN};
pub use identity::{IdentityProvider, IdentityProviders};
pub use inbound::{Acknowledgement, InboundBatch, InboundChannel, InboundSource, RawInbound};
pub use provider::{
    Capabilities, CardCharge, PaymentMethodToken, PaymentProvider, PaymentRequest, PaymentSession,
    PaymentStart, PaymentStarted, PaymentStatusReport, PayoutAccepted, PayoutRequest,
    ProviderError, ProviderPaymentStatus, ProviderPayoutStatus, RefundAccepted, RefundRequest,
};
pub use register::{ExclusionRegister, ExclusionRegisters, RegisterAnswer, RegisterQuestion};
pub use registry::{
    AccountSummary, ConnectorFactory, ProviderKinds, ProviderRegistry, RegistryError,
};
pub use sandbox::{
    RetryPolicy, SandboxConfig, SandboxConfigError, SandboxConnector, SandboxTranslator,
    SandboxWebhookSource,
};
pub use secrecy::{ExposeSecret, SecretString};
pub use signing::sign_request;
pub use translator::{CallContext, Operation, Outcome, ReplaySafety, Translator};
pub use transport::{HttpRequest, HttpResponse, HttpTransport, HttpTransportConfig, Transport};
pub use webhook::{sign_webhook, verify_signed_webhook};

/// The header map `verify_webhook` reads; the same type as `axum::http::HeaderMap`.
pub use reqwest::header::HeaderMap;
