//! The inbound delivery log: every delivery a provider's inbound source handed to the
//! provider-event pipeline, whatever became of it, with the exact bytes it carried; searched
//! by the admin API, and the dead-letter queue replays read from (ADR 45).

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Store, StoreError};

/// One inbound delivery as received, for the delivery log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: String,
    pub provider: String,
    /// The inbound source it came through: `http` (webhooks) today.
    pub source: String,
    /// The peer address it came from, when the source has one.
    pub source_address: Option<String>,
    pub event_id: Option<String>,
    pub payment_id: Option<String>,
    pub payout_id: Option<String>,
    /// JSON object of the headers, secrets removed (the provider's signature stays: a replay
    /// checks it again).
    pub headers: String,
    /// The body exactly as received (an excerpt for an unverifiable delivery); binary-safe.
    pub raw_body: Vec<u8>,
    /// `processed`, `duplicate`, `ignored`, `dead_lettered`, `ip_refused`,
    /// `invalid_signature`, `stale`, `malformed`, `unknown_payment`, `mismatch`, …
    pub outcome: String,
    pub http_status: u16,
    pub received_at_ms: i64,
    /// A replay: the delivery it ran again.
    pub replay_of: Option<String>,
    /// A replay: the admin key that asked for it.
    pub replayed_by: Option<String>,
    /// A dead-lettered delivery: the replay that settled it.
    pub resolved_by: Option<String>,
}

/// Which deliveries a search or a bulk replay takes; `None` matches anything.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub payment_id: Option<String>,
    pub payout_id: Option<String>,
    pub provider: Option<String>,
    pub event_id: Option<String>,
    pub outcome: Option<String>,
    pub source: Option<String>,
    /// Received at or after.
    pub from_ms: Option<i64>,
    /// Received before.
    pub to_ms: Option<i64>,
    /// Only deliveries no replay has settled yet.
    pub unresolved_only: bool,
    /// Only replays of this delivery.
    pub replay_of: Option<String>,
    /// Only deliveries as they arrived, no replays.
    pub originals_only: bool,
    /// A payment's or a payout's (the old endpoint's `payment_id`, which payout events
    /// filled before migration 0015).
    pub subject_id: Option<String>,
}

/// The order of a search.
#[derive(Clone, Debug)]
pub enum DeliveryOrder {
    /// Newest first, after the cursor `(received_at_ms, id)` when given.
    NewestFirst(Option<(i64, String)>),
    /// Oldest first: replays run in the order the provider sent.
    OldestFirst,
}

const COLUMNS: &str = "id, provider, source, source_address, event_id, payment_id, payout_id, \
     headers, raw_body, raw_body_exact, outcome, http_status, received_at_ms, replay_of, \
     replayed_by, resolved_by";

/// A value bound to a search's placeholder.
enum Bound {
    Text(String),
    Int(i64),
}

/// The `WHERE` clause and its values for `filter` (and a cursor), placeholders from `$1`.
fn where_clause(filter: &DeliveryFilter, cursor: Option<&(i64, String)>) -> (String, Vec<Bound>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Bound> = Vec::new();
    let text_filters = [
        ("payment_id", &filter.payment_id),
        ("payout_id", &filter.payout_id),
        ("provider", &filter.provider),
        ("event_id", &filter.event_id),
        ("outcome", &filter.outcome),
        ("source", &filter.source),
        ("replay_of", &filter.replay_of),
    ];
    for (column, value) in text_filters {
        if let Some(value) = value {
            values.push(Bound::Text(value.clone()));
            conditions.push(format!("{column} = ${}", values.len()));
        }
    }
    if let Some(from_ms) = filter.from_ms {
        values.push(Bound::Int(from_ms));
        conditions.push(format!("received_at_ms >= ${}", values.len()));
    }
    if let Some(to_ms) = filter.to_ms {
        values.push(Bound::Int(to_ms));
        conditions.push(format!("received_at_ms < ${}", values.len()));
    }
    if let Some(subject_id) = &filter.subject_id {
        values.push(Bound::Text(subject_id.clone()));
        let n = values.len();
        conditions.push(format!("(payment_id = ${n} OR payout_id = ${n})"));
    }
    if filter.unresolved_only {
        conditions.push("resolved_by IS NULL".into());
    }
    if filter.originals_only {
        conditions.push("replay_of IS NULL".into());
    }
    if let Some((at_ms, id)) = cursor {
        values.push(Bound::Int(*at_ms));
        values.push(Bound::Text(id.clone()));
        let (t, i) = (values.len() - 1, values.len());
        conditions.push(format!(
            "(received_at_ms < ${t} OR (received_at_ms = ${t} AND id < ${i}))"
        ));
    }
    if conditions.is_empty() {
        return (String::new(), values);
    }
    (format!(" WHERE {}", conditions.join(" AND ")), values)
}

