//! The baseline: the same player ↔ house transfer written the way a team would by hand —
//! one SQL transaction per transfer that locks both balance rows (in id order, `FOR UPDATE`
//! on PostgreSQL; `BEGIN IMMEDIATE` on SQLite), inserts the transfer and updates both
//! balances — run at the same concurrency against the same database.

use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::stats::{self, RunStats};
use super::Load;

/// The house account's id; players are 1..=N.
const HOUSE: i64 = 0;
/// Balance each baseline player starts with (as the wallet's players).
const SEED_BALANCE_MINOR: i64 = 100_000_000;
/// Rows per INSERT while seeding accounts.
const SEED_CHUNK_LEN: usize = 500;
/// How long a SQLite connection waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections the baseline opens on PostgreSQL, as Kassa's own pool: 64 clients share
/// 32 connections there (and the server's `max_connections` of 100 is not exhausted).
const POSTGRES_CONNECTIONS_MAX: u32 = 32;
/// Debits a client remembers as candidates for a refund.
const OPEN_DEBITS_MAX: usize = 64;

/// Where the baseline runs.
#[derive(Clone)]
pub enum Baseline {
    Postgres { url: String },
    Sqlite { path: String },
}

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Baseline {
    /// The baseline over Kassa's database URL (`sqlite://PATH` or `postgres://…`).
    pub fn for_url(database_url: &str) -> anyhow::Result<Baseline> {
        if let Some(rest) = database_url
            .strip_prefix("sqlite://")
            .or_else(|| database_url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or_default().to_string();
            return Ok(Baseline::Sqlite { path });
        }
        anyhow::ensure!(
            database_url.starts_with("postgres"),
            "unsupported database url for the baseline"
        );
        Ok(Baseline::Postgres {
            url: database_url.to_string(),
        })
    }

    async fn pool(&self, connections: u32) -> anyhow::Result<Pool> {
        Ok(match self {
            Baseline::Postgres { url } => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(connections.min(POSTGRES_CONNECTIONS_MAX))
                    .min_connections(connections.min(POSTGRES_CONNECTIONS_MAX))
                    .connect(url)
                    .await?,
            ),
            Baseline::Sqlite { path } => {
                // The same durability as Kassa's store: WAL and a synced commit.
                let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(connections)
                        .min_connections(connections)
                        .connect_with(options)
                        .await?,
                )
            }
        })
    }

    /// Creates the baseline's tables and `players` accounts plus the house.
    pub async fn setup(&self, players: usize) -> anyhow::Result<()> {
        let pool = self.pool(1).await?;
        let statements = [
            "CREATE TABLE bench_baseline_accounts (id BIGINT PRIMARY KEY, \
             initial_minor BIGINT NOT NULL, balance_minor BIGINT NOT NULL, \
             CHECK (id = 0 OR balance_minor >= 0))",
            "CREATE TABLE bench_baseline_transfers (txn_id TEXT PRIMARY KEY, \
             debit_account_id BIGINT NOT NULL REFERENCES bench_baseline_accounts (id), \
             credit_account_id BIGINT NOT NULL REFERENCES bench_baseline_accounts (id), \
             amount_minor BIGINT NOT NULL CHECK (amount_minor > 0), created_at_ms BIGINT NOT NULL)",
        ];
        for sql in statements {
            pool.execute(sql).await?;
        }
        let house = -(players as i64) * SEED_BALANCE_MINOR;
        let ids: Vec<(i64, i64)> = std::iter::once((HOUSE, house))
            .chain((1..=players as i64).map(|id| (id, SEED_BALANCE_MINOR)))
            .collect();
        for chunk in ids.chunks(SEED_CHUNK_LEN) {
            let values: Vec<String> = chunk
                .iter()
                .map(|(id, balance)| format!("({id}, {balance}, {balance})"))
                .collect();
            pool.execute(&format!(
                "INSERT INTO bench_baseline_accounts (id, initial_minor, balance_minor) VALUES {}",
                values.join(", ")
            ))
            .await?;
        }
        pool.close().await;
        Ok(())
    }

    /// One measured run at `load`, then its checks.
    pub async fn run(&self, load: &Load, run_index: u64) -> anyhow::Result<RunStats> {
        let pool = self.pool(load.clients as u32).await?;
        let before = pool.balances().await?;
        let nonce = super::wallet::nonce();
        let issued = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = started + load.duration;
        let tasks: Vec<_> = (0..load.clients)
            .map(|client| {
                let pool = pool.clone();
                let issued = issued.clone();
                let prefix = format!("bl-{nonce}-r{run_index}-c{client}");
                let players = load.players;
                let requests_max = load.requests_max;
                tokio::spawn(async move {
                    client_loop(pool, players, deadline, issued, requests_max, prefix).await
                })
            })
            .collect();
        let mut histogram = stats::new_histogram();
        let mut effects: HashMap<i64, i64> = HashMap::new();
        let (mut ops, mut errors) = (0, 0);
        for task in tasks {
            let result = task.await?;
            histogram.add(&result.histogram)?;
            ops += result.ops;
            errors += result.errors.len() as u64;
            if let Some(error) = result.errors.first() {
                tracing::warn!(%error, "baseline transfer failed");
            }
            for (account, delta) in result.effects {
                *effects.entry(account).or_default() += delta;
            }
        }
        let elapsed = started.elapsed();
        let mut run = RunStats::new(ops, errors, elapsed, &histogram);
        let after = pool.balances().await?;
        let drifted = after
            .iter()
            .filter(|(id, balance)| {
                before.get(id).copied().unwrap_or(0) + effects.get(id).copied().unwrap_or(0)
                    != **balance
            })
            .count();
        let total: i64 = after.values().sum();
        let journal_drift = pool.journal_drift().await?;
        run.checks_ok = drifted == 0 && total == 0 && journal_drift == 0;
        run.checks.push(format!(
            "baseline: {drifted} balances differ from acknowledged transfers, balances sum to \
             {total}, {journal_drift} differ from their journal"
        ));
        pool.close().await;
        Ok(run)
    }
}

