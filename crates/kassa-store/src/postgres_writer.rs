//! The wallet writer's own PostgreSQL connection (ADR 15).
//!
//! Through sqlx a wallet batch waited on seven round trips, one statement at a time: BEGIN,
//! the entries a rollback names, the accounts it locks, the entries again, the journal, the
//! status changes, COMMIT. With 10,000 players a quarter of the machine sat idle while the
//! one writer waited (docs/perf-log.md, note 24). This writer speaks to PostgreSQL through
//! `tokio-postgres`, which sends statements that do not need each other's answers
//! back to back (pipelining) and waits once:
//!
//! 1. BEGIN, the row locks on every account the batch names, and the entries it names;
//! 2. the journal, the status changes, the idempotent answers, and COMMIT.
//!
//! The journal statement checks itself (every decided transfer and balance written, or it
//! fails through `kassa_assert`, migration 0005), so a failed check aborts the transaction
//! and the COMMIT behind it rolls back.
//!
//! A rollback names its original entry, not the accounts that entry moved money between;
//! the writer remembers the accounts of the entries it recorded (`entry_accounts`), so the
//! locks of step 1 already cover them. When they do not (an entry another node wrote, or one
//! forgotten), the writer locks what is missing and reads the entries once more, as the
//! shared path does: the entries a batch decides on are always read after every account
//! they name is locked, so two nodes cannot both roll back one debit.
//!
//! Each statement has one text whatever the batch size (rows go in as arrays), so each is
//! prepared once per connection. It writes the same rows as
//! [`Store::apply_ledger_requests`](crate::Store::apply_ledger_requests) through the same
//! pure ledger engine.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use futures::future::try_join_all;
use kassa_core::ledger::{Account, AccountId, Effects, Entry, LedgerView, Outcome, Request};
use kassa_core::play_limits::PlayRules;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use crate::journal::{
    entry_from_row, entry_values, ColumnType, JournalValue, ENTRY_COLUMNS, ENTRY_COLUMN_LIST,
    ENTRY_WIDTH,
};
use crate::ledger::{parse_account, referenced};
use crate::play_limits::{decide, gate_over};
use crate::StoreError;

const LOCK_ACCOUNTS: &str = "SELECT id, currency, balance_minor, floor, play_state \
     FROM ledger_accounts WHERE id = ANY($1::int8[]) ORDER BY id FOR UPDATE";
/// Play states of accounts whose balance the batch did not change (see `states_beside`),
/// on the accounts it locked (found by key, as the journal's balances are).
const UPDATE_PLAY_STATES: &str = "UPDATE ledger_accounts a SET play_state = v.play_state \
     FROM unnest($1::int8[], $2::text[]) AS v (id, play_state) \
     WHERE a.id = ANY($1::int8[]) AND a.id = v.id";
/// The entries `$2` names, one probe of the unique (merchant_id, txn_id) key per txn id.
/// `txn_id = ANY($2)` let PostgreSQL's generic plan, made while the journal was nearly empty
/// and kept as it grew, read every entry of the merchant and filter txn_id row by row; a
/// subquery with LIMIT cannot be flattened, so each txn id is looked up on its own (ADR 23).
/// Each entry comes with its time, last: a rollback of a limited player's bet takes the
/// stake out of the bucket the bet was counted in (ADR 77), without a round trip more.
static SELECT_ENTRIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {columns}, created_at_ms FROM unnest($2::text[]) AS k (wanted_txn_id) \
         CROSS JOIN LATERAL (SELECT {columns}, created_at_ms FROM ledger_entries \
         WHERE merchant_id = $1 AND txn_id = k.wanted_txn_id LIMIT 1) AS e",
        columns = *ENTRY_COLUMN_LIST
    )
});
/// New entries (in the order the engine decided them, so ids follow the journal), their
/// transfers joined to the ids the entries got, and the new balances. The engine moves money
/// only under the txn id of an entry it records in the same batch, and only on accounts it
/// loaded under lock; the statement fails unless it wrote every transfer and balance, so
/// that the COMMIT sent behind it rolls back. The balances are found by `id = ANY(…)`,
/// through the key's index whatever plan PostgreSQL caches (a join with the array alone let
/// a generic plan scan the whole table; see `case_update` in the shared path).
static WRITE_JOURNAL: LazyLock<String> = LazyLock::new(write_journal_sql);

