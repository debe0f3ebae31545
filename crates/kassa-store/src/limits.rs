//! Players' responsible-gambling limits on disk (deposit, wager, loss, session; one row per
//! kind and period), and the deposits a deposit limit counts.

use kassa_core::ids::{MerchantId, PlayerId};
use kassa_core::limits::{LimitKind, LimitPeriod, PendingIncrease, PeriodLimit};
use kassa_core::play_limits::{PlayLimits, SessionLimit};
use sqlx::Row;

use crate::{now_ms, Store, StoreError, Tx};

const DEPOSIT: &str = "deposit";

/// The `period` a session limit's row is stored under: a session has no window.
const SESSION_PERIOD: &str = "session";

/// Every limit of a player, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredLimits {
    /// Deposit limits by period (periods without a row have none).
    pub deposit: Vec<PeriodLimit>,
    /// Wager, loss and session limits.
    pub play: PlayLimits,
}

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
    ) -> Result<Vec<PeriodLimit>, StoreError> {
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
    ) -> Result<Vec<PeriodLimit>, StoreError> {
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

    /// Every limit of the player, as stored.
    pub async fn limits(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<StoredLimits, StoreError> {
        read_limits(self.reader(), merchant_id, player_id).await
    }

    /// Every limit of the player, in `tx` (after [`Store::lock_play_state`], so that two
    /// changes of one player take turns).
    pub async fn limits_in(
        &self,
        tx: &mut Tx,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<StoredLimits, StoreError> {
        read_limits(&mut **tx, merchant_id, player_id).await
    }

    /// Stores one period's `kind` limit in `tx`, replacing what was there.
    pub async fn put_limit(
        &self,
        tx: &mut Tx,
        (merchant_id, player_id): (&MerchantId, &PlayerId),
        kind: LimitKind,
        limit: &PeriodLimit,
        set_by: &str,
    ) -> Result<(), StoreError> {
        let row = LimitRow {
            kind: kind.as_str(),
            period: limit.period.as_str(),
            amount: limit.amount_minor,
            pending: limit.pending,
        };
        self.put_limit_row(tx, (merchant_id, player_id), row, set_by)
            .await
    }

    /// Stores the session limit (minutes) in `tx`, replacing what was there.
    pub async fn put_session_limit(
        &self,
        tx: &mut Tx,
        (merchant_id, player_id): (&MerchantId, &PlayerId),
        limit: &SessionLimit,
        set_by: &str,
    ) -> Result<(), StoreError> {
        let row = LimitRow {
            kind: LimitKind::Session.as_str(),
            period: SESSION_PERIOD,
            amount: limit.minutes,
            pending: limit.pending,
        };
        self.put_limit_row(tx, (merchant_id, player_id), row, set_by)
            .await
    }

    async fn put_limit_row(
        &self,
        tx: &mut Tx,
        (merchant_id, player_id): (&MerchantId, &PlayerId),
        row: LimitRow<'_>,
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
        .bind(row.kind)
        .bind(row.period)
        .bind(row.amount)
        .bind(row.pending.and_then(|p| p.amount_minor))
        .bind(row.pending.map(|p| p.applies_at_ms))
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
        let now = self.clock().now_ms();
        let ids = (merchant_id, player_id);
        read_counted(&mut **tx, ids, since_ms, now, payment_id).await
    }

    /// The player's deposits (created at, amount) since `since_ms` that count against a
    /// deposit limit, with every unexpired reservation: what a deposit start's check
    /// ([`Store::counted_deposits_in`]) would count, read outside any transaction.
    pub async fn counted_deposits(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        since_ms: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let now = self.clock().now_ms();
        let ids = (merchant_id, player_id);
        read_counted(self.reader(), ids, since_ms, now, "").await
    }
}

/// The one rule of what a deposit limit counts: deposits in a counted status created after
/// `since_ms`, and reservations unexpired at `now_ms` other than `payment_id`'s.
async fn read_counted<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    (merchant_id, player_id): (&MerchantId, &PlayerId),
    since_ms: i64,
    now_ms: i64,
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
        .bind(now_ms)
        .bind(payment_id)
        .fetch_all(executor)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("created_at_ms")?, row.try_get("amount_minor")?)))
        .collect()
}

async fn read_limits<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    merchant_id: &MerchantId,
    player_id: &PlayerId,
) -> Result<StoredLimits, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT kind, {LIMIT_COLUMNS} FROM player_limits WHERE merchant_id = $1 AND player_id = $2"
    ))
    .bind(merchant_id.as_str())
    .bind(player_id.as_str())
    .fetch_all(executor)
    .await?;
    let mut limits = StoredLimits::default();
    for row in &rows {
        let kind: String = row.try_get("kind")?;
        match LimitKind::parse(&kind) {
            Some(LimitKind::Deposit) => limits.deposit.push(limit_from_row(row)?),
            Some(LimitKind::Wager) => limits.play.wager.push(limit_from_row(row)?),
            Some(LimitKind::Loss) => limits.play.loss.push(limit_from_row(row)?),
            Some(LimitKind::Session) => limits.play.session = session_from_row(row)?,
            None => return Err(StoreError::Corrupt(format!("limit kind {kind:?}"))),
        }
    }
    Ok(limits)
}

/// One row of `player_limits` to write.
struct LimitRow<'a> {
    kind: &'a str,
    period: &'a str,
    amount: Option<i64>,
    pending: Option<PendingIncrease>,
}

fn limit_from_row(row: &sqlx::any::AnyRow) -> Result<PeriodLimit, StoreError> {
    let period: String = row.try_get("period")?;
    let period = LimitPeriod::parse(&period)
        .ok_or_else(|| StoreError::Corrupt(format!("limit period {period:?}")))?;
    Ok(PeriodLimit {
        period,
        amount_minor: row.try_get("amount_minor")?,
        pending: pending_from_row(row)?,
    })
}

fn session_from_row(row: &sqlx::any::AnyRow) -> Result<SessionLimit, StoreError> {
    Ok(SessionLimit {
        minutes: row.try_get("amount_minor")?,
        pending: pending_from_row(row)?,
    })
}

fn pending_from_row(row: &sqlx::any::AnyRow) -> Result<Option<PendingIncrease>, StoreError> {
    let applies_at: Option<i64> = row.try_get("pending_applies_at_ms")?;
    Ok(applies_at.map(|applies_at_ms| PendingIncrease {
        amount_minor: row.try_get("pending_amount_minor").ok().flatten(),
        applies_at_ms,
    }))
}
