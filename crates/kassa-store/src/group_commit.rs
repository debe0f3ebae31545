//! Group commit on SQLite's one sqlx writer connection (ADR 39).
//!
//! Write units (a deposit start, a provider event's apply) share one open transaction
//! (`BEGIN IMMEDIATE`), each inside a savepoint, behind a FIFO-fair [`Mutex`]. A unit that
//! has released its savepoint joins the open *epoch* and waits for the epoch's `COMMIT`,
//! which the first settle task to get the lock after it runs; units that took the lock in
//! between (they queued while this one ran) join the same epoch, so one fsync makes them
//! all durable. Every member hears the epoch's result through a [`watch`] channel.
//!
//! Nothing may leave the transaction open or half-applied:
//! - a unit dropped before its commit (an error, `?`, a cancelled request) is marked
//!   `dirty`; the next lock holder rolls it back to its savepoint before anything else, and
//!   a settle task spawned by the drop makes sure someone does;
//! - the commit is run by a spawned task, so a member cancelled while waiting cannot leave
//!   the epoch open (holding SQLite's write lock, which the wallet writer needs too);
//! - a failed savepoint statement or `COMMIT` rolls the whole transaction back and answers
//!   every member of that epoch with the error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::{Any, AnyPool, Executor};
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

use crate::{Backend, StoreError, Tx};

/// Units one epoch takes at most before a new unit commits it first: a bound on how much
/// one failure takes with it and on the transaction's size. Under load an epoch holds the
/// units that queued during the one before it (about the number of concurrent clients).
const UNITS_PER_EPOCH_MAX: usize = 256;

/// What the members of an epoch hear: `None` until it has committed or failed.
type Outcome = Option<Result<(), Arc<StoreError>>>;

/// The shared transaction and its epoch; behind the group's mutex.
struct Shared {
    /// The open transaction, if an epoch is open.
    tx: Option<Tx>,
    /// The open (or last) epoch's number.
    epoch: u64,
    /// Units released into the open epoch.
    members: usize,
    /// A unit's savepoint may be open without its commit: roll it back before anything else.
    dirty: bool,
    /// The open epoch's result, for its members.
    outcome: watch::Sender<Outcome>,
}

/// Group commit of one store (and its clones).
pub(crate) struct GroupCommit {
    shared: Arc<Mutex<Shared>>,
    writer: AnyPool,
    /// Epochs committed (durable commits).
    commits: AtomicU64,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("commits", &self.commits)
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    pub(crate) fn new(writer: AnyPool) -> GroupCommit {
        GroupCommit {
            shared: Arc::new(Mutex::new(Shared {
                tx: None,
                epoch: 0,
                members: 0,
                dirty: false,
                outcome: watch::channel(None).0,
            })),
            writer,
            commits: AtomicU64::new(0),
        }
    }

