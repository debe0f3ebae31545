//! The wallet writer's own SQLite connection (ADR 13).
//!
//! sqlx runs every SQLite connection on a thread of its own, so each statement is a round
//! trip between two threads; a wallet batch is about ten of them (the pool's two pings,
//! BEGIN, the reads, the writes, COMMIT), and on this project's 2-core machines each wake-up
//! of the other thread cost more than the statement (docs/perf-log.md, note 18). This writer calls
//! SQLite directly on the wallet writer's thread, with prepared statements kept per
//! connection, and writes the same rows as [`Store::apply_ledger_requests`] through the same
//! pure ledger engine.
//!
//! It is still one writer among several in the process (players, payments and payouts write
//! through sqlx's one writer connection). Its batches run in a [`crate::WriteTurn`]: that
//! connection, taken from its pool and kept at least until the batch has committed, so the
//! two never fight over the file's write lock and the pool's queue gives every writer its
//! turn, as it did before.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use kassa_core::ledger::{Account, AccountId, Effects, Entry, LedgerView, Outcome, Request};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::journal::{entry_from_row, entry_values, JournalValue, ENTRY_COLUMN_LIST, ENTRY_WIDTH};
use kassa_core::play_limits::PlayRules;

use crate::ledger::{parse_account, referenced};
use crate::play_limits::{decide, gate_over};
use crate::StoreError;

/// A batch decided: the outcomes, the ledger's effects and the play states that changed.
type Decided = (Vec<Outcome>, Effects, Vec<(AccountId, String)>);

/// Accounts read, and the play states stored on those that have one.
type LoadedAccounts = (Vec<Account>, Vec<(AccountId, String)>);

/// Statements each connection keeps prepared: the reads and updates below and six sizes of
/// each multi-row INSERT, with room to spare.
const STATEMENT_CACHE_CAPACITY: usize = 64;

const SELECT_ACCOUNT: &str =
    "SELECT id, currency, balance_minor, floor, play_state FROM ledger_accounts WHERE id = ?1";
const SELECT_ENTRY_TIME: &str =
    "SELECT created_at_ms FROM ledger_entries WHERE merchant_id = ?1 AND txn_id = ?2";
const UPDATE_PLAY_STATE: &str = "UPDATE ledger_accounts SET play_state = ?1 WHERE id = ?2";
static SELECT_ENTRY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM ledger_entries WHERE merchant_id = ?1 AND txn_id = ?2",
        *ENTRY_COLUMN_LIST
    )
});
static INSERT_ENTRIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO ledger_entries (merchant_id, created_at_ms, {}) VALUES",
        *ENTRY_COLUMN_LIST
    )
});
const UPDATE_STATUS: &str =
    "UPDATE ledger_entries SET status = ?1 WHERE merchant_id = ?2 AND txn_id = ?3";
const INSERT_TRANSFERS: &str = "INSERT INTO ledger_transfers (entry_id, merchant_id, txn_id, \
     seq, debit_account_id, credit_account_id, amount_minor, currency, created_at_ms) VALUES";
/// Rows per multi-row INSERT, largest first. A batch's rows go in as few statements as
/// these sizes allow, so each table sees at most a handful of statement texts (prepared
/// once), and the tables' `AUTOINCREMENT` counter is read and written once per statement
/// rather than once per row.
const CHUNK_LENS: [usize; 6] = [32, 16, 8, 4, 2, 1];
const UPDATE_BALANCE: &str = "UPDATE ledger_accounts SET balance_minor = ?1 WHERE id = ?2";
const UPDATE_BALANCE_AND_PLAY_STATE: &str =
    "UPDATE ledger_accounts SET balance_minor = ?1, play_state = ?2 WHERE id = ?3";
const COMPLETE_IDEMPOTENCY_KEY: &str = "UPDATE idempotency_keys SET state = 'done', \
     response_status = ?1, response_body = ?2 WHERE merchant_id = ?3 AND idempotency_key = ?4";

/// A connection of its own to the store's SQLite file, for one thread.
pub struct SqliteWriter {
    conn: Connection,
}

