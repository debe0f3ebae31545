//! The job queue (ADR 24): one table of background work that any number of nodes claim with
//! leases. On PostgreSQL a claim locks the rows it takes with `FOR UPDATE SKIP LOCKED`, so
//! concurrent claimers take different jobs without waiting on each other; on SQLite the one
//! writer connection makes the same `UPDATE … RETURNING` atomic. A claim counts an attempt
//! and sets `lease_owner` + `lease_until_ms`; a running job whose lease ran out (its node
//! died) is claimed again by anyone. Every change of a claimed job is fenced by the owner and
//! the attempt it claimed, so a node that lost its lease cannot overwrite the new holder's
//! outcome.
//!
//! The policy (how long to back off, how many attempts) is the caller's; this module only
//! stores it and applies it in single statements.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, placeholders, Conn, Store, StoreError};

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting for `run_at_ms`.
    Queued,
    /// Leased by a node.
    Running,
    /// Done (a one-shot job; a recurring one is queued again instead).
    Succeeded,
    /// Failed its last attempt; waits for an operator's retry.
    Dead,
    /// Withdrawn before it ran.
    Cancelled,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state a stored name means.
    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob<'a> {
    /// Which handler runs it (`payout.send`, `payments.status_sync`, …).
    pub kind: &'a str,
    /// The handler's input, JSON text.
    pub payload: &'a str,
    /// At most one unfinished job of this kind with this key; `None`: no deduplication.
    pub dedupe_key: Option<&'a str>,
    /// Earliest start.
    pub run_at_ms: i64,
    /// Attempts before the job is dead.
    pub attempts_max: i64,
    /// Queued again this long after each success; `None` for a one-shot job.
    pub repeat_every_ms: Option<i64>,
}

/// A job as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: String,
    pub kind: String,
    /// JSON text.
    pub payload: String,
    pub dedupe_key: Option<String>,
    pub state: JobState,
    /// Runs started so far; the claim that returned this record counted itself.
    pub attempts: i64,
    pub attempts_max: i64,
    pub run_at_ms: i64,
    pub repeat_every_ms: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Why an operator's retry was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum RetryRefusal {
    /// No job with this id.
    NotFound,
    /// Only a dead job can be retried; this one is in the given state.
    NotDead(JobState),
    /// An unfinished job of the same kind and dedupe key exists (it would run twice).
    Duplicate,
}

/// Longest `last_error` kept, in characters: an error chain is for a person to read.
pub const LAST_ERROR_CHARS_MAX: usize = 2000;

const JOB_COLUMNS: &str = "id, kind, payload, dedupe_key, state, attempts, attempts_max, \
     run_at_ms, repeat_every_ms, lease_owner, lease_until_ms, last_error, created_at_ms, \
     updated_at_ms";

/// The unique index's predicate, repeated in `ON CONFLICT` so both databases pick it.
const UNFINISHED: &str = "state IN ('queued', 'running')";

fn job_from_row(row: &AnyRow) -> Result<JobRecord, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        dedupe_key: row.try_get("dedupe_key")?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("job state {state:?}")))?,
        attempts: row.try_get("attempts")?,
        attempts_max: row.try_get("attempts_max")?,
        run_at_ms: row.try_get("run_at_ms")?,
        repeat_every_ms: row.try_get("repeat_every_ms")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until_ms: row.try_get("lease_until_ms")?,
        last_error: row.try_get("last_error")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn truncated(error: &str) -> String {
    error.chars().take(LAST_ERROR_CHARS_MAX).collect()
}

impl Store {
    /// Enqueues `job` on `conn`, inside the caller's transaction when it has one (so that the
    /// job exists exactly when the change that needs it commits). Returns the new job's id,
    /// or `None` when an unfinished job of the same kind and dedupe key already exists.
    pub async fn enqueue_job_on(
        &self,
        conn: &mut Conn,
        job: &NewJob<'_>,
    ) -> Result<Option<String>, StoreError> {
        self.insert_job_on(conn, job, "DO NOTHING").await
    }

    /// Enqueues a coalescing `job` on `conn`, inside the caller's transaction (ADR 72): one
    /// unfinished job per dedupe key stands for every event since its run began. A job still
    /// queued takes the newer payload; a job running is marked to run again when it
    /// completes, since its run may have read the tables before this event committed.
    /// Returns the new job's id, or `None` when an unfinished job absorbed this one.
    pub async fn enqueue_coalescing_job_on(
        &self,
        conn: &mut Conn,
        job: &NewJob<'_>,
    ) -> Result<Option<String>, StoreError> {
        let absorb = "DO UPDATE SET payload = excluded.payload, \
                      updated_at_ms = excluded.updated_at_ms, \
                      run_again = CASE WHEN jobs.state = 'running' THEN 1 ELSE jobs.run_again END";
        self.insert_job_on(conn, job, absorb).await
    }

