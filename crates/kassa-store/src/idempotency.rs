//! `Idempotency-Key` records: claimed before a request runs, completed with its response in
//! the same transaction as its effect, replayed to every repeat for at least the retention.
//!
//! A request whose effect takes more than one transaction (a hold, then a provider call,
//! then the provider's answer) stages an answer with its first effect and completes it with
//! the final answer in its last: a claim left behind with a staged answer (a node stopped
//! between the two) is answered with it, never run again.

use sqlx::Row;

use crate::{now_ms, Conn, Store, StoreError};

/// What a claim on a key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours; run the request and complete or release it.
    Claimed,
    /// The key already has a response for the same request: send it again.
    Replay { status: u16, body: String },
    /// The key was used for a different request.
    Reused,
    /// The first request with this key is still running.
    InUse,
}

impl Store {
    /// Claims `key` for a request whose content hashes to `request_hash`. A claim older than
    /// `stale_after_ms` whose request never finished (a crashed node) may be taken over:
    /// its effect, if any, committed together with its response, so none happened.
    pub async fn claim_idempotency_key(
        &self,
        merchant_id: &str,
        key: &str,
        request_hash: &str,
        stale_after_ms: i64,
    ) -> Result<Claim, StoreError> {
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_hash, state, \
             locked_at_ms, created_at_ms) VALUES ($1, $2, $3, 'in_progress', $4, $4) \
             ON CONFLICT (merchant_id, idempotency_key) DO NOTHING",
        )
        .bind(merchant_id)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .execute(self.writer())
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Claimed);
        }
        let row = sqlx::query(
            "SELECT request_hash, state, response_status, response_body, locked_at_ms \
             FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = $2",
        )
        .bind(merchant_id)
        .bind(key)
        .fetch_optional(self.writer())
        .await?;
        let Some(row) = row else {
            // Released between our insert and select: the caller may simply retry.
            return Ok(Claim::InUse);
        };
        let stored_hash: String = row.try_get("request_hash")?;
        if stored_hash != request_hash {
            return Ok(Claim::Reused);
        }
        let state: String = row.try_get("state")?;
        let status: Option<i64> = row.try_get("response_status")?;
        let body: Option<String> = row.try_get("response_body")?;
        if state == "done" {
            return Ok(Claim::Replay {
                status: status.unwrap_or(500) as u16,
                body: body.unwrap_or_default(),
            });
        }
        let locked_at_ms: i64 = row.try_get("locked_at_ms")?;
        if now - locked_at_ms < stale_after_ms {
            return Ok(Claim::InUse);
        }
        if let (Some(status), Some(body)) = (status, body) {
            // A stopped request whose first effect committed: its staged answer is final.
            self.release_idempotency_key(merchant_id, key).await?;
            return Ok(Claim::Replay {
                status: status as u16,
                body,
            });
        }
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET locked_at_ms = $1 WHERE merchant_id = $2 \
             AND idempotency_key = $3 AND state = 'in_progress' AND locked_at_ms = $4",
        )
        .bind(now)
        .bind(merchant_id)
        .bind(key)
        .bind(locked_at_ms)
        .execute(self.writer())
        .await?;
        Ok(if taken.rows_affected() == 1 {
            Claim::Claimed
        } else {
            Claim::InUse
        })
    }

    /// Stores the response of a claimed key outside any effect (the request changed nothing).
    pub async fn complete_idempotency_key(
        &self,
        merchant_id: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        complete_idempotency_key(&mut tx, merchant_id, key, status, body).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives a claimed key back unanswered, so the client may retry it (validation failure,
    /// internal error) — unless the request staged an answer with an effect: then that
    /// answer becomes final, since running the request again would repeat the effect.
    pub async fn release_idempotency_key(
        &self,
        merchant_id: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET state = 'done' WHERE merchant_id = $1 \
             AND idempotency_key = $2 AND state = 'in_progress' AND response_body IS NOT NULL",
        )
        .bind(merchant_id)
        .bind(key)
        .execute(self.writer())
        .await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = $2 \
             AND state = 'in_progress' AND response_body IS NULL",
        )
        .bind(merchant_id)
        .bind(key)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Deletes finished keys created before `before_ms`; returns how many.
    pub async fn purge_idempotency_keys(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at_ms < $1 AND state = 'done'")
                .bind(before_ms)
                .execute(self.writer())
                .await?;
        Ok(done.rows_affected())
    }
}

/// Stores the response of a claimed key inside the transaction that makes its effect, so
/// that the effect and its remembered answer commit together or not at all.
pub async fn complete_idempotency_key(
    conn: &mut Conn,
    merchant_id: &str,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'done', response_status = $1, response_body = $2 \
         WHERE merchant_id = $3 AND idempotency_key = $4",
    )
    .bind(i64::from(status))
    .bind(body)
    .bind(merchant_id)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stores a provisional answer with a request's first effect, inside that effect's
/// transaction; the key stays claimed (a repeat meanwhile gets `in use`) until
/// [`complete_idempotency_key`] stores the final answer or the claim goes stale.
pub async fn stage_idempotency_answer(
    conn: &mut Conn,
    merchant_id: &str,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = $1, response_body = $2 \
         WHERE merchant_id = $3 AND idempotency_key = $4 AND state = 'in_progress'",
    )
    .bind(i64::from(status))
    .bind(body)
    .bind(merchant_id)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Gives a claimed key back inside the transaction that found the request failed without
/// an effect worth answering (a provider that did not answer), so a retry starts afresh.
pub async fn release_idempotency_key_in(
    conn: &mut Conn,
    merchant_id: &str,
    key: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = $2 \
         AND state = 'in_progress'",
    )
    .bind(merchant_id)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
