-- Each node keeps the players who may not bet (account_status other than 'active') in memory
-- and reads them again at most once a second (ADR 41), instead of reading one player per bet.
-- That read names the restricted statuses (`account_status IN (…) AND account_status <>
-- 'active'`): an equality list is what lets PostgreSQL pick this small partial index on a
-- fresh database without statistics, where `<> 'active'` alone is estimated to match almost
-- every row and scans the table. The list is complete only if no other name can be stored,
-- hence the CHECK: a status Kassa does not know must fail loudly, not pass as active.
ALTER TABLE players ADD CONSTRAINT players_account_status_known
    CHECK (account_status IN ('active', 'self_excluded', 'blocked'));
CREATE INDEX players_restricted ON players (account_status) WHERE account_status <> 'active';
