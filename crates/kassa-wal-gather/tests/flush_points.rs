//! Fault injection at the flush points that no SQL history reaches with gathered bytes
//! pending, called directly at the VFS level (issue 22).
//!
//! `faults.rs` drives SQL histories and sees failures reach SQLite through `Write`, `Read`,
//! `Sync`, `FileControl` and `ShmUnlock`. Under `synchronous = FULL` (the only setting that
//! gathers) the other five are never called while bytes are gathered, in SQLite 3.46's
//! `wal.c` and `pager.c`:
//! - Bytes are gathered only inside a write transaction, between `walFrames` calls (a spill
//!   or the commit), and every transaction ends by writing them: a commit at its own
//!   `sqlite3OsSync` in `walFrames` (`Sync`), a rollback at the release of the write lock
//!   in `sqlite3WalEndWriteTransaction` (`ShmUnlock`).
//! - `ShmLock` (taking a lock) and `Barrier`: within a write transaction SQLite takes WAL
//!   locks and writes the index header only in `walRestartLog`, which works only while the
//!   connection reads the database file alone (`readLock == 0`): at the transaction's first
//!   `walFrames`, before its first frame is written. Its `walTryBeginRead(useWal = 1)`
//!   leaves `readLock > 0` for the rest of the transaction. `walIndexWriteHdr` (barrier)
//!   runs at the commit after the sync; `walTryBeginRead` and `walIndexReadHdr` at the
//!   start of a read transaction; `sqlite3WalCheckpoint` only outside a write transaction
//!   (`sqlite3BtreeCheckpoint` answers `SQLITE_LOCKED` inside one), and a `PRAGMA
//!   wal_checkpoint` flushes through `FileControl` before it gets there.
//! - `Truncate` and `FileSize`: `walLimitSize` runs in `walFrames` after the commit's sync
//!   (`journal_size_limit`, `truncateOnCommit`), and in `sqlite3WalClose` and
//!   `walCheckpoint` (TRUNCATE) outside transactions; `walIndexRecover` at the start of a
//!   read transaction.
//! - `Close`: `sqlite3_close` rolls back an open transaction first (`sqlite3RollbackAll`,
//!   so `ShmUnlock` flushes); `sqlite3PagerClose` then sends the database file
//!   `SQLITE_FCNTL_HAS_MOVED` (`FileControl`) and `sqlite3WalClose` checkpoints before it
//!   closes the WAL, and it closes the WAL before the database file, so the database
//!   file's close never finds its WAL open.
//!
//! A scratch sweep (ENOSPC at every WAL write position, not kept: it only confirmed the
//! above) of eight more histories reached only `Write`, `Read`, `Sync` and `ShmUnlock`:
//! `journal_size_limit = 0` after a TRUNCATE checkpoint; a PASSIVE checkpoint by the same
//! or another connection before the transaction (so it restarts the log); another
//! connection's checkpoint in the middle of a spilled transaction; `ROLLBACK TO` a
//! savepoint inside one; a TRUNCATE checkpoint right after one rolled back; the
//! connection closed with one open; and a transaction after one.
//!
//! So each test below leaves bytes pending by calling the WAL file's `xWrite` itself (a
//! zeroed frame past the valid end, which recovery would never take for a frame), arms a
//! fault in the test VFS under the shim, and calls the method. The call (for the barrier,
//! which cannot answer, the next call) must answer `SQLITE_IOERR_WRITE`, never the
//! `SQLITE_FULL` of the failed write; the failure must be sticky; a lock must not be taken
//! and an unlock must still release; `xClose` must still close the inner file. Afterwards
//! the failed connection answers I/O errors, the database passes `integrity_check` with
//! every committed row, and other connections write, while it is open and after it closed.

mod support;

use std::ffi::{c_int, c_void};
use std::path::Path;
use std::ptr;
use std::time::Duration;

use kassa_wal_gather::{failed_flushes, FlushPoint};
use rusqlite::{ffi, params, Connection, ErrorCode, OpenFlags};
use support::FaultDir;

const PRAGMAS: &str = "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;";

const ENOSPC: c_int = ffi::SQLITE_FULL;
const EIO: c_int = ffi::SQLITE_IOERR_WRITE;

/// A WAL frame's size at 1 KiB pages: its 24-byte header and the page.
const FRAME_BYTES: usize = 24 + 1024;

