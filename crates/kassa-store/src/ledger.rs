//! The ledger on disk: loading a [`LedgerView`] under row locks, persisting its
//! [`Effects`], player history, and `verify`, which recomputes every balance from the journal.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kassa_core::ledger::{
    Account, AccountId, Effects, Entry, EntryStatus, Floor, LedgerView, Operation, Outcome,
    Request, Transfer,
};
use kassa_core::Currency;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::Row;

use kassa_core::play_limits::{PlayRules, SESSION_BREAK_MS_DEFAULT};

use crate::journal::{entry_from_row, entry_values, JournalValue, ENTRY_COLUMN_LIST, ENTRY_WIDTH};
use crate::play_limits::{decide, gate_over};
use crate::{placeholders, Backend, Conn, Store, StoreError, Tx};

/// The entry statuses that record a call without moving money.
const MOVED_NOTHING: &str =
    "'rejected', 'tombstone', 'original_not_found', 'no_effect', 'limit_refused'";

/// What a batch loads under lock: the accounts, the entries, and the play states stored on
/// the accounts that have one.
type LoadedBatch = (Vec<Account>, Vec<Entry>, Vec<(AccountId, String)>);

/// An entry's row: the merchant, the time, and the entry's own columns.
const ENTRY_INSERT_WIDTH: usize = 2 + ENTRY_WIDTH;
const TRANSFER_INSERT_WIDTH: usize = 9;
/// Rows per multi-row INSERT; keeps parameters far below both backends' limits.
const INSERT_ROWS_MAX: usize = 200;

/// A journal entry with its position in the log and its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// Position in the journal; newer entries have larger ids.
    pub id: i64,
    /// When it was recorded, in ms since the epoch.
    pub created_at_ms: i64,
    /// The entry.
    pub entry: Entry,
}

/// What `kassa ledger verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Accounts whose balance was recomputed.
    pub accounts_checked: u64,
    /// Journal entries looked at.
    pub entries_checked: u64,
    /// Transfers summed.
    pub transfers_checked: u64,
    /// Accounts whose stored balance differs from the journal: (id, stored, recomputed).
    /// The journal's sum is i128: it may lie outside what a balance can hold.
    pub drifted_accounts: Vec<(AccountId, i64, i128)>,
    /// Accounts that may not go negative but are.
    pub negative_accounts: Vec<(AccountId, i64)>,
    /// Currencies whose balances do not sum to zero (money created or destroyed), summed in
    /// i128 so that no number of accounts overflows the sum.
    pub unbalanced_currencies: Vec<(String, i128)>,
    /// Transfers between accounts of another currency than their own.
    pub currency_mismatches: u64,
    /// Entries whose status disagrees with their transfers (moved money but says it did
    /// not, or the other way round).
    pub inconsistent_entries: u64,
    /// Journal rows that name an account, merchant or entry that does not exist. The
    /// ledger engine only writes accounts it has just loaded under lock, so this is zero
    /// unless someone edited the tables by hand; on PostgreSQL the journal has no
    /// foreign-key triggers (ADR 12), so this is where such an edit shows.
    pub orphan_references: u64,
}

impl VerifyReport {
    /// Whether the ledger is sound.
    pub fn is_ok(&self) -> bool {
        self.drifted_accounts.is_empty()
            && self.negative_accounts.is_empty()
            && self.unbalanced_currencies.is_empty()
            && self.currency_mismatches == 0
            && self.inconsistent_entries == 0
            && self.orphan_references == 0
    }

    /// The report as JSON, for the CLI and the admin API.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "ok": self.is_ok(),
            "accounts_checked": self.accounts_checked,
            "entries_checked": self.entries_checked,
            "transfers_checked": self.transfers_checked,
            "drifted_accounts": self.drifted_accounts.iter()
                .map(|(id, stored, recomputed)| json!({"account_id": id, "stored_minor": stored, "recomputed_minor": json_integer(*recomputed)}))
                .collect::<Vec<_>>(),
            "negative_accounts": self.negative_accounts.iter()
                .map(|(id, balance)| json!({"account_id": id, "balance_minor": balance}))
                .collect::<Vec<_>>(),
            "unbalanced_currencies": self.unbalanced_currencies.iter()
                .map(|(currency, total)| json!({"currency": currency, "total_minor": json_integer(*total)}))
                .collect::<Vec<_>>(),
            "currency_mismatches": self.currency_mismatches,
            "inconsistent_entries": self.inconsistent_entries,
            "orphan_references": self.orphan_references,
        })
    }
}

