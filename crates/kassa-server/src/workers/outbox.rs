//! The outbox's consumer: hands unpublished outbox events, oldest first, to a publisher and
//! marks them published in the same transaction. It runs as the recurring `outbox.publish`
//! job, so one node at a time publishes (the job's lease); the rows are also locked while
//! they are published, so a node whose lease ran out mid-batch cannot publish them again.

use std::collections::VecDeque;
use std::sync::Mutex;

use futures::future::BoxFuture;
use kassa_store::payments::OutboxEvent;
use kassa_store::{now_ms, Conn, Store, StoreError};

/// Why a batch could not be published; the batch stays unpublished and is tried again.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The destination refused or did not answer.
    #[error("publisher failed: {0}")]
    Failed(String),
    /// The database failed.
    #[error("database error")]
    Store(#[from] StoreError),
}

/// Where outbox events go: today a recorder, later the outbound-webhook deliverer (which
/// can enqueue one delivery job per event on `conn`, inside the publishing transaction) and
/// an event stream. A publisher gets the events of one aggregate in the order they were
/// written; an `Err` rolls the batch back, to be handed over again.
pub trait OutboxPublisher: Send + Sync {
    /// Publishes `events` (oldest first) inside the transaction that marks them published.
    fn publish<'a>(
        &'a self,
        conn: &'a mut Conn,
        events: &'a [OutboxEvent],
    ) -> BoxFuture<'a, Result<(), PublishError>>;
}

/// Events the recorder keeps for inspection; older ones are forgotten.
const RECORDED_EVENTS_MAX: usize = 1000;

/// Logs every event and keeps the latest [`RECORDED_EVENTS_MAX`] in memory: the publisher
/// until outbound webhooks exist.
#[derive(Default)]
pub struct RecordingPublisher {
    recent: Mutex<VecDeque<OutboxEvent>>,
}

impl RecordingPublisher {
    /// The latest events published, oldest first.
    pub fn recent(&self) -> Vec<OutboxEvent> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<OutboxEvent>> {
        // A panic while holding it cannot leave the queue half-changed.
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl OutboxPublisher for RecordingPublisher {
    fn publish<'a>(
        &'a self,
        _conn: &'a mut Conn,
        events: &'a [OutboxEvent],
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            let mut recent = self.lock();
            for event in events {
                tracing::info!(
                    outbox_id = event.id,
                    topic = %event.topic,
                    aggregate_id = %event.aggregate_id,
                    merchant_id = %event.merchant_id,
                    "outbox event published"
                );
                if recent.len() == RECORDED_EVENTS_MAX {
                    recent.pop_front();
                }
                recent.push_back(event.clone());
            }
            Ok(())
        })
    }
}

/// Publishes one batch of at most `limit` events; returns how many went out. Looks on a
/// reader first, so an empty outbox costs no write transaction (on SQLite, no turn of the
/// one writer).
pub async fn publish_batch(
    store: &Store,
    publisher: &dyn OutboxPublisher,
    limit: u32,
) -> Result<usize, PublishError> {
    if store.outbox_unpublished_count().await? == 0 {
        return Ok(0);
    }
    let mut tx = store.begin().await?;
    let events = store.lock_unpublished_outbox(&mut tx, limit).await?;
    if events.is_empty() {
        return Ok(0);
    }
    publisher.publish(&mut tx, &events).await?;
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    store.mark_outbox_published(&mut tx, &ids, now_ms()).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(events.len())
}

/// Batches one run of the consumer publishes at most, so that a large backlog does not hold
/// the job past its lease renewals for long; the next run continues.
const BATCHES_PER_RUN_MAX: usize = 20;

/// Publishes until the outbox is empty or [`BATCHES_PER_RUN_MAX`] batches went out.
pub async fn publish_pending(
    store: &Store,
    publisher: &dyn OutboxPublisher,
    batch_max: u32,
) -> Result<usize, PublishError> {
    let mut total = 0;
    for _ in 0..BATCHES_PER_RUN_MAX {
        let published = publish_batch(store, publisher, batch_max).await?;
        total += published;
        if published < batch_max as usize {
            break;
        }
    }
    Ok(total)
}
