//! Deposits on disk: payments, their event history, refunds, the inbound webhook delivery
//! log, processed provider events (the dedupe key) and the outbox.

use kassa_core::ids::{MerchantId, PaymentId, PlayerId, RefundId};
use kassa_core::payment::PaymentStatus;
use kassa_core::status::RefundStatus;
use kassa_core::{Currency, Money};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::directory::{stored_id, stored_status};
use crate::{now_ms, HistoryEvent, Store, StoreError, Tx};

/// A payment as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRecord {
    pub id: PaymentId,
    pub merchant_id: MerchantId,
    pub player_id: PlayerId,
    pub provider: String,
    pub provider_reference: Option<String>,
    pub method: String,
    /// The amount deposited, in its currency.
    pub amount: Money,
    pub status: PaymentStatus,
    /// Confirmed refunds so far, in the payment's currency.
    pub refunded: Money,
    pub return_url: String,
    pub redirect_url: Option<String>,
    pub country: String,
    pub device: Option<String>,
    pub ip: Option<String>,
    pub session_id: Option<String>,
    pub failure_reason: Option<String>,
    /// The router's decision and the attempts at each provider (JSON), when routed.
    pub routing: Option<String>,
    /// The risk decision with its explanation (JSON), when one was made.
    pub risk: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The success-rate mode's arm (`holdout`, `explore`, `exploit`), when it was on.
    pub routing_arm: Option<String>,
    /// The card that paid, as the provider reported it; `None` until one did.
    pub card: Option<PaymentCard>,
}

/// A provider's report of the card that paid (ADR 84): never the number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaymentCard {
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
    /// The scheme as the provider names it, lower case.
    pub brand: Option<String>,
    pub last4: Option<String>,
}

/// One event in a payment's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentEventRecord {
    /// `api`, `webhook`, `sync`.
    pub source: String,
    /// What happened (`captured`, `declined`, `refund_requested`, …).
    pub event: String,
    pub from_status: String,
    /// `None` when the event did not fit and was ignored.
    pub to_status: Option<String>,
    pub detail: Option<String>,
    pub created_at_ms: i64,
}

/// A refund as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRecord {
    pub id: RefundId,
    pub merchant_id: MerchantId,
    pub payment_id: PaymentId,
    /// The amount given back, in the payment's currency.
    pub amount: Money,
    /// Held while `pending`; then `succeeded` or `failed`.
    pub status: RefundStatus,
    pub failure_reason: Option<String>,
    pub created_at_ms: i64,
}

pub use crate::inbound_log::WebhookDelivery;

/// An event of the outbox, as the consumer hands it to a publisher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Increases with every event; per aggregate, in the order the changes committed.
    pub id: i64,
    pub merchant_id: String,
    /// The event's stable id (`evt_…`), made once when it was written: the `webhook-id`.
    pub event_id: String,
    /// The event type: `payment.captured`, `payout.paid`, `refund.succeeded`, …
    pub topic: String,
    /// The payment or payout the event is about.
    pub aggregate_id: String,
    /// JSON text.
    pub payload: String,
    pub created_at_ms: i64,
}

const PAYMENT_COLUMNS: &str = "id, merchant_id, player_id, provider, provider_reference, method, \
     amount_minor, currency, status, refunded_minor, return_url, redirect_url, country, device, ip, \
     session_id, failure_reason, routing, risk, created_at_ms, updated_at_ms, routing_arm, \
     card_country, card_brand, card_last4";

fn payment_from_row(row: &AnyRow) -> Result<PaymentRecord, StoreError> {
    let currency: String = row.try_get("currency")?;
    let currency =
        Currency::from_code(&currency).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let status: String = row.try_get("status")?;
    Ok(PaymentRecord {
        id: stored_id(row, "id")?,
        merchant_id: stored_id(row, "merchant_id")?,
        player_id: stored_id(row, "player_id")?,
        provider: row.try_get("provider")?,
        provider_reference: row.try_get("provider_reference")?,
        method: row.try_get("method")?,
        amount: Money::new(row.try_get("amount_minor")?, currency),
        status: PaymentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("payment status {status:?}")))?,
        refunded: Money::new(row.try_get("refunded_minor")?, currency),
        return_url: row.try_get("return_url")?,
        redirect_url: row.try_get("redirect_url")?,
        country: row.try_get("country")?,
        device: row.try_get("device")?,
        ip: row.try_get("ip")?,
        session_id: row.try_get("session_id")?,
        failure_reason: row.try_get("failure_reason")?,
        routing: row.try_get("routing")?,
        risk: row.try_get("risk")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        routing_arm: row.try_get("routing_arm")?,
        card: card_from_row(row)?,
    })
}

