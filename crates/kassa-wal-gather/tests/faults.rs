//! Fault injection under the gathering VFS (issue 22): one WAL write fails with ENOSPC
//! (`SQLITE_FULL`) or EIO (`SQLITE_IOERR_WRITE`), at every position a history reaches, and
//! later writes succeed again (the disk had room again), and the outcome must be the one the default VFS gives: the transaction
//! that met the failure does not commit (its COMMIT answers an error, or it was already
//! rolled back), everything committed before is there, the file passes `integrity_check`
//! (at once and after a reopen), and other connections can write again, while the failed
//! connection is still open and after it closed.

mod support;

use std::path::Path;
use std::time::Duration;

use kassa_wal_gather::{failed_flushes, FlushPoint};
use rusqlite::{params, Connection, ErrorCode, OpenFlags};
use support::FaultDir;

const PRAGMAS: &str = "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;";

const ENOSPC: i32 = rusqlite::ffi::SQLITE_FULL;
const EIO: i32 = rusqlite::ffi::SQLITE_IOERR_WRITE;

fn open(path: &Path, gathering: bool, pragmas: &str) -> Connection {
    support::install();
    let conn = if gathering {
        Connection::open_with_flags_and_vfs(path, OpenFlags::default(), kassa_wal_gather::VFS_NAME)
    } else {
        Connection::open(path)
    }
    .unwrap();
    conn.execute_batch(pragmas).unwrap();
    conn
}

/// How the faulty transaction ends when no statement failed on the way.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    Commit,
    Rollback,
    /// A `PRAGMA` runs in the middle of the transaction (a file control on the database
    /// file, which writes the gathered frames), then it commits.
    PragmaThenCommit,
}

const SPILLED_ROWS: i64 = 400;

/// One history: 100 rows committed and checkpointed (TRUNCATE), then a transaction that
/// spills pages into the WAL, with WAL writes failing with `code` after `skip` more
/// succeeded; checks the outcome.
fn faulty_history(dir: &FaultDir, gathering: bool, skip: Option<u64>, code: i32, end: Ending) {
    let path = dir.db();
    let mut conn = open(&path, gathering, PRAGMAS);
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB)")
        .unwrap();
    insert(&mut conn, "before", 100).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    // A small cache makes the transaction write (spill) pages to the WAL before it ends.
    conn.execute_batch("PRAGMA cache_size = 10").unwrap();
    if let Some(skip) = skip {
        support::arm(dir.path(), skip, 1, code);
    }
    let committed = spill(&conn, end);
    support::disarm(dir.path());
    check_outcome(
        &path,
        committed,
        &format!("{gathering} {skip:?} {code} {end:?}"),
    );
    // Other connections must write while the failed one is still open, then after it closed.
    assert_others_can_write(&path, "while open");
    drop(conn);
    assert_others_can_write(&path, "after close");
    check_outcome(&path, committed, "after other writers");
}

/// Inserts `n` rows tagged `tag` in one transaction.
fn insert(conn: &mut Connection, tag: &str, n: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for i in 0..n {
        tx.execute(
            "INSERT INTO t (k, v) VALUES (?1, zeroblob(200))",
            params![format!("{tag}-{i}")],
        )?;
    }
    tx.commit()
}

/// The spilling transaction. It stops inserting at the first error and then ends as a
/// program that ignores errors would: COMMIT (or ROLLBACK) if a transaction is still open;
/// a failed `PRAGMA` is ignored altogether. Returns the rows it inserted if it committed.
fn spill(conn: &Connection, end: Ending) -> Option<i64> {
    conn.execute_batch("BEGIN").unwrap();
    let mut rows_inserted = 0;
    let mut failed = false;
    for i in (0..SPILLED_ROWS).step_by(2) {
        // Reversed digits spread the keys over the index, so spilled pages are read back
        // and rewritten while the transaction runs. Two rows per statement, as the wallet
        // writer's multi-row INSERTs: such a statement has a statement journal, so SQLite
        // answers SQLITE_FULL from it by rolling back only the statement.
        let key = |i: i64| -> String {
            let reversed: String = format!("{i:05}").chars().rev().collect();
            format!("spilled-{reversed}")
        };
        let inserted = conn.execute(
            "INSERT INTO t (k, v) VALUES (?1, zeroblob(700)), (?2, zeroblob(700))",
            params![key(i), key(i + 1)],
        );
        if let Err(error) = inserted {
            assert_io_error(&error);
            failed = true;
            break;
        }
        rows_inserted += 2;
        if end == Ending::PragmaThenCommit && i == SPILLED_ROWS / 2 {
            if let Err(error) = conn.query_row("PRAGMA user_version", [], |_| Ok(())) {
                assert_io_error(&error);
                failed = true;
            }
        }
    }
    let open = !conn.is_autocommit();
    let ended = match end {
        Ending::Rollback => conn.execute_batch("ROLLBACK"),
        _ => conn.execute_batch("COMMIT"),
    };
    if let Err(error) = &ended {
        if open {
            assert_io_error(error);
        }
        let _ = conn.execute_batch("ROLLBACK");
    }
    let committed = open && ended.is_ok() && end != Ending::Rollback;
    // The default VFS never lets a transaction that met a failed write commit.
    assert!(
        !(failed && committed),
        "a transaction that met a failed write committed"
    );
    committed.then_some(rows_inserted)
}

