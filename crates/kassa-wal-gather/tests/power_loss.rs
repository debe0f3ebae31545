//! The power-loss harness (issue 22): a history of commits, spilled and rolled-back
//! transactions, checkpoints and reopens runs through the gathering VFS and the tuned page
//! cache, over a VFS that records every write, sync, truncation and deletion. Then, for
//! many random cut points, the files are rebuilt as a power cut at that point could leave
//! them: everything synced before it, and of what was not synced either nothing or a
//! random part. Each rebuilt database must pass `integrity_check`, hold every commit that
//! was acknowledged before the cut, and hold each commit whole or not at all.
//!
//! `KASSA_POWER_LOSS_CUTS` sets the number of cut points (1,000 unless set) and
//! `KASSA_POWER_LOSS_SEED` the random seed.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags};
use support::Op;

const PRAGMAS: &str = "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = 30;";

/// A fixed pseudo-random sequence (xorshift), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn open_gathering(path: &Path) -> Connection {
    kassa_wal_gather::opening_writer(|| {
        let conn = Connection::open_with_flags_and_vfs(
            path,
            OpenFlags::default(),
            kassa_wal_gather::VFS_NAME,
        )
        .unwrap();
        conn.execute_batch(PRAGMAS).unwrap();
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .unwrap();
        conn
    })
}

/// A commit acknowledged to the history: its number, its rows, and how many events had
/// been recorded when it returned.
struct Ack {
    txn: i64,
    rows: i64,
    events: usize,
}

/// Runs the history in `dir` and returns its recorded events and acknowledged commits.
fn run_history(dir: &Path, rng: &mut Rng) -> (Vec<Op>, Vec<Ack>) {
    support::record(dir);
    let path = dir.join("test.db");
    let mut writer = open_gathering(&path);
    writer
        .execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, txn INTEGER NOT NULL, k TEXT UNIQUE, v BLOB);
             CREATE INDEX t_by_txn ON t (txn);",
        )
        .unwrap();
    let mut other = Connection::open(&path).unwrap();
    other.execute_batch(PRAGMAS).unwrap();
    let mut acks = Vec::new();
    let mut txn = 0i64;
    for _ in 0..60 {
        match rng.below(10) {
            0..=5 => {
                let rows = 1 + rng.below(120) as i64;
                commit_rows(&mut writer, txn, rows, rng);
                acks.push(Ack {
                    txn,
                    rows,
                    events: support::recorded_len(dir),
                });
                txn += 1;
            }
            6 => {
                // Spilled pages, then a rollback: none of it may ever be read back.
                let tx = writer.transaction().unwrap();
                for i in 0..(200 + rng.below(400)) {
                    tx.execute(
                        "INSERT INTO t (txn, k, v) VALUES (-1, ?1, zeroblob(600))",
                        params![format!("gone-{i}-{}", rng.next())],
                    )
                    .unwrap();
                }
                tx.rollback().unwrap();
            }
            7 => {
                let mode = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"][rng.below(4) as usize];
                other
                    .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
                    .unwrap();
            }
            8 => {
                // The other connection (the default VFS) commits too.
                commit_rows(&mut other, txn, 1 + rng.below(40) as i64, rng);
                let rows = other
                    .query_row("SELECT count(*) FROM t WHERE txn = ?1", [txn], |r| r.get(0))
                    .unwrap();
                acks.push(Ack {
                    txn,
                    rows,
                    events: support::recorded_len(dir),
                });
                txn += 1;
            }
            _ => {
                drop(writer);
                drop(other);
                writer = open_gathering(&path);
                other = Connection::open(&path).unwrap();
                other.execute_batch(PRAGMAS).unwrap();
            }
        }
    }
    drop(writer);
    drop(other);
    (support::take_recording(dir), acks)
}