struct ClientResult {
    histogram: hdrhistogram::Histogram<u64>,
    ops: u64,
    errors: Vec<String>,
    effects: HashMap<i64, i64>,
}

async fn client_loop(
    pool: Pool,
    players: usize,
    deadline: Instant,
    issued: Arc<AtomicU64>,
    requests_max: u64,
    prefix: String,
) -> ClientResult {
    let mut rng = StdRng::from_entropy();
    let mut result = ClientResult {
        histogram: stats::new_histogram(),
        ops: 0,
        errors: Vec::new(),
        effects: HashMap::new(),
    };
    let mut open_debits: VecDeque<(i64, i64)> = VecDeque::new();
    let mut seq = 0u64;
    while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < requests_max {
        seq += 1;
        let txn_id = format!("{prefix}-{seq}");
        let roll: u32 = rng.gen_range(0..100);
        // The wallet's mix: 10% rollbacks (a refund of a recent bet), 50% bets, 40% wins.
        let (debit, credit, amount_minor) = if roll < 10 && !open_debits.is_empty() {
            let (player, amount) = open_debits.pop_back().expect("not empty");
            (HOUSE, player, amount)
        } else {
            let player = rng.gen_range(1..=players as i64);
            let amount = rng.gen_range(1..=10) * 100 + rng.gen_range(0..100);
            if roll < 60 {
                (player, HOUSE, amount)
            } else {
                (HOUSE, player, amount)
            }
        };
        let started = Instant::now();
        let outcome = match &pool {
            Pool::Postgres(pool) => transfer_postgres(pool, &txn_id, debit, credit, amount_minor)
                .await
                .context("postgres transfer"),
            Pool::Sqlite(pool) => transfer_sqlite(pool, &txn_id, debit, credit, amount_minor)
                .await
                .context("sqlite transfer"),
        };
        stats::record(&mut result.histogram, started.elapsed());
        match outcome {
            Ok(moved) => {
                result.ops += 1;
                if moved {
                    *result.effects.entry(debit).or_default() -= amount_minor;
                    *result.effects.entry(credit).or_default() += amount_minor;
                    if credit == HOUSE {
                        open_debits.push_back((debit, amount_minor));
                        if open_debits.len() > OPEN_DEBITS_MAX {
                            open_debits.pop_front();
                        }
                    }
                }
            }
            Err(error) => result.errors.push(format!("{error:#}")),
        }
    }
    result
}

