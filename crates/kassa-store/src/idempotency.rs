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
        .execute(self.autocommit())
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Claimed);
        }
        let locked_at_ms = match self
            .judge_claim(merchant_id, key, request_hash, now, stale_after_ms)
            .await?
        {
            Judged::Answer(claim) => return Ok(claim),
            Judged::StagedAnswer(claim) => {
                // A stopped request whose first effect committed: its staged answer is final.
                self.release_idempotency_key(merchant_id, key).await?;
                return Ok(claim);
            }
            Judged::Absent => return Ok(Claim::InUse), // released between insert and select
            Judged::Stale { locked_at_ms } => locked_at_ms,
        };
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET locked_at_ms = $1 WHERE merchant_id = $2 \
             AND idempotency_key = $3 AND state = 'in_progress' AND locked_at_ms = $4",
        )
        .bind(now)
        .bind(merchant_id)
        .bind(key)
        .bind(locked_at_ms)
        .execute(self.autocommit())
        .await?;
        Ok(if taken.rows_affected() == 1 {
            Claim::Claimed
        } else {
            Claim::InUse
        })
    }

    /// What a claim on `key` would find, without writing: [`Claim::Claimed`] when the key is
    /// free (or left stale by a stopped request with no effect), so that the request may
    /// claim it inside its one transaction ([`claim_idempotency_key_answered_in`]).
    pub async fn peek_idempotency_key(
        &self,
        merchant_id: &str,
        key: &str,
        request_hash: &str,
        stale_after_ms: i64,
    ) -> Result<Claim, StoreError> {
        let now = now_ms();
        Ok(
            match self
                .judge_claim(merchant_id, key, request_hash, now, stale_after_ms)
                .await?
            {
                Judged::Answer(claim) | Judged::StagedAnswer(claim) => claim,
                Judged::Absent | Judged::Stale { .. } => Claim::Claimed,
            },
        )
    }

    async fn judge_claim(
        &self,
        merchant_id: &str,
        key: &str,
        request_hash: &str,
        now: i64,
        stale_after_ms: i64,
    ) -> Result<Judged, StoreError> {
        let row = sqlx::query(
            "SELECT request_hash, state, response_status, response_body, locked_at_ms \
             FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = $2",
        )
        .bind(merchant_id)
        .bind(key)
        .fetch_optional(self.writer())
        .await?;
        let Some(row) = row else {
            return Ok(Judged::Absent);
        };
        let stored_hash: String = row.try_get("request_hash")?;
        if stored_hash != request_hash {
            return Ok(Judged::Answer(Claim::Reused));
        }
        let state: String = row.try_get("state")?;
        let status: Option<i64> = row.try_get("response_status")?;
        let body: Option<String> = row.try_get("response_body")?;
        if state == "done" {
            return Ok(Judged::Answer(Claim::Replay {
                status: status.unwrap_or(500) as u16,
                body: body.unwrap_or_default(),
            }));
        }
        let locked_at_ms: i64 = row.try_get("locked_at_ms")?;
        if now - locked_at_ms < stale_after_ms {
            return Ok(Judged::Answer(Claim::InUse));
        }
        if let (Some(status), Some(body)) = (status, body) {
            return Ok(Judged::StagedAnswer(Claim::Replay {
                status: status as u16,
                body,
            }));
        }
        Ok(Judged::Stale { locked_at_ms })
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
        .execute(self.autocommit())
        .await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = $2 \
             AND state = 'in_progress' AND response_body IS NULL",
        )
        .bind(merchant_id)
        .bind(key)
        .execute(self.autocommit())
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

/// What the row of a key says to a new claim.
enum Judged {
    /// No row.
    Absent,
    /// The answer for the new claim (replay, reused, in use).
    Answer(Claim),
    /// A stale claim whose request staged an answer with an effect: that answer is final.
    StagedAnswer(Claim),
    /// A stale claim with no effect: it may be taken over.
    Stale { locked_at_ms: i64 },
}

/// Claims `key` with its final answer inside the transaction of the request's one effect
/// (ADR 0034), in one statement: inserts the answered key, or takes over a claim left by a
/// stopped request with no effect (locked before `stale_before_ms`). False when another
/// request holds or answered the key (a concurrent claim waits for this transaction, then
/// finds the key answered); the caller then rolls back and answers as
/// [`Store::claim_idempotency_key`] says.
pub async fn claim_idempotency_key_answered_in(
    conn: &mut Conn,
    (merchant_id, key, request_hash): (&str, &str, &str),
    stale_before_ms: i64,
    status: u16,
    body: &str,
) -> Result<bool, StoreError> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_hash, state, \
         response_status, response_body, locked_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, 'done', $6, $7, $4, $4) \
         ON CONFLICT (merchant_id, idempotency_key) DO UPDATE SET state = 'done', \
         response_status = $6, response_body = $7, locked_at_ms = $4 \
         WHERE idempotency_keys.state = 'in_progress' AND idempotency_keys.response_body IS NULL \
         AND idempotency_keys.request_hash = $3 AND idempotency_keys.locked_at_ms < $5",
    )
    .bind(merchant_id)
    .bind(key)
    .bind(request_hash)
    .bind(now_ms())
    .bind(stale_before_ms)
    .bind(i64::from(status))
    .bind(body)
    .execute(&mut *conn)
    .await?;
    Ok(claimed.rows_affected() == 1)
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

impl Store {
    /// The deployment's secret `name` (ADR 0034), made from `fresh` by the first node that
    /// asks and read by every later one, so all nodes sharing the database agree on it.
    pub async fn deployment_secret(&self, name: &str, fresh: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO deployment_secrets (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(self.autocommit())
        .await?;
        let row = sqlx::query("SELECT value FROM deployment_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(self.writer())
            .await?;
        Ok(row.try_get("value")?)
    }
}
