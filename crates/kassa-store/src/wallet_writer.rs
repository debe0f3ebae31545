//! The wallet's group-commit writer behind one door (ADR 22).
//!
//! Game-round calls (bets, wins, rollbacks) queue up for one writer per node, which commits
//! whatever has queued in one database transaction: a burst of N calls costs one commit, not
//! N, and each caller is answered only once its batch is durable. The database still
//! decides: accounts are locked and balances read inside the transaction, so several nodes
//! may run writers against one PostgreSQL.
//!
//! The rest of Kassa sees two things: [`WalletQueue`], which takes calls and answers each
//! with its [`Outcome`], and [`WalletWriter`], whose one [`commit`](WalletWriter::commit)
//! takes a batch and answers an outcome per call. Behind them the writer picks its
//! connection: its own SQLite connection on this thread (ADR 13, 16), its own pipelined
//! PostgreSQL connection (ADR 15), or, when it cannot open one (an in-memory SQLite, a URL
//! with options only sqlx knows), a connection of the store's kept between batches. Every
//! path runs the same pure ledger engine and writes the same journal rows
//! ([`crate::journal`]); the contract tests hold them to the same answers.

use std::time::{Duration, Instant};

use kassa_core::ledger::{Outcome, Request};
use kassa_core::play_limits::{PlayRules, SESSION_BREAK_MS_DEFAULT};
use tokio::sync::{mpsc, oneshot};

use crate::postgres_writer::PostgresWriter;
use crate::{HeldConnection, Store, StoreError, WriteTurn};

mod own_sqlite;
use own_sqlite::{connection_failure_for_each, OwnSqlite};

/// Times a batch is retried after a lost race (unique key, deadlock) before it is split.
const BATCH_RETRIES_MAX: u32 = 3;

/// Longest the writer keeps SQLite's write turn over back-to-back batches before it lets
/// the other writers (players, payments, payouts, idempotency keys) have it. Taking the
/// turn costs two round trips to sqlx's connection thread, 0.4–0.7 ms under load, as much
/// as the batch itself (BENCH.md, note 18); so under load the turn is kept, and another
/// writer waits at most this long plus one batch.
const WRITE_TURN_HOLD_MAX: Duration = Duration::from_millis(10);

/// Renders an outcome as the answer stored for a claimed `Idempotency-Key`: (HTTP status,
/// body). The caller's layer knows the wire format; the writer only stores it.
pub type RenderAnswer = Box<dyn Fn(&Outcome) -> (u16, String) + Send + Sync>;

/// An `Idempotency-Key` claimed for a call; the writer completes it with the call's answer
/// in the transaction that makes the call's effect, so both commit or neither does.
pub struct ClaimedKey {
    /// The merchant the key belongs to.
    pub merchant_id: String,
    /// The key.
    pub key: String,
    /// The answer to store, from the call's outcome.
    pub render: RenderAnswer,
}

/// One wallet call for the writer.
pub struct WalletCall {
    /// The merchant whose ledger it moves.
    pub merchant_id: String,
    /// What the ledger should do.
    pub request: Request,
    /// The `Idempotency-Key` to complete with it, if the caller sent one.
    pub claimed_key: Option<ClaimedKey>,
}

/// Which connection a [`WalletWriter`] commits through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterPath {
    /// Its own SQLite connection, called on the writer's thread (ADR 13).
    OwnSqlite,
    /// Its own pipelined PostgreSQL connection (ADR 15).
    OwnPostgres,
    /// The fallback: a connection of the store's, kept between batches.
    Shared,
}

/// The writer's database connection (see the module documentation).
enum WriterDb {
    Sqlite(OwnSqlite),
    Postgres(Box<PostgresWriter>),
    Held(HeldConnection),
}

/// Commits batches of wallet calls, each in one transaction.
pub struct WalletWriter {
    store: Store,
    db: WriterDb,
    /// The pause in play that ends a session, for the play limits (ADR 78).
    session_break_ms: i64,
}

