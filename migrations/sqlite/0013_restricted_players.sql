-- Each node keeps the players who may not bet (account_status other than 'active') in memory
-- and reads them again at most once a second (ADR 41), instead of reading one player per bet.
-- That read names the restricted statuses (`account_status IN (…) AND account_status <>
-- 'active'`, the same statement as on PostgreSQL) and uses this small partial index. The list
-- is complete only if no other name can be stored: SQLite cannot add a CHECK to an existing
-- table, so triggers refuse any other name.
CREATE INDEX players_restricted ON players (account_status) WHERE account_status <> 'active';
CREATE TRIGGER players_account_status_known_on_insert
    BEFORE INSERT ON players
    WHEN NEW.account_status NOT IN ('active', 'self_excluded', 'blocked')
BEGIN
    SELECT RAISE(ABORT, 'account_status is not a known status');
END;
CREATE TRIGGER players_account_status_known_on_update
    BEFORE UPDATE OF account_status ON players
    WHEN NEW.account_status NOT IN ('active', 'self_excluded', 'blocked')
BEGIN
    SELECT RAISE(ABORT, 'account_status is not a known status');
END;
