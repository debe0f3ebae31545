//! What the server lends its ISO 8583 acquirer connectors (ADR 49): trace numbers kept in
//! the database (unique per terminal per day across restarts and nodes), and reversal advices
//! kept in the job queue (sent again until the host answers, across restarts). Also the
//! directory of acquirer connectors the advice jobs send through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kassa_connectors::acquirer::advice::{AdviceAnswer, AdviceQueue, ReversalAdvice};
use kassa_connectors::acquirer::numbers::TraceNumbers;
use kassa_connectors::acquirer::{self, AcquirerConnector, AcquirerServices};
use kassa_connectors::{PaymentProvider, ProviderError, ProviderKinds};
use kassa_store::jobs::NewJob;
use kassa_store::{now_ms, Store};

/// The job kind of one reversal advice (dedupe key: account, terminal and original STAN).
pub const REVERSAL_ADVICE: &str = "acquirer.reversal_advice";

/// The job kind of one completion advice (`0220`, ADR 69; dedupe key: account, terminal and
/// the authorization's STAN).
pub const COMPLETION_ADVICE: &str = "acquirer.completion_advice";

/// Attempts of a reversal or completion advice job: it must be repeated until the host
/// answers, so the limit is only there to make a host that never answers a dead job an
/// operator sees.
const ADVICE_ATTEMPTS_MAX: i64 = 100_000;

/// The completion advice job of an approved authorization, to enqueue in the transaction
/// that records the approval: due at once, repeated until the host answers.
pub fn completion_job(original: &ReversalAdvice) -> Result<(String, String), serde_json::Error> {
    Ok((serde_json::to_string(original)?, original.key()))
}

/// The [`NewJob`] of a completion advice whose payload and key [`completion_job`] made.
pub fn completion_new_job<'a>(payload: &'a str, key: &'a str) -> NewJob<'a> {
    NewJob {
        kind: COMPLETION_ADVICE,
        payload,
        dedupe_key: Some(key),
        run_at_ms: now_ms(),
        attempts_max: ADVICE_ATTEMPTS_MAX,
        repeat_every_ms: None,
    }
}

/// Trace numbers over the store.
struct StoredTraceNumbers(Store);

#[async_trait]
impl TraceNumbers for StoredTraceNumbers {
    async fn next_sequence(&self, terminal_id: &str, day: &str) -> Result<i64, ProviderError> {
        self.0
            .next_trace_number(terminal_id, day)
            .await
            .map_err(|error| {
                tracing::error!(%error, "cannot take the next trace number");
                ProviderError::Unavailable("the trace number store failed".into())
            })
    }
}

/// Reversal advices as jobs.
struct JobAdvices(Store);

#[async_trait]
impl AdviceQueue for JobAdvices {
    async fn enqueue(&self, advice: ReversalAdvice, due_in: Duration) -> Result<(), ProviderError> {
        let payload = serde_json::to_string(&advice)
            .map_err(|e| ProviderError::Protocol(format!("advice payload: {e}")))?;
        let dedupe_key = advice.key();
        let due_in_ms = i64::try_from(due_in.as_millis()).unwrap_or(i64::MAX);
        let job = NewJob {
            kind: REVERSAL_ADVICE,
            payload: &payload,
            dedupe_key: Some(&dedupe_key),
            run_at_ms: now_ms().saturating_add(due_in_ms),
            attempts_max: ADVICE_ATTEMPTS_MAX,
            repeat_every_ms: None,
        };
        self.0.enqueue_job(&job).await.map(drop).map_err(|error| {
            // Nothing is sent without its reversal queued first.
            tracing::error!(%error, advice = %dedupe_key, "cannot queue a reversal advice");
            ProviderError::Unavailable("the job queue failed".into())
        })
    }

    async fn cancel(&self, advice: &ReversalAdvice) -> Result<(), ProviderError> {
        let cancelled = self
            .0
            .cancel_queued_job(REVERSAL_ADVICE, &advice.key())
            .await
            .map_err(|error| {
                tracing::error!(%error, advice = %advice.key(), "cannot cancel a reversal advice");
                ProviderError::Unavailable("the job queue failed".into())
            })?;
        // Not queued any more: it is being sent (an answer later than the safety net), so
        // what the host did will be reversed.
        match cancelled {
            true => Ok(()),
            false => Err(ProviderError::Unavailable(
                "the reversal advice was already sent".into(),
            )),
        }
    }
}