const ROWS_BEFORE: i64 = 50;

fn open_plain(path: &Path) -> Connection {
    support::install();
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_millis(500)).unwrap();
    conn
}

/// A gathering connection with `ROWS_BEFORE` committed rows.
fn open_gathering(path: &Path) -> Connection {
    support::install();
    let conn =
        Connection::open_with_flags_and_vfs(path, OpenFlags::default(), kassa_wal_gather::VFS_NAME)
            .unwrap();
    conn.execute_batch(PRAGMAS).unwrap();
    conn.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k TEXT UNIQUE)")
        .unwrap();
    insert(&conn, "before", ROWS_BEFORE).unwrap();
    conn
}

fn insert(conn: &Connection, tag: &str, n: i64) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN")?;
    for i in 0..n {
        if let Err(error) = conn.execute(
            "INSERT INTO t (k) VALUES (?1)",
            params![format!("{tag}-{i}")],
        ) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(error);
        }
    }
    conn.execute_batch("COMMIT")
}

/// The connection's open file for `op` (`SQLITE_FCNTL_FILE_POINTER`: the database file,
/// `SQLITE_FCNTL_JOURNAL_POINTER`: its WAL). SQLite answers both itself, without a call
/// into the VFS.
fn file_of(conn: &Connection, op: c_int) -> *mut ffi::sqlite3_file {
    let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
    // SAFETY: the handle is open; SQLite writes one pointer to `file`.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            op,
            ptr::from_mut(&mut file).cast::<c_void>(),
        )
    };
    assert_eq!(rc, ffi::SQLITE_OK);
    assert!(!file.is_null());
    file
}

fn wal_file(conn: &Connection) -> *mut ffi::sqlite3_file {
    file_of(conn, ffi::SQLITE_FCNTL_JOURNAL_POINTER)
}

fn db_file(conn: &Connection) -> *mut ffi::sqlite3_file {
    file_of(conn, ffi::SQLITE_FCNTL_FILE_POINTER)
}

/// The methods of an open file.
fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: `file` is open (SQLite keeps it so while its connection is), so its method
    // table is set and static.
    unsafe { &*(*file).pMethods }
}

/// The WAL's `xFileSize`: its result code and the size.
fn wal_size(wal: *mut ffi::sqlite3_file) -> (c_int, i64) {
    let mut size = 0;
    // SAFETY: `wal` is open; SQLite's contract for xFileSize.
    let rc = unsafe { methods(wal).xFileSize.unwrap()(wal, &mut size) };
    (rc, size)
}

/// Leaves a zeroed frame gathered past the WAL's end, where recovery would never take it
/// for a frame (its salts do not match), and checks that it did not reach the file.
fn gather_pending(dir: &FaultDir, wal: *mut ffi::sqlite3_file) {
    let (rc, size) = wal_size(wal);
    assert_eq!(rc, ffi::SQLITE_OK);
    let writes_before = support::wal_writes(dir.path());
    let frame = [0u8; FRAME_BYTES];
    // SAFETY: `wal` is open and `frame` holds FRAME_BYTES bytes.
    let rc = unsafe {
        methods(wal).xWrite.unwrap()(wal, frame.as_ptr().cast(), FRAME_BYTES as c_int, size)
    };
    assert_eq!(rc, ffi::SQLITE_OK);
    assert_eq!(
        support::wal_writes(dir.path()),
        writes_before,
        "the frame was written at once, not gathered"
    );
}

/// Arms one failing WAL write with `code`, runs `call` (which must flush through `point`)
/// and checks that exactly that flush failed.
fn fail_at(dir: &FaultDir, point: FlushPoint, code: c_int, call: impl FnOnce() -> c_int) -> c_int {
    let before = failed_flushes(point);
    support::arm(dir.path(), 0, 1, code);
    let rc = call();
    support::disarm(dir.path());
    assert_eq!(
        support::failed_writes(dir.path()),
        1,
        "{point:?}: the fault"
    );
    assert_eq!(failed_flushes(point), before + 1, "{point:?}: counted");
    rc
}

