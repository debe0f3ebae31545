-- Outbound delivery attempts are purged after webhooks.outbound.attempts_retention_days
-- (issue 18); the purge finds the oldest by time.
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (attempted_at_ms);
