//! The job kinds this node runs and their handlers. A handler is safe to run twice (a lease
//! can run out while it still works, and a node can die after the work but before recording
//! it): each one rereads the database and acts only on what is still to do.

use std::sync::Arc;

use kassa_store::jobs::{JobRecord, NewJob};
use kassa_store::{now_ms, StoreError};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::service::payments::PaymentError;
use crate::service::payouts::PayoutError;
use crate::views::errors::PublicError;
use crate::workers::event_stream::{self, EVENTS_STREAM};
use crate::workers::outbox::{self, OutboxPublisher, PublishError};
use crate::workers::webhook_delivery;

pub use crate::service::acquirer::{COMPLETION_ADVICE, REVERSAL_ADVICE};
pub use crate::service::aml::AML_MONITOR;
pub use crate::service::payments::PAYMENT_CASCADE;
pub use crate::service::registers::REGISTERS_RECHECK;
pub use crate::service::webhook_endpoints::WEBHOOK_DELIVER;
use crate::AppState;

/// Recurring: asks providers about payments left pending and settles or expires them.
pub const STATUS_SYNC: &str = "payments.status_sync";
/// Recurring: queues a [`PAYOUT_SEND`] job for every payout whose next attempt is due.
pub const PAYOUT_SCHEDULER: &str = "payouts.schedule";
/// One payout handed to its provider (dedupe key: the payout id).
pub const PAYOUT_SEND: &str = "payout.send";
/// Recurring: the outbox's consumer.
pub const OUTBOX_PUBLISH: &str = "outbox.publish";
/// Recurring: ends self-exclusions and time-outs whose end has come (ADR 57).
pub const EXCLUSIONS_END: &str = "players.exclusions_end";
/// How often exclusions are ended: a player waits at most this long past the end.
const EXCLUSIONS_END_INTERVAL_MS: i64 = 60_000;

/// Recurring: deletes delivery log rows older than `webhooks.delivery_log_retention_days` and
/// outbound delivery attempts older than `webhooks.outbound.attempts_retention_days`.
pub const WEBHOOK_LOG_PURGE: &str = "webhooks.delivery_log_purge";

/// Every kind this node has a handler for; it claims no other (a newer node's kinds wait
/// for a newer node).
pub const KINDS: &[&str] = &[
    STATUS_SYNC,
    PAYOUT_SCHEDULER,
    PAYOUT_SEND,
    OUTBOX_PUBLISH,
    EXCLUSIONS_END,
    WEBHOOK_LOG_PURGE,
    WEBHOOK_DELIVER,
    REVERSAL_ADVICE,
    COMPLETION_ADVICE,
    PAYMENT_CASCADE,
    AML_MONITOR,
    REGISTERS_RECHECK,
];

/// The kinds this node claims: [`KINDS`], and the event stream's where it is on.
pub fn claimed_kinds(state: &AppState) -> Vec<&'static str> {
    let mut kinds = KINDS.to_vec();
    if state.event_stream.is_some() {
        kinds.push(EVENTS_STREAM);
    }
    kinds
}

/// Batches one purge run deletes at most; the rest waits for the next run.
const WEBHOOK_LOG_PURGE_BATCHES_MAX: u32 = 10;

/// Payments asked about per status-sync run.
const STATUS_SYNC_BATCH: u32 = 50;
/// Payouts queued per scheduler run; the rest wait for the next run.
const PAYOUT_SCHEDULER_BATCH: u32 = 200;

