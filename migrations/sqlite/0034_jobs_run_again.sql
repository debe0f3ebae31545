-- A coalescing job (ADR 72) asked to run again while it runs: an event that arrived during
-- the run, which the run may not have seen. Completing such a job queues it again at once
-- instead of finishing it.
ALTER TABLE jobs ADD COLUMN run_again INTEGER NOT NULL DEFAULT 0;
