//! Kassa's connectors: the [`PaymentProvider`] trait and one module per payment provider.
//!
//! A connector translates between Kassa's domain (amounts in `i64` minor units, typed
//! currencies, typed events) and one provider's wire format, and carries the bytes over the
//! network. It never decides: routing, state transitions and money movement happen in the
//! server, from the typed results and [`ProviderEvent`]s a connector returns.
//!
//! Adding a provider is one module implementing [`PaymentProvider`] plus one
//! [`ProviderRegistry::register`] line where the server builds its registry.

pub mod event;
pub mod provider;
pub mod registry;
pub mod sandbox;
pub mod signing;
pub mod webhook;

pub use event::{
    PaymentEvent, PaymentEventStatus, PayoutEvent, PayoutEventStatus, ProviderEvent, WebhookError,
};
pub use provider::{
    Capabilities, PaymentProvider, PaymentRequest, PaymentSession, PaymentStatusReport,
    PayoutAccepted, PayoutRequest, ProviderError, ProviderPaymentStatus, ProviderPayoutStatus,
    RefundAccepted, RefundRequest,
};
pub use registry::{ProviderRegistry, RegistryError};
pub use sandbox::{SandboxConfig, SandboxConfigError, SandboxConnector};
pub use signing::sign_request;
pub use webhook::{sign_webhook, verify_signed_webhook};

/// The header map `verify_webhook` reads; the same type as `axum::http::HeaderMap`.
pub use reqwest::header::HeaderMap;