fn commit_rows(conn: &mut Connection, txn: i64, rows: i64, rng: &mut Rng) {
    let tx = conn.transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO t (txn, k, v) VALUES (?1, ?2, zeroblob(?3))",
            params![
                txn,
                format!("{:016x}-{txn}-{i}", rng.next()),
                50 + rng.below(400) as i64
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// One file as a power cut leaves it: what its last sync made durable, and what came since.
#[derive(Default, Clone)]
struct FileState {
    durable: Option<Vec<u8>>,
    since_sync: Vec<Op>,
}

fn apply(content: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { offset, data, .. } => {
            let end = *offset as usize + data.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[*offset as usize..end].copy_from_slice(data);
        }
        Op::Truncate { size, .. } => content.truncate(*size as usize),
        Op::Sync { .. } | Op::Delete { .. } => {}
    }
}

fn file_of(op: &Op) -> &str {
    match op {
        Op::Write { file, .. }
        | Op::Sync { file }
        | Op::Truncate { file, .. }
        | Op::Delete { file } => file,
    }
}

/// Advances the files' states by one event.
fn advance(files: &mut HashMap<String, FileState>, op: &Op) {
    let state = files.entry(file_of(op).to_string()).or_default();
    match op {
        Op::Sync { .. } => {
            let mut content = state.durable.take().unwrap_or_default();
            for pending in state.since_sync.drain(..) {
                apply(&mut content, &pending);
            }
            state.durable = Some(content);
        }
        // A deletion is taken as durable at once (SQLite deletes journals it no longer
        // needs; either state of the file is one recovery handles).
        Op::Delete { .. } => *state = FileState::default(),
        _ => state.since_sync.push(op.clone()),
    }
}

/// Writes the files as the cut leaves them into `into`: with `keep_some`, each event since
/// a file's last sync survives with even odds, otherwise none does.
fn rebuild(files: &HashMap<String, FileState>, into: &Path, keep_some: bool, rng: &mut Rng) {
    let _ = std::fs::remove_dir_all(into);
    std::fs::create_dir_all(into).unwrap();
    for (file, state) in files {
        let mut content = state.durable.clone();
        for op in &state.since_sync {
            if keep_some && rng.below(2) == 0 {
                apply(content.get_or_insert_with(Vec::new), op);
            }
        }
        if let Some(content) = content {
            let name = Path::new(file).file_name().unwrap();
            std::fs::write(into.join(name), content).unwrap();
        }
    }
}

/// Opens the rebuilt database and checks it against the commits acknowledged before the cut.
fn check(into: &Path, acks: &[Ack], cut: usize, case: &str) {
    let conn = Connection::open(into.join("test.db")).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap_or_else(|e| format!("{e}"));
    assert_eq!(integrity, "ok", "{case}");
    let has_table: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 't'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let present: BTreeMap<i64, i64> = if has_table == 1 {
        let mut select = conn
            .prepare("SELECT txn, count(*) FROM t GROUP BY txn")
            .unwrap();
        let rows = select
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    } else {
        BTreeMap::new()
    };
    for ack in acks {
        let found = present.get(&ack.txn).copied();
        if ack.events <= cut {
            assert_eq!(
                found,
                Some(ack.rows),
                "{case}: acknowledged txn {} lost",
                ack.txn
            );
        } else {
            assert!(
                found.is_none() || found == Some(ack.rows),
                "{case}: txn {} is partly there ({found:?} of {})",
                ack.txn,
                ack.rows
            );
        }
    }
    assert!(
        !present.contains_key(&-1),
        "{case}: rolled-back rows came back"
    );
    // Commits are sequential: the ones present are a prefix of them.
    let last_present = present
        .keys()
        .filter(|t| **t >= 0)
        .max()
        .copied()
        .unwrap_or(-1);
    assert_eq!(
        present.keys().filter(|t| **t >= 0).count() as i64,
        last_present + 1,
        "{case}: a gap in the commits"
    );
}

#[test]
fn after_a_power_cut_at_any_point_every_acknowledged_commit_is_there_and_whole() {
    assert_eq!(kassa_wal_gather::tune_process(), Ok(()));
    support::install();
    let cuts = env_u64("KASSA_POWER_LOSS_CUTS", 1000);
    let seed = env_u64("KASSA_POWER_LOSS_SEED", 0x005E_ED0F_C0DE) | 1;
    let mut rng = Rng(seed);
    let base: PathBuf =
        std::env::temp_dir().join(format!("kassa-power-loss-{}", std::process::id()));
    let dir = base.join("live");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let (events, acks) = run_history(&dir, &mut rng);
    assert!(acks.len() > 20, "the history acknowledged too few commits");
    assert!(
        kassa_wal_gather::parked_pages() > 0,
        "no page was parked: the history does not exercise the writer's page cache"
    );
    let mut points: Vec<usize> = (0..cuts)
        .map(|_| rng.below(events.len() as u64 + 1) as usize)
        .collect();
    points.sort_unstable();
    let into = base.join("cut");
    let mut files: HashMap<String, FileState> = HashMap::new();
    let mut replayed = 0;
    for (n, cut) in points.iter().enumerate() {
        while replayed < *cut {
            advance(&mut files, &events[replayed]);
            replayed += 1;
        }
        let keep_some = n % 2 == 1;
        rebuild(&files, &into, keep_some, &mut rng);
        check(
            &into,
            &acks,
            *cut,
            &format!(
                "cut {cut} of {} (keep_some {keep_some}, seed {seed})",
                events.len()
            ),
        );
    }
    eprintln!(
        "power-loss harness: {cuts} cut points over {} events, {} acknowledged commits, \
         0 lost, 0 corrupt",
        events.len(),
        acks.len()
    );
    let _ = std::fs::remove_dir_all(&base);
}