impl WalletWriter {
    /// A writer on its own connection where the store allows one, else on the shared
    /// fallback (logged). Call it on the runtime that will drive the writer: connections
    /// opened here do their I/O there.
    pub async fn open(store: &Store) -> WalletWriter {
        let db = match store.sqlite_writer() {
            Some(Ok(writer)) => WriterDb::Sqlite(OwnSqlite::new(writer)),
            Some(Err(error)) => {
                tracing::warn!(%error, "wallet writer cannot open its own SQLite connection");
                WriterDb::Held(held_connection(store).await)
            }
            None => match store.postgres_writer().await {
                Some(Ok(writer)) => WriterDb::Postgres(Box::new(writer)),
                Some(Err(error)) => {
                    tracing::warn!(%error, "wallet writer cannot open its own PostgreSQL connection");
                    WriterDb::Held(held_connection(store).await)
                }
                None => WriterDb::Held(held_connection(store).await),
            },
        };
        WalletWriter {
            store: store.clone(),
            db,
            session_break_ms: SESSION_BREAK_MS_DEFAULT,
        }
    }

    /// A writer on the shared fallback, whatever the store allows: what [`open`](Self::open)
    /// falls back to, opened directly so that it can be tested and compared.
    pub async fn open_shared(store: &Store) -> WalletWriter {
        WalletWriter {
            store: store.clone(),
            db: WriterDb::Held(held_connection(store).await),
            session_break_ms: SESSION_BREAK_MS_DEFAULT,
        }
    }

    /// The same writer with `session_break_ms` as the pause that ends a play session.
    pub fn with_session_break_ms(mut self, session_break_ms: i64) -> WalletWriter {
        self.session_break_ms = session_break_ms;
        self
    }

    /// Which connection this writer commits through.
    pub fn path(&self) -> WriterPath {
        match self.db {
            WriterDb::Sqlite(_) => WriterPath::OwnSqlite,
            WriterDb::Postgres(_) => WriterPath::OwnPostgres,
            WriterDb::Held(_) => WriterPath::Shared,
        }
    }

    /// Commits `calls` in one transaction and answers an outcome per call, in order, with
    /// each claimed key completed in the same transaction. A lost race (unique key,
    /// deadlock, busy file) is retried; a failure that retrying does not cure splits the
    /// batch and commits each call alone, so that one bad call cannot fail the others,
    /// except an I/O error on the own SQLite connection, which every call gets (it is
    /// reopened before the next batch, ADR 35). After each batch call
    /// [`finish_batch`](Self::finish_batch).
    pub async fn commit(&mut self, calls: &[WalletCall]) -> Vec<Result<Outcome, StoreError>> {
        let error = match self.commit_retrying(calls).await {
            Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
            Err(error) if calls.len() == 1 => return vec![Err(error)],
            Err(error) => match connection_failure_for_each(&error, calls.len()) {
                Some(errors) => return errors.into_iter().map(Err).collect(),
                None => error,
            },
        };
        tracing::warn!(%error, calls = calls.len(), "wallet batch failed; committing its calls one by one");
        let mut results = Vec::with_capacity(calls.len());
        for call in calls {
            let alone = self.commit_retrying(std::slice::from_ref(call)).await;
            results.push(alone.map(|mut outcomes| outcomes.remove(0)));
        }
        results
    }

    /// After a batch: `more_waiting` says whether calls are queued behind it. On SQLite the
    /// writer keeps the write turn for them (up to [`WRITE_TURN_HOLD_MAX`]) and gives it back
    /// otherwise; on the shared fallback it gives SQLite's one writer connection back.
    pub fn finish_batch(&mut self, more_waiting: bool) {
        match &mut self.db {
            WriterDb::Sqlite(own) => own.turn.after_batch(!more_waiting),
            WriterDb::Postgres(_) => {}
            WriterDb::Held(held) => held.finish_batch(),
        }
    }

