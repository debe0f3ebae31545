//! Players' responsible-gambling deposit limits on disk, and the deposits they count.

use kassa_core::ids::{MerchantId, PlayerId};
use kassa_core::limits::{DepositLimit, LimitPeriod, PendingIncrease};
use sqlx::Row;

use crate::{now_ms, Store, StoreError, Tx};

const DEPOSIT: &str = "deposit";

/// Payment statuses whose amount counts against a deposit limit: gross (refunds are not
/// netted off) and including deposits still under way, which may yet be captured.
const COUNTED_STATUSES: &str = "('initiated', 'pending', 'authorized', 'captured', \
     'partially_refunded', 'refunded', 'charged_back')";

const LIMIT_COLUMNS: &str = "period, amount_minor, pending_amount_minor, pending_applies_at_ms";

impl Store {
    /// The player's deposit limits as stored (periods without a row have none).
    pub async fn deposit_limits(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<Vec<DepositLimit>, StoreError> {
        let sql = format!(
            "SELECT {LIMIT_COLUMNS} FROM player_limits \
             WHERE merchant_id = $1 AND player_id = $2 AND kind = $3"
        );
        let rows = sqlx::query(&sql)
            .bind(merchant_id.as_str())
            .bind(player_id.as_str())
            .bind(DEPOSIT)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(limit_from_row).collect()
    }

    /// The player's deposit limits, locked for the rest of `tx` on PostgreSQL (SQLite's
    /// write transactions run one at a time): deposit starts of one player that check and
    /// reserve under this lock see each other.
    pub async fn lock_deposit_limits(
        &self,
        tx: &mut Tx,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<Vec<DepositLimit>, StoreError> {
        let sql = format!(
            "SELECT {LIMIT_COLUMNS} FROM player_limits \
             WHERE merchant_id = $1 AND player_id = $2 AND kind = $3{}",
            self.lock_clause()
        );
        let rows = sqlx::query(&sql)
            .bind(merchant_id.as_str())
            .bind(player_id.as_str())
            .bind(DEPOSIT)
            .fetch_all(&mut **tx)
            .await?;
        rows.iter().map(limit_from_row).collect()
    }

    /// Reserves `amount_minor` of the player's limits for the deposit `payment_id` while
    /// its provider is asked, until `expires_at_ms` or until the deposit is recorded
    /// ([`Store::release_deposit_reservation`]). A reservation of the same payment (a retry)
    /// is renewed. The player's expired reservations go.
    #[allow(clippy::too_many_arguments)]
    pub async fn reserve_deposit(
        &self,
        tx: &mut Tx,
        payment_id: &str,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        amount_minor: i64,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM deposit_reservations WHERE merchant_id = $1 AND player_id = $2 \
             AND expires_at_ms < $3",
        )
        .bind(merchant_id.as_str())
        .bind(player_id.as_str())
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO deposit_reservations (payment_id, merchant_id, player_id, \
             amount_minor, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (payment_id) DO UPDATE SET amount_minor = excluded.amount_minor, \
             expires_at_ms = excluded.expires_at_ms",
        )
        .bind(payment_id)
        .bind(merchant_id.as_str())
        .bind(player_id.as_str())
        .bind(amount_minor)
        .bind(now_ms)
        .bind(expires_at_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Ends the reservation of `payment_id` (none: nothing happens), in the transaction that
    /// records the deposit, which from then on counts by its own row.
    pub async fn release_deposit_reservation(
        &self,
        tx: &mut Tx,
        payment_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM deposit_reservations WHERE payment_id = $1")
            .bind(payment_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Stores one period's limit in `tx`, replacing what was there.
    pub async fn put_deposit_limit(
        &self,
        tx: &mut Tx,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        limit: &DepositLimit,
        set_by: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO player_limits (merchant_id, player_id, kind, period, amount_minor, \
             pending_amount_minor, pending_applies_at_ms, set_by, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (merchant_id, player_id, kind, period) DO UPDATE SET \
             amount_minor = excluded.amount_minor, \
             pending_amount_minor = excluded.pending_amount_minor, \
             pending_applies_at_ms = excluded.pending_applies_at_ms, \
             set_by = excluded.set_by, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(merchant_id.as_str())
        .bind(player_id.as_str())
        .bind(DEPOSIT)
        .bind(limit.period.as_str())
        .bind(limit.amount_minor)
        .bind(limit.pending.and_then(|p| p.amount_minor))
        .bind(limit.pending.map(|p| p.applies_at_ms))
        .bind(set_by)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// In `tx`: the player's deposits (created at, amount) since `since_ms` that count
    /// against a deposit limit, with the unexpired reservations of deposits being started
    /// other than `payment_id`.
    pub async fn counted_deposits_in(
        &self,
        tx: &mut Tx,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        since_ms: i64,
        payment_id: &str,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let sql = format!(
            "SELECT created_at_ms, amount_minor FROM payments WHERE merchant_id = $1 \
             AND player_id = $2 AND created_at_ms > $3 AND status IN {COUNTED_STATUSES} \
             UNION ALL SELECT created_at_ms, amount_minor FROM deposit_reservations \
             WHERE merchant_id = $1 AND player_id = $2 AND expires_at_ms >= $4 \
             AND payment_id <> $5"
        );
        let rows = sqlx::query(&sql)
            .bind(merchant_id.as_str())
            .bind(player_id.as_str())
            .bind(since_ms)
            .bind(now_ms())
            .bind(payment_id)
            .fetch_all(&mut **tx)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("created_at_ms")?, row.try_get("amount_minor")?)))
            .collect()
    }

    /// The player's deposits (created at, amount) since `since_ms` that count against a
    /// deposit limit.
    pub async fn counted_deposits(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        since_ms: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let sql = format!(
            "SELECT created_at_ms, amount_minor FROM payments WHERE merchant_id = $1 \
             AND player_id = $2 AND created_at_ms > $3 AND status IN {COUNTED_STATUSES}"
        );
        let rows = sqlx::query(&sql)
            .bind(merchant_id.as_str())
            .bind(player_id.as_str())
            .bind(since_ms)
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("created_at_ms")?, row.try_get("amount_minor")?)))
            .collect()
    }
}

fn limit_from_row(row: &sqlx::any::AnyRow) -> Result<DepositLimit, StoreError> {
    let period: String = row.try_get("period")?;
    let period = LimitPeriod::parse(&period)
        .ok_or_else(|| StoreError::Corrupt(format!("limit period {period:?}")))?;
    let applies_at: Option<i64> = row.try_get("pending_applies_at_ms")?;
    Ok(DepositLimit {
        period,
        amount_minor: row.try_get("amount_minor")?,
        pending: applies_at.map(|applies_at_ms| PendingIncrease {
            amount_minor: row.try_get("pending_amount_minor").ok().flatten(),
            applies_at_ms,
        }),
    })
}
