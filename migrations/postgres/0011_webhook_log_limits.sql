-- Unverifiable webhook deliveries (bad or missing signature, unknown provider) are counted
-- per provider and minute; only the first few of a minute, then a sample, are stored in
-- webhook_deliveries, as a bounded excerpt. Rows older than the delivery log's retention
-- are purged with it.
CREATE TABLE webhook_unverified_counts (
    provider TEXT NOT NULL,
    -- Start of the minute, milliseconds since the Unix epoch.
    minute_ms BIGINT NOT NULL,
    deliveries BIGINT NOT NULL CHECK (deliveries >= 1),
    PRIMARY KEY (provider, minute_ms)
);
CREATE INDEX webhook_unverified_counts_by_minute ON webhook_unverified_counts (minute_ms);