/// A JSON number when it fits i64 (every sane value), its decimal text otherwise: JSON
/// readers commonly lose precision, or fail, past 64 bits.
fn json_integer(value: i128) -> serde_json::Value {
    match i64::try_from(value) {
        Ok(small) => json!(small),
        Err(_) => json!(value.to_string()),
    }
}

/// The accounts and txn ids a batch of requests names, each once and in order.
pub(crate) fn referenced(requests: &[Request]) -> (BTreeSet<AccountId>, BTreeSet<&str>) {
    (
        requests
            .iter()
            .flat_map(|r| r.referenced_accounts())
            .collect(),
        requests
            .iter()
            .flat_map(|r| r.referenced_txn_ids())
            .collect(),
    )
}

pub(crate) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {value:?}"))
}

/// An account from its stored columns; the text ones must name a known currency and floor.
pub(crate) fn parse_account(
    id: AccountId,
    currency: &str,
    balance_minor: i64,
    floor: &str,
) -> Result<Account, StoreError> {
    Ok(Account {
        id,
        currency: Currency::from_code(currency).map_err(|_| corrupt("currency", currency))?,
        balance_minor,
        floor: Floor::parse(floor).ok_or_else(|| corrupt("floor", floor))?,
    })
}

/// An entry's stored operation, status and currency, read back.
pub(crate) fn parse_entry_codes(
    operation: &str,
    status: &str,
    currency: Option<&str>,
) -> Result<(Operation, EntryStatus, Option<Currency>), StoreError> {
    Ok((
        Operation::parse(operation).ok_or_else(|| corrupt("operation", operation))?,
        EntryStatus::parse(status).ok_or_else(|| corrupt("status", status))?,
        currency
            .map(|code| Currency::from_code(code).map_err(|_| corrupt("currency", code)))
            .transpose()?,
    ))
}

fn account_from_row(row: &AnyRow) -> Result<Account, StoreError> {
    let currency: String = row.try_get("currency")?;
    let floor: String = row.try_get("floor")?;
    parse_account(
        row.try_get("id")?,
        &currency,
        row.try_get("balance_minor")?,
        &floor,
    )
}

impl Store {
    /// Applies `requests` of one merchant, in order, inside the transaction open on `conn`
    /// (a [`crate::Tx`] or a [`HeldConnection`](crate::HeldConnection)'s): loads and (on PostgreSQL)
    /// locks what they touch, decides with the pure ledger, and writes the effects. The
    /// caller commits; nothing is visible before that. Play limits are checked with the
    /// store's clock and the default session break; the wallet writer passes its own rules
    /// ([`apply_ledger_requests_with`](Self::apply_ledger_requests_with)).
    pub async fn apply_ledger_requests(
        &self,
        conn: &mut Conn,
        merchant_id: &str,
        requests: &[Request],
    ) -> Result<Vec<Outcome>, StoreError> {
        let rules = PlayRules {
            now_ms: self.clock().now_ms(),
            session_break_ms: SESSION_BREAK_MS_DEFAULT,
        };
        self.apply_ledger_requests_with(conn, merchant_id, requests, rules)
            .await
    }