    /// Inserts `job`, or does `on_conflict` to the unfinished job with its kind and dedupe
    /// key; answers the new job's id, `None` when the existing one stood.
    async fn insert_job_on(
        &self,
        conn: &mut Conn,
        job: &NewJob<'_>,
        on_conflict: &str,
    ) -> Result<Option<String>, StoreError> {
        let id = kassa_core::ids::generate("job");
        let sql = format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, \
             NULL, NULL, NULL, $8, $8) ON CONFLICT (kind, dedupe_key) WHERE {UNFINISHED} \
             {on_conflict} RETURNING id"
        );
        let returned: Option<String> = sqlx::query_scalar(&sql)
            .bind(&id)
            .bind(job.kind)
            .bind(job.payload)
            .bind(job.dedupe_key)
            .bind(job.attempts_max)
            .bind(job.run_at_ms)
            .bind(job.repeat_every_ms)
            .bind(now_ms())
            .fetch_optional(conn)
            .await?;
        Ok(returned.filter(|returned| *returned == id))
    }

    /// Cancels the job of `kind` with `dedupe_key` on `conn`, inside the caller's transaction,
    /// if it has never started: `false` when it ran (even once, even if it failed and waits
    /// for its next attempt), runs, or never was. For a job whose first run already has an
    /// effect elsewhere (a reversal advice the host may have acted on).
    pub async fn cancel_unstarted_job_on(
        &self,
        conn: &mut Conn,
        kind: &str,
        dedupe_key: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', updated_at_ms = $1 \
             WHERE kind = $2 AND dedupe_key = $3 AND state = 'queued' AND attempts = 0",
        )
        .bind(now_ms())
        .bind(kind)
        .bind(dedupe_key)
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Cancels the queued (not yet running) job of `kind` with `dedupe_key`; `false` when there
    /// is none (it ran, runs, or never was).
    pub async fn cancel_queued_job(
        &self,
        kind: &str,
        dedupe_key: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', updated_at_ms = $1 \
             WHERE kind = $2 AND dedupe_key = $3 AND state = 'queued'",
        )
        .bind(now_ms())
        .bind(kind)
        .bind(dedupe_key)
        .execute(self.autocommit())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// [`enqueue_job_on`](Self::enqueue_job_on) in a statement of its own.
    pub async fn enqueue_job(&self, job: &NewJob<'_>) -> Result<Option<String>, StoreError> {
        let mut conn = self.writer().acquire().await?;
        self.enqueue_job_on(&mut conn, job).await
    }

    /// Makes sure the recurring job `kind` exists once across all nodes (its dedupe key is
    /// its kind), with this period and attempt budget: every node calls this at start, and
    /// again now and then so that a recurring job that went dead is replaced.
    pub async fn ensure_recurring_job(
        &self,
        kind: &str,
        repeat_every_ms: i64,
        attempts_max: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let sql = format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, '{{}}', $2, 'queued', 0, $3, $4, \
             $5, NULL, NULL, NULL, $4, $4) ON CONFLICT (kind, dedupe_key) WHERE {UNFINISHED} \
             DO UPDATE SET repeat_every_ms = $5, attempts_max = $3"
        );
        sqlx::query(&sql)
            .bind(kassa_core::ids::generate("job"))
            .bind(kind)
            .bind(attempts_max)
            .bind(now)
            .bind(repeat_every_ms)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// When the earliest job of `kinds` may be claimed (a queued job's `run_at_ms`, a running
    /// job's `lease_until_ms`), read without writing: an idle node asks this before it
    /// claims, so that polling takes no turn of SQLite's one writer.
    pub async fn next_job_due_ms(&self, kinds: &[&str]) -> Result<Option<i64>, StoreError> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT MIN(CASE WHEN state = 'queued' THEN run_at_ms ELSE lease_until_ms END) \
             FROM jobs WHERE state IN ('queued', 'running') AND kind IN ({})",
            placeholders(1, kinds.len())
        );
        let mut query = sqlx::query_scalar(&sql);
        for kind in kinds {
            query = query.bind(*kind);
        }
        Ok(query.fetch_one(self.reader()).await?)
    }

    /// Claims up to `limit` jobs of `kinds` that are due at `now_ms` (queued and due, or
    /// running with an expired lease and attempts left), for `owner` until `lease_until_ms`.
    /// Each claim counts an attempt. Oldest due first.
    pub async fn claim_jobs(
        &self,
        owner: &str,
        kinds: &[&str],
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        if kinds.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let skip_locked = match self.backend() {
            crate::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, \
             lease_until_ms = $2, updated_at_ms = $3 WHERE id IN (SELECT id FROM jobs \
             WHERE kind IN ({kinds}) AND ((state = 'queued' AND run_at_ms <= $3) \
             OR (state = 'running' AND lease_until_ms <= $3 AND attempts < attempts_max)) \
             ORDER BY run_at_ms, id LIMIT $4{skip_locked}) RETURNING {JOB_COLUMNS}",
            kinds = placeholders(5, kinds.len()),
        );
        let mut query = sqlx::query(&sql)
            .bind(owner)
            .bind(lease_until_ms)
            .bind(now_ms)
            .bind(i64::from(limit));
        for kind in kinds {
            query = query.bind(*kind);
        }
        let rows = query.fetch_all(self.writer()).await?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by(|a, b| (a.run_at_ms, &a.id).cmp(&(b.run_at_ms, &b.id)));
        Ok(jobs)
    }

    /// Running jobs whose lease ran out on their last attempt become dead (their node died
    /// during every attempt); returns how many.
    pub async fn reap_expired_jobs(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_until_ms = NULL, \
             last_error = COALESCE(last_error || ' / ', '') || 'lease expired on the last attempt', \
             updated_at_ms = $1 WHERE state = 'running' AND lease_until_ms <= $1 \
             AND attempts >= attempts_max",
        )
        .bind(now_ms)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected())
    }

    /// Moves the lease of a job still held by `owner` on `attempt` to `lease_until_ms`;
    /// `false` when the lease was lost (another node took the job over).
    pub async fn extend_job_lease(
        &self,
        job_id: &str,
        owner: &str,
        attempt: i64,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until_ms = $1, updated_at_ms = $2 WHERE id = $3 \
             AND state = 'running' AND lease_owner = $4 AND attempts = $5",
        )
        .bind(lease_until_ms)
        .bind(now_ms())
        .bind(job_id)
        .bind(owner)
        .bind(attempt)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a success of the claim `(owner, attempt)`: a one-shot job is `succeeded`, a
    /// recurring one is queued again `repeat_every_ms` after `now_ms` with its attempts
    /// reset. `false` when the lease was lost.
    pub async fn complete_job(
        &self,
        job_id: &str,
        owner: &str,
        attempt: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        // A coalescing job asked to run again during its run is due again at once (ADR 72).
        let done = sqlx::query(
            "UPDATE jobs SET \
             state = CASE WHEN repeat_every_ms IS NULL AND run_again = 0 THEN 'succeeded' \
                          ELSE 'queued' END, \
             run_at_ms = CASE WHEN run_again <> 0 THEN $1 \
                              WHEN repeat_every_ms IS NULL THEN run_at_ms \
                              ELSE $1 + repeat_every_ms END, \
             attempts = CASE WHEN repeat_every_ms IS NULL AND run_again = 0 THEN attempts \
                             ELSE 0 END, \
             run_again = 0, lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $1 \
             WHERE id = $2 AND state = 'running' AND lease_owner = $3 AND attempts = $4",
        )
        .bind(now_ms)
        .bind(job_id)
        .bind(owner)
        .bind(attempt)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failure of the claim `(owner, attempt)` with its error: queued again at
    /// `retry_at_ms` while attempts are left, dead (the error kept) after the last one.
    /// Returns the state the job is now in, or `None` when the lease was lost.
    pub async fn fail_job(
        &self,
        job_id: &str,
        owner: &str,
        attempt: i64,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<Option<JobState>, StoreError> {
        let state: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET \
             state = CASE WHEN attempts >= attempts_max THEN 'dead' ELSE 'queued' END, \
             run_at_ms = CASE WHEN attempts >= attempts_max THEN run_at_ms ELSE $1 END, \
             last_error = $2, lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $3 \
             WHERE id = $4 AND state = 'running' AND lease_owner = $5 AND attempts = $6 \
             RETURNING state",
        )
        .bind(retry_at_ms)
        .bind(truncated(error))
        .bind(now_ms())
        .bind(job_id)
        .bind(owner)
        .bind(attempt)
        .fetch_optional(self.writer())
        .await?;
        state
            .map(|s| JobState::parse(&s).ok_or_else(|| StoreError::Corrupt(s)))
            .transpose()
    }

    /// Gives back the claim `(owner, attempt)` without an outcome (the node is stopping):
    /// the job is queued again at once for any node. The attempt still counts, so a job that
    /// never finishes before a stop cannot run forever. `false` when the lease was lost.
    pub async fn release_job(
        &self,
        job_id: &str,
        owner: &str,
        attempt: i64,
    ) -> Result<bool, StoreError> {
        self.requeue_claim(job_id, owner, attempt, now_ms(), 0)
            .await
    }

    /// Gives back the claim `(owner, attempt)` to run again at `run_at_ms` without counting
    /// the attempt: the handler found it could not start yet (a busy endpoint), which is not
    /// a failure. `false` when the lease was lost.
    pub async fn defer_job(
        &self,
        job_id: &str,
        owner: &str,
        attempt: i64,
        run_at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.requeue_claim(job_id, owner, attempt, run_at_ms, 1)
            .await
    }

    /// Queues a claimed job again at `run_at_ms`, taking `uncounted` attempts back.
    async fn requeue_claim(
        &self,
        job_id: &str,
        owner: &str,
        attempt: i64,
        run_at_ms: i64,
        uncounted: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = attempts - $1, run_at_ms = $2, \
             lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $3 \
             WHERE id = $4 AND state = 'running' AND lease_owner = $5 AND attempts = $6",
        )
        .bind(uncounted)
        .bind(run_at_ms)
        .bind(now_ms())
        .bind(job_id)
        .bind(owner)
        .bind(attempt)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// An operator's retry of a dead job: queued now with a fresh attempt budget. The last
    /// error stays until the next attempt replaces it.
    pub async fn retry_dead_job(
        &self,
        job_id: &str,
    ) -> Result<Result<JobRecord, RetryRefusal>, StoreError> {
        let now = now_ms();
        let sql = format!(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at_ms = $1, updated_at_ms = $1 \
             WHERE id = $2 AND state = 'dead' RETURNING {JOB_COLUMNS}"
        );
        let updated = sqlx::query(&sql)
            .bind(now)
            .bind(job_id)
            .fetch_optional(self.writer())
            .await;
        match updated {
            Ok(Some(row)) => return Ok(Ok(job_from_row(&row)?)),
            Ok(None) => {}
            Err(error) => {
                let error = StoreError::from(error);
                if crate::is_unique_violation(&error) {
                    return Ok(Err(RetryRefusal::Duplicate));
                }
                return Err(error);
            }
        }
        Ok(Err(match self.get_job(job_id).await? {
            None => RetryRefusal::NotFound,
            Some(job) => RetryRefusal::NotDead(job.state),
        }))
    }

    /// A job by id.
    pub async fn get_job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(job_id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Jobs newest first, filtered by state and/or kind, before the `(created_at_ms, id)`
    /// cursor.
    pub async fn list_jobs(
        &self,
        state: Option<JobState>,
        kind: Option<&str>,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let (before_ms, before_id) = before.unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 = '' OR state = $1) \
             AND ($2 = '' OR kind = $2) \
             AND (created_at_ms < $3 OR (created_at_ms = $3 AND id < $4)) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(state.map(JobState::as_str).unwrap_or(""))
            .bind(kind.unwrap_or(""))
            .bind(before_ms)
            .bind(before_id)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Jobs of `kind` not finished yet (queued or running): a queue's backlog.
    pub async fn unfinished_job_count(&self, kind: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE kind = $1 AND state IN ('queued', 'running')",
        )
        .bind(kind)
        .fetch_one(self.reader())
        .await?)
    }

    /// Deletes succeeded and cancelled jobs last changed before `before_ms`; dead jobs stay
    /// until an operator has seen them. Returns how many went.
    pub async fn purge_finished_jobs(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM jobs WHERE state IN ('succeeded', 'cancelled') AND updated_at_ms < $1",
        )
        .bind(before_ms)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected())
    }

    /// Ids of payouts waiting to be sent whose next attempt is due at `now_ms` and that have
    /// no unfinished `job_kind` job yet, oldest first: what the payout scheduler enqueues.
    pub async fn payouts_due_without_job(
        &self,
        job_kind: &str,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM payouts p WHERE status IN ('approved', 'deferred') \
             AND (next_attempt_at_ms IS NULL OR next_attempt_at_ms <= $1) \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind = $2 AND j.dedupe_key = p.id \
                 AND j.state IN ('queued', 'running')) \
             ORDER BY created_at_ms LIMIT $3",
        )
        .bind(now_ms)
        .bind(job_kind)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?)
    }
}

/// Whether `error` is a unique-constraint violation (PostgreSQL 23505; SQLite 2067 for a
/// UNIQUE index, 1555 for a PRIMARY KEY).
pub(crate) fn is_unique_violation(error: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(db)) = error else {
        return false;
    };
    matches!(db.code().as_deref(), Some("23505" | "2067" | "1555"))
}
