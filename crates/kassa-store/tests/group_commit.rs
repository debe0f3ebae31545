//! SQLite's group commit (ADR 39): units of `Store::begin_grouped` share one transaction
//! and one durable commit. A unit whose commit answered `Ok` is on disk; one that failed,
//! was dropped before its commit, or joined a commit that failed left nothing; one
//! cancelled while waiting for the commit is there in full or not at all; and the shared
//! transaction never stays open (another connection can write right after). On
//! PostgreSQL `begin_grouped` is a transaction of its own, with the same answers.

use std::collections::BTreeSet;
use std::time::Duration;

use kassa_store::testing::{fresh_database_url, TestBackend};
use kassa_store::{Store, StoreError};
use sqlx::Executor;

const TASKS: usize = 64;
const ROUNDS: usize = 6;

async fn store_with_table(backend: TestBackend, group_commit: bool) -> (Store, String) {
    let url = fresh_database_url(backend).await.expect("url");
    let store = Store::connect(&url)
        .await
        .expect("connect")
        .with_sqlite_group_commit(group_commit);
    let mut tx = store.begin().await.unwrap();
    (&mut *tx)
        .execute(
            "CREATE TABLE units (id TEXT NOT NULL, part INTEGER NOT NULL, PRIMARY KEY (id, part))",
        )
        .await
        .unwrap();
    (&mut *tx)
        .execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    (&mut *tx)
        .execute(
            "CREATE TABLE child (id TEXT PRIMARY KEY, \
             parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)",
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (store, url)
}

/// Inserts part `part` of unit `id` in the unit's transaction.
async fn insert(tx: &mut kassa_store::GroupedTx, id: &str, part: i64) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO units (id, part) VALUES ($1, $2)")
        .bind(id)
        .bind(part)
        .execute(&mut ***tx)
        .await?;
    Ok(())
}

/// How many parts of each unit are stored, read on a new connection.
async fn stored_parts(url: &str) -> std::collections::BTreeMap<String, i64> {
    let store = Store::connect(url).await.expect("reopen");
    let mut tx = store.begin().await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id, COUNT(*) FROM units GROUP BY id")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    rows.into_iter().collect()
}

