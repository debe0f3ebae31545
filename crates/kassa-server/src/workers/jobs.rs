//! The job runtime of a node (ADR 24): one loop that claims due jobs up to
//! `jobs.concurrency_max` at a time, runs each with its handler ([`kinds::run`]) while a
//! heartbeat renews its lease, and records the outcome — success, a retry after an
//! exponential backoff with full jitter, or dead after the last attempt. It stops with the
//! server: it claims nothing more, waits `jobs.shutdown_grace_ms` for running jobs, and hands
//! the rest back to the queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kassa_store::jobs::{JobRecord, JobState};
use kassa_store::now_ms;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::JobsConfig;
use crate::workers::kinds::{self, JobError};
use crate::workers::outbox::OutboxPublisher;
use crate::AppState;

/// How often a node re-creates missing recurring jobs (one that went dead is replaced),
/// declares jobs dead whose lease ran out on their last attempt, and purges old finished jobs.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(60);

/// The longest wait, in ms, before retry `attempt` (1 = after the first failure):
/// `min(cap, base * 2^(attempt-1))`.
pub fn backoff_ceiling_ms(attempt: i64, base_ms: u64, cap_ms: u64) -> u64 {
    let doublings = (attempt.max(1) - 1).min(63) as u32;
    base_ms.saturating_mul(1u64 << doublings).min(cap_ms)
}

/// The wait before retry `attempt`: uniform in `[0, ceiling]` ("full jitter"), so that jobs
/// that failed together (a provider outage) do not come back together.
pub fn backoff_delay_ms(attempt: i64, base_ms: u64, cap_ms: u64, rng: &mut impl Rng) -> u64 {
    rng.gen_range(0..=backoff_ceiling_ms(attempt, base_ms, cap_ms))
}

/// Claims in flight on this node: job id → the attempt it claimed.
type InFlight = Arc<Mutex<HashMap<String, i64>>>;

/// One node's job runtime.
#[derive(Clone)]
struct Runtime {
    state: AppState,
    publisher: Arc<dyn OutboxPublisher>,
    /// This node's name on its leases; new at every start, so a restarted node does not
    /// mistake its previous life's leases for its own.
    owner: String,
    config: JobsConfig,
    /// The kinds this node claims ([`kinds::claimed_kinds`]).
    kinds: Vec<&'static str>,
    in_flight: InFlight,
}

/// Starts the runtime; the handle ends once it has stopped after `stop` turned `true`.
pub fn spawn(
    state: AppState,
    publisher: Arc<dyn OutboxPublisher>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let runtime = Runtime {
        config: state.config.jobs.clone(),
        kinds: kinds::claimed_kinds(&state),
        state,
        publisher,
        owner: kassa_core::ids::generate("node"),
        in_flight: Arc::default(),
    };
    tokio::spawn(runtime.run(stop))
}