    /// [`apply_ledger_requests`](Self::apply_ledger_requests) at `rules.now_ms`, the time
    /// its entries are stamped with, with the bets of limited players checked and their
    /// calls counted ([`PlayGate`]) in the same transaction.
    pub async fn apply_ledger_requests_with(
        &self,
        conn: &mut Conn,
        merchant_id: &str,
        requests: &[Request],
        rules: PlayRules,
    ) -> Result<Vec<Outcome>, StoreError> {
        let (account_ids, txn_ids) = referenced(requests);
        let (accounts, entries, play_states) = self
            .load_locked(conn, merchant_id, account_ids, &txn_ids, requests)
            .await?;
        let mut view = LedgerView::new(accounts, entries);
        let mut gate = gate_over(rules, play_states)?;
        let rolled_back = gate.rolled_back_bets(&view, requests);
        if !rolled_back.is_empty() {
            gate.with_bet_times(self.bet_times(conn, merchant_id, &rolled_back).await?);
        }
        let (outcomes, play_changes) = decide(&mut view, gate, requests);
        let effects = view.into_effects();
        let now = rules.now_ms;
        self.write_play_states(conn, &play_changes).await?;
        if self.backend() == Backend::Postgres && fits_one_statement(&effects) {
            write_journal_postgres(conn, merchant_id, &effects, now).await?;
            update_statuses(self, conn, merchant_id, &effects.changed_entries).await?;
            return Ok(outcomes);
        }
        let entry_ids = insert_entries(self, conn, merchant_id, &effects.new_entries, now).await?;
        update_statuses(self, conn, merchant_id, &effects.changed_entries).await?;
        insert_transfers(self, conn, merchant_id, &effects.transfers, &entry_ids, now).await?;
        update_balances(self, conn, &effects.balances).await?;
        Ok(outcomes)
    }

    /// The accounts and entries a batch needs, with every account the entries name locked
    /// (PostgreSQL) before the entries are read for the last time: another node may have
    /// recorded or rolled back one of them since an earlier read, and two rollbacks of one
    /// debit on two nodes must not both move money.
    ///
    /// A batch whose requests name all their accounts (bets, wins) locks them and then reads
    /// its entries: two round trips. A batch that acts on earlier entries (rollbacks, posts,
    /// voids) reads the entries first to learn their accounts, locks everything in one
    /// statement and reads the entries again: three, where locking the request's accounts
    /// first took four (docs/perf-log.md, note 19). SQLite's single writer sees no other writer, so
    /// there one read of the entries is enough.
    async fn load_locked(
        &self,
        conn: &mut Conn,
        merchant_id: &str,
        account_ids: BTreeSet<AccountId>,
        txn_ids: &BTreeSet<&str>,
        requests: &[Request],
    ) -> Result<LoadedBatch, StoreError> {
        let acts_on_entries = requests
            .iter()
            .any(|r| r.referenced_txn_ids().nth(1).is_some());
        let mut accounts = Vec::new();
        let mut play_states = Vec::new();
        let mut locked = BTreeSet::new();
        let mut read_under_locks = false;
        if !acts_on_entries {
            (accounts, play_states) = self.lock_accounts(conn, &account_ids).await?;
            locked.clone_from(&account_ids);
            read_under_locks = true;
        }
        let mut entries = load_entries(self, conn, merchant_id, txn_ids).await?;
        loop {
            let wanted: BTreeSet<AccountId> = account_ids
                .iter()
                .copied()
                .chain(entries.iter().flat_map(|e| e.accounts()))
                .filter(|id| !locked.contains(id))
                .collect();
            // Asked for and missing accounts stay out of the view (the engine refuses a
            // request that names one); they are not asked for again.
            locked.extend(wanted.iter().copied());
            if wanted.is_empty() {
                if read_under_locks || self.backend() == Backend::Sqlite {
                    return Ok((accounts, entries, play_states));
                }
            } else {
                let (more, more_states) = self.lock_accounts(conn, &wanted).await?;
                accounts.extend(more);
                play_states.extend(more_states);
                if self.backend() == Backend::Sqlite {
                    return Ok((accounts, entries, play_states));
                }
            }
            entries = load_entries(self, conn, merchant_id, txn_ids).await?;
            read_under_locks = true;
        }
    }

    /// Balances of `ids`, locked for the rest of the transaction on `conn` (PostgreSQL), for decisions that depend
    /// on them inside the same transaction (how much of a chargeback the player covers).
    pub async fn lock_balances(
        &self,
        conn: &mut Conn,
        ids: &[AccountId],
    ) -> Result<HashMap<AccountId, i64>, StoreError> {
        let ids: BTreeSet<AccountId> = ids.iter().copied().collect();
        Ok(self
            .lock_accounts(conn, &ids)
            .await?
            .0
            .into_iter()
            .map(|a| (a.id, a.balance_minor))
            .collect())
    }

