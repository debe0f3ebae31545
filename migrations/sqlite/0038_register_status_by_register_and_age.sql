-- The daily register recheck (issue 19, docs/registers.md "The recheck job") reads the
-- players of one register whose latest answer is older than `recheck_hours`, oldest first,
-- in batches continued after the last (checked_at_ms, merchant_id, player_id) read: this
-- index serves that range and order, so a sweep reads stale rows only, never the whole table.
CREATE INDEX player_register_status_by_age ON player_register_status
    (register, checked_at_ms, merchant_id, player_id);