/// One write transaction of a [`SqliteWriter`]; dropped without
/// [`commit`](SqliteBatch::commit), it rolls back.
pub struct SqliteBatch<'c> {
    tx: rusqlite::Transaction<'c>,
}

impl SqliteWriter {
    /// Opens `path` (an existing, migrated database) and sets `pragmas`: the store's own
    /// (WAL, a commit that returns only once it is on disk, foreign keys, the writer's cache).
    ///
    /// With `sqlite_tuning` (`storage.sqlite_tuning`), its page cache, made on this thread
    /// while the connection opens, parks rebalanced pages elsewhere (ADR 18, 19); with
    /// `wal_gather` too (`storage.sqlite_wal_gather`), the connection goes through the VFS of
    /// [`kassa_wal_gather`], which writes each commit's WAL frames in a few system calls
    /// instead of two per frame (ADR 16, 40). Without either, it is a plain connection.
    pub(crate) fn open(
        path: &str,
        pragmas: &str,
        sqlite_tuning: bool,
        wal_gather: bool,
    ) -> Result<SqliteWriter, StoreError> {
        let open = || -> Result<Connection, StoreError> {
            let conn = if wal_gather {
                kassa_wal_gather::register().map_err(|code| {
                    rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(code),
                        Some("registering the WAL-gathering VFS".to_string()),
                    )
                })?;
                Connection::open_with_flags_and_vfs(
                    path,
                    OpenFlags::default(),
                    kassa_wal_gather::VFS_NAME,
                )?
            } else {
                Connection::open_with_flags(path, OpenFlags::default())?
            };
            conn.execute_batch(pragmas)?;
            // Reading the schema makes SQLite learn the file's page size and make the
            // connection's page cache for it, inside `opening_writer`.
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
            Ok(conn)
        };
        let conn = if sqlite_tuning {
            kassa_wal_gather::opening_writer(open)?
        } else {
            open()?
        };
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        Ok(SqliteWriter { conn })
    }

    /// Starts a write transaction holding the file's write lock (`BEGIN IMMEDIATE`).
    pub fn begin(&mut self) -> Result<SqliteBatch<'_>, StoreError> {
        Ok(SqliteBatch {
            tx: self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?,
        })
    }
}

