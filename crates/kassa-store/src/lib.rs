//! Kassa's storage: one API over SQLite (embedded default) and PostgreSQL (production).
//!
//! Both backends run the same SQL through sqlx's `Any` driver; the few places where the
//! dialects differ (row locks) ask [`Backend`]. SQLite gets one writer connection, so writes
//! queue in-process instead of fighting over the database lock; PostgreSQL gets a pool and
//! row locks (`FOR UPDATE`), so several Kassa nodes can share one database.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Connection, Executor, Transaction};

pub mod acquirer;
pub mod aml;
pub mod directory;
pub mod exclusions;
mod group_commit;
pub mod idempotency;
pub mod inbound_log;
pub mod jobs;
mod journal;
pub mod kyc;
pub(crate) use jobs::is_unique_violation;
pub mod ledger;
pub mod limits;
pub mod payments;
pub mod payouts;
mod play_limits;
mod postgres_writer;
pub mod registers;
pub mod risk;
pub mod routing;
mod sqlite_writer;
pub mod threeds;
pub mod versions;
pub mod wallet_writer;
pub mod webhook_endpoints;
pub mod webhook_log;

pub use group_commit::GroupedTx;
use postgres_writer::PostgresWriter;
use sqlite_writer::SqliteWriter;

/// The database driver's error, for callers that commit transactions.
pub use sqlx::Error as SqlxError;

/// A database transaction on the writer pool.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A database connection; functions that run inside a caller's transaction take one, so
/// that a [`Tx`] and a [`HeldConnection`]'s transaction both do.
pub type Conn = sqlx::AnyConnection;

/// The wallet writer's connection, kept from one batch to the next on PostgreSQL. Taking a
/// connection from the pool and giving it back costs two pings (one on release, one before
/// the next acquire): 0.15–0.6 ms of a ~2.8 ms batch, measured; 0.08–0.26 ms once the
/// connection is kept (docs/perf-log.md, note 15). PostgreSQL's writer has a pool of its own
/// ([`Store::with_dedicated_writer`]), so keeping one connection takes it from no one.
///
/// SQLite gives the connection back after every batch ([`HeldConnection::finish_batch`]):
/// it is the one writer connection of the whole process, and keeping it bought nothing
/// there. The ~0.8 ms the pool's acquire took reappeared in the first statement after the
/// commit (the driver's thread waking from the commit's hand-shake).
pub(crate) struct HeldConnection {
    store: Store,
    conn: Option<PoolConnection<Any>>,
}

impl HeldConnection {
    /// Starts a write transaction on the held connection, taking one from the pool first if
    /// none is held. On SQLite it takes the write lock at once, as [`Store::begin`] does.
    pub(crate) async fn begin(&mut self) -> Result<Transaction<'_, Any>, StoreError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            none => none.insert(self.store.writer.acquire().await?),
        };
        Ok(conn.begin_with(self.store.begin_statement()).await?)
    }

    /// Gives the connection back to the pool, which pings it as it takes it back and closes
    /// it if broken: after an error, in case the connection is what failed.
    pub(crate) fn release(&mut self) {
        self.conn = None;
    }

    /// After a batch: keeps the connection on PostgreSQL, gives it back on SQLite so that
    /// the other writers get their turn.
    pub(crate) fn finish_batch(&mut self) {
        if self.store.backend == Backend::Sqlite {
            self.release();
        }
    }
}

/// This process's turn to write to SQLite ([`Store::write_turn`]); ends when dropped.
pub(crate) struct WriteTurn {
    _writer: PoolConnection<Any>,
}

/// Which database Kassa is talking to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded, one file, one writer.
    Sqlite,
    /// Production; several nodes may share it.
    Postgres,
}

/// Storage errors. Database errors keep their source for the log; callers map the rest.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused a statement.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// SQLite, called directly by the wallet writer's own connection, failed or refused a
    /// statement.
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL, called directly by the wallet writer's own connection, failed or
    /// refused a statement.
    #[error("database error")]
    Postgres(#[from] tokio_postgres::Error),
    /// Migrations could not be applied.
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The URL names no supported database.
    #[error("unsupported database url {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// A stored value that the code cannot read back (a bug or a hand edit).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// A player's currency cannot change once their accounts exist.
    #[error("player {player_id} holds {current}; the currency cannot change")]
    CurrencyImmutable { player_id: String, current: String },
    /// The wallet writer's own SQLite connection failed with an I/O error and could not
    /// be opened again yet (it retries with backoff); nothing of the call was done.
    #[error("the wallet writer's database connection is being reopened after an I/O error")]
    WriterReopening,
    /// The SQLite group commit this unit joined failed (ADR 39): a savepoint statement or
    /// the `COMMIT` of the shared transaction; nothing of the unit nor of the other units
    /// of that commit was applied.
    #[error("the group commit failed: {0}")]
    GroupCommitFailed(std::sync::Arc<StoreError>),
}