impl Runtime {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        tracing::info!(owner = %self.owner, kinds = ?self.kinds, "job runtime started");
        let mut running = JoinSet::new();
        let mut housekeeping_at = Instant::now();
        self.housekeeping().await;
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        loop {
            if *stop.borrow() {
                break;
            }
            if housekeeping_at.elapsed() >= HOUSEKEEPING_PERIOD {
                housekeeping_at = Instant::now();
                self.housekeeping().await;
            }
            let free = self.config.concurrency_max as usize - running.len();
            let wait = match self.claim(free).await {
                Ok((jobs, wait)) => {
                    for job in jobs {
                        running.spawn(self.clone().execute(job));
                    }
                    wait.min(poll)
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "claiming jobs failed");
                    poll
                }
            };
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.drain(running).await;
    }

    /// Claims up to `free` due jobs; also says how long to wait before looking again. Looks
    /// on a reader first, so an idle node's polling writes nothing.
    async fn claim(&self, free: usize) -> Result<(Vec<JobRecord>, Duration), JobError> {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        if free == 0 {
            return Ok((Vec::new(), poll));
        }
        let now = now_ms();
        let Some(due_ms) = self.state.store.next_job_due_ms(&self.kinds).await? else {
            return Ok((Vec::new(), poll));
        };
        if due_ms > now {
            let until_due = Duration::from_millis((due_ms - now) as u64);
            return Ok((Vec::new(), until_due));
        }
        let jobs = self
            .state
            .store
            .claim_jobs(
                &self.owner,
                &self.kinds,
                now,
                now + self.config.lease_ms,
                free as u32,
            )
            .await?;
        if jobs.is_empty() {
            // Due but not claimable: a lease that ran out on its last attempt. Declare it
            // dead now rather than finding it due at every poll until the housekeeping.
            self.state.store.reap_expired_jobs(now).await?;
        }
        let mut in_flight = lock(&self.in_flight);
        for job in &jobs {
            in_flight.insert(job.id.clone(), job.attempts);
        }
        Ok((jobs, poll))
    }

    /// Runs one job with its lease renewed, and records the outcome.
    async fn execute(self, job: JobRecord) {
        let timeout = Duration::from_millis(self.config.run_timeout_ms);
        let work = tokio::time::timeout(timeout, kinds::run(&self.state, &self.publisher, &job));
        let outcome = tokio::select! {
            outcome = work => Some(outcome),
            () = self.heartbeat(&job) => None,
        };
        let recorded = match outcome {
            None => {
                tracing::warn!(job_id = %job.id, kind = %job.kind, "job lease lost to another node; its run was abandoned");
                Ok(())
            }
            Some(Ok(Ok(()))) => self.succeeded(&job).await,
            Some(Ok(Err(JobError::Busy { run_at_ms }))) => self.deferred(&job, run_at_ms).await,
            Some(Ok(Err(JobError::RetryAt { retry_at_ms, error }))) => {
                self.failed_until(&job, &error, retry_at_ms).await
            }
            Some(Ok(Err(error))) => self.failed(&job, &error_chain(&error)).await,
            Some(Err(_)) => {
                let error = format!("timed out after {} ms", self.config.run_timeout_ms);
                self.failed(&job, &error).await
            }
        };
        if let Err(error) = recorded {
            // The lease runs out and the job runs again: handlers are safe to repeat.
            tracing::warn!(job_id = %job.id, error = %error_chain(&error), "recording a job's outcome failed");
        }
        lock(&self.in_flight).remove(&job.id);
    }

    /// Renews the lease every third of `lease_ms`; returns only when the lease is lost.
    async fn heartbeat(&self, job: &JobRecord) {
        let period = Duration::from_millis((self.config.lease_ms / 3).max(1) as u64);
        loop {
            tokio::time::sleep(period).await;
            let until = now_ms() + self.config.lease_ms;
            let store = &self.state.store;
            match store
                .extend_job_lease(&job.id, &self.owner, job.attempts, until)
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(job_id = %job.id, error = %error_chain(&error), "renewing a job lease failed");
                }
            }
        }
    }

    async fn succeeded(&self, job: &JobRecord) -> Result<(), kassa_store::StoreError> {
        let store = &self.state.store;
        if !store
            .complete_job(&job.id, &self.owner, job.attempts, now_ms())
            .await?
        {
            tracing::warn!(job_id = %job.id, "job finished after its lease was lost");
        }
        Ok(())
    }

    async fn failed(&self, job: &JobRecord, error: &str) -> Result<(), kassa_store::StoreError> {
        let delay_ms = backoff_delay_ms(
            job.attempts,
            self.config.backoff_base_ms,
            self.config.backoff_cap_ms,
            &mut rand::thread_rng(),
        );
        self.failed_until(job, error, now_ms() + delay_ms as i64)
            .await
    }

    /// The job could not start yet; it runs again at `run_at_ms`, the attempt not counted.
    async fn deferred(
        &self,
        job: &JobRecord,
        run_at_ms: i64,
    ) -> Result<(), kassa_store::StoreError> {
        let store = &self.state.store;
        if !store
            .defer_job(&job.id, &self.owner, job.attempts, run_at_ms)
            .await?
        {
            tracing::warn!(job_id = %job.id, "job deferred after its lease was lost");
        }
        Ok(())
    }

    /// A failed attempt, retried at `retry_at_ms` while attempts are left.
    async fn failed_until(
        &self,
        job: &JobRecord,
        error: &str,
        retry_at_ms: i64,
    ) -> Result<(), kassa_store::StoreError> {
        let delay_ms = retry_at_ms - now_ms();
        let state = self
            .state
            .store
            .fail_job(&job.id, &self.owner, job.attempts, error, retry_at_ms)
            .await?;
        match state {
            Some(JobState::Dead) => {
                tracing::error!(job_id = %job.id, kind = %job.kind, attempts = job.attempts, error, "job is dead after its last attempt")
            }
            Some(_) => {
                tracing::warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, delay_ms, error, "job failed; retrying")
            }
            None => tracing::warn!(job_id = %job.id, "job failed after its lease was lost"),
        }
        Ok(())
    }

    /// Recurring jobs exist, expired last attempts are dead, old finished jobs are gone.
    async fn housekeeping(&self) {
        let store = &self.state.store;
        for (kind, period_ms) in kinds::recurring(&self.state) {
            if let Err(error) = store
                .ensure_recurring_job(kind, period_ms, self.config.attempts_max)
                .await
            {
                tracing::warn!(kind, error = %error_chain(&error), "cannot ensure a recurring job");
            }
        }
        match store.reap_expired_jobs(now_ms()).await {
            Ok(0) => {}
            Ok(count) => {
                tracing::error!(count, "jobs dead: their lease ran out on the last attempt")
            }
            Err(error) => tracing::warn!(error = %error_chain(&error), "reaping jobs failed"),
        }
        let retention_ms = i64::from(self.config.finished_retention_hours) * 3_600_000;
        match store.purge_finished_jobs(now_ms() - retention_ms).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "purged finished jobs"),
            Err(error) => tracing::warn!(error = %error_chain(&error), "purging jobs failed"),
        }
    }

    /// Waits for running jobs up to the grace period, then abandons the rest and hands their
    /// claims back, so that another node (or this one after its restart) runs them at once.
    async fn drain(&self, mut running: JoinSet<()>) {
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        let finished = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
        let abandoned: Vec<(String, i64)> = lock(&self.in_flight).drain().collect();
        for (job_id, attempt) in abandoned {
            match self
                .state
                .store
                .release_job(&job_id, &self.owner, attempt)
                .await
            {
                Ok(_) => tracing::info!(job_id, "running job handed back at shutdown"),
                Err(error) => {
                    tracing::warn!(job_id, error = %error_chain(&error), "handing a job back failed; its lease will run out")
                }
            }
        }
        tracing::info!(owner = %self.owner, "job runtime stopped");
    }
}

