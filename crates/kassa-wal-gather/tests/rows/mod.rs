//! What the page-cache tests share: a replayable pseudo-random sequence, and reading the
//! test table `t (k, v)` back with the file's integrity.

use std::collections::BTreeMap;

use rusqlite::Connection;

/// A fixed pseudo-random sequence (xorshift), so that a failure can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Every row of `t`, by key.
pub fn table(conn: &Connection) -> BTreeMap<String, i64> {
    let mut select = conn.prepare("SELECT k, v FROM t ORDER BY k").unwrap();
    let rows = select
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// What `PRAGMA integrity_check` says (`ok` when clean).
pub fn integrity(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}