/// Why a run failed; its text becomes the job's `last_error`.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A service refused or failed (its stable code and message).
    #[error("{code}: {message}")]
    Service { code: &'static str, message: String },
    /// The database failed.
    #[error("database error")]
    Store(#[from] StoreError),
    /// The outbox publisher failed.
    #[error("outbox")]
    Publish(#[from] PublishError),
    /// The payload is not what the kind expects (a bug or a hand-made job).
    #[error("invalid payload: {0}")]
    Payload(String),
    /// The attempt failed and chose when the next one runs (a delivery's retry schedule).
    #[error("{error}")]
    RetryAt { retry_at_ms: i64, error: String },
    /// The job could not start yet (its endpoint is busy); it runs at `run_at_ms`, the
    /// attempt not counted.
    #[error("busy; deferred")]
    Busy { run_at_ms: i64 },
    /// No handler for this kind (only reachable through a hand-made claim).
    #[error("no handler for job kind {0:?}")]
    UnknownKind(String),
}

impl JobError {
    /// A service's refusal or failure as the API would answer it (a 5xx's cause chain is
    /// logged by [`ApiError::public`], once).
    fn from_service(error: &(impl PublicError + 'static)) -> JobError {
        let error = ApiError::public(error);
        JobError::Service {
            code: error.code(),
            message: error.body().message,
        }
    }
}

impl From<PaymentError> for JobError {
    fn from(error: PaymentError) -> JobError {
        JobError::from_service(&error)
    }
}

impl From<PayoutError> for JobError {
    fn from(error: PayoutError) -> JobError {
        JobError::from_service(&error)
    }
}

impl From<crate::service::acquirer::AdviceError> for JobError {
    fn from(error: crate::service::acquirer::AdviceError) -> JobError {
        use crate::service::acquirer::AdviceError;
        match error {
            AdviceError::Payload(why) => JobError::Payload(why),
            // Run again (a repeat, `0421`) after the usual backoff.
            other => JobError::Service {
                code: "reversal_advice_unanswered",
                message: other.to_string(),
            },
        }
    }
}

/// Input of a [`PAYOUT_SEND`] job.
#[derive(Debug, Serialize, Deserialize)]
pub struct PayoutSendPayload {
    pub payout_id: String,
}

/// The recurring jobs and their periods, from the configuration.
pub fn recurring(state: &AppState) -> Vec<(&'static str, i64)> {
    let config = &state.config;
    let mut recurring = vec![
        (
            STATUS_SYNC,
            config.payments.status_sync_interval_ms.max(1) as i64,
        ),
        (
            PAYOUT_SCHEDULER,
            config.payouts.retry_interval_ms.max(1) as i64,
        ),
        (OUTBOX_PUBLISH, config.jobs.outbox_interval_ms),
        (EXCLUSIONS_END, EXCLUSIONS_END_INTERVAL_MS),
        (
            WEBHOOK_LOG_PURGE,
            config.webhooks.delivery_log_purge_interval_ms.max(1) as i64,
        ),
    ];
    if state.event_stream.is_some() {
        recurring.push((EVENTS_STREAM, config.events_stream.interval_ms as i64));
    }
    if !config.registers.jurisdictions.is_empty() {
        let period_ms = i64::from(config.registers.recheck_sweep_minutes) * 60_000;
        recurring.push((REGISTERS_RECHECK, period_ms));
    }
    recurring
}

/// Runs one claimed job to its end.
pub async fn run(
    state: &AppState,
    publisher: &Arc<dyn OutboxPublisher>,
    job: &JobRecord,
) -> Result<(), JobError> {
    match job.kind.as_str() {
        STATUS_SYNC => {
            let payments = &state.config.payments;
            let count = state
                .payments
                .sync_statuses(
                    payments.status_sync_after_ms,
                    payments.expire_after_ms,
                    STATUS_SYNC_BATCH,
                )
                .await?;
            if count > 0 {
                tracing::info!(count, "status sync asked providers about pending payments");
            }
            Ok(())
        }
        PAYOUT_SCHEDULER => schedule_payouts(state).await,
        PAYOUT_SEND => {
            let payload: PayoutSendPayload =
                serde_json::from_str(&job.payload).map_err(|e| JobError::Payload(e.to_string()))?;
            let payout_id = kassa_core::ids::PayoutId::parse(&payload.payout_id)
                .map_err(|e| JobError::Payload(e.to_string()))?;
            let payout = state.payouts.send(&payout_id).await?;
            tracing::info!(payout_id = %payout.id, status = %payout.status, "payout send job ran");
            Ok(())
        }
        OUTBOX_PUBLISH => {
            let batch_max = state.config.jobs.outbox_batch_max;
            let count =
                outbox::publish_pending(&state.store, publisher.as_ref(), batch_max).await?;
            if count > 0 {
                tracing::debug!(count, "outbox events published");
            }
            Ok(())
        }
        WEBHOOK_LOG_PURGE => purge_webhook_log(state).await,
        EXCLUSIONS_END => {
            state.exclusions.end_due().await?;
            Ok(())
        }
        WEBHOOK_DELIVER => webhook_delivery::run(&state.store, &state.deliverer, job).await,
        REVERSAL_ADVICE => {
            crate::service::acquirer::send_advice(&state.acquirers, &job.payload, job.attempts)
                .await
                .map(drop)
                .map_err(JobError::from)
        }
        COMPLETION_ADVICE => {
            crate::service::acquirer::send_completion(&state.acquirers, &job.payload, job.attempts)
                .await
                .map_err(JobError::from)
        }
        EVENTS_STREAM => event_stream::run(&state.store, state.event_stream.as_ref()).await,
        PAYMENT_CASCADE => {
            let payload: crate::service::payments::CascadePayload =
                serde_json::from_str(&job.payload).map_err(|e| JobError::Payload(e.to_string()))?;
            state.payments.cascade_after_decline(&payload).await?;
            Ok(())
        }
        AML_MONITOR => {
            let payload: crate::service::aml::MonitorPayload =
                serde_json::from_str(&job.payload).map_err(|e| JobError::Payload(e.to_string()))?;
            state.aml.monitor(&payload).await?;
            Ok(())
        }
        REGISTERS_RECHECK => recheck_registers(state).await,
        other => Err(JobError::UnknownKind(other.to_string())),
    }
}

/// One run of the register recheck: fails (the queue retries it with its backoff) when a
/// register could not answer, naming what was left unchecked; nobody was cleared meanwhile.
async fn recheck_registers(state: &AppState) -> Result<(), JobError> {
    let report = state.registers.recheck_due().await?;
    let (answered, excluded, skipped) = (report.answered, report.excluded, report.skipped);
    if answered + skipped > 0 || !report.unanswered.is_empty() {
        tracing::info!(
            answered,
            excluded,
            skipped,
            unanswered = report.unanswered.len(),
            "register recheck ran"
        );
    }
    match report.unanswered_summary() {
        Some(message) => Err(JobError::Service {
            code: "register_unavailable",
            message,
        }),
        None => Ok(()),
    }
}

/// Deletes inbound delivery log rows and outbound delivery attempts past their retentions,
/// in bounded batches.
async fn purge_webhook_log(state: &AppState) -> Result<(), JobError> {
    let config = &state.config.webhooks;
    let batch_max = config.delivery_log_purge_batch_max.max(1);
    let store = &state.store;
    let log_before_ms = now_ms() - i64::from(config.delivery_log_retention_days) * 86_400_000;
    let purged = purge_in_batches(batch_max, || {
        store.purge_webhook_deliveries(log_before_ms, batch_max)
    })
    .await?;
    if purged > 0 {
        tracing::info!(purged, "webhook delivery log rows past retention purged");
    }
    let attempts_retention_days = config.outbound.attempts_retention_days;
    let attempts_before_ms = now_ms() - i64::from(attempts_retention_days) * 86_400_000;
    let purged = purge_in_batches(batch_max, || {
        store.purge_webhook_attempts(attempts_before_ms, batch_max)
    })
    .await?;
    if purged > 0 {
        tracing::info!(purged, "outbound webhook attempts past retention purged");
    }
    Ok(())
}

/// Runs `purge` (one batch of at most `batch_max`) until a batch comes back short or
/// [`WEBHOOK_LOG_PURGE_BATCHES_MAX`] ran; returns how many rows went.
async fn purge_in_batches<F, Fut>(batch_max: u32, purge: F) -> Result<u64, StoreError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut purged = 0;
    for _ in 0..WEBHOOK_LOG_PURGE_BATCHES_MAX {
        let deleted = purge().await?;
        purged += deleted;
        if deleted < u64::from(batch_max) {
            break;
        }
    }
    Ok(purged)
}

/// Queues a send job for each approved or deferred payout whose next attempt is due. The
/// payout row is the truth about whether it needs sending (every path that makes one due —
/// a request, a review's approval, a deferral's wait running out, the pause switch turned
/// off — leaves it there), so one scan finds them all, after any crash.
async fn schedule_payouts(state: &AppState) -> Result<(), JobError> {
    let now = now_ms();
    let due = state
        .store
        .payouts_due_without_job(PAYOUT_SEND, now, PAYOUT_SCHEDULER_BATCH)
        .await?;
    let mut queued = 0;
    for payout_id in &due {
        let payload = serde_json::to_string(&PayoutSendPayload {
            payout_id: payout_id.clone(),
        })
        .map_err(|e| JobError::Payload(e.to_string()))?;
        let job = NewJob {
            kind: PAYOUT_SEND,
            payload: &payload,
            dedupe_key: Some(payout_id),
            run_at_ms: now,
            attempts_max: state.config.jobs.attempts_max,
            repeat_every_ms: None,
        };
        if state.store.enqueue_job(&job).await?.is_some() {
            queued += 1;
        }
    }
    if queued > 0 {
        tracing::info!(queued, "payouts due queued for sending");
    }
    Ok(())
}
