//! The wallet writer's own SQLite connection (ADR 13).
//!
//! sqlx runs every SQLite connection on a thread of its own, so each statement is a round
//! trip between two threads; a wallet batch is about ten of them (the pool's two pings,
//! BEGIN, the reads, the writes, COMMIT), and on this project's 2-core machines each wake-up
//! of the other thread cost more than the statement (BENCH.md, note 18). This writer calls
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
use std::time::Duration;

use kassa_core::ledger::{
    Account, AccountId, Entry, EntryMeta, EntryStatus, Floor, LedgerView, Operation, Outcome,
    Request,
};
use kassa_core::Currency;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::{now_ms, StoreError};

/// Statements each connection keeps prepared: the reads and updates below and six sizes of
/// each multi-row INSERT, with room to spare.
const STATEMENT_CACHE_CAPACITY: usize = 64;
/// How long a statement waits for the file's write lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SELECT_ACCOUNT: &str =
    "SELECT id, currency, balance_minor, floor FROM ledger_accounts WHERE id = ?1";
const SELECT_ENTRY: &str = "SELECT txn_id, label, operation, status, fingerprint, currency, \
     amount_minor, debit_account_id, credit_account_id, hold_account_id, ref_txn_id, \
     subject_account_id, subject_balance_after_minor, player_id, round_id, reference \
     FROM ledger_entries WHERE merchant_id = ?1 AND txn_id = ?2";
const INSERT_ENTRIES: &str = "INSERT INTO ledger_entries (merchant_id, created_at_ms, txn_id, \
     label, operation, status, fingerprint, currency, amount_minor, debit_account_id, \
     credit_account_id, hold_account_id, ref_txn_id, subject_account_id, \
     subject_balance_after_minor, player_id, round_id, reference) VALUES";
const ENTRY_WIDTH: usize = 18;
const UPDATE_STATUS: &str =
    "UPDATE ledger_entries SET status = ?1 WHERE merchant_id = ?2 AND txn_id = ?3";
const INSERT_TRANSFERS: &str = "INSERT INTO ledger_transfers (entry_id, merchant_id, txn_id, \
     seq, debit_account_id, credit_account_id, amount_minor, currency, created_at_ms) VALUES";
