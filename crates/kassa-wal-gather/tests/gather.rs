//! The gathering VFS against the real default VFS on real files: what one connection
//! commits through it, others read at once and after a reopen; a spilled and rolled-back
//! transaction leaves nothing behind; and a commit's frames reach the file in far fewer
//! system calls.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::{params, Connection, OpenFlags};

/// The store's own settings that matter here: WAL, a commit synced before it returns, and
/// small pages so a transaction spans many frames.
const PRAGMAS: &str = "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;";

struct TempDb {
    dir: PathBuf,
}

impl TempDb {
    fn new(name: &str) -> TempDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kassa-wal-gather-{}-{}-{name}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDb { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("test.db")
    }

    fn open_gathering(&self) -> Connection {
        kassa_wal_gather::register().unwrap();
        let conn = Connection::open_with_flags_and_vfs(
            self.path(),
            OpenFlags::default(),
            kassa_wal_gather::VFS_NAME,
        )
        .unwrap();
        conn.execute_batch(PRAGMAS).unwrap();
        conn
    }

    fn open_plain(&self) -> Connection {
        let conn = Connection::open(self.path()).unwrap();
        conn.execute_batch(PRAGMAS).unwrap();
        conn
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn create_table(conn: &Connection) {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB)",
    )
    .unwrap();
}

/// Inserts `n` rows with keys `prefix-i` spread over the key index, in one transaction.
fn insert_rows(conn: &mut Connection, prefix: &str, n: usize) {
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO rows (k, v) VALUES (?1, zeroblob(300))")
            .unwrap();
        for i in 0..n {
            // Reversed digits spread the keys over the index, as random ids would.
            let key: String = format!("{i:06}").chars().rev().collect();
            insert.execute(params![format!("{key}-{prefix}")]).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn count(conn: &Connection, prefix: &str) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM rows WHERE k LIKE ?1",
        params![format!("%-{prefix}")],
        |row| row.get(0),
    )
    .unwrap()
}