fn card_from_row(row: &AnyRow) -> Result<Option<PaymentCard>, StoreError> {
    let card = PaymentCard {
        country: row.try_get("card_country")?,
        brand: row.try_get("card_brand")?,
        last4: row.try_get("card_last4")?,
    };
    Ok((card != PaymentCard::default()).then_some(card))
}

fn refund_from_row(row: &AnyRow) -> Result<RefundRecord, StoreError> {
    let currency: String = row.try_get("currency")?;
    let currency =
        Currency::from_code(&currency).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(RefundRecord {
        id: stored_id(row, "id")?,
        merchant_id: stored_id(row, "merchant_id")?,
        payment_id: stored_id(row, "payment_id")?,
        amount: Money::new(row.try_get("amount_minor")?, currency),
        status: stored_status(row, "status", RefundStatus::parse)?,
        failure_reason: row.try_get("failure_reason")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// Parameters [`bind_payment`] binds: one per column of [`PAYMENT_COLUMNS`].
const PAYMENT_PARAMS: usize = 25;
/// Where [`bind_payment`] binds the payment's id, merchant, creation and last change.
const PAYMENT_ID_PARAM: usize = 1;
const PAYMENT_MERCHANT_PARAM: usize = 2;
const PAYMENT_CREATED_PARAM: usize = 20;
const PAYMENT_UPDATED_PARAM: usize = 21;

/// The payment's 25 columns bound as `$1`…`$25`, in [`PAYMENT_COLUMNS`]' order.
fn bind_payment<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    p: &'q PaymentRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(p.id.as_str())
        .bind(p.merchant_id.as_str())
        .bind(p.player_id.as_str())
        .bind(&p.provider)
        .bind(&p.provider_reference)
        .bind(&p.method)
        .bind(p.amount.amount_minor)
        .bind(p.amount.currency.code())
        .bind(p.status.as_str())
        .bind(p.refunded.amount_minor)
        .bind(&p.return_url)
        .bind(&p.redirect_url)
        .bind(&p.country)
        .bind(&p.device)
        .bind(&p.ip)
        .bind(&p.session_id)
        .bind(&p.failure_reason)
        .bind(&p.routing)
        .bind(&p.risk)
        .bind(p.created_at_ms)
        .bind(p.updated_at_ms)
        .bind(&p.routing_arm)
        .bind(p.card.as_ref().and_then(|c| c.country.clone()))
        .bind(p.card.as_ref().and_then(|c| c.brand.clone()))
        .bind(p.card.as_ref().and_then(|c| c.last4.clone()))
}

/// Writes a payment's mutable fields: `$1`…`$7` as [`bind_payment_change`] binds them.
const CHANGE_PAYMENT: &str = "UPDATE payments SET status = $1, provider_reference = $2, \
     redirect_url = $3, failure_reason = $4, refunded_minor = $5, updated_at_ms = $6 WHERE id = $7";

/// The payment's mutable fields and id bound as `$1`…`$7` of [`CHANGE_PAYMENT`], changed at
/// `now_ms`.
fn bind_payment_change<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    p: &'q PaymentRecord,
    now_ms: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(p.status.as_str())
        .bind(&p.provider_reference)
        .bind(&p.redirect_url)
        .bind(&p.failure_reason)
        .bind(p.refunded.amount_minor)
        .bind(now_ms)
        .bind(p.id.as_str())
}

/// The head of a history row's insert; its values are the payment id, then
/// [`bind_history`]'s five, then the time.
const INSERT_HISTORY: &str = "INSERT INTO payment_events (payment_id, source, event, \
     from_status, to_status, detail, created_at_ms)";

/// What happened, bound as five consecutive parameters of [`INSERT_HISTORY`].
fn bind_history<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    e: HistoryEvent<'q>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(e.source)
        .bind(e.event)
        .bind(e.from)
        .bind(e.to)
        .bind(e.detail)
}

