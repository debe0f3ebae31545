//! Wager, loss and session-time limits on disk (ADR 77): a limited player's
//! [`PlayState`] lives in the `play_state` column of the player's cash account, read with
//! the account wherever the ledger locks it and written back in the same transaction as the
//! postings it counts. Every other account holds NULL there, so a batch without a limited
//! player does exactly what it did before.

use kassa_core::ids::{MerchantId, PlayerId};
use kassa_core::ledger::LedgerView;
use kassa_core::ledger::{AccountId, Request};
use kassa_core::play_limits::{PlayGate, PlayRules, PlayState};
use sqlx::Row;

use crate::{Conn, Store, StoreError, Tx};

/// The wallet calls a limit counts, as stored: bets and wins (a credit that enrols a deposit
/// names its payment and is no win), posted and not rolled back.
const PLAYED: &str = "label IN ('debit', 'credit') AND reference IS NULL \
     AND status = 'posted'";

/// How far back a limit set for the first time counts the player's play: the month
/// window and a day more, for the bucket it begins in.
const HISTORY_MS: i64 = 31 * 24 * 3_600_000;

/// How far back the session under way is looked for: the longest session limit.
const SESSION_HISTORY_MS: i64 = 24 * 3_600_000;

/// A gate over the states stored on the batch's accounts (those with one), by account.
pub(crate) fn gate_over(
    rules: PlayRules,
    stored: impl IntoIterator<Item = (AccountId, String)>,
) -> Result<PlayGate, StoreError> {
    let states = stored
        .into_iter()
        .map(|(id, text)| Ok((id, decode(&text)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(PlayGate::new(rules, states))
}

/// Applies `requests` through `view` and `gate`, in order; answers the outcomes and the
/// play states the batch changed, encoded, by account.
pub(crate) fn decide(
    view: &mut LedgerView,
    gate: PlayGate,
    requests: &[Request],
) -> (Vec<kassa_core::ledger::Outcome>, Vec<(AccountId, String)>) {
    let mut gate = gate;
    let outcomes = requests.iter().map(|r| gate.apply(view, r)).collect();
    let changes = gate
        .into_changes()
        .into_iter()
        .map(|(id, state)| (id, state.encode()))
        .collect();
    (outcomes, changes)
}

fn decode(text: &str) -> Result<PlayState, StoreError> {
    PlayState::decode(text).map_err(|error| StoreError::Corrupt(error.to_string()))
}

impl Store {
    /// Locks the player's cash account for the rest of `tx` (PostgreSQL; SQLite's write
    /// transactions run one at a time) and reads its play state: a limit change and the
    /// wallet writer's batches of the player take their turns on that one row.
    pub async fn lock_play_state(
        &self,
        tx: &mut Tx,
        cash_account: AccountId,
    ) -> Result<Option<PlayState>, StoreError> {
        let sql = format!(
            "SELECT play_state FROM ledger_accounts WHERE id = $1{}",
            self.lock_clause()
        );
        let stored: Option<String> = sqlx::query_scalar(&sql)
            .bind(cash_account)
            .fetch_optional(&mut **tx)
            .await?
            .flatten();
        stored.as_deref().map(decode).transpose()
    }

    /// The player's play state as last stored, read without a lock (for showing usage; the
    /// wallet writer's decisions read it under [`Store::lock_play_state`]).
    pub async fn play_state(
        &self,
        cash_account: AccountId,
    ) -> Result<Option<PlayState>, StoreError> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT play_state FROM ledger_accounts WHERE id = $1")
                .bind(cash_account)
                .fetch_optional(self.reader())
                .await?
                .flatten();
        stored.as_deref().map(decode).transpose()
    }

    /// Stores the player's play state (`None`: the player has no play limit left).
    pub async fn put_play_state(
        &self,
        tx: &mut Tx,
        cash_account: AccountId,
        state: Option<&PlayState>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE ledger_accounts SET play_state = $1 WHERE id = $2")
            .bind(state.map(PlayState::encode))
            .bind(cash_account)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// In `tx`, the player's play before `rules.now_ms`, for a first play limit to count:
    /// the bets and wins of the last 31 days per hour `(hour start, staked, won)`, and the
    /// minutes of the last day with a wallet call.
    pub async fn play_history(
        &self,
        tx: &mut Tx,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        rules: PlayRules,
    ) -> Result<(Vec<(i64, i64, i64)>, Vec<i64>), StoreError> {
        let sql = format!(
            "SELECT (created_at_ms / 3600000) * 3600000 AS hour_ms, \
             CAST(COALESCE(SUM(CASE WHEN label = 'debit' THEN amount_minor END), 0) AS BIGINT) AS staked, \
             CAST(COALESCE(SUM(CASE WHEN label = 'credit' THEN amount_minor END), 0) AS BIGINT) AS won \
             FROM ledger_entries WHERE player_id = $1 AND merchant_id = $2 \
             AND created_at_ms > $3 AND {PLAYED} GROUP BY (created_at_ms / 3600000) * 3600000"
        );
        let hourly = sqlx::query(&sql)
            .bind(player_id.as_str())
            .bind(merchant_id.as_str())
            .bind(rules.now_ms - HISTORY_MS)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let sql = format!(
            "SELECT DISTINCT (created_at_ms / 60000) * 60000 FROM ledger_entries \
             WHERE player_id = $1 AND merchant_id = $2 AND created_at_ms > $3 AND {PLAYED}"
        );
        let minutes = sqlx::query_scalar(&sql)
            .bind(player_id.as_str())
            .bind(merchant_id.as_str())
            .bind(rules.now_ms - SESSION_HISTORY_MS)
            .fetch_all(&mut **tx)
            .await?;
        Ok((hourly, minutes))
    }

    /// When the bets `txn_ids` of the merchant were posted, for the rollbacks that take
    /// their stakes back out of the buckets they were counted in.
    pub(crate) async fn bet_times(
        &self,
        conn: &mut Conn,
        merchant_id: &str,
        txn_ids: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut times = Vec::with_capacity(txn_ids.len());
        for txn_id in txn_ids {
            let at: Option<i64> = sqlx::query_scalar(
                "SELECT created_at_ms FROM ledger_entries WHERE merchant_id = $1 AND txn_id = $2",
            )
            .bind(merchant_id)
            .bind(*txn_id)
            .fetch_optional(&mut *conn)
            .await?;
            times.extend(at.map(|at| ((*txn_id).to_string(), at)));
        }
        Ok(times)
    }

    /// Writes the play states a batch changed, in its transaction.
    pub(crate) async fn write_play_states(
        &self,
        conn: &mut Conn,
        changes: &[(AccountId, String)],
    ) -> Result<(), StoreError> {
        for (id, state) in changes {
            sqlx::query("UPDATE ledger_accounts SET play_state = $1 WHERE id = $2")
                .bind(state)
                .bind(*id)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}