    /// Durable commits the group has made.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Starts a unit: takes the lock, opens an epoch if none is, and a savepoint.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<GroupedTx, StoreError> {
        let guard = self.shared.clone().lock_owned().await;
        // From here a drop (cancellation) is settled by `GroupedTx`'s `Drop`.
        let mut unit = GroupedTx {
            inner: Inner::Grouped {
                guard: Some(guard),
                group: self.clone(),
            },
            risk_locks_held: Vec::new(),
        };
        let Inner::Grouped {
            guard: Some(shared),
            ..
        } = &mut unit.inner
        else {
            unreachable!("built just above");
        };
        self.settle_locked(shared, None).await;
        if shared.members >= UNITS_PER_EPOCH_MAX {
            self.finish_epoch(shared).await;
        }
        if shared.tx.is_none() {
            let tx = crate::begin_sqlite_immediate(&self.writer).await?;
            shared.tx = Some(tx);
            shared.epoch += 1;
            shared.members = 0;
            shared.outcome = watch::channel(None).0;
        }
        shared.dirty = true;
        let tx = shared.tx.as_mut().expect("opened above");
        if let Err(error) = tx.execute("SAVEPOINT kassa_unit").await {
            shared.dirty = false;
            let error = fail_epoch(shared, error.into()).await;
            return Err(StoreError::GroupCommitFailed(error));
        }
        Ok(unit)
    }

    /// Under the lock: rolls a dropped unit back, then commits the open epoch if `epoch`
    /// asks for it (`Some(n)`: epoch `n` if it is still open; `None`: nothing).
    async fn settle_locked(&self, shared: &mut Shared, epoch: Option<u64>) {
        if shared.dirty {
            shared.dirty = false;
            if let Some(tx) = shared.tx.as_mut() {
                let rolled_back = async {
                    tx.execute("ROLLBACK TO kassa_unit").await?;
                    tx.execute("RELEASE kassa_unit").await
                }
                .await;
                if let Err(error) = rolled_back {
                    fail_epoch(shared, error.into()).await;
                }
            }
        }
        if shared.tx.is_some() && epoch.is_some_and(|epoch| epoch == shared.epoch) {
            self.finish_epoch(shared).await;
        }
    }

    /// Commits the open epoch (rolls it back if it has no members) and tells its members.
    async fn finish_epoch(&self, shared: &mut Shared) {
        let Some(tx) = shared.tx.take() else {
            return;
        };
        if shared.members == 0 {
            let _ = tx.rollback().await;
            shared.outcome.send_replace(Some(Ok(())));
            return;
        }
        match tx.commit().await {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                shared.outcome.send_replace(Some(Ok(())));
            }
            // sqlx rolls a transaction whose commit failed back before the connection's
            // next use (`Transaction`'s drop).
            Err(error) => {
                let error = Arc::new(StoreError::from(error));
                tracing::warn!(error = %error, members = shared.members, "group commit failed");
                shared.outcome.send_replace(Some(Err(error)));
            }
        }
    }

    /// Releases the unit's savepoint (it joins the open epoch), lets the units queued
    /// meanwhile join too, then commits the epoch unless someone did already; answers the
    /// epoch's result.
    async fn join_and_settle(
        self: Arc<Self>,
        mut shared: OwnedMutexGuard<Shared>,
    ) -> Result<(), StoreError> {
        join_epoch(&mut shared).await?;
        self.wait_for_epoch(shared).await
    }

    /// Releases the unit's savepoint (it joins the open epoch) and leaves the epoch's commit
    /// to a spawned task, without waiting for it: the unit is visible to the epoch's later
    /// units at once and to everyone at the epoch's commit, which may yet fail and take it
    /// with it (ADR 79).
    async fn join_without_waiting(
        self: Arc<Self>,
        mut shared: OwnedMutexGuard<Shared>,
    ) -> Result<(), StoreError> {
        join_epoch(&mut shared).await?;
        let epoch = shared.epoch;
        drop(shared);
        tokio::spawn(async move {
            let mut shared = self.shared.clone().lock_owned().await;
            self.settle_locked(&mut shared, Some(epoch)).await;
        });
        Ok(())
    }

    /// Rolls a unit back under the lock (as a dropped unit's is), then waits for the end of
    /// its epoch if one is open; `Ok` whatever that epoch's result.
    async fn roll_back_and_wait(
        self: Arc<Self>,
        mut shared: OwnedMutexGuard<Shared>,
    ) -> Result<(), StoreError> {
        self.settle_locked(&mut shared, None).await;
        if shared.tx.is_some() {
            let _ = self.wait_for_epoch(shared).await;
        }
        Ok(())
    }

    /// Unlocks, lets the units queued meanwhile join the open epoch, then commits it unless
    /// someone did already; answers the epoch's result.
    async fn wait_for_epoch(&self, shared: OwnedMutexGuard<Shared>) -> Result<(), StoreError> {
        let mut outcome = shared.outcome.subscribe();
        let epoch = shared.epoch;
        drop(shared);
        let mut shared = self.shared.clone().lock_owned().await;
        self.settle_locked(&mut shared, Some(epoch)).await;
        drop(shared);
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(result) => result.clone().expect("waited for it"),
            Err(_) => Err(Arc::new(StoreError::Corrupt(
                "a group commit ended without a result".into(),
            ))),
        };
        result.map_err(StoreError::GroupCommitFailed)
    }

    /// After a unit was dropped: a task takes the lock in turn, rolls the unit back and
    /// ends the open epoch (a dropped unit alone in it has nobody else to). Spawned so that
    /// no cancellation stops it half-way.
    fn spawn_settle(self: &Arc<Self>) {
        let group = self.clone();
        tokio::spawn(async move {
            let mut shared = group.shared.clone().lock_owned().await;
            group.settle_locked(&mut shared, None).await;
            group.finish_epoch(&mut shared).await;
        });
    }
}

