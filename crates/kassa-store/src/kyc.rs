//! KYC checks at an ID provider and players' level statuses (issue 19 item 5).

use kassa_core::kyc::{CheckReason, KycLevel, LevelStatus};
use kassa_core::status::KycStatus;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Store, StoreError, Tx};

/// One check opened at an ID provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KycCheckRecord {
    /// `kyc_…`; also the applicant's external id at the provider.
    pub id: String,
    pub merchant_id: String,
    pub player_id: String,
    pub level: KycLevel,
    /// `pending` while open, then the level status the provider's result gave.
    pub status: LevelStatus,
    pub reason: CheckReason,
    /// The ID provider account.
    pub provider: String,
    /// The provider's applicant id.
    pub applicant_id: String,
    /// The hosted page the player verifies on.
    pub verification_url: String,
    pub requested_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    /// The provider's reason for a rejection or a resubmission.
    pub result_reason: Option<String>,
    /// The provider's per-document checks, JSON as it sent them.
    pub document_checks: Option<String>,
    /// The provider event that completed the check.
    pub provider_event_id: Option<String>,
    /// The identity document's issuing country, when the result named one.
    pub document_country: Option<String>,
}

/// How a check ended, as the provider's event said.
#[derive(Clone, Copy, Debug)]
pub struct CheckCompletion<'a> {
    pub status: LevelStatus,
    pub completed_at_ms: i64,
    pub result_reason: Option<&'a str>,
    pub document_checks: &'a str,
    pub provider_event_id: &'a str,
    pub document_country: Option<&'a str>,
}

/// The player's one `kyc_status` with the level rows it was stored beside.
#[derive(Clone, Debug)]
pub struct KycStanding {
    pub kyc_status: KycStatus,
    /// A verified document's issuing country (ADR 86).
    pub kyc_country: Option<String>,
    pub levels: Vec<(KycLevel, LevelStatus)>,
}

const CHECK_COLUMNS: &str = "id, merchant_id, player_id, level, status, reason, provider, \
     applicant_id, verification_url, requested_at_ms, completed_at_ms, result_reason, \
     document_checks, provider_event_id, document_country";

fn stored<T>(row: &AnyRow, column: &str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("{column} {text:?}")))
}

fn check_from_row(row: &AnyRow) -> Result<KycCheckRecord, StoreError> {
    Ok(KycCheckRecord {
        id: row.try_get("id")?,
        merchant_id: row.try_get("merchant_id")?,
        player_id: row.try_get("player_id")?,
        level: stored(row, "level", KycLevel::parse)?,
        status: stored(row, "status", LevelStatus::parse)?,
        reason: stored(row, "reason", CheckReason::parse)?,
        provider: row.try_get("provider")?,
        applicant_id: row.try_get("applicant_id")?,
        verification_url: row.try_get("verification_url")?,
        requested_at_ms: row.try_get("requested_at_ms")?,
        completed_at_ms: row.try_get("completed_at_ms")?,
        result_reason: row.try_get("result_reason")?,
        document_checks: row.try_get("document_checks")?,
        provider_event_id: row.try_get("provider_event_id")?,
        document_country: row.try_get("document_country")?,
    })
}

