//! The event stream (issue 18, item 8; ADR 51): every outbox event is published to NATS
//! JetStream on `<prefix>.<merchant>.<event type>` with its event id as `Nats-Msg-Id`.
//!
//! It runs as the recurring `events.stream` job, apart from the webhook publisher and with a
//! progress marker of its own (`outbox.streamed_at_ms`), so a NATS outage holds back only
//! the stream. A batch is read without a transaction, published with its acknowledgements
//! awaited together, and marked streamed once JetStream acknowledged it. A node that dies
//! between the acknowledgement and the mark, or loses its lease mid-batch, leaves the batch
//! to be published again: JetStream drops each repeat by its message id within the stream's
//! duplicate window, so every event is in the stream exactly once.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, stream};
use kassa_store::payments::OutboxEvent;
use kassa_store::{now_ms, Store};
use tokio::sync::Mutex;

use crate::config::EventsStreamConfig;
use crate::workers::kinds::JobError;
use crate::workers::webhook_delivery::delivery_body;

/// Recurring: publishes new outbox events to the event stream (only where it is on).
pub const EVENTS_STREAM: &str = "events.stream";

/// Batches one run publishes at most, so a large backlog (the history, when the stream is
/// turned on) does not hold the job for long; the next run continues.
const BATCHES_PER_RUN_MAX: usize = 20;

/// Longest a connection attempt to NATS takes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The publisher of one node: its JetStream context, made on first use (so a node starts
/// while NATS is down; the job fails and is tried again until NATS answers), and made again
/// after a failed batch (the stream may have been deleted, or NATS restarted without it).
pub struct EventStream {
    config: EventsStreamConfig,
    context: Mutex<Option<jetstream::Context>>,
}

/// Why a batch did not reach the stream; it stays unstreamed and is tried again.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("cannot create or read the stream {stream:?}: {error}")]
    Stream { stream: String, error: String },
    #[error("JetStream did not acknowledge event {event_id}: {error}")]
    Publish { event_id: String, error: String },
    #[error("JetStream's acknowledgements did not come within {0} ms")]
    Timeout(u64),
}

impl From<StreamError> for JobError {
    fn from(error: StreamError) -> JobError {
        JobError::Service {
            code: "event_stream_unavailable",
            message: error.to_string(),
        }
    }
}

impl EventStream {
    /// The publisher for `[events_stream]`, or `None` when the stream is off.
    pub fn from_config(config: &EventsStreamConfig) -> Option<EventStream> {
        config.enabled().then(|| EventStream {
            config: config.clone(),
            context: Mutex::new(None),
        })
    }

    /// The subject of `event`: `<prefix>.<merchant>.<event type>`. Characters a subject
    /// token cannot hold become `_` (ids and types are Kassa's own; this only guards them).
    pub fn subject(&self, event: &OutboxEvent) -> String {
        let merchant = subject_token(&event.merchant_id);
        let topic: Vec<String> = event.topic.split('.').map(subject_token).collect();
        format!(
            "{}.{merchant}.{}",
            self.config.subject_prefix,
            topic.join(".")
        )
    }

    /// The context, connecting and making sure the stream exists when there is none yet.
    async fn context(&self) -> Result<jetstream::Context, StreamError> {
        let mut slot = self.context.lock().await;
        if let Some(context) = slot.as_ref() {
            return Ok(context.clone());
        }
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .name("kassa")
            .connect(self.config.nats_url.as_str())
            .await
            .map_err(|e| StreamError::Connect(e.to_string()))?;
        let mut context = jetstream::new(client);
        context.set_timeout(Duration::from_millis(self.config.publish_timeout_ms));
        ensure_stream(&context, &self.config).await?;
        Ok(slot.insert(context).clone())
    }

    /// Publishes one batch of at most `batch_max` unstreamed events and marks the
    /// acknowledged ones; returns how many were read.
    async fn publish_batch(&self, store: &Store) -> Result<usize, JobError> {
        // Connected (and the stream ensured) from the first run on, events or not, so a
        // stream that cannot be reached shows in the job's error before traffic needs it.
        let context = self.context().await?;
        let events = store.unstreamed_outbox(self.config.batch_max).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let acknowledged = self.publish_acknowledged(&context, &events).await;
        if acknowledged.error.is_some() {
            // Ensure the stream again on the next run.
            *self.context.lock().await = None;
        }
        let ids: Vec<i64> = events[..acknowledged.count].iter().map(|e| e.id).collect();
        store.mark_outbox_streamed(&ids, now_ms()).await?;
        if acknowledged.duplicates > 0 {
            tracing::info!(
                duplicates = acknowledged.duplicates,
                "events published again were dropped by JetStream as duplicates"
            );
        }
        match acknowledged.error {
            Some(error) => Err(error.into()),
            None => Ok(events.len()),
        }
    }

