//! The seamless wallet a game aggregator calls on every spin: debit (bet), credit (win or
//! enrolled deposit) and rollback, keyed by the caller's `txn_id`.
//!
//! Calls go through one writer task per node that commits whatever has queued up in one
//! database transaction (group commit): a burst of N calls costs one commit, not N, and each
//! caller is answered only after its batch is durable. The database still decides — accounts
//! are locked and balances read inside the transaction — so several nodes may run writers
//! against one PostgreSQL.

use std::time::{Duration, Instant};

use kassa_core::ids::{ExternalPaymentId, PlayerId, RoundId, TxnId};
use kassa_core::ledger::{Entry, EntryStatus, Outcome, Refusal, Request};
use kassa_core::movements::{self, EntryLabel, WalletCall};
use kassa_core::Money;
use kassa_store::{HeldConnection, PostgresWriter, SqliteWriter, Store, StoreError, WriteTurn};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use crate::config::WalletConfig;
use crate::idempotency::IdempotencyClaim;
use crate::service::players::{PlayerDirectory, PlayerError, WalletAccounts};
use crate::views::Answer;

/// Why a wallet call did not move money as asked.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The player is unknown or holds another currency.
    #[error(transparent)]
    Player(#[from] PlayerError),
    /// The writer's queue is full or closed; safe to retry.
    #[error("{0}")]
    Unavailable(&'static str),
    /// The `txn_id` was used for a different call.
    #[error("this txn_id was already used for a different call")]
    TxnIdReused,
    /// The `txn_id` was rolled back before it arrived.
    #[error("this txn_id was rolled back before it arrived")]
    TxnCancelled { rollback_txn_id: Option<String> },
    /// The balance does not cover a debit.
    #[error("the player's balance does not cover this amount")]
    InsufficientFunds { balance: String, txn_id: String },
    /// A rollback of a debit never seen (remembered, to refuse it later).
    #[error("no debit {original_txn_id:?} to roll back")]
    OriginalNotFound { original_txn_id: Option<String> },
    /// The ledger refused the request itself.
    #[error("{0}")]
    Refused(Refusal),
    /// The ledger answered with a status a wallet call never has.
    #[error("unexpected wallet entry status {status} for {txn_id}")]
    UnexpectedEntry { status: EntryStatus, txn_id: String },
    /// The database failed; the call's batch was not committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer stopped before answering.
    #[error("the wallet writer stopped before answering")]
    WriterGone,
}

/// Times a batch is retried after a lost race (unique key, deadlock) before it is split.
const BATCH_RETRIES_MAX: u32 = 3;

/// What a successful wallet call answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct WalletReceipt {
    /// The caller's transaction id.
    pub txn_id: String,
    /// `posted` (money moved), `rolled_back`, or `no_effect` (a rollback with nothing to undo).
    #[schema(example = "posted")]
    pub status: String,
    /// The player's available balance right after this call, as first answered.
    #[schema(example = "90.00")]
    pub balance: String,
    /// Set when this answer repeats the first one for the same `txn_id`.
    #[serde(skip)]
    pub replayed: bool,
}

/// A debit or credit as the service takes it, already parsed.
#[derive(Clone, Debug)]
pub struct WalletMove {
    /// Caller's id for the call; its idempotency key.
    pub txn_id: TxnId,
    /// The player.
    pub player_id: PlayerId,
    /// Positive amount; its currency must be the wallet's.
    pub amount: Money,
    /// Game round tying a bet to its win.
    pub round_id: Option<RoundId>,
    /// Deposit being enrolled (credits only).
    pub payment_id: Option<ExternalPaymentId>,
}

impl WalletMove {
    /// The call as the money movements take it.
    fn as_call(&self) -> WalletCall<'_> {
        WalletCall {
            txn_id: &self.txn_id,
            player_id: &self.player_id,
            amount: self.amount,
            round_id: self.round_id.as_ref(),
        }
    }
}