fn integrity(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn every_commit_is_read_at_once_by_another_connection_and_after_a_reopen() {
    let db = TempDb::new("visible");
    let mut writer = db.open_gathering();
    create_table(&writer);
    let reader = db.open_plain();
    for round in 0..30 {
        insert_rows(&mut writer, &format!("r{round}"), 50 + round * 7);
        // The reader starts a fresh read transaction for each statement: it must see the
        // whole commit, never part of it or an unwritten frame.
        assert_eq!(
            count(&reader, &format!("r{round}")),
            (50 + round * 7) as i64
        );
        assert_eq!(integrity(&reader), "ok");
    }
    let total: i64 = (0..30).map(|round| 50 + round * 7).sum();
    drop(reader);
    drop(writer);
    // Reopened from the files alone (the WAL is replayed by recovery).
    let reopened = db.open_plain();
    assert_eq!(count(&reopened, "%"), total);
    assert_eq!(integrity(&reopened), "ok");
}

#[test]
fn commits_that_skip_the_sync_are_still_written_before_another_connection_can_see_them() {
    // The store syncs every commit, which writes the gathered frames first. Without the
    // sync the shim does not gather at all (ADR 19): the writes pass straight through.
    let db = TempDb::new("nosync");
    let mut writer = db.open_gathering();
    writer.execute_batch("PRAGMA synchronous = NORMAL").unwrap();
    create_table(&writer);
    let reader = db.open_plain();
    for round in 0..30 {
        insert_rows(&mut writer, &format!("n{round}"), 40 + round * 5);
        assert_eq!(integrity(&reader), "ok");
        assert_eq!(
            count(&reader, &format!("n{round}")),
            (40 + round * 5) as i64
        );
    }
}

#[test]
fn a_spilled_then_rolled_back_transaction_leaves_nothing_for_the_next_writer_to_trip_on() {
    let db = TempDb::new("spill");
    let mut gathering = db.open_gathering();
    create_table(&gathering);
    gathering
        .execute_batch("CREATE TABLE spill (id INTEGER PRIMARY KEY, v BLOB)")
        .unwrap();
    // A cache of 20 pages makes a large transaction write (spill) frames to the WAL before
    // it ends. SQLite reads spilled pages back while the transaction runs, which writes out
    // what is gathered, so this does not show where the last spilled frames are written;
    // it shows that a rolled-back spill, wherever written, never lands on frames that
    // another connection commits afterwards (the NORMAL-sync test covers the flush at the
    // shared-memory calls).
    gathering.execute_batch("PRAGMA cache_size = 20").unwrap();
    insert_rows(&mut gathering, "before", 100);
    {
        let tx = gathering.transaction().unwrap();
        for _ in 0..1500 {
            tx.execute("INSERT INTO spill (v) VALUES (zeroblob(1000))", [])
                .unwrap();
        }
        tx.rollback().unwrap();
    }
    // Another connection (the default VFS) now commits frames over the whole region the
    // spilled ones took: had they been written late, they would overwrite these.
    let mut plain = db.open_plain();
    insert_rows(&mut plain, "plain", 5000);
    // And the gathering one commits again after it.
    insert_rows(&mut gathering, "after", 200);
    for conn in [&plain, &gathering] {
        assert_eq!(integrity(conn), "ok");
        assert_eq!(count(conn, "before"), 100);
        assert_eq!(count(conn, "plain"), 5000);
        assert_eq!(count(conn, "after"), 200);
    }
    drop(plain);
    drop(gathering);
    let reopened = db.open_plain();
    assert_eq!(integrity(&reopened), "ok");
    assert_eq!(count(&reopened, "%"), 5300);
    let spilled: i64 = reopened
        .query_row("SELECT count(*) FROM spill", [], |row| row.get(0))
        .unwrap();
    assert_eq!(spilled, 0);
}

#[test]
fn a_checkpoint_and_a_restarted_wal_keep_every_commit() {
    let db = TempDb::new("restart");
    let mut writer = db.open_gathering();
    create_table(&writer);
    let checkpointer = db.open_plain();
    for round in 0..20 {
        insert_rows(&mut writer, &format!("c{round}"), 120);
        // A full checkpoint lets the next commit start the WAL again from its header.
        checkpointer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    assert_eq!(count(&checkpointer, "%"), 20 * 120);
    drop(writer);
    drop(checkpointer);
    let reopened = db.open_plain();
    assert_eq!(count(&reopened, "%"), 20 * 120);
    assert_eq!(integrity(&reopened), "ok");
}

/// Write system calls made so far by this thread (`syscw` of `/proc/thread-self/io`).
fn thread_write_calls() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|line| line.strip_prefix("syscw: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Write calls made by committing the same 400 spread rows on a fresh database.
fn write_calls_of_a_commit(gathering: bool) -> u64 {
    let db = TempDb::new("count");
    let mut conn = if gathering {
        db.open_gathering()
    } else {
        db.open_plain()
    };
    create_table(&conn);
    insert_rows(&mut conn, "warm", 400);
    let before = thread_write_calls();
    insert_rows(&mut conn, "measured", 400);
    thread_write_calls() - before
}

#[test]
fn a_commit_reaches_the_wal_in_a_few_writes_instead_of_two_per_frame() {
    let plain = write_calls_of_a_commit(false);
    let gathered = write_calls_of_a_commit(true);
    // The plain VFS writes a header and a page per frame: hundreds of calls here.
    assert!(plain > 100, "plain VFS made only {plain} write calls");
    assert!(
        gathered * 20 < plain,
        "gathering made {gathered} write calls against {plain}"
    );
}

/// One step of a history shared by the gathering connection and another one on the same file.
#[derive(Clone, Debug)]
enum Step {
    /// The gathering connection commits `rows` rows.
    Commit { rows: usize },
    /// It writes `rows` rows, with a small cache so they spill to the WAL, and rolls back.
    SpillAndRollBack { rows: usize },
    /// The other connection (default VFS) commits `rows` rows.
    OtherCommits { rows: usize },
    /// A checkpoint on the other connection; `restart` lets the next commit rewind the WAL.
    Checkpoint { restart: bool },
    /// Both connections close and open again (the WAL is recovered from the file).
    Reopen,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (1usize..400).prop_map(|rows| Step::Commit { rows }),
        2 => (200usize..1500).prop_map(|rows| Step::SpillAndRollBack { rows }),
        2 => (1usize..400).prop_map(|rows| Step::OtherCommits { rows }),
        1 => any::<bool>().prop_map(|restart| Step::Checkpoint { restart }),
        1 => Just(Step::Reopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever the history, a reader on the default VFS sees exactly the committed rows
    /// after every step, and the file passes `integrity_check` at the end and after a reopen.
    #[test]
    fn any_history_reads_back_exactly_what_was_committed(
        steps in proptest::collection::vec(step(), 1..14)
    ) {
        let db = TempDb::new("history");
        let mut gathering = db.open_gathering();
        create_table(&gathering);
        gathering.execute_batch("PRAGMA cache_size = 20").unwrap();
        let mut other = db.open_plain();
        let mut committed = 0i64;
        for (i, step) in steps.iter().enumerate() {
            let tag = format!("s{i}");
            match step {
                Step::Commit { rows } => {
                    insert_rows(&mut gathering, &tag, *rows);
                    committed += *rows as i64;
                }
                Step::SpillAndRollBack { rows } => {
                    let tx = gathering.transaction().unwrap();
                    for row in 0..*rows {
                        tx.execute(
                            "INSERT INTO rows (k, v) VALUES (?1, zeroblob(300))",
                            params![format!("{row}-{tag}")],
                        )
                        .unwrap();
                    }
                    tx.rollback().unwrap();
                }
                Step::OtherCommits { rows } => {
                    insert_rows(&mut other, &tag, *rows);
                    committed += *rows as i64;
                }
                Step::Checkpoint { restart } => {
                    let mode = if *restart { "RESTART" } else { "PASSIVE" };
                    other
                        .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
                        .unwrap();
                }
                Step::Reopen => {
                    drop(gathering);
                    drop(other);
                    gathering = db.open_gathering();
                    gathering.execute_batch("PRAGMA cache_size = 20").unwrap();
                    other = db.open_plain();
                }
            }
            let reader = db.open_plain();
            proptest::prop_assert_eq!(count(&reader, "%"), committed, "after {:?}", step);
        }
        proptest::prop_assert_eq!(integrity(&gathering), "ok");
        drop(gathering);
        drop(other);
        let reopened = db.open_plain();
        proptest::prop_assert_eq!(count(&reopened, "%"), committed);
        proptest::prop_assert_eq!(integrity(&reopened), "ok");
    }
}
