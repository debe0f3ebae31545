-- A transfer belongs to its entry by the entry's id, unique with its sequence number
-- (ADR 12). Entry ids grow with time, so this index is written at its end, where the index
-- on (merchant_id, txn_id, seq) it replaces took a random page per transfer, and each
-- commit wrote those pages into the WAL in full. Uniqueness per entry is kept: one entry's
-- transfers cannot be written twice. SQLite cannot drop a table constraint, so the table is
-- rebuilt; its rows keep their ids, and the append-only triggers are made again.
CREATE TABLE ledger_transfers_by_entry (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id INTEGER NOT NULL REFERENCES ledger_entries (id),
    merchant_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    debit_account_id INTEGER NOT NULL REFERENCES ledger_accounts (id),
    credit_account_id INTEGER NOT NULL REFERENCES ledger_accounts (id),
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    CHECK (debit_account_id <> credit_account_id),
    UNIQUE (entry_id, seq)
);
INSERT INTO ledger_transfers_by_entry (id, entry_id, merchant_id, txn_id, seq,
    debit_account_id, credit_account_id, amount_minor, currency, created_at_ms)
SELECT t.id, e.id, t.merchant_id, t.txn_id, t.seq, t.debit_account_id, t.credit_account_id,
    t.amount_minor, t.currency, t.created_at_ms
FROM ledger_transfers t
JOIN ledger_entries e ON e.merchant_id = t.merchant_id AND e.txn_id = t.txn_id
ORDER BY t.id;
DROP TABLE ledger_transfers;
ALTER TABLE ledger_transfers_by_entry RENAME TO ledger_transfers;

-- The journal is append-only: history is corrected by new entries, never by edits.
CREATE TRIGGER ledger_transfers_no_update BEFORE UPDATE ON ledger_transfers
BEGIN
    SELECT RAISE(ABORT, 'ledger_transfers is append-only');
END;
CREATE TRIGGER ledger_transfers_no_delete BEFORE DELETE ON ledger_transfers
BEGIN
    SELECT RAISE(ABORT, 'ledger_transfers is append-only');
END;