fn lock(in_flight: &InFlight) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
    // Inserts and removes only: a panic cannot leave the map half-changed.
    in_flight.lock().unwrap_or_else(|e| e.into_inner())
}

/// An error with its causes, `outer: inner: …`, for `last_error` and the log.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_backoff_ceiling_doubles_per_attempt_up_to_the_cap() {
        assert_eq!(backoff_ceiling_ms(1, 1000, 300_000), 1000);
        assert_eq!(backoff_ceiling_ms(2, 1000, 300_000), 2000);
        assert_eq!(backoff_ceiling_ms(5, 1000, 300_000), 16_000);
        assert_eq!(backoff_ceiling_ms(9, 1000, 300_000), 256_000);
        assert_eq!(backoff_ceiling_ms(10, 1000, 300_000), 300_000);
        assert_eq!(
            backoff_ceiling_ms(1000, 1000, 300_000),
            300_000,
            "no overflow"
        );
        assert_eq!(backoff_ceiling_ms(0, 1000, 300_000), 1000);
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling_and_grow_with_attempts() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut means = Vec::new();
        for attempt in 1..=10 {
            let ceiling = backoff_ceiling_ms(attempt, 100, 30_000);
            let samples: Vec<u64> = (0..400)
                .map(|_| backoff_delay_ms(attempt, 100, 30_000, &mut rng))
                .collect();
            assert!(samples.iter().all(|&d| d <= ceiling), "attempt {attempt}");
            let distinct: std::collections::HashSet<_> = samples.iter().collect();
            assert!(
                distinct.len() > 50,
                "attempt {attempt}: jittered, not fixed"
            );
            let mean = samples.iter().sum::<u64>() / samples.len() as u64;
            // Full jitter: the mean sits near half the ceiling.
            assert!(
                mean > ceiling * 4 / 10 && mean < ceiling * 6 / 10,
                "attempt {attempt}: mean {mean} of ceiling {ceiling}"
            );
            means.push(mean);
        }
        assert!(means.windows(2).take(8).all(|w| w[1] > w[0]), "{means:?}");
    }
}