/// The text of [`WRITE_JOURNAL`]: `$1` merchant, `$2` time, one array per entry column from
/// `$3`, then the transfers' six arrays and the balances' three (id, balance, play state or NULL).
fn write_journal_sql() -> String {
    let first = 3;
    let entry_arrays: Vec<String> = ENTRY_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            let sql_type = match kind {
                ColumnType::Text => "text",
                ColumnType::Int => "int8",
            };
            format!("${}::{sql_type}[]", first + i)
        })
        .collect();
    let entry_values: Vec<String> = ENTRY_COLUMNS
        .iter()
        .map(|(name, _)| format!("v.{name}"))
        .collect();
    let t = first + ENTRY_WIDTH;
    let b = t + 6;
    format!(
        "WITH e AS (INSERT INTO ledger_entries (merchant_id, created_at_ms, {columns}) \
         SELECT $1::text, $2::int8, {entry_values} \
         FROM unnest({entry_arrays}) WITH ORDINALITY AS v ({columns}, n) \
         ORDER BY v.n RETURNING id, txn_id), \
         t AS (INSERT INTO ledger_transfers (entry_id, merchant_id, txn_id, seq, \
         debit_account_id, credit_account_id, amount_minor, currency, created_at_ms) \
         SELECT e.id, $1::text, v.txn_id, v.seq, v.debit_account_id, v.credit_account_id, \
         v.amount_minor, v.currency, $2::int8 \
         FROM unnest(${t}::text[], ${t1}::int8[], ${t2}::int8[], ${t3}::int8[], ${t4}::int8[], \
         ${t5}::text[]) WITH ORDINALITY AS v (txn_id, seq, debit_account_id, \
         credit_account_id, amount_minor, currency, n) JOIN e ON e.txn_id = v.txn_id \
         ORDER BY v.n RETURNING 1), \
         b AS (UPDATE ledger_accounts a SET balance_minor = v.balance_minor, \
         play_state = COALESCE(v.play_state, a.play_state) \
         FROM unnest(${b}::int8[], ${b1}::int8[], ${b2}::text[]) AS v (id, balance_minor, play_state) \
         WHERE a.id = ANY(${b}::int8[]) AND a.id = v.id RETURNING 1) \
         SELECT kassa_assert((SELECT COUNT(*) FROM t) = cardinality(${t}::text[]) \
         AND (SELECT COUNT(*) FROM b) = cardinality(${b}::int8[]), \
         'the journal wrote other transfers or balances than the ledger decided')",
        columns = *ENTRY_COLUMN_LIST,
        entry_values = entry_values.join(", "),
        entry_arrays = entry_arrays.join(", "),
        t1 = t + 1,
        t2 = t + 2,
        t3 = t + 3,
        t4 = t + 4,
        t5 = t + 5,
        b1 = b + 1,
        b2 = b + 2,
    )
}
/// Each changed entry is found as [`SELECT_ENTRIES`] finds it (a probe of the unique key per
/// txn id), then updated by its id.
const UPDATE_STATUSES: &str = "UPDATE ledger_entries e SET status = v.status \
     FROM unnest($2::text[], $3::text[]) AS v (wanted_txn_id, status) \
     CROSS JOIN LATERAL (SELECT x.id FROM ledger_entries x \
     WHERE x.merchant_id = $1 AND x.txn_id = v.wanted_txn_id LIMIT 1) AS f \
     WHERE e.id = f.id";
const COMPLETE_IDEMPOTENCY_KEY: &str = "UPDATE idempotency_keys SET state = 'done', \
     response_status = $1, response_body = $2 WHERE merchant_id = $3 AND idempotency_key = $4";

/// Every statement of this writer finds its rows by key. PostgreSQL plans a prepared
/// statement for good after its first executions, from the table sizes of that moment; on a
/// new database (a few accounts, the bench seeding its players' wallets) that plan was a
/// scan of the whole accounts table, kept while the table grew to 20,000 rows: 3,292 scans
/// in one benchmark run where the shared path, whose texts change with the batch size, did
/// 54. With sequential scans priced out, the plans use the keys' indexes at any size.
const SESSION_SETTINGS: &str = "SET enable_seqscan = off";

/// Entries whose accounts the writer remembers; past this it forgets them all and starts
/// over. A rollback names a recent debit, and 100,000 entries are minutes of a busy casino.
/// Forgetting costs one more round trip for a rollback of an older entry, never a wrong
/// answer.
const ENTRY_ACCOUNTS_LEN_MAX: usize = 100_000;