    /// The accounts `ids`, locked, and the play states stored on those that have one.
    async fn lock_accounts(
        &self,
        conn: &mut Conn,
        ids: &BTreeSet<AccountId>,
    ) -> Result<(Vec<Account>, Vec<(AccountId, String)>), StoreError> {
        if ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        // Ordered by id so that concurrent batches lock in the same order and cannot deadlock.
        let sql = format!(
            "SELECT id, currency, balance_minor, floor, play_state FROM ledger_accounts \
             WHERE id IN ({}) ORDER BY id{}",
            self.params(1, ids.len()),
            self.lock_clause()
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&mut *conn).await?;
        let mut accounts = Vec::with_capacity(rows.len());
        let mut play_states = Vec::new();
        for row in &rows {
            let account = account_from_row(row)?;
            if let Some(state) = row.try_get::<Option<String>, _>("play_state")? {
                play_states.push((account.id, state));
            }
            accounts.push(account);
        }
        Ok((accounts, play_states))
    }

    /// Current balances of accounts, by id.
    pub async fn balances(&self, ids: &[AccountId]) -> Result<HashMap<AccountId, i64>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT id, balance_minor FROM ledger_accounts WHERE id IN ({})",
            self.params(1, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(self.reader()).await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("balance_minor")?)))
            .collect()
    }

    /// One entry by txn id.
    pub async fn get_entry(
        &self,
        merchant_id: &str,
        txn_id: &str,
    ) -> Result<Option<Entry>, StoreError> {
        let sql = format!(
            "SELECT {} FROM ledger_entries WHERE merchant_id = $1 AND txn_id = $2",
            *ENTRY_COLUMN_LIST
        );
        let row = sqlx::query(&sql)
            .bind(merchant_id)
            .bind(txn_id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(|row| entry_from_row(row, 0)).transpose()
    }

    /// A player's journal, newest first, starting below `before_id` (the cursor), at most
    /// `limit` entries. Tombstones are bookkeeping, not history, and are left out.
    pub async fn player_entries(
        &self,
        merchant_id: &str,
        player_id: &str,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let sql = format!(
            "SELECT id, created_at_ms, {} FROM ledger_entries \
             WHERE merchant_id = $1 AND player_id = $2 AND id < $3 AND status <> 'tombstone' \
             ORDER BY id DESC LIMIT $4",
            *ENTRY_COLUMN_LIST
        );
        let rows = sqlx::query(&sql)
            .bind(merchant_id)
            .bind(player_id)
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredEntry {
                    id: row.try_get("id")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                    entry: entry_from_row(row, 2)?,
                })
            })
            .collect()
    }

    /// Recomputes every balance from the journal and checks the ledger's invariants.
    /// Runs in one read transaction so that it sees a single consistent snapshot: on
    /// PostgreSQL at `REPEATABLE READ`, since at the default `READ COMMITTED` each statement
    /// has a snapshot of its own, and a money movement committed between reading the balances
    /// and summing the journal was reported as drift. SQLite's read transaction is one
    /// snapshot already.
    pub async fn verify_ledger(&self) -> Result<VerifyReport, StoreError> {
        let mut tx = match self.backend() {
            Backend::Postgres => {
                self.reader()
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
            Backend::Sqlite => self.reader().begin().await?,
        };
        let mut report = VerifyReport::default();
        let accounts: Vec<Account> = sqlx::query(
            "SELECT id, currency, balance_minor, floor FROM ledger_accounts ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(account_from_row)
        .collect::<Result<_, _>>()?;
        let recomputed = sum_transfers_per_account(&mut tx, &mut report).await?;
        let mut currency_totals: BTreeMap<String, i128> = BTreeMap::new();
        for account in &accounts {
            let expected = recomputed.get(&account.id).copied().unwrap_or(0);
            if expected != i128::from(account.balance_minor) {
                report
                    .drifted_accounts
                    .push((account.id, account.balance_minor, expected));
            }
            if account.floor == Floor::NonNegative && account.balance_minor < 0 {
                report
                    .negative_accounts
                    .push((account.id, account.balance_minor));
            }
            *currency_totals
                .entry(account.currency.code().to_string())
                .or_default() += i128::from(account.balance_minor);
        }
        report.accounts_checked = accounts.len() as u64;
        report.unbalanced_currencies = currency_totals
            .into_iter()
            .filter(|(_, t)| *t != 0)
            .collect();
        report.currency_mismatches = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM ledger_transfers t \
             JOIN ledger_accounts d ON d.id = t.debit_account_id \
             JOIN ledger_accounts c ON c.id = t.credit_account_id \
             WHERE d.currency <> t.currency OR c.currency <> t.currency",
        )
        .fetch_one(&mut *tx)
        .await? as u64;
        report.entries_checked = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM ledger_entries")
            .fetch_one(&mut *tx)
            .await? as u64;
        report.inconsistent_entries = sqlx::query_scalar::<_, i64>(&format!(
            "SELECT COUNT(*) FROM ledger_entries e WHERE \
             (e.status IN ({MOVED_NOTHING}) AND EXISTS \
               (SELECT 1 FROM ledger_transfers t WHERE t.entry_id = e.id)) \
             OR (e.status NOT IN ({MOVED_NOTHING}) AND NOT EXISTS \
               (SELECT 1 FROM ledger_transfers t WHERE t.entry_id = e.id))"
        ))
        .fetch_one(&mut *tx)
        .await? as u64;
        report.orphan_references = count_orphan_references(&mut tx).await?;
        tx.rollback().await?;
        Ok(report)
    }
}