/// Every later call on the failed WAL answers `SQLITE_IOERR_WRITE`, with the fault gone.
fn assert_sticky(wal: *mut ffi::sqlite3_file, case: &str) {
    assert_eq!(
        wal_size(wal).0,
        ffi::SQLITE_IOERR_WRITE,
        "{case}: xFileSize after"
    );
    let mut page = [0u8; 32];
    // SAFETY: `wal` is open and `page` holds 32 bytes.
    let read = unsafe { methods(wal).xRead.unwrap()(wal, page.as_mut_ptr().cast(), 32, 0) };
    assert_eq!(read, ffi::SQLITE_IOERR_WRITE, "{case}: xRead after");
}

/// The SQL-level outcome: the failed connection answers an I/O error (never "disk full",
/// which SQLite would take as "roll back the statement only"), other connections write
/// while it is open and after it closed, and every committed row is there in a file that
/// passes `integrity_check`.
fn assert_database_recovers(path: &Path, failed: Option<Connection>, case: &str) {
    let mut others = 0;
    if let Some(failed) = failed {
        let answer = insert(&failed, "failed", 1);
        let code = answer.unwrap_err().sqlite_error_code();
        assert_eq!(code, Some(ErrorCode::SystemIoFailure), "{case}");
        others += assert_others_can_write(path, &format!("{case}: while open"));
        drop(failed);
    }
    others += assert_others_can_write(path, &format!("{case}: after close"));
    let reader = open_plain(path);
    let integrity: String = reader
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "{case}");
    let count = |pattern: &str| -> i64 {
        reader
            .query_row("SELECT count(*) FROM t WHERE k LIKE ?1", [pattern], |row| {
                row.get(0)
            })
            .unwrap()
    };
    assert_eq!(count("before-%"), ROWS_BEFORE, "{case}");
    assert_eq!(count("other-%"), others, "{case}");
    assert_eq!(count("failed-%"), 0, "{case}");
}

/// Another connection inserts 3 rows (it would get `SQLITE_BUSY` if a lock were left
/// taken); returns the rows.
fn assert_others_can_write(path: &Path, case: &str) -> i64 {
    let other = open_plain(path);
    let tag = format!("other-{}", case.len());
    let before: i64 = other
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap();
    let written = insert(&other, &tag, 3);
    assert!(
        written.is_ok(),
        "another connection cannot write ({case}): {written:?}"
    );
    let after: i64 = other
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap();
    after - before
}

/// The files of the connection under test, and the WAL's size before the pending bytes.
#[derive(Clone, Copy)]
struct Files {
    db: *mut ffi::sqlite3_file,
    wal: *mut ffi::sqlite3_file,
    wal_size: i64,
}

/// For both fault codes: a gathering connection, `prepare` run on its files, bytes left
/// pending, the fault armed, and `call`, which must flush through `point`. It answers
/// `SQLITE_IOERR_WRITE` (`None`: it cannot answer, as the barrier), the failure sticks,
/// and the database recovers.
fn point_fails(point: FlushPoint, prepare: fn(Files), call: fn(Files) -> Option<c_int>) {
    for code in [ENOSPC, EIO] {
        let case = format!("{point:?} {code}");
        let dir = FaultDir::new("point");
        let conn = open_gathering(&dir.db());
        let wal = wal_file(&conn);
        let files = Files {
            db: db_file(&conn),
            wal,
            wal_size: wal_size(wal).1,
        };
        prepare(files);
        gather_pending(&dir, wal);
        let mut answer = None;
        fail_at(&dir, point, code, || {
            answer = call(files);
            ffi::SQLITE_OK
        });
        if let Some(rc) = answer {
            assert_eq!(rc, ffi::SQLITE_IOERR_WRITE, "{case}: the call's answer");
        }
        assert_sticky(wal, &case);
        // Had a lock been left taken, the other connections would get SQLITE_BUSY.
        assert_database_recovers(&dir.db(), Some(conn), &case);
    }
}

#[test]
fn a_failed_write_at_truncate_answers_an_io_error() {
    point_fails(
        FlushPoint::Truncate,
        |_| {},
        |files| {
            // SAFETY: the WAL is open; truncating to its own size changes nothing.
            Some(unsafe { methods(files.wal).xTruncate.unwrap()(files.wal, files.wal_size) })
        },
    );
}

#[test]
fn a_failed_write_at_file_size_answers_an_io_error() {
    point_fails(
        FlushPoint::FileSize,
        |_| {},
        |files| Some(wal_size(files.wal).0),
    );
}