/// Parameters [`bind_history`] binds per history row.
const HISTORY_PARAMS: usize = 5;

/// `$first, $first+1, …` for `count` parameters.
fn params(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An insert of `count` history rows of one payment (`$payment`): each row's five own
/// values from `$first` on, in [`bind_history_rows`]' order; the first row at `$created`,
/// the others at `$changed`.
fn history_rows(
    count: usize,
    payment: usize,
    created: usize,
    changed: usize,
    first: usize,
) -> String {
    let rows: Vec<String> = (0..count)
        .map(|row| {
            let at = if row == 0 { created } else { changed };
            let own = params(first + HISTORY_PARAMS * row, HISTORY_PARAMS);
            format!("(${payment}, {own}, ${at})")
        })
        .collect();
    format!("{INSERT_HISTORY} VALUES {}", rows.join(", "))
}

/// The history rows' own values, bound in order.
fn bind_history_rows<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    history: &[HistoryEvent<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for event in history {
        query = bind_history(query, *event);
    }
    query
}

/// Parameters [`bind_outbox_rows`] binds per outbox row: its event id, topic and payload.
const OUTBOX_PARAMS: usize = 3;

/// An insert of `count` outbox rows of one payment (`$payment`) of `$merchant`, all at
/// `$at`: each row's own values from `$first` on, in [`bind_outbox_rows`]' order.
fn outbox_rows(count: usize, payment: usize, merchant: usize, at: usize, first: usize) -> String {
    let rows: Vec<String> = (0..count)
        .map(|row| {
            let n = first + OUTBOX_PARAMS * row;
            format!(
                "(${n}, ${merchant}, ${}, ${payment}, ${}, ${at})",
                n + 1,
                n + 2
            )
        })
        .collect();
    format!("{INSERT_OUTBOX} VALUES {}", rows.join(", "))
}

/// The outbox rows' own values (a fresh event id, the topic, the payload), bound in order.
fn bind_outbox_rows<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    outbox: &[PaymentOutboxEvent<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for event in outbox {
        query = query
            .bind(kassa_core::ids::generate("evt"))
            .bind(event.topic)
            .bind(event.payload);
    }
    query
}

/// The head of an outbox row's insert.
const INSERT_OUTBOX: &str =
    "INSERT INTO outbox (event_id, merchant_id, topic, aggregate_id, payload, created_at_ms)";

/// A deposit that took the money: captured, or refunded or charged back since (each was
/// captured first). A condition on `payments.status`.
pub(crate) const CAPTURED_FAMILY: &str =
    "status IN ('captured', 'partially_refunded', 'refunded', 'charged_back')";

impl Store {
    /// Records a new payment as its start left it, in one step: the payment row, its history
    /// in order (`created` at the payment's creation, then `changes` at its last change) and
    /// the outbox events of its status changes (at its last change). On PostgreSQL one
    /// statement of data-modifying CTEs, one round trip; on SQLite, whose connection is
    /// in-process, one statement per table.
    pub async fn insert_started_payment(
        &self,
        tx: &mut Tx,
        p: &PaymentRecord,
        created: HistoryEvent<'_>,
        changes: &[HistoryEvent<'_>],
        outbox: &[PaymentOutboxEvent<'_>],
    ) -> Result<(), StoreError> {
        let history: Vec<HistoryEvent> = std::iter::once(created)
            .chain(changes.iter().copied())
            .collect();
        let insert = format!(
            "INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES ({})",
            params(1, PAYMENT_PARAMS)
        );
        if self.backend() == crate::Backend::Sqlite {
            bind_payment(sqlx::query(&insert), p)
                .execute(&mut **tx)
                .await?;
            // $1 the payment, $2 its creation, $3 its last change.
            let rows = history_rows(history.len(), 1, 2, 3, 4);
            let query = sqlx::query(&rows).bind(p.id.as_str());
            bind_history_rows(query.bind(p.created_at_ms).bind(p.updated_at_ms), &history)
                .execute(&mut **tx)
                .await?;
            if !outbox.is_empty() {
                // $1 the payment, $2 its merchant, $3 its last change.
                let rows = outbox_rows(outbox.len(), 1, 2, 3, 4);
                let query = sqlx::query(&rows).bind(p.id.as_str());
                bind_outbox_rows(
                    query.bind(p.merchant_id.as_str()).bind(p.updated_at_ms),
                    outbox,
                )
                .execute(&mut **tx)
                .await?;
            }
            return Ok(());
        }
        // The payment's own parameters give the history's and the outbox's shared values.
        let first_history = PAYMENT_PARAMS + 1;
        let first_outbox = first_history + HISTORY_PARAMS * history.len();
        let (id, merchant) = (PAYMENT_ID_PARAM, PAYMENT_MERCHANT_PARAM);
        let (created_at, updated_at) = (PAYMENT_CREATED_PARAM, PAYMENT_UPDATED_PARAM);
        let history_sql = history_rows(history.len(), id, created_at, updated_at, first_history);
        let sql = match outbox.is_empty() {
            true => format!("WITH payment AS ({insert}) {history_sql}"),
            false => format!(
                "WITH payment AS ({insert}), history AS ({history_sql}) {}",
                outbox_rows(outbox.len(), id, merchant, updated_at, first_outbox)
            ),
        };
        let query = bind_history_rows(bind_payment(sqlx::query(&sql), p), &history);
        bind_outbox_rows(query, outbox).execute(&mut **tx).await?;
        Ok(())
    }

    /// Records the card a provider reported for the locked payment `id` (the latest report
    /// wins: a charge that succeeded after a declined one names the card that paid).
    pub async fn record_payment_card(
        &self,
        tx: &mut Tx,
        id: &PaymentId,
        card: &PaymentCard,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE payments SET card_country = $1, card_brand = $2, card_last4 = $3 \
             WHERE id = $4",
        )
        .bind(&card.country)
        .bind(&card.brand)
        .bind(&card.last4)
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Whether the player has a captured deposit (captured, refunded in part or whole, or
    /// charged back since): routing rules on first deposits ask.
    pub async fn player_has_deposited(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT 1 AS found FROM payments WHERE merchant_id = $1 AND player_id = $2 \
                 AND {CAPTURED_FAMILY} LIMIT 1"
        ))
        .bind(merchant_id.as_str())
        .bind(player_id.as_str())
        .fetch_optional(self.reader())
        .await?;
        Ok(row.is_some())
    }

    /// A merchant's payment.
    pub async fn get_payment(
        &self,
        merchant_id: &MerchantId,
        id: &PaymentId,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let sql =
            format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 AND merchant_id = $2");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(merchant_id.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(payment_from_row).transpose()
    }

    /// A payment by id, whatever its merchant (for capability URLs and status sync).
    pub async fn find_payment(&self, id: &PaymentId) -> Result<Option<PaymentRecord>, StoreError> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(payment_from_row).transpose()
    }

    /// A payment by id, locked for the rest of `tx` (PostgreSQL) so concurrent webhooks for
    /// it apply one after the other.
    pub async fn lock_payment(
        &self,
        tx: &mut Tx,
        id: &PaymentId,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1{}",
            self.lock_clause()
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(payment_from_row).transpose()
    }

    /// Moves a pending payment to another provider account and stores its routing record
    /// (a cascade on Kassa's card page), inside the payment's transaction.
    pub async fn reroute_payment(&self, tx: &mut Tx, p: &PaymentRecord) -> Result<(), StoreError> {
        sqlx::query("UPDATE payments SET provider = $1, routing = $2 WHERE id = $3")
            .bind(&p.provider)
            .bind(&p.routing)
            .bind(p.id.as_str())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Writes a payment's mutable fields.
    pub async fn update_payment(&self, tx: &mut Tx, p: &PaymentRecord) -> Result<(), StoreError> {
        bind_payment_change(sqlx::query(CHANGE_PAYMENT), p, now_ms())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// A player's payments, newest first, before the `(created_at_ms, id)` cursor.
    pub async fn list_payments(
        &self,
        merchant_id: &MerchantId,
        player_id: &PlayerId,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let (before_ms, before_id) = before.unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = $1 AND player_id = $2 \
             AND (created_at_ms < $3 OR (created_at_ms = $3 AND id < $4)) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(merchant_id.as_str())
            .bind(player_id.as_str())
            .bind(before_ms)
            .bind(before_id)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(payment_from_row).collect()
    }

    /// Payments still waiting for the provider's first outcome, last touched before
    /// `before_ms`, oldest first: what status sync asks the providers about.
    pub async fn payments_awaiting_outcome(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, StoreError> {
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE status IN ('pending', 'authorized') \
             AND updated_at_ms < $1 ORDER BY updated_at_ms LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(before_ms)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(payment_from_row).collect()
    }

    /// Appends to a payment's history.
    pub async fn insert_payment_event(
        &self,
        tx: &mut Tx,
        payment_id: &PaymentId,
        e: HistoryEvent<'_>,
    ) -> Result<(), StoreError> {
        let sql = format!("{INSERT_HISTORY} VALUES ($1, $2, $3, $4, $5, $6, $7)");
        bind_history(sqlx::query(&sql).bind(payment_id.as_str()), e)
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// A payment's change in one step, inside its transaction: its mutable fields, the
    /// history row, and the outbox event when there is one. On PostgreSQL one statement of
    /// data-modifying CTEs, one round trip instead of three (a deposit's capture is one;
    /// its start is written whole by [`Store::insert_started_payment`]); on SQLite, whose connection is in-process, the three statements.
    pub async fn record_payment_change(
        &self,
        tx: &mut Tx,
        p: &PaymentRecord,
        history: HistoryEvent<'_>,
        outbox: Option<PaymentOutboxEvent<'_>>,
    ) -> Result<(), StoreError> {
        if self.backend() == crate::Backend::Sqlite {
            self.update_payment(tx, p).await?;
            self.insert_payment_event(tx, &p.id, history).await?;
            if let Some(event) = outbox {
                let merchant = p.merchant_id.as_str();
                insert_outbox_in(tx, merchant, event.topic, p.id.as_str(), event.payload).await?;
            }
            return Ok(());
        }
        let history_row = format!("{INSERT_HISTORY} VALUES ($7, $8, $9, $10, $11, $12, $6)");
        let sql = match outbox {
            Some(_) => format!(
                "WITH changed AS ({CHANGE_PAYMENT}), history AS ({history_row}) \
                 {INSERT_OUTBOX} VALUES ($13, $14, $15, $7, $16, $6)"
            ),
            None => format!("WITH changed AS ({CHANGE_PAYMENT}) {history_row}"),
        };
        let query = bind_payment_change(sqlx::query(&sql), p, now_ms());
        let mut query = bind_history(query, history);
        if let Some(event) = outbox {
            query = query
                .bind(kassa_core::ids::generate("evt"))
                .bind(p.merchant_id.as_str())
                .bind(event.topic)
                .bind(event.payload);
        }
        query.execute(&mut **tx).await?;
        Ok(())
    }

    /// A payment's history, oldest first.
    pub async fn payment_events(
        &self,
        payment_id: &PaymentId,
    ) -> Result<Vec<PaymentEventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, event, from_status, to_status, detail, created_at_ms FROM payment_events \
             WHERE payment_id = $1 ORDER BY id",
        )
        .bind(payment_id.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PaymentEventRecord {
                    source: row.try_get("source")?,
                    event: row.try_get("event")?,
                    from_status: row.try_get("from_status")?,
                    to_status: row.try_get("to_status")?,
                    detail: row.try_get("detail")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                })
            })
            .collect()
    }

    /// Records a refund.
    pub async fn insert_refund(&self, tx: &mut Tx, r: &RefundRecord) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO refunds (id, merchant_id, payment_id, amount_minor, currency, status, \
             failure_reason, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(r.id.as_str())
        .bind(r.merchant_id.as_str())
        .bind(r.payment_id.as_str())
        .bind(r.amount.amount_minor)
        .bind(r.amount.currency.code())
        .bind(r.status.as_str())
        .bind(&r.failure_reason)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A payment's refunds, oldest first, inside `tx`.
    pub async fn refunds_of(
        &self,
        tx: &mut Tx,
        payment_id: &PaymentId,
    ) -> Result<Vec<RefundRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, merchant_id, payment_id, amount_minor, currency, status, failure_reason, \
             created_at_ms FROM refunds WHERE payment_id = $1 ORDER BY created_at_ms, id",
        )
        .bind(payment_id.as_str())
        .fetch_all(&mut **tx)
        .await?;
        rows.iter().map(refund_from_row).collect()
    }

    /// The id of the payment refund `refund_id` belongs to, if Kassa holds that refund (a
    /// provider's refund notification may name only the refund, ADR 61).
    pub async fn payment_of_refund(&self, refund_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT payment_id FROM refunds WHERE id = $1")
            .bind(refund_id)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.map(|row| row.try_get("payment_id")).transpose()?)
    }

    /// The id of the payment `provider` knows as `reference` (unique per account).
    pub async fn payment_by_provider_reference(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT id FROM payments WHERE provider = $1 AND provider_reference = $2")
                .bind(provider)
                .bind(reference)
                .fetch_optional(self.reader())
                .await?;
        Ok(row.map(|row| row.try_get("id")).transpose()?)
    }

    /// A payment's refunds, outside a transaction.
    pub async fn list_refunds(
        &self,
        payment_id: &PaymentId,
    ) -> Result<Vec<RefundRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, merchant_id, payment_id, amount_minor, currency, status, failure_reason, \
             created_at_ms FROM refunds WHERE payment_id = $1 ORDER BY created_at_ms, id",
        )
        .bind(payment_id.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(refund_from_row).collect()
    }

    /// Sets a refund's outcome.
    pub async fn update_refund(
        &self,
        tx: &mut Tx,
        id: &RefundId,
        status: RefundStatus,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE refunds SET status = $1, failure_reason = $2, updated_at_ms = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(now_ms())
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The stored answer to a provider event already processed.
    pub async fn processed_webhook_event(
        &self,
        provider: &str,
        event_id: &str,
    ) -> Result<Option<(u16, String)>, StoreError> {
        let row = sqlx::query("SELECT http_status, response_body FROM webhook_events WHERE provider = $1 AND event_id = $2")
            .bind(provider)
            .bind(event_id)
            .fetch_optional(self.writer())
            .await?;
        row.map(|row| {
            let status: i64 = row.try_get("http_status")?;
            Ok((status as u16, row.try_get("response_body")?))
        })
        .transpose()
    }

    /// Marks a provider event processed, inside the transaction of its effect. Returns
    /// `false` when the event id was already answered (a concurrent delivery of the same
    /// event committed first; PostgreSQL waits for it): the caller rolls back and gives the
    /// stored answer. A duplicate is not a database error on either backend.
    pub async fn insert_webhook_event(
        &self,
        tx: &mut Tx,
        provider: &str,
        event_id: &str,
        http_status: u16,
        response_body: &str,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO webhook_events (provider, event_id, http_status, response_body, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (provider, event_id) DO NOTHING",
        )
        .bind(provider)
        .bind(event_id)
        .bind(i64::from(http_status))
        .bind(response_body)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Queues an event for the operator, inside the transaction of the change it describes;
    /// returns its new event id. `topic` is the event type, `aggregate_id` the object whose
    /// events keep their order.
    pub async fn insert_outbox(
        &self,
        tx: &mut Tx,
        merchant_id: &str,
        topic: &str,
        aggregate_id: &str,
        payload: &str,
    ) -> Result<String, StoreError> {
        insert_outbox_in(tx, merchant_id, topic, aggregate_id, payload).await
    }

    /// Up to `limit` unpublished outbox events, oldest first, locked for the rest of `tx` on
    /// PostgreSQL: a second consumer (a node whose consumer lease ran out while it was still
    /// publishing) waits here and then finds them published, instead of publishing them
    /// again. `FOR UPDATE`, not `SKIP LOCKED`: skipping a locked event would let a later
    /// event about the same aggregate go out before it.
    pub async fn lock_unpublished_outbox(
        &self,
        tx: &mut Tx,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE published_at_ms IS NULL ORDER BY id \
             LIMIT $1{}",
            self.lock_clause()
        );
        let rows = sqlx::query(&sql)
            .bind(i64::from(limit))
            .fetch_all(&mut **tx)
            .await?;
        rows.iter().map(outbox_event_from_row).collect()
    }

    /// One outbox event by its event id.
    pub async fn outbox_event(&self, event_id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE event_id = $1");
        let row = sqlx::query(&sql)
            .bind(event_id)
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(outbox_event_from_row).transpose()
    }

    /// Marks outbox events published at `at_ms`, inside the transaction that handed them to
    /// the publisher.
    pub async fn mark_outbox_published(
        &self,
        tx: &mut Tx,
        ids: &[i64],
        at_ms: i64,
    ) -> Result<(), StoreError> {
        stamp_outbox(&mut **tx, "published_at_ms", ids, at_ms).await
    }

    /// Up to `limit` outbox events not yet acknowledged by the event stream, oldest first,
    /// read without a lock or a transaction: the stream's publisher holds no database
    /// transaction across its network round trips (on SQLite that would hold the one
    /// writer). Publishing one twice is harmless, JetStream drops the repeat by its id.
    pub async fn unstreamed_outbox(&self, limit: u32) -> Result<Vec<OutboxEvent>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE streamed_at_ms IS NULL ORDER BY id \
             LIMIT $1"
        );
        let rows = sqlx::query(&sql)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(outbox_event_from_row).collect()
    }

    /// Marks outbox events acknowledged by the event stream at `at_ms`.
    pub async fn mark_outbox_streamed(&self, ids: &[i64], at_ms: i64) -> Result<(), StoreError> {
        stamp_outbox(self.writer(), "streamed_at_ms", ids, at_ms).await
    }

    /// How many outbox events wait for the event stream.
    pub async fn outbox_unstreamed_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE streamed_at_ms IS NULL")
                .fetch_one(self.reader())
                .await?,
        )
    }

    /// How many players had a deposit declined, failed or expired at `since_ms` or later (by
    /// the payment's last change): the "enough players" side of the approval-drop alert.
    pub async fn players_with_failed_deposits_since(
        &self,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT DISTINCT merchant_id, player_id FROM payments \
             WHERE status IN ('declined', 'failed', 'expired') AND updated_at_ms >= $1) AS failed",
        )
        .bind(since_ms)
        .fetch_one(self.reader())
        .await?)
    }

    /// How many outbox events wait for the publisher.
    pub async fn outbox_unpublished_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at_ms IS NULL")
                .fetch_one(self.reader())
                .await?,
        )
    }

    /// Outbox events about one aggregate, oldest first (`(topic, payload)`).
    pub async fn outbox_for(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT topic, payload FROM outbox WHERE aggregate_id = $1 ORDER BY id")
                .bind(aggregate_id)
                .fetch_all(self.reader())
                .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("topic")?, row.try_get("payload")?)))
            .collect()
    }
}