/// Splits each amount at this power of two so that both halves' sums fit a BIGINT: the high
/// halves are below 2^31 each, the low ones below 2^32, so up to 2^31 transfers per account
/// sum without overflow on either backend, where `SUM(amount_minor)` overflows (an error on
/// SQLite, `bigint out of range` on PostgreSQL) once an account's credits pass i64::MAX.
const SUM_SPLIT: i64 = 1 << 32;

/// Each account's credits minus debits over the whole journal, in i128 (ADR 21).
async fn sum_transfers_per_account(
    tx: &mut Tx,
    report: &mut VerifyReport,
) -> Result<HashMap<AccountId, i128>, StoreError> {
    let mut recomputed: HashMap<AccountId, i128> = HashMap::new();
    for (column, sign) in [("credit_account_id", 1i128), ("debit_account_id", -1i128)] {
        // Amounts are positive, so `/` and `%` agree on both backends.
        let sql = format!(
            "SELECT {column} AS account_id, \
             CAST(SUM(amount_minor / {SUM_SPLIT}) AS BIGINT) AS high_sum, \
             CAST(SUM(amount_minor % {SUM_SPLIT}) AS BIGINT) AS low_sum, \
             COUNT(*) AS transfers FROM ledger_transfers GROUP BY {column}"
        );
        for row in sqlx::query(&sql).fetch_all(&mut **tx).await? {
            let id: i64 = row.try_get("account_id")?;
            let high: i64 = row.try_get("high_sum")?;
            let low: i64 = row.try_get("low_sum")?;
            let count: i64 = row.try_get("transfers")?;
            let total = i128::from(high) * i128::from(SUM_SPLIT) + i128::from(low);
            *recomputed.entry(id).or_default() += sign * total;
            if sign > 0 {
                report.transfers_checked += count as u64;
            }
        }
    }
    Ok(recomputed)
}

/// Transfers and entries naming something that does not exist: an account, the entry a
/// transfer belongs to, the merchant of an entry.
async fn count_orphan_references(tx: &mut Tx) -> Result<u64, StoreError> {
    let missing_account = |column: &str, table: &str| {
        format!(
            "({table}.{column} IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM ledger_accounts a WHERE a.id = {table}.{column}))"
        )
    };
    let transfers = format!(
        "SELECT COUNT(*) FROM ledger_transfers t WHERE {} OR {} OR NOT EXISTS \
         (SELECT 1 FROM ledger_entries e WHERE e.id = t.entry_id \
         AND e.merchant_id = t.merchant_id AND e.txn_id = t.txn_id)",
        missing_account("debit_account_id", "t"),
        missing_account("credit_account_id", "t"),
    );
    let entries = format!(
        "SELECT COUNT(*) FROM ledger_entries e WHERE {} OR {} OR {} OR {} OR NOT EXISTS \
         (SELECT 1 FROM merchants m WHERE m.id = e.merchant_id)",
        missing_account("debit_account_id", "e"),
        missing_account("credit_account_id", "e"),
        missing_account("hold_account_id", "e"),
        missing_account("subject_account_id", "e"),
    );
    let mut orphans = 0;
    for sql in [transfers, entries] {
        orphans += sqlx::query_scalar::<_, i64>(&sql)
            .fetch_one(&mut **tx)
            .await? as u64;
    }
    Ok(orphans)
}