const TRANSFER_WIDTH: usize = 9;
/// Rows per multi-row INSERT, largest first. A batch's rows go in as few statements as
/// these sizes allow, so each table sees at most a handful of statement texts (prepared
/// once), and the tables' `AUTOINCREMENT` counter is read and written once per statement
/// rather than once per row.
const CHUNK_LENS: [usize; 6] = [32, 16, 8, 4, 2, 1];
const UPDATE_BALANCE: &str = "UPDATE ledger_accounts SET balance_minor = ?1 WHERE id = ?2";
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
    /// Opens `path` (an existing, migrated database) with the same durability as the
    /// store's own connections: WAL, and a commit that returns only once it is on disk.
    pub(crate) fn open(
        path: &str,
        cache_kib: u32,
        autocheckpoint_pages: u32,
    ) -> Result<SqliteWriter, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{cache_kib}; \
             PRAGMA wal_autocheckpoint = {autocheckpoint_pages};"
        ))?;
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
    pub fn apply_ledger_requests(
        &mut self,
        merchant_id: &str,
        requests: &[Request],
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut account_ids: BTreeSet<AccountId> = requests
            .iter()
            .flat_map(|r| r.referenced_accounts())
            .collect();
        let mut accounts = self.accounts(&account_ids)?;
        let txn_ids: BTreeSet<&str> = requests
            .iter()
            .flat_map(|r| r.referenced_txn_ids())
            .collect();
        let entries = self.entries(merchant_id, &txn_ids)?;
        let more: BTreeSet<AccountId> = entries
            .iter()
            .flat_map(|e| e.accounts())
            .filter(|id| !account_ids.contains(id))
            .collect();
        accounts.extend(self.accounts(&more)?);
        account_ids.extend(more);

        let mut view = LedgerView::new(accounts, entries);
        let outcomes: Vec<Outcome> = requests.iter().map(|r| view.apply(r)).collect();
        let effects = view.into_effects();
        let now = now_ms();
        let tx = &self.tx;
        let mut entry_ids: HashMap<String, i64> = HashMap::with_capacity(effects.new_entries.len());
        let mut rest = effects.new_entries.as_slice();
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(chunk_len(rest.len()));
            rest = after;
            let mut insert = tx.prepare_cached(&insert_sql(
                INSERT_ENTRIES,
                ENTRY_WIDTH,
                chunk.len(),
                " RETURNING id, txn_id",
            ))?;
            let mut i = 0;
            let mut bind = |value: &dyn rusqlite::ToSql| {
                i += 1;
                insert.raw_bind_parameter(i, value)
            };
            for e in chunk {
                bind(&merchant_id)?;
                bind(&now)?;
                bind(&e.txn_id)?;
                bind(&e.label)?;
                bind(&e.operation.as_str())?;
                bind(&e.status.as_str())?;
                bind(&e.fingerprint)?;
                bind(&e.currency.map(|c| c.code()))?;
                bind(&e.amount_minor)?;
                bind(&e.debit_account)?;
                bind(&e.credit_account)?;
                bind(&e.hold_account)?;
                bind(&e.ref_txn_id)?;
                bind(&e.subject_account)?;
                bind(&e.subject_balance_after_minor)?;
                bind(&e.meta.player_id)?;
                bind(&e.meta.round_id)?;
                bind(&e.meta.reference)?;
            }
            let mut rows = insert.raw_query();
            while let Some(row) = rows.next()? {
                entry_ids.insert(row.get(1)?, row.get(0)?);
            }
        }
        {
            let mut update = tx.prepare_cached(UPDATE_STATUS)?;
            for e in &effects.changed_entries {
                update.execute(params![e.status.as_str(), merchant_id, e.txn_id])?;
            }
        }
        let mut rest = effects.transfers.as_slice();
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(chunk_len(rest.len()));
            rest = after;
            let mut insert = tx.prepare_cached(&insert_sql(
                INSERT_TRANSFERS,
                TRANSFER_WIDTH,
                chunk.len(),
                "",
            ))?;
            let mut i = 0;
            let mut bind = |value: &dyn rusqlite::ToSql| {
                i += 1;
                insert.raw_bind_parameter(i, value)
            };
            for t in chunk {
                // The engine moves money only under the txn id of an entry it records in
                // the same batch.
                let entry_id = entry_ids.get(t.txn_id.as_str()).ok_or_else(|| {
                    StoreError::Corrupt(format!("transfer of {:?} without a new entry", t.txn_id))
                })?;
                bind(entry_id)?;
                bind(&merchant_id)?;
                bind(&t.txn_id)?;
                bind(&i64::from(t.seq))?;
                bind(&t.debit)?;
                bind(&t.credit)?;
                bind(&t.amount_minor)?;
                bind(&t.currency.code())?;
                bind(&now)?;
            }
            insert.raw_execute()?;
        }
        {
            let mut update = tx.prepare_cached(UPDATE_BALANCE)?;
            for account in &effects.balances {
                if update.execute(params![account.balance_minor, account.id])? != 1 {
                    return Err(StoreError::Corrupt(format!(
                        "account {} vanished while its balance was written",
                        account.id
                    )));
                }
            }
        }
        Ok(outcomes)
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

    fn accounts(&self, ids: &BTreeSet<AccountId>) -> Result<Vec<Account>, StoreError> {
        let mut select = self.tx.prepare_cached(SELECT_ACCOUNT)?;
        let mut accounts = Vec::with_capacity(ids.len());
        for id in ids {
            let row = select
                .query_row(params![id], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                })
                .optional()?;
            // An unknown account is left out, as the IN list of the sqlx path leaves it
            // out; the engine refuses a request that names it.
            if let Some((id, currency, balance_minor, floor)) = row {
                accounts.push(Account {
                    id,
                    currency: Currency::from_code(&currency)
                        .map_err(|_| corrupt("currency", &currency))?,
                    balance_minor,
                    floor: Floor::parse(&floor).ok_or_else(|| corrupt("floor", &floor))?,
                });
            }
        }
        Ok(accounts)
    }

    fn entries(
        &self,
        merchant_id: &str,
        txn_ids: &BTreeSet<&str>,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut select = self.tx.prepare_cached(SELECT_ENTRY)?;
        let mut entries = Vec::new();
        for txn_id in txn_ids {
            if let Some(entry) = select
                .query_row(params![merchant_id, txn_id], entry_from_row)
                .optional()?
            {
                entries.push(entry?);
            }
        }
        Ok(entries)
    }
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

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

/// An entry from a row of [`SELECT_ENTRY`]; the outer result is the driver's, the inner
/// one says whether the stored text makes sense.
fn entry_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Entry, StoreError>> {
    let operation: String = row.get(2)?;
    let status: String = row.get(3)?;
    let currency: Option<String> = row.get(5)?;
    let parsed = (|| {
        Ok::<_, StoreError>((
            Operation::parse(&operation).ok_or_else(|| corrupt("operation", &operation))?,
            EntryStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
            currency
                .as_deref()
                .map(|code| Currency::from_code(code).map_err(|_| corrupt("currency", code)))
                .transpose()?,
        ))
    })();
    let (operation, status, currency) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return Ok(Err(error)),
    };
    Ok(Ok(Entry {
        txn_id: row.get(0)?,
        label: row.get(1)?,
        operation,
        status,
        fingerprint: row.get(4)?,
        currency,
        amount_minor: row.get(6)?,
        debit_account: row.get(7)?,
        credit_account: row.get(8)?,
        hold_account: row.get(9)?,
        ref_txn_id: row.get(10)?,
        subject_account: row.get(11)?,
        subject_balance_after_minor: row.get(12)?,
        meta: EntryMeta {
            player_id: row.get(13)?,
            round_id: row.get(14)?,
            reference: row.get(15)?,
        },
    }))
}