/// The statements, prepared once per connection.
struct Statements {
    lock_accounts: Statement,
    select_entries: Statement,
    write_journal: Statement,
    update_statuses: Statement,
    update_play_states: Statement,
    complete_idempotency_key: Statement,
}

/// What one round trip of locks and reads brought.
struct ReadUnderLock {
    accounts: Vec<Account>,
    /// The play states on those of the accounts that have one.
    play_states: Vec<(AccountId, String)>,
    entries: Vec<Entry>,
    /// Each entry's time: (txn id, created at).
    entry_times: Vec<(String, i64)>,
}

/// One merchant's part of a batch, decided and not yet sent.
struct Decided {
    merchant_id: String,
    effects: Effects,
    /// Play states the batch changed: (cash account, encoded state).
    play_states: Vec<(AccountId, String)>,
    /// The time its entries are stamped with.
    now_ms: i64,
}

/// A connection of its own to the store's PostgreSQL database, for the wallet writer.
pub struct PostgresWriter {
    config: tokio_postgres::Config,
    connection: Option<(Client, Statements)>,
    /// A transaction was begun and neither committed nor rolled back (a batch that failed):
    /// the next batch rolls it back first.
    in_transaction: bool,
    /// The accounts each entry this writer recorded names, by merchant and txn id.
    entry_accounts: HashMap<(String, String), Vec<AccountId>>,
}

/// One write transaction of a [`PostgresWriter`]. Dropped without
/// [`commit`](PostgresBatch::commit), it is rolled back before the writer's next batch.
pub struct PostgresBatch<'w> {
    writer: &'w mut PostgresWriter,
    /// BEGIN was sent (it goes out with the batch's first statements).
    begun: bool,
    /// Entries written in this batch, remembered once it commits.
    recorded: Vec<((String, String), Vec<AccountId>)>,
    /// Decided and not yet sent: each merchant's effects, sent at the head of the batch's
    /// next round trip (the next merchant's locks, or the commit).
    unsent: Vec<Decided>,
    /// Answers of claimed `Idempotency-Key`s, sent with the commit: (merchant, key,
    /// status, body).
    answers: Vec<(String, String, i64, String)>,
}

impl PostgresWriter {
    /// A writer for the database at `url` (a `postgres://` URL that `tokio-postgres`
    /// understands); it connects at its first batch.
    pub(crate) fn new(url: &str) -> Result<PostgresWriter, StoreError> {
        Ok(PostgresWriter {
            config: url.parse()?,
            connection: None,
            in_transaction: false,
            entry_accounts: HashMap::new(),
        })
    }

    /// Connects now, so that a wrong URL shows at start-up rather than at the first call.
    pub async fn connect(&mut self) -> Result<(), StoreError> {
        self.client().await.map(|_| ())
    }

    /// Starts a write transaction. Nothing is sent yet: BEGIN goes out with the batch's
    /// first statements.
    pub async fn begin(&mut self) -> Result<PostgresBatch<'_>, StoreError> {
        self.client().await?;
        Ok(PostgresBatch {
            writer: self,
            begun: false,
            recorded: Vec::new(),
            unsent: Vec::new(),
            answers: Vec::new(),
        })
    }

    /// Rolls back a batch that failed, so that its row locks do not wait for the next
    /// batch; forgets the connection if even that fails.
    pub async fn roll_back_failed_batch(&mut self) {
        if !self.in_transaction {
            return;
        }
        if let Some((client, _)) = &self.connection {
            if client.batch_execute("ROLLBACK").await.is_ok() {
                self.in_transaction = false;
                return;
            }
        }
        self.connection = None;
        self.in_transaction = false;
    }

    /// The connection, opened (and its statements prepared) if there is none or the last
    /// one broke.
    async fn client(&mut self) -> Result<&(Client, Statements), StoreError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|(client, _)| client.is_closed())
        {
            self.connection = None;
            self.in_transaction = false;
        }
        if self.connection.is_none() {
            let (client, connection) = self.config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "wallet writer's PostgreSQL connection closed");
                }
            });
            client.batch_execute(SESSION_SETTINGS).await?;
            let statements = Statements {
                lock_accounts: client.prepare(LOCK_ACCOUNTS).await?,
                select_entries: client.prepare(&SELECT_ENTRIES).await?,
                write_journal: client.prepare(&WRITE_JOURNAL).await?,
                update_statuses: client.prepare(UPDATE_STATUSES).await?,
                update_play_states: client.prepare(UPDATE_PLAY_STATES).await?,
                complete_idempotency_key: client.prepare(COMPLETE_IDEMPOTENCY_KEY).await?,
            };
            self.connection = Some((client, statements));
            self.in_transaction = false;
        }
        Ok(self.connection.as_ref().expect("connected above"))
    }
}

