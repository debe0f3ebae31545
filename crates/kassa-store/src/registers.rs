//! National self-exclusion registers (ADR 73): the identity a check sends, each player's
//! latest answer, and every question asked, answered or not (the audit trail).

use kassa_core::ids::{MerchantId, PlayerId};
use kassa_core::register::{PlayerIdentity, RegisterOutcome};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::directory::stored_id;
use crate::{placeholders, Store, StoreError};

/// A player's latest answer from a register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterStatus {
    /// The register's kind, e.g. `gamstop`.
    pub register: String,
    pub outcome: RegisterOutcome,
    pub checked_at_ms: i64,
    /// The check that got it.
    pub check_id: String,
}

/// One question put to a register, as the audit trail keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterCheckRecord {
    /// `rchk_…`.
    pub id: String,
    pub merchant_id: String,
    pub player_id: String,
    /// The register's kind.
    pub register: String,
    /// The register account asked.
    pub account_id: String,
    /// `first_deposit`, `recheck` or `operator`.
    pub reason: String,
    /// The answer; `None` when none came.
    pub outcome: Option<RegisterOutcome>,
    /// The register's id of its answer.
    pub register_reference: Option<String>,
    /// Why no answer came (no personal data).
    pub error: Option<String>,
    pub checked_at_ms: i64,
}

/// A player a register names as excluded, as every node's restricted list reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterExcludedPlayer {
    pub merchant_id: MerchantId,
    pub player_id: PlayerId,
    pub register: String,
    pub checked_at_ms: i64,
}

/// A player the recheck job asks about again: the latest answer, its time and whose it is,
/// which is also where the next batch continues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecheckDue {
    pub merchant_id: MerchantId,
    pub player_id: PlayerId,
    pub checked_at_ms: i64,
}

/// Which players the recheck job reads (one register's, one batch).
#[derive(Clone, Debug)]
pub struct RecheckQuery<'a> {
    /// The register's kind.
    pub register: &'a str,
    /// The jurisdictions mapped to it: a player of another one is not its to ask.
    pub jurisdictions: &'a [&'a str],
    /// Only answers older than this.
    pub answered_before_ms: i64,
    /// Only players with a wallet call (a journal entry) or a deposit since this.
    pub active_since_ms: i64,
    /// Continue after this player of the previous batch (answer time, merchant, player).
    pub after: Option<&'a RecheckDue>,
    pub limit: u32,
}

fn stored_outcome(row: &AnyRow, column: &str) -> Result<Option<RegisterOutcome>, StoreError> {
    let text: String = row.try_get(column)?;
    match text.as_str() {
        "unavailable" => Ok(None),
        _ => RegisterOutcome::parse(&text)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("{column} {text:?}"))),
    }
}