async fn load_entries(
    store: &Store,
    conn: &mut Conn,
    merchant_id: &str,
    txn_ids: &BTreeSet<&str>,
) -> Result<Vec<Entry>, StoreError> {
    if txn_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = match store.backend() {
        // One probe of the unique (merchant_id, txn_id) key per txn id: with `txn_id IN
        // (…)` a generic plan made on a nearly empty journal read every entry of the
        // merchant and filtered txn_id row by row, at any size after (ADR 23).
        Backend::Postgres => format!(
            "SELECT {columns} FROM (VALUES {keys}) AS k (wanted_txn_id) \
             CROSS JOIN LATERAL (SELECT {columns} FROM ledger_entries \
             WHERE merchant_id = $1 AND txn_id = k.wanted_txn_id LIMIT 1) AS e",
            columns = *ENTRY_COLUMN_LIST,
            keys = text_rows(2, txn_ids.len()),
        ),
        Backend::Sqlite => format!(
            "SELECT {} FROM ledger_entries WHERE merchant_id = ? AND txn_id IN ({})",
            *ENTRY_COLUMN_LIST,
            store.params(2, txn_ids.len())
        ),
    };
    let mut query = sqlx::query(&sql).bind(merchant_id);
    for id in txn_ids {
        query = query.bind(*id);
    }
    query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| entry_from_row(row, 0))
        .collect()
}

/// Whether a batch's new entries, transfers and balances fit in one statement of
/// [`write_journal_postgres`] (each list within one INSERT chunk).
fn fits_one_statement(effects: &Effects) -> bool {
    !effects.new_entries.is_empty()
        && effects.new_entries.len() <= INSERT_ROWS_MAX
        && effects.transfers.len() <= INSERT_ROWS_MAX
        && effects.balances.len() <= INSERT_ROWS_MAX
}

/// PostgreSQL: the batch's new entries, their transfers (joined to the ids the entries got)
/// and the new balances in one statement of data-modifying CTEs: one round trip where
/// three separate statements took three (docs/perf-log.md, note 19). The status changes of earlier
/// entries could be one more part (they never touch the batch's new rows); folded in, they
/// measured no faster (note 24), so they stay the plain statement both backends share.
async fn write_journal_postgres(
    conn: &mut Conn,
    merchant_id: &str,
    effects: &Effects,
    now: i64,
) -> Result<(), StoreError> {
    let mut next = 1;
    let mut params = |count: usize| {
        let text = placeholders(next, count);
        next += count;
        text
    };
    let merchant = params(1);
    let created = params(1);
    let entry_rows: Vec<String> = effects
        .new_entries
        .iter()
        .map(|_| {
            format!(
                "({merchant}, {created}, {})",
                params(ENTRY_INSERT_WIDTH - 2)
            )
        })
        .collect();
    let mut sql = format!(
        "WITH e AS (INSERT INTO ledger_entries (merchant_id, created_at_ms, {}) \
         VALUES {} RETURNING id, txn_id)",
        *ENTRY_COLUMN_LIST,
        entry_rows.join(", ")
    );
    let mut counted = Vec::new();
    if !effects.transfers.is_empty() {
        let rows: Vec<String> = effects
            .transfers
            .iter()
            .map(|_| format!("({})", params(6)))
            .collect();
        sql.push_str(&format!(
            ", t AS (INSERT INTO ledger_transfers (entry_id, merchant_id, txn_id, seq, \
             debit_account_id, credit_account_id, amount_minor, currency, created_at_ms) \
             SELECT e.id, {merchant}, v.txn_id, v.seq, v.debit_account_id, v.credit_account_id, \
             v.amount_minor, v.currency, {created} \
             FROM (VALUES {}) AS v (txn_id, seq, debit_account_id, credit_account_id, \
             amount_minor, currency) JOIN e ON e.txn_id = v.txn_id RETURNING 1)",
            rows.join(", ")
        ));
        counted.push("(SELECT COUNT(*) FROM t)");
    }
    if !effects.balances.is_empty() {
        let count = effects.balances.len();
        let whens: Vec<String> = (0..count)
            .map(|_| format!("WHEN {} THEN {}", params(1), params(1)))
            .collect();
        let keys = params(count);
        sql.push_str(&format!(
            ", b AS (UPDATE ledger_accounts SET balance_minor = CASE id {} END \
             WHERE id IN ({keys}) RETURNING 1)",
            whens.join(" ")
        ));
        counted.push("(SELECT COUNT(*) FROM b)");
    }
    counted.resize(2, "0");
    sql.push_str(&format!(
        " SELECT CAST({} AS BIGINT) AS transfers, CAST({} AS BIGINT) AS balances",
        counted[0], counted[1]
    ));
    let mut query = sqlx::query(&sql).bind(merchant_id).bind(now);
    for e in &effects.new_entries {
        query = bind_entry_columns(query, e);
    }
    for t in &effects.transfers {
        query = query
            .bind(&t.txn_id)
            .bind(i64::from(t.seq))
            .bind(t.debit)
            .bind(t.credit)
            .bind(t.amount_minor)
            .bind(t.currency.code());
    }
    for account in &effects.balances {
        query = query.bind(account.id).bind(account.balance_minor);
    }
    for account in &effects.balances {
        query = query.bind(account.id);
    }
    let row = query.fetch_one(&mut *conn).await?;
    let transfers: i64 = row.try_get("transfers")?;
    let balances: i64 = row.try_get("balances")?;
    // The engine moves money only under the txn id of an entry it records in the same
    // batch, and only on accounts it loaded under lock.
    if transfers != effects.transfers.len() as i64 || balances != effects.balances.len() as i64 {
        return Err(StoreError::Corrupt(format!(
            "wrote {transfers} of {} transfers and {balances} of {} balances",
            effects.transfers.len(),
            effects.balances.len()
        )));
    }
    Ok(())
}

