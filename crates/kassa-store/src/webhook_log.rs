//! Limits of the inbound webhook delivery log: counts of unverifiable deliveries, and the
//! retention purge of old rows.

use sqlx::Row;

use crate::{Store, StoreError};

impl Store {
    /// Counts one unverifiable delivery for `provider` in the minute starting at
    /// `minute_ms`; returns the minute's count including this one.
    pub async fn count_unverified_webhook(
        &self,
        provider: &str,
        minute_ms: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO webhook_unverified_counts (provider, minute_ms, deliveries) \
             VALUES ($1, $2, 1) ON CONFLICT (provider, minute_ms) \
             DO UPDATE SET deliveries = webhook_unverified_counts.deliveries + 1 \
             RETURNING deliveries",
        )
        .bind(provider)
        .bind(minute_ms)
        .fetch_one(self.writer())
        .await?;
        Ok(row.try_get("deliveries")?)
    }

    /// Unverifiable deliveries per provider since `since_ms`, most first.
    pub async fn unverified_webhook_counts(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, CAST(SUM(deliveries) AS BIGINT) AS deliveries \
             FROM webhook_unverified_counts WHERE minute_ms >= $1 \
             GROUP BY provider ORDER BY deliveries DESC, provider",
        )
        .bind(since_ms)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("provider")?, row.try_get("deliveries")?)))
            .collect()
    }

    /// Deletes at most `batch_max` delivery log rows received before `before_ms`, and the
    /// counts of minutes before it; returns how many log rows went.
    pub async fn purge_webhook_deliveries(
        &self,
        before_ms: i64,
        batch_max: u32,
    ) -> Result<u64, StoreError> {
        let deleted = self
            .delete_oldest("webhook_deliveries", "received_at_ms", before_ms, batch_max)
            .await?;
        // One row per provider and minute (unknown providers share one): few enough to go
        // at once.
        sqlx::query("DELETE FROM webhook_unverified_counts WHERE minute_ms < $1")
            .bind(before_ms)
            .execute(self.writer())
            .await?;
        Ok(deleted)
    }

    /// Deletes at most `batch_max` rows of `table` whose `time_column` is before
    /// `before_ms`, oldest first; returns how many went. A purge's one statement: bounded,
    /// so a large backlog never holds the writer for long.
    pub(crate) async fn delete_oldest(
        &self,
        table: &'static str,
        time_column: &'static str,
        before_ms: i64,
        batch_max: u32,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
             WHERE {time_column} < $1 ORDER BY {time_column} LIMIT $2)"
        );
        let deleted = sqlx::query(&sql)
            .bind(before_ms)
            .bind(i64::from(batch_max))
            .execute(self.writer())
            .await?;
        Ok(deleted.rows_affected())
    }
}