/// The acquirer connectors of this node, by account id.
#[derive(Clone, Default)]
pub struct Acquirers(Arc<Mutex<HashMap<String, Arc<AcquirerConnector>>>>);

impl Acquirers {
    /// The connector of account `account_id`, if it is an acquirer here.
    pub fn get(&self, account_id: &str) -> Option<Arc<AcquirerConnector>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(account_id).cloned()
    }

    fn insert(&self, account_id: &str, connector: Arc<AcquirerConnector>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(account_id.to_string(), connector);
    }

    /// Signs every session off (on shutdown).
    pub async fn shutdown(&self) {
        let all: Vec<_> = {
            let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.values().cloned().collect()
        };
        for connector in all {
            connector.shutdown().await;
        }
    }
}

/// Adds the `iso8583` kind to `kinds`, its connectors built with the store's services and
/// recorded in `acquirers`.
pub fn add_kind(kinds: &mut ProviderKinds, store: &Store, acquirers: &Acquirers) {
    let services = AcquirerServices {
        numbers: Arc::new(StoredTraceNumbers(store.clone())),
        advices: Arc::new(JobAdvices(store.clone())),
    };
    let acquirers = acquirers.clone();
    kinds.add(acquirer::KIND, move |account| {
        let connector = Arc::new(acquirer::from_account(account, services.clone())?);
        acquirers.insert(&account.id, connector.clone());
        Ok(connector as Arc<dyn PaymentProvider>)
    });
}

/// Why a reversal advice job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum AdviceError {
    /// The payload is not an advice.
    #[error("invalid advice payload: {0}")]
    Payload(String),
    /// The account is not an acquirer on this node (removed from the config?).
    #[error("no acquirer account {0:?} on this node")]
    UnknownAccount(String),
    /// No answer yet: the job runs again, as a repeat (`0421`).
    #[error("reversal advice unanswered: {0}")]
    Unanswered(ProviderError),
}

/// An advice job's original and the connector of its account.
fn advice_and_connector(
    acquirers: &Acquirers,
    payload: &str,
) -> Result<(ReversalAdvice, Arc<AcquirerConnector>), AdviceError> {
    let advice: ReversalAdvice =
        serde_json::from_str(payload).map_err(|e| AdviceError::Payload(e.to_string()))?;
    let connector = acquirers
        .get(&advice.account_id)
        .ok_or_else(|| AdviceError::UnknownAccount(advice.account_id.clone()))?;
    Ok((advice, connector))
}

/// Runs one attempt of a completion advice job: `0220` on the first attempt, `0221` after.
/// A refusal (`0230` with another code than `00`) ends the job too, logged for an operator:
/// the player was credited on the approved authorization (ADR 69).
pub async fn send_completion(
    acquirers: &Acquirers,
    payload: &str,
    attempt: i64,
) -> Result<(), AdviceError> {
    let (original, connector) = advice_and_connector(acquirers, payload)?;
    let answer = connector
        .send_completion_advice(&original, attempt > 1)
        .await
        .map_err(AdviceError::Unanswered)?;
    match answer {
        Ok(()) => {
            tracing::info!(account = %original.account_id, reference = %original.reference_id, "completion advice answered")
        }
        Err(code) => tracing::error!(
            account = %original.account_id, reference = %original.reference_id, code,
            "the host refused a completion advice; the deposit was credited: reconcile by hand"
        ),
    }
    Ok(())
}

/// Runs one attempt of a reversal advice job: `0420` on the first attempt, `0421` after.
pub async fn send_advice(
    acquirers: &Acquirers,
    payload: &str,
    attempt: i64,
) -> Result<AdviceAnswer, AdviceError> {
    let (advice, connector) = advice_and_connector(acquirers, payload)?;
    let answer = connector
        .send_reversal_advice(&advice, attempt > 1)
        .await
        .map_err(AdviceError::Unanswered)?;
    match &answer {
        AdviceAnswer::Other(code) => tracing::warn!(
            account = %advice.account_id, reference = %advice.reference_id, code,
            "the host answered a reversal advice with an unexpected code"
        ),
        _ => tracing::info!(
            account = %advice.account_id, reference = %advice.reference_id, ?answer,
            "reversal advice answered"
        ),
    }
    Ok(answer)
}