impl SqliteBatch<'_> {
    /// Applies `requests` of one merchant, in order, as
    /// [`Store::apply_ledger_requests`](crate::Store::apply_ledger_requests) does: the same
    /// reads, the same engine, the same rows.
    #[cfg(test)]
    pub fn apply_ledger_requests(
        &mut self,
        merchant_id: &str,
        requests: &[Request],
    ) -> Result<Vec<Outcome>, StoreError> {
        let rules = PlayRules {
            now_ms: crate::now_ms(),
            session_break_ms: kassa_core::play_limits::SESSION_BREAK_MS_DEFAULT,
        };
        self.apply_ledger_requests_with(merchant_id, requests, rules)
    }

    /// The batch's requests at `rules.now_ms`, with the
    /// bets of limited players checked and their calls counted, as
    /// [`Store::apply_ledger_requests_with`](crate::Store::apply_ledger_requests_with) does.
    pub fn apply_ledger_requests_with(
        &mut self,
        merchant_id: &str,
        requests: &[Request],
        rules: PlayRules,
    ) -> Result<Vec<Outcome>, StoreError> {
        let (outcomes, effects, play_changes) = self.decide(merchant_id, requests, rules)?;
        let now = rules.now_ms;
        let mut entry_ids: HashMap<String, i64> = HashMap::with_capacity(effects.new_entries.len());
        insert_chunked(
            &self.tx,
            &INSERT_ENTRIES,
            " RETURNING id, txn_id",
            &effects.new_entries,
            |e| {
                let mut values = [const { ToSqlOutput::Borrowed(ValueRef::Null) }; 2 + ENTRY_WIDTH];
                values[0] = text(Some(merchant_id));
                values[1] = int(Some(now));
                for (slot, value) in values[2..].iter_mut().zip(entry_values(e)) {
                    *slot = match value {
                        JournalValue::Text(value) => text(value),
                        JournalValue::Int(value) => int(value),
                    };
                }
                Ok(values)
            },
            |row| {
                entry_ids.insert(row.get(1)?, row.get(0)?);
                Ok(())
            },
        )?;
        {
            let mut update = self.tx.prepare_cached(UPDATE_STATUS)?;
            for e in &effects.changed_entries {
                update.execute(params![e.status.as_str(), merchant_id, e.txn_id])?;
            }
        }
        insert_chunked(
            &self.tx,
            INSERT_TRANSFERS,
            "",
            &effects.transfers,
            |t| {
                // The engine moves money only under the txn id of an entry it records in
                // the same batch.
                let entry_id = entry_ids.get(t.txn_id.as_str()).ok_or_else(|| {
                    StoreError::Corrupt(format!("transfer of {:?} without a new entry", t.txn_id))
                })?;
                Ok([
                    int(Some(*entry_id)),
                    text(Some(merchant_id)),
                    text(Some(&t.txn_id)),
                    int(Some(i64::from(t.seq))),
                    int(Some(t.debit)),
                    int(Some(t.credit)),
                    int(Some(t.amount_minor)),
                    text(Some(t.currency.code())),
                    int(Some(now)),
                ])
            },
            |_| Ok(()),
        )?;
        self.write_balances(&effects.balances, play_changes)?;
        Ok(outcomes)
    }

    /// The new balances, each with its account's play state where that changed (one update
    /// of the row), and the play states of accounts whose balance did not change (none
    /// today: a state changes only when money moved on its account).
    fn write_balances(
        &self,
        balances: &[Account],
        play_changes: Vec<(AccountId, String)>,
    ) -> Result<(), StoreError> {
        let mut states: HashMap<AccountId, String> = play_changes.into_iter().collect();
        let mut update = self.tx.prepare_cached(UPDATE_BALANCE)?;
        let mut update_both = self.tx.prepare_cached(UPDATE_BALANCE_AND_PLAY_STATE)?;
        for account in balances {
            let updated = match states.remove(&account.id) {
                Some(state) => {
                    update_both.execute(params![account.balance_minor, state, account.id])?
                }
                None => update.execute(params![account.balance_minor, account.id])?,
            };
            if updated != 1 {
                return Err(StoreError::Corrupt(format!(
                    "account {} vanished while its balance was written",
                    account.id
                )));
            }
        }
        let mut update_state = self.tx.prepare_cached(UPDATE_PLAY_STATE)?;
        for (id, state) in &states {
            update_state.execute(params![state, id])?;
        }
        Ok(())
    }

    /// Reads what `requests` touch and decides them: the outcomes, the ledger's effects and
    /// the play states that changed.
    fn decide(
        &self,
        merchant_id: &str,
        requests: &[Request],
        rules: PlayRules,
    ) -> Result<Decided, StoreError> {
        let (account_ids, txn_ids) = referenced(requests);
        let (mut accounts, mut play_states) = self.accounts(&account_ids)?;
        let entries = self.entries(merchant_id, &txn_ids)?;
        let more: BTreeSet<AccountId> = entries
            .iter()
            .flat_map(|e| e.accounts())
            .filter(|id| !account_ids.contains(id))
            .collect();
        let (more_accounts, more_states) = self.accounts(&more)?;
        accounts.extend(more_accounts);
        play_states.extend(more_states);

        let mut view = LedgerView::new(accounts, entries);
        let mut gate = gate_over(rules, play_states)?;
        let rolled_back = gate.rolled_back_bets(&view, requests);
        if !rolled_back.is_empty() {
            gate.with_bet_times(self.bet_times(merchant_id, &rolled_back)?);
        }
        let (outcomes, play_changes) = decide(&mut view, gate, requests);
        Ok((outcomes, view.into_effects(), play_changes))
    }

    /// Stores the answer of a claimed `Idempotency-Key` in this transaction, as
    /// [`complete_idempotency_key`](crate::idempotency::complete_idempotency_key) does.
    pub fn complete_idempotency_key(
        &mut self,
        merchant_id: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(COMPLETE_IDEMPOTENCY_KEY)?
            .execute(params![i64::from(status), body, merchant_id, key])?;
        Ok(())
    }

    /// Makes the batch durable.
    pub fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit()?)
    }

    /// The accounts `ids` and the play states stored on those that have one.
    fn accounts(&self, ids: &BTreeSet<AccountId>) -> Result<LoadedAccounts, StoreError> {
        let mut select = self.tx.prepare_cached(SELECT_ACCOUNT)?;
        let mut accounts = Vec::with_capacity(ids.len());
        let mut play_states = Vec::new();
        for id in ids {
            let row = select
                .query_row(params![id], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, Option<String>>(4)?,
                    ))
                })
                .optional()?;
            // An unknown account is left out, as the IN list of the sqlx path leaves it
            // out; the engine refuses a request that names it.
            if let Some((id, currency, balance_minor, floor, play_state)) = row {
                accounts.push(parse_account(id, &currency, balance_minor, &floor)?);
                play_states.extend(play_state.map(|state| (id, state)));
            }
        }
        Ok((accounts, play_states))
    }

    /// When the entries `txn_ids` of the merchant were recorded (those that exist).
    fn bet_times(
        &self,
        merchant_id: &str,
        txn_ids: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut select = self.tx.prepare_cached(SELECT_ENTRY_TIME)?;
        let mut times = Vec::with_capacity(txn_ids.len());
        for txn_id in txn_ids {
            let at: Option<i64> = select
                .query_row(params![merchant_id, txn_id], |row| row.get(0))
                .optional()?;
            times.extend(at.map(|at| ((*txn_id).to_string(), at)));
        }
        Ok(times)
    }

    fn entries(
        &self,
        merchant_id: &str,
        txn_ids: &BTreeSet<&str>,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut select = self.tx.prepare_cached(&SELECT_ENTRY)?;
        let mut entries = Vec::new();
        for txn_id in txn_ids {
            if let Some(row) = select.query(params![merchant_id, txn_id])?.next()? {
                entries.push(entry_from_row(row, 0)?);
            }
        }
        Ok(entries)
    }
}