    async fn commit_retrying(&mut self, calls: &[WalletCall]) -> Result<Vec<Outcome>, StoreError> {
        let mut attempt = 0;
        loop {
            // The batch's time, from the store's clock: its entries are stamped with it and
            // the play limits decide with it.
            let rules = PlayRules {
                now_ms: self.store.clock().now_ms(),
                session_break_ms: self.session_break_ms,
            };
            let committed = match &mut self.db {
                WriterDb::Sqlite(own) => {
                    let committed = commit_sqlite(&self.store, own, calls, rules).await;
                    own.after_batch(&committed);
                    committed
                }
                WriterDb::Postgres(writer) => commit_postgres(writer, calls, rules).await,
                WriterDb::Held(held) => commit_held(&self.store, held, calls, rules).await,
            };
            let error = match committed {
                Ok(outcomes) => return Ok(outcomes),
                Err(error) => error,
            };
            match &mut self.db {
                // A fresh connection for the next try: the pool tests this one.
                WriterDb::Held(held) => held.release(),
                // The failed batch's row locks go now, not at the next batch.
                WriterDb::Postgres(writer) => writer.roll_back_failed_batch().await,
                // Dropped uncommitted, the batch has rolled back.
                WriterDb::Sqlite(_) => {}
            }
            if !error.is_retryable() || attempt >= BATCH_RETRIES_MAX {
                return Err(error);
            }
            attempt += 1;
        }
    }
}

/// A connection of the store's for the writer to keep between batches, from a writer pool
/// of its own on PostgreSQL, opened on the writer's runtime so that its I/O is driven there
/// and not behind the request handlers' tasks.
async fn held_connection(store: &Store) -> HeldConnection {
    match store.with_dedicated_writer().await {
        Ok(dedicated) => dedicated.held_connection(),
        Err(error) => {
            tracing::warn!(%error, "wallet writer shares the request pool");
            store.held_connection()
        }
    }
}

/// The write turn the SQLite writer holds, and since when.
#[derive(Default)]
struct TurnKeeper {
    turn: Option<(WriteTurn, Instant)>,
}

impl TurnKeeper {
    async fn take(&mut self, store: &Store) -> Result<(), StoreError> {
        if self.turn.is_none() {
            self.turn = Some((store.write_turn().await?, Instant::now()));
        }
        Ok(())
    }

    /// Gives the turn back when no call is waiting or it was kept long enough.
    fn after_batch(&mut self, queue_is_empty: bool) {
        if queue_is_empty
            || self
                .turn
                .as_ref()
                .is_some_and(|(_, since)| since.elapsed() >= WRITE_TURN_HOLD_MAX)
        {
            self.turn = None;
        }
    }

    #[cfg(test)]
    fn is_held(&self) -> bool {
        self.turn.is_some()
    }
}

/// The calls of each merchant, in order of arrival: positions into `calls`.
fn by_merchant(calls: &[WalletCall]) -> Vec<(&str, Vec<usize>)> {
    let mut merchants: Vec<&str> = calls.iter().map(|c| c.merchant_id.as_str()).collect();
    merchants.sort_unstable();
    merchants.dedup();
    merchants
        .into_iter()
        .map(|merchant| {
            let positions = (0..calls.len())
                .filter(|&i| calls[i].merchant_id == merchant)
                .collect();
            (merchant, positions)
        })
        .collect()
}

fn requests_at(calls: &[WalletCall], positions: &[usize]) -> Vec<Request> {
    positions
        .iter()
        .map(|&i| calls[i].request.clone())
        .collect()
}