fn delivery_from_row(row: &AnyRow) -> Result<WebhookDelivery, StoreError> {
    let status: i64 = row.try_get("http_status")?;
    let exact: Option<Vec<u8>> = row.try_get("raw_body_exact")?;
    // Rows written before migration 0015 kept only a (lossy) text.
    let raw_body = match exact {
        Some(bytes) => bytes,
        None => row.try_get::<String, _>("raw_body")?.into_bytes(),
    };
    Ok(WebhookDelivery {
        id: row.try_get("id")?,
        provider: row.try_get("provider")?,
        source: row.try_get("source")?,
        source_address: row.try_get("source_address")?,
        event_id: row.try_get("event_id")?,
        payment_id: row.try_get("payment_id")?,
        payout_id: row.try_get("payout_id")?,
        headers: row.try_get("headers")?,
        raw_body,
        outcome: row.try_get("outcome")?,
        http_status: u16::try_from(status).unwrap_or(0),
        received_at_ms: row.try_get("received_at_ms")?,
        replay_of: row.try_get("replay_of")?,
        replayed_by: row.try_get("replayed_by")?,
        resolved_by: row.try_get("resolved_by")?,
    })
}

impl Store {
    /// Appends to the inbound delivery log.
    pub async fn insert_webhook_delivery(&self, d: &WebhookDelivery) -> Result<(), StoreError> {
        let mut conn = self.autocommit().acquire().await?;
        insert_webhook_delivery_in(&mut conn, d).await
    }

    /// Deliveries matching `filter`, in `order`, at most `limit`.
    pub async fn search_webhook_deliveries(
        &self,
        filter: &DeliveryFilter,
        order: DeliveryOrder,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let (cursor, direction) = match &order {
            DeliveryOrder::NewestFirst(cursor) => (cursor.as_ref(), "DESC"),
            DeliveryOrder::OldestFirst => (None, "ASC"),
        };
        let (clause, values) = where_clause(filter, cursor);
        let sql = format!(
            "SELECT {COLUMNS} FROM webhook_deliveries{clause} \
             ORDER BY received_at_ms {direction}, id {direction} LIMIT ${}",
            values.len() + 1
        );
        let mut query = sqlx::query(&sql);
        for value in values {
            query = match value {
                Bound::Text(text) => query.bind(text),
                Bound::Int(number) => query.bind(number),
            };
        }
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// The newest deliveries, for a payment or payout when given.
    pub async fn webhook_deliveries(
        &self,
        subject_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let filter = DeliveryFilter {
            subject_id: subject_id.map(str::to_string),
            ..DeliveryFilter::default()
        };
        self.search_webhook_deliveries(&filter, DeliveryOrder::NewestFirst(None), limit)
            .await
    }

    /// One delivery by id.
    pub async fn webhook_delivery(&self, id: &str) -> Result<Option<WebhookDelivery>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM webhook_deliveries WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    /// Notes that the replay `replay_id` settled the delivery `id` (the first that did).
    pub async fn resolve_webhook_delivery(
        &self,
        id: &str,
        replay_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET resolved_by = $1 WHERE id = $2 AND resolved_by IS NULL",
        )
        .bind(replay_id)
        .bind(id)
        .execute(self.writer())
        .await?;
        Ok(())
    }
}

/// Appends to the inbound delivery log inside the transaction that applies the delivery's
/// event, so the effect and its log row cost one commit (ADR 0034). The exact bytes go to
/// `raw_body_exact`; `raw_body` (text) is kept only by rows written before migration 0015.
pub async fn insert_webhook_delivery_in(
    conn: &mut crate::Conn,
    d: &WebhookDelivery,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, provider, source, source_address, event_id, \
         payment_id, payout_id, headers, raw_body, raw_body_exact, outcome, http_status, \
         received_at_ms, replay_of, replayed_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '', $9, $10, $11, $12, $13, $14)",
    )
    .bind(&d.id)
    .bind(&d.provider)
    .bind(&d.source)
    .bind(&d.source_address)
    .bind(&d.event_id)
    .bind(&d.payment_id)
    .bind(&d.payout_id)
    .bind(&d.headers)
    .bind(&d.raw_body)
    .bind(&d.outcome)
    .bind(i64::from(d.http_status))
    .bind(d.received_at_ms)
    .bind(&d.replay_of)
    .bind(&d.replayed_by)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