/// Turns an outcome into the stored and sent answer (status code and JSON body), for
/// idempotency records completed inside the batch.
type Render = Box<dyn Fn(&Outcome) -> (u16, String) + Send + Sync>;

struct Job {
    merchant_id: String,
    request: Request,
    claim: Option<(IdempotencyClaim, Render)>,
    reply: oneshot::Sender<Result<Outcome, WalletError>>,
}

/// Handle on the wallet writer; cheap to clone.
#[derive(Clone)]
pub struct WalletService {
    jobs: mpsc::Sender<Job>,
    players: PlayerDirectory,
}

impl WalletService {
    /// Starts the writer task.
    pub fn start(store: Store, players: PlayerDirectory, config: &WalletConfig) -> WalletService {
        let (jobs, queue) = mpsc::channel(config.queue_len_max);
        let batch_size_max = config.batch_size_max;
        let writer_nice = config.writer_nice;
        // The writer gets a thread and a runtime of its own: on the shared runtime each of a
        // batch's awaits (one per statement) waited behind every request task in the run
        // queue, and under load that wait, not the database, set the batch time. It ends
        // when the last handle is dropped and the queue closes.
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
                runtime.block_on(run_writer(store, queue, batch_size_max))
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the wallet writer thread");
        }
        WalletService { jobs, players }
    }

    /// A bet: moves money from the player to the house, or answers 402.
    pub async fn debit(
        &self,
        merchant_id: &str,
        call: WalletMove,
        claim: Option<IdempotencyClaim>,
    ) -> Result<WalletReceipt, WalletError> {
        let wallet = self.wallet_for(merchant_id, &call).await?;
        let request = movements::wallet_bet(&call.as_call(), &wallet.ledger_accounts());
        self.submit(merchant_id, request, claim).await
    }

    /// A win (from the house) or an enrolled deposit (from suspense, when `payment_id` is
    /// given).
    pub async fn credit(
        &self,
        merchant_id: &str,
        call: WalletMove,
        claim: Option<IdempotencyClaim>,
    ) -> Result<WalletReceipt, WalletError> {
        let wallet = self.wallet_for(merchant_id, &call).await?;
        let accounts = wallet.ledger_accounts();
        let request = match &call.payment_id {
            Some(payment_id) => {
                movements::wallet_deposit_enrolled(&call.as_call(), payment_id, &accounts)
            }
            None => movements::wallet_win(&call.as_call(), &accounts),
        };
        self.submit(merchant_id, request, claim).await
    }

    /// Undoes a debit. A debit never seen is answered 404 and remembered, so that it is
    /// refused should it arrive later.
    pub async fn rollback(
        &self,
        merchant_id: &str,
        txn_id: &TxnId,
        original_txn_id: &TxnId,
        claim: Option<IdempotencyClaim>,
    ) -> Result<WalletReceipt, WalletError> {
        let request = movements::wallet_rollback(txn_id, original_txn_id);
        self.submit(merchant_id, request, claim).await
    }

    async fn wallet_for(
        &self,
        merchant_id: &str,
        call: &WalletMove,
    ) -> Result<WalletAccounts, WalletError> {
        let wallet = self
            .players
            .wallet(merchant_id, call.player_id.as_str())
            .await?;
        PlayerError::check_currency(
            call.player_id.as_str(),
            wallet.currency,
            call.amount.currency,
        )?;
        Ok(wallet)
    }

    async fn submit(
        &self,
        merchant_id: &str,
        request: Request,
        claim: Option<IdempotencyClaim>,
    ) -> Result<WalletReceipt, WalletError> {
        let (reply, answer) = oneshot::channel();
        // The writer renders on its own thread, outside the request: the error bodies it
        // stores carry this request's trace id, as the answer sent now does.
        let trace_id = crate::trace::current();
        let render: Render = Box::new(move |outcome| {
            let answer = match receipt(outcome) {
                Ok(receipt) => Answer::of(200, &receipt),
                Err(error) => Answer::error(&error, &trace_id),
            };
            (answer.status, answer.body)
        });
        let job = Job {
            merchant_id: merchant_id.to_string(),
            request,
            claim: claim.map(|c| (c, render)),
            reply,
        };
        self.jobs.try_send(job).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                WalletError::Unavailable("the wallet is at capacity; retry shortly")
            }
            mpsc::error::TrySendError::Closed(_) => {
                WalletError::Unavailable("the wallet is shutting down")
            }
        })?;
        let outcome = answer.await.map_err(|_| WalletError::WriterGone)??;
        receipt(&outcome)
    }
}