/// Puts each merchant's outcomes back in the order of the calls.
fn in_call_order(len: usize, decided: Vec<(Vec<usize>, Vec<Outcome>)>) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; len];
    for (positions, merchant_outcomes) in decided {
        for (position, outcome) in positions.into_iter().zip(merchant_outcomes) {
            outcomes[position] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every call decided"))
        .collect()
}

/// The answer each call with a claimed key gets, to store with the batch: (key, status,
/// body).
fn claimed_answers<'c>(
    calls: &'c [WalletCall],
    outcomes: &'c [Outcome],
) -> impl Iterator<Item = (&'c ClaimedKey, u16, String)> + 'c {
    calls.iter().zip(outcomes).filter_map(|(call, outcome)| {
        let claimed = call.claimed_key.as_ref()?;
        let (status, body) = (claimed.render)(outcome);
        Some((claimed, status, body))
    })
}

/// The batch through sqlx on the held connection.
async fn commit_held(
    store: &Store,
    held: &mut HeldConnection,
    calls: &[WalletCall],
    rules: PlayRules,
) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = held.begin().await?;
    let mut decided = Vec::new();
    for (merchant, positions) in by_merchant(calls) {
        let requests = requests_at(calls, &positions);
        let outcomes = store
            .apply_ledger_requests_with(&mut tx, merchant, &requests, rules)
            .await?;
        decided.push((positions, outcomes));
    }
    let outcomes = in_call_order(calls.len(), decided);
    for (claimed, status, body) in claimed_answers(calls, &outcomes) {
        crate::idempotency::complete_idempotency_key(
            &mut tx,
            &claimed.merchant_id,
            &claimed.key,
            status,
            &body,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// The batch on the writer's own SQLite connection: every statement runs on this thread,
/// in the write turn the store hands out.
async fn commit_sqlite(
    store: &Store,
    own: &mut OwnSqlite,
    calls: &[WalletCall],
    rules: PlayRules,
) -> Result<Vec<Outcome>, StoreError> {
    let (writer, turn) = own.connection(store)?;
    turn.take(store).await?;
    let mut batch = writer.begin()?;
    let mut decided = Vec::new();
    for (merchant, positions) in by_merchant(calls) {
        let requests = requests_at(calls, &positions);
        let outcomes = batch.apply_ledger_requests_with(merchant, &requests, rules)?;
        decided.push((positions, outcomes));
    }
    let outcomes = in_call_order(calls.len(), decided);
    for (claimed, status, body) in claimed_answers(calls, &outcomes) {
        batch.complete_idempotency_key(&claimed.merchant_id, &claimed.key, status, &body)?;
    }
    batch.commit()?;
    Ok(outcomes)
}

/// The batch on the writer's own PostgreSQL connection (ADR 15): two round trips, each
/// carrying every statement that does not wait for another's answer.
async fn commit_postgres(
    writer: &mut PostgresWriter,
    calls: &[WalletCall],
    rules: PlayRules,
) -> Result<Vec<Outcome>, StoreError> {
    let mut batch = writer.begin().await?;
    let mut decided = Vec::new();
    for (merchant, positions) in by_merchant(calls) {
        let requests = requests_at(calls, &positions);
        let outcomes = batch
            .apply_ledger_requests_with(merchant, &requests, rules)
            .await?;
        decided.push((positions, outcomes));
    }
    let outcomes = in_call_order(calls.len(), decided);
    for (claimed, status, body) in claimed_answers(calls, &outcomes) {
        batch.complete_idempotency_key(&claimed.merchant_id, &claimed.key, status, body);
    }
    batch.commit().await?;
    Ok(outcomes)
}

/// Limits and priority of the writer behind a [`WalletQueue`].
#[derive(Clone, Debug)]
pub struct WalletQueueOptions {
    /// Most calls per group commit.
    pub batch_size_max: usize,
    /// Calls allowed to wait for the writer; more are refused with [`SubmitError::Full`].
    pub queue_len_max: usize,
    /// Nice value the writer thread asks for (Linux; 0 leaves it alone).
    pub writer_nice: i32,
    /// The pause in play that ends a session, for the play limits (ADR 78).
    pub session_break_ms: i64,
}

/// Why a call got no outcome from the writer.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue holds [`WalletQueueOptions::queue_len_max`] calls already.
    #[error("the wallet writer's queue is full")]
    Full,
    /// The writer has stopped (shutting down, or it could not start).
    #[error("the wallet writer has stopped")]
    Stopped,
    /// The call's transaction failed, alone in its batch.
    #[error("the wallet call could not be committed")]
    Store(#[source] StoreError),
}

struct Job {
    call: WalletCall,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// Handle on the wallet writer: takes calls, answers each once its batch is durable.
/// Cheap to clone; the writer stops when the last handle is dropped.
#[derive(Clone)]
pub struct WalletQueue {
    jobs: mpsc::Sender<Job>,
}

impl WalletQueue {
    /// Starts the writer on a thread and a runtime of its own. On the shared runtime each
    /// of a batch's awaits (one per statement) waited behind every request task in the run
    /// queue, and under load that wait, not the database, set the batch time.
    pub fn start(store: Store, options: &WalletQueueOptions) -> WalletQueue {
        let (jobs, queue) = mpsc::channel(options.queue_len_max.max(1));
        let batch_size_max = options.batch_size_max.max(1);
        let writer_nice = options.writer_nice;
        let session_break_ms = options.session_break_ms;
        let spawned = std::thread::Builder::new()
            .name("kassa-wallet-writer".into())
            .spawn(move || {
                set_writer_priority(writer_nice);
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "cannot start the wallet writer's runtime");
                        return;
                    }
                };
                runtime.block_on(run(store, queue, batch_size_max, session_break_ms))
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the wallet writer thread");
        }
        WalletQueue { jobs }
    }

    /// Queues `call` and waits for its outcome, which is durable when it arrives.
    pub async fn submit(&self, call: WalletCall) -> Result<Outcome, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job { call, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => SubmitError::Full,
                mpsc::error::TrySendError::Closed(_) => SubmitError::Stopped,
            })?;
        answer
            .await
            .map_err(|_| SubmitError::Stopped)?
            .map_err(SubmitError::Store)
    }
}

