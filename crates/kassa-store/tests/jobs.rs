//! The job queue's and the outbox consumer's contract, on SQLite and (when
//! `KASSA_TEST_POSTGRES_URL` is set) PostgreSQL. Times are passed in explicitly, so leases
//! expire without sleeping.

use std::collections::HashSet;

use kassa_store::jobs::{JobState, NewJob, RetryRefusal};
use kassa_store::{now_ms, Store};

fn job<'a>(kind: &'a str, dedupe_key: Option<&'a str>, attempts_max: i64) -> NewJob<'a> {
    NewJob {
        kind,
        payload: r#"{"n":1}"#,
        dedupe_key,
        run_at_ms: 0,
        attempts_max,
        repeat_every_ms: None,
    }
}

const LEASE_MS: i64 = 30_000;

kassa_store::store_contract_tests!(
    a_dedupe_key_allows_one_unfinished_job_per_kind,
    a_lease_expires_and_another_node_takes_the_job_over,
    failures_back_off_then_the_job_is_dead_with_its_last_error,
    a_dead_job_can_be_retried_once,
    a_lease_that_expires_on_the_last_attempt_makes_the_job_dead,
    a_recurring_job_exists_once_and_comes_back_after_success,
    concurrent_claimers_never_get_the_same_job,
    claims_take_only_the_kinds_asked_for_and_due_jobs,
    jobs_are_listed_newest_first_with_a_cursor,
    the_outbox_is_read_in_order_and_marked_published,
    a_job_is_cancelled_with_the_transaction_and_only_before_its_first_run,
    a_coalescing_job_absorbs_events_and_runs_again_after_one_during_its_run,
);

async fn a_dedupe_key_allows_one_unfinished_job_per_kind(store: Store) {
    let first = store
        .enqueue_job(&job("payout.send", Some("po_1"), 3))
        .await
        .unwrap();
    assert!(first.is_some());
    let again = store
        .enqueue_job(&job("payout.send", Some("po_1"), 3))
        .await
        .unwrap();
    assert_eq!(again, None, "the same payout is never queued twice");
    assert!(store
        .enqueue_job(&job("other.kind", Some("po_1"), 3))
        .await
        .unwrap()
        .is_some());
    // Running is still unfinished.
    let now = now_ms();
    let claimed = store
        .claim_jobs("node-a", &["payout.send"], now, now + LEASE_MS, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        store
            .enqueue_job(&job("payout.send", Some("po_1"), 3))
            .await
            .unwrap(),
        None
    );
    assert!(store
        .complete_job(&claimed[0].id, "node-a", 1, now)
        .await
        .unwrap());
    assert_eq!(
        store.get_job(&claimed[0].id).await.unwrap().unwrap().state,
        JobState::Succeeded
    );
    let after = store
        .enqueue_job(&job("payout.send", Some("po_1"), 3))
        .await
        .unwrap();
    assert!(after.is_some(), "a finished job frees its dedupe key");
    // Jobs without a key never collide.
    for _ in 0..2 {
        assert!(store
            .enqueue_job(&job("payout.send", None, 3))
            .await
            .unwrap()
            .is_some());
    }
}