impl PostgresBatch<'_> {
    /// Applies `requests` of one merchant, in order, as
    /// [`Store::apply_ledger_requests`](crate::Store::apply_ledger_requests) does: the same
    /// locks, the same engine, the same rows.
    #[cfg(test)]
    pub async fn apply_ledger_requests(
        &mut self,
        merchant_id: &str,
        requests: &[Request],
    ) -> Result<Vec<Outcome>, StoreError> {
        let rules = PlayRules {
            now_ms: crate::now_ms(),
            session_break_ms: kassa_core::play_limits::SESSION_BREAK_MS_DEFAULT,
        };
        self.apply_ledger_requests_with(merchant_id, requests, rules)
            .await
    }

    /// The batch's requests at `rules.now_ms`, with the
    /// bets of limited players checked and their calls counted, as
    /// [`Store::apply_ledger_requests_with`](crate::Store::apply_ledger_requests_with) does.
    pub async fn apply_ledger_requests_with(
        &mut self,
        merchant_id: &str,
        requests: &[Request],
        rules: PlayRules,
    ) -> Result<Vec<Outcome>, StoreError> {
        let (account_ids, txn_ids) = referenced(requests);
        let txn_ids: Vec<&str> = txn_ids.into_iter().collect();
        let mut to_lock = account_ids.clone();
        for txn_id in &txn_ids {
            let key = (merchant_id.to_string(), (*txn_id).to_string());
            if let Some(accounts) = self.writer.entry_accounts.get(&key) {
                to_lock.extend(accounts.iter().copied());
            }
        }
        let mut locked = BTreeSet::new();
        let mut accounts = Vec::new();
        let mut play_states = Vec::new();
        let (entries, entry_times) = loop {
            let read = self.lock_and_read(&to_lock, merchant_id, &txn_ids).await?;
            accounts.extend(read.accounts);
            play_states.extend(read.play_states);
            let entries = read.entries;
            locked.extend(to_lock.iter().copied());
            // Asked for and missing accounts stay out of the view (the engine refuses a
            // request that names one); they are not asked for again.
            to_lock = entries
                .iter()
                .flat_map(|e| e.accounts())
                .filter(|id| !locked.contains(id))
                .collect();
            if to_lock.is_empty() {
                break (entries, read.entry_times);
            }
        };

        let mut view = LedgerView::new(accounts, entries);
        let mut gate = gate_over(rules, play_states)?;
        let rolled_back = gate.rolled_back_bets(&view, requests);
        gate.with_bet_times(
            entry_times
                .into_iter()
                .filter(|(txn_id, _)| rolled_back.contains(&txn_id.as_str())),
        );
        let (outcomes, play_states) = decide(&mut view, gate, requests);
        let effects = view.into_effects();
        self.recorded.extend(effects.new_entries.iter().map(|e| {
            (
                (merchant_id.to_string(), e.txn_id.clone()),
                e.accounts().collect(),
            )
        }));
        self.unsent.push(Decided {
            merchant_id: merchant_id.to_string(),
            effects,
            play_states,
            now_ms: rules.now_ms,
        });
        Ok(outcomes)
    }

    /// Stores the answer of a claimed `Idempotency-Key` in this transaction, as
    /// [`complete_idempotency_key`](crate::idempotency::complete_idempotency_key) does. It
    /// is sent with the commit.
    pub fn complete_idempotency_key(
        &mut self,
        merchant_id: &str,
        key: &str,
        status: u16,
        body: String,
    ) {
        self.answers.push((
            merchant_id.to_string(),
            key.to_string(),
            i64::from(status),
            body,
        ));
    }

    /// Sends what is left of the batch (its journal, the status changes, the idempotent
    /// answers) and COMMIT, in one round trip; then remembers the accounts of the entries
    /// it recorded. A statement that fails aborts the transaction, so the COMMIT behind it
    /// rolls back, and the error is the failed statement's.
    pub async fn commit(self) -> Result<(), StoreError> {
        if self.begun {
            let (client, statements) = self.connection()?;
            futures::try_join!(
                write_all(client, statements, &self.unsent),
                try_join_all(
                    self.answers
                        .iter()
                        .map(|(merchant, key, status, body)| async move {
                            client
                                .execute(
                                    &statements.complete_idempotency_key,
                                    &[status, body, merchant, key],
                                )
                                .await
                        })
                ),
                client.batch_execute("COMMIT"),
            )?;
            self.writer.in_transaction = false;
        }
        if self.writer.entry_accounts.len() + self.recorded.len() > ENTRY_ACCOUNTS_LEN_MAX {
            self.writer.entry_accounts.clear();
        }
        self.writer.entry_accounts.extend(self.recorded);
        Ok(())
    }

    fn connection(&self) -> Result<(&Client, &Statements), StoreError> {
        let (client, statements) = self
            .writer
            .connection
            .as_ref()
            .ok_or_else(|| StoreError::Corrupt("wallet writer without a connection".into()))?;
        Ok((client, statements))
    }

    /// Locks `ids` and then reads the entries `txn_ids` name, in one round trip; the first
    /// of a batch also sends BEGIN (after a ROLLBACK of a batch that failed).
    async fn lock_and_read(
        &mut self,
        ids: &BTreeSet<AccountId>,
        merchant_id: &str,
        txn_ids: &[&str],
    ) -> Result<ReadUnderLock, StoreError> {
        let opening = match (self.begun, self.writer.in_transaction) {
            (true, _) => None,
            (false, true) => Some("ROLLBACK; BEGIN"),
            (false, false) => Some("BEGIN"),
        };
        self.begun = true;
        self.writer.in_transaction = true;
        let unsent = std::mem::take(&mut self.unsent);
        let (client, statements) = self.connection()?;
        let ids: Vec<AccountId> = ids.iter().copied().collect();
        // Sent in this order, answered in this order: the entries are read after the
        // locks are granted, with a snapshot that sees whatever the lock waited for.
        let (_, _, account_rows, entry_rows) = futures::try_join!(
            async {
                match opening {
                    Some(sql) => client.batch_execute(sql).await,
                    None => Ok(()),
                }
            },
            write_all(client, statements, &unsent),
            async { client.query(&statements.lock_accounts, &[&ids]).await },
            async {
                client
                    .query(&statements.select_entries, &[&merchant_id, &txn_ids])
                    .await
            },
        )?;
        let mut accounts = Vec::with_capacity(account_rows.len());
        let mut play_states = Vec::new();
        for row in &account_rows {
            let account = parse_account(
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            )?;
            if let Some(state) = row.try_get::<_, Option<String>>(4)? {
                play_states.push((account.id, state));
            }
            accounts.push(account);
        }
        let mut entries = Vec::with_capacity(entry_rows.len());
        let mut entry_times = Vec::with_capacity(entry_rows.len());
        for row in &entry_rows {
            let entry = entry_from_row(row, 0)?;
            entry_times.push((entry.txn_id.clone(), row.try_get(ENTRY_WIDTH)?));
            entries.push(entry);
        }
        Ok(ReadUnderLock {
            accounts,
            play_states,
            entries,
            entry_times,
        })
    }
}

