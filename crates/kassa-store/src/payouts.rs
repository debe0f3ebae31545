//! Withdrawals on disk: payouts, their history, and the switches that pause them.

use kassa_core::ids::{MerchantId, PayoutId, PlayerId};
use kassa_core::payout::PayoutStatus;
use kassa_core::{Currency, Money};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::directory::stored_id;
use crate::{now_ms, HistoryEvent, Store, StoreError, Tx};

/// A payout as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutRecord {
    pub id: PayoutId,
    pub merchant_id: MerchantId,
    pub player_id: PlayerId,
    /// Chosen when it is routed; `None` until then.
    pub provider: Option<String>,
    pub provider_reference: Option<String>,
    pub method: String,
    pub destination: Option<String>,
    /// The amount withdrawn, in the player's currency.
    pub amount: Money,
    pub status: PayoutStatus,
    /// Codes of the checks that sent it to review.
    pub review_reasons: Vec<String>,
    pub failure_reason: Option<String>,
    pub jurisdiction: Option<String>,
    /// Estimated hours until the money arrives, per method.
    pub eta_hours: i64,
    pub reviewed_by: Option<String>,
    pub review_note: Option<String>,
    pub reviewed_at_ms: Option<i64>,
    pub send_attempts: i64,
    pub next_attempt_at_ms: Option<i64>,
    /// The risk decision with its explanation (JSON), when one was made.
    pub risk: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One event in a payout's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutEventRecord {
    pub source: String,
    pub event: String,
    pub from_status: String,
    pub to_status: Option<String>,
    /// Who did it (an admin key id), for manual decisions.
    pub actor: Option<String>,
    pub detail: Option<String>,
    pub created_at_ms: i64,
}

const PAYOUT_COLUMNS: &str = "id, merchant_id, player_id, provider, provider_reference, method, \
     destination, amount_minor, currency, status, review_reasons, failure_reason, jurisdiction, \
     eta_hours, reviewed_by, review_note, reviewed_at_ms, send_attempts, next_attempt_at_ms, \
     risk, created_at_ms, updated_at_ms";