impl Store {
    /// Stores the identity the operator gave for register checks (the birth date is the
    /// player's own and not stored here), replacing the one before.
    pub async fn put_player_identity(
        &self,
        merchant_id: &str,
        player_id: &str,
        identity: &PlayerIdentity,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO player_identities (merchant_id, player_id, first_name, last_name, \
             email, postcode, mobile, national_id, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (merchant_id, player_id) DO UPDATE SET \
             first_name = excluded.first_name, last_name = excluded.last_name, \
             email = excluded.email, postcode = excluded.postcode, mobile = excluded.mobile, \
             national_id = excluded.national_id, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(merchant_id)
        .bind(player_id)
        .bind(&identity.first_name)
        .bind(&identity.last_name)
        .bind(&identity.email)
        .bind(&identity.postcode)
        .bind(&identity.mobile)
        .bind(&identity.national_id)
        .bind(now_ms)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The identity stored for register checks (without the birth date) and when it last
    /// changed.
    pub async fn player_identity(
        &self,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<Option<(PlayerIdentity, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT first_name, last_name, email, postcode, mobile, national_id, updated_at_ms \
             FROM player_identities WHERE merchant_id = $1 AND player_id = $2",
        )
        .bind(merchant_id)
        .bind(player_id)
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let identity = PlayerIdentity {
            first_name: row.try_get("first_name")?,
            last_name: row.try_get("last_name")?,
            birth_date: None,
            email: row.try_get("email")?,
            postcode: row.try_get("postcode")?,
            mobile: row.try_get("mobile")?,
            national_id: row.try_get("national_id")?,
        };
        Ok(Some((identity, row.try_get("updated_at_ms")?)))
    }

    /// The player's latest answer from a register, if any.
    pub async fn register_status(
        &self,
        merchant_id: &str,
        player_id: &str,
    ) -> Result<Option<RegisterStatus>, StoreError> {
        let row = sqlx::query(
            "SELECT register, outcome, checked_at_ms, check_id FROM player_register_status \
             WHERE merchant_id = $1 AND player_id = $2",
        )
        .bind(merchant_id)
        .bind(player_id)
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let outcome = stored_outcome(&row, "outcome")?
            .ok_or_else(|| StoreError::Corrupt("register status without an answer".into()))?;
        Ok(Some(RegisterStatus {
            register: row.try_get("register")?,
            outcome,
            checked_at_ms: row.try_get("checked_at_ms")?,
            check_id: row.try_get("check_id")?,
        }))
    }

    /// Records a check in one transaction: its audit row, and when it was answered the
    /// player's latest answer, with a `player.register_excluded` outbox event when the player
    /// was not excluded before. Answers whether the player's exclusion by a register began or
    /// ended (the restricted list must be read again).
    pub async fn record_register_check(
        &self,
        check: &RegisterCheckRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO register_checks (id, merchant_id, player_id, register, account_id, \
             reason, outcome, register_reference, error, checked_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&check.id)
        .bind(&check.merchant_id)
        .bind(&check.player_id)
        .bind(&check.register)
        .bind(&check.account_id)
        .bind(&check.reason)
        .bind(check.outcome.map_or("unavailable", RegisterOutcome::as_str))
        .bind(&check.register_reference)
        .bind(&check.error)
        .bind(check.checked_at_ms)
        .execute(&mut *tx)
        .await?;
        let Some(outcome) = check.outcome else {
            tx.commit().await?;
            return Ok(false);
        };
        let before: Option<String> = sqlx::query_scalar(
            "SELECT outcome FROM player_register_status WHERE merchant_id = $1 AND player_id = $2",
        )
        .bind(&check.merchant_id)
        .bind(&check.player_id)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO player_register_status (merchant_id, player_id, register, outcome, \
             checked_at_ms, check_id) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (merchant_id, player_id) DO UPDATE SET register = excluded.register, \
             outcome = excluded.outcome, checked_at_ms = excluded.checked_at_ms, \
             check_id = excluded.check_id",
        )
        .bind(&check.merchant_id)
        .bind(&check.player_id)
        .bind(&check.register)
        .bind(outcome.as_str())
        .bind(check.checked_at_ms)
        .bind(&check.id)
        .execute(&mut *tx)
        .await?;
        let was_excluded = before.as_deref() == Some(RegisterOutcome::Excluded.as_str());
        if outcome.blocks() && !was_excluded {
            // Names the player and the register only: the identity never leaves Kassa's
            // tables except to the register itself.
            let payload = serde_json::json!({
                "player_id": check.player_id, "register": check.register,
                "check_id": check.id, "checked_at_ms": check.checked_at_ms,
            });
            let aggregate = check.player_id.as_str();
            crate::payments::insert_outbox_in(
                &mut tx,
                &check.merchant_id,
                "player.register_excluded",
                aggregate,
                &payload.to_string(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(outcome.blocks() != was_excluded)
    }

    /// Every player a register names as excluded: the few a bet is refused for besides the
    /// restricted statuses (ADR 41's list, read once a second per node).
    pub async fn register_excluded_players(
        &self,
    ) -> Result<Vec<RegisterExcludedPlayer>, StoreError> {
        sqlx::query(
            "SELECT merchant_id, player_id, register, checked_at_ms FROM player_register_status \
             WHERE outcome = 'excluded'",
        )
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(|row| {
            Ok(RegisterExcludedPlayer {
                merchant_id: stored_id(row, "merchant_id")?,
                player_id: stored_id(row, "player_id")?,
                register: row.try_get("register")?,
                checked_at_ms: row.try_get("checked_at_ms")?,
            })
        })
        .collect()
    }

    /// Players of `query.register` whose latest answer is older than `answered_before_ms`
    /// and who played or deposited since `active_since_ms`, oldest answer first, at most
    /// `limit`. The stale answers are read in order through
    /// `player_register_status_by_age`, from the `after` row on (the row comparison is a
    /// range condition of that index on both backends, so a later batch does not read the
    /// earlier ones again); each is joined to its player (primary key) and asked two index
    /// probes: the player's latest journal entry (`MAX(id)` on
    /// `ledger_entries_by_player`, then its time by primary key) and a deposit since the cut
    /// (`payments_by_player`'s range).
    pub async fn register_recheck_due(
        &self,
        query: &RecheckQuery<'_>,
    ) -> Result<Vec<RecheckDue>, StoreError> {
        if query.jurisdictions.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT s.merchant_id, s.player_id, s.checked_at_ms FROM player_register_status s \
             JOIN players p ON p.merchant_id = s.merchant_id AND p.player_id = s.player_id \
             WHERE s.register = $1 AND s.checked_at_ms < $2 \
             AND (s.checked_at_ms, s.merchant_id, s.player_id) > ($3, $4, $5) \
             AND (EXISTS (SELECT 1 FROM ledger_entries e WHERE e.id = \
                     (SELECT MAX(l.id) FROM ledger_entries l \
                      WHERE l.player_id = s.player_id AND l.merchant_id = s.merchant_id) \
                     AND e.created_at_ms >= $6) \
                  OR EXISTS (SELECT 1 FROM payments d WHERE d.merchant_id = s.merchant_id \
                     AND d.player_id = s.player_id AND d.created_at_ms >= $6)) \
             AND p.jurisdiction IN ({}) \
             ORDER BY s.checked_at_ms, s.merchant_id, s.player_id LIMIT $7",
            placeholders(8, query.jurisdictions.len())
        );
        let (after_ms, after_merchant, after_player) = match query.after {
            Some(due) => (
                due.checked_at_ms,
                due.merchant_id.as_str(),
                due.player_id.as_str(),
            ),
            None => (i64::MIN, "", ""),
        };
        let mut select = sqlx::query(&sql)
            .bind(query.register)
            .bind(query.answered_before_ms)
            .bind(after_ms)
            .bind(after_merchant)
            .bind(after_player)
            .bind(query.active_since_ms)
            .bind(i64::from(query.limit));
        for jurisdiction in query.jurisdictions {
            select = select.bind(*jurisdiction);
        }
        select
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(|row| {
                Ok(RecheckDue {
                    merchant_id: stored_id(row, "merchant_id")?,
                    player_id: stored_id(row, "player_id")?,
                    checked_at_ms: row.try_get("checked_at_ms")?,
                })
            })
            .collect()
    }

    /// The player's checks, newest first, at most `limit`.
    pub async fn register_checks(
        &self,
        merchant_id: &str,
        player_id: &str,
        limit: u32,
    ) -> Result<Vec<RegisterCheckRecord>, StoreError> {
        sqlx::query(
            "SELECT id, merchant_id, player_id, register, account_id, reason, outcome, \
             register_reference, error, checked_at_ms FROM register_checks \
             WHERE merchant_id = $1 AND player_id = $2 \
             ORDER BY checked_at_ms DESC, id DESC LIMIT $3",
        )
        .bind(merchant_id)
        .bind(player_id)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(|row| {
            Ok(RegisterCheckRecord {
                id: row.try_get("id")?,
                merchant_id: row.try_get("merchant_id")?,
                player_id: row.try_get("player_id")?,
                register: row.try_get("register")?,
                account_id: row.try_get("account_id")?,
                reason: row.try_get("reason")?,
                outcome: stored_outcome(row, "outcome")?,
                register_reference: row.try_get("register_reference")?,
                error: row.try_get("error")?,
                checked_at_ms: row.try_get("checked_at_ms")?,
            })
        })
        .collect()
    }
}