/// Inserts `rows` as `head (…), (…) tail` in chunks of [`CHUNK_LENS`] rows, each row's
/// values given by `values` in column order, and hands each row the statement returns to
/// `returned`.
fn insert_chunked<'a, T, const WIDTH: usize>(
    tx: &rusqlite::Transaction<'_>,
    head: &str,
    tail: &str,
    rows: &'a [T],
    values: impl Fn(&'a T) -> Result<[ToSqlOutput<'a>; WIDTH], StoreError>,
    mut returned: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    let mut rest = rows;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(chunk_len(rest.len()));
        rest = after;
        let mut insert = tx.prepare_cached(&insert_sql(head, WIDTH, chunk.len(), tail))?;
        for (row, item) in chunk.iter().enumerate() {
            for (column, value) in values(item)?.iter().enumerate() {
                insert.raw_bind_parameter(row * WIDTH + column + 1, value)?;
            }
        }
        let mut inserted = insert.raw_query();
        while let Some(row) = inserted.next()? {
            returned(row)?;
        }
    }
    Ok(())
}

/// A text column's value (`None`: NULL).
fn text(value: Option<&str>) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(value.map_or(ValueRef::Null, |t| ValueRef::Text(t.as_bytes())))
}

/// An integer column's value (`None`: NULL).
fn int(value: Option<i64>) -> ToSqlOutput<'static> {
    value.map_or(ToSqlOutput::Borrowed(ValueRef::Null), |i| {
        ToSqlOutput::Owned(Value::Integer(i))
    })
}

/// The largest of [`CHUNK_LENS`] that `remaining` rows fill.
fn chunk_len(remaining: usize) -> usize {
    CHUNK_LENS
        .into_iter()
        .find(|&len| len <= remaining)
        .unwrap_or(1)
}

/// `head`, then `rows` rows of `width` numbered parameters, then `tail`.
fn insert_sql(head: &str, width: usize, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + rows * width * 5 + 24);
    sql.push_str(head);
    for row in 0..rows {
        sql.push_str(if row == 0 { " (" } else { ", (" });
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
            sql.push_str(&(row * width + column + 1).to_string());
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}