async fn a_lease_expires_and_another_node_takes_the_job_over(store: Store) {
    let id = store
        .enqueue_job(&job("k", None, 5))
        .await
        .unwrap()
        .unwrap();
    let t = now_ms();
    let a = store
        .claim_jobs("node-a", &["k"], t, t + LEASE_MS, 10)
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].id, id);
    assert_eq!(a[0].state, JobState::Running);
    assert_eq!(a[0].attempts, 1);
    assert_eq!(a[0].lease_owner.as_deref(), Some("node-a"));
    assert_eq!(a[0].lease_until_ms, Some(t + LEASE_MS));
    // While the lease holds, nobody else gets it.
    let b = store
        .claim_jobs("node-b", &["k"], t + LEASE_MS - 1, t + 2 * LEASE_MS, 10)
        .await
        .unwrap();
    assert!(b.is_empty());
    // A heartbeat moves the lease.
    assert!(store
        .extend_job_lease(&id, "node-a", 1, t + 2 * LEASE_MS)
        .await
        .unwrap());
    let b = store
        .claim_jobs("node-b", &["k"], t + LEASE_MS + 1, t + 3 * LEASE_MS, 10)
        .await
        .unwrap();
    assert!(b.is_empty(), "the extended lease still holds");
    // Node A dies: its lease runs out and node B takes the job over.
    let t2 = t + 2 * LEASE_MS;
    let b = store
        .claim_jobs("node-b", &["k"], t2, t2 + LEASE_MS, 10)
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].attempts, 2, "the takeover counts an attempt");
    assert_eq!(b[0].lease_owner.as_deref(), Some("node-b"));
    // Node A comes back: everything it tries on its old claim is refused.
    assert!(!store.complete_job(&id, "node-a", 1, t2).await.unwrap());
    assert!(!store
        .extend_job_lease(&id, "node-a", 1, t2 + LEASE_MS)
        .await
        .unwrap());
    assert_eq!(
        store.fail_job(&id, "node-a", 1, "late", t2).await.unwrap(),
        None
    );
    assert!(!store.release_job(&id, "node-a", 1).await.unwrap());
    assert!(store.complete_job(&id, "node-b", 2, t2).await.unwrap());
    let done = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.lease_owner, None);
    assert_eq!(done.lease_until_ms, None);
}