/// What both backends do once the transaction is open: read both rows (`$select`, which
/// locks them on PostgreSQL), check the player's funds, insert the transfer, update both
/// balances, commit. A macro rather than a generic function because the pools are typed
/// per backend (the baseline does not go through Kassa's `Any` store) and sqlx's executor
/// bounds over a generic database would be longer than the body.
macro_rules! transfer_in {
    ($tx:ident, $select:expr, $txn_id:expr, $debit:expr, $credit:expr, $amount_minor:expr) => {{
        let (debit, credit, amount_minor): (i64, i64, i64) = ($debit, $credit, $amount_minor);
        let rows: Vec<(i64, i64)> = sqlx::query_as($select)
            .bind(debit.min(credit))
            .bind(debit.max(credit))
            .fetch_all(&mut *$tx)
            .await?;
        let debit_balance = rows
            .iter()
            .find(|(id, _)| *id == debit)
            .map(|(_, b)| *b)
            .ok_or(sqlx::Error::RowNotFound)?;
        if debit != HOUSE && debit_balance < amount_minor {
            $tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO bench_baseline_transfers (txn_id, debit_account_id, credit_account_id, \
             amount_minor, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($txn_id)
        .bind(debit)
        .bind(credit)
        .bind(amount_minor)
        .bind(kassa_store::now_ms())
        .execute(&mut *$tx)
        .await?;
        for (id, delta) in [(debit, -amount_minor), (credit, amount_minor)] {
            sqlx::query(
                "UPDATE bench_baseline_accounts SET balance_minor = balance_minor + $1 WHERE id = $2",
            )
            .bind(delta)
            .bind(id)
            .execute(&mut *$tx)
            .await?;
        }
        $tx.commit().await?;
        Ok(true)
    }};
}

/// One transfer, one transaction, PostgreSQL: lock both rows in id order, check the
/// player's funds, insert, update both balances, commit. `Ok(false)`: insufficient funds.
async fn transfer_postgres(
    pool: &PgPool,
    txn_id: &str,
    debit: i64,
    credit: i64,
    amount_minor: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    transfer_in!(
        tx,
        "SELECT id, balance_minor FROM bench_baseline_accounts WHERE id IN ($1, $2) \
         ORDER BY id FOR UPDATE",
        txn_id,
        debit,
        credit,
        amount_minor
    )
}

/// The same on SQLite, where `BEGIN IMMEDIATE` takes the database's write lock up front.
async fn transfer_sqlite(
    pool: &SqlitePool,
    txn_id: &str,
    debit: i64,
    credit: i64,
    amount_minor: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    transfer_in!(
        tx,
        "SELECT id, balance_minor FROM bench_baseline_accounts WHERE id IN ($1, $2) ORDER BY id",
        txn_id,
        debit,
        credit,
        amount_minor
    )
}

impl Pool {
    async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Pool::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Pool::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
    }

    async fn rows(&self, sql: &str) -> Result<Vec<(i64, i64)>, sqlx::Error> {
        match self {
            Pool::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await,
            Pool::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await,
        }
    }

    async fn balances(&self) -> Result<HashMap<i64, i64>, sqlx::Error> {
        Ok(self
            .rows("SELECT id, balance_minor FROM bench_baseline_accounts")
            .await?
            .into_iter()
            .collect())
    }

    /// Accounts whose balance is not their initial balance plus their transfers.
    async fn journal_drift(&self) -> Result<usize, sqlx::Error> {
        let mut recomputed: HashMap<i64, i64> = self
            .rows("SELECT id, initial_minor FROM bench_baseline_accounts")
            .await?
            .into_iter()
            .collect();
        for (column, sign) in [("credit_account_id", 1), ("debit_account_id", -1)] {
            let sql = format!(
                "SELECT {column}, CAST(SUM(amount_minor) AS BIGINT) FROM bench_baseline_transfers \
                 GROUP BY {column}"
            );
            for (id, total) in self.rows(&sql).await? {
                *recomputed.entry(id).or_default() += sign * total;
            }
        }
        let balances = self.balances().await?;
        Ok(balances
            .iter()
            .filter(|(id, balance)| recomputed.get(id) != Some(balance))
            .count())
    }

    async fn close(&self) {
        match self {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
    }
}
