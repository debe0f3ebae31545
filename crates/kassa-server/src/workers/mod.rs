//! Background work. Work that any node may do (payout sending, status sync, the outbox's
//! consumer) runs as jobs of the one job queue ([`jobs`], ADR 24); housekeeping that is
//! harmless when every node does it (the idempotency-key purge, SQLite's checkpoints) runs in
//! loops here. Each worker is
//! bounded per round and stops with the server.

pub mod event_stream;
pub mod jobs;
pub mod kinds;
pub mod outbox;
pub mod webhook_delivery;

use std::time::Duration;

use tokio::sync::watch;

use crate::AppState;

/// How often finished idempotency keys past their retention are deleted.
const IDEMPOTENCY_PURGE_PERIOD: Duration = Duration::from_secs(3600);

/// Deletes finished `Idempotency-Key` records older than `idempotency.retention_hours`, so
/// the table holds about a day of keys rather than all of history.
pub fn spawn_idempotency_purge(state: AppState, mut stop: watch::Receiver<bool>) {
    let retention_ms = i64::from(state.config.idempotency.retention_hours) * 3_600_000;
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(IDEMPOTENCY_PURGE_PERIOD);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            match state
                .store
                .purge_idempotency_keys(kassa_store::now_ms() - retention_ms)
                .await
            {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "purged expired idempotency keys"),
                Err(error) => tracing::warn!(error = %error, "idempotency key purge failed"),
            }
        }
    });
}

/// How often the SQLite WAL is copied into the database file beside the writer, so that
/// the writers' own checkpoints (ADR 12, docs/perf-log.md note 20) find less left. A checkpoint
/// copies each page once, however many commits wrote it since the last one: at 50 ms the
/// account and index pages of 10,000 players were copied again and again, and every
/// checkpoint ended with an fsync of the database file. At 500 ms the wallet answered
/// 10–15% more calls with 10 and with 10,000 players, p99 no worse; at 1 s about the
/// same, at 2 s less (docs/perf-log.md, note 26). The writers' own checkpoint, at 256 MiB of WAL,
/// still bounds the file.
const WAL_CHECKPOINT_PERIOD: Duration = Duration::from_millis(500);

/// SQLite only: checkpoints the WAL every [`WAL_CHECKPOINT_PERIOD`] on a reader connection,
/// so that the wallet writer's commits rarely carry a checkpoint of their own (ADR 12).
pub fn spawn_wal_checkpointer(state: AppState, mut stop: watch::Receiver<bool>) {
    if state.store.backend() != kassa_store::Backend::Sqlite {
        return;
    }
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(WAL_CHECKPOINT_PERIOD);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            if let Err(error) = state.store.checkpoint_wal().await {
                tracing::debug!(error = %error, "WAL checkpoint skipped");
            }
        }
    });
}

/// How often the database is pinged while an outage is under way.
const DATABASE_WATCH_PERIOD: Duration = Duration::from_millis(500);

/// Ends an outage noted by [`crate::outage`] as soon as the database answers again, even if
/// nothing asks `/readyz`; idle (one atomic load per period) while the database is up.
pub fn spawn_database_watch(state: AppState, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(DATABASE_WATCH_PERIOD);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            if crate::outage::database_down() && state.store.ping().await.is_ok() {
                crate::outage::database_reachable();
            }
        }
    });
}
