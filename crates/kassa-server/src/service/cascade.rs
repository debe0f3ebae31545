//! Cascading: a deposit is offered to the accounts of its route in turn, in the same
//! payment, until one takes it or refuses it for good (ADR 47).
//!
//! The next account is asked only when the one before could not have charged the player:
//! - it answered a *soft* decline (the decline classes of the routing document);
//! - it could not be reached, answered a server error, or its circuit is open (nothing was
//!   started there, or what was is a pending page the player never sees);
//! - it refused the request itself (4xx, unsupported), which it never acted on.
//!
//! Never after a hard decline (the issuer's answer stands), and never after a timeout or a
//! broken answer: the provider may have acted, so the payment fails as before and status sync
//! or the connector's own reversal settles it. Cascading happens while the deposit starts,
//! before the player is sent to any provider's page, so no player authenticates 3-D Secure
//! twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_connectors::{
    CardCharge, CardDetails, PaymentMethodToken, PaymentProvider, PaymentRequest, PaymentStart,
    PaymentStarted, ProviderError, ProviderRegistry, CIRCUIT_OPEN,
};
use kassa_core::routing::{DeclineClass, DeclineClasses, Outcome};
use serde::Serialize;

use crate::service::routing::RoutingService;

/// One account's part in a deposit's start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The provider account asked.
    pub provider: String,
    /// `started`, `declined`, `unavailable`, `rejected`, `timeout`, `protocol_error`.
    pub outcome: &'static str,
    /// The decline reason or the error's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the next account was asked after this one.
    pub cascaded: bool,
    /// How long the provider took.
    pub elapsed_ms: u64,
}

/// What the offers came to.
pub struct Offered {
    /// The account that answered last; the payment is its.
    pub provider: Arc<dyn PaymentProvider>,
    /// Its answer.
    pub asked: Result<PaymentStarted, ProviderError>,
    /// Every account asked, in order.
    pub attempts: Vec<Attempt>,
    /// Time spent waiting for providers, all attempts together.
    pub provider_elapsed: Duration,
}

/// Where the cascade goes after one answer.
struct Verdict {
    outcome: &'static str,
    reason: Option<String>,
    health: Outcome,
    may_cascade: bool,
}

/// Offers `request` to `candidates` in turn (see the module's rules): a decision's, or the
/// rest of them after a later soft decline. `token` (account, token) goes only to the
/// account that made it (ADR 64); the others start without it.
pub async fn offer(
    routing: &RoutingService,
    providers: &ProviderRegistry,
    candidates: &[String],
    declines: &DeclineClasses,
    request: &PaymentRequest,
    token: Option<(&str, &PaymentMethodToken)>,
) -> Offered {
    let turns = in_turn(
        routing,
        providers,
        candidates,
        declines,
        request,
        |provider| async move {
            match token {
                Some((account, token)) if provider.name() == account => {
                    let own = PaymentRequest {
                        payment_method_token: Some(token.clone()),
                        ..request.clone()
                    };
                    provider.start_payment(&own).await
                }
                _ => provider.start_payment(request).await,
            }
        },
        |started| started,
    )
    .await;
    let last = turns
        .last
        .expect("candidates name at least one registered account");
    Offered {
        provider: last.provider,
        asked: last.answer,
        attempts: turns.attempts,
        provider_elapsed: turns.provider_elapsed,
    }
}

/// What a card charge offered in turn came to.
pub struct OfferedCharge {
    /// The account that answered last, whose answer settles the payment; `None` when no
    /// account of `accounts` is registered.
    pub account: Option<String>,
    /// Its answer.
    pub charged: Result<CardCharge, ProviderError>,
    /// Every account asked, in order.
    pub attempts: Vec<Attempt>,
    /// The reversal advices of the answers before the last (soft declines), which the
    /// payment's transaction calls off with the last one's.
    pub earlier_advice_keys: Vec<String>,
}

/// Charges the card submitted on Kassa's card page at `accounts` in turn, by the same rules
/// as a start: the next account only after a soft decline or an account that could not have
/// acted. The card is Kassa's (the vault or the page), so a soft decline at one acquirer
/// costs the player nothing but a moment: no second form, no second 3-D Secure.
pub async fn offer_card(
    routing: &RoutingService,
    providers: &ProviderRegistry,
    accounts: &[String],
    declines: &DeclineClasses,
    request: &PaymentRequest,
    card: &CardDetails,
    authentication: Option<&kassa_connectors::threeds::CardAuthentication>,
) -> OfferedCharge {
    let turns = in_turn(
        routing,
        providers,
        accounts,
        declines,
        request,
        |provider| async move { provider.charge_card(request, card, authentication).await },
        |charge: &CardCharge| &charge.started,
    )
    .await;
    let earlier_advice_keys = turns
        .earlier
        .iter()
        .filter_map(|answer| answer.as_ref().ok()?.reversal_advice_key.clone())
        .collect();
    let (account, charged) = match turns.last {
        Some(last) => (Some(last.account), last.answer),
        None => (
            None,
            Err(ProviderError::Unavailable(
                "no card acquirer is registered".into(),
            )),
        ),
    };
    OfferedCharge {
        account,
        charged,
        attempts: turns.attempts,
        earlier_advice_keys,
    }
}