/// Under the lock: releases the running unit's savepoint, making it a member of the open
/// epoch; a failed release fails the whole epoch.
async fn join_epoch(shared: &mut Shared) -> Result<(), StoreError> {
    let tx = shared.tx.as_mut().expect("a unit runs in an open epoch");
    let released = tx.execute("RELEASE kassa_unit").await;
    shared.dirty = false;
    if let Err(error) = released {
        let error = fail_epoch(shared, error.into()).await;
        return Err(StoreError::GroupCommitFailed(error));
    }
    shared.members += 1;
    Ok(())
}

/// Rolls the open transaction back and answers its epoch's members with `error`.
async fn fail_epoch(shared: &mut Shared, error: StoreError) -> Arc<StoreError> {
    let error = Arc::new(error);
    if let Some(tx) = shared.tx.take() {
        // The transaction may be gone already (SQLite rolls back on I/O errors).
        let _ = tx.rollback().await;
        tracing::warn!(error = %error, members = shared.members, "group commit rolled back");
    }
    shared.outcome.send_replace(Some(Err(error.clone())));
    error
}

/// A write transaction from [`crate::Store::begin_grouped`]: derefs to a [`Tx`], so the
/// store's functions run in it unchanged. [`GroupedTx::commit`] returns once the unit is
/// durable; dropped without it, the unit is rolled back.
pub struct GroupedTx {
    inner: Inner,
    /// The risk subjects' lock keys taken at the begin, sorted
    /// ([`crate::Store::begin_risk_decision`]); empty otherwise.
    pub(crate) risk_locks_held: Vec<i32>,
}

enum Inner {
    /// PostgreSQL, or SQLite with group commit off: a transaction of its own.
    /// `waits_for_disk` is false for a PostgreSQL transaction begun with
    /// `synchronous_commit` off ([`crate::Store::begin_risk_decision`]).
    Plain {
        tx: Option<Tx>,
        backend: Backend,
        waits_for_disk: bool,
    },
    /// A unit of the shared SQLite transaction; `guard` is `None` once committed.
    Grouped {
        guard: Option<OwnedMutexGuard<Shared>>,
        group: Arc<GroupCommit>,
    },
}

impl GroupedTx {
    pub(crate) fn plain(tx: Tx, backend: Backend, waits_for_disk: bool) -> GroupedTx {
        GroupedTx {
            inner: Inner::Plain {
                tx: Some(tx),
                backend,
                waits_for_disk,
            },
            risk_locks_held: Vec::new(),
        }
    }