async fn failures_back_off_then_the_job_is_dead_with_its_last_error(store: Store) {
    let id = store
        .enqueue_job(&job("k", None, 2))
        .await
        .unwrap()
        .unwrap();
    let t = now_ms();
    let first = store
        .claim_jobs("n", &["k"], t, t + LEASE_MS, 1)
        .await
        .unwrap();
    let state = store
        .fail_job(&id, "n", first[0].attempts, "provider said no", t + 5_000)
        .await
        .unwrap();
    assert_eq!(state, Some(JobState::Queued));
    let queued = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(queued.run_at_ms, t + 5_000);
    assert_eq!(queued.last_error.as_deref(), Some("provider said no"));
    // Not before its retry time.
    assert!(store
        .claim_jobs("n", &["k"], t + 4_999, t + LEASE_MS, 1)
        .await
        .unwrap()
        .is_empty());
    let second = store
        .claim_jobs("n", &["k"], t + 5_000, t + LEASE_MS, 1)
        .await
        .unwrap();
    assert_eq!(second[0].attempts, 2);
    let long_error = "x".repeat(10_000);
    let state = store
        .fail_job(&id, "n", 2, &long_error, t + 10_000)
        .await
        .unwrap();
    assert_eq!(state, Some(JobState::Dead), "the last attempt failed");
    let dead = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(
        dead.last_error.as_deref().map(str::len),
        Some(kassa_store::jobs::LAST_ERROR_CHARS_MAX)
    );
    assert!(store
        .claim_jobs("n", &["k"], t + 1_000_000, t + 2_000_000, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn a_dead_job_can_be_retried_once(store: Store) {
    let id = store
        .enqueue_job(&job("k", Some("key"), 1))
        .await
        .unwrap()
        .unwrap();
    let t = now_ms();
    store
        .claim_jobs("n", &["k"], t, t + LEASE_MS, 1)
        .await
        .unwrap();
    assert_eq!(
        store.fail_job(&id, "n", 1, "boom", t).await.unwrap(),
        Some(JobState::Dead)
    );
    let retried = store.retry_dead_job(&id).await.unwrap().unwrap();
    assert_eq!(retried.state, JobState::Queued);
    assert_eq!(retried.attempts, 0);
    assert_eq!(retried.last_error.as_deref(), Some("boom"));
    assert_eq!(
        store.retry_dead_job(&id).await.unwrap(),
        Err(RetryRefusal::NotDead(JobState::Queued))
    );
    assert_eq!(
        store.retry_dead_job("job_missing").await.unwrap(),
        Err(RetryRefusal::NotFound)
    );
    let again = store
        .claim_jobs("n", &["k"], now_ms(), now_ms() + LEASE_MS, 1)
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "the retried job runs again");
    assert_eq!(again[0].attempts, 1);
    store.fail_job(&id, "n", 1, "boom", t).await.unwrap();
    // A newer job with the same dedupe key is waiting: retrying would run the work twice.
    store
        .enqueue_job(&job("k", Some("key"), 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.retry_dead_job(&id).await.unwrap(),
        Err(RetryRefusal::Duplicate)
    );
}

async fn a_lease_that_expires_on_the_last_attempt_makes_the_job_dead(store: Store) {
    let id = store
        .enqueue_job(&job("k", None, 1))
        .await
        .unwrap()
        .unwrap();
    let t = now_ms();
    store
        .claim_jobs("n", &["k"], t, t + LEASE_MS, 1)
        .await
        .unwrap();
    // Expired but out of attempts: no one takes it over ...
    assert!(store
        .claim_jobs("m", &["k"], t + LEASE_MS, t + 2 * LEASE_MS, 1)
        .await
        .unwrap()
        .is_empty());
    // ... and the reaper declares it dead.
    assert_eq!(store.reap_expired_jobs(t + LEASE_MS - 1).await.unwrap(), 0);
    assert_eq!(store.reap_expired_jobs(t + LEASE_MS).await.unwrap(), 1);
    let dead = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(dead.state, JobState::Dead);
    assert!(dead.last_error.unwrap().contains("lease expired"));
    assert_eq!(dead.lease_owner, None);
}

async fn a_recurring_job_exists_once_and_comes_back_after_success(store: Store) {
    for _ in 0..3 {
        store.ensure_recurring_job("sync", 1_000, 4).await.unwrap();
    }
    let jobs = store.list_jobs(None, Some("sync"), None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "one recurring job however many nodes start");
    assert_eq!(jobs[0].repeat_every_ms, Some(1_000));
    assert_eq!(jobs[0].dedupe_key.as_deref(), Some("sync"));
    store.ensure_recurring_job("sync", 2_500, 4).await.unwrap();
    let t = now_ms();
    let claimed = store
        .claim_jobs("n", &["sync"], t, t + LEASE_MS, 5)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].repeat_every_ms,
        Some(2_500),
        "the new period won"
    );
    // While it runs, another node starting does not add a second one.
    store.ensure_recurring_job("sync", 2_500, 4).await.unwrap();
    assert!(store.complete_job(&claimed[0].id, "n", 1, t).await.unwrap());
    let back = store.get_job(&claimed[0].id).await.unwrap().unwrap();
    assert_eq!(back.state, JobState::Queued);
    assert_eq!(back.run_at_ms, t + 2_500);
    assert_eq!(back.attempts, 0);
    assert_eq!(
        store
            .list_jobs(None, Some("sync"), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn concurrent_claimers_never_get_the_same_job(store: Store) {
    const JOBS: usize = 120;
    for _ in 0..JOBS {
        store.enqueue_job(&job("k", None, 3)).await.unwrap();
    }
    let mut claimers = Vec::new();
    for node in 0..4 {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let owner = format!("node-{node}");
            let mut mine = Vec::new();
            loop {
                let now = now_ms();
                let claimed = store
                    .claim_jobs(&owner, &["k"], now, now + LEASE_MS, 3)
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    break;
                }
                for job in claimed {
                    assert_eq!(job.lease_owner.as_deref(), Some(owner.as_str()));
                    mine.push(job.id);
                }
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut per_claimer = Vec::new();
    for claimer in claimers {
        let mine = claimer.await.unwrap();
        per_claimer.push(mine.len());
        for id in mine {
            assert!(seen.insert(id.clone()), "{id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), JOBS, "every job claimed once: {per_claimer:?}");
    let running = store
        .list_jobs(Some(JobState::Running), Some("k"), None, 1000)
        .await
        .unwrap();
    assert!(running.iter().all(|j| j.attempts == 1));
}

async fn claims_take_only_the_kinds_asked_for_and_due_jobs(store: Store) {
    let t = now_ms();
    let mut later = job("a", None, 3);
    later.run_at_ms = t + 60_000;
    store.enqueue_job(&later).await.unwrap();
    assert_eq!(
        store.next_job_due_ms(&["a"]).await.unwrap(),
        Some(t + 60_000)
    );
    assert_eq!(store.next_job_due_ms(&["b"]).await.unwrap(), None);
    let b = store
        .enqueue_job(&job("b", None, 3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.next_job_due_ms(&["a", "b"]).await.unwrap(), Some(0));
    let claimed = store
        .claim_jobs("n", &["a", "c"], t, t + LEASE_MS, 10)
        .await
        .unwrap();
    assert!(claimed.is_empty(), "a is not due and b was not asked for");
    let claimed = store
        .claim_jobs("n", &["a", "b"], t, t + LEASE_MS, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, b);
    assert_eq!(claimed[0].payload, r#"{"n":1}"#);
    // A running job is due again when its lease ends.
    assert_eq!(
        store.next_job_due_ms(&["b"]).await.unwrap(),
        Some(t + LEASE_MS)
    );
    assert!(store.release_job(&b, "n", 1).await.unwrap());
    let released = store.get_job(&b).await.unwrap().unwrap();
    assert_eq!(released.state, JobState::Queued);
    assert_eq!(released.attempts, 1, "a released attempt still counts");
}

async fn jobs_are_listed_newest_first_with_a_cursor(store: Store) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            store
                .enqueue_job(&job("k", None, 1))
                .await
                .unwrap()
                .unwrap(),
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let t = now_ms();
    let claimed = store
        .claim_jobs("n", &["k"], t, t + LEASE_MS, 1)
        .await
        .unwrap();
    store
        .fail_job(&claimed[0].id, "n", 1, "e", t)
        .await
        .unwrap();
    let page = store.list_jobs(None, None, None, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].id, ids[4]);
    assert_eq!(page[1].id, ids[3]);
    let cursor = Some((page[1].created_at_ms, page[1].id.clone()));
    let next = store.list_jobs(None, None, cursor, 10).await.unwrap();
    assert_eq!(
        next.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );
    let dead = store
        .list_jobs(Some(JobState::Dead), None, None, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, claimed[0].id);
    assert!(store
        .list_jobs(None, Some("other"), None, 10)
        .await
        .unwrap()
        .is_empty());
    // Dead jobs outlive the purge of finished ones.
    assert_eq!(store.purge_finished_jobs(i64::MAX).await.unwrap(), 0);
    assert_eq!(
        store.list_jobs(None, None, None, 10).await.unwrap().len(),
        5
    );
}

async fn the_outbox_is_read_in_order_and_marked_published(store: Store) {
    let mut tx = store.begin().await.unwrap();
    for (aggregate, n) in [("po_a", 1), ("po_b", 1), ("po_a", 2)] {
        let payload = format!(r#"{{"n":{n}}}"#);
        store
            .insert_outbox(
                &mut tx,
                "mch_1",
                "payout.status_changed",
                aggregate,
                &payload,
            )
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(store.outbox_unpublished_count().await.unwrap(), 3);
    let mut tx = store.begin().await.unwrap();
    let first = store.lock_unpublished_outbox(&mut tx, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first[0].id < first[1].id);
    assert_eq!(
        (first[0].aggregate_id.as_str(), first[0].payload.as_str()),
        ("po_a", r#"{"n":1}"#)
    );
    let ids: Vec<i64> = first.iter().map(|e| e.id).collect();
    store
        .mark_outbox_published(&mut tx, &ids, now_ms())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        store.outbox_unpublished_count().await.unwrap(),
        3,
        "a rolled-back publish leaves the events unpublished"
    );
    let mut tx = store.begin().await.unwrap();
    let all = store.lock_unpublished_outbox(&mut tx, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    let ids: Vec<i64> = all.iter().map(|e| e.id).collect();
    store
        .mark_outbox_published(&mut tx, &ids, now_ms())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.outbox_unpublished_count().await.unwrap(), 0);
    let mut tx = store.begin().await.unwrap();
    assert!(store
        .lock_unpublished_outbox(&mut tx, 10)
        .await
        .unwrap()
        .is_empty());
}

/// The reversal advice of an answered card charge is cancelled in the transaction that
/// records the answer (ADR 49): rolled back (a node dying before its commit), the job stays
/// queued and reverses the charge; once it ran even once, it cannot be cancelled any more.
async fn a_job_is_cancelled_with_the_transaction_and_only_before_its_first_run(store: Store) {
    let kind = "acquirer.reversal_advice";
    let id = store
        .enqueue_job(&job(kind, Some("acq:t1:1206:000001"), 5))
        .await
        .unwrap()
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(store
        .cancel_unstarted_job_on(&mut tx, kind, "acq:t1:1206:000001")
        .await
        .unwrap());
    tx.rollback().await.unwrap();
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().state,
        JobState::Queued,
        "a cancel that did not commit leaves the advice queued"
    );

    let t = now_ms();
    let claimed = store
        .claim_jobs("n", &[kind], t, t + LEASE_MS, 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .fail_job(&id, "n", claimed[0].attempts, "host did not answer", t)
        .await
        .unwrap();
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().state,
        JobState::Queued,
        "queued again for its next attempt"
    );
    let mut tx = store.begin().await.unwrap();
    assert!(
        !store
            .cancel_unstarted_job_on(&mut tx, kind, "acq:t1:1206:000001")
            .await
            .unwrap(),
        "an advice that went out once is not called off"
    );
    tx.commit().await.unwrap();

    let fresh = store
        .enqueue_job(&job(kind, Some("acq:t1:1206:000002"), 5))
        .await
        .unwrap()
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(store
        .cancel_unstarted_job_on(&mut tx, kind, "acq:t1:1206:000002")
        .await
        .unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        store.get_job(&fresh).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
}

/// Enqueues a coalescing `aml.monitor` job for one player carrying `n`, committed.
async fn coalesce(store: &Store, n: u32) -> Option<String> {
    let payload = format!(r#"{{"n":{n}}}"#);
    let job = NewJob {
        payload: &payload,
        ..job("aml.monitor", Some("player:mch_1:p1"), 5)
    };
    let mut tx = store.begin().await.unwrap();
    let id = store
        .enqueue_coalescing_job_on(&mut tx, &job)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn a_coalescing_job_absorbs_events_and_runs_again_after_one_during_its_run(store: Store) {
    let kind = "aml.monitor";
    let id = coalesce(&store, 1)
        .await
        .expect("the first event queues a job");
    assert_eq!(
        coalesce(&store, 2).await,
        None,
        "a queued job absorbs the next"
    );
    let queued = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(
        (queued.state, queued.payload.as_str()),
        (JobState::Queued, r#"{"n":2}"#)
    );
    assert_eq!(store.unfinished_job_count(kind).await.unwrap(), 1);

    // An event while the job runs: its run may not see it, so the job runs once more.
    let t = now_ms();
    let claimed = store
        .claim_jobs("n", &[kind], t, t + LEASE_MS, 5)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(coalesce(&store, 3).await, None);
    assert!(store
        .complete_job(&id, "n", claimed[0].attempts, t)
        .await
        .unwrap());
    let again = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(again.state, JobState::Queued, "queued again, not succeeded");
    assert_eq!((again.attempts, again.payload.as_str()), (0, r#"{"n":3}"#));
    assert!(again.run_at_ms <= now_ms(), "due at once");

    // A run with no event during it finishes the job; the next event queues a new one.
    let t = now_ms();
    let claimed = store
        .claim_jobs("n", &[kind], t, t + LEASE_MS, 5)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store
        .complete_job(&id, "n", claimed[0].attempts, t)
        .await
        .unwrap());
    let done = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let next = coalesce(&store, 4)
        .await
        .expect("a finished job frees the key");
    assert_ne!(next, id);
}