impl StoreError {
    /// Whether the database could not be reached (refused or lost connection, pool
    /// timeout, server shutting down or starting), or the wallet writer's own SQLite
    /// connection failed to read or write its files or is being reopened after that
    /// (ADR 35): nothing was done, and the same call may succeed once it is back.
    pub fn is_unavailable(&self) -> bool {
        // SQLSTATE class 08 (connection exception) and 57P01..57P03 (admin or crash
        // shutdown, cannot connect now).
        // 53100 disk full and 53300 too many connections: the server is up but cannot take
        // the work now.
        let unavailable_code = |code: &str| {
            code.starts_with("08")
                || matches!(code, "57P01" | "57P02" | "57P03" | "53100" | "53300")
        };
        match self {
            StoreError::Database(error) => match error {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_) => true,
                sqlx::Error::Database(db) => {
                    match db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                        Some(sqlite) => sqlite_code_is_unavailable(
                            sqlx::error::DatabaseError::code(sqlite).as_deref(),
                        ),
                        None => db.code().is_some_and(|c| unavailable_code(&c)),
                    }
                }
                _ => false,
            },
            StoreError::Sqlite(_) => self.is_sqlite_io_failure(),
            StoreError::WriterReopening => true,
            StoreError::GroupCommitFailed(error) => error.is_unavailable(),
            StoreError::Postgres(error) => {
                error.is_closed()
                    || error.code().is_some_and(|c| unavailable_code(c.code()))
                    || std::error::Error::source(error)
                        .is_some_and(|source| source.is::<std::io::Error>())
            }
            _ => false,
        }
    }

    /// Whether SQLite, called directly by the wallet writer, failed to read or write its
    /// files (an I/O error, a full disk). SQLite has rolled the transaction back; with the
    /// WAL shim the connection answers I/O errors until it is reopened (ADR 19, 35).
    pub fn is_sqlite_io_failure(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(
                    failure.code,
                    rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::DiskFull
                )
        )
    }

    /// Whether retrying the whole transaction may succeed (lost race, deadlock, busy file).
    pub fn is_retryable(&self) -> bool {
        if let StoreError::GroupCommitFailed(error) = self {
            return error.is_retryable();
        }
        if let StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) = self {
            // Busy, locked, or a unique or primary key another writer took first.
            return matches!(
                failure.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) || matches!(
                failure.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            );
        }
        if let StoreError::Postgres(error) = self {
            return error.code().is_some_and(|code| {
                [
                    &tokio_postgres::error::SqlState::UNIQUE_VIOLATION,
                    &tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE,
                    &tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(&code)
            });
        }
        let StoreError::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        matches!(
            db.code().as_deref(),
            // Postgres: unique violation, serialization failure, deadlock.
            Some("23505") | Some("40001") | Some("40P01")
            // SQLite: busy, locked, unique constraint (extended code 2067).
            | Some("5") | Some("6") | Some("2067") | Some("517")
        )
    }
}

/// Handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    reader: AnyPool,
    writer: AnyPool,
    backend: Backend,
    /// The SQLite file, for [`Store::sqlite_writer`]; `None` on PostgreSQL and in memory.
    sqlite_path: Option<String>,
    /// The PostgreSQL URL as given, for [`Store::postgres_writer`]; `None` on SQLite.
    postgres_url: Option<String>,
    /// Whether the SQLite writers' page caches park (ADR 18, 19, 38) and the wallet
    /// writer's connection may go through the WAL shim of `kassa-wal-gather` (ADR 16).
    sqlite_tuning: bool,
    /// With the tuning: whether the wallet writer's connection gathers its WAL writes
    /// through the shim (ADR 16, 40); [`Store::with_sqlite_wal_gather`].
    sqlite_wal_gather: bool,
    /// Write transactions begun through this handle (and its clones), so tests assert how
    /// many durable commits a use case costs ([`Store::write_transactions`]).
    write_transactions: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// SQLite's group commit for [`Store::begin_grouped`] (ADR 39); `None` on PostgreSQL
    /// or when it is off.
    group: Option<std::sync::Arc<group_commit::GroupCommit>>,
    /// Ledger account ids seen committed, by (merchant, kind, owner, currency): accounts are
    /// never deleted nor re-keyed, so a write transaction need not look them up again
    /// ([`Store::ledger_account`]).
    known_accounts: std::sync::Arc<
        std::sync::RwLock<HashMap<directory::AccountKey, kassa_core::ledger::AccountId>>,
    >,
    /// The time limits and the wallet writer decide with ([`Store::clock`]).
    clock: Clock,
}