fn payout_from_row(row: &AnyRow) -> Result<PayoutRecord, StoreError> {
    let currency: String = row.try_get("currency")?;
    let currency =
        Currency::from_code(&currency).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let status: String = row.try_get("status")?;
    let reasons: String = row.try_get("review_reasons")?;
    Ok(PayoutRecord {
        id: stored_id(row, "id")?,
        merchant_id: stored_id(row, "merchant_id")?,
        player_id: stored_id(row, "player_id")?,
        provider: row.try_get("provider")?,
        provider_reference: row.try_get("provider_reference")?,
        method: row.try_get("method")?,
        destination: row.try_get("destination")?,
        amount: Money::new(row.try_get("amount_minor")?, currency),
        status: PayoutStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("payout status {status:?}")))?,
        review_reasons: serde_json::from_str(&reasons)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        failure_reason: row.try_get("failure_reason")?,
        jurisdiction: row.try_get("jurisdiction")?,
        eta_hours: row.try_get("eta_hours")?,
        reviewed_by: row.try_get("reviewed_by")?,
        review_note: row.try_get("review_note")?,
        reviewed_at_ms: row.try_get("reviewed_at_ms")?,
        send_attempts: row.try_get("send_attempts")?,
        next_attempt_at_ms: row.try_get("next_attempt_at_ms")?,
        risk: row.try_get("risk")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

impl Store {
    /// Records a new payout.
    pub async fn insert_payout(&self, tx: &mut Tx, p: &PayoutRecord) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO payouts ({PAYOUT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
        ))
        .bind(p.id.as_str())
        .bind(p.merchant_id.as_str())
        .bind(p.player_id.as_str())
        .bind(&p.provider)
        .bind(&p.provider_reference)
        .bind(&p.method)
        .bind(&p.destination)
        .bind(p.amount.amount_minor)
        .bind(p.amount.currency.code())
        .bind(p.status.as_str())
        .bind(serde_json::to_string(&p.review_reasons).unwrap_or_else(|_| "[]".into()))
        .bind(&p.failure_reason)
        .bind(&p.jurisdiction)
        .bind(p.eta_hours)
        .bind(&p.reviewed_by)
        .bind(&p.review_note)
        .bind(p.reviewed_at_ms)
        .bind(p.send_attempts)
        .bind(p.next_attempt_at_ms)
        .bind(&p.risk)
        .bind(p.created_at_ms)
        .bind(p.updated_at_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Writes a payout's mutable fields.
    pub async fn update_payout(&self, tx: &mut Tx, p: &PayoutRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE payouts SET provider = $1, provider_reference = $2, status = $3, \
             failure_reason = $4, reviewed_by = $5, review_note = $6, reviewed_at_ms = $7, \
             send_attempts = $8, next_attempt_at_ms = $9, updated_at_ms = $10 WHERE id = $11",
        )
        .bind(&p.provider)
        .bind(&p.provider_reference)
        .bind(p.status.as_str())
        .bind(&p.failure_reason)
        .bind(&p.reviewed_by)
        .bind(&p.review_note)
        .bind(p.reviewed_at_ms)
        .bind(p.send_attempts)
        .bind(p.next_attempt_at_ms)
        .bind(now_ms())
        .bind(p.id.as_str())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A payout by id (any merchant), read outside a transaction.
    pub async fn find_payout(&self, id: &PayoutId) -> Result<Option<PayoutRecord>, StoreError> {
        let sql = format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(payout_from_row).transpose()
    }

    /// A payout locked for the rest of `tx` (PostgreSQL).
    pub async fn lock_payout(
        &self,
        tx: &mut Tx,
        id: &PayoutId,
    ) -> Result<Option<PayoutRecord>, StoreError> {
        let sql = format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = $1{}",
            self.lock_clause()
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(payout_from_row).transpose()
    }

    /// A merchant's payouts, newest first, filtered by player and/or status, before the
    /// `(created_at_ms, id)` cursor.
    pub async fn list_payouts(
        &self,
        merchant_id: Option<&MerchantId>,
        player_id: Option<&PlayerId>,
        status: Option<PayoutStatus>,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<PayoutRecord>, StoreError> {
        let (before_ms, before_id) = before.unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE ($1 = '' OR merchant_id = $1) \
             AND ($2 = '' OR player_id = $2) AND ($3 = '' OR status = $3) \
             AND (created_at_ms < $4 OR (created_at_ms = $4 AND id < $5)) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $6"
        );
        let rows = sqlx::query(&sql)
            .bind(merchant_id.map_or("", MerchantId::as_str))
            .bind(player_id.map_or("", PlayerId::as_str))
            .bind(status.map(|s| s.as_str()).unwrap_or(""))
            .bind(before_ms)
            .bind(before_id)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(payout_from_row).collect()
    }

    /// Appends to a payout's history.
    pub async fn insert_payout_event(
        &self,
        tx: &mut Tx,
        payout_id: &PayoutId,
        e: HistoryEvent<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO payout_events (payout_id, source, event, from_status, to_status, actor, \
             detail, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(payout_id.as_str())
        .bind(e.source)
        .bind(e.event)
        .bind(e.from)
        .bind(e.to)
        .bind(e.actor)
        .bind(e.detail)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A payout's history, oldest first.
    pub async fn payout_events(
        &self,
        payout_id: &PayoutId,
    ) -> Result<Vec<PayoutEventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, event, from_status, to_status, actor, detail, created_at_ms \
             FROM payout_events WHERE payout_id = $1 ORDER BY id",
        )
        .bind(payout_id.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PayoutEventRecord {
                    source: row.try_get("source")?,
                    event: row.try_get("event")?,
                    from_status: row.try_get("from_status")?,
                    to_status: row.try_get("to_status")?,
                    actor: row.try_get("actor")?,
                    detail: row.try_get("detail")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                })
            })
            .collect()
    }

    /// The sum of a player's debits (bets) since `since_ms`, for the wagering check.
    pub async fn player_turnover_since(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        self.player_turnover_between(merchant_id, player_id, since_ms, i64::MAX)
            .await
    }

    /// What the player bet (posted debits) from `since_ms` to `until_ms`, both included.
    pub async fn player_turnover_between(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<i64, StoreError> {
        let total: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(SUM(amount_minor) AS BIGINT) FROM ledger_entries WHERE merchant_id = $1 \
             AND player_id = $2 AND label = 'debit' AND status IN ('posted') AND created_at_ms >= $3 \
             AND created_at_ms <= $4",
        )
        .bind(merchant_id.as_str())
        .bind(player_id.as_str())
        .bind(since_ms)
        .bind(until_ms)
        .fetch_one(self.reader())
        .await?;
        Ok(total.unwrap_or(0))
    }

    /// The player's captured deposits, newest first: `(provider, amount_minor, captured_at_ms)`.
    pub async fn captured_deposits(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        limit: u32,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, amount_minor, updated_at_ms FROM payments WHERE merchant_id = $1 \
             AND player_id = $2 AND status IN ('captured', 'partially_refunded') \
             ORDER BY updated_at_ms DESC LIMIT $3",
        )
        .bind(merchant_id.as_str())
        .bind(player_id.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("provider")?,
                    row.try_get("amount_minor")?,
                    row.try_get("updated_at_ms")?,
                ))
            })
            .collect()
    }

    /// How many of the player's payments ended charged back.
    pub async fn chargebacks_of(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM payments WHERE merchant_id = $1 AND player_id = $2 AND status = 'charged_back'",
        )
        .bind(merchant_id.as_str())
        .bind(player_id.as_str())
        .fetch_one(self.reader())
        .await?)
    }

    /// Whether a switch is on (`false` when never set).
    pub async fn switch_enabled(&self, name: &str) -> Result<bool, StoreError> {
        let enabled: Option<i64> =
            sqlx::query_scalar("SELECT enabled FROM switches WHERE name = $1")
                .bind(name)
                .fetch_optional(self.reader())
                .await?;
        Ok(enabled.unwrap_or(0) != 0)
    }

    /// Turns a switch on or off, recording who did it.
    pub async fn set_switch(&self, name: &str, enabled: bool, by: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO switches (name, enabled, updated_by, updated_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET enabled = $2, updated_by = $3, updated_at_ms = $4",
        )
        .bind(name)
        .bind(i64::from(enabled))
        .bind(by)
        .bind(now_ms())
        .execute(self.writer())
        .await?;
        Ok(())
    }
}