    /// Commits the unit: returns `Ok` once it is durable, an error if it (or the epoch it
    /// joined) was not applied.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.wait_for_disk_at_commit().await?;
        match &mut self.inner {
            Inner::Plain { tx, .. } => {
                let tx = tx.take().expect("a transaction is committed once");
                Ok(tx.commit().await?)
            }
            Inner::Grouped { guard, group } => {
                let shared = guard.take().expect("a unit is committed once");
                detached(group.clone().join_and_settle(shared)).await
            }
        }
    }

    /// Makes this unit's commit wait for the disk after all: a unit from
    /// [`crate::Store::begin_risk_decision`] gets back the server's own
    /// `synchronous_commit` (not necessarily `on`). [`GroupedTx::commit`] calls it; any
    /// other unit already waits.
    pub async fn wait_for_disk_at_commit(&mut self) -> Result<(), StoreError> {
        if let Inner::Plain {
            tx: Some(tx),
            waits_for_disk: waits @ false,
            ..
        } = &mut self.inner
        {
            tx.execute("SET LOCAL synchronous_commit TO DEFAULT")
                .await?;
            *waits = true;
        }
        Ok(())
    }

    /// Commits a unit whose loss in a crash costs nothing but a few counts (a start's risk
    /// decision alone, ADRs 74 and 79) without waiting for the disk: `Ok` once what it wrote
    /// is visible to the writes that follow, and on disk no later than the next durable
    /// commit. PostgreSQL: `synchronous_commit = off` for the transaction. SQLite with group
    /// commit: the unit joins the open epoch, whose commit a spawned task runs. SQLite
    /// without: a plain (durable) commit, the switch's safe side.
    pub async fn commit_without_waiting_for_disk(mut self) -> Result<(), StoreError> {
        match &mut self.inner {
            Inner::Plain {
                tx,
                backend,
                waits_for_disk,
            } => {
                let mut tx = tx.take().expect("a transaction is committed once");
                if *backend == Backend::Postgres && *waits_for_disk {
                    tx.execute("SET LOCAL synchronous_commit TO OFF").await?;
                }
                Ok(tx.commit().await?)
            }
            Inner::Grouped { guard, group } => {
                let shared = guard.take().expect("a unit is committed once");
                detached(group.clone().join_without_waiting(shared)).await
            }
        }
    }

    /// Rolls the unit back and, on SQLite with group commit, waits until the units before
    /// it in its epoch are durable (or failed): what this unit read of theirs (a row that
    /// made it give up, say) is then on disk for a reader to find. Errors of that epoch are
    /// not this unit's: it answers `Ok` once the epoch has ended either way.
    pub async fn rollback(mut self) -> Result<(), StoreError> {
        match &mut self.inner {
            Inner::Plain { tx, .. } => {
                let tx = tx.take().expect("a transaction is ended once");
                Ok(tx.rollback().await?)
            }
            Inner::Grouped { guard, group } => {
                let shared = guard.take().expect("a unit is ended once");
                detached(group.clone().roll_back_and_wait(shared)).await
            }
        }
    }
}

/// Runs `work` on a task of its own and answers its result: a caller cancelled meanwhile
/// cannot stop it half-way (dropping the handle detaches the task).
async fn detached(
    work: impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
) -> Result<(), StoreError> {
    tokio::spawn(work).await.unwrap_or_else(|_| {
        Err(StoreError::Corrupt(
            "a group commit's task ended without an answer".into(),
        ))
    })
}

impl Drop for GroupedTx {
    fn drop(&mut self) {
        if let Inner::Grouped { guard, group } = &mut self.inner {
            if let Some(mut shared) = guard.take() {
                if shared.tx.is_some() {
                    shared.dirty = true;
                    drop(shared);
                    group.spawn_settle();
                }
            }
        }
    }
}

impl std::ops::Deref for GroupedTx {
    type Target = sqlx::Transaction<'static, Any>;

    fn deref(&self) -> &Self::Target {
        match &self.inner {
            Inner::Plain { tx, .. } => tx.as_ref().expect("not committed yet"),
            Inner::Grouped { guard, .. } => guard
                .as_ref()
                .and_then(|shared| shared.tx.as_ref())
                .expect("a unit runs in an open epoch"),
        }
    }
}

impl std::ops::DerefMut for GroupedTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match &mut self.inner {
            Inner::Plain { tx, .. } => tx.as_mut().expect("not committed yet"),
            Inner::Grouped { guard, .. } => guard
                .as_mut()
                .and_then(|shared| shared.tx.as_mut())
                .expect("a unit runs in an open epoch"),
        }
    }
}