/// The time responsible-gambling limits are decided with: a limit's cooling-off, the
/// windows a bet is counted in, a play session's break, and the time the wallet writer
/// stamps its batches with. The system's time, unless a test moves it forward
/// ([`Clock::advance`]) to see a cooling-off end or a session break pass without waiting;
/// shared by every clone of a store.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Clock {
    /// Milliseconds since the Unix epoch, moved by [`advance`](Self::advance).
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Moves this store's time forward by `ms` (tests only: nothing in Kassa calls it).
    pub fn advance(&self, ms: i64) {
        self.offset_ms
            .fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether a SQLite result code read from sqlx's error (the extended code, as text) says
/// the files could not be read or written: an I/O error (`SQLITE_IOERR`, 10, and its
/// extended codes), a full disk (`SQLITE_FULL`, 13) or a file that cannot be opened
/// (`SQLITE_CANTOPEN`, 14). SQLite has rolled the statement's transaction back; the same
/// call may succeed once there is room again, so it is 503, not 500.
fn sqlite_code_is_unavailable(code: Option<&str>) -> bool {
    let Some(code) = code.and_then(|code| code.parse::<i32>().ok()) else {
        return false;
    };
    matches!(code & 0xff, 10 | 13 | 14)
}

/// Environment variable that turns the SQLite tuning off (`off`, `false`, `0`, `no`) or on:
/// the config key `storage.sqlite_tuning`, and what [`Store::connect`] uses (tests).
pub const SQLITE_TUNING_VAR: &str = "KASSA_SQLITE_TUNING";

/// What [`SQLITE_TUNING_VAR`] asks for; `None` when it is unset or empty.
pub fn sqlite_tuning_from_env() -> Option<bool> {
    switch_from_env(SQLITE_TUNING_VAR)
}

/// Environment variable that turns the wallet writer's WAL shim off or on (ADR 40, 44): the
/// config key `storage.sqlite_wal_gather`, and what [`Store::connect`] uses (tests). Only
/// with the tuning on ([`SQLITE_TUNING_VAR`]).
pub const SQLITE_WAL_GATHER_VAR: &str = "KASSA_SQLITE_WAL_GATHER";

/// What [`SQLITE_WAL_GATHER_VAR`] asks for; `None` when it is unset or empty.
pub fn sqlite_wal_gather_from_env() -> Option<bool> {
    switch_from_env(SQLITE_WAL_GATHER_VAR)
}

/// An on/off environment variable: `off`, `false`, `0`, `no` are off, anything else on;
/// `None` when it is unset or empty.
fn switch_from_env(name: &str) -> Option<bool> {
    let value = std::env::var(name).ok()?;
    let value = value.trim().to_ascii_lowercase();
    if value.is_empty() {
        return None;
    }
    Some(!matches!(value.as_str(), "off" | "false" | "0" | "no"))
}

/// Whether the wallet writer gathers its WAL writes when neither the config nor the
/// environment says: on, since interleaved runs on a quiet machine show it paying 9–25%
/// with 10 players and ~9% (median) with 10,000 (ADR 44, which supersedes ADR 40's "off").
pub const SQLITE_WAL_GATHER_DEFAULT: bool = true;

/// Environment variable that turns SQLite's group commit (ADR 39) off (`off`, `false`,
/// `0`, `no`) or on: the config key `storage.sqlite_group_commit`. It is on only with the
/// SQLite tuning ([`SQLITE_TUNING_VAR`]).
pub const SQLITE_GROUP_COMMIT_VAR: &str = "KASSA_SQLITE_GROUP_COMMIT";

/// What [`SQLITE_GROUP_COMMIT_VAR`] asks for; `None` when it is unset or empty.
pub fn sqlite_group_commit_from_env() -> Option<bool> {
    switch_from_env(SQLITE_GROUP_COMMIT_VAR)
}

/// Connections the PostgreSQL pool may open.
const POSTGRES_CONNECTIONS_MAX: u32 = 32;
/// Connections of a dedicated writer pool ([`Store::with_dedicated_writer`]): a batch
/// that is split after a failure runs one call at a time, so one is enough; two let a
/// retry start while a broken connection is being replaced.
const DEDICATED_WRITER_CONNECTIONS_MAX: u32 = 2;
/// Prepared statements a PostgreSQL connection keeps. The journal's statements are
/// generated per batch (rows of a VALUES list, length of an IN list), so the wallet writer
/// uses a few hundred texts; with sqlx's default of 100 they pushed each other out and a
/// batch prepared several of them again, a fifth of its time (docs/perf-log.md, note 16). A URL
/// that sets `statement-cache-capacity` keeps its own value.
const POSTGRES_STATEMENT_CACHE_CAPACITY: usize = 1024;
/// Reader connections on SQLite (the writer is one more).
const SQLITE_READERS_MAX: u32 = 8;
/// How long a request waits for a pooled connection before failing.
const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// A pooled PostgreSQL connection idle for at least this long is pinged before it is handed
/// out; one used more recently is not (ADR 89).
const POSTGRES_PING_AFTER_IDLE: Duration = Duration::from_secs(1);
/// PostgreSQL pools ping a connection before use only after it sat idle (ADR 89). sqlx's
/// default pings every one: a round trip on each acquire, that is on each read outside a
/// transaction and each transaction. sqlx still pings every connection it takes back into
/// the pool and closes a broken one, so a broken one rarely gets this far.
fn postgres_pool_options() -> AnyPoolOptions {
    AnyPoolOptions::new()
        .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= POSTGRES_PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// How a write transaction begins on SQLite: with the write lock taken at once, so that it
/// never fails half-way for want of it.
const SQLITE_BEGIN: &str = "BEGIN IMMEDIATE";

/// `BEGIN IMMEDIATE` on SQLite's writer pool, on a task of its own so that a caller cancelled
/// meanwhile cannot leave the transaction open (ADR 90). sqlx-sqlite 0.8 begins with a
/// custom statement in two steps, and awaits between them: SQLite runs the `BEGIN`, then the
/// driver checks that the connection is in a transaction. A future dropped at that second
/// await never builds the `Transaction` whose drop would roll back. The connection then goes
/// back to the pool inside a transaction that holds the write lock: every other writer waits
/// out its busy timeout, and every later `BEGIN IMMEDIATE` on it fails. On its own task the
/// begin always completes, and a transaction nobody takes is rolled back by its drop.
pub(crate) async fn begin_sqlite_immediate(writer: &AnyPool) -> Result<Tx, StoreError> {
    let writer = writer.clone();
    tokio::spawn(async move { writer.begin_with(SQLITE_BEGIN).await })
        .await
        .map_err(|_| StoreError::Corrupt("a transaction's begin ended without an answer".into()))?
        .map_err(StoreError::from)
}

/// Page size of a new SQLite database (ADR 12, ADR 14, ADR 18). Every journal row lands in
/// a random leaf of the txn-id and player indexes, and a commit writes each page it touched
/// into the WAL in full: smaller pages write fewer bytes, larger ones split less often. With
/// 10,000 players a commit of ~32 calls wrote 158 frames of 1 KiB and rebalanced index pages
/// 19 times; with 2 KiB pages 138 frames and 13 times. While each rebalance cost a walk of
/// the page cache (see below), 2 KiB answered 11–15% more calls (note 22); since the page
/// cache of ADR 18 took the walk away, 1 KiB answers ~14% more than 2 KiB with 10,000
/// players and ~10% more with 10 (docs/perf-log.md, note 31). An existing database keeps the page
/// size it was created with; WAL mode cannot change it, so converting one is an offline
/// `PRAGMA journal_mode = DELETE; PRAGMA page_size = 1024; VACUUM;` (docs/operations.md).
const SQLITE_PAGE_SIZE_BYTES: u32 = 1024;
/// The writer's page cache: index leaves the journal writes stay in memory instead of being
/// read back from the file. Until ADR 18, SQLite walked the whole cache at the end of every
/// transaction that rebalanced an index page, so a larger cache cost more (32 MiB: 19% of
/// the writer's time with 10,000 players, note 22). With that walk gone, 32 MiB of 2 KiB
/// pages still did not beat 8 MiB (note 31).
const SQLITE_WRITER_CACHE_KIB: u32 = 8 * 1024;
/// WAL pages after which a writer checkpoints in its own commit. The copying is done by
/// [`Store::checkpoint_wal`] on a reader connection every 500 ms, off the writers' path; a
/// writer's own checkpoint then finds only what came since and lets the WAL restart from its
/// beginning (SQLite restarts a WAL only when it is wholly copied, which the background
/// checkpoint never sees under steady writes). At 4,096 pages (4 MiB) the wallet writer
/// reached it every ~130 ms with 10,000 players and each such commit took 12–20 ms (p99
/// 21–26 ms; docs/perf-log.md, note 20). At 64 MiB it was still every ~0.7 s at ~100 MB/s of WAL
/// and 7.6% of the writer's samples; at 256 MiB the wallet answered 7–20% more calls with 10,000
/// players and p99 fell from 10–12 to 7–8 ms (note 28). 256 MiB of the default page size (a
/// file made before ADR 18 with 2 KiB pages checkpoints at 512 MiB).
const SQLITE_WRITER_AUTOCHECKPOINT_PAGES: u32 = 256 * 1024 * 1024 / SQLITE_PAGE_SIZE_BYTES;

/// What every SQLite connection sets first. The page size only counts before the first
/// table exists, so it comes first. WAL lets readers run beside the writer; FULL makes each
/// commit durable; the busy timeout covers other processes (CLI tools); statement journals
/// stay in memory.
fn sqlite_connection_pragmas() -> String {
    format!(
        "PRAGMA page_size = {SQLITE_PAGE_SIZE_BYTES}; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
         PRAGMA temp_store = MEMORY;"
    )
}

/// What a writer connection (sqlx's one, and the wallet writer's own) sets on top.
fn sqlite_writer_pragmas() -> String {
    format!(
        "PRAGMA cache_size = -{SQLITE_WRITER_CACHE_KIB}; \
         PRAGMA wal_autocheckpoint = {SQLITE_WRITER_AUTOCHECKPOINT_PAGES};"
    )
}

/// `url` without the options that only sqlx understands (the wallet writer's own
/// connection has no statement cache to size), which `tokio-postgres` would refuse.
fn without_sqlx_options(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|option| !option.starts_with("statement-cache-capacity="))
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

impl Store {
    /// Connects to `sqlite://PATH` (creating the file and its folder) or `postgres://…`,
    /// with the SQLite tuning on unless [`SQLITE_TUNING_VAR`] turns it off.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with_sqlite_tuning(url, sqlite_tuning_from_env().unwrap_or(true)).await
    }

    /// [`Store::connect`], with the SQLite tuning (`storage.sqlite_tuning`) as given: on,
    /// the wallet writer's own connection goes through the WAL shim and its page cache
    /// parks (ADR 16, 18, 19); off, it is a plain connection and SQLite is left as built.
    pub async fn connect_with_sqlite_tuning(
        url: &str,
        sqlite_tuning: bool,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        // Before this process's first SQLite connection, or SQLite refuses it (ADR 18).
        if sqlite_tuning {
            if let Err(code) = kassa_wal_gather::tune_process() {
                tracing::warn!(
                    code,
                    "SQLite was initialised before Kassa could tune it; running with its \
                     default page cache (correct, slower)"
                );
            }
        }
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or_default();
            if path != ":memory:" {
                if let Some(parent) = Path::new(path)
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Database(sqlx::Error::Configuration(Box::new(e)))
                    })?;
                }
            }
            let url = if url.contains("mode=") {
                url.to_string()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            let options = AnyConnectOptions::from_str(&url)?;
            let pool = |max, pragmas: String| {
                AnyPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
                    .after_connect(move |conn, _| {
                        let pragmas = format!("{} {pragmas}", sqlite_connection_pragmas());
                        Box::pin(async move {
                            conn.execute(pragmas.as_str()).await?;
                            Ok(())
                        })
                    })
            };
            // The one writer connection is a local file that does not go stale: no ping
            // before each use (a round trip to its thread), and it is kept for the life of
            // the pool, so that its page cache stays the one opened with the tuning.
            let writer = pool(1, sqlite_writer_pragmas())
                .test_before_acquire(false)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options.clone());
            // With the tuning, its page cache parks like the wallet writer's (ADR 38).
            let writer = if sqlite_tuning {
                kassa_wal_gather::opening_pooled_writer(writer).await?
            } else {
                writer.await?
            };
            // Nor are the readers pinged (ADR 89).
            let reader = pool(SQLITE_READERS_MAX, String::new())
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            let store = Store {
                reader,
                writer,
                backend: Backend::Sqlite,
                sqlite_path: (path != ":memory:").then(|| path.to_string()),
                postgres_url: None,
                sqlite_tuning,
                sqlite_wal_gather: sqlite_wal_gather_from_env()
                    .unwrap_or(SQLITE_WAL_GATHER_DEFAULT),
                write_transactions: Default::default(),
                group: None,
                known_accounts: Default::default(),
                clock: Clock::default(),
            };
            let group_commit = sqlite_tuning && sqlite_group_commit_from_env().unwrap_or(true);
            return Ok(store.with_sqlite_group_commit(group_commit));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let postgres_url = Some(url.to_string());
            let url = if url.contains("statement-cache-capacity=") {
                url.to_string()
            } else {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!(
                    "{url}{separator}statement-cache-capacity={POSTGRES_STATEMENT_CACHE_CAPACITY}"
                )
            };
            let pool = postgres_pool_options()
                .max_connections(POSTGRES_CONNECTIONS_MAX)
                .connect(&url)
                .await?;
            return Ok(Store {
                reader: pool.clone(),
                writer: pool,
                backend: Backend::Postgres,
                sqlite_path: None,
                postgres_url,
                sqlite_tuning,
                sqlite_wal_gather: sqlite_wal_gather_from_env()
                    .unwrap_or(SQLITE_WAL_GATHER_DEFAULT),
                write_transactions: Default::default(),
                group: None,
                known_accounts: Default::default(),
                clock: Clock::default(),
            });
        }
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }

    /// The same store with a writer pool of its own, opened on the runtime that calls this:
    /// for a writer task that runs on its own thread and runtime, so that its database I/O
    /// is driven there and not behind the request handlers' tasks. SQLite keeps its one
    /// writer connection (a second would only fight it for the file's write lock).
    pub(crate) async fn with_dedicated_writer(&self) -> Result<Store, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(self.clone()),
            Backend::Postgres => {
                let options = (*self.writer.connect_options()).clone();
                let writer = postgres_pool_options()
                    .max_connections(DEDICATED_WRITER_CONNECTIONS_MAX)
                    .connect_with(options)
                    .await?;
                Ok(Store {
                    writer,
                    ..self.clone()
                })
            }
        }
    }

    /// The time limits and the wallet writer decide with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Applies every migration not yet applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATOR.run(&self.writer).await?,
            Backend::Postgres => POSTGRES_MIGRATOR.run(&self.writer).await?,
        }
        Ok(())
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so a transaction never fails half-way for want of it.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        self.count_write_transaction();
        match self.backend {
            Backend::Sqlite => begin_sqlite_immediate(&self.writer).await,
            Backend::Postgres => Ok(self.writer.begin_with(self.begin_statement()).await?),
        }
    }

    /// The same store with SQLite's group commit (ADR 39) on or off: on, the units of
    /// [`Store::begin_grouped`] share one transaction and one durable commit with the units
    /// running beside them. PostgreSQL ignores it (each unit has its own transaction; the
    /// server groups concurrent commits' WAL flushes itself).
    pub fn with_sqlite_group_commit(self, on: bool) -> Store {
        let group = (on && self.backend == Backend::Sqlite)
            .then(|| std::sync::Arc::new(group_commit::GroupCommit::new(self.writer.clone())));
        Store { group, ..self }
    }

    /// Whether [`Store::begin_grouped`] groups units into shared commits.
    pub fn sqlite_group_commit(&self) -> bool {
        self.group.is_some()
    }

    /// Starts a write unit that may share its durable commit with concurrent units (SQLite
    /// with group commit on, ADR 39); otherwise a transaction of its own, as
    /// [`Store::begin`]. The unit must do no network I/O: others wait for it. Counted in
    /// [`Store::write_transactions`] as one write transaction.
    pub async fn begin_grouped(&self) -> Result<GroupedTx, StoreError> {
        match &self.group {
            Some(group) => {
                self.count_write_transaction();
                group.begin().await
            }
            None => Ok(GroupedTx::plain(self.begin().await?, self.backend, true)),
        }
    }

    /// Starts a write unit that will most likely end with
    /// [`GroupedTx::commit_without_waiting_for_disk`]: a deposit start's risk decision alone
    /// (ADR 74), holding the risk subjects' locks `risk_lock_keys` from the start
    /// ([`Store::lock_risk_subjects`] then takes nothing again). As [`Store::begin_grouped`],
    /// but on PostgreSQL its `BEGIN` turns `synchronous_commit` off and takes the locks in the
    /// same round trip (ADR 91), rather than in statements of their own.
    /// [`GroupedTx::commit`] of such a unit still waits for the disk: it restores the setting
    /// first, one round trip on the path that needs it.
    pub async fn begin_risk_decision(
        &self,
        risk_lock_keys: &[i32],
    ) -> Result<GroupedTx, StoreError> {
        if self.backend != Backend::Postgres {
            return self.begin_grouped().await;
        }
        self.count_write_transaction();
        let keys = risk::lock_order(risk_lock_keys);
        let mut statement = String::from("BEGIN; SET LOCAL synchronous_commit TO OFF");
        if !keys.is_empty() {
            let locks = risk::lock_statement(&keys, risk::LockKeys::Inline);
            statement = format!("{statement}; {locks}");
        }
        let tx = self.writer.begin_with(statement).await?;
        let mut tx = GroupedTx::plain(tx, self.backend, false);
        tx.risk_locks_held = keys;
        Ok(tx)
    }

    /// The durable commits SQLite's group commit has made for all its units (0 when it is
    /// off and on PostgreSQL).
    pub fn group_commits(&self) -> u64 {
        self.group.as_ref().map_or(0, |group| group.commits())
    }

    /// How many write transactions this handle has begun: every [`Store::begin`] and every
    /// single-statement write the payment path runs outside one ([`Store::autocommit`]). An
    /// upper bound on its durable commits (a rolled-back one counts too), for tests that
    /// assert what a use case costs. The wallet writer's batches are not counted.
    pub fn write_transactions(&self) -> u64 {
        self.write_transactions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_write_transaction(&self) {
        self.write_transactions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The writer pool for one statement that writes on its own (its own commit), counted
    /// in [`Store::write_transactions`].
    pub(crate) fn autocommit(&self) -> &AnyPool {
        self.count_write_transaction();
        &self.writer
    }

    /// The statement that opens a write transaction (see [`Store::begin`]).
    fn begin_statement(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => SQLITE_BEGIN,
            Backend::Postgres => "BEGIN",
        }
    }

    /// On a SQLite file, a connection of its own for a writer thread that calls SQLite
    /// directly ([`SqliteWriter`], ADR 13); `None` on PostgreSQL or an in-memory database.
    /// Each batch on it must run inside a [`WriteTurn`].
    pub(crate) fn sqlite_writer(&self) -> Option<Result<SqliteWriter, StoreError>> {
        let path = self.sqlite_path.as_deref()?;
        Some(SqliteWriter::open(
            path,
            &format!(
                "{} {}",
                sqlite_connection_pragmas(),
                sqlite_writer_pragmas()
            ),
            self.sqlite_tuning,
            self.sqlite_tuning && self.sqlite_wal_gather,
        ))
    }

    /// The same store with the wallet writer's WAL shim on or off (`storage.sqlite_wal_gather`,
    /// ADR 40); it applies to writers opened afterwards, and only with the tuning on.
    pub fn with_sqlite_wal_gather(mut self, wal_gather: bool) -> Store {
        self.sqlite_wal_gather = wal_gather;
        self
    }

    /// A wallet writer with a PostgreSQL connection of its own ([`PostgresWriter`], ADR 15),
    /// connected: `None` on SQLite, an error when the URL has other options that only sqlx
    /// knows or the database cannot be reached.
    pub(crate) async fn postgres_writer(&self) -> Option<Result<PostgresWriter, StoreError>> {
        let url = self.postgres_url.as_deref()?;
        Some(
            async {
                let mut writer = PostgresWriter::new(&without_sqlx_options(url))?;
                writer.connect().await?;
                Ok(writer)
            }
            .await,
        )
    }

    /// Waits for this process's turn to write to SQLite: takes the one writer connection
    /// from its pool and keeps it until dropped, so that a [`SqliteWriter`] batch and
    /// the writes through sqlx never wait on each other's file lock.
    pub(crate) async fn write_turn(&self) -> Result<WriteTurn, StoreError> {
        Ok(WriteTurn {
            _writer: self.writer.acquire().await?,
        })
    }

    /// The wallet writer's connection (see [`HeldConnection`]).
    pub(crate) fn held_connection(&self) -> HeldConnection {
        HeldConnection {
            store: self.clone(),
            conn: None,
        }
    }

    /// SQLite: copies what the WAL holds into the database file, on a reader connection so
    /// that the wallet writer's commits do not wait for it (PASSIVE: it never blocks the
    /// writer or readers and gives up where they are busy). PostgreSQL: nothing to do.
    pub async fn checkpoint_wal(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.reader)
                .await?;
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    pub(crate) fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// A connection of the reader pool, for reads that a caller runs on one connection
    /// either inside a transaction or, through this, outside one.
    pub async fn read_connection(
        &self,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, StoreError> {
        Ok(self.reader.acquire().await?)
    }

    pub(crate) fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// ` FOR UPDATE` where row locks exist; SQLite's single writer makes them unnecessary.
    pub(crate) fn lock_clause(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
}

/// One entry of a payment's or payout's history: what happened, from which status to which
/// (`None`: recorded and ignored), who did it and why.
#[derive(Clone, Copy, Debug)]
pub struct HistoryEvent<'a> {
    /// `api`, `webhook`, `sync`, `review`, …
    pub source: &'a str,
    /// What happened.
    pub event: &'a str,
    /// Status before.
    pub from: &'a str,
    /// Status after; `None` when the event was ignored.
    pub to: Option<&'a str>,
    /// Who did it (an admin key id), for manual decisions.
    pub actor: Option<&'a str>,
    /// Extra facts, as JSON text.
    pub detail: Option<&'a str>,
}

impl Store {
    /// `count` parameters numbered from `start`, for a statement whose every parameter comes
    /// from this function or [`param_rows`](Self::param_rows), in binding order. PostgreSQL
    /// reads `$n`; SQLite gets plain `?`, because it looks each named parameter up in a list
    /// (at parse and at every bind), which makes a wide multi-row INSERT cost O(n²).
    pub(crate) fn params(&self, start: usize, count: usize) -> String {
        match self.backend {
            Backend::Postgres => placeholders(start, count),
            Backend::Sqlite => vec!["?"; count].join(", "),
        }
    }

    /// Rows of `width` parameters each, with the same rule as [`params`](Self::params).
    pub(crate) fn param_rows(&self, rows: usize, width: usize) -> String {
        match self.backend {
            Backend::Postgres => placeholder_rows(rows, width),
            Backend::Sqlite => {
                let row = format!("({})", vec!["?"; width].join(", "));
                vec![row; rows].join(", ")
            }
        }
    }
}

/// Milliseconds since the Unix epoch, the unit of every stored time.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// `$start, $start+1, …` for `count` parameters: the one placeholder form both backends read.
pub(crate) fn placeholders(start: usize, count: usize) -> String {
    (start..start + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows of `width` placeholders each: `($1, $2), ($3, $4)`.
pub(crate) fn placeholder_rows(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", placeholders(1 + row * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub mod testing;

/// A PostgreSQL URL with its database name replaced (or added) by `name`, keeping user, host
/// and query: `postgres://u@h:5432/postgres` → `postgres://u@h:5432/{name}`.
pub fn postgres_url_with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host = path_start.map(|i| &base[..i]).unwrap_or(base);
    match query {
        Some(query) => format!("{host}/{name}?{query}"),
        None => format!("{host}/{name}"),
    }
}

#[cfg(test)]
mod url_tests {
    use super::postgres_url_with_database as with_database;
    use super::without_sqlx_options;

    #[test]
    fn sqlx_options_are_left_out_of_the_wallet_writers_url() {
        assert_eq!(
            without_sqlx_options("postgres://u@h:5432/db?statement-cache-capacity=10"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(
            without_sqlx_options(
                "postgres://u@h/db?sslmode=disable&statement-cache-capacity=10&application_name=k"
            ),
            "postgres://u@h/db?sslmode=disable&application_name=k"
        );
        assert_eq!(
            without_sqlx_options("postgres://u@h/db"),
            "postgres://u@h/db"
        );
    }

    #[test]
    fn replaces_or_adds_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h?ssl=no", "d"),
            "postgres://h/d?ssl=no"
        );
    }
}
