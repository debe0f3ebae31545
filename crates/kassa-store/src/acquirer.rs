//! Direct card acquiring's own rows: the ISO 8583 trace numbers (STAN and RRN; one counter
//! per terminal and UTC day, bumped atomically so that no two messages of a terminal share a
//! number that day, across restarts and nodes), and the one card submission per payment.

use sqlx::Row;

use crate::{Store, StoreError};

impl Store {
    /// The next number (1, 2, …) of `terminal_id` on `day` (`YYYYMMDD`, UTC). One upsert:
    /// concurrent callers, on any node, each get a number of their own.
    pub async fn next_trace_number(&self, terminal_id: &str, day: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO acquirer_trace_numbers (terminal_id, day, last_number) VALUES ($1, $2, 1) \
             ON CONFLICT (terminal_id, day) \
             DO UPDATE SET last_number = acquirer_trace_numbers.last_number + 1 \
             RETURNING last_number",
        )
        .bind(terminal_id)
        .bind(day)
        .fetch_one(self.autocommit())
        .await?;
        Ok(row.try_get("last_number")?)
    }
}

impl Store {
    /// Claims the one card submission of `payment_id`; `false` when it was claimed before.
    pub async fn claim_card_submission(&self, payment_id: &str) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO card_submissions (payment_id, submitted_at_ms) VALUES ($1, $2) \
             ON CONFLICT (payment_id) DO NOTHING",
        )
        .bind(payment_id)
        .bind(crate::now_ms())
        .execute(self.autocommit())
        .await?;
        Ok(inserted.rows_affected() == 1)
    }
}
