-- A decision's explanation and features are compressed with LZ4 rather than pglz where the
-- server has it (PostgreSQL 14 or later built with LZ4), and kept out of the table's own
-- pages (ADR 92). With 200 rules a decision is ~13 KB of JSON, compressed on every start's
-- insert: LZ4 took that insert from ~100 to ~40 µs. Kept out of line, a row in the table is
-- ~220 bytes instead of ~820, so the velocity count, which reads ~10 narrow columns of
-- hundreds of rows per decision, visits a quarter of the pages (perf-log note 50). Rows
-- stored before keep their values as they are; both read alike. A server without LZ4 keeps
-- pglz.
ALTER TABLE risk_decisions SET (toast_tuple_target = 256);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE risk_decisions ALTER COLUMN decision SET COMPRESSION lz4;
        ALTER TABLE risk_decisions ALTER COLUMN features SET COMPRESSION lz4;
    END IF;
END
$$;
