-- The journal after ADR 12.
--
-- 1. No foreign-key triggers on the journal. Its references are checked by the ledger
--    engine: every account an entry or transfer names was loaded and locked (SELECT … FOR
--    UPDATE) in the transaction that writes the row, accounts are never deleted, and
--    `kassa ledger verify` counts any row that names a missing account, entry or merchant.
--    The triggers took more than half of the wallet writer's INSERT time, and their cached
--    plans, made while the tables were small, kept scanning whole tables as they grew.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_merchant_id_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_debit_account_id_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_credit_account_id_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_hold_account_id_fkey;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_subject_account_id_fkey;
ALTER TABLE ledger_transfers DROP CONSTRAINT ledger_transfers_debit_account_id_fkey;
ALTER TABLE ledger_transfers DROP CONSTRAINT ledger_transfers_credit_account_id_fkey;
ALTER TABLE ledger_transfers DROP CONSTRAINT ledger_transfers_merchant_id_txn_id_fkey;

-- 2. A transfer belongs to its entry by the entry's id, unique with its sequence number.
--    Entry ids grow with time, so this index is written at its end, where the index on
--    (merchant_id, txn_id, seq) it replaces took a random page per transfer. Uniqueness per
--    entry is kept: one entry's transfers cannot be written twice.
ALTER TABLE ledger_transfers ADD COLUMN entry_id BIGINT;
ALTER TABLE ledger_transfers DISABLE TRIGGER ledger_transfers_no_update_or_delete;
UPDATE ledger_transfers t SET entry_id = e.id
    FROM ledger_entries e WHERE e.merchant_id = t.merchant_id AND e.txn_id = t.txn_id;
ALTER TABLE ledger_transfers ENABLE TRIGGER ledger_transfers_no_update_or_delete;
ALTER TABLE ledger_transfers ALTER COLUMN entry_id SET NOT NULL;
ALTER TABLE ledger_transfers ADD CONSTRAINT ledger_transfers_entry_id_seq_key UNIQUE (entry_id, seq);
ALTER TABLE ledger_transfers DROP CONSTRAINT ledger_transfers_merchant_id_txn_id_seq_key;