/// A plain SQLite connection writes within a busy timeout: the shared transaction is not
/// left open holding the write lock. The timeout is long enough for a checkpoint's fsync on
/// a loaded CI machine (2 s was not, once); a leaked lock would hold it forever. The write
/// runs on a blocking thread, so the runtime's tasks (a settle a drop spawned) go on
/// meanwhile. When it fails, it is tried again with the store's connections closed, so the
/// failure says whether the store's own writer held the lock.
async fn another_connection_can_write(store: &Store, url: &str) {
    let path = url.trim_start_matches("sqlite://").to_string();
    let write = move || {
        let conn = rusqlite::Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(15))?;
        conn.execute("INSERT INTO parent (id) VALUES (NULL)", [])
    };
    let first = tokio::task::spawn_blocking(write.clone()).await.unwrap();
    if let Err(error) = first {
        // Closing waits for the connections in use: one a unit never gave back never is.
        let closing = tokio::time::timeout(Duration::from_secs(5), store.close()).await;
        if closing.is_err() {
            panic!("the write lock is not free: {error}; a store connection stays in use");
        }
        let closed = tokio::task::spawn_blocking(write).await.unwrap();
        panic!(
            "the write lock is not free: {error}; with the store's connections closed: {closed:?}"
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Commit,
    /// Writes, then returns an error (drops its unit).
    FailAfterWriting,
    /// Writes, then is cancelled before its commit.
    CancelMidway,
    /// Cancelled while waiting for its commit.
    CancelWaiting,
}

fn plan(task: usize, round: usize) -> Plan {
    match (task * 7 + round * 3) % 8 {
        0 => Plan::FailAfterWriting,
        1 => Plan::CancelMidway,
        2 => Plan::CancelWaiting,
        _ => Plan::Commit,
    }
}

/// Runs one unit as planned; `Some(result)` when its commit answered.
async fn run_unit(store: &Store, id: &str, plan: Plan) -> Option<Result<(), StoreError>> {
    let unit = async {
        let mut tx = store.begin_grouped().await?;
        insert(&mut tx, id, 1).await?;
        tokio::task::yield_now().await;
        insert(&mut tx, id, 2).await?;
        match plan {
            Plan::FailAfterWriting => Err(StoreError::Corrupt("planned failure".into())),
            Plan::CancelMidway => std::future::pending().await,
            Plan::CancelWaiting => {
                let mut commit = Box::pin(tx.commit());
                // Polled once (the unit joins the epoch), then dropped.
                let _ = futures::poll!(&mut commit);
                Err(StoreError::Corrupt("cancelled while waiting".into()))
            }
            Plan::Commit => tx.commit().await,
        }
    };
    match plan {
        Plan::CancelMidway => tokio::time::timeout(Duration::from_millis(2), unit)
            .await
            .ok(),
        _ => Some(unit.await),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_units_are_durable_all_or_nothing_and_grouped() {
    let (store, url) = store_with_table(TestBackend::Sqlite, true).await;
    assert!(store.sqlite_group_commit());
    let before = store.write_transactions();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for round in 0..ROUNDS {
                let id = format!("t{task}-r{round}");
                let plan = plan(task, round);
                let answer = run_unit(&store, &id, plan).await;
                answers.push((id, plan, answer));
            }
            answers
        }));
    }
    let mut committed = BTreeSet::new();
    let mut refused = BTreeSet::new();
    let mut either = BTreeSet::new();
    for task in tasks {
        for (id, plan, answer) in task.await.unwrap() {
            match (plan, answer) {
                (Plan::CancelWaiting, _) => either.insert(id),
                (Plan::Commit, Some(Ok(()))) => committed.insert(id),
                (Plan::Commit, answer) => {
                    eprintln!("{id}: {answer:?}");
                    refused.insert(id)
                }
                (_, _) => refused.insert(id),
            };
        }
    }
    another_connection_can_write(&store, &url).await;
    let units = (TASKS * ROUNDS) as u64;
    assert_eq!(store.write_transactions() - before, units);
    let commits = store.group_commits();
    drop(store);
    let stored = stored_parts(&url).await;
    for id in &committed {
        assert_eq!(
            stored.get(id),
            Some(&2),
            "committed unit {id} is stored in full"
        );
    }
    for id in &refused {
        assert_eq!(stored.get(id), None, "refused unit {id} left nothing");
    }
    for id in &either {
        assert!(
            matches!(stored.get(id), None | Some(2)),
            "a unit cancelled while waiting is all there or not at all: {id}"
        );
    }
    eprintln!(
        "{} units, {} committed, {commits} durable commits",
        TASKS * ROUNDS,
        committed.len()
    );
    assert!(committed.len() > TASKS * ROUNDS / 2, "most units commit");
    assert!(
        commits * 4 < committed.len() as u64,
        "{commits} durable commits for {} committed units: not grouped",
        committed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_unit_alone_does_not_keep_the_transaction_open() {
    let (store, url) = store_with_table(TestBackend::Sqlite, true).await;
    let mut tx = store.begin_grouped().await.unwrap();
    insert(&mut tx, "dropped", 1).await.unwrap();
    drop(tx);
    another_connection_can_write(&store, &url).await;
    let mut tx = store.begin_grouped().await.unwrap();
    insert(&mut tx, "waiting", 1).await.unwrap();
    insert(&mut tx, "waiting", 2).await.unwrap();
    let mut commit = Box::pin(tx.commit());
    let _ = futures::poll!(&mut commit);
    drop(commit);
    another_connection_can_write(&store, &url).await;
    let stored = stored_parts(&url).await;
    assert_eq!(stored.get("dropped"), None);
    assert!(matches!(stored.get("waiting"), None | Some(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_commit_answers_every_member_and_applies_nothing() {
    let (store, url) = store_with_table(TestBackend::Sqlite, true).await;
    // The first unit holds the shared transaction while the others queue behind it.
    let mut first = store.begin_grouped().await.unwrap();
    // A deferred foreign key that points nowhere: COMMIT fails, not the INSERT.
    sqlx::query("INSERT INTO child (id, parent) VALUES ('orphan', 999)")
        .execute(&mut **first)
        .await
        .unwrap();
    let mut others = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        others.push(tokio::spawn(async move {
            let id = format!("member-{i}");
            let mut tx = store.begin_grouped().await?;
            insert(&mut tx, &id, 1).await?;
            insert(&mut tx, &id, 2).await?;
            tx.commit().await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = first.commit().await;
    assert!(
        matches!(first, Err(StoreError::GroupCommitFailed(_))),
        "{first:?}"
    );
    for other in others {
        let answer = other.await.unwrap();
        assert!(
            matches!(answer, Err(StoreError::GroupCommitFailed(_))),
            "every member of the failed commit hears it: {answer:?}"
        );
    }
    // The next unit commits on a clean transaction.
    let mut tx = store.begin_grouped().await.unwrap();
    insert(&mut tx, "after", 1).await.unwrap();
    tx.commit().await.unwrap();
    another_connection_can_write(&store, &url).await;
    drop(store);
    let stored = stored_parts(&url).await;
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        vec!["after"],
        "nothing of the failed commit"
    );
}

async fn units_commit_or_roll_back(backend: TestBackend, group_commit: bool) {
    let (store, url) = store_with_table(backend, group_commit).await;
    let mut tx = store.begin_grouped().await.unwrap();
    insert(&mut tx, "kept", 1).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin_grouped().await.unwrap();
    insert(&mut tx, "dropped", 1).await.unwrap();
    drop(tx);
    // A statement that fails (duplicate key) takes only its own unit with it.
    let mut tx = store.begin_grouped().await.unwrap();
    insert(&mut tx, "duplicate", 1).await.unwrap();
    assert!(insert(&mut tx, "kept", 1).await.is_err());
    drop(tx);
    let mut tx = store.begin_grouped().await.unwrap();
    insert(&mut tx, "kept too", 1).await.unwrap();
    tx.commit().await.unwrap();
    drop(store);
    let stored = stored_parts(&url).await;
    assert_eq!(stored.keys().collect::<Vec<_>>(), vec!["kept", "kept too"]);
}

#[tokio::test]
async fn units_commit_or_roll_back_sqlite_grouped() {
    units_commit_or_roll_back(TestBackend::Sqlite, true).await;
}

#[tokio::test]
async fn units_commit_or_roll_back_sqlite_plain() {
    units_commit_or_roll_back(TestBackend::Sqlite, false).await;
}

#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn units_commit_or_roll_back_postgres() {
    units_commit_or_roll_back(TestBackend::Postgres, true).await;
}

fn any_plan() -> impl proptest::strategy::Strategy<Value = Plan> {
    proptest::prop_oneof![
        4 => proptest::strategy::Just(Plan::Commit),
        1 => proptest::strategy::Just(Plan::FailAfterWriting),
        1 => proptest::strategy::Just(Plan::CancelMidway),
        1 => proptest::strategy::Just(Plan::CancelWaiting),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 12, ..Default::default() })]

    /// Any mix of unit outcomes, run at once: `Ok` units are stored in full, refused and
    /// dropped ones not at all, and the write lock is free afterwards.
    #[test]
    fn any_mix_of_unit_outcomes_is_all_or_nothing(
        plans in proptest::collection::vec(any_plan(), 1..40)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (store, url) = store_with_table(TestBackend::Sqlite, true).await;
            let tasks: Vec<_> = plans
                .iter()
                .enumerate()
                .map(|(i, plan)| {
                    let (store, plan) = (store.clone(), *plan);
                    tokio::spawn(async move {
                        let id = format!("u{i}");
                        let answer = run_unit(&store, &id, plan).await;
                        (id, plan, answer)
                    })
                })
                .collect();
            let mut answers = Vec::new();
            for task in tasks {
                answers.push(task.await.unwrap());
            }
            another_connection_can_write(&store, &url).await;
            drop(store);
            let stored = stored_parts(&url).await;
            for (id, plan, answer) in answers {
                let parts = stored.get(&id).copied();
                match (plan, answer) {
                    (Plan::CancelWaiting, _) => assert!(matches!(parts, None | Some(2)), "{id}"),
                    (Plan::Commit, Some(Ok(()))) => assert_eq!(parts, Some(2), "{id}"),
                    _ => assert_eq!(parts, None, "{id}"),
                }
            }
        });
    }
}

/// A unit that gives up because of a row an earlier unit of its epoch wrote waits, in
/// `rollback`, until that row is durable: a reader then finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_unit_waits_for_what_it_saw() {
    let (store, url) = store_with_table(TestBackend::Sqlite, true).await;
    let mut first = store.begin_grouped().await.unwrap();
    insert(&mut first, "first", 1).await.unwrap();
    let second = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin_grouped().await.unwrap();
            // Sees the first unit's row, not yet committed, and gives up.
            let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM units WHERE id = 'first'")
                .fetch_one(&mut **tx)
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The first unit releases and joins the epoch; its commit waits for the second unit.
    let committing = tokio::spawn(first.commit());
    assert_eq!(
        second.await.unwrap(),
        1,
        "the second unit saw the first's row"
    );
    // Read on another connection right after the rollback returned, before the first
    // unit's caller heard anything.
    let path = url.trim_start_matches("sqlite://");
    let conn = rusqlite::Connection::open(path).unwrap();
    let stored: i64 = conn
        .query_row("SELECT COUNT(*) FROM units WHERE id = 'first'", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(stored, 1, "what the rolled-back unit saw is durable");
    committing.await.unwrap().unwrap();
}

/// Stored rows of unit `id`, read on a plain SQLite connection (a reader: it neither waits
/// for nor takes the write lock an open epoch holds).
fn parts_on_disk(url: &str, id: &str) -> i64 {
    let path = url.trim_start_matches("sqlite://");
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM units WHERE id = ?1", [id], |row| {
        row.get(0)
    })
    .unwrap()
}