    /// Sends every event of the batch before awaiting any acknowledgement (one round trip
    /// for the batch), then awaits them in order: the events before the first failure are in
    /// the stream.
    async fn publish_acknowledged(
        &self,
        context: &jetstream::Context,
        events: &[OutboxEvent],
    ) -> Acknowledged {
        let mut acknowledged = Acknowledged::default();
        let mut pending: Vec<PublishAckFuture> = Vec::with_capacity(events.len());
        for event in events {
            match context
                .send_publish(self.subject(event), message(event))
                .await
            {
                Ok(ack) => pending.push(ack),
                Err(error) => {
                    acknowledged.error = Some(publish_error(event, error));
                    break;
                }
            }
        }
        let timeout = Duration::from_millis(self.config.publish_timeout_ms);
        for (event, ack) in events.iter().zip(pending) {
            match tokio::time::timeout(timeout, ack).await {
                Ok(Ok(ack)) => {
                    acknowledged.count += 1;
                    acknowledged.duplicates += usize::from(ack.duplicate);
                }
                Ok(Err(error)) => {
                    acknowledged.error = Some(publish_error(event, error));
                    break;
                }
                Err(_) => {
                    acknowledged.error = Some(StreamError::Timeout(self.config.publish_timeout_ms));
                    break;
                }
            }
        }
        acknowledged
    }
}

/// What came back for a batch: how many of its first events JetStream acknowledged (of
/// which how many it had already), and the failure that stopped the rest, if any.
#[derive(Default)]
struct Acknowledged {
    count: usize,
    duplicates: usize,
    error: Option<StreamError>,
}

fn publish_error(event: &OutboxEvent, error: impl std::fmt::Display) -> StreamError {
    StreamError::Publish {
        event_id: event.event_id.clone(),
        error: error.to_string(),
    }
}

/// The message of one event: the webhook body (id, type, timestamp, ordering key, sequence,
/// data), with the event id as `Nats-Msg-Id`, JetStream's dedupe key.
fn message(event: &OutboxEvent) -> jetstream::message::PublishMessage {
    jetstream::message::PublishMessage::build()
        .message_id(event.event_id.as_str())
        .payload(delivery_body(event).into())
}

/// `text` as one subject token: no separators, wildcards or whitespace, never empty.
fn subject_token(text: &str) -> String {
    let token: String = text
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect();
    if token.is_empty() {
        "_".to_string()
    } else {
        token
    }
}

/// Creates the stream if missing (subjects `<prefix>.>`, file storage, the configured
/// duplicate window); an existing stream gets the configured window, its other settings
/// are the operator's.
async fn ensure_stream(
    context: &jetstream::Context,
    config: &EventsStreamConfig,
) -> Result<(), StreamError> {
    let failed = |error: String| StreamError::Stream {
        stream: config.stream_name.clone(),
        error,
    };
    let duplicate_window = Duration::from_millis(config.duplicate_window_ms);
    let mut stream = context
        .get_or_create_stream(stream::Config {
            name: config.stream_name.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            storage: stream::StorageType::File,
            duplicate_window,
            ..Default::default()
        })
        .await
        .map_err(|e| failed(e.to_string()))?;
    let info = stream.info().await.map_err(|e| failed(e.to_string()))?;
    if info.config.duplicate_window != duplicate_window {
        let mut updated = info.config.clone();
        updated.duplicate_window = duplicate_window;
        context
            .update_stream(updated)
            .await
            .map_err(|e| failed(e.to_string()))?;
    }
    tracing::info!(stream = %config.stream_name, "event stream ready");
    Ok(())
}