async fn run(
    store: Store,
    mut queue: mpsc::Receiver<Job>,
    batch_size_max: usize,
    session_break_ms: i64,
) {
    let mut writer = WalletWriter::open(&store)
        .await
        .with_session_break_ms(session_break_ms);
    tracing::info!(path = ?writer.path(), "wallet writer started");
    let mut jobs = Vec::with_capacity(batch_size_max);
    while queue.recv_many(&mut jobs, batch_size_max).await > 0 {
        let (calls, replies): (Vec<WalletCall>, Vec<_>) =
            jobs.drain(..).map(|job| (job.call, job.reply)).unzip();
        let results = writer.commit(&calls).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
        writer.finish_batch(!queue.is_empty());
    }
}

/// Gives the calling (writer) thread the nice value `nice`. The writer is the wallet path's
/// one serial stage: when it waits for a core behind request handlers, every caller waits.
/// On 2 cores a nice of -10 answered ~13% more calls with 10,000 players (BENCH.md, note 29).
#[cfg(target_os = "linux")]
fn set_writer_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // Linux keeps a nice value per thread; PRIO_PROCESS with a thread id sets that thread's.
    let thread = rustix::thread::gettid();
    match rustix::process::setpriority_process(Some(thread), nice) {
        Ok(()) => tracing::debug!(nice, "wallet writer priority set"),
        Err(error) => tracing::info!(
            nice,
            %error,
            "wallet writer keeps the default priority (a nice below 0 needs CAP_SYS_NICE or \
             LimitNICE; wallet.writer_nice = 0 silences this)"
        ),
    }
}

/// Elsewhere a nice value is per process, so the writer leaves it alone.
#[cfg(not(target_os = "linux"))]
fn set_writer_priority(nice: i32) {
    if nice != 0 {
        tracing::debug!(nice, "wallet.writer_nice applies on Linux only");
    }
}

#[cfg(test)]
mod tests;