/// Binds an entry's values in the order of [`ENTRY_COLUMNS`](crate::journal::ENTRY_COLUMNS).
fn bind_entry_columns<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    e: &'q Entry,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for value in entry_values(e) {
        query = match value {
            JournalValue::Text(text) => query.bind(text),
            JournalValue::Int(int) => query.bind(int),
        };
    }
    query
}

/// Writes new entries and answers the id each got, by txn id (the transfers name their
/// entry by id).
async fn insert_entries(
    store: &Store,
    conn: &mut Conn,
    merchant_id: &str,
    entries: &[Entry],
    now: i64,
) -> Result<HashMap<String, i64>, StoreError> {
    let mut ids = HashMap::with_capacity(entries.len());
    for chunk in entries.chunks(INSERT_ROWS_MAX) {
        let sql = format!(
            "INSERT INTO ledger_entries (merchant_id, created_at_ms, {}) VALUES {} \
             RETURNING id, txn_id",
            *ENTRY_COLUMN_LIST,
            store.param_rows(chunk.len(), ENTRY_INSERT_WIDTH)
        );
        let mut query = sqlx::query(&sql);
        for e in chunk {
            query = bind_entry_columns(query.bind(merchant_id).bind(now), e);
        }
        for row in query.fetch_all(&mut *conn).await? {
            ids.insert(row.try_get("txn_id")?, row.try_get("id")?);
        }
    }
    Ok(ids)
}