/// The answer a ledger outcome gives a wallet caller. A replay answers what the first call
/// answered, whatever happened to the entry since (a debit later rolled back still answers
/// `posted` with the balance it had).
pub fn receipt(outcome: &Outcome) -> Result<WalletReceipt, WalletError> {
    let (entry, replayed) = match outcome {
        Outcome::Recorded(entry) => (entry, false),
        Outcome::Replayed(entry) => (entry, true),
        Outcome::TxnIdReused(_) => return Err(WalletError::TxnIdReused),
        Outcome::Cancelled(entry) => {
            return Err(WalletError::TxnCancelled {
                rollback_txn_id: entry.ref_txn_id.clone(),
            })
        }
        Outcome::Refused(refusal) => return Err(WalletError::Refused(refusal.clone())),
    };
    let balance = |entry: &Entry| match (entry.currency, entry.subject_balance_after_minor) {
        (Some(currency), Some(balance)) => currency.format_minor(balance),
        _ => String::new(),
    };
    let status = match entry.status {
        EntryStatus::Posted | EntryStatus::Reversed
            if entry.entry_label() == Some(EntryLabel::Rollback) =>
        {
            "rolled_back"
        }
        EntryStatus::Posted | EntryStatus::Reversed => "posted",
        EntryStatus::NoEffect => "no_effect",
        EntryStatus::Rejected => {
            return Err(WalletError::InsufficientFunds {
                balance: balance(entry),
                txn_id: entry.txn_id.clone(),
            })
        }
        EntryStatus::OriginalNotFound => {
            return Err(WalletError::OriginalNotFound {
                original_txn_id: entry.ref_txn_id.clone(),
            })
        }
        other => {
            return Err(WalletError::UnexpectedEntry {
                status: other,
                txn_id: entry.txn_id.clone(),
            })
        }
    };
    Ok(WalletReceipt {
        txn_id: entry.txn_id.clone(),
        status: status.into(),
        balance: balance(entry),
        replayed,
    })
}

/// The wallet writer's database: its own SQLite connection (ADR 13), its own PostgreSQL
/// connection (ADR 15), or else a connection of the store's kept between batches (an
/// in-memory SQLite, which a second connection would not see; a PostgreSQL URL with options
/// only sqlx knows).
enum WriterDb {
    Sqlite(SqliteWriter, TurnKeeper),
    Postgres(Box<PostgresWriter>),
    Held(HeldConnection),
}

/// Longest the wallet writer keeps SQLite's write turn over back-to-back batches before it
/// lets the other writers (players, payments, payouts, idempotency keys) have it. Taking the
/// turn costs two round trips to sqlx's connection thread, 0.4–0.7 ms under load, as much
/// as the batch itself (docs/perf-log.md, note 18); so under load the turn is kept, and another
/// writer waits at most this long plus one batch.
const WRITE_TURN_HOLD_MAX: Duration = Duration::from_millis(10);

/// The write turn the wallet writer holds, and since when.
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

    /// After a batch: gives the turn back when no call is waiting or it was kept long
    /// enough.
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
}

/// Gives the calling (writer) thread the nice value `nice`. The writer is the wallet path's
/// one serial stage: when it waits for a core behind request handlers, every caller waits.
/// On 2 cores a nice of -10 answered ~13% more calls with 10,000 players
/// (docs/perf-log.md, note 29).
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