/// Sets one text column of the player (`column` is one of this module's names, never input).
async fn set_player_text(
    tx: &mut Tx,
    (merchant_id, player_id): (&str, &str),
    (column, value): (&'static str, &str),
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "UPDATE players SET {column} = $1, updated_at_ms = $2 \
         WHERE merchant_id = $3 AND player_id = $4"
    ))
    .bind(value)
    .bind(now_ms)
    .bind(merchant_id)
    .bind(player_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// The player's `kyc_status` and stored level statuses (levels never touched have no
    /// row), read by one statement so the two agree: a result commits both together, and
    /// two reads could straddle it (`kyc_status` from before, a level from after).
    /// `None` when the player does not exist.
    pub async fn kyc_standing(
        &self,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<Option<KycStanding>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.kyc_status, p.kyc_country, l.level, l.status FROM players p \
             LEFT JOIN player_kyc_levels l \
             ON l.merchant_id = p.merchant_id AND l.player_id = p.player_id \
             WHERE p.merchant_id = $1 AND p.player_id = $2",
        )
        .bind(merchant_id)
        .bind(player_id)
        .fetch_all(self.writer())
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut standing = KycStanding {
            kyc_status: stored(first, "kyc_status", KycStatus::parse)?,
            kyc_country: first.try_get("kyc_country")?,
            levels: Vec::with_capacity(rows.len()),
        };
        for row in &rows {
            let level: Option<String> = row.try_get("level")?;
            if level.is_some() {
                standing.levels.push((
                    stored(row, "level", KycLevel::parse)?,
                    stored(row, "status", LevelStatus::parse)?,
                ));
            }
        }
        Ok(Some(standing))
    }

    /// Stores `level`'s status, and the player's `kyc_status` when it changes with it, in the
    /// caller's transaction.
    pub async fn put_kyc_level(
        &self,
        tx: &mut Tx,
        (merchant_id, player_id): (&str, &str),
        (level, status): (KycLevel, LevelStatus),
        kyc_status: Option<KycStatus>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO player_kyc_levels (merchant_id, player_id, level, status, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (merchant_id, player_id, level) \
             DO UPDATE SET status = excluded.status, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(merchant_id)
        .bind(player_id)
        .bind(level.as_str())
        .bind(status.as_str())
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        if let Some(kyc_status) = kyc_status {
            let key = (merchant_id, player_id);
            set_player_text(tx, key, ("kyc_status", kyc_status.as_str()), now_ms).await?;
        }
        Ok(())
    }

    /// Sets the player's KYC country (a verified document's issuing country) in the
    /// caller's transaction.
    pub async fn set_player_kyc_country(
        &self,
        tx: &mut Tx,
        (merchant_id, player_id): (&str, &str),
        country: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let key = (merchant_id, player_id);
        set_player_text(tx, key, ("kyc_country", country), now_ms).await
    }

    /// Records a newly opened check in the caller's transaction; `false` when the level
    /// already has an open one (a concurrent request opened it first).
    pub async fn insert_kyc_check(
        &self,
        tx: &mut Tx,
        check: &KycCheckRecord,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO kyc_checks ({CHECK_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT DO NOTHING"
        ))
        .bind(&check.id)
        .bind(&check.merchant_id)
        .bind(&check.player_id)
        .bind(check.level.as_str())
        .bind(check.status.as_str())
        .bind(check.reason.as_str())
        .bind(&check.provider)
        .bind(&check.applicant_id)
        .bind(&check.verification_url)
        .bind(check.requested_at_ms)
        .bind(check.completed_at_ms)
        .bind(&check.result_reason)
        .bind(&check.document_checks)
        .bind(&check.provider_event_id)
        .bind(&check.document_country)
        .execute(&mut **tx)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// The level's open check, if any.
    pub async fn open_kyc_check(
        &self,
        merchant_id: &str,
        player_id: &str,
        level: KycLevel,
    ) -> Result<Option<KycCheckRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CHECK_COLUMNS} FROM kyc_checks WHERE merchant_id = $1 AND player_id = $2 \
             AND level = $3 AND status = 'pending'"
        ))
        .bind(merchant_id)
        .bind(player_id)
        .bind(level.as_str())
        .fetch_optional(self.writer())
        .await?;
        row.as_ref().map(check_from_row).transpose()
    }

    /// The check the provider knows as `applicant_id` on account `provider`.
    pub async fn kyc_check_by_applicant(
        &self,
        provider: &str,
        applicant_id: &str,
    ) -> Result<Option<KycCheckRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CHECK_COLUMNS} FROM kyc_checks WHERE provider = $1 AND applicant_id = $2 \
             ORDER BY requested_at_ms DESC LIMIT 1"
        ))
        .bind(provider)
        .bind(applicant_id)
        .fetch_optional(self.writer())
        .await?;
        row.as_ref().map(check_from_row).transpose()
    }

    /// Closes an open check with the provider's result, in the caller's transaction;
    /// `false` when it was no longer open.
    pub async fn complete_kyc_check(
        &self,
        tx: &mut Tx,
        check_id: &str,
        completion: CheckCompletion<'_>,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE kyc_checks SET status = $1, completed_at_ms = $2, result_reason = $3, \
             document_checks = $4, provider_event_id = $5, document_country = $6 \
             WHERE id = $7 AND status = 'pending'",
        )
        .bind(completion.status.as_str())
        .bind(completion.completed_at_ms)
        .bind(completion.result_reason)
        .bind(completion.document_checks)
        .bind(completion.provider_event_id)
        .bind(completion.document_country)
        .bind(check_id)
        .execute(&mut **tx)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// The player's checks, newest first, at most `limit`.
    pub async fn kyc_checks_of(
        &self,
        merchant_id: &str,
        player_id: &str,
        limit: u32,
    ) -> Result<Vec<KycCheckRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHECK_COLUMNS} FROM kyc_checks WHERE merchant_id = $1 AND player_id = $2 \
             ORDER BY requested_at_ms DESC, id DESC LIMIT $3"
        ))
        .bind(merchant_id)
        .bind(player_id)
        .bind(i64::from(limit))
        .fetch_all(self.writer())
        .await?;
        rows.iter().map(check_from_row).collect()
    }

    /// The player's deposits that brought money in (captured, whatever happened to them
    /// since) as (created at ms, amount minor), newest first, at most `limit`: what the CDD
    /// threshold counts.
    pub async fn deposits_for_cdd(
        &self,
        merchant_id: &str,
        player_id: &str,
        limit: u32,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT created_at_ms, amount_minor FROM payments WHERE merchant_id = $1 \
             AND player_id = $2 AND status IN ('captured', 'partially_refunded', 'refunded', \
             'charged_back') ORDER BY created_at_ms DESC LIMIT $3",
        )
        .bind(merchant_id)
        .bind(player_id)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("created_at_ms")?, row.try_get("amount_minor")?)))
            .collect()
    }
}
