-- The event stream (issue 18, item 8; ADR 51): outbox events are also published to NATS
-- JetStream when `[events_stream]` is configured. Its progress is its own marker, apart from
-- published_at_ms (which says the webhook deliveries were queued), so that a NATS outage does
-- not hold back webhooks and a failing webhook endpoint does not hold back the stream.
-- streamed_at_ms: when JetStream acknowledged the event; NULL while it waits (and always, on
--   a deployment that does not stream: turning the stream on later streams the history).
ALTER TABLE outbox ADD COLUMN streamed_at_ms BIGINT;
CREATE INDEX outbox_unstreamed ON outbox (id) WHERE streamed_at_ms IS NULL;