async fn run_writer(store: Store, mut queue: mpsc::Receiver<Job>, batch_size_max: usize) {
    let mut db = match store.sqlite_writer() {
        Some(Ok(writer)) => WriterDb::Sqlite(writer, TurnKeeper::default()),
        Some(Err(error)) => {
            tracing::warn!(%error, "wallet writer cannot open its own SQLite connection");
            WriterDb::Held(held_connection(&store).await)
        }
        None => match store.postgres_writer().await {
            Some(Ok(writer)) => WriterDb::Postgres(Box::new(writer)),
            Some(Err(error)) => {
                tracing::warn!(%error, "wallet writer cannot open its own PostgreSQL connection");
                WriterDb::Held(held_connection(&store).await)
            }
            None => WriterDb::Held(held_connection(&store).await),
        },
    };
    let mut batch = Vec::with_capacity(batch_size_max);
    while queue.recv_many(&mut batch, batch_size_max).await > 0 {
        commit(&store, &mut db, std::mem::take(&mut batch)).await;
        match &mut db {
            WriterDb::Sqlite(_, turn) => turn.after_batch(queue.is_empty()),
            WriterDb::Postgres(_) => {}
            WriterDb::Held(held) => held.finish_batch(),
        }
    }
}

/// A connection of the store's for the writer to keep between batches, from a writer pool
/// of its own on PostgreSQL, opened on the writer's runtime so that its I/O is driven there
/// and not behind the request handlers' tasks. Only the fallbacks need it: the writer's own
/// connections (ADR 13, ADR 15) take no pool connection.
async fn held_connection(store: &Store) -> HeldConnection {
    match store.with_dedicated_writer().await {
        Ok(dedicated) => dedicated.held_connection(),
        Err(error) => {
            tracing::warn!(%error, "wallet writer shares the request pool");
            store.held_connection()
        }
    }
}

/// Commits a batch and answers its callers; on a failure that retrying does not cure,
/// commits each call alone so that one bad call cannot fail the others.
async fn commit(store: &Store, db: &mut WriterDb, jobs: Vec<Job>) {
    let mut attempt = 0;
    let error = loop {
        let committed = match db {
            WriterDb::Sqlite(writer, turn) => try_commit_sqlite(store, writer, turn, &jobs).await,
            WriterDb::Postgres(writer) => try_commit_postgres(writer, &jobs).await,
            WriterDb::Held(held) => try_commit(store, held, &jobs).await,
        };
        match committed {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    if let Some((claim, _)) = &job.claim {
                        claim.mark_committed();
                    }
                    let _ = job.reply.send(Ok(outcome));
                }
                return;
            }
            Err(error) => {
                match db {
                    // A fresh connection for the next try: the pool tests this one.
                    WriterDb::Held(held) => held.release(),
                    // The failed batch's row locks go now, not at the next batch.
                    WriterDb::Postgres(writer) => writer.roll_back_failed_batch().await,
                    WriterDb::Sqlite(..) => {}
                }
                if error.is_retryable() && attempt < BATCH_RETRIES_MAX {
                    attempt += 1;
                } else {
                    break error;
                }
            }
        }
    };
    if jobs.len() > 1 {
        for job in jobs {
            Box::pin(commit(store, db, vec![job])).await;
        }
        return;
    }
    // One job is left here: the batch was split above.
    let mut error = Some(error);
    for job in jobs {
        if let Some(error) = error.take() {
            let _ = job.reply.send(Err(WalletError::Store(error)));
        }
    }
}

