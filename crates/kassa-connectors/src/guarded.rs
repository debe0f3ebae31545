//! Every connector behind a circuit breaker (issue 16): a provider account that keeps timing
//! out, failing with 5xx or refusing connections is not called for a cool-down, so its
//! failures cost no player a timeout and the router sends traffic to the next account; then
//! one probe call at a time tests it. Wrapping the composed connector puts the breaker under
//! every kind of provider, whatever its transport.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use kassa_core::routing::{BreakerSettings, CircuitBreaker, CircuitState, Permit};

use crate::card::CardDetails;
use crate::event::InboundRefusal;
use crate::inbound::{InboundBatch, RawInbound};
use crate::provider::{
    Capabilities, CardCharge, PaymentProvider, PaymentRequest, PaymentStarted, PaymentStatusReport,
    PayoutAccepted, PayoutRequest, ProviderError, ProviderPaymentStatus, RefundAccepted,
    RefundRequest,
};

/// What a refused call answers: the provider was not asked.
pub const CIRCUIT_OPEN: &str = "circuit open: the provider is not called until it recovers";

/// A connector with its account's circuit breaker.
pub struct Guarded {
    inner: Arc<dyn PaymentProvider>,
    breaker: Mutex<CircuitBreaker>,
    epoch: Instant,
}

/// Gives a probe's place back when the call is dropped before it ends (a client that went
/// away); otherwise a half-open circuit would wait for a probe that never reports.
struct Pending<'a> {
    guarded: &'a Guarded,
    permit: Permit,
    reported: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.guarded.lock().abandoned(self.permit);
        }
    }
}

impl Guarded {
    /// `inner` behind a closed breaker with `settings`.
    pub fn new(inner: Arc<dyn PaymentProvider>, settings: BreakerSettings) -> Guarded {
        Guarded {
            inner,
            breaker: Mutex::new(CircuitBreaker::new(settings)),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The circuit's state now.
    pub fn circuit_state(&self) -> CircuitState {
        self.lock().state(self.now_ms())
    }

    async fn guard<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let permit = self.lock().permit(self.now_ms());
        if permit == Permit::Refuse {
            return Err(ProviderError::Unavailable(CIRCUIT_OPEN.into()));
        }
        let mut pending = Pending {
            guarded: self,
            permit,
            reported: false,
        };
        let result = call.await;
        pending.reported = true;
        let mut breaker = self.lock();
        match &result {
            Err(error) if error.is_transient() => breaker.failed(permit, self.now_ms()),
            // The provider refused the request itself: it is up, but this says little.
            Err(ProviderError::Rejected { .. } | ProviderError::Unsupported(_)) => {
                breaker.abandoned(permit)
            }
            _ => breaker.succeeded(permit),
        }
        result
    }
}

#[async_trait]
impl PaymentProvider for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    async fn start_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<PaymentStarted, ProviderError> {
        self.guard(self.inner.start_payment(request)).await
    }

    async fn get_status(
        &self,
        provider_reference: &str,
    ) -> Result<PaymentStatusReport, ProviderError> {
        self.guard(self.inner.get_status(provider_reference)).await
    }

    async fn cancel(
        &self,
        provider_reference: &str,
    ) -> Result<ProviderPaymentStatus, ProviderError> {
        self.guard(self.inner.cancel(provider_reference)).await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundAccepted, ProviderError> {
        self.guard(self.inner.refund(request)).await
    }

    async fn payout(&self, request: &PayoutRequest) -> Result<PayoutAccepted, ProviderError> {
        self.guard(self.inner.payout(request)).await
    }

    async fn charge_card(
        &self,
        request: &PaymentRequest,
        card: &CardDetails,
        authentication: Option<&crate::threeds::CardAuthentication>,
    ) -> Result<CardCharge, ProviderError> {
        self.guard(self.inner.charge_card(request, card, authentication))
            .await
    }

    async fn payout_to_card(
        &self,
        request: &PayoutRequest,
        card: &CardDetails,
    ) -> Result<PayoutAccepted, ProviderError> {
        self.guard(self.inner.payout_to_card(request, card)).await
    }

    fn receive(
        &self,
        message: RawInbound<'_>,
        now_unix_s: i64,
    ) -> Result<InboundBatch, InboundRefusal> {
        // Inbound messages are the provider calling us: no breaker.
        self.inner.receive(message, now_unix_s)
    }
}
