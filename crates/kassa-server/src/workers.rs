//! Background work of a node. Each worker is bounded per round and stops with the server.

use std::time::Duration;

use tokio::sync::watch;

use crate::AppState;

/// Payments asked about per status-sync round.
const STATUS_SYNC_BATCH: u32 = 50;

/// Every `payments.status_sync_interval_ms`, asks providers about payments left pending and
/// settles them from the answer (or expires them).
pub fn spawn_status_sync(state: AppState, mut stop: watch::Receiver<bool>) {
    let payments = state.config.payments.clone();
    tokio::spawn(async move {
        let mut interval =
            tokio::time::interval(Duration::from_millis(payments.status_sync_interval_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            let round = state.payments.sync_statuses(
                payments.status_sync_after_ms,
                payments.expire_after_ms,
                STATUS_SYNC_BATCH,
            );
            match round.await {
                Ok(0) => {}
                Ok(count) => {
                    tracing::info!(count, "status sync asked providers about pending payments")
                }
                Err(error) => tracing::warn!(error = error.code(), "status sync round failed"),
            }
        }
    });
}