async fn insert_transfers(
    store: &Store,
    conn: &mut Conn,
    merchant_id: &str,
    transfers: &[Transfer],
    entry_ids: &HashMap<String, i64>,
    now: i64,
) -> Result<(), StoreError> {
    for chunk in transfers.chunks(INSERT_ROWS_MAX) {
        let sql = format!(
            "INSERT INTO ledger_transfers (entry_id, merchant_id, txn_id, seq, debit_account_id, \
             credit_account_id, amount_minor, currency, created_at_ms) VALUES {}",
            store.param_rows(chunk.len(), TRANSFER_INSERT_WIDTH)
        );
        let mut query = sqlx::query(&sql);
        for t in chunk {
            // The engine moves money only under the txn id of an entry it records in the
            // same batch.
            let entry_id = entry_ids.get(&t.txn_id).ok_or_else(|| {
                StoreError::Corrupt(format!("transfer of {:?} without a new entry", t.txn_id))
            })?;
            query = query
                .bind(*entry_id)
                .bind(merchant_id)
                .bind(&t.txn_id)
                .bind(i64::from(t.seq))
                .bind(t.debit)
                .bind(t.credit)
                .bind(t.amount_minor)
                .bind(t.currency.code())
                .bind(now);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `CASE key WHEN … THEN … END` over `count` pairs of parameters from `start`, and the
/// list of the same keys again for the `IN` that picks the rows. The rows are found through
/// the key's index whatever plan the database caches for the prepared statement: a join
/// with a `VALUES` list let PostgreSQL's generic plan scan the whole table, which made
/// every batch cost more as the accounts and the journal grew.
fn case_update(store: &Store, column: &str, count: usize, start: usize) -> (String, String) {
    let whens = (0..count)
        .map(|i| {
            format!(
                "WHEN {} THEN {}",
                store.params(start + 2 * i, 1),
                store.params(start + 2 * i + 1, 1)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    let keys = store.params(start + 2 * count, count);
    (format!("CASE {column} {whens} END"), keys)
}

/// Sets the status of entries a batch changed (originals of rollbacks, reservations), in
/// one statement per chunk instead of one per entry.
async fn update_statuses(
    store: &Store,
    conn: &mut Conn,
    merchant_id: &str,
    entries: &[Entry],
) -> Result<(), StoreError> {
    if store.backend() == Backend::Postgres {
        return update_statuses_postgres(conn, merchant_id, entries).await;
    }
    for chunk in entries.chunks(INSERT_ROWS_MAX) {
        let (case, keys) = case_update(store, "txn_id", chunk.len(), 1);
        let sql = format!(
            "UPDATE ledger_entries SET status = {case} WHERE txn_id IN ({keys}) AND merchant_id = {}",
            store.params(3 * chunk.len() + 1, 1)
        );
        // SQLite binds plain `?` in text order, so the text order is the binding order:
        // the CASE pairs, the keys, then the merchant.
        let mut query = sqlx::query(&sql);
        for entry in chunk {
            query = query.bind(&entry.txn_id).bind(entry.status.as_str());
        }
        for entry in chunk {
            query = query.bind(&entry.txn_id);
        }
        query.bind(merchant_id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// [`update_statuses`] on PostgreSQL: each entry found by one probe of the unique
/// (merchant_id, txn_id) key, as [`load_entries`] finds it, then updated by its id.
async fn update_statuses_postgres(
    conn: &mut Conn,
    merchant_id: &str,
    entries: &[Entry],
) -> Result<(), StoreError> {
    for chunk in entries.chunks(INSERT_ROWS_MAX) {
        let sql = format!(
            "UPDATE ledger_entries e SET status = v.status \
             FROM (VALUES {}) AS v (wanted_txn_id, status) \
             CROSS JOIN LATERAL (SELECT x.id FROM ledger_entries x \
             WHERE x.merchant_id = $1 AND x.txn_id = v.wanted_txn_id LIMIT 1) AS f \
             WHERE e.id = f.id",
            text_rows_of_two(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(merchant_id);
        for entry in chunk {
            query = query.bind(&entry.txn_id).bind(entry.status.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `($2::text), ($3::text)`: `count` one-column rows of text parameters from `$start`.
fn text_rows(start: usize, count: usize) -> String {
    (start..start + count)
        .map(|i| format!("(${i}::text)"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($2::text, $3::text), …`: `count` two-column rows of text parameters from `$start`.
fn text_rows_of_two(start: usize, count: usize) -> String {
    (0..count)
        .map(|row| {
            let first = start + 2 * row;
            format!("(${first}::text, ${}::text)", first + 1)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn update_balances(
    store: &Store,
    conn: &mut Conn,
    accounts: &[Account],
) -> Result<(), StoreError> {
    for chunk in accounts.chunks(INSERT_ROWS_MAX) {
        if chunk.is_empty() {
            continue;
        }
        let (case, keys) = case_update(store, "id", chunk.len(), 1);
        let sql = format!("UPDATE ledger_accounts SET balance_minor = {case} WHERE id IN ({keys})");
        let mut query = sqlx::query(&sql);
        for account in chunk {
            query = query.bind(account.id).bind(account.balance_minor);
        }
        for account in chunk {
            query = query.bind(account.id);
        }
        let updated = query.execute(&mut *conn).await?;
        if updated.rows_affected() != chunk.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "updated {} of {} balances",
                updated.rows_affected(),
                chunk.len()
            )));
        }
    }
    Ok(())
}