/// Each merchant's journal and status changes, in the order decided; everything is sent at
/// the first poll, so the statements go out in one round trip with whatever is polled next.
async fn write_all(
    client: &Client,
    statements: &Statements,
    unsent: &[Decided],
) -> Result<(), tokio_postgres::Error> {
    try_join_all(
        unsent
            .iter()
            .map(|decided| write(client, statements, decided)),
    )
    .await?;
    Ok(())
}

/// One merchant's journal statement, status changes and play states.
async fn write(
    client: &Client,
    statements: &Statements,
    decided: &Decided,
) -> Result<(), tokio_postgres::Error> {
    let (merchant_id, effects, now) = (&decided.merchant_id, &decided.effects, decided.now_ms);
    let transfers = &effects.transfers;
    let statuses: (Vec<&str>, Vec<&str>) = effects
        .changed_entries
        .iter()
        .map(|e| (e.txn_id.as_str(), e.status.as_str()))
        .unzip();
    let entry_arrays = entry_column_arrays(&effects.new_entries);
    let transfer_txn_ids: Vec<&str> = transfers.iter().map(|t| t.txn_id.as_str()).collect();
    let transfer_ints: [Vec<i64>; 4] = [
        transfers.iter().map(|t| i64::from(t.seq)).collect(),
        transfers.iter().map(|t| t.debit).collect(),
        transfers.iter().map(|t| t.credit).collect(),
        transfers.iter().map(|t| t.amount_minor).collect(),
    ];
    let transfer_currencies: Vec<&str> = transfers.iter().map(|t| t.currency.code()).collect();
    let balance_ids: Vec<AccountId> = effects.balances.iter().map(|a| a.id).collect();
    let balances: Vec<i64> = effects.balances.iter().map(|a| a.balance_minor).collect();
    let (balance_states, apart) = states_beside(&balance_ids, &decided.play_states);
    // In the order of the statement's parameters.
    let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&merchant_id, &now];
    parameters.extend(entry_arrays.iter().map(|array| array.as_ref()));
    parameters.extend([
        &transfer_txn_ids as &(dyn ToSql + Sync),
        &transfer_ints[0],
        &transfer_ints[1],
        &transfer_ints[2],
        &transfer_ints[3],
        &transfer_currencies,
        &balance_ids,
        &balances,
        &balance_states,
    ]);
    let journal = client.query_one(&statements.write_journal, &parameters);
    let status_changes = async {
        if statuses.0.is_empty() {
            return Ok(0);
        }
        client
            .execute(
                &statements.update_statuses,
                &[&merchant_id, &statuses.0, &statuses.1],
            )
            .await
    };
    let play_states = async {
        if apart.0.is_empty() {
            return Ok(0);
        }
        client
            .execute(&statements.update_play_states, &[&apart.0, &apart.1])
            .await
    };
    futures::try_join!(journal, status_changes, play_states)?;
    Ok(())
}

