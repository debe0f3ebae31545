//! A database larger than its lock page, with the writer's page cache parking pages under
//! the lock page's key. SQLite's lock byte is moved from 1 GiB to 64 KiB
//! (`SQLITE_TESTCTRL_PENDING_BYTE`), so the file passes it at 65 pages of 1 KiB; the page
//! cache must read the offset, not assume 1 GiB, or nothing would park. Rows are inserted,
//! updated and deleted until the file is far past the lock page, shrunk below it (auto
//! vacuum truncates the file) and grown again; every row reads back, `integrity_check` is
//! clean, through the writer, another connection and a reopen.

mod rows;

use std::collections::BTreeMap;
use std::ffi::c_uint;
use std::path::Path;

use rows::{integrity, table, Rng};
use rusqlite::{ffi, params, Connection};

const PRAGMAS: &str = "PRAGMA page_size = 1024; PRAGMA auto_vacuum = FULL; \
     PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = 64;";

fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(PRAGMAS).unwrap();
    conn
}

fn pages(conn: &Connection) -> i64 {
    conn.query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn a_database_past_a_moved_lock_page_parks_pages_and_reads_back_whole() {
    const PENDING_BYTE: c_uint = 0x1_0000;
    const LOCK_PAGE: i64 = PENDING_BYTE as i64 / 1024 + 1;
    assert_eq!(kassa_wal_gather::tune_process(), Ok(()));
    // SAFETY: before any database is opened in this process; returns the old offset.
    let old = unsafe { ffi::sqlite3_test_control(ffi::SQLITE_TESTCTRL_PENDING_BYTE, PENDING_BYTE) };
    assert_eq!(old, 0x4000_0000);
    let dir = std::env::temp_dir().join(format!("kassa-lock-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("test.db");
    let writer = kassa_wal_gather::opening_writer(|| {
        let conn = open(&path);
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v INTEGER NOT NULL);
             CREATE INDEX t_by_v ON t (v, k);",
        )
        .unwrap();
        conn
    });
    let mut model = BTreeMap::new();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut batch = |writer: &Connection, model: &mut BTreeMap<String, i64>, inserts: usize| {
        let tx = writer.unchecked_transaction().unwrap();
        for _ in 0..inserts {
            let key = format!(
                "{:016x}-{}",
                rng.next(),
                "y".repeat((rng.next() % 60) as usize)
            );
            let value = (rng.next() % 1_000_000) as i64;
            tx.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", params![key, value])
                .unwrap();
            model.insert(key, value);
        }
        tx.commit().unwrap();
    };
    while pages(&writer) < 20 * LOCK_PAGE {
        batch(&writer, &mut model, 200);
    }
    assert_eq!(integrity(&writer), "ok");
    // Shrink below the lock page: auto vacuum truncates the file at each commit.
    let keys: Vec<String> = model.keys().cloned().collect();
    let tx = writer.unchecked_transaction().unwrap();
    for key in keys.iter().skip(40) {
        tx.execute("DELETE FROM t WHERE k = ?1", params![key])
            .unwrap();
        model.remove(key);
    }
    tx.commit().unwrap();
    assert!(pages(&writer) < LOCK_PAGE, "{} pages", pages(&writer));
    assert_eq!(table(&writer), model);
    // And past it again.
    while pages(&writer) < 5 * LOCK_PAGE {
        batch(&writer, &mut model, 200);
    }
    assert!(
        kassa_wal_gather::parked_pages() > 0,
        "no page was parked under the moved lock page's key"
    );
    let reader = open(&path);
    assert_eq!(table(&reader), model);
    assert_eq!(table(&writer), model);
    assert_eq!(integrity(&reader), "ok");
    drop((writer, reader));
    let reopened = open(&path);
    assert_eq!(table(&reopened), model);
    assert_eq!(integrity(&reopened), "ok");
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}