/// A unit committed without waiting for the disk (a start's risk decision alone, ADR 79)
/// answers while its epoch is still open; the epoch's commit, run for it by a spawned task,
/// makes it durable with the units that joined meanwhile. With the waiting `commit` the
/// first unit would answer only after the second unit's commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_committed_without_waiting_answers_before_its_epoch_commits() {
    let (store, url) = store_with_table(TestBackend::Sqlite, true).await;
    let commits_before = store.group_commits();
    let mut first = store.begin_grouped().await.unwrap();
    insert(&mut first, "unflushed", 1).await.unwrap();
    let (joined, joined_rx) = tokio::sync::oneshot::channel();
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let second = {
        let store = store.clone();
        tokio::spawn(async move {
            // Queues for the group's lock behind the first unit, then holds the epoch open.
            let mut tx = store.begin_grouped().await?;
            let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM units WHERE id = 'unflushed'")
                .fetch_one(&mut **tx)
                .await?;
            joined.send(seen).unwrap();
            insert(&mut tx, "durable", 1).await?;
            go_rx.await.unwrap();
            tx.commit().await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(
        Duration::from_secs(5),
        first.commit_without_waiting_for_disk(),
    )
    .await
    .expect("the unit answers without waiting for its epoch's commit")
    .unwrap();
    assert_eq!(joined_rx.await.unwrap(), 1, "the next unit sees it at once");
    assert_eq!(parts_on_disk(&url, "unflushed"), 0, "not committed yet");
    assert_eq!(store.group_commits(), commits_before);
    go.send(()).unwrap();
    second.await.unwrap().unwrap();
    assert_eq!(parts_on_disk(&url, "unflushed"), 1);
    assert_eq!(parts_on_disk(&url, "durable"), 1);
    assert_eq!(
        store.group_commits(),
        commits_before + 1,
        "one commit for both"
    );
}

/// Alone in its epoch, a unit committed without waiting is committed by its spawned task:
/// the write lock is free soon after, and the row is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_committed_without_waiting_alone_is_committed_soon() {
    for group_commit in [true, false] {
        let (store, url) = store_with_table(TestBackend::Sqlite, group_commit).await;
        let mut tx = store.begin_grouped().await.unwrap();
        insert(&mut tx, "alone", 1).await.unwrap();
        tx.commit_without_waiting_for_disk().await.unwrap();
        another_connection_can_write(&store, &url).await;
        assert_eq!(parts_on_disk(&url, "alone"), 1);
    }
}

/// On PostgreSQL the unit is a transaction of its own committed with
/// `synchronous_commit = off`: visible to another connection once it answers.
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn a_unit_committed_without_waiting_is_visible_postgres() {
    let (store, _url) = store_with_table(TestBackend::Postgres, true).await;
    let mut tx = store.begin_grouped().await.unwrap();
    insert(&mut tx, "unflushed", 1).await.unwrap();
    tx.commit_without_waiting_for_disk().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM units WHERE id = 'unflushed'")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(stored, 1);
}

/// `synchronous_commit` as the unit's transaction sees it.
async fn synchronous_commit(tx: &mut kassa_store::GroupedTx) -> String {
    sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
        .fetch_one(&mut ***tx)
        .await
        .unwrap()
}

/// A unit from `begin_risk_decision` (no locks) that has stored `id`.
async fn begun_not_to_wait(store: &Store, id: &str) -> kassa_store::GroupedTx {
    let mut tx = store.begin_risk_decision(&[]).await.unwrap();
    insert(&mut tx, id, 1).await.unwrap();
    tx
}

/// A unit begun not to wait for the disk has `synchronous_commit` off from its `BEGIN`
/// (no statement of its own at the commit); asked to wait after all (a refused start's
/// commit), it gets the server's own setting back before it commits. The setting is the
/// transaction's: the pooled connection's next transaction has the server's again.
#[tokio::test]
#[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
async fn a_unit_begun_not_to_wait_can_still_wait_postgres() {
    let (store, _url) = store_with_table(TestBackend::Postgres, true).await;
    let mut plain = store.begin_grouped().await.unwrap();
    let server = synchronous_commit(&mut plain).await;
    plain.rollback().await.unwrap();
    assert_ne!(server, "off", "the server's own setting waits for the disk");

    let mut tx = begun_not_to_wait(&store, "not_waited").await;
    assert_eq!(synchronous_commit(&mut tx).await, "off");
    tx.commit_without_waiting_for_disk().await.unwrap();

    let mut tx = begun_not_to_wait(&store, "waited").await;
    tx.wait_for_disk_at_commit().await.unwrap();
    assert_eq!(synchronous_commit(&mut tx).await, server);
    tx.commit().await.unwrap();

    let mut next = store.begin_grouped().await.unwrap();
    assert_eq!(synchronous_commit(&mut next).await, server);
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM units WHERE id IN ('not_waited', 'waited')")
            .fetch_one(&mut **next)
            .await
            .unwrap();
    assert_eq!(stored, 2);
}

/// On SQLite a unit begun not to wait is an ordinary unit: committed either way, it is
/// stored.
#[tokio::test]
async fn a_unit_begun_not_to_wait_is_an_ordinary_unit_sqlite() {
    for group_commit in [true, false] {
        let (store, url) = store_with_table(TestBackend::Sqlite, group_commit).await;
        let tx = begun_not_to_wait(&store, "not_waited").await;
        tx.commit_without_waiting_for_disk().await.unwrap();
        let tx = begun_not_to_wait(&store, "waited").await;
        tx.commit().await.unwrap();
        store.close().await;
        let stored = stored_parts(&url).await;
        assert_eq!(
            stored.get("not_waited"),
            Some(&1),
            "group commit {group_commit}"
        );
        assert_eq!(
            stored.get("waited"),
            Some(&1),
            "group commit {group_commit}"
        );
    }
}

/// A begin cancelled after SQLite has begun the transaction, while the driver still checks
/// it (sqlx-sqlite 0.8 awaits once more there), leaves no transaction open on the writer
/// connection (ADR 90): another connection can write, and the store begins again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_cancelled_after_sqlite_began_leaves_nothing_open() {
    for group_commit in [true, false] {
        let (store, url) = store_with_table(TestBackend::Sqlite, group_commit).await;
        // Dropped after 1 to 6 polls, each after the connection's thread had time to
        // answer: one of them is the driver's check, after `BEGIN IMMEDIATE` has run.
        for polls in 1..=6 {
            let mut begin = Box::pin(store.begin_grouped());
            for _ in 0..polls {
                if futures::poll!(&mut begin).is_ready() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(begin);
        }
        another_connection_can_write(&store, &url).await;
        let mut tx = store.begin_grouped().await.expect("the store begins again");
        insert(&mut tx, "after", 1).await.unwrap();
        tx.commit().await.unwrap();
    }
}
