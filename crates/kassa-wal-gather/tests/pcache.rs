//! The page cache of `tune_process` on real files: B-tree rebalancing parks pages under the
//! lock page's key through the writer's cache (opened inside `opening_writer`) and through
//! no other, and every row written is read back, by the writing connection, by another
//! one, and after a reopen, with `PRAGMA integrity_check` clean.

mod rows;

use std::collections::BTreeMap;
use std::path::PathBuf;

use rows::{integrity, table, Rng};
use rusqlite::{params, Connection};

/// Small pages and a small cache, so that rebalancing and cache misses are frequent.
const PRAGMAS: &str = "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; PRAGMA cache_size = 64;";

fn open(path: &PathBuf) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(PRAGMAS).unwrap();
    conn
}

#[test]
fn random_inserts_updates_and_deletes_read_back_whole_through_the_tuned_page_cache() {
    // First thing in this test binary, before any connection: SQLite takes it only then.
    assert_eq!(kassa_wal_gather::tune_process(), Ok(()));
    let dir = std::env::temp_dir().join(format!("kassa-pcache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("test.db");
    let writer = kassa_wal_gather::opening_writer(|| {
        let writer = open(&path);
        writer
            .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .unwrap();
        writer
    });
    writer
        .execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v INTEGER NOT NULL);
             CREATE INDEX t_by_v ON t (v, k);",
        )
        .unwrap();
    let reader = open(&path);
    let mut model = BTreeMap::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for batch in 0..120 {
        let tx = writer.unchecked_transaction().unwrap();
        for _ in 0..80 {
            let key = format!(
                "{:016x}-{}",
                rng.next(),
                "x".repeat((rng.next() % 40) as usize)
            );
            let value = (rng.next() % 1_000_000) as i64;
            tx.execute("INSERT INTO t (k, v) VALUES (?1, ?2)", params![key, value])
                .unwrap();
            model.insert(key, value);
        }
        // Updates move index entries; deletes free pages for later inserts to reuse.
        let keys: Vec<String> = model.keys().cloned().collect();
        for _ in 0..20 {
            let key = &keys[(rng.next() % keys.len() as u64) as usize];
            if !model.contains_key(key) {
                continue;
            }
            if rng.next().is_multiple_of(2) {
                let value = (rng.next() % 1_000_000) as i64;
                tx.execute("UPDATE t SET v = ?1 WHERE k = ?2", params![value, key])
                    .unwrap();
                model.insert(key.clone(), value);
            } else {
                tx.execute("DELETE FROM t WHERE k = ?1", params![key])
                    .unwrap();
                model.remove(key);
            }
        }
        tx.commit().unwrap();
        if batch % 7 == 6 {
            // A transaction that rebalances and is rolled back leaves nothing behind.
            let rolled_back = writer.unchecked_transaction().unwrap();
            for _ in 0..200 {
                let key = format!("gone-{:016x}", rng.next());
                rolled_back
                    .execute("INSERT INTO t (k, v) VALUES (?1, 0)", params![key])
                    .unwrap();
            }
            rolled_back.rollback().unwrap();
        }
        assert_eq!(
            table(&reader),
            model,
            "the other connection after batch {batch}"
        );
    }
    assert_eq!(table(&writer), model);
    assert_eq!(integrity(&writer), "ok");
    assert!(
        kassa_wal_gather::parked_pages() > 0,
        "no B-tree rebalancing parked a page; the test no longer exercises the cache"
    );
    // Any other connection's cache is the default one, call for call: nothing parks.
    let parked = kassa_wal_gather::parked_pages();
    let tx = reader.unchecked_transaction().unwrap();
    for _ in 0..2000 {
        let key = format!("other-{:016x}", rng.next());
        tx.execute("INSERT INTO t (k, v) VALUES (?1, 1)", params![key])
            .unwrap();
    }
    tx.rollback().unwrap();
    assert_eq!(kassa_wal_gather::parked_pages(), parked);
    drop((writer, reader));
    let reopened = open(&path);
    assert_eq!(table(&reopened), model);
    assert_eq!(integrity(&reopened), "ok");
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}