/// SQLite's WAL write lock: the first lock slot of the shared memory.
const WAL_WRITE_LOCK: c_int = 0;

fn shm_lock(db: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: `db` is the open database file of a connection in WAL mode (shared memory
    // mapped); one exclusive slot, as SQLite's own walLockExclusive asks.
    unsafe { methods(db).xShmLock.unwrap()(db, WAL_WRITE_LOCK, 1, flags) }
}

#[test]
fn a_failed_write_before_a_lock_answers_an_io_error_and_takes_no_lock() {
    point_fails(
        FlushPoint::ShmLock,
        |_| {},
        |files| {
            Some(shm_lock(
                files.db,
                ffi::SQLITE_SHM_LOCK | ffi::SQLITE_SHM_EXCLUSIVE,
            ))
        },
    );
}

#[test]
fn a_failed_write_before_an_unlock_answers_an_io_error_and_still_unlocks() {
    point_fails(
        FlushPoint::ShmUnlock,
        |files| {
            let locked = shm_lock(files.db, ffi::SQLITE_SHM_LOCK | ffi::SQLITE_SHM_EXCLUSIVE);
            assert_eq!(locked, ffi::SQLITE_OK);
        },
        |files| {
            Some(shm_lock(
                files.db,
                ffi::SQLITE_SHM_UNLOCK | ffi::SQLITE_SHM_EXCLUSIVE,
            ))
        },
    );
}

#[test]
fn a_failed_write_at_the_barrier_does_not_abort_and_the_next_call_answers_an_io_error() {
    point_fails(
        FlushPoint::Barrier,
        |_| {},
        |files| {
            // SAFETY: the database file of a connection in WAL mode is open.
            unsafe { methods(files.db).xShmBarrier.unwrap()(files.db) };
            // A barrier cannot answer; the next call on the WAL does (point_fails).
            None
        },
    );
}

/// Descriptors this process holds open on `file`.
fn open_descriptors(file: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target == file)
        .count()
}

#[test]
fn a_failed_write_at_close_still_closes_the_wal_file() {
    for code in [ENOSPC, EIO] {
        let case = format!("Close {code}");
        let dir = FaultDir::new("close");
        let conn = open_gathering(&dir.db());
        // Without the checkpoint at close, the WAL's xClose is the first call to flush:
        // with it, `sqlite3PagerClose` asks the database file SQLITE_FCNTL_HAS_MOVED
        // first (`databaseIsUnmoved`), and that file control would flush.
        // SAFETY: the handle is open; this option takes an int and an optional int pointer.
        let rc = unsafe {
            ffi::sqlite3_db_config(
                conn.handle(),
                ffi::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                1 as c_int,
                ptr::null_mut::<c_int>(),
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK);
        let wal_path = {
            let mut name = dir.db().into_os_string();
            name.push("-wal");
            std::path::PathBuf::from(name)
        };
        assert_eq!(
            open_descriptors(&wal_path),
            1,
            "{case}: the WAL is open once"
        );
        gather_pending(&dir, wal_file(&conn));
        let closed = fail_at(&dir, FlushPoint::Close, code, || match conn.close() {
            Ok(()) => ffi::SQLITE_OK,
            Err((_, error)) => panic!("{case}: close failed: {error}"),
        });
        // SQLite ignores the WAL's close result (sqlite3WalClose); what matters is that
        // the inner file is closed all the same.
        assert_eq!(closed, ffi::SQLITE_OK);
        assert_eq!(
            open_descriptors(&wal_path),
            0,
            "{case}: the WAL's descriptor leaked"
        );
        assert_database_recovers(&dir.db(), None, &case);
    }
}

#[test]
fn the_test_names_every_flush_point() {
    // Each point is reached by a test: the SQL histories of faults.rs or one above.
    let by_sql = [
        FlushPoint::Write,
        FlushPoint::Read,
        FlushPoint::Sync,
        FlushPoint::FileControl,
        FlushPoint::ShmUnlock,
    ];
    let direct = [
        FlushPoint::Truncate,
        FlushPoint::FileSize,
        FlushPoint::ShmLock,
        FlushPoint::Barrier,
        FlushPoint::Close,
    ];
    for point in FlushPoint::ALL {
        assert!(
            by_sql.contains(&point) || direct.contains(&point),
            "{point:?} has no fault-injection test"
        );
    }
}
