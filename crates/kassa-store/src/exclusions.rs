//! Players' self-exclusions and time-outs (ADR 57): the one in force per player, and the
//! player's `account_status` kept `self_excluded` while it is.

use kassa_core::exclusion::{Exclusion, ExclusionKind};
use sqlx::Row;

use crate::{Store, StoreError, Tx};

/// A stored exclusion and who set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExclusionRecord {
    pub exclusion: Exclusion,
    /// `player` or `operator`.
    pub set_by: String,
    pub reason: Option<String>,
}

impl Store {
    /// The player's exclusion, ended or not.
    pub async fn player_exclusion(
        &self,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<Option<ExclusionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT kind, starts_at_ms, ends_at_ms, set_by, reason FROM player_exclusions \
             WHERE merchant_id = $1 AND player_id = $2",
        )
        .bind(merchant_id)
        .bind(player_id)
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let kind: String = row.try_get("kind")?;
        let kind = ExclusionKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("exclusion kind {kind:?}")))?;
        Ok(Some(ExclusionRecord {
            exclusion: Exclusion {
                kind,
                starts_at_ms: row.try_get("starts_at_ms")?,
                ends_at_ms: row.try_get("ends_at_ms")?,
            },
            set_by: row.try_get("set_by")?,
            reason: row.try_get("reason")?,
        }))
    }

    /// Stores the player's exclusion (replacing an ended or shorter one) and marks the
    /// player `self_excluded`, in the caller's transaction.
    pub async fn put_exclusion(
        &self,
        tx: &mut Tx,
        merchant_id: &str,
        player_id: &str,
        record: &ExclusionRecord,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM player_exclusions WHERE merchant_id = $1 AND player_id = $2")
            .bind(merchant_id)
            .bind(player_id)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO player_exclusions (merchant_id, player_id, kind, starts_at_ms, \
             ends_at_ms, set_by, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(merchant_id)
        .bind(player_id)
        .bind(record.exclusion.kind.as_str())
        .bind(record.exclusion.starts_at_ms)
        .bind(record.exclusion.ends_at_ms)
        .bind(&record.set_by)
        .bind(&record.reason)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE players SET account_status = 'self_excluded', updated_at_ms = $1 \
             WHERE merchant_id = $2 AND player_id = $3 AND account_status = 'active'",
        )
        .bind(record.exclusion.starts_at_ms)
        .bind(merchant_id)
        .bind(player_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Ends up to `limit` exclusions whose end has come: each row is deleted and its player,
    /// if still `self_excluded`, is `active` again, one transaction each. Answers how many.
    pub async fn end_due_exclusions(&self, now_ms: i64, limit: u32) -> Result<u32, StoreError> {
        let due = sqlx::query(
            "SELECT merchant_id, player_id FROM player_exclusions \
             WHERE ends_at_ms IS NOT NULL AND ends_at_ms <= $1 LIMIT $2",
        )
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        let mut ended = 0;
        for row in &due {
            let merchant_id: String = row.try_get("merchant_id")?;
            let player_id: String = row.try_get("player_id")?;
            let mut tx = self.begin().await?;
            let deleted = sqlx::query(
                "DELETE FROM player_exclusions WHERE merchant_id = $1 AND player_id = $2 \
                 AND ends_at_ms IS NOT NULL AND ends_at_ms <= $3",
            )
            .bind(&merchant_id)
            .bind(&player_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            if deleted.rows_affected() == 1 {
                sqlx::query(
                    "UPDATE players SET account_status = 'active', updated_at_ms = $1 \
                     WHERE merchant_id = $2 AND player_id = $3 AND account_status = 'self_excluded'",
                )
                .bind(now_ms)
                .bind(&merchant_id)
                .bind(&player_id)
                .execute(&mut *tx)
                .await?;
                ended += 1;
            }
            tx.commit().await?;
        }
        Ok(ended)
    }
}