fn assert_io_error(error: &rusqlite::Error) {
    let code = error.sqlite_error_code();
    assert!(
        matches!(code, Some(ErrorCode::SystemIoFailure | ErrorCode::DiskFull)),
        "unexpected error {error:?}"
    );
}

fn count(conn: &Connection, tag: &str) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM t WHERE k LIKE ?1",
        params![format!("{tag}-%")],
        |row| row.get(0),
    )
    .unwrap()
}

/// `committed`: the rows the spilling transaction committed, if it did.
fn check_outcome(path: &Path, committed: Option<i64>, case: &str) {
    let reader = open(path, false, "PRAGMA busy_timeout = 2000");
    let integrity: String = reader
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap_or_else(|e| format!("{e}"));
    assert_eq!(integrity, "ok", "{case}");
    assert_eq!(count(&reader, "before"), 100, "{case}");
    assert_eq!(count(&reader, "spilled"), committed.unwrap_or(0), "{case}");
}

fn assert_others_can_write(path: &Path, when: &str) {
    let mut other = open(path, false, "PRAGMA busy_timeout = 300");
    other.busy_timeout(Duration::from_millis(300)).unwrap();
    let written = insert(&mut other, &format!("other{}", when.len()), 3);
    assert!(
        written.is_ok(),
        "another connection cannot write {when}: {written:?}"
    );
}

/// WAL writes the gathering (or plain) connection makes in the fault-free history.
fn wal_writes_of(gathering: bool, end: Ending) -> u64 {
    let dir = FaultDir::new("count");
    faulty_history(&dir, gathering, None, ENOSPC, end);
    support::wal_writes(dir.path())
}

/// Every failure position of the gathering VFS with ENOSPC, every third with EIO; the
/// default VFS at a spread of positions, as the reference the same assertions hold for.
/// Asserts that failures reached SQLite through each of `points`.
fn sweep(end: Ending, points: &[FlushPoint]) {
    let failed_before: Vec<u64> = points.iter().map(|p| failed_flushes(*p)).collect();
    for gathering in [true, false] {
        let writes = wal_writes_of(gathering, end);
        assert!(writes > 0);
        // The default VFS writes each frame in two calls: a spread of positions is enough
        // to show the reference outcome; every position of the gathering one is tried.
        for code in [ENOSPC, EIO] {
            let step = match (gathering, code) {
                (true, ENOSPC) => 1,
                (true, _) => 3,
                _ => (writes / 16).max(1),
            };
            let mut skip = 0;
            while skip <= writes {
                let dir = FaultDir::new("sweep");
                faulty_history(&dir, gathering, Some(skip), code, end);
                skip += step;
            }
        }
    }
    for (point, before) in points.iter().zip(failed_before) {
        assert!(
            failed_flushes(*point) > before,
            "no failure reached SQLite through {point:?}"
        );
    }
}

#[test]
fn a_failed_write_in_a_committing_transaction_never_commits_a_corrupt_database() {
    sweep(
        Ending::Commit,
        &[FlushPoint::Write, FlushPoint::Read, FlushPoint::Sync],
    );
}

#[test]
fn a_failed_write_while_a_transaction_rolls_back_leaves_no_lock_behind() {
    sweep(Ending::Rollback, &[FlushPoint::ShmUnlock]);
}

#[test]
fn a_failed_write_at_a_file_control_is_not_forgotten_by_the_commit() {
    sweep(Ending::PragmaThenCommit, &[FlushPoint::FileControl]);
}

/// The child process's part of the next test: marked by this variable.
const CHILD_VAR: &str = "KASSA_WAL_FAULTS_CHILD";

#[test]
fn a_commit_without_the_sync_answers_a_full_disk_instead_of_aborting() {
    if std::env::var_os(CHILD_VAR).is_some() {
        return commit_without_sync_on_a_full_disk();
    }
    // The old shim aborted the process here, so the history runs in a child process.
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_commit_without_the_sync_answers_a_full_disk_instead_of_aborting",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_VAR, "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the child failed ({:?}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn commit_without_sync_on_a_full_disk() {
    for gathering in [false, true] {
        let dir = FaultDir::new("nosync");
        let path = dir.db();
        let pragmas = PRAGMAS.replace("synchronous = FULL", "synchronous = NORMAL");
        let mut conn = open(&path, gathering, &pragmas);
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB)")
            .unwrap();
        insert(&mut conn, "before", 100).unwrap();
        support::arm(dir.path(), 0, u64::MAX, ENOSPC);
        let result = insert(&mut conn, "spilled", 50);
        support::disarm(dir.path());
        // The default VFS answers the failed write itself: SQLITE_FULL from the commit.
        let code = result.unwrap_err().sqlite_error_code();
        assert_eq!(code, Some(ErrorCode::DiskFull), "gathering: {gathering}");
        check_outcome(&path, None, &format!("nosync {gathering}"));
        drop(conn);
        assert_others_can_write(&path, "after close");
    }
}