/// Play states written apart from their accounts' balances: (ids, states).
type StatesApart<'d> = (Vec<AccountId>, Vec<&'d str>);

/// The changed play states beside the balances they go with (`None` where an account's state
/// did not change), written by the journal's one update of each account row; and those of
/// accounts whose balance did not change, written apart. A state changes only when money
/// moved on its account, so the second list is empty unless that ever stops being so.
fn states_beside<'d>(
    balance_ids: &[AccountId],
    play_states: &'d [(AccountId, String)],
) -> (Vec<Option<&'d str>>, StatesApart<'d>) {
    let mut states: HashMap<AccountId, &str> = play_states
        .iter()
        .map(|(id, state)| (*id, state.as_str()))
        .collect();
    let beside = balance_ids.iter().map(|id| states.remove(id)).collect();
    (beside, states.into_iter().unzip())
}

/// The new entries as one array per column of [`ENTRY_COLUMNS`], typed as the column is.
fn entry_column_arrays(entries: &[Entry]) -> Vec<Box<dyn ToSql + Sync + '_>> {
    let rows: Vec<_> = entries.iter().map(entry_values).collect();
    (0..ENTRY_WIDTH)
        .map(|column| -> Box<dyn ToSql + Sync + '_> {
            match ENTRY_COLUMNS[column].1 {
                ColumnType::Text => Box::new(
                    rows.iter()
                        .map(|row| match row[column] {
                            JournalValue::Text(value) => value,
                            JournalValue::Int(_) => None,
                        })
                        .collect::<Vec<Option<&str>>>(),
                ),
                ColumnType::Int => Box::new(
                    rows.iter()
                        .map(|row| match row[column] {
                            JournalValue::Int(value) => value,
                            JournalValue::Text(_) => None,
                        })
                        .collect::<Vec<Option<i64>>>(),
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fresh_database_url, TestBackend};
    use crate::Store;

    /// Entries the journal grows to after the statements were planned: enough that reading
    /// every entry of the merchant costs hundreds of times what probing the key does.
    const JOURNAL_LEN: i64 = 20_000;

    /// Pages of shared buffers one execution may touch: a few per key probed. Reading every
    /// entry of the merchant touches thousands.
    const BUFFERS_MAX: i64 = 100;

    /// Shared buffers (hit or read) the whole plan of `explain`'s statement touched.
    async fn buffers_touched(client: &Client, explain: &str) -> (i64, serde_json::Value) {
        // The simple protocol answers in text; the plan's column is of type json.
        let messages = client.simple_query(explain).await.expect("explain");
        let text = messages
            .iter()
            .find_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                _ => None,
            })
            .expect("a plan");
        let plan: serde_json::Value = serde_json::from_str(text).expect("json");
        let top = &plan[0]["Plan"];
        let touched = top["Shared Hit Blocks"].as_i64().unwrap_or(0)
            + top["Shared Read Blocks"].as_i64().unwrap_or(0);
        (touched, plan)
    }

    /// The writer's entry lookups, planned on a fresh database (an empty journal, no
    /// statistics) and kept as PostgreSQL keeps a prepared statement's generic plan, still
    /// probe the (merchant_id, txn_id) key once the journal has grown, without ANALYZE.
    #[tokio::test]
    #[cfg_attr(not(kassa_postgres_tests), ignore = "KASSA_TEST_POSTGRES_URL is unset")]
    async fn entry_lookups_planned_on_an_empty_journal_probe_the_key_as_it_grows() {
        let url = fresh_database_url(TestBackend::Postgres)
            .await
            .expect("url");
        let store = Store::connect(&url).await.expect("store");
        store.migrate().await.expect("migrations");
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
        tokio::spawn(connection);
        // The generic plan is what PostgreSQL keeps after a statement's first executions;
        // forcing it here makes it the plan made on the empty journal.
        client
            .batch_execute("ALTER TABLE ledger_entries SET (autovacuum_enabled = false)")
            .await
            .expect("autovacuum off");
        client
            .batch_execute(&format!(
                "{SESSION_SETTINGS}; SET plan_cache_mode = force_generic_plan"
            ))
            .await
            .expect("settings");
        // Each statement on its own: a ROLLBACK in a multi-statement query would undo the
        // settings above.
        client
            .batch_execute(&format!(
                "PREPARE select_entries (text, text[]) AS {}; \
                 PREPARE update_statuses (text, text[], text[]) AS {UPDATE_STATUSES}; \
                 EXECUTE select_entries ('m1', '{{t1}}')",
                *SELECT_ENTRIES
            ))
            .await
            .expect("plan on the empty journal");
        for sql in [
            "BEGIN",
            "EXECUTE update_statuses ('m1', '{t1}', '{posted}')",
            "ROLLBACK",
        ] {
            client.batch_execute(sql).await.expect("plan the update");
        }
        client
            .batch_execute(&format!(
                "INSERT INTO merchants (id, name, created_at_ms) VALUES ('m1', 'm1', 0); \
                 INSERT INTO ledger_entries (merchant_id, txn_id, label, operation, status, \
                 amount_minor, player_id, created_at_ms) \
                 SELECT 'm1', 't' || n, 'debit', 'transfer', 'posted', 100, 'p' || n % 100, 0 \
                 FROM generate_series(1, {JOURNAL_LEN}) AS n"
            ))
            .await
            .expect("grow the journal");
        let analyzed: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_user_tables WHERE relname = 'ledger_entries' \
                 AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)",
                &[],
            )
            .await
            .expect("statistics")
            .get(0);
        assert_eq!(
            analyzed, 0,
            "the journal must be measured without statistics"
        );

        let explain = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)";
        let (touched, plan) = buffers_touched(
            &client,
            &format!("{explain} EXECUTE select_entries ('m1', '{{t7,t19999,missing}}')"),
        )
        .await;
        assert_eq!(plan[0]["Plan"]["Actual Rows"], 2, "{plan}");
        assert!(touched <= BUFFERS_MAX, "{touched} buffers: {plan:#}");

        client.batch_execute("BEGIN").await.expect("begin");
        let (touched, plan) = buffers_touched(
            &client,
            &format!(
                "{explain} EXECUTE update_statuses ('m1', '{{t7,t19999,missing}}', \
                 '{{rolled_back,voided,posted}}')"
            ),
        )
        .await;
        assert!(touched <= BUFFERS_MAX, "{touched} buffers: {plan:#}");
        let statuses: Vec<(String, String)> = client
            .query(
                "SELECT txn_id, status FROM ledger_entries WHERE status <> 'posted' ORDER BY txn_id",
                &[],
            )
            .await
            .expect("statuses")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        assert_eq!(
            statuses,
            [
                ("t19999".to_string(), "voided".to_string()),
                ("t7".to_string(), "rolled_back".to_string())
            ]
        );
        client.batch_execute("ROLLBACK").await.expect("rollback");
        let replanned: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM pg_prepared_statements WHERE custom_plans > 0 OR generic_plans = 0",
                &[],
            )
            .await
            .expect("plan counts")
            .get(0);
        assert_eq!(
            replanned, 0,
            "only the plans made on the empty journal may run"
        );
    }
}
