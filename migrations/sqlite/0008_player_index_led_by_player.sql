-- The player index led by merchant_id let PostgreSQL answer `merchant_id = $1 AND txn_id = …`
-- (the wallet writer's entry lookups) by reading every entry of the merchant and filtering
-- txn_id row by row: without table statistics (a fresh database, autovacuum not yet run) both
-- plans cost the same on a nearly empty table, and the cached generic plan kept the scan as
-- the journal grew (ADR 23). Led by player_id, this index can no longer serve a lookup by
-- merchant alone, so the unique (merchant_id, txn_id) key is the only index such a lookup can
-- probe. The player queries (merchant_id AND player_id, by id) use it as before.
DROP INDEX ledger_entries_by_player;
CREATE INDEX ledger_entries_by_player ON ledger_entries (player_id, merchant_id, id);
