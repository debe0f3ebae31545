-- One job queue for background work of every node (ADR 24): payout sending, status sync,
-- the outbox's consumer, later webhook delivery and reconciliation. A node claims due jobs
-- by setting a lease (owner + lease_until_ms); a killed node's lease runs out and another
-- node takes the job over. Times are milliseconds since the Unix epoch.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    -- Input of the job's handler, as JSON text.
    payload TEXT NOT NULL,
    -- At most one unfinished job per (kind, dedupe_key): the same payout is never queued
    -- twice, a recurring kind exists once across nodes.
    dedupe_key TEXT,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
    -- Runs started so far (a claim counts one), and the most allowed before it is dead.
    attempts BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    attempts_max BIGINT NOT NULL CHECK (attempts_max >= 1),
    -- When the next run may start.
    run_at_ms BIGINT NOT NULL,
    -- Set for a recurring job: after a success it is queued again this much later.
    repeat_every_ms BIGINT CHECK (repeat_every_ms IS NULL OR repeat_every_ms >= 1),
    lease_owner TEXT,
    lease_until_ms BIGINT,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_until_ms IS NOT NULL))
);
CREATE UNIQUE INDEX jobs_unfinished_dedupe ON jobs (kind, dedupe_key)
    WHERE state IN ('queued', 'running');
CREATE INDEX jobs_due ON jobs (state, run_at_ms);
CREATE INDEX jobs_leases ON jobs (state, lease_until_ms);
CREATE INDEX jobs_by_created ON jobs (created_at_ms, id);