/// One account's answer.
struct Answered<T> {
    account: String,
    provider: Arc<dyn PaymentProvider>,
    answer: Result<T, ProviderError>,
}

/// The answers of accounts asked in turn.
struct Turns<T> {
    /// The last account asked.
    last: Option<Answered<T>>,
    /// The answers before it.
    earlier: Vec<Result<T, ProviderError>>,
    attempts: Vec<Attempt>,
    provider_elapsed: Duration,
}

/// Asks `accounts` in turn with `ask` until one answer may not cascade, recording each
/// account's health and attempt.
async fn in_turn<T, Ask, Asked>(
    routing: &RoutingService,
    providers: &ProviderRegistry,
    accounts: &[String],
    declines: &DeclineClasses,
    request: &PaymentRequest,
    ask: Ask,
    started_of: impl Fn(&T) -> &PaymentStarted,
) -> Turns<T>
where
    Ask: Fn(Arc<dyn PaymentProvider>) -> Asked,
    Asked: std::future::Future<Output = Result<T, ProviderError>>,
{
    let country = request.country.as_deref().unwrap_or("");
    let mut turns = Turns {
        last: None,
        earlier: Vec::new(),
        attempts: Vec::new(),
        provider_elapsed: Duration::ZERO,
    };
    for (index, account) in accounts.iter().enumerate() {
        let Some(provider) = providers.get(account) else {
            continue; // the decision only names registered accounts; a race with nothing
        };
        let asked_at = Instant::now();
        let answer = ask(provider.clone()).await;
        let elapsed = asked_at.elapsed();
        turns.provider_elapsed += elapsed;
        let verdict = judge(answer.as_ref().map(&started_of), declines);
        // A call its circuit refused never reached the provider: no measure of its health.
        if !matches!(&answer, Err(ProviderError::Unavailable(cause)) if cause == CIRCUIT_OPEN) {
            routing.record(account, &request.method, country, verdict.health, elapsed);
        }
        let cascaded = verdict.may_cascade && index + 1 < accounts.len();
        turns.attempts.push(Attempt {
            provider: account.clone(),
            outcome: verdict.outcome,
            reason: verdict.reason,
            cascaded,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        });
        if cascaded {
            tracing::info!(payment_id = %request.payment_id, from = %account, outcome = verdict.outcome, "cascading to the next provider account");
        }
        let answered = Answered {
            account: account.clone(),
            provider,
            answer,
        };
        if let Some(before) = turns.last.replace(answered) {
            turns.earlier.push(before.answer);
        }
        if !cascaded {
            break;
        }
    }
    turns
}

fn judge(asked: Result<&PaymentStarted, &ProviderError>, declines: &DeclineClasses) -> Verdict {
    let verdict = |outcome, reason: Option<String>, health, may_cascade| Verdict {
        outcome,
        reason,
        health,
        may_cascade,
    };
    match asked {
        Ok(PaymentStarted {
            start: PaymentStart::Declined { reason },
            ..
        }) => {
            let soft = declines.classify(reason.as_deref()) == DeclineClass::Soft;
            verdict("declined", reason.clone(), Outcome::Declined, soft)
        }
        Ok(_) => verdict("started", None, Outcome::Approved, false),
        Err(ProviderError::Unavailable(cause)) => {
            verdict("unavailable", Some(cause.clone()), Outcome::Error, true)
        }
        Err(ProviderError::Rejected { code, .. }) => {
            verdict("rejected", Some(code.clone()), Outcome::Declined, true)
        }
        Err(ProviderError::Unsupported(what)) => verdict(
            "rejected",
            Some(format!("unsupported: {what}")),
            Outcome::Declined,
            true,
        ),
        Err(ProviderError::Timeout) => verdict("timeout", None, Outcome::Timeout, false),
        Err(ProviderError::Protocol(_)) => verdict("protocol_error", None, Outcome::Error, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declined(reason: &str) -> Result<PaymentStarted, ProviderError> {
        Ok(PaymentStarted {
            provider_reference: "ref".into(),
            start: PaymentStart::Declined {
                reason: Some(reason.into()),
            },
        })
    }

    #[test]
    fn only_answers_that_cannot_have_charged_cascade() {
        let classes = DeclineClasses::default();
        let cascades = |asked: Result<PaymentStarted, ProviderError>| {
            judge(asked.as_ref(), &classes).may_cascade
        };
        assert!(cascades(declined("issuer_unavailable")));
        assert!(!cascades(declined("insufficient_funds")));
        assert!(!cascades(declined("never_heard_of_it")));
        assert!(cascades(Err(ProviderError::Unavailable("refused".into()))));
        assert!(!cascades(Err(ProviderError::Timeout)));
        assert!(!cascades(Err(ProviderError::Protocol("garbage".into()))));
        let redirect = Ok(PaymentStarted {
            provider_reference: "ref".into(),
            start: PaymentStart::Redirect {
                url: "https://psp.example/pay".into(),
            },
        });
        assert!(!cascades(redirect));
    }
}