/// Runs one `events.stream` job: publishes until the outbox has nothing unstreamed or
/// [`BATCHES_PER_RUN_MAX`] batches went out.
pub async fn run(store: &Store, stream: Option<&EventStream>) -> Result<(), JobError> {
    let Some(stream) = stream else {
        // Queued by a node with the stream on; this node has none. Nothing to do here.
        return Ok(());
    };
    let mut total = 0;
    for _ in 0..BATCHES_PER_RUN_MAX {
        let published = stream.publish_batch(store).await?;
        total += published;
        if published < stream.config.batch_max as usize {
            break;
        }
    }
    if total > 0 {
        tracing::debug!(count = total, "outbox events published to the event stream");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(merchant_id: &str, topic: &str) -> OutboxEvent {
        OutboxEvent {
            id: 1,
            merchant_id: merchant_id.to_string(),
            event_id: "evt_1".to_string(),
            topic: topic.to_string(),
            aggregate_id: "pay_1".to_string(),
            payload: "{}".to_string(),
            created_at_ms: 0,
        }
    }

    fn stream() -> EventStream {
        let mut config = crate::Config::defaults().events_stream;
        config.nats_url = "nats://127.0.0.1:4222".to_string();
        EventStream::from_config(&config).expect("on with a URL")
    }

    #[test]
    fn subjects_are_prefix_merchant_and_type() {
        let stream = stream();
        assert_eq!(
            stream.subject(&event("mer_demo", "payment.captured")),
            "kassa.mer_demo.payment.captured"
        );
        assert_eq!(
            stream.subject(&event("mer.a b*", "payout.>")),
            "kassa.mer_a_b_.payout._",
            "separators and wildcards cannot reach the subject"
        );
        assert_eq!(stream.subject(&event("", "x..y")), "kassa._.x._.y");
    }

    #[test]
    fn the_stream_is_off_by_default() {
        assert!(EventStream::from_config(&crate::Config::defaults().events_stream).is_none());
    }
}

/// Helpers for tests that need the NATS server (this crate's and the binary's).
pub mod testing {
    use std::collections::HashMap;

    use async_nats::jetstream;

    /// Where the tests' NATS server listens (JetStream on; `.ci/run` starts it).
    pub const TEST_NATS_URL: &str = "nats://127.0.0.1:4222";

    /// The test NATS server's URL when it answers. When it does not, the test says it was
    /// skipped and gets `None`, and under `CI=true` it fails instead: CI must run it.
    pub async fn nats_url_or_skip(test: &str) -> Option<String> {
        let reachable = tokio::net::TcpStream::connect("127.0.0.1:4222")
            .await
            .is_ok();
        if reachable {
            return Some(TEST_NATS_URL.to_string());
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no NATS server answers at {TEST_NATS_URL} (.ci/run starts one)"
        );
        eprintln!("skipped {test}: no NATS server at {TEST_NATS_URL}");
        None
    }

    /// A stream name and subject prefix no other test uses.
    pub fn unique_stream() -> (String, String) {
        let id = kassa_core::ids::generate("t").to_lowercase();
        (format!("KASSA_TEST_{id}"), format!("kassa_test_{id}"))
    }

    /// One message of a stream: its subject, `Nats-Msg-Id` and body.
    #[derive(Clone, Debug)]
    pub struct StreamedMessage {
        pub subject: String,
        pub message_id: String,
        pub body: serde_json::Value,
    }

    /// Every message in `stream`, in stream order, read one by one by sequence.
    pub async fn stream_messages(url: &str, stream: &str) -> anyhow::Result<Vec<StreamedMessage>> {
        let context = jetstream::new(async_nats::connect(url).await?);
        let mut stream = context.get_stream(stream).await?;
        let state = stream.info().await?.state.clone();
        let mut messages = Vec::new();
        if state.messages == 0 {
            return Ok(messages);
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let message = stream.get_raw_message(sequence).await?;
            let message_id = message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.to_string())
                .unwrap_or_default();
            messages.push(StreamedMessage {
                subject: message.subject.to_string(),
                message_id,
                body: serde_json::from_slice(&message.payload)?,
            });
        }
        Ok(messages)
    }

    /// How many times each `Nats-Msg-Id` is in the stream.
    pub fn count_by_message_id(messages: &[StreamedMessage]) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for message in messages {
            *counts.entry(message.message_id.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Deletes a test's stream (its messages go with it).
    pub async fn delete_stream(url: &str, stream: &str) -> anyhow::Result<()> {
        let context = jetstream::new(async_nats::connect(url).await?);
        context.delete_stream(stream).await?;
        Ok(())
    }
}