/// The jobs of each merchant, in order of arrival: positions into `jobs`.
fn by_merchant(jobs: &[Job]) -> Vec<(&str, Vec<usize>)> {
    let mut merchants: Vec<&str> = jobs.iter().map(|j| j.merchant_id.as_str()).collect();
    merchants.sort_unstable();
    merchants.dedup();
    merchants
        .into_iter()
        .map(|merchant| {
            let positions = (0..jobs.len())
                .filter(|&i| jobs[i].merchant_id == merchant)
                .collect();
            (merchant, positions)
        })
        .collect()
}

/// Puts each merchant's outcomes back in the order of the jobs.
fn in_job_order(len: usize, decided: Vec<(Vec<usize>, Vec<Outcome>)>) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; len];
    for (positions, merchant_outcomes) in decided {
        for (position, outcome) in positions.into_iter().zip(merchant_outcomes) {
            outcomes[position] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every job decided"))
        .collect()
}

/// The answer each call with a claimed `Idempotency-Key` gets, to store with the batch:
/// (claim, status, body).
fn claimed_answers<'j>(
    jobs: &'j [Job],
    outcomes: &'j [Outcome],
) -> impl Iterator<Item = (&'j IdempotencyClaim, u16, String)> + 'j {
    jobs.iter().zip(outcomes).filter_map(|(job, outcome)| {
        let (claim, render) = job.claim.as_ref()?;
        let (status, body) = render(outcome);
        Some((claim, status, body))
    })
}

fn requests_at(jobs: &[Job], positions: &[usize]) -> Vec<Request> {
    positions.iter().map(|&i| jobs[i].request.clone()).collect()
}

async fn try_commit(
    store: &Store,
    held: &mut HeldConnection,
    jobs: &[Job],
) -> Result<Vec<Outcome>, StoreError> {
    let mut tx = held.begin().await?;
    let mut decided = Vec::new();
    for (merchant, positions) in by_merchant(jobs) {
        let outcomes = store
            .apply_ledger_requests(&mut tx, merchant, &requests_at(jobs, &positions))
            .await?;
        decided.push((positions, outcomes));
    }
    let outcomes = in_job_order(jobs.len(), decided);
    for (claim, status, body) in claimed_answers(jobs, &outcomes) {
        claim.complete_in(&mut tx, &Answer { status, body }).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// The same batch on the writer's own SQLite connection: every statement runs on this
/// thread, in the write turn the store hands out.
async fn try_commit_sqlite(
    store: &Store,
    writer: &mut SqliteWriter,
    turn: &mut TurnKeeper,
    jobs: &[Job],
) -> Result<Vec<Outcome>, StoreError> {
    turn.take(store).await?;
    let mut batch = writer.begin()?;
    let mut decided = Vec::new();
    for (merchant, positions) in by_merchant(jobs) {
        let outcomes = batch.apply_ledger_requests(merchant, &requests_at(jobs, &positions))?;
        decided.push((positions, outcomes));
    }
    let outcomes = in_job_order(jobs.len(), decided);
    for (claim, status, body) in claimed_answers(jobs, &outcomes) {
        batch.complete_idempotency_key(&claim.merchant_id, &claim.key, status, &body)?;
    }
    batch.commit()?;
    Ok(outcomes)
}

/// The same batch on the writer's own PostgreSQL connection (ADR 15): two round trips, each
/// carrying every statement that does not wait for another's answer.
async fn try_commit_postgres(
    writer: &mut PostgresWriter,
    jobs: &[Job],
) -> Result<Vec<Outcome>, StoreError> {
    let mut batch = writer.begin().await?;
    let mut decided = Vec::new();
    for (merchant, positions) in by_merchant(jobs) {
        let outcomes = batch
            .apply_ledger_requests(merchant, &requests_at(jobs, &positions))
            .await?;
        decided.push((positions, outcomes));
    }
    let outcomes = in_job_order(jobs.len(), decided);
    for (claim, status, body) in claimed_answers(jobs, &outcomes) {
        batch.complete_idempotency_key(&claim.merchant_id, &claim.key, status, body);
    }
    batch.commit().await?;
    Ok(outcomes)
}