/// Sets the progress marker `column` (`published_at_ms`, `streamed_at_ms`) of the outbox
/// events `ids` that do not have it yet.
async fn stamp_outbox<'c, E>(
    executor: E,
    column: &'static str,
    ids: &[i64],
    at_ms: i64,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE outbox SET {column} = $1 WHERE {column} IS NULL AND id IN ({})",
        crate::placeholders(2, ids.len())
    );
    let mut query = sqlx::query(&sql).bind(at_ms);
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(executor).await?;
    Ok(())
}

const OUTBOX_COLUMNS: &str =
    "id, event_id, merchant_id, topic, aggregate_id, payload, created_at_ms";

fn outbox_event_from_row(row: &AnyRow) -> Result<OutboxEvent, StoreError> {
    Ok(OutboxEvent {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        merchant_id: row.try_get("merchant_id")?,
        topic: row.try_get("topic")?,
        aggregate_id: row.try_get("aggregate_id")?,
        payload: row.try_get("payload")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// The outbox event of a payment's change ([`Store::record_payment_change`]): about the
/// payment, for its merchant.
#[derive(Clone, Copy, Debug)]
pub struct PaymentOutboxEvent<'a> {
    /// `payment.captured`, …
    pub topic: &'a str,
    /// The event's JSON.
    pub payload: &'a str,
}

/// [`Store::insert_outbox`] on any connection inside a transaction (a worker's, for events
/// such as `webhook_endpoint.disabled`).
pub async fn insert_outbox_in(
    conn: &mut crate::Conn,
    merchant_id: &str,
    topic: &str,
    aggregate_id: &str,
    payload: &str,
) -> Result<String, StoreError> {
    let event_id = kassa_core::ids::generate("evt");
    sqlx::query(&format!("{INSERT_OUTBOX} VALUES ($1, $2, $3, $4, $5, $6)"))
        .bind(&event_id)
        .bind(merchant_id)
        .bind(topic)
        .bind(aggregate_id)
        .bind(payload)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(event_id)
}

pub use crate::inbound_log::insert_webhook_delivery_in;
